"""permessage-deflate, measured: bytes on the wire and CPU per delivery sent plain, compressed
by the shared compressor (each message alone: ``endpoint.compress``) and with context takeover
(``endpoint.deflate_context_takeover``: compressors shared by the sockets sent the same), and the
memory an idle compressing connection holds on a real node.

    python -m bench.deflate                # every part, ~3 minutes
    python -m bench.deflate --wire         # bytes and CPU per delivery: the fan-out alone
    python -m bench.deflate --node         # bytes and CPU per delivery: a real node
    python -m bench.deflate --idle 2000    # idle RSS per connection only
    python -m bench.deflate --settings     # the context compressor's window, memLevel and level
    python -m bench.deflate --sharing      # compressions per broadcast of the shared contexts

``--wire`` prepares each broadcast's frame once with the node's own code (``rfc6455.text_frame``,
``rfc7692.deflater(15).text_frame``) and writes it to every socket of a room of loopback socket
pairs, drained by a child process, as the node's fan-out does; with context takeover each
socket's ``rfc7692.ContextDeflater`` compresses the plain frame before its write, with one cache
per broadcast (the sockets sent the same share a compression). CPU is this
process's user + system time per delivery; the three ways alternate, and the median of 3
rounds is kept. Every message differs from the one before, as in a chat (a repeated message
would cost a compressor with context next to nothing).

``--node`` starts a node per way, joins a room of clients to each (offering permessage-deflate
as Chrome does, or nothing), and one client per node pushes chat lines at a fixed rate, the
nodes taking turns for 3 rounds: the node's CPU per delivery (/proc) and bytes per delivery
(its /metrics), the median round, against plain.

``--idle N`` starts a node per case (127.0.0.1, a free port), opens N websockets that each join
a topic (and, in some cases, hear 100 chat lines), and reads the node's RSS before and after:
KB per connection.

``--settings`` sends the same chat lines through one compressor per zlib setting: bytes against
plain, CPU per message, and the RSS a compressor holds once its window is full.

``--sharing`` counts, with context takeover, the compressions per broadcast and the bytes against
plain in rooms where every message is a broadcast_from by a random member (or a broadcast, with
a long push of its own to a random member every third one), for the node's setting of
``GROUP_MIN_HOLDERS`` and ``SMALL_CONTEXTS_KEPT`` and the one they replaced (2 and 1). No time
is measured: the counts and bytes are the same on any machine.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import selectors
import signal
import socket
import statistics
import struct
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from server.channels import rfc7692
from server.channels.rfc6455 import Opcode, compressed_frame, text_frame, unmask
from server.channels.rfc7692 import CONTEXT_LEVEL, CONTEXT_MEM_LEVEL, CONTEXT_WINDOW_BITS, ContextDeflater, deflater

from . import procs, systems

_TAIL = b"\x00\x00\xff\xff"
TOPIC = "room:lobby"
# What Chrome and Firefox offer.
BROWSER_OFFER = "permessage-deflate; client_max_window_bits"

_WORDS = """the be to of and a in that have I it for not on with he as you do at this but his by from
they we say her she or an will my one all would there their what so up out if about who get which go
me when make can like time no just him know take people into year your good some could them see other
than then now look only come its over think also back after use two how our work first well way even
new want because any these give day most us is are was were been has had did said got going yes ok lol
thanks hey hi sure maybe tomorrow tonight meeting lunch coffee deploy build test broken fixed works
server node room chat message today later soon please sorry great cool nice""".split()
_NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory",
          "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter", "zoe"]


def chat_payloads(count: int, seed: int = 1) -> list[dict[str, str]]:
    """Shouts as the chat page sends them (``server/static/chat.js``): 2 to 9 words of ~190
    common ones, one of 20 names, the time, seconds apart; each differs from the one before."""
    rng = random.Random(seed)
    at = 1778336429.0
    payloads = []
    for _ in range(count):
        at += rng.expovariate(1 / 4)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(at)) + f".{int(at * 1000) % 1000:03d}Z"
        payloads.append({"message": " ".join(rng.choice(_WORDS) for _ in range(rng.randint(2, 9))),
                         "user": rng.choice(_NAMES), "sent_at": stamp})
    return payloads


def _broadcast(event: str, payload: Any) -> str:
    return json.dumps([None, None, TOPIC, event, payload], separators=(",", ":"))


def chat_lines(count: int, seed: int = 1) -> list[str]:
    """The V2 broadcasts of ``chat_payloads``: 102-154 bytes, 124 on average."""
    return [_broadcast("shout", payload) for payload in chat_payloads(count, seed)]


def _batches(size: int, count: int) -> list[str]:
    """A chat's history as a channel might push it: ``size`` chat lines a message."""
    payloads = chat_payloads(size * count)
    return [_broadcast("history", {"messages": payloads[i:i + size]}) for i in range(0, len(payloads), size)]


def _loadgen_shouts(count: int) -> list[str]:
    """bench/js/loadgen.js's shouts: its sender, sequence number and time change each time."""
    return [_broadcast("shout", {"message": "hello from the load generator", "s": n % 50, "q": n,
                                 "t": 1732700000123 + 7 * n, "k": 2}) for n in range(count)]


def _presence(count: int) -> list[str]:
    """A room of 20's presence_state, one online_at later each time."""
    return [_broadcast("presence_state", {f"user{i}": {"metas": [{"phx_ref": f"F-abc{i:05d}", "online_at": 1732700000 + i + n}]}
                                          for i in range(20)}) for n in range(count)]


STREAMS: dict[str, Callable[[int], list[str]]] = {
    "loadgen shout": _loadgen_shouts,
    "chat line": chat_lines,
    "3 chat lines": lambda count: _batches(3, count),
    "10 chat lines": lambda count: _batches(10, count),
    "presence of 20": _presence,
}


# ---- bytes and CPU per delivery: the fan-out alone ---------------------------------------------

def _drain(sockets: list[socket.socket]) -> None:
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            ready = key.fileobj
            assert isinstance(ready, socket.socket)
            try:
                data = ready.recv(1 << 20)
            except ConnectionResetError:
                data = b""
            if not data:
                selector.unregister(ready)
                if not selector.get_map():
                    os._exit(0)


@contextmanager
def drained(sockets: list[socket.socket]) -> Iterator[None]:
    """A child process reads ``sockets`` and throws the bytes away until every one is closed,
    as clients would; this process's copies are for writing. The child is killed after."""
    child = os.fork()
    if child == 0:
        _drain(sockets)
    try:
        yield
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _payload(frame: bytes) -> bytes:
    """A server frame's payload (unmasked, unfragmented)."""
    return frame[2 + (2 if frame[1] & 0x7F == 126 else 8 if frame[1] & 0x7F == 127 else 0):]


def _read_back(frames: list[bytes], context: bool) -> list[bytes]:
    """What a client inflates from ``frames``: with the server's context, one decompressor for
    them all, as a client keeps; without, a fresh one per message."""
    inflater = zlib.decompressobj(-15)
    messages = []
    for frame in frames:
        if frame[0] & 0x40:
            if not context:
                inflater = zlib.decompressobj(-15)
            messages.append(inflater.decompress(_payload(frame) + _TAIL))
        else:
            messages.append(_payload(frame))
    return messages


class _Way:
    """One way of sending a broadcast to a room: ``prepare`` it once, then write it to every
    socket as it is, or through the socket's ``ContextDeflater`` (``per_socket``)."""

    def __init__(self, name: str, prepare: Callable[[str], bytes], per_socket: bool) -> None:
        self.name = name
        self.prepare = prepare
        self.per_socket = per_socket

    def compressors(self, room: int) -> list[ContextDeflater] | None:
        return [ContextDeflater(15) for _ in range(room)] if self.per_socket else None

    def frames(self, texts: list[str]) -> list[bytes]:
        """One socket's frames for ``texts``."""
        compressors = self.compressors(1)
        if compressors is None:
            return [self.prepare(text) for text in texts]
        (compressor,) = compressors
        frames = [compressor.compress_broadcast(self.prepare(text), {}) for text in texts]
        compressor.release()
        return frames


def _fan_out(way: _Way, compressors: list[ContextDeflater] | None, texts: list[str], first: int,
             writers: list[socket.socket], broadcasts: int) -> float:
    """CPU seconds for ``broadcasts`` broadcasts, ``texts`` in turn from ``first``, each prepared
    once and written to every socket (with context: one cache per broadcast, as the node's)."""
    started = _cpu()
    for n in range(first, first + broadcasts):
        frame = way.prepare(texts[n % len(texts)])
        if compressors is None:
            for sock in writers:
                sock.send(frame)
        else:
            cache: dict[Any, Any] = {}
            for sock, compressor in zip(writers, compressors, strict=True):
                sock.send(compressor.compress_broadcast(frame, cache))
    return _cpu() - started


WAYS = [_Way("plain", text_frame, False), _Way("shared", deflater(15).text_frame, False),
        _Way("context", text_frame, True)]


def wire(rooms: list[int], deliveries: int, rounds: int) -> list[dict[str, object]]:
    pairs = [socket.socketpair() for _ in range(max(rooms))]
    writers = [writer for writer, _ in pairs]
    results = []
    with drained([reader for _, reader in pairs]):
        for writer, reader in pairs:
            reader.close()
            writer.setblocking(True)
        for name, stream in STREAMS.items():
            texts = stream(500)
            sizes = {}
            for way in WAYS:
                frames = way.frames(texts)
                # What a client reads back is the messages: checked once per stream and way.
                assert _read_back(frames, way.per_socket) == [text.encode() for text in texts], (name, way.name)
                sizes[way.name] = statistics.mean(map(len, frames))
            for room in rooms:
                broadcasts = max(1, deliveries // room)
                # Each socket's compressor lives through the rounds, as a socket's does.
                compressors = {way.name: way.compressors(room) for way in WAYS}
                times: dict[str, list[float]] = {way.name: [] for way in WAYS}
                for turn in range(rounds):
                    for way in WAYS:
                        cpu = _fan_out(way, compressors[way.name], texts, turn * broadcasts, writers[:room], broadcasts)
                        times[way.name].append(cpu / (broadcasts * room))
                us = {way: statistics.median(values) * 1e6 for way, values in times.items()}
                for room_compressors in compressors.values():
                    for compressor in room_compressors or ():
                        compressor.release()
                record: dict[str, object] = {"message": name, "bytes": round(statistics.mean(map(len, texts))),
                                             "room": room}
                for way in WAYS:
                    record[f"{way.name}_frame"] = round(sizes[way.name], 1)
                    record[f"{way.name}_us"] = round(us[way.name], 2)
                for way in WAYS[1:]:
                    record[f"{way.name}_bytes_ratio"] = round(sizes["plain"] / sizes[way.name], 2)
                    record[f"{way.name}_cpu_ratio"] = round(us[way.name] / us["plain"], 2)
                results.append(record)
                print(json.dumps(record), flush=True)
    for writer in writers:
        writer.close()
    return results


# ---- clients of a real node ------------------------------------------------------------------------

JOIN = b'["1","1","room:lobby","phx_join",{}]'


def _client_frame(payload: bytes, rsv1: bool) -> bytes:
    mask = os.urandom(4)
    first = 0x80 | (0x40 if rsv1 else 0) | 0x1
    head = struct.pack("!BB", first, 0x80 | len(payload)) if len(payload) < 126 else \
        struct.pack("!BBH", first, 0x80 | 126, len(payload))
    return head + mask + unmask(mask, payload)  # masking is the same XOR


def read_frame(sock: socket.socket) -> tuple[int, bytes]:
    """One frame from the node (unmasked, unfragmented): its first byte and its payload."""
    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            assert chunk, "the node closed the connection"
            data += chunk
        return data
    first, second = exactly(2)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", exactly(2))
    elif length == 127:
        (length,) = struct.unpack("!Q", exactly(8))
    return first, exactly(length)


def _connect(port: int, offer: str | None, compress_join: bool) -> socket.socket:
    """A websocket joined to TOPIC (its join sent compressed if ``compress_join``)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    key = "dGhlIHNhbXBsZSBub25jZQ=="
    sock.sendall((f"GET /socket/websocket?vsn=2.0.0 HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  + (f"Sec-WebSocket-Extensions: {offer}\r\n" if offer else "") + "\r\n").encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        head += sock.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    if compress_join:
        assert b"permessage-deflate" in head, head
        compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
        body = (compressor.compress(JOIN) + compressor.flush(zlib.Z_SYNC_FLUSH))[:-4]
        sock.sendall(_client_frame(body, rsv1=True))
    else:
        sock.sendall(_client_frame(JOIN, rsv1=False))
    first, reply = read_frame(sock)
    if first & 0x40:
        reply = zlib.decompressobj(-15).decompress(reply + _TAIL)
    assert b"phx_reply" in reply and b'"ok"' in reply, reply
    return sock


def _push(ref: int, payload: dict[str, str]) -> bytes:
    return _client_frame(json.dumps(["1", str(ref), TOPIC, "shout", payload], separators=(",", ":")).encode(), False)


# ---- bytes and CPU per delivery: a real node ---------------------------------------------------

NODE_WAYS = {  # the node's endpoint settings, what its clients offer
    "plain": ({"compress": False}, None),
    "shared": ({"compress": True}, BROWSER_OFFER),
    "context": ({"compress": True, "deflate_context_takeover": True}, BROWSER_OFFER),
}


def node(room: int, rate: int, seconds: float, rounds: int) -> list[dict[str, object]]:
    procs.raise_fd_limit(3 * (room + 1) + 1000)
    cores = procs.cores()
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        # The nodes on one core, this process and its drain on the other (when there are two).
        system = systems.System(workdir, label="deflate-node", core=cores[0] if len(cores) > 1 else None,
                                node_settings={"endpoint": {"server_timeout": 600}})
        if len(cores) > 1:
            os.sched_setaffinity(0, set(cores[1:]))
        try:
            nodes = {way: system.start_node(way, "127.0.0.1", extra={"endpoint": settings})
                     for way, (settings, _) in NODE_WAYS.items()}
            for running in nodes.values():
                running.wait_serving()
            senders, sockets = {}, []
            for way, running in nodes.items():
                offer = NODE_WAYS[way][1]
                sockets += [_connect(running.port, offer, False) for _ in range(room)]
                senders[way] = _connect(running.port, offer, False)
            payloads = chat_payloads(len(nodes) * rounds * _shouts(rate, seconds))
            measured: dict[str, list[tuple[float, float]]] = {way: [] for way in nodes}
            with drained(sockets + list(senders.values())):
                sent = 0
                for _ in range(rounds):
                    for way, running in nodes.items():
                        before, cpu_before = running.metrics(), procs.cpu_seconds(running.proc.pid)
                        shouts = _shout(senders[way], payloads, sent, rate, seconds)
                        sent += shouts
                        # Each shout reaches the room and its sender.
                        after = _delivered(running, before[systems.MESSAGES_SENT] + shouts * (room + 1))
                        cpu = procs.cpu_seconds(running.proc.pid) - cpu_before
                        deliveries = after[systems.MESSAGES_SENT] - before[systems.MESSAGES_SENT]
                        written = after[systems.BYTES_WRITTEN] - before[systems.BYTES_WRITTEN]
                        measured[way].append((cpu / deliveries * 1e6, written / deliveries))
            plain_us = statistics.median(us for us, _ in measured["plain"])
            plain_bytes = statistics.median(b for _, b in measured["plain"])
            for way, values in measured.items():
                us = statistics.median(u for u, _ in values)
                per_delivery = statistics.median(b for _, b in values)
                results.append({"way": way, "room": room, "rate": rate, "seconds": seconds, "rounds": rounds,
                                "us_per_delivery": round(us, 2), "cpu_ratio": round(us / plain_us, 2),
                                "bytes_per_delivery": round(per_delivery, 1),
                                "bytes_ratio": round(plain_bytes / per_delivery, 2),
                                "us_rounds": [round(u, 2) for u, _ in values]})
                print(json.dumps(results[-1]), flush=True)
        finally:
            system.stop()
            os.sched_setaffinity(0, set(cores))
    return results


_TICK = 0.01


def _shouts(rate: int, seconds: float) -> int:
    return int(seconds / _TICK) * max(1, int(rate * _TICK))


def _shout(sender: socket.socket, payloads: list[dict[str, str]], first: int, rate: int, seconds: float) -> int:
    """Pushes ``rate`` shouts a second for ``seconds``, a few every 10 ms; how many."""
    per_tick = max(1, int(rate * _TICK))
    started = time.monotonic()
    for tick in range(int(seconds / _TICK)):
        pause = started + tick * _TICK - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        at = first + tick * per_tick
        sender.sendall(b"".join(_push(n, payloads[n]) for n in range(at, at + per_tick)))
    return _shouts(rate, seconds)


def _delivered(node: systems.RunningServer, messages: float) -> dict[str, float]:
    """The node's metrics once it has sent ``messages`` messages in all."""
    def probe() -> dict[str, float] | None:
        metrics = node.metrics()
        return metrics if metrics[systems.MESSAGES_SENT] >= messages else None
    result: dict[str, float] = procs.wait_for("the node to deliver every shout", probe, 60)
    return result


# ---- idle memory per connection --------------------------------------------------------------------

IDLE_CASES = {  # the node's endpoint settings, what the clients offer, a compressed join, chat lines heard
    "compress off": ({"compress": False}, None, False, 0),
    "compress off, after 100 chat lines": ({"compress": False}, None, False, 100),
    "compress on, joined uncompressed (ws compresses only from 1 KB)": ({"compress": True}, BROWSER_OFFER, False, 0),
    "compress on, joined compressed, client context takeover (Chrome)": ({"compress": True}, BROWSER_OFFER, True, 0),
    "compress on, joined compressed, client_no_context_takeover":
        ({"compress": True}, "permessage-deflate; client_no_context_takeover", True, 0),
    "context takeover, joined compressed (Chrome)":
        ({"compress": True, "deflate_context_takeover": True}, BROWSER_OFFER, True, 0),
    "context takeover, joined compressed (Chrome), after 100 chat lines":
        ({"compress": True, "deflate_context_takeover": True}, BROWSER_OFFER, True, 100),
}


def idle(connections: int) -> list[dict[str, object]]:
    procs.raise_fd_limit(connections + 1000)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, (settings, offer, compress_join, lines) in IDLE_CASES.items():
            system = systems.System(workdir, label="deflate-idle",
                                    node_settings={"endpoint": {**settings, "server_timeout": 600}})
            node = system.start_node("n1", "127.0.0.1")
            try:
                node.wait_serving()
                _connect(node.port, offer, compress_join).close()  # every code path warmed up once
                # Plain: it reads its own shouts back to know they reached everyone.
                sender = _connect(node.port, None, False)
                time.sleep(0.5)
                before = procs.rss_bytes(node.proc.pid)
                sockets = [_connect(node.port, offer, compress_join) for _ in range(connections)]
                if lines:
                    # ~4 KB a socket, which its kernel buffer holds unread.
                    sender.sendall(b"".join(_push(n, payload) for n, payload in enumerate(chat_payloads(lines))))
                    for _ in range(lines):
                        assert b'"shout"' in read_frame(sender)[1]
                time.sleep(1.0)
                after = procs.rss_bytes(node.proc.pid)
                results.append({"case": name, "connections": connections,
                                "kb_per_connection": round((after - before) / connections / 1024, 2)})
                print(json.dumps(results[-1]), flush=True)
                for sock in sockets + [sender]:
                    sock.close()
            finally:
                node.proc.stop()
    return results


# ---- the context compressor's settings ----------------------------------------------------------------

SETTINGS = [  # window bits, memLevel, level; the last is zlib's default (Phoenix's, and most servers')
    (11, 2, 1), (12, 1, 1), (12, 2, 1), (12, 2, 2), (12, 4, 1), (13, 2, 1), (15, 8, 1), (15, 8, 6)]


def settings(compressors: int, lines: int, rounds: int = 15) -> list[dict[str, object]]:
    texts = [text.encode() for text in chat_lines(lines)]
    plain = sum(len(text_frame(text.decode())) for text in texts)
    times: dict[tuple[int, int, int], list[float]] = {setting: [] for setting in SETTINGS}
    sizes = {}
    # The settings take turns, round after round, so that a busy moment of the machine's does
    # not fall on one of them.
    for _ in range(rounds):
        for setting in SETTINGS:
            sizes[setting], seconds = _through_one(texts, *setting)
            times[setting].append(seconds / len(texts))
    results: list[dict[str, object]] = []
    for setting in SETTINGS:
        window_bits, mem_level, level = setting
        # Enough lines to fill the largest window (32 KB).
        kb = _rss_per_compressor(texts[:300], compressors, window_bits, mem_level, level)
        results.append({"window_bits": window_bits, "mem_level": mem_level, "level": level,
                        "chosen": setting == (CONTEXT_WINDOW_BITS, CONTEXT_MEM_LEVEL, CONTEXT_LEVEL),
                        "bytes_ratio": round(plain / sizes[setting], 2),
                        "us_per_message": round(statistics.median(times[setting]) * 1e6, 2),
                        "kb_per_compressor": round(kb, 1)})
        print(json.dumps(results[-1]), flush=True)
    return results


def _through_one(texts: list[bytes], window_bits: int, mem_level: int, level: int) -> tuple[int, float]:
    """Frame bytes for ``texts`` through one new compressor, and the CPU seconds it took."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -window_bits, mem_level)
    started, total = time.process_time(), 0
    for text in texts:
        compressed = compressor.compress(text) + compressor.flush(zlib.Z_SYNC_FLUSH)
        total += len(compressed_frame(Opcode.TEXT, compressed[:-len(_TAIL)]))
    return total, time.process_time() - started


def _rss_per_compressor(texts: list[bytes], count: int, window_bits: int, mem_level: int, level: int) -> float:
    """KB of RSS per compressor once ``texts`` went through each, measured in a child process."""
    read, write = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(read)
        before = procs.rss_bytes(os.getpid())
        compressors = [zlib.compressobj(level, zlib.DEFLATED, -window_bits, mem_level) for _ in range(count)]
        for compressor in compressors:
            for text in texts:
                compressor.compress(text)
                compressor.flush(zlib.Z_SYNC_FLUSH)
        os.write(write, str((procs.rss_bytes(os.getpid()) - before) / count / 1024).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        kb = float(pipe.read())
    os.waitpid(child, 0)
    return kb


# ---- compressions per broadcast of the shared contexts --------------------------------------------------

SHARING_ROOMS = (2, 3, 5, 10, 30, 100, 1000)


def sharing(broadcasts: int = 300) -> list[dict[str, object]]:
    """For each room size and way of talking, and each setting of the node's sharing rule (what
    it is, and what it replaced), the mean compressions per broadcast after 50 broadcasts, and
    the bytes against plain frames."""
    results: list[dict[str, object]] = []
    node_setting = (rfc7692.GROUP_MIN_HOLDERS, rfc7692.SMALL_CONTEXTS_KEPT)
    try:
        for talk in ("broadcast_from", "broadcast, a push every 3"):
            for room in SHARING_ROOMS:
                for setting in (node_setting, (2, 1)):
                    rfc7692.GROUP_MIN_HOLDERS, rfc7692.SMALL_CONTEXTS_KEPT = setting
                    made, ratio = _share(room, talk == "broadcast_from", broadcasts)
                    results.append({"talk": talk, "room": room, "group_min_holders": setting[0],
                                    "small_contexts_kept": setting[1], "compressions": round(made, 1),
                                    "deliveries_per_compression": round((room - (talk == "broadcast_from")) / made, 1),
                                    "bytes_ratio": round(ratio, 2)})
                    print(json.dumps(results[-1]), flush=True)
    finally:
        rfc7692.GROUP_MIN_HOLDERS, rfc7692.SMALL_CONTEXTS_KEPT = node_setting
    return results


def _share(room: int, exclude_sender: bool, broadcasts: int) -> tuple[float, float]:
    rng = random.Random(1)
    lines = chat_lines(broadcasts)
    sockets = [ContextDeflater(15) for _ in range(room)]
    made, plain, sent = [], 0, 0
    for n, line in enumerate(lines):
        frame = text_frame(line)
        left_out = rng.randrange(room) if exclude_sender else None
        receivers = [compressor for k, compressor in enumerate(sockets) if k != left_out]
        cache: dict[Any, Any] = {}
        for compressor in receivers:
            sent += len(compressor.compress_broadcast(frame, cache))
        plain += len(frame) * len(receivers)
        if not exclude_sender and n % 3 == 0:
            rng.choice(sockets).compress_frame(text_frame(json.dumps({"history": lines[n:n + 3]})))
        # Each compression made a context that its receivers moved to.
        made.append(len({id(compressor.context) for compressor in receivers}))
    for compressor in sockets:
        compressor.release()
    return statistics.mean(made[50:]), plain / sent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wire", action="store_true", help="bytes and CPU per delivery, the fan-out alone")
    parser.add_argument("--node", action="store_true", help="bytes and CPU per delivery on a real node")
    parser.add_argument("--idle", type=int, metavar="N", help="idle RSS per connection only, with N connections")
    parser.add_argument("--settings", action="store_true", help="the context compressor's zlib settings")
    parser.add_argument("--sharing", action="store_true", help="compressions per broadcast of the shared contexts")
    parser.add_argument("--rooms", default="1,2,100,1000", help="room sizes for --wire")
    parser.add_argument("--deliveries", type=int, default=50_000, help="deliveries per round and room (--wire)")
    parser.add_argument("--room", type=int, default=100, help="clients in the room (--node)")
    parser.add_argument("--rate", type=int, default=200, help="shouts per second (--node)")
    parser.add_argument("--seconds", type=float, default=4.0, help="seconds of shouting per round (--node)")
    args = parser.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    every = not (args.wire or args.node or args.settings or args.sharing or args.idle is not None)
    if args.settings or every:
        settings(compressors=500, lines=2000)
    if args.sharing or every:
        sharing()
    if args.wire or every:
        wire([int(r) for r in args.rooms.split(",")], args.deliveries, rounds=3)
    if args.node or every:
        node(args.room, args.rate, args.seconds, rounds=3)
    if args.idle is not None or every:
        idle(args.idle or 2000)


if __name__ == "__main__":
    sys.exit(main())
