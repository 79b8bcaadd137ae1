"""The app reference: ``app:`` in vm.yml (or GOSSIPY_APP) names a module exposing ROUTES (and
SOCKET). The checks in-process, then through the command line, where a bad reference stops
``describe`` and ``foreground`` with one line and exit 2."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from server import apps, chat, settings
from server.channels import Channel, Socket

from support import ROOT
from support.phoenix_client import PhoenixClient
from support.server_process import ServerProcess, node_env


class Room(Channel):
    pass


class MySocket(Socket):
    pass


def module(**attributes: Any) -> types.ModuleType:
    made = types.ModuleType("myapp")
    made.__dict__.update(attributes)
    return made


def test_the_default_app_is_the_chat() -> None:
    app = apps.load(settings.load(environ={}).app)
    assert app == apps.App("server.chat", tuple(chat.ROUTES), Socket)


def test_routes_and_socket_are_taken_as_given() -> None:
    app = apps.check(module(ROUTES=[("room:*", Room), ("lobby", Room)], SOCKET=MySocket))
    assert app.routes == (("room:*", Room), ("lobby", Room)) and app.socket_class is MySocket


# (id, the module's attributes, what the one-line message says after "app myapp: ")
BAD_MODULES = [
    ("no ROUTES", {}, "no ROUTES; an app module defines ROUTES = [(topic pattern, Channel subclass), ...]"),
    ("ROUTES not a list", {"ROUTES": Room}, "ROUTES must be a non-empty list"),
    ("ROUTES empty", {"ROUTES": []}, "ROUTES must be a non-empty list"),
    ("not a pair", {"ROUTES": [("room:*", Room, 1)]}, "ROUTES[0] must be a (topic pattern, Channel subclass) pair"),
    ("pattern not a string", {"ROUTES": [(1, Room)]}, "ROUTES[0]: the topic pattern must be"),
    ("star inside", {"ROUTES": [("room:*", Room), ("a*b", Room)]}, "ROUTES[1]: the topic pattern must be a topic "
     "(room:lobby) or a prefix ending in * (room:*), got 'a*b'"),
    ("not a channel", {"ROUTES": [("room:*", dict)]}, "ROUTES[0]: class builtins.dict is not a subclass of "
     "server.channels.Channel"),
    ("channel instance", {"ROUTES": [("room:*", "Room")]}, "ROUTES[0]: 'Room' is not a subclass"),
    ("SOCKET not a class", {"ROUTES": [("room:*", Room)], "SOCKET": "MySocket"}, "SOCKET: 'MySocket' is not a "
     "subclass of server.channels.Socket"),
    ("SOCKET not a Socket", {"ROUTES": [("room:*", Room)], "SOCKET": Room}, "SOCKET: class test_apps.Room is not a "
     "subclass of server.channels.Socket"),
]


@pytest.mark.parametrize("attributes, message", [c[1:] for c in BAD_MODULES], ids=[c[0] for c in BAD_MODULES])
def test_a_bad_app_module_is_named_with_what_is_wrong(attributes: dict[str, Any], message: str) -> None:
    with pytest.raises(apps.AppError) as refused:
        apps.check(module(**attributes))
    assert str(refused.value).startswith(f"app myapp: {message}")
    assert "\n" not in str(refused.value)


@pytest.fixture
def app_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A folder on sys.path for app modules; what they import is forgotten afterwards."""
    folder = tmp_path / "apps"
    folder.mkdir()
    write_apps(folder)
    monkeypatch.syspath_prepend(str(folder))
    before = set(sys.modules)
    yield folder
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write_apps(folder: Path) -> None:
    """One good app (a package with SOCKET) and one of each way an import can fail."""
    (folder / "goodapp").mkdir()
    (folder / "goodapp" / "__init__.py").write_text(
        "from server.channels import Channel, Socket\n\n"
        "class Room(Channel):\n    pass\n\n"
        "class MySocket(Socket):\n    pass\n\n"
        'ROUTES = [("room:*", Room)]\nSOCKET = MySocket\n')
    (folder / "brokenimport.py").write_text("import no_such_dependency_xyz\n")
    (folder / "raising.py").write_text('raise RuntimeError("DATABASE_URL is not set")\n')
    (folder / "syntax.py").write_text("ROUTES = [\n")
    (folder / "noroutes.py").write_text("ROOTS = []\n")


LOAD_REFUSALS = [
    ("nosuchapp", "app nosuchapp: no module named nosuchapp on the Python path"),
    ("goodapp.missing", "app goodapp.missing: no module named goodapp.missing on the Python path"),
    ("nopackage.app", "app nopackage.app: no module named nopackage on the Python path"),
    ("brokenimport", "app brokenimport: importing it raised ModuleNotFoundError: "
                     "No module named 'no_such_dependency_xyz'"),
    ("raising", "app raising: importing it raised RuntimeError: DATABASE_URL is not set"),
    ("syntax", "app syntax: importing it raised SyntaxError: "),
    ("noroutes", "app noroutes: no ROUTES"),
]


@pytest.mark.parametrize("name, message", LOAD_REFUSALS, ids=[c[0] for c in LOAD_REFUSALS])
def test_a_module_that_cannot_be_imported_is_named_with_the_exception(app_folder: Path, name: str,
                                                                       message: str) -> None:
    with pytest.raises(apps.AppError) as refused:
        apps.load(name)
    assert str(refused.value).startswith(message) and "\n" not in str(refused.value)


def test_a_package_app_loads_with_its_socket_class(app_folder: Path) -> None:
    app = apps.load("goodapp")
    assert app.module == "goodapp" and [p for p, _ in app.routes] == ["room:*"]
    assert app.socket_class is not None and app.socket_class.__name__ == "MySocket"


# ---- the setting --------------------------------------------------------------------------------

VM_YML = """\
release:
  name: gossipy
  default_environment: dev
app: goodapp
environments:
  dev:
    include_python: false
  other:
    include_python: false
    app: raising
"""


def test_app_is_a_top_level_key_an_environment_may_override_and_gossipy_app_wins(tmp_path: Path) -> None:
    path = tmp_path / "vm.yml"
    path.write_text(VM_YML)
    assert settings.load(str(path), environ={}).app == "goodapp"
    assert settings.load(str(path), "other", environ={}).app == "raising"
    assert settings.load(str(path), environ={settings.ENV_APP: "server.chat"}).app == "server.chat"
    assert settings.flatten(settings.read_document(str(path)), "other")["app"] == "raising"
    assert settings.load(str(path), environ={}).describe()["app"] == "goodapp"


@pytest.mark.parametrize("text, where", [
    (VM_YML.replace("app: goodapp", "app: my-app"), "vm.yml, line 4: app: expected a Python module name"),
    (VM_YML.replace("app: raising", "app: [x]"), "vm.yml, line 10: environments.other.app: expected a Python module"),
])
def test_a_malformed_app_setting_names_the_file_line_and_key(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "vm.yml"
    path.write_text(text)
    with pytest.raises(settings.SettingsError) as refused:
        settings.load(str(path), environ={})
    assert str(refused.value).startswith(f"{path.parent}/{where}")


def test_a_malformed_gossipy_app_names_the_variable() -> None:
    with pytest.raises(settings.SettingsError, match=r"^GOSSIPY_APP='my app': expected a Python module name"):
        settings.load(environ={settings.ENV_APP: "my app"})


# ---- the command line ---------------------------------------------------------------------------

def cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``python -m server ARGS`` run in ``folder``, gossipy from the checkout (PYTHONPATH)."""
    return subprocess.run([sys.executable, "-m", "server", *args], cwd=folder,
                          env=node_env(PYTHONPATH=str(ROOT), **env), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project folder: its vm.yml names an app, its app modules sit beside it."""
    folder = tmp_path_factory.mktemp("project")
    write_apps(folder)
    (folder / "vm.yml").write_text(VM_YML)
    return folder


@pytest.mark.parametrize("command", ["describe", "foreground"])
@pytest.mark.parametrize("name, message", LOAD_REFUSALS, ids=[c[0] for c in LOAD_REFUSALS])
def test_a_bad_app_stops_the_node_with_one_line_and_exit_2(project: Path, command: str, name: str,
                                                           message: str) -> None:
    done = cli(project, "--config", "vm.yml", command, GOSSIPY_APP=name)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"gossipy: {message}") and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""


def test_the_app_is_imported_from_the_folder_python_m_server_runs_in(project: Path) -> None:
    done = cli(project, "--config", "vm.yml", "describe")
    assert done.returncode == 0, done.stderr
    assert '"app": "goodapp"' in done.stdout
    assert cli(project, "--config", "vm.yml", "--env", "other", "describe").stderr.startswith(
        "gossipy: app raising: importing it raised RuntimeError: DATABASE_URL is not set")


# ---- the example app, from the checkout ---------------------------------------------------------

def test_the_notifications_example_refuses_anonymous_joins_when_auth_is_off(start_node: Callable[..., ServerProcess]) -> None:
    """No token secret: every connection is anonymous, and the channel's own check still keeps
    a user's topic to that user (with tokens: tests/release/test_release_notifications.py)."""
    node = start_node(env={"GOSSIPY_APP": "examples.notifications.app"})

    async def join() -> Any:
        client = await PhoenixClient.connect(node.port, host=node.host)
        try:
            return (await client.join("user:42")).payload
        finally:
            client.close()

    assert asyncio.run(join()) == {"status": "error", "response": {"reason": "sign in first: connect with a token"}}
    assert node.lines(r"app examples\.notifications\.app: topics user:\*")
