"""Abuse of the distribution port of real node processes (tests/support/node_processes.py).

Garbage, oversized length prefixes, a stalled handshake, a wrong cookie tried repeatedly
(refused, then throttled per address) and a duplicate name are in tests/cluster
(test_membership.py: test_garbage_on_the_port_is_refused_and_the_mesh_is_untouched,
test_a_stalled_handshake_times_out, test_repeated_failures_from_one_address_are_throttled;
test_cluster_processes.py: test_wrong_cookie_duplicate_name_and_garbage_are_refused_and_logged).
Here: what one address can do to the handshake slots every node shares.
"""

from __future__ import annotations

import socket
import time

import pytest

from support.node_processes import NodeProcesses, address

pytestmark = pytest.mark.cluster

ATTACKER = "127.0.0.50"


async def test_a_flood_of_stalled_handshakes_from_one_address_does_not_keep_a_node_out(tmp_path) -> None:
    async with NodeProcesses(tmp_path) as cluster:
        target = cluster.start(2)
        stalled = []
        for _ in range(200):  # connect, then say nothing: each holds a handshake slot until it times out
            sock = socket.socket()
            sock.bind((ATTACKER, 0))
            sock.connect((address(2), cluster.dist_port))
            stalled.append(sock)
        time.sleep(0.2)
        started = time.monotonic()
        newcomer = cluster.start(3, sync=[2])
        await cluster.async_wait_for_mesh([target, newcomer], timeout=5)
        joined_after = time.monotonic() - started
        for sock in stalled:
            sock.close()
        time.sleep(0.3)  # the handshakes still in progress end
        about_attacker = target.lines(ATTACKER.replace(".", r"\."))
        print(f"200 stalled handshakes from {ATTACKER}: a node joined {joined_after:.2f} s after it started; "
              f"{len(about_attacker)} log line(s) about the attacker")
        assert joined_after < 2.0, target.log()
        assert len(about_attacker) == 1 and "throttling" in about_attacker[0], about_attacker
        target.assert_clean()
