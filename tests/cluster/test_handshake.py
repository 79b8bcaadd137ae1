"""The handshake state machines, driven against each other in memory: no sockets."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.cluster.framing import Frame, FrameDecoder, FrameType, encode_json
from server.cluster.handshake import VERSIONS, Acceptor, HandshakeError, Identity, Initiator, PeerInfo, Reason, State
from server.settings import Cookie

SECRET = "the-cluster-cookie-0123456789"
COOKIE = Cookie(SECRET)
A = Identity("gossipy@127.0.0.2", 11, longnames=True)
B = Identity("gossipy@127.0.0.3", 22, longnames=True)


def frames_of(data: bytes) -> list[Frame]:
    return FrameDecoder().receive_data(data)


def pump(initiator: Initiator, acceptor: Acceptor, decide: Reason | None = None) -> list[bytes]:
    """Runs both sides to the end, as the peer driver would; returns every byte string sent.
    Raises the HandshakeError of whichever side fails first."""
    sent: list[bytes] = []
    initiator.send_name()
    while State.FAILED not in (initiator.state, acceptor.state) and \
            not (initiator.state is State.UP and acceptor.state is State.UP):
        data = initiator.data_to_send()
        sent.append(data)
        for frame in frames_of(data):
            acceptor.receive_frame(frame)
            if acceptor.state is State.SEND_STATUS:
                acceptor.answer(decide)
        data = acceptor.data_to_send()
        sent.append(data)
        for frame in frames_of(data):
            initiator.receive_frame(frame)
    return sent


def test_both_sides_come_up_knowing_each_other() -> None:
    a, b = Initiator(A, COOKIE, expect=B.name), Acceptor(B, COOKIE)
    pump(a, b)
    assert a.peer == PeerInfo(B.name, B.creation, hidden=False, version=VERSIONS[1])
    assert b.peer == PeerInfo(A.name, A.creation, hidden=False, version=VERSIONS[1])


def test_the_cookie_never_crosses_the_wire_and_never_shows() -> None:
    a, b = Initiator(A, COOKIE, expect=B.name), Acceptor(B, COOKIE)
    wire = b"".join(pump(a, b))
    assert SECRET.encode() not in wire
    assert SECRET not in repr(a.__dict__) + repr(b.__dict__)
    with pytest.raises(HandshakeError) as refused:
        pump(Initiator(A, Cookie("another-cookie-entirely"), expect=B.name), Acceptor(B, COOKIE))
    assert SECRET not in str(refused.value) and "another-cookie" not in str(refused.value)


def test_challenges_are_fresh_each_time() -> None:
    walks = [b"".join(pump(Initiator(A, COOKIE, expect=B.name), Acceptor(B, COOKIE))) for _ in range(2)]
    assert walks[0] != walks[1]


def test_a_wrong_cookie_is_caught_by_the_acceptor_which_tells_the_initiator() -> None:
    a, b = Initiator(A, Cookie("not-the-cookie"), expect=B.name), Acceptor(B, COOKIE)
    with pytest.raises(HandshakeError) as caught:
        pump(a, b)
    assert caught.value.reason is Reason.BAD_COOKIE and not caught.value.by_peer
    # B proved nothing: it refused before sending its own digest.
    told = frames_of(b.data_to_send())
    assert [f.type for f in told] == [FrameType.REFUSE]
    with pytest.raises(HandshakeError) as refused:
        a.receive_frame(told[0])
    assert refused.value.reason is Reason.BAD_COOKIE and refused.value.by_peer


def test_an_acceptor_that_cannot_prove_the_cookie_is_refused() -> None:
    a = Initiator(A, COOKIE, expect=B.name)
    a.send_name()
    a.receive_frame(frames_of(encode_json(FrameType.STATUS, {"status": "ok", "version": 1}))[0])
    a.receive_frame(frames_of(encode_json(FrameType.CHALLENGE, {"name": B.name, "creation": 1,
                                                                "challenge": "ab" * 32}))[0])
    a.data_to_send()
    with pytest.raises(HandshakeError) as caught:
        a.receive_frame(frames_of(encode_json(FrameType.CHALLENGE_ACK, {"digest": "00" * 32}))[0])
    assert caught.value.reason is Reason.BAD_COOKIE
    assert json.loads(frames_of(a.data_to_send())[0].payload) == {"reason": "bad_cookie"}


def test_a_digest_answers_one_handshake_only() -> None:
    """A reply recorded from one handshake is useless in the next: fresh challenges."""
    a, b = Initiator(A, COOKIE, expect=B.name), Acceptor(B, COOKIE)
    recorded = pump(a, b)
    reply = [f for data in recorded for f in frames_of(data) if f.type is FrameType.CHALLENGE_REPLY][0]
    b2 = Acceptor(B, COOKIE)
    b2.receive_frame(frames_of(recorded[0])[0])
    b2.answer(None)
    with pytest.raises(HandshakeError, match="bad_cookie"):
        b2.receive_frame(reply)


@pytest.mark.parametrize("refusal", [Reason.DUPLICATE_NAME, Reason.NOT_ALLOWED])
def test_the_owner_may_refuse_a_name_and_the_initiator_learns_why(refusal: Reason) -> None:
    a, b = Initiator(A, COOKIE, expect=B.name), Acceptor(B, COOKIE)
    with pytest.raises(HandshakeError) as caught:
        pump(a, b, decide=refusal)
    assert caught.value.reason is refusal
    with pytest.raises(HandshakeError) as told:
        a.receive_frame(frames_of(b.data_to_send())[0])
    assert told.value.reason is refusal and told.value.by_peer


def test_a_lost_simultaneous_dial_is_nok_not_a_refusal() -> None:
    a, b = Initiator(A, COOKIE, expect=B.name), Acceptor(B, COOKIE)
    with pytest.raises(HandshakeError) as caught:
        pump(a, b, decide=Reason.SIMULTANEOUS)
    [status] = frames_of(b.data_to_send())
    assert json.loads(status.payload) == {"status": "nok"}
    with pytest.raises(HandshakeError) as nok:
        a.receive_frame(status)
    assert nok.value.reason is Reason.SIMULTANEOUS and caught.value.reason is Reason.SIMULTANEOUS
    assert a.data_to_send() == b""  # nothing to tell a peer that won


def test_short_and_long_names_do_not_mix() -> None:
    short = Identity("gossipy@ws1", 1, longnames=False)
    with pytest.raises(HandshakeError) as caught:
        pump(Initiator(short, COOKIE, expect=B.name), Acceptor(B, COOKIE))
    assert caught.value.reason is Reason.NAME_MODE_MISMATCH
    assert "gossipy@ws1 is a short name; this node uses long names" in str(caught.value)


def test_an_answer_from_another_node_than_the_one_dialed_is_wrong_node() -> None:
    with pytest.raises(HandshakeError) as caught:
        pump(Initiator(A, COOKIE, expect="gossipy@127.0.0.9"), Acceptor(B, COOKIE))
    assert caught.value.reason is Reason.WRONG_NODE and "gossipy@127.0.0.9" in caught.value.detail


@pytest.mark.parametrize("versions, result", [([1, 5], 1), ([0, 1], 1), ([2, 3], None), ([0, 0], None)])
def test_the_highest_common_version_is_chosen(versions: list[int], result: int | None) -> None:
    b = Acceptor(B, COOKIE)
    name = encode_json(FrameType.NAME, {"name": A.name, "creation": 1, "versions": versions, "hidden": False})
    if result is None:
        with pytest.raises(HandshakeError, match="bad_version"):
            b.receive_frame(frames_of(name)[0])
    else:
        b.receive_frame(frames_of(name)[0])
        assert b.peer is not None and b.peer.version == result


def test_a_hidden_initiator_says_so() -> None:
    a, b = Initiator(A, COOKIE, expect=B.name, hidden=True), Acceptor(B, COOKIE)
    pump(a, b)
    assert b.peer is not None and b.peer.hidden


GOOD_NAME = {"name": A.name, "creation": 1, "versions": [1, 1], "hidden": False}


@pytest.mark.parametrize("payload", [
    b"not json", b"[]", b'"name"', b"{}",
    json.dumps({**GOOD_NAME, "name": "no-at-sign"}).encode(),
    json.dumps({**GOOD_NAME, "name": "a@b@c"}).encode(),
    json.dumps({**GOOD_NAME, "name": "x" * 300 + "@1.2.3.4"}).encode(),
    json.dumps({**GOOD_NAME, "creation": True}).encode(),
    json.dumps({**GOOD_NAME, "creation": -1}).encode(),
    json.dumps({**GOOD_NAME, "creation": 2**40}).encode(),
    json.dumps({**GOOD_NAME, "versions": [1]}).encode(),
    json.dumps({**GOOD_NAME, "versions": ["1", "1"]}).encode(),
    json.dumps({**GOOD_NAME, "hidden": "no"}).encode(),
], ids=lambda p: p.decode()[:40])
def test_a_malformed_name_is_refused(payload: bytes) -> None:
    b = Acceptor(B, COOKIE)
    with pytest.raises(HandshakeError) as caught:
        b.receive_frame(Frame(FrameType.NAME, payload))
    assert caught.value.reason is Reason.MALFORMED
    assert json.loads(frames_of(b.data_to_send())[0].payload) == {"reason": "malformed"}


def test_a_frame_out_of_turn_is_malformed() -> None:
    b = Acceptor(B, COOKIE)
    with pytest.raises(HandshakeError, match="expected NAME, got TICK"):
        b.receive_frame(Frame(FrameType.TICK, b""))


@pytest.mark.parametrize("challenge", ["AB" * 32, "ab" * 31, " " + "ab" * 32, "zz" * 32])
def test_challenges_must_be_exact_lowercase_hex(challenge: str) -> None:
    a = Initiator(A, COOKIE, expect=B.name)
    a.send_name()
    a.receive_frame(frames_of(encode_json(FrameType.STATUS, {"status": "ok", "version": 1}))[0])
    with pytest.raises(HandshakeError, match="malformed"):
        a.receive_frame(Frame(FrameType.CHALLENGE, json.dumps(
            {"name": B.name, "creation": 1, "challenge": challenge}).encode()))


def test_a_refuse_with_an_unknown_reason_is_malformed() -> None:
    a = Initiator(A, COOKIE, expect=B.name)
    a.send_name()
    with pytest.raises(HandshakeError) as caught:
        a.receive_frame(frames_of(encode_json(FrameType.REFUSE, {"reason": "rm -rf"}))[0])
    assert caught.value.reason is Reason.MALFORMED


def test_nothing_is_accepted_after_failure() -> None:
    b = Acceptor(B, COOKIE)
    with pytest.raises(HandshakeError):
        b.receive_frame(Frame(FrameType.NAME, b"junk"))
    with pytest.raises(HandshakeError, match="in failed"):
        b.receive_frame(frames_of(encode_json(FrameType.NAME, GOOD_NAME))[0])


handshake_frames = st.builds(
    Frame, st.sampled_from(list(FrameType)),
    st.one_of(st.binary(max_size=200),
              st.dictionaries(st.sampled_from(["name", "creation", "versions", "hidden", "status", "version",
                                               "challenge", "digest", "reason"]),
                              st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=80),
                                        st.lists(st.integers(), max_size=3)))
              .map(lambda d: json.dumps(d).encode())))


@settings(max_examples=400)
@given(st.lists(handshake_frames, min_size=1, max_size=6), st.booleans())
def test_random_frames_only_ever_raise_handshake_errors(sent: list[Frame], as_acceptor: bool) -> None:
    hs: Initiator | Acceptor
    if as_acceptor:
        hs = Acceptor(B, COOKIE)
    else:
        hs = Initiator(A, COOKIE, expect=B.name)
        hs.send_name()
    try:
        for frame in sent:
            hs.receive_frame(frame)
            if hs.state is State.SEND_STATUS:
                assert isinstance(hs, Acceptor)
                hs.answer(None)
    except HandshakeError:
        assert hs.state is State.FAILED
    frames_of(hs.data_to_send())  # whatever it queued is well-formed
    assert hs.state is not State.UP

