"""permessage-deflate (RFC 7692), server side, without I/O: the negotiation, the compressed
frames a server sends, and the inflating of what a client sends.

The server compresses in one of two ways, chosen by ``endpoint.deflate_context_takeover``:

- shared (the default): it asks for ``server_no_context_takeover`` and compresses every
  message alone, so a broadcast is compressed once and the same bytes go to every
  compressing socket. One compressor per window size serves the whole process: a full flush
  after each message empties its window and ends the message on a byte boundary, which is
  what a message compressed alone needs (RFC 7692 7.2.1). A short message gains almost
  nothing alone, so it goes uncompressed (``MIN_COMPRESSED``).
- per socket (context takeover, as Phoenix does): each socket keeps a compressor
  (``ContextDeflater``) whose window holds what it sent before, so a chat-sized message,
  which repeats most of the ones before it, shrinks several times; at one compression per
  socket per message and a compressor's memory per socket (bench/README.md).
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import NamedTuple

from .rfc6455 import CloseCode, Opcode, ProtocolViolation, binary_frame, compressed_frame, frame_payload, text_frame

EXTENSION = "permessage-deflate"
# What a compressed message's payload lacks at its end (RFC 7692 7.2.1): the empty stored block
# of a sync (or full) flush. The receiver appends it back before inflating.
_TAIL = b"\x00\x00\xff\xff"
# The largest deflate window (15 bits): how far back a client's message may refer.
_WINDOW = 1 << zlib.MAX_WBITS
# A message shorter than this is sent as it is: a small JSON message compressed alone saves a
# few bytes for several microseconds of CPU (bench/README.md, "permessage-deflate").
MIN_COMPRESSED = 256
# zlib cannot compress raw deflate with a 256-byte window; a 512-byte one never reaches further
# back than 250 bytes (its window minus MIN_LOOKAHEAD), so it suits a client that asked for 8.
_SMALLEST_ZLIB_WINDOW = 9
# A per-socket compressor: a 4 KB window, a small hash table, zlib's fastest level. A chat
# message repeats mostly the last few it follows, which 4 KB holds; a larger window shrinks
# them a little more for much more memory per socket (bench/README.md, "permessage-deflate").
CONTEXT_WINDOW_BITS = 12
CONTEXT_MEM_LEVEL = 2
CONTEXT_LEVEL = 1
_WINDOW_BITS = re.compile(r"(?:[89]|1[0-5])\Z")
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+\Z")
# Offers are split at commas, and parameters at semicolons, outside quoted strings.
_ITEM = re.compile(r'(?:[^,;"]|"(?:[^"\\]|\\.)*")+|[,;]')
_QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"\Z')
_ESCAPE = re.compile(r"\\(.)")


class Agreement(NamedTuple):
    """An accepted offer: the response's extension, and how each side compresses."""

    response: str
    server_window_bits: int
    client_context_takeover: bool
    # True: the server compresses with a compressor per socket (``ContextDeflater``).
    server_context_takeover: bool


def negotiate(header: str, context_takeover: bool) -> Agreement | None:
    """The first permessage-deflate offer of a ``Sec-WebSocket-Extensions`` header (its lines
    joined with commas) that this server accepts; None when none is. An offer is declined,
    and the next one tried, when it has an unknown or repeated parameter, or a value out of
    its range (RFC 7692 7). With ``context_takeover`` the server keeps its context, unless the
    offer says ``server_no_context_takeover``."""
    for offer in _offers(header):
        if offer and offer[0] == (EXTENSION, None):
            agreement = _accept(offer[1:], context_takeover)
            if agreement is not None:
                return agreement
    return None


def _offers(header: str) -> list[list[tuple[str, str | None]]]:
    """The header's offers, each a list of (name, value) with the extension's name first; an
    offer whose syntax is broken is left empty, so it is declined."""
    offers: list[list[tuple[str, str | None]]] = [[]]
    broken = False
    for item in _ITEM.findall(header):
        if item == ",":
            offers.append([])
            broken = False
        elif item != ";" and not broken:
            parsed = _parameter(item)
            if parsed is None:
                offers[-1], broken = [], True
            else:
                offers[-1].append(parsed)
    return offers


def _parameter(item: str) -> tuple[str, str | None] | None:
    """``name`` or ``name=value`` (a token or a quoted string, unquoted), None if malformed."""
    name, equals, value = (part.strip(" \t") for part in item.partition("="))
    if not _TOKEN.match(name):
        return None
    if not equals:
        return name.lower(), None
    quoted = _QUOTED.match(value)
    if quoted is not None:
        value = _ESCAPE.sub(r"\1", quoted.group(1))
    return (name.lower(), value) if _TOKEN.match(value) else None


def _accept(parameters: list[tuple[str, str | None]], context_takeover: bool) -> Agreement | None:
    names = [name for name, _ in parameters]
    if len(set(names)) != len(names):
        return None
    response = [EXTENSION]
    server_window_bits = 15
    client_context_takeover = True
    for name, value in parameters:
        if name == "server_no_context_takeover" and value is None:
            # A client that asks for it must get it (RFC 7692 7.1.1.1): each message alone.
            context_takeover = False
        elif name == "client_no_context_takeover" and value is None:
            # Echoed, so the client is bound to it, and its messages inflate with no memory kept.
            response.append(name)
            client_context_takeover = False
        elif name == "server_max_window_bits" and value is not None and _WINDOW_BITS.match(value):
            response.append(f"{name}={value}")
            server_window_bits = int(value)
        elif name == "client_max_window_bits" and (value is None or _WINDOW_BITS.match(value)):
            continue  # the client's window may stay as it likes: a 15-bit inflater reads any
        else:
            return None
    if not context_takeover:
        response.insert(1, "server_no_context_takeover")
    return Agreement("; ".join(response), server_window_bits, client_context_takeover, context_takeover)


class Deflater:
    """Builds the frames of one window size, compressing each message alone. Shared by every
    socket that agreed on that window (``deflater``)."""

    __slots__ = ("_compressor",)

    def __init__(self, window_bits: int) -> None:
        bits = max(window_bits, _SMALLEST_ZLIB_WINDOW)
        # zlib slides its hash table, 2 ** (memLevel + 7) entries, each time the window fills
        # (and clears it at each full flush). Its default memLevel, 8, sizes the table for its
        # default 15-bit window; a smaller window spent its time sliding it. 16 entries per byte
        # of window, at most the default, compresses faster, and as well within about 1 %, on
        # every data set of bench/README.md's "permessage-deflate".
        self._compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -bits, min(bits - 3, 8))

    def text_frame(self, text: str) -> bytes:
        # Characters, not bytes, against the threshold: a short message is not encoded twice.
        compressed = None if len(text) < MIN_COMPRESSED else self._compress(text.encode())
        return text_frame(text) if compressed is None else compressed_frame(Opcode.TEXT, compressed)

    def binary_frame(self, data: bytes) -> bytes:
        compressed = None if len(data) < MIN_COMPRESSED else self._compress(data)
        return binary_frame(data) if compressed is None else compressed_frame(Opcode.BINARY, compressed)

    def _compress(self, data: bytes) -> bytes | None:
        """``data`` compressed alone, without the tail; None if that is no smaller."""
        compressed = self._compressor.compress(data) + self._compressor.flush(zlib.Z_FULL_FLUSH)
        return compressed[:-len(_TAIL)] if len(compressed) - len(_TAIL) < len(data) else None


@functools.cache
def deflater(window_bits: int) -> Deflater:
    """The process's one ``Deflater`` for a window size (at most 8 sizes: 8 to 15 bits)."""
    return Deflater(window_bits)


class ContextDeflater:
    """One socket's compressor, with context takeover: a message may refer back into the ones
    this socket sent before it. A sync flush ends each message on a byte boundary and keeps the
    window. The client inflates them in the order it reads them, so they must be compressed in
    the order they are written, and every message compressed must be sent (``WebSocket``
    compresses a frame as it joins the outbox). Every message is compressed: one sent plain
    after being compressed would leave the client's context behind this one's, and a short one
    is where the context gains most."""

    __slots__ = ("_compressor",)

    def __init__(self, window_bits: int) -> None:
        # Fewer bits than agreed is always readable: the client keeps at least as much window.
        bits = max(min(window_bits, CONTEXT_WINDOW_BITS), _SMALLEST_ZLIB_WINDOW)
        self._compressor = zlib.compressobj(CONTEXT_LEVEL, zlib.DEFLATED, -bits, CONTEXT_MEM_LEVEL)

    def compress_frame(self, frame: bytes) -> bytes:
        """A data frame as ``rfc6455`` builds it (``text_frame``, ``binary_frame``: prepared
        once, shared by plain sockets), compressed with this socket's context."""
        opcode, payload = frame_payload(frame)
        if not payload:
            # Plain, as it adds nothing to the context, and needs no flush: zlib declines a
            # flush that follows another with no input between them (deflate.c).
            return frame
        compressor = self._compressor
        compressed = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return compressed_frame(opcode, compressed[:-len(_TAIL)])


class Inflater:
    """Inflates one socket's compressed messages. With the client's context takeover, a message
    may refer back into the ones before it: the socket keeps their last 32 KB (the deflate
    window), not a decompressor, whose state holds ~40 KB however little the client sent
    (bench/README.md); each message gets a fresh decompressor primed with that history."""

    __slots__ = ("_history",)

    def __init__(self, context_takeover: bool) -> None:
        # None: no context takeover, nothing kept between messages.
        self._history: bytes | None = b"" if context_takeover else None

    def inflate(self, data: bytes, max_size: int) -> bytes:
        """A message's payload, inflated; past ``max_size`` it stops and raises TOO_BIG."""
        history = self._history
        decompressor = zlib.decompressobj(-zlib.MAX_WBITS, zdict=history) if history else \
            zlib.decompressobj(-zlib.MAX_WBITS)
        try:
            # One byte over the limit is enough to know: the rest is never inflated.
            message = decompressor.decompress(data + _TAIL, max_size + 1)
        except zlib.error as exc:
            raise ProtocolViolation(CloseCode.INVALID_DATA, f"a compressed message that does not inflate ({exc})") from None
        if len(message) > max_size:
            raise ProtocolViolation(CloseCode.TOO_BIG, f"a message over {max_size} bytes once inflated")
        if history is not None:
            self._history = message[-_WINDOW:] if len(message) >= _WINDOW else history[len(message) - _WINDOW:] + message
        return message
