"""Real gossipy node processes on 127.0.0.x: a harness for cluster, browser, benchmark and
hardening tests.

Node ``i`` is ``gossipy@127.0.0.<i>``; it serves HTTP on its own address (a port chosen once
and kept across restarts, so clients reconnect to the same URL) and the distribution port that
all nodes share. Each node gets a ``--config`` file written by the harness; ``env`` adds
overrides (``RELEASE_COOKIE``, ``RELEASE_NODE``, ... win over the file, as in a release).
Everything a node prints goes to its own log file. Nodes are signalled by PID only, and every
process the harness started is gone when its ``with`` block ends, pass or fail (async tests
use ``async with``, so their clients keep being served while the nodes stop)::

    async with NodeProcesses(tmp_path) as cluster:
        a, b, c = cluster.start_many([2, 3, 4])      # each lists all three
        await cluster.async_wait_for_mesh([a, b, c])  # wait_for_mesh in a plain test
        client = await join_room(a)                   # support/phoenix_client.py
        a.kill()                                      # SIGKILL
        a = cluster.restart(a)                        # same settings, a new PID

Serving means ``GET /cluster`` answers (``{"node": ..., "nodes": [...]}``).
"""

from __future__ import annotations

import collections
import copy
import json
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterable

import yaml

from .server_process import ServerProcess, async_wait_until, free_port, spawn_node, wait_until

COOKIE = "node-processes-test-cookie-9c41e7"
SYNC_TIMEOUT_MS = 3000


def address(i: int) -> str:
    return f"127.0.0.{i}"


def node_name(i: int) -> str:
    return f"gossipy@{address(i)}"


def established_streams(port: int, among: Iterable[str]) -> collections.Counter[frozenset[str]]:
    """Established TCP streams to ``port`` between two of the addresses ``among`` (a test's
    nodes), counted per pair of addresses (nodes dial from the address they listen on, so an
    address names a node). Other sockets on the machine that happen to use the same port number
    (another test run's client, say, on 127.0.0.1) are not counted."""
    among = set(among)
    pairs: collections.Counter[frozenset[str]] = collections.Counter()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        (local_ip, local_port), (remote_ip, _) = (_endpoint(fields[1]), _endpoint(fields[2]))
        # ESTABLISHED, the accepting side's socket, both ends the test's own
        if fields[3] == "01" and local_port == port and {local_ip, remote_ip} <= among:
            pairs[frozenset((local_ip, remote_ip))] += 1
    return pairs


def _endpoint(text: str) -> tuple[str, int]:
    ip, port = text.split(":")
    return socket.inet_ntoa(bytes.fromhex(ip)[::-1]), int(port, 16)


def _merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class NodeProcess(ServerProcess):
    """One node of a cluster: a ServerProcess (log, signals, exit status) plus its settings and cluster view."""

    def __init__(self, proc: subprocess.Popen, log_path: Path, index: int, http_port: int,
                 config: dict[str, Any], env: dict[str, str]) -> None:
        super().__init__(proc, log_path)
        self.index = index
        self.host = config["endpoint"]["host"]
        self.port = http_port
        self.config = config
        self.env = env

    @property
    def name(self) -> str:
        return self.env.get("RELEASE_NODE", self.config["node"]["name"])

    def cluster(self, timeout: float = 2.0) -> dict[str, Any]:
        """``GET /cluster``: ``{"node": its name, "nodes": the peers it is connected to}``."""
        with urllib.request.urlopen(self.url("/cluster"), timeout=timeout) as response:
            return json.loads(response.read())

    def connected(self) -> list[str]:
        return self.cluster()["nodes"]

    def serving(self) -> bool:
        if self.proc.poll() is not None:
            raise AssertionError(f"{self.name} exited with {self.proc.returncode}:\n{self.log()}")
        try:
            return self.cluster(timeout=0.5)["node"] == self.name
        except (OSError, ValueError):
            return False

    def kill(self) -> None:
        """SIGKILL: no goodbye to the peers, no close frames to the clients."""
        self.stop(signal.SIGKILL)

    def terminate(self, timeout: float = 10.0) -> int:
        """SIGTERM: the graceful stop; returns the exit status."""
        return self.stop(signal.SIGTERM, timeout)


class NodeProcesses:
    """Starts and always cleans up node processes (see the module docstring).

    ``sections`` are merged into every node's config (e.g. ``{"kernel": {"net_ticktime": 2}}``).
    """

    def __init__(self, directory: Path, cookie: str = COOKIE, sections: dict[str, Any] | None = None,
                 addresses: Iterable[int] = range(2, 12)) -> None:
        self.directory = directory
        self.cookie = cookie
        self.sections = sections or {}
        self.dist_port = free_port(address(i) for i in addresses)
        self.started: list[NodeProcess] = []
        self._http_ports: dict[int, int] = {}

    def __enter__(self) -> "NodeProcesses":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> "NodeProcesses":
        return self

    async def __aexit__(self, *exc: object) -> None:
        """For async tests: waits without blocking the event loop, so the test's websocket
        clients can answer the nodes' close frames (else each node waits out its
        shutdown_timeout)."""
        self._signal_all(signal.SIGTERM)
        try:
            await async_wait_until(lambda: all(n.proc.poll() is not None for n in self.started), 10.0,
                                   "the nodes to exit")
        finally:
            self.close()

    # Where node ``index`` is: its name, its HTTP address and port, and the command in front of
    # ``python -m server`` that puts it there (none: this machine's 127.0.0.x). A subclass
    # overrides them to put nodes elsewhere (tests/netns_hosts.py: one network namespace each).

    def node_name(self, index: int) -> str:
        return node_name(index)

    def http_host(self, index: int) -> str:
        return address(index)

    def http_port(self, index: int) -> int:
        if index not in self._http_ports:
            self._http_ports[index] = free_port([address(index)])
        return self._http_ports[index]

    def command_prefix(self, index: int) -> list[str]:
        return []

    def config(self, index: int, sync: Iterable[int] = (), mandatory: Iterable[int] = (),
               sections: dict[str, Any] | None = None) -> dict[str, Any]:
        document = {
            "node": {"name": self.node_name(index), "cookie": self.cookie, "dist_port": self.dist_port},
            "endpoint": {"host": self.http_host(index), "port": self.http_port(index)},
            "kernel": {"sync_nodes_optional": [self.node_name(i) for i in sync],
                       "sync_nodes_mandatory": [self.node_name(i) for i in mandatory],
                       "sync_nodes_timeout": SYNC_TIMEOUT_MS},
        }
        return _merge(_merge(document, self.sections), sections or {})

    def spawn(self, index: int, sync: Iterable[int] = (), mandatory: Iterable[int] = (),
              env: dict[str, str] | None = None, sections: dict[str, Any] | None = None) -> NodeProcess:
        """Starts node ``index`` without waiting for it (see :meth:`start`)."""
        return self._run(index, self.config(index, sync, mandatory, sections), env or {})

    def start(self, index: int, sync: Iterable[int] = (), mandatory: Iterable[int] = (),
              env: dict[str, str] | None = None, sections: dict[str, Any] | None = None,
              timeout: float = 15.0) -> NodeProcess:
        """Starts node ``index`` listing ``sync`` (indexes) and returns it once it serves."""
        node = self.spawn(index, sync, mandatory, env, sections)
        wait_until(node.serving, timeout, f"{node.name} to serve")
        return node

    def start_many(self, indexes: list[int], sync: Iterable[int] | None = None,
                   timeout: float = 15.0) -> list[NodeProcess]:
        """Starts the nodes together (each listing ``sync``, by default all of ``indexes``),
        so their boot syncs find each other, and returns them once all serve."""
        listed = list(indexes if sync is None else sync)
        nodes = [self.spawn(i, listed) for i in indexes]
        wait_until(lambda: all(node.serving() for node in nodes), timeout, "the nodes to serve")
        return nodes

    def restart(self, node: NodeProcess, timeout: float = 15.0) -> NodeProcess:
        """Stops ``node`` if it still runs (SIGTERM), then runs its settings again."""
        if node.proc.poll() is None:
            node.terminate()
        restarted = self._run(node.index, node.config, node.env)
        wait_until(restarted.serving, timeout, f"{restarted.name} to serve again")
        return restarted

    def wait_for_mesh(self, nodes: list[NodeProcess], timeout: float = 5.0) -> None:
        """Until every node in ``nodes`` is connected to exactly the others."""
        wait_until(lambda: self._meshed(nodes), timeout, f"a full mesh of {[n.name for n in nodes]}")

    async def async_wait_for_mesh(self, nodes: list[NodeProcess], timeout: float = 5.0) -> None:
        """``wait_for_mesh`` for async tests (the event loop keeps running)."""
        await async_wait_until(lambda: self._meshed(nodes), timeout, f"a full mesh of {[n.name for n in nodes]}")

    def _meshed(self, nodes: list[NodeProcess]) -> bool:
        names = {n.name for n in nodes}
        return all(set(n.connected()) == names - {n.name} for n in nodes)

    def close(self) -> None:
        """SIGTERM to every node still running (SIGKILL if it lingers), by PID."""
        self._signal_all(signal.SIGTERM)
        deadline = time.monotonic() + 10.0
        for node in self.started:
            try:
                node.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                node.proc.kill()
                node.proc.wait()

    def _signal_all(self, sig: int) -> None:
        for node in self.started:
            if node.proc.poll() is None:
                node.send_signal(sig)

    def _run(self, index: int, config: dict[str, Any], env: dict[str, str]) -> NodeProcess:
        serial = len(self.started)
        config_path = self.directory / f"node{index}-{serial}.yml"
        config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
        log_path = self.directory / f"node{index}-{serial}.log"
        proc = spawn_node(["--config", str(config_path)], log_path, env, self.command_prefix(index))
        node = NodeProcess(proc, log_path, index, config["endpoint"]["port"], config, env)
        self.started.append(node)
        return node
