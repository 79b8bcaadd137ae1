"""The up session of a real connection: ``dial`` runs a real handshake with an Acceptor on
127.0.0.1, in the clear and over TLS, and returns the dialer's side as a Peer whose session is
not started, while the acceptor's side (raw streams) writes raw frames, split and bunched as a
test needs.

What arrives before the session starts (frames in the same read as the handshake's last frame,
half a frame, later reads, an end of stream or a reset) must reach the session in order, as if
it had been started all along.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator

import pytest

from server.cluster import tls
from server.cluster.framing import HANDSHAKE_MAX_FRAME, Frame, FrameDecoder, FrameType, encode
from server.cluster.handshake import Acceptor, Identity, Initiator, new_creation
from server.cluster.peer import Peer, dial
from server.settings import Cookie, Tls

from inprocess import by_hand
from support.certificates import Certificates

COOKIE = Cookie("peer-session-test-cookie-7c21")
HOST = "127.0.0.1"
DIALER = Identity("gossipy@127.0.0.1", new_creation(), longnames=True)
ACCEPTOR = Identity("other@127.0.0.1", new_creation(), longnames=True)


def broadcast(n: int, size: int = 0) -> bytes:
    return encode(FrameType.BROADCAST, b"%d" % n + b"x" * size)


class Session:
    """The dialer's side of a handshaken stream (a Peer, its session started by :meth:`start`)
    and the acceptor's streams (``there``)."""

    def __init__(self, peer: Peer, there: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.peer = peer
        self.there_reader, self.there = there
        self.got: list[bytes] = []
        self.downs: list[str] = []

    def start(self) -> None:
        self.peer.start(ticktime=60.0, on_frame=lambda _, frame: self.got.append(frame.payload),
                        on_down=lambda _, reason: self.downs.append(reason))

    async def wait_for(self, count: int) -> list[bytes]:
        for _ in range(500):
            if len(self.got) >= count or self.downs:
                break
            await asyncio.sleep(0.01)
        return [payload.rstrip(b"x") for payload in self.got]

    async def wait_down(self) -> list[str]:
        for _ in range(500):
            if self.downs:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # a second on_down would come in this time
        return self.downs

    def reset_there(self) -> None:
        """Ends the stream with a reset (RST), not an end of stream (FIN)."""
        sock = self.there.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.there.transport.abort()


@pytest.fixture(params=["clear", "tls"])
def contexts(request: pytest.FixtureRequest, tmp_path: Path) -> tls.Contexts | None:
    if request.param == "clear":
        return None
    files = Certificates(tmp_path / "ca", "gossipy peer test CA").node(HOST)
    return tls.contexts(Tls(**files))


@asynccontextmanager
async def handshaken(contexts: tls.Contexts | None, after_ack: bytes = b"") -> AsyncIterator[Session]:
    """A stream through a real handshake; the acceptor writes ``after_ack`` in the same loop
    iteration as its last handshake frame, so in the clear the dialer reads them in one piece."""
    accepted: asyncio.Future[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = \
        asyncio.get_running_loop().create_future()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await by_hand(Acceptor(ACCEPTOR, COOKIE), reader, writer)
        writer.write(after_ack)
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(accept, HOST, 0, ssl=contexts.server if contexts else None)
    port = server.sockets[0].getsockname()[1]
    peer = await dial(HOST, port, Initiator(DIALER, COOKIE, expect=ACCEPTOR.name), timeout=5.0, contexts=contexts)
    session = Session(peer, await accepted)
    try:
        yield session
    finally:
        session.peer.close("the test is over")
        session.there.transport.abort()
        server.close()
        await server.wait_closed()


async def test_every_byte_read_before_the_session_started_reaches_it_in_order(
        contexts, monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[bytes] = []
    data_received = Peer.data_received
    monkeypatch.setattr(Peer, "data_received", lambda peer, data: (reads.append(data), data_received(peer, data))[1])
    third = broadcast(3)
    after_ack = broadcast(1) + broadcast(2) + third[:3]
    async with handshaken(contexts, after_ack=after_ack) as s:
        if contexts is None:  # in the clear, the handshake's last read held two and a half frames
            assert [r for r in reads if r.endswith(after_ack) and len(r) > len(after_ack)], reads
        s.there.write(third[3:] + broadcast(4))
        await asyncio.sleep(0.05)  # read and held: the session has not started
        s.start()
        assert await s.wait_for(4) == [b"1", b"2", b"3", b"4"]
        fifth = broadcast(5, size=100)
        s.there.write(fifth[:2])  # not even a whole length prefix
        await asyncio.sleep(0.05)
        s.there.write(fifth[2:50])
        await asyncio.sleep(0.05)
        s.there.write(fifth[50:] + broadcast(6) + encode(FrameType.TICK) + broadcast(7))
        s.there.write(broadcast(8, size=1024 * 1024))  # many reads long
        assert await s.wait_for(8) == [b"%d" % n for n in range(1, 9)]
        assert s.downs == []
        s.there.close()
        assert await s.wait_down() == ["the connection was closed"]


async def test_a_backlog_of_many_reads_before_the_session_started_is_read_on(contexts) -> None:
    async with handshaken(contexts) as s:
        s.there.write(b"".join(broadcast(n, size=1000) for n in range(400)))
        await asyncio.sleep(0.1)
        s.start()
        s.there.write(broadcast(400))
        assert await s.wait_for(401) == [b"%d" % n for n in range(401)]
        assert s.downs == []


async def test_an_end_of_stream_before_the_session_starts_comes_after_the_frames_before_it(contexts) -> None:
    async with handshaken(contexts, after_ack=broadcast(1)) as s:
        s.there.write(broadcast(2))
        s.there.close()
        await asyncio.sleep(0.05)
        s.start()
        assert await s.wait_for(2) == [b"1", b"2"]
        assert await s.wait_down() == ["the connection was closed"]


async def test_a_frame_past_the_handshake_limit_may_come_in_the_handshakes_last_read(contexts) -> None:
    async with handshaken(contexts, after_ack=broadcast(1, size=HANDSHAKE_MAX_FRAME) + broadcast(2)) as s:
        s.start()
        assert await s.wait_for(2) == [b"1", b"2"]
        assert s.downs == []


@pytest.mark.parametrize("started", [False, True], ids=["before", "after"])
async def test_a_reset_is_reported_as_one(started: bool) -> None:
    async with handshaken(None) as s:
        if started:
            s.start()
        s.reset_there()
        await asyncio.sleep(0.05)
        if not started:
            s.start()
        assert await s.wait_down() == ["the connection was reset (ConnectionResetError)"]


async def test_a_bad_frame_drops_the_stream_and_a_leave_is_reported_as_one(contexts) -> None:
    async with handshaken(contexts) as s:
        s.start()
        s.there.write(encode(FrameType.LEAVE) + broadcast(1))
        assert await s.wait_down() == ["it left"]
        assert s.peer.left and s.got == []
    async with handshaken(contexts) as s:
        s.start()
        s.there.write(b"\x00\x00\x00\x01\xff")
        assert await s.wait_down() == ["bad frame: unknown frame type 255"]
        assert await s.there_reader.read() == b""  # dropped: what followed is not read


async def test_leaving_sends_what_was_queued_then_leave_and_closes(contexts) -> None:
    async with handshaken(contexts) as s:
        s.start()
        s.peer.send(broadcast(1))
        started = time.monotonic()
        await s.peer.leave(timeout=2.0)
        assert time.monotonic() - started < 1.0  # closed, not given up on
        assert s.downs == ["this node is leaving"]
        got = FrameDecoder().receive_data(await s.there_reader.read())
        assert got == [Frame(FrameType.BROADCAST, b"1"), Frame(FrameType.LEAVE, b"")]
