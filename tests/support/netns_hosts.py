"""Separate hosts on one machine: each node in its own Linux network namespace, with its own
network stack, links and firewall, so a test can take a real link down or drop real packets
(tests/hardening/test_hardening_netns.py). Needs root, ``ip`` (iproute2) and ``nft`` (nftables).

The topology, every name starting with a per-run prefix ``P`` and every address in one /24 of
each half of 198.18.0.0/15 (the benchmarking range, RFC 2544), picked so that it is not on the
machine yet (``X``)::

                     namespace P-sw (the switch)
          bridge back (no address)         bridge front (no address)
            |          |        |             |        |        |          \\
         eth0       eth0     eth0          eth1     eth1     eth1       P-host (this machine)
    198.18.X.11  .12      .13       198.19.X.11  .12      .13        198.19.X.1
         namespace P-11, P-12, P-13 (the hosts)

* The back network carries the distribution: node ``i`` is ``gossipy@198.18.X.i``, and binds
  and dials from that address. Cuts happen there, on a host's ``eth0`` or in its nftables.
* The front network is the clients': node ``i`` serves websockets on ``198.19.X.i:4000``, and
  the test process reaches it through ``P-host``, the one interface added to this machine. A
  cut of the back network leaves every node's clients connected, as on hosts that serve
  clients and talk to each other on separate networks.
* Nothing is routed out: no namespace has a default route, there is no NAT, and no real
  interface is touched. The bridges live in their own namespace, not this machine's: here,
  bridged frames would go through this machine's iptables (br_netfilter), whose FORWARD policy
  a Docker engine sets to DROP.

Everything is removed when the ``with`` block ends, pass or fail (the node processes must be
gone by then: a namespace lives on while a process runs in it)::

    with Hosts([11, 12, 13]) as hosts:
        hosts.cluster_ip(11)                      # 198.18.X.11
        hosts.set_link(11, up=False)              # eth0 of P-11 down
        hosts.drop(11, [12, 13], port)            # P-11's nftables drop 198.18.X.12/13 on port
        hosts.undrop(11)
"""

from __future__ import annotations

import ipaddress
import json
import os
import random
import subprocess
from pathlib import Path
from typing import Any, Iterable

from .node_processes import NodeProcesses

CLUSTER_NET = ipaddress.ip_network("198.18.0.0/16")  # the back network's /24 is in here
CLIENT_NET = ipaddress.ip_network("198.19.0.0/16")  # and the front network's, the same X
HTTP_PORT = 4000  # every host has its own stack: the default port, as on separate machines


def ip(*args: str, namespace: str | None = None, stdin: str | None = None) -> str:
    """``ip [-n NAMESPACE] ARGS``, failing loudly with what it said."""
    command = ["ip", *(["-n", namespace] if namespace else []), *args]
    done = subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=10)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)}: exit {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def _taken_networks() -> list[ipaddress.IPv4Network]:
    """Every IPv4 network this machine routes or has an address in."""
    routes = json.loads(ip("-4", "-j", "route", "show", "table", "all"))
    return [ipaddress.ip_network(route["dst"], strict=False) for route in routes
            if route.get("dst", "default") != "default"]


def _free_subnet() -> int:
    """An ``X`` for which neither 198.18.X.0/24 nor 198.19.X.0/24 is on this machine (another
    run of these tests, say)."""
    taken = _taken_networks()
    candidates = list(range(256))
    random.shuffle(candidates)
    for x in candidates:
        ours = [ipaddress.ip_network(f"{net.network_address + x * 256}/24") for net in (CLUSTER_NET, CLIENT_NET)]
        if not any(mine.overlaps(other) for mine in ours for other in taken):
            return x
    raise RuntimeError("no free /24 left in 198.18.0.0/15 on this machine")


class Hosts:
    """Network namespaces as hosts (see the module docstring)."""

    def __init__(self, indexes: Iterable[int]) -> None:
        self.indexes = list(indexes)
        # 10 characters: with "-host", this machine's interface name is 15, Linux's limit.
        self.prefix = f"gsy{os.getpid() % 100000:05d}{random.randrange(256):02x}"
        self.subnet = -1
        self._undo: list[list[str]] = []  # the commands that remove what was made, in order made

    def namespace(self, index: int) -> str:
        return f"{self.prefix}-{index}"

    @property
    def switch(self) -> str:
        return f"{self.prefix}-sw"

    @property
    def host_link(self) -> str:
        return f"{self.prefix}-host"

    def cluster_ip(self, index: int) -> str:
        return str(CLUSTER_NET.network_address + self.subnet * 256 + index)

    def client_ip(self, index: int) -> str:
        return str(CLIENT_NET.network_address + self.subnet * 256 + index)

    def __enter__(self) -> "Hosts":
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self) -> None:
        self.subnet = _free_subnet()
        for name in [self.switch] + [self.namespace(i) for i in self.indexes]:
            ip("netns", "add", name)
            self._undo.append(["netns", "delete", name])
            ip("link", "set", "lo", "up", namespace=name)
        for bridge in ("back", "front"):
            ip("link", "add", bridge, "type", "bridge", namespace=self.switch)
            ip("link", "set", bridge, "up", namespace=self.switch)
        for i in self.indexes:
            for inside, port, bridge, address in (("eth0", f"b{i}", "back", self.cluster_ip(i)),
                                                  ("eth1", f"f{i}", "front", self.client_ip(i))):
                self._cable(port, bridge, self.namespace(i), inside, address)
        # This machine's end of the front network: created here, so it needs removing itself
        # (deleting the switch would too, but only once nothing holds that namespace).
        ip("link", "add", self.host_link, "type", "veth", "peer", "name", "host", "netns", self.switch)
        self._undo.insert(0, ["link", "delete", self.host_link])
        ip("link", "set", "host", "master", "front", "up", namespace=self.switch)
        ip("addr", "add", f"{self.client_ip(1)}/24", "dev", self.host_link)
        ip("link", "set", self.host_link, "up")

    def _cable(self, port: str, bridge: str, namespace: str, inside: str, address: str) -> None:
        """A veth from the switch's ``bridge`` to ``inside`` in ``namespace``, with ``address``
        (its /24: the only route that namespace gets)."""
        ip("link", "add", port, "type", "veth", "peer", "name", inside, "netns", namespace, namespace=self.switch)
        ip("link", "set", port, "master", bridge, "up", namespace=self.switch)
        ip("addr", "add", f"{address}/24", "dev", inside, namespace=namespace)
        ip("link", "set", inside, "up", namespace=namespace)

    def set_link(self, index: int, up: bool) -> None:
        """Host ``index``'s back-network link (``eth0``) up or down, as a cable plugged or pulled."""
        ip("link", "set", "eth0", "up" if up else "down", namespace=self.namespace(index))

    def drop(self, index: int, peers: Iterable[int], port: int, inbound_only: bool = False) -> None:
        """An nftables table in host ``index``'s namespace that drops its TCP traffic with
        ``peers`` on ``port`` (either end: the dialer's end is an ephemeral port), inbound,
        and outbound too unless ``inbound_only``."""
        peer_set = ", ".join(self.cluster_ip(p) for p in peers)
        chains = [("input", "saddr")] + ([] if inbound_only else [("output", "daddr")])
        rules = "\n".join(
            f"chain {hook} {{ type filter hook {hook} priority 0; policy accept;\n"
            f"  ip {field} {{ {peer_set} }} tcp sport {port} drop\n"
            f"  ip {field} {{ {peer_set} }} tcp dport {port} drop\n}}"
            for hook, field in chains)
        self._nft(index, f"table ip {self.prefix} {{\n{rules}\n}}\n")

    def undrop(self, index: int) -> None:
        """Removes :meth:`drop`'s table: everything passes again."""
        self._nft(index, f"delete table ip {self.prefix}\n")

    def _nft(self, index: int, script: str) -> None:
        ip("netns", "exec", self.namespace(index), "nft", "-f", "-", stdin=script)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this machine named with this run's prefix."""
        names = [n.split()[0] for n in ip("netns", "list").splitlines() if n.strip()]
        links = [link["ifname"] for link in json.loads(ip("-j", "link", "show"))]
        return [name for name in names + links if name.startswith(self.prefix)]

    def close(self) -> None:
        """Removes all that was made, each step even if another failed; then raises if any did."""
        failures = []
        for command in self._undo:
            try:
                ip(*command)
            except RuntimeError as exc:
                failures.append(str(exc))
        self._undo.clear()
        if failures:
            raise RuntimeError("cleaning up the test's namespaces: " + "; ".join(failures))


class NetnsNodes(NodeProcesses):
    """tests/node_processes.py's harness with node ``i`` on host ``i`` of ``hosts``: named
    ``gossipy@198.18.X.i``, serving on ``198.19.X.i:4000``, run by ``ip netns exec``."""

    def __init__(self, directory: Path, hosts: Hosts, sections: dict[str, Any] | None = None) -> None:
        super().__init__(directory, sections=sections, addresses=())
        self.hosts = hosts

    def node_name(self, index: int) -> str:
        return f"gossipy@{self.hosts.cluster_ip(index)}"

    def http_host(self, index: int) -> str:
        return self.hosts.client_ip(index)

    def http_port(self, index: int) -> int:
        return HTTP_PORT

    def command_prefix(self, index: int) -> list[str]:
        return ["ip", "netns", "exec", self.hosts.namespace(index)]
