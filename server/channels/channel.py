"""The Channel an application writes against: one instance per joined topic per socket.

An app subclasses ``Channel`` and overrides hooks; the socket calls them and turns what they
return or raise into Phoenix frames. The hooks run on the event loop and must not block.
Nothing here knows whether the node is clustered: ``broadcast`` goes to pubsub, and pubsub's
adapter decides who else hears it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple, Protocol

from ..pubsub import Broadcast, PubSub


class Reply(NamedTuple):
    """What ``handle_in`` returns to answer the client's push (Phoenix's ``{:reply, ...}``):
    the client's push gets ``{"status": status, "response": response}`` under its ref."""

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


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Scheduler(Protocol):
    """What runs a callback later: the asyncio event loop in a node, a fake clock in tests."""

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...


class Timer:
    """A message scheduled by ``Channel.send_after``. ``cancel()`` before it fires and it is
    never delivered; cancelling one that fired or was cancelled does nothing."""

    __slots__ = ("_handle", "_pending")

    def __init__(self, scheduler: Scheduler, seconds: float, deliver: Callable[[], None],
                 pending: set[Timer]) -> None:
        self._pending = pending
        pending.add(self)
        self._handle = scheduler.call_later(seconds, lambda: self._fire(deliver))

    def _fire(self, deliver: Callable[[], None]) -> None:
        self._pending.discard(self)
        deliver()

    def cancel(self) -> None:
        self._handle.cancel()
        self._pending.discard(self)


class ChannelHost(Protocol):
    """What a channel needs of the socket that owns it."""

    pubsub: PubSub
    assigns: Mapping[str, Any]

    def push(self, channel: "Channel", event: str, payload: Any) -> None: ...

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None: ...

    def deliver_intercepted(self, channel: "Channel", message: Broadcast) -> None: ...

    def deliver_info(self, channel: "Channel", message: Any) -> None: ...

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable: ...


class Channel:
    """Base class for an app's channels, routed to by topic pattern (``"room:*"``).

    The socket makes one instance per successful join of a topic and ends it with
    ``terminate``; an instance never outlives its socket. Keep per-channel state on ``self``;
    per-connection state set at connect is in ``self.assigns``.
    """

    #: Events whose broadcasts reach this channel's client through ``handle_out`` (Phoenix's
    #: ``intercept``). Every other event takes the fastlane: encoded once per wire format and
    #: the same bytes written to every subscriber, with no call into the channel.
    intercept: ClassVar[frozenset[str]] = frozenset()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        intercept = cls.intercept
        if isinstance(intercept, str) or not all(isinstance(e, str) for e in intercept):
            raise TypeError(f"{cls.__name__}.intercept must be a set of event names, not {intercept!r}")
        cls.intercept = frozenset(intercept)
        # Only a class that intercepts pays for looking the event up; the others keep the
        # fastlane untouched (a broadcast to thousands of sockets is the hot path).
        if cls.deliver in (Channel.deliver, Channel._deliver_intercepted):  # not the app's own
            cls.deliver = (  # type: ignore[method-assign]
                Channel._deliver_intercepted if cls.intercept else Channel.deliver)

    def __init__(self, topic: str, join_ref: str | int | None, host: ChannelHost) -> None:
        self.topic = topic
        self.join_ref = join_ref
        self._host = host
        self._timers: set[Timer] | None = None  # made by the first send_after: most never call it

    # ---- hooks an app overrides ----------------------------------------------------------------

    def join(self, payload: Any) -> Any:
        """Called when a client joins ``self.topic``, before the channel receives anything.

        Return the join reply's response (None means ``{}``), or raise ``JoinRefused(reason)``
        to refuse: the client gets status ``error`` with ``{"reason": reason}`` and the channel
        is dropped without ``terminate``. Any other exception refuses with ``"join crashed"``
        and is logged with its traceback. A token's ``topics`` claim is checked before this is
        called. ``send_after`` here is the way to push something right after the join reply
        (Phoenix's ``send(self(), :after_join)``)."""
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        """Called for each client push on this topic. Return a ``Reply`` to answer the push's
        ref, or None to send nothing back. An event the channel does not handle raises, as in
        Phoenix: the channel crashes (the client gets ``phx_error`` and may rejoin) while the
        socket and its other channels live on. So does any exception, logged with its traceback."""
        raise UnhandledEvent(f"{type(self).__name__} has no handler for event {event!r}")

    def handle_out(self, event: str, payload: Any) -> Any:
        """Called for a broadcast of an event listed in ``intercept``, once per subscribed
        channel, before it goes to the client. Return the payload to push (changed or as is),
        or None to drop it for this client; e.g. hide a field from users who may not see it.

        ``payload`` is shared by every subscriber of the broadcast: return a new object rather
        than changing it. Each call costs an encode per subscriber, which is why only the
        listed events come here. An exception crashes the channel, as in ``handle_in``."""
        return payload

    def handle_info(self, message: Any) -> None:
        """Called with the ``message`` of each ``send_after`` when its time comes, while the
        channel lives (its timers are cancelled when it ends). May push and broadcast. An
        exception crashes the channel, as in ``handle_in``; the default raises, because a
        channel that schedules messages must say what they do."""
        raise NotImplementedError(f"{type(self).__name__} got {message!r} from send_after "
                                  f"but does not override handle_info")

    def terminate(self, reason: str) -> None:
        """Called once when a joined channel ends, to release what it holds. ``reason``:
        ``"leave"`` (the client left), ``"closed"`` (the socket is gone: the client closed it,
        dropped, or was cut off), ``"shutdown"`` (the node is stopping; the socket is closed
        with 1001 next, so the client reconnects to another node), ``"rejoined"`` (replaced
        by a second join of the same topic) or ``"crashed"`` (a hook raised). It may push or
        broadcast, except after ``"closed"``. An exception is logged and, where the client is
        still there, turns its ``phx_close`` into ``phx_error``."""

    # ---- what an app calls -------------------------------------------------------------------

    @property
    def assigns(self) -> Mapping[str, Any]:
        """What the socket's ``connect`` set for this connection (with token auth: the token's
        claims and ``user_id``), shared read-only by every channel of the connection."""
        return self._host.assigns

    def broadcast(self, event: str, payload: Any) -> None:
        """Sends to every subscriber of this topic on every node, this socket included."""
        self._host.pubsub.broadcast(Broadcast(self.topic, event, payload))

    def broadcast_from(self, event: str, payload: Any) -> None:
        """Like ``broadcast``, but not to this socket."""
        self._host.pubsub.broadcast(Broadcast(self.topic, event, payload), exclude=self)

    def push(self, event: str, payload: Any) -> None:
        """Sends to this socket only."""
        self._host.push(self, event, payload)

    def send_after(self, seconds: float, message: Any) -> Timer:
        """Calls ``handle_info(message)`` after ``seconds`` (Phoenix's
        ``Process.send_after(self(), message, ms)``); a periodic job schedules its next run
        from ``handle_info``. The returned ``Timer`` cancels it; all of a channel's timers are
        cancelled when it ends, so none fires into a channel that is gone."""
        if self._timers is None:
            self._timers = set()
        return Timer(self._host, seconds, lambda: self._host.deliver_info(self, message), self._timers)

    # ---- for the socket ------------------------------------------------------------------------

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        """Pubsub's call for each broadcast on the topic (the fastlane)."""
        self._host.deliver(message, cache)

    def _deliver_intercepted(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        if message.event in self.intercept:
            self._host.deliver_intercepted(self, message)
        else:
            self._host.deliver(message, cache)

    def _cancel_timers(self) -> None:
        """Called by the socket when the channel ends (or its join fails)."""
        if self._timers:
            for timer in tuple(self._timers):
                timer.cancel()
