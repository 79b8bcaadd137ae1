"""A TCP relay that a test can cut, heal, black-hole, point elsewhere and read: between two
nodes' distribution ports (the hardening tests), or as the load balancer in front of a node
that a browser page talks to (the browser tests).

Nodes dial a peer at the host of its name (``gossipy@127.0.0.3`` -> 127.0.0.3) on the shared
distribution port, and listen where ``node.dist_bind`` says. So a node that binds its
distribution port to another address (127.0.0.13) is reached only through whatever listens on
127.0.0.3: a ``TcpProxy(("127.0.0.3", port), ("127.0.0.13", port))`` puts this relay on every
stream to it, with no setting added to gossipy::

    with TcpProxy(("127.0.0.3", port), ("127.0.0.13", port)) as proxy:
        ...
        proxy.cut()     # a partition: nothing crosses, no FIN, no RST (as when a cable is pulled)
        proxy.heal()    # what was held crosses now, as TCP would retransmit it
        proxy.captured  # every byte relayed, both directions

While cut, relayed streams stop moving (their bytes wait, and the senders' buffers fill), and
new connections are accepted but not carried on (the dialer's handshake stalls). ``heal``
carries on all of them; a node that gave up on one meanwhile has closed it, and that close
then crosses too. The relay runs its own event loop in a thread, so tests that block (the node
harness's waits) do not stall it.

As a load balancer: ``TcpProxy(("127.0.0.1", 0), (node.host, node.port)).start()`` listens on
a free port (``proxy.port``; ``close()`` at the end). ``point_at(target)`` sends new
connections elsewhere, as a load balancer does once a health check fails; open ones stay where
they are until their node dies. A connection whose target cannot be reached is closed at once
(a client sees a drop). ``blackhole()`` makes the open connections lose every byte from then
on without closing them: a network path that died silently.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

CONNECT_TIMEOUT = 2.0  # seconds for a relayed connection to reach its target


class _Pipe:
    """One relayed connection: the dialer's side and the listener's side."""

    def __init__(self, proxy: "TcpProxy", reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.client = (reader, writer)
        self.server: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.blackholed = False

    async def run(self) -> None:
        try:
            await self.proxy._open.wait()
            self.server = await asyncio.wait_for(asyncio.open_connection(*self.proxy.target), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError):
            self.client[1].transport.abort()
            return
        try:
            await asyncio.gather(self._pump(self.client[0], self.server[1]), self._pump(self.server[0], self.client[1]))
        finally:  # the relay closing (cancelled) drops the connection too, both sides at once
            self._abort()

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                await self.proxy._open.wait()
                data = await reader.read(65536)
                if not data:
                    break
                await self.proxy._open.wait()  # cut while this was read: it waits here
                if self.blackholed:
                    continue
                self.proxy.captured += data
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        self._abort()

    def _abort(self) -> None:
        for _, w in (self.client, self.server or self.client):
            w.transport.abort()


class TcpProxy:
    def __init__(self, listen: tuple[str, int], target: tuple[str, int]) -> None:
        self.listen = listen
        self.target = target
        self.port = listen[1]  # the one listened on, once started (listen's port 0: a free one)
        self.captured = bytearray()
        self.connections = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"proxy {listen}", daemon=True)
        self._server: asyncio.Server | None = None
        self._open: asyncio.Event | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pipes: set[_Pipe] = set()

    def start(self) -> "TcpProxy":
        self._thread.start()
        self._call(self._start())
        return self

    def close(self) -> None:
        self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> "TcpProxy":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def cut(self) -> None:
        self._call(self._set(False))

    def heal(self) -> None:
        self._call(self._set(True))

    def point_at(self, target: tuple[str, int]) -> None:
        """New connections go to ``target``; open ones stay where they are."""
        self.target = target

    def blackhole(self) -> None:
        """Every open connection loses all bytes from now on, in both directions, and stays open."""
        self._call(self._blackhole())

    async def _blackhole(self) -> None:
        for pipe in self._pipes:
            pipe.blackholed = True

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _start(self) -> None:
        self._open = asyncio.Event()
        self._open.set()
        self._server = await asyncio.start_server(self._accept, *self.listen)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _set(self, open_: bool) -> None:
        assert self._open is not None
        if open_:
            self._open.set()
        else:
            self._open.clear()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        pipe = _Pipe(self, reader, writer)
        self._pipes.add(pipe)
        try:
            await pipe.run()
        finally:
            self._tasks.discard(task)
            self._pipes.discard(pipe)

    async def _stop(self) -> None:
        assert self._server is not None and self._open is not None
        self._server.close()
        self._open.set()
        # A connection accepted just before the close has its task made but not yet run (so not
        # in _tasks): one loop step lets it register, to be cancelled with the others rather
        # than destroyed half-run when the loop closes.
        await asyncio.sleep(0)
        # Cancelled until they end, not once: asyncio.wait_for (3.11) swallows a cancellation
        # that arrives as the connection to the target completes, and that task then goes on
        # relaying (a CI run's teardown waited out its 10 s on one).
        while self._tasks:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.wait(list(self._tasks), timeout=0.5)
