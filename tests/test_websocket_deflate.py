"""permessage-deflate on a real node (``endpoint.compress``): what the handshake answers, what
goes over the wire to a compressing and a plain client in the same room, and that a client
compressing with context takeover (Tornado's client does) is understood."""

from __future__ import annotations

import asyncio
import json
import socket
import zlib
from typing import Callable

from tornado.httpclient import HTTPRequest
from tornado.websocket import websocket_connect

from bench.deflate import read_frame

from support.phoenix_client import PhoenixClient, RawWebSocket, join_room, upgrade_request
from support.server_process import ServerProcess

LONG = "a message long enough to be worth compressing, " * 10


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
    request = HTTPRequest(f"ws://127.0.0.1:{node.port}/socket/websocket?vsn=2.0.0")
    # Tornado's client offers permessage-deflate, compresses every message and keeps its context.
    conn = await asyncio.wait_for(websocket_connect(request, compression_options={}), 5)
    assert conn.headers["Sec-WebSocket-Extensions"] == "permessage-deflate; server_no_context_takeover"
    client = PhoenixClient(conn, "2.0.0")
    await client.join("room:1")
    for n in range(3):  # the later shouts refer back into the earlier ones
        await client.push("room:1", "shout", {"message": f"{n} {LONG}"})
        assert (await client.receive_until(lambda f: f.event == "shout")).payload == {"message": f"{n} {LONG}"}
    client.close()
    node.assert_clean()
