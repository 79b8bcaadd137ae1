"""A cluster across real network stacks: three nodes, each in its own network namespace
(tests/netns_hosts.py), cut apart the ways a network fails (a node killed, a link down,
packets dropped both ways or one way) and healed. Each case ends in a full mesh with chat
across it, and prints how long that took after the heal.

Needs root, ``ip`` and ``nft``: skipped without them locally, failed under CI.
"""

from __future__ import annotations

import os
import time
from typing import Callable, Iterator

import pytest

from server.cluster.membership import BACKOFF_CAP, HANDSHAKE_TIMEOUT

from support.netns_hosts import Hosts, NetnsNodes
from support.node_processes import NodeProcess
from support.phoenix_client import PhoenixClient, assert_shout_reaches, join_room
from support.requirements import need, require
from support.server_process import async_wait_until

pytestmark = pytest.mark.netns

TICKTIME = 2  # kernel.net_ticktime: a silent peer is down within 2-2.5 s
SECTIONS = {"kernel": {"net_ticktime": TICKTIME}}
HOSTS = [11, 12, 13]
# A dial into the partition may be stuck until its handshake timeout when the cut heals (its
# SYNs were lost), then wait out the backoff before the next one.
HEAL_TIMEOUT = HANDSHAKE_TIMEOUT + BACKOFF_CAP + 2


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    need("ip", "iproute2: network namespaces, veth pairs and bridges")
    need("nft", "nftables: the packet-dropping partitions")
    require(os.geteuid() == 0, "network namespaces need root")
    with Hosts(HOSTS) as made:
        yield made
    assert not made.leftovers()


async def chat_across(clients: list[PhoenixClient], label: str) -> None:
    """Each client shouts; every client, on every node, hears each shout."""
    for i, sender in enumerate(clients):
        await assert_shout_reaches(sender, clients, f"{label} from {i}")


async def cut_and_heal(cluster: NetnsNodes, cut: Callable[[], None], heal: Callable[[], None], what: str,
                       late: float = 0.0) -> None:
    """Three meshed nodes with a client each; ``cut`` parts host 11 from the other two. Each
    side hears nothing more from the other, sees it down within net_ticktime (the other side
    up to ``late`` seconds later) and goes on serving its own clients; after ``heal`` the mesh
    and the chat across it come back."""
    nodes = cluster.start_many(HOSTS)
    await cluster.async_wait_for_mesh(nodes)
    clients = [await join_room(node) for node in nodes]
    await chat_across(clients, "before")
    lone, others = nodes[0], nodes[1:]

    cut()
    cut_at = time.monotonic()
    await async_wait_until(lambda: lone.connected() == [], TICKTIME + 3, f"{lone.name} to see the others down")
    lone_noticed = time.monotonic() - cut_at
    await async_wait_until(lambda: all(n.connected() == [o.name for o in others if o is not n] for n in others),
                           TICKTIME + 3, f"the others to see {lone.name} down")
    noticed = time.monotonic() - cut_at
    await chat_across(clients[:1], "during, lone side")
    await chat_across(clients[1:], "during, other side")
    for node, peers in [(lone, others), *((other, [lone]) for other in others)]:
        for peer in peers:
            await node.async_wait_for_line(rf"node down: {peer.name}: nothing heard for {TICKTIME} s")
    assert lone_noticed < TICKTIME + 1.5 and noticed < TICKTIME + 1.5 + late, (lone_noticed, noticed)

    heal()
    await report_heal(cluster, nodes, clients,
                      f"{what}: host 11 saw the others down {lone_noticed:.2f} s after the cut, they saw it "
                      f"down {noticed:.2f} s after")
    for node in nodes:
        node.assert_clean()


async def report_heal(cluster: NetnsNodes, nodes: list[NodeProcess], clients: list[PhoenixClient], what: str,
                      healed_at: float | None = None) -> None:
    """Waits for the full mesh, then chat across it; prints both times after the heal."""
    healed_at = time.monotonic() if healed_at is None else healed_at
    await cluster.async_wait_for_mesh(nodes, timeout=HEAL_TIMEOUT)
    meshed = time.monotonic() - healed_at
    await chat_across(clients, "after")
    chatted = time.monotonic() - healed_at
    print(f"\n{what}; full mesh {meshed:.2f} s after the heal, chat across it {chatted:.2f} s after")


async def test_kill_9_of_one_host_and_its_restart_re_mesh(tmp_path, hosts: Hosts) -> None:
    async with NetnsNodes(tmp_path, hosts, SECTIONS) as cluster:
        nodes = cluster.start_many(HOSTS)
        await cluster.async_wait_for_mesh(nodes)
        clients = [await join_room(node) for node in nodes]
        await chat_across(clients, "before")
        victim, survivors = nodes[0], nodes[1:]
        victim.kill()
        killed_at = time.monotonic()
        # The victim's kernel lives on (only the process died): it resets the streams at once.
        await cluster.async_wait_for_mesh(survivors, timeout=TICKTIME)
        noticed = time.monotonic() - killed_at
        await chat_across(clients[1:], "after the kill")
        restarted_at = time.monotonic()
        restarted = cluster.restart(victim)  # the heal: returns once it serves
        nodes = [restarted, *survivors]
        clients[0] = await join_room(restarted)
        await report_heal(cluster, nodes, clients, f"kill -9 of host 11: the others saw it down {noticed:.2f} s "
                                                   f"after; restarted", restarted_at)
        for node in nodes:
            node.assert_clean()


async def test_a_link_down_parts_the_hosts_and_link_up_heals(tmp_path, hosts: Hosts) -> None:
    async with NetnsNodes(tmp_path, hosts, SECTIONS) as cluster:
        await cut_and_heal(cluster, lambda: hosts.set_link(11, up=False), lambda: hosts.set_link(11, up=True),
                           "eth0 of host 11 down")


async def test_packets_dropped_both_ways_part_the_hosts_until_the_rule_goes(tmp_path, hosts: Hosts) -> None:
    async with NetnsNodes(tmp_path, hosts, SECTIONS) as cluster:
        await cut_and_heal(cluster, lambda: hosts.drop(11, [12, 13], cluster.dist_port), lambda: hosts.undrop(11),
                           "nftables drop both ways")


async def test_packets_dropped_one_way_part_the_hosts_until_the_rule_goes(tmp_path, hosts: Hosts) -> None:
    """Host 11 drops what comes from its peers; what it sends passes. Its peers' ticks and
    acknowledgements are lost, so 11 hears nothing and sees them down after net_ticktime. They
    stop hearing 11 too, one retransmission timeout after the cut: with no acknowledgement
    coming back, 11's TCP resends its first unacknowledged segment and sends nothing new (its
    ticks, and then the FIN of its close, wait behind it). So they see it down by net_ticktime
    as well, up to a tick interval and that timeout later. Redials fail both ways meanwhile
    (11's SYNs arrive, the answers do not), and the mesh re-forms once the rule is gone."""
    async with NetnsNodes(tmp_path, hosts, SECTIONS) as cluster:
        await cut_and_heal(cluster, lambda: hosts.drop(11, [12, 13], cluster.dist_port, inbound_only=True),
                           lambda: hosts.undrop(11), "nftables drop one way (into 11)", late=1.0)
