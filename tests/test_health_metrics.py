"""GET /healthz, /readyz and /metrics of a real node process, with real HTTP and websocket
clients: readiness through boot sync and the drain after SIGTERM, and the counters moving as
clients connect, join, shout and leave."""

from __future__ import annotations

import asyncio
import signal
import time
from typing import Any, Awaitable, Callable

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPResponse

from support.node_processes import NodeProcesses
from support.phoenix_client import PhoenixClient, Serving, assert_shout_reaches, join_room
from support.server_process import POLL_INTERVAL, ServerProcess, run_node

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


async def test_healthz_and_readyz_answer_ok_uncached_and_stay_out_of_the_log(node: ServerProcess) -> None:
    for path, body in (("/healthz", b'{"status":"ok"}\n'), ("/readyz", b'{"status":"ready"}\n')):
        for _ in range(3):
            response = await get(node, path)
            assert (response.code, response.body) == (200, body)
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Content-Type"] == "application/json"
    await scrape(node)
    page = await get(node, "/")
    assert page.code == 200
    await node.async_wait_for_line(r"200 GET / ")  # other requests keep their access line
    assert not node.lines(r"/healthz|/readyz|/metrics"), node.log()
    node.assert_clean()


def test_the_ready_command_exits_0_only_while_readyz_answers_200(node: ServerProcess) -> None:
    """``bin/gossipy ready`` (the image's HEALTHCHECK), finding the port as the node does."""
    ready = run_node("ready", env={"PORT": str(node.port)})
    assert (ready.returncode, ready.stdout) == (0, '{"status":"ready"}\n'), ready.stderr
    node.stop()
    gone = run_node("ready", env={"PORT": str(node.port)})
    assert gone.returncode == 1 and "/readyz" in gone.stderr, gone.stderr


@pytest.mark.cluster
async def test_readyz_is_503_during_boot_sync_and_only_the_probes_answer(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        booting = cluster.spawn(2, sync=[3])  # node 3 never comes: boot sync waits 3 s for it

        async def answering() -> HTTPResponse | None:
            try:
                return await get(booting, "/readyz")
            except OSError:  # not listening yet
                return None

        response = await until(answering, "the booting node to listen")
        assert (response.code, response.body) == (503, b'{"status":"booting"}\n')
        assert (await get(booting, "/healthz")).code == 200
        assert (await get(booting, "/cluster")).code == 503
        with pytest.raises(HTTPClientError) as refused:
            await PhoenixClient.connect(booting.port, host=booting.host)
        assert refused.value.code == 503
        assert not booting.has_line("serving websockets")

        async def ready() -> bool:
            return (await get(booting, "/readyz")).code == 200

        await until(ready, "boot sync to give up on the absent node")
        assert booting.has_line(r"sync_nodes_optional: gossipy@127.0.0.3 not connected")
        await join_room(booting)
        booting.assert_clean()  # the 503s were not errors


async def test_after_sigterm_readyz_is_503_while_the_node_serves_on_then_websockets_close(
        start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"drain_seconds": 1.5})
    assert (await get(node, "/readyz")).code == 200
    sender, receiver = await join_room(node), await join_room(node)
    node.send_signal(signal.SIGTERM)
    await node.async_wait_for_line(r"draining: /readyz answers 503")
    response = await get(node, "/readyz")
    assert (response.code, response.body) == (503, b'{"status":"draining"}\n')
    await assert_shout_reaches(sender, [sender, receiver], "still served while draining")
    late = await join_room(node)  # a balancer that has not noticed yet still gets served
    assert [await c.expect_close() for c in (sender, receiver, late)] == [1001, 1001, 1001]
    assert await node.exit_status() == 0
    assert not node.lines(r" (WARNING|ERROR|CRITICAL) |Traceback"), node.log()


async def test_a_node_nobody_probes_for_readiness_stops_without_draining(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"drain_seconds": 30})
    client = await join_room(node)
    node.send_signal(signal.SIGTERM)
    assert await client.expect_close(timeout=5) == 1001
    assert await node.exit_status() == 0
    assert not node.has_line("draining")


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


@pytest.mark.cluster
async def test_metrics_of_a_cluster_links_queues_broadcasts_from_peers_and_refusals(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        a, b = cluster.start_many([2, 3])
        await cluster.async_wait_for_mesh([a, b])
        intruder = cluster.start(4, sync=[2], env={"RELEASE_COOKIE": "a-cookie-nobody-else-has"},
                                 sections={"kernel": {"sync_nodes_timeout": 300}})
        on_a, on_b = await join_room(a), await join_room(b)
        await assert_shout_reaches(on_a, [on_a, on_b], "across")

        async def refused() -> Samples | None:
            samples = await scrape(a)
            return samples if samples[("gossipy_cluster_handshake_refusals_total", (("reason", "bad_cookie"),))] \
                else None

        seen_by_a = await until(refused, "node 2 to count the wrong cookie")
        assert seen_by_a[("gossipy_cluster_peer_links_up", ())] == 1
        assert seen_by_a[("gossipy_cluster_peer_send_queue_bytes", (("peer", b.name),))] >= 0
        assert seen_by_a[("gossipy_pubsub_broadcasts_total", (("origin", "local"),))] == 1
        assert seen_by_a[("gossipy_cluster_handshake_refusals_total", (("reason", "duplicate_name"),))] == 0
        seen_by_b = await scrape(b)
        assert seen_by_b[("gossipy_pubsub_broadcasts_total", (("origin", "peer"),))] == 1
        assert seen_by_b[("gossipy_pubsub_broadcasts_total", (("origin", "local"),))] == 0
        seen_by_intruder = await scrape(intruder)
        assert seen_by_intruder[("gossipy_cluster_peer_links_up", ())] == 0
        assert seen_by_intruder[("gossipy_cluster_handshake_refusals_total", (("reason", "bad_cookie"),))] >= 1
        on_a.close()
        on_b.close()
