"""Phoenix Channels wire formats: V1 (JSON objects) and V2 (JSON arrays), as pure functions.

No I/O here: text or bytes in, a ``Message`` out, and back. A frame that is not valid for the
format raises ``DecodeError``; the socket turns that into the close Phoenix gives (1011).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from .. import strictjson
from ..pubsub import Broadcast

# Reserved events, as Phoenix names them.
JOIN = "phx_join"
LEAVE = "phx_leave"
REPLY = "phx_reply"
CLOSE = "phx_close"
ERROR = "phx_error"
HEARTBEAT = "heartbeat"
HEARTBEAT_TOPIC = "phoenix"

_SCALAR_REF = (str, int, type(None))


class DecodeError(ValueError):
    """The frame is not a valid Phoenix message for this serializer."""


class Message(NamedTuple):
    """One Phoenix message, exactly the wire fields. V1 has no join_ref (it stays None)."""

    join_ref: str | int | None
    ref: str | int | None
    topic: str
    event: str
    payload: Any


def reply(join_ref: Any, ref: Any, topic: str, status: str, response: Any) -> Message:
    return Message(join_ref, ref, topic, REPLY, {"status": status, "response": response})


def _checked(join_ref: Any, ref: Any, topic: Any, event: Any, payload: Any) -> Message:
    if not isinstance(topic, str) or not isinstance(event, str):
        raise DecodeError("topic and event must be strings")
    if not isinstance(ref, _SCALAR_REF) or isinstance(ref, bool):
        raise DecodeError("ref must be a string, a number or null")
    if not isinstance(join_ref, _SCALAR_REF) or isinstance(join_ref, bool):
        raise DecodeError("join_ref must be a string, a number or null")
    return Message(join_ref, ref, topic, event, payload)


def _parse(data: str | bytes) -> Any:
    try:
        return strictjson.loads(data)
    except strictjson.NotJSON as exc:
        raise DecodeError(f"not JSON: {exc}") from None


class V1:
    """``{"topic", "event", "payload", "ref"}`` objects: the article's page and the default."""

    vsn = "1.0.0"

    @staticmethod
    def decode(data: str | bytes) -> Message:
        obj = _parse(data)
        if not isinstance(obj, dict):
            raise DecodeError("expected a JSON object")
        try:
            return _checked(obj.get("join_ref"), obj["ref"], obj["topic"], obj["event"], obj["payload"])
        except KeyError as exc:
            raise DecodeError(f"missing key {exc.args[0]!r}") from None

    @staticmethod
    def encode(message: Message) -> str:
        return strictjson.dumps({"topic": message.topic, "event": message.event,
                       "payload": message.payload, "ref": message.ref})


class V2:
    """``[join_ref, ref, topic, event, payload]`` arrays: what phoenix.js speaks."""

    vsn = "2.0.0"

    @staticmethod
    def decode(data: str | bytes) -> Message:
        obj = _parse(data)
        if not isinstance(obj, list) or len(obj) != 5:
            raise DecodeError("expected a JSON array [join_ref, ref, topic, event, payload]")
        return _checked(*obj)

    @staticmethod
    def encode(message: Message) -> str:
        return strictjson.dumps(list(message))


Serializer = type[V1] | type[V2]

SERIALIZERS: dict[str | None, Serializer] = {None: V1, V1.vsn: V1, V2.vsn: V2}


def for_vsn(vsn: str | None) -> Serializer | None:
    """The serializer a ``vsn`` query parameter asks for; None for an unknown version."""
    return SERIALIZERS.get(vsn)


def encode_broadcast(serializer: Serializer, message: Broadcast) -> str:
    return serializer.encode(Message(None, None, message.topic, message.event, message.payload))
