"""The Tornado websocket transport behind ``/socket/websocket``.

It only moves frames: protocol work is ``PhoenixSocket``'s. What it adds is what a socket
needs from the network: the serializer chosen by ``?vsn=``, the origin check, a bounded
outbound buffer (a client that stops reading is cut off instead of growing the node's memory),
the idle timeout, and closing with 1001 when the node goes away.
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any
from urllib.parse import urlsplit

from tornado.ioloop import IOLoop
from tornado.iostream import SSLIOStream, StreamBufferFullError, StreamClosedError
from tornado.websocket import WebSocketHandler, WebSocketProtocol13

from ..settings import Endpoint
from ..pubsub import PubSub
from .serializer import V1, for_vsn
from .socket import (CLOSE_GOING_AWAY, CLOSE_INVALID_DATA, CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG,
                     CLOSE_UNSUPPORTED, PhoenixSocket, Router)

log = logging.getLogger("gossipy.socket")


# Coalescing saves syscalls for small frames; past this many bytes one write is as good as many.
_EARLY_FLUSH = 64 * 1024
# Pings a client may send in one second. Phoenix's JS client never pings (its heartbeat is a
# message); libraries that do, ping every few seconds. More is a flood: each ping costs a
# frame parse and a pong, and a flood of them takes the node's CPU from everyone else.
PING_LIMIT = 10


def text_frame(text: str) -> bytes:
    """A complete, unmasked, uncompressed websocket text frame (RFC 6455 5.2): built once per
    broadcast and written as-is to every socket, instead of re-framed per socket."""
    payload = text.encode()
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class SocketRegistry:
    """The live websockets of this node, so shutdown can close them all with 1001, and the
    ones with frames waiting, so each gets one write per event-loop iteration however many
    broadcasts reached it in that iteration."""

    def __init__(self) -> None:
        self.handlers: set["SocketHandler"] = set()
        self._waiting: list["SocketHandler"] = []

    def close_all(self, code: int = CLOSE_GOING_AWAY, reason: str = "node shutting down") -> None:
        for handler in list(self.handlers):
            handler.close(code, reason)

    def flush_soon(self, handler: "SocketHandler") -> None:
        if not self._waiting:
            IOLoop.current().add_callback(self._flush)
        self._waiting.append(handler)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for handler in waiting:
            handler.flush_outbox()


def origin_allowed(check: bool | tuple[str, ...], origin: str, host_header: str) -> bool:
    """Phoenix's check_origin: True compares the origin's host with the requested host (ports
    ignored); a tuple lists allowed origins, each matching on whatever parts it spells out."""
    if check is False:
        return True
    parsed = urlsplit(origin)
    if not parsed.hostname:
        return False
    if check is True:
        requested = urlsplit("//" + host_header).hostname
        return parsed.hostname == requested
    for allowed in check:
        want = urlsplit(allowed if "//" in allowed else "//" + allowed)
        if (want.hostname == parsed.hostname
                and (not want.scheme or want.scheme == parsed.scheme)
                and (want.port is None or want.port == parsed.port)):
            return True
    return False


_TEXT = 0x1


class _Protocol(WebSocketProtocol13):
    """Tornado's protocol, plus what it does silently said in the log: Tornado closes with
    1009 by itself (over ``websocket_max_message_size``) without telling the handler, and drops
    a text frame that is not UTF-8 without a word or a close code (RFC 6455 says 1007)."""

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        if code == CLOSE_TOO_BIG and not self.server_terminated:
            handler = self.handler
            log.warning("closing socket from %s: a frame over max_frame_size (%d bytes)",
                        handler.request.remote_ip, handler.max_message_size)
        super().close(code, reason)

    def _handle_message(self, opcode: int, data: bytes) -> Any:
        if opcode == _TEXT and not self.client_terminated and not self._frame_compressed:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError as exc:
                log.warning("closing socket from %s: a text frame that is not UTF-8 (%s at byte %d)",
                            self.handler.request.remote_ip, exc.reason, exc.start)
                self.handler.close(CLOSE_INVALID_DATA, "invalid UTF-8")
                return None
        return super()._handle_message(opcode, data)


class SocketHandler(WebSocketHandler):
    def initialize(self, router: Router, pubsub: PubSub, endpoint: Endpoint,
                   registry: SocketRegistry) -> None:
        self.router = router
        self.pubsub = pubsub
        self.endpoint = endpoint
        self.registry = registry
        self.socket: PhoenixSocket | None = None
        self.last_seen = 0.0
        self._idle_timer: object | None = None
        self._outbox: list[bytes] = []
        self._outbox_size = 0
        self._ping_second = 0.0
        self._pings = 0

    async def get(self, *args: Any, **kwargs: Any) -> None:
        vsn = self.get_query_argument("vsn", None)
        self.serializer = for_vsn(vsn)
        if self.serializer is None:
            log.warning("refusing websocket from %s: unknown vsn %r", self.request.remote_ip, vsn)
            self.set_status(403)
            self.finish(f"unsupported serializer version {vsn!r}\n")
            return
        await super().get(*args, **kwargs)

    def get_websocket_protocol(self) -> WebSocketProtocol13 | None:
        protocol = super().get_websocket_protocol()
        return None if protocol is None else _Protocol(self, False, protocol.params)

    def check_origin(self, origin: str) -> bool:
        allowed = origin_allowed(self.endpoint.check_origin, origin, self.request.host)
        if not allowed:
            log.warning("refusing websocket from %s: origin %r not allowed for host %r (check_origin)",
                        self.request.remote_ip, origin, self.request.host)
        return allowed

    def open(self, *args: str, **kwargs: str) -> None:
        assert self.ws_connection is not None
        self.ws_connection.stream.max_write_buffer_size = self.endpoint.outbound_buffer
        self.socket = PhoenixSocket(self, self.serializer, self.router, self.pubsub,
                                    self.endpoint.max_channels, self.request.remote_ip)
        self.registry.handlers.add(self)
        self.last_seen = time.monotonic()
        self._idle_timer = IOLoop.current().call_later(self.endpoint.server_timeout, self._check_idle)

    def on_message(self, message: str | bytes) -> None:
        if self.ws_connection is None:
            # We closed this socket (a bad frame, say); Tornado still reads until the client's
            # close frame, but nothing the client sent after the offence may reach the room.
            return
        self.last_seen = time.monotonic()
        if isinstance(message, bytes) and self.serializer is not V1:
            log.warning("closing socket from %s: binary frames are not supported", self.request.remote_ip)
            self.close(CLOSE_UNSUPPORTED, "binary frames are not supported")
            return
        assert self.socket is not None
        self.socket.receive(message)

    def on_ping(self, data: bytes) -> None:
        now = self.last_seen = time.monotonic()
        if now - self._ping_second >= 1.0:
            self._ping_second, self._pings = now, 0
        self._pings += 1
        if self._pings > PING_LIMIT and self.ws_connection is not None:
            log.warning("closing socket from %s: a ping flood (over %d pings in a second)",
                        self.request.remote_ip, PING_LIMIT)
            # Tornado then waits (5 s at most) for the client's close frame, answering no pings.
            self.close(CLOSE_POLICY, "ping flood")

    def on_close(self) -> None:
        self.registry.handlers.discard(self)
        if self._idle_timer is not None:
            IOLoop.current().remove_timeout(self._idle_timer)
            self._idle_timer = None
        if self.socket is not None:
            self.socket.closed()
            self.socket = None

    def _check_idle(self) -> None:
        idle_for = time.monotonic() - self.last_seen
        if idle_for >= self.endpoint.server_timeout:
            self._idle_timer = None
            log.info("closing socket from %s: idle for %.0f s", self.request.remote_ip, idle_for)
            self.close(CLOSE_NORMAL, "idle timeout")
        else:
            self._idle_timer = IOLoop.current().call_later(
                self.endpoint.server_timeout - idle_for, self._check_idle)

    # ---- Transport -----------------------------------------------------------------------------

    prepare_frame = staticmethod(text_frame)

    def send_frame(self, frame: bytes) -> None:
        if self.ws_connection is None or self.ws_connection.is_closing():
            return
        if not self._outbox:
            self.registry.flush_soon(self)
        self._outbox.append(frame)
        self._outbox_size += len(frame)
        if self._outbox_size >= _EARLY_FLUSH:
            # A burst goes to the stream now, whose bound (outbound_buffer) tells a slow
            # reader from a busy loop iteration; the node holds at most that plus this.
            self.flush_outbox()

    def flush_outbox(self) -> None:
        """Writes every waiting frame in one go (called once per loop iteration)."""
        if not self._outbox:
            return
        data = b"".join(self._outbox) if len(self._outbox) > 1 else self._outbox[0]
        self._outbox.clear()
        self._outbox_size = 0
        if self.ws_connection is None or self.ws_connection.stream.closed():
            return
        stream = self.ws_connection.stream
        if not stream.writing() and not isinstance(stream, SSLIOStream):
            # Nothing queued: hand the bytes to the kernel ourselves, which costs about half
            # of what IOStream.write's buffering and bookkeeping do; IOStream keeps only what
            # the kernel did not take, so the order of bytes and the buffer bound still hold.
            try:
                sent = stream.socket.send(data)
            except BlockingIOError:
                sent = 0
            except OSError:
                stream.close()
                return
            if sent == len(data):
                return
            data = data[sent:]
        try:
            stream.write(data)
        except StreamClosedError:
            pass
        except StreamBufferFullError:
            self._drop_slow_consumer()

    def _drop_slow_consumer(self) -> None:
        # A client that stops reading must not grow the node's memory or slow the others:
        # drop it at once (a close frame could not get through the full buffer anyway).
        log.warning("dropping socket from %s: over its %d-byte outbound buffer (a slow consumer)",
                    self.request.remote_ip, self.endpoint.outbound_buffer)
        self._outbox.clear()
        self._outbox_size = 0
        assert self.ws_connection is not None
        self.ws_connection.stream.close()

    def close(self, code: int | None = None, reason: str | None = None) -> None:
        self.flush_outbox()
        try:
            super().close(code, reason)
        except StreamBufferFullError:
            if self.ws_connection is not None:
                self.ws_connection.stream.close()
