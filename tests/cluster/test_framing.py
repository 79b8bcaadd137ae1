"""The peer stream's frames, without sockets: bytes in, frames out."""

from __future__ import annotations

import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from server.cluster.framing import (
    HANDSHAKE_MAX_FRAME,
    MAX_FRAME,
    Frame,
    FrameDecoder,
    FrameError,
    FrameType,
    decode_json,
    encode,
    encode_json,
)

frame_types = st.sampled_from(list(FrameType))
frames = st.builds(Frame, frame_types, st.binary(max_size=300))


def test_a_frame_is_a_length_a_type_and_the_payload() -> None:
    assert encode(FrameType.BROADCAST, b"abc") == b"\x00\x00\x00\x04\x11abc"
    assert encode(FrameType.TICK) == b"\x00\x00\x00\x01\x10"


def test_json_payloads_round_trip() -> None:
    [frame] = FrameDecoder().receive_data(encode_json(FrameType.MEMBERS, {"nodes": ["a@b"]}))
    assert frame.type is FrameType.MEMBERS and decode_json(frame) == {"nodes": ["a@b"]}


@pytest.mark.parametrize("payload", [b"\xff\xfe", b"{", b"[" * 100_000, b"NaN-ish"])
def test_payloads_that_are_not_json_are_a_frame_error(payload: bytes) -> None:
    with pytest.raises(FrameError):
        decode_json(Frame(FrameType.MEMBERS, payload))


def test_frames_split_at_every_byte_come_out_whole_and_in_order() -> None:
    data = b"".join(encode(FrameType.BROADCAST, str(i).encode() * i) for i in range(20))
    for cut in range(len(data)):
        decoder = FrameDecoder()
        got = decoder.receive_data(data[:cut]) + decoder.receive_data(data[cut:])
        assert [f.payload for f in got] == [str(i).encode() * i for i in range(20)]


def test_an_oversized_prefix_is_refused_before_its_body_arrives() -> None:
    decoder = FrameDecoder(max_size=HANDSHAKE_MAX_FRAME)
    with pytest.raises(FrameError, match="outside"):
        decoder.receive_data(struct.pack(">I", HANDSHAKE_MAX_FRAME + 1))
    with pytest.raises(FrameError):  # and stays refused: the stream is out of step for good
        decoder.receive_data(encode(FrameType.TICK))


def test_the_limit_is_raised_after_the_handshake() -> None:
    big = encode(FrameType.BROADCAST, b"x" * 100_000)
    with pytest.raises(FrameError):
        FrameDecoder().receive_data(big)
    decoder = FrameDecoder(max_size=MAX_FRAME)
    assert decoder.receive_data(big)[0].payload == b"x" * 100_000
    with pytest.raises(FrameError):
        decoder.receive_data(struct.pack(">I", 2**32 - 1))


def test_frames_past_max_frames_wait_for_the_next_call_and_its_limit() -> None:
    big = encode(FrameType.BROADCAST, b"x" * 10_000)
    decoder = FrameDecoder()
    assert decoder.receive_data(encode(FrameType.TICK) + big, max_frames=1) == [Frame(FrameType.TICK, b"")]
    decoder.max_size = MAX_FRAME  # the handshake is over
    assert decoder.receive_data(b"") == [Frame(FrameType.BROADCAST, b"x" * 10_000)]


def test_the_encoder_refuses_what_the_decoder_would() -> None:
    with pytest.raises(FrameError, match="exceeds"):
        encode(FrameType.BROADCAST, b"x" * MAX_FRAME)


@pytest.mark.parametrize("data", [b"\x00\x00\x00\x00", b"\x00\x00\x00\x01\x00", b"\x00\x00\x00\x01\xff"],
                         ids=["zero length", "type 0", "type 255"])
def test_empty_and_unknown_frames_are_refused(data: bytes) -> None:
    with pytest.raises(FrameError):
        FrameDecoder().receive_data(data)


@settings(max_examples=500)
@given(st.binary(max_size=2000), st.integers(min_value=1, max_value=64))
def test_random_bytes_never_crash_the_decoder(data: bytes, chunk: int) -> None:
    decoder = FrameDecoder()
    try:
        for i in range(0, len(data), chunk):
            for frame in decoder.receive_data(data[i:i + chunk]):
                assert isinstance(frame.type, FrameType) and len(frame.payload) < HANDSHAKE_MAX_FRAME
    except FrameError:
        pass


@settings(max_examples=300)
@given(st.lists(frames, max_size=20), st.lists(st.integers(min_value=0, max_value=400), max_size=20))
def test_any_frames_cut_anywhere_decode_to_themselves(sent: list[Frame], cuts: list[int]) -> None:
    data = b"".join(encode(f.type, f.payload) for f in sent)
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    decoder = FrameDecoder()
    received = [f for a, b in itertools.pairwise(points) for f in decoder.receive_data(data[a:b])]
    assert received == sent
