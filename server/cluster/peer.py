"""One TCP (or TLS) connection to a peer node, as one asyncio Protocol: the handshake, then the
up session. :func:`dial` opens one; a listener makes one per accepted connection.

The Protocol moves bytes and timers only. The handshake is the sans-I/O
:class:`~.handshake.Initiator` or :class:`~.handshake.Acceptor`: frames go in, bytes come out.
Once it is up, :attr:`Peer.handshaken` resolves, and frames that arrive before the owner
starts the session (those in the same read as the handshake's last frame included) are held,
with an end of the stream behind them, until :meth:`Peer.start` hands them over in order. A
control connection reads them one at a time with :meth:`Peer.receive` instead.

The session ticks while idle and counts silent tick intervals, as Erlang's net_kernel does:
a peer from which nothing has arrived for ``net_ticktime`` is down. Counting intervals rather
than comparing clocks means a stall of our own event loop costs one missed interval, not a
false "down" for every peer whose bytes are waiting unread in the kernel.

Writes made in one event-loop iteration go out as one ``write`` (one system call per peer
however many broadcasts the iteration made). What the kernel does not take waits in the
transport's buffer; that buffer is the send queue, and a peer that lets it grow past
``max_queue`` bytes is stalled: it is dropped (and the owner dials it again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import ssl
from typing import Any, Callable, cast

from .framing import MAX_FRAME, Frame, FrameDecoder, FrameError, FrameType, encode
from .handshake import Acceptor, HandshakeError, Initiator, PeerInfo, Reason, State
from .tls import Contexts, describe_ssl_error

log = logging.getLogger("gossipy.cluster.peer")

# What a stalled peer may make us hold before it is dropped: enough for a healthy but briefly
# slow peer to catch up on a busy room's broadcasts.
MAX_QUEUE = 4 * 1024 * 1024
TICKS_PER_TICKTIME = 4
_TICK = encode(FrameType.TICK)
_LEAVE = encode(FrameType.LEAVE)

Decide = Callable[["Peer", PeerInfo], "Reason | None"]


class Unreachable(Exception):
    """:func:`dial` could not connect (nothing listens, no route, no such host) or, with TLS,
    the TLS handshake failed. The message says why, for a human; ``refused``: nothing listens
    there; ``tls``: the TLS handshake failed (certificates, or node.tls on one side only)."""

    def __init__(self, detail: str, *, refused: bool = False, tls: bool = False) -> None:
        super().__init__(detail)
        self.refused = refused
        self.tls = tls


async def dial(host: str, port: int, handshake: Initiator, *, timeout: float | None,
               contexts: Contexts | None = None, server_hostname: str | None = None,
               local_addr: tuple[str, int] | None = None) -> Peer:
    """Connects to ``host``:``port`` (over TLS with ``contexts``, checking that the peer's
    certificate names ``server_hostname``, by default ``host``) and runs ``handshake``, all
    within ``timeout`` seconds (None: the caller bounds it). Returns the Peer, up, its session
    not started. Raises HandshakeError (the stream is closed, after telling the peer why),
    Unreachable, or TimeoutError."""
    loop = asyncio.get_running_loop()
    options: dict[str, Any] = {}
    if contexts is not None:
        options = {"ssl": contexts.client, "server_hostname": server_hostname or host}
        if timeout is not None:
            options["ssl_handshake_timeout"] = timeout
    handshake.send_name()
    peer: Peer | None = None
    try:
        async with asyncio.timeout(timeout):
            _, peer = await loop.create_connection(lambda: Peer(handshake), host, port, local_addr=local_addr,
                                                   **options)
            await peer.handshaken
            return peer
    except HandshakeError:
        raise
    except BaseException as exc:
        if peer is not None:
            peer.close("the dial did not complete")
        if isinstance(exc, ssl.SSLError):
            # The certificates or node.tls do not match.
            raise Unreachable(describe_ssl_error(exc), tls=True) from None
        if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
            raise Unreachable(_describe_os_error(exc), refused=isinstance(exc, ConnectionRefusedError)) from None
        raise


class Peer(asyncio.Protocol):
    """One connection to a peer node (see the module docstring).

    ``handshake``: the sans-I/O side this end plays (an Initiator has sent its name already).
    ``decide(peer, claim)`` answers an acceptor's send_status step (None lets the peer in); it
    may raise HandshakeError. ``on_connected(peer)`` is called once the connection is made
    (after the TLS handshake, with TLS); it may :meth:`refuse` or :meth:`close` the peer.

    Once :meth:`start` ran, ``on_frame(peer, frame)`` gets each BROADCAST and MEMBERS frame in
    the order sent, and ``on_down(peer, reason)`` is called exactly once, whatever ends the
    stream (reset, silence, LEAVE, overflow, a bad frame, or :meth:`close`).
    """

    def __init__(self, handshake: Initiator | Acceptor, *, decide: Decide | None = None,
                 on_connected: Callable[[Peer], None] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.handshake = handshake
        self._decide = decide
        self._on_connected = on_connected
        self._decoder = FrameDecoder()
        self.handshaken: asyncio.Future[PeerInfo] = self._loop.create_future()
        # Read by the owner, if at all: a refused or failed handshake needs no one to await it.
        self.handshaken.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._info: PeerInfo | None = None
        self.address = ""
        self._transport: asyncio.Transport | None = None
        # Up, before start(): frames held for the session, and a waiting receive().
        self._held: list[Frame] = []
        self._bad: FrameError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_frame: Callable[[Peer, Frame], None] | None = None
        self._on_down: Callable[[Peer, str], None] | None = None
        self._ticktime = 0.0
        self._tick_interval = 0.0
        self._max_queue = MAX_QUEUE
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        self._flush_handle: asyncio.Handle | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._silent = 0
        self._heard = False
        self._wrote = False
        self._down_reason: str | None = None
        self._lost = self._loop.create_future()
        # True once the peer said it is leaving (a clean stop), rather than going silent or away.
        self.left = False

    @property
    def info(self) -> PeerInfo:
        """Who the peer proved to be (once :attr:`handshaken` resolved)."""
        assert self._info is not None, "the handshake is not up"
        return self._info

    @property
    def name(self) -> str:
        return self.info.name

    def extra(self, name: str) -> Any:
        """The transport's ``get_extra_info(name)``: "peername", "peercert" ..."""
        assert self._transport is not None
        return self._transport.get_extra_info(name)

    # ---- the owner's calls -------------------------------------------------------------------

    def refuse(self, reason: Reason, detail: str) -> None:
        """Ends the handshake before it started: tells the peer ``reason`` and closes."""
        self._handshake_failed(self.handshake.abort(HandshakeError(reason, detail)))

    def start(self, *, ticktime: float, on_frame: Callable[[Peer, Frame], None],
              on_down: Callable[[Peer, str], None], max_queue: int = MAX_QUEUE) -> None:
        """Starts the up session: first hands over, in the order they came, the frames held
        since the handshake ended and then an end of the stream behind them."""
        self._ticktime = ticktime
        self._tick_interval = ticktime / TICKS_PER_TICKTIME
        self._max_queue = max_queue
        self._on_frame = on_frame
        self._on_down = on_down
        ended, self._down_reason = self._down_reason, None
        held, self._held = self._held, []
        self._dispatch(held)
        if ended is not None:
            self._down(ended)
        elif self._down_reason is None:
            self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)

    async def receive(self) -> Frame | None:
        """The next frame of an up stream whose session is not started (a control connection's
        question or answer); None once the stream ended. Raises FrameError for bad bytes."""
        while not self._held:
            if self._bad is not None:
                raise self._bad
            if self._down_reason is not None:
                return None
            self._waiter = self._loop.create_future()
            await self._waiter
        return self._held.pop(0)

    @property
    def queued_bytes(self) -> int:
        """Bytes sent and not yet taken by the kernel: this iteration's, and the transport's."""
        transport = self._transport
        return self._pending_bytes + (transport.get_write_buffer_size() if transport is not None else 0)

    def send(self, data: bytes) -> None:
        """Queues encoded frames; they go out, in order, at the end of this loop iteration."""
        if self._down_reason is not None or self._transport is None:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self.queued_bytes > self._max_queue:
            self.close(f"send queue overflow (over {self._max_queue} bytes unsent; the peer is not reading)")
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._down_reason is not None or not self._pending or self._transport is None:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._wrote = True
        self._transport.write(data)

    def finish(self, data: bytes = b"") -> None:
        """Writes ``data`` (after what was sent before) and closes once it is written: the end
        of a control connection."""
        self._flush()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)
            self._transport.close()

    def close(self, reason: str) -> None:
        """Drops the stream at once, unsent data with it, and reports it down."""
        if self._down(reason) and self._transport is not None:
            self._transport.abort()

    async def leave(self, timeout: float) -> None:
        """Tells the peer we are leaving, so it marks us down without waiting for ticks, and
        closes once what was queued before has been written (or ``timeout`` passes)."""
        if self._down_reason is not None or self._transport is None:
            return
        self.send(_LEAVE)
        self._flush()
        self._down("this node is leaving")
        self._transport.close()
        try:
            await asyncio.wait_for(asyncio.shield(self._lost), timeout)
        except TimeoutError:
            self._transport.abort()

    def _down(self, reason: str) -> bool:
        if self._down_reason is not None:
            return False
        self._down_reason = reason
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._tick_handle is not None:
            self._tick_handle.cancel()
            self._tick_handle = None
        if self._on_down is not None:
            self._on_down(self, reason)
        self._wake()
        return True

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    # ---- the transport's calls -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        self.address = _address(transport.get_extra_info("peername"))
        if self._on_connected is not None:
            self._on_connected(self)
        if not self._transport.is_closing():
            self._transport.write(self.handshake.data_to_send())

    def data_received(self, data: bytes) -> None:
        if not self.handshaken.done():
            self._handshake_received(data)
            return
        if self._info is None:  # the handshake failed: the stream is closing
            return
        self._heard = True
        try:
            frames = self._decoder.receive_data(data)
        except FrameError as exc:
            self._bad = exc
            self.close(f"bad frame: {exc}")
            return
        self._dispatch(frames)

    def eof_received(self) -> bool:
        if not self.handshaken.done():
            self._handshake_failed(HandshakeError(
                Reason.CLOSED, f"the peer closed the connection in {self.handshake.state.value}"))
        else:
            self.close("the connection was closed")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshaken.done():
            state = self.handshake.state.value
            if exc is None:
                error = HandshakeError(Reason.CLOSED, f"the peer closed the connection in {state}")
            elif isinstance(exc, ssl.SSLError):  # node.tls: the peer refused our certificate after the TLS handshake
                error = HandshakeError(Reason.CLOSED, f"in {state}: {describe_ssl_error(exc)}")
            else:
                error = HandshakeError(Reason.CLOSED, f"connection lost in {state} ({exc.__class__.__name__})")
            self._handshake_failed(error)
        elif exc is None:
            self._down("the connection was closed")
        else:
            self._down(f"the connection was reset ({exc.__class__.__name__})")
        if not self._lost.done():
            self._lost.set_result(None)

    # ---- the handshake -----------------------------------------------------------------------

    def _handshake_received(self, data: bytes) -> None:
        hs = self.handshake
        assert self._transport is not None
        try:
            # One frame at a time: what follows the handshake's last frame in the same read
            # belongs to the session, whose frames may be larger than the handshake allows.
            frames = self._decoder.receive_data(data, max_frames=1)
            while frames:
                hs.receive_frame(frames[0])
                if hs.state is State.SEND_STATUS:
                    assert isinstance(hs, Acceptor) and self._decide is not None and hs.peer is not None
                    hs.answer(self._decide(self, hs.peer))
                self._transport.write(hs.data_to_send())
                if hs.state is State.UP:
                    assert hs.peer is not None
                    self._up(hs.peer)
                    return
                frames = self._decoder.receive_data(b"", max_frames=1)
        except FrameError as exc:
            self._handshake_failed(hs.abort(HandshakeError(Reason.MALFORMED, str(exc))))
        except HandshakeError as exc:
            self._handshake_failed(hs.abort(exc))

    def _up(self, info: PeerInfo) -> None:
        self._info = info
        self._decoder.max_size = MAX_FRAME
        self.handshaken.set_result(info)
        self.data_received(b"")

    def _handshake_failed(self, exc: HandshakeError) -> None:
        """Fails :attr:`handshaken` with ``exc`` and closes, once the peer has been told why."""
        if self.handshaken.done():
            return
        self.handshaken.set_exception(exc)
        self._down_reason = str(exc)
        self.finish(self.handshake.data_to_send())

    # ---- the session -------------------------------------------------------------------------

    def _dispatch(self, frames: list[Frame]) -> None:
        if self._on_frame is None:
            self._held.extend(frames)
            if frames:
                self._wake()
            return
        for frame in frames:
            if self._down_reason is not None:
                return
            frame_type = frame.type
            if frame_type is FrameType.TICK:
                continue
            if frame_type is FrameType.LEAVE:
                self.left = True
                self.close("it left")
            elif frame_type is FrameType.BROADCAST or frame_type is FrameType.MEMBERS:
                try:
                    self._on_frame(self, frame)
                except Exception:
                    log.exception("handling a %s frame from %s failed", frame_type.name, self.name)
            else:
                self.close(f"unexpected {frame_type.name} frame in an up session")

    def _tick(self) -> None:
        # A timer rather than a task that sleeps: one TimerHandle per interval instead of a
        # Future, a TimerHandle and a task step, and _down cancels it without a CancelledError.
        assert self._transport is not None
        if self._heard:
            self._heard = False
            self._silent = 0
        else:
            self._silent += 1
            if self._silent >= TICKS_PER_TICKTIME:
                self.close(f"nothing heard for {self._ticktime:g} s (net_ticktime)")
                return
        if not self._wrote:
            # Straight to the transport: a tick orders nothing, and must not count as
            # the write that makes the next tick unnecessary.
            self._transport.write(_TICK)
        self._wrote = False
        self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)


def _describe_os_error(exc: OSError) -> str:
    """"Connection refused" rather than asyncio's "Connect call failed ('127.0.0.9', 4370)"."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _address(peername: object) -> str:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)
