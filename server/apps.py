"""The app a node serves: a module named by ``app:`` in vm.yml (or ``GOSSIPY_APP``) exposing

    ROUTES = [("room:*", RoomChannel), ("lobby", LobbyChannel)]   # (topic pattern, Channel subclass)
    SOCKET = MySocket                                               # optional: a Socket subclass

    app = load("examples.notifications.app")     # AppError(message) for a bad reference
    Server(settings, routes=app.routes, socket_class=app.socket_class)

The module is imported by name with Python's own path resolution: from the current folder
for ``python -m server`` run in a project, from the PEX in a release (which carries the app).
Every refusal is one line naming the module and what is wrong with it, never a traceback:
a node that cannot serve its app stops at boot instead of refusing every join later.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from .channels import Channel, Socket

ROUTES_SHAPE = "ROUTES = [(topic pattern, Channel subclass), ...]"


class AppError(Exception):
    """The app reference cannot be served; the message names the module and the fault."""


@dataclass(frozen=True)
class App:
    module: str
    routes: tuple[tuple[str, type[Channel]], ...]
    # The app's SOCKET, or the base Socket (token auth by configuration) when it has none.
    socket_class: type[Socket] = Socket


def load(name: str) -> App:
    """Imports the module ``name`` and checks what it exposes (``check``)."""
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        # Missing itself (or a parent package) is a wrong reference; anything else it imports
        # being missing is a fault inside the app, reported as such below.
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppError(f"app {name}: no module named {exc.name} on the Python path (the current "
                           f"folder for python -m server, the PEX in a release)") from None
        raise AppError(f"app {name}: importing it raised ModuleNotFoundError: {exc}") from None
    except Exception as exc:  # whatever the app's top level raises, SyntaxError included
        raise AppError(f"app {name}: importing it raised {type(exc).__name__}: {exc}") from None
    return check(module)


def check(module: ModuleType) -> App:
    """The App a module exposes, or AppError naming what is missing or of the wrong shape."""
    name = module.__name__
    if not hasattr(module, "ROUTES"):
        raise AppError(f"app {name}: no ROUTES; an app module defines {ROUTES_SHAPE}")
    routes = module.ROUTES
    if not isinstance(routes, (list, tuple)) or not routes:
        raise AppError(f"app {name}: ROUTES must be a non-empty list, {ROUTES_SHAPE}; got {_show(routes)}")
    checked = tuple(_route(name, index, route) for index, route in enumerate(routes))
    socket_class = getattr(module, "SOCKET", Socket)
    if not (isinstance(socket_class, type) and issubclass(socket_class, Socket)):
        raise AppError(f"app {name}: SOCKET: {_show(socket_class)} is not a subclass of server.channels.Socket")
    return App(name, checked, socket_class)


def _route(name: str, index: int, route: Any) -> tuple[str, type[Channel]]:
    where = f"app {name}: ROUTES[{index}]"
    if not isinstance(route, tuple) or len(route) != 2:
        raise AppError(f"{where} must be a (topic pattern, Channel subclass) pair, got {_show(route)}")
    pattern, channel = route
    if not isinstance(pattern, str) or not pattern or "*" in pattern[:-1]:
        raise AppError(f"{where}: the topic pattern must be a topic (room:lobby) or a prefix ending "
                       f"in * (room:*), got {pattern!r}")
    if not (isinstance(channel, type) and issubclass(channel, Channel)):
        raise AppError(f"{where}: {_show(channel)} is not a subclass of server.channels.Channel")
    return pattern, channel


def _show(value: Any) -> str:
    """A value for a message: short, and classes by name rather than repr."""
    if isinstance(value, type):
        return f"class {value.__module__}.{value.__qualname__}"
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
