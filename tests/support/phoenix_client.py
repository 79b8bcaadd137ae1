"""A small Phoenix Channels client for tests: a real websocket over a real socket (Tornado's
client), speaking V1 (objects, the article's page) or V2 (arrays, phoenix.js).

Frames come back as ``Frame`` values whatever the version, with the raw text kept for tests
that check the exact bytes. ``join_room`` and ``assert_shout_reaches`` are the chat steps the
node, cluster, hardening and e2e tests share: clients join a room, a shout reaches everyone.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import struct
from typing import Any, Callable, NamedTuple, Protocol

from tornado.httpclient import HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect


class Frame(NamedTuple):
    join_ref: Any
    ref: Any
    topic: str
    event: str
    payload: Any
    raw: str


class Closed(Exception):
    def __init__(self, code: int | None, reason: str | None) -> None:
        super().__init__(f"websocket closed (code {code}, reason {reason!r})")
        self.code = code
        self.reason = reason


TOPIC = "room:1"
JOIN_OK = {"status": "ok", "response": {}}


class PhoenixClient:
    def __init__(self, conn: WebSocketClientConnection, vsn: str | None,
                 host: str = "127.0.0.1", port: int = 0) -> None:
        self.conn = conn
        self.vsn = vsn
        self.host = host
        self.port = port
        self._refs = itertools.count(1)
        self.join_refs: dict[str, str] = {}

    @classmethod
    async def connect(cls, port: int, host: str = "127.0.0.1", vsn: str | None = None,
                      headers: dict[str, str] | None = None, timeout: float = 5.0) -> "PhoenixClient":
        query = f"?vsn={vsn}" if vsn else ""
        request = HTTPRequest(f"ws://{host}:{port}/socket/websocket{query}", headers=headers or {},
                              connect_timeout=timeout, request_timeout=timeout)
        conn = await asyncio.wait_for(websocket_connect(request), timeout)
        return cls(conn, vsn, host, port)

    @property
    def v2(self) -> bool:
        return self.vsn == "2.0.0"

    def next_ref(self) -> str:
        return str(next(self._refs))

    async def send_raw(self, data: str | bytes) -> None:
        await self.conn.write_message(data, binary=isinstance(data, bytes))

    async def push(self, topic: str, event: str, payload: Any = None, *,
                   ref: Any = "auto", join_ref: Any = "auto") -> Any:
        """Sends one message; returns its ref. ``join_ref`` defaults to the topic's join ref."""
        ref = self.next_ref() if ref == "auto" else ref
        payload = {} if payload is None else payload
        if join_ref == "auto":
            join_ref = self.join_refs.get(topic)
        if self.v2:
            text = json.dumps([join_ref, ref, topic, event, payload])
        else:
            text = json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref})
        await self.send_raw(text)
        return ref

    async def receive(self, timeout: float = 5.0) -> Frame:
        text = await asyncio.wait_for(self.conn.read_message(), timeout)
        if text is None:
            raise Closed(self.conn.close_code, self.conn.close_reason)
        data = json.loads(text)
        if isinstance(data, list):
            return Frame(*data, raw=text)
        return Frame(data.get("join_ref"), data["ref"], data["topic"], data["event"], data["payload"], raw=text)

    async def receive_until(self, match: Callable[[Frame], bool], timeout: float = 5.0) -> Frame:
        """The first frame that matches, skipping others (e.g. broadcasts while awaiting a reply)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            remaining = deadline - asyncio.get_running_loop().time()
            if remaining <= 0:
                raise asyncio.TimeoutError("no matching frame")
            frame = await self.receive(remaining)
            if match(frame):
                return frame

    async def reply_to(self, ref: Any, timeout: float = 5.0) -> Frame:
        return await self.receive_until(lambda f: f.event == "phx_reply" and f.ref == ref, timeout)

    async def join(self, topic: str, payload: Any = None, timeout: float = 5.0) -> Frame:
        """Joins ``topic``; returns the reply frame (check ``payload["status"]``)."""
        ref = self.next_ref()
        join_ref = ref if self.v2 else None
        self.join_refs[topic] = join_ref
        await self.push(topic, "phx_join", payload, ref=ref, join_ref=join_ref)
        return await self.reply_to(ref, timeout)

    async def shout(self, topic: str, payload: Any) -> Any:
        return await self.push(topic, "shout", payload)

    async def expect_close(self, timeout: float = 5.0) -> int | None:
        """Reads until the server closes the websocket; returns the close code."""
        try:
            while True:
                await self.receive(timeout)
        except Closed as closed:
            return closed.code

    async def assert_silent(self, for_seconds: float = 0.3) -> None:
        """Asserts that nothing arrives for a while."""
        try:
            frame = await self.receive(for_seconds)
        except asyncio.TimeoutError:
            return
        raise AssertionError(f"expected no frame, got {frame.raw}")

    def close(self) -> None:
        self.conn.close()


class Serving(Protocol):
    """What serves websockets: a test node (server_process.ServerProcess, node_processes.NodeProcess)."""
    host: str
    port: int


async def join_room(at: Serving | int, vsn: str | None = None, topic: str = TOPIC,
                    **connect: Any) -> PhoenixClient:
    """A client connected to ``at`` (a node, or a port on 127.0.0.1; ``connect``: headers,
    timeout), joined to ``topic``: the reply is ok (with an empty response), on that topic."""
    host, port = ("127.0.0.1", at) if isinstance(at, int) else (at.host, at.port)
    client = await PhoenixClient.connect(port, host=host, vsn=vsn, **connect)
    reply = await client.join(topic)
    where = f"join on {host}:{port}: {reply.raw}"
    assert (reply.event, reply.topic, reply.payload) == ("phx_reply", topic, JOIN_OK), where
    assert reply.ref is not None, where
    return client


async def assert_shout_reaches(sender: PhoenixClient, receivers: list[PhoenixClient], message: str,
                               topic: str = TOPIC, timeout: float = 5.0) -> None:
    """``sender`` shouts ``{"message": message}`` on ``topic``; every receiver (list the sender
    too) gets it as a broadcast (no ref, no join_ref). Frames before it are skipped. The
    receivers wait together; a failure names every one that missed it."""
    await sender.shout(topic, {"message": message})

    async def one(client: PhoenixClient) -> None:
        frame = await client.receive_until(lambda f: f.event == "shout" and f.payload == {"message": message},
                                           timeout)
        assert (frame.join_ref, frame.ref, frame.topic) == (None, None, topic), \
            f"on {client.host}:{client.port}: {frame.raw}"

    results = await asyncio.gather(*(one(c) for c in receivers), return_exceptions=True)
    failed = [(f"{c.host}:{c.port}", r) for c, r in zip(receivers, results, strict=True) if isinstance(r, BaseException)]
    assert not failed, (f"shout {message!r} from {sender.host}:{sender.port} did not reach every client: "
                        f"{failed}")


def upgrade_request(host: str, port: int, path: str = "/socket/websocket") -> bytes:
    """A websocket upgrade request (RFC 6455 4.1) with a fresh key."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n\r\n").encode()


class RawWebSocket:
    """A websocket client on a plain blocking socket, for a peer that misbehaves on purpose:
    it completes the handshake and sends frames, but reads only when a test says so (a client
    that never reads fills the node's outbound buffer for it)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock

    @classmethod
    def connect(cls, port: int, host: str = "127.0.0.1", path: str = "/socket/websocket",
                receive_buffer: int | None = None, timeout: float = 5.0) -> "RawWebSocket":
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # before connect, so the TCP window stays that small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.settimeout(timeout)
        sock.connect((host, port))
        sock.sendall(upgrade_request(host, port, path))
        head = b""
        while not head.endswith(b"\r\n\r\n"):  # byte by byte: not one byte of a frame
            byte = sock.recv(1)
            if not byte:
                raise ConnectionError(f"closed during the handshake: {head!r}")
            head += byte
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head.decode(errors='replace')}")
        return cls(sock)

    def send_frame(self, opcode: int, payload: bytes = b"", fin: bool = True, length: int | None = None) -> None:
        """One masked frame, as a client must send it (RFC 6455 5.2, 5.3), of any opcode.
        ``length`` declares another payload length than the bytes sent (a lie about the size)."""
        length = len(payload) if length is None else length
        first = (0x80 if fin else 0) | opcode
        if length < 126:
            header = struct.pack("!BB", first, 0x80 | length)
        elif length <= 0xFFFF:
            header = struct.pack("!BBH", first, 0x80 | 126, length)
        else:
            header = struct.pack("!BBQ", first, 0x80 | 127, length)
        mask = os.urandom(4)
        self.sock.sendall(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def send_text(self, text: str) -> None:
        self.send_frame(0x1, text.encode())

    def read_frame(self) -> tuple[int, bytes]:
        """One frame from the node (unmasked, unfragmented): its opcode and payload."""
        first, second = self._read_exactly(2)
        length = second & 0x7F
        if length == 126:
            (length,) = struct.unpack("!H", self._read_exactly(2))
        elif length == 127:
            (length,) = struct.unpack("!Q", self._read_exactly(8))
        return first & 0x0F, self._read_exactly(length)

    def close_code(self, timeout: float = 5.0) -> int | None:
        """Reads until the node's close frame and returns its code; None if the node dropped
        the connection without one."""
        self.sock.settimeout(timeout)
        try:
            while True:
                opcode, payload = self.read_frame()
                if opcode == 0x8:
                    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        except ConnectionError:
            return None

    def _read_exactly(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the node closed the connection")
            data += chunk
        return data

    def drain_until_eof(self, timeout: float = 5.0) -> int:
        """Reads (and discards) until the node closes the TCP connection; the bytes read."""
        self.sock.settimeout(timeout)
        total = 0
        while chunk := self.sock.recv(1 << 16):
            total += len(chunk)
        return total

    def close(self) -> None:
        self.sock.close()
