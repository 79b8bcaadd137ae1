"""Where nodes are dialed (the host part of the name, and the port all nodes share), and DNS
discovery: the poller with an injected resolver, then in-process Nodes on 127.0.0.x."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from typing import Any

import pytest

from server.cluster import discovery
from server.cluster.discovery import DnsPoller, configured_nodes
from server.settings import Cookie, Distribution

from inprocess import Member, Nodes, address, name, start_all
from support.server_process import async_wait_until


def test_a_short_name_is_dialed_by_its_host_name_and_a_long_one_by_its_address() -> None:
    assert discovery.address("gossipy@ws1", Distribution(port=4370)) == ("ws1", 4370)
    assert discovery.address("gossipy@127.0.0.2", Distribution(port=9100)) == ("127.0.0.2", 9100)


def test_the_configured_nodes_leave_out_this_node_and_repeats() -> None:
    distribution = Distribution(node="gossipy@ws1", cookie=Cookie("c"),
                                sync_nodes_optional=("gossipy@ws1", "gossipy@ws2", "gossipy@ws3"),
                                sync_nodes_mandatory=("gossipy@ws3", "gossipy@ws4"))
    assert configured_nodes(distribution) == ["gossipy@ws2", "gossipy@ws3", "gossipy@ws4"]


# ---- DNS discovery: the poller alone, with an injected resolver (no sockets) ----------------------

class Answers:
    """A resolver whose answers the test sets: a list of addresses, or an OSError to raise."""

    def __init__(self, **answers: list[str] | OSError) -> None:
        self.answers: dict[str, list[str] | OSError] = dict(answers)

    async def __call__(self, name: str) -> list[str]:
        answer = self.answers[name]
        if isinstance(answer, OSError):
            raise answer
        return list(answer)


class Wanted:
    """The membership side: the names wanted and unwanted, in order."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def want(self, name: str) -> None:
        self.calls.append(f"+{name}")

    def unwant(self, name: str) -> None:
        self.calls.append(f"-{name}")


def poller(resolver: Answers, *queries: str, node: str = "gossipy@10.0.0.1") -> tuple[DnsPoller, Wanted]:
    wanted = Wanted()
    distribution = Distribution(node=node, longnames=True, cookie=Cookie("c"), dns_cluster_query=queries)
    return DnsPoller(distribution, wanted.want, wanted.unwant, resolver), wanted


@pytest.fixture
def discovery_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="gossipy.cluster")
    return caplog


def logged(caplog: pytest.LogCaptureFixture, logger: str = "gossipy.cluster.discovery") -> list[str]:
    return [f"{r.levelname} {r.getMessage()}" for r in caplog.records if r.name == logger]


async def test_new_addresses_are_wanted_vanished_ones_unwanted_and_this_node_skipped(discovery_logs) -> None:
    dns = Answers(ws=["10.0.0.3", "10.0.0.1", "10.0.0.2"])
    dns_poller, wanted = poller(dns, "ws")
    assert await dns_poller.poll() == ["gossipy@10.0.0.2", "gossipy@10.0.0.3"]
    dns.answers["ws"] = ["10.0.0.2", "10.0.0.4", "10.0.0.1"]
    assert await dns_poller.poll() == ["gossipy@10.0.0.2", "gossipy@10.0.0.4"]
    assert wanted.calls == ["+gossipy@10.0.0.2", "+gossipy@10.0.0.3", "+gossipy@10.0.0.4", "-gossipy@10.0.0.3"]
    assert logged(discovery_logs) == [
        "INFO dns_cluster_query ws: 2 node(s): gossipy@10.0.0.2, gossipy@10.0.0.3, and this node",
        "INFO dns_cluster_query ws: 2 node(s): gossipy@10.0.0.2, gossipy@10.0.0.4, and this node",
    ]


async def test_an_unchanged_answer_is_logged_once_and_wants_nothing_more(discovery_logs) -> None:
    failure = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    dns = Answers(ws=[], solo=["10.0.0.1"], broken=failure)
    dns_poller, wanted = poller(dns, "ws", "solo", "broken")
    for _ in range(5):
        assert await dns_poller.poll() == []
    assert wanted.calls == []
    assert logged(discovery_logs) == [
        "WARNING dns_cluster_query ws: no A/AAAA records; no node to join through it yet",
        "INFO dns_cluster_query solo: only this node",
        "WARNING dns_cluster_query broken: cannot resolve it (Temporary failure in name resolution); "
        "keeping its last answer",
    ]


async def test_a_failed_lookup_keeps_the_last_answer_and_recovery_is_logged(discovery_logs) -> None:
    dns = Answers(ws=["10.0.0.2"])
    dns_poller, wanted = poller(dns, "ws")
    await dns_poller.poll()
    dns.answers["ws"] = socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")
    assert await dns_poller.poll() == await dns_poller.poll() == ["gossipy@10.0.0.2"]
    dns.answers["ws"] = ["10.0.0.2"]
    await dns_poller.poll()
    assert wanted.calls == ["+gossipy@10.0.0.2"]  # a resolver hiccup is not a vanished node
    assert [line.split(": ", 1)[1] for line in logged(discovery_logs)] == [
        "1 node(s): gossipy@10.0.0.2",
        "cannot resolve it (Temporary failure in name resolution); keeping its last answer",
        "1 node(s): gossipy@10.0.0.2",
    ]


async def test_queries_are_one_set_of_nodes_and_ipv6_records_are_nodes_too() -> None:
    dns = Answers(a=["fd00::2", "fd00::4"], b=["fd00::2", "fd00::3"])
    dns_poller, wanted = poller(dns, "a", "b", node="chat@fd00:0::1")
    assert await dns_poller.poll() == ["chat@fd00::2", "chat@fd00::3", "chat@fd00::4"]
    dns.answers["b"] = ["fd00::3", "fd00::1"]  # fd00::2 is still in a's answer; fd00::1 is this node
    await dns_poller.poll()
    assert wanted.calls == ["+chat@fd00::2", "+chat@fd00::3", "+chat@fd00::4"]


async def test_on_dual_stack_dns_only_this_nodes_ip_version_names_nodes(discovery_logs) -> None:
    """Each host has an A and an AAAA record: the other version's addresses are the same nodes
    (this one too) under names none answers to; a scoped address is no node name at all."""
    dns = Answers(ws=["10.0.0.1", "fd00::1", "10.0.0.2", "fd00::2", "fe80::2%eth0"])
    dns_poller, wanted = poller(dns, "ws")
    assert await dns_poller.poll() == ["gossipy@10.0.0.2"]
    six_poller, six_wanted = poller(dns, "ws", node="gossipy@fd00::1")
    assert await six_poller.poll() == ["gossipy@fd00::2"]
    assert (wanted.calls, six_wanted.calls) == (["+gossipy@10.0.0.2"], ["+gossipy@fd00::2"])
    assert logged(discovery_logs) == ["INFO dns_cluster_query ws: 1 node(s): gossipy@10.0.0.2, and this node",
                                      "INFO dns_cluster_query ws: 1 node(s): gossipy@fd00::2, and this node"]


# ---- DNS discovery in real Nodes (one process, 127.0.0.x, the resolver injected) -----------------

def dns_node(nodes: Nodes, i: int, dns: Answers, **overrides: Any) -> Member:
    return nodes.node(i, node_options={"resolver": dns}, dns_cluster_query=("ws",), dns_cluster_interval_ms=100,
                      **overrides)


async def test_boot_waits_for_the_nodes_of_the_first_answer_and_not_for_an_empty_one() -> None:
    async with Nodes() as nodes:
        dns = Answers(ws=[address(i) for i in (2, 3, 4)])
        members = [dns_node(nodes, i, dns) for i in (2, 3, 4)]
        await start_all(*members)
        assert [len(m.node.connected_nodes()) for m in members] == [2, 2, 2]  # no node served before its mesh
        lonely = dns_node(nodes, 5, Answers(ws=[]), sync_nodes_timeout_ms=3000)
        started = time.monotonic()
        await lonely.node.start()
        assert time.monotonic() - started < 1.0


async def test_a_vanished_node_stays_connected_and_is_not_redialed_once_down(discovery_logs) -> None:
    async with Nodes() as nodes:
        dns = Answers(ws=[address(i) for i in (2, 3, 4)])
        members = [dns_node(nodes, i, dns) for i in (2, 3, 4)]
        await start_all(*members)
        dns.answers["ws"] = [address(2), address(3)]
        await asyncio.sleep(0.5)  # five polls
        assert all(len(m.node.connected_nodes()) == 2 for m in members)  # liveness judges, not DNS
        await members[2].node.stop()
        await async_wait_until(lambda: len(lines(discovery_logs, "no longer dialing gossipy@127.0.0.4")) == 2,
                               what="both others to stop dialing the vanished node")
        await asyncio.sleep(0.5)
        assert not lines(discovery_logs, "cannot connect to gossipy@127.0.0.4")


async def test_a_listed_node_that_went_down_is_redialed_and_logged_once(discovery_logs) -> None:
    async with Nodes() as nodes:
        dns = Answers(ws=[address(i) for i in (2, 3)])
        first, second = dns_node(nodes, 2, dns), dns_node(nodes, 3, dns)
        await start_all(first, second)
        await second.node.stop()
        await asyncio.sleep(1.5)  # redials at ~0.1, 0.2, 0.4, 0.8 s
        [line] = lines(discovery_logs, "cannot connect to gossipy@127.0.0.3", logging.INFO)
        assert "unreachable" in line and len(lines(discovery_logs, "cannot connect to gossipy@127.0.0.3")) >= 3
        restarted = dns_node(nodes, 3, dns)
        await restarted.node.start()
        await async_wait_until(lambda: first.node.connected_nodes() == [name(3)], 4.0)


def lines(caplog: pytest.LogCaptureFixture, pattern: str, level: int = logging.DEBUG) -> list[str]:
    return [r.getMessage() for r in caplog.records if pattern in r.getMessage() and r.levelno >= level]


def test_a_worker_is_dialed_on_the_port_its_number_adds_to_the_shared_one() -> None:
    distribution = Distribution(port=4370)
    assert discovery.address("gossipy-2@ws1", distribution) == ("ws1", 4371)
    assert discovery.address("gossipy-4@127.0.0.2", distribution) == ("127.0.0.2", 4373)


async def test_a_worker_finds_every_hosts_first_worker_in_dns() -> None:
    dns, wanted = poller(Answers(ws=["10.0.0.1", "10.0.0.2"]), "ws", node="gossipy-2@10.0.0.1")
    assert await dns.poll() == ["gossipy@10.0.0.2"]
    assert wanted.calls == ["+gossipy@10.0.0.2"]
