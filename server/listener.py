"""The node's HTTP port: it accepts every connection and reads its first request head, then
gives a websocket upgrade of an upgrade path (``/socket/websocket``) straight to the websocket
transport, and everything else to Tornado.

Why not let Tornado route the upgrades too: a websocket leaves Tornado right after its 101
anyway, and going through Tornado's request machinery first (its stream, the HTTP/1
connection with its header timeout, routing, a ``RequestHandler``, detaching) was most of a
join's cost, which bounds how fast a node takes back the clients of a dead one
(bench/README.md, "the reconnect storm"). A connection Tornado serves gets the bytes read so
far first (``PrereadIOStream``), so to Tornado it is any accepted connection.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterable, Mapping
from typing import cast

from tornado.httpserver import HTTPServer
from tornado.iostream import IOStream, StreamClosedError
from tornado.netutil import add_accept_handler

from .channels.websocket import UpgradeRequest, WebSocketUpgrade
from .http1 import HEAD_END, Head, MalformedHead, answer_and_close, parse_head, request_line
from .weblog import RedactingHandler

log = logging.getLogger("gossipy.listener")

# Tornado's own limit on a request head (max_header_size): a longer one is answered with 431.
MAX_HEAD = 64 * 1024
_READ_SIZE = 64 * 1024


class PrereadIOStream(IOStream):
    """An ``IOStream`` whose first reads give back the bytes the listener already read."""

    def __init__(self, sock: socket.socket, preread: bytes) -> None:
        super().__init__(sock)
        self._preread = memoryview(preread)

    def read_from_fd(self, buf: bytearray | memoryview) -> int | None:
        if not self._preread:
            return super().read_from_fd(buf)
        n = min(len(buf), len(self._preread))
        buf[:n] = self._preread[:n]
        self._preread = self._preread[n:]
        return n


class Listener:
    """Accepts on the node's listening sockets and reads each connection's first request head
    (for at most ``timeout`` seconds), then serves it as its start line says."""

    def __init__(self, http: HTTPServer, upgrades: Mapping[str, WebSocketUpgrade], ready: Callable[[], bool],
                 timeout: float) -> None:
        """``upgrades``: the upgrade of each path; ``ready``: whether they are served yet (until
        then Tornado answers every request, as it does while the node boots)."""
        self.http = http
        self.upgrades = upgrades
        self.ready = ready
        self.timeout = timeout
        self._heads: set[HeadReader] = set()
        self._stop_accepting: list[Callable[[], None]] = []
        self._listening: list[socket.socket] = []

    def add_sockets(self, sockets: Iterable[socket.socket]) -> None:
        for sock in sockets:
            self._listening.append(sock)
            self._stop_accepting.append(add_accept_handler(sock, self._accepted))

    def stop(self) -> None:
        """Stops accepting, and closes the connections whose head is still coming."""
        for stop in self._stop_accepting:
            stop()
        for sock in self._listening:
            sock.close()
        self._stop_accepting, self._listening = [], []
        for reader in list(self._heads):
            reader.close()

    def _accepted(self, sock: socket.socket, address: tuple[object, ...]) -> None:
        sock.setblocking(False)
        peer = str(address[0]) if address else "unknown"
        reader = HeadReader(self, sock, address, peer)
        self._heads.add(reader)
        reader.read()

    def dispatch(self, reader: HeadReader, head_end: int) -> None:
        """The reader's data holds a whole head, up to ``head_end`` (and maybe more): an
        upgrade path's request goes to its upgrade, anything else to Tornado."""
        data = reader.data
        start = request_line(data)
        upgrade = self.upgrades.get(start[1].partition("?")[0]) if start is not None else None
        if start is None or upgrade is None or not self.ready():
            self.http.handle_stream(PrereadIOStream(reader.sock, data), reader.address)
            return
        started = time.monotonic()
        try:
            head = parse_head(start, data[:head_end])
        except MalformedHead as exc:
            log.warning("bad request from %s: %s", reader.peer, exc)
            answer_and_close(reader.sock, 400, "malformed request head")
            return
        upgrade.upgrade(UpgradeRequest(head, reader.peer, started), reader.sock, data[head_end:])

    def forget(self, reader: HeadReader) -> None:
        self._heads.discard(reader)


class HeadReader:
    """One accepted connection until its request head is whole."""

    __slots__ = ("listener", "sock", "address", "peer", "data", "_timer")

    def __init__(self, listener: Listener, sock: socket.socket, address: tuple[object, ...], peer: str) -> None:
        self.listener = listener
        self.sock = sock
        self.address = address
        self.peer = peer
        self.data = b""
        # Set while the reader waits for the socket to be readable (and the head to come).
        self._timer: asyncio.TimerHandle | None = None

    def read(self) -> None:
        """Reads what came, until the socket has no more; called once accepted (a client that
        sent its request at once, as they do, costs no wait), then each time it is readable.
        Reading on to the end matters: uvloop reports nothing more for a socket whose reset
        came with its data, so the reset must be found by this read."""
        while True:
            try:
                chunk = self.sock.recv(_READ_SIZE)
            except BlockingIOError:
                self._wait()
                return
            except OSError:
                self.close()
                return
            if not chunk:  # gone before its request was whole
                self.close()
                return
            self.data += chunk
            end = HEAD_END.search(self.data)
            if end is not None:
                self._done()
                self.listener.dispatch(self, end.end())
                return
            if len(self.data) > MAX_HEAD:
                self._done()
                log.warning("refusing a request from %s: its head is over %d bytes", self.peer, MAX_HEAD)
                answer_and_close(self.sock, 431, f"request head over {MAX_HEAD} bytes")
                return

    def _wait(self) -> None:
        if self._timer is not None:
            return
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self.read)
        # A client that connects and stays silent would hold a descriptor: Tornado's
        # idle_connection_timeout, before the head.
        self._timer = loop.call_later(self.listener.timeout, self.close)

    def _done(self) -> None:
        """The head is whole, or the connection ends: no more waiting, nor a pending head."""
        self.listener.forget(self)
        if self._timer is not None:
            asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        self._done()
        self.sock.close()


class KeptAliveUpgradeHandler(RedactingHandler):
    """An upgrade path's request that reached Tornado: sent on a kept-alive connection after
    another request (the listener reads only each connection's first head). The connection
    leaves Tornado for the same upgrade as a first request's."""

    def initialize(self, upgrade: WebSocketUpgrade) -> None:
        self.upgrade = upgrade

    def get(self) -> None:
        started = time.monotonic()
        request = self.request
        peer = request.remote_ip or "unknown"
        head = Head(request.method or "GET", request.uri or "", request.headers)
        taken = _take_socket(self.detach(), peer)
        if taken is not None:
            sock, early = taken
            self.upgrade.upgrade(UpgradeRequest(head, peer, started), sock, early)


def _take_socket(stream: IOStream, peer: str) -> tuple[socket.socket, bytes] | None:
    """The connection's socket, taken from Tornado, and any bytes the client sent after its
    request that Tornado already read. None if the client is gone, or no descriptor is left to
    take it with."""
    try:
        # Tornado annotates read_bytes as an Awaitable but documents and returns a Future, whose
        # done() tells whether Tornado already held the bytes.
        pending = cast("asyncio.Future[bytes]", stream.read_bytes(1 << 30, partial=True))
    except StreamClosedError:
        return None
    early = b""
    if pending.done():
        try:
            early = pending.result()
        except StreamClosedError:
            return None
    if stream.closed():
        return None
    # A duplicate descriptor outlives the stream's close, which unregisters the original from
    # the event loop and releases everything Tornado held for the connection.
    try:
        sock = stream.socket.dup()
    except OSError as exc:  # EMFILE, ENFILE: the node is out of descriptors
        log.warning("dropping websocket from %s: %s", peer, exc)
        stream.close()
        return None
    stream.close()
    sock.setblocking(False)
    return sock, early
