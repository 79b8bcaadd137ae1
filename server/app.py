"""Wiring: settings -> pubsub (+ the cluster when the node is distributed) -> presence's
tracker -> Tornado app.

The only module that knows every part. The app (server/apps.py) arrives as routes (and,
optionally, a socket class with a connect hook); the cluster is switched on by settings alone
(a node name in vm.yml or RELEASE_NODE), never by app code.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import os
import signal
from typing import TYPE_CHECKING, Any, Iterable

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.log import access_log
from tornado.netutil import bind_sockets

from . import backend_api, chat
from .apps import App
from .auth import TokenVerifier, redact_uri
from .channels import Channel, Socket
from .channels.socket import Router
from .channels.websocket import SocketRegistry, UpgradeHandler
from .presence.tracker import Tracker
from .pubsub import PubSub
from .settings import Settings

if TYPE_CHECKING:
    # Imported in start() at run time: a node that is not distributed never loads the cluster.
    from .cluster import Node

log = logging.getLogger("gossipy.node")

STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
# Only the backend API takes a request body (it sets its own limit); Tornado's default would
# read up to 100 MB of one into memory (per connection) before answering 405.
MAX_BODY = 4096


class ClusterHandler(tornado.web.RequestHandler):
    """``GET /cluster``: who this node is and which nodes it is connected to (read-only)."""

    def initialize(self, server: "Server") -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.server.cluster_view()))


class PageHandler(tornado.web.StaticFileHandler):
    """The pages people open in a browser, served by every node (no separate web server)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """Tornado's access line (its logger, levels and format) for every request, with the value
    of each credential-like query parameter redacted: phoenix.js sends the connect token in the
    websocket URL, and a token in a log is a token anyone reading the log can use."""
    status = handler.get_status()
    log_method = access_log.info if status < 400 else access_log.warning if status < 500 else access_log.error
    request = handler.request
    log_method("%d %s %s (%s) %.2fms", status, request.method, redact_uri(request.uri or ""),
               request.remote_ip, 1000.0 * request.request_time())


class StartupError(Exception):
    """The node cannot start: a mandatory node did not come, or a port cannot be bound."""


class Server:
    """One gossipy node: its pubsub, its cluster membership (if distributed), its presence
    tracker, its HTTP port."""

    def __init__(self, settings: Settings,
                 routes: Iterable[tuple[str, type[Channel]]] = chat.ROUTES,
                 socket_class: type[Socket] = Socket) -> None:
        """``routes`` and ``socket_class``: an app module's ``ROUTES`` and ``SOCKET``."""
        self.settings = settings
        self.pubsub = PubSub()
        self.presence = Tracker(self.pubsub)
        self.registry = SocketRegistry(settings.endpoint.server_timeout)
        self.router = Router(routes)
        self.socket_class = socket_class
        self.cluster: Node | None = None
        self._http: HTTPServer | None = None
        self.port = settings.endpoint.port

    @property
    def name(self) -> str:
        return self.cluster.name if self.cluster is not None else "nonode@nohost"

    def cluster_view(self) -> dict[str, Any]:
        nodes = self.cluster.connected_nodes() if self.cluster is not None else []
        return {"node": self.name, "nodes": nodes}

    def token_verifier(self) -> TokenVerifier | None:
        """The check of connect tokens the settings ask for (None: no ``auth.jwt_secret``);
        StartupError for a secret or algorithm that cannot be safe."""
        auth = self.settings.auth
        if auth.jwt_secret is None:
            return None
        try:
            return TokenVerifier(auth.jwt_secret.reveal(), auth.jwt_algorithms)
        except ValueError as exc:  # its message names lengths and algorithms, never the secret
            raise StartupError(f"auth: {exc}") from None

    def application(self) -> tornado.web.Application:
        endpoint = self.settings.endpoint
        new_socket = functools.partial(self.socket_class, self.token_verifier())
        return tornado.web.Application(
            [
                (r"/socket/websocket", UpgradeHandler,
                 dict(router=self.router, pubsub=self.pubsub, endpoint=endpoint, registry=self.registry,
                      new_socket=new_socket, presence=self.presence)),
                (r"/cluster", ClusterHandler, dict(server=self)),
                *backend_api.routes(self.pubsub, self.settings.api),
                (r"/()", PageHandler, dict(path=STATIC_DIR, default_filename="index.html")),
                (r"/(ws\.html)", PageHandler, dict(path=STATIC_DIR)),
                (r"/static/(.*)", PageHandler, dict(path=STATIC_DIR)),
            ],
            log_function=log_request,
        )

    async def start(self) -> None:
        """Joins the cluster first (boot sync may wait for the listed nodes), then serves."""
        distribution = self.settings.distribution
        endpoint = self.settings.endpoint
        application = self.application()  # first: a bad auth section stops the node before it joins
        if distribution.node is not None:
            from .cluster import BootError, ClusterAdapter, Node

            self.cluster = Node(distribution)
            self.pubsub.adapter = ClusterAdapter(self.cluster, self.pubsub)
        # Named by the adapter, and before the cluster connects: it hears of every node that comes up.
        self.presence.start()
        if self.cluster is not None:
            try:
                await self.cluster.start()
            except BootError as exc:  # a taken distribution port too: Node.start raises BootError
                self.presence.stop()
                raise StartupError(f"boot failed: {exc}") from None
        # A connection that has not sent its request headers within server_timeout is closed
        # (Tornado's default is an hour: a slow or silent client would hold a descriptor that long).
        self._http = HTTPServer(application, max_body_size=MAX_BODY,
                                idle_connection_timeout=endpoint.server_timeout)
        try:
            # Workers each bind the one port; the kernel spreads new connections over them.
            listening = bind_sockets(endpoint.port, endpoint.host, reuse_port=self.settings.workers > 1)
        except OSError as exc:
            if self.cluster is not None:
                await self.cluster.stop()
            self.presence.stop()
            raise StartupError(f"cannot listen on {endpoint.host}:{endpoint.port}: {exc.strerror}") from None
        self._http.add_sockets(listening)
        self.port = listening[0].getsockname()[1]
        log.info("node %s serving websockets on %s:%d%s", self.name, endpoint.host, self.port,
                 f", distribution on {distribution.listen_address}:{self.cluster.port}"
                 if self.cluster is not None else " (not distributed)")

    async def stop(self) -> None:
        """Stops accepting, closes websockets with 1001 so clients reconnect elsewhere, tells
        the peers it is leaving (they forget its presences at once), stops presence, and waits
        (bounded) for the sockets to finish closing."""
        log.info("node %s stopping", self.name)
        if self._http is not None:
            self._http.stop()
        self.registry.close_all()
        if self.cluster is not None:
            await self.cluster.stop()
        self.presence.stop()
        deadline = asyncio.get_running_loop().time() + self.settings.endpoint.shutdown_timeout
        while self.registry.sockets and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        self.registry.abort_all()
        if self._http is not None:
            await self._http.close_all_connections()
        log.info("node %s stopped", self.name)


async def run(settings: Settings, app: App) -> int:
    """Runs a node serving ``app`` until SIGTERM or SIGINT; the exit status for the process."""
    log.info("app %s: topics %s", app.module, ", ".join(pattern for pattern, _ in app.routes))
    return await serve(Server(settings, routes=app.routes, socket_class=app.socket_class))


async def serve(server: Server) -> int:
    """Starts ``server``, runs it until SIGTERM or SIGINT, then stops it; the exit status."""
    try:
        await server.start()
    except StartupError as exc:
        log.error("%s", exc)
        return 1
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    await stopping.wait()
    await server.stop()
    return 0
