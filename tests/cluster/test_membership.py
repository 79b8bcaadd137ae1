"""Several real Nodes in one process, on 127.0.0.x and a shared free port: the mesh, boot
sync, refusals, liveness, the send queue, order, and control queries."""

from __future__ import annotations

import asyncio
import logging
import socket
import time

import pytest

from server.cluster import BootError, ControlError, Node, control
from server.cluster.admission import MAX_HANDSHAKES
from server.cluster.framing import FrameType, encode, encode_json
from server.cluster.handshake import HandshakeError, Reason
from server.settings import Cookie, Distribution

from inprocess import SECRET, Nodes, address, connect_as, name, start_all
from support.node_processes import established_streams
from support.server_process import async_wait_until


@pytest.fixture(autouse=True)
def cluster_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="gossipy.cluster")
    return caplog


def lines(caplog: pytest.LogCaptureFixture, pattern: str, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if pattern in r.getMessage() and r.levelno >= level]


def assert_no_secret(caplog: pytest.LogCaptureFixture) -> None:
    assert SECRET not in caplog.text


async def mesh(*members, timeout: float = 3.0) -> None:
    names = {m.node.name for m in members}
    await async_wait_until(lambda: all(set(m.node.connected_nodes()) == names - {m.node.name} for m in members),
                           timeout, f"a full mesh of {sorted(names)}")


# ---- the mesh ---------------------------------------------------------------------------------

async def test_three_nodes_mesh_and_a_broadcast_crosses_to_each_node_once(cluster_logs) -> None:
    async with Nodes() as nodes:
        members = [nodes.node(i, sync=[2, 3, 4]) for i in (2, 3, 4)]
        for m in members:
            for _ in range(4):  # many subscribers on a node still mean one frame to that node
                m.pubsub.subscribe("room:1", type(m.recorder)())
        await start_all(*members)
        await mesh(*members)
        for i, sender in enumerate(members):
            sender.shout({"from": i})
        await async_wait_until(lambda: all(len(m.recorder.got) == 3 for m in members), what="three shouts each")
        assert all(sorted(p["from"] for p in m.recorder.payloads()) == [0, 1, 2] for m in members)
        assert [m.pubsub.from_peers for m in members] == [3, 3, 3]  # 2 from peers + 1 local each
        assert len(lines(cluster_logs, "node up:", logging.INFO)) == 6
    assert_no_secret(cluster_logs)


async def test_a_node_listing_one_member_links_to_all_and_they_need_no_change() -> None:
    async with Nodes() as nodes:
        first = [nodes.node(i, sync=[2, 3, 4]) for i in (2, 3, 4)]
        await start_all(*first)
        await mesh(*first)
        newcomer = nodes.node(5, sync=[2])
        started = time.monotonic()
        await newcomer.node.start()
        await mesh(*first, newcomer, timeout=2.0)
        assert time.monotonic() - started < 2.0
        newcomer.shout("hello")
        await async_wait_until(lambda: all(m.recorder.payloads() == ["hello"] for m in first))


async def test_simultaneous_dials_leave_one_stream_per_pair(cluster_logs) -> None:
    for _ in range(5):
        cluster_logs.clear()
        async with Nodes() as nodes:
            members = [nodes.node(i, sync=[2, 3, 4, 5]) for i in (2, 3, 4, 5)]
            await start_all(*members)
            await mesh(*members)
            await asyncio.sleep(0.3)  # any extra stream would have shown up (or flapped) by now
            streams = established_streams(nodes.port, [address(i) for i in (2, 3, 4, 5)])
            assert sorted(streams.values()) == [1] * 6, streams
            assert len(lines(cluster_logs, "node up:", logging.INFO)) == 12
            assert not lines(cluster_logs, "node down:") and not lines(cluster_logs, "second stream")


# ---- boot sync ----------------------------------------------------------------------------------

async def test_unreachable_optional_nodes_are_logged_and_skipped_after_the_timeout(cluster_logs) -> None:
    async with Nodes() as nodes:
        lonely = nodes.node(2, sync=[9], sync_nodes_timeout_ms=300)
        started = time.monotonic()
        await lonely.node.start()
        assert 0.3 <= time.monotonic() - started < 2.0
        [warning] = lines(cluster_logs, "sync_nodes_optional", logging.WARNING)
        assert name(9) in warning and "300 ms" in warning and "Connection refused" in warning


async def test_an_optional_node_that_comes_later_is_connected_by_the_redial() -> None:
    async with Nodes() as nodes:
        early = nodes.node(2, sync=[3], sync_nodes_timeout_ms=0)
        late = nodes.node(3)  # lists nobody: only the redial can join them
        await early.node.start()
        await asyncio.sleep(1.0)
        await late.node.start()
        await mesh(early, late, timeout=3.5)


async def test_a_missing_mandatory_node_fails_boot_naming_it() -> None:
    async with Nodes() as nodes:
        other = nodes.node(3)
        await other.node.start()
        strict = nodes.node(2, sync=[3], mandatory=[9, 3], sync_nodes_timeout_ms=300)
        with pytest.raises(BootError) as failed:
            await strict.node.start()
        message = str(failed.value)
        assert name(9) in message and name(3) not in message and "300 ms" in message
        # it let go of its port and told the node it did reach that it left
        await async_wait_until(lambda: other.node.connected_nodes() == [])
        again = nodes.node(2)
        await again.node.start()


async def test_a_taken_port_is_a_boot_error() -> None:
    async with Nodes() as nodes:
        await nodes.node(2).node.start()
        with pytest.raises(BootError, match="cannot listen for peer nodes on 127.0.0.2"):
            await nodes.node(2).node.start()


# ---- refusals -----------------------------------------------------------------------------------

async def test_a_wrong_cookie_is_refused_on_both_sides_and_never_logged(cluster_logs) -> None:
    async with Nodes() as nodes:
        b = nodes.node(3)
        a = nodes.node(2, sync=[3], sync_nodes_timeout_ms=300, cookie=Cookie("a-different-cookie"))
        await b.node.start()
        await a.node.start()
        assert a.node.connected_nodes() == b.node.connected_nodes() == []
        [refused] = lines(cluster_logs, "refused connection from 127.0.0.2:", logging.WARNING)[:1]
        assert f"(claims {name(2)}): bad_cookie" in refused
        assert lines(cluster_logs, f"cannot connect to {name(3)}", logging.WARNING)[0].endswith(
            "refused by the peer: bad_cookie: refused by the peer")
    assert_no_secret(cluster_logs)
    assert "a-different-cookie" not in cluster_logs.text


async def test_a_duplicate_name_is_refused_and_the_original_keeps_its_stream(cluster_logs) -> None:
    async with Nodes() as nodes:
        original, other = nodes.node(2, sync=[3]), nodes.node(3)
        await start_all(original, other)
        await mesh(original, other)
        impostor = nodes.node(2, sync=[3], bind=address(9), sync_nodes_timeout_ms=300)
        await impostor.node.start()
        assert impostor.node.connected_nodes() == []
        assert lines(cluster_logs, f"(claims {name(2)}): duplicate_name", logging.WARNING)
        assert lines(cluster_logs, "refused by the peer: duplicate_name", logging.WARNING)
        original.shout("still here")
        await async_wait_until(lambda: other.recorder.payloads() == ["still here"])
        assert not lines(cluster_logs, "node down:")


async def test_short_and_long_names_do_not_mix(cluster_logs) -> None:
    async with Nodes() as nodes:
        await nodes.node(3).node.start()
        reader, writer = await asyncio.open_connection(address(3), nodes.port)
        writer.write(encode_json(FrameType.NAME, {"name": "gossipy@ws1", "creation": 1, "versions": [1, 1],
                                                  "hidden": False}))
        assert await asyncio.wait_for(reader.read(), 2.0) == \
            encode_json(FrameType.REFUSE, {"reason": "name_mode_mismatch"})
        writer.close()
        await async_wait_until(lambda: lines(cluster_logs, "name_mode_mismatch: gossipy@ws1 is a short name; this node uses long names"))


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n", b"\xff\xff\xff\xff", b"\x00\x00\x00\x05\x01{{{{",
                                     b"\x00\x00\x00\x01\x10"],
                         ids=["http", "oversized prefix", "bad json", "tick first"])
async def test_garbage_on_the_port_is_refused_and_the_mesh_is_untouched(cluster_logs, garbage: bytes) -> None:
    async with Nodes() as nodes:
        a, b = nodes.node(2, sync=[3]), nodes.node(3)
        await start_all(a, b)
        await mesh(a, b)
        reader, writer = await asyncio.open_connection(address(2), nodes.port)
        writer.write(garbage)
        assert await asyncio.wait_for(reader.read(), 2.0) == encode_json(FrameType.REFUSE, {"reason": "malformed"})
        writer.close()
        [refused] = lines(cluster_logs, "refused connection from", logging.WARNING)
        assert "malformed" in refused
        a.shout("after")
        await async_wait_until(lambda: b.recorder.payloads() == ["after"])
        assert not lines(cluster_logs, "node down:")


async def test_a_stalled_handshake_times_out(cluster_logs) -> None:
    async with Nodes() as nodes:
        await nodes.node(2, node_options={"handshake_timeout": 0.3}).node.start()
        reader, writer = await asyncio.open_connection(address(2), nodes.port)
        writer.write(encode_json(FrameType.NAME, {"name": name(7), "creation": 1, "versions": [1, 1],
                                                  "hidden": False})[:-3])  # a half-sent NAME
        started = time.monotonic()
        assert await asyncio.wait_for(reader.read(), 2.0) == b""
        assert 0.25 < time.monotonic() - started < 2.0
        assert lines(cluster_logs, "timeout: no complete handshake within 0.3 s (stalled in recv_name)",
                     logging.WARNING)


async def test_repeated_failures_from_one_address_are_throttled(cluster_logs) -> None:
    async with Nodes() as nodes:
        await nodes.node(2).node.start()
        reasons = []
        for _ in range(7):
            with pytest.raises(HandshakeError) as refused:
                await connect_as(name(50), 2, nodes.port, cookie=Cookie("guess"), source="127.0.0.50")
            reasons.append(refused.value.reason)
        assert reasons == [Reason.BAD_COOKIE] * 5 + [Reason.NOT_ALLOWED] * 2
        assert len(lines(cluster_logs, "throttling 127.0.0.50", logging.WARNING)) == 1
        # another address is not affected
        await connect_as(name(60), 2, nodes.port, source="127.0.0.60")


async def test_a_flood_of_idle_connections_cannot_use_up_the_node(cluster_logs) -> None:
    async with Nodes() as nodes:
        a, b = nodes.node(2, node_options={"handshake_timeout": 3.0}), nodes.node(3, sync=[2])
        await a.node.start()
        # from many addresses: one address gets MAX_HANDSHAKES_PER_ADDRESS slots at most
        idle = [await asyncio.open_connection(address(2), nodes.port, local_addr=(f"127.0.1.{1 + i % 32}", 0))
                for i in range(MAX_HANDSHAKES)]
        await async_wait_until(lambda: len(a.node._handshakes) == MAX_HANDSHAKES)
        extra = [await asyncio.open_connection(address(2), nodes.port, local_addr=("127.0.1.99", 0))
                 for _ in range(3)]
        for reader, _ in extra:
            assert await asyncio.wait_for(reader.read(), 1.0) == b""  # closed at once
        assert len(lines(cluster_logs, "handshakes already in progress", logging.WARNING)) == 1
        for _, writer in idle + extra:
            writer.close()
        await async_wait_until(lambda: not a.node._handshakes)
        await b.node.start()  # a real peer gets in once the flood is gone
        await mesh(a, b)


# ---- liveness -----------------------------------------------------------------------------------

async def test_ticks_keep_an_idle_pair_up_and_silence_brings_a_peer_down(cluster_logs) -> None:
    async with Nodes() as nodes:
        a, b = nodes.node(2, sync=[3], net_ticktime=0.4), nodes.node(3, net_ticktime=0.4)
        await start_all(a, b)
        await mesh(a, b)
        await asyncio.sleep(1.5)  # nearly four ticktimes, with nothing to say but ticks
        assert a.node.connected_nodes() == [name(3)] and not lines(cluster_logs, "node down:")
        # a peer that completes the handshake and then falls silent (frozen, unplugged)
        reader, writer, _ = await connect_as(name(7), 2, nodes.port)
        await async_wait_until(lambda: name(7) in a.node.connected_nodes())
        started = time.monotonic()
        await async_wait_until(lambda: name(7) not in a.node.connected_nodes(), timeout=2.0)
        assert 0.3 < time.monotonic() - started < 1.5
        assert lines(cluster_logs, f"node down: {name(7)}: nothing heard for 0.4 s (net_ticktime)", logging.INFO)
        writer.close()


async def test_a_reset_is_down_at_once_and_the_pair_reconnects(cluster_logs) -> None:
    async with Nodes() as nodes:
        a, b = nodes.node(2, sync=[3]), nodes.node(3)
        await start_all(a, b)
        await mesh(a, b)
        reader, writer, _ = await connect_as(name(7), 2, nodes.port)
        await async_wait_until(lambda: name(7) in a.node.connected_nodes())
        writer.transport.abort()
        await async_wait_until(lambda: name(7) not in a.node.connected_nodes(), timeout=1.0)  # ticktime is 2 s
        # a dropped stream between two real nodes: both still want it, so it comes back
        a.node._up[name(3)].close("dropped by the test")
        assert lines(cluster_logs, f"node down: {name(3)}: dropped by the test", logging.INFO)
        await mesh(a, b, timeout=1.0)


async def test_a_clean_stop_is_down_at_once_on_the_peers(cluster_logs) -> None:
    async with Nodes() as nodes:
        members = [nodes.node(i, sync=[2, 3, 4]) for i in (2, 3, 4)]
        await start_all(*members)
        await mesh(*members)
        started = time.monotonic()
        await members[2].node.stop()
        await mesh(*members[:2], timeout=1.0)
        assert time.monotonic() - started < 1.0  # ticktime is 2 s: this was the LEAVE
        assert len(lines(cluster_logs, f"node down: {name(4)}: it left", logging.INFO)) == 2
        await members[2].node.stop()  # a second stop is harmless


async def test_a_peer_that_does_not_read_is_dropped_when_its_queue_overflows(cluster_logs) -> None:
    async with Nodes() as nodes:
        a = nodes.node(2, node_options={"max_queue": 256 * 1024})
        await a.node.start()
        reader, writer, _ = await connect_as(name(7), 2, nodes.port)
        writer.transport.pause_reading()  # a stalled peer: its socket buffers fill, then ours
        await async_wait_until(lambda: a.node.connected_nodes() == [name(7)])
        chunk = b'["room:1","shout","' + b"x" * 60_000 + b'"]'
        for _ in range(2000):
            a.node.broadcast(chunk)
            await asyncio.sleep(0)
            if not a.node.connected_nodes():
                break
        assert a.node.connected_nodes() == []
        assert lines(cluster_logs, f"node down: {name(7)}: send queue overflow", logging.INFO)
        # and it is redialed (the fake peer has no listener, so that fails, quietly after the first time)
        await async_wait_until(lambda: lines(cluster_logs, f"cannot connect to {name(7)}", logging.INFO))
        writer.close()


# ---- what crosses -----------------------------------------------------------------------------

async def test_one_senders_broadcasts_arrive_in_order() -> None:
    async with Nodes() as nodes:
        members = [nodes.node(i, sync=[2, 3, 4]) for i in (2, 3, 4)]
        await start_all(*members)
        await mesh(*members)
        for n in range(1000):
            members[0].shout({"n": n})
            members[1].shout({"m": n})
            if n % 100 == 0:
                await asyncio.sleep(0)
        receiver = members[2].recorder
        await async_wait_until(lambda: len(receiver.got) == 2000)
        assert [p["n"] for p in receiver.payloads() if "n" in p] == list(range(1000))
        assert [p["m"] for p in receiver.payloads() if "m" in p] == list(range(1000))


async def test_a_malformed_broadcast_from_a_peer_is_dropped_and_the_stream_lives(cluster_logs) -> None:
    async with Nodes() as nodes:
        a = nodes.node(2)
        await a.node.start()
        reader, writer, _ = await connect_as(name(7), 2, nodes.port)
        for bad in (b"not json", b'{"topic":"room:1"}', b'["room:1",2,{}]'):
            writer.write(encode(FrameType.BROADCAST, bad))
        writer.write(encode(FrameType.BROADCAST, b'["room:1","shout",{"ok":true}]'))
        await async_wait_until(lambda: a.recorder.payloads() == [{"ok": True}])
        assert len(lines(cluster_logs, f"dropped a malformed broadcast from {name(7)}", logging.WARNING)) == 3
        assert a.node.connected_nodes() == [name(7)]
        writer.close()


async def test_a_broadcast_too_large_to_cross_is_logged_and_kept_local(cluster_logs) -> None:
    async with Nodes() as nodes:
        a, b = nodes.node(2, sync=[3]), nodes.node(3)
        await start_all(a, b)
        await mesh(a, b)
        a.shout("x" * (9 * 1024 * 1024))
        a.shout("small")
        await async_wait_until(lambda: b.recorder.payloads() == ["small"])
        assert len(a.recorder.got) == 2
        assert lines(cluster_logs, "not sent to the other nodes", logging.ERROR)


async def test_a_member_list_naming_other_kinds_of_names_is_ignored_politely(cluster_logs) -> None:
    async with Nodes() as nodes:
        a = nodes.node(2)
        await a.node.start()
        reader, writer, _ = await connect_as(name(7), 2, nodes.port)
        writer.write(encode_json(FrameType.MEMBERS, {"nodes": ["gossipy@ws1", 7, name(2)]}))
        writer.write(encode_json(FrameType.MEMBERS, ["not", "an", "object"]))
        await async_wait_until(lambda: lines(cluster_logs, "ignored a malformed member list"))
        assert len(lines(cluster_logs, "ignored member", logging.WARNING)) == 2
        assert a.node.connected_nodes() == [name(7)]
        writer.close()


# ---- control ----------------------------------------------------------------------------------

async def test_ping_and_nodes_from_a_hidden_node(cluster_logs) -> None:
    async with Nodes() as nodes:
        a, b = nodes.node(2, sync=[3]), nodes.node(3)
        await start_all(a, b)
        await mesh(a, b)
        assert await control.query(nodes.distribution(2), "ping") == "pong"
        assert await control.query(nodes.distribution(2), "nodes") == [name(2), name(3)]
        # the asker was never a member
        assert not [line for line in lines(cluster_logs, "node up:") if "ctl" in line]
        assert a.node.connected_nodes() == [name(3)]


async def test_nodes_answers_past_the_handshake_frame_limit() -> None:
    async with Nodes() as nodes:
        await nodes.node(2).node.start()
        members = sorted(f"{'n' * 200}{i}@127.0.0.7" for i in range(25))  # 5 KiB of names
        streams = [await connect_as(member, 2, nodes.port) for member in members]
        assert await control.query(nodes.distribution(2), "nodes") == [name(2)] + members
        for _, writer, _ in streams:
            writer.close()


@pytest.mark.parametrize("case, message", [
    ("bad cookie", "refused the connection: bad cookie"),
    ("not running", "is not running (nothing listens there)"),
    ("wrong node", f"another node answers at that address: dialed {name(4)}, but {name(2)} answered"),
])
async def test_control_errors_say_what_is_wrong(case: str, message: str) -> None:
    async with Nodes() as nodes:
        await nodes.node(2).node.start()
        asked = {"bad cookie": nodes.distribution(2, cookie=Cookie("wrong")),
                 "not running": nodes.distribution(3),
                 "wrong node": nodes.distribution(4, bind=address(2))}[case]
        with pytest.raises(ControlError) as failed:
            await control.query(asked, "ping", timeout=2.0)
        assert message in str(failed.value)


async def test_a_stalled_node_is_a_control_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.8", 0))
        silent.listen()
        port = silent.getsockname()[1]
        distribution = Nodes().distribution(8, port=port)
        with pytest.raises(ControlError, match=r"did not answer within 0.3 s"):
            await control.query(distribution, "ping", timeout=0.3)


def test_a_node_needs_a_name_and_a_cookie() -> None:
    with pytest.raises(ValueError, match="node name and a cookie"):
        Node(Distribution())
