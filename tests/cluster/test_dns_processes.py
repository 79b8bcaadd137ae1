"""DNS discovery with real parts: node processes on 127.0.0.x that know no other node, only
``kernel.dns_cluster_query``, resolved through the system resolver, which a real DNS server
(dnsmasq, see dns_server.py) answers with records the tests change."""

from __future__ import annotations

import collections
import socketserver
import threading
import time
from pathlib import Path

import pytest

from dns_server import DnsServer
from support.node_processes import NodeProcesses, address, node_name

pytestmark = pytest.mark.cluster

QUERY = "nodes.gossipy.test"
INTERVAL_MS = 200
SECTIONS = {"kernel": {"dns_cluster_query": QUERY, "dns_cluster_interval": INTERVAL_MS}}


class ResolvingNodes(NodeProcesses):
    """Node processes whose system resolver is ``dns``: each runs in its own mount namespace."""

    def __init__(self, directory: Path, dns: DnsServer) -> None:
        super().__init__(directory, sections=SECTIONS)
        self.dns = dns

    def command_prefix(self, index: int) -> list[str]:
        return self.dns.resolving_prefix()


def records(*indexes: int) -> dict[str, list[str]]:
    return {QUERY: [address(i) for i in indexes]}


def answers(node) -> list[str]:
    return node.lines(rf"dns_cluster_query {QUERY}: ")


def test_nodes_knowing_only_the_query_mesh_a_new_record_joins_and_a_removed_one_is_left_to_liveness(tmp_path) -> None:
    with DnsServer(tmp_path) as dns, ResolvingNodes(tmp_path, dns) as cluster:
        dns.set(records(2, 3, 4))
        nodes = cluster.start_many([2, 3, 4], sync=[])
        cluster.wait_for_mesh(nodes)

        # The newcomer asks another name, so only the others' polls can bring it in.
        newcomer = cluster.start(5, sections={"kernel": {"dns_cluster_query": "nobody.gossipy.test"}})
        dns.set(records(2, 3, 4, 5))
        started = time.monotonic()
        cluster.wait_for_mesh(nodes + [newcomer], timeout=5.0)
        joined = time.monotonic() - started
        for node in nodes:  # the mesh may come transitively, before each node's own poll
            node.wait_for_line(rf"dns_cluster_query {QUERY}: 3 node\(s\)")

        dns.set(records(2, 3, 5))
        time.sleep(5 * INTERVAL_MS / 1000)
        cluster.wait_for_mesh(nodes + [newcomer], timeout=0.1)  # still: liveness judges a node, not DNS
        first, second, vanished = nodes
        vanished.kill()
        cluster.wait_for_mesh([first, second, newcomer])
        for node in (first, second):
            node.wait_for_line(rf"no longer dialing {node_name(4)}: down, and no longer in the DNS answer")
        time.sleep(5 * INTERVAL_MS / 1000)
        for node in (first, second):
            after = node.log().partition(f"no longer dialing {node_name(4)}")[2]
            assert f"connect to {node_name(4)}" not in after, node.log()
            assert [line.split(f"{QUERY}: ", 1)[1] for line in answers(node)] == [  # once per change, not per poll
                f"2 node(s): {', '.join(node_name(i) for i in (2, 3, 4) if i != node.index)}, and this node",
                f"3 node(s): {', '.join(node_name(i) for i in (2, 3, 4, 5) if i != node.index)}, and this node",
                f"2 node(s): {', '.join(node_name(i) for i in (2, 3, 5) if i != node.index)}, and this node",
            ]
            assert not node.warnings(), node.log()
            node.assert_clean()
        print(f"a new record joined in {joined:.2f} s (interval {INTERVAL_MS} ms)")


class Stranger(socketserver.ThreadingTCPServer):
    """Something that is not gossipy on the distribution port: it answers like a web server
    and counts the connections it gets, per address."""

    daemon_threads = True

    def __init__(self, host: str, port: int) -> None:
        self.connections: collections.Counter[str] = collections.Counter()
        super().__init__((host, port), StrangerHandler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def __enter__(self) -> "Stranger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()


class StrangerHandler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        assert isinstance(self.server, Stranger)
        self.server.connections[self.client_address[0]] += 1
        self.request.recv(4096)
        self.request.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")


def test_records_of_a_stranger_a_closed_port_and_another_cookie_are_logged_once_and_never_spin(tmp_path) -> None:
    with (DnsServer(tmp_path) as dns,
          ResolvingNodes(tmp_path, dns) as cluster,
          Stranger(address(8), cluster.dist_port) as stranger):
        dns.set(records(2, 3))
        nodes = cluster.start_many([2, 3], sync=[])
        cluster.wait_for_mesh(nodes)
        # Under the same name, as a node started with the wrong secret would be.
        other_cookie = cluster.start(7, env={"RELEASE_COOKIE": "a-cookie-nobody-else-has"})
        dns.set(records(2, 3, 7, 8, 9))  # 9: nothing listens there
        watched = 6.0
        time.sleep(watched)  # 30 polls; the redials back off to one every 3 s

        cluster.wait_for_mesh(nodes, timeout=0.1)
        for node in nodes:
            assert len(answers(node)) == 2, node.log()
            failures = {i: [line.split(f"{node_name(i)} ", 1)[1]
                            for line in node.lines(rf"cannot connect to {node_name(i)} ")] for i in (7, 8, 9)}
            # Each failure once, however many redials: the other-cookie node first refuses the
            # cookie, then (its admission throttling us) anyone, which is a change.
            at = f"at {address(7)}:{cluster.dist_port}"
            refusals = [f"{at}: refused by the peer: {reason}: refused by the peer"
                        for reason in ("bad_cookie", "not_allowed")]
            assert failures[7] == refusals[:len(failures[7])], node.log()
            assert [len(failures[8]), len(failures[9])] == [1, 1], node.log()
            assert "malformed: frame length" in failures[8][0] and "Connection refused" in failures[9][0]
            # The other node's own dials are refused here until admission throttles it: bounded too.
            assert len(node.warnings()) <= 10, node.log()
            node.assert_clean()
        # 0.1, 0.2, 0.4 ... 3 s apart (jittered to 50-100 %): a handful, not hundreds.
        assert stranger.connections.keys() == {address(i) for i in (2, 3, 7)}  # 7 asks the same name
        assert max(stranger.connections.values()) <= 12, stranger.connections
        print(f"connections to the stranger in {watched:g} s: {dict(stranger.connections)}")
        other_cookie.assert_clean()
