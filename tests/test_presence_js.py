"""phoenix.js's ``Presence`` across three real node processes (support/node_processes.py) serving
the presence app (apps/presence_app.py): joins, a leave, a killed client, kill -9 of a node,
SIGTERM, a restart under the same name, and a partition (support/tcp_proxy.py relays on every
peer stream) and its heal. The clients are js/presence_client.mjs, one per node, each printing
its Presence list on every sync.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from server.presence.tracker import DELTA_INTERVAL

from support.node_processes import NodeProcess, NodeProcesses, address
from support.requirements import need
from support.server_process import async_wait_until
from support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.cluster

TICKTIME = 2  # kernel.net_ticktime: a silent node is down within ~2 s
APP = "tests.apps.presence_app"
NAMES = {2: "ada", 3: "bob", 4: "cy"}
EVERYONE = list(NAMES.values())


class Clients:
    """One presence_client.mjs process: each of its clients' latest list, by client name."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lists: dict[str, dict[str, int]] = {}
        self.lines: list[dict[str, Any]] = []
        self._reading = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, js: Path, nodes: dict[str, NodeProcess]) -> Clients:
        config = [{"name": name, "host": node.host, "port": node.port} for name, node in nodes.items()]
        process = await asyncio.create_subprocess_exec(
            need("node"), "presence_client.mjs", json.dumps(config), cwd=js, stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            seen = json.loads(line)
            self.lines.append(seen)
            self.lists[seen["name"]] = seen["list"]

    def command(self, **command: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")

    async def until(self, who: list[str], users: list[str], timeout: float, what: str = "") -> float:
        """Waits until each of ``who`` lists exactly ``users``, once each; returns the seconds taken."""
        started = time.monotonic()
        expected = {user: 1 for user in users}
        await async_wait_until(lambda: all(self.lists.get(name) == expected for name in who), timeout,
                               f"{users} at {who} {what}(last: {self.lists})")
        return time.monotonic() - started

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()

    async def close(self) -> None:
        self.kill()
        await self.process.wait()
        self._reading.cancel()


@asynccontextmanager
async def presence_cluster(js: Path, tmp_path: Path) -> AsyncIterator[
        tuple[NodeProcesses, dict[int, NodeProcess], list[TcpProxy], Clients]]:
    """Nodes 2, 3 and 4 serving the presence app, each peer stream through a relay (a node binds
    its distribution port to 127.0.0.1x and the relay listens at its name's address), and a
    client per node (ada, bob, cy) once every client lists all three."""
    sections = {"kernel": {"net_ticktime": TICKTIME}, "app": APP}
    async with NodeProcesses(tmp_path, sections=sections, addresses=range(2, 15)) as cluster:
        port = cluster.dist_port
        with TcpProxy((address(2), port), (address(12), port)) as p2, \
                TcpProxy((address(3), port), (address(13), port)) as p3, \
                TcpProxy((address(4), port), (address(14), port)) as p4:
            nodes = {i: cluster.spawn(i, sync=[2, 3, 4], sections={"node": {"dist_bind": address(10 + i)}})
                     for i in NAMES}
            await async_wait_until(lambda: all(n.serving() for n in nodes.values()), 15, "the nodes to serve")
            await cluster.async_wait_for_mesh(list(nodes.values()))
            async with clients_of(js, {name: nodes[i] for i, name in NAMES.items()}) as clients:
                await clients.until(EVERYONE, EVERYONE, 10, "after the joins ")
                yield cluster, nodes, [p2, p3, p4], clients


@asynccontextmanager
async def clients_of(js: Path, nodes: dict[str, NodeProcess]) -> AsyncIterator[Clients]:
    clients = await Clients.start(js, nodes)
    try:
        yield clients
    finally:
        await clients.close()


async def restarted(cluster: NodeProcesses, node: NodeProcess) -> NodeProcess:
    """``cluster.restart`` (it blocks until the node serves) with the loop, and so the relays'
    and clients' reading, going on."""
    return await asyncio.get_running_loop().run_in_executor(None, cluster.restart, node)


async def test_phoenix_js_presence_through_joins_leaves_a_killed_client_kill_9_and_a_restart(
        js_modules: Path, tmp_path: Path) -> None:
    async with presence_cluster(js_modules, tmp_path) as (cluster, nodes, _, clients):

        async with clients_of(js_modules, {"kim": nodes[2]}) as kim:
            await clients.until(EVERYONE, EVERYONE + ["kim"], 5, "after kim joined ")
            kim.kill()  # the client process dies: its socket closes, its presence goes
            await clients.until(EVERYONE, EVERYONE, 5, "after kim was killed ")

        clients.command(leave="ada")
        await clients.until(["bob", "cy"], ["bob", "cy"], 5, "after ada left ")

        nodes[4].kill()  # kill -9: nothing said to the peers; they notice within net_ticktime
        gone = await clients.until(["bob"], ["bob"], TICKTIME + 3, "after cy's node was killed ")
        assert gone < TICKTIME + DELTA_INTERVAL + 1.0, gone  # + the slack of a busy machine

        nodes[4] = await restarted(cluster, nodes[4])  # cy's client reconnects to the new incarnation
        await clients.until(["bob", "cy"], ["bob", "cy"], 10, "after cy's node came back ")
        print(f"kill -9: the node's users left everywhere {gone:.2f} s after it died (net_ticktime {TICKTIME} s)")


async def test_phoenix_js_presence_through_sigterm_and_a_partition_that_heals(
        js_modules: Path, tmp_path: Path) -> None:
    async with presence_cluster(js_modules, tmp_path) as (cluster, nodes, proxies, clients):
        stopping = asyncio.get_running_loop().run_in_executor(None, nodes[3].terminate)
        left = await clients.until(["ada", "cy"], ["ada", "cy"], TICKTIME, "after bob's node stopped ")
        assert await stopping == 0
        nodes[3] = await restarted(cluster, nodes[3])
        await clients.until(EVERYONE, EVERYONE, 10, "after bob's node came back ")

        for proxy in proxies:
            proxy.cut()  # every node alone: each shows only its own user
        split = time.monotonic()
        for name in EVERYONE:
            await clients.until([name], [name], TICKTIME + 3, "during the partition ")
        noticed = time.monotonic() - split
        assert noticed < TICKTIME + DELTA_INTERVAL + 1.5, noticed  # silence: a down after net_ticktime
        for proxy in proxies:
            proxy.heal()
        healed = await clients.until(EVERYONE, EVERYONE, 10, "after the heal ")
        await cluster.async_wait_for_mesh(list(nodes.values()))
        print(f"SIGTERM: users left {left:.2f} s after; partition seen in {noticed:.2f} s, "
              f"lists equal {healed:.2f} s after the heal")

