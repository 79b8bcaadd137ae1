"""The e2e harness: release trees, compose projects of real containers, and the chat checks.

* :class:`ReleaseTree` — a temporary copy of the repository's files where ``build.py`` runs,
  so a test may edit vm.yml or the compose file and rebuild without touching the repository.
* :class:`Cluster` — one compose project (a unique name per test) driven through the compose
  CLI and the Docker SDK; :meth:`Cluster.remove` deletes every container, network and image
  it made, and is called pass or fail.
* chat helpers over :class:`PhoenixClient` (real websockets from the host to 127.0.0.1);
  ``join_room`` and ``assert_shout_reaches`` are phoenix_client's.

Every step prints a timestamped progress line through :func:`log`.
"""

from __future__ import annotations

import asyncio
import fcntl
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable

import docker
import yaml
from docker.errors import DockerException, NotFound

from . import ROOT, baseimage, checkout
from .phoenix_client import Closed, PhoenixClient, assert_shout_reaches, join_room
from .requirements import missing

TARBALL = Path("_build/prod/rel/gossipy/gossipy.tar.gz")  # what the Dockerfile adds
HOST_PORTS = {"ws1": 4001, "ws2": 4002, "ws3": 4003}
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
COMMAND_TIMEOUT = 600  # seconds for one build or compose command
# The host ports are fixed (4001-4003), so clusters on one machine take turns: each holds this
# lock from `up` to `remove`, across processes (another developer's run waits, not collides).
PORTS_LOCK = Path(tempfile.gettempdir()) / "gossipy-e2e-ports.lock"
PORTS_LOCK_WAIT = 900.0

_sink: Callable[[str], None] = lambda line: print(line, file=sys.stderr, flush=True)


def live_progress(config: Any) -> None:
    """Sends progress lines to pytest's terminal as they happen, past output capture, so a CI
    log shows where a run stopped. ``config``: the pytest config (``request.config``)."""
    global _sink

    def write(line: str) -> None:
        reporter = config.pluginmanager.getplugin("terminalreporter")
        capture = config.pluginmanager.getplugin("capturemanager")
        if reporter is None or capture is None:
            print(line, file=sys.stderr, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(line)

    _sink = write


def log(message: str) -> None:
    _sink(f"[{time.strftime('%H:%M:%S')}] e2e: {message}")


def node(service: str) -> str:
    return f"gossipy@{service}"


# ---- commands ---------------------------------------------------------------------------------

class CommandError(AssertionError):
    pass


def run(command: list[str], cwd: Path, timeout: float = COMMAND_TIMEOUT, env: dict[str, str] | None = None) -> str:
    """Runs a command to completion (``env``: variables added to this process's); returns its
    output, or raises with the output's tail."""
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=cwd, timeout=timeout,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    except subprocess.TimeoutExpired as exc:
        tail = (exc.stdout or b"")[-3000:]
        raise CommandError(f"`{' '.join(command)}` (in {cwd}) still running after {timeout} s:\n{tail}") from None
    if result.returncode != 0:
        raise CommandError(f"`{' '.join(command)}` (in {cwd}) exited with {result.returncode}:\n"
                           f"{result.stdout[-4000:]}")
    log(f"  `{' '.join(command)}` ok in {time.monotonic() - started:.1f} s")
    return result.stdout


def compose_command() -> list[str]:
    """Compose v2 (`docker compose`) when the plugin is there, else Debian's v1 `docker-compose`."""
    if shutil.which("docker"):
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True)
        if probe.returncode == 0:
            return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    raise CommandError("neither `docker compose` nor `docker-compose` found (apt-get install docker-compose)")


def docker_engine() -> docker.DockerClient:
    """A client of the local Docker engine, with compose found and the base image built.
    No engine or no compose: the test skips locally and fails under CI=true."""
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except DockerException as exc:
        missing(f"no Docker engine answers (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset')}: {exc}); "
                "`bash .ci/setup-machine` starts one")
    try:
        compose_command()
    except CommandError as exc:
        missing(str(exc))
    baseimage.ensure_base_image(client, log=log)
    return client


# ---- release trees ---------------------------------------------------------------------------

class ReleaseTree:
    """A copy of the repository's files in ``path``; builds and edits happen there."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def copy_repository(cls, dest: Path) -> "ReleaseTree":
        """The files git knows of (tracked, or new and not ignored), as the working tree has them."""
        checkout.copy_repository(dest)
        log(f"copied the files of {ROOT} to {dest}")
        return cls(dest)

    def copy(self, dest: Path) -> "ReleaseTree":
        """A copy of this tree, build outputs included."""
        shutil.copytree(self.path, dest, symlinks=True)
        log(f"copied {self.path} to {dest}")
        return ReleaseTree(dest)

    @property
    def tarball(self) -> Path:
        return self.path / TARBALL

    def build(self, *args: str) -> str:
        log(f"python build.py {' '.join(args)} (in {self.path})")
        return run([sys.executable, "build.py", *args], cwd=self.path)

    def release(self) -> Path:
        self.build("release", "--env=prod")
        if not self.tarball.is_file():
            raise CommandError(f"`build.py release --env=prod` made no {TARBALL} in {self.path}")
        log(f"release tarball {self.tarball.stat().st_size / 1e6:.1f} MB")
        return self.tarball

    @property
    def vm_yml(self) -> Path:
        return self.path / "vm.yml"

    def prod_sync_nodes(self) -> list[str]:
        """The prod environment's kernel.sync_nodes_optional, as the settings module reads it."""
        out = run([sys.executable, "-m", "server", "--config", str(self.vm_yml), "--env", "prod", "describe"],
                  cwd=self.path)
        return list(json.loads(out)["distribution"]["sync_nodes_optional"])

    def add_sync_node(self, name: str) -> None:
        """Appends ``name`` to the prod environment's kernel.sync_nodes_optional in vm.yml."""
        data = yaml.safe_load(self.vm_yml.read_text())
        try:
            prod = data["environments"]["prod"]
        except (KeyError, TypeError):
            raise CommandError(f"{self.vm_yml}: no environments.prod section") from None
        current = self.prod_sync_nodes()
        prod.setdefault("kernel", {})["sync_nodes_optional"] = current + [name]
        self.vm_yml.write_text(yaml.safe_dump(data, sort_keys=False))
        log(f"{self.vm_yml}: environments.prod.kernel.sync_nodes_optional += {name}")

    def add_compose_service(self, service: str, host_port: int) -> None:
        """Adds a service as the article does: build ., hostname, one published HTTP port."""
        path = self.path / "docker-compose.yml"
        data = yaml.safe_load(path.read_text())
        data["services"][service] = {"build": ".", "hostname": service, "ports": [f"{host_port}:4000"]}
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        log(f"{path}: service {service} added (port {host_port}:4000)")


# ---- clusters --------------------------------------------------------------------------------

def port_answers(port: int, host: str = "127.0.0.1") -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def cluster_view(port: int, host: str = "127.0.0.1") -> dict[str, Any] | None:
    """``GET /cluster`` on a node's published port (or, with ``host``, its container address);
    None while it does not answer."""
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/cluster", timeout=2) as response:
            return json.loads(response.read())
    except (OSError, urllib.error.URLError, ValueError):
        return None


def _docker_time(stamp: str) -> float:
    """Docker's RFC 3339 UTC time with nanoseconds (2026-11-27T08:16:15.574085176Z) -> epoch s."""
    date, _, fraction = stamp.rstrip("Z").partition(".")
    when = datetime.fromisoformat(date).replace(tzinfo=timezone.utc)
    return when.timestamp() + (float("0." + fraction) if fraction else 0.0)


def stamped_lines(container: Any, pattern: str) -> list[tuple[float, str]]:
    """(docker's timestamp as epoch seconds, line) for each log line of ``container`` (the
    SDK's) matching ``pattern``."""
    found = []
    for line in container.logs(timestamps=True).decode(errors="replace").splitlines():
        stamp, _, text = line.partition(" ")
        if re.search(pattern, text):
            found.append((_docker_time(stamp), text))
    return found


_ports_holder: str | None = None  # the project of this process that holds PORTS_LOCK


class Cluster:
    """One compose project: containers ws1, ws2 (, ws3) from a release tree's compose file."""

    def __init__(self, client: docker.DockerClient, tree: ReleaseTree) -> None:
        self.client = client
        self.tree = tree
        self.project = f"gossipye2e{uuid.uuid4().hex[:10]}"
        self.compose = compose_command()
        self.extra: list[str] = []  # ids of containers started outside compose
        self._ports_lock: Any = None
        self.last_tree = tree  # `down` uses the compose file of the last `up`

    def _hold_ports(self) -> None:
        global _ports_holder
        if self._ports_lock is not None:
            return
        if _ports_holder is not None:
            raise CommandError(f"{self.project}: cluster {_ports_holder} of this process still holds the "
                               f"host ports; remove it first")
        lock = open(PORTS_LOCK, "w")
        deadline = time.monotonic() + PORTS_LOCK_WAIT
        waiting = False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise CommandError(f"another e2e cluster on this machine held {PORTS_LOCK} (ports "
                                       f"4001-4003) for {PORTS_LOCK_WAIT:.0f} s") from None
                if not waiting:
                    log(f"{self.project}: waiting for another e2e cluster on this machine to release "
                        f"ports 4001-4003 ({PORTS_LOCK})")
                    waiting = True
                time.sleep(1)
        self._ports_lock = lock
        _ports_holder = self.project

    def _release_ports(self) -> None:
        global _ports_holder
        if self._ports_lock is not None:
            self._ports_lock.close()
            self._ports_lock = None
            _ports_holder = None

    def _compose(self, *args: str, tree: ReleaseTree | None = None) -> str:
        tree = tree or self.tree
        return run([*self.compose, "-p", self.project, "-f", str(tree.path / "docker-compose.yml"), *args],
                   cwd=tree.path)

    def up(self, *services: str, tree: ReleaseTree | None = None, scale: dict[str, int] | None = None) -> None:
        """``compose up -d [--scale service=n ...] [services]`` (builds the images from the
        tree's release tarball)."""
        self._hold_ports()
        wanted = services or tuple(yaml.safe_load((self.tree.path / "docker-compose.yml").read_text())["services"])
        busy = [HOST_PORTS[s] for s in wanted if s in HOST_PORTS and port_answers(HOST_PORTS[s])]
        if busy:
            raise CommandError(f"127.0.0.1 port(s) {busy} already in use: another cluster running? (`docker ps`)")
        log(f"{self.project}: compose up {' '.join(services) or '(all)'}")
        scaled = [arg for service, n in (scale or {}).items() for arg in ("--scale", f"{service}={n}")]
        self._compose("up", "-d", *scaled, *services, tree=tree)
        self.last_tree = tree or self.tree

    def kill(self, service: str) -> None:
        log(f"{self.project}: compose kill {service}")
        self._compose("kill", service)

    def start(self, service: str) -> None:
        log(f"{self.project}: compose start {service}")
        self._compose("start", service)

    def container(self, who: str):
        """The container of a compose service ("ws1"), or of an id that :meth:`run_extra` returned."""
        if who in self.extra:
            return self.client.containers.get(who)
        found = self.client.containers.list(all=True, filters={"label": [f"{PROJECT_LABEL}={self.project}",
                                                                         f"{SERVICE_LABEL}={who}"]})
        if len(found) != 1:
            raise CommandError(f"{self.project}: expected one container for service {who}, found {len(found)}")
        return found[0]

    def started_at(self, service: str) -> tuple[str, str]:
        """(container id, State.StartedAt): both unchanged means the node was not restarted."""
        container = self.container(service)
        container.reload()
        return container.id, container.attrs["State"]["StartedAt"]

    def start_time(self, who: str) -> float:
        """When the container last started (State.StartedAt), in epoch seconds."""
        container = self.container(who)
        container.reload()
        return _docker_time(container.attrs["State"]["StartedAt"])

    def logs(self, who: str) -> str:
        return self.container(who).logs().decode(errors="replace")

    def _stamped_lines(self, who: str, pattern: str) -> list[tuple[float, str]]:
        return stamped_lines(self.container(who), pattern)

    def log_times(self, who: str, pattern: str) -> list[float]:
        """When each log line of ``who`` matching ``pattern`` was written (epoch seconds)."""
        times = [when for when, _ in self._stamped_lines(who, pattern)]
        if not times:
            raise AssertionError(f"{self.project}: no log line of {who} matches {pattern!r}:\n{self.logs(who)[-3000:]}")
        return times

    def wait_log(self, who: str, pattern: str, timeout: float = 30.0) -> str:
        """The first log line of ``who`` matching ``pattern``, waiting for it up to ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            found = self._stamped_lines(who, pattern)
            if found:
                return found[0][1]
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.project}: {who} logged no line matching {pattern!r} within "
                                     f"{timeout} s:\n{self.logs(who)[-3000:]}")
            time.sleep(0.25)

    def network(self) -> str:
        return f"{self.project}_default"

    def run_extra(self, hostname: str, environment: dict[str, str], like: str = "ws1") -> str:
        """Starts a container from ``like``'s image on the project's network; returns its id."""
        image = self.container(like).image
        log(f"{self.project}: starting extra node {hostname} from {like}'s image, env {sorted(environment)}")
        container = self.client.containers.run(
            image.id, detach=True, name=f"{self.project}_{hostname}", hostname=hostname,
            network=self.network(), environment=environment,
            labels={PROJECT_LABEL: self.project})
        self.extra.append(container.id)
        return container.id

    def exec(self, who: str, *command: str) -> tuple[int, str]:
        """Runs a command in a container (in the release's folder); (exit code, output)."""
        name = who if who not in self.extra else who[:12]
        log(f"{self.project}: docker exec {name} {' '.join(command)}")
        result = self.container(who).exec_run(list(command), workdir="/www/gossipy")
        return result.exit_code, result.output.decode(errors="replace")

    def wait_mesh(self, services: Iterable[str], timeout: float = 40.0) -> float:
        """Polls every node's /cluster until each lists all the others; returns the seconds taken."""
        services = list(services)
        want = {node(s): {node(o) for o in services if o != s} for s in services}
        log(f"{self.project}: waiting for the mesh {sorted(want)}")
        started = time.monotonic()
        deadline = started + timeout
        views: dict[str, Any] = {}
        while time.monotonic() < deadline:
            views = {s: cluster_view(HOST_PORTS[s]) for s in services}
            if all(v is not None and v.get("node") == node(s) and set(v.get("nodes", ())) >= want[node(s)]
                   for s, v in views.items()):
                took = time.monotonic() - started
                log(f"{self.project}: mesh complete after {took:.2f} s")
                return took
            time.sleep(0.1)
        raise AssertionError(f"{self.project}: no full mesh of {services} within {timeout} s; "
                             f"last /cluster views: {views}\n{self.describe_state()}")

    def describe_state(self) -> str:
        """Container states and log tails, for failure messages."""
        lines = []
        for container in self.client.containers.list(all=True, filters={"label": f"{PROJECT_LABEL}={self.project}"}):
            lines.append(f"--- {container.name}: {container.status}")
            lines.append(container.logs(tail=25).decode(errors="replace"))
        return "\n".join(lines)

    def remove(self) -> None:
        """Removes everything the project made: containers, networks, images. Never raises."""
        log(f"{self.project}: removing containers, networks and images")
        for container_id in self.extra:  # first: compose does not know them, they hold the network
            try:
                self.client.containers.get(container_id).remove(force=True, v=True)
            except DockerException as exc:
                log(f"{self.project}: cannot remove container {container_id[:12]}: {exc}")
        try:
            self._compose("down", "--rmi", "local", "--volumes", "--remove-orphans", "--timeout", "5",
                          tree=self.last_tree)
        except (CommandError, OSError) as exc:
            log(f"{self.project}: compose down failed, sweeping with the SDK: {exc}")
        self._sweep()
        self._release_ports()

    def _sweep(self) -> None:
        labels = {"label": f"{PROJECT_LABEL}={self.project}"}
        try:
            for container in self.client.containers.list(all=True, filters=labels):
                log(f"  removing container {container.name}")
                container.remove(force=True, v=True)
            for network in self.client.networks.list(filters=labels):
                log(f"  removing network {network.name}")
                network.remove()
            prefix = re.compile(rf"^{self.project}[-_]")
            for image in self.client.images.list():
                if any(prefix.match(tag) for tag in image.tags):
                    log(f"  removing image {image.tags}")
                    self.client.images.remove(image.id, force=True)
        except (DockerException, NotFound) as exc:
            log(f"{self.project}: cleanup error (remove by hand: docker ps -a --filter label={PROJECT_LABEL}={self.project}): {exc}")


# ---- chat ------------------------------------------------------------------------------------

def where(client: PhoenixClient) -> str:
    return f":{client.port}"


async def chat_between(ports: list[int], label: str) -> None:
    """One client per port joins room:1; each shouts once and every client gets every shout."""
    clients = [await join_room(port) for port in ports]
    try:
        for client in clients:
            await assert_shout_reaches(client, clients, f"{label} from {where(client)}")
    finally:
        close_all(clients)


async def assert_disconnected(client: PhoenixClient, timeout: float = 15.0) -> None:
    try:
        while True:
            await client.receive(timeout)
    except Closed:
        return
    except asyncio.TimeoutError:
        raise AssertionError(f"the client on {where(client)} is still connected after {timeout} s") from None


def close_all(clients: Iterable[PhoenixClient]) -> None:
    for client in clients:
        client.close()
