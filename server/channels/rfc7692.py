"""permessage-deflate (RFC 7692), server side, without I/O: the negotiation, the compressed
frames a server sends, and the inflating of what a client sends.

The server compresses in one of two ways, chosen by ``endpoint.deflate_context_takeover``:

- shared (the default): it asks for ``server_no_context_takeover`` and compresses every
  message alone, so a broadcast is compressed once and the same bytes go to every
  compressing socket. One compressor per window size serves the whole process: a full flush
  after each message empties its window and ends the message on a byte boundary, which is
  what a message compressed alone needs (RFC 7692 7.2.1). A short message gains almost
  nothing alone, so it goes uncompressed (``MIN_COMPRESSED``).
- with context (context takeover, as Phoenix does): a message may refer back into the ones
  the socket was sent before, so a chat-sized message, which repeats most of the ones before
  it, shrinks several times (bench/README.md). A compressor's output depends only on its
  state, so the sockets that were sent the same compressed messages share one compressor
  (a ``DeflateContext``), and a broadcast is compressed once per such group, not per socket;
  each socket's ``ContextDeflater`` knows which context its client's window matches. A
  message compressed alone refers to nothing, so it is read right by any socket: sockets that
  drifted apart (one was left out of a broadcast, one was sent a long push of its own) get
  a broadcast compressed alone and share a context again. A socket that was sent nothing
  compressed holds no compressor, and one that is sent a short message of its own (under
  ``MIN_COMPRESSED``) gets it plain, leaving its context as it was.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import Any, NamedTuple, Protocol

from .rfc6455 import CloseCode, Opcode, ProtocolViolation, binary_frame, compressed_frame, frame_payload, text_frame

EXTENSION = "permessage-deflate"
# What a compressed message's payload lacks at its end (RFC 7692 7.2.1): the empty stored block
# of a sync (or full) flush. The receiver appends it back before inflating.
_TAIL = b"\x00\x00\xff\xff"
# The largest deflate window (15 bits): how far back a client's message may refer.
_WINDOW = 1 << zlib.MAX_WBITS
# A message shorter than this is sent as it is: a small JSON message compressed alone saves a
# few bytes for several microseconds of CPU (bench/README.md, "permessage-deflate"). With
# context, only a broadcast is compressed whatever its size: a socket's own short message (a
# heartbeat's reply) would cost a compressor of its own for a few bytes.
MIN_COMPRESSED = 256
# zlib cannot compress raw deflate with a 256-byte window; a 512-byte one never reaches further
# back than 250 bytes (its window minus MIN_LOOKAHEAD), so it suits a client that asked for 8.
_SMALLEST_ZLIB_WINDOW = 9
# A compressor with context: a 4 KB window, a small hash table, zlib's fastest level. A chat
# message repeats mostly the last few it follows, which 4 KB holds; a larger window shrinks
# them a little more for much more memory per context (bench/README.md, "permessage-deflate").
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
    # True: the server compresses with context (``ContextDeflater``).
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


class _Compressor(Protocol):
    """What a ``DeflateContext`` asks of its ``zlib.compressobj``."""

    def compress(self, data: bytes, /) -> bytes: ...

    def flush(self, mode: int, /) -> bytes: ...

    def copy(self) -> _Compressor: ...


class DeflateContext:
    """A compressor's state with context takeover, and ``holders``: how many sockets' clients
    hold exactly that state's window, having been sent the same compressed messages since it
    began. A message compressed from it is read right by each of them.

    A context never changes while a socket holds it: compressing makes a new context (with a
    fork of the compressor, or with the compressor itself when its sole holder moves on, which
    spends this one), so a broadcast's result cached for the other holders stays what they need."""

    __slots__ = ("_compressor", "holders")

    def __init__(self, compressor: _Compressor, holders: int = 0) -> None:
        self._compressor = compressor
        self.holders = holders

    def compress(self, payload: bytes, sole_holder: bool) -> tuple[bytes, DeflateContext]:
        """``payload`` compressed from this state (without the tail, a sync flush ending it on a
        byte boundary), and the context after it. ``sole_holder``: the one socket that holds
        this context is moving on, so its compressor goes on into the new context, not a copy;
        this one is spent (no holders, and no socket may take it again)."""
        compressor = self._compressor if sole_holder else self._compressor.copy()
        compressed = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
        return compressed[:-len(_TAIL)], DeflateContext(compressor)


@functools.cache
def _root_context(window_bits: int) -> DeflateContext:
    """Where every socket of a window size starts: a fresh compressor that is never compressed
    into (it counts as a holder of its own, so holders never fall to 1), so a message compressed
    from it refers to nothing before it, and is read right by any socket, whatever it was sent
    before. A socket on it holds no compressor memory."""
    return DeflateContext(zlib.compressobj(CONTEXT_LEVEL, zlib.DEFLATED, -window_bits, CONTEXT_MEM_LEVEL), holders=1)


# A context that at least this many sockets hold is compressed from for each broadcast they get
# (a fork, the result cached for them all): worth a compression of its own. Below it, contexts
# take turns: per broadcast frame and root (one per compressor window: the agreed window bits,
# at most CONTEXT_WINDOW_BITS), the first SMALL_CONTEXTS_KEPT of them met keep theirs; the
# others are sent the message compressed alone, and share a context from then on.
# Without the turns, the sockets left out of a broadcast (the sender of each broadcast_from,
# one sent a long push of its own) split off, merge in small groups, and those grow in number,
# each a compression per broadcast. A higher threshold costs bytes: more sockets are sent
# messages compressed alone (bench/README.md, "permessage-deflate": --sharing).
GROUP_MIN_HOLDERS = 6
# Two, not one: two sockets each on its own context (a room of three with broadcast_from) would
# otherwise have one of them sent every message compressed alone, for no compression saved.
SMALL_CONTEXTS_KEPT = 2
# With a root and a broadcast's frame, the key of the broadcast's cache (see pubsub) that counts
# the small contexts of that root that kept theirs.
_SMALL_CONTEXTS_KEPT = object()


def _cached(cache: dict[Any, Any], source: DeflateContext, frame: bytes) -> tuple[bytes, DeflateContext] | None:
    """What the broadcast's ``frame`` compressed from ``source`` became, if a socket that held
    ``source`` made it and the context after it is held still. A result whose holders all left
    is not taken: it may be spent (its socket sent a frame of its own in the middle of the
    broadcast, from an app's hook, and took it on)."""
    result: tuple[bytes, DeflateContext] | None = cache.get((source, frame))
    return result if result is not None and result[1].holders else None


class ContextDeflater:
    """One socket's compressing with context takeover: which ``DeflateContext`` its client's
    window matches. A message may refer back into the ones this socket sent before it.

    The client inflates compressed messages in the order it reads them, so they must be
    compressed in the order they are written, and every message compressed must be sent
    (``WebSocket`` compresses a frame as it joins the outbox). A plain message (RSV1 clear)
    never enters the client's window, so a socket may send one at any time.

    Sockets that were sent the same compressed messages share a context, so a broadcast to a
    room is compressed once per context, not once per socket (``compress_broadcast``). Each
    broadcast's frame costs, per root, a compression per context held by ``GROUP_MIN_HOLDERS``
    sockets or more, and at most ``SMALL_CONTEXTS_KEPT`` + 1 more: for the smaller contexts
    that keep theirs, and for the rest, sent it compressed alone (from the root), who then
    share a context again."""

    __slots__ = ("_root", "context")

    def __init__(self, window_bits: int) -> None:
        # Fewer bits than agreed is always readable: the client keeps at least as much window.
        self._root = _root_context(max(min(window_bits, CONTEXT_WINDOW_BITS), _SMALLEST_ZLIB_WINDOW))
        self.context = self._root
        self._root.holders += 1

    def compress_frame(self, frame: bytes) -> bytes:
        """This socket's own data frame (a reply, a push) as ``rfc6455`` builds it, compressed
        with its context; under ``MIN_COMPRESSED`` bytes it goes plain, so a heartbeat's reply
        forks no shared context."""
        opcode, payload = frame_payload(frame)
        return frame if len(payload) < MIN_COMPRESSED else self._compress_own(opcode, payload)

    def compress_broadcast(self, frame: bytes, cache: dict[Any, Any]) -> bytes:
        """A broadcast's frame, prepared once (plain) for every socket, compressed with this
        socket's context. ``cache`` is the broadcast's (one per broadcast, shared by its
        subscribers): it keeps, per context, the compressed frame and the context after it, for
        the other sockets that hold the same context."""
        source = self.context
        result = _cached(cache, source, frame)
        if result is None:
            opcode, payload = frame_payload(frame)
            if not payload:
                # Plain, as it adds nothing to the context, and needs no flush: zlib declines a
                # flush that follows another with no input between them (deflate.c).
                return frame
            if source.holders < GROUP_MIN_HOLDERS:
                kept_key = (_SMALL_CONTEXTS_KEPT, self._root, frame)
                kept = cache.get(kept_key, 0)
                if kept < SMALL_CONTEXTS_KEPT:
                    cache[kept_key] = kept + 1
                    if source.holders == 1:
                        # No copy: a socket alone in its room on this node (a user's topic, a
                        # room of two across nodes) keeps its context at a compression a message.
                        return self._compress_own(opcode, payload)
                else:
                    source = self._root
                    result = _cached(cache, source, frame)
            if result is None:
                compressed, after = source.compress(payload, sole_holder=False)
                result = cache[source, frame] = (compressed_frame(opcode, compressed), after)
        self._move_to(result[1])
        return result[0]

    def release(self) -> None:
        """The socket is closed: it holds its context no more (and sends nothing after)."""
        self.context.holders -= 1

    def _compress_own(self, opcode: int, payload: bytes) -> bytes:
        """``payload`` compressed with this socket's context, which it then holds alone."""
        context = self.context
        compressed, after = context.compress(payload, sole_holder=context.holders == 1)
        self._move_to(after)
        return compressed_frame(opcode, compressed)

    def _move_to(self, context: DeflateContext) -> None:
        self.context.holders -= 1
        context.holders += 1
        self.context = context


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
