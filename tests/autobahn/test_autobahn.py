"""RFC 6455 and RFC 7692 conformance: the whole Autobahn|Testsuite fuzzingclient case set
(1.* to 13.*) against ``echo_server.py``, gossipy's websocket classes with an echo handler;
and its compression cases (12.*, 13.*) again with context takeover.

The suite runs through kosoku (PyPI): Autobahn's own case files, driven by a runner in Rust
instead of Autobahn's Python 2 one. Every case must end OK or INFORMATIONAL (NON-STRICT would
pass kosoku, not this test). ``summary.md`` and ``summary-context-takeover.md`` beside this
file are the last runs' tables.

Nearly all of the suite's time is 12.* and 13.*: 216 cases of 1,000 messages, each one
compressed, sent and inflated by the client, then by the echo server: CPU work on both sides,
one side at a time. So the cases run in pairs of processes, one ``fuzzingclient.py`` against
one echo server, a pair per core, each pair taking the next case as it finishes one: one
kosoku process running two cases at a time against one echo server kept 1.3 of 2 cores busy
(bench/README.md).
"""

from __future__ import annotations

import collections
import json
import os
import queue
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from pathlib import Path
from typing import NamedTuple

import pytest

from support.requirements import missing

HERE = Path(__file__).resolve().parent
ACCEPTED = {"OK", "INFORMATIONAL"}
# A pair per core, at most 4: a pair holds up to ~230 MB (9.* echoes messages of 16 MiB).
PAIRS = min(len(os.sched_getaffinity(0)), 4)
TIMEOUT = 1800.0


class Way(NamedTuple):
    """How the echo servers compress, which cases run against them, and where the table goes."""

    flags: list[str]
    groups: tuple[str, ...] | None  # the case groups run (None: all of them)
    summary: str


WAYS = {
    # Cases 1.* to 11.* do not offer permessage-deflate: they run once, against the default way.
    "compress": Way(["--compress"], None, "summary.md"),
    # endpoint.deflate_context_takeover: the same compression cases against the shared contexts.
    "context takeover": Way(["--compress", "--context-takeover"], ("12", "13"), "summary-context-takeover.md"),
}


@pytest.fixture(params=list(WAYS))
def way(request: pytest.FixtureRequest) -> Way:
    return WAYS[request.param]


@pytest.fixture
def echo_servers(way: Way) -> Iterator[list[str]]:
    """The harness, compressing as ``way`` says: one per pair."""
    processes = [subprocess.Popen([sys.executable, str(HERE / "echo_server.py"), *way.flags],
                                  stdout=subprocess.PIPE, text=True) for _ in range(PAIRS)]
    try:
        urls = []
        for process in processes:
            assert process.stdout is not None
            line = process.stdout.readline()
            port = re.fullmatch(r"listening on (\d+)\n", line)
            assert port is not None, f"the echo server said {line!r}"
            urls.append(f"ws://127.0.0.1:{port.group(1)}")
        yield urls
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=10)


def test_every_autobahn_case_is_ok_or_informational(way: Way, echo_servers: list[str], tmp_path: Path) -> None:
    try:
        import kosoku  # noqa: F401  (only whether it is there: it runs in processes of its own)
    except ImportError:
        missing("kosoku is not installed (requirements-dev.txt)")
    started = time.monotonic()
    clients = [Client(url, tmp_path / f"fuzzingclient-{n}.log") for n, url in enumerate(echo_servers)]
    try:
        indexes = [client.index() for client in clients]
        index = indexes[0]
        assert all(other == index for other in indexes), "the fuzzingclients list different cases"
        assert len(index) > 500  # 1.* to 13.*: 517 cases in kosoku 0.1.0
        if way.groups is not None:
            index = [case_id for case_id in index if case_id.split(".")[0] in way.groups]
            assert len(index) > 200  # 12.* and 13.*: 216
        cases: queue.SimpleQueue[str] = queue.SimpleQueue()
        # The index backwards: 13.* and 12.* first (within a group, the messages grow with the
        # case number), then 11.* to 1.*, some 15 s in all, which fill in while the last big
        # cases finish.
        for case_id in reversed(index):
            cases.put(case_id)
        with ThreadPoolExecutor(len(clients)) as pool:
            runs = [pool.submit(client.run_all, cases) for client in clients]
            done, late = wait(runs, timeout=TIMEOUT)
            if late:
                for client in clients:
                    client.process.kill()
            for run in done:
                run.result()
            assert not late, f"not done in {TIMEOUT:.0f} s; running then: {[c.running for c in clients if c.running]}"
    finally:
        exits = [client.stop() for client in clients]
    for client, code in zip(clients, exits, strict=True):
        assert code == 0, f"the fuzzingclient against {client.url} exited with {code}:\n{client.log_tail()}"
    elapsed = time.monotonic() - started
    by_id = {r.case_id: r for client in clients for r in client.results}
    results = [by_id[case_id] for case_id in index if case_id in by_id]
    verdicts = collections.Counter((r.behavior, r.behavior_close) for r in results)
    (HERE / way.summary).write_text(_summary(results, verdicts, elapsed, way))
    assert len(results) == sum(len(client.results) for client in clients), "a case ran twice"
    assert len(results) == len(index), f"cases that did not run: {sorted(set(index) - set(by_id))}"
    bad = [f"{r.case_id}: {r.behavior}/{r.behavior_close} {r.result} {r.result_close}"
           for r in results if r.behavior not in ACCEPTED or r.behavior_close not in ACCEPTED]
    assert not bad, "\n".join(bad)


class Result(NamedTuple):
    """One case's verdict, as fuzzingclient.py prints it."""

    case_id: str
    behavior: str
    behavior_close: str
    result: str
    result_close: str


class Client:
    """A fuzzingclient.py process against one echo server: a case id in, its result out."""

    def __init__(self, url: str, log: Path) -> None:
        self.url = url
        self.log = log
        with log.open("w") as stderr:
            # Its own process: kosoku puts a pkg_resources shim of its own on the import path,
            # which later tests of this session would import in place of setuptools'.
            self.process = subprocess.Popen([sys.executable, str(HERE / "fuzzingclient.py"), url],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True)
        self.results: list[Result] = []
        self.running = ""

    def index(self) -> list[str]:
        """The case ids of kosoku's index, in its order (the process's first line)."""
        index: list[str] = json.loads(self._line("its case index"))["index"]
        return index

    def run_all(self, cases: queue.SimpleQueue[str]) -> None:
        """Runs cases from the queue until it is empty."""
        stdin = self.process.stdin
        assert stdin is not None
        while True:
            try:
                self.running = cases.get_nowait()
            except queue.Empty:
                break
            stdin.write(self.running + "\n")
            stdin.flush()
            self.results.append(Result(**json.loads(self._line(f"case {self.running}"))))
        self.running = ""

    def stop(self) -> int:
        """Ends the process (at the end of its stdin, or killed after 10 s); its exit code."""
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def log_tail(self) -> str:
        return self.log.read_text()[-4000:]

    def _line(self, what: str) -> str:
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            code = self.process.wait()
            raise AssertionError(f"the fuzzingclient against {self.url} exited with {code} before {what}:\n"
                                 f"{self.log_tail()}")
        return line


def _summary(results: list[Result], verdicts: collections.Counter[tuple[str, str]], elapsed: float, way: Way) -> str:
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        groups[r.case_id.split(".")[0]][f"{r.behavior}/{r.behavior_close}"] += 1
    lines = ["# Autobahn|Testsuite against gossipy's websocket classes", "",
             "Written by `tests/autobahn/test_autobahn.py` (kosoku, the fuzzingclient case set, one case at a",
             f"time in each of {PAIRS} fuzzingclients, each against an echo harness of its own run with",
             f"`{' '.join(way.flags)}`): {len(results)} cases in {elapsed:.0f} s, the machine's load average then "
             "{:.1f} (1 min), {:.1f} (15 min).".format(*os.getloadavg()[::2]), "",
             "| cases | behavior/close: count |", "|---|---|"]
    for group in sorted(groups, key=int):
        lines.append(f"| {group}.* | " + ", ".join(f"{k}: {n}" for k, n in sorted(groups[group].items())) + " |")
    lines += ["", "All: " + ", ".join(f"{b}/{c}: {n}" for (b, c), n in sorted(verdicts.items())), ""]
    informational = [r.case_id for r in results if "INFORMATIONAL" in (r.behavior, r.behavior_close)]
    if informational:
        lines += ["INFORMATIONAL (the RFC leaves the behaviour open): " + ", ".join(informational), ""]
    return "\n".join(lines)
