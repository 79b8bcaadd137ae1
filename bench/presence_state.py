#!/usr/bin/env python3
"""What the replicated presence state costs per operation, with one topic of 10, 1,000 and
10,000 presences.

    python bench/presence_state.py            # the table below, about 20 s
    python bench/presence_state.py --repeat 50

Each row is the median CPU time of one operation (process time, so that other processes on a
shared machine do not count), in microseconds, while a topic holds N presences owned by a
replica ``a`` and mirrored on a replica ``b``:

* ``join+leave (local)``: a connection tracks and untracks one presence on ``a``;
* ``delta 1 change``: ``a`` extracts a delta of one join, it crosses as JSON text (encode,
  decode, check), ``b`` merges it; the delta path every change takes;
* ``delta 100 changes``: the same for 100 joins gathered in one interval;
* ``list (presence_state)``: ``b`` lists the topic, as for a joining client;
* ``full state catch-up``: ``a``'s full state crosses as JSON and a fresh replica merges it,
  as for a node that joins or lags;
* ``replica down+up``: ``b`` hides ``a``'s presences and shows them again (diffs included).

The delta rows should not grow with N (the operations are O(changes)); the list, catch-up and
down/up rows grow with N, since they touch every presence.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from server.presence.state import PresenceState, ReplicaId, StateMessage  # noqa: E402

SIZES = (10, 1_000, 10_000)
TOPIC = "room:lobby"


def over_the_wire(message: StateMessage) -> StateMessage:
    return StateMessage.from_json(json.loads(json.dumps(message.to_json(), separators=(",", ":"))))


def median_us(operation: Callable[[], object], repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.process_time()
        operation()
        samples.append(time.process_time() - started)
    return statistics.median(samples) * 1e6


def replicas(size: int) -> tuple[PresenceState, PresenceState]:
    a, b = PresenceState(ReplicaId("a@bench", 1)), PresenceState(ReplicaId("b@bench", 2))
    a.replica_up(b.replica)
    b.replica_up(a.replica)
    for user in range(size):
        a.join(f"conn{user}", TOPIC, f"user{user}", {"online_at": 1_700_000_000 + user, "device": "web"})
    b.merge(over_the_wire(a.extract_state()))
    a.extract_delta()  # the joins above went as a full state
    return a, b


def measure(size: int, repeat: int) -> dict[str, float]:
    a, b = replicas(size)
    fresh = iter(range(10**9))

    def join_leave() -> None:
        conn = f"extra{next(fresh)}"
        a.join(conn, TOPIC, conn, {"device": "web"})
        a.leave(conn, TOPIC, conn)

    def delta(changes: int) -> Callable[[], object]:
        def run() -> None:
            for _ in range(changes):
                conn = f"extra{next(fresh)}"
                a.join(conn, TOPIC, conn, {"device": "web"})
            message = a.extract_delta()
            assert message is not None
            b.merge(over_the_wire(message))
        return run

    def catch_up() -> None:
        newcomer = PresenceState(ReplicaId("c@bench", 3))
        newcomer.replica_up(a.replica)
        newcomer.merge(over_the_wire(a.extract_state([a.replica])))

    def down_up() -> None:
        b.replica_down(a.replica)
        b.replica_up(a.replica)

    results = {"join+leave (local)": median_us(join_leave, repeat)}
    # The delta rows add presences: each row starts from fresh replicas, so the topic is near N.
    a, b = replicas(size)
    results["delta 1 change"] = median_us(delta(1), repeat)
    a, b = replicas(size)
    results["delta 100 changes"] = median_us(delta(100), max(3, repeat // 10))
    a, b = replicas(size)
    results["list (presence_state)"] = median_us(lambda: b.list(TOPIC), max(3, repeat // 10))
    results["full state catch-up"] = median_us(catch_up, max(3, repeat // 20))
    results["replica down+up"] = median_us(down_up, max(3, repeat // 20))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=200, help="runs of the per-change rows (default 200)")
    repeat = parser.parse_args().repeat
    table = {size: measure(size, repeat) for size in SIZES}
    rows = list(table[SIZES[0]])
    print(f"{'median CPU µs per operation':<28}" + "".join(f"{f'N={size:,}':>14}" for size in SIZES))
    for row in rows:
        print(f"{row:<28}" + "".join(f"{table[size][row]:>14,.1f}" for size in SIZES))


if __name__ == "__main__":
    main()
