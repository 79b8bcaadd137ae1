"""The parent of a host's workers (``node.workers`` over 1), a small OTP-style supervisor.

``foreground`` becomes this process when settings ask for workers: it runs the same command
line again once per worker (``GOSSIPY_WORKER=K`` in its environment tells settings which, and
so its name, port and siblings), and then only waits for signals:

* a worker that exits is started again after a backoff (0.1 s doubling to 5 s, back to 0.1 s
  once a worker has run for a while); it re-links to its siblings and the cluster through its
  sync list, under its own name, as any restarted node does. More than ``MAX_RESTARTS`` within
  ``RESTART_WINDOW`` means the fault is not passing (a taken port, say): the supervisor stops
  the rest and exits 1, leaving the decision to whatever started it (Docker's restart policy);
* SIGTERM or SIGINT is passed on to every worker, which drains (its websockets close with
  1001); the supervisor exits 0 once all have stopped;
* every child that ends is reaped, including orphans: in a container this process is PID 1.

The signals are blocked and taken with ``sigtimedwait``, so none arrives between two checks;
the workers start with an empty signal mask. A node with no name gets a cluster of its own
workers on loopback; its cookie, made up here, goes to them in their environment (which only
their user can read), never on a command line.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import signal
import sys
import time
from dataclasses import dataclass

from .settings import ENV_WORKER, ENV_WORKER_COOKIE, ENV_WORKERS, Settings

log = logging.getLogger("gossipy.supervisor")

BACKOFF_BASE = 0.1
BACKOFF_CAP = 5.0
# A worker that ran this long before exiting was not crash-looping: its backoff starts over.
STABLE_AFTER = 10.0
MAX_RESTARTS = 5
RESTART_WINDOW = 30.0
# How long to sleep in sigtimedwait with no restart pending (any signal ends it sooner).
IDLE_WAIT = 60.0
_SIGNALS = {signal.SIGCHLD, signal.SIGTERM, signal.SIGINT}


def _signal_name(number: int) -> str:
    """``SIGKILL``; or, for a signal ``signal.Signals`` has no member for (the realtime ones
    between SIGRTMIN and SIGRTMAX), ``35 (Real-time signal 1)``."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"{number} ({signal.strsignal(number) or 'unknown'})"


@dataclass
class _Worker:
    index: int
    pid: int | None = None
    started: float = 0.0
    delay: float = BACKOFF_BASE
    restart_at: float | None = None


class Supervisor:
    """``Supervisor(settings).run()`` -> the exit status (see the module docstring)."""

    def __init__(self, settings: Settings) -> None:
        self._workers = [_Worker(index) for index in range(1, settings.workers + 1)]
        self._env = {**os.environ, ENV_WORKERS: str(settings.workers)}
        if settings.distribution.node is None:
            self._env[ENV_WORKER_COOKIE] = secrets.token_urlsafe(32)
        # The command that started this process, interpreter options and all (python -m
        # server, or the release's PEX): each worker runs it again.
        self._argv = list(sys.orig_argv)
        self._restarts: collections.deque[float] = collections.deque()
        self._stopping = False
        self._status = 0

    def run(self) -> int:
        signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        log.info("supervising %d workers", len(self._workers))
        for worker in self._workers:
            self._spawn(worker)
        while any(w.pid is not None or w.restart_at is not None for w in self._workers):
            info = signal.sigtimedwait(_SIGNALS, self._wait())
            if info is not None and info.si_signo != signal.SIGCHLD:
                self._stop(f"{signal.Signals(info.si_signo).name}: stopping the workers")
            self._reap()
            self._restart_due()
        log.info("every worker has stopped")
        return self._status

    def _spawn(self, worker: _Worker) -> None:
        worker.restart_at = None
        worker.started = time.monotonic()
        env = {**self._env, ENV_WORKER: str(worker.index)}
        worker.pid = os.posix_spawn(sys.executable, self._argv, env, setsigmask=())
        log.info("worker %d started (pid %d)", worker.index, worker.pid)

    def _wait(self) -> float:
        pending = [w.restart_at for w in self._workers if w.restart_at is not None]
        return max(0.0, min(pending) - time.monotonic()) if pending else IDLE_WAIT

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            worker = next((w for w in self._workers if w.pid == pid), None)
            if worker is not None:
                self._exited(worker, os.waitstatus_to_exitcode(status))

    def _exited(self, worker: _Worker, code: int) -> None:
        worker.pid = None
        how = f"signal {_signal_name(-code)}" if code < 0 else f"status {code}"
        if self._stopping:
            log.info("worker %d stopped (%s)", worker.index, how)
            return
        now = time.monotonic()
        if now - worker.started >= STABLE_AFTER:
            worker.delay = BACKOFF_BASE
        self._restarts.append(now)
        while self._restarts[0] < now - RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) > MAX_RESTARTS:
            log.error("worker %d exited (%s), the %dth exit within %g s: giving up", worker.index, how,
                      len(self._restarts), RESTART_WINDOW)
            self._status = 1
            self._stop("stopping the other workers")
            return
        worker.restart_at = now + worker.delay
        log.warning("worker %d exited (%s); restarting it in %.1f s", worker.index, how, worker.delay)
        worker.delay = min(worker.delay * 2, BACKOFF_CAP)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self._workers:
            if worker.restart_at is not None and worker.restart_at <= now:
                self._spawn(worker)

    def _stop(self, why: str) -> None:
        self._stopping = True
        log.info("%s", why)
        for worker in self._workers:
            worker.restart_at = None
            if worker.pid is not None:
                os.kill(worker.pid, signal.SIGTERM)
