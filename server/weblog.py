"""The node's lines about HTTP requests, without the credentials a URI may carry.

Every request gets Tornado's access line (``log_access``: its logger and format), whoever
served it, Tornado or the listener's upgrade. ``RequestHandler.log_exception`` prints
``request.uri`` as it is (phoenix.js puts the connect token there) and, for an uncaught
exception, ``repr(request)`` (every header, ``Authorization`` included). Every handler of the
node derives from :class:`RedactingHandler`, whose override of that public hook writes the same
lines with the URI redacted and no repr (``log_uncaught``, which the upgrade uses too).
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import TypeAlias

import tornado.web
from tornado.log import access_log, app_log, gen_log

from .auth import redact_uri

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType | None]


class RedactingHandler(tornado.web.RequestHandler):
    """A ``RequestHandler`` whose error lines show the request URI with credentials redacted
    (combine it with another handler class by listing it first: ``(RedactingHandler,
    StaticFileHandler)``)."""

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        request = self.request
        if isinstance(value, tornado.web.HTTPError):
            message = value.get_message()
            if message:
                gen_log.warning("%d %s %s (%s): %s", value.status_code, request.method, redact_uri(request.uri or ""),
                                request.remote_ip, message)
        else:
            log_uncaught(request.method or "", request.uri or "", request.remote_ip or "",
                         (typ, value, tb))  # type: ignore[arg-type]


def log_uncaught(method: str, uri: str, peer: str, exc_info: ExcInfo | None = None) -> None:
    """Tornado's line for an exception that failed a request (by default the one being
    handled), the URI redacted."""
    app_log.error("Uncaught exception %s %s (%s)", method, redact_uri(uri), peer, exc_info=exc_info or True)


def log_access(status: int, method: str, uri: str, peer: str, seconds: float, level: int | None = None) -> None:
    """Tornado's access line for a request, with the value of each credential-like query
    parameter redacted: phoenix.js sends the connect token in the websocket URL, and a token in
    a log is a token anyone reading the log can use. ``level``: by default INFO below 400,
    WARNING below 500, ERROR from there."""
    if level is None:
        level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    access_log.log(level, "%d %s %s (%s) %.2fms", status, method, redact_uri(uri), peer, 1000.0 * seconds)
