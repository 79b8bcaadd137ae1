"""The Phoenix socket: one per websocket, multiplexing channels by topic.

It does no I/O of its own: frames come in through ``receive`` and go out through a
``Transport`` (``websocket.WebSocket`` in production, a list in unit tests). It follows
the frames recorded from Phoenix 1.7 (see ../shared/reference/phoenix-protocol.md) for joins,
leaves, heartbeats, unmatched topics, duplicate joins, stale join_refs and crashing channels.

It is the one place that calls an app's channel hooks, so it is where an exception in any of
them becomes what Phoenix makes of a crashed channel process: ``phx_error`` for that channel
(the join's error reply, for ``join``), one log record with the traceback, and the socket and
its other channels carry on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Protocol

from ..metrics import Counts
from ..presence.state import LimitExceeded
from ..pubsub import Broadcast, PubSub, reserved_topic
from . import serializer as wire
from .channel import Cancellable, Channel, JoinRefused, PresenceTracker, Reply, Scheduler, UnhandledEvent
from .connect import Socket, read_only_assigns
from .rfc6455 import CloseCode
from .serializer import DecodeError, Message, Serializer

log = logging.getLogger("gossipy.socket")

# The key of a broadcast's cache (see pubsub) under which a payload no serializer can encode
# is remembered.
_UNENCODABLE = object()


class Transport(Protocol):
    """Moves frames. ``prepare_frame`` turns a frame's text into what ``send_frame`` takes,
    so a broadcast is prepared once and the same object goes to every socket whose transport
    has the same ``frame_kind`` (None, or how its frames differ: compressed with a given
    window, say); a transport may still change it on the way (compressed with context)."""

    frame_kind: Hashable | None

    def prepare_frame(self, text: str) -> Any: ...

    def send_frame(self, frame: Any, broadcast_cache: dict[Any, Any] | None = None) -> None:
        """``broadcast_cache``: given with a broadcast's frame, the broadcast's cache (see
        pubsub), where a transport that changes the frame on the way keeps what it made of it
        for the other subscribers' transports. One method for both, so a plain transport's
        delivery costs no call more."""

    def close(self, code: CloseCode, reason: str) -> None: ...


class Router:
    """Topic patterns to channel classes, first match wins (Phoenix's ``channel "room:*"``)."""

    def __init__(self, routes: Iterable[tuple[str, type[Channel]]]) -> None:
        self._routes = list(routes)

    def match(self, topic: str) -> type[Channel] | None:
        for pattern, channel_class in self._routes:
            if topic.startswith(pattern[:-1]) if pattern.endswith("*") else topic == pattern:
                return channel_class
        return None


class PhoenixSocket:
    """One connection's channels. ``user_socket`` is the app's ``Socket`` after its ``connect``
    (its assigns, its ``may_join``); ``scheduler`` runs ``send_after`` timers (by default the
    running asyncio loop); ``presence`` is the node's tracker (None: ``Channel.presence`` raises)."""

    __slots__ = ("transport", "serializer", "router", "pubsub", "max_channels", "peer", "counts", "channels",
                 "user_socket", "assigns", "scheduler", "presence", "_mistakes_logged",
                 "_frame_key")

    def __init__(self, transport: Transport, serializer: Serializer, router: Router,
                 pubsub: PubSub, max_channels: int, peer: str, user_socket: Socket | None = None,
                 scheduler: Scheduler | None = None, presence: PresenceTracker | None = None,
                 counts: Counts | None = None) -> None:
        self.transport = transport
        self.serializer = serializer
        self.router = router
        self.pubsub = pubsub
        self.max_channels = max_channels
        self.peer = peer
        # The node's (websocket.SocketRegistry's); one of its own in unit tests.
        self.counts = Counts() if counts is None else counts
        self.channels: dict[str, Channel] = {}
        self.user_socket = user_socket or Socket(None)
        # The websocket checked them before the upgrade (a no-op then); a unit test's are read here.
        self.assigns = read_only_assigns(self.user_socket.assigns)
        self.scheduler = scheduler
        self.presence = presence
        # Made on the first mistake: most sockets never make one.
        self._mistakes_logged: set[str] | None = None
        # A broadcast's frame is prepared once per key: the serializer alone for a plain
        # transport (a class hashes fastest), with the transport's kind for the others.
        self._frame_key: object = serializer if transport.frame_kind is None else (serializer, transport.frame_kind)

    # ---- inbound -------------------------------------------------------------------------------

    def receive(self, data: str | bytes) -> None:
        """Handles one message from the client (a text one as ``str``)."""
        if isinstance(data, bytes) and self.serializer is not wire.V1:
            log.warning("closing socket from %s: binary frames are not supported", self.peer)
            self.transport.close(CloseCode.UNSUPPORTED, "binary frames are not supported")
            return
        try:
            message = self.serializer.decode(data)
        except DecodeError as exc:
            # Phoenix's socket process crashes on an undecodable frame: the client sees 1011.
            log.warning("closing socket from %s: bad frame: %s", self.peer, exc)
            self.transport.close(CloseCode.SERVER_ERROR, "bad frame")
            return
        if not isinstance(message.payload, dict):
            self._mistake("payload", "refusing %.80r on %.80r from %s: payload is not an object",
                          message.event, message.topic, self.peer)
            self._reply(message, None, "error", {"reason": "payload must be an object"})
            return
        if message.topic == wire.HEARTBEAT_TOPIC and message.event == wire.HEARTBEAT:
            self._reply(message, message.join_ref, "ok", {})
            return
        channel = self.channels.get(message.topic)
        if message.event == wire.JOIN:
            self._join(message, channel)
        elif channel is None:
            if message.event == wire.LEAVE:
                self._reply(message, message.join_ref, "ok", {})
            else:
                self._unmatched(message)
        elif channel.join_ref is not None and message.join_ref != channel.join_ref:
            # The client raced a close we already sent; Phoenix ignores it without a word.
            return
        elif message.event == wire.LEAVE:
            self._reply(message, message.join_ref, "ok", {})
            self._tell_ended(channel, self._end(channel, "leave"))
        else:
            self._handle_in(channel, message)

    def _join(self, message: Message, existing: Channel | None) -> None:
        # The server's own topics (presence's tracker) whatever the routes say: a channel there
        # could hear and speak for the nodes.
        channel_class = None if reserved_topic(message.topic) else self.router.match(message.topic)
        if channel_class is None:
            self._unmatched(message)
            return
        try:
            allowed = self.user_socket.may_join(message.topic)
        except Exception:
            log.exception("JOIN %s crashed in %s.may_join", message.topic, type(self.user_socket).__name__)
            self._reply(message, message.join_ref, "error", {"reason": "join crashed"})
            return
        if not allowed:
            self._mistake("unauthorized", "refusing join of %.80r from %s: not a topic this connection may join",
                          message.topic, self.peer)
            self._reply(message, message.join_ref, "error", {"reason": "unauthorized"})
            return
        if existing is None and len(self.channels) >= self.max_channels:
            self._mistake("channels", "refusing join of %.80r from %s: over %d channels",
                          message.topic, self.peer, self.max_channels)
            self._reply(message, message.join_ref, "error", {"reason": "too many channels joined"})
            return
        # The old channel ends before the new one joins; the client hears of it after the reply.
        replaced = (existing, self._end(existing, "rejoined")) if existing is not None else None
        channel = channel_class(message.topic, message.join_ref, self)
        try:
            response = channel.join(message.payload)
            # Encoded in here: a response JSON cannot carry is the join's bug, like a raise.
            joined = self.serializer.encode(wire.reply(message.join_ref, message.ref, message.topic, "ok",
                                                       {} if response is None else response))
        except JoinRefused as refusal:
            channel._release()
            log.info("JOIN %s refused for %s: %s", message.topic, self.peer, refusal.reason)
            self._reply(message, message.join_ref, "error", {"reason": refusal.reason})
        except LimitExceeded as exc:
            channel._release()
            log.info("JOIN %s refused for %s: %s", message.topic, self.peer, exc)
            self._reply(message, message.join_ref, "error", {"reason": "presence limit reached"})
        except Exception:
            channel._release()
            log.exception("JOIN %s crashed in %s", message.topic, channel_class.__name__)
            self._reply(message, message.join_ref, "error", {"reason": "join crashed"})
        else:
            self.channels[message.topic] = channel
            self.counts.joins += 1
            self.counts.channels += 1
            self.pubsub.subscribe(message.topic, channel)
            log.info("JOIN %s to %s from %s", message.topic, channel_class.__name__, self.peer)
            self._send_text(joined)
            channel._joined()
        if replaced is not None:
            self._tell_ended(*replaced)

    def _handle_in(self, channel: Channel, message: Message) -> None:
        try:
            result = channel.handle_in(message.event, message.payload)
            # Unless the channel crashed meanwhile (in the handle_out of its own broadcast, say).
            # Encoded in here: a reply JSON cannot carry crashes the channel, not the socket.
            if isinstance(result, Reply) and self.channels.get(channel.topic) is channel:
                self._reply(message, message.join_ref, result.status, result.response)
        except UnhandledEvent as exc:
            self._mistake("event", "channel on %.80r crashed for %s: %.120s", channel.topic, self.peer, exc)
            self._crash(channel)
        except Exception:
            log.exception("channel %s on %s crashed handling %r",
                          type(channel).__name__, channel.topic, message.event)
            self._crash(channel)

    def deliver_intercepted(self, channel: Channel, message: Broadcast) -> None:
        """A broadcast of an event the channel intercepts: through its ``handle_out``."""
        def handle_out() -> None:
            payload = channel.handle_out(message.event, message.payload)
            if payload is not None:  # pushed in here: a payload JSON cannot carry is handle_out's bug
                self.push(channel, message.event, payload)

        self._run_hook(channel, "handle_out", message.event, handle_out)

    def deliver_info(self, channel: Channel, message: Any) -> None:
        """A ``send_after`` message whose time came: to the channel's ``handle_info``."""
        self._run_hook(channel, "handle_info", message, lambda: channel.handle_info(message))

    def _run_hook(self, channel: Channel, hook: str, subject: Any, call: Callable[[], None]) -> None:
        """Calls one of ``channel``'s hooks unless the channel has ended meanwhile (during this
        broadcast's delivery, say); an exception in it crashes the channel, as in Phoenix."""
        if self.channels.get(channel.topic) is not channel:
            return
        try:
            call()
        except Exception:
            log.exception("channel %s on %s crashed in %s of %.80r", type(channel).__name__, channel.topic, hook, subject)
            self._crash(channel)

    def call_later(self, delay: float, callback: Callable[[], object]) -> Cancellable:
        return (self.scheduler or asyncio.get_running_loop()).call_later(delay, callback)

    def _crash(self, channel: Channel) -> None:
        if self._end(channel, "crashed") is not None:
            self._tell_ended(channel, wire.ERROR)

    def _unmatched(self, message: Message) -> None:
        self._mistake("topic", "ignoring unmatched topic %.80r (event %.80r) from %s",
                      message.topic, message.event, self.peer)
        self._reply(message, None, "error", {"reason": "unmatched topic"})

    def _mistake(self, kind: str, fmt: str, *args: Any) -> None:
        """Logs a client's mistake once per kind per socket: enough to debug the client, and
        no way for one client to flood the log by repeating it."""
        if self._mistakes_logged is None:
            self._mistakes_logged = set()
        if kind not in self._mistakes_logged:
            self._mistakes_logged.add(kind)
            log.warning(fmt + " (repeats on this socket are not logged)", *args)

    def _reply(self, message: Message, join_ref: Any, status: str, response: Any) -> None:
        self._send(wire.reply(join_ref, message.ref, message.topic, status, response))

    # ---- outbound ------------------------------------------------------------------------------

    def _send(self, message: Message) -> None:
        self._send_text(self.serializer.encode(message))

    def _send_text(self, text: str) -> None:
        self.transport.send_frame(self.transport.prepare_frame(text))

    def push(self, channel: Channel, event: str, payload: Any) -> None:
        self._send(Message(channel.join_ref, None, channel.topic, event, payload))

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        frame = cache.get(self._frame_key)
        if frame is None:
            if _UNENCODABLE in cache:
                return
            try:
                text = wire.encode_broadcast(self.serializer, message)
            except (TypeError, ValueError) as exc:
                # Remembered for the broadcast: one line, not one per subscriber.
                cache[_UNENCODABLE] = True
                log.error("broadcast of %s on %s not delivered: %s", message.event, message.topic, exc)
                return
            frame = cache[self._frame_key] = self.transport.prepare_frame(text)
        self.transport.send_frame(frame, cache)

    # ---- lifecycle -----------------------------------------------------------------------------

    def _end(self, channel: Channel, reason: str) -> str | None:
        """Ends a channel: no more broadcasts, its ``terminate``, no more timers (those its
        terminate set included). Returns the event that tells the client: ``phx_close``, or
        ``phx_error`` when terminate raised (as Phoenix's socket reports a channel process that
        exited abnormally); None, doing nothing, for a channel that has ended already (one
        hook can crash it twice: in the handle_out of its own broadcast, then itself)."""
        if self.channels.get(channel.topic) is not channel:
            return None
        del self.channels[channel.topic]
        self.counts.channels -= 1
        self.pubsub.unsubscribe(channel.topic, channel)
        try:
            channel.terminate(reason)
        except Exception:
            log.exception("terminate(%r) of %s on %s crashed", reason, type(channel).__name__, channel.topic)
            return wire.ERROR
        finally:
            channel._release()
        return wire.CLOSE

    def _tell_ended(self, channel: Channel, event: str | None) -> None:
        if event is not None:  # None: it ended, and the client was told, before
            self._send(Message(channel.join_ref, channel.join_ref, channel.topic, event, {}))

    def closed(self, reason: str = "closed") -> None:
        """The connection is ending: end every channel with ``reason`` (``"closed"``, or
        ``"shutdown"`` when the node stops). The client is not told: it is gone, or about to
        be closed."""
        for channel in list(self.channels.values()):
            self._end(channel, reason)
