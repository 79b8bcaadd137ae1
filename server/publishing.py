"""Broadcasts published from outside a channel: what a valid one is.

The backend API (``POST /api/broadcast``) and ``gossipy broadcast`` (through the distribution
port) accept the same messages, ``{"topic", "event", "payload"}`` or a batch
``{"messages": [...]}``, and refuse the same mistakes with the same reasons.
"""

from __future__ import annotations

from typing import Any

from . import strictjson
from .pubsub import RESERVED_TOPIC_PREFIX, Broadcast, reserved_topic

# Events Phoenix reserves: phoenix.js hands a broadcast of one to the channel's own state
# machine (a "phx_close" would make every client believe it had left the topic).
RESERVED_PREFIX = "phx_"
_FIELDS = ("topic", "event", "payload")


class BadRequest(ValueError):
    """The body is not a broadcast request; the message says why (it is sent back as is)."""


def parse(body: bytes | bytearray, max_batch: int) -> list[Broadcast]:
    """The messages of a request body; BadRequest naming the first fault."""
    try:
        data = strictjson.loads(body)
    except strictjson.NotJSON as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest('expected a JSON object: {"topic", "event", "payload"} or {"messages": [...]}')
    if "messages" not in data:
        return [message(data)]
    if set(data) != {"messages"}:
        raise BadRequest('a batch has the one key "messages"')
    batch = data["messages"]
    if not isinstance(batch, list):
        raise BadRequest("messages must be an array")
    if len(batch) > max_batch:
        raise BadRequest(f"at most {max_batch} messages per request, got {len(batch)}")
    return [message(item, f"messages[{i}]: ") for i, item in enumerate(batch)]


def message(item: Any, where: str = "") -> Broadcast:
    """One message ``{"topic", "event", "payload"}``; BadRequest naming the fault, after ``where``."""
    if not isinstance(item, dict):
        raise BadRequest(f"{where}a message must be an object")
    for field in _FIELDS:
        if field not in item:
            raise BadRequest(f"{where}missing {field}")
    if len(item) != len(_FIELDS):
        raise BadRequest(f"{where}a message has exactly the keys topic, event and payload")
    topic, event, payload = (item[field] for field in _FIELDS)
    if not isinstance(topic, str) or not topic:
        raise BadRequest(f"{where}topic must be a non-empty string")
    if reserved_topic(topic):
        raise BadRequest(f"{where}topics starting with {RESERVED_TOPIC_PREFIX} are the server's own")
    if not isinstance(event, str) or not event:
        raise BadRequest(f"{where}event must be a non-empty string")
    if event.startswith(RESERVED_PREFIX):
        raise BadRequest(f"{where}events starting with {RESERVED_PREFIX} are reserved by Phoenix")
    if not isinstance(payload, dict):
        raise BadRequest(f"{where}payload must be an object")
    return Broadcast(topic, event, payload)
