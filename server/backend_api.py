"""``POST /api/broadcast``: an application's backend publishes to channel topics over HTTP.

Phoenix's ``Endpoint.broadcast`` for code that is not in the node: a request carries one
message ``{"topic", "event", "payload"}`` or a batch ``{"messages": [...]}``, and each message
goes through :meth:`PubSub.broadcast`, so every subscriber on every node gets it once.

The order of checks keeps the node's work for callers that hold the key:

1. an address with too many wrong keys lately: 429 at once, its key not even compared;
2. the key (``Authorization: Bearer <api.key>``, compared in constant time): else 401;
3. the declared size (``Content-Length``): 413 before a byte of the body is read, and the
   bytes as they arrive (a chunked body has no declared size): 413 as soon as they overflow;
4. the body: 400 with the reason; nothing is broadcast unless every message is valid.

Without ``api.key`` (or ``GOSSIPY_API_KEY``) the route does not exist: 404.
"""

from __future__ import annotations

import logging
import math
import sys
from http.client import responses
from typing import Any

import tornado.web
from tornado.http1connection import HTTP1Connection

from .publishing import BadRequest, parse
from .pubsub import PubSub
from .settings import Api
from .throttle import Throttle
from .weblog import RedactingHandler

log = logging.getLogger("gossipy.api")

PATH = "/api/broadcast"
# Wrong keys from one address within a window before it is refused (429) until the oldest of
# them ages out: ten tries a minute leave a mistyped key easy to fix and a guessed one hopeless.
MAX_FAILURES = 10
FAILURE_WINDOW = 60.0
# Addresses remembered at once; past this the least recently failed are forgotten first, so a
# flood of addresses costs bounded memory (and each forgotten one is only ever allowed its ten again).
MAX_ADDRESSES = 10_000


@tornado.web.stream_request_body
class BroadcastHandler(RedactingHandler):
    """Streams the body (so its size is checked before and while it is read, see the module
    docstring), then broadcasts it."""

    def initialize(self, pubsub: PubSub, api: Api, throttle: Throttle) -> None:
        self.pubsub = pubsub
        self.api = api
        self.throttle = throttle
        self.body = bytearray()

    def prepare(self) -> None:
        # Tornado's own check of the node's 4 KiB limit would answer a bare 400, after any
        # answer of ours: this route's limit is api.max_body, checked here and in data_received.
        connection = self.request.connection
        assert isinstance(connection, HTTP1Connection)  # the only kind Tornado's HTTPServer makes
        connection.set_max_body_size(sys.maxsize)
        address = self.request.remote_ip or "?"
        wait = self.throttle.retry_after(address)
        if wait:
            self.set_header("Retry-After", str(math.ceil(wait)))
            self.refuse(429, "too many wrong keys from this address; retry later")
        elif not self.authorized():
            if self.throttle.failed(address):
                held = self.throttle.retry_after(address)
                log.warning("refusing %s for %.0f s: %d wrong API keys since %.0f s ago", address, held,
                            MAX_FAILURES, FAILURE_WINDOW - held)
            log.warning("refused a broadcast from %s: %s", address,
                        "wrong key" if "Authorization" in self.request.headers else "no Authorization header")
            self.set_header("WWW-Authenticate", 'Bearer realm="gossipy"')
            self.refuse(401, "expected the header Authorization: Bearer <api.key>")
        elif self.declared_length() > self.api.max_body:
            self.refuse(413, f"the body is larger than {self.api.max_body} bytes")

    def authorized(self) -> bool:
        scheme, _, presented = self.request.headers.get("Authorization", "").partition(" ")
        key = self.api.key
        # Header text is latin-1 as Tornado decodes it: back to the bytes the client sent.
        return (key is not None and scheme.lower() == "bearer"
                and key.matches(presented.strip().encode("latin-1")))

    def declared_length(self) -> int:
        """The Content-Length, or 0 where there is none (chunked) or it is malformed (Tornado
        refuses that itself)."""
        declared = self.request.headers.get("Content-Length", "")
        return int(declared) if declared.isdecimal() else 0

    def data_received(self, chunk: bytes) -> None:
        self.body += chunk
        if len(self.body) > self.api.max_body:
            self.refuse(413, f"the body is larger than {self.api.max_body} bytes")

    def post(self) -> None:
        try:
            messages = parse(self.body, self.api.max_batch)
        except BadRequest as exc:
            self.refuse(400, str(exc))
            return
        for message in messages:
            self.pubsub.broadcast(message)
        self.finish({"ok": True, "count": len(messages)})

    def refuse(self, status: int, error: str) -> None:
        """Answers ``{"error": ...}`` at once; a body still arriving is dropped with the
        connection (Tornado closes it rather than read the rest)."""
        self.set_status(status)
        self.finish({"error": error})

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        """Tornado's own refusals (405 for a GET, 500) in the same JSON shape: an HTTPError's
        own reason phrase, else the status's standard one."""
        _, error, _ = kwargs.get("exc_info", (None, None, None))
        reason = error.reason if isinstance(error, tornado.web.HTTPError) else None
        self.finish({"error": reason or responses.get(status_code, "Unknown")})


def routes(pubsub: PubSub, api: Api) -> list[tuple[str, type[tornado.web.RequestHandler], dict[str, Any]]]:
    """The API's route, or none (404) while no key is configured."""
    if api.key is None:
        return []
    throttle = Throttle(MAX_FAILURES, FAILURE_WINDOW, MAX_ADDRESSES)
    return [(PATH, BroadcastHandler, {"pubsub": pubsub, "api": api, "throttle": throttle})]
