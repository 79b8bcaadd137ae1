"""The websocket transport behind ``/socket/websocket``.

The node's listener (server/listener.py) reads the opening request and gives it to the path's
``WebSocketUpgrade``, which checks it (the upgrade headers, the origin, then for Phoenix the
serializer chosen by ``?vsn=`` and the app's ``Socket.connect``: token auth by default) and
answers it; the socket then goes to an asyncio ``Protocol`` (``WebSocket``) that speaks RFC
6455 through the sans-I/O ``rfc6455`` module. A Tornado ``WebSocketHandler`` would keep its
request, headers, HTTP connection, stream buffers and a read coroutine alive for the socket's
whole life; an idle socket here is a slotted protocol object and asyncio's transport, so a node
holds many idle sockets cheaply.

It only moves frames: what the messages mean is its ``MessageHandler``'s (``PhoenixSocket``
here; tests/autobahn runs the conformance suite against an echo). What it adds is what a
socket needs from the network: a bounded outbound buffer (a client that stops reading is cut
off instead of growing the node's memory), the idle timeout, ping flood and protocol checks,
permessage-deflate when ``endpoint.compress`` is on and the client offers it, and closing with
1001 when the node goes away.
"""

from __future__ import annotations

import asyncio
import binascii
import logging
import socket
import time
from collections.abc import Callable, Hashable
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

from tornado.escape import parse_qs_bytes

from ..http1 import Head, answer_and_close
from ..metrics import Counts
from ..pubsub import PubSub
from ..settings import Endpoint
from ..weblog import log_access, log_uncaught
from . import rfc6455, rfc7692
from .channel import PresenceTracker
from .connect import ConnectInfo, ConnectRefused, Socket, read_only_assigns
from .rfc6455 import (
    DATA_OPCODES,
    CloseCode,
    MessageReader,
    Opcode,
    ProtocolViolation,
    binary_frame,
    close_frame,
    pong_frame,
    text_frame,
)
from .serializer import for_vsn
from .socket import PhoenixSocket, Router

log = logging.getLogger("gossipy.socket")


# Coalescing saves syscalls for small frames; past this many bytes one write is as good as many.
_EARLY_FLUSH = 64 * 1024
# Pings a client may send in one second. Phoenix's JS client never pings (its heartbeat is a
# message); libraries that do, ping every few seconds. More is a flood: each ping costs a
# frame parse and a pong, and a flood of them takes the node's CPU from everyone else.
PING_LIMIT = 10
# How long a socket we closed waits for the client's close frame before it is cut (Tornado's
# figure): long enough for a busy client, short enough that a silent one frees its descriptor.
CLOSE_TIMEOUT = 5.0
# The idle sweep looks at every socket this many times per server_timeout, so an idle socket is
# closed between 1 and 1.25 server_timeouts after its last frame: one timer for the node
# instead of one per socket.
_SWEEPS_PER_TIMEOUT = 4


class SocketRegistry:
    """The live websockets of this node: so shutdown can close them all with 1001, so one
    sweep finds the idle ones, and so each socket with frames waiting gets one write per
    event-loop iteration however many broadcasts reached it in that iteration."""

    def __init__(self, server_timeout: float, counts: Counts) -> None:
        self.sockets: set[WebSocket] = set()
        self.counts = counts
        self._server_timeout = server_timeout
        self._waiting: list[WebSocket] = []
        self._sweeper: asyncio.TimerHandle | None = None
        # Set by close_all: a socket whose handover was in flight then is closed as it arrives.
        self._closing_with: tuple[CloseCode, str] | None = None

    def add(self, websocket: "WebSocket") -> None:
        self.sockets.add(websocket)
        if self._closing_with is not None:
            websocket.shut_down(*self._closing_with)
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(
                self._server_timeout / _SWEEPS_PER_TIMEOUT, self._sweep_idle)

    def discard(self, websocket: "WebSocket") -> None:
        self.sockets.discard(websocket)

    def close_all(self, code: CloseCode = CloseCode.GOING_AWAY, reason: str = "node shutting down") -> None:
        """The node is going away: every socket is shut down (see ``WebSocket.shut_down``)."""
        self._closing_with = (code, reason)
        for websocket in list(self.sockets):
            websocket.shut_down(code, reason)

    def abort_all(self) -> None:
        for websocket in list(self.sockets):
            websocket.abort()

    def flush_soon(self, websocket: "WebSocket") -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        self._waiting.append(websocket)

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for websocket in waiting:
            websocket.flush_outbox()

    def _sweep_idle(self) -> None:
        self._sweeper = None
        now = time.monotonic()
        for websocket in list(self.sockets):
            idle_for = now - websocket.last_seen
            if websocket.stalled_since is not None and now - websocket.stalled_since >= self._server_timeout:
                log.warning("dropping socket from %s: its outbound buffer has not drained for %.0f s (a slow consumer)",
                            websocket.peer, now - websocket.stalled_since)
                self.counts.slow_consumers += 1
                websocket.abort()
            elif idle_for >= self._server_timeout and not websocket.closing:
                log.info("closing socket from %s: idle for %.0f s", websocket.peer, idle_for)
                websocket.close(CloseCode.NORMAL, "idle timeout")
        if self.sockets:
            self._sweeper = asyncio.get_running_loop().call_later(
                self._server_timeout / _SWEEPS_PER_TIMEOUT, self._sweep_idle)


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


class MessageHandler(Protocol):
    """What a ``WebSocket`` hands its client's messages to (``PhoenixSocket``). It answers
    through the ``WebSocket`` it was made with."""

    def receive(self, data: str | bytes) -> None:
        """A whole message: a text message as ``str``, a binary one as ``bytes``."""

    def closed(self, reason: str = "closed") -> None:
        """The connection is ending (``"shutdown"``: the node is): no more messages either way."""


class WebSocket(asyncio.Protocol):
    """One client's websocket after the upgrade: messages in to its ``MessageHandler``, frames
    out through one write per loop iteration."""

    __slots__ = ("registry", "peer", "handler", "reader", "transport", "last_seen", "stalled_since",
                 "_outbound_limit", "_handover", "_outbox", "_outbox_size", "_close_sent", "_close_timer",
                 "_ping_second", "_pings")

    # How this socket's frames differ from another's for the same text: None, the same for
    # every socket of this class (see ``PhoenixSocket.deliver``).
    frame_kind: Hashable | None = None

    def __init__(self, registry: SocketRegistry, endpoint: Endpoint, peer: str, handover: tuple[bytes, bytes],
                 new_handler: Callable[["WebSocket"], MessageHandler],
                 inflate: rfc6455.Inflate | None = None) -> None:
        self.registry = registry
        self.peer = peer
        self.handler: MessageHandler | None = new_handler(self)
        self.reader = MessageReader(endpoint.max_frame_size, inflate)
        self.transport: asyncio.Transport | None = None
        self.last_seen = time.monotonic()
        # Since when the transport holds more than outbound_buffer (None: it does not).
        self.stalled_since: float | None = None
        self._outbound_limit = endpoint.outbound_buffer
        # The 101 response to write first, and what the client sent after its request.
        self._handover: tuple[bytes, bytes] | None = handover
        self._outbox: list[bytes] | None = None
        self._outbox_size = 0
        self._close_sent = False
        self._close_timer: asyncio.TimerHandle | None = None
        self._ping_second = 0.0
        self._pings = 0

    # ---- asyncio.Protocol ----------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        assert self._handover is not None
        self.transport = transport
        transport.set_write_buffer_limits(high=self._outbound_limit)
        response, early = self._handover
        self._handover = None
        transport.write(response)
        self.registry.add(self)
        if early:
            self.data_received(early)

    def data_received(self, data: bytes) -> None:
        self.last_seen = time.monotonic()
        try:
            messages = self.reader.receive(data)
        except ProtocolViolation as violation:
            self._handle(violation.messages)
            self._fail(violation)
            return
        self._handle(messages)

    def _handle(self, messages: list[tuple[int, str | bytes]]) -> None:
        self.registry.counts.messages_received += len(messages)
        # Once we closed this socket (a bad frame, say) we only wait for the client's close:
        # nothing the client sent after the offence may reach the room, nor earn a pong.
        for opcode, payload in messages:
            if opcode in DATA_OPCODES:
                if not self._close_sent and self.handler is not None:
                    self.handler.receive(payload)
            elif opcode == Opcode.CLOSE:
                assert isinstance(payload, bytes)  # as MessageReader gives every control frame
                self._close_received(payload)
                return
            elif opcode == Opcode.PING and not self._close_sent:
                assert isinstance(payload, bytes)
                self._pinged(payload)

    def eof_received(self) -> bool:
        return False

    def pause_writing(self) -> None:
        # The transport holds over outbound_buffer: one big frame to a client that reads, or a
        # client that stopped reading. Frames now wait in the outbox, where a client that does
        # not read is dropped once they pass outbound_buffer too (flush_outbox), or once the
        # transport has not drained for server_timeout (the registry's sweep).
        self.stalled_since = time.monotonic()

    def resume_writing(self) -> None:
        self.stalled_since = None
        self.flush_outbox()

    def connection_lost(self, exc: Exception | None) -> None:
        self.registry.discard(self)
        if self._close_timer is not None:
            self._close_timer.cancel()
            self._close_timer = None
        self.transport = None
        self._outbox = None
        if self.handler is not None:
            self.handler.closed()
            self.handler = None

    # ---- inbound -------------------------------------------------------------------------------

    def _pinged(self, payload: bytes) -> None:
        now = self.last_seen
        if now - self._ping_second >= 1.0:
            self._ping_second, self._pings = now, 0
        self._pings += 1
        if self._pings > PING_LIMIT:
            log.warning("closing socket from %s: a ping flood (over %d pings in a second)", self.peer, PING_LIMIT)
            self.close(CloseCode.POLICY, "ping flood")
        else:
            self._send_control(pong_frame(payload))

    def _close_received(self, payload: bytes) -> None:
        try:
            code, _ = rfc6455.parse_close(payload)
        except ProtocolViolation as violation:
            self._fail(violation)
            return
        # Echo the client's code (RFC 6455 5.5.1), unless our own close went first.
        self._send_close(close_frame(code))
        if self.transport is not None:
            # The server closes the TCP connection first (RFC 6455 7.1.1); the transport sends
            # what it holds first, so a client that stopped reading is cut after CLOSE_TIMEOUT.
            self.transport.close()

    def _fail(self, violation: ProtocolViolation) -> None:
        """The client broke the protocol: say why in a close frame, and end our side of the
        stream after it (RFC 6455 7.1.7). Its further bytes are read and dropped, not left
        unread: closing a socket with unread bytes resets it, and the reset could destroy the
        close frame before the client reads it."""
        if violation.code == CloseCode.TOO_BIG:
            log.warning("closing socket from %s: a frame over max_frame_size (%d bytes)",
                        self.peer, self.reader.max_size)
        else:
            log.warning("closing socket from %s: %s", self.peer, violation.reason)
        self.close(violation.code, violation.reason)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write_eof()

    # ---- Transport (for the handler) -----------------------------------------------------------

    prepare_frame = staticmethod(text_frame)
    prepare_binary_frame = staticmethod(binary_frame)

    def send_frame(self, frame: bytes, broadcast_cache: dict[Any, Any] | None = None) -> None:
        """``broadcast_cache``: with a broadcast's frame, the broadcast's cache (see pubsub), for
        a subclass that changes frames on the way; this class sends the frame as it is."""
        if self._close_sent or self.transport is None:
            return
        if self._outbox is None:
            self._outbox = [frame]
            self._outbox_size = len(frame)
            self.registry.flush_soon(self)
        else:
            self._outbox.append(frame)
            self._outbox_size += len(frame)
        if self._outbox_size >= _EARLY_FLUSH:
            # A burst goes to the transport now, whose bound (outbound_buffer) tells a slow
            # reader from a busy loop iteration; the node holds at most that plus this.
            self.flush_outbox()

    # The socket's own control frames (pongs, close): as they are, whatever a subclass does
    # to its handler's frames.
    _send_control = send_frame

    def flush_outbox(self) -> None:
        """Writes every waiting frame in one go (called once per loop iteration)."""
        if self.stalled_since is not None:
            if self._outbox is not None and self._outbox_size > self._outbound_limit and self.transport is not None:
                log.warning("dropping socket from %s: over its %d-byte outbound buffer (a slow consumer)",
                            self.peer, self._outbound_limit)
                self.registry.counts.slow_consumers += 1
                self.abort()
                self.transport = None
            return
        outbox, self._outbox = self._outbox, None
        if outbox is None or self.transport is None or self.transport.is_closing():
            return
        data = b"".join(outbox) if len(outbox) > 1 else outbox[0]
        # Counted per flush, not per frame: a fan-out's frames cost one add each here.
        counts = self.registry.counts
        counts.messages_sent += len(outbox)
        counts.written_bytes += len(data)
        # The transport queues what the kernel does not take at once; past outbound_buffer it
        # calls pause_writing.
        self.transport.write(data)

    @property
    def closing(self) -> bool:
        return self._close_sent

    def close(self, code: CloseCode, reason: str) -> None:
        self._send_close(close_frame(code, reason))

    def shut_down(self, code: CloseCode, reason: str) -> None:
        """The node is going away: the channels end now with ``"shutdown"`` (their terminate
        may still push a last word, and can tell this from a client that left), then the
        socket is closed with ``code``."""
        if self.handler is not None:
            self.handler.closed("shutdown")
        self.close(code, reason)

    def _send_close(self, frame: bytes) -> None:
        """Our close frame, after whatever is waiting; the client then has CLOSE_TIMEOUT to
        answer (or to take what the transport holds) before it is cut."""
        if self._close_sent or self.transport is None:
            return
        self._send_control(frame)
        self._close_sent = True
        self.flush_outbox()
        self._close_timer = asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, self.abort)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class DeflateWebSocket(WebSocket):
    """A ``WebSocket`` that agreed on permessage-deflate: what it receives is inflated; what it
    sends is compressed as the agreement says, by one of two subclasses (``deflate_class``):
    ``SharedDeflateWebSocket`` or ``ContextDeflateWebSocket``."""

    __slots__ = ()

    def __init__(self, registry: SocketRegistry, endpoint: Endpoint, peer: str, handover: tuple[bytes, bytes],
                 new_handler: Callable[[WebSocket], MessageHandler], agreement: rfc7692.Agreement) -> None:
        super().__init__(registry, endpoint, peer, handover, new_handler,
                         rfc7692.Inflater(agreement.client_context_takeover).inflate)


class SharedDeflateWebSocket(DeflateWebSocket):
    """Each message compressed alone (long enough ones only: ``rfc7692``), so sockets of one
    window size share their broadcasts' compressed frames."""

    __slots__ = ("frame_kind", "prepare_frame", "prepare_binary_frame")

    def __init__(self, registry: SocketRegistry, endpoint: Endpoint, peer: str, handover: tuple[bytes, bytes],
                 new_handler: Callable[[WebSocket], MessageHandler], agreement: rfc7692.Agreement) -> None:
        # Before the handler is made, which reads frame_kind.
        deflater = rfc7692.deflater(agreement.server_window_bits)
        self.frame_kind = agreement.server_window_bits
        self.prepare_frame = deflater.text_frame
        self.prepare_binary_frame = deflater.binary_frame
        super().__init__(registry, endpoint, peer, handover, new_handler, agreement)


class ContextDeflateWebSocket(DeflateWebSocket):
    """Messages compressed with context takeover, with a compressor that the sockets sent the
    same messages share (``rfc7692.ContextDeflater``). Its frames are prepared plain, as a plain
    socket's (a broadcast's is shared with them), and compressed as they join the outbox: the
    outbox is written in order, so the client inflates them in the order they were compressed,
    whenever they were prepared."""

    __slots__ = ("_deflater",)

    def __init__(self, registry: SocketRegistry, endpoint: Endpoint, peer: str, handover: tuple[bytes, bytes],
                 new_handler: Callable[[WebSocket], MessageHandler], agreement: rfc7692.Agreement) -> None:
        self._deflater = rfc7692.ContextDeflater(agreement.server_window_bits)
        super().__init__(registry, endpoint, peer, handover, new_handler, agreement)

    def send_frame(self, frame: bytes, broadcast_cache: dict[Any, Any] | None = None) -> None:
        # Nothing is compressed that will not be sent: the client's context would miss it.
        if not self._close_sent and self.transport is not None:
            super().send_frame(self._deflater.compress_frame(frame) if broadcast_cache is None
                               else self._deflater.compress_broadcast(frame, broadcast_cache))

    def connection_lost(self, exc: Exception | None) -> None:
        # The transport is gone: nothing more is sent, so nothing compressed (what a channel's
        # terminate pushes is dropped). Released even if a channel's ending raised: a hold left
        # behind would make the others on that context copy it for every broadcast.
        try:
            super().connection_lost(exc)
        finally:
            self._deflater.release()


def deflate_class(agreement: rfc7692.Agreement) -> type[DeflateWebSocket]:
    """The ``DeflateWebSocket`` that compresses as ``agreement`` says."""
    return ContextDeflateWebSocket if agreement.server_context_takeover else SharedDeflateWebSocket


class UpgradeRequest(NamedTuple):
    """An opening request the listener read (server/listener.py): its head, the client's
    address, and when the head was complete."""

    head: Head
    peer: str
    started: float  # time.monotonic()


class Refusal(Exception):
    """An upgrade turned away: HTTP ``status`` with ``text`` and ``headers``."""

    def __init__(self, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(text)
        self.status = status
        self.text = text
        self.headers = headers


class WebSocketUpgrade:
    """The opening handshake of one path (RFC 6455 4.2): checks the request, agrees on
    permessage-deflate when ``endpoint.compress`` is on, answers 101 and hands the connection
    to a ``WebSocket``. A subclass says what handles the messages, and may refuse the request
    first (``admit``)."""

    def __init__(self, endpoint: Endpoint, registry: SocketRegistry) -> None:
        self.endpoint = endpoint
        self.registry = registry

    def admit(self, request: UpgradeRequest) -> Callable[[WebSocket], MessageHandler]:
        """Called once the request is a valid upgrade: what makes the connection's handler.
        Raises ``Refusal`` to turn the request away."""
        raise NotImplementedError

    def upgrade(self, request: UpgradeRequest, sock: socket.socket, early: bytes) -> None:
        """Answers ``request``, read from ``sock`` with ``early``, the bytes the client sent
        after it (a conforming client waits for the 101, but nothing it sent may be lost)."""
        head = request.head
        try:
            websocket = self._accept(request, early)
        except Refusal as refusal:
            status, text, headers = refusal.status, refusal.text, refusal.headers
        except Exception:
            # A bug in the app's socket class, say: this request fails, the node goes on.
            log_uncaught(head.method, head.target, request.peer)
            status, text, headers = 500, "internal server error", ()
        else:
            log_access(101, head.method, head.target, request.peer, time.monotonic() - request.started)
            asyncio.ensure_future(_hand_over(websocket, sock))
            return
        log_access(status, head.method, head.target, request.peer, time.monotonic() - request.started)
        answer_and_close(sock, status, text, headers)

    def _accept(self, request: UpgradeRequest, early: bytes) -> WebSocket:
        """The connection's ``WebSocket``, holding the 101 to write first; ``Refusal`` if the
        request may not be upgraded."""
        key = self._check(request)
        new_handler = self.admit(request)
        agreement = None
        if self.endpoint.compress:
            agreement = rfc7692.negotiate(",".join(request.head.headers.get_list("Sec-WebSocket-Extensions")),
                                          self.endpoint.deflate_context_takeover)
        extension = "" if agreement is None else f"Sec-WebSocket-Extensions: {agreement.response}\r\n"
        response = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Accept: {rfc6455.accept_key(key)}\r\n{extension}\r\n").encode("ascii")
        handover = (response, early)
        if agreement is None:
            return WebSocket(self.registry, self.endpoint, request.peer, handover, new_handler)
        return deflate_class(agreement)(self.registry, self.endpoint, request.peer, handover, new_handler, agreement)

    def _check(self, request: UpgradeRequest) -> str:
        """The request's Sec-WebSocket-Key, once it passed the checks of RFC 6455 4.2.1 and
        the origin check; else ``Refusal``."""
        head = request.head
        headers = head.headers
        if head.method != "GET":
            raise Refusal(405, "a websocket upgrade is a GET request", (("Allow", "GET"),))
        if headers.get("Upgrade", "").lower() != "websocket":
            raise Refusal(400, 'Can "Upgrade" only to "WebSocket".')
        if "upgrade" not in (token.strip().lower() for token in headers.get("Connection", "").split(",")):
            raise Refusal(400, '"Connection" must be "Upgrade".')
        origin = headers.get("Origin")
        host = headers.get("Host", "")
        if origin is not None and not origin_allowed(self.endpoint.check_origin, origin, host):
            log.warning("refusing websocket from %s: origin %r not allowed for host %r (check_origin)",
                        request.peer, origin, host)
            raise Refusal(403, "Cross origin websockets not allowed")
        if headers.get("Sec-WebSocket-Version") != "13":
            raise Refusal(426, "websocket version 13 only", (("Sec-WebSocket-Version", "13"),))
        key = headers.get("Sec-WebSocket-Key", "")
        if not _valid_key(key):
            raise Refusal(400, "missing or invalid Sec-WebSocket-Key")
        return key


async def _hand_over(websocket: WebSocket, sock: socket.socket) -> None:
    try:
        await asyncio.get_running_loop().connect_accepted_socket(lambda: websocket, sock)
    except OSError as exc:
        log.warning("dropping websocket from %s: %s", websocket.peer, exc)
        sock.close()
    except BaseException:
        sock.close()
        raise


class PhoenixUpgrade(WebSocketUpgrade):
    """``/socket/websocket``: the serializer chosen by ``?vsn=``, then the app's
    ``Socket.connect``; the messages go to a ``PhoenixSocket``."""

    def __init__(self, endpoint: Endpoint, registry: SocketRegistry, router: Router, pubsub: PubSub,
                 new_socket: Callable[[], Socket], presence: PresenceTracker | None = None) -> None:
        super().__init__(endpoint, registry)
        self.router = router
        self.pubsub = pubsub
        self.presence = presence
        self.new_socket = new_socket

    def admit(self, request: UpgradeRequest) -> Callable[[WebSocket], MessageHandler]:
        peer = request.peer
        params = _query_params(request)
        vsn = params.get("vsn")
        serializer = for_vsn(vsn)
        if serializer is None:
            log.warning("refusing websocket from %s: unknown vsn %r", peer, vsn)
            raise Refusal(403, f"unsupported serializer version {vsn!r}")
        user_socket = self._connect(params, request)
        return lambda websocket: PhoenixSocket(websocket, serializer, self.router, self.pubsub,
                                               self.endpoint.max_channels, peer, user_socket,
                                               presence=self.presence, counts=self.registry.counts)

    def _connect(self, params: dict[str, str], request: UpgradeRequest) -> Socket:
        """The app's socket after its ``connect`` accepted the request; else ``Refusal`` (403),
        after one log line (the reason: never the token, which the access line redacts too)."""
        user_socket = self.new_socket()
        peer = request.peer
        try:
            user_socket.connect(params, ConnectInfo(peer, request.head.headers))
            # Checked here, before the 101: nothing after it may raise on the app's data.
            user_socket.assigns = read_only_assigns(user_socket.assigns)
        except ConnectRefused as refusal:
            log.warning("refusing websocket from %s: %s", peer, refusal.reason)
        except Exception:
            log.exception("refusing websocket from %s: %s.connect crashed", peer, type(user_socket).__name__)
        else:
            return user_socket
        raise Refusal(403, "connect refused")


def _query_params(request: UpgradeRequest) -> dict[str, str]:
    """The query's parameters as Tornado's ``get_query_argument`` gives them (the last of a
    repeated name, stripped); ``Refusal`` (400) for a value that is not UTF-8."""
    try:
        return {name: values[-1].decode("utf-8").strip()
                for name, values in parse_qs_bytes(request.head.query, keep_blank_values=True).items()}
    except UnicodeDecodeError:  # the value is not named: it may be a credential
        log.warning("refusing websocket from %s: a query parameter is not UTF-8", request.peer)
        raise Refusal(400, "query parameters must be UTF-8") from None


def _valid_key(key: str) -> bool:
    try:
        return len(binascii.a2b_base64(key.encode("ascii"), strict_mode=True)) == 16
    except (ValueError, UnicodeEncodeError):
        return False
