"""permessage-deflate, measured: bytes on the wire and CPU per delivery, compressed or not, and
the memory an idle compressing connection holds on a real node.

    python -m bench.deflate              # both parts, ~1 minute
    python -m bench.deflate --wire       # bytes and CPU per delivery only
    python -m bench.deflate --idle 2000  # idle RSS per connection only

``--wire`` builds each broadcast's frame once with the node's own code (``rfc6455.text_frame``,
or ``rfc7692.deflater(15).text_frame``) and writes it to every socket of a room of loopback
socket pairs, drained by a child process, as the node's fan-out does; CPU is this process's
user + system time (what the node pays: one frame, then a write per socket), per delivery.
Plain and compressed rounds alternate, and the median of 3 is kept.

``--idle N`` starts a node per case (127.0.0.1, a free port), opens N websockets that each join
a topic, and reads the node's RSS before and after: KB per connection.
"""

from __future__ import annotations

import argparse
import json
import os
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
from collections.abc import Callable

from server.channels.rfc6455 import text_frame
from server.channels.rfc7692 import deflater

from . import procs, systems

_TAIL = b"\x00\x00\xff\xff"


def _chat(messages: int) -> str:
    """A V2 broadcast of ``messages`` chat lines (1: one shout of the article's chat)."""
    lines = [{"name": f"user{i}", "message": f"message number {i} in the room, about the weather",
              "at": 1732700000 + i} for i in range(messages)]
    payload = lines[0] if messages == 1 else {"messages": lines}
    return json.dumps([None, None, "room:lobby", "shout", payload], separators=(",", ":"))


MESSAGES = {
    "loadgen shout": json.dumps([None, None, "room:1", "shout", {"message": "hello from the load generator",
                                 "s": 3, "q": 1234, "t": 1732700000123, "k": 2}], separators=(",", ":")),
    "chat shout": _chat(1),
    "3 chat lines": _chat(3),
    "10 chat lines": _chat(10),
    "presence of 20": json.dumps([None, None, "room:lobby", "presence_state", {
        f"user{i}": {"metas": [{"phx_ref": f"F-abc{i:05d}", "online_at": 1732700000 + i}]} for i in range(20)}],
        separators=(",", ":")),
}


# ---- bytes and CPU per delivery ------------------------------------------------------------------

def _drain(sockets: list[socket.socket]) -> None:
    selector = selectors.DefaultSelector()
    for sock in sockets:
        selector.register(sock, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            if not sock.recv(1 << 20):
                os._exit(0)


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _fan_out(prepare: Callable[[str], bytes], text: str, writers: list[socket.socket], broadcasts: int) -> float:
    """CPU seconds for ``broadcasts`` broadcasts of ``text``, each prepared once and written to
    every socket."""
    started = _cpu()
    for _ in range(broadcasts):
        frame = prepare(text)
        for sock in writers:
            sock.send(frame)
    return _cpu() - started


def wire(rooms: list[int], deliveries: int, rounds: int) -> list[dict[str, object]]:
    pairs = [socket.socketpair() for _ in range(max(rooms))]
    child = os.fork()
    if child == 0:
        _drain([reader for _, reader in pairs])
    writers = [writer for writer, _ in pairs]
    for writer, reader in pairs:
        reader.close()
        writer.setblocking(True)
    compressed = deflater(15).text_frame
    results = []
    try:
        for name, text in MESSAGES.items():
            plain_bytes, deflate_bytes = len(text_frame(text)), len(compressed(text))
            # What a client reads back is the message: checked once per message.
            frame = compressed(text)
            body = frame[2 + (2 if frame[1] == 126 else 0):]
            assert (zlib.decompressobj(-15).decompress(body + _TAIL) if frame[0] & 0x40 else body) == text.encode()
            for room in rooms:
                broadcasts = max(1, deliveries // room)
                times: dict[str, list[float]] = {"plain": [], "deflate": []}
                for _ in range(rounds):
                    for kind, prepare in (("plain", text_frame), ("deflate", compressed)):
                        times[kind].append(_fan_out(prepare, text, writers[:room], broadcasts) / (broadcasts * room))
                plain_us = statistics.median(times["plain"]) * 1e6
                deflate_us = statistics.median(times["deflate"]) * 1e6
                results.append({"message": name, "bytes": len(text.encode()), "room": room,
                                "plain_frame": plain_bytes, "deflate_frame": deflate_bytes,
                                "bytes_ratio": round(plain_bytes / deflate_bytes, 2),
                                "plain_us": round(plain_us, 2), "deflate_us": round(deflate_us, 2),
                                "cpu_ratio": round(deflate_us / plain_us, 2)})
                print(json.dumps(results[-1]), flush=True)
    finally:
        for writer in writers:
            writer.close()
        os.waitpid(child, 0)
    return results


# ---- idle memory per connection --------------------------------------------------------------------

JOIN = b'["1","1","room:lobby","phx_join",{}]'


def _client_frame(payload: bytes, rsv1: bool) -> bytes:
    mask = os.urandom(4)
    first = 0x80 | (0x40 if rsv1 else 0) | 0x1
    head = struct.pack("!BB", first, 0x80 | len(payload)) if len(payload) < 126 else \
        struct.pack("!BBH", first, 0x80 | 126, len(payload))
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _connect(port: int, offer: str | None, compress_join: bool) -> socket.socket:
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
    reply = sock.recv(4096)
    assert b"phx_reply" in reply and b'"ok"' in reply, reply
    return sock


IDLE_CASES = {
    "compress off": (False, None, False),
    "compress on, joined uncompressed (ws compresses only from 1 KB)": (True, "permessage-deflate; client_max_window_bits", False),
    "compress on, joined compressed, client context takeover (Chrome)": (True, "permessage-deflate; client_max_window_bits", True),
    "compress on, joined compressed, client_no_context_takeover": (True, "permessage-deflate; client_no_context_takeover", True),
}


def idle(connections: int) -> list[dict[str, object]]:
    procs.raise_fd_limit(connections + 1000)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, (compress, offer, compress_join) in IDLE_CASES.items():
            system = systems.System(workdir, label="deflate-idle",
                                    node_settings={"endpoint": {"compress": compress, "server_timeout": 600}})
            node = system.start_node("n1", "127.0.0.1")
            try:
                node.wait_serving()
                _connect(node.port, offer, compress_join).close()  # every code path warmed up once
                time.sleep(0.5)
                before = procs.rss_bytes(node.proc.pid)
                sockets = [_connect(node.port, offer, compress_join) for _ in range(connections)]
                time.sleep(1.0)
                after = procs.rss_bytes(node.proc.pid)
                results.append({"case": name, "connections": connections,
                                "kb_per_connection": round((after - before) / connections / 1024, 2)})
                print(json.dumps(results[-1]), flush=True)
                for sock in sockets:
                    sock.close()
            finally:
                node.proc.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wire", action="store_true", help="bytes and CPU per delivery only")
    parser.add_argument("--idle", type=int, metavar="N", help="idle RSS per connection only, with N connections")
    parser.add_argument("--rooms", default="1,2,100,1000", help="room sizes for --wire")
    parser.add_argument("--deliveries", type=int, default=50_000, help="deliveries per round and room")
    args = parser.parse_args()
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    both = not args.wire and args.idle is None
    if args.wire or both:
        wire([int(r) for r in args.rooms.split(",")], args.deliveries, rounds=3)
    if args.idle is not None or both:
        idle(args.idle or 2000)


if __name__ == "__main__":
    sys.exit(main())
