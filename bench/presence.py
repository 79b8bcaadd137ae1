#!/usr/bin/env python3
"""What presence costs on real nodes, with one topic of 10, 1,000 and 10,000 presences: the
time from a join to the client's presence_state, and the cost of one presence_diff.

    python bench/presence.py                         # one node and 3 nodes, about 3 minutes
    python bench/presence.py --systems gossipy --sizes 10000 --touches 200

For each system (``single``: one node; ``gossipy``: 3 nodes in a mesh) and size N, fresh
clients (bench/js/presence.js, on its own core; the nodes on the other, running
bench/presence_app.py) fill a topic with N presences, spread over the nodes; 100 observers
join it untracked (they get every diff, round-robin over the nodes); then:

* **join → presence_state**: a probe joins (tracked) on the 2nd node, so that with 3 nodes
  2/3 of what it is sent are remote presences, and leaves, ``--joins`` times. Sent → join reply
  and sent → presence_state (its size too), and the servers' CPU per join and leave (which
  includes the two diffs to every observer);
* **one diff**: a tracked client on the 1st node updates its meta ``--touches`` times, one at a
  time; each update is one presence_diff (a leave and a join) to every observer on every node.
  Sent → first, median and last observer's receipt, and the servers' CPU per diff.

CPU is the run time of every node process's threads (/proc/<pid>/task/*/schedstat, in ns:
a diff costs less than one of /proc/<pid>/stat's 10 ms ticks), minus what they use when idle
(measured just before), over the phase, per operation. Records go to stdout and to
bench/results/<UTC time>-presence/results.jsonl with the nodes' logs; a table ends the run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import loadgen, procs, systems  # noqa: E402
from bench.results import Results, log  # noqa: E402

SIZES = (10, 1_000, 10_000)
APP = "bench.presence_app"
SCRIPT = os.path.join(HERE, "js", "presence.js")


def spread(total: int, parts: int) -> list[int]:
    """``total`` presences over ``parts`` nodes, as evenly as they go."""
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class CpuMeter:
    """The servers' CPU seconds spent on what a phase did: their total over the phase minus
    their idle rate (the tracker's own timers) times its length."""

    def __init__(self, system: systems.System) -> None:
        self.system = system
        before, t0 = self.total(), time.monotonic()
        time.sleep(1.0)
        self.idle_rate = (self.total() - before) / (time.monotonic() - t0)

    def total(self) -> float:
        return sum(procs.run_seconds(pid) for pid in self.system.server_pids().values())

    def phase(self, run: Callable[[], Any]) -> tuple[Any, float]:
        before, t0 = self.total(), time.monotonic()
        result = run()
        spent = self.total() - before - self.idle_rate * (time.monotonic() - t0)
        return result, max(0.0, spent)


def measure(system: systems.System, gen: loadgen.LoadGenerator, size: int,
            args: argparse.Namespace) -> dict[str, Any]:
    urls = system.ws_urls()
    topic = f"room:presence-{size}"
    probe_url = urls[1 % len(urls)]
    try:
        gen.call("fill", wait=180, urls=urls, topic=topic, counts=spread(size, len(urls)))
        gen.call("observe", wait=120, urls=urls, topic=topic, observers=args.observers)
        # The first join waits until every node's presences reach the probe's node.
        gen.call("joins", wait=120, url=probe_url, topic=topic, repeat=1, expect=size + 1)
        meter = CpuMeter(system)
        answer, join_cpu = meter.phase(lambda: gen.call(
            "joins", wait=300, url=probe_url, topic=topic, repeat=args.joins, expect=size + 1))
        joins = answer["samples"]
        gen.call("toucher", wait=120, url=urls[0], topic=topic)
        answer, touch_cpu = meter.phase(lambda: gen.call("touches", wait=300, repeat=args.touches))
        touches = answer["samples"]
        system.check_alive()
    finally:
        gen.call("close", wait=60)
    state_ms = [s["state_ms"] for s in joins]
    last_ms = [s["last_ms"] for s in touches]
    return {
        "system": system.label, "nodes": len(urls), "presences": size, "observers": args.observers,
        "join_reply_ms_p50": round(statistics.median(s["reply_ms"] for s in joins), 2),
        "join_to_state_ms_p50": round(statistics.median(state_ms), 2),
        "join_to_state_ms_p90": round(percentile(state_ms, 0.9), 2),
        "state_kb": round(joins[-1]["state_bytes"] / 1024, 1),
        "cpu_ms_per_join_and_leave": round(join_cpu / len(joins) * 1e3, 2),
        "diff_first_ms_p50": round(statistics.median(s["first_ms"] for s in touches), 2),
        "diff_median_ms_p50": round(statistics.median(s["median_ms"] for s in touches), 2),
        "diff_last_ms_p50": round(statistics.median(last_ms), 2),
        "diff_last_ms_p90": round(percentile(last_ms, 0.9), 2),
        "cpu_us_per_diff": round(touch_cpu / len(touches) * 1e6),
        "idle_cpu_fraction": round(meter.idle_rate, 4),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


TABLE = [  # (column, record field)
    ("system", "system"), ("presences", "presences"), ("join→state p50 ms", "join_to_state_ms_p50"),
    ("p90 ms", "join_to_state_ms_p90"), ("state KB", "state_kb"), ("CPU ms/join+leave", "cpu_ms_per_join_and_leave"),
    ("diff→all p50 ms", "diff_last_ms_p50"), ("p90 ms", "diff_last_ms_p90"), ("CPU µs/diff", "cpu_us_per_diff"),
]


def table(records: list[dict[str, Any]]) -> str:
    lines = ["| " + " | ".join(name for name, _ in TABLE) + " |", "|" + "---|" * len(TABLE)]
    for record in records:
        cells = [f"{record[field]:,}" if isinstance(record[field], int) else str(record[field]) for _, field in TABLE]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", default="single,gossipy", help="of single,gossipy (default: both)")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="presences in the topic (10,1000,10000)")
    parser.add_argument("--observers", type=int, default=100, help="untracked clients that get every diff (100)")
    parser.add_argument("--joins", type=int, default=20, help="timed joins per size (20)")
    parser.add_argument("--touches", type=int, default=100, help="timed diffs per size (100)")
    parser.add_argument("--out", help="results folder (default bench/results/<UTC time>-presence)")
    args = parser.parse_args()
    kinds = [kind for kind in args.systems.split(",") if kind]
    if any(kind not in ("single", "gossipy") for kind in kinds):
        parser.error("--systems: single and/or gossipy")
    sizes = [int(size) for size in args.sizes.split(",") if size]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    outdir = os.path.abspath(args.out or os.path.join(HERE, "results", f"{stamp}-presence"))
    os.makedirs(outdir, exist_ok=True)
    results = Results(outdir)
    procs.install_signal_handlers()
    cores = procs.cores()
    server_core, gen_core = (cores[0], cores[1]) if len(cores) >= 2 else (None, None)
    os.environ["GOSSIPY_APP"] = APP  # the nodes' environment is this process's
    for kind in kinds:
        system = systems.SYSTEMS[kind](os.path.join(outdir, "nodes"), core=server_core)
        gen = None
        try:
            system.start()
            gen = loadgen.LoadGenerator(core=gen_core, log_path=os.path.join(outdir, f"{kind}-presence-js.log"),
                                        script=SCRIPT)
            for size in sizes:
                record = results.emit(measure(system, gen, size, args))
                log(f"{kind} N={size:,}: join→presence_state {record['join_to_state_ms_p50']} ms, "
                    f"diff to all {args.observers} observers {record['diff_last_ms_p50']} ms, "
                    f"{record['cpu_us_per_diff']} µs CPU per diff")
        finally:
            if gen is not None:
                gen.stop()
            system.stop()
    print(table(results.records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
