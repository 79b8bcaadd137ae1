"""The installable package: a wheel built from this tree, installed into a fresh venv, is a
working ``gossipy`` command (the same CLI as ``python -m server``) with its pages and templates.

The wheel is built from a copy of the tree (setuptools writes ``build/`` and ``*.egg-info``
next to the sources, and stale files there would end up in the next wheel), once per session,
and installed with its dependencies constrained to requirements.txt's pins, as a release has
them. pip needs the package index (or its cache) for setuptools and the dependencies.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from tornado.httpclient import AsyncHTTPClient

from support import ROOT
from support.phoenix_client import join_room
from support.server_process import ServerProcess, free_port, node_env, run_node

PIP_TIMEOUT = 300
# What the wheel must hold besides modules: the pages the server serves, the release's templates.
DATA_DIRS = ("server/static", "release/templates")
_NOT_SOURCES = shutil.ignore_patterns(".git", "node_modules", "_build", "build", "*.egg-info", "__pycache__",
                                      "artifacts", "*.pex")


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path
    outside: Path  # a folder without the sources, to run the installed command from

    def bin(self, name: str) -> str:
        return str(self.venv / "bin" / name)


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, env=node_env(), stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=PIP_TIMEOUT)
    assert done.returncode == 0, f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="session")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    work = tmp_path_factory.mktemp("package")
    source = work / "source"
    shutil.copytree(ROOT, source, ignore=_NOT_SOURCES)
    pip = ["--disable-pip-version-check", "--no-input", "-q"]
    _run([sys.executable, "-m", "pip", "wheel", *pip, "--no-deps", "-w", str(work / "dist"), str(source)], work)
    (wheel,) = (work / "dist").glob("gossipy-*.whl")
    venv = work / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], work)
    _run([str(venv / "bin" / "python"), "-m", "pip", "install", *pip,
          "-c", str(ROOT / "requirements.txt"), str(wheel)], work)
    outside = work / "outside"
    outside.mkdir()
    return Installed(wheel, venv, outside)


def test_wheel_holds_the_server_and_release_packages_and_their_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        names = set(wheel.namelist())
    assert {name.split("/", 1)[0] for name in names} == {"server", "release", "gossipy-0.0.1.dist-info"}
    for folder in DATA_DIRS:
        files = {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).iterdir() if p.is_file()}
        assert files and files <= names, f"{folder}: missing from the wheel: {sorted(files - names)}"
    assert "server/channels/__init__.py" in names and "server/cluster/__init__.py" in names


def test_wheel_requires_exactly_what_requirements_txt_pins(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as wheel:
        metadata = wheel.read("gossipy-0.0.1.dist-info/METADATA").decode()
    required = [Requirement(line.split(":", 1)[1]) for line in metadata.splitlines()
                if line.startswith("Requires-Dist:")]
    ranges = {r.name.lower(): r.specifier for r in required if r.marker is None}
    pins = [Requirement(line.split("#", 1)[0]) for line in (ROOT / "requirements.txt").read_text().splitlines()
            if line.split("#", 1)[0].strip()]
    assert ranges.keys() == {pin.name.lower() for pin in pins}
    for pin in pins:
        (version,) = (spec.version for spec in pin.specifier)
        assert version in ranges[pin.name.lower()], f"requirements.txt pins {pin}; pyproject.toml allows " \
                                                    f"{pin.name}{ranges[pin.name.lower()]}"


def test_the_venv_runs_the_installed_package(installed: Installed) -> None:
    done = subprocess.run([installed.bin("python"), "-c", "import server; print(server.__file__)"],
                          cwd=installed.outside, env=node_env(), capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()).is_relative_to(installed.venv), done.stdout


def test_gossipy_describe_is_python_m_server_describe(installed: Installed) -> None:
    done = subprocess.run([installed.bin("gossipy"), "describe"], cwd=installed.outside, env=node_env(),
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    source = run_node("describe")
    assert source.returncode == 0, source.stderr
    assert json.loads(done.stdout) == json.loads(source.stdout)


async def test_gossipy_foreground_serves_pages_and_channels(installed: Installed) -> None:
    config = installed.outside / "vm.yml"
    config.write_text(yaml.safe_dump({"endpoint": {"host": "127.0.0.1"}}), encoding="utf-8")
    log_path = installed.outside / "foreground.log"
    port = free_port(["127.0.0.1"])
    with open(log_path, "wb") as log_file:
        proc = subprocess.Popen([installed.bin("gossipy"), "--config", str(config), "foreground"],
                                cwd=installed.outside, env=node_env(PORT=str(port)), stdin=subprocess.DEVNULL,
                                stdout=log_file, stderr=subprocess.STDOUT)
    node = ServerProcess(proc, log_path)
    node.port = port
    try:
        await node.async_wait_for_line(rf"serving websockets on 127\.0\.0\.1:{port}\b", timeout=15)
        http = AsyncHTTPClient()
        for path in ("/", "/ws.html"):
            response = await http.fetch(node.url(path), raise_error=False)
            assert response.code == 200, f"GET {path}: {response.code}"
        client = await join_room(node, vsn="2.0.0", topic="room:lobby")
        client.close()
        node.assert_clean()
    finally:
        status = node.stop()
    assert status == 0, node.log()
