"""Idle memory: the RSS a system holds per joined connection that only sends heartbeats."""

from __future__ import annotations

import argparse
import os
import time

from . import loadgen, systems
from .results import Results, log

GEN_CONNECTIONS = 9000   # idle connections per generator process (under a 20,000 descriptor limit)


class IdleMemory:
    """Measures each of ``--idle`` connection counts on one freshly started system."""

    def __init__(self, args: argparse.Namespace, results: Results, gen_core: int | None, fd_limit: int) -> None:
        self.args = args
        self.results = results
        self.gen_core = gen_core
        self.fd_limit = fd_limit

    def measure(self, system: systems.System) -> None:
        """RSS per joined connection: fresh servers, then N joined sockets doing heartbeats only.

        A process here may hold at most ``fd_limit`` descriptors (this sandbox cannot raise the
        hard limit), so the connections are spread over generators of at most GEN_CONNECTIONS
        each, and a node is never asked to hold more than its limit allows."""
        args = self.args
        per_node = self.fd_limit - 200
        gens: list[loadgen.LoadGenerator] = []
        try:
            time.sleep(1.0)
            base = system.rss_bytes()
            joined = 0
            for wanted in args.idle:
                target = min(wanted, per_node * len(system.nodes))
                t0 = time.monotonic()
                first_failure = None
                while joined < target and time.monotonic() - t0 < args.idle_deadline:
                    if not gens or gens[-1].held >= GEN_CONNECTIONS:
                        gens.append(loadgen.LoadGenerator(core=self.gen_core, log_path=os.path.join(
                            self.results.outdir, f"{system.label}-idle-loadgen{len(gens) + 1}.log")))
                    gen = gens[-1]
                    n = min(target - joined, GEN_CONNECTIONS - gen.held)
                    got = gen.connect(system.ws_urls(), n, concurrency=args.connect_concurrency,
                                      deadline=max(10.0, args.idle_deadline - (time.monotonic() - t0)))
                    gen.held += n
                    joined += got["joined"]
                    first_failure = first_failure or got.get("first_failure")
                    if got["failed"]:
                        break
                seconds = time.monotonic() - t0
                time.sleep(2.0)
                system.check_alive()
                rss = system.rss_bytes()
                delta = sum(rss.values()) - sum(base.values())
                note = (f"capped at {target:,}: a process may hold at most {self.fd_limit:,} descriptors here"
                        if target < wanted else None)
                record = self.results.emit({
                    "system": system.label, "workload": f"idle-{wanted}", "connections": joined,
                    "failed": target - joined, "connect_seconds": round(seconds, 1),
                    "rss_mb": round(sum(rss.values()) / 2**20, 1),
                    "rss_mb_before": round(sum(base.values()) / 2**20, 1),
                    "kb_per_connection": round(delta / max(1, joined) / 1024, 2),
                    "rss_mb_by_process": {k: round(v / 2**20, 1) for k, v in rss.items()},
                    "first_failure": first_failure, "note": note,
                    "load_average": [round(x, 2) for x in os.getloadavg()],
                })
                log(f"{system.label}: {joined} idle connections: {record['kb_per_connection']} KB RSS each "
                    f"(connected in {seconds:.1f} s){'; ' + note if note else ''}")
                if joined < target:
                    break
        finally:
            for gen in gens:
                gen.stop()
