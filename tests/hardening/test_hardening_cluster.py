"""Faults in a cluster of real node processes on 127.0.0.x (tests/support/node_processes.py), with real
websocket clients: a partition and its healing (through tests/support/tcp_proxy.py), kill -9
under steady traffic, SIGTERM with a client that never answers, a peer that stalls (SIGSTOP).

What the cluster tests of issue 3 already show is not repeated here (tests/cluster/
test_cluster_processes.py: kill -9 without traffic, SIGTERM's "it left", per-sender order).
"""

from __future__ import annotations

import asyncio
import signal
import time
from datetime import datetime
from typing import Any

import pytest

from server.cluster.membership import BACKOFF_CAP, HANDSHAKE_TIMEOUT

from support.node_processes import COOKIE, NodeProcesses, address, node_name
from support.phoenix_client import TOPIC, Closed, Frame, PhoenixClient, RawWebSocket, join_room
from support.server_process import async_wait_until
from support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.cluster

TICKTIME = 2  # kernel.net_ticktime for these clusters: a silent peer is down within ~2 s


def shouts(frames: list[Frame], key: str = "message") -> list[Any]:
    return [f.payload.get(key) for f in frames if f.event == "shout"]


async def collect(client: PhoenixClient, frames: list[Frame]) -> None:
    """Appends every frame the client gets to ``frames`` until it is cancelled or closed."""
    try:
        while True:
            frames.append(await client.receive(timeout=60))
    except (Closed, asyncio.TimeoutError):
        pass


def cookie_forms(cookie: str) -> list[bytes]:
    """The cookie as it could leak: raw, hex, base64, and the digests of it alone."""
    import base64
    import hashlib
    raw = cookie.encode()
    forms = [raw, raw.hex().encode(), raw.hex().upper().encode(), base64.b64encode(raw).rstrip(b"="),
             base64.urlsafe_b64encode(raw).rstrip(b"="), cookie.encode("utf-16-le")]
    for name in ("md5", "sha1", "sha256", "sha512"):
        forms.append(hashlib.new(name, raw).hexdigest().encode())
    return forms


async def test_a_partition_keeps_each_side_serving_and_the_mesh_re_forms_after_it(tmp_path) -> None:
    sections = {"kernel": {"net_ticktime": TICKTIME}}
    async with NodeProcesses(tmp_path, sections=sections, addresses=range(2, 14)) as cluster:
        port = cluster.dist_port
        # Each node binds its distribution port to 127.0.0.1x; its name's address is the relay.
        with TcpProxy((address(2), port), (address(12), port)) as to_a, \
                TcpProxy((address(3), port), (address(13), port)) as to_b:
            a, b = [cluster.spawn(i, sync=[2, 3], sections={"node": {"dist_bind": address(10 + i)}}) for i in (2, 3)]
            await async_wait_until(lambda: a.serving() and b.serving(), 15, "both nodes to serve")
            await cluster.async_wait_for_mesh([a, b])
            assert to_a.connections + to_b.connections >= 1  # the stream goes through a relay
            clients = {"a1": await join_room(a), "a2": await join_room(a, "2.0.0"),
                       "b1": await join_room(b), "b2": await join_room(b, "2.0.0")}
            seen: dict[str, list[Frame]] = {name: [] for name in clients}
            readers = [asyncio.ensure_future(collect(c, seen[n])) for n, c in clients.items()]

            async def everyone_has(message: str, names: str = "a1 a2 b1 b2") -> None:
                await async_wait_until(lambda: all(message in shouts(seen[n]) for n in names.split()), 5,
                                       f"{message!r} at {names}")

            await clients["a1"].shout(TOPIC, {"message": "before"})
            await everyone_has("before")

            for proxy in (to_a, to_b):
                proxy.cut()
            cut_at = time.monotonic()
            # each side goes on serving its own clients at once, before it even notices
            await clients["a1"].shout(TOPIC, {"message": "during from a, early"})
            await clients["b2"].shout(TOPIC, {"message": "during from b, early"})
            await everyone_has("during from a, early", "a1 a2")
            await everyone_has("during from b, early", "b1 b2")
            for node, other in ((a, b), (b, a)):
                await node.async_wait_for_line(rf"node down: {other.name}: nothing heard for {TICKTIME} s", timeout=TICKTIME + 3)
            noticed = time.monotonic() - cut_at
            await clients["a2"].shout(TOPIC, {"message": "during from a, late"})
            await clients["b1"].shout(TOPIC, {"message": "during from b, late"})
            await everyone_has("during from a, late", "a1 a2")
            await everyone_has("during from b, late", "b1 b2")
            assert a.connected() == b.connected() == []
            # Longer than a dial's handshake timeout: the redials made during the cut fail (and
            # are retried with backoff), as a dial into a real partition would.
            await a.async_wait_for_line(rf"cannot connect to {b.name} .*no complete handshake", timeout=HANDSHAKE_TIMEOUT + 2)

            for proxy in (to_a, to_b):
                proxy.heal()
            healed_at = time.monotonic()
            await cluster.async_wait_for_mesh([a, b], timeout=BACKOFF_CAP + 3)
            re_formed = time.monotonic() - healed_at
            await clients["b1"].shout(TOPIC, {"message": "after from b"})
            await clients["a2"].shout(TOPIC, {"message": "after from a"})
            await everyone_has("after from b")
            await everyone_has("after from a")
            await asyncio.sleep(0.3)
            for reader in readers:
                reader.cancel()

            # What was said during the cut stayed on its side: not queued, not replayed after.
            for name in ("a1", "a2"):
                assert not [m for m in shouts(seen[name]) if m and "from b" in m and m != "after from b"], seen[name]
            for name in ("b1", "b2"):
                assert not [m for m in shouts(seen[name]) if m and "from a" in m and m != "after from a"], seen[name]
            # and everyone saw each message once
            for name, frames in seen.items():
                assert len(shouts(frames)) == len(set(shouts(frames))), (name, shouts(frames))
            print(f"partition noticed after {noticed:.2f} s (net_ticktime {TICKTIME} s); mesh re-formed "
                  f"{re_formed:.2f} s after healing")
            assert noticed < TICKTIME + 1.5
            assert re_formed < BACKOFF_CAP + 1.0, re_formed

            # The peer streams carried the handshake and the broadcasts, and never the cookie.
            captured = bytes(to_a.captured + to_b.captured)
            assert b"before" in captured and b"after from a" in captured
            for form in cookie_forms(COOKIE):
                assert form not in captured, form
            for client in clients.values():
                client.close()
        for node in (a, b):
            node.assert_clean()
            assert COOKIE not in node.log()


async def test_kill_9_under_steady_traffic_loses_and_repeats_nothing_and_its_clients_move(tmp_path) -> None:
    rate, count = 100, 300  # shouts a second per sender, and how many: 3 s of traffic
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        survivors, victim = nodes[:2], nodes[2]
        senders = [await join_room(survivors[0]), await join_room(survivors[1], "2.0.0")]
        receivers = [await join_room(node, vsn) for node in survivors for vsn in (None, "2.0.0")]
        doomed = [await join_room(victim), await join_room(victim, "2.0.0")]
        seen: list[list[Frame]] = [[] for _ in receivers + senders]
        readers = [asyncio.ensure_future(collect(c, f)) for c, f in zip(receivers + senders, seen, strict=True)]
        moved: list[list[Frame]] = [[], []]
        moved_after: list[float] = []
        killed_at = 0.0

        async def send(index: int, client: PhoenixClient) -> None:
            started = time.monotonic()
            for n in range(count):
                await client.shout(TOPIC, {"sender": index, "n": n})
                await asyncio.sleep(max(0.0, started + (n + 1) / rate - time.monotonic()))

        async def kill() -> None:
            nonlocal killed_at
            await asyncio.sleep(count / rate / 3)
            killed_at = time.monotonic()
            victim.kill()

        async def move(index: int, client: PhoenixClient) -> None:
            """What phoenix.js does after an unclean close: reconnect (here to a survivor), rejoin."""
            with pytest.raises(Closed) as closed:
                while True:
                    await client.receive(timeout=10)
            assert closed.value.code in (None, 1006)
            again = await join_room(survivors[index], client.vsn)
            moved_after.append(time.monotonic() - killed_at)
            await collect(again, moved[index])

        movers = [asyncio.ensure_future(move(i, c)) for i, c in enumerate(doomed)]
        await asyncio.gather(*(send(i, c) for i, c in enumerate(senders)), kill())
        everyone = seen + moved
        await async_wait_until(lambda: all(max([f.payload["n"] for f in fs if f.event == "shout"
                                                and f.payload["sender"] == s] or [-1]) == count - 1
                                           for fs in everyone for s in (0, 1)), 10, "the last shouts")
        await asyncio.sleep(0.2)
        for task in readers + movers:
            task.cancel()

        for frames in seen:  # the survivors' clients: everything, once, in each sender's order
            for sender in (0, 1):
                assert [f.payload["n"] for f in frames if f.event == "shout" and f.payload["sender"] == sender] \
                    == list(range(count))
        for frames in moved:  # the moved clients: from when they rejoined, no gap and no repeat
            for sender in (0, 1):
                got = [f.payload["n"] for f in frames if f.event == "shout" and f.payload["sender"] == sender]
                assert got and got == list(range(got[0], count)), got
        assert max(moved_after) < 2.0, moved_after
        for node in survivors:
            assert await node.async_wait_for_line(rf"node down: {node_name(4)}: the connection was (closed|reset)")
            node.assert_clean()
        print(f"kill -9 under {2 * rate} shouts/s: {len(receivers) + len(senders)} survivor clients got all "
              f"{2 * count} each, in order, once; the victim's clients rejoined a survivor within "
              f"{max(moved_after):.2f} s")
        for client in senders + receivers:
            client.close()


async def test_sigterm_closes_clients_1001_tells_the_peers_and_exits_0_even_with_a_client_that_never_answers(
        tmp_path) -> None:
    shutdown_timeout = 1.0
    async with NodeProcesses(tmp_path, sections={"endpoint": {"shutdown_timeout": shutdown_timeout}}) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        staying, leaving = nodes[:2], nodes[2]
        clients = [await join_room(leaving, vsn) for vsn in (None, "2.0.0", None, "2.0.0")]
        stuck = await asyncio.get_running_loop().run_in_executor(
            None, lambda: RawWebSocket.connect(leaving.port, host=leaving.host, receive_buffer=4096))
        stuck.send_text('{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}')  # and never reads again
        await async_wait_until(lambda: len(leaving.lines("JOIN room:1")) == 5, what="five joins")
        others = [await join_room(node) for node in staying]

        signalled = time.monotonic()
        leaving.send_signal(signal.SIGTERM)
        assert [await c.expect_close() for c in clients] == [1001] * 4
        closed = time.monotonic() - signalled
        for node in staying:
            await node.async_wait_for_line(rf"node down: {node_name(4)}: it left", timeout=1.0)
        assert await leaving.exit_status(timeout=shutdown_timeout + 5) == 0
        exited = time.monotonic() - signalled
        stopping = logged(leaving.wait_for_line("stopping"))
        told = [logged(node.wait_for_line(rf"node down: {node_name(4)}: it left")) - stopping for node in staying]
        await cluster.async_wait_for_mesh(staying)
        await others[0].shout(TOPIC, {"message": "carry on"})
        for client in others:
            await client.receive_until(lambda f: f.event == "shout")
            client.close()
        stuck.close()
        print(f"SIGTERM: clients closed 1001 within {closed:.2f} s, peers told within {max(told):.2f} s, "
              f"exit 0 after {exited:.2f} s (shutdown_timeout {shutdown_timeout:g} s, one client never answering)")
        assert closed < 0.5 and max(told) < 0.5
        assert exited < shutdown_timeout + 1.5
        leaving_log = leaving.log()
        assert "Traceback" not in leaving_log and COOKIE not in leaving_log


def logged(line: str) -> float:
    """The time of a log line, in seconds (the nodes share this machine's clock)."""
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f").timestamp()


async def test_a_stalled_peer_is_dropped_at_its_send_queue_bound_logged_and_redialed(tmp_path) -> None:
    """SIGSTOP freezes a node: its peer streams stop being read. A node broadcasting to it fills
    the kernel's buffers, then its own send queue up to the bound (MAX_QUEUE), and drops it there;
    its own clients and the third node's never wait. After SIGCONT the stream is dialed again."""
    big = "x" * 60_000
    sections = {"kernel": {"net_ticktime": 60}}  # the bound, not the tick timeout, must end it
    async with NodeProcesses(tmp_path, sections=sections) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        sender_node, frozen, third = nodes
        shouter = await join_room(sender_node, "2.0.0")
        watchers = [shouter, await join_room(sender_node), await join_room(third, "2.0.0")]
        got: list[list[int]] = [[] for _ in watchers]

        async def count(client: PhoenixClient, into: list[int]) -> None:
            try:
                while True:
                    frame = await client.receive(timeout=60)
                    if frame.event == "shout":
                        into.append(frame.payload["n"])
            except (Closed, asyncio.TimeoutError):
                pass

        readers = [asyncio.ensure_future(count(c, g)) for c, g in zip(watchers, got, strict=True)]
        overflow = rf"node down: {frozen.name}: send queue overflow"
        peak = sender_node.rss_kib("VmHWM")
        frozen.send_signal(signal.SIGSTOP)
        try:
            sent = 0
            for sent in range(1, 2000):
                await shouter.shout(TOPIC, {"n": sent - 1, "message": big})
                if sent % 20 == 0:
                    await async_wait_until(lambda sent=sent: all(len(g) >= sent - 20 for g in got), 10, "the watchers")
                    if sender_node.has_line(overflow):
                        break
            dropped = await sender_node.async_wait_for_line(overflow, timeout=5)
            await async_wait_until(lambda: all(len(g) == sent for g in got), 10, "every shout at every watcher")
            assert all(g == list(range(sent)) for g in got)
            grew_mib = (sender_node.rss_kib("VmHWM") - peak) / 1024
            assert third.connected() == sorted([sender_node.name, frozen.name])  # its stream only ticks
        finally:
            frozen.send_signal(signal.SIGCONT)
        await cluster.async_wait_for_mesh(nodes, timeout=BACKOFF_CAP + 3)
        assert len(sender_node.lines(rf"node up: {frozen.name}")) == 2
        late = await join_room(frozen)
        await shouter.shout(TOPIC, {"n": -1, "message": "after"})
        await late.receive_until(lambda f: f.event == "shout" and f.payload["n"] == -1)
        for reader in readers:
            reader.cancel()
        print(f"stalled peer: dropped after {sent} shouts of 60 kB ({sent * 60 / 1000:.0f} MB) while frozen; "
              f"the sender's peak RSS grew {grew_mib:.1f} MiB; redialed after SIGCONT\n  {dropped}")
        assert grew_mib < 48
        for client in watchers + [late]:
            client.close()
        for node in nodes:
            node.assert_clean()
