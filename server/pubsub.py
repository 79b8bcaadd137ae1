"""Topic subscriptions on this node, and the seam through which broadcasts cross to others.

Like phoenix_pubsub: ``broadcast`` hands the message to the adapter (which sends it once to
each other node), then dispatches it locally. A node that receives a broadcast from a peer
calls ``local_broadcast``; nothing in here knows what carries messages between nodes.

Local dispatch is a "fastlane": subscribers get a per-broadcast ``cache`` dict in which the
first subscriber of each wire format stores the encoded frame, so a broadcast is encoded once
per format however many sockets receive it.

The seam is Phoenix.PubSub.Adapter's (this node's name, broadcast to the other nodes, direct
broadcast to one node) plus node up/down events, so that a part built on pubsub (presence's
tracker) can follow the cluster without importing it. Topics starting with
:data:`RESERVED_TOPIC_PREFIX` are for such parts: no client may join one, and the backend API and
``gossipy broadcast`` refuse them (:func:`reserved_topic`), so only the node itself speaks there.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, Protocol

from . import strictjson
from .metrics import Counts

log = logging.getLogger("gossipy.pubsub")

# Like MQTT's "$SYS/" topics: a "$" prefix that apps are unlikely to use, kept by the server
# for its own traffic between nodes.
RESERVED_TOPIC_PREFIX = "$gossipy:"


def reserved_topic(topic: str) -> bool:
    """True for a topic of the server's own (see the module docstring)."""
    return topic.startswith(RESERVED_TOPIC_PREFIX)


class Broadcast(NamedTuple):
    topic: str
    event: str
    payload: Any
    # Its form between nodes when whoever made it has encoded it already (:meth:`encoded_now`):
    # a channel does, to refuse an unencodable payload in the hook that broadcasts, and the
    # adapter then sends those bytes rather than encoding the message again.
    encoded: bytes | None = None

    @classmethod
    def encoded_now(cls, topic: str, event: str, payload: Any) -> Broadcast:
        """A broadcast whose form between nodes is made at once (TypeError or ValueError for
        a payload JSON cannot carry)."""
        return cls(topic, event, payload, _between_nodes(topic, event, payload))

    def between_nodes(self) -> bytes:
        """The one JSON form of a broadcast between nodes, ``[topic, event, payload]``, made
        once per broadcast."""
        return self.encoded if self.encoded is not None else _between_nodes(self.topic, self.event, self.payload)


def _between_nodes(topic: str, event: str, payload: Any) -> bytes:
    return strictjson.dumps([topic, event, payload]).encode()


class Subscriber(Protocol):
    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        """Called once per broadcast on a subscribed topic; must not block."""


class NodeId(NamedTuple):
    """One incarnation of a node: its name, and a creation that is new at each boot, so a node
    restarted under the same name is told apart from the one that was."""

    name: str
    creation: int


class NodeWatcher(Protocol):
    """Told when another node comes up or goes down (see :meth:`PubSub.watch_nodes`)."""

    def node_up(self, node: NodeId) -> None:
        """``node`` is connected; what is sent to it from now on reaches it, in order."""

    def node_down(self, node: NodeId, left: bool) -> None:
        """``node`` is no longer connected: it said it was stopping (``left``, a clean stop), or
        it went silent or away (it may be dead, or on the other side of a partition)."""


class Adapter(Protocol):
    """What carries broadcasts to the other nodes (Phoenix.PubSub.Adapter's seam). It calls
    the PubSub's ``local_broadcast`` with what other nodes sent, and its ``node_up`` and
    ``node_down`` as they come and go."""

    @property
    def node(self) -> NodeId:
        """This node."""

    def broadcast(self, message: Broadcast) -> None:
        """Sends ``message`` once to every other node; they dispatch it locally."""

    def direct_broadcast(self, node: str, message: Broadcast) -> None:
        """Sends ``message`` to the node named ``node`` only (nothing if it is not connected);
        it dispatches it locally."""


class LocalOnly:
    """The adapter of a node without distribution: there is no one else to tell, and no node
    ever comes up."""

    node = NodeId("nonode@nohost", 0)

    def broadcast(self, message: Broadcast) -> None:
        pass

    def direct_broadcast(self, node: str, message: Broadcast) -> None:
        pass


class PubSub:
    def __init__(self, adapter: Adapter | None = None, counts: Counts | None = None) -> None:
        self.adapter: Adapter = adapter or LocalOnly()
        # The node's; one of its own in unit tests.
        self.counts = Counts() if counts is None else counts
        self._topics: dict[str, dict[Subscriber, None]] = {}
        self._watchers: list[NodeWatcher] = []

    @property
    def node(self) -> NodeId:
        """This node, as the adapter names it."""
        return self.adapter.node

    def subscribe(self, topic: str, subscriber: Subscriber) -> None:
        self._topics.setdefault(topic, {})[subscriber] = None

    def unsubscribe(self, topic: str, subscriber: Subscriber) -> None:
        subscribers = self._topics.get(topic)
        if subscribers is not None:
            subscribers.pop(subscriber, None)
            if not subscribers:
                del self._topics[topic]

    def subscriber_count(self, topic: str) -> int:
        return len(self._topics.get(topic, ()))

    def broadcast(self, message: Broadcast, exclude: Subscriber | None = None) -> None:
        """To every subscriber of the topic on every node; ``exclude`` (broadcast_from) is
        skipped, and only here, where it is known."""
        if not reserved_topic(message.topic):  # the app's broadcasts, not the server's own
            self.counts.local_broadcasts += 1
        self.adapter.broadcast(message)
        self.local_broadcast(message, exclude)

    def direct_broadcast(self, node: str, message: Broadcast) -> None:
        """To every subscriber of the topic on the node named ``node`` only (Phoenix's
        ``direct_broadcast``): an answer meant for one node."""
        self.adapter.direct_broadcast(node, message)

    def watch_nodes(self, watcher: NodeWatcher) -> None:
        """``watcher`` is told of every node that comes up or goes down from now on."""
        self._watchers.append(watcher)

    def node_up(self, node: NodeId) -> None:
        """The adapter's call: ``node`` came up."""
        for watcher in self._watchers:
            try:
                watcher.node_up(node)
            except Exception:
                log.exception("node_up(%s) of %r failed", node.name, watcher)

    def node_down(self, node: NodeId, left: bool) -> None:
        """The adapter's call: ``node`` went down (``left``: it said it was stopping)."""
        for watcher in self._watchers:
            try:
                watcher.node_down(node, left)
            except Exception:
                log.exception("node_down(%s) of %r failed", node.name, watcher)

    def local_broadcast(self, message: Broadcast, exclude: Subscriber | None = None) -> None:
        subscribers = self._topics.get(message.topic)
        if not subscribers:
            return
        cache: dict[Any, Any] = {}
        # A copy: a delivery may close a socket, which unsubscribes it mid-iteration.
        for subscriber in tuple(subscribers):
            if subscriber is exclude:
                continue
            try:
                subscriber.deliver(message, cache)
            except Exception:
                log.exception("delivery of %s on %s failed", message.event, message.topic)
