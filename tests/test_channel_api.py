"""The public channel API (``server.channels``) without sockets: the app in apps/api_app.py and
small channels per behaviour, driven through ``PhoenixSocket`` with a list transport and a
hand-turned clock. Replies, handle_out, timers, assigns, connect/auth, and what an exception
in each hook does (phx_error, one log record, the socket lives on)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import jwt
import pytest

from server.auth import TokenVerifier
from server.channels import Channel, ConnectInfo, ConnectRefused, Reply, Socket
from server.channels.serializer import V1, V2, Message, Serializer
from server.pubsub import Broadcast, PubSub

from apps import api_app
from test_socket import BOTH, Peer, reply

SECRET = "channel-api-test-secret-" + "k" * 40
TOPIC = "room:1"


class Clock:
    """A Scheduler whose time moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 0.0
        self.due: list[list[Any]] = []  # [when, callback, cancelled]

    def call_later(self, delay: float, callback: Callable[[], object]) -> "Clock.Handle":
        entry = [self.now + delay, callback, False]
        self.due.append(entry)
        return Clock.Handle(entry)

    class Handle:
        def __init__(self, entry: list[Any]) -> None:
            self.entry = entry

        def cancel(self) -> None:
            self.entry[2] = True

    def advance(self, seconds: float) -> None:
        self.now += seconds
        while ready := sorted((e for e in self.due if e[0] <= self.now and not e[2]), key=lambda e: e[0]):
            self.due.remove(ready[0])
            ready[0][1]()

    def pending(self) -> int:
        return sum(1 for e in self.due if not e[2])


def user(name: str, serializer: Serializer = V2, pubsub: PubSub | None = None, clock: Clock | None = None,
         **assigns: Any) -> Peer:
    """A connection of the api app whose connect set ``assigns`` (user_id ``name``)."""
    socket = Socket(None)
    socket.assigns = {"user_id": name, **assigns}
    return Peer(serializer, pubsub, routes=api_app.ROUTES, user_socket=socket, scheduler=clock or Clock())


def joined(peer: Peer, topic: str = TOPIC, join_ref: str = "1") -> list[Message]:
    frames = peer.send(join_ref, join_ref, topic, "phx_join")
    assert frames[0].payload["status"] == "ok", frames
    return frames


def crash_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.fixture(autouse=True)
def _forget_ended() -> None:
    api_app.ENDED.clear()


# ---- join, replies, assigns --------------------------------------------------------------------

@BOTH
def test_join_replies_with_assigns_and_whoami_replies_with_them_all(serializer: Serializer) -> None:
    ada = user("ada", serializer, role="admin")
    assert ada.send("1", "1", TOPIC, "phx_join") == [reply(ada.jr("1"), "1", TOPIC, "ok", {"user_id": "ada"})]
    assert ada.send(ada.jr("1"), "2", TOPIC, "whoami") == \
        [reply(ada.jr("1"), "2", TOPIC, "ok", {"user_id": "ada", "role": "admin"})]


def test_assigns_are_shared_read_only_by_every_channel_of_a_connection() -> None:
    ada = user("ada")
    joined(ada, "room:1", "1")
    joined(ada, "room:2", "2")
    first, second = ada.socket.channels["room:1"], ada.socket.channels["room:2"]
    assert first.assigns is second.assigns and first.assigns["user_id"] == "ada"
    with pytest.raises(TypeError):
        first.assigns["user_id"] = "eve"  # type: ignore[index]


def test_without_a_connect_hook_assigns_are_empty() -> None:
    peer = Peer(V2, routes=api_app.ROUTES, scheduler=Clock())
    assert peer.send("1", "1", TOPIC, "phx_join")[0].payload == {"status": "ok", "response": {"user_id": None}}


# ---- handle_out --------------------------------------------------------------------------------

def test_handle_out_changes_each_subscribers_copy_and_can_drop_it() -> None:
    pubsub = PubSub()
    ada, bob, eve = user("ada", pubsub=pubsub), user("bob", pubsub=pubsub), user("eve", pubsub=pubsub, muted=["ada"])
    for peer in (ada, bob, eve):
        joined(peer)
    before = len(eve.transport.sent)
    sent = ada.send("1", "2", TOPIC, "shout", {"message": "hi"})
    # pushed with the channel's join_ref (as a Phoenix handle_out's push), each with its own "to"
    assert sent == [Message("1", None, TOPIC, "shout", {"message": "hi", "from": "ada", "to": "ada"})]
    assert bob.serializer.decode(bob.transport.sent[-1]).payload == {"message": "hi", "from": "ada", "to": "bob"}
    assert len(eve.transport.sent) == before  # eve muted ada: dropped for her alone


def test_events_not_intercepted_keep_the_fastlane() -> None:
    pubsub = PubSub()
    ada, bob = user("ada", pubsub=pubsub), user("bob", pubsub=pubsub)
    joined(ada)
    joined(bob)
    ada.socket.channels[TOPIC].broadcast("news", {"n": 1})
    assert ada.transport.sent[-1] is bob.transport.sent[-1] == '[null,null,"room:1","news",{"n":1}]'
    assert type(ada.socket.channels[TOPIC]).deliver is not Channel.deliver  # the intercepting path
    assert api_app.RoomChannel.intercept == frozenset({"shout"})


def test_a_channel_that_intercepts_nothing_is_delivered_straight_to_its_socket() -> None:
    class Plain(Channel):
        pass

    assert Plain.deliver is Channel.deliver


def test_intercept_must_be_a_set_of_event_names() -> None:
    with pytest.raises(TypeError, match="'shout'"):
        class Wrong(Channel):
            intercept = "shout"  # type: ignore[assignment]


# ---- timers --------------------------------------------------------------------------------------

def test_send_after_in_join_pushes_after_the_join_reply() -> None:
    clock = Clock()
    ada = user("ada", clock=clock)
    assert [f.event for f in joined(ada)] == ["phx_reply"]
    before = len(ada.transport.sent)
    clock.advance(0)
    assert [ada.serializer.decode(f) for f in ada.transport.sent[before:]] == \
        [Message("1", None, TOPIC, "welcome", {"topic": TOPIC})]


def test_a_timer_fires_once_at_its_time_and_a_cancelled_one_never() -> None:
    clock = Clock()
    ada = user("ada", clock=clock)
    joined(ada)
    clock.advance(0)
    ada.send("1", "2", TOPIC, "remind", {"after": 5, "n": 1})
    clock.advance(4.9)
    assert "reminder" not in ada.transport.sent[-1]
    clock.advance(0.2)
    assert ada.serializer.decode(ada.transport.sent[-1]) == \
        Message("1", None, TOPIC, "reminder", {"after": 5, "n": 1})
    ada.send("1", "3", TOPIC, "remind", {"after": 5, "n": 2})
    assert ada.send("1", "4", TOPIC, "forget")[0].payload["status"] == "ok"
    clock.advance(10)
    assert '"n":2' not in "".join(ada.transport.sent) and clock.pending() == 0


@pytest.mark.parametrize("end", ["leave", "closed", "crashed", "rejoined"])
def test_every_timer_is_cancelled_when_the_channel_ends(end: str) -> None:
    clock = Clock()
    ada = user("ada", clock=clock)
    joined(ada)
    clock.advance(0)
    ada.send("1", "2", TOPIC, "remind", {"after": 5})
    assert clock.pending() == 1
    if end == "leave":
        ada.send("1", "3", TOPIC, "phx_leave")
    elif end == "closed":
        ada.socket.closed()
    elif end == "crashed":
        ada.send("1", "3", TOPIC, "crash")
    else:
        ada.send("2", "2", TOPIC, "phx_join")
    assert api_app.ENDED == [(TOPIC, "ada", end)]
    clock.advance(10)
    assert "reminder" not in "".join(ada.transport.sent)


def test_timers_of_a_refused_join_are_cancelled_and_one_set_in_terminate_too() -> None:
    clock = Clock()

    class Eager(Channel):
        def join(self, payload: Any) -> Any:
            self.send_after(1, "x")
            if payload.get("crash"):
                raise RuntimeError("bug in join")
            return {}

        def terminate(self, reason: str) -> None:
            self.send_after(1, "too late")

    peer = Peer(V2, routes=[("eager:*", Eager)], scheduler=clock)
    assert peer.send("1", "1", "eager:1", "phx_join", {"crash": True})[0].payload["status"] == "error"
    assert clock.pending() == 0
    peer.send("2", "2", "eager:1", "phx_join")
    peer.socket.closed()
    assert clock.pending() == 0


def test_send_after_without_handle_info_crashes_the_channel(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()

    class Forgetful(Channel):
        def join(self, payload: Any) -> Any:
            self.send_after(1, "tick")
            return {}

    peer = Peer(V2, routes=[("f:*", Forgetful)], scheduler=clock)
    peer.send("1", "1", "f:1", "phx_join")
    clock.advance(1)
    assert peer.serializer.decode(peer.transport.sent[-1]) == Message("1", "1", "f:1", "phx_error", {})
    [record] = crash_records(caplog)
    assert "handle_info" in record.getMessage() and isinstance(record.exc_info[1], NotImplementedError)


# ---- an exception in any hook: phx_error for that channel, logged once, the socket lives on ------

class Buggy(Channel):
    """Raises in the hook named by its topic (``buggy:handle_out`` ...)."""

    intercept = frozenset({"out"})
    ended: list[str] = []

    def _maybe(self, hook: str) -> None:
        if self.topic == f"buggy:{hook}":
            raise RuntimeError(f"bug in {hook}")

    def join(self, payload: Any) -> Any:
        self._maybe("join")
        self.send_after(1, "info")
        return {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        self._maybe("handle_in")
        if event == "leave-me":
            return None
        self.broadcast("out", {})
        return Reply.ok()

    def handle_out(self, event: str, payload: Any) -> Any:
        self._maybe("handle_out")
        return payload

    def handle_info(self, message: Any) -> None:
        self._maybe("handle_info")

    def terminate(self, reason: str) -> None:
        Buggy.ended.append(reason)
        self._maybe("terminate")


@pytest.mark.parametrize("hook", ["join", "handle_in", "handle_out", "handle_info", "terminate"])
def test_an_exception_in_a_hook_ends_that_channel_only(hook: str, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    peer = Peer(V2, routes=[("buggy:*", Buggy), *api_app.ROUTES], scheduler=clock)
    joined(peer, TOPIC, "1")
    clock.advance(0)  # the room's welcome
    topic = f"buggy:{hook}"
    frames = peer.send("2", "2", topic, "phx_join")
    if hook == "join":
        assert frames == [reply("2", "2", topic, "error", {"reason": "join crashed"})]
    else:
        assert frames == [reply("2", "2", topic, "ok", {})]
        if hook in ("handle_in", "handle_out"):
            frames = peer.send("2", "3", topic, "go")  # handle_out runs for the channel's own broadcast
        elif hook == "handle_info":
            before = len(peer.transport.sent)
            clock.advance(1)
            frames = [peer.serializer.decode(f) for f in peer.transport.sent[before:]]
        else:
            frames = peer.send("2", "3", topic, "phx_leave")[1:]  # after the leave's ok
        assert frames == [Message("2", "2", topic, "phx_error", {})]
    assert str(ended_alone(peer, topic, caplog)) == f"bug in {hook}"


def ended_alone(peer: Peer, topic: str, caplog: pytest.LogCaptureFixture) -> BaseException | None:
    """Asserts that the channel on ``topic`` ended alone, logged in one record; its exception."""
    [record] = crash_records(caplog)
    assert record.exc_info is not None
    assert topic not in peer.socket.channels and peer.pubsub.subscriber_count(topic) == 0
    assert peer.transport.closed is None
    assert peer.send("1", "9", TOPIC, "whoami")[0].payload["status"] == "ok"  # the other channel lives
    return record.exc_info[1]


def test_an_exception_in_may_join_refuses_the_join(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(Socket):
        def may_join(self, topic: str) -> bool:
            raise RuntimeError("bug in may_join")

    peer = Peer(V2, routes=api_app.ROUTES, user_socket=Broken(None))
    assert peer.send("1", "1", TOPIC, "phx_join") == [reply("1", "1", TOPIC, "error", {"reason": "join crashed"})]
    assert len(crash_records(caplog)) == 1


class Unencodable(Channel):
    """Answers with a value JSON cannot carry (NaN) from the hook named by its topic."""

    intercept = frozenset({"out"})

    def join(self, payload: Any) -> Any:
        return {"x": float("nan")} if self.topic == "nan:join" else {}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if self.topic == "nan:handle_out":
            self.broadcast("out", {})
            return None
        return Reply.ok({"x": float("nan")})

    def handle_out(self, event: str, payload: Any) -> Any:
        return {"x": float("nan")}


@pytest.mark.parametrize("hook", ["join", "handle_in", "handle_out"])
def test_an_unencodable_reply_or_push_crashes_that_channel_only(hook: str, caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(V2, routes=[("nan:*", Unencodable), *api_app.ROUTES], scheduler=Clock())
    joined(peer, TOPIC, "1")
    topic = f"nan:{hook}"
    frames = peer.send("2", "2", topic, "phx_join")
    if hook == "join":
        assert frames == [reply("2", "2", topic, "error", {"reason": "join crashed"})]
    else:
        assert frames == [reply("2", "2", topic, "ok", {})]
        assert peer.send("2", "3", topic, "go") == [Message("2", "2", topic, "phx_error", {})]
    assert isinstance(ended_alone(peer, topic, caplog), ValueError)


def test_a_channel_that_crashes_twice_in_one_hook_is_ended_and_reported_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """handle_out raises for the channel's own broadcast (it crashes there), then handle_in raises."""
    ended: list[str] = []

    class Twice(Channel):
        intercept = frozenset({"out"})

        def handle_in(self, event: str, payload: Any) -> Reply | None:
            self.broadcast("out", {})
            raise RuntimeError("bug in handle_in")

        def handle_out(self, event: str, payload: Any) -> Any:
            raise RuntimeError("bug in handle_out")

        def terminate(self, reason: str) -> None:
            ended.append(reason)

    peer = Peer(V2, routes=[("twice:*", Twice), *api_app.ROUTES], scheduler=Clock())
    joined(peer, TOPIC, "1")
    joined(peer, "twice:1", "2")
    assert peer.send("2", "3", "twice:1", "go") == [Message("2", "2", "twice:1", "phx_error", {})]
    assert ended == ["crashed"]
    assert [str(r.exc_info[1]) for r in crash_records(caplog) if r.exc_info] == \
        ["bug in handle_out", "bug in handle_in"]


def test_a_broadcast_json_cannot_carry_crashes_the_channel_that_makes_it(caplog: pytest.LogCaptureFixture) -> None:
    class Shouter(Channel):
        def handle_in(self, event: str, payload: Any) -> Reply | None:
            self.broadcast("shout", {"x": float("nan")})
            return None

    pubsub = PubSub()
    listener = Peer(V2, pubsub, routes=[("s:*", Shouter)])
    joined(listener, "s:1")
    shouter = Peer(V2, pubsub, routes=[("s:*", Shouter)])
    joined(shouter, "s:1")
    before = len(listener.transport.sent)
    assert shouter.send("1", "2", "s:1", "go") == [Message("1", "1", "s:1", "phx_error", {})]
    assert len(listener.transport.sent) == before
    [record] = crash_records(caplog)
    assert isinstance(record.exc_info and record.exc_info[1], ValueError)


def test_a_broadcast_no_socket_can_encode_is_logged_once_not_once_per_subscriber(
        caplog: pytest.LogCaptureFixture) -> None:
    """What arrives from a peer or the API is strict JSON already; the fan-out stays robust."""
    pubsub = PubSub()
    peers = [Peer(serializer, pubsub, routes=api_app.ROUTES, scheduler=Clock()) for serializer in (V1, V2, V1, V2)]
    for peer in peers:
        joined(peer)
    pubsub.local_broadcast(Broadcast(TOPIC, "news", {"x": float("nan")}))
    pubsub.local_broadcast(Broadcast(TOPIC, "news", {"n": 1}))
    [record] = crash_records(caplog)
    assert record.getMessage().startswith("broadcast of news on room:1 not delivered: Out of range float values")
    assert all(peer.serializer.decode(peer.transport.sent[-1]).payload == {"n": 1} for peer in peers)


# ---- connect: the default token check, and topics ------------------------------------------------

def token(secret: str = SECRET, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "42", "iat": now, "exp": now + 60, **claims}, secret, algorithm="HS256")


INFO = ConnectInfo("127.0.0.1", {})


def test_the_default_connect_takes_the_tokens_claims_as_assigns() -> None:
    socket = Socket(TokenVerifier(SECRET))
    socket.connect({"token": token(name="ada"), "vsn": "2.0.0"}, INFO)
    assert socket.assigns["user_id"] == "42" and socket.assigns["name"] == "ada"


@pytest.mark.parametrize("params, reason", [
    ({}, "token missing"),
    ({"token": "not.a.jwt"}, "token malformed"),
    ({"token": token(exp=int(time.time()) - 60)}, "token expired"),
    ({"token": token(secret="x" * 40)}, "token bad_signature"),
], ids=["missing", "malformed", "expired", "wrong-secret"])
def test_the_default_connect_refuses_a_bad_token_without_repeating_it(params: dict[str, str], reason: str) -> None:
    with pytest.raises(ConnectRefused) as refused:
        Socket(TokenVerifier(SECRET)).connect(params, INFO)
    assert refused.value.reason.startswith(reason)
    assert not params or params["token"] not in refused.value.reason


def test_without_a_secret_anyone_connects() -> None:
    socket = Socket(None)
    socket.connect({}, INFO)
    assert socket.assigns == {} and socket.may_join("anything")


@BOTH
def test_a_topic_outside_the_tokens_claim_is_unauthorized_and_logged_once(
        serializer: Serializer, caplog: pytest.LogCaptureFixture) -> None:
    socket = Socket(TokenVerifier(SECRET))
    socket.connect({"token": token(topics=["room:lobby", "room:2"])}, INFO)
    peer = Peer(serializer, routes=api_app.ROUTES, user_socket=socket, scheduler=Clock())
    for ref in ("1", "2"):
        assert peer.send(ref, ref, "room:secret", "phx_join") == \
            [reply(peer.jr(ref), ref, "room:secret", "error", {"reason": "unauthorized"})]
    assert "room:secret" not in peer.socket.channels
    assert peer.send("3", "3", "room:lobby", "phx_join")[0].payload["status"] == "ok"
    assert peer.send("4", "4", "room:2", "phx_join")[0].payload["status"] == "ok"
    [warning] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert "room:secret" in warning.getMessage() and warning.exc_info is None


def test_the_api_is_importable_from_one_module() -> None:
    import server.channels as api

    assert set(api.__all__) == {"Channel", "ConnectInfo", "ConnectRefused", "JoinRefused", "Reply", "Socket",
                                "Timer", "Presence", "AlreadyTracked", "NotTracked", "LimitExceeded", "TopicFull",
                                "NodeFull"}
    assert all(getattr(api, name).__doc__ for name in api.__all__)


def test_a_channel_class_that_delivers_its_own_way_keeps_its_deliver() -> None:
    class Own(Channel):
        def deliver(self, message: Any, cache: dict[Any, Any]) -> None:
            pass

    class Intercepting(Own):
        intercept = frozenset({"x"})

    assert Own.deliver is not Channel.deliver and Intercepting.deliver is Own.deliver
