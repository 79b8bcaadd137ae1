#!/usr/bin/env python3
"""gossipy's benchmark: fan-out across a cluster, side by side with the Redis way and one node.

    python bench/run.py                    # the full run (< 10 min on 2 cores): bench/README.md + plot
    python bench/run.py --quick            # ~1 min: fixed loads on one node and the cluster
    python bench/run.py --quick --before HEAD~1    # the same, also on the server of HEAD~1: after/before ratios
    python bench/run.py --quick --baseline bench/results/<run>/results.jsonl  # ratios against a saved run

Every system+workload prints one JSON line (also saved under bench/results/<run>/results.jsonl).
See bench/README.md for what is measured and how.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any, Callable

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import lifecycle, loadgen, procs, report, systems  # noqa: E402
from bench.idle import IdleMemory  # noqa: E402
from bench.profiling import Profiler  # noqa: E402
from bench.results import Results, log  # noqa: E402
from bench.steps import Steps  # noqa: E402


class Bench:
    """One run: which workloads run on which systems, in which order, and what is written at
    the end. Steps and ramps, idle memory, profiles and starting systems are the jobs of
    ``Steps``, ``IdleMemory``, ``Profiler`` and ``systems.SystemRunner``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.outdir = os.path.abspath(args.out or os.path.join(HERE, "results", stamp))
        os.makedirs(self.outdir, exist_ok=True)
        self.results = Results(self.outdir)
        all_cores = procs.cores()
        if len(all_cores) >= 2 and not args.no_pin:
            self.server_core, self.gen_core = all_cores[0], all_cores[1]
        else:
            self.server_core = self.gen_core = None
        self.started = time.monotonic()
        self.fd_limit = procs.raise_fd_limit(65536)
        self.steps = Steps(args, self.results, self.server_core, self.gen_core, self.started)
        self.idle = IdleMemory(args, self.results, self.gen_core, self.fd_limit)
        self.profiler = Profiler(args, self.results, self.steps, self.gen_core)
        self.systems = systems.SystemRunner(os.path.join(self.outdir, "nodes"), self.server_core, self.results,
                                            lambda: self.steps.wait_quiet(args.wait_quiet))

    # ---- workloads -----------------------------------------------------------------------------

    def fanout(self, system: systems.System) -> None:
        """Fixed loads, the ramp to the highest sustained rate, and (optionally) a profile."""
        args = self.args
        gen = loadgen.LoadGenerator(core=self.gen_core,
                                    log_path=os.path.join(self.outdir, f"{system.label}-loadgen.log"))
        try:
            connected = gen.connect(system.ws_urls(), args.clients, concurrency=args.connect_concurrency)
            log(f"{system.label}: {connected['total_joined']} clients joined in {connected['seconds']} s")
            if connected["failed"]:
                raise RuntimeError(f"{connected['failed']} clients failed to join: {connected['first_failure']}")
            fixed = [self.steps.step(system, gen, f"fanout-{int(rate)}", deliveries_per_s=rate,
                                     duration=args.duration) for rate in args.rates]
            if args.profile and system.name in args.profile_systems:
                self.profiler.record(system, gen, "fanout", args.profile_rate or max(args.rates))
            if args.ramp:
                self.steps.ramp(system, gen, fixed)
            if args.room_rates:
                self.small_rooms(system, gen)
        finally:
            gen.stop()

    def small_rooms(self, system: systems.System, gen: loadgen.LoadGenerator) -> None:
        """Rooms of two, whose members are on different nodes (client i is on node i % 3 and
        shares room i % (C/2) with client i + C/2), every client shouting: each broadcast makes
        2 deliveries and crosses between nodes, so the transport between nodes is most of the
        work, where in one big room the socket writes are. On one node: the same rooms, all local."""
        args = self.args
        gen.close_all()
        rooms = args.clients // 2
        got = gen.connect(system.ws_urls(), args.clients, topic="room:pairs", rooms=rooms,
                          concurrency=args.connect_concurrency)
        if got["failed"]:
            raise RuntimeError(f"{got['failed']} clients failed to join a room of two: {got['first_failure']}")
        fixed = [self.steps.step(system, gen, f"rooms2-{int(rate)}", deliveries_per_s=rate,
                                 duration=args.duration, rooms=rooms) for rate in args.room_rates]
        if args.profile and system.name in args.profile_systems:
            self.profiler.record(system, gen, "rooms2", args.room_rates[0], rooms=rooms)
        if args.ramp:
            self.steps.ramp(system, gen, fixed, kind="rooms of two", rooms=rooms)

    # ---- the run -------------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        procs.install_signal_handlers()
        meta = {"system": "machine", "workload": "meta", "machine": procs.machine(), "fd_limit": self.fd_limit,
                "pinning": {"servers": self.server_core, "generator": self.gen_core},
                "git": _git_describe(args.rev), "python": sys.version.split()[0], "node": _version(["node", "--version"]),
                "redis": systems._redis_version(), "quick": args.quick,
                "clients": args.clients, "senders": args.senders, "duration": args.duration}
        self.results.emit(meta)
        sources = [("", systems.source_at(args.rev, self.outdir) if args.rev else REPO)]
        if args.before:
            sources.insert(0, ("@" + args.before, systems.source_at(args.before, self.outdir)))
        for round_no in range(args.rounds):
            for kind in args.systems:
                # Alternate the order of before and after from round to round, so drift over
                # the run does not favour either.
                for suffix, src in (sources if round_no % 2 == 0 else sources[::-1]):
                    self.systems.run(kind, src, kind + suffix, self.fanout)
        if args.idle:
            for kind in args.idle_systems:
                for suffix, src in sources:
                    self.systems.run(kind, src, kind + suffix, self.idle.measure)
        if args.lifecycle:
            for record in lifecycle.run_all(self.outdir, self.server_core, args, src=sources[-1][1]):
                self.results.emit(record)
        self.results.emit({"system": "machine", "workload": "end",
                           "seconds": round(time.monotonic() - self.started, 1),
                           "load_average": [round(x, 2) for x in os.getloadavg()]})
        baseline = report.load_records(args.baseline) if args.baseline else None
        text = report.summary(self.results.records, baseline=baseline,
                              before=("@" + args.before) if args.before else None)
        print(text)
        with open(os.path.join(self.outdir, "summary.txt"), "w") as f:
            f.write(text + "\n")
        if args.readme:
            report.write_readme(self.results.records, os.path.join(HERE, "README.md"))
            report.plot(self.results.records, os.path.join(HERE, "fanout.png"))
            log("wrote bench/README.md and bench/fanout.png")
        else:
            report.plot(self.results.records, os.path.join(self.outdir, "fanout.png"))
        log(f"results in {os.path.relpath(self.outdir)} ({time.monotonic() - self.started:.0f} s)")
        return 0 if not any(r["workload"] == "error" for r in self.results.records) else 1


def missing_dependencies(args: argparse.Namespace) -> list[str]:
    """What this run needs and the machine lacks, each with the command that installs it. The
    benchmark installs nothing itself: pip and apt-get change the machine for everyone on it."""
    wanted = ["matplotlib"] + (["redis", "hiredis"] if "redis" in args.systems else [])
    packages = [m for m in wanted if importlib.util.find_spec(m) is None]
    if args.profile and shutil.which("py-spy") is None:
        packages.append("py-spy")
    missing = []
    if packages:
        missing.append(f"the bench-only Python packages {', '.join(packages)}: "
                       f"{sys.executable} -m pip install -r {os.path.relpath(os.path.join(HERE, 'requirements.txt'))}")
    if "redis" in args.systems and shutil.which("redis-server") is None:
        missing.append("redis-server (for the Redis way): apt-get install redis-server (Debian, as root), "
                       "or leave it out with --systems single,gossipy")
    return missing


def _git_describe(rev: str | None = None) -> str | None:
    """The commit whose server/ was measured (with --rev, that revision; else HEAD, marked
    when the working tree's server/ differs from it)."""
    try:
        commit = subprocess.run(["git", "-C", REPO, "rev-parse", "--short", rev or "HEAD"], capture_output=True,
                                text=True, timeout=10).stdout.strip()
        if rev:
            return commit
        dirty = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--", "server"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return commit + ("+uncommitted server/ changes" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _version(argv: list[str]) -> str | None:
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=10).stdout.strip().split("\n")[0]
    except (OSError, subprocess.SubprocessError):
        return None


def _csv(kind: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    return lambda text: [kind(x) for x in text.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="~1 min: single and gossipy at the fixed loads, short steps; no ramp, idle, lifecycle or README")
    p.add_argument("--rev", metavar="REV",
                   help="measure the server package of git revision REV instead of the working tree's")
    p.add_argument("--before", metavar="REV",
                   help="also run each system on the server package of git revision REV (after/before ratios)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run the fixed loads this many times (before/after alternating); ratios use medians")
    p.add_argument("--baseline", metavar="JSONL", help="a results.jsonl of an earlier run to print ratios against")
    p.add_argument("--systems", type=_csv(str), default=None, help="of single,redis,gossipy,workers (default: single,redis,gossipy; quick: single,gossipy)")
    p.add_argument("--clients", type=int, default=1000)
    p.add_argument("--senders", type=int, default=10)
    p.add_argument("--rates", type=_csv(float), default=[5000.0, 20000.0], help="fixed loads, deliveries/s")
    p.add_argument("--duration", type=float, default=None, help="seconds of sending per fixed load (10; quick 4)")
    p.add_argument("--drain", type=float, default=5.0, help="at most this long for stragglers after the last send")
    p.add_argument("--ramp", dest="ramp", action="store_true", default=None)
    p.add_argument("--no-ramp", dest="ramp", action="store_false")
    p.add_argument("--ramp-duration", type=float, default=4.0)
    p.add_argument("--ramp-start", type=float, default=5000.0)
    p.add_argument("--ramp-cap", type=float, default=640000.0)
    p.add_argument("--ramp-max-steps", type=int, default=6)
    p.add_argument("--ramp-time", type=float, default=60.0, help="seconds one ramp may take (then it stops)")
    p.add_argument("--bisections", type=int, default=3)
    p.add_argument("--room-rates", type=_csv(float), default=None,
                   help="loads (deliveries/s) for rooms of two across nodes, every client shouting (2000)")
    p.add_argument("--idle", type=_csv(int), default=None, help="idle connection counts (2000,20000; quick: none)")
    p.add_argument("--no-idle", dest="idle", action="store_const", const=[])
    p.add_argument("--idle-systems", type=_csv(str), default=None, help="systems for the idle test (default: single,gossipy)")
    p.add_argument("--idle-deadline", type=float, default=120.0)
    p.add_argument("--lifecycle", dest="lifecycle", action="store_true", default=None)
    p.add_argument("--no-lifecycle", dest="lifecycle", action="store_false")
    p.add_argument("--build-release", action="store_true",
                   help="rebuild the prod release (python build.py release --env=prod) even if one is built")
    p.add_argument("--profile", action="store_true", help="py-spy one gossipy node during an extra step")
    p.add_argument("--profile-rate", type=float, default=None, help="one-room load to profile at (the highest of --rates)")
    p.add_argument("--profile-systems", type=_csv(str), default=["gossipy"], help="systems to profile (gossipy)")
    p.add_argument("--retries", type=int, default=None,
                   help="repeat a step disturbed by other processes up to this many times (1)")
    p.add_argument("--wait-quiet", type=float, default=None,
                   help="wait up to this long for a quiet machine before each system and retry (20 s; quick 10 s)")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds after which disturbed steps are no longer repeated (420; quick 90)")
    p.add_argument("--connect-concurrency", type=int, default=100)
    p.add_argument("--no-pin", action="store_true", help="do not pin servers and generator to separate cores")
    p.add_argument("--readme", dest="readme", action="store_true", default=None,
                   help="write the tables into bench/README.md and the plot to bench/fanout.png (default: full runs)")
    p.add_argument("--no-readme", dest="readme", action="store_false")
    p.add_argument("--out", help="results folder (default bench/results/<UTC time>)")
    args = p.parse_args(argv)
    quick = args.quick
    if args.systems is None:
        args.systems = ["single", "gossipy"] if quick else ["single", "redis", "gossipy"]
    unknown = [s for s in args.systems if s not in systems.SYSTEMS]
    if unknown:
        p.error(f"unknown systems {unknown}; choose from {', '.join(systems.SYSTEMS)}")
    if args.duration is None:
        args.duration = 4.0 if quick else 10.0
    if args.ramp is None:
        args.ramp = not quick and args.rounds == 1
    if args.room_rates is None:
        args.room_rates = [2000.0]
    if args.idle is None:
        args.idle = [] if quick else [2000, 20000]
    if args.idle_systems is None:
        args.idle_systems = [s for s in ("single", "gossipy") if s in args.systems] or args.systems[:1]
    if args.lifecycle is None:
        args.lifecycle = not quick and "gossipy" in args.systems
    if args.readme is None:
        args.readme = not quick and not args.before and args.systems == ["single", "redis", "gossipy"]
    if args.retries is None:
        args.retries = 1
    if args.wait_quiet is None:
        args.wait_quiet = 10.0 if quick else 20.0
    if args.budget is None:
        args.budget = 90.0 if quick else 420.0
    if quick:
        args.drain = min(args.drain, 3.0)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_dependencies(args)
    if missing:
        log("this run needs what the machine lacks:\n" + "\n".join(f"  {line}" for line in missing))
        return 2
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
