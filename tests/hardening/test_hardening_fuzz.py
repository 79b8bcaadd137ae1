"""Property tests of every decoder that faces untrusted bytes, driven by hypothesis: the
Phoenix V1 and V2 serializers (alone, and behind a real PhoenixSocket), the peer stream's
FrameDecoder, the handshake (fed bytes as run_handshake feeds them, and a real pair with one
message mutated in flight) and the cluster adapter's broadcast decoder.

The contracts live in ``tests/support/fuzz.py``, which also runs them on a million generated
inputs (``python3 -m tests.support.fuzz``); here hypothesis draws a small sample and shrinks what
fails.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from server.channels.serializer import V1, V2
from server.cluster.framing import HANDSHAKE_MAX_FRAME, MAX_FRAME, FrameType

from support import ROOT, fuzz

SAMPLE = settings(max_examples=150)  # deadline and health checks: tests/conftest.py's profile
VSNS = st.sampled_from([V1.vsn, V2.vsn])

# JSON values as a hostile client writes them: non-finite numbers, lone surrogates (as \u
# escapes), huge integers, deep-ish nesting.
_scalars = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
            | st.text(max_size=12) | st.text(st.characters(categories=["Cs", "Cc", "L", "So"]), max_size=4)
            | st.sampled_from(["room:1", "phoenix", "heartbeat", "phx_join", "phx_leave", "shout"])
            | st.sampled_from([float("nan"), float("-inf"), "\ud800", "x\udfff", 2**70, -0.0]))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3), max_leaves=6)


def mostly(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a valid field, so that the frame gets past the first check; else any value."""
    return valid | valid | valid | json_values


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=True)  # JSON text (NaN tokens and \ud800 escapes included)


@st.composite
def phoenix_texts(draw: st.DrawFn, vsn: str) -> str:
    fields = [draw(mostly(st.sampled_from(["1", None]))), draw(mostly(st.sampled_from(["2", None, 3]))),
              draw(mostly(st.sampled_from(["room:1", "phoenix", "room:2"]))),
              draw(mostly(st.sampled_from(["phx_join", "shout", "heartbeat", "phx_leave"]))),
              draw(mostly(st.fixed_dictionaries({}, optional={"message": json_values})))]
    if vsn == V2.vsn:
        return dumps(fields)
    return dumps({"topic": fields[2], "event": fields[3], "payload": fields[4], "ref": fields[1]})


@st.composite
def spliced(draw: st.DrawFn, texts: st.SearchStrategy[str]) -> bytes:
    """A valid-looking frame with a token from the fuzzer's dictionary spliced in somewhere."""
    data = draw(texts).encode()
    at = draw(st.integers(0, len(data)))
    return data[:at] + draw(st.sampled_from(fuzz._TOKENS)) + data[at + draw(st.integers(0, 3)):]


@st.composite
def serializer_cases(draw: st.DrawFn) -> tuple[str, str | bytes]:
    vsn = draw(VSNS)
    data = draw(phoenix_texts(vsn) | spliced(phoenix_texts(vsn)) | st.binary(max_size=64) | st.text(max_size=64))
    return vsn, data


@SAMPLE
@given(serializer_cases())
# Every run tries what json.loads takes but the wire does not: NaN and Infinity (not JSON, and not
# encodable back), "\ud800" escapes and CESU-8 bytes (lone surrogates: no UTF-8 text frame can
# carry them)
@example((V1.vsn, '{"topic":"room:1","event":"shout","payload":{"m":NaN},"ref":"1"}'))
@example((V2.vsn, '["1","1","room:1","shout",{"m":-Infinity}]'))
@example((V2.vsn, '["1","1","room:1","shout",{"m":1e400}]'))
@example((V2.vsn, '["1","1","room:\\ud800","phx_join",{}]'))
@example((V1.vsn, b'{"topic":"room:\xed\xa0\x80","event":"phx_join","payload":{},"ref":"1"}'))
def test_a_serializer_decodes_or_refuses_and_what_it_decodes_can_be_written_back(case) -> None:
    fuzz.serializer_target(case)


def _as_text(data: str | bytes) -> str:
    return data.decode("utf-8", "replace") if isinstance(data, bytes) else data  # as Tornado hands text frames


@st.composite
def socket_cases(draw: st.DrawFn) -> tuple[str, list[str | bytes]]:
    vsn = draw(VSNS)
    join = '["1","1","room:1","phx_join",{}]' if vsn == V2.vsn else \
        '{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}'
    frames = draw(st.lists(phoenix_texts(vsn) | spliced(phoenix_texts(vsn)).map(_as_text), min_size=1, max_size=4))
    return vsn, [join, *frames]


@SAMPLE
@given(socket_cases())
@example((V2.vsn, ['["1","1","room:1","phx_join",{}]', '["1","2","room:1","shout",{"m":NaN}]']))
@example((V1.vsn, ['{"topic":"room:\\udfff","event":"phx_join","payload":{},"ref":"1"}']))
def test_a_socket_takes_any_frames_and_only_ever_closes_1011(case) -> None:
    fuzz.socket_target(case)


@st.composite
def streams(draw: st.DrawFn) -> tuple[int, bytes, list[int]]:
    """Frames with mostly right length prefixes, some wrong, and unknown types."""
    out = b""
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from([t.value for t in FrameType]) | st.integers(0, 255))
        payload = draw(st.binary(max_size=40) | json_values.map(lambda v: dumps(v).encode()))
        length = draw(st.just(len(payload) + 1) | st.sampled_from([0, HANDSHAKE_MAX_FRAME + 1, 2**32 - 1])
                      | st.integers(0, 64))
        out += length.to_bytes(4, "big") + bytes([kind]) + payload
    cuts = draw(st.lists(st.integers(0, len(out)), max_size=5))
    return draw(st.sampled_from([HANDSHAKE_MAX_FRAME, MAX_FRAME, 16])), out, cuts


@SAMPLE
@given(streams())
def test_the_frame_decoder_gives_the_same_frames_or_error_however_the_bytes_are_cut(case) -> None:
    fuzz.frame_decoder_target(case)


_hex = st.sampled_from(["ab" * 32, "AB" * 32, "0" * 63]) | st.integers(0, 2**256 - 1).map(lambda n: f"{n:064x}")


@st.composite
def handshake_cases(draw: st.DrawFn) -> tuple[str, bytes]:
    """Each step's frame with mostly valid fields, one of them perhaps replaced, as bytes."""
    role = draw(st.sampled_from(["acceptor", "initiator"]))
    if role == "acceptor":
        steps = [(FrameType.NAME, {"name": st.sampled_from(["gossipy@127.0.0.2", "gossipy@ws1"]),
                                   "creation": st.integers(-1, 2**33), "versions": st.just([1, 1]),
                                   "hidden": st.booleans()}),
                 (FrameType.CHALLENGE_REPLY, {"challenge": _hex, "digest": _hex})]
    else:
        steps = [(FrameType.STATUS, {"status": st.sampled_from(["ok", "nok"]), "version": st.just(1)}),
                 (FrameType.CHALLENGE, {"name": st.just(fuzz.ME_B.name), "creation": st.just(3), "challenge": _hex}),
                 (FrameType.CHALLENGE_ACK, {"digest": _hex})]
    data = b""
    for frame_type, fields in steps[:draw(st.integers(1, len(steps)))]:
        value = {key: draw(mostly(strategy)) for key, strategy in fields.items()}
        kind = draw(st.just(frame_type) | st.sampled_from(list(FrameType)))
        payload = dumps(value).encode()
        data += (len(payload) + 1).to_bytes(4, "big") + bytes([kind]) + payload
    if draw(st.booleans()):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(st.binary(max_size=6)) + data[at + draw(st.integers(0, 6)):]
    return role, data


@SAMPLE
@given(handshake_cases())
def test_a_handshake_fed_any_bytes_refuses_cleanly_and_sends_only_whole_frames(case) -> None:
    fuzz.handshake_target(case)


@SAMPLE
@given(st.integers(0, 4), st.integers(0, 2**32 - 1))
def test_a_real_pair_with_one_message_mutated_never_comes_up_disagreeing_on_names(index: int, seed: int) -> None:
    fuzz.handshake_pair_target((index, seed))


@SAMPLE
@given(st.builds(lambda t, e, p: dumps([t, e, p]).encode(), mostly(st.just("room:1")), mostly(st.just("shout")),
                 json_values) | spliced(st.just('["room:1","shout",{"m":1}]')))
@example(b'["room:1","shout",{"m":NaN}]')
@example(b'["room:1","shout",{"m":"\\ud800"}]')
def test_a_peer_broadcast_is_delivered_or_dropped_never_an_error(data: bytes) -> None:
    fuzz.peer_broadcast_target(data)


def test_the_fuzzer_itself_runs_every_target_without_a_crash() -> None:
    """The command-line run, small: its generators and its accounting."""
    done = subprocess.run([sys.executable, "-m", "tests.support.fuzz", "--inputs", "3000", "--workers", "1",
                           "--seed", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    for target in fuzz.TARGETS:
        assert re.search(rf"^{target} +[\d,]+ ", done.stdout, re.M), done.stdout
    assert re.search(r"^total +3,000 +0 wall", done.stdout, re.M), done.stdout
