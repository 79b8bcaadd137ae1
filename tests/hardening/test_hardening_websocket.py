"""Abuse of the websocket endpoint of a real node (``python -m server``), one test per kind.

Each one: the abuser gets a clear close (or an error reply), the node logs one warning line
(never a traceback or an ERROR), another client of the same node keeps chatting, and the
node's memory stays bounded (VmRSS and open descriptors from /proc). The slow consumer is in
tests/test_node.py (test_slow_consumer_is_dropped_and_the_others_carry_on), as are the basic
oversized frame (1009), bad frames (1011) and V2 binary frames (1003).
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import struct
import time
from typing import Callable

import pytest

from support.phoenix_client import PhoenixClient, RawWebSocket, assert_shout_reaches, join_room, upgrade_request
from support.server_process import ServerProcess, async_wait_until

JOIN_V1 = '{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}'


async def still_chatting(node: ServerProcess, *clients: PhoenixClient, message: str = "still here") -> None:
    """A fresh client shouts; it and ``clients`` (in the room) all get it. Then all of them
    leave (so the node's stop does not wait out its shutdown_timeout for them)."""
    fresh = await join_room(node, "2.0.0")
    await assert_shout_reaches(fresh, [fresh, *clients], message)
    for client in (fresh, *clients):
        client.close()
        await client.expect_close()


async def in_thread(function: Callable, *args):
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


def one_warning(node: ServerProcess, *words: str) -> str:
    [warning] = node.warnings()
    for word in words:
        assert word in warning, warning
    node.assert_clean()
    return warning


# ---- frames json.loads takes but no client may send ------------------------------------------------

@pytest.mark.parametrize("vsn, frame", [
    ("2.0.0", '["1","2","room:1","shout",{"message":NaN}]'),
    ("2.0.0", '["1","2","room:1","shout",{"message":1e400}]'),
    (None, '{"topic":"room:\\ud800","event":"phx_join","payload":{},"ref":"2"}'),
    (None, b'{"topic":"room:1","event":"shout","payload":{"message":"\xed\xa0\x80"},"ref":"2"}'),
], ids=["nan", "1e400", "lone-surrogate-escape", "cesu-8-binary"])
async def test_a_frame_that_cannot_be_written_back_is_a_bad_frame_not_a_broadcast(
        node: ServerProcess, vsn: str | None, frame: str | bytes) -> None:
    sender, listener = await join_room(node, vsn), await join_room(node)
    await sender.send_raw(frame)
    assert await sender.expect_close() == 1011
    await listener.assert_silent(0.2)  # nothing was broadcast
    await still_chatting(node, listener)
    one_warning(node, "bad frame", "not JSON")


# ---- frame-level abuse ------------------------------------------------------------------------------

async def test_a_frame_announcing_exabytes_is_refused_1009_before_any_body(start_node) -> None:
    node = start_node(endpoint={"max_frame_size": 1024})
    listener = await join_room(node)
    rss = node.rss_kib()
    liar = await in_thread(RawWebSocket.connect, node.port)
    liar.send_frame(0x1, b"{", length=2**62)  # the header claims 4 EiB; one byte follows
    assert await in_thread(liar.close_code) == 1009
    liar.close()
    await still_chatting(node, listener)
    assert node.rss_kib() - rss < 2048
    one_warning(node, "max_frame_size")


async def test_fragments_adding_up_past_the_limit_are_refused_1009(start_node) -> None:
    node = start_node(endpoint={"max_frame_size": 4096})
    listener = await join_room(node)
    sender = await in_thread(RawWebSocket.connect, node.port)
    sender.send_frame(0x1, b"[" + b" " * 3000, fin=False)
    sender.send_frame(0x0, b" " * 3000, fin=False)  # 6001 bytes in all: over, though each is under
    assert await in_thread(sender.close_code) == 1009
    sender.close()
    await still_chatting(node, listener)
    one_warning(node, "max_frame_size")


async def test_invalid_utf8_in_a_text_frame_is_closed_1007_with_one_line(node: ServerProcess) -> None:
    listener = await join_room(node)
    sender = await in_thread(RawWebSocket.connect, node.port)
    sender.send_text(JOIN_V1)
    sender.send_frame(0x1, b'{"topic":"room:1","event":"shout","payload":{"message":"\xc3\x28"},"ref":"2"}')
    assert await in_thread(sender.close_code) == 1007
    sender.close()
    await listener.assert_silent(0.2)
    await still_chatting(node, listener)
    one_warning(node, "UTF-8")


async def test_binary_garbage_on_v1_is_a_bad_frame(node: ServerProcess) -> None:
    """V1 takes JSON in binary frames too (as text); garbage there is a bad frame like any other."""
    client, listener = await join_room(node), await join_room(node)
    await client.send_raw(bytes(range(256)))
    assert await client.expect_close() == 1011
    await still_chatting(node, listener)
    one_warning(node, "bad frame")


async def test_frames_after_a_bad_frame_are_not_handled(node: ServerProcess) -> None:
    """Once the node has closed a socket for a bad frame, what the client had already sent
    after it (in the same packet) must not reach the room."""
    listener = await join_room(node)
    sender = await in_thread(RawWebSocket.connect, node.port)
    sender.send_text(JOIN_V1)
    await async_wait_until(lambda: len(node.lines("JOIN room:1")) == 2, what="the second join")
    frames = ["not JSON"] + [f'{{"topic":"room:1","event":"shout","payload":{{"message":"late {n}"}},"ref":"{n}"}}'
                             for n in range(20)]
    await in_thread(sender.sock.sendall, b"".join(_masked_text(f) for f in frames))
    assert await in_thread(sender.close_code) == 1011
    sender.close()
    await listener.assert_silent(0.3)
    await still_chatting(node, listener)
    one_warning(node, "bad frame")


async def test_what_came_before_a_protocol_error_is_handled_then_1002_and_the_node_ends_its_side(
        node: ServerProcess) -> None:
    """A join and a shout, then an unmasked frame, in one packet: the node handles what the
    client sent before it broke the protocol, answers 1002, and half-closes (RFC 6455 7.1.7)
    without reading anything after the offence."""
    listener = await join_room(node)
    sender = await in_thread(RawWebSocket.connect, node.port)
    shout = '{"topic":"room:1","event":"shout","payload":{"message":"before the offence"},"ref":"2"}'
    unmasked = struct.pack("!BB", 0x81, 5) + b"hello"
    late = '{"topic":"room:1","event":"shout","payload":{"message":"after the offence"},"ref":"3"}'
    await in_thread(sender.sock.sendall, b"".join([_masked_text(JOIN_V1), _masked_text(shout), unmasked,
                                                     _masked_text(late)]))
    assert (await listener.receive_until(lambda f: f.event == "shout")).payload == {"message": "before the offence"}
    assert await in_thread(sender.close_code) == 1002
    assert await in_thread(sender.sock.recv, 1) == b""  # the node's FIN follows its close frame
    sender.close()
    await listener.assert_silent(0.3)
    await still_chatting(node, listener)
    one_warning(node, "unmasked")


async def test_a_client_that_closes_then_stops_reading_is_cut_after_the_close_timeout(start_node) -> None:
    """Its close is answered, but the answer waits behind megabytes it never reads: the node
    must not hold the socket (and the bytes) until it stops, only CLOSE_TIMEOUT (5 s)."""
    node = start_node(endpoint={"outbound_buffer": 16 * 1024 * 1024})
    stuck = await in_thread(RawWebSocket.connect, node.port, "127.0.0.1", "/socket/websocket", 4096)
    stuck.send_text(JOIN_V1)
    await async_wait_until(lambda: node.lines("JOIN room:1"), what="the join")
    shouter = await join_room(node, "2.0.0")
    for n in range(100):  # 6 MB for the stuck client: more than the kernel's buffers take
        await shouter.shout("room:1", {"message": f"{n} " + "x" * 60_000})
        await shouter.receive_until(lambda f: f.event == "shout")
    fds = node.open_fds()
    stuck.send_frame(0x8, struct.pack("!H", 1000))
    started = time.monotonic()
    await async_wait_until(lambda: node.open_fds() < fds, timeout=10, what="the stuck socket to be cut")
    assert 4.0 < time.monotonic() - started < 8.0
    stuck.close()
    await still_chatting(node, shouter)
    node.assert_clean()


async def test_a_websocket_upgraded_while_the_node_stops_is_closed_1001(start_node) -> None:
    """An upgrade on a keep-alive HTTP connection that was open when SIGTERM came: the node
    stopped listening, but this connection still reaches it, and its socket must hear 1001
    like the others, not be cut at shutdown_timeout without a word."""
    node = start_node(endpoint={"shutdown_timeout": 3})
    silent = await in_thread(RawWebSocket.connect, node.port)  # never answers its 1001: the stop waits
    sock = socket.create_connection(("127.0.0.1", node.port), timeout=5)
    sock.sendall(f"GET /cluster HTTP/1.1\r\nHost: 127.0.0.1:{node.port}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(4096)
    node.send_signal(signal.SIGTERM)
    await node.async_wait_for_line(r"stopping")
    sock.sendall(upgrade_request("127.0.0.1", node.port))
    late = RawWebSocket(sock)
    response = b""
    while not response.endswith(b"\r\n\r\n"):  # byte by byte: not one byte of a frame
        response += await in_thread(late._read_exactly, 1)
    assert response.startswith(b"HTTP/1.1 101"), response
    assert await in_thread(late.close_code, 2.0) == 1001
    late.close()
    silent.close()
    assert await node.exit_status() == 0


def _masked_text(text: str) -> bytes:
    payload = text.encode()
    assert len(payload) < 126
    return struct.pack("!BB", 0x81, 0x80 | len(payload)) + b"\0\0\0\0" + payload  # a zero mask


async def test_a_ping_flood_is_closed_1008_and_the_others_carry_on(node: ServerProcess) -> None:
    listener = await join_room(node)
    rss = node.rss_kib()
    flooder = await in_thread(RawWebSocket.connect, node.port)

    def flood() -> int:
        sent = 0
        try:
            for _ in range(20_000):
                flooder.send_frame(0x9, b"x" * 125)
                sent += 1
        except OSError:
            pass  # the node closed the connection: the flood is over
        return sent

    started = time.monotonic()
    sent = await in_thread(flood)
    assert await in_thread(flooder.close_code) == 1008
    flooder.close()
    assert time.monotonic() - started < 5
    await still_chatting(node, listener)
    assert node.rss_kib() - rss < 4096, sent
    one_warning(node, "ping")


async def test_a_few_pings_are_answered(node: ServerProcess) -> None:
    client = await in_thread(RawWebSocket.connect, node.port)
    for n in range(3):
        client.send_frame(0x9, b"p%d" % n)
        assert await in_thread(client.read_frame) == (0xA, b"p%d" % n)
    client.close()
    node.assert_clean()
    assert not node.warnings()


# ---- channels and connections ------------------------------------------------------------------------

async def test_joining_10000_topics_gets_max_channels_and_one_log_line(node: ServerProcess) -> None:
    rss = node.rss_kib()
    client = await PhoenixClient.connect(node.port, vsn="2.0.0")
    count = 10_000

    async def send() -> None:
        for n in range(count):
            await client.send_raw(json.dumps([str(n), str(n), f"room:{n}", "phx_join", {}]))

    async def receive() -> dict[str, int]:
        statuses: dict[str, int] = {}
        for _ in range(count):
            frame = await client.receive_until(lambda f: f.event == "phx_reply", timeout=10)
            key = frame.payload["status"] + " " + json.dumps(frame.payload["response"])
            statuses[key] = statuses.get(key, 0) + 1
        return statuses

    _, statuses = await asyncio.gather(send(), receive())
    assert statuses == {"ok {}": 100, 'error {"reason": "too many channels joined"}': 9_900}
    await still_chatting(node, client)  # it is in room:1, among its hundred
    assert node.rss_kib() - rss < 16 * 1024
    one_warning(node, "over 100 channels")


async def test_5000_connections_opened_and_dropped_leave_descriptors_and_memory_at_baseline(
        node: ServerProcess) -> None:
    listener = await join_room(node)
    host, port = "127.0.0.1", node.port

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection(host, port)
        kind = n % 4
        if kind == 3:  # half a request, then gone
            writer.write(upgrade_request(host, port)[:40])
        else:
            writer.write(upgrade_request(host, port))
            await reader.readuntil(b"\r\n\r\n")
            if kind >= 1:  # joined a room first
                writer.write(_masked_text(JOIN_V1))
                await reader.readexactly(2 + 88)
            if kind == 2:  # a proper close
                writer.write(struct.pack("!BBH", 0x88, 0x82, 0) + b"\0\0" + struct.pack("!H", 1000))
                await reader.read()
        if n % 2:  # a reset rather than a FIN for half of them
            writer.transport.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                                                  struct.pack("ii", 1, 0))
        writer.close()

    async def rounds(total: int, at_once: int = 100) -> None:
        for start in range(0, total, at_once):
            await asyncio.gather(*(one(n) for n in range(start, min(total, start + at_once))))

    async def settled(fds: int) -> None:
        deadline = time.monotonic() + 10
        while node.open_fds() > fds and time.monotonic() < deadline:
            await asyncio.sleep(0.05)

    await rounds(500)  # warm-up: the allocator's and the loop's steady state
    await asyncio.sleep(0.3)
    fds, rss = node.open_fds(), node.rss_kib()
    started = time.monotonic()
    await rounds(5000)
    took = time.monotonic() - started
    await settled(fds)
    assert node.open_fds() <= fds, (fds, node.open_fds())
    assert node.rss_kib() - rss < 4096, (rss, node.rss_kib(), took)
    await still_chatting(node, listener)
    node.assert_clean()
    assert not node.lines(r"ERROR|Traceback")


# ---- HTTP before the upgrade ------------------------------------------------------------------------

async def test_a_request_body_is_refused_not_buffered(node: ServerProcess) -> None:
    """No endpoint takes a body: one announcing 90 MB is refused before it is read (Tornado's
    default would buffer up to 100 MB per connection)."""
    listener = await join_room(node)
    peak = node.rss_kib("VmHWM")

    def post() -> bytes:
        with socket.create_connection(("127.0.0.1", node.port), timeout=5) as sock:
            sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 90000000\r\n\r\n")
            try:
                for _ in range(90):
                    sock.sendall(b"x" * 1_000_000)
            except OSError:
                pass  # refused: the node closed the connection
            try:
                return sock.recv(100)
            except OSError:
                return b""

    answer = await in_thread(post)
    assert answer == b"" or answer.startswith(b"HTTP/1.1 4"), answer
    assert node.rss_kib("VmHWM") - peak < 8 * 1024
    await still_chatting(node, listener)
    node.assert_clean()


async def test_a_connection_that_sends_no_request_is_closed_after_server_timeout(start_node) -> None:
    node = start_node(endpoint={"server_timeout": 0.5})
    fds = node.open_fds()
    silent = [socket.create_connection(("127.0.0.1", node.port)) for _ in range(50)]
    trickling = socket.create_connection(("127.0.0.1", node.port))

    def trickle() -> float:
        started = time.monotonic()
        try:
            for byte in b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 100:
                trickling.sendall(bytes([byte]))
                time.sleep(0.05)
        except OSError:
            pass
        return time.monotonic() - started

    assert await in_thread(trickle) < 3
    await async_wait_until(lambda: node.open_fds() <= fds, timeout=3, what="the idle connections to be closed")
    for sock in silent + [trickling]:
        sock.settimeout(1)
        assert sock.recv(10) == b""
        sock.close()
    node.assert_clean()
