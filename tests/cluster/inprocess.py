"""Helpers for in-process cluster tests: real Nodes on 127.0.0.x, real sockets, one loop.

``nodes = Nodes(port)``; ``a = nodes.node(2, sync=[3])`` makes gossipy@127.0.0.2 listing
gossipy@127.0.0.3, with a real PubSub and a recording subscriber on room:1; ``async with
nodes:`` stops every node at the end. ``connect_as(...)`` is a hand-driven peer (the real
Initiator over a raw stream, see ``by_hand``) for tests that need a peer which misbehaves
after the handshake.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Iterable

from server.cluster import ClusterAdapter, Node
from server.cluster.framing import MAX_FRAME, Frame, FrameDecoder
from server.cluster.handshake import Acceptor, HandshakeError, Identity, Initiator, Reason, State, new_creation
from server.pubsub import Broadcast, PubSub
from server.settings import Cookie, Distribution

from support.node_processes import address
from support.node_processes import node_name as name
from support.server_process import free_port

SECRET = "in-process-test-cookie-4f1d2a"
COOKIE = Cookie(SECRET)
TOPIC = "room:1"


class Recorder:
    """A pubsub subscriber that keeps what it is given."""

    def __init__(self) -> None:
        self.got: list[Broadcast] = []

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        self.got.append(message)

    def payloads(self) -> list[Any]:
        return [m.payload for m in self.got]


class CountingPubSub(PubSub):
    """A real PubSub that counts the broadcasts handed to it from other nodes."""

    def __init__(self) -> None:
        super().__init__()
        self.from_peers = 0

    def local_broadcast(self, message: Broadcast, exclude: Any = None) -> None:
        self.from_peers += 1
        super().local_broadcast(message, exclude)


@dataclasses.dataclass
class Member:
    node: Node
    pubsub: CountingPubSub
    recorder: Recorder

    def shout(self, payload: Any) -> None:
        self.pubsub.broadcast(Broadcast(TOPIC, "shout", payload))


class Nodes:
    """Makes Nodes sharing one distribution port, and stops them all on exit."""

    def __init__(self, hosts: range = range(2, 12)) -> None:
        self.port = free_port([address(i) for i in hosts] + ["127.0.0.50", "127.0.0.60"])
        self.made: list[Node] = []

    def distribution(self, i: int, sync: Iterable[int] = (), mandatory: Iterable[int] = (),
                     **overrides: Any) -> Distribution:
        fields: dict[str, Any] = dict(node=name(i), longnames=True, cookie=COOKIE, port=self.port,
                                      sync_nodes_optional=tuple(name(j) for j in sync),
                                      sync_nodes_mandatory=tuple(name(j) for j in mandatory),
                                      sync_nodes_timeout_ms=3000, net_ticktime=2.0)
        fields.update(overrides)
        return Distribution(**fields)

    def node(self, i: int, sync: Iterable[int] = (), mandatory: Iterable[int] = (),
             node_options: dict[str, Any] | None = None, **overrides: Any) -> Member:
        node = Node(self.distribution(i, sync, mandatory, **overrides), **(node_options or {}))
        pubsub = CountingPubSub()
        pubsub.adapter = ClusterAdapter(node, pubsub)
        recorder = Recorder()
        pubsub.subscribe(TOPIC, recorder)
        self.made.append(node)
        return Member(node, pubsub, recorder)

    async def __aenter__(self) -> "Nodes":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.gather(*(node.stop() for node in self.made))


async def by_hand(hs: Initiator | Acceptor, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> list[Frame]:
    """Runs a real handshake over raw streams, for a test's side that then writes what it likes
    (an acceptor lets any claim in); returns the frames read after its last one. Raises
    HandshakeError."""
    decoder = FrameDecoder(MAX_FRAME)  # no need to guard a test's side against the node
    frames: list[Frame] = []
    writer.write(hs.data_to_send())
    while hs.state is not State.UP:
        if not frames:
            data = await reader.read(64 * 1024)
            if not data:
                raise HandshakeError(Reason.CLOSED, f"the node closed the connection in {hs.state.value}")
            frames = decoder.receive_data(data)
            continue
        hs.receive_frame(frames.pop(0))
        if isinstance(hs, Acceptor) and hs.state is State.SEND_STATUS:
            hs.answer(None)
        writer.write(hs.data_to_send())
    return frames


async def connect_as(me: str, target: int, port: int, cookie: Cookie = COOKIE, source: str | None = None,
                     hidden: bool = False) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, list[Frame]]:
    """Completes a real handshake with node ``target`` as ``me``; returns the open stream."""
    reader, writer = await asyncio.open_connection(address(target), port,
                                                   local_addr=(source, 0) if source else None)
    hs = Initiator(Identity(me, new_creation(), longnames=True), cookie, expect=name(target), hidden=hidden)
    hs.send_name()
    return reader, writer, await by_hand(hs, reader, writer)


async def start_all(*members: Member) -> None:
    await asyncio.gather(*(m.node.start() for m in members))
