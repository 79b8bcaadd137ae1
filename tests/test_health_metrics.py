"""GET /metrics of a real node process, with real HTTP and websocket clients: the counters
moving as clients connect, join, shout and leave."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Awaitable, Callable

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPResponse

from support.phoenix_client import Serving, assert_shout_reaches, join_room
from support.server_process import POLL_INTERVAL, ServerProcess

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def until(condition: Callable[[], Awaitable[Any]], what: str, timeout: float = 10.0) -> Any:
    """Awaits ``condition`` until it returns something truthy, which it returns."""
    deadline = time.monotonic() + timeout
    while not (result := await condition()):
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        await asyncio.sleep(POLL_INTERVAL)
    return result


async def get(node: Serving, path: str) -> HTTPResponse:
    return await AsyncHTTPClient().fetch(f"http://{node.host}:{node.port}{path}", raise_error=False,
                                         request_timeout=5)


async def scrape(node: Serving) -> Samples:
    """``/metrics`` parsed by prometheus_client: (sample name, its labels) -> value."""
    response = await get(node, "/metrics")
    assert response.code == 200, response
    assert response.headers["Content-Type"].startswith("text/plain")
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(response.body.decode())
            for sample in family.samples}


async def test_metrics_count_connections_joins_messages_and_broadcasts(node: ServerProcess) -> None:
    before = await scrape(node)
    assert before[("gossipy_websocket_connections", ())] == 0
    assert before[("gossipy_cluster_peer_links_up", ())] == 0
    v1, v2 = await join_room(node), await join_room(node, "2.0.0")
    await assert_shout_reaches(v1, [v1, v2], "counted")
    during = await scrape(node)
    assert during[("gossipy_websocket_connections", ())] == 2
    assert during[("gossipy_channel_joins_total", ())] == 2
    assert during[("gossipy_channels_joined", ())] == 2
    assert during[("gossipy_pubsub_broadcasts_total", (("origin", "local"),))] == 1
    assert during[("gossipy_pubsub_broadcasts_total", (("origin", "peer"),))] == 0
    assert during[("gossipy_websocket_messages_received_total", ())] == 3  # two joins, one shout
    assert during[("gossipy_websocket_messages_sent_total", ())] == 4  # two replies, two broadcasts
    assert during[("gossipy_websocket_written_bytes_total", ())] > 4 * 10
    assert during[("gossipy_process_open_fds", ())] > 0
    v1.close()
    v2.close()

    async def all_gone() -> Samples | None:
        after = await scrape(node)
        return after if after[("gossipy_websocket_connections", ())] == 0 else None

    after = await until(all_gone, "the websockets to close")
    assert after[("gossipy_channels_joined", ())] == 0
    assert after[("gossipy_channel_joins_total", ())] == 2
    assert after[("gossipy_websocket_slow_consumers_dropped_total", ())] == 0
    node.assert_clean()
