"""Fuzzing gossipy's decoders with generated inputs (a million by default).

    python3 -m tests.support.fuzz                      # 1,000,000 inputs over all targets, every core
    python3 -m tests.support.fuzz --inputs 50000 --workers 1 --seed 7
    python3 -m tests.support.fuzz --target handshake   # one target

(from the repository's root, which puts ``server`` on the path).

Each *target* feeds one generated input to a decoder that faces untrusted bytes and checks its
contract: it either accepts the input or refuses it with its own error (``DecodeError``,
``FrameError``, ``HandshakeError``, ``ProtocolViolation``), and whatever it accepted can be
written back out (a reply echoes a topic and a ref, a broadcast carries a payload, a ping is
answered with a pong). Anything else is a crash: another exception, a broken contract, or an
ERROR logged by gossipy (a traceback a client can cause).

The generators are structure-aware: most inputs are nearly valid (real frames, real handshake
steps, JSON values) with one thing wrong, so they get past the first check; the rest are byte
mutations of valid inputs and plain random bytes. ``tests/hardening/test_hardening_fuzz.py``
drives the same targets with hypothesis (a small sample, shrinking) in the default test run.
Structure-aware generators rather than coverage guidance (atheris): the parsing happens in C
(json's scanner) and the Python around it is thin (bench/README.md, "The fuzzer").

Prints one line per target (inputs, accepted, refused, crashes, time, rate) and exits 1 if
anything crashed, after writing each distinct crash's input to ``--crash-dir``.
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import random
import sys
import tempfile
import time
import traceback
from itertools import pairwise
from typing import Any, Callable, NamedTuple

from server import chat
from server.channels import rfc6455
from server.channels import serializer as wire
from server.channels.rfc6455 import MessageReader, ProtocolViolation, text_frame
from server.channels.serializer import V1, V2, DecodeError, Message
from server.channels.socket import PhoenixSocket, Router
from server.cluster.framing import HANDSHAKE_MAX_FRAME, MAX_FRAME, Frame, FrameDecoder, FrameError, FrameType, encode
from server.cluster.handshake import Acceptor, HandshakeError, Identity, Initiator, Reason, State
from server.cluster.pubsub_adapter import ClusterAdapter
from server.pubsub import PubSub
from server.settings import Cookie

COOKIE = Cookie("fuzz-cookie-0123456789abcdef")
ME_A = Identity("gossipy@127.0.0.2", 2, longnames=True)
ME_B = Identity("gossipy@127.0.0.3", 3, longnames=True)
TOPIC = "room:1"


class Crash(AssertionError):
    """A decoder broke its contract (as opposed to refusing an input, which is its job)."""


# ---- ERRORs logged by gossipy count as crashes ---------------------------------------------------

class _ErrorRecords(logging.Handler):
    """Collects ERROR records of the gossipy loggers while a target runs."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def __enter__(self) -> "_ErrorRecords":
        logging.getLogger("gossipy").addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        logging.getLogger("gossipy").removeHandler(self)
        if self.records and exc[0] is None:
            record = self.records[0]
            detail = "".join(traceback.format_exception(*record.exc_info))[-600:] if record.exc_info else ""
            raise Crash(f"logged an ERROR: {record.getMessage()}\n{detail}")


def quiet_logs() -> None:
    """For the command line: the decoders' warnings are the expected refusals, by the million."""
    logger = logging.getLogger("gossipy")
    logger.setLevel(logging.ERROR)
    logger.propagate = False


# ---- the targets ------------------------------------------------------------------------------

def _writable(serializer: Any, message: Message) -> None:
    """What the node sends back from a decoded frame must encode, frame and parse."""
    for out in (wire.reply(message.join_ref, message.ref, message.topic, "error", {"reason": "x"}),
                Message(None, None, message.topic, message.event, message.payload)):
        text = serializer.encode(out)
        text_frame(text)
        json.loads(text)


def serializer_target(case: tuple[str, str | bytes]) -> bool:
    """V1 or V2 ``decode``: a Message with wire-typed fields, or DecodeError."""
    vsn, data = case
    serializer = wire.for_vsn(vsn)
    try:
        message = serializer.decode(data)
    except DecodeError:
        return False
    if not (isinstance(message.topic, str) and isinstance(message.event, str)):
        raise Crash(f"decoded a non-string topic or event: {message!r}")
    for ref in (message.ref, message.join_ref):
        if not (ref is None or isinstance(ref, (str, int))) or isinstance(ref, bool):
            raise Crash(f"decoded a ref that is not a string, a number or null: {message!r}")
    if vsn != V2.vsn and message.join_ref is not None and not isinstance(message.join_ref, (str, int)):
        raise Crash(f"V1 join_ref {message.join_ref!r}")
    _writable(serializer, message)
    return True


class _Transport:
    """A socket's transport as the websocket handler is, minus the network: real framing."""

    prepare_frame = staticmethod(text_frame)
    frame_kind = None

    def __init__(self) -> None:
        self.frames = 0
        self.closed: int | None = None

    def send_frame(self, frame: bytes, broadcast_cache: dict[Any, Any] | None = None) -> None:
        if self.closed is not None:
            raise Crash("sent a frame after closing")
        self.frames += 1

    def close(self, code: int, reason: str) -> None:
        self.closed = code


def socket_target(case: tuple[str, list[str | bytes]]) -> bool:
    """A real PhoenixSocket with the chat routes and a listener in the room on the other wire
    format: frames in, until it closes. Only a 1011 close may end it; nothing may raise or log
    an ERROR. True if every frame was taken without a close."""
    vsn, frames = case
    with _ErrorRecords():
        return _socket_run(vsn, frames)


def _socket_run(vsn: str, frames: list[str | bytes]) -> bool:
    pubsub = PubSub()
    router = Router(chat.ROUTES)
    other = V2 if vsn != V2.vsn else V1
    listener = PhoenixSocket(_Transport(), other, router, pubsub, 100, "listener")
    listener.receive(other.encode(Message("1", "1", TOPIC, wire.JOIN, {})))
    transport = _Transport()
    phoenix_socket = PhoenixSocket(transport, wire.for_vsn(vsn), router, pubsub, 100, "fuzz")
    try:
        for data in frames:
            phoenix_socket.receive(data)
            if transport.closed is not None:
                if transport.closed != rfc6455.CloseCode.SERVER_ERROR:
                    raise Crash(f"closed with {transport.closed}")
                return False
    finally:
        phoenix_socket.closed()
        listener.closed()
    return True


def frame_decoder_target(case: tuple[int, bytes, list[int]]) -> bool:
    """The peer stream's FrameDecoder: the same frames (or the same FrameError) however the
    bytes are cut; every frame of a known type and within the limit; an error sticks."""
    max_size, data, cuts = case
    whole = FrameDecoder(max_size)
    try:
        expected: list[Frame] | None = whole.receive_data(data)
    except FrameError:
        expected = None
    decoder = FrameDecoder(max_size)
    got: list[Frame] = []
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    try:
        for a, b in pairwise(points):
            got.extend(decoder.receive_data(data[a:b]))
    except FrameError:
        if expected is not None:
            raise Crash("refused bytes cut in pieces that it accepted whole") from None
        try:
            decoder.receive_data(encode(FrameType.TICK))
        except FrameError:
            return False
        raise Crash("accepted more bytes after a FrameError") from None
    if expected is None:
        raise Crash("accepted bytes cut in pieces that it refused whole")
    if got != expected:
        raise Crash("different frames depending on where the bytes were cut")
    for frame in got:
        if not isinstance(frame.type, FrameType) or len(frame.payload) >= max_size:
            raise Crash(f"a frame of type {frame.type!r} and {len(frame.payload)} bytes")
    return True


def handshake_target(case: tuple[str, bytes]) -> bool:
    """An Acceptor or Initiator fed bytes the way run_handshake feeds them (through a
    FrameDecoder at the handshake limit): it refuses with HandshakeError, ends FAILED, and
    everything it queued to send is well-formed frames. True if it came up."""
    role, data = case
    hs: Acceptor | Initiator
    if role == "acceptor":
        hs = Acceptor(ME_B, COOKIE)
    else:
        hs = Initiator(ME_A, COOKIE, expect=ME_B.name)
        hs.send_name()
    decoder = FrameDecoder()
    try:
        try:
            for frame in decoder.receive_data(data):
                hs.receive_frame(frame)
                if hs.state is State.SEND_STATUS:
                    hs.answer(None)
                if hs.state is State.UP:
                    break
        except FrameError as exc:
            raise hs.abort(HandshakeError(Reason.MALFORMED, str(exc))) from None
    except HandshakeError:
        if hs.state is not State.FAILED:
            raise Crash(f"HandshakeError left the handshake in {hs.state.value}") from None
    out = hs.data_to_send()
    sent = FrameDecoder().receive_data(out)
    if sum(len(encode(f.type, f.payload)) for f in sent) != len(out):
        raise Crash("queued bytes that are not whole frames")
    if hs.state is State.UP:
        if hs.peer is None:
            raise Crash("up without a peer")
        return True
    return False


def handshake_pair_target(case: tuple[int, int]) -> bool:
    """A real Initiator and Acceptor (one cookie) with the bytes of one of their messages
    mutated in flight: each side refuses or comes up, and two sides that both come up agree
    on who is who (the names are what the cookie proves). True if both came up."""
    index, seed = case
    a, b = Initiator(ME_A, COOKIE, expect=ME_B.name), Acceptor(ME_B, COOKIE)
    a.send_name()
    sides = [(a, FrameDecoder()), (b, FrameDecoder())]
    sender, n = 0, 0
    data = a.data_to_send()
    try:
        while data:
            if n == index:
                data = Gen(seed).mutate(data)
            n += 1
            hs, decoder = sides[1 - sender]
            try:
                for frame in decoder.receive_data(data):
                    hs.receive_frame(frame)
                    if hs.state is State.SEND_STATUS:
                        hs.answer(None)
            except FrameError as exc:
                raise hs.abort(HandshakeError(Reason.MALFORMED, str(exc))) from None
            sender = 1 - sender
            data = hs.data_to_send()
    except HandshakeError:
        pass
    # A side still waiting (the mutation ate the bytes it needs) is ended by its owner's timeout.
    if a.state is State.UP and b.state is State.UP:
        if a.peer is None or b.peer is None or a.peer.name != ME_B.name or b.peer.name != ME_A.name:
            raise Crash(f"both up but disagreeing on names: {a.peer} / {b.peer}")
        return True
    return False


_WS_CODES = {rfc6455.CloseCode.PROTOCOL_ERROR, rfc6455.CloseCode.INVALID_DATA, rfc6455.CloseCode.TOO_BIG}


def _ws_messages(reader: MessageReader, chunks: list[bytes]) -> tuple[list[tuple[int, str | bytes]], int | None]:
    """What the websocket transport gets from ``chunks``: the messages, and the code of the
    first ProtocolViolation. Like the transport, it goes on feeding the reader after one (it
    waits for the client's close): later chunks too may only give messages or violations."""
    messages: list[tuple[int, str | bytes]] = []
    code = None
    for chunk in chunks:
        try:
            got = reader.receive(chunk)
        except ProtocolViolation as exc:
            if exc.code not in _WS_CODES:
                raise Crash(f"a ProtocolViolation with close code {exc.code}") from None
            code = exc.code if code is None else code
            continue
        if code is None:
            messages += got
    return messages, code


def websocket_target(case: tuple[int, bytes, list[int]]) -> bool:
    """The websocket MessageReader: client frames in, messages or a ProtocolViolation (1002,
    1007 or 1009) out, the same however the bytes are cut; every message well-typed, within
    the limits, and answerable (a pong for a ping, an echoed code for a close). True if every
    byte was taken without a violation."""
    max_size, data, cuts = case
    expected, expected_code = _ws_messages(MessageReader(max_size), [data])
    points = sorted({min(c, len(data)) for c in cuts} | {0, len(data)})
    got, code = _ws_messages(MessageReader(max_size), [data[a:b] for a, b in pairwise(points)])
    if code != expected_code:
        raise Crash(f"refused with {code} in pieces and with {expected_code} whole")
    if expected_code is None and got != expected:
        raise Crash("different messages depending on where the bytes were cut")
    for opcode, payload in got:
        if opcode == rfc6455.Opcode.TEXT:
            if not isinstance(payload, str):
                raise Crash(f"a text message as {type(payload).__name__}")
            if len(payload.encode()) > max_size:  # (a lone surrogate would raise here)
                raise Crash(f"a text message of {len(payload.encode())} bytes")
            text_frame(payload)
        elif not isinstance(payload, bytes):
            raise Crash(f"opcode {opcode:#x} with a {type(payload).__name__} payload")
        elif opcode == rfc6455.Opcode.BINARY:
            if len(payload) > max_size:
                raise Crash(f"a binary message of {len(payload)} bytes")
        elif opcode not in (rfc6455.Opcode.CLOSE, rfc6455.Opcode.PING, rfc6455.Opcode.PONG) or len(payload) > 125:
            raise Crash(f"a control frame of opcode {opcode:#x} and {len(payload)} bytes")
        elif opcode == rfc6455.Opcode.PING:
            rfc6455.pong_frame(payload)
        elif opcode == rfc6455.Opcode.CLOSE:
            _ws_close(payload)
    return code is None


def _ws_close(payload: bytes) -> None:
    """A client's close is answered as the transport answers it, with its code (or none), or
    refused with a close the client can parse (a code and a UTF-8 reason, within 125 bytes)."""
    try:
        code, _ = rfc6455.parse_close(payload)
        answer = rfc6455.close_frame(code)
    except ProtocolViolation as exc:
        if exc.code not in _WS_CODES:
            raise Crash(f"a close refused with close code {exc.code}") from None
        answer = rfc6455.close_frame(exc.code, exc.reason)
    if answer[1] > 125:
        raise Crash(f"a close frame of {answer[1]} bytes")
    try:
        rfc6455.parse_close(answer[2:])
    except ProtocolViolation as exc:
        raise Crash(f"a close answer that its own parse_close refuses ({exc.code})") from None


class _FakeNode:
    is_connected = True
    name = "gossipy@127.0.0.8"
    creation = 1

    def set_receiver(self, receiver: Callable[[str, bytes], None]) -> None:
        self.receiver = receiver

    def set_watcher(self, up: Callable[[Any], None], down: Callable[[Any, bool], None]) -> None:
        pass

    def broadcast(self, payload: bytes) -> None:
        pass


def peer_broadcast_target(data: bytes) -> bool:
    """A BROADCAST frame's payload from a peer node, handed to the cluster adapter and fanned
    out to a V1 and a V2 socket in the room: dropped with a warning, or delivered; never an
    ERROR or an exception."""
    with _ErrorRecords():
        return _peer_broadcast_run(data)


def _peer_broadcast_run(data: bytes) -> bool:
    node = _FakeNode()
    pubsub = PubSub()
    ClusterAdapter(node, pubsub)  # type: ignore[arg-type]
    router = Router(chat.ROUTES)
    sockets = []
    for serializer in (V1, V2):
        transport = _Transport()
        phoenix_socket = PhoenixSocket(transport, serializer, router, pubsub, 100, "listener")
        phoenix_socket.receive(serializer.encode(Message("1", "1", TOPIC, wire.JOIN, {})))
        sockets.append((phoenix_socket, transport))
    before = [t.frames for _, t in sockets]
    try:
        node.receiver("gossipy@127.0.0.9", data)
    finally:
        for phoenix_socket, _ in sockets:
            phoenix_socket.closed()
    return [t.frames for _, t in sockets] != before


TARGETS: dict[str, Callable[[Any], bool]] = {
    "serializer": serializer_target,
    "socket": socket_target,
    "frame_decoder": frame_decoder_target,
    "handshake": handshake_target,
    "handshake_pair": handshake_pair_target,
    "peer_broadcast": peer_broadcast_target,
    "websocket": websocket_target,
}


# ---- generators ---------------------------------------------------------------------------------

_TOKENS = [b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1e999", b"1e-400", b'"\\ud800"', b'"\\udfff"',
           b'"\\ud83d\\ude00"', b'"\\ud83d"', b'"\\u0000"', b'"\\u"', b"9" * 5000, b"[" * 3000, b'{"a":' * 700,
           b"\xff", b"\xc3", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x00", b"null", b"true", b"false", b"-0",
           b"0.0", b"1.5e308", b'""', b"[]", b"{}", b",", b":", b'"', b"\\", b"[null,", b'"phx_join"',
           b'"phx_leave"', b'"heartbeat"', b'"phoenix"', b'"room:1"', b'"shout"', b'"ref"', b'"topic"',
           b'"payload"', b'"event"', b'"join_ref"', b" ", b"\n"]
_STRINGS = ["", TOPIC, "room:", "room:2", "phoenix", "heartbeat", "phx_join", "phx_leave", "phx_reply", "shout",
            "nope", "héllo ✓", "💬", "\x00", "\n", "a" * 300, "\u202e", "\ufeff", "\ud800", "\udfff", "\ud83d",
            "gossipy@127.0.0.2", "gossipy@127.0.0.3", "gossipy@ws1", "x@y@z", "ok", "nok", "bad_cookie",
            "malformed", "ab" * 32, "AB" * 32, "00" * 32, "zz" * 32]


class Gen:
    """Structure-aware random inputs for the targets, from one seed."""

    def __init__(self, seed: int) -> None:
        self.r = random.Random(seed)

    # -- values
    def string(self) -> str:
        r = self.r
        k = r.random()
        if k < 0.6:
            return r.choice(_STRINGS)
        if k < 0.8:
            return "".join(chr(r.choice([r.randrange(32, 127), r.randrange(0x80, 0x800),
                                         r.randrange(0xD800, 0xE000), r.randrange(0x10000, 0x110000),
                                         r.randrange(0, 32)])) for _ in range(r.randrange(0, 12)))
        return r.choice(_STRINGS) + str(r.randrange(1000))

    def number(self) -> Any:
        return self.r.choice([0, 1, -1, 7, 2**31, 2**63, -2**64, 10**30, 0.5, -0.0, 1e308, 5e-324,
                              float("nan"), float("inf"), float("-inf"), self.r.randrange(-10**6, 10**6)])

    def value(self, depth: int = 0) -> Any:
        r = self.r
        k = r.random()
        if depth > 3 or k < 0.35:
            return r.choice([None, True, False, self.number(), self.string(), self.string()])
        if k < 0.6:
            return [self.value(depth + 1) for _ in range(r.randrange(0, 4))]
        return {self.string(): self.value(depth + 1) for _ in range(r.randrange(0, 4))}

    def ref(self) -> Any:
        return self.r.choice([None, "1", "2", 0, 3, self.string(), self.number(), True, [], {}])

    def dumps(self, value: Any) -> str:
        """JSON text, NaN and lone surrogates included (as JSON escapes)."""
        return json.dumps(value, ensure_ascii=self.r.random() < 0.5 or _has_surrogate(value))

    # -- mutations
    def mutate(self, data: bytes) -> bytes:
        r = self.r
        b = bytearray(data)
        for _ in range(r.choice([1, 1, 1, 2, 3, 8])):
            k = r.random()
            pos = r.randrange(len(b) + 1)
            if k < 0.2 and b:
                b[min(pos, len(b) - 1)] ^= 1 << r.randrange(8)
            elif k < 0.35 and b:
                b[min(pos, len(b) - 1)] = r.choice([0, 0x7F, 0x80, 0xFF, 0x22, 0x5C, 0x7B, 0x5B, 0x30])
            elif k < 0.6:
                b[pos:pos] = r.choice(_TOKENS)
            elif k < 0.75 and b:
                end = min(len(b), pos + r.randrange(1, 16))
                del b[pos:end]
            elif k < 0.85 and b:
                end = min(len(b), pos + r.randrange(1, 32))
                b[pos:pos] = b[pos:end] * r.randrange(1, 4)
            elif k < 0.92:
                del b[pos:]
            else:
                b[pos:pos] = bytes(r.randrange(256) for _ in range(r.randrange(1, 8)))
        return bytes(b)

    # -- Phoenix frames
    def phoenix_value(self, vsn: str) -> Any:
        r = self.r
        topic = r.choice([TOPIC, TOPIC, "phoenix", "room:2", self.string()])
        event = r.choice(["phx_join", "shout", "shout", "heartbeat", "phx_leave", self.string()])
        payload = r.choice([{}, {"message": self.value()}, {"message": self.string()}, self.value()])
        fields: list[Any] = [r.choice(["1", self.ref()]), self.ref(), topic, event, payload]
        if r.random() < 0.2:  # one field of another type
            fields[r.randrange(5)] = self.value()
        if vsn == V2.vsn:
            if r.random() < 0.05:
                return fields[:r.randrange(6)]
            return fields
        obj = {"topic": fields[2], "event": fields[3], "payload": fields[4], "ref": fields[1]}
        if r.random() < 0.1:
            obj.pop(r.choice(list(obj)))
        if r.random() < 0.1:
            obj["join_ref"] = fields[0]
        return obj

    def phoenix_frame(self, vsn: str) -> str | bytes:
        r = self.r
        k = r.random()
        if k < 0.6:
            text = self.dumps(self.phoenix_value(vsn))
            return text if not _has_surrogate_str(text) else text.encode("utf-8", "surrogatepass")
        if k < 0.95:
            return self.mutate(self.dumps(self.phoenix_value(vsn)).encode("utf-8", "surrogatepass"))
        return bytes(r.randrange(256) for _ in range(r.randrange(0, 40)))

    def serializer_case(self) -> tuple[str, str | bytes]:
        vsn = self.r.choice([V1.vsn, V2.vsn])
        return vsn, self.phoenix_frame(vsn)

    def socket_case(self) -> tuple[str, list[str | bytes]]:
        vsn = self.r.choice([V1.vsn, V2.vsn])
        join = V2.encode(Message("1", "1", TOPIC, wire.JOIN, {})) if vsn == V2.vsn else \
            V1.encode(Message(None, "1", TOPIC, wire.JOIN, {}))
        frames: list[str | bytes] = [join] if self.r.random() < 0.8 else []
        frames += [self.phoenix_frame(vsn) for _ in range(self.r.randrange(1, 5))]
        # The websocket reader hands a text frame over as str, decoded strictly; only V1 takes
        # binary frames.
        if vsn == V2.vsn:
            frames = [f.decode("utf-8", "replace") if isinstance(f, bytes) else f for f in frames]
        return vsn, frames

    # -- peer stream frames
    def stream(self) -> bytes:
        r = self.r
        out = bytearray()
        for _ in range(r.randrange(0, 6)):
            k = r.random()
            kind = r.choice(list(FrameType)).value if k < 0.9 else r.randrange(256)
            payload = (self.dumps(self.value()).encode("utf-8", "surrogatepass") if r.random() < 0.6
                       else bytes(r.randrange(256) for _ in range(r.randrange(0, 20))))
            length = len(payload) + 1
            if r.random() < 0.1:
                length = r.choice([0, 1, length - 1, length + 1, HANDSHAKE_MAX_FRAME, HANDSHAKE_MAX_FRAME + 1,
                                   MAX_FRAME, MAX_FRAME + 1, 2**32 - 1])
            out += length.to_bytes(4, "big") + bytes((kind,)) + payload
        if r.random() < 0.2:
            out = bytearray(self.mutate(bytes(out)))
        return bytes(out)

    def frame_decoder_case(self) -> tuple[int, bytes, list[int]]:
        data = self.stream()
        cuts = [self.r.randrange(len(data) + 1) for _ in range(self.r.randrange(0, 6))]
        return self.r.choice([HANDSHAKE_MAX_FRAME, MAX_FRAME, 8, 1]), data, cuts

    # -- handshakes
    def field(self, good: Any) -> Any:
        r = self.r.random()
        return good if r < 0.85 else self.value() if r < 0.95 else self.string()

    def fields(self, good: dict[str, Any]) -> dict[str, Any]:
        out = {k: self.field(v) for k, v in good.items()}
        if self.r.random() < 0.1 and out:
            out.pop(self.r.choice(list(out)))
        return out

    def handshake_frame(self, frame_type: FrameType, good: dict[str, Any]) -> bytes:
        if self.r.random() < 0.07:
            frame_type = self.r.choice(list(FrameType))
        payload = self.dumps(self.fields(good)).encode("utf-8", "surrogatepass")
        return encode(frame_type, payload, max_size=2**31)

    def handshake_case(self) -> tuple[str, bytes]:
        r = self.r
        role = r.choice(["acceptor", "initiator"])
        hexes = lambda: r.choice(["%064x" % r.getrandbits(256), "ab" * 32, "AB" * 32, "0" * 63])  # noqa: E731
        if role == "acceptor":
            steps = [(FrameType.NAME, {"name": r.choice(["gossipy@127.0.0.2", "gossipy@127.0.0.9"]),
                                       "creation": r.choice([1, 0, 2**32 - 1]), "versions": [1, 1],
                                       "hidden": r.random() < 0.3}),
                     (FrameType.CHALLENGE_REPLY, {"challenge": hexes(), "digest": hexes()})]
        else:
            steps = [(FrameType.STATUS, {"status": r.choice(["ok", "ok", "nok"]), "version": 1}),
                     (FrameType.CHALLENGE, {"name": ME_B.name, "creation": 3, "challenge": hexes()}),
                     (FrameType.CHALLENGE_ACK, {"digest": hexes()})]
        if r.random() < 0.05:
            steps.insert(r.randrange(len(steps) + 1), (FrameType.REFUSE, {"reason": r.choice(_STRINGS)}))
        data = b"".join(self.handshake_frame(t, g) for t, g in steps[:r.randrange(1, len(steps) + 2)])
        if r.random() < 0.25:
            data = self.mutate(data)
        return role, data

    def peer_broadcast_case(self) -> bytes:
        r = self.r
        value: Any = [r.choice([TOPIC, TOPIC, self.string()]), r.choice(["shout", self.string()]),
                      r.choice([{"message": self.value()}, self.value()])]
        if r.random() < 0.15:
            value = self.value()
        data = self.dumps(value).encode("utf-8", "surrogatepass")
        return self.mutate(data) if r.random() < 0.3 else data

    # -- client websocket frames
    def ws_payload(self, opcode: int) -> bytes:
        r = self.r
        k = r.random()
        if opcode == rfc6455.Opcode.CLOSE and k < 0.7:
            code = r.choice([1000, 1001, 1002, 1007, 1011, 1014, 3000, 4999, 0, 999, 1004, 1005, 1006, 1015, 1016,
                             2999, 5000, 65535])
            return code.to_bytes(2, "big") + self.string().encode("utf-8", "surrogatepass")[:r.choice([123, 200])]
        if k < 0.2:
            return self.dumps(self.phoenix_value(r.choice([V1.vsn, V2.vsn]))).encode("utf-8", "surrogatepass")
        if k < 0.75:
            return self.string().encode("utf-8", "surrogatepass")
        if k < 0.97:
            return r.randbytes(r.randrange(0, 40))
        # Around the length encodings' bounds (7, 16, 64 bits) and the limits.
        return bytes(r.choice([0, 0x80, 0xFF])) * r.choice([125, 126, 127, 200, 1000, 1001, 0xFFFF, 0x10000])

    def ws_frame(self, opcode: int, payload: bytes, fin: bool) -> bytes:
        """A client frame, mostly as RFC 6455 5.2 has it: sometimes a reserved bit, no mask, a
        longer length field than needed, or a length that is not the payload's."""
        r = self.r
        first = (0x80 if fin else 0) | opcode
        if r.random() < 0.03:
            first |= r.choice([0x40, 0x20, 0x10])
        length = len(payload)
        if r.random() < 0.05:  # a lie: a truncated frame, or the next frame's bytes as this one's
            length = r.choice([0, 1, 125, 126, 127, 0xFFFF, 0x10000, length + 1, max(0, length - 1), 2**63,
                               2**64 - 1, (1 << 62) + 5])
        width = 0 if length < 126 else 2 if length <= 0xFFFF else 8
        if r.random() < 0.05:  # not the shortest length field (RFC 6455 wants it, readers accept it)
            width = r.choice([w for w in (2, 8) if w >= width])
        masked = r.random() > 0.03
        head = bytes((first, (0x80 if masked else 0) | {0: length, 2: 126, 8: 127}[width]))
        head += length.to_bytes(width, "big") if width else b""
        if not masked:
            return head + payload
        if len(payload) > 1000 or r.random() < 0.1:  # a key of zeros masks nothing (and costs nothing)
            return head + b"\0\0\0\0" + payload
        key = r.randbytes(4)
        return head + key + rfc6455.unmask(key, payload)

    def ws_stream(self) -> bytes:
        """Messages, fragmented at random bytes (a character split across two fragments, say),
        with control frames between the fragments, and now and then a frame out of place."""
        r = self.r
        out = bytearray()
        for _ in range(r.randrange(0, 6)):
            k = r.random()
            opcode = r.choice([rfc6455.Opcode.TEXT, rfc6455.Opcode.TEXT, rfc6455.Opcode.BINARY, rfc6455.Opcode.PING, rfc6455.Opcode.PONG,
                               rfc6455.Opcode.CLOSE]) if k < 0.92 else r.randrange(16)
            payload = self.ws_payload(opcode)
            if opcode in (rfc6455.Opcode.TEXT, rfc6455.Opcode.BINARY) and r.random() < 0.4:
                cuts = sorted(r.randrange(len(payload) + 1) for _ in range(r.randrange(1, 4)))
                pieces = [payload[a:b] for a, b in pairwise([0, *cuts, len(payload)])]
                for i, piece in enumerate(pieces):
                    last = i == len(pieces) - 1
                    out += self.ws_frame(opcode if i == 0 else rfc6455.Opcode.CONTINUATION, piece,
                                         fin=last if r.random() < 0.95 else not last)
                    if not last and r.random() < 0.3:
                        control = r.choice([rfc6455.Opcode.PING, rfc6455.Opcode.PONG, rfc6455.Opcode.CLOSE, rfc6455.Opcode.TEXT])
                        out += self.ws_frame(control, self.ws_payload(control), fin=r.random() < 0.95)
            else:
                out += self.ws_frame(opcode, payload, fin=r.random() < 0.95)
        return bytes(out)

    def websocket_case(self) -> tuple[int, bytes, list[int]]:
        r = self.r
        data = self.ws_stream()
        k = r.random()
        if k < 0.2:
            data = self.mutate(data)
        elif k < 0.3:  # the head of one stream, the tail of another
            other = self.ws_stream()
            data = data[:r.randrange(len(data) + 1)] + other[r.randrange(len(other) + 1):]
        elif k < 0.35:
            data = data[:r.randrange(len(data) + 1)]
        if len(data) < 300 and r.random() < 0.1:
            cuts = list(range(len(data)))  # a byte at a time
        else:
            cuts = [r.randrange(len(data) + 1) for _ in range(r.randrange(0, 8))]
        return r.choice([64 * 1024, 1000, 125, 16, 1]), data, cuts

    def case(self, target: str) -> Any:
        if target == "serializer":
            return self.serializer_case()
        if target == "socket":
            return self.socket_case()
        if target == "frame_decoder":
            return self.frame_decoder_case()
        if target == "handshake":
            return self.handshake_case()
        if target == "handshake_pair":
            return self.r.randrange(5), self.r.getrandbits(32)
        if target == "websocket":
            return self.websocket_case()
        return self.peer_broadcast_case()


def _has_surrogate_str(text: str) -> bool:
    return any("\ud800" <= ch <= "\udfff" for ch in text)


def _has_surrogate(value: Any) -> bool:
    if isinstance(value, str):
        return _has_surrogate_str(value)
    if isinstance(value, list):
        return any(_has_surrogate(v) for v in value)
    if isinstance(value, dict):
        return any(_has_surrogate(k) or _has_surrogate(v) for k, v in value.items())
    return False


# ---- the run ------------------------------------------------------------------------------------

class Result(NamedTuple):
    target: str
    inputs: int
    accepted: int
    seconds: float
    crashes: dict[str, tuple[int, str, str]]  # signature -> (count, example input repr, traceback)


def _signature(exc: BaseException) -> str:
    """One line per kind of crash: the exception type and where it was raised (not its
    message, which varies with the input)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = frames[-1] if frames else None
    place = f"{os.path.basename(where.filename)}:{where.lineno}" if where else "?"
    first_line = (str(exc).splitlines() or [""])[0][:100]
    if isinstance(exc, Crash):  # the contract that broke, without the input's details
        first_line = first_line.split(":")[0]
    return f"{type(exc).__name__} at {place} ({first_line.encode('ascii', 'backslashreplace').decode()})" \
        if isinstance(exc, Crash) else f"{type(exc).__name__} at {place}"


def run_target(target: str, inputs: int, seed: int) -> Result:
    """Generates and runs ``inputs`` cases of one target (in this process)."""
    check = TARGETS[target]
    gen = Gen(seed)
    accepted = 0
    crashes: dict[str, tuple[int, str, str]] = {}
    started = time.perf_counter()
    for _ in range(inputs):
        case = gen.case(target)
        try:
            if check(case):
                accepted += 1
        except Exception as exc:  # noqa: BLE001 - anything escaping a target is the finding
            signature = _signature(exc)
            count, example, trace = crashes.get(signature, (0, repr(case)[:4000], traceback.format_exc()))
            crashes[signature] = (count + 1, example, trace)
    return Result(target, inputs, accepted, time.perf_counter() - started, crashes)


WEIGHTS = {"serializer": 0.25, "socket": 0.15, "frame_decoder": 0.15, "handshake": 0.15, "handshake_pair": 0.1,
           "peer_broadcast": 0.1, "websocket": 0.1}


def _job(args: tuple[str, int, int]) -> Result:
    return run_target(*args)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", type=int, default=1_000_000, help="total generated inputs (default 1,000,000)")
    parser.add_argument("--target", choices=sorted(TARGETS), action="append", help="only these targets")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--crash-dir", default=None, help="where each crash's input goes (default: a temp dir)")
    args = parser.parse_args(argv)
    quiet_logs()

    targets = args.target or list(WEIGHTS)
    total_weight = sum(WEIGHTS[t] for t in targets)
    jobs: list[tuple[str, int, int]] = []
    chunks = max(1, args.workers) * 4
    for t in targets:
        share = round(args.inputs * WEIGHTS[t] / total_weight)
        for c in range(chunks):
            n = share // chunks + (1 if c < share % chunks else 0)
            if n:
                jobs.append((t, n, args.seed * 1000 + len(jobs)))
    print(f"fuzz: {args.inputs:,} inputs, targets {', '.join(targets)}, {args.workers} worker(s), seed {args.seed}",
          flush=True)
    started = time.perf_counter()
    if args.workers > 1:
        with multiprocessing.get_context("fork").Pool(args.workers) as pool:
            results = pool.map(_job, jobs, chunksize=1)
    else:
        results = [_job(job) for job in jobs]
    wall = time.perf_counter() - started

    merged: dict[str, Result] = {}
    for r in results:
        m = merged.get(r.target)
        if m is None:
            merged[r.target] = r
            continue
        crashes = dict(m.crashes)
        for sig, (n, ex, tb) in r.crashes.items():
            crashes[sig] = (crashes.get(sig, (0, ex, tb))[0] + n, crashes.get(sig, (0, ex, tb))[1],
                            crashes.get(sig, (0, ex, tb))[2])
        merged[r.target] = Result(r.target, m.inputs + r.inputs, m.accepted + r.accepted,
                                  m.seconds + r.seconds, crashes)
    print(f"{'target':<15} {'inputs':>10} {'accepted':>9} {'refused':>9} {'crashes':>8} {'cpu s':>7} {'inputs/s':>9}")
    total_inputs = total_crashes = 0
    for t in targets:
        r = merged[t]
        crashed = sum(n for n, _, _ in r.crashes.values())
        total_inputs += r.inputs
        total_crashes += crashed
        print(f"{t:<15} {r.inputs:>10,} {r.accepted:>9,} {r.inputs - r.accepted - crashed:>9,} {crashed:>8,} "
              f"{r.seconds:>7.1f} {r.inputs / r.seconds if r.seconds else 0:>9,.0f}")
    print(f"{'total':<15} {total_inputs:>10,} {'':>9} {'':>9} {total_crashes:>8,} wall {wall:.1f} s "
          f"({total_inputs / wall:,.0f} inputs/s)")
    if not total_crashes:
        return 0
    crash_dir = args.crash_dir or tempfile.mkdtemp(prefix="gossipy-fuzz-")
    os.makedirs(crash_dir, exist_ok=True)
    for t in targets:
        for i, (sig, (n, example, trace)) in enumerate(sorted(merged[t].crashes.items())):
            path = os.path.join(crash_dir, f"{t}-{i}.txt")
            with open(path, "w", encoding="utf-8", errors="backslashreplace") as f:
                f.write(f"{sig}\n{n} input(s); the first:\n{example}\n\n{trace}")
            print(f"CRASH {t}: {n} x {sig}\n      first input and traceback: {path}")
    return 1


if __name__ == "__main__":
    sys.exit(main())
