"""An echo server made of gossipy's own websocket classes, for the Autobahn conformance suite.

The listener and the upgrade (``WebSocketUpgrade``: the handshake's checks, permessage-deflate), the connection
(``WebSocket``: the reader, the outbox, pings, closing) and the frames (``rfc6455``,
``rfc7692``) are the node's; only the message handler differs: each message goes back as it
came, where the node's ``PhoenixSocket`` would decode it.

    python tests/autobahn/echo_server.py [--compress [--context-takeover]] [--max-frame-size BYTES]

serves on a free port of 127.0.0.1 and prints ``listening on <port>`` once it does.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable
from pathlib import Path

import tornado.web
import uvloop
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from server.channels.websocket import (  # noqa: E402
    MessageHandler,
    SocketRegistry,
    UpgradeRequest,
    WebSocket,
    WebSocketUpgrade,
)
from server.listener import Listener  # noqa: E402
from server.metrics import Counts  # noqa: E402
from server.settings import Endpoint  # noqa: E402


class Echo:
    """Sends each message back: text as text, binary as binary."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    def receive(self, data: str | bytes) -> None:
        websocket = self.websocket
        websocket.send_frame(websocket.prepare_frame(data) if isinstance(data, str)
                             else websocket.prepare_binary_frame(data))

    def closed(self, reason: str = "closed") -> None:
        pass


class EchoUpgrade(WebSocketUpgrade):
    def admit(self, request: UpgradeRequest) -> Callable[[WebSocket], MessageHandler]:
        return Echo


async def serve(endpoint: Endpoint) -> None:
    registry = SocketRegistry(endpoint.server_timeout, Counts())
    # Autobahn's fuzzingclient opens every case's websocket at "/"; its other requests get 404.
    listener = Listener(HTTPServer(tornado.web.Application()), {"/": EchoUpgrade(endpoint, registry)},
                        lambda: True, endpoint.server_timeout)
    listening = bind_sockets(0, "127.0.0.1")
    listener.add_sockets(listening)
    print(f"listening on {listening[0].getsockname()[1]}", flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compress", action="store_true", help="agree on permessage-deflate when offered")
    parser.add_argument("--context-takeover", action="store_true",
                        help="with --compress: context takeover (endpoint.deflate_context_takeover)")
    # Autobahn's 9.* cases send messages of up to 16 MiB.
    parser.add_argument("--max-frame-size", type=int, default=16 * 1024 * 1024 + 1024)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s %(message)s")
    uvloop.run(serve(Endpoint(host="127.0.0.1", port=0, check_origin=False, max_frame_size=args.max_frame_size,
                              compress=args.compress, deflate_context_takeover=args.context_takeover)))


if __name__ == "__main__":
    main()
