"""Real node processes (``python -m server``) on 127.0.0.x with real websocket clients: issue 3's
multi-process behaviours."""

from __future__ import annotations

import asyncio
import re
import socket
import subprocess
import time
from datetime import datetime

import pytest
import yaml

from server.cluster.framing import FrameType, encode_json

from support.node_processes import COOKIE, NodeProcesses, address, established_streams, node_name
from support.phoenix_client import TOPIC, Closed, PhoenixClient, assert_shout_reaches, join_room
from support.server_process import run_node

pytestmark = pytest.mark.cluster


def logged_at(line: str) -> datetime:
    return datetime.strptime(line[:23], "%Y-%m-%d %H:%M:%S,%f")


async def test_a_shout_on_each_node_reaches_clients_on_all_three(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        clients = [await join_room(node, vsn) for node in nodes for vsn in (None, "2.0.0")]
        for i, sender in enumerate(clients):
            await assert_shout_reaches(sender, clients, f"shout {i}")
        for client in clients:
            await client.assert_silent(0.1)  # each shout once, on every node
            client.close()
        for node in nodes:
            node.assert_clean()
            assert not node.warnings(), node.log()


async def test_wrong_cookie_duplicate_name_and_garbage_are_refused_and_logged(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        first, second = nodes[0], nodes[1]
        wrong_cookie = cluster.start(5, sync=[2], env={"RELEASE_COOKIE": "a-cookie-nobody-else-has"},
                                     sections={"kernel": {"sync_nodes_timeout": 300}})
        impostor = cluster.start(6, sync=[3], env={"RELEASE_NODE": node_name(2)},
                                 sections={"node": {"dist_bind": address(6)}, "kernel": {"sync_nodes_timeout": 300}})
        with socket.create_connection((address(2), cluster.dist_port), timeout=2.0) as garbage:
            garbage.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(range(200)))  # a TLS hello
            assert garbage.recv(100) == encode_json(FrameType.REFUSE, {"reason": "malformed"})

        assert await first.async_wait_for_line(rf"refused connection from 127\.0\.0\.5:\d+ \(claims {node_name(5)}\): bad_cookie")
        assert await wrong_cookie.async_wait_for_line(rf"cannot connect to {node_name(2)} .*refused by the peer: bad_cookie")
        assert await second.async_wait_for_line(rf"refused connection from 127\.0\.0\.6:\d+ \(claims {node_name(2)}\): "
                                 rf"duplicate_name")
        assert await impostor.async_wait_for_line("refused by the peer: duplicate_name")
        assert await first.async_wait_for_line(r"refused connection from 127\.0\.0\.1:\d+: malformed: TLS, not frames")

        assert wrong_cookie.connected() == [] and impostor.connected() == []
        await cluster.async_wait_for_mesh(nodes)  # untouched
        a, b = await join_room(first), await join_room(nodes[2])
        await assert_shout_reaches(a, [a, b], "still chatting")
        for node in nodes + [wrong_cookie, impostor]:
            node.assert_clean()
            assert COOKIE not in node.log() and "a-cookie-nobody-else-has" not in node.log()


async def test_kill_9_leaves_the_others_chatting_and_a_restart_reforms_the_mesh(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        survivors, victim = nodes[:2], nodes[2]
        pids = [node.pid for node in survivors]
        clients = [await join_room(node) for node in survivors]
        doomed = await join_room(victim)

        victim.kill()
        started = time.monotonic()
        await cluster.async_wait_for_mesh(survivors, timeout=3.0)  # a reset is down at once, not after a tick timeout
        assert time.monotonic() - started < 3.0
        for node in survivors:
            assert await node.async_wait_for_line(rf"node down: {node_name(4)}: the connection was (closed|reset)")
        await assert_shout_reaches(clients[0], clients, "after the kill")
        await assert_shout_reaches(clients[1], clients, "and back")
        with pytest.raises(Closed):  # its node is gone: the socket was reset, not left open
            await doomed.receive(1.0)

        restarted = cluster.restart(victim)
        started = time.monotonic()
        await cluster.async_wait_for_mesh(survivors + [restarted], timeout=5.0)
        newcomer = await join_room(restarted, "2.0.0")
        everyone = clients + [newcomer]
        await assert_shout_reaches(newcomer, everyone, "I am back")
        await assert_shout_reaches(clients[0], everyone, "welcome back")
        assert [node.pid for node in survivors] == pids and all(node.proc.poll() is None for node in survivors)
        for node in survivors + [restarted]:
            node.assert_clean()


async def test_sigterm_tells_the_peers_at_once(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        assert nodes[2].terminate() == 0
        await cluster.async_wait_for_mesh(nodes[:2], timeout=3.0)  # well inside the 10 s ticktime
        for node in nodes[:2]:
            assert await node.async_wait_for_line(rf"node down: {node_name(4)}: it left")


async def test_a_fourth_node_listing_one_member_links_to_all_within_2_s(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        first = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(first)
        pids = [node.pid for node in first]
        fourth = cluster.start(5, sync=[2])
        await cluster.async_wait_for_mesh(first + [fourth], timeout=2.0)
        listening = logged_at(fourth.wait_for_line("listening for peer nodes"))
        ups = [logged_at(line) for line in fourth.lines(r"node up: ")]
        assert len(ups) == 3 and (max(ups) - listening).total_seconds() < 2.0, fourth.log()
        # the first three accepted it as they were: same processes, booted once
        assert [node.pid for node in first] == pids
        for node in first:
            assert node.proc.poll() is None and len(node.lines("listening for peer nodes")) == 1
        clients = [await join_room(node) for node in first + [fourth]]
        await assert_shout_reaches(clients[3], clients, "hello from the fourth")


async def test_a_missing_mandatory_node_fails_boot_naming_it(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        cluster.start(3)
        strict = cluster.spawn(2, sync=[3], mandatory=[3, 9], sections={"kernel": {"sync_nodes_timeout": 500}})
        assert await strict.exit_status(timeout=15.0) != 0
        [line] = strict.lines("sync_nodes_mandatory")
        assert node_name(9) in line and "500 ms" in line and node_name(3) + " (" not in line
        assert not strict.lines("serving websockets")


async def test_simultaneous_dials_leave_one_stream_per_pair(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4, 5])
        await cluster.async_wait_for_mesh(nodes)
        await asyncio.sleep(0.5)
        streams = established_streams(cluster.dist_port, [node.host for node in nodes])
        pairs = {frozenset((address(a), address(b))) for a in range(2, 6) for b in range(a + 1, 6)}
        assert streams == {pair: 1 for pair in pairs}, streams
        for node in nodes:
            assert not node.lines("node down"), node.log()


async def test_each_senders_order_holds_across_nodes_for_1000_messages(tmp_path) -> None:
    count = 1000
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        senders = [await join_room(nodes[0]), await join_room(nodes[1], "2.0.0")]
        receivers = [await join_room(node, vsn) for node in nodes for vsn in (None, "2.0.0")]

        async def send(index: int, client: PhoenixClient) -> None:
            for n in range(count):
                await client.shout(TOPIC, {"sender": index, "n": n})

        async def receive(client: PhoenixClient) -> dict[int, list[int]]:
            seen: dict[int, list[int]] = {0: [], 1: []}
            while sum(map(len, seen.values())) < 2 * count:
                frame = await client.receive_until(lambda f: f.event == "shout", timeout=10.0)
                seen[frame.payload["sender"]].append(frame.payload["n"])
            return seen

        results = await asyncio.gather(*(receive(c) for c in receivers),
                                       *(send(i, c) for i, c in enumerate(senders)))
        for seen in results[:len(receivers)]:
            assert seen == {0: list(range(count)), 1: list(range(count))}
        for node in nodes:
            node.assert_clean()


async def test_ping_and_nodes_from_another_process(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3])
        await cluster.async_wait_for_mesh(nodes)
        config = tmp_path / "asker.yml"
        config.write_text(yaml.safe_dump(nodes[0].config), encoding="utf-8")

        def ask(command: str, **env: str) -> subprocess.CompletedProcess[str]:
            return run_node("--config", str(config), command, env=env)

        assert ask("ping").stdout == "pong\n"
        assert ask("nodes").stdout.split() == [node_name(2), node_name(3)]
        refused = ask("ping", RELEASE_COOKIE="not-the-cookie")
        assert refused.returncode != 0 and "bad cookie" in refused.stderr
        assert "not-the-cookie" not in refused.stderr + refused.stdout + nodes[0].log()
        nodes[1].kill()
        down = ask("ping", RELEASE_NODE=node_name(3))
        assert down.returncode != 0
        assert f"{node_name(3)} at 127.0.0.3:{cluster.dist_port} is not running" in down.stderr


async def test_broadcast_from_another_process_reaches_every_node_once(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        nodes = cluster.start_many([2, 3])
        await cluster.async_wait_for_mesh(nodes)
        clients = [await join_room(node) for node in nodes]
        config = tmp_path / "publisher.yml"
        config.write_text(yaml.safe_dump(nodes[0].config), encoding="utf-8")

        def broadcast(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
            return run_node("--config", str(config), "broadcast", *arguments, env=env or {})

        sent = broadcast(TOPIC, "news", '{"body": "from the backend"}')
        assert (sent.returncode, sent.stdout) == (0, "ok\n"), sent.stderr
        for client in clients:
            frame = await client.receive_until(lambda f: f.event == "news")
            assert (frame.topic, frame.payload, frame.ref) == (TOPIC, {"body": "from the backend"}, None)
        assert broadcast(TOPIC, "ping").returncode == 0  # the payload defaults to {}
        for client in clients:
            assert (await client.receive_until(lambda f: f.event == "ping")).payload == {}
            await client.assert_silent(0.3)  # each once

        for arguments, reason in [
            ((TOPIC, "news", "[1]"), "broadcast: payload must be an object"),
            ((TOPIC, "news", "{nope"), "broadcast: PAYLOAD is not JSON"),
            ((TOPIC, "phx_close"), "broadcast: events starting with phx_ are reserved by Phoenix"),
            ((TOPIC,), "broadcast: broadcast takes TOPIC EVENT [PAYLOAD]"),
        ]:
            refused = broadcast(*arguments)
            assert refused.returncode == 2 and refused.stderr.startswith(f"gossipy: {reason}"), refused.stderr
            assert len(refused.stderr.splitlines()) == 1
        wrong_cookie = broadcast(TOPIC, "news", env={"RELEASE_COOKIE": "not-the-cookie"})
        assert wrong_cookie.returncode == 1 and "bad cookie" in wrong_cookie.stderr
        for client in clients:
            await client.assert_silent(0.3)
            client.close()
        for node in nodes:
            node.assert_clean()


def test_the_harness_names_what_it_started(tmp_path) -> None:
    with NodeProcesses(tmp_path) as cluster:
        [node] = cluster.start_many([7])
        assert node.cluster() == {"node": node_name(7), "nodes": []}
        assert re.search(r"distribution on 127\.0\.0\.7:\d+", node.wait_for_line("serving websockets"))
    assert node.proc.poll() is not None
