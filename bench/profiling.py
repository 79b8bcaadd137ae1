"""Where server CPU goes: py-spy on one node during an extra step of a workload."""

from __future__ import annotations

import argparse
import os
import subprocess
import time

from . import loadgen, procs, report, systems
from .results import Results, log
from .steps import Steps


class Profiler:
    """Profiles one node of a running system; the step it adds is numbered by ``steps`` but is
    not one of the measured steps."""

    def __init__(self, args: argparse.Namespace, results: Results, steps: Steps, gen_core: int | None) -> None:
        self.args = args
        self.results = results
        self.steps = steps
        self.gen_core = gen_core

    def record(self, system: systems.System, gen: loadgen.LoadGenerator, workload: str, rate: float,
               rooms: int = 1) -> None:
        """py-spy on one node during an extra (unrecorded) step: where server CPU goes. run.py
        has made sure py-spy is installed."""
        args = self.args
        node = system.nodes[0]
        raw = os.path.join(self.results.outdir, f"{system.label}-{node.label}-{workload}-profile.txt")
        seconds = args.duration
        pin = (lambda: os.sched_setaffinity(0, {self.gen_core})) if self.gen_core is not None else None
        # --gil: only samples holding the GIL, i.e. running Python, not inside a syscall and not
        # waiting for the core: they split the node's *user* CPU time; its system time (the
        # syscalls) is read from /proc and reported beside them.
        spy = subprocess.Popen(["py-spy", "record", "--gil", "--nonblocking", "-r", "250", "-d", str(int(seconds) + 1),
                                "-p", str(node.proc.pid), "-f", "raw", "-o", raw],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=pin)
        time.sleep(0.5)
        clients = gen.ensure()["total_joined"]
        cpu0 = system.cpu_seconds()
        user0, kernel0 = procs.cpu_times(node.proc.pid)
        senders, per_shout = (args.senders, clients) if rooms == 1 else (clients, clients / rooms)
        result = gen.run(step=self.steps.next_step_no(), senders=senders, rate=rate / per_shout, duration=seconds, drain=args.drain)
        cpu1 = system.cpu_seconds()
        user1, kernel1 = procs.cpu_times(node.proc.pid)
        # This node's CPU over the deliveries to its own clients (client i is on node i % n).
        share = len(range(0, args.clients, len(system.nodes))) / args.clients
        own = max(1.0, result["delivered"] * share)
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)
        if not os.path.exists(raw):
            log("py-spy wrote no profile (ptrace not permitted?)")
            return
        summary = report.summarize_profile(raw, (user1 - user0) / own * 1e6)
        summary.update({
            "system_us_per_delivery": round((kernel1 - kernel0) / own * 1e6, 3),
            "system": system.label, "workload": "profile-" + workload, "node": node.label, "profile_rate": rate,
            "profile_file": os.path.relpath(raw, systems.REPO),
            "cpu_us_per_delivery_all": round(sum(cpu1[k] - cpu0[k] for k in cpu1) / max(1, result["delivered"]) * 1e6, 2),
            "cpu_by_process": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu1},
        })
        self.results.emit(summary)
        log(f"profile of {system.label} {node.label}, {workload} at {rate:,.0f} deliveries/s:\n"
            + report.format_profile(summary))
