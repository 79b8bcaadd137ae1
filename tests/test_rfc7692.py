"""permessage-deflate (``server/channels/rfc7692.py``) as pure code: the negotiation's table,
the server's compressed frames read back by plain zlib as a client would, and the inflating
of client messages, alone and through ``MessageReader``. No sockets."""

from __future__ import annotations

import json
import os
import random
import time
import tracemalloc
import zlib

import pytest

from bench.deflate import chat_lines
from server.channels.rfc6455 import CloseCode, MessageReader, Opcode, ProtocolViolation, binary_frame, text_frame
from server.channels.rfc7692 import (
    CONTEXT_WINDOW_BITS,
    MIN_COMPRESSED,
    Agreement,
    ContextDeflater,
    Deflater,
    Inflater,
    deflater,
    negotiate,
)

from test_rfc6455 import client_frame, parse_server_frame

TAIL = b"\x00\x00\xff\xff"
BASE = "permessage-deflate; server_no_context_takeover"


def history(first: int, count: int) -> str:
    """A room's history as a channel pushes it: ``count`` messages, numbered from ``first``."""
    return json.dumps([None, None, "room:lobby", "history", {"messages": [
        {"name": f"user{i}", "message": f"message number {i} in the room, about the weather", "at": 1732700000 + i}
        for i in range(first, first + count)]}], separators=(",", ":"))


CHAT = history(0, 10)


# ---- negotiation ------------------------------------------------------------------------------

@pytest.mark.parametrize(("header", "expected"), [
    ("permessage-deflate", Agreement(BASE, 15, True, False)),
    ("permessage-deflate; client_max_window_bits", Agreement(BASE, 15, True, False)),  # Chrome's offer
    ("permessage-deflate; client_max_window_bits=10", Agreement(BASE, 15, True, False)),
    ("permessage-deflate; server_no_context_takeover", Agreement(BASE, 15, True, False)),
    ("permessage-deflate; client_no_context_takeover", Agreement(BASE + "; client_no_context_takeover", 15, False, False)),
    ("permessage-deflate; server_max_window_bits=10", Agreement(BASE + "; server_max_window_bits=10", 10, True, False)),
    ("permessage-deflate; server_max_window_bits=8", Agreement(BASE + "; server_max_window_bits=8", 8, True, False)),
    ('permessage-deflate; server_max_window_bits="9"', Agreement(BASE + "; server_max_window_bits=9", 9, True, False)),
    ("PerMessage-Deflate ;  Client_No_Context_Takeover ", Agreement(BASE + "; client_no_context_takeover", 15, False, False)),
    ("x-webkit-deflate-frame, permessage-deflate", Agreement(BASE, 15, True, False)),
    # a declined offer, then one that is accepted: the first acceptable one wins
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover",
     Agreement(BASE + "; client_no_context_takeover", 15, False, False)),
    ('permessage-deflate; foo="a,b", permessage-deflate', Agreement(BASE, 15, True, False)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_accepted_offers(header: str, expected: Agreement) -> None:
    assert negotiate(header, context_takeover=False) == expected


@pytest.mark.parametrize(("header", "expected"), [
    ("permessage-deflate", Agreement("permessage-deflate", 15, True, True)),
    ("permessage-deflate; client_max_window_bits", Agreement("permessage-deflate", 15, True, True)),
    ("permessage-deflate; client_no_context_takeover",
     Agreement("permessage-deflate; client_no_context_takeover", 15, False, True)),
    ("permessage-deflate; server_max_window_bits=10",
     Agreement("permessage-deflate; server_max_window_bits=10", 10, True, True)),
    # a client that asks the server to forget is obeyed (RFC 7692 7.1.1.1): each message alone
    ("permessage-deflate; server_no_context_takeover", Agreement(BASE, 15, True, False)),
    ("permessage-deflate; server_max_window_bits=9; server_no_context_takeover",
     Agreement(BASE + "; server_max_window_bits=9", 9, True, False)),
    ("permessage-deflate; server_max_window_bits=7, permessage-deflate", Agreement("permessage-deflate", 15, True, True)),
], ids=lambda v: v if isinstance(v, str) else "")
def test_accepted_offers_with_context_takeover(header: str, expected: Agreement) -> None:
    assert negotiate(header, context_takeover=True) == expected


@pytest.mark.parametrize("header", [
    "", "x-webkit-deflate-frame", "permessage-deflate-x",
    "permessage-deflate; server_max_window_bits",  # a value is required
    "permessage-deflate; server_max_window_bits=7", "permessage-deflate; server_max_window_bits=16",
    "permessage-deflate; server_max_window_bits=08", "permessage-deflate; server_max_window_bits=1 0",
    "permessage-deflate; client_max_window_bits=16", "permessage-deflate; client_max_window_bits=",
    "permessage-deflate; server_no_context_takeover=1", "permessage-deflate; client_no_context_takeover=true",
    "permessage-deflate; client_no_context_takeover; client_no_context_takeover",  # repeated
    "permessage-deflate; mem_level=8",  # unknown
    'permessage-deflate; server_max_window_bits="1"0', "permessage-deflate; server_max_window_bits=\"10",
    "permessage-deflate;; =10", "permessage-deflate; a b",
])
def test_declined_offers(header: str) -> None:
    assert negotiate(header, context_takeover=False) is None
    assert negotiate(header, context_takeover=True) is None


# ---- the server's frames, read as a client reads them -------------------------------------------

def client_inflate(frame: bytes, window_bits: int = 15) -> tuple[int, bytes]:
    """(first byte, payload) of a server frame, inflated with a fresh context when RSV1 is set,
    as a client must with server_no_context_takeover."""
    first, payload, rest = parse_server_frame(frame)
    assert rest == b""
    if first & 0x40:
        payload = zlib.decompressobj(-window_bits).decompress(payload + TAIL)
    return first, payload


def test_a_long_message_is_compressed_and_reads_back() -> None:
    frame = deflater(15).text_frame(CHAT)
    first, payload = client_inflate(frame)
    assert first == 0x80 | 0x40 | Opcode.TEXT and payload == CHAT.encode()
    assert len(frame) * 4 < len(CHAT)


def test_each_message_is_compressed_alone_so_a_broadcast_is_the_same_bytes_every_time() -> None:
    shared = deflater(15)
    assert shared is deflater(15) and shared is not deflater(9)
    frames = [shared.text_frame(CHAT) for _ in range(3)]
    assert frames[0] == frames[1] == frames[2]


def test_binary_messages_too() -> None:
    data = bytes(range(256)) * 8
    first, payload = client_inflate(deflater(15).binary_frame(data))
    assert first == 0x80 | 0x40 | Opcode.BINARY and payload == data


@pytest.mark.parametrize("text", ["x" * (MIN_COMPRESSED - 1), "short", ""])
def test_a_short_message_goes_uncompressed(text: str) -> None:
    assert client_inflate(deflater(15).text_frame(text)) == (0x80 | Opcode.TEXT, text.encode())


def test_a_message_that_would_not_shrink_goes_uncompressed() -> None:
    data = os.urandom(4096)
    assert client_inflate(deflater(15).binary_frame(data)) == (0x80 | Opcode.BINARY, data)


@pytest.mark.parametrize("window_bits", range(8, 16))
def test_the_window_a_client_asked_for_is_kept(window_bits: int) -> None:
    """A client inflating with exactly the window it asked for reads every message; 8 bits
    (256 bytes), which zlib cannot compress with, included."""
    text = "".join(f"{i % 97:02d}{'abcdefghij'[i % 10] * (i % 7)}|" for i in range(3000))  # far and near repeats
    assert client_inflate(Deflater(window_bits).text_frame(text), window_bits)[1] == text.encode()


def test_a_small_window_costs_about_what_the_default_does() -> None:
    """A client may ask for a window as small as 9 bits (8 is compressed with 9). zlib slides its
    hash table each time the window fills: with the table sized for its default 15-bit window,
    a 9-bit window made a chat history many times dearer to compress (bench/README.md)."""
    histories = [history(n, 300) for n in range(100)]

    def cpu(shared: Deflater) -> float:
        best = float("inf")
        for _ in range(5):
            started = time.process_time()
            for history in histories:
                shared.text_frame(history)
            best = min(best, time.process_time() - started)
        return best

    assert cpu(Deflater(9)) < 5 * cpu(Deflater(15))


# ---- a compressor per socket (context takeover) ---------------------------------------------------

def client_reads(frames: list[bytes], window_bits: int = 15) -> list[bytes]:
    """What a client that agreed on the server's context takeover reads from ``frames``: one
    decompressor for every compressed message, in order; a plain one as it is."""
    inflater = zlib.decompressobj(-window_bits)
    messages = []
    for frame in frames:
        first, payload, rest = parse_server_frame(frame)
        assert rest == b"" and first & 0x80
        messages.append(inflater.decompress(payload + TAIL) if first & 0x40 else payload)
    return messages


def test_every_message_refers_back_and_reads_back_in_order() -> None:
    """Chat lines, short replies and an empty message, each compressed (RSV1) but the empty
    one: read back by one decompressor kept across them, and a chat line ~3x smaller."""
    lines = chat_lines(200)
    texts = [text for n, line in enumerate(lines) for text in
             (line, f'[null,"{n}","phoenix","phx_reply",{{"status":"ok","response":{{}}}}]')] + [""]
    compressor = ContextDeflater(15)
    frames = [compressor.compress_frame(text_frame(text)) for text in texts]
    assert client_reads(frames) == [text.encode() for text in texts]
    assert [bool(frame[0] & 0x40) for frame in frames] == [True] * (len(texts) - 1) + [False]
    chat = frames[2::2][-100:]
    assert sum(len(text_frame(text)) for text in lines[-100:]) > 3 * sum(map(len, chat))


def test_one_plain_frame_serves_every_socket_whatever_each_sent_before() -> None:
    """Broadcasts prepared once, plain, and compressed by each socket's own compressor, between
    replies only one socket gets (a: every other broadcast, b: every third, c: none): each
    client reads its own sequence."""
    lines = chat_lines(50)
    broadcasts = [text_frame(line) for line in lines]
    sockets = {every: (ContextDeflater(15), [], []) for every in (2, 3, 0)}
    for n, (line, broadcast) in enumerate(zip(lines, broadcasts, strict=True)):
        for every, (compressor, frames, texts) in sockets.items():
            if every and n % every == 0:
                reply = f'[null,"{n}","room:lobby","phx_reply",{{"status":"ok","response":{{"every":{every}}}}}]'
                frames.append(compressor.compress_frame(text_frame(reply)))
                texts.append(reply.encode())
            frames.append(compressor.compress_frame(broadcast))
            texts.append(line.encode())
    for _, frames, texts in sockets.values():
        assert client_reads(frames) == texts
    assert len({b"".join(frames) for _, frames, _ in sockets.values()}) == 3


def test_binary_and_long_messages_too() -> None:
    compressor = ContextDeflater(15)
    data = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length
    frames = [compressor.compress_frame(binary_frame(data)), compressor.compress_frame(text_frame(CHAT)),
              compressor.compress_frame(binary_frame(data))]
    assert frames[0][0] == 0x80 | 0x40 | Opcode.BINARY and frames[1][0] == 0x80 | 0x40 | Opcode.TEXT
    assert client_reads(frames) == [data, CHAT.encode(), data]


def test_a_message_that_would_not_shrink_is_compressed_all_the_same() -> None:
    """Sent plain, it would leave the client's context behind the compressor's. It grows by
    5 bytes per block of 256 symbols (memLevel 2): ~2 %."""
    compressor = ContextDeflater(15)
    data = os.urandom(4096)
    frames = [compressor.compress_frame(binary_frame(data)), compressor.compress_frame(text_frame(CHAT))]
    assert frames[0][0] & 0x40 and len(frames[0]) < len(data) * 1.03
    assert client_reads(frames) == [data, CHAT.encode()]


@pytest.mark.parametrize("window_bits", range(8, 16))
def test_a_client_keeping_only_the_window_it_asked_for_reads_every_message(window_bits: int) -> None:
    """References never reach further back than the window agreed on: a long conversation
    read with exactly that window; 8 bits included, compressed with 9 (zlib's smallest)."""
    rng = random.Random(window_bits)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randrange(3, 12))) for _ in range(400)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 200))) for _ in range(150)]
    compressor = ContextDeflater(window_bits)
    frames = [compressor.compress_frame(text_frame(text)) for text in texts]
    assert client_reads(frames, window_bits) == [text.encode() for text in texts]
    if window_bits > CONTEXT_WINDOW_BITS:  # a compressor may use less window than agreed
        with pytest.raises(zlib.error):
            client_reads(frames, CONTEXT_WINDOW_BITS - 1)


# ---- inflating what a client sends --------------------------------------------------------------

def client_deflate(messages: list[bytes], context_takeover: bool) -> list[bytes]:
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    out = []
    for message in messages:
        if not context_takeover:
            compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        compressed = compressor.compress(message) + compressor.flush(zlib.Z_SYNC_FLUSH)
        assert compressed.endswith(TAIL)
        out.append(compressed[:-4])
    return out


@pytest.mark.parametrize("context_takeover", [True, False])
def test_messages_inflate_with_the_context_the_client_agreed_on(context_takeover: bool) -> None:
    messages = [CHAT.encode(), CHAT.encode(), b"", CHAT.encode()[:100]]
    inflater = Inflater(context_takeover)
    assert [inflater.inflate(m, 1 << 20) for m in client_deflate(messages, context_takeover)] == messages


def test_a_long_conversation_keeps_exactly_the_window() -> None:
    """Past 32 KB of history, what the client may still refer to is its last 32 KB: messages
    of every size, one larger than the window, each repeating parts of earlier ones."""
    rng = random.Random(7)
    words = [os.urandom(rng.randrange(3, 40)) for _ in range(300)]
    messages = [b"".join(rng.choice(words) for _ in range(rng.choice((1, 10, 100, 2000)))) for _ in range(60)]
    assert sum(map(len, messages)) > 4 * 32768 and max(map(len, messages)) > 32768
    inflater = Inflater(True)
    assert [inflater.inflate(m, 1 << 22) for m in client_deflate(messages, context_takeover=True)] == messages


def test_context_takeover_needs_the_kept_context() -> None:
    """The second message refers back into the first: only a kept context reads it."""
    first, second = client_deflate([CHAT.encode(), CHAT.encode()], context_takeover=True)
    assert len(second) < 20
    with pytest.raises(ProtocolViolation) as raised:
        Inflater(False).inflate(second, 1 << 20)
    assert raised.value.code == CloseCode.INVALID_DATA


def test_a_bomb_is_refused_at_max_size_without_inflating_the_rest() -> None:
    (bomb,) = client_deflate([bytes(200 * 1024 * 1024)], context_takeover=False)
    assert len(bomb) < 250_000
    tracemalloc.start()
    try:
        with pytest.raises(ProtocolViolation) as raised:
            Inflater(True).inflate(bomb, 64 * 1024)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert raised.value.code == CloseCode.TOO_BIG == 1009
    assert peak < 2 * len(bomb) + 200 * 1024  # the compressed bytes and a little output, never 200 MB


def test_exactly_max_size_once_inflated_is_accepted() -> None:
    (message,) = client_deflate([b"y" * 1000], context_takeover=False)
    assert Inflater(False).inflate(message, 1000) == b"y" * 1000
    with pytest.raises(ProtocolViolation):
        Inflater(False).inflate(message, 999)


# ---- through the reader ---------------------------------------------------------------------------

def reader() -> MessageReader:
    return MessageReader(1 << 20, Inflater(True).inflate)


def test_the_reader_inflates_a_message_whose_first_frame_has_rsv1() -> None:
    first, second = client_deflate([CHAT.encode(), CHAT.encode()], context_takeover=True)
    data = (client_frame(Opcode.TEXT, first, rsv=4) + client_frame(Opcode.TEXT, b"plain")
            + client_frame(Opcode.BINARY, second[:3], fin=False, rsv=4) + client_frame(Opcode.PING, b"p")
            + client_frame(Opcode.CONTINUATION, second[3:]))
    assert reader().receive(data) == [(Opcode.TEXT, CHAT), (Opcode.TEXT, "plain"), (Opcode.PING, b"p"),
                                      (Opcode.BINARY, CHAT.encode())]


@pytest.mark.parametrize("data", [
    client_frame(Opcode.TEXT, b"x", fin=False) + client_frame(Opcode.CONTINUATION, b"x", rsv=4),
    client_frame(Opcode.PING, b"x", rsv=4),
    client_frame(Opcode.TEXT, b"x", rsv=2),
    client_frame(Opcode.TEXT, b"x", rsv=6),
], ids=["rsv1-on-a-continuation", "rsv1-on-a-ping", "rsv2", "rsv1-and-rsv2"])
def test_other_reserved_bits_are_still_a_protocol_error(data: bytes) -> None:
    with pytest.raises(ProtocolViolation) as raised:
        reader().receive(data)
    assert raised.value.code == CloseCode.PROTOCOL_ERROR


def test_an_inflated_text_message_is_utf8_checked() -> None:
    (bad,) = client_deflate([b"ok \xc3\x28"], context_takeover=False)
    with pytest.raises(ProtocolViolation) as raised:
        reader().receive(client_frame(Opcode.TEXT, bad, rsv=4))
    assert raised.value.code == CloseCode.INVALID_DATA
