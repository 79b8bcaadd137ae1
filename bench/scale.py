#!/usr/bin/env python3
"""Scale: many joined websockets on one node, a reconnect storm, and POST-to-delivery latency.

    python bench/scale.py                        # 100,000 connections, a storm of 20,000, 300 posts
    python bench/scale.py --quick                # 5,000 / 2,000 / 100: about a minute
    python bench/scale.py --quick --before HEAD  # also on the committed server/, in the same run

1. **hold**: N clients (bench/js/swarm.js, several processes, each client bound to a 127.0.0.x
   source address) join ``room:scale``, heartbeating every 30 s like phoenix.js. Measured: the
   connect rate and the listen queue's overflows, RSS per connection, the nodes' idle CPU, and
   the time from ``POST /api/broadcast`` on node 1 to the last of the N receipts. A process may
   hold only as many descriptors as its hard limit allows: when N does not fit in one node the
   clients go to the fewest nodes of a cluster that holds them (the record says why).
2. **storm**: 3 nodes, M clients; node 3 is killed (SIGKILL) and its clients come back with
   phoenix.js's backoff plus jitter, each try to a node picked at random among those whose
   ``/readyz`` a balancer's health check found ready (every 500 ms). Meanwhile clients of
   nodes 1 and 2 shout at a low rate (bench/js/loadgen.js checks loss, duplicates and order).
3. **post**: on the same cluster before the kill, ``POST /api/broadcast`` on node 1 to a topic
   whose clients are all on node 2: p50/p99 of post to receipt.

One JSON line per part and source, in bench/results/scale-<UTC time>/results.jsonl; a summary
table; ``--plot`` draws bench/scale.png. bench/README.md ("Scale") says what the numbers mean.
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import math
import os
import secrets
import signal
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from bench import loadgen, procs, systems  # noqa: E402
from bench.results import Results, log  # noqa: E402

SWARM = os.path.join(loadgen.JS_DIR, "swarm.js")
MARGIN = 300        # descriptors a process keeps for what is not a client socket (peers, logs, HTTP)
HEARTBEAT_S = 30.0  # phoenix.js's heartbeat interval, which swarm.js uses
# Each generator binds its clients to an address of its own, the next of the run's: swarm.js
# picks their ports itself, and a fresh address has none left in TIME_WAIT by an earlier part.
SOURCE_ADDRESSES = itertools.cycle(systems.ADDRESSES["scale-clients"])


def now_ms() -> float:
    """Epoch milliseconds, the clock swarm.js stamps receipts with."""
    return time.time() * 1000


def listen_drops() -> dict[str, int]:
    """The kernel's count of connections a full accept queue turned away (this network namespace)."""
    with open("/proc/net/netstat") as f:
        lines = [line.split() for line in f if line.startswith("TcpExt:")]
    counters = dict(zip(lines[0][1:], map(int, lines[1][1:]), strict=True))
    return {"overflows": counters["ListenOverflows"], "drops": counters["ListenDrops"]}


def quantile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, max(0, math.ceil(q * len(sorted_values)) - 1))]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


class Swarms:
    """Several swarm.js processes, commanded together (each call waits for all of them)."""

    def __init__(self, count: int, outdir: str, label: str) -> None:
        self.gens = [loadgen.LoadGenerator(script=SWARM, log_path=os.path.join(outdir, f"{label}-swarm{i + 1}.log"))
                     for i in range(count)]
        self.pool = ThreadPoolExecutor(count)

    def call(self, cmd: str, wait: float = 60.0, per_gen: list[dict[str, Any]] | None = None,
             **args: Any) -> list[dict[str, Any]]:
        per_gen = per_gen or [{}] * len(self.gens)
        futures = [self.pool.submit(g.call, cmd, wait, **args, **extra) for g, extra in zip(self.gens, per_gen, strict=True)]
        return [f.result() for f in futures]

    def connect(self, urls: list[str], clients: int, topic: str, concurrency: int, deadline: float) -> dict[str, Any]:
        """Spreads ``clients`` over the processes; each process's client i goes to urls[i % len(urls)]
        from its own source address."""
        per_gen = [{"clients": n, "sources": [next(SOURCE_ADDRESSES)]} for n in split(clients, len(self.gens))]
        t0 = time.monotonic()
        answers = self.call("connect", wait=deadline + 60, per_gen=per_gen, urls=urls, topic=topic,
                            concurrency=concurrency, deadline=deadline)
        seconds = time.monotonic() - t0
        joined = sum(a["joined"] for a in answers)
        return {"joined": joined, "failed": clients - joined, "seconds": round(seconds, 2),
                "per_s": round(joined / seconds), "first_failure": next(
                    (a["first_failure"] for a in answers if a["first_failure"]), None)}

    def receipts(self, event: str) -> dict[str, dict[str, Any]]:
        """Per payload id, every receipt's time (sorted) and the duplicates, over all processes."""
        out: dict[str, dict[str, Any]] = {}
        for answer in self.call("receipts", event=event):
            for pid, got in answer["receipts"].items():
                mine = out.setdefault(pid, {"dup": 0, "times": []})
                mine["dup"] += got["dup"]
                mine["times"].extend(got["times"])
        for got in out.values():
            got["times"].sort()
        return out

    def cpu_seconds(self) -> float:
        return sum(procs.cpu_seconds(g.proc.pid) for g in self.gens)

    def signal(self, sig: int) -> None:
        for g in self.gens:
            g.proc.signal(sig)

    def stop(self) -> None:
        for gen in self.gens:
            gen.stop()
        self.pool.shutdown()


class Api:
    """``POST /api/broadcast`` on one node, over one kept-alive connection (as a backend would)."""

    def __init__(self, node: systems.RunningServer, key: str) -> None:
        self.conn = http.client.HTTPConnection(node.host, node.port, timeout=10)
        self.headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def broadcast(self, topic: str, event: str, payload: dict[str, Any]) -> float:
        """Posts; returns when the request left (epoch ms)."""
        body = json.dumps({"topic": topic, "event": event, "payload": payload})
        sent = now_ms()
        self.conn.request("POST", "/api/broadcast", body, self.headers)
        response = self.conn.getresponse()
        response.read()
        if response.status >= 300:
            raise RuntimeError(f"POST /api/broadcast: {response.status}")
        return sent

    def close(self) -> None:
        self.conn.close()


def wait_receipts(swarms: Swarms, event: str, ids: list[str], expected: int, timeout: float) -> dict[str, dict[str, Any]]:
    """Polls (sparingly: the generators are busy receiving) until every id reached ``expected``
    clients, or ``timeout``; the receipts."""
    deadline = time.monotonic() + timeout
    time.sleep(min(1.0, timeout))
    while True:
        got = swarms.receipts(event)
        if all(len(got.get(i, {"times": []})["times"]) >= expected for i in ids) or time.monotonic() > deadline:
            return got
        time.sleep(0.5)


class Scale:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        self.outdir = os.path.abspath(args.out or os.path.join(HERE, "results", f"scale-{stamp}"))
        os.makedirs(self.outdir, exist_ok=True)
        self.results = Results(self.outdir)
        self.fd_limit = procs.raise_fd_limit(1 << 20)
        self.per_process = self.fd_limit - MARGIN
        self.key = secrets.token_urlsafe(24)

    def system(self, nodes: int, src: str, label: str) -> systems.System:
        settings = {"api": {"key": self.key}}
        workdir = os.path.join(self.outdir, "nodes")
        if nodes == 1:
            return systems.Single(workdir, src=src, label=label, node_settings=settings)
        return systems.Gossipy(workdir, src=src, label=label, node_settings=settings,
                               hosts=list(systems.ADDRESSES["scale"])[:nodes])

    def swarms(self, clients: int, label: str) -> Swarms:
        # At least two processes, so the clients can use both cores (as the nodes can).
        return Swarms(max(self.args.generators, math.ceil(clients / self.per_process)), self.outdir, label)

    # ---- 1. many connections -----------------------------------------------------------------

    def hold(self, src: str, label: str) -> dict[str, Any]:
        args = self.args
        n = args.connections
        nodes = math.ceil(n / self.per_process)
        system = self.system(nodes, src, f"{label}-hold")
        swarms = None
        try:
            system.start()
            time.sleep(1.0)
            base = system.rss_bytes()
            swarms = self.swarms(n, f"{label}-hold")
            drops0, cpu0, gen0 = listen_drops(), sum(system.cpu_seconds().values()), swarms.cpu_seconds()
            connected = swarms.connect(system.ws_urls(), n, "room:scale", args.connect_concurrency, args.deadline)
            drops = {k: v - drops0[k] for k, v in listen_drops().items()}
            join_cpu = sum(system.cpu_seconds().values()) - cpu0
            generators_join_cpu = swarms.cpu_seconds() - gen0
            joined = max(1, connected["joined"])
            log(f"{label}: {connected['joined']:,} of {n:,} joined on {nodes} node(s) in {connected['seconds']} s "
                f"({connected['per_s']:,}/s; {join_cpu / joined * 1e6:.0f} us of node CPU each, "
                f"{generators_join_cpu / joined * 1e6:.0f} us of the generators'; "
                f"listen queue overflows {drops['overflows']:,})")
            time.sleep(2.0)
            system.check_alive()
            rss = system.rss_bytes()
            idle = self.idle_cpu(system, swarms)
            fanout = self.fanout(system, swarms, connected["joined"])
            system.check_alive()
            return self.results.emit({
                "part": "hold", "source": label, "connections": n, "nodes": nodes, "generators": len(swarms.gens),
                "fd_limit": self.fd_limit, **{f"connect_{k}": v for k, v in connected.items()},
                "listen_overflows": drops["overflows"], "listen_drops": drops["drops"],
                "join_cpu_us": round(join_cpu / joined * 1e6, 1),
                "generators_join_cpu_us": round(generators_join_cpu / joined * 1e6, 1),
                "rss_mb_before": round(sum(base.values()) / 2**20, 1), "rss_mb": round(sum(rss.values()) / 2**20, 1),
                "kb_per_connection": round((sum(rss.values()) - sum(base.values())) / joined / 1024, 2),
                **idle, **fanout,
                "note": None if nodes == 1 else (
                    f"a process may hold at most {self.fd_limit:,} descriptors here (the hard limit, which "
                    f"this sandbox cannot raise): {n:,} connections need {nodes} nodes"),
            })
        finally:
            if swarms:
                swarms.stop()
            system.stop()

    def idle_cpu(self, system: systems.System, swarms: Swarms) -> dict[str, Any]:
        """The nodes' CPU while every client only heartbeats (every 30 s each, spread evenly)."""
        window = self.args.idle_window
        cpu0, gen0, t0 = sum(system.cpu_seconds().values()), swarms.cpu_seconds(), time.monotonic()
        time.sleep(window)
        wall = time.monotonic() - t0
        cpu = sum(system.cpu_seconds().values()) - cpu0
        log(f"idle: nodes at {cpu / wall:.1%} of a core over {wall:.0f} s")
        return {"idle_window_s": round(wall, 1), "idle_cpu_fraction": round(cpu / wall, 4),
                "idle_generators_cpu_fraction": round((swarms.cpu_seconds() - gen0) / wall, 4)}

    def fanout(self, system: systems.System, swarms: Swarms, joined: int) -> dict[str, Any]:
        """Broadcasts posted to node 1, one at a time: post to each receipt, over every client."""
        args = self.args
        api = Api(system.nodes[0], self.key)
        swarms.call("watch", event="scale")
        runs = []
        try:
            for i in range(args.broadcasts):
                time.sleep(1.0)
                cpu0, kernel0, gen0 = sum(system.cpu_seconds().values()), system.system_seconds(), swarms.cpu_seconds()
                sent = api.broadcast("room:scale", "scale", {"id": str(i)})
                got = wait_receipts(swarms, "scale", [str(i)], joined, args.fanout_timeout)[str(i)]
                times = [t - sent for t in got["times"]]
                runs.append({"received": len(times), "dup": got["dup"],
                             "first_ms": round(times[0], 1) if times else None,
                             "p50_ms": round(quantile(times, 0.5) or 0, 1),
                             "last_ms": round(times[-1], 1) if times else None,
                             "nodes_cpu_s": round(sum(system.cpu_seconds().values()) - cpu0, 3),
                             "nodes_kernel_s": round(system.system_seconds() - kernel0, 3),
                             "generators_cpu_s": round(swarms.cpu_seconds() - gen0, 3)})
                log(f"broadcast {i + 1}: {len(times):,}/{joined:,} received, last after {runs[-1]['last_ms']} ms")
        finally:
            api.close()
        lasts = [r["last_ms"] for r in runs if r["last_ms"] is not None]
        paused = self.fanout_to_buffers(system, swarms, joined, str(args.broadcasts))
        return {"broadcasts": runs, "broadcast_to_buffers": paused,
                "still_joined": sum(s["joined"] for s in swarms.call("stats")),
                "broadcast_last_ms_median": statistics.median(lasts) if lasts else None,
                "broadcast_all_received": all(r["received"] == joined and r["dup"] == 0 for r in runs)}

    def fanout_to_buffers(self, system: systems.System, swarms: Swarms, joined: int, broadcast_id: str) -> dict[str, Any]:
        """One broadcast while the generators are stopped (SIGSTOP): the time from the POST until
        every node has written it to all of its clients. On loopback a write puts the frame in
        the client's socket buffer, so this is the broadcast's delivery less the clients' reading,
        which here takes the same 2 cores as the nodes (a real client reads on its own device).
        Read from the nodes' /metrics (websocket messages written), every 10 ms; then the
        generators go on and every client must have it, once."""
        api = Api(system.nodes[0], self.key)
        def written() -> float:
            return sum(n.metrics()[systems.MESSAGES_SENT] for n in system.nodes)
        swarms.signal(signal.SIGSTOP)
        try:
            time.sleep(0.5)
            before = written()
            sent = api.broadcast("room:scale", "scale", {"id": broadcast_id})
            deadline = time.monotonic() + self.args.fanout_timeout
            while (done := written() - before) < joined and time.monotonic() < deadline:
                time.sleep(0.01)
            in_buffers_ms = now_ms() - sent
        finally:
            swarms.signal(signal.SIGCONT)
            api.close()
        got = wait_receipts(swarms, "scale", [broadcast_id], joined, self.args.fanout_timeout)[broadcast_id]
        record = {"written": int(done), "all_written_ms": round(in_buffers_ms, 1) if done >= joined else None,
                  "received_after": len(got["times"]), "dup": got["dup"]}
        log(f"broadcast with the clients stopped: {int(done):,}/{joined:,} written to their sockets "
            f"after {record['all_written_ms']} ms; then {len(got['times']):,} received")
        return record

    def send_floor(self, rounds: int = 3) -> dict[str, Any]:
        """What one small delivery costs the kernel here, with no server: a bare ``send()`` of a
        62-byte frame to each of many idle loopback connections, in this process. On loopback
        the sender's CPU also carries the receiving side's TCP work, so this is the floor under
        any server's broadcast on this machine: N deliveries take at least N times this much
        CPU, spread over the cores."""
        pairs = min(9000, (self.fd_limit - MARGIN) // 2)
        frame = b"\x81\x3c" + b"x" * 60
        with socket.create_server(("127.0.0.1", 0), backlog=socket.SOMAXCONN) as listener:
            clients, servers = [], []
            try:
                for _ in range(pairs):
                    clients.append(socket.create_connection(listener.getsockname()))
                    servers.append(listener.accept()[0])
                per_send = []
                for _ in range(rounds):
                    cpu0 = procs.cpu_seconds(os.getpid())
                    for server in servers:
                        server.send(frame)
                    per_send.append((procs.cpu_seconds(os.getpid()) - cpu0) / pairs * 1e6)
                    for client in clients:
                        client.recv(4096)
            finally:
                for sock in clients + servers:
                    sock.close()
        record = {"part": "floor", "connections": pairs, "frame_bytes": len(frame),
                  "send_cpu_us": round(statistics.median(per_send), 2), "rounds_us": [round(x, 2) for x in per_send]}
        log(f"floor: a bare send() of a {len(frame)}-byte frame on loopback costs {record['send_cpu_us']} us of CPU "
            f"({pairs:,} connections, the median of {rounds} rounds)")
        return record

    # ---- 2 and 3. the cluster: POST to delivery, then the storm ----------------------------------

    def cluster(self, src: str, label: str) -> None:
        args = self.args
        system = self.system(3, src, f"{label}-storm")
        swarms = watchers = checker = None
        try:
            system.start()
            swarms = self.swarms(args.storm_clients, f"{label}-storm")
            connected = swarms.connect(system.ws_urls(), args.storm_clients, "room:scale",
                                       args.connect_concurrency, args.deadline)
            log(f"{label}: {connected['joined']:,} storm clients joined in {connected['seconds']} s")
            watchers = Swarms(1, self.outdir, f"{label}-post")
            watchers.connect([system.nodes[1].ws_url], args.post_clients, "room:post", 10, 30)
            self.results.emit(self.post(system, watchers, label))
            checker = loadgen.LoadGenerator(log_path=os.path.join(self.outdir, f"{label}-checker.log"))
            self.results.emit(self.storm(system, swarms, checker, connected, label))
        finally:
            for gen in (checker, watchers, swarms):
                if gen:
                    gen.stop()
            system.stop()

    def post(self, system: systems.System, watchers: Swarms, label: str) -> dict[str, Any]:
        args = self.args
        api = Api(system.nodes[0], self.key)
        watchers.call("watch", event="post")
        sent = {}
        try:
            for i in range(args.posts):
                sent[str(i)] = api.broadcast("room:post", "post", {"id": str(i)})
                time.sleep(args.post_gap)
        finally:
            api.close()
        got = wait_receipts(watchers, "post", list(sent), args.post_clients, 10)
        # A post is delivered when its last watcher has it.
        latency = sorted(got[i]["times"][-1] - t for i, t in sent.items() if len(got.get(i, {"times": []})["times"]))
        record = {"part": "post", "source": label, "posts": len(sent), "watchers": args.post_clients,
                  "delivered": sum(len(got.get(i, {"times": []})["times"]) for i in sent),
                  "expected": len(sent) * args.post_clients, "dup": sum(g["dup"] for g in got.values()),
                  "p50_ms": round(quantile(latency, 0.5) or 0, 2), "p99_ms": round(quantile(latency, 0.99) or 0, 2),
                  "max_ms": round(latency[-1], 2) if latency else None, "latency_ms": [round(x, 3) for x in latency]}
        log(f"post -> node 2: p50 {record['p50_ms']} ms, p99 {record['p99_ms']} ms over {len(latency)} posts")
        return record

    def storm(self, system: systems.System, swarms: Swarms, checker: loadgen.LoadGenerator,
              connected: dict[str, Any], label: str) -> dict[str, Any]:
        args = self.args
        survivors = [n.ws_url for n in system.nodes[:2]]
        got = checker.connect(survivors, args.check_clients, topic="room:check", deadline=30)
        if got["failed"]:
            raise RuntimeError(f"checking clients failed to join: {got['first_failure']}")
        swarms.call("reconnect", jitter=args.jitter, health_check_ms=args.health_check_ms)
        # The checked shouts run through the storm: they start before the kill and end well after.
        checked: dict[str, Any] = {}
        shouting = threading.Thread(target=lambda: checked.update(checker.run(
            step=1, senders=args.check_senders, rate=args.check_rate, duration=args.storm_window,
            # Late is not lost: a shout counts as lost only if it never comes while the storm lasts.
            drain=args.storm_timeout, quiet=args.storm_timeout)))
        shouting.start()
        time.sleep(1.0)
        victim = system.nodes[2]
        def survivors_cpu() -> float:
            return sum(procs.cpu_seconds(n.proc.pid) for n in system.nodes[:2])
        cpu0, gen0 = survivors_cpu(), swarms.cpu_seconds()
        killed = now_ms()
        victim.proc.signal(signal.SIGKILL)
        # Client i of each generator was on node i % 3: those with i % 3 == 2 were the victim's.
        expected = sum(len(range(2, n, 3)) for n in split(args.storm_clients, len(swarms.gens)))
        deadline = time.monotonic() + args.storm_timeout
        while True:
            time.sleep(0.5)
            states = swarms.call("storm")
            lost, back = sum(s["lost"] for s in states), sum(s["rejoined"] for s in states)
            if (lost >= expected and back >= lost) or time.monotonic() > deadline:
                break
        # Who spent the storm's CPU (to the poll that saw the last client back): the survivors
        # or the clients' generators, which share the machine's cores with them.
        storm_cpu = {"survivors_cpu_s": round(survivors_cpu() - cpu0, 3),
                     "generators_cpu_s": round(swarms.cpu_seconds() - gen0, 3)}
        shouting.join(args.storm_window + 2 * args.storm_timeout)
        alive = all(n.proc.alive() for n in system.nodes[:2])
        rejoin = sorted(x for s in states for x in s["rejoin_ms"])
        tries: dict[str, int] = {}
        failed_tries: dict[str, int] = {}
        for s in states:
            for k, v in s["tries"].items():
                tries[k] = tries.get(k, 0) + v
            for k, v in s["failed_tries"].items():
                failed_tries[k] = failed_tries.get(k, 0) + v
        last = max((s["last_rejoined"] for s in states if s["rejoined"]), default=None)
        record = {
            "part": "storm", "source": label, "clients": connected["joined"], "victims": expected,
            "health_check_ms": args.health_check_ms,
            "lost": lost, "rejoined": back, "joined_after": sum(s["joined"] for s in states),
            "all_rejoined_s": round((last - killed) / 1000, 3) if last and back >= lost >= expected else None,
            "rejoin_p50_ms": round(quantile(rejoin, 0.5) or 0, 1), "rejoin_p99_ms": round(quantile(rejoin, 0.99) or 0, 1),
            "tries": dict(sorted(tries.items(), key=lambda kv: int(kv[0]))),
            "failed_tries": dict(sorted(failed_tries.items(), key=lambda kv: -kv[1])),
            "survivors_alive": alive, **storm_cpu,
            "rss_mb_survivors": {k: round(v / 2**20, 1) for k, v in system.rss_bytes().items()},
            "checked": {k: checked.get(k) for k in ("shouts", "expected", "delivered", "lost", "duplicates",
                                                    "out_of_order", "disconnects")},
            "checked_p99_ms": (checked.get("latency_ms") or {}).get("p99"),
            "rejoin_ms": [round(x, 1) for x in rejoin],
        }
        log(f"storm: {back:,}/{lost:,} of node 3's {expected:,} clients back in {record['all_rejoined_s']} s; "
            f"checked shouts lost {record['checked']['lost']}, dup {record['checked']['duplicates']}, "
            f"out of order {record['checked']['out_of_order']}; CPU: survivors {storm_cpu['survivors_cpu_s']} s, "
            f"generators {storm_cpu['generators_cpu_s']} s")
        return record

    # ---- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        args = self.args
        with open("/proc/sys/net/core/somaxconn") as f:
            somaxconn = int(f.read())
        self.results.emit({"part": "meta", "machine": procs.machine(), "fd_limit": self.fd_limit, "somaxconn": somaxconn,
                   "args": vars(args)})
        if args.connections:
            self.results.emit(self.send_floor())
        sources = [("after", REPO)]
        if args.before:
            sources.insert(0, ("before", systems.source_at(args.before, self.outdir)))
        for label, src in sources:
            if args.connections:
                self.hold(src, label)
            if args.storm_clients:
                self.cluster(src, label)
        print(summary(self.results.records))
        if args.plot:
            plot(self.results.records, os.path.join(HERE, "scale.png"))
        log(f"results in {os.path.relpath(self.outdir)}")
        return 0


def summary(records: list[dict[str, Any]]) -> str:
    rows = ["| source | part | figure | value |", "|---|---|---|---|"]
    for r in records:
        if r["part"] == "hold":
            rows += [f"| {r['source']} | hold | {r['connect_joined']:,} joined on {r['nodes']} node(s), "
                     f"{r['generators']} generators | {r['connect_seconds']} s ({r['connect_per_s']:,}/s), "
                     f"listen queue overflows {r['listen_overflows']:,} |",
                     f"| {r['source']} | hold | RSS per connection | {r['kb_per_connection']} KB |",
                     f"| {r['source']} | hold | idle CPU (heartbeats every 30 s) | {r['idle_cpu_fraction']:.1%} of a core |",
                     f"| {r['source']} | hold | broadcast to all, last receipt (median of {len(r['broadcasts'])}) | "
                     f"{r['broadcast_last_ms_median']} ms, all received: {r['broadcast_all_received']} |",
                     f"| {r['source']} | hold | broadcast to all with the clients stopped: all written | "
                     f"{r['broadcast_to_buffers']['all_written_ms']} ms |"]
        elif r["part"] == "floor":
            rows.append(f"| | floor | a bare send() of a {r['frame_bytes']}-byte frame on loopback, no server | "
                        f"{r['send_cpu_us']} us of CPU |")
        elif r["part"] == "post":
            rows.append(f"| {r['source']} | post | POST on node 1 to receipt on node 2 | "
                        f"p50 {r['p50_ms']} ms, p99 {r['p99_ms']} ms ({r['delivered']}/{r['expected']}) |")
        elif r["part"] == "storm":
            c = r["checked"]
            rows.append(f"| {r['source']} | storm | {r['rejoined']:,}/{r['victims']:,} rejoined after kill -9 | "
                        f"{r['all_rejoined_s']} s (p50 {r['rejoin_p50_ms']} ms, p99 {r['rejoin_p99_ms']} ms); "
                        f"checked shouts lost {c['lost']}, dup {c['duplicates']}, out of order {c['out_of_order']} |")
    return "\n".join(rows)


def plot(records: list[dict[str, Any]], path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (storm_ax, post_ax) = plt.subplots(1, 2, figsize=(11, 4))
    for r in records:
        if r["part"] in ("storm", "post"):
            values = r["rejoin_ms"] if r["part"] == "storm" else r["latency_ms"]
            ax = storm_ax if r["part"] == "storm" else post_ax
            ax.plot(values, [(i + 1) / len(values) for i in range(len(values))], label=r["source"])
    storm_ax.set(title="Reconnect storm: node 3 killed", xlabel="ms from losing the connection to rejoined",
                 ylabel="share of node 3's clients")
    post_ax.set(title="POST /api/broadcast on node 1 to receipt on node 2", xlabel="ms", ylabel="share of posts",
                xscale="log")
    for ax in (storm_ax, post_ax):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    log(f"wrote {os.path.relpath(path)}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="5,000 connections, a storm of 2,000, 100 posts")
    p.add_argument("--connections", type=int, default=None, help="joined websockets to hold (100,000; 0: skip)")
    p.add_argument("--storm-clients", type=int, default=None, help="clients of the 3-node storm (20,000; 0: skip)")
    p.add_argument("--posts", type=int, default=None, help="posts for POST-to-delivery (300)")
    p.add_argument("--before", metavar="REV", help="also run on the server package of git revision REV")
    p.add_argument("--generators", type=int, default=2, help="at least this many swarm.js processes")
    p.add_argument("--connect-concurrency", type=int, default=250, help="connects in flight per generator")
    p.add_argument("--deadline", type=float, default=300.0, help="seconds allowed for connecting")
    p.add_argument("--idle-window", type=float, default=None, help="seconds of idle CPU (30: one heartbeat each)")
    p.add_argument("--broadcasts", type=int, default=3)
    p.add_argument("--fanout-timeout", type=float, default=30.0)
    p.add_argument("--post-clients", type=int, default=4, help="clients on node 2 receiving the posts")
    p.add_argument("--post-gap", type=float, default=0.02, help="seconds between posts")
    p.add_argument("--check-clients", type=int, default=40, help="clients of nodes 1 and 2 checking shouts")
    p.add_argument("--check-senders", type=int, default=4)
    p.add_argument("--check-rate", type=float, default=20.0, help="checked shouts per second")
    p.add_argument("--storm-window", type=float, default=None, help="seconds of checked shouts (15)")
    p.add_argument("--storm-timeout", type=float, default=60.0, help="at most this long for the rejoins")
    p.add_argument("--jitter", type=float, default=0.5, help="backoff × (1 + jitter × U[0,1))")
    p.add_argument("--health-check-ms", type=int, default=500,
                   help="the storm's balancer checks each node's /readyz this often (0: no checks, a random node)")
    p.add_argument("--plot", action="store_true", help="draw bench/scale.png")
    p.add_argument("--out", help="results folder (default bench/results/scale-<UTC time>)")
    args = p.parse_args(argv)
    quick = args.quick
    for name, full, small in (("connections", 100_000, 5000), ("storm_clients", 20_000, 2000), ("posts", 300, 100),
                              ("idle_window", HEARTBEAT_S, 10.0), ("storm_window", 15.0, 6.0)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    return args


def main(argv: list[str] | None = None) -> int:
    procs.install_signal_handlers()
    return Scale(parse_args(argv)).run()


if __name__ == "__main__":
    sys.exit(main())
