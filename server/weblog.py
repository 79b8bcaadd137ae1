"""Tornado's error lines for a request, without the credentials its URI may carry.

``RequestHandler.log_exception`` prints ``request.uri`` as it is (phoenix.js puts the connect
token there) and, for an uncaught exception, ``repr(request)`` (every header, ``Authorization``
included). Every handler of the node derives from :class:`RedactingHandler`, whose override of
that public hook writes the same lines with the URI redacted and no repr.
"""

from __future__ import annotations

from types import TracebackType

import tornado.web
from tornado.log import app_log, gen_log

from .auth import redact_uri


class RedactingHandler(tornado.web.RequestHandler):
    """A ``RequestHandler`` whose error lines show the request URI with credentials redacted
    (combine it with another handler class by listing it first: ``(RedactingHandler,
    StaticFileHandler)``)."""

    def log_exception(self, typ: type[BaseException] | None, value: BaseException | None,
                      tb: TracebackType | None) -> None:
        request = self.request
        summary = f"{request.method} {redact_uri(request.uri or '')} ({request.remote_ip})"
        if isinstance(value, tornado.web.HTTPError):
            message = value.get_message()
            if message:
                gen_log.warning("%d %s: %s", value.status_code, summary, message)
        else:
            app_log.error("Uncaught exception %s", summary, exc_info=(typ, value, tb))  # type: ignore[arg-type]
