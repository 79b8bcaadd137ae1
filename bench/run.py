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
import json
import math
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

SUSTAIN_P99_MS = 1000.0
DISTURBED = 0.10         # another process used over this share of a benchmark core: say so
RETRY_WAIT = 10.0        # at most this long for a quiet machine before repeating a disturbed step
QUIET = 0.15             # the machine counts as quiet below this share of a core busy in all
GEN_CONNECTIONS = 9000   # idle connections per generator process (under a 20,000 descriptor limit)


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


def sustained(result: dict[str, Any]) -> bool:
    """Nothing lost, duplicated or dropped, and p99 under 1 s."""
    p99 = (result.get("latency_ms") or {}).get("p99")
    return (not result.get("aborted") and result.get("lost") == 0 and result.get("duplicates") == 0
            and result.get("disconnects") == 0 and result.get("delivered") == result.get("expected")
            and p99 is not None and p99 < SUSTAIN_P99_MS)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.outdir = os.path.abspath(args.out or os.path.join(HERE, "results", stamp))
        os.makedirs(self.outdir, exist_ok=True)
        self.results_path = os.path.join(self.outdir, "results.jsonl")
        self.records: list[dict[str, Any]] = []
        self.step_no = 0
        all_cores = procs.cores()
        if len(all_cores) >= 2 and not args.no_pin:
            self.server_core, self.gen_core = all_cores[0], all_cores[1]
        else:
            self.server_core = self.gen_core = None
        self.started = time.monotonic()
        self.fd_limit = procs.raise_fd_limit(65536)
        self.step_deadline: float | None = None

    # ---- output ------------------------------------------------------------------------------

    def emit(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {"run": os.path.basename(self.outdir), **record}
        self.records.append(record)
        line = json.dumps(record, separators=(",", ":"))
        print(line, flush=True)
        with open(self.results_path, "a") as f:
            f.write(line + "\n")
        return record

    # ---- one measured step ---------------------------------------------------------------------

    def settle(self, system: systems.System, timeout: float = 30.0) -> None:
        """Waits (bounded) until the servers are idle, so a step starts from a quiet machine."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            before = sum(system.cpu_seconds().values())
            time.sleep(0.3)
            if sum(system.cpu_seconds().values()) - before < 0.3 * 0.1:
                return
        log(f"{system.label}: servers still busy after {timeout:.0f} s; measuring anyway")

    def wait_quiet(self, timeout: float) -> float:
        """Waits (bounded) until nothing else uses the machine's cores; returns the seconds waited.

        Other work on these 2 cores (tests, builds) shows up as latency and lost capacity in the
        servers' numbers, so a measurement starts only on a quiet machine, or says it did not."""
        t0 = time.monotonic()
        while True:
            before = procs.core_times()
            time.sleep(0.5)
            after = procs.core_times()
            busy = sum(after[c]["busy"] + after[c]["steal"] - before[c]["busy"] - before[c]["steal"] for c in after)
            if busy / 0.5 < QUIET or time.monotonic() - t0 >= timeout:
                waited = time.monotonic() - t0
                if busy / 0.5 >= QUIET:
                    log(f"the machine is not quiet ({busy / 0.5:.0%} of a core busy with other work after "
                        f"waiting {waited:.0f} s); measuring anyway")
                elif waited > 1:
                    log(f"waited {waited:.0f} s for a quiet machine")
                return waited

    def step(self, system: systems.System, gen: loadgen.LoadGenerator, workload: str, *,
             deliveries_per_s: float, duration: float, abort: bool = False, rooms: int = 1) -> dict[str, Any]:
        """One step, repeated (up to --retries times, while time is left) when other processes
        disturbed it; the least disturbed attempt is kept and says how many there were."""
        attempts = []
        for attempt in range(1 + self.args.retries):
            if attempt:
                self.wait_quiet(min(self.args.wait_quiet, RETRY_WAIT))
            record = self._step(system, gen, workload, deliveries_per_s=deliveries_per_s, duration=duration,
                                abort=abort, rooms=rooms)
            attempts.append(record)
            # A ramp step only needs its verdict, and a pass stands however disturbed.
            if (not record.get("disturbed") or self.over_budget() or attempt == self.args.retries
                    or (abort and record["sustained"])
                    or (self.step_deadline is not None and time.monotonic() > self.step_deadline)):
                break
            log(f"{system.label} {workload}: disturbed by other processes ({record['disturbed']}); repeating")
        # Other work only slows the servers down: a pass is a pass however disturbed, while a
        # failure counts only as measured on the quietest attempt.
        passed = [r for r in attempts if r["sustained"]]
        best = min(passed or attempts, key=_disturbance)
        best["attempts"] = len(attempts)
        return self.emit(best)

    def over_budget(self) -> bool:
        return time.monotonic() - self.started > self.args.budget

    def _step(self, system: systems.System, gen: loadgen.LoadGenerator, workload: str, *,
              deliveries_per_s: float, duration: float, abort: bool = False, rooms: int = 1) -> dict[str, Any]:
        args = self.args
        system.check_alive()
        self.settle(system)
        ensured = gen.ensure()
        clients = ensured["total_joined"]
        # One room: 10 senders, each shout reaching every client. Many rooms: every client
        # shouts, each shout reaching its room's members.
        senders, per_shout = (args.senders, clients) if rooms == 1 else (clients, clients / rooms)
        self.step_no += 1
        cpu0 = system.cpu_seconds()
        sys0 = system.system_seconds()
        cores0 = procs.core_times()
        t0 = time.monotonic()
        result = gen.run(step=self.step_no, senders=senders, rate=deliveries_per_s / per_shout,
                         duration=duration, drain=args.drain, abort_over_1s_fraction=0.01 if abort else 0.0)
        wall = time.monotonic() - t0
        cpu1 = system.cpu_seconds()
        kernel = system.system_seconds() - sys0
        cores1 = procs.core_times()
        rss = system.rss_bytes()
        cpu = {k: round(cpu1[k] - cpu0.get(k, cpu1[k]), 3) for k in cpu1}
        total_cpu = sum(cpu.values())
        interference = {
            "server_core": procs.others_on_core(cores0, cores1, self.server_core, total_cpu, wall),
            "generator_core": procs.others_on_core(cores0, cores1, self.gen_core,
                                                   result["generator"]["cpu_seconds"], wall),
        }
        delivered = result["delivered"]
        record = {
            "system": system.label, "workload": workload, "target_deliveries_per_s": deliveries_per_s,
            **result,
            "reconnected_before": ensured["reconnected"],
            "sustained": sustained(result),
            "server": {
                "cpu_seconds": round(total_cpu, 3),
                "cpu_fraction": round(total_cpu / wall, 3),
                "cpu_us_per_delivery": round(total_cpu / delivered * 1e6, 2) if delivered else None,
                "system_share": round(kernel / total_cpu, 3) if total_cpu else None,
                "cpu_by_process": cpu,
                "rss_mb": round(sum(rss.values()) / 2**20, 1),
                "rss_mb_by_process": {k: round(v / 2**20, 1) for k, v in rss.items()},
            },
            "other_load": interference,
            "load_average": [round(x, 2) for x in os.getloadavg()],
        }
        disturbed = [f"{where.split('_')[0]} core {v['others'] + v['steal']:.0%} busy with other work"
                     for where, v in interference.items() if v and v["others"] + v["steal"] > DISTURBED]
        if disturbed:
            record["disturbed"] = "; ".join(disturbed)
            log(f"WARNING: other processes used the benchmark's cores ({record['disturbed']}): "
                f"{system.label} {workload} may be off")
        gen_core = interference["generator_core"]
        why = loadgen.saturated(result, core_shared=bool(gen_core and gen_core["others"] + gen_core["steal"] > DISTURBED))
        if why:
            record["generator_saturated"] = why
            log(f"WARNING: the load generator was saturated ({why}): {system.label} {workload} is a lower bound")
        lat = result["latency_ms"]
        log(f"{system.label:>16} {workload:<14} offered {result['offered_per_s']:>9.0f}/s delivered "
            f"{result['deliveries_per_s']:>9.0f}/s lost {result['lost']:>7} p99 {lat['p99']} ms "
            f"cpu {record['server']['cpu_us_per_delivery']} us/delivery "
            f"(server {record['server']['cpu_fraction']:.0%}, gen {result['generator']['cpu_fraction']:.0%})"
            f"{'' if record['sustained'] else '  NOT SUSTAINED'}")
        return record

    # ---- workloads -----------------------------------------------------------------------------

    def fanout(self, system: systems.System) -> None:
        """Fixed loads, the ramp to the highest sustained rate, and (optionally) a profile."""
        args = self.args
        gen = loadgen.LoadGenerator(core=self.gen_core, log_path=os.path.join(self.outdir, f"{system.label}-loadgen.log"))
        try:
            connected = gen.connect(system.ws_urls(), args.clients, concurrency=args.connect_concurrency)
            log(f"{system.label}: {connected['total_joined']} clients joined in {connected['seconds']} s")
            if connected["failed"]:
                raise RuntimeError(f"{connected['failed']} clients failed to join: {connected['first_failure']}")
            fixed = [self.step(system, gen, f"fanout-{int(rate)}", deliveries_per_s=rate, duration=args.duration)
                     for rate in args.rates]
            if args.profile and system.name in args.profile_systems:
                self.profile(system, gen, "fanout", args.profile_rate or max(args.rates))
            if args.ramp:
                self.ramp(system, gen, fixed)
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
        fixed = [self.step(system, gen, f"rooms2-{int(rate)}", deliveries_per_s=rate, duration=args.duration,
                           rooms=rooms) for rate in args.room_rates]
        if args.profile and system.name in args.profile_systems:
            self.profile(system, gen, "rooms2", args.room_rates[0], rooms=rooms)
        if args.ramp:
            self.ramp(system, gen, fixed, kind="rooms of two", rooms=rooms)

    def ramp(self, system: systems.System, gen: loadgen.LoadGenerator, known: list[dict[str, Any]],
             kind: str = "one room", rooms: int = 1) -> None:
        """The highest sustained rate: double from the best known pass to the first failure,
        then bisect (geometrically) a few times. Bounded in steps and in time (--ramp-time)."""
        args = self.args
        suffix = "" if rooms == 1 else "-rooms2"
        passes = [r["target_deliveries_per_s"] for r in known if r["sustained"]]
        fails = [r["target_deliveries_per_s"] for r in known if not r["sustained"]]
        low = max(passes) if passes else None
        high = min([f for f in fails if low is None or f > low], default=None)
        tried = 0
        self.step_deadline = time.monotonic() + args.ramp_time
        stopped = None

        def out_of_time() -> bool:
            nonlocal stopped
            if time.monotonic() > self.step_deadline:
                stopped = "time allowance used up"
            return stopped is not None

        def attempt(rate: float) -> bool:
            nonlocal tried
            tried += 1
            return self.step(system, gen, "ramp" + suffix, deliveries_per_s=round(rate), duration=args.ramp_duration,
                             abort=True, rooms=rooms)["sustained"]

        try:
            if low is None:   # even the lowest fixed load failed: go down
                rate = (high or args.ramp_start) / 2
                while tried < 4 and rate >= 250 and not out_of_time():
                    if attempt(rate):
                        low = rate
                        break
                    high, rate = rate, rate / 2
            while low is not None and high is None and tried < args.ramp_max_steps and not out_of_time():
                if low * 2 > args.ramp_cap:
                    stopped = f"reached the cap of {args.ramp_cap:,.0f}/s"
                    break
                rate = low * 2
                if attempt(rate):
                    low = rate
                else:
                    high = rate
            for _ in range(args.bisections):
                if low is None or high is None or out_of_time():
                    break
                mid = math.sqrt(low * high)
                if attempt(mid):
                    low = mid
                else:
                    high = mid
        finally:
            self.step_deadline = None
        mine = [r for r in self.records if r["system"] == system.label and r.get("target_deliveries_per_s")
                and r.get("rooms", 1) == rooms]
        best = max((r for r in mine if r["sustained"]), key=lambda r: r["deliveries_per_s"], default=None)
        self.emit({
            "system": system.label, "workload": "max-sustained" + suffix, "kind": kind,
            "deliveries_per_s": best["deliveries_per_s"] if best else 0,
            "at_target": best["target_deliveries_per_s"] if best else None,
            "p99_ms": best["latency_ms"]["p99"] if best else None,
            "server_cpu_us_per_delivery": best["server"]["cpu_us_per_delivery"] if best else None,
            "server_cpu_fraction": best["server"]["cpu_fraction"] if best else None,
            "first_failure": high, "stopped": stopped if high is None else None,
            "generator_saturated": best.get("generator_saturated") if best else None,
            "clients": args.clients, "rooms": rooms,
        })

    def idle(self, system: systems.System) -> None:
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
                            self.outdir, f"{system.label}-idle-loadgen{len(gens) + 1}.log")))
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
                record = self.emit({
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

    def profile(self, system: systems.System, gen: loadgen.LoadGenerator, workload: str, rate: float,
                rooms: int = 1) -> None:
        """py-spy on one node during an extra (unrecorded) step: where server CPU goes."""
        if shutil.which("py-spy") is None:
            log("py-spy is not installed (pip install -r bench/requirements.txt): no profile")
            return
        args = self.args
        node = system.nodes[0]
        raw = os.path.join(self.outdir, f"{system.label}-{node.label}-{workload}-profile.txt")
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
        self.step_no += 1
        senders, per_shout = (args.senders, clients) if rooms == 1 else (clients, clients / rooms)
        result = gen.run(step=self.step_no, senders=senders, rate=rate / per_shout, duration=seconds, drain=args.drain)
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
            "profile_file": os.path.relpath(raw, REPO),
            "cpu_us_per_delivery_all": round(sum(cpu1[k] - cpu0[k] for k in cpu1) / max(1, result["delivered"]) * 1e6, 2),
            "cpu_by_process": {k: round(cpu1[k] - cpu0[k], 3) for k in cpu1},
        })
        self.emit(summary)
        log(f"profile of {system.label} {node.label}, {workload} at {rate:,.0f} deliveries/s:\n"
            + report.format_profile(summary))

    # ---- the systems ---------------------------------------------------------------------------

    def make(self, kind: str, src: str, label: str) -> systems.System:
        return systems.SYSTEMS[kind](os.path.join(self.outdir, "nodes"), src=src, core=self.server_core, label=label)

    def with_system(self, kind: str, src: str, label: str, body: Callable[[systems.System], None]) -> None:
        system = self.make(kind, src, label)
        try:
            self.wait_quiet(self.args.wait_quiet)
            t0 = time.monotonic()
            system.start()
            log(f"{label}: started ({system.description}) in {time.monotonic() - t0:.1f} s")
            body(system)
        except Exception as exc:
            log(f"{label}: FAILED: {exc}")
            self.emit({"system": label, "workload": "error", "error": str(exc)[:2000]})
        finally:
            system.stop()

    def run(self) -> int:
        args = self.args
        procs.install_signal_handlers()
        meta = {"system": "machine", "workload": "meta", "machine": procs.machine(), "fd_limit": self.fd_limit,
                "pinning": {"servers": self.server_core, "generator": self.gen_core},
                "git": _git_describe(args.rev), "python": sys.version.split()[0], "node": _version(["node", "--version"]),
                "redis": systems._redis_version(), "quick": args.quick,
                "clients": args.clients, "senders": args.senders, "duration": args.duration}
        self.emit(meta)
        sources = [("", systems.source_at(args.rev, self.outdir) if args.rev else REPO)]
        if args.before:
            sources.insert(0, ("@" + args.before, systems.source_at(args.before, self.outdir)))
        for round_no in range(args.rounds):
            for kind in args.systems:
                # Alternate the order of before and after from round to round, so drift over
                # the run does not favour either.
                for suffix, src in (sources if round_no % 2 == 0 else sources[::-1]):
                    self.with_system(kind, src, kind + suffix, self.fanout)
        if args.idle:
            for kind in args.idle_systems:
                for suffix, src in sources:
                    self.with_system(kind, src, kind + suffix, self.idle)
        if args.lifecycle:
            for record in lifecycle.run_all(self.outdir, self.server_core, args, src=sources[-1][1]):
                self.emit(record)
        self.emit({"system": "machine", "workload": "end", "seconds": round(time.monotonic() - self.started, 1),
                   "load_average": [round(x, 2) for x in os.getloadavg()]})
        baseline = report.load_records(args.baseline) if args.baseline else None
        text = report.summary(self.records, baseline=baseline, before=("@" + args.before) if args.before else None)
        print(text)
        with open(os.path.join(self.outdir, "summary.txt"), "w") as f:
            f.write(text + "\n")
        if args.readme:
            report.write_readme(self.records, os.path.join(HERE, "README.md"))
            report.plot(self.records, os.path.join(HERE, "fanout.png"))
            log("wrote bench/README.md and bench/fanout.png")
        else:
            report.plot(self.records, os.path.join(self.outdir, "fanout.png"))
        log(f"results in {os.path.relpath(self.outdir)} ({time.monotonic() - self.started:.0f} s)")
        return 0 if not any(r["workload"] == "error" for r in self.records) else 1


def ensure_dependencies(args: argparse.Namespace) -> None:
    """Installs what this run needs and the machine lacks: the bench-only Python packages
    (bench/requirements.txt) and, for the Redis way, Debian's redis-server (as root)."""
    import importlib.util

    wanted = ["matplotlib"] + (["redis", "hiredis"] if "redis" in args.systems else [])
    missing = [m for m in wanted if importlib.util.find_spec(m) is None]
    if args.profile and shutil.which("py-spy") is None:
        missing.append("py-spy")
    if missing:
        log(f"installing the bench-only packages ({', '.join(missing)} missing): pip install -r bench/requirements.txt")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-r", os.path.join(HERE, "requirements.txt")],
                       check=True, timeout=600)
    if "redis" in args.systems and shutil.which("redis-server") is None:
        if os.geteuid() != 0 or shutil.which("apt-get") is None:
            raise SystemExit("redis-server is missing: apt-get install redis-server (Debian), or --systems single,gossipy")
        log("installing Debian's redis-server (apt-get install redis-server)")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-q"], check=True, timeout=600, env=env)
        subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", "redis-server"],
                       check=True, timeout=600, env=env)


def _disturbance(record: dict[str, Any]) -> float:
    return sum(v["others"] + v["steal"] for v in (record.get("other_load") or {}).values() if v)


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
    p.add_argument("--systems", type=_csv(str), default=None, help="of single,redis,gossipy (default: all; quick: single,gossipy)")
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
    ensure_dependencies(args)
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
