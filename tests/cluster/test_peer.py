"""The up session taking a real stream over from the handshake: a real handshake between an
Initiator and an Acceptor on 127.0.0.1, in the clear and over TLS, then the dialer's side as a
Peer while the acceptor's side writes raw frames, split and bunched as a test needs.

What the handshake's streams already hold when the session starts (frames decoded with the
handshake's last frame, half a frame in the decoder, bytes in the StreamReader, an end of
stream or a reset it saw) must reach the session in order, as if it had read them itself.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from server.cluster import tls
from server.cluster.framing import Frame, FrameDecoder, FrameType, encode
from server.cluster.handshake import Acceptor, Identity, Initiator, new_creation
from server.cluster.peer import Peer, run_handshake
from server.settings import Cookie, Tls
from support.certificates import Certificates

COOKIE = Cookie("peer-session-test-cookie-7c21")
HOST = "127.0.0.1"
DIALER = Identity("gossipy@127.0.0.1", new_creation(), longnames=True)
ACCEPTOR = Identity("other@127.0.0.1", new_creation(), longnames=True)


def broadcast(n: int, size: int = 0) -> bytes:
    return encode(FrameType.BROADCAST, b"%d" % n + b"x" * size)


class Session:
    """The dialer's side of a handshaken stream (a Peer once :meth:`start` runs) and the
    acceptor's streams (``there``)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, decoder: FrameDecoder,
                 early: list[Frame], info: Any, there: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
        self.reader, self.early = reader, early
        self.there_reader, self.there = there
        self.got: list[bytes] = []
        self.downs: list[str] = []
        self.peer = Peer(info, writer, decoder, ticktime=60.0,
                         on_frame=lambda _, frame: self.got.append(frame.payload),
                         on_down=lambda _, reason: self.downs.append(reason))

    def start(self) -> None:
        self.peer.start(self.reader, self.early)

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
        await run_handshake(Acceptor(ACCEPTOR, COOKIE), reader, writer, FrameDecoder(), lambda claim: None)
        writer.write(after_ack)
        accepted.set_result((reader, writer))

    server = await asyncio.start_server(accept, HOST, 0, ssl=contexts.server if contexts else None)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection(HOST, port, ssl=contexts.client if contexts else None,
                                                   server_hostname=HOST if contexts else None)
    hs = Initiator(DIALER, COOKIE, expect=ACCEPTOR.name)
    hs.send_name()
    decoder = FrameDecoder()
    info, early = await run_handshake(hs, reader, writer, decoder)
    session = Session(reader, writer, decoder, early, info, await accepted)
    try:
        yield session
    finally:
        session.peer.close("the test is over")
        session.there.transport.abort()
        server.close()
        await server.wait_closed()


async def test_every_byte_the_handshake_read_or_buffered_reaches_the_session_in_order(contexts) -> None:
    third = broadcast(3)
    async with handshaken(contexts, after_ack=broadcast(1) + broadcast(2) + third[:3]) as s:
        if contexts is None:  # in the clear, the handshake's last read held two and a half frames
            assert [frame.payload for frame in s.early] == [b"1", b"2"]
        s.there.write(third[3:] + broadcast(4))
        await asyncio.sleep(0.05)  # read into the StreamReader's buffer: the session has not started
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


async def test_a_backlog_that_paused_the_streamreader_is_read_on(contexts) -> None:
    async with handshaken(contexts) as s:
        # Over twice the StreamReader's 64 KiB limit: it stops reading from the transport.
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
