"""permessage-deflate on a real node (``endpoint.compress``): what the handshake answers, what
goes over the wire to a compressing and a plain client in the same room, and that a client
compressing with context takeover (Tornado's client does) is understood."""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from typing import Any, Callable

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from bench.deflate import chat_payloads, read_frame
from server.channels.rfc6455 import text_frame

from support.phoenix_client import PhoenixClient, RawWebSocket, join_room, upgrade_request
from support.server_process import ServerProcess

LONG = "a message long enough to be worth compressing, " * 10
CONTEXT = {"compress": True, "deflate_context_takeover": True}


def deflate_socket(port: int, offer: str = "permessage-deflate; client_max_window_bits") -> tuple[socket.socket, str]:
    """A raw client that offers ``offer``: its socket and the node's Sec-WebSocket-Extensions."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    request = upgrade_request("127.0.0.1", port, "/socket/websocket?vsn=2.0.0")
    sock.sendall(request[:-2] + f"Sec-WebSocket-Extensions: {offer}\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    extensions = [line.split(":", 1)[1].strip() for line in head.decode().split("\r\n")
                  if line.lower().startswith("sec-websocket-extensions:")]
    return sock, extensions[0] if extensions else ""


def test_off_by_default_the_offer_is_not_answered(node: ServerProcess) -> None:
    sock, extensions = deflate_socket(node.port)
    sock.close()
    assert extensions == ""


async def test_a_broadcast_reaches_compressing_and_plain_clients(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"compress": True})
    sock, extensions = deflate_socket(node.port)
    assert extensions == "permessage-deflate; server_no_context_takeover"
    raw = RawWebSocket(sock)
    raw.send_text('["1","1","room:1","phx_join",{}]')
    first, reply = read_frame(sock)
    assert first == 0x81 and json.loads(reply)[3] == "phx_reply"  # short: not compressed
    plain = await join_room(node, "2.0.0")
    await plain.push("room:1", "shout", {"message": LONG})
    assert (await plain.receive_until(lambda f: f.event == "shout")).payload == {"message": LONG}
    first, compressed = read_frame(sock)
    assert first == 0xC1  # FIN, RSV1, text
    text = zlib.decompressobj(-15).decompress(compressed + b"\x00\x00\xff\xff")
    assert json.loads(text) == [None, None, "room:1", "shout", {"message": LONG}]
    assert len(compressed) * 4 < len(text)
    plain.close()
    sock.close()
    node.assert_clean()


async def test_a_client_compressing_with_context_takeover_is_understood(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"compress": True})
    # Tornado's client compresses every message and keeps its context.
    client = await tornado_deflate_client(node.port, "permessage-deflate; server_no_context_takeover")
    await client.join("room:1")
    for n in range(3):  # the later shouts refer back into the earlier ones
        await client.push("room:1", "shout", {"message": f"{n} {LONG}"})
        assert (await client.receive_until(lambda f: f.event == "shout")).payload == {"message": f"{n} {LONG}"}
    client.close()
    node.assert_clean()


async def test_with_context_takeover_chat_lines_are_3x_smaller_and_read_back(
        start_node: Callable[..., ServerProcess]) -> None:
    """A raw client inflating every compressed frame with one decompressor, as it agreed to: the
    join's reply, presence's push and diffs, 100 chat lines, a heartbeat's reply and a pong in
    between (a control frame: never compressed), in the order the node wrote them. Broadcasts
    come compressed, whatever their size; the socket's own short messages plain."""
    node = start_node(endpoint=CONTEXT)
    sock, extensions = deflate_socket(node.port)
    assert extensions == "permessage-deflate"
    raw = RawWebSocket(sock)
    raw.send_text('["1","1","room:1","phx_join",{"name":"raw"}]')
    tornado_client = await tornado_deflate_client(node.port, "permessage-deflate")
    await tornado_client.join("room:1", {"name": "tornado"})
    plain = await join_room(node, "2.0.0")
    payloads = chat_payloads(100)
    for n, payload in enumerate(payloads):
        await plain.push("room:1", "shout", payload)
        if n == 50:
            raw.send_text('[null,"hb","phoenix","heartbeat",{}]')
            raw.send_frame(0x9, b"ping")

    inflater = zlib.decompressobj(-15)
    messages: list[list[object]] = []
    compressed: list[bool] = []
    shout_bytes = plain_bytes = 0
    pong = None
    # The ping and the heartbeat race the shouts pushed by another client: read until all came.
    while (sum(m[3] == "shout" for m in messages) < len(payloads) or pong is None
           or not any(m[1] == "hb" for m in messages)):
        first, payload = read_frame(sock)
        if first & 0x0F == 0xA:
            assert first == 0x8A  # no RSV1
            pong = payload
            continue
        assert first in (0x81, 0xC1), hex(first)
        compressed.append(first == 0xC1)
        text = inflater.decompress(payload + b"\x00\x00\xff\xff") if compressed[-1] else payload
        messages.append(json.loads(text))
        if messages[-1][3] == "shout":
            shout_bytes += 2 + len(payload)
            plain_bytes += len(text_frame(text.decode()))
    assert pong == b"ping"
    events = [m[3] for m in messages]
    assert events[:2] == ["phx_reply", "presence_state"] and "presence_diff" in events
    assert ["hb", "phx_reply", {"status": "ok", "response": {}}] in [[m[1], m[3], m[4]] for m in messages]
    assert all(was for was, m in zip(compressed, messages, strict=True) if m[3] in ("shout", "presence_diff"))
    assert not any(was for was, m in zip(compressed, messages, strict=True) if m[1] == "hb")
    assert [m[4] for m in messages if m[3] == "shout"] == payloads
    assert plain_bytes > 3 * shout_bytes, (plain_bytes, shout_bytes)
    for payload in payloads:  # Tornado's client keeps the server's context too
        assert (await tornado_client.receive_until(lambda f: f.event == "shout")).payload == payload
    for client in (tornado_client, plain):
        client.close()
    sock.close()
    node.assert_clean()


class InflatingClient:
    """A raw client that agreed on the server's context takeover, joined to ``topic``: one
    decompressor for the whole connection, which inflates only the frames with RSV1 set, as a
    browser does."""

    def __init__(self, port: int, topic: str = "room:1") -> None:
        self.sock, extensions = deflate_socket(port)
        assert extensions == "permessage-deflate"
        self.raw = RawWebSocket(self.sock)
        self.inflater = zlib.decompressobj(-15)
        self.topic = topic
        self.pushed = 0
        self.send("phx_join", {})
        self.read_until("welcome")  # after the join's reply

    def send(self, event: str, payload: dict[str, Any], topic: str | None = None) -> str:
        self.pushed += 1
        ref = str(self.pushed)
        self.raw.send_text(json.dumps(["1", ref, topic or self.topic, event, payload]))
        return ref

    def read_until(self, event: str, payload: object = None) -> list[tuple[bool, list[Any]]]:
        """Each message read (compressed or not, and what it says) up to the first ``event``
        (with ``payload``, if given)."""
        messages = []
        while True:
            first, data = read_frame(self.sock)
            assert first & 0x0F == 0x1, hex(first)
            compressed = bool(first & 0x40)
            message = json.loads(self.inflater.decompress(data + b"\x00\x00\xff\xff") if compressed else data)
            messages.append((compressed, message))
            if message[3] == event and payload in (None, message[4]):
                return messages


def test_with_context_takeover_sockets_that_drift_apart_read_every_message(
        start_node: Callable[..., ServerProcess]) -> None:
    """Sockets that share compressors and drift apart: each broadcast_from leaves its sender
    out; one socket joins late; one is sent a long push of its own; shouts pass each socket's
    handle_out; heartbeats' replies in between. Every client inflates every message with the
    one decompressor it keeps, and the chat lines it is told come compressed."""
    node = start_node(endpoint=CONTEXT, app="tests.apps.api_app")
    clients = [InflatingClient(node.port) for _ in range(3)]
    told = 0
    for n, payload in enumerate(chat_payloads(40)):
        if n == 10:
            clients.append(InflatingClient(node.port))
        sender = clients[n % len(clients)]
        sender.send("tell_others", payload)
        for client in clients:
            if client is not sender:
                messages = client.read_until("told", payload)
                assert messages[-1][0], "a chat line told with context is compressed"
                told += 1
        if n % 5 == 0:
            shout = {"message": f"shout {n}"}
            clients[1].send("shout", shout)
            for client in clients:
                assert client.read_until("shout")[-1][1][4]["message"] == shout["message"]
        if n % 4 == 0:
            ref = clients[2].send("heartbeat", {}, topic="phoenix")
            assert clients[2].read_until("phx_reply")[-1][1][1] == ref
        if n == 15:
            long_push = {"after": 0, "note": LONG}
            clients[0].send("remind", long_push)
            compressed, reminder = clients[0].read_until("reminder")[-1]
            assert compressed and reminder[4] == long_push
    assert told == 10 * 2 + 30 * 3
    for client in clients:
        client.sock.close()
    node.assert_clean()


async def test_with_context_takeover_a_client_may_still_ask_for_each_message_alone(
        start_node: Callable[..., ServerProcess]) -> None:
    """RFC 7692 7.1.1.1: its offer's server_no_context_takeover is honoured; what it gets is
    the shared way's: short messages plain, long ones compressed alone."""
    node = start_node(endpoint=CONTEXT)
    sock, extensions = deflate_socket(node.port, "permessage-deflate; server_no_context_takeover")
    assert extensions == "permessage-deflate; server_no_context_takeover"
    raw = RawWebSocket(sock)
    raw.send_text('["1","1","room:1","phx_join",{}]')
    assert read_frame(sock)[0] == 0x81
    plain = await join_room(node, "2.0.0")
    for _ in range(2):
        await plain.push("room:1", "shout", {"message": LONG})
        first, compressed = read_frame(sock)
        assert first == 0xC1
        # A fresh decompressor each time reads it: nothing refers to an earlier message.
        assert json.loads(zlib.decompressobj(-15).decompress(compressed + b"\x00\x00\xff\xff"))[4] == {"message": LONG}
    plain.close()
    sock.close()
    node.assert_clean()


async def tornado_deflate_client(port: int, expected_extensions: str) -> PhoenixClient:
    """Tornado's client, offering permessage-deflate (it compresses, and inflates keeping the
    server's context unless the server said server_no_context_takeover)."""
    request = HTTPRequest(f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0")
    conn = await asyncio.wait_for(websocket_connect(request, compression_options={}), 5)
    assert conn.headers["Sec-WebSocket-Extensions"] == expected_extensions
    return PhoenixClient(conn, "2.0.0")
