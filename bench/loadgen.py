"""The driver of the Node.js load generator (bench/js/loadgen.js): one JSON line per command."""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import time
from typing import Any, Sequence

from . import procs

HERE = os.path.dirname(os.path.abspath(__file__))
JS_DIR = os.path.join(HERE, "js")
SCRIPT = os.path.join(JS_DIR, "loadgen.js")

# A generator using more than this share of its core, or whose event loop lags this much, was
# (close to) the bottleneck: its numbers are then a lower bound on what the server can do.
SATURATED_CPU = 0.85
SATURATED_LOOP_DELAY_MS = 50.0


class GeneratorError(RuntimeError):
    pass


def ensure_node_packages() -> None:
    """``npm ci`` in bench/js when its node_modules is missing or older than the lock file."""
    if shutil.which("node") is None:
        raise GeneratorError("node is not installed (Debian: apt-get install nodejs npm)")
    stamp = os.path.join(JS_DIR, "node_modules", ".package-lock.json")
    lock = os.path.join(JS_DIR, "package-lock.json")
    if os.path.exists(stamp) and os.path.getmtime(stamp) >= os.path.getmtime(lock):
        return
    subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                   check=True, timeout=300)


def saturated(result: dict[str, Any], core_shared: bool = False) -> str | None:
    """Why the generator may have limited this step, or None. A lagging event loop counts only
    when the generator had its core to itself (``core_shared`` False): on a shared core the lag
    is the other processes' doing, which the step reports as disturbed instead."""
    gen = result.get("generator") or {}
    reasons = []
    if (gen.get("cpu_fraction") or 0) > SATURATED_CPU:
        reasons.append(f"its CPU at {gen['cpu_fraction']:.0%} of a core")
    if not core_shared and (gen.get("loop_delay_p99_ms") or 0) > SATURATED_LOOP_DELAY_MS:
        reasons.append(f"its event loop lagging {gen['loop_delay_p99_ms']:.0f} ms (p99)")
    return " and ".join(reasons) or None


class LoadGenerator:
    """A Node.js script of bench/js spoken to one JSON line per command: loadgen.js by default,
    or another (``script``) of the same protocol."""

    def __init__(self, *, core: int | None = None, log_path: str | None = None, script: str = SCRIPT) -> None:
        ensure_node_packages()
        self.held = 0   # connections asked of this generator (the idle test spreads them)
        self.proc = procs.Proc(os.path.basename(script), ["node", "--max-old-space-size=4096", script],
                               core=core, log_path=log_path, stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    def call(self, cmd: str, wait: float = 120.0, **args: Any) -> dict[str, Any]:
        popen = self.proc.popen
        assert popen.stdin is not None and popen.stdout is not None
        popen.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        popen.stdin.flush()
        deadline = time.monotonic() + wait
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise GeneratorError(f"{cmd}: no answer within {wait:.0f} s")
            ready, _, _ = select.select([popen.stdout], [], [], min(left, 1.0))
            if ready:
                line = popen.stdout.readline()
                if not line:
                    raise GeneratorError(f"{cmd}: the generator exited\n{self.proc.log_tail()}")
                answer = json.loads(line)
                if not answer.pop("ok", False):
                    raise GeneratorError(f"{cmd}: {answer.get('error')}")
                return answer
            if not self.proc.alive():
                raise GeneratorError(f"{cmd}: the generator exited\n{self.proc.log_tail()}")

    def connect(self, urls: Sequence[str], clients: int, *, topic: str = "room:1", rooms: int = 1,
                vsn: str = "2.0.0", concurrency: int = 100, timeout: float = 20.0,
                deadline: float = 300.0) -> dict[str, Any]:
        """Adds ``clients`` clients, round-robin over ``urls``; client i joins ``topic``, or with
        ``rooms`` > 1 (set by the first connect) ``topic/<i % rooms>``."""
        return self.call("connect", wait=deadline + 30, urls=list(urls), clients=clients, topic=topic,
                         rooms=rooms, vsn=vsn, concurrency=concurrency, timeout=timeout, deadline=deadline)

    def run(self, *, step: int, senders: int, rate: float, duration: float, drain: float = 5.0,
            quiet: float = 1.5, abort_over_1s_fraction: float = 0.0, padding: int = 0,
            **test_hooks: Any) -> dict[str, Any]:
        """One measured step: ``rate`` shouts/s from ``senders`` clients for ``duration`` s."""
        return self.call("run", wait=duration + drain + 60, step=step, senders=senders, rate=rate,
                         duration=duration, drain=drain, quiet=quiet,
                         abort_over_1s_fraction=abort_over_1s_fraction, padding=padding, **test_hooks)

    def ensure(self, deadline: float = 60.0) -> dict[str, Any]:
        return self.call("ensure", wait=deadline + 30, deadline=deadline)

    def stats(self) -> dict[str, Any]:
        return self.call("stats", wait=30)

    def close_all(self) -> None:
        self.call("close", wait=60)

    def stop(self) -> None:
        if self.proc.alive():
            try:
                self.call("close", wait=20)
            except (GeneratorError, OSError, ValueError):
                pass
        self.proc.stop(timeout=3)
