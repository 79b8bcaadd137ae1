"""``python -m server [--config FILE] [--env ENV] [foreground|ping|nodes|describe]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

import uvloop

from . import apps
from . import settings as settings_module

COMMANDS = ("foreground", "ping", "nodes", "describe")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gossipy", description=__doc__)
    parser.add_argument("--config", help="a vm.yml or a release's embedded settings (default: built-in defaults)")
    parser.add_argument("--env", help="the vm.yml environment to run (default: its default_environment)")
    parser.add_argument("command", nargs="?", default="foreground", choices=COMMANDS)
    return parser


def _fail(message: str, status: int = 1) -> int:
    sys.stderr.write(f"gossipy: {message}\n")
    return status


def _query(settings: settings_module.Settings, command: str) -> int:
    from .cluster import control

    if settings.distribution.node is None:
        return _fail("this node is not distributed (set node.sname or node.name, or RELEASE_NODE)")
    try:
        answer = asyncio.run(control.query(settings.distribution, command))
    except control.ControlError as exc:
        return _fail(str(exc))
    sys.stdout.write((answer if isinstance(answer, str) else "\n".join(answer)) + "\n")
    return 0


def main() -> None:
    args = _parser().parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = settings_module.load(args.config, args.env)
    except settings_module.SettingsError as exc:
        sys.exit(_fail(str(exc), status=2))
    if args.command in ("ping", "nodes"):
        sys.exit(_query(settings, args.command))
    # describe imports the app too, so that `bin/gossipy start` (which runs it first) reports
    # a bad app on the terminal rather than in the log.
    try:
        app = apps.load(settings.app)
    except apps.AppError as exc:
        sys.exit(_fail(str(exc), status=2))
    if args.command == "describe":
        sys.stdout.write(json.dumps(settings.describe(), indent=2) + "\n")
        sys.exit(0)
    from .app import run

    # uvloop: the event loop and asyncio streams in C, which node-to-node traffic pays for (README, Dependencies).
    sys.exit(uvloop.run(run(settings, app)))


if __name__ == "__main__":
    main()
