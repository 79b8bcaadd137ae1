"""Turning result records into tables, ratios, a README section, a plot and a profile summary."""

from __future__ import annotations

import collections
import json
import os
import re
from typing import Any, Iterable

README_START = "<!-- results:start (written by bench/run.py; edits here are overwritten) -->"
README_END = "<!-- results:end -->"

FIXED = re.compile(r"^(?:fanout|rooms2)-(\d+)$")


def load_records(path: str) -> list[dict[str, Any]]:
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def _find(records: Iterable[dict[str, Any]], system: str, workload: str) -> dict[str, Any] | None:
    found = None
    for r in records:
        if r.get("system") == system and r.get("workload") == workload:
            found = r
    return found


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        return f"{value:.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "–"
    return f"{a / b:.2f}×"


def _table(header: list[str], rows: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(_fmt(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def systems_in(records: list[dict[str, Any]]) -> list[str]:
    seen: dict[str, None] = {}
    for r in records:
        if r.get("system") not in (None, "machine"):
            seen[r["system"]] = None
    return list(seen)


# ---- tables ------------------------------------------------------------------------------------

def fanout_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        if not FIXED.match(str(r.get("workload"))):
            continue
        lat, srv = r["latency_ms"], r["server"]
        rows.append([r["system"], r["workload"], r["offered_per_s"], r["deliveries_per_s"], r["lost"],
                     r["duplicates"], r["out_of_order"], lat["p50"], lat["p90"], lat["p99"], lat["max"],
                     srv["cpu_us_per_delivery"],
                     f"{srv['system_share']:.0%}" if srv.get("system_share") is not None else None,
                     f"{srv['cpu_fraction']:.0%}", srv["rss_mb"],
                     f"{r['generator']['cpu_fraction']:.0%}" + (" (saturated)" if r.get("generator_saturated") else ""),
                     _others(r)])
    return _table(["system", "workload", "offered/s", "delivered/s", "lost", "dup", "out of order",
                   "p50 ms", "p90 ms", "p99 ms", "max ms", "server CPU µs/delivery", "of it in the kernel", "server CPU",
                   "server RSS MB", "generator CPU", "other work on server core"], rows)


def _others(record: dict[str, Any]) -> str | None:
    """How busy the servers' core was with other processes' work during the step."""
    core = (record.get("other_load") or {}).get("server_core")
    return f"{core['others'] + core['steal']:.0%}" if core else None


def sustained_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        if str(r.get("workload")).startswith("max-sustained"):
            notes = [x for x in (r.get("stopped") and f"no failure: {r['stopped']}",
                                 r.get("generator_saturated") and f"generator saturated ({r['generator_saturated']})") if x]
            rows.append([r["system"], r.get("kind", "one room"), r["deliveries_per_s"], r["p99_ms"],
                         r["server_cpu_us_per_delivery"],
                         f"{r['server_cpu_fraction']:.0%}" if r.get("server_cpu_fraction") is not None else None,
                         r.get("first_failure") and round(r["first_failure"]), "; ".join(notes)])
    return _table(["system", "rooms", "highest sustained deliveries/s", "p99 ms there", "server CPU µs/delivery there",
                   "server CPU there", "first failing load/s", "note"], rows)


def idle_table(records: list[dict[str, Any]]) -> str:
    rows = [[r["system"], r["connections"], r["rss_mb_before"], r["rss_mb"], r["kb_per_connection"],
             r["connect_seconds"], r.get("note") or ""]
            for r in records if str(r.get("workload", "")).startswith("idle-")]
    return _table(["system", "joined connections", "RSS before MB", "RSS MB", "KB per connection",
                   "connect+join s", "note"], rows)


def lifecycle_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        if r.get("system") == "lifecycle":
            seconds = r.get("seconds")
            rows.append([r["workload"], r.get("what", ""), f"{seconds:.3f}" if seconds is not None else None,
                         r.get("note", "")])
    return _table(["event", "measured", "seconds", "note"], rows)


# ---- ratios ------------------------------------------------------------------------------------

def _fixed_value(records: list[dict[str, Any]], system: str, rate: int | str, key: str) -> Any:
    r = _find(records, system, rate if isinstance(rate, str) else f"fanout-{rate}")
    if r is None:
        return None
    if key == "cpu":
        return r["server"]["cpu_us_per_delivery"]
    if key == "p99":
        return r["latency_ms"]["p99"]
    if key == "rate":
        return r["deliveries_per_s"]
    return r.get(key)


def headline(records: list[dict[str, Any]], cluster: str = "gossipy", redis: str = "redis",
             single: str = "single") -> list[str]:
    """The article's question in a few lines: gossipy against the Redis way and one node."""
    lines = []
    rates = sorted({int(str(r["workload"]).split("-")[1]) for r in records
                    if str(r.get("workload")).startswith("fanout-")})
    for rate in rates:
        g, rd, s = (_fixed_value(records, x, rate, "cpu") for x in (cluster, redis, single))
        lines.append(f"server CPU per delivery at {rate:,}/s: gossipy {_fmt(g, 2)} µs = {_ratio(g, rd)} the Redis "
                     f"way's ({_fmt(rd, 2)}), {_ratio(g, s)} one node's ({_fmt(s, 2)})"
                     f"   [target ≤ 0.50× Redis, < 1× one node: {_verdict(g, rd, 0.5)}, {_verdict(g, s, 1.0, strict=True)}]")
    if rates:
        low = rates[0]
        g, rd, s = (_fixed_value(records, x, low, "p99") for x in (cluster, redis, single))
        lines.append(f"p99 latency at {low:,}/s: gossipy {_fmt(g, 2)} ms = {_ratio(g, rd)} the Redis way's "
                     f"({_fmt(rd, 2)} ms), {_ratio(g, s)} one node's ({_fmt(s, 2)} ms)"
                     f"   [target ≤ 0.50× Redis: {_verdict(g, rd, 0.5)}]")
    for workload in sorted({str(r["workload"]) for r in records if str(r.get("workload")).startswith("rooms2-")}):
        g, rd, s = (_fixed_value(records, x, workload, "cpu") for x in (cluster, redis, single))
        gp, rdp = (_fixed_value(records, x, workload, "p99") for x in (cluster, redis))
        lines.append(f"rooms of two across nodes ({workload}): server CPU per delivery gossipy {_fmt(g, 2)} µs = "
                     f"{_ratio(g, rd)} the Redis way's ({_fmt(rd, 2)}); p99 {_fmt(gp, 2)} ms = {_ratio(gp, rdp)} "
                     f"the Redis way's ({_fmt(rdp, 2)} ms)")
    for workload, kind in (("max-sustained", "one room"), ("max-sustained-rooms2", "rooms of two")):
        found = {x: _find(records, x, workload) or {} for x in (cluster, redis, single)}
        best = {x: r.get("deliveries_per_s") for x, r in found.items()}
        if not any(best.values()):
            continue
        g, rd, s = best[cluster], best[redis], best[single]
        bound = [x for x, r in found.items() if r.get("generator_saturated") or r.get("stopped")]
        verdict = "n/a" if cluster in bound or redis in bound else _verdict(rd, g, 0.5)
        lines.append(f"highest sustained deliveries/s, {kind}: gossipy {_fmt(g)} = {_ratio(g, rd)} the Redis way's "
                     f"({_fmt(rd)}), {_ratio(g, s)} one node's ({_fmt(s)})   [target ≥ 2× Redis: {verdict}]"
                     + (f" (not a server limit for {', '.join(bound)}: generator saturated or ramp stopped)" if bound else ""))
    idle = _find(records, cluster, "idle-20000") or _find(records, cluster, "idle-2000")
    if idle:
        lines.append(f"idle memory: {idle['kb_per_connection']} KB RSS per joined connection at "
                     f"{idle['connections']:,} connections (gossipy)   [target ≤ 10 KB at 20,000: "
                     f"{'met' if idle['connections'] >= 20000 and idle['kb_per_connection'] <= 10 else 'not met'}]")
    join = _find(records, "lifecycle", "join")
    if join and join.get("linked_after_serving") is not None:
        lines.append(f"a new node linked to every member {join['linked_after_serving']:.3f} s after it began "
                     f"to serve ({join['seconds']:.2f} s after start)   [target ≤ 1 s: "
                     f"{'met' if join['linked_after_serving'] <= 1.0 else 'not met'}]")
    return lines


def _verdict(a: float | None, b: float | None, limit: float, strict: bool = False) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    ok = a / b < limit if strict else a / b <= limit
    return "met" if ok else "not met"


def _medians(records: list[dict[str, Any]], system: str, workload: str) -> dict[str, Any] | None:
    """Median CPU per delivery, p99, delivery rate and total lost over a system's rounds of a load."""
    rs = [r for r in records if r.get("system") == system and r.get("workload") == workload]
    if not rs:
        return None

    def median(values: list[float]) -> float | None:
        values = sorted(v for v in values if v is not None)
        if not values:
            return None
        mid = len(values) // 2
        return values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2

    return {"n": len(rs), "cpu": median([r["server"]["cpu_us_per_delivery"] for r in rs]),
            "p99": median([r["latency_ms"]["p99"] for r in rs]),
            "rate": median([r["deliveries_per_s"] for r in rs]), "lost": sum(r["lost"] for r in rs)}


def compare(records: list[dict[str, Any]], base: list[dict[str, Any]], pairs: list[tuple[str, str]],
            title: str) -> list[str]:
    """Ratios new/old per fixed load for (new system, old system) pairs, over the medians of
    their rounds: < 1 is better for CPU and p99."""
    rows = []
    for new, old in pairs:
        workloads = dict.fromkeys(r["workload"] for r in records
                                  if r.get("system") == new and FIXED.match(str(r.get("workload"))))
        for workload in workloads:
            n, o = _medians(records, new, workload), _medians(base, old, workload)
            if n is None or o is None:
                continue
            rows.append([new, workload, f"{o['n']}/{n['n']}",
                         f"{_fmt(o['cpu'], 2)} → {_fmt(n['cpu'], 2)}", _ratio(n["cpu"], o["cpu"]),
                         f"{_fmt(o['p99'], 1)} → {_fmt(n['p99'], 1)}", _ratio(n["p99"], o["p99"]),
                         _ratio(n["rate"], o["rate"]), f"{o['lost']} → {n['lost']}"])
    if not rows:
        return []
    return [title, _table(["system", "workload", "rounds", "CPU µs/delivery (median)", "ratio", "p99 ms (median)",
                           "ratio", "delivered/s ratio", "lost"], rows)]


def summary(records: list[dict[str, Any]], baseline: list[dict[str, Any]] | None = None,
            before: str | None = None) -> str:
    parts = ["", "== fixed loads ==", fanout_table(records)]
    if any(r.get("workload") == "max-sustained" for r in records):
        parts += ["", "== highest sustained rate (nothing lost, p99 < 1 s) ==", sustained_table(records)]
    if any(str(r.get("workload", "")).startswith("idle-") for r in records):
        parts += ["", "== idle connections ==", idle_table(records)]
    if any(r.get("system") == "lifecycle" for r in records):
        parts += ["", "== cluster lifecycle ==", lifecycle_table(records)]
    names = systems_in(records)
    if before:
        pairs = [(n, n + before) for n in names if n + before in names]
        parts += [""] + compare(records, records, pairs, f"== after (working tree) / before ({before[1:]}) ==")
    if baseline is not None:
        parts += [""] + compare(records, baseline, [(n, n) for n in names], "== this run / the baseline run ==")
    if "single" in names and "gossipy" in names and not before:
        parts += ["", "== headline ratios =="] + headline(records)
    elif before:
        parts += ["", "== headline ratios (working tree) =="] + headline(records)
    errors = [r for r in records if r.get("workload") == "error"]
    for r in errors:
        parts.append(f"ERROR {r['system']}: {r['error'].splitlines()[0] if r['error'] else ''}")
    saturated = [r for r in records if r.get("generator_saturated")]
    if saturated:
        parts.append(f"WARNING: the load generator was saturated in {len(saturated)} step(s) "
                     f"({', '.join(sorted({r['system'] + ' ' + r['workload'] for r in saturated}))}): "
                     f"those numbers are lower bounds on the servers")
    return "\n".join(parts)


# ---- bench/README.md -----------------------------------------------------------------------------

def machine_text(records: list[dict[str, Any]]) -> str:
    meta = _find(records, "machine", "meta") or {}
    end = _find(records, "machine", "end") or {}
    m = meta.get("machine", {})
    pin = meta.get("pinning", {})
    steps = [r["load_average"] for r in records if r.get("load_average")]
    return (f"Measured {meta.get('run', '?')} at git {meta.get('git')}: {m.get('cores')} × {m.get('cpu')}, "
            f"{m.get('memory_gib')} GiB, Linux {m.get('kernel')}; Python {meta.get('python')}, Node.js "
            f"{meta.get('node')}, Redis {meta.get('redis')}. Servers (nodes and Redis) pinned to core "
            f"{pin.get('servers')}, the load generator to core {pin.get('generator')}. {meta.get('clients')} "
            f"clients, {meta.get('senders')} senders, {meta.get('duration')} s per fixed load. Load average "
            f"at the start {m.get('load_average')}, at the end {end.get('load_average')}"
            + (f", highest 1-min during steps {max(s[0] for s in steps):.2f}" if steps else "")
            + f"; the whole run took {end.get('seconds', '?')} s.")


def write_readme(records: list[dict[str, Any]], path: str) -> None:
    section = "\n\n".join([
        README_START,
        machine_text(records),
        "### Fixed loads\n\n" + fanout_table(records),
        "### Highest sustained rate (nothing lost, p99 < 1 s)\n\n" + sustained_table(records),
        "### Idle connections\n\n" + idle_table(records),
        "### Cluster lifecycle\n\n" + lifecycle_table(records),
        "### Headline ratios\n\n" + "\n".join(f"- {line}" for line in headline(records)),
        "![delivery rate and p99 against offered load](fanout.png)",
        README_END,
    ])
    text = open(path).read() if os.path.exists(path) else "# Benchmark\n\n"
    if README_START in text and README_END in text:
        head, rest = text.split(README_START, 1)
        tail = rest.split(README_END, 1)[1]
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


# ---- the plot ----------------------------------------------------------------------------------

def plot(records: list[dict[str, Any]], path: str) -> bool:
    """Delivery rate and p99 against offered load, per system: one room on top, rooms of two below."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    series: dict[tuple[int, str], list[tuple[float, float, float]]] = collections.defaultdict(list)
    for r in records:
        if r.get("target_deliveries_per_s") and r.get("latency_ms") and r.get("workload") != "profile":
            p99 = r["latency_ms"]["p99"]
            row = 0 if r.get("rooms", 1) == 1 else 1
            series[(row, r["system"])].append((r["offered_per_s"], r["deliveries_per_s"],
                                               p99 if p99 is not None else float("nan")))
    if not series:
        return False
    rows = sorted({row for row, _ in series})
    fig, axes = plt.subplots(len(rows), 2, figsize=(10, 3.6 * len(rows)), dpi=80, squeeze=False)
    titles = {0: "one room of 1,000", 1: "rooms of two across nodes"}
    for i, row in enumerate(rows):
        ax1, ax2 = axes[i]
        top = 1.0
        for (r, name), points in sorted(series.items()):
            if r != row:
                continue
            points.sort()
            xs = [p[0] for p in points]
            top = max(top, max(xs))
            ax1.plot(xs, [p[1] for p in points], marker="o", markersize=4, label=name)
            ax2.plot(xs, [p[2] for p in points], marker="o", markersize=4, label=name)
        low = min(p[0] for (r, _), pts in series.items() if r == row for p in pts)
        ax1.plot([low, top], [low, top], color="grey", linestyle=":", linewidth=1, label="delivered = offered")
        ax1.set_title(f"delivery rate, {titles[row]}")
        ax1.set_ylabel("delivered/s")
        ax2.axhline(1000, color="red", linestyle=":", linewidth=1, label="1 s")
        ax2.set_title(f"p99 latency, {titles[row]}")
        ax2.set_ylabel("p99 latency, ms")
        for ax in (ax1, ax2):
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_xlabel("offered deliveries/s")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


# ---- py-spy ------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def _short(frame: str) -> str:
    m = _FRAME.match(frame.strip())
    if not m:
        return frame.strip()
    file = m.group("file")
    for marker in ("site-packages/", "lib/python3.11/", "/server/", "/bench/"):
        if marker in file:
            file = file.split(marker, 1)[1] if marker != "/server/" else "server/" + file.split(marker, 1)[1]
            break
    return f"{m.group('func')} ({file})"


WAITING = "waiting in epoll (wake-ups; not CPU)"

# (part, substrings of a frame): a sample belongs to the part of the frame nearest its leaf
# that matches, so a remote broadcast delivered to local sockets counts as fan-out, and the
# peer stream's own writes as cluster.
_PARTS = [
    ("socket writes (flush)", ("flush_outbox", "SocketRegistry._flush")),
    ("fan-out (pubsub dispatch, deliver, frame)", ("deliver", "local_broadcast", "send_frame", "encode_broadcast",
                                                  "text_frame", "PubSub.broadcast")),
    ("node-to-node (peer streams / Redis client)", ("/cluster/", "server.cluster", "redis/", "redis_adapter",
                                                    "RedisAdapter", "StreamReader", "asyncio/streams.py")),
    ("reading client frames", ("rfc6455.py", "data_received (server/channels/websocket.py)",
                               "_handle (server/channels/websocket.py)", "PhoenixSocket.receive")),
    ("logging", ("logging/",)),
    # Under uvloop the loop itself is C: what shows here is Tornado's callbacks (HTTP, timers).
    ("event loop", ("_run_once", "Handle._run", "_handle_events", "IOLoop._run_callback")),
]


def _bucket(stack: list[str]) -> str:
    """Which part of the work a sample belongs to (see _PARTS)."""
    if stack and "select (selectors.py" in stack[-1]:
        return WAITING
    for frame in reversed(stack):
        for part, marks in _PARTS:
            if any(m in frame for m in marks):
                return part
    return "other"


def summarize_profile(raw_path: str, us_per_delivery: float, top: int = 15) -> dict[str, Any]:
    """Time by part and self time by function, from py-spy's raw (collapsed) output, scaled to
    ``us_per_delivery`` (the node's measured user CPU per delivery).

    Recorded with ``--gil``, the samples are Python running; without it py-spy samples wall
    time while the thread is not asleep, which on a shared core includes time spent runnable
    but waiting for it, most of all right after a write that woke another node (which then
    preempts the writer) — hence --gil. Samples in the selector are shown apart either way."""
    self_time: collections.Counter[str] = collections.Counter()
    buckets: collections.Counter[str] = collections.Counter()
    total = 0
    with open(raw_path, errors="replace") as f:
        for line in f:
            stack_text, _, count_text = line.rstrip("\n").rpartition(" ")
            try:
                count = int(count_text)
            except ValueError:
                continue
            stack = [s for s in stack_text.split(";") if s]
            if stack and (stack[0].startswith("process ") or stack[0].startswith("thread ")):
                stack = stack[1:]
            if not stack:
                continue
            total += count
            part = _bucket(stack)
            buckets[part] += count
            if part != WAITING:
                self_time[_short(stack[-1])] += count
    busy = total - buckets[WAITING]

    def us(n: int) -> float | None:
        return round(n / busy * us_per_delivery, 3) if busy else None

    functions = [{"function": fn, "share": round(n / busy, 4), "us_per_delivery": us(n)}
                 for fn, n in self_time.most_common(top)] if busy else []
    parts = [{"part": b, "share": round(n / total, 4), "us_per_delivery": None if b == WAITING else us(n)}
             for b, n in buckets.most_common()] if total else []
    return {"samples": total, "busy_samples": busy, "user_us_per_delivery": round(us_per_delivery, 3),
            "self_time": functions, "parts": parts}


def format_profile(summary: dict[str, Any]) -> str:
    lines = [f"{summary['samples']} samples holding the GIL; this node's CPU per delivery to its own clients: "
             f"user (Python) {summary['user_us_per_delivery']} µs, system (syscalls) "
             f"{summary.get('system_us_per_delivery', '?')} µs", "user time by part (share, est. µs/delivery):"]
    lines += [f"  {p['share']:6.1%}  {'' if p['us_per_delivery'] is None else format(p['us_per_delivery'], '7.2f') + ' µs':>10}  {p['part']}"
              for p in summary["parts"]]
    lines.append("user time by function, self (share, est. µs/delivery):")
    lines += [f"  {f['share']:6.1%}  {f['us_per_delivery']:7.2f} µs  {f['function']}" for f in summary["self_time"]]
    return "\n".join(lines)
