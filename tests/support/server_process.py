"""Real ``python -m server`` processes for tests, and waiting for conditions without sleeps.

``NodeStarter(folder).start(endpoint={...})`` runs a node as a child process on a free port of
127.0.0.1 (``PORT=0``: the node picks it and logs it), with a temporary ``--config`` file for
the settings a test changes, and returns once it serves. Everything the node logs goes to a
file, so tests assert on log lines. Nodes are signalled by PID only.

Waiting helpers come in pairs of one name: ``wait_until`` / ``wait_for_line`` block (for
plain tests), ``async_wait_until`` / ``async_wait_for_line`` await (for async tests: the event
loop, and the test's clients, keep running). node_processes.py follows the same rule.

Import from here, not from ``conftest`` (several conftest.py files share that module name).
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import yaml

from . import ROOT

_SERVING = re.compile(r"serving websockets on (\S+):(\d+)")
_LOG_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")  # logging's format in server/__main__

POLL_INTERVAL = 0.02


def _poll(condition: Callable[[], Any], deadline: float, timeout: float, what: str) -> Any:
    result = condition()
    if not result and time.monotonic() > deadline:
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")
    return result


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Polls ``condition`` until it returns something truthy, which it returns."""
    deadline = time.monotonic() + timeout
    while not (result := _poll(condition, deadline, timeout, what)):
        time.sleep(POLL_INTERVAL)
    return result


async def async_wait_until(condition: Callable[[], Any], timeout: float = 5.0,
                           what: str = "condition") -> Any:
    """``wait_until`` for async tests: the event loop (and the test's clients) keep running."""
    deadline = time.monotonic() + timeout
    while not (result := _poll(condition, deadline, timeout, what)):
        await asyncio.sleep(POLL_INTERVAL)
    return result


class ServerProcess:
    """A running ``python -m server`` process and its log."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path
        self.host = "127.0.0.1"
        self.port = 0

    @property
    def pid(self) -> int:
        return self.proc.pid

    def url(self, path: str = "/", scheme: str = "http") -> str:
        return f"{scheme}://{self.host}:{self.port}{path}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def lines(self, pattern: str = "") -> list[str]:
        """Log lines matching the regular expression ``pattern``."""
        return [line for line in self.log().splitlines() if re.search(pattern, line)]

    def warnings(self) -> list[str]:
        return self.lines(r" WARNING ")

    def has_line(self, pattern: str) -> str | None:
        found = self.lines(pattern)
        return found[0] if found else None

    def wait_for_line(self, pattern: str, timeout: float = 5.0) -> str:
        return wait_until(lambda: self.has_line(pattern), timeout, f"a log line matching {pattern!r}")

    async def async_wait_for_line(self, pattern: str, timeout: float = 5.0) -> str:
        return await async_wait_until(lambda: self.has_line(pattern), timeout,
                                      f"a log line matching {pattern!r}")

    def assert_clean(self) -> None:
        """Bad input must be one-line warnings: no traceback, no ERROR line, and still running."""
        log = self.log()
        assert "Traceback" not in log, log
        continued = [line for line in log.splitlines() if line and not _LOG_LINE.match(line)]
        assert not continued, f"multi-line log records:\n{log}"
        assert not self.lines(r" (ERROR|CRITICAL) "), log
        assert self.proc.poll() is None, f"the node exited with {self.proc.returncode}:\n{log}"

    # ---- what the process holds (Linux /proc) ----------------------------------------------------

    def rss_kib(self, field: str = "VmRSS") -> int:
        """Resident memory, KiB: now (VmRSS), or the peak since the process started (VmHWM)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
        raise AssertionError(f"no {field} for pid {self.pid}")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def cmdline(self) -> str:
        """The process's arguments as ps shows them (NULs as spaces)."""
        return Path(f"/proc/{self.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        os.kill(self.proc.pid, sig)

    async def exit_status(self, timeout: float = 10.0) -> int:
        """Waits (without blocking the test's event loop) for the node to exit."""
        await async_wait_until(lambda: self.proc.poll() is not None, timeout, "the node to exit")
        return self.proc.returncode

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Sends ``sig`` to this node's PID and returns its exit status."""
        if self.proc.poll() is None:
            self.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise AssertionError(f"the node did not exit within {timeout} s of signal {sig}:\n{self.log()}") from None


def node_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "server", *args]


def node_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("RELEASE_") and k not in ("PORT", "PYTHONPATH")}
    env.update(PYTHONUNBUFFERED="1", **extra)
    return env


def spawn_node(args: list[str], log_path: Path, env: dict[str, str],
               prefix: Sequence[str] = ()) -> subprocess.Popen:
    """``python -m server ARGS`` in the background, everything it prints going to ``log_path``;
    ``prefix`` runs it (``ip netns exec NS``: exec'd in place, so the PID is the node's)."""
    with open(log_path, "wb") as log_file:
        return subprocess.Popen([*prefix, *node_command(*args)], cwd=ROOT, env=node_env(**env),
                                stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT)


def run_node(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    """``python -m server ARGS`` to completion (describe, ping, nodes, a refused start)."""
    return subprocess.run(node_command(*args), cwd=ROOT, env=node_env(**(env or {})), stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=timeout)


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Ports below the kernel's ephemeral range: a port from bind(..., 0) is free only until the
# probe closes, and any outgoing connection (thousands, in the abuse tests) may take it before
# the node binds it; the kernel never hands out these on its own.
_PICKABLE = range(20000, max(20001, _ephemeral_low()))
_handed_out: set[int] = set()


def free_port(hosts: Iterable[str]) -> int:
    """A TCP port that is free on every one of ``hosts``, never the same twice in a test run."""
    hosts = list(hosts)
    while True:
        port = random.choice(_PICKABLE)
        if port in _handed_out:
            continue
        try:
            for host in hosts:
                with socket.socket() as probe:
                    probe.bind((host, port))
        except OSError:
            continue
        _handed_out.add(port)
        return port


class NodeStarter:
    """Starts nodes whose config and log files live in ``folder``; ``stop_all`` at the end."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.nodes: list[ServerProcess] = []

    def start(self, endpoint: dict[str, Any] | None = None, config: bool = True,
              env: dict[str, str] | None = None, timeout: float = 10.0, **sections: Any) -> ServerProcess:
        """``endpoint`` (merged over host 127.0.0.1) and any other ``sections`` are written to
        a vm.yml; ``config=False`` runs on the embedded defaults with no --config at all."""
        index = len(self.nodes)
        args: list[str] = []
        if config:
            path = self.folder / f"vm{index}.yml"
            document = {"endpoint": {"host": "127.0.0.1", **(endpoint or {})}, **sections}
            path.write_text(yaml.safe_dump(document), encoding="utf-8")
            args = ["--config", str(path)]
        log_path = self.folder / f"node{index}.log"
        proc = spawn_node(args, log_path, {"PORT": "0", **(env or {})})
        node = ServerProcess(proc, log_path)
        self.nodes.append(node)

        def serving() -> re.Match[str] | None:
            if proc.poll() is not None:
                raise AssertionError(f"the node exited with {proc.returncode} before serving:\n{node.log()}")
            return _SERVING.search(node.log())

        node.port = int(wait_until(serving, timeout, "the node to serve").group(2))
        return node

    def stop_all(self) -> None:
        """SIGTERM, by PID, to every node still running."""
        for node in self.nodes:
            if node.proc.poll() is None:
                node.stop()
