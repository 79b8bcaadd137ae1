"""Questions to a running node from another process: ``bin/gossipy ping``, ``nodes`` and
``broadcast``, both halves.

Like Erlang's nodetool, the asker is a *hidden* node: it proves the cookie with the same
handshake as a member, asks one question, and is never a member of the cluster. :func:`query`
asks the node these settings describe, on this host; the node's listener hands a hidden
peer to :func:`answer`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from typing import Any, Callable

from ..settings import ENV_COOKIE, Distribution
from . import discovery, tls
from .framing import FrameError, FrameType, decode_json, encode_json
from .handshake import HandshakeError, Identity, Initiator, Reason, new_creation
from .peer import Peer, Unreachable, dial

log = logging.getLogger("gossipy.cluster.control")

QUESTIONS = ("ping", "nodes", "broadcast")

# What a node does with a broadcast handed to it by a hidden peer: raises ValueError, whose
# message goes back to the asker, for a message it refuses.
Publish = Callable[[Any], None]


class ControlError(Exception):
    """The node could not be asked; the message says why, for a human."""


async def query(distribution: Distribution, question: str, timeout: float = 5.0, message: Any = None) -> Any:
    """Asks the local node ``question``: "ping" -> "pong"; "nodes" -> [its name, then the
    names of the peers it is connected to]; "broadcast" ``message`` (``{"topic", "event",
    "payload"}``) to every subscriber in the cluster -> "ok". Raises ControlError."""
    if question not in QUESTIONS:
        raise ValueError(f"unknown question {question!r}; expected one of {', '.join(QUESTIONS)}")
    if distribution.node is None or distribution.cookie is None:
        raise ControlError("this node is not distributed (no node name), so it cannot be asked")
    name = distribution.node
    host = discovery.own_address(distribution) or "127.0.0.1"
    port = discovery.address(name, distribution)[1]
    where = f"{name} at {host}:{port}"
    me = Identity(f"ctl{os.getpid()}_{secrets.token_hex(3)}@{distribution.host}", new_creation(),
                  distribution.longnames)
    try:
        contexts = tls.contexts(distribution.tls) if distribution.tls is not None else None
    except tls.TlsError as exc:
        raise ControlError(str(exc)) from None
    try:
        async with asyncio.timeout(timeout):
            peer = await dial(host, port, Initiator(me, distribution.cookie, expect=name, hidden=True), timeout=None,
                              contexts=contexts, server_hostname=distribution.host)
            try:
                asked: dict[str, Any] = {"query": question}
                if message is not None:
                    asked["message"] = message
                peer.send(encode_json(FrameType.QUERY, asked))
                frame = await peer.receive()
            finally:
                peer.finish()
    except HandshakeError as exc:
        raise ControlError(_refusal(where, exc)) from None
    except FrameError as exc:
        raise ControlError(f"{where} answered with a bad frame: {exc}") from None
    except TimeoutError:
        raise ControlError(f"{where} did not answer within {timeout:g} s") from None
    except Unreachable as exc:
        if exc.refused:
            raise ControlError(f"{where} is not running (nothing listens there)") from None
        if exc.tls:
            raise ControlError(f"{where} refused the connection: {exc}") from None
        raise ControlError(f"{where} is unreachable: {exc}") from None
    if frame is None or frame.type is not FrameType.ANSWER:
        raise ControlError(f"{where} closed the connection without answering")
    try:
        answer = decode_json(frame)
    except FrameError:
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("refused"), str):
        raise ControlError(f"{where} refused the {question}: {answer['refused']}")
    if not isinstance(answer, dict) or "result" not in answer:
        raise ControlError(f"{where} could not answer {question!r}: {answer!r}")
    return answer["result"]


def _published(publish: Publish, message: Any) -> dict[str, object]:
    try:
        publish(message)
    except ValueError as exc:
        return {"refused": str(exc)}
    return {"result": "ok"}


def _refusal(where: str, exc: HandshakeError) -> str:
    if exc.reason is Reason.BAD_COOKIE:
        return (f"{where} refused the connection: bad cookie (this process's {ENV_COOKIE} or node.cookie "
                f"differs from the node's)")
    if exc.reason is Reason.WRONG_NODE:
        return f"another node answers at that address: {exc.detail}"
    if exc.reason is Reason.NAME_MODE_MISMATCH:
        return f"{where} refused the connection: short and long names do not mix ({exc.detail})"
    return f"{where} refused the connection: {exc}"


async def answer(peer: Peer, nodes: Callable[[], list[str]], publish: Publish | None, timeout: float) -> None:
    """The node's half: a hidden peer asks one question within ``timeout``, gets one answer,
    and is closed. ``nodes()``: this node's name, then the names of its up peers; ``publish``
    broadcasts a message (None: this node has nothing to publish to)."""
    try:
        async with asyncio.timeout(timeout):
            frame = await peer.receive()
        if frame is not None and frame.type is FrameType.QUERY:
            question = decode_json(frame)
            if question == {"query": "ping"}:
                reply: dict[str, object] = {"result": "pong"}
            elif question == {"query": "nodes"}:
                reply = {"result": nodes()}
            elif isinstance(question, dict) and question.keys() == {"query", "message"} \
                    and question["query"] == "broadcast" and publish is not None:
                reply = _published(publish, question["message"])
            else:
                reply = {"error": "unknown query"}
            peer.finish(encode_json(FrameType.ANSWER, reply))
            log.debug("answered %s for %s", json.dumps(question), peer.name)
    except (FrameError, TimeoutError) as exc:
        log.debug("control connection from %s ended: %s", peer.name, exc)
    finally:
        peer.finish()
