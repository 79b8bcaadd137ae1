"""The websocket wire format (``server/channels/rfc6455.py``) as pure code: bytes in, messages
or a ``ProtocolViolation`` out, and the server's frames as bytes. No sockets.

Client frames are built here by ``client_frame``, a small masking builder written from RFC 6455
section 5.2 and sharing no code with the module, and server frames are read back by
``parse_server_frame``, its counterpart: an independent oracle on both sides.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import tracemalloc

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.channels.rfc6455 import (
    CloseCode,
    MessageReader,
    Opcode,
    ProtocolViolation,
    accept_key,
    close_frame,
    parse_close,
    pong_frame,
    text_frame,
    unmask,
)

MASK = b"\x37\xfa\x21\x3d"
BIG = 1 << 20  # a max_size no test frame reaches unless it means to


# ---- the oracle: RFC 6455 5.2, written out ------------------------------------------------------

def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True, rsv: int = 0, mask: bytes | None = MASK,
                 length: int | None = None) -> bytes:
    """A client frame: FIN, RSV1-3, opcode; MASK bit and payload length (7 bits, or 126 then 16
    bits, or 127 then 64 bits); the masking key; the payload XORed with it. ``mask=None`` sends
    the payload unmasked; ``length`` announces another length than the payload's."""
    announced = len(payload) if length is None else length
    head = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if mask is not None else 0
    if announced <= 125:
        head.append(mask_bit | announced)
    elif announced <= 0xFFFF:
        head.append(mask_bit | 126)
        head += announced.to_bytes(2, "big")
    else:
        head.append(mask_bit | 127)
        head += announced.to_bytes(8, "big")
    if mask is None:
        return bytes(head) + payload
    return bytes(head) + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def parse_server_frame(data: bytes) -> tuple[int, bytes, bytes]:
    """(first byte, payload, what follows) of one server frame, checking that it is unmasked
    and that its length is written in the fewest bytes (RFC 6455 5.2)."""
    first, second = data[0], data[1]
    assert not second & 0x80, "a server frame must not be masked"
    length, at = second & 0x7F, 2
    if length == 126:
        length, at = int.from_bytes(data[2:4], "big"), 4
        assert length > 125, "a 16-bit length for a frame that fits in 7 bits"
    elif length == 127:
        length, at = int.from_bytes(data[2:10], "big"), 10
        assert length > 0xFFFF and not length >> 63, "a 64-bit length for a frame that fits in 16 bits"
    assert len(data) >= at + length, "a truncated frame"
    return first, data[at:at + length], data[at + length:]


def receive_in_chunks(reader: MessageReader, data: bytes, cuts: list[int]) -> list[tuple[int, str | bytes]]:
    points = sorted({0, len(data), *(min(c, len(data)) for c in cuts)})
    out: list[tuple[int, str | bytes]] = []
    for a, b in itertools.pairwise(points):
        out += reader.receive(data[a:b])
    return out


def violation(data: bytes | list[bytes], max_size: int = BIG) -> ProtocolViolation:
    """The ProtocolViolation that ``data`` (one receive, or one per item) raises."""
    reader = MessageReader(max_size)
    with pytest.raises(ProtocolViolation) as raised:
        for chunk in [data] if isinstance(data, bytes) else data:
            reader.receive(chunk)
    return raised.value


def test_the_oracle_masks_as_rfc_6455_5_7_shows() -> None:
    # RFC 6455 5.7: 'A single-frame masked text message' containing "Hello".
    assert client_frame(Opcode.TEXT, b"Hello", mask=b"\x37\xfa\x21\x3d") == \
        bytes.fromhex("818537fa213d7f9f4d5158")
    assert client_frame(Opcode.TEXT, b"Hello", mask=None) == bytes.fromhex("810548656c6c6f")


# ---- whole frames -----------------------------------------------------------------------------

@pytest.mark.parametrize("frame, expected", [
    (client_frame(Opcode.TEXT, b"Hello"), (Opcode.TEXT, "Hello")),
    (client_frame(Opcode.TEXT, b""), (Opcode.TEXT, "")),
    (client_frame(Opcode.TEXT, "héllo ✓ 💬".encode()), (Opcode.TEXT, "héllo ✓ 💬")),
    (client_frame(Opcode.BINARY, b"\x00\xff\xc3"), (Opcode.BINARY, b"\x00\xff\xc3")),  # binary is not UTF-8 checked
    (client_frame(Opcode.BINARY, b""), (Opcode.BINARY, b"")),
    (client_frame(Opcode.PING, b"are you there"), (Opcode.PING, b"are you there")),
    (client_frame(Opcode.PING), (Opcode.PING, b"")),
    (client_frame(Opcode.PONG, b"\xff"), (Opcode.PONG, b"\xff")),
    (client_frame(Opcode.CLOSE, b"\x03\xe8bye"), (Opcode.CLOSE, b"\x03\xe8bye")),
    (client_frame(Opcode.CLOSE), (Opcode.CLOSE, b"")),
    (client_frame(Opcode.TEXT, b"Hello", mask=b"\x00\x00\x00\x00"), (Opcode.TEXT, "Hello")),
])
def test_one_frame_in_one_receive(frame: bytes, expected: tuple[int, str | bytes]) -> None:
    (got,) = MessageReader(BIG).receive(frame)
    assert got == expected and type(got[1]) is type(expected[1])


def test_text_comes_out_as_str_and_everything_else_as_bytes() -> None:
    got = MessageReader(BIG).receive(b"".join(client_frame(op, b"x") for op in (Opcode.TEXT, Opcode.BINARY, Opcode.PING, Opcode.PONG)))
    assert [type(payload) for _, payload in got] == [str, bytes, bytes, bytes]


def test_many_frames_in_one_receive_come_out_in_order() -> None:
    frames = [client_frame(Opcode.TEXT, b"one"), client_frame(Opcode.PING, b"p"), client_frame(Opcode.BINARY, b"\x02"),
              client_frame(Opcode.TEXT, b"x" * 300), client_frame(Opcode.PONG), client_frame(Opcode.TEXT, b"last")]
    assert MessageReader(BIG).receive(b"".join(frames)) == \
        [(Opcode.TEXT, "one"), (Opcode.PING, b"p"), (Opcode.BINARY, b"\x02"), (Opcode.TEXT, "x" * 300), (Opcode.PONG, b""), (Opcode.TEXT, "last")]


def test_nothing_comes_out_until_a_frame_is_whole_and_a_reader_is_reused() -> None:
    reader = MessageReader(BIG)
    frame = client_frame(Opcode.TEXT, b"Hello")
    assert reader.receive(b"") == []
    assert reader.receive(frame[:-1]) == []
    assert reader.receive(frame[-1:] + frame[:1]) == [(Opcode.TEXT, "Hello")]
    assert reader.receive(frame[1:]) == [(Opcode.TEXT, "Hello")]
    assert reader.receive(frame) == [(Opcode.TEXT, "Hello")]


# A stream with a bit of everything: 7- and 16-bit lengths, a fragmented text message with a
# ping inside and a character split across its fragments, a fragmented binary message, a close.
STREAM = b"".join([
    client_frame(Opcode.TEXT, b"a"),
    client_frame(Opcode.BINARY, bytes(range(256)) + b"!", mask=b"\xff\x00\xaa\x55"),  # 257 bytes: 16-bit length
    client_frame(Opcode.TEXT, "caf".encode() + b"\xc3", fin=False),
    client_frame(Opcode.PING, b"mid-message"),
    client_frame(Opcode.CONTINUATION, b"\xa9 ", fin=False, mask=b"\x01\x01\x01\x01"),
    client_frame(Opcode.CONTINUATION, b"", fin=False),
    client_frame(Opcode.CONTINUATION, "au lait ✓".encode()),
    client_frame(Opcode.BINARY, b"\x00", fin=False),
    client_frame(Opcode.CONTINUATION, b"\x01"),
    client_frame(Opcode.CLOSE, b"\x03\xe8"),
])
STREAM_MESSAGES = [(Opcode.TEXT, "a"), (Opcode.BINARY, bytes(range(256)) + b"!"), (Opcode.PING, b"mid-message"), (Opcode.TEXT, "café au lait ✓"),
                   (Opcode.BINARY, b"\x00\x01"), (Opcode.CLOSE, b"\x03\xe8")]


def test_a_stream_in_one_receive() -> None:
    assert MessageReader(BIG).receive(STREAM) == STREAM_MESSAGES


def test_a_stream_cut_in_two_at_every_byte() -> None:
    for cut in range(len(STREAM) + 1):
        assert receive_in_chunks(MessageReader(BIG), STREAM, [cut]) == STREAM_MESSAGES, f"cut at byte {cut}"


def test_a_stream_a_byte_at_a_time() -> None:
    assert receive_in_chunks(MessageReader(BIG), STREAM, list(range(len(STREAM)))) == STREAM_MESSAGES


# ---- payload lengths: 7 bits (0-125), 16 bits (126-65535), 64 bits (65536-) --------------------

@pytest.mark.parametrize("length, header", [
    (0, 2), (1, 2), (125, 2), (126, 4), (127, 4), (0xFFFF, 4), (0x10000, 10), (200_000, 10),
])
def test_each_length_encoding(length: int, header: int) -> None:
    payload = bytes(i % 251 for i in range(length))
    frame = client_frame(Opcode.BINARY, payload)
    assert len(frame) == header + 4 + length  # the oracle picked the encoding we mean to test
    assert MessageReader(BIG).receive(frame) == [(Opcode.BINARY, payload)]
    # The header itself cut anywhere (the length's bytes arrive one receive apart), then the body.
    for cut in range(1, header + 5):
        assert receive_in_chunks(MessageReader(BIG), frame, [cut, header + 4 + length // 2]) == [(Opcode.BINARY, payload)]


def test_a_64_bit_length_frame_between_two_small_ones_in_uneven_chunks() -> None:
    big = "€".encode() * 30_000  # 90,000 bytes of text
    data = client_frame(Opcode.TEXT, b"before") + client_frame(Opcode.TEXT, big) + client_frame(Opcode.TEXT, b"after")
    expected = [(Opcode.TEXT, "before"), (Opcode.TEXT, big.decode()), (Opcode.TEXT, "after")]
    assert receive_in_chunks(MessageReader(BIG), data, list(range(0, len(data), 1460))) == expected
    assert receive_in_chunks(MessageReader(BIG), data, [13, 14, 15, 16, 17, 40_001, len(data) - 3]) == expected


# ---- fragmented messages ----------------------------------------------------------------------

def test_control_frames_between_fragments_come_out_first() -> None:
    data = b"".join([client_frame(Opcode.TEXT, b"Hel", fin=False), client_frame(Opcode.PING, b"1"),
                     client_frame(Opcode.CONTINUATION, b"lo", fin=False), client_frame(Opcode.PONG, b"2"), client_frame(Opcode.PING, b"3"),
                     client_frame(Opcode.CONTINUATION, b"!")])
    assert MessageReader(BIG).receive(data) == [(Opcode.PING, b"1"), (Opcode.PONG, b"2"), (Opcode.PING, b"3"), (Opcode.TEXT, "Hello!")]


def test_a_close_between_fragments_comes_out_at_once() -> None:
    reader = MessageReader(BIG)
    assert reader.receive(client_frame(Opcode.TEXT, b"Hel", fin=False) + client_frame(Opcode.CLOSE, b"\x03\xe8")) == \
        [(Opcode.CLOSE, b"\x03\xe8")]


@pytest.mark.parametrize("char", ["é", "€", "💬"])
def test_a_character_split_across_fragments_is_accepted(char: str) -> None:
    encoded = char.encode()
    for cut in range(1, len(encoded)):
        data = (client_frame(Opcode.TEXT, b"<" + encoded[:cut], fin=False) + client_frame(Opcode.PING)
                + client_frame(Opcode.CONTINUATION, encoded[cut:] + b">"))
        assert MessageReader(BIG).receive(data) == [(Opcode.PING, b""), (Opcode.TEXT, f"<{char}>")], f"cut after {cut} byte(s)"


def test_a_character_split_one_byte_per_fragment() -> None:
    encoded = "💬".encode()
    data = b"".join(client_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, encoded[i:i + 1], fin=i == len(encoded) - 1)
                    for i in range(len(encoded)))
    assert MessageReader(BIG).receive(data) == [(Opcode.TEXT, "💬")]


def test_the_whole_fragmented_message_is_utf8_checked() -> None:
    # Each fragment alone would be valid; together they are not (a character that never ends).
    first, last = client_frame(Opcode.TEXT, b"ok \xe2\x82", fin=False), client_frame(Opcode.CONTINUATION, b"x")
    assert violation(first + last).code == 1007
    # A character left unfinished by the final fragment.
    assert violation(client_frame(Opcode.TEXT, b"ok", fin=False) + client_frame(Opcode.CONTINUATION, b"\xf0\x9f")).code == 1007


def test_invalid_utf8_fails_at_its_fragment_not_at_the_message_end() -> None:
    """RFC 6455 8.1: fail as soon as the bytes cannot be UTF-8 (Autobahn 6.4.1, 6.4.2)."""
    reader = MessageReader(BIG)
    assert reader.receive(client_frame(Opcode.TEXT, "κόσμε".encode(), fin=False)) == []
    with pytest.raises(ProtocolViolation) as raised:
        reader.receive(client_frame(Opcode.CONTINUATION, b"\xf4\x90\x80\x80", fin=False))
    assert raised.value.code == 1007


@pytest.mark.parametrize("mask", [MASK, b"\x00\x00\x00\x00", b"\x01\x02\x03\x04"])
def test_invalid_utf8_fails_before_its_frame_is_whole(mask: bytes) -> None:
    """One frame arriving over several reads (Autobahn 6.4.3, 6.4.4): the invalid bytes fail
    it though the frame's end never came, wherever the reads cut the masking key's turn."""
    payload = "κόσμε".encode() + b"\xf4\x90\x80\x80" + "edited".encode()
    frame = client_frame(Opcode.TEXT, payload, mask=mask)
    for cut in range(7, 7 + len("κόσμε".encode())):
        reader = MessageReader(BIG)
        assert reader.receive(frame[:cut]) == []
        with pytest.raises(ProtocolViolation) as raised:
            reader.receive(frame[cut:cut + 14 - (cut - 7)])  # up to the invalid sequence, not the frame's end
        assert raised.value.code == 1007, f"cut at {cut}"


def test_a_frame_of_valid_text_arriving_a_byte_at_a_time_is_whole() -> None:
    text = "ü€💬 mixed widths " * 20
    frame = client_frame(Opcode.TEXT, text.encode())
    assert receive_in_chunks(MessageReader(BIG), frame, list(range(len(frame)))) == [(Opcode.TEXT, text)]


def test_a_fragmented_binary_message_is_joined_and_not_utf8_checked() -> None:
    data = client_frame(Opcode.BINARY, b"\xff", fin=False) + client_frame(Opcode.CONTINUATION, b"\xc3", fin=False) + \
        client_frame(Opcode.CONTINUATION, b"")
    assert MessageReader(BIG).receive(data) == [(Opcode.BINARY, b"\xff\xc3")]


def test_a_new_message_after_a_fragmented_one_ends() -> None:
    data = client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.CONTINUATION, b"b") + \
        client_frame(Opcode.BINARY, b"c", fin=False) + client_frame(Opcode.CONTINUATION, b"d") + client_frame(Opcode.TEXT, b"e")
    assert MessageReader(BIG).receive(data) == [(Opcode.TEXT, "ab"), (Opcode.BINARY, b"cd"), (Opcode.TEXT, "e")]


# ---- violations -------------------------------------------------------------------------------

EXABYTES = (1 << 62) + 5

VIOLATIONS = {
    "RSV1 set": (client_frame(Opcode.TEXT, b"x", rsv=0b100), 1002),
    "RSV2 set": (client_frame(Opcode.TEXT, b"x", rsv=0b010), 1002),
    "RSV3 set": (client_frame(Opcode.TEXT, b"x", rsv=0b001), 1002),
    "RSV1 on a ping": (client_frame(Opcode.PING, b"x", rsv=0b100), 1002),
    "all RSV on a continuation": (client_frame(Opcode.TEXT, b"x", fin=False) + client_frame(Opcode.CONTINUATION, rsv=0b111), 1002),
    "unmasked text": (client_frame(Opcode.TEXT, b"x", mask=None), 1002),
    "unmasked empty close": (client_frame(Opcode.CLOSE, mask=None), 1002),
    "unmasked ping": (client_frame(Opcode.PING, b"x", mask=None), 1002),
    **{f"opcode {op:#x}": (client_frame(op, b"x"), 1002) for op in (0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF)},
    "unknown opcode inside a fragmented message": (client_frame(Opcode.TEXT, b"x", fin=False) + client_frame(0x3), 1002),
    "a continuation with nothing to continue": (client_frame(Opcode.CONTINUATION, b"x"), 1002),
    "an unfinished continuation with nothing to continue": (client_frame(Opcode.CONTINUATION, b"x", fin=False), 1002),
    "a continuation after a finished message": (client_frame(Opcode.TEXT, b"x") + client_frame(Opcode.CONTINUATION, b"y"), 1002),
    "text inside a fragmented text": (client_frame(Opcode.TEXT, b"x", fin=False) + client_frame(Opcode.TEXT, b"y"), 1002),
    "binary inside a fragmented text": (client_frame(Opcode.TEXT, b"x", fin=False) + client_frame(Opcode.BINARY, b"y"), 1002),
    "unfinished text inside a fragmented binary":
        (client_frame(Opcode.BINARY, b"x", fin=False) + client_frame(Opcode.TEXT, b"y", fin=False), 1002),
    "a fragmented ping": (client_frame(Opcode.PING, b"x", fin=False), 1002),
    "a fragmented pong": (client_frame(Opcode.PONG, b"x", fin=False), 1002),
    "a fragmented close": (client_frame(Opcode.CLOSE, b"\x03\xe8", fin=False), 1002),
    "a 126-byte ping": (client_frame(Opcode.PING, b"x" * 126), 1002),
    "a 126-byte pong": (client_frame(Opcode.PONG, b"x" * 126), 1002),
    "a 200-byte close": (client_frame(Opcode.CLOSE, b"\x03\xe8" + b"x" * 198), 1002),
    "a ping with a 64-bit length": (client_frame(Opcode.PING, length=0x10000), 1002),
    "invalid UTF-8: a lone continuation byte": (client_frame(Opcode.TEXT, b"ok \x80"), 1007),
    "invalid UTF-8: 0xff": (client_frame(Opcode.TEXT, b"\xff"), 1007),
    "invalid UTF-8: a truncated character": (client_frame(Opcode.TEXT, b"\xc3"), 1007),
    "invalid UTF-8: an overlong slash": (client_frame(Opcode.TEXT, b"\xc0\xaf"), 1007),
    "invalid UTF-8: an overlong 3-byte form": (client_frame(Opcode.TEXT, b"\xe0\x80\xaf"), 1007),
    "invalid UTF-8: a surrogate (CESU-8)": (client_frame(Opcode.TEXT, b"\xed\xa0\x80"), 1007),
    "invalid UTF-8: past U+10FFFF": (client_frame(Opcode.TEXT, b"\xf4\x90\x80\x80"), 1007),
    "invalid UTF-8 across fragments": (client_frame(Opcode.TEXT, b"\xe2", fin=False) + client_frame(Opcode.CONTINUATION, b"x"), 1007),
}


@pytest.mark.parametrize("data, code", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_each_violation_has_its_close_code(data: bytes, code: int) -> None:
    refused = violation(data)
    assert (refused.code, refused.reason == str(refused)) == (code, True)
    assert refused.reason  # something to log and to put in the close frame


@pytest.mark.parametrize("data, code", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_each_violation_is_found_however_the_bytes_arrive(data: bytes, code: int) -> None:
    assert violation([data[i:i + 1] for i in range(len(data))]).code == code
    valid = client_frame(Opcode.TEXT, b"first") + client_frame(Opcode.PING)  # whole frames before the offence change nothing
    assert violation(valid + data).code == code


@pytest.mark.parametrize("data, code", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_messages_before_a_violation_come_with_it_and_nothing_after_it(data: bytes, code: int) -> None:
    reader = MessageReader(BIG)
    valid = client_frame(Opcode.TEXT, b"first") + client_frame(Opcode.PING, b"p")
    with pytest.raises(ProtocolViolation) as raised:
        reader.receive(valid + data + client_frame(Opcode.TEXT, b"after"))
    assert raised.value.messages == [(Opcode.TEXT, "first"), (Opcode.PING, b"p"), *violation(data).messages]
    assert reader.failed
    assert reader.receive(client_frame(Opcode.TEXT, b"later") + client_frame(Opcode.CLOSE, b"\x03\xe8")) == []


def test_the_header_decides_before_the_body_arrives() -> None:
    # Everything but the body: refused as soon as the header (with or without the masking key)
    # is in, for headers whose length field alone tells the frame is wrong.
    for data in [client_frame(Opcode.TEXT, rsv=0b100, length=100), client_frame(0x3, length=100),
                 client_frame(Opcode.CONTINUATION, length=100), client_frame(Opcode.PING, length=126),
                 client_frame(Opcode.PING, length=100, fin=False)]:
        assert violation(data).code == 1002
        assert violation(data[:-4]).code == 1002  # the header without the masking key
    assert violation(client_frame(Opcode.TEXT, mask=None, length=100)).code == 1002


def test_a_64_bit_length_announcing_exabytes_is_refused_from_the_header() -> None:
    header = client_frame(Opcode.BINARY, length=EXABYTES)  # 10 header bytes and the masking key, no body
    assert len(header) == 14
    assert violation(header).code == 1009
    assert violation(header[:10]).code == 1009  # before the masking key even
    assert violation([header[i:i + 1] for i in range(10)]).code == 1009
    # The largest length there is, and one with the top bit set (which RFC 6455 forbids).
    assert violation(client_frame(Opcode.TEXT, length=(1 << 64) - 1)).code == 1009
    assert violation(client_frame(Opcode.TEXT, length=1 << 63)).code == 1009


def test_the_header_bytes_short_of_the_length_wait_for_more() -> None:
    header = client_frame(Opcode.BINARY, length=EXABYTES)
    reader = MessageReader(BIG)
    for i in range(9):  # 2 + 8 length bytes: nothing to decide on until the 10th
        assert reader.receive(header[i:i + 1]) == []
    with pytest.raises(ProtocolViolation):
        reader.receive(header[9:10])


@pytest.mark.parametrize("length, code", [(1000, None), (1001, 1009), (126, None), (0xFFFF, 1009), (0x10000, 1009)])
def test_max_size_bounds_a_single_frame_from_its_header(length: int, code: int | None) -> None:
    header = client_frame(Opcode.BINARY, length=length)  # with its masking key
    if code is None:
        reader = MessageReader(1000)
        frame = client_frame(Opcode.BINARY, bytes(length))
        assert reader.receive(frame[:len(header)]) == []
        assert reader.receive(frame[len(header):]) == [(Opcode.BINARY, bytes(length))]
    else:
        assert violation(header, max_size=1000).code == code


def test_fragments_summing_over_max_size_are_refused_at_the_header_that_passes_it() -> None:
    reader = MessageReader(100)
    assert reader.receive(client_frame(Opcode.TEXT, b"x" * 60, fin=False)) == []
    assert reader.receive(client_frame(Opcode.PING, b"p" * 120)) == [(Opcode.PING, b"p" * 120)]  # control frames are not counted
    assert reader.receive(client_frame(Opcode.CONTINUATION, b"x" * 40, fin=False)) == []  # exactly 100 so far
    with pytest.raises(ProtocolViolation) as raised:
        reader.receive(client_frame(Opcode.CONTINUATION, length=1))  # one more byte announced, none sent
    assert raised.value.code == 1009


def test_fragments_summing_to_max_size_exactly_are_accepted() -> None:
    data = b"".join(client_frame(Opcode.TEXT if i == 0 else Opcode.CONTINUATION, b"y" * 25, fin=i == 3) for i in range(4))
    assert MessageReader(100).receive(data) == [(Opcode.TEXT, "y" * 100)]
    assert violation(data + client_frame(Opcode.TEXT, b"z" * 101), max_size=100).code == 1009


def test_endless_empty_continuation_frames_hold_no_memory() -> None:
    """max_size counts bytes; a fragment container that grew per frame would let 6-byte empty
    continuations grow a socket's memory without bound."""
    reader = MessageReader(64 * 1024)
    reader.receive(client_frame(Opcode.TEXT, b"start", fin=False))
    empty = client_frame(Opcode.CONTINUATION, b"", fin=False) * 1000
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for _ in range(100):
            assert reader.receive(empty) == []
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 16 * 1024, grown  # a list entry per frame would be ~800 KB
    assert reader.receive(client_frame(Opcode.CONTINUATION, b" end")) == [(Opcode.TEXT, "start end")]


def test_many_small_messages_are_not_summed() -> None:
    data = client_frame(Opcode.TEXT, b"z" * 80) * 10
    assert MessageReader(100).receive(data) == [(Opcode.TEXT, "z" * 80)] * 10


def test_control_frames_are_bounded_at_125_bytes_not_by_max_size() -> None:
    assert MessageReader(10).receive(client_frame(Opcode.PING, b"p" * 125)) == [(Opcode.PING, b"p" * 125)]


# ---- close frames -------------------------------------------------------------------------------

def close_payload(code: int, reason: bytes = b"") -> bytes:
    return code.to_bytes(2, "big") + reason


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
                                  3000, 3999, 4000, 4999])
def test_parse_close_takes_the_codes_a_peer_may_send(code: int) -> None:
    assert parse_close(close_payload(code)) == (code, "")
    assert parse_close(close_payload(code, "au revoir ✓".encode())) == (code, "au revoir ✓")


@pytest.mark.parametrize("code", [0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 0xFFFF])
def test_parse_close_refuses_reserved_and_invalid_codes(code: int) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        parse_close(close_payload(code, b"why"))
    assert raised.value.code == 1002


def test_parse_close_of_nothing_is_1005() -> None:
    assert parse_close(b"") == (1005, "")


def test_parse_close_of_one_byte_is_a_protocol_error() -> None:
    with pytest.raises(ProtocolViolation) as raised:
        parse_close(b"\x03")
    assert raised.value.code == 1002


@pytest.mark.parametrize("reason", [b"\xff", b"bye \xc3", b"\xed\xa0\x80", b"\xc0\xaf"])
def test_parse_close_refuses_a_reason_that_is_not_utf8(reason: bytes) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        parse_close(close_payload(1000, reason))
    assert raised.value.code == 1007


def test_a_client_close_frame_through_the_reader_then_parse_close() -> None:
    (got,) = MessageReader(BIG).receive(client_frame(Opcode.CLOSE, close_payload(4001, "room full".encode())))
    assert got[0] == Opcode.CLOSE and parse_close(got[1]) == (4001, "room full")


# ---- the handshake --------------------------------------------------------------------------------

def test_accept_key_is_rfc_6455s_example() -> None:
    # RFC 6455 1.3 (and 4.2.2): this key's accept value is "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".
    assert accept_key("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_is_sha1_of_key_and_guid() -> None:
    key = base64.b64encode(bytes(range(16))).decode()
    expected = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert accept_key(key) == expected.decode()


# ---- server frames ------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 125, 126, 127, 0xFFFF, 0x10000, 100_000])
def test_text_frame_at_each_length(length: int) -> None:
    text = ("ab✓" * length)[:length]  # ASCII and three-byte characters: the length is in bytes
    encoded = text.encode()
    first, payload, rest = parse_server_frame(text_frame(text))
    assert (first, payload, rest) == (0x80 | Opcode.TEXT, encoded, b"")


@pytest.mark.parametrize("length", [0, 1, 125])
def test_pong_frame_echoes_the_ping(length: int) -> None:
    data = bytes(range(length))
    assert parse_server_frame(pong_frame(data)) == (0x80 | Opcode.PONG, data, b"")


@pytest.mark.parametrize("code, reason", [(1000, ""), (1001, "node shutting down"), (1009, "too big ✓"), (4000, "x")])
def test_close_frame_round_trips_through_parse_close(code: int, reason: str) -> None:
    first, payload, rest = parse_server_frame(close_frame(code, reason))
    assert (first, rest) == (0x80 | Opcode.CLOSE, b"")
    assert parse_close(payload) == (code, reason)


def test_close_frame_truncates_a_long_reason_to_fit_125_bytes() -> None:
    first, payload, rest = parse_server_frame(close_frame(1008, "x" * 500))
    assert (first, len(payload), rest) == (0x80 | Opcode.CLOSE, 125, b"")
    assert parse_close(payload) == (1008, "x" * 123)


# Byte 123 of each reason falls inside a character: 2-byte characters end at every even byte,
# "ab" and 3-byte ones at 122 and 125, "a" and 4-byte ones at 121 and 125.
@pytest.mark.parametrize("reason", ["é" * 100, "ab" + "✓" * 50, "a" + "💬" * 40],
                         ids=["2-byte", "3-byte", "4-byte"])
def test_close_frame_truncation_never_cuts_a_character(reason: str) -> None:
    _, payload, _ = parse_server_frame(close_frame(1008, reason))
    assert len(payload) <= 125
    code, got = parse_close(payload)  # raises ProtocolViolation(1007) on the cut character
    assert code == 1008 and reason.startswith(got) and len(got.encode()) >= 120


def test_close_frame_truncation_on_a_character_boundary_keeps_123_bytes() -> None:
    reason = "a" + "é" * 100  # a boundary at every odd byte, 123 among them
    _, payload, _ = parse_server_frame(close_frame(1008, reason))
    assert parse_close(payload) == (1008, reason.encode()[:123].decode())


# ---- unmask -------------------------------------------------------------------------------------

@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 5, 7, 8, 9, 1000, 1001])
def test_unmask_xors_with_the_repeating_key(length: int) -> None:
    payload = bytes((i * 7 + 3) % 256 for i in range(length))
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    assert unmask(MASK, masked) == payload
    assert unmask(MASK, payload) == masked
    assert unmask(b"\x00\x00\x00\x00", payload) == payload
    assert unmask(b"\x00\x00\x00\x00", b"\x00" * length) == b"\x00" * length  # leading zero bytes are kept


# ---- property: anything framed any way comes out whole ---------------------------------------

# Text without surrogates: a lone surrogate has no UTF-8 form, so no client can send one.
messages = st.one_of(
    st.tuples(st.just(Opcode.TEXT), st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)),
    st.tuples(st.just(Opcode.TEXT), st.text(st.characters(min_codepoint=0x80, blacklist_categories=("Cs",)),
                                     max_size=60)),  # multi-byte only
    st.tuples(st.just(Opcode.BINARY), st.binary(max_size=40)),
    st.tuples(st.just(Opcode.BINARY), st.binary(min_size=126, max_size=400)),  # 16-bit lengths
    st.tuples(st.sampled_from([Opcode.PING, Opcode.PONG]), st.binary(max_size=125)),
)
masks = st.binary(min_size=4, max_size=4)


@st.composite
def framed_streams(draw: st.DrawFn) -> tuple[list[tuple[int, str | bytes]], bytes, list[int]]:
    """Messages, their frames (data messages cut into fragments at any byte, pings and pongs
    sometimes between the fragments, every frame its own mask) and where the stream is cut."""
    expected: list[tuple[int, str | bytes]] = []
    frames: list[bytes] = []
    for opcode, value in draw(st.lists(messages, max_size=8)):
        payload = value.encode() if isinstance(value, str) else value
        if opcode not in (Opcode.TEXT, Opcode.BINARY):
            frames.append(client_frame(opcode, payload, mask=draw(masks)))
            expected.append((opcode, value))
            continue
        cuts = sorted(set(draw(st.lists(st.integers(0, len(payload)), max_size=4))))
        pieces = [payload[a:b] for a, b in itertools.pairwise([0, *cuts, len(payload)])]
        interleaved: list[tuple[int, bytes]] = []
        for i, piece in enumerate(pieces):
            frames.append(client_frame(opcode if i == 0 else Opcode.CONTINUATION, piece, fin=i == len(pieces) - 1,
                                       mask=draw(masks)))
            if i < len(pieces) - 1 and draw(st.integers(0, 3)) == 0:
                control = (draw(st.sampled_from([Opcode.PING, Opcode.PONG])), draw(st.binary(max_size=125)))
                frames.append(client_frame(*control, mask=draw(masks)))
                interleaved.append(control)
        expected += interleaved
        expected.append((opcode, value))
    data = b"".join(frames)
    return expected, data, draw(st.lists(st.integers(0, len(data)), max_size=12))


@given(framed_streams())
def test_any_messages_framed_any_way_and_cut_anywhere_come_out_identical(case) -> None:
    expected, data, cuts = case
    assert receive_in_chunks(MessageReader(BIG), data, cuts) == expected


def test_the_module_names_the_rfcs_opcodes_and_codes() -> None:
    assert {opcode.name: opcode.value for opcode in Opcode} == {
        "CONTINUATION": 0x0, "TEXT": 0x1, "BINARY": 0x2, "CLOSE": 0x8, "PING": 0x9, "PONG": 0xA}
    assert {code.name: code.value for code in CloseCode} == {
        "NORMAL": 1000, "GOING_AWAY": 1001, "PROTOCOL_ERROR": 1002, "UNSUPPORTED": 1003, "NO_STATUS": 1005,
        "INVALID_DATA": 1007, "POLICY": 1008, "TOO_BIG": 1009, "MANDATORY_EXTENSION": 1010, "SERVER_ERROR": 1011,
        "SERVICE_RESTART": 1012, "TRY_AGAIN_LATER": 1013, "BAD_GATEWAY": 1014}
