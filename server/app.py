"""Wiring: settings -> pubsub (+ the cluster when the node is distributed) -> presence's
tracker -> Tornado app.

The only module that knows every part. The app (server/apps.py) arrives as routes (and,
optionally, a socket class with a connect hook); the cluster is switched on by settings alone
(a node name in vm.yml or RELEASE_NODE), never by app code.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import json
import logging
import os
import signal
import socket
from enum import Enum
from typing import TYPE_CHECKING, Any, Iterable

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.httputil import HTTPServerRequest
from tornado.netutil import bind_sockets
from tornado.routing import Matcher, Rule

from . import backend_api, chat, publishing
from .apps import App
from .auth import TokenVerifier
from .channels import Channel, Socket
from .channels.socket import Router
from .channels.websocket import PhoenixUpgrade, SocketRegistry
from .listener import KeptAliveUpgradeHandler, Listener
from .metrics import CONTENT_TYPE, Metrics, Sources
from .presence.tracker import Tracker
from .pubsub import PubSub
from .settings import Settings
from .weblog import RedactingHandler, log_access

if TYPE_CHECKING:
    # Imported in start() at run time: a node that is not distributed never loads the cluster.
    from .cluster import Node

log = logging.getLogger("gossipy.node")

WEBSOCKET_PATH = "/socket/websocket"
STATIC_DIR = os.path.join(os.path.dirname(__file__), "static")
# Only the backend API takes a request body (it sets its own limit); Tornado's default would
# read up to 100 MB of one into memory (per connection) before answering 405.
MAX_BODY = 4096


class ClusterHandler(RedactingHandler):
    """``GET /cluster``: who this node is and which nodes it is connected to (read-only)."""

    def initialize(self, server: "Server") -> None:
        self.server = server

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        self.set_header("Cache-Control", "no-store")
        self.finish(json.dumps(self.server.cluster_view()))


class Phase(Enum):
    """What ``GET /readyz`` says: 200 only when ready."""

    BOOTING = "booting"
    READY = "ready"
    DRAINING = "draining"


class ProbeHandler(RedactingHandler):
    """Asked every few seconds by a machine (Docker, a balancer, Prometheus): never cached,
    and logged at DEBUG only (see ``log_request``)."""

    def initialize(self, server: "Server") -> None:
        self.server = server

    def compute_etag(self) -> None:
        """No ETag: the answer is never cached, so hashing it would be wasted."""
        return None

    def answer(self, status: int, body: str | bytes, content_type: str = "application/json") -> None:
        self.set_status(status)
        self.set_header("Content-Type", content_type)
        self.set_header("Cache-Control", "no-store")
        self.finish(body)

    def status(self, code: int, status: str) -> None:
        self.answer(code, f'{{"status":"{status}"}}\n')


class HealthHandler(ProbeHandler):
    """``GET /healthz``: the process serves HTTP (liveness)."""

    def get(self) -> None:
        self.status(200, "ok")


class ReadyHandler(ProbeHandler):
    """``GET /readyz``: 200 once boot sync is done; 503 before, and from SIGTERM on."""

    def get(self) -> None:
        self.server.readiness_probed = True
        phase = self.server.phase
        self.status(200 if phase is Phase.READY else 503, phase.value)


class MetricsHandler(ProbeHandler):
    """``GET /metrics``: Prometheus's text format."""

    def get(self) -> None:
        self.answer(200, self.server.metrics.exposition(), CONTENT_TYPE)


class Booting(Matcher):
    """Matches every request while the node boots: only the probes (routed before it) answer
    until boot sync is done, as no client was served before the node joined the cluster."""

    def __init__(self, server: "Server") -> None:
        self.server = server

    def match(self, request: HTTPServerRequest) -> dict[str, Any] | None:
        return {} if self.server.phase is Phase.BOOTING else None


class BootingHandler(RedactingHandler):
    def prepare(self) -> None:
        self.set_status(503)
        self.finish("node booting (boot sync in progress)\n")


class PageHandler(RedactingHandler, tornado.web.StaticFileHandler):
    """The pages people open in a browser, served by every node (no separate web server)."""

    def set_extra_headers(self, path: str) -> None:
        self.set_header("Cache-Control", "no-cache")


def log_request(handler: tornado.web.RequestHandler) -> None:
    """The access line of a request Tornado served (``weblog.log_access``). Probes go to it at
    DEBUG: every few seconds, per prober, they would bury the log, and the 503s of booting and
    draining would be errors (the node logs each change of readiness once instead). A client
    turned away while the node boots is routine: INFO."""
    status = handler.get_status()
    level = (logging.DEBUG if isinstance(handler, ProbeHandler)
             else logging.INFO if isinstance(handler, BootingHandler) else None)
    request = handler.request
    log_access(status, request.method or "", request.uri or "", request.remote_ip or "", request.request_time(), level)


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
        self.metrics = Metrics(Sources(connections=lambda: len(self.registry.sockets)))
        self.pubsub = PubSub(counts=self.metrics.counts)
        self.presence = Tracker(self.pubsub)
        self.registry = SocketRegistry(settings.endpoint.server_timeout, self.metrics.counts)
        self.router = Router(routes)
        self.socket_class = socket_class
        self.cluster: Node | None = None
        self._http: HTTPServer | None = None
        self._listener: Listener | None = None
        self.port = settings.endpoint.port
        self.phase = Phase.BOOTING
        # Set by the first GET /readyz: only then does a stop wait out endpoint.drain_seconds.
        self.readiness_probed = False

    @property
    def name(self) -> str:
        return self.cluster.name if self.cluster is not None else "nonode@nohost"

    def cluster_view(self) -> dict[str, Any]:
        nodes = self.cluster.connected_nodes() if self.cluster is not None else []
        return {"node": self.name, "nodes": nodes}

    def publish(self, message: Any) -> None:
        """A message from ``bin/gossipy broadcast`` (through the cluster's control port):
        checked as the backend API checks one, then broadcast like any channel's. The
        ValueError it refuses with (``publishing.BadRequest``) goes back to the asker."""
        self.pubsub.broadcast(publishing.message(message))

    def token_verifier(self) -> TokenVerifier | None:
        """The check of connect tokens the settings ask for (None: no ``auth.jwt_secret``);
        StartupError for a secret or algorithm that cannot be safe."""
        auth = self.settings.auth
        if auth.jwt_secret is None:
            return None
        if self.socket_class.connect is not Socket.connect:
            # The app's connect runs instead of the token check: an operator who set a secret
            # should not believe tokens are checked when nothing says so.
            log.warning("auth.jwt_secret is set, but %s.connect replaces the token check: connect tokens "
                        "are checked only if it calls super().connect(params, info)", self.socket_class.__name__)
        try:
            return TokenVerifier(auth.jwt_secret.reveal(), auth.jwt_algorithms)
        except ValueError as exc:  # its message names lengths and algorithms, never the secret
            raise StartupError(f"auth: {exc}") from None

    def upgrade(self) -> PhoenixUpgrade:
        """The websocket path's upgrade, with the app's socket class."""
        new_socket = functools.partial(self.socket_class, self.token_verifier())
        return PhoenixUpgrade(self.settings.endpoint, self.registry, self.router, self.pubsub, new_socket,
                              self.presence)

    def application(self, upgrade: PhoenixUpgrade) -> tornado.web.Application:
        """Tornado's routes: every request but a connection's first websocket upgrade (the
        ``Listener``'s)."""
        return tornado.web.Application(
            [
                (r"/healthz", HealthHandler, dict(server=self)),
                (r"/readyz", ReadyHandler, dict(server=self)),
                (r"/metrics", MetricsHandler, dict(server=self)),
                Rule(Booting(self), BootingHandler),
                (WEBSOCKET_PATH, KeptAliveUpgradeHandler, dict(upgrade=upgrade)),
                (r"/cluster", ClusterHandler, dict(server=self)),
                *backend_api.routes(self.pubsub, self.settings.api),
                (r"/()", PageHandler, dict(path=STATIC_DIR, default_filename="index.html")),
                (r"/(ws\.html)", PageHandler, dict(path=STATIC_DIR)),
                (r"/static/(.*)", PageHandler, dict(path=STATIC_DIR)),
            ],
            log_function=log_request,
        )

    async def start(self) -> None:
        """Listens, joins the cluster (boot sync may wait for the listed nodes), then serves:
        until then only the probes and /metrics answer (/readyz with 503). A worker listens
        once it is ready instead: it shares the port with its siblings, and the kernel would
        give it a share of new connections only to have them turned away."""
        distribution = self.settings.distribution
        # First: a bad auth section stops the node before it listens or joins.
        upgrade = self.upgrade()
        application = self.application(upgrade)
        workers = self.settings.workers > 1
        if not workers:
            self._listen(application, upgrade)
        if distribution.node is not None:
            from .cluster import BootError, ClusterAdapter, Node

            cluster = self.cluster = Node(distribution)
            adapter = self.pubsub.adapter = ClusterAdapter(cluster, self.pubsub)
            cluster.set_publisher(self.publish)
            self.metrics.sources = dataclasses.replace(
                self.metrics.sources, peer_broadcasts=lambda: adapter.received, peer_queues=cluster.send_queues,
                refusals=lambda: cluster.refusals)
        # Named by the adapter, and before the cluster connects: it hears of every node that comes up.
        self.presence.start()
        if self.cluster is not None:
            try:
                await self.cluster.start()
            except BootError as exc:  # a taken distribution port too: Node.start raises BootError
                self.presence.stop()
                if self._listener is not None and self._http is not None:
                    self._listener.stop()
                    await self._http.close_all_connections()
                raise StartupError(f"boot failed: {exc}") from None
        if workers:
            try:
                self._listen(application, upgrade)
            except StartupError:
                if self.cluster is not None:
                    await self.cluster.stop()
                self.presence.stop()
                raise
        self.phase = Phase.READY
        endpoint = self.settings.endpoint
        log.info("node %s serving websockets on %s:%d%s", self.name, endpoint.host, self.port,
                 f", distribution on {distribution.listen_address}:{self.cluster.port}"
                 if self.cluster is not None else " (not distributed)")

    def _listen(self, application: tornado.web.Application, upgrade: PhoenixUpgrade) -> None:
        endpoint = self.settings.endpoint
        # A connection that has not sent its request headers within server_timeout is closed
        # (Tornado's default is an hour: a slow or silent client would hold a descriptor that long).
        self._http = HTTPServer(application, max_body_size=MAX_BODY,
                                idle_connection_timeout=endpoint.server_timeout)
        try:
            # Workers each bind the one port; the kernel spreads new connections over them.
            # Tornado's default accept queue of 128 overflows when thousands of clients reconnect
            # at once (a node died, a deploy): the kernel then drops their handshakes and they
            # retry a second or more later. SOMAXCONN asks for as much as net.core.somaxconn allows.
            listening = bind_sockets(endpoint.port, endpoint.host, backlog=socket.SOMAXCONN,
                                     reuse_port=self.settings.workers > 1)
        except OSError as exc:
            raise StartupError(f"cannot listen on {endpoint.host}:{endpoint.port}: {exc.strerror}") from None
        self._listener = Listener(self._http, {WEBSOCKET_PATH: upgrade}, lambda: self.phase is not Phase.BOOTING,
                                  endpoint.server_timeout)
        self._listener.add_sockets(listening)
        self.port = listening[0].getsockname()[1]

    async def stop(self) -> None:
        """Drains (/readyz answers 503 while the node serves on for endpoint.drain_seconds, if
        anything probes it), then stops accepting, closes websockets with 1001 so clients
        reconnect elsewhere, tells the peers it is leaving (they forget its presences at once),
        stops presence, and waits (bounded) for the sockets to finish closing."""
        was_ready, self.phase = self.phase is Phase.READY, Phase.DRAINING
        drain = self.settings.endpoint.drain_seconds
        if was_ready and self.readiness_probed and drain > 0:
            log.info("node %s draining: /readyz answers 503; closing websockets in %g s", self.name, drain)
            await asyncio.sleep(drain)
        log.info("node %s stopping", self.name)
        if self._listener is not None:
            self._listener.stop()
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
