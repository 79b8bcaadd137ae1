"""The Channel an application writes against: one instance per joined topic per socket.

An app subclasses ``Channel`` and overrides hooks; the socket calls them and turns what they
return or raise into Phoenix frames. The hooks run on the event loop and must not block.
Nothing here knows whether the node is clustered: ``broadcast`` goes to pubsub, and pubsub's
adapter decides who else hears it.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

from ..pubsub import Broadcast, PubSub


class Reply(NamedTuple):
    """What ``handle_in`` returns to answer the client's push (Phoenix's ``{:reply, ...}``)."""

    status: str
    response: Any

    @classmethod
    def ok(cls, response: Any = None) -> "Reply":
        return cls("ok", {} if response is None else response)

    @classmethod
    def error(cls, response: Any = None) -> "Reply":
        return cls("error", {} if response is None else response)


class JoinRefused(Exception):
    """Raised by ``join`` to refuse the client: it gets status ``error`` with ``{"reason": ...}``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnhandledEvent(LookupError):
    """A client pushed an event the channel has no clause for: the channel crashes, as in
    Phoenix, but this is the client's mistake, so it is logged in one line, not as a bug."""


class ChannelHost(Protocol):
    """What a channel needs of the socket that owns it."""

    pubsub: PubSub

    def push(self, channel: "Channel", event: str, payload: Any) -> None: ...

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None: ...


class Channel:
    """Base class for an app's channels, routed to by topic pattern (``"room:*"``)."""

    def __init__(self, topic: str, join_ref: str | int | None, host: ChannelHost) -> None:
        self.topic = topic
        self.join_ref = join_ref
        self._host = host

    # ---- hooks an app overrides ----------------------------------------------------------------

    def join(self, payload: Any) -> Any:
        """Called when a client joins ``self.topic``. Return the join reply's response (``{}``
        by default), or raise ``JoinRefused(reason)``. Any other exception refuses the join
        with ``"join crashed"`` and is logged with its traceback."""
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        """Called for each client push on this topic. Return a ``Reply`` to answer it, or None.
        An event the channel does not handle raises, as in Phoenix: the channel crashes (the
        client gets ``phx_error`` and may rejoin) while the socket and its other channels live."""
        raise UnhandledEvent(f"{type(self).__name__} has no handler for event {event!r}")

    def terminate(self, reason: str) -> None:
        """Called once when the channel ends: ``leave``, ``closed`` (socket gone), ``rejoined``
        (replaced by a second join of the same topic) or ``crashed``."""

    # ---- what an app calls -------------------------------------------------------------------

    def broadcast(self, event: str, payload: Any) -> None:
        """Sends to every subscriber of this topic on every node, this socket included."""
        self._host.pubsub.broadcast(Broadcast(self.topic, event, payload))

    def broadcast_from(self, event: str, payload: Any) -> None:
        """Like ``broadcast``, but not to this socket."""
        self._host.pubsub.broadcast(Broadcast(self.topic, event, payload), exclude=self)

    def push(self, event: str, payload: Any) -> None:
        """Sends to this socket only."""
        self._host.push(self, event, payload)

    # ---- pubsub subscriber ---------------------------------------------------------------------

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        self._host.deliver(message, cache)
