"""``node.workers: 2``: real supervised node processes on 127.0.0.x with real websocket clients.

Which worker holds a websocket is read from /proc: the server side of the client's TCP stream
is a socket inode, found among one worker's file descriptors. Which worker answered an HTTP
request is the ``node`` of its ``GET /cluster``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from support.phoenix_client import PhoenixClient, assert_shout_reaches, join_room
from support.server_process import ServerProcess, async_wait_until, free_port, run_node, spawn_node, wait_until

pytestmark = pytest.mark.cluster

COOKIE = "workers-test-cookie-5d0c2a91"
WORKERS = 2


def dist_ports(hosts: list[str]) -> int:
    """A base port free, with the next one (worker 2's), on every host."""
    while True:
        base = free_port(hosts)
        try:
            for host in hosts:
                with socket.socket() as probe:
                    probe.bind((host, base + 1))
            return base
        except OSError:
            continue


class Host(ServerProcess):
    """One supervised ``python -m server`` with ``node.workers: 2``, serving on ``host``."""

    def __init__(self, folder: Path, host: str, dist_port: int | None, sync: list[str] = ()) -> None:
        self.config: dict[str, Any] = {"node": {"workers": WORKERS},
                                       "endpoint": {"host": host, "port": free_port([host])}}
        if dist_port is not None:
            self.config["node"].update(name=f"gossipy@{host}", cookie=COOKIE, dist_port=dist_port)
            self.config["kernel"] = {"sync_nodes_optional": list(sync), "sync_nodes_timeout": 3000}
        self.config_path = folder / f"{host}.yml"
        self.config_path.write_text(yaml.safe_dump(self.config), encoding="utf-8")
        super().__init__(spawn_node(["--config", str(self.config_path)], folder / f"{host}.log", {}),
                         folder / f"{host}.log")
        self.host, self.port = host, self.config["endpoint"]["port"]
        self.seen_workers: set[int] = set()

    def workers(self) -> dict[int, int]:
        """Worker number -> pid, of the supervisor's children now."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children").read_text().split()
        found = {}
        for pid in map(int, children):
            with contextlib.suppress(OSError):
                found[int(environment(pid, "GOSSIPY_WORKER"))] = pid
        self.seen_workers.update(found.values())
        return found

    def views(self, tries: int = 40) -> dict[str, list[str]]:
        """``GET /cluster`` over fresh connections until every worker has answered (or
        ``tries`` ran out): worker name -> the nodes it is connected to."""
        views: dict[str, list[str]] = {}
        for _ in range(tries):
            with contextlib.suppress(OSError, ValueError):
                with urllib.request.urlopen(self.url("/cluster"), timeout=2) as response:
                    view = json.loads(response.read())
                views[view["node"]] = sorted(view["nodes"])
            if len(views) == WORKERS:
                break
        return views

    def holder(self, client: PhoenixClient) -> int:
        """The number of the worker whose process holds ``client``'s websocket."""
        client_port = client.conn.stream.socket.getsockname()[1]
        inode = next(fields[9] for fields in (line.split() for line in Path("/proc/net/tcp").read_text().splitlines()[1:])
                     if int(fields[1].split(":")[1], 16) == self.port and int(fields[2].split(":")[1], 16) == client_port)
        for index, pid in self.workers().items():
            with contextlib.suppress(OSError):
                if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                    return index
        raise AssertionError(f"no worker holds the websocket from port {client_port}")

    async def stop_expecting_1001(self, clients: list[PhoenixClient]) -> None:
        """SIGTERM to the supervisor: every client gets 1001, and it exits 0."""
        self.send_signal(signal.SIGTERM)
        for client in clients:
            assert await client.expect_close() == 1001
        assert await self.exit_status(15) == 0

    def stop_all(self) -> None:
        """SIGTERM to the supervisor; SIGKILL, by PID, to whatever of it and its workers lingers."""
        with contextlib.suppress(ProcessLookupError, OSError):
            self.workers()
        if self.proc.poll() is None:
            self.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.seen_workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def environment(pid: int, name: str) -> bytes:
    """The value of ``name`` in the environment process ``pid`` started with."""
    prefix = name.encode() + b"="
    return next(v[len(prefix):] for v in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if v.startswith(prefix))


@contextlib.contextmanager
def hosts(*started: Host) -> Iterator[list[Host]]:
    try:
        yield list(started)
    finally:
        for host in started:
            host.stop_all()


def meshed(host: Host, own: set[str], everyone: set[str] | None = None) -> bool:
    """Every worker of ``host`` (named ``own``) answered and is connected to all the others."""
    everyone = everyone or own
    views = host.views()
    return views.keys() == own and all(set(peers) == everyone - {name} for name, peers in views.items())


async def clients_on_every_worker(host: Host) -> dict[int, PhoenixClient]:
    """Connects clients until one sits on each worker; the rest are closed."""
    on: dict[int, PhoenixClient] = {}
    for _ in range(40):
        client = await join_room(host)
        index = host.holder(client)
        if index in on:
            client.close()
        else:
            on[index] = client
        if len(on) == WORKERS:
            return on
    raise AssertionError(f"40 clients all went to workers {sorted(on)}")


async def test_two_workers_share_the_port_a_shout_crosses_and_a_killed_worker_comes_back(tmp_path) -> None:
    with hosts(Host(tmp_path, "127.0.0.2", dist_ports(["127.0.0.2"]))) as (host,):
        names = {"gossipy@127.0.0.2", "gossipy-2@127.0.0.2"}
        await async_wait_until(lambda: meshed(host, names), 20, "the two workers to link")
        on = await clients_on_every_worker(host)
        await assert_shout_reaches(on[1], list(on.values()), "from worker 1")
        await assert_shout_reaches(on[2], list(on.values()), "from worker 2")
        assert run_node("--config", str(host.config_path), "nodes").stdout.split() == ["gossipy@127.0.0.2", "gossipy-2@127.0.0.2"]

        victim = host.workers()[2]
        os.kill(victim, signal.SIGKILL)
        await on[2].expect_close()
        await host.async_wait_for_line(r"worker 2 exited \(signal SIGKILL\); restarting it in 0\.1 s")
        await async_wait_until(lambda: host.workers().get(2) not in (None, victim), 10, "worker 2 to restart")
        await async_wait_until(lambda: meshed(host, names), 20, "the new worker 2 to link")
        on = await clients_on_every_worker(host)
        await assert_shout_reaches(on[1], list(on.values()), "to the new worker 2")

        await host.stop_expecting_1001(list(on.values()))
        assert host.has_line("every worker has stopped")
        assert not host.lines(r" (ERROR|CRITICAL) |Traceback"), host.log()


async def test_workers_of_a_node_with_no_name_share_broadcasts_under_a_cookie_no_command_line_shows(tmp_path) -> None:
    with hosts(Host(tmp_path, "127.0.0.2", None)) as (host,):
        names = {"gossipy@127.0.0.1", "gossipy-2@127.0.0.1"}
        await async_wait_until(lambda: meshed(host, names), 20, "the workers to link")
        workers = host.workers()
        cookie = environment(workers[1], "GOSSIPY_WORKER_COOKIE")
        assert len(cookie) >= 32
        for pid in [host.pid, *workers.values()]:
            assert cookie not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert cookie.decode() not in host.log()
        on = await clients_on_every_worker(host)
        await assert_shout_reaches(on[2], list(on.values()), "across the loopback cluster")
        await host.stop_expecting_1001(list(on.values()))


def test_two_hosts_of_two_workers_mesh_fully(tmp_path) -> None:
    dist_port = dist_ports(["127.0.0.2", "127.0.0.3"])
    # The second host names only the first's first worker: the rest come by member exchange.
    with hosts(Host(tmp_path, "127.0.0.2", dist_port, ["gossipy@127.0.0.3"]),
               Host(tmp_path, "127.0.0.3", dist_port, ["gossipy@127.0.0.2"])) as both:
        names = {f"gossipy{suffix}@127.0.0.{i}" for i in (2, 3) for suffix in ("", "-2")}
        wait_until(lambda: all(meshed(host, {n for n in names if n.endswith(host.host)}, names) for host in both),
                   30, "4 workers in a full mesh")
        nodes = run_node("--config", str(both[1].config_path), "nodes").stdout.split()
        assert nodes[0] == "gossipy@127.0.0.3" and set(nodes) == names


def test_a_worker_killed_by_a_realtime_signal_is_restarted(tmp_path) -> None:
    """Realtime signals (SIGRTMIN+1 to SIGRTMAX-1) are no member of signal.Signals."""
    with hosts(Host(tmp_path, "127.0.0.4", dist_ports(["127.0.0.4"]))) as (host,):
        serving = r"node gossipy@127\.0\.0\.4 serving websockets"
        host.wait_for_line(serving, 20)
        victim = host.workers()[1]
        os.kill(victim, signal.SIGRTMIN + 1)
        host.wait_for_line(rf"worker 1 exited \(signal {signal.SIGRTMIN + 1} \(Real-time signal 1\)\); restarting it", 10)
        # Read from the log, not /proc: a child between fork and exec has no GOSSIPY_WORKER yet.
        wait_until(lambda: len(host.lines(serving)) == 2, 20, "worker 1 to serve again")
        assert host.stop(timeout=15) == 0
        assert not host.lines(r" (ERROR|CRITICAL) |Traceback"), host.log()
