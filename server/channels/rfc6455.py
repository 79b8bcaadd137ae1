"""The websocket wire format (RFC 6455), server side, without I/O.

``MessageReader`` takes bytes as they arrive and gives whole messages and control frames;
a client that breaks the protocol gets a ``ProtocolViolation`` carrying the close code to
answer with. The frames a server sends are built by the functions below, once, as bytes.

An idle connection costs this module nothing but a ``MessageReader`` of a few slots holding
shared values: a quiet socket keeps no buffer. Compression (RFC 7692) is ``rfc7692``'s; the
reader only lets RSV1 through to the ``inflate`` it was given, and the frame builders set it.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import struct
from collections.abc import Callable
from enum import IntEnum


class Opcode(IntEnum):
    """A frame's opcode (RFC 6455 5.2). The reader hands out the frame's own int, which compares
    equal to these: converting each frame's opcode to a member would cost a lookup per frame."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


class CloseCode(IntEnum):
    """Close frame status codes (RFC 6455 7.4.1, and 1012-1014 from the IANA registry): every
    one a peer may send, and NO_STATUS. The JS client reconnects after anything but NORMAL."""

    NORMAL = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED = 1003
    # What a close frame without a status code stands for (RFC 6455 7.1.5); never on the wire.
    NO_STATUS = 1005
    INVALID_DATA = 1007
    POLICY = 1008
    TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    SERVER_ERROR = 1011
    SERVICE_RESTART = 1012
    TRY_AGAIN_LATER = 1013
    BAD_GATEWAY = 1014


# Built once: on Python 3.11 reading an enum member as an attribute goes through EnumType's
# __getattr__ hook, a cost per frame where it is compared; these are one hash lookup or an int.
DATA_OPCODES = frozenset((Opcode.TEXT, Opcode.BINARY))
_CONTROL_OPCODES = frozenset((Opcode.CLOSE, Opcode.PING, Opcode.PONG))
# The first byte of a server frame: FIN (the server never fragments) and the opcode.
_FINAL_TEXT = 0x80 | Opcode.TEXT
_FINAL_BINARY = 0x80 | Opcode.BINARY
# RSV1 on a message's first frame: its payload is compressed (RFC 7692 6).
_RSV1 = 0x40
_FINAL_CLOSE = 0x80 | Opcode.CLOSE
_FINAL_PONG = 0x80 | Opcode.PONG
# Close codes a peer may put in a close frame (RFC 6455 7.4.1, 7.4.2; 3000-4999 are checked
# apart): the rest are reserved.
_SENDABLE_CODES = frozenset(CloseCode) - {CloseCode.NO_STATUS}
_ACCEPT_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class ProtocolViolation(Exception):
    """The client broke RFC 6455; ``code`` is the close code to answer with. ``messages`` are
    the whole messages that came before the offence in the same ``receive``: the client sent
    them before it went wrong, so they are handled, in order."""

    def __init__(self, code: CloseCode, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.messages: list[tuple[int, str | bytes]] = []


def accept_key(client_key: str) -> str:
    """``Sec-WebSocket-Accept`` for a handshake's ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(client_key.encode("ascii") + _ACCEPT_GUID).digest()).decode("ascii")


def _frame(first_byte: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        return struct.pack("!BB", first_byte, length) + payload
    if length <= 0xFFFF:
        return struct.pack("!BBH", first_byte, 126, length) + payload
    return struct.pack("!BBQ", first_byte, 127, length) + payload


def text_frame(text: str) -> bytes:
    """A complete, unmasked text frame: built once per broadcast and written as-is to every
    socket, instead of re-framed per socket."""
    return _frame(_FINAL_TEXT, text.encode())


def binary_frame(data: bytes) -> bytes:
    return _frame(_FINAL_BINARY, data)


def frame_payload(frame: bytes) -> tuple[int, bytes]:
    """The opcode and payload of a whole frame built here (a server's frames are unmasked): so
    a frame prepared once for many sockets can still be compressed by each (``rfc7692``). A
    copy, not a memoryview: for a chat-sized frame, making the view costs more than copying."""
    length = frame[1]
    return frame[0] & 0x0F, frame[2:] if length < 126 else frame[4:] if length == 126 else frame[10:]


def compressed_frame(opcode: int, compressed: bytes) -> bytes:
    """A complete frame of a message compressed by permessage-deflate (RSV1 set)."""
    return _frame(0x80 | _RSV1 | opcode, compressed)


def pong_frame(payload: bytes) -> bytes:
    return _frame(_FINAL_PONG, payload)


def close_frame(code: int, reason: str = "") -> bytes:
    """A close frame; NO_STATUS makes one without a code, as the client's close it answers."""
    if code == CloseCode.NO_STATUS:
        return _frame(_FINAL_CLOSE, b"")
    # A control frame carries at most 125 bytes: 2 for the code, the rest for the reason.
    # Cut at a character boundary: a reason that is not UTF-8 makes the client fail the close.
    fitting = reason.encode()[:123].decode("utf-8", "ignore").encode()
    return _frame(_FINAL_CLOSE, struct.pack("!H", code) + fitting)


def unmask(mask: bytes, payload: bytes) -> bytes:
    """XORs ``payload`` with the repeating 4-byte ``mask``, as one big-integer operation: the
    work runs in C, where a loop over the bytes would run the interpreter once per byte."""
    length = len(payload)
    if not length:
        return payload
    key = (mask * (length // 4 + 1))[:length]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(length, "big")


def parse_close(payload: bytes) -> tuple[int, str]:
    """The code and reason of a client's close frame (NO_STATUS, "" when it gave none)."""
    if not payload:
        return CloseCode.NO_STATUS, ""
    if len(payload) == 1:
        raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "a close frame of one byte")
    (code,) = struct.unpack_from("!H", payload)
    if code not in _SENDABLE_CODES and not 3000 <= code <= 4999:
        raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, f"close code {code} may not be sent")
    try:
        reason = payload[2:].decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolViolation(CloseCode.INVALID_DATA, "a close reason that is not UTF-8") from None
    return code, reason


Inflate = Callable[[bytes, int], bytes]
"""A whole compressed message's payload and the reader's ``max_size`` in; the message out.
Raises ProtocolViolation (TOO_BIG past ``max_size``, without inflating the rest)."""


class MessageReader:
    """Client frames in, ``(opcode, payload)`` out: whole TEXT messages as ``str`` (UTF-8
    checked), whole BINARY messages and CLOSE/PING/PONG frames as ``bytes``.

    ``max_size`` bounds a message, however it is fragmented; a frame announcing more is
    refused from its header, before any of its body is buffered. After a violation the
    reader takes nothing more: where the next frame starts is unknowable, and RFC 6455 7.1.7
    says to process no further data from a client that failed the connection.

    With ``inflate`` (permessage-deflate agreed), a message whose first frame has RSV1 is
    compressed: its frames are joined, then inflated, and the result is bounded by
    ``max_size`` too.

    A text message whose bytes arrive in pieces (fragments, or one frame over several reads) is
    UTF-8 checked piece by piece as well, so a client is failed as soon as it sends an invalid
    sequence (RFC 6455 8.1), not once the message is whole. A message whole in one read, the
    common case, is only decoded once.
    """

    __slots__ = ("max_size", "failed", "_inflate", "_pending", "_fragments", "_fragments_opcode",
                 "_fragments_compressed", "_utf8", "_checked")

    def __init__(self, max_size: int, inflate: Inflate | None = None) -> None:
        self.max_size = max_size
        self.failed = False
        self._inflate = inflate
        # Bytes of an unfinished frame: a bytearray that grows in place while a frame trickles
        # in (joining bytes objects would copy the whole frame on every read).
        self._pending: bytearray | None = None
        # One growing bytearray, not a list of fragments: a list would grow by an entry per
        # (even empty) continuation frame, which max_size, counting bytes, would never stop.
        self._fragments: bytearray | None = None
        self._fragments_opcode = 0
        self._fragments_compressed = False
        # The early UTF-8 check of a text message arriving in pieces, and how many payload
        # bytes of the unfinished frame it has seen.
        self._utf8: codecs.IncrementalDecoder | None = None
        self._checked = 0

    def receive(self, data: bytes) -> list[tuple[int, str | bytes]]:
        """The messages completed by ``data``, in order. Raises ProtocolViolation."""
        if self.failed:
            return []
        buffer: bytes | bytearray = data
        if self._pending is not None:
            self._pending += data
            buffer = self._pending
        messages: list[tuple[int, str | bytes]] = []
        try:
            position = self._parse(buffer, messages)
        except ProtocolViolation as violation:
            self.failed = True
            self._pending = self._fragments = None
            self._utf8 = None
            violation.messages = messages
            raise
        if position == len(buffer):
            self._pending = None
        elif buffer is self._pending:
            del buffer[:position]
        else:
            self._pending = bytearray(memoryview(buffer)[position:])
        return messages

    def _parse(self, buffer: bytes | bytearray, messages: list[tuple[int, str | bytes]]) -> int:
        """Appends the whole frames' messages to ``messages``; where the unfinished rest starts."""
        position = 0
        end = len(buffer)
        while end - position >= 2:
            first, second = buffer[position], buffer[position + 1]
            opcode = first & 0x0F
            length = second & 0x7F
            header = 2
            if length == 126:
                header = 4
                if end - position < header:
                    break
                (length,) = struct.unpack_from("!H", buffer, position + 2)
            elif length == 127:
                header = 10
                if end - position < header:
                    break
                (length,) = struct.unpack_from("!Q", buffer, position + 2)
            self._check_header(first, second, opcode, length)
            mask_at = position + header
            frame_end = mask_at + 4 + length
            if frame_end > end:
                if end > mask_at + 4 + self._checked and self._is_plain_text(first, opcode):
                    self._check_unfinished(buffer, mask_at, end)
                break
            payload = unmask(bytes(buffer[mask_at:mask_at + 4]), bytes(buffer[mask_at + 4:frame_end]))
            position = frame_end
            message = self._assemble(first, opcode, payload)
            if message is not None:
                messages.append(message)
        return position

    def _check_header(self, first: int, second: int, opcode: int, length: int) -> None:
        if first & 0x70 and (first & 0x70 != _RSV1 or self._inflate is None or opcode not in DATA_OPCODES):
            raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "reserved bits set (no extension was agreed)"
                                    if self._inflate is None else "reserved bits set (other than RSV1 on a first frame)")
        if not second & 0x80:
            raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "an unmasked frame from a client")
        if opcode in _CONTROL_OPCODES:
            if not first & 0x80 or length > 125:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "a fragmented or over-long control frame")
            return
        if opcode in DATA_OPCODES:
            if self._fragments is not None:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "a new message inside a fragmented one")
        elif opcode == Opcode.CONTINUATION:
            if self._fragments is None:
                raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, "a continuation frame with nothing to continue")
        else:
            raise ProtocolViolation(CloseCode.PROTOCOL_ERROR, f"unknown opcode {opcode:#x}")
        if (len(self._fragments) if self._fragments is not None else 0) + length > self.max_size:
            raise ProtocolViolation(CloseCode.TOO_BIG, f"a message over {self.max_size} bytes")

    def _is_plain_text(self, first: int, opcode: int) -> bool:
        """Whether a frame carries an uncompressed text message's bytes."""
        if opcode == Opcode.TEXT:
            return not first & _RSV1
        return (opcode == Opcode.CONTINUATION and self._fragments_opcode == Opcode.TEXT
                and not self._fragments_compressed)

    def _check_unfinished(self, buffer: bytes | bytearray, mask_at: int, end: int) -> None:
        """UTF-8 checks the payload bytes of an unfinished text frame that arrived since the last
        read, unmasked with the key turned to where they start."""
        offset = self._checked % 4
        mask = bytes(buffer[mask_at + offset:mask_at + 4]) + bytes(buffer[mask_at:mask_at + offset])
        start = mask_at + 4 + self._checked
        self._check_utf8(unmask(mask, bytes(buffer[start:end])))
        self._checked = end - mask_at - 4

    def _check_utf8(self, data: bytes) -> None:
        """Feeds the next bytes of a text message to its incremental UTF-8 check."""
        if self._utf8 is None:
            self._utf8 = codecs.getincrementaldecoder("utf-8")()
        try:
            self._utf8.decode(data)
        except UnicodeDecodeError as exc:
            raise ProtocolViolation(CloseCode.INVALID_DATA, f"a text frame that is not UTF-8 ({exc.reason})") from None

    def _assemble(self, first: int, opcode: int, payload: bytes) -> tuple[int, str | bytes] | None:
        if opcode in _CONTROL_OPCODES:
            return opcode, payload
        checked, self._checked = self._checked, 0
        if not first & 0x80:
            if self._fragments is None:
                self._fragments, self._fragments_opcode = bytearray(), opcode
                self._fragments_compressed = bool(first & _RSV1)
            self._fragments += payload
            if self._fragments_opcode == Opcode.TEXT and not self._fragments_compressed:
                self._check_utf8(payload[checked:])
            return None
        compressed = first & _RSV1
        if self._fragments is not None:
            self._fragments += payload
            payload = bytes(self._fragments)
            opcode = self._fragments_opcode
            compressed = self._fragments_compressed
            self._fragments = None
        self._utf8 = None
        if compressed:
            assert self._inflate is not None  # as _check_header lets RSV1 through only then
            payload = self._inflate(payload, self.max_size)
        if opcode == Opcode.BINARY:
            return opcode, payload
        try:
            return opcode, payload.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolViolation(CloseCode.INVALID_DATA, f"a text frame that is not UTF-8 ({exc.reason} at byte {exc.start})") from None
