"""Where candidate nodes come from, and where to dial them.

The candidates are the configured sync_nodes lists (which, in a worker, include the host's
other workers) and, with ``kernel.dns_cluster_query``, the A/AAAA records of DNS names
(:class:`DnsPoller`, Elixir's dns_cluster). A node's address is the host part of its name
(``gossipy@ws1`` -> ``ws1``, resolved when dialed; ``gossipy@127.0.0.2`` -> 127.0.0.2) and the
distribution port every node of a cluster shares, the way a pinned ``inet_dist_listen_min``
replaces epmd, moved up by the worker number a name may carry (``gossipy-2@ws1`` -> ``ws1``,
port + 1; see :mod:`server.nodename`). Both come from the name alone, so the member lists nodes
exchange need no ports, and a one-process node is where it always was.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from typing import Awaitable, Callable

from ..nodename import NodeName, NodeNameError
from ..settings import Distribution

log = logging.getLogger("gossipy.cluster.discovery")

Resolver = Callable[[str], Awaitable[list[str]]]
"""``await resolver(name)``: the addresses of ``name``'s A/AAAA records, ``[]`` when it has
none; raises OSError when the lookup itself failed (no answer, a server failure)."""

# getaddrinfo's "the name does not exist" and "it has no address": an answer, and an empty one.
_NO_RECORDS = frozenset(code for code in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
                        if code is not None)


def configured_nodes(distribution: Distribution) -> list[str]:
    """The nodes this node is told to join, in order, without itself or repeats: a shared
    config lists every node, this one included."""
    listed = distribution.sync_nodes_optional + distribution.sync_nodes_mandatory
    return [name for name in dict.fromkeys(listed) if name != distribution.node]


def address(name: str, distribution: Distribution) -> tuple[str, int]:
    """The host and port to dial for node ``name`` (and the port this node listens on, for its
    own); raises NodeNameError for a worker number past the last port."""
    parsed = NodeName.parse(name)
    return parsed.host, parsed.port(distribution.port)


def own_address(distribution: Distribution) -> str | None:
    """The one address this node listens on, or None when it listens on every interface
    (then it has no single address to dial from, and a local asker reaches it on loopback)."""
    listen = distribution.listen_address
    return None if listen in ("0.0.0.0", "::") else listen


async def system_resolver(name: str) -> list[str]:
    """The system's resolver (resolv.conf, /etc/hosts, nsswitch), as every other program on the
    host resolves: what Docker's embedded DNS, Swarm's ``tasks.<service>`` and a Kubernetes
    headless service answer through. getaddrinfo blocks, so asyncio runs it in a thread."""
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(name, None, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        if exc.errno in _NO_RECORDS:
            return []
        raise
    return [str(info[4][0]) for info in infos]


def _is_node_name(text: str) -> bool:
    try:
        NodeName.parse(text)
    except NodeNameError:
        return False
    return True


class DnsPoller:
    """dns_cluster's whole job: resolve the queries, diff the nodes against the last answer,
    ``want`` the new ones and ``unwant`` those that vanished, log a query's answer only when it
    changed, and poll again every ``dns_cluster_interval``.

    Every address of this node's IP version is a node ``<this node's name part>@<ip>``
    (settings made sure this node is named so); this node's own address is skipped. A failed lookup keeps the query's last
    answer: a resolver hiccup must not make the cluster forget its nodes.
    """

    def __init__(self, distribution: Distribution, want: Callable[[str], None], unwant: Callable[[str], None],
                 resolver: Resolver = system_resolver) -> None:
        if distribution.node is None:
            raise ValueError("DNS discovery needs a node name (settings.distribution)")
        me = NodeName.parse(distribution.node)
        # Every host's first worker (the only one of a one-process host); the others come by
        # member exchange.
        self._name_part = me.first.name
        self._own_ip = ipaddress.ip_address(me.host)
        self._queries = distribution.dns_cluster_query
        self._interval = distribution.dns_cluster_interval_ms / 1000
        self._want = want
        self._unwant = unwant
        self._resolve = resolver
        self._answers: dict[str, list[str]] = {}
        self._reported: dict[str, str] = {}
        self._nodes: set[str] = set()

    async def run(self) -> None:
        """Polls every interval, for ever (after the first :meth:`poll`, which boot awaits)."""
        while True:
            await asyncio.sleep(self._interval)
            await self.poll()

    async def poll(self) -> list[str]:
        """One round; returns the nodes every query lists now, sorted."""
        results = await asyncio.gather(*(self._lookup(query) for query in self._queries))
        nodes: set[str] = set()
        for query, result in zip(self._queries, results, strict=True):
            if isinstance(result, OSError):
                self._report(query, logging.WARNING, f"cannot resolve it ({result.strerror or result}); "
                                                     f"keeping its last answer")
            else:
                self._answers[query] = self._answer(query, result)
            nodes.update(self._answers.get(query, ()))
        for name in sorted(nodes - self._nodes):
            self._want(name)
        for name in sorted(self._nodes - nodes):
            self._unwant(name)
        self._nodes = nodes
        return sorted(nodes)

    async def _lookup(self, query: str) -> list[str] | OSError:
        try:
            return await self._resolve(query)
        except OSError as exc:
            return exc

    def _answer(self, query: str, addresses: list[str]) -> list[str]:
        ips = sorted({ipaddress.ip_address(a) for a in addresses}, key=lambda ip: (ip.version, ip))
        # A node answers to one name, whose address is of this node's IP version: on a
        # dual-stack name the other version's records are the same nodes (this one included)
        # under names none of them answers to, dialed and refused for ever. A scoped IPv6
        # address (fe80::1%eth0) is no node name: the dialing task would die of it.
        candidates = (f"{self._name_part}@{ip}" for ip in ips if ip.version == self._own_ip.version
                      and ip != self._own_ip)
        names = [name for name in candidates if _is_node_name(name)]
        if not ips:
            self._report(query, logging.WARNING, "no A/AAAA records; no node to join through it yet")
        elif not names:
            self._report(query, logging.INFO, "only this node")
        else:
            mine = ", and this node" if self._own_ip in ips else ""
            self._report(query, logging.INFO, f"{len(names)} node(s): {', '.join(names)}{mine}")
        return names

    def _report(self, query: str, level: int, text: str) -> None:
        # Polled every few seconds for the node's whole life: only a change is news.
        if self._reported.get(query) != text:
            self._reported[query] = text
            log.log(level, "dns_cluster_query %s: %s", query, text)
