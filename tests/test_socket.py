"""``PhoenixSocket`` without sockets: frames in through ``receive``, frames out into a list.

Every protocol rule of ../shared/reference/phoenix-protocol.md, V1 and V2, starting with the
frames recorded from a real Phoenix 1.7 node, replayed exactly.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from server import chat
from server.channels import Channel, JoinRefused, Reply
from server.channels.rfc6455 import CloseCode
from server.channels.serializer import V1, V2, Message, Serializer
from server.channels.socket import PhoenixSocket, Router
from server.pubsub import PubSub

from support.recorded import RECORDED_V1, RECORDED_V2

BOTH = pytest.mark.parametrize("serializer", [V1, V2], ids=["v1", "v2"])


class ListTransport:
    frame_kind = None

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: tuple[int, str] | None = None

        self.prepared = 0
        # The cache of each broadcast whose frame came here, in order.
        self.broadcast_caches: list[dict[Any, Any]] = []

    def prepare_frame(self, text: str) -> str:
        self.prepared += 1
        return text

    def send_frame(self, frame: str, broadcast_cache: dict[Any, Any] | None = None) -> None:
        assert self.closed is None, f"sent {frame} after closing"
        self.sent.append(frame)
        if broadcast_cache is not None:
            self.broadcast_caches.append(broadcast_cache)

    def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)


class Refusing(Channel):
    def join(self, payload: Any) -> Any:
        raise JoinRefused("unauthorized")


class BrokenJoin(Channel):
    def join(self, payload: Any) -> Any:
        raise RuntimeError("bug in join")


class Echo(Channel):
    """Answers a push with a reply and a server push; ``raise`` is a bug in app code."""

    ended: list[str] = []

    def join(self, payload: Any) -> Any:
        return {"joined": self.topic}

    def handle_in(self, event: str, payload: Any) -> Reply | None:
        if event == "echo":
            self.push("pushed", payload)
            return Reply.ok(payload)
        if event == "refuse":
            return Reply.error({"reason": "no"})
        if event == "raise":
            raise RuntimeError("bug in handle_in")
        return super().handle_in(event, payload)

    def terminate(self, reason: str) -> None:
        Echo.ended.append(reason)


ROUTES = chat.ROUTES + [("refuse:*", Refusing), ("broken:*", BrokenJoin), ("echo:*", Echo),
                        ("exact", Echo)]


class Peer:
    """One socket with a list transport, driven with wire-field arguments in either format."""

    def __init__(self, serializer: Serializer, pubsub: PubSub | None = None, max_channels: int = 100,
                 routes: list[tuple[str, type[Channel]]] = ROUTES, **socket_options: Any) -> None:
        self.serializer = serializer
        self.pubsub = pubsub or PubSub()
        self.transport = ListTransport()
        self.socket = PhoenixSocket(self.transport, serializer, Router(routes), self.pubsub,
                                    max_channels, peer="test", **socket_options)

    def frame(self, join_ref: Any, ref: Any, topic: str, event: str, payload: Any = None) -> str:
        payload = {} if payload is None else payload
        if self.serializer is V2:
            return json.dumps([join_ref, ref, topic, event, payload])
        return json.dumps({"topic": topic, "event": event, "payload": payload, "ref": ref})

    def raw(self, data: str | bytes) -> list[Message]:
        before = len(self.transport.sent)
        self.socket.receive(data)
        return [self.serializer.decode(f) for f in self.transport.sent[before:]]

    def send(self, join_ref: Any, ref: Any, topic: str, event: str, payload: Any = None) -> list[Message]:
        """The frames the socket wrote in answer to this one."""
        return self.raw(self.frame(join_ref, ref, topic, event, payload))

    def jr(self, join_ref: Any) -> Any:
        """The join_ref as the client sees it: V1 frames have none."""
        return join_ref if self.serializer is V2 else None


def reply(join_ref: Any, ref: Any, topic: str, status: str, response: Any) -> Message:
    return Message(join_ref, ref, topic, "phx_reply", {"status": status, "response": response})


def exchange(peer: Peer, sent: str) -> list[Any]:
    return [json.loads(frame) for frame in _written(peer, sent)]


def _written(peer: Peer, sent: str) -> list[str]:
    before = len(peer.transport.sent)
    peer.socket.receive(sent)
    return peer.transport.sent[before:]


# ---- the recorded conversations, frame for frame ---------------------------------------------

@pytest.mark.parametrize("serializer, conversation", [(V1, RECORDED_V1), (V2, RECORDED_V2)], ids=["v1", "v2"])
def test_recorded_conversation(serializer: Serializer, conversation: list[tuple[str, list[str]]]) -> None:
    peer = Peer(serializer)
    for sent, received in conversation:
        assert exchange(peer, sent) == [json.loads(frame) for frame in received], sent
    assert peer.transport.closed is None


# ---- joins -----------------------------------------------------------------------------------

@BOTH
def test_join_ok_subscribes_the_channel(serializer: Serializer) -> None:
    peer = Peer(serializer)
    assert peer.send("1", "1", "room:1", "phx_join") == [reply(peer.jr("1"), "1", "room:1", "ok", {})]
    assert peer.pubsub.subscriber_count("room:1") == 1
    assert peer.send("1", "2", "echo:a", "phx_join") == [reply(peer.jr("1"), "2", "echo:a", "ok", {"joined": "echo:a"})]


@BOTH
def test_join_refused_by_the_channel(serializer: Serializer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    peer = Peer(serializer)
    assert peer.send("1", "1", "refuse:1", "phx_join") == \
        [reply(peer.jr("1"), "1", "refuse:1", "error", {"reason": "unauthorized"})]
    assert peer.pubsub.subscriber_count("refuse:1") == 0
    assert "refuse:1" not in peer.socket.channels
    assert any("refused" in r.getMessage() and r.exc_info is None for r in caplog.records)


@BOTH
def test_join_that_crashes_is_refused_and_logged_with_traceback(serializer: Serializer,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(serializer)
    assert peer.send("1", "1", "broken:1", "phx_join") == \
        [reply(peer.jr("1"), "1", "broken:1", "error", {"reason": "join crashed"})]
    assert "broken:1" not in peer.socket.channels
    assert [r.exc_info[1].args for r in caplog.records if r.exc_info] == [("bug in join",)]
    assert peer.send("2", "2", "room:1", "phx_join")[0].payload["status"] == "ok"


@BOTH
def test_join_no_route_matches_is_unmatched_topic(serializer: Serializer) -> None:
    peer = Peer(serializer)
    assert peer.send("1", "1", "lobby", "phx_join") == \
        [reply(None, "1", "lobby", "error", {"reason": "unmatched topic"})]
    assert peer.socket.channels == {}


def test_router_patterns() -> None:
    router = Router(ROUTES)
    assert router.match("room:1") is chat.RoomChannel
    assert router.match("room:") is chat.RoomChannel
    assert router.match("rooms:1") is None
    assert router.match("exact") is Echo
    assert router.match("exact:1") is None


@BOTH
def test_duplicate_join_replies_then_closes_the_old_channel(serializer: Serializer) -> None:
    peer = Peer(serializer)
    Echo.ended.clear()
    peer.send("1", "1", "echo:a", "phx_join")
    old = peer.socket.channels["echo:a"]
    frames = peer.send("5", "5", "echo:a", "phx_join")
    assert frames == [reply(peer.jr("5"), "5", "echo:a", "ok", {"joined": "echo:a"}),
                      Message(peer.jr("1"), peer.jr("1"), "echo:a", "phx_close", {})]
    assert Echo.ended == ["rejoined"]
    assert peer.socket.channels["echo:a"] is not old
    assert peer.pubsub.subscriber_count("echo:a") == 1


@BOTH
def test_channel_limit(serializer: Serializer, caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(serializer, max_channels=2)
    assert peer.send("1", "1", "room:1", "phx_join")[0].payload["status"] == "ok"
    assert peer.send("2", "2", "room:2", "phx_join")[0].payload["status"] == "ok"
    assert peer.send("3", "3", "room:3", "phx_join") == \
        [reply(peer.jr("3"), "3", "room:3", "error", {"reason": "too many channels joined"})]
    assert set(peer.socket.channels) == {"room:1", "room:2"}
    assert any("room:3" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    # rejoining a topic already joined is not one more channel
    assert peer.send("4", "4", "room:2", "phx_join")[0].payload["status"] == "ok"
    # a leave frees a place
    peer.send(peer.jr("1"), "5", "room:1", "phx_leave")
    assert peer.send("6", "6", "room:3", "phx_join")[0].payload["status"] == "ok"


# ---- leave, heartbeat, unmatched, stale ------------------------------------------------------

@BOTH
def test_leave_replies_then_closes_and_stops_delivering(serializer: Serializer) -> None:
    peer = Peer(serializer)
    other = Peer(V2, peer.pubsub)
    peer.send("1", "1", "room:1", "phx_join")
    other.send("1", "1", "room:1", "phx_join")
    Echo.ended.clear()
    peer.send("2", "2", "echo:a", "phx_join")
    assert peer.send(peer.jr("2"), "3", "echo:a", "phx_leave") == \
        [reply(peer.jr("2"), "3", "echo:a", "ok", {}), Message(peer.jr("2"), peer.jr("2"), "echo:a", "phx_close", {})]
    assert Echo.ended == ["leave"]
    assert peer.send(peer.jr("1"), "4", "room:1", "phx_leave")[1].event == "phx_close"
    assert peer.pubsub.subscriber_count("room:1") == 1
    before = len(peer.transport.sent)
    other.send("1", "2", "room:1", "shout", {"message": "after"})
    assert len(peer.transport.sent) == before
    assert other.transport.sent[-1] == '[null,null,"room:1","shout",{"message":"after"}]'


@BOTH
def test_leave_of_a_topic_not_joined_is_ok(serializer: Serializer) -> None:
    peer = Peer(serializer)
    assert peer.send("7", "1", "room:9", "phx_leave") == [reply(peer.jr("7"), "1", "room:9", "ok", {})]


@BOTH
def test_heartbeat(serializer: Serializer) -> None:
    peer = Peer(serializer)
    assert peer.send(None, "42", "phoenix", "heartbeat") == [reply(None, "42", "phoenix", "ok", {})]
    assert peer.socket.channels == {}


@BOTH
def test_push_on_a_topic_not_joined_is_unmatched_with_null_join_ref(serializer: Serializer,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(serializer)
    assert peer.send("9", "4", "room:never", "shout", {"message": "hi"}) == \
        [reply(None, "4", "room:never", "error", {"reason": "unmatched topic"})]
    assert peer.pubsub.subscriber_count("room:never") == 0
    [record] = [r for r in caplog.records if "unmatched" in r.getMessage()]
    assert record.levelno == logging.WARNING and record.exc_info is None


def test_a_client_repeating_a_mistake_is_logged_once_per_kind_with_long_names_cut(
        caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(V2)
    long_topic = "never:" + "x" * 10_000
    for ref in range(50):
        assert peer.send(None, str(ref), long_topic, "shout")[0].payload["status"] == "error"
        assert peer.send(None, str(ref), "room:1", "shout", [ref])[0].payload["status"] == "error"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings
    assert all(len(w) < 300 and "repeats on this socket are not logged" in w for w in warnings)


def test_stale_join_ref_is_dropped_silently() -> None:
    peer = Peer(V2)
    listener = Peer(V2, peer.pubsub)
    listener.send("1", "1", "room:1", "phx_join")
    peer.send("1", "1", "room:1", "phx_join")
    peer.send("2", "2", "room:1", "phx_join")  # rejoin: "1" is now stale
    for stale in ("1", "99", None):
        assert peer.send(stale, "3", "room:1", "shout", {"message": "stale"}) == []
        assert peer.send(stale, "4", "room:1", "phx_leave") == []
    assert "stale" not in "".join(listener.transport.sent)
    assert "room:1" in peer.socket.channels
    assert peer.send("2", "5", "room:1", "shout", {"message": "fresh"}) == \
        [Message(None, None, "room:1", "shout", {"message": "fresh"})]


# ---- replies and pushes from a channel --------------------------------------------------------

@BOTH
def test_channel_reply_and_push(serializer: Serializer) -> None:
    peer = Peer(serializer)
    peer.send("3", "3", "echo:a", "phx_join")
    assert peer.send(peer.jr("3"), "4", "echo:a", "echo", {"n": 1}) == [
        Message(peer.jr("3"), None, "echo:a", "pushed", {"n": 1}),
        reply(peer.jr("3"), "4", "echo:a", "ok", {"n": 1}),
    ]
    assert peer.send(peer.jr("3"), "5", "echo:a", "refuse") == [reply(peer.jr("3"), "5", "echo:a", "error", {"reason": "no"})]


# ---- crashes: the channel dies, the socket lives ----------------------------------------------

@BOTH
@pytest.mark.parametrize("event, traceback", [("nope", False), ("raise", True)], ids=["unhandled", "bug"])
def test_crash_sends_phx_error_and_the_socket_lives_on(serializer: Serializer, event: str, traceback: bool,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(serializer)
    Echo.ended.clear()
    peer.send("1", "1", "room:1", "phx_join")
    peer.send("2", "2", "echo:a", "phx_join")
    assert peer.send(peer.jr("2"), "3", "echo:a", event) == \
        [Message(peer.jr("2"), peer.jr("2"), "echo:a", "phx_error", {})]
    assert Echo.ended == ["crashed"]
    assert peer.transport.closed is None
    assert "echo:a" not in peer.socket.channels and peer.pubsub.subscriber_count("echo:a") == 0
    # the other channel still works, the crashed topic is unmatched until rejoined
    assert peer.send(peer.jr("1"), "4", "room:1", "shout", {"m": 1}) == [Message(None, None, "room:1", "shout", {"m": 1})]
    assert peer.send(peer.jr("2"), "5", "echo:a", "echo")[0].payload == {"status": "error", "response": {"reason": "unmatched topic"}}
    assert peer.send("6", "6", "echo:a", "phx_join")[0].payload["status"] == "ok"
    # a client's unknown event is a one-line warning; a bug in app code is logged with its traceback
    crash_records = [r for r in caplog.records if "crashed" in r.getMessage()]
    assert len(crash_records) == 1
    assert (crash_records[0].exc_info is not None) is traceback


# ---- bad input ---------------------------------------------------------------------------------

@BOTH
@pytest.mark.parametrize("payload", [[1, 2], "text", 5, None], ids=["list", "string", "number", "null"])
def test_non_object_payload_is_refused_and_the_socket_lives_on(serializer: Serializer, payload: Any,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(serializer)
    peer.send("1", "1", "room:1", "phx_join")
    frame = peer.frame(peer.jr("1"), "2", "room:1", "shout", "PLACEHOLDER").replace('"PLACEHOLDER"', json.dumps(payload))
    [answer] = peer.raw(frame)
    assert (answer.ref, answer.topic, answer.event, answer.payload["status"]) == ("2", "room:1", "phx_reply", "error")
    assert peer.transport.closed is None
    assert peer.send(peer.jr("1"), "3", "room:1", "shout", {"m": 1}) == [Message(None, None, "room:1", "shout", {"m": 1})]
    assert [r.levelno for r in caplog.records if "not an object" in r.getMessage()] == [logging.WARNING]


@BOTH
@pytest.mark.parametrize("data", ["not JSON", '{"foo":1}', "[1,2]", '"x"', "", b"\xff"],
                         ids=["not-json", "wrong-object", "short-array", "string", "empty", "bad-bytes"])
def test_bad_frame_closes_with_1011_and_no_frame(serializer: Serializer, data: str | bytes,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    if isinstance(data, bytes) and serializer is V2:
        data = data.decode("latin-1")  # V2 takes no binary message at all (the next test)
    peer = Peer(serializer)
    assert peer.raw(data) == []
    assert peer.transport.closed is not None and peer.transport.closed[0] == CloseCode.SERVER_ERROR == 1011
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.WARNING and record.exc_info is None and "\n" not in record.getMessage()


def test_binary_message_on_v2_closes_with_1003(caplog: pytest.LogCaptureFixture) -> None:
    peer = Peer(V2)
    assert peer.raw(b'["1","1","room:1","phx_join",{}]') == []
    assert peer.transport.closed == (CloseCode.UNSUPPORTED, "binary frames are not supported")
    assert not peer.socket.channels
    assert any("binary frames are not supported" in r.getMessage() for r in caplog.records)


def test_frame_of_the_other_format_closes_with_1011() -> None:
    v1, v2 = Peer(V1), Peer(V2)
    v1.raw('["1","1","room:1","phx_join",{}]')
    v2.raw('{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}')
    assert v1.transport.closed[0] == v2.transport.closed[0] == 1011


@BOTH
def test_closed_ends_every_channel(serializer: Serializer) -> None:
    peer = Peer(serializer)
    Echo.ended.clear()
    peer.send("1", "1", "room:1", "phx_join")
    peer.send("2", "2", "echo:a", "phx_join")
    peer.socket.closed()
    assert peer.socket.channels == {}
    assert Echo.ended == ["closed"]
    assert peer.pubsub.subscriber_count("room:1") == peer.pubsub.subscriber_count("echo:a") == 0


# ---- the fastlane: one encode per serializer per broadcast -------------------------------------

def test_broadcast_is_encoded_once_per_serializer(monkeypatch: pytest.MonkeyPatch) -> None:
    pubsub = PubSub()
    v2a, v2b, v1 = Peer(V2, pubsub), Peer(V2, pubsub), Peer(V1, pubsub)
    for peer in (v2a, v2b, v1):
        peer.send("1", "1", "room:1", "phx_join")
        peer.transport.prepared = 0
    encoded: dict[str, list[Message]] = {"v1": [], "v2": []}
    for name, serializer in (("v1", V1), ("v2", V2)):
        def counting(message: Message, _encode=serializer.encode, _name=name) -> str:
            encoded[_name].append(message)
            return _encode(message)
        monkeypatch.setattr(serializer, "encode", staticmethod(counting))
    v2a.send("1", "2", "room:1", "shout", {"message": "hi"})
    assert {k: len(v) for k, v in encoded.items()} == {"v1": 1, "v2": 1}
    assert v2a.transport.sent[-1] is v2b.transport.sent[-1]
    assert sum(p.transport.prepared for p in (v2a, v2b, v1)) == 2  # framed once per format too
    assert v2a.transport.sent[-1] == '[null,null,"room:1","shout",{"message":"hi"}]'
    assert json.loads(v1.transport.sent[-1]) == {"topic": "room:1", "event": "shout",
                                                 "payload": {"message": "hi"}, "ref": None}


class DeflatingTransport(ListTransport):
    """Frames of another kind (compressed with a window size, say)."""

    def __init__(self, kind: int) -> None:
        super().__init__()
        self.frame_kind = kind  # type: ignore[assignment]


def test_broadcast_is_framed_once_per_serializer_and_frame_kind() -> None:
    pubsub = PubSub()
    peers = [Peer(V2, pubsub) for _ in range(6)]
    for peer, kind in zip(peers[2:], (15, 15, 9, 9), strict=True):
        peer.socket = PhoenixSocket(DeflatingTransport(kind), V2, peer.socket.router, pubsub, 100, "test")
        peer.transport = peer.socket.transport  # type: ignore[assignment]
    for peer in peers:
        peer.send("1", "1", "room:1", "phx_join")
        peer.transport.prepared = 0
    peers[0].send("1", "2", "room:1", "shout", {"message": "hi"})
    assert [p.transport.prepared for p in peers] == [1, 0, 1, 0, 1, 0]
    sent = [p.transport.sent[-1] for p in peers]
    assert sent[0] is sent[1] and sent[2] is sent[3] and sent[4] is sent[5]


def test_a_broadcast_frame_comes_with_its_broadcast_s_cache_and_nothing_else_does() -> None:
    """What a transport compressing with context needs: the same cache with a broadcast's frame
    for every subscriber, a new one for the next broadcast, none with replies and pushes."""
    pubsub = PubSub()
    peers = [Peer(V2, pubsub) for _ in range(3)]
    for peer in peers:
        peer.send("1", "1", "room:1", "phx_join")
        peer.send("2", "2", "echo:1", "phx_join")
    assert [p.transport.broadcast_caches for p in peers] == [[], [], []]
    peers[0].send("1", "3", "room:1", "shout", {"message": "one"})
    peers[0].send("1", "4", "room:1", "shout", {"message": "two"})
    peers[1].send("2", "5", "echo:1", "echo", {"message": "a push and a reply"})
    first, second = peers[0].transport.broadcast_caches
    assert first is not second
    for peer in peers:
        assert [id(cache) for cache in peer.transport.broadcast_caches] == [id(first), id(second)]


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    pubsub = PubSub()
    bad, good = Peer(V2, pubsub), Peer(V2, pubsub)
    bad.send("1", "1", "room:1", "phx_join")
    good.send("1", "1", "room:1", "phx_join")

    def explode(frame: str, broadcast_cache: dict[Any, Any] | None = None) -> None:
        raise OSError("gone")

    bad.transport.send_frame = explode  # type: ignore[method-assign]
    good.send("1", "2", "room:1", "shout", {"m": 1})
    assert good.transport.sent[-1] == '[null,null,"room:1","shout",{"m":1}]'
