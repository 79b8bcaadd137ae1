"""Presence's tracker with real parts: ``Server``\\ s in this process on 127.0.0.x, clustered over
real peer streams, with real websocket clients (support/phoenix_client.py) on the presence app
(apps/presence_app.py). The same over real node processes with phoenix.js: test_presence_js.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from cluster.inprocess import SECRET

from server import publishing
from server.app import Server
from server.channels.serializer import V2
from server.presence.state import Limits
from server.presence.tracker import CHUNK, TOPIC, Tracker
from server.pubsub import Broadcast, PubSub
from server.settings import settings_from

from apps import presence_app
from support.node_processes import address, node_name
from support.phoenix_client import Frame, PhoenixClient
from support.server_process import async_wait_until, free_port
from test_socket import Peer

ROOM = "room:1"


class Cluster:
    """Servers sharing one distribution port, each listing the others; all stopped at the end."""

    def __init__(self, hosts: range = range(2, 6)) -> None:
        self.hosts = hosts
        self.dist_port = free_port([address(i) for i in hosts])
        self.servers: dict[int, Server] = {}

    async def start(self, i: int) -> Server:
        settings = settings_from({
            "node": {"name": node_name(i), "cookie": SECRET, "dist_port": self.dist_port},
            "kernel": {"net_ticktime": 2, "sync_nodes_timeout": 100,
                       "sync_nodes_optional": [node_name(j) for j in self.hosts if j != i]},
            "endpoint": {"host": address(i), "port": 0}}, {})
        server = self.servers[i] = Server(settings, routes=presence_app.ROUTES)
        await server.start()
        return server

    async def meshed(self, *indexes: int) -> None:
        def full() -> bool:
            return all(self.servers[i].cluster_view()["nodes"] == sorted(node_name(j) for j in indexes if j != i)
                       for i in indexes)
        await async_wait_until(full, 5, f"a mesh of {indexes}")

    async def stop_all(self) -> None:
        await asyncio.gather(*(server.stop() for server in self.servers.values()))


@asynccontextmanager
async def cluster_of(*indexes: int) -> AsyncIterator[Cluster]:
    cluster = Cluster()
    try:
        for i in indexes:
            await cluster.start(i)
        await cluster.meshed(*indexes)
        yield cluster
    finally:
        await cluster.stop_all()


def keys(server: Server, topic: str = ROOM) -> list[str]:
    return sorted(server.presence.list(topic))


async def same_everywhere(cluster: Cluster, expected: list[str], timeout: float = 3.0) -> None:
    await async_wait_until(lambda: all(keys(s) == expected for s in cluster.servers.values()), timeout,
                           f"{expected} on every node, not {[keys(s) for s in cluster.servers.values()]}")


async def present(server: Server, name: str, **join: Any) -> tuple[PhoenixClient, Frame]:
    """A client on ``server`` joined to ROOM as ``name``; its first frame after the reply."""
    client = await PhoenixClient.connect(server.port, host=server.settings.endpoint.host, vsn="2.0.0")
    reply = await client.join(ROOM, {"name": name, **join})
    assert reply.payload == {"status": "ok", "response": {}}, reply
    return client, await client.receive()


def diffs(frames: list[Frame]) -> list[tuple[list[str], list[str]]]:
    return [(sorted(f.payload["joins"]), sorted(f.payload["leaves"])) for f in frames if f.event == "presence_diff"]


async def drain(client: PhoenixClient, seconds: float = 0.3) -> list[Frame]:
    frames = []
    try:
        while True:
            frames.append(await client.receive(seconds))
    except asyncio.TimeoutError:
        return frames


async def test_joins_updates_and_leaves_reach_every_node_as_state_then_diffs() -> None:
    async with cluster_of(2, 3, 4) as cluster:
        a, b, c = (cluster.servers[i] for i in (2, 3, 4))
        ada, state = await present(a, "ada")
        assert state.event == "presence_state" and list(state.payload) == ["ada"]
        [meta] = state.payload["ada"]["metas"]
        assert meta["status"] == "online" and isinstance(meta["phx_ref"], str)
        await same_everywhere(cluster, ["ada"])

        bob, state = await present(b, "bob")  # the state a join gets holds the other nodes' users
        assert sorted(state.payload) == ["ada", "bob"]
        joined = await ada.receive_until(lambda f: f.event == "presence_diff")
        assert joined.payload["leaves"] == {} and list(joined.payload["joins"]) == ["bob"]

        ref = await bob.push(ROOM, "status", {"status": "away"})
        await bob.reply_to(ref)
        update = await ada.receive_until(lambda f: f.event == "presence_diff")
        [left], [came] = update.payload["leaves"]["bob"]["metas"], update.payload["joins"]["bob"]["metas"]
        assert came["status"] == "away" and came["phx_ref_prev"] == left["phx_ref"] != came["phx_ref"]
        await async_wait_until(lambda: c.presence.list(ROOM)["bob"]["metas"][0]["status"] == "away", 3, "the update on c")

        bob.close()  # a client that goes away: its presence leaves everywhere
        gone = await ada.receive_until(lambda f: f.event == "presence_diff")
        assert (gone.payload["joins"], list(gone.payload["leaves"])) == ({}, ["bob"])
        await same_everywhere(cluster, ["ada"])

        ref = await ada.push(ROOM, "crash")  # a crashed channel's presences leave too
        await same_everywhere(cluster, [])
        ada.close()


async def test_a_rejoin_gets_the_state_again_and_a_channel_that_tracks_nothing_gets_none() -> None:
    async with cluster_of(2, 3) as cluster:
        a = cluster.servers[2]
        ada, _ = await present(a, "ada")
        listener = await PhoenixClient.connect(a.port, host=address(2), vsn="2.0.0")
        await listener.join(ROOM, {})
        await listener.assert_silent(0.2)  # no presence_state: it tracks nothing
        await ada.join(ROOM, {"name": "ada"})  # the same topic again: the old channel ends first
        state = await ada.receive_until(lambda f: f.event == "presence_state")
        assert list(state.payload) == ["ada"]
        assert diffs(await drain(listener)) == [([], ["ada"]), (["ada"], [])]
        await same_everywhere(cluster, ["ada"])
        ada.close()
        listener.close()


async def test_a_clean_stop_takes_its_presences_at_once_and_a_restart_never_doubles_them() -> None:
    async with cluster_of(2, 3) as cluster:
        a, b = cluster.servers[2], cluster.servers[3]
        bob, _ = await present(b, "bob")
        ada, _ = await present(a, "ada")
        await same_everywhere(cluster, ["ada", "bob"])
        await b.stop()
        assert keys(a) == ["ada"]  # told by b's leave, not by ticks
        b = await cluster.start(3)
        await cluster.meshed(2, 3)
        bob, _ = await present(b, "bob")
        await same_everywhere(cluster, ["ada", "bob"])
        assert len(a.presence.list(ROOM)["bob"]["metas"]) == 1
        ada.close()
        bob.close()


async def test_a_node_that_comes_up_gets_a_large_state_in_chunks() -> None:
    async with cluster_of(2) as cluster:
        a = cluster.servers[2]
        total = 10_000
        for n in range(total):
            a.presence.track(a.presence.new_conn(), ROOM, f"user{n}", {"n": n})
        a.presence.state.extract_delta()  # sent to no one: the newcomer needs the full state

        stalls: list[float] = []

        async def probe() -> None:  # the loop's longest busy stretches while the state syncs
            loop = asyncio.get_running_loop()
            while True:
                asked = loop.time()
                await asyncio.sleep(0.001)
                stalls.append(loop.time() - asked - 0.001)

        sent_before = a.presence.chunks_sent
        probing = asyncio.create_task(probe())
        b = await cluster.start(3)
        await async_wait_until(lambda: len(keys(b)) == total, 20, "the 10,000 presences on the new node")
        probing.cancel()
        assert a.presence.chunks_sent - sent_before == total // CHUNK
        assert b.presence.list(ROOM)["user42"]["metas"][0]["n"] == 42
        print(f"10,000 presences synced in {total // CHUNK} chunks; longest loop stall {max(stalls) * 1000:.1f} ms")


async def test_tracker_messages_are_the_servers_own_and_a_malformed_one_is_dropped_with_one_line(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    async with cluster_of(2, 3) as cluster:
        a, b = cluster.servers[2], cluster.servers[3]
        client = await PhoenixClient.connect(a.port, host=address(2), vsn="2.0.0")
        reply = await client.join(TOPIC, {"name": "eve"})
        assert reply.payload == {"status": "error", "response": {"reason": "unmatched topic"}}
        with pytest.raises(publishing.BadRequest, match="server's own"):
            publishing.message({"topic": TOPIC, "event": "delta", "payload": {}})
        client.close()

        b.pubsub.direct_broadcast(a.name, Broadcast(TOPIC, "delta", {"from": [b.name, 1], "state": {"v": 9}}))
        await async_wait_until(lambda: "dropped a malformed 'delta'" in caplog.text, 3, "the log line")
        assert [r for r in caplog.records if "malformed" in r.getMessage()][0].exc_info is None
        ada, _ = await present(a, "ada")  # and presence goes on
        await same_everywhere(cluster, ["ada"])
        ada.close()


async def test_a_limit_refuses_a_join_with_a_clear_reason() -> None:
    pubsub = PubSub()
    tracker = Tracker(pubsub, Limits(max_per_topic=1))
    tracker.start()
    try:
        first, second = (Peer(V2, pubsub, routes=presence_app.ROUTES, presence=tracker) for _ in range(2))
        joined = first.send("1", "1", ROOM, "phx_join", {"name": "ada"})
        assert [m.event for m in joined] == ["phx_reply", "presence_state"]
        [refused] = second.send("1", "1", ROOM, "phx_join", {"name": "bob"})
        assert refused.payload == {"status": "error", "response": {"reason": "presence limit reached"}}
        assert list(tracker.list(ROOM)) == ["ada"]
    finally:
        tracker.stop()

