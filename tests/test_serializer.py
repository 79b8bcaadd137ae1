"""The V1 and V2 wire formats as pure functions: no sockets, frames as Phoenix 1.7 sent them."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.channels import serializer as wire
from server.channels.serializer import V1, V2, DecodeError, Message
from server.pubsub import Broadcast

# ---- V1: JSON objects ------------------------------------------------------------------------

def test_v1_decodes_the_articles_frames() -> None:
    assert V1.decode('{"topic":"room:1","event":"phx_join","payload":{},"ref":0}') == \
        Message(None, 0, "room:1", "phx_join", {})
    assert V1.decode(b'{"topic":"room:1","event":"shout","payload":{"message":"hi"},"ref":"2"}') == \
        Message(None, "2", "room:1", "shout", {"message": "hi"})


def test_v1_encodes_exactly_the_recorded_fields() -> None:
    recorded = {"event": "phx_reply", "payload": {"response": {}, "status": "ok"}, "ref": "1", "topic": "room:1"}
    frame = V1.encode(wire.reply("ignored-in-v1", "1", "room:1", "ok", {}))
    assert json.loads(frame) == recorded  # key order is not significant to clients
    assert "join_ref" not in frame


def test_v1_broadcast_has_a_null_ref() -> None:
    frame = wire.encode_broadcast(V1, Broadcast("room:1", "shout", {"message": "hi"}))
    assert json.loads(frame) == {"event": "shout", "payload": {"message": "hi"}, "ref": None, "topic": "room:1"}


def test_v1_keeps_unicode_and_is_compact() -> None:
    frame = wire.encode_broadcast(V1, Broadcast("room:1", "shout", {"message": "héllo ✓"}))
    assert "héllo ✓" in frame and ": " not in frame


# ---- V2: JSON arrays -------------------------------------------------------------------------

def test_v2_decodes_the_recorded_frames() -> None:
    assert V2.decode('["1","1","room:1","phx_join",{}]') == Message("1", "1", "room:1", "phx_join", {})
    assert V2.decode('[null,"3","phoenix","heartbeat",{}]') == Message(None, "3", "phoenix", "heartbeat", {})


@pytest.mark.parametrize("message, recorded", [
    (wire.reply("1", "1", "room:1", "ok", {}), '["1","1","room:1","phx_reply",{"status":"ok","response":{}}]'),
    (wire.reply(None, "4", "room:never", "error", {"reason": "unmatched topic"}),
     '[null,"4","room:never","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}]'),
    (Message("1", "1", "room:1", wire.CLOSE, {}), '["1","1","room:1","phx_close",{}]'),
])
def test_v2_encodes_the_recorded_frames(message: Message, recorded: str) -> None:
    assert json.loads(V2.encode(message)) == json.loads(recorded)


def test_v2_broadcast_has_null_join_ref_and_ref() -> None:
    frame = wire.encode_broadcast(V2, Broadcast("room:1", "shout", {"message": "hi"}))
    assert frame == '[null,null,"room:1","shout",{"message":"hi"}]'


_refs = st.one_of(st.none(), st.text(max_size=8), st.integers(-10**6, 10**6))
_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
                     max_leaves=8)


@given(_refs, _refs, st.text(), st.text(), st.dictionaries(st.text(), _json, max_size=4))
def test_v2_round_trips(join_ref, ref, topic, event, payload) -> None:
    message = Message(join_ref, ref, topic, event, payload)
    assert V2.decode(V2.encode(message)) == message


@given(_refs, st.text(), st.text(), st.dictionaries(st.text(), _json, max_size=4))
def test_v1_round_trips_without_join_ref(ref, topic, event, payload) -> None:
    message = Message(None, ref, topic, event, payload)
    assert V1.decode(V1.encode(message)) == message


# ---- what is not a frame ---------------------------------------------------------------------

def test_vsn_picks_the_serializer() -> None:
    assert wire.for_vsn(None) is V1
    assert wire.for_vsn("1.0.0") is V1
    assert wire.for_vsn("2.0.0") is V2
    assert wire.for_vsn("3.0.0") is None
    assert wire.for_vsn("") is None


@pytest.mark.parametrize("frame", [
    "not json",
    b"\xff\xfe",
    '{"foo":1}',  # recorded: Phoenix closes with 1011
    '["1","1","room:1","phx_join",{}]',  # a V2 frame sent to V1
    '{"topic":"room:1","event":"shout","payload":{}}',  # no ref
    '{"topic":1,"event":"shout","payload":{},"ref":"1"}',
    '{"topic":"room:1","event":null,"payload":{},"ref":"1"}',
    '{"topic":"room:1","event":"shout","payload":{},"ref":true}',
    '{"topic":"room:1","event":"shout","payload":{},"ref":{"a":1}}',
    "[" * 100_000,
])
def test_v1_rejects(frame: str | bytes) -> None:
    with pytest.raises(DecodeError):
        V1.decode(frame)


@pytest.mark.parametrize("frame", [
    "not json",
    '{"topic":"room:1","event":"shout","payload":{},"ref":"1"}',  # a V1 frame sent to V2
    '["1","1","room:1","phx_join"]',
    '["1","1","room:1","phx_join",{},"extra"]',
    '["1","1",null,"phx_join",{}]',
    '["1","1","room:1",5,{}]',
    '[["1"],"1","room:1","phx_join",{}]',
    '[false,"1","room:1","phx_join",{}]',
    '"a string"',
    "null",
])
def test_v2_rejects(frame: str) -> None:
    with pytest.raises(DecodeError):
        V2.decode(frame)


# ---- what json.loads takes but the wire does not ------------------------------------------------

@pytest.mark.parametrize("serializer", [V1, V2], ids=["v1", "v2"])
@pytest.mark.parametrize("payload, why", [
    ('{"m":NaN}', "NaN is not a JSON number"),
    ('{"m":-Infinity}', "-Infinity is not a JSON number"),
    ('{"m":1e400}', "out of range"),
    ('{"m":"\\ud800"}', "lone surrogate"),
    ('{"m":"\\udfff\\ud800"}', "lone surrogate"),
], ids=["nan", "infinity", "1e400", "high-surrogate", "reversed-pair"])
def test_non_finite_numbers_and_lone_surrogates_are_not_json(serializer, payload: str, why: str) -> None:
    frame = (f'["1","1","room:1","shout",{payload}]' if serializer is V2
             else f'{{"topic":"room:1","event":"shout","payload":{payload},"ref":"1"}}')
    with pytest.raises(DecodeError, match=why):
        serializer.decode(frame)


@pytest.mark.parametrize("data", [
    b'{"topic":"room:\xed\xa0\x80","event":"phx_join","payload":{},"ref":"1"}',  # CESU-8: a surrogate in bytes
    '{"topic":"room:1","event":"shout","payload":{},"ref":"1"}'.encode("utf-16"),
    b'{"topic":"room:1","event":"shout","payload":{"m":"\xff"},"ref":"1"}',
], ids=["cesu-8", "utf-16", "latin-1"])
def test_binary_frames_must_be_utf_8(data: bytes) -> None:
    with pytest.raises(DecodeError, match="not UTF-8"):
        V1.decode(data)


def test_a_valid_surrogate_pair_and_big_numbers_are_fine() -> None:
    assert V2.decode('["1","1","room:1","shout",{"m":"\\ud83d\\ude00","n":1e300,"i":123456789012345678901}]') \
        == Message("1", "1", "room:1", "shout", {"m": "😀", "n": 1e300, "i": 123456789012345678901})
