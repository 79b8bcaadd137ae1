"""``python -m server [--config FILE] [--env ENV] [foreground|ping|nodes|describe|ready]``, or
``... broadcast TOPIC EVENT [PAYLOAD]`` (PAYLOAD a JSON object, ``{}`` when left out)."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import urllib.error
import urllib.request
from typing import Any

import uvloop

from . import apps, publishing, strictjson
from . import settings as settings_module

COMMANDS = ("foreground", "ping", "nodes", "describe", "broadcast", "ready")
# Docker's health check gives its command 30 s by default; a node that does not answer within
# this is as good as down.
READY_TIMEOUT = 3.0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gossipy", description=__doc__)
    parser.add_argument("--config", help="a vm.yml or a release's embedded settings (default: built-in defaults)")
    parser.add_argument("--env", help="the vm.yml environment to run (default: its default_environment)")
    parser.add_argument("command", nargs="?", default="foreground", choices=COMMANDS)
    parser.add_argument("arguments", nargs="*", metavar="TOPIC EVENT [PAYLOAD]",
                        help="broadcast only: the topic, the event and a JSON object payload")
    return parser


def _fail(message: str, status: int = 1) -> int:
    sys.stderr.write(f"gossipy: {message}\n")
    return status


def _broadcast_message(arguments: list[str]) -> dict[str, Any]:
    """``TOPIC EVENT [PAYLOAD]`` as a message; publishing.BadRequest for one the node would refuse."""
    if len(arguments) not in (2, 3):
        raise publishing.BadRequest("broadcast takes TOPIC EVENT [PAYLOAD], e.g. room:lobby shout '{\"body\": \"hi\"}'")
    try:
        payload = strictjson.loads(arguments[2]) if len(arguments) == 3 else {}
    except strictjson.NotJSON as exc:
        raise publishing.BadRequest(f"PAYLOAD is not JSON: {exc}") from None
    message = {"topic": arguments[0], "event": arguments[1], "payload": payload}
    publishing.message(message)
    return message


def _query(settings: settings_module.Settings, command: str, message: Any = None) -> int:
    from .cluster import control

    if settings.distribution.node is None:
        return _fail("this node is not distributed (set node.sname or node.name, or RELEASE_NODE)")
    try:
        answer = asyncio.run(control.query(settings.distribution, command, message=message))
    except control.ControlError as exc:
        return _fail(str(exc))
    sys.stdout.write((answer if isinstance(answer, str) else "\n".join(answer)) + "\n")
    return 0


def _ready(settings: settings_module.Settings) -> int:
    """Asks the running node's ``GET /readyz`` on its own HTTP port: 0 if ready, else 1 (what
    Docker's HEALTHCHECK expects)."""
    endpoint = settings.endpoint
    host = "127.0.0.1" if endpoint.host in ("0.0.0.0", "::", "") else endpoint.host
    url = f"http://{'[' + host + ']' if ':' in host else host}:{endpoint.port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=READY_TIMEOUT) as response:
            sys.stdout.write(response.read().decode())
            return 0
    except urllib.error.HTTPError as exc:  # 503: booting or draining
        return _fail(f"{url}: {exc.code} {exc.read().decode().strip()}")
    except OSError as exc:
        return _fail(f"{url}: {exc}")


def main() -> None:
    parser = _parser()
    args = parser.parse_args()
    if args.arguments and args.command != "broadcast":
        parser.error(f"{args.command} takes no arguments")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_module.load(args.config, args.env)
    except settings_module.SettingsError as exc:
        sys.exit(_fail(str(exc), status=2))
    if args.command in ("ping", "nodes"):
        sys.exit(_query(settings, args.command))
    if args.command == "ready":
        sys.exit(_ready(settings))
    if args.command == "broadcast":
        try:
            message = _broadcast_message(args.arguments)
        except publishing.BadRequest as exc:
            sys.exit(_fail(f"broadcast: {exc}", status=2))
        sys.exit(_query(settings, args.command, message))
    # describe imports the app too, so that `bin/gossipy start` (which runs it first) reports
    # a bad app on the terminal rather than in the log.
    try:
        app = apps.load(settings.app)
    except apps.AppError as exc:
        sys.exit(_fail(str(exc), status=2))
    if args.command == "describe":
        sys.stdout.write(json.dumps(settings.describe(), indent=2) + "\n")
        sys.exit(0)
    if settings.workers > 1 and settings.worker is None:
        from .supervisor import Supervisor

        sys.exit(Supervisor(settings).run())
    from .app import run

    # uvloop: the event loop and asyncio streams in C, which node-to-node traffic pays for (README, Dependencies).
    sys.exit(uvloop.run(run(settings, app)))


if __name__ == "__main__":
    main()
