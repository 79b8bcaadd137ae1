"""Frames of the peer stream, and a sans-I/O decoder for them.

On the wire a frame is a 4-byte big-endian length, then that many bytes: one type byte and
the payload. Payloads are JSON (or empty): nothing a peer sends is ever unpickled or
evaluated. The decoder checks each length prefix against its limit before it buffers the
body, so a hostile prefix costs four bytes, not an allocation.
"""

from __future__ import annotations

import struct
from enum import IntEnum
from typing import Any, NamedTuple

from .. import strictjson

_PREFIX = struct.Struct(">I")
PREFIX_SIZE = _PREFIX.size

# Handshake messages are a few hundred bytes; an unauthenticated stranger gets no more.
HANDSHAKE_MAX_FRAME = 4096
# A broadcast carries one client frame (64 KiB by default) plus its topic and event; the
# limit leaves room for larger endpoint settings while bounding what one peer can make us hold.
MAX_FRAME = 8 * 1024 * 1024


class FrameType(IntEnum):
    # The handshake, named after Erlang's dist_util messages.
    NAME = 1
    STATUS = 2
    CHALLENGE = 3
    CHALLENGE_REPLY = 4
    CHALLENGE_ACK = 5
    REFUSE = 6
    # An up session between members.
    TICK = 16
    BROADCAST = 17
    MEMBERS = 18
    LEAVE = 19
    # A hidden (control) connection: one question, one answer.
    QUERY = 20
    ANSWER = 21


_TYPES = {t.value: t for t in FrameType}
# The first byte of a TLS record carrying a handshake (a ClientHello) or an alert.
_TLS_RECORDS = (0x16, 0x15)


class FrameError(ValueError):
    """Bytes that are not a valid frame: the stream they came on cannot be trusted further."""


class Frame(NamedTuple):
    type: FrameType
    payload: bytes


def encode(frame_type: FrameType, payload: bytes = b"", max_size: int = MAX_FRAME) -> bytes:
    """One frame's bytes; raises FrameError if the peer would refuse it as oversized."""
    length = len(payload) + 1
    if length > max_size:
        raise FrameError(f"a {frame_type.name} frame of {length} bytes exceeds the limit of {max_size}")
    return _PREFIX.pack(length) + bytes((frame_type,)) + payload


def encode_json(frame_type: FrameType, value: Any) -> bytes:
    return encode(frame_type, strictjson.dumps(value).encode())


def decode_json(frame: Frame) -> Any:
    """The frame's JSON payload; FrameError if it is not strict JSON (see server.strictjson)."""
    try:
        return strictjson.loads(frame.payload)
    except strictjson.NotJSON:
        raise FrameError(f"the payload of a {frame.type.name} frame is not JSON") from None


class FrameDecoder:
    """Bytes in, frames out. ``max_size`` may be raised once the peer is authenticated."""

    def __init__(self, max_size: int = HANDSHAKE_MAX_FRAME) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._error: FrameError | None = None
        # Nothing decoded yet: the first bytes may be a TLS record (a handshake or an alert).
        self._fresh = True

    def receive_data(self, data: bytes, max_frames: int | None = None) -> list[Frame]:
        """The frames completed by ``data``; raises FrameError, then again on every call.
        With ``max_frames``, the frames past that many stay buffered for the next call (which
        may pass ``b""``), to be checked against whatever ``max_size`` is by then."""
        if self._error is not None:
            raise self._error
        buffer = self._buffer
        buffer += data
        frames: list[Frame] = []
        pos = 0
        end = len(buffer)
        while end - pos >= PREFIX_SIZE and len(frames) != max_frames:
            (length,) = _PREFIX.unpack_from(buffer, pos)
            if length == 0 or length > self.max_size:
                if self._fresh and buffer[pos] in _TLS_RECORDS and buffer[pos + 1] == 3:
                    self._error = FrameError("TLS, not frames: is node.tls set on one of the two nodes only?")
                else:
                    self._error = FrameError(f"frame length {length} is outside 1..{self.max_size}")
                raise self._error
            start = pos + PREFIX_SIZE
            if end - start < length:
                break
            frame_type = _TYPES.get(buffer[start])
            if frame_type is None:
                self._error = FrameError(f"unknown frame type {buffer[start]}")
                raise self._error
            frames.append(Frame(frame_type, bytes(buffer[start + 1:start + length])))
            pos = start + length
        del buffer[:pos]
        if frames:
            self._fresh = False
        return frames

