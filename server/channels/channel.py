"""The Channel an application writes against: one instance per joined topic per socket.

An app subclasses ``Channel`` and overrides hooks; the socket calls them and turns what they
return or raise into Phoenix frames. The hooks run on the event loop and must not block.
Nothing here knows whether the node is clustered: ``broadcast`` goes to pubsub, and pubsub's
adapter decides who else hears it; ``presence`` goes to the node's presence tracker, seen here
only as the :class:`PresenceTracker` protocol.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, NamedTuple, Protocol

from ..pubsub import Broadcast, PubSub, Subscriber

PRESENCE_STATE = "presence_state"


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


class PresenceTracker(Protocol):
    """What ``Channel.presence`` needs of the node's tracker (``server.presence.tracker``)."""

    def new_conn(self) -> str: ...

    def track(self, conn: str, topic: str, key: str, meta: Mapping[str, Any],
              exclude: Subscriber | None = None) -> None: ...

    def update(self, conn: str, topic: str, key: str, meta: Mapping[str, Any]) -> None: ...

    def untrack(self, conn: str, topic: str, key: str) -> None: ...

    def untrack_conn(self, conn: str) -> None: ...

    def list(self, topic: str) -> dict[str, dict[str, list[dict[str, Any]]]]: ...


class Presence:
    """``Channel.presence``: Phoenix.Presence for one joined channel, bound to its topic and to
    it as the owner of what it tracks.

    The first ``track`` makes the server push ``presence_state`` (``{key: {"metas": [...]}}``,
    every node's presences on the topic) to this client: right after the join reply when it is
    called from ``join``, at once when called later. Changes reach every subscriber of the topic
    as ``presence_diff`` (``{"joins": ..., "leaves": ...}``), from whichever node they happen
    on, within a fraction of a second; phoenix.js's ``Presence`` turns both into its list.
    What the channel tracks leaves by itself when the channel ends (leave, close, crash,
    rejoin, node stop) or its node goes down.

    ``meta`` is a JSON object; the server adds ``phx_ref`` (and ``phx_ref_prev`` after an
    update). ``track`` raises ``TopicFull`` or ``NodeFull`` (both ``LimitExceeded``) when a
    limit is reached, and ``AlreadyTracked``; ``update`` raises ``NotTracked``: the channel may
    catch them. Uncaught in ``join``, a limit refuses the join with ``"presence limit
    reached"``; elsewhere, any of them crashes the channel like any exception.
    """

    __slots__ = ("_tracker", "_channel", "_conn", "_state", "_tracked")

    def __init__(self, tracker: PresenceTracker, channel: Channel) -> None:
        self._tracker = tracker
        self._channel = channel
        self._conn = tracker.new_conn()
        self._state = "joining"  # "joining", then "joined" after the reply, "sent" with presence_state
        self._tracked = False

    def track(self, key: str, meta: Mapping[str, Any]) -> None:
        """Tracks ``key`` (a user id, say) with ``meta`` on this channel's topic. One client may
        be tracked under several keys, and one key by several clients (each its own meta)."""
        send_state = self._state == "joined"
        # Excluded from the diff: the presence_state that follows already shows it.
        self._tracker.track(self._conn, self._channel.topic, key, meta,
                            exclude=self._channel if send_state else None)
        self._tracked = True
        if send_state:
            self._push_state()

    def update(self, key: str, meta: Mapping[str, Any]) -> None:
        """Replaces the meta of a key this channel tracks: clients see it leave and join again
        with a new ``phx_ref`` and the old one as ``phx_ref_prev``."""
        self._tracker.update(self._conn, self._channel.topic, key, meta)

    def untrack(self, key: str) -> None:
        """Stops tracking ``key`` (nothing happens if it is not tracked)."""
        self._tracker.untrack(self._conn, self._channel.topic, key)

    def list(self, topic: str | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
        """``{key: {"metas": [...]}}`` of ``topic`` (by default this channel's) across the
        cluster. The metas are the tracker's own: read them, never change them."""
        return self._tracker.list(self._channel.topic if topic is None else topic)

    def _joined(self) -> None:
        self._state = "joined"
        if self._tracked:
            self._push_state()

    def _push_state(self) -> None:
        self._state = "sent"
        self._channel.push(PRESENCE_STATE, self.list())

    def _end(self) -> None:
        self._tracker.untrack_conn(self._conn)


class ChannelHost(Protocol):
    """What a channel needs of the socket that owns it."""

    pubsub: PubSub
    assigns: Mapping[str, Any]
    presence: PresenceTracker | None

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
        self._presence: Presence | None = None  # made on first use: most channels never track

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
        """Sends to every subscriber of this topic on every node, this socket included. A
        payload JSON cannot carry (NaN, a set, ...) raises here, so the channel crashes, as in
        Phoenix, and nobody receives it."""
        # Encoded here: an unencodable payload fails in this hook, not in every subscriber's
        # delivery, and the bytes are those the cluster sends the other nodes.
        self._host.pubsub.broadcast(Broadcast.encoded_now(self.topic, event, payload))

    def broadcast_from(self, event: str, payload: Any) -> None:
        """Like ``broadcast``, but not to this socket."""
        self._host.pubsub.broadcast(Broadcast.encoded_now(self.topic, event, payload), exclude=self)

    def push(self, event: str, payload: Any) -> None:
        """Sends to this socket only."""
        self._host.push(self, event, payload)

    @property
    def presence(self) -> Presence:
        """Who is on this topic, across the cluster: ``self.presence.track(key, meta)`` in
        ``join`` and the client gets ``presence_state``, then a ``presence_diff`` per change (see
        :class:`Presence`)."""
        if self._presence is None:
            tracker = self._host.presence
            if tracker is None:
                raise RuntimeError("this socket has no presence tracker")
            self._presence = Presence(tracker, self)
        return self._presence

    @property
    def node_name(self) -> str:
        """This node's name (``gossipy@ws1``; ``nonode@nohost`` when not distributed), as
        Elixir's ``node()``: what a presence's meta can carry to say where its client is."""
        return self._host.pubsub.node.name

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

    def _joined(self) -> None:
        """Called by the socket right after the join's ok reply."""
        if self._presence is not None:
            self._presence._joined()

    def _release(self) -> None:
        """Called by the socket when the channel ends (or its join fails): its timers are
        cancelled and what it tracks leaves."""
        if self._timers:
            for timer in tuple(self._timers):
                timer.cancel()
        if self._presence is not None:
            self._presence._end()
