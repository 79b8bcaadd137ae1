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
    """The head's header lines do not parse: answered with 400."""


class Head(NamedTuple):
    """A request's start line and headers."""

    method: str
    target: str  # as sent: the path and the query
    headers: HTTPHeaders

    @property
    def query(self) -> str:
        return self.target.partition("?")[2]


def request_line(data: bytes) -> tuple[str, str] | None:
    """The method and target of the head's first line, an HTTP/1.x request's; None if it is
    not one."""
    line, _, _ = data.partition(b"\n")
    parts = line.rstrip(b"\r").split(b" ")
    if len(parts) != 3 or not parts[2].startswith(b"HTTP/1."):
        return None
    try:
        return parts[0].decode("ascii"), parts[1].decode("ascii")
    except UnicodeDecodeError:
        return None


def parse_head(start: tuple[str, str], head: bytes) -> Head:
    """The whole request head ``head``, blank line included, whose first line ``request_line``
    read as ``start``."""
    try:
        headers = HTTPHeaders.parse(head[head.index(b"\n") + 1:].decode("latin-1"))
    except HTTPInputError as exc:
        raise MalformedHead(str(exc)) from None
    return Head(*start, headers)


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
