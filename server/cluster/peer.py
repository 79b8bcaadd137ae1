"""One persistent TCP stream to a peer node: the handshake driver, then the up session.

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
from typing import Callable

from .framing import MAX_FRAME, Frame, FrameDecoder, FrameError, FrameType, encode
from .handshake import Acceptor, HandshakeError, Initiator, PeerInfo, Reason, State
from .tls import describe_ssl_error

log = logging.getLogger("gossipy.cluster.peer")

READ_SIZE = 256 * 1024
# A stalled peer may make us hold this much before it is dropped: about 20,000 chat
# broadcasts, or several seconds of a busy room, so a healthy but briefly slow peer survives.
MAX_QUEUE = 4 * 1024 * 1024
TICKS_PER_TICKTIME = 4
_TICK = encode(FrameType.TICK)
_LEAVE = encode(FrameType.LEAVE)

Decide = Callable[[PeerInfo], "Reason | None"]


async def run_handshake(hs: Initiator | Acceptor, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        decoder: FrameDecoder, decide: Decide | None = None) -> tuple[PeerInfo, list[Frame]]:
    """Moves a sans-I/O handshake's bytes until it is up. Returns the proven peer and any
    frames that arrived after the handshake's last one (they belong to the session); from
    then on ``decoder`` takes frames up to MAX_FRAME.

    ``decide`` answers an acceptor's send_status step. Raises HandshakeError, after writing
    whatever the handshake has to tell the peer; the caller closes the stream. No timeout
    here: the caller bounds the whole dial or accept.
    """
    try:
        writer.write(hs.data_to_send())
        while True:
            data = await reader.read(READ_SIZE)
            if not data:
                raise HandshakeError(Reason.CLOSED, f"the peer closed the connection in {hs.state.value}")
            # One frame at a time: what follows the handshake's last frame in the same read
            # belongs to the session, whose frames may be larger than the handshake allows.
            frames = decoder.receive_data(data, max_frames=1)
            while frames:
                hs.receive_frame(frames[0])
                if hs.state is State.SEND_STATUS:
                    assert isinstance(hs, Acceptor) and decide is not None and hs.peer is not None
                    hs.answer(decide(hs.peer))
                writer.write(hs.data_to_send())
                if hs.state is State.UP:
                    assert hs.peer is not None
                    decoder.max_size = MAX_FRAME
                    return hs.peer, decoder.receive_data(b"")
                frames = decoder.receive_data(b"", max_frames=1)
    except FrameError as exc:
        error = hs.abort(HandshakeError(Reason.MALFORMED, str(exc)))
    except HandshakeError as exc:
        error = exc
    except ssl.SSLError as exc:  # node.tls: the peer refused our certificate after the TLS handshake
        raise HandshakeError(Reason.CLOSED, f"in {hs.state.value}: {describe_ssl_error(exc)}") from None
    except OSError as exc:
        raise HandshakeError(Reason.CLOSED, f"connection lost in {hs.state.value} ({exc.__class__.__name__})") from None
    writer.write(hs.data_to_send())
    raise error


async def read_frame(reader: asyncio.StreamReader, decoder: FrameDecoder, frames: list[Frame]) -> Frame | None:
    """The next frame: the first of ``frames`` (taken from it), else read; None at end of stream."""
    while not frames:
        data = await reader.read(READ_SIZE)
        if not data:
            return None
        frames.extend(decoder.receive_data(data))
    return frames.pop(0)


class Peer(asyncio.Protocol):
    """An up stream to one peer node: the transport's protocol once :meth:`start` takes it
    over from the handshake's streams, so each read is decoded and dispatched in the loop's
    read callback, with no reader buffer and no task to wake.

    ``on_frame(peer, frame)`` gets each BROADCAST and MEMBERS frame in the order sent;
    ``on_down(peer, reason)`` is called exactly once, whatever ends the stream (reset, silence,
    LEAVE, overflow, a bad frame, or :meth:`close`).
    """

    def __init__(self, info: PeerInfo, writer: asyncio.StreamWriter, decoder: FrameDecoder, *,
                 ticktime: float, max_queue: int = MAX_QUEUE,
                 on_frame: Callable[[Peer, Frame], None], on_down: Callable[[Peer, str], None]) -> None:
        self.info = info
        self.name = info.name
        self.address = _address(writer)
        # Kept for as long as the session: a StreamWriter that is collected closes its transport.
        self._writer = writer
        self._transport = writer.transport
        self._loop = asyncio.get_running_loop()
        self._decoder = decoder
        self._ticktime = ticktime
        self._tick_interval = ticktime / TICKS_PER_TICKTIME
        self._max_queue = max_queue
        self._on_frame = on_frame
        self._on_down = on_down
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

    def start(self, reader: asyncio.StreamReader, early_frames: list[Frame]) -> None:
        """Takes the transport over from the handshake's ``reader``, then handles, in the order
        they arrived, ``early_frames`` (run_handshake's), the bytes ``reader`` still holds, and
        an end of stream it saw; what arrives later comes to :meth:`data_received`."""
        transport = self._transport
        transport.set_protocol(self)
        self._tick_handle = self._loop.call_later(self._tick_interval, self._tick)
        self._dispatch(early_frames)
        lost = reader.exception()
        # StreamReader has no public way to hand over what it holds without awaiting (and
        # awaiting would let more bytes arrive behind it). The reader fed nothing since
        # set_protocol, so this is all it will ever have.
        held = bytes(reader._buffer)
        reader._buffer.clear()
        if held:
            self.data_received(held)
        if lost is not None:
            self.connection_lost(lost)
        elif reader._eof:
            self.eof_received()
        else:
            # The reader pauses the transport when its buffer fills; this session reads all
            # there is at once, so it never needs to.
            transport.resume_reading()

    def send(self, data: bytes) -> None:
        """Queues encoded frames; they go out, in order, at the end of this loop iteration."""
        if self._down_reason is not None:
            return
        self._pending.append(data)
        self._pending_bytes += len(data)
        if self._pending_bytes + self._transport.get_write_buffer_size() > self._max_queue:
            self.close(f"send queue overflow (over {self._max_queue} bytes unsent; the peer is not reading)")
        elif self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_handle = None
        if self._down_reason is not None or not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending.clear()
        self._pending_bytes = 0
        self._wrote = True
        self._transport.write(data)

    def close(self, reason: str) -> None:
        """Drops the stream at once, unsent data with it, and reports it down."""
        if self._down(reason):
            self._transport.abort()

    async def leave(self, timeout: float) -> None:
        """Tells the peer we are leaving, so it marks us down without waiting for ticks, and
        closes once what was queued before has been written (or ``timeout`` passes)."""
        if self._down_reason is not None:
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
        self._on_down(self, reason)
        return True

    # ---- the transport's calls -------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._heard = True
        try:
            frames = self._decoder.receive_data(data)
        except FrameError as exc:
            self.close(f"bad frame: {exc}")
            return
        self._dispatch(frames)

    def eof_received(self) -> bool:
        self.close("the connection was closed")
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._down("the connection was closed")
        else:
            self._down(f"the connection was reset ({exc.__class__.__name__})")
        if not self._lost.done():
            self._lost.set_result(None)

    def _dispatch(self, frames: list[Frame]) -> None:
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


def describe_os_error(exc: OSError) -> str:
    """"Connection refused" rather than asyncio's "Connect call failed ('127.0.0.9', 4370)"."""
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host ({exc.strerror})"
    return os.strerror(exc.errno) if exc.errno else str(exc)


def _address(writer: asyncio.StreamWriter) -> str:
    peername = writer.get_extra_info("peername")
    if isinstance(peername, tuple) and len(peername) >= 2:
        return f"{peername[0]}:{peername[1]}"
    return str(peername)
