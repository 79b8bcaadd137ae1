"""Topic subscriptions on this node, and the seam through which broadcasts cross to others.

Like phoenix_pubsub: ``broadcast`` hands the message to the adapter (which sends it once to
each other node), then dispatches it locally. A node that receives a broadcast from a peer
calls ``local_broadcast``; nothing in here knows what carries messages between nodes.

Local dispatch is a "fastlane": subscribers get a per-broadcast ``cache`` dict in which the
first subscriber of each wire format stores the encoded frame, so a broadcast is encoded once
per format however many sockets receive it.
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple, Protocol

from .metrics import Counts

log = logging.getLogger("gossipy.pubsub")


class Broadcast(NamedTuple):
    topic: str
    event: str
    payload: Any


class Subscriber(Protocol):
    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        """Called once per broadcast on a subscribed topic; must not block."""


class Adapter(Protocol):
    """What carries broadcasts to the other nodes (Phoenix.PubSub.Adapter's seam)."""

    def broadcast(self, message: Broadcast) -> None:
        """Sends ``message`` once to every other node; they dispatch it locally."""


class LocalOnly:
    """The adapter of a node without distribution: there is no one else to tell."""

    def broadcast(self, message: Broadcast) -> None:
        pass


class PubSub:
    def __init__(self, adapter: Adapter | None = None, counts: Counts | None = None) -> None:
        self.adapter: Adapter = adapter or LocalOnly()
        # The node's; one of its own in unit tests.
        self.counts = Counts() if counts is None else counts
        self._topics: dict[str, dict[Subscriber, None]] = {}

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
        self.counts.local_broadcasts += 1
        self.adapter.broadcast(message)
        self.local_broadcast(message, exclude)

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
