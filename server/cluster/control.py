"""Questions to a running node from another process: ``bin/gossipy ping`` and ``nodes``.

Like Erlang's nodetool, the asker is a *hidden* node: it proves the cookie with the same
handshake as a member, asks one question, and is never a member of the cluster. It talks to
the node these settings describe, on this host.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import ssl
from typing import Any

from ..settings import ENV_COOKIE, Distribution
from . import discovery, tls
from .framing import FrameDecoder, FrameError, FrameType, decode_json, encode_json
from .handshake import HandshakeError, Identity, Initiator, Reason, new_creation
from .peer import describe_os_error, read_frame, run_handshake

QUESTIONS = ("ping", "nodes")


class ControlError(Exception):
    """The node could not be asked; the message says why, for a human."""


async def query(distribution: Distribution, question: str, timeout: float = 5.0) -> Any:
    """Asks the local node ``question``: "ping" -> "pong"; "nodes" -> [its name, then the
    names of the peers it is connected to]. Raises ControlError."""
    if question not in QUESTIONS:
        raise ValueError(f"unknown question {question!r}; expected one of {', '.join(QUESTIONS)}")
    if distribution.node is None or distribution.cookie is None:
        raise ControlError("this node is not distributed (no node name), so it cannot be asked")
    name = distribution.node
    host = discovery.own_address(distribution) or "127.0.0.1"
    port = distribution.port
    where = f"{name} at {host}:{port}"
    me = Identity(f"ctl{os.getpid()}_{secrets.token_hex(3)}@{distribution.host}", new_creation(),
                  distribution.longnames)
    options: dict[str, Any] = {}
    if distribution.tls is not None:
        try:
            options = {"ssl": tls.contexts(distribution.tls).client, "server_hostname": distribution.host}
        except tls.TlsError as exc:
            raise ControlError(str(exc)) from None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(host, port, **options)
            hs = Initiator(me, distribution.cookie, expect=name, hidden=True)
            hs.send_name()
            decoder = FrameDecoder()
            _, early = await run_handshake(hs, reader, writer, decoder)
            writer.write(encode_json(FrameType.QUERY, {"query": question}))
            frame = await read_frame(reader, decoder, early)
    except HandshakeError as exc:
        raise ControlError(_refusal(where, exc)) from None
    except FrameError as exc:
        raise ControlError(f"{where} answered with a bad frame: {exc}") from None
    except TimeoutError:
        raise ControlError(f"{where} did not answer within {timeout:g} s") from None
    except ConnectionRefusedError:
        raise ControlError(f"{where} is not running (nothing listens there)") from None
    except ssl.SSLError as exc:
        raise ControlError(f"{where} refused the connection: {tls.describe_ssl_error(exc)}") from None
    except OSError as exc:
        raise ControlError(f"{where} is unreachable: {describe_os_error(exc)}") from None
    finally:
        if writer is not None:
            writer.close()
    if frame is None or frame.type is not FrameType.ANSWER:
        raise ControlError(f"{where} closed the connection without answering")
    try:
        answer = decode_json(frame)
    except FrameError:
        answer = None
    if not isinstance(answer, dict) or "result" not in answer:
        raise ControlError(f"{where} could not answer {question!r}: {answer!r}")
    return answer["result"]


def _refusal(where: str, exc: HandshakeError) -> str:
    if exc.reason is Reason.BAD_COOKIE:
        return (f"{where} refused the connection: bad cookie (this process's {ENV_COOKIE} or node.cookie "
                f"differs from the node's)")
    if exc.reason is Reason.WRONG_NODE:
        return f"another node answers at that address: {exc.detail}"
    if exc.reason is Reason.NAME_MODE_MISMATCH:
        return f"{where} refused the connection: short and long names do not mix ({exc.detail})"
    return f"{where} refused the connection: {exc}"
