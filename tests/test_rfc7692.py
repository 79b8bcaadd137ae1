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
from collections.abc import Callable

import pytest

from bench.deflate import chat_lines
from server.channels.rfc6455 import CloseCode, MessageReader, Opcode, ProtocolViolation, binary_frame, text_frame
from server.channels.rfc7692 import (
    CONTEXT_WINDOW_BITS,
    GROUP_MIN_HOLDERS,
    MIN_COMPRESSED,
    SMALL_CONTEXTS_KEPT,
    Agreement,
    ContextDeflater,
    DeflateContext,
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


# ---- compressing with context takeover: a context shared by the sockets sent the same -----------

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


def heartbeat_reply(n: int) -> str:
    """A socket's own short message."""
    return f'[null,"{n}","phoenix","phx_reply",{{"status":"ok","response":{{}}}}]'


class Client:
    """A socket compressing with context (its ``ContextDeflater``) and its client: one
    decompressor kept for the whole run, which inflates only the frames with RSV1 set, as a
    browser does. Every frame is read as it is sent, and must read back as what was sent."""

    def __init__(self, window_bits: int = 15, kind: str = "v2") -> None:
        self.window_bits = window_bits
        self.kind = kind  # which of a broadcast's frames it gets (a serializer's, say)
        self.deflater = ContextDeflater(window_bits)
        self.inflater = zlib.decompressobj(-window_bits)
        self.messages = 0

    def reads(self, frame: bytes, text: str) -> bytes:
        first, payload, rest = parse_server_frame(frame)
        assert rest == b"" and first & 0x80
        read = self.inflater.decompress(payload + TAIL) if first & 0x40 else payload
        assert read == text.encode(), f"message {self.messages} to a {self.window_bits}-bit client"
        self.messages += 1
        return frame

    def own(self, text: str) -> bytes:
        return self.reads(self.deflater.compress_frame(text_frame(text)), text)


def broadcast(clients: list[Client], texts: dict[str, str], in_the_middle: Callable[[], object] | None = None,
              ) -> list[bytes]:
    """One broadcast, as a node's fan-out makes it (pubsub.local_broadcast, then each socket's
    PhoenixSocket.deliver): a frame prepared once per kind, one cache for every client; the
    frame each client was sent. ``in_the_middle`` runs after the first client's delivery."""
    frames = {kind: text_frame(text) for kind, text in texts.items()}
    cache: dict[object, object] = {}
    sent = []
    for n, client in enumerate(clients):
        sent.append(client.reads(client.deflater.compress_broadcast(frames[client.kind], cache), texts[client.kind]))
        if n == 0 and in_the_middle is not None:
            in_the_middle()
    return sent


def plain_bytes(texts: list[str]) -> int:
    return sum(len(text_frame(text)) for text in texts)


def compressions(clients: list[Client], before: dict[int, tuple[DeflateContext, int]]) -> tuple[int, int]:
    """A broadcast's compressions, and the bound they keep (``ContextDeflater``): each
    compression made a new context, and every client sent a compressed frame moved to one;
    ``before``: each client's context and its holders before the broadcast."""
    made = len({id(client.deflater.context) for client in clients})
    groups = {id(context) for context, holders in before.values() if holders >= GROUP_MIN_HOLDERS}
    return made, len(groups) + SMALL_CONTEXTS_KEPT + 1


def contexts_of(clients: list[Client]) -> dict[int, tuple[DeflateContext, int]]:
    return {id(client): (client.deflater.context, client.deflater.context.holders) for client in clients}


def test_a_room_shares_one_context_and_its_chat_lines_shrink_3x() -> None:
    """A room that was sent the same since it joined holds one context (its holders: the room),
    whatever its size; heartbeats' replies in between go plain and leave it as it was."""
    lines = chat_lines(300)
    room = [Client() for _ in range(50)]
    first_sent = []
    for n, line in enumerate(lines):
        first_sent.append(broadcast(room, {"v2": line})[0])
        assert room[n % len(room)].own(heartbeat_reply(n))[0] == 0x80 | Opcode.TEXT
    context = room[0].deflater.context
    assert all(client.deflater.context is context for client in room) and context.holders == len(room)
    assert plain_bytes(lines[-200:]) > 3 * sum(map(len, first_sent[-200:]))
    for client in room:
        client.deflater.release()
    assert context.holders == 0


def test_broadcasts_from_random_senders_cost_a_compression_per_6_deliveries_and_shrink_3x() -> None:
    """Every message a broadcast_from in a room of 100: its sender, left out, keeps the context
    the others left. Small contexts take turns keeping theirs; the others are sent the message
    compressed alone and share a context again, so they do not grow in number."""
    rng = random.Random(3)
    lines = chat_lines(400)
    room = [Client() for _ in range(100)]
    sent = made = 0
    for line in lines:
        sender = rng.randrange(len(room))
        receivers = room[:sender] + room[sender + 1:]
        before = contexts_of(receivers)
        sent += sum(map(len, broadcast(receivers, {"v2": line})))
        count, bound = compressions(receivers, before)
        assert count <= bound
        made += count
    assert len(lines) * (len(room) - 1) > 6 * made
    assert plain_bytes(lines) * (len(room) - 1) > 2.9 * sent
    for client in room:
        client.deflater.release()


@pytest.mark.parametrize("size", [2, 3])
def test_in_a_small_room_with_broadcast_from_each_keeps_its_own_context(size: int) -> None:
    """Each is sent the others' lines: each holds its context alone and is compressed into (no
    copy), so every line shrinks with the whole context, as in a user's own topic."""
    lines = chat_lines(300)
    room = [Client() for _ in range(size)]
    sent: list[list[bytes]] = [[] for _ in room]
    for n, line in enumerate(lines):
        receivers = [k for k in range(size) if k != n % size]
        for k, frame in zip(receivers, broadcast([room[k] for k in receivers], {"v2": line}), strict=True):
            sent[k].append(frame)
    assert [client.deflater.context.holders for client in room] == [1] * size
    for k, client in enumerate(room):
        heard = [line for n, line in enumerate(lines) if n % size != k]
        assert plain_bytes(heard[-100:]) > 3 * sum(map(len, sent[k][-100:]))
        client.deflater.release()


def test_a_socket_s_own_message_in_the_middle_of_a_broadcast_stays_its_own() -> None:
    """An app's hook may push to a socket during a broadcast's delivery (a handle_out that
    crashes, and the terminate that pushes): the context it was just moved to, which the
    broadcast's cache offers the others, must not carry that push to them; nor may a socket
    still to be delivered to take the cache's result once it pushed."""
    lines = chat_lines(4)
    room = [Client() for _ in range(4)]
    broadcast(room, {"v2": lines[0]})
    long_push = history(0, 5)
    assert len(long_push) >= MIN_COMPRESSED
    # The first receiver, alone on the cache's result when it pushes, compresses into it.
    broadcast(room, {"v2": lines[1]}, in_the_middle=lambda: room[0].own(long_push))
    # A receiver still to come pushes: it leaves the context the others are moving from.
    broadcast(room, {"v2": lines[2]}, in_the_middle=lambda: room[3].own(long_push))
    broadcast(room, {"v2": lines[3]})
    assert [client.messages for client in room] == [5, 4, 4, 5]
    for client in room:
        client.deflater.release()


def test_an_empty_broadcast_goes_plain_and_leaves_the_context_as_it_was() -> None:
    room = [Client() for _ in range(3)]
    broadcast(room, {"v2": CHAT})
    context = room[0].deflater.context
    assert broadcast(room, {"v2": ""}) == [text_frame("")] * len(room)
    assert all(client.deflater.context is context for client in room)
    broadcast(room, {"v2": CHAT})
    for client in room:
        client.deflater.release()


def test_own_messages_binary_and_long_ones_too() -> None:
    deflater = ContextDeflater(15)
    data = bytes(range(256)) * 300  # 76,800 bytes: a 64-bit length
    frames = [deflater.compress_frame(binary_frame(data)), deflater.compress_frame(text_frame(CHAT)),
              deflater.compress_frame(binary_frame(data))]
    assert frames[0][0] == 0x80 | 0x40 | Opcode.BINARY and frames[1][0] == 0x80 | 0x40 | Opcode.TEXT
    assert client_reads(frames) == [data, CHAT.encode(), data]
    deflater.release()


def test_a_message_that_would_not_shrink_is_compressed_all_the_same() -> None:
    """Sent plain, it would cost nothing here, but a long message of one's own is compressed
    whatever it is. It grows by 5 bytes per block of 256 symbols (memLevel 2): ~2 %."""
    deflater = ContextDeflater(15)
    data = os.urandom(4096)
    frames = [deflater.compress_frame(binary_frame(data)), deflater.compress_frame(text_frame(CHAT))]
    assert frames[0][0] & 0x40 and len(frames[0]) < len(data) * 1.03
    assert client_reads(frames) == [data, CHAT.encode()]
    deflater.release()


@pytest.mark.parametrize("window_bits", range(8, 16))
def test_a_client_keeping_only_the_window_it_asked_for_reads_every_message(window_bits: int) -> None:
    """References never reach further back than the window agreed on: a long conversation of
    broadcasts and messages of one's own, read with exactly that window; 8 bits included,
    compressed with 9 (zlib's smallest)."""
    rng = random.Random(window_bits)
    words = ["".join(rng.choice("abcdefghij") for _ in range(rng.randrange(3, 12))) for _ in range(400)]
    texts = [" ".join(rng.choice(words) for _ in range(rng.randrange(1, 200))) for _ in range(150)]
    room = [Client(window_bits) for _ in range(3)]
    frames = []
    for n, text in enumerate(texts):
        frames.append(broadcast(room, {"v2": text})[0] if n % 3 else room[0].own(text))
    assert client_reads(frames, window_bits) == [text.encode() for text in texts]
    if window_bits > CONTEXT_WINDOW_BITS:  # a compressor may use less window than agreed
        with pytest.raises(zlib.error):
            client_reads(frames, CONTEXT_WINDOW_BITS - 1)
    for client in room:
        client.deflater.release()


class Run:
    """A node's compressing sockets driven at random: rooms, broadcasts to a room (some leaving
    their sender out, as broadcast_from does) or to any few sockets, messages of a socket's own
    (short and long, some in the middle of a broadcast's delivery, as an app's hook may push),
    sockets that connect late, join, leave and close. Two kinds of frame per broadcast (V1's
    and V2's, say) and several window sizes, in one cache per broadcast."""

    WINDOWS = (15, 15, 15, 12, 10, 9, 8)

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.lines = chat_lines(3000, seed)
        self.clients: list[Client] = []  # connected
        self.everyone: list[Client] = []
        self.rooms: list[list[Client]] = [[] for _ in range(4)]
        self.roots = {bits: ContextDeflater(bits) for bits in set(self.WINDOWS)}
        for probe in self.roots.values():
            probe.release()
        # What the roots held before the run (the sockets of other tests): the run's must add up.
        self.held_before = {id(probe.context): probe.context.holders for probe in self.roots.values()}
        # A room of its own: joined by its members at the start, sent only its broadcasts and
        # heartbeats' replies, so it holds one context at the end.
        self.quiet = [Client() for _ in range(8)]
        for _ in range(20):
            self.connect()
        self.next_line = 0

    def connect(self) -> Client:
        client = Client(self.rng.choice(self.WINDOWS), self.rng.choice(("v1", "v2")))
        self.clients.append(client)
        self.everyone.append(client)
        for room in self.rng.sample(self.rooms, self.rng.randint(1, 2)):
            room.append(client)
        return client

    def texts(self) -> dict[str, str]:
        line = self.lines[self.next_line % len(self.lines)]
        self.next_line += 1
        _, _, topic, event, payload = json.loads(line)
        return {"v2": line, "v1": json.dumps({"topic": topic, "event": event, "payload": payload, "ref": None})}

    def broadcast_checked(self, receivers: list[Client]) -> None:
        """A broadcast, and its compressions within the bound, per kind and window size."""
        before = contexts_of(receivers)
        broadcast(receivers, self.texts())
        for kind in ("v1", "v2"):
            for root in {id(probe.context) for probe in self.roots.values()}:
                alike = [c for c in receivers if c.kind == kind and id(self.root_of(c)) == root]
                count, bound = compressions(alike, {id(c): before[id(c)] for c in alike})
                assert count <= bound

    def root_of(self, client: Client) -> DeflateContext:
        return self.roots[client.window_bits].context

    def step(self) -> None:
        rng, choice = self.rng, self.rng.random()
        if choice < 0.35:
            room = rng.choice(self.rooms)
            receivers = rng.sample(room, len(room))  # pubsub's order is a set's
            if receivers and rng.random() < 0.4:
                receivers.remove(rng.choice(receivers))  # broadcast_from
            self.broadcast_checked(receivers)
        elif choice < 0.45:
            self.broadcast_checked(rng.sample(self.clients, rng.randint(1, min(5, len(self.clients)))))
        elif choice < 0.55:
            receivers = rng.sample(self.clients, rng.randint(1, len(self.clients)))
            pushed_to = rng.choice(self.clients)
            broadcast(receivers, self.texts(), in_the_middle=lambda: pushed_to.own(history(self.next_line, 4)))
        elif choice < 0.67:
            rng.choice(self.clients).own(heartbeat_reply(self.next_line))
        elif choice < 0.75:
            rng.choice(self.clients).own(history(self.next_line, rng.randint(3, 30)))
        elif choice < 0.82:
            self.connect()
        elif choice < 0.88:
            rng.choice(self.rooms).append(rng.choice(self.clients))
        elif choice < 0.93:
            room = rng.choice(self.rooms)
            if room:
                room.remove(rng.choice(room))
        elif len(self.clients) > 5:
            closed = self.clients.pop(rng.randrange(len(self.clients)))
            closed.deflater.release()
            for room in self.rooms:
                while closed in room:
                    room.remove(closed)
        if rng.random() < 0.3:
            self.broadcast_checked(rng.sample(self.quiet, len(self.quiet)))
            rng.choice(self.quiet).own(heartbeat_reply(self.next_line))

    def check_holders(self) -> None:
        """Every context's holders: exactly the sockets on it (and a root's own count)."""
        on: dict[int, list[Client]] = {}
        for client in self.clients + self.quiet:
            on.setdefault(id(client.deflater.context), []).append(client)
        for key, clients in on.items():
            assert clients[0].deflater.context.holders == len(clients) + self.held_before.get(key, 0)


@pytest.mark.parametrize("seed", range(3))
def test_at_random_every_client_reads_what_it_was_sent_and_holders_add_up(seed: int) -> None:
    run = Run(seed)
    for _ in range(2000):
        run.step()
        run.check_holders()
    quiet = {id(client.deflater.context) for client in run.quiet}
    assert len(quiet) == 1 and run.quiet[0].deflater.context.holders == len(run.quiet)
    assert sum(client.messages for client in run.everyone) > 3000
    for client in run.clients + run.quiet:
        client.deflater.release()
    assert [probe.context.holders for probe in run.roots.values()] == [
        run.held_before[id(probe.context)] for probe in run.roots.values()]


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
