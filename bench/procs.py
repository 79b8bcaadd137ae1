"""Processes the benchmark starts, and what it reads about them from /proc.

Every process the benchmark starts goes through ``Proc`` and is remembered, so ``stop_all``
(run at exit, and on SIGINT/SIGTERM) ends exactly those, by PID, and nothing else.
"""

from __future__ import annotations

import atexit
import json
import os
import random
import resource
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from typing import Any, Callable, Sequence

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

_started: list["Proc"] = []


def cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def raise_fd_limit(wanted: int = 65536) -> int:
    """Raises this process's open-file limit (children inherit it); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for target in (max(wanted, hard), hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(wanted, target)), target))
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class Proc:
    """One started process: its command, its log file, optional CPU pinning."""

    def __init__(self, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None,
                 cwd: str | None = None, log_path: str | None = None, core: int | None = None,
                 stdin: Any = subprocess.DEVNULL, stdout: Any = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log_path = log_path
        self._log = open(log_path, "ab") if log_path else subprocess.DEVNULL
        pin = (lambda: os.sched_setaffinity(0, {core})) if core is not None else None
        self.started_at = time.monotonic()
        self.popen = subprocess.Popen(self.argv, env=env, cwd=cwd, stdin=stdin,
                                      stdout=stdout if stdout is not None else self._log,
                                      stderr=self._log, preexec_fn=pin)
        self.pid = self.popen.pid
        _started.append(self)

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            os.kill(self.pid, sig)

    def stop(self, timeout: float = 8.0) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit status."""
        if self.alive():
            try:
                os.kill(self.pid, signal.SIGCONT)  # in case a test froze it
                os.kill(self.pid, signal.SIGTERM)
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(5)
            except ProcessLookupError:
                pass
        if self in _started:
            _started.remove(self)
        if self._log is not subprocess.DEVNULL:
            self._log.close()
        return self.popen.returncode

    def log_tail(self, lines: int = 15) -> str:
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, "rb") as f:
            return b"".join(f.readlines()[-lines:]).decode(errors="replace")


def stop_all() -> None:
    for proc in list(reversed(_started)):
        try:
            proc.stop(timeout=3)
        except Exception:
            pass


atexit.register(stop_all)


def _on_signal(signum: int, frame: Any) -> None:
    stop_all()
    raise SystemExit(128 + signum)


def install_signal_handlers() -> None:
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)


# ---- /proc ------------------------------------------------------------------------------------

def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of a live process (all its threads)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        fields = f.read().rsplit(b")", 1)[1].split()
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a live process (all its threads)."""
    return sum(cpu_times(pid))


def children(pid: int) -> list[int]:
    """The PIDs of a live process's children."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(child) for child in f.read().split()]


def run_seconds(pid: int) -> float:
    """CPU seconds of a live process's threads from the scheduler's nanosecond counts
    (/proc/<pid>/task/*/schedstat): for work of a millisecond or less, which the 10 ms ticks of
    ``cpu_times`` cannot resolve. Threads that already exited no longer count."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:  # the thread exited since the listing
            continue
    return total / 1e9


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE


def core_times() -> dict[int, dict[str, float]]:
    """Per core, seconds of: busy (user+nice+system), softirq+irq, steal (taken by the hypervisor)."""
    out: dict[int, dict[str, float]] = {}
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("cpu") and line[3].isdigit():
                name, *v = line.split()
                t = [int(x) / CLOCK_TICKS for x in v]
                out[int(name[3:])] = {"busy": t[0] + t[1] + t[2], "irq": t[5] + t[6], "steal": t[7]}
    return out


def others_on_core(before: dict[int, dict[str, float]], after: dict[int, dict[str, float]], core: int | None,
                   ours: float, wall: float) -> dict[str, float] | None:
    """What else ran on ``core`` during ``wall`` seconds, as fractions of the core: busy time not
    ours (other processes), interrupts (mostly our own loopback traffic), and steal."""
    if core is None or core not in before or core not in after:
        return None
    d = {k: after[core][k] - before[core][k] for k in after[core]}
    return {"others": round(max(0.0, d["busy"] - ours) / wall, 3), "irq": round(d["irq"] / wall, 3),
            "steal": round(d["steal"] / wall, 3)}


def machine() -> dict[str, Any]:
    """What the results were measured on."""
    info: dict[str, Any] = {"cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            info["memory_gib"] = round(int(f.readline().split()[1]) / 2**20, 1)
        info["kernel"] = os.uname().release
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    return info


# ---- the network: loopback only ---------------------------------------------------------------

def check_loopback(host: str) -> str:
    if not host.startswith("127."):
        raise ValueError(f"{host}: the benchmark only uses loopback addresses (127.0.0.0/8)")
    return host


def free_port(host: str, avoid: set[int] | None = None) -> int:
    """A TCP port free on ``host`` now (the kernel's choice)."""
    check_loopback(host)
    for _ in range(50):
        with socket.socket() as s:
            s.bind((host, 0))
            port = s.getsockname()[1]
        if not avoid or port not in avoid:
            return port
    raise RuntimeError(f"no free port on {host}")


def common_free_port(hosts: Sequence[str], low: int = 20000, high: int = 32000) -> int:
    """One port number free on every host (a cluster's shared distribution port)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(low, high)
        try:
            for host in hosts:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((check_loopback(host), port))
            return port
        except OSError:
            continue
    raise RuntimeError(f"no common free port on {', '.join(hosts)}")


def http_json(url: str, timeout: float = 1.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


def wait_for(what: str, probe: Callable[[], Any], timeout: float, interval: float = 0.02,
             alive: Callable[[], bool] | None = None) -> Any:
    """Calls ``probe`` until it returns something truthy (exceptions count as no); bounded."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except (OSError, urllib.error.URLError, ValueError) as exc:
            last_error = exc
        if alive is not None and not alive():
            raise RuntimeError(f"{what}: the process exited")
        time.sleep(interval)
    raise TimeoutError(f"{what}: not within {timeout:.0f} s" + (f" (last error: {last_error})" if last_error else ""))
