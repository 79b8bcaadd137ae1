"""What the tests share: node processes, clients, proxies and the machine's tools.

Found through pytest's ``pythonpath`` (pyproject.toml), so ``python3 -m pytest`` and ``pytest``
import it alike: ``from support.server_process import wait_until``.

* ``server_process`` — one ``python -m server`` process (``ServerProcess``, ``NodeStarter``),
  free ports, and waiting for conditions without sleeps.
* ``node_processes`` — node processes on 127.0.0.x meshed into clusters.
* ``phoenix_client``, ``recorded`` — a websocket Phoenix client, recorded conversations.
* ``tcp_proxy`` — a load balancer in front of nodes that can cut connections.
* ``certificates`` — a test CA and node certificates (TLS between nodes).
* ``checkout`` — a copy of the checkout for tests that build from it.
* ``e2e_harness``, ``baseimage`` — releases in Docker compose clusters, and their base image.
* ``swarm`` — a one-node Docker swarm and docker-stack.yml deployed on it.
* ``fuzz`` — the decoders' contracts and their fuzzer (``python3 -m tests.support.fuzz``).
* ``requirements`` — what a test needs from the machine: skip locally, fail under CI.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
