"""Measured steps: one load on one running system, repeated when other work disturbed it, and
the ramp of such steps to the highest rate a system sustains."""

from __future__ import annotations

import argparse
import math
import os
import time
from typing import Any

from . import loadgen, procs, systems
from .results import Results, log

SUSTAIN_P99_MS = 1000.0
DISTURBED = 0.10         # another process used over this share of a benchmark core: say so
RETRY_WAIT = 10.0        # at most this long for a quiet machine before repeating a disturbed step
QUIET = 0.15             # the machine counts as quiet below this share of a core busy in all


def sustained(result: dict[str, Any]) -> bool:
    """Nothing lost, duplicated or dropped, and p99 under 1 s."""
    p99 = (result.get("latency_ms") or {}).get("p99")
    return (not result.get("aborted") and result.get("lost") == 0 and result.get("duplicates") == 0
            and result.get("disconnects") == 0 and result.get("delivered") == result.get("expected")
            and p99 is not None and p99 < SUSTAIN_P99_MS)


def _disturbance(record: dict[str, Any]) -> float:
    return sum(v["others"] + v["steal"] for v in (record.get("other_load") or {}).values() if v)


class Steps:
    """Runs steps in the order the run asks for them, numbering them for the load generator,
    within the run's time budget (``--budget``) and each ramp's (``--ramp-time``)."""

    def __init__(self, args: argparse.Namespace, results: Results, server_core: int | None,
                 gen_core: int | None, started: float) -> None:
        self.args = args
        self.results = results
        self.server_core = server_core
        self.gen_core = gen_core
        self.started = started
        self.step_no = 0
        self.step_deadline: float | None = None

    def next_step_no(self) -> int:
        """The id of the next step the load generator runs (its receipts carry it)."""
        self.step_no += 1
        return self.step_no

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
        return self.results.emit(best)

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
        cpu0 = system.cpu_seconds()
        sys0 = system.system_seconds()
        cores0 = procs.core_times()
        t0 = time.monotonic()
        result = gen.run(step=self.next_step_no(), senders=senders, rate=deliveries_per_s / per_shout,
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
        mine = [r for r in self.results.records if r["system"] == system.label and r.get("target_deliveries_per_s")
                and r.get("rooms", 1) == rooms]
        best = max((r for r in mine if r["sustained"]), key=lambda r: r["deliveries_per_s"], default=None)
        self.results.emit({
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
