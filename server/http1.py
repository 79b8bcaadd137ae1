"""The little HTTP/1.1 the node speaks without Tornado: a request head taken apart, and a plain
answer written to a socket before closing it.

Only the listener's upgrades use it (server/listener.py, server/channels/websocket.py): a
websocket's opening request is one GET whose answer is 101 or a refusal, so it needs neither
bodies, nor keep-alive, nor chunking. Every other request is Tornado's.
"""

from __future__ import annotations

import http
import re
import socket
from typing import NamedTuple

from tornado.httputil import HTTPHeaders, HTTPInputError

# Where a request head ends: a blank line (a bare LF tolerated, as Tornado tolerates it).
HEAD_END = re.compile(rb"\r?\n\r?\n")


class MalformedHead(ValueError):
    """The head is not an HTTP/1.x request: answered with 400."""


class Head(NamedTuple):
    """A request's start line and headers."""

    method: str
    target: str  # as sent: the path and the query
    path: str
    query: str
    version: str
    headers: HTTPHeaders


def request_line(data: bytes) -> tuple[str, str, str] | None:
    """The method, target and version of the head's first line; None if it is not one."""
    line, _, _ = data.partition(b"\n")
    parts = line.rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        method, target, version = (part.decode("ascii") for part in parts)
    except UnicodeDecodeError:
        return None
    return method, target, version


def parse_head(data: bytes) -> Head:
    """The head of ``data``, which holds at least one whole head (``HEAD_END`` found)."""
    start = request_line(data)
    if start is None:
        raise MalformedHead("not an HTTP/1.x request line")
    method, target, version = start
    end = HEAD_END.search(data)
    assert end is not None
    lines = data[data.index(b"\n") + 1:end.start()].decode("latin-1")
    try:
        headers = HTTPHeaders.parse(lines)
    except HTTPInputError as exc:
        raise MalformedHead(str(exc)) from None
    path, _, query = target.partition("?")
    return Head(method, target, path, query, version, headers)


def answer_and_close(sock: socket.socket, status: int, text: str, headers: tuple[tuple[str, str], ...] = ()) -> None:
    """Writes a short plain-text answer and closes the connection. It fits in any socket's send
    buffer, so the one non-blocking send takes it whole; a client already gone is no error."""
    body = (text + "\n").encode("utf-8")
    extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
    head = (f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\nContent-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n{extra}\r\n")
    try:
        sock.send(head.encode("latin-1") + body)
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    sock.close()
