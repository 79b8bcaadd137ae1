"""The systems under test: one node; nodes scaled out the Redis way; a gossipy cluster.

Each binds only to its own loopback addresses (127.0.0.x), runs its processes on the server
core, and says which PIDs count as "the server" for CPU and memory.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.request
from typing import Any, Callable

from . import procs
from .results import Results, log

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)

# Loopback blocks per system, away from the 127.0.0.2-10 other tests of this project use.
ADDRESSES = {
    "single": ["127.0.0.100"],
    "redis": ["127.0.0.111", "127.0.0.112", "127.0.0.113"],
    "redis-server": "127.0.0.110",
    "gossipy": ["127.0.0.121", "127.0.0.122", "127.0.0.123"],
    "gossipy-joiner": "127.0.0.124",
    "workers": "127.0.0.140",
    "release": "127.0.0.130",
    "scale": [f"127.0.0.{n}" for n in range(141, 149)],           # bench/scale.py's nodes
    "scale-clients": [f"127.0.0.{n}" for n in range(151, 191)],   # and its clients' source addresses
}

START_TIMEOUT = 60.0


def source_at(rev: str, workdir: str) -> str:
    """The server package as of git revision ``rev``, unpacked under ``workdir``."""
    dest = os.path.join(workdir, "src-" + rev.replace("/", "_").replace("~", "-").replace("^", "-"))
    if os.path.exists(dest):
        shutil.rmtree(dest)
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", REPO, "archive", "--format=tar", rev, "server"],
                             check=True, capture_output=True, timeout=60).stdout
    tar_path = os.path.join(dest, "server.tar")
    with open(tar_path, "wb") as f:
        f.write(archive)
    with tarfile.open(tar_path) as tar:
        tar.extractall(dest, filter="data")
    os.remove(tar_path)
    return dest


def node_config(path: str, host: str, port: int, extra: dict[str, dict[str, Any]] | None = None) -> str:
    sections: dict[str, dict[str, Any]] = {"endpoint": {"host": host, "port": port}}
    for section, values in (extra or {}).items():
        sections.setdefault(section, {}).update(values)
    lines = []
    for section, values in sections.items():
        lines.append(f"{section}:")
        lines.extend(f"  {key}: {value!r}" if isinstance(value, str) else f"  {key}: {value}"
                     for key, value in values.items())
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


# Two of a node's /metrics (RunningServer.metrics): websocket messages and bytes written to clients.
MESSAGES_SENT = "gossipy_websocket_messages_sent_total"
BYTES_WRITTEN = "gossipy_websocket_written_bytes_total"


class RunningServer:
    """One server process (a node, or a node of the Redis way) and where it serves."""

    def __init__(self, label: str, host: str, port: int, proc: procs.Proc) -> None:
        self.label = label
        self.host = host
        self.port = port
        self.proc = proc

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}/socket/websocket"

    @property
    def http(self) -> str:
        return f"http://{self.host}:{self.port}"

    def cluster(self, timeout: float = 1.0) -> dict[str, Any]:
        return procs.http_json(self.http + "/cluster", timeout)

    def metrics(self, timeout: float = 5.0) -> dict[str, float]:
        """Its ``GET /metrics``: each sample's name (with its labels) and value."""
        with urllib.request.urlopen(self.http + "/metrics", timeout=timeout) as response:
            lines = response.read().decode().splitlines()
        return {name: float(value) for name, _, value in (line.rpartition(" ") for line in lines if line[:1] != "#")}

    def wait_serving(self, timeout: float = START_TIMEOUT) -> None:
        procs.wait_for(f"{self.label} serving on {self.http}", self.cluster, timeout,
                       alive=self.proc.alive)


class System:
    """Base: a named set of server processes."""

    name = "?"
    description = ""

    def __init__(self, workdir: str, src: str = REPO, core: int | None = None, label: str | None = None,
                 node_settings: dict[str, dict[str, Any]] | None = None) -> None:
        self.workdir = workdir
        self.src = src
        self.core = core
        self.label = label or self.name
        self.node_settings = node_settings or {}
        self.nodes: list[RunningServer] = []
        self.extra: dict[str, procs.Proc] = {}   # processes that count as server but serve no websockets
        os.makedirs(workdir, exist_ok=True)

    def env(self, **more: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELEASE_") and k != "PORT"}
        env["PYTHONPATH"] = self.src
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env.update(more)
        return env

    def _log(self, name: str) -> str:
        return os.path.join(self.workdir, f"{self.label}-{name}.log")

    def start_node(self, label: str, host: str, *, argv: list[str] | None = None,
                   env: dict[str, str] | None = None,
                   extra: dict[str, dict[str, Any]] | None = None) -> RunningServer:
        port = procs.free_port(host)
        settings = {**self.node_settings}
        for section, values in (extra or {}).items():
            settings[section] = {**settings.get(section, {}), **values}
        config = node_config(os.path.join(self.workdir, f"{self.label}-{label}.yml"), host, port, settings)
        argv = (argv or [sys.executable, "-m", "server"]) + ["--config", config]
        proc = procs.Proc(f"{self.label}-{label}", argv, env=env or self.env(), cwd=self.src,
                          log_path=self._log(label), core=self.core)
        node = RunningServer(label, host, port, proc)
        self.nodes.append(node)
        return node

    def start(self) -> None:
        raise NotImplementedError

    def ws_urls(self) -> list[str]:
        return [n.ws_url for n in self.nodes]

    def server_procs(self) -> dict[str, procs.Proc]:
        out = {n.label: n.proc for n in self.nodes}
        out.update(self.extra)
        return out

    def server_pids(self) -> dict[str, int]:
        """The PIDs that count as the server, by label: CPU and memory are read from these."""
        return {label: p.pid for label, p in self.server_procs().items() if p.alive()}

    def cpu_seconds(self) -> dict[str, float]:
        return {label: procs.cpu_seconds(pid) for label, pid in self.server_pids().items()}

    def system_seconds(self) -> float:
        """Kernel CPU seconds of all server processes (syscalls: socket reads, writes, epoll)."""
        return sum(procs.cpu_times(pid)[1] for pid in self.server_pids().values())

    def rss_bytes(self) -> dict[str, int]:
        return {label: procs.rss_bytes(pid) for label, pid in self.server_pids().items()}

    def check_alive(self) -> None:
        for label, p in self.server_procs().items():
            if not p.alive():
                raise RuntimeError(f"{self.label}: {label} exited (status {p.popen.returncode})\n{p.log_tail()}")

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.proc.stop()
        for p in self.extra.values():
            p.stop()
        self.nodes = []
        self.extra = {}


class Single(System):
    name = "single"
    description = "one Tornado node, no cluster"

    def start(self) -> None:
        node = self.start_node("node1", ADDRESSES["single"][0])
        node.wait_serving()


class RedisWay(System):
    name = "redis"
    description = "3 nodes, each publishing to and subscribing from one Redis (socket.io-redis style)"

    def start(self) -> None:
        redis_server = shutil.which("redis-server")
        if redis_server is None:
            raise RuntimeError("redis-server is not installed (Debian: apt-get install redis-server)")
        host = ADDRESSES["redis-server"]
        port = procs.free_port(host)
        self.extra["redis"] = procs.Proc(
            f"{self.label}-redis-server",
            [redis_server, "--bind", host, "--port", str(port), "--save", "", "--appendonly", "no",
             "--daemonize", "no", "--logfile", "", "--dir", self.workdir],
            log_path=self._log("redis-server"), core=self.core)
        procs.wait_for("redis-server", lambda: _redis_ping(host, port), 15, alive=self.extra["redis"].alive)
        script = os.path.join(HERE, "redis_node.py")
        for i, addr in enumerate(ADDRESSES["redis"], 1):
            self.start_node(f"node{i}", addr, argv=[sys.executable, script, "--redis", f"{host}:{port}"])
        for node in self.nodes:
            node.wait_serving()
        self.redis_version = _redis_version()


def _redis_ping(host: str, port: int) -> bool:
    import socket

    with socket.create_connection((host, port), timeout=0.5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


def _redis_version() -> str | None:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True, timeout=10).stdout
        return out.split("v=", 1)[1].split()[0]
    except (OSError, IndexError, subprocess.SubprocessError):
        return None


class Gossipy(System):
    name = "gossipy"
    description = "3 gossipy nodes in a full mesh over their own peer TCP streams"

    def __init__(self, *args: Any, hosts: list[str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hosts = hosts or ADDRESSES["gossipy"]
        self.cookie = secrets.token_urlsafe(24)
        self.dist_port = procs.common_free_port(self.hosts + [ADDRESSES["gossipy-joiner"]])

    @staticmethod
    def node_name(host: str) -> str:
        return f"gossipy@{host}"

    def cluster_env(self, host: str, peers: list[str]) -> dict[str, str]:
        return self.env(RELEASE_NODE=self.node_name(host), RELEASE_DISTRIBUTION="name",
                        RELEASE_COOKIE=self.cookie,
                        RELEASE_SYNC_NODES=",".join(self.node_name(p) for p in peers))

    def start_member(self, label: str, host: str, peers: list[str]) -> RunningServer:
        return self.start_node(label, host, env=self.cluster_env(host, peers),
                               extra={"node": {"dist_port": self.dist_port}})

    def start(self) -> None:
        hosts = self.hosts
        for i, host in enumerate(hosts, 1):
            self.start_member(f"node{i}", host, [h for h in hosts if h != host])
        for node in self.nodes:
            node.wait_serving()
        self.wait_mesh(self.nodes, START_TIMEOUT)

    def wait_mesh(self, nodes: list[RunningServer], timeout: float) -> float:
        """Waits until every node lists every other; returns the seconds it took."""
        t0 = time.monotonic()
        procs.wait_for("the full mesh", lambda: meshed(nodes), timeout)
        return time.monotonic() - t0


class Workers(System):
    """One node of ``node.workers: 2`` (named, as a distributed node is, so that its workers'
    peer streams stay on this system's own address). Run with ``--no-pin`` beside ``single``:
    pinned, every system's servers share one core, and two workers can only cost more."""

    name = "workers"
    description = "one node of 2 worker processes (node.workers: 2) sharing its port"
    count = 2

    def start(self) -> None:
        host = ADDRESSES["workers"]
        node = self.start_node("node1", host, env=self.env(RELEASE_NODE=f"gossipy@{host}", RELEASE_DISTRIBUTION="name",
                                                           RELEASE_COOKIE=secrets.token_urlsafe(24)),
                               extra={"node": {"workers": self.count, "dist_port": procs.common_free_port([host])}})
        procs.wait_for(f"{self.count} linked workers serving on {node.http}", lambda: self._linked(node),
                       START_TIMEOUT, alive=node.proc.alive)

    def _linked(self, node: RunningServer) -> bool:
        # Each HTTP request is a new connection, which the kernel gives to either worker.
        views = {}
        for _ in range(10 * self.count):
            view = node.cluster(0.5)
            views[view["node"]] = view["nodes"]
        return len(views) == self.count and all(len(peers) == self.count - 1 for peers in views.values())

    def server_pids(self) -> dict[str, int]:
        """The supervisor and its workers (its children)."""
        pids = super().server_pids()
        for node in self.nodes:
            children = procs.children(node.proc.pid)
            pids.update({f"{node.label}-worker{i}": pid for i, pid in enumerate(children, 1)})
        return pids


def meshed(nodes: list[RunningServer]) -> bool:
    names = {Gossipy.node_name(n.host) for n in nodes}
    for node in nodes:
        view = node.cluster(0.5)
        if not (names - {view["node"]}) <= set(view["nodes"]):
            return False
    return True


def freeze(proc: procs.Proc) -> None:
    proc.signal(signal.SIGSTOP)


SYSTEMS = {cls.name: cls for cls in (Single, RedisWay, Gossipy, Workers)}


class SystemRunner:
    """Starts a fresh system of a kind for one workload and stops it whatever the workload did;
    a failure is logged and recorded, and the run goes on with the next system."""

    def __init__(self, workdir: str, core: int | None, results: Results,
                 wait_quiet: Callable[[], object]) -> None:
        self.workdir = workdir
        self.core = core
        self.results = results
        self.wait_quiet = wait_quiet

    def run(self, kind: str, src: str, label: str, body: Callable[[System], None]) -> None:
        system = SYSTEMS[kind](self.workdir, src=src, core=self.core, label=label)
        try:
            self.wait_quiet()
            t0 = time.monotonic()
            system.start()
            log(f"{label}: started ({system.description}) in {time.monotonic() - t0:.1f} s")
            body(system)
        except Exception as exc:
            log(f"{label}: FAILED: {exc}")
            self.results.emit({"system": label, "workload": "error", "error": str(exc)[:2000]})
        finally:
            system.stop()
