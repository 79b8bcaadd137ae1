"""JSON as RFC 8259 has it, for bytes from clients and peers: a leaf, shared by the Phoenix
serializers and the peer stream.

Python's ``json.loads`` is more lenient than the wire allows, and each leniency would let
one client's frame make the node fail later, for someone else:

* ``NaN``, ``Infinity``, ``-Infinity`` and numbers too large for a float (``1e400``) decode,
  but cannot be encoded back (``allow_nan=False``): the broadcast of such a payload would
  raise once per subscriber in the room;
* ``"\\ud800"`` escapes, and bytes in CESU-8 or UTF-16/32, decode to lone surrogates, which no
  UTF-8 text frame can carry: the reply echoing such a topic would raise in the socket.

``loads`` refuses all of these with :class:`NotJSON` instead, so the input is refused where it
arrives (a bad frame), never after it was accepted. ``dumps`` is the one encoder for what the
node writes to clients and peers: compact, UTF-8 as is, and never a NaN that ``loads`` refuses.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

# A \u escape of a UTF-16 surrogate (a false hit on "\\ud800" only costs the slow check).
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


class NotJSON(ValueError):
    """The text is not strict JSON; the message says why."""


def _no_constant(name: str) -> Any:
    raise NotJSON(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise NotJSON(f"{text[:20]} is out of range for a number")
    return value


_decode = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite).decode
_check_text = json.JSONEncoder(ensure_ascii=False, check_circular=False).encode

# Built once: json.dumps with options builds a new encoder on every call.
dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


def loads(data: str | bytes | bytearray) -> Any:
    """The value of a JSON text (bytes must be UTF-8); NotJSON for anything else, including
    nesting too deep for the parser."""
    if not isinstance(data, str):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise NotJSON(f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
    try:
        value = _decode(data)
    except NotJSON:
        raise
    except ValueError as exc:  # JSONDecodeError, and int() over the digit limit
        raise NotJSON(str(exc)) from None
    except RecursionError:
        raise NotJSON("nested too deeply") from None
    if _SURROGATE_ESCAPE.search(data):
        try:
            _check_text(value).encode("utf-8")
        except UnicodeEncodeError:
            raise NotJSON("a \\u escape of a lone surrogate (no UTF-8 text can carry it)") from None
        except RecursionError:
            raise NotJSON("nested too deeply") from None
    return value
