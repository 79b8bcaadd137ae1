"""RFC 6455 and RFC 7692 conformance: the whole Autobahn|Testsuite fuzzingclient case set
(1.* to 13.*) against ``echo_server.py``, gossipy's websocket classes with an echo handler.

The suite runs through kosoku (PyPI): Autobahn's own case files, driven by a runner in Rust
instead of Autobahn's Python 2 one. Every case must end OK or INFORMATIONAL (NON-STRICT would
pass kosoku, not this test). ``summary.md`` beside this file is the last run's table.
"""

from __future__ import annotations

import collections
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from support.requirements import missing

HERE = Path(__file__).resolve().parent
ACCEPTED = {"OK", "INFORMATIONAL"}


@pytest.fixture
def echo_server() -> Iterator[str]:
    """The harness, with permessage-deflate on (cases 1.* to 11.* do not offer it)."""
    process = subprocess.Popen([sys.executable, str(HERE / "echo_server.py"), "--compress"],
                               stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        port = re.fullmatch(r"listening on (\d+)\n", line)
        assert port is not None, f"the echo server said {line!r}"
        yield f"ws://127.0.0.1:{port.group(1)}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_every_autobahn_case_is_ok_or_informational(echo_server: str) -> None:
    try:
        import kosoku  # noqa: F401  (only whether it is there: it runs in its own process)
    except ImportError:
        missing("kosoku is not installed (requirements-dev.txt)")
    started = time.monotonic()
    # Its own process: kosoku puts a pkg_resources shim of its own on the import path, which
    # later tests of this session would import in place of setuptools'.
    done = subprocess.run([sys.executable, str(HERE / "fuzzingclient.py"), echo_server],
                          capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, f"the fuzzingclient exited with {done.returncode}:\n{done.stderr[-4000:]}"
    elapsed = time.monotonic() - started
    results = [Result(**json.loads(line)) for line in done.stdout.splitlines()]
    verdicts = collections.Counter((r.behavior, r.behavior_close) for r in results)
    (HERE / "summary.md").write_text(_summary(results, verdicts, elapsed))
    assert len(results) > 500  # 1.* to 13.*: 517 cases in kosoku 0.1.0
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


def _summary(results: list[Result], verdicts: collections.Counter[tuple[str, str]], elapsed: float) -> str:
    groups: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for r in results:
        groups[r.case_id.split(".")[0]][f"{r.behavior}/{r.behavior_close}"] += 1
    lines = ["# Autobahn|Testsuite against gossipy's websocket classes", "",
             "Written by `tests/autobahn/test_autobahn.py` (kosoku, the fuzzingclient case set, 2 cases at a",
             f"time, the echo harness with `compress` on): {len(results)} cases in {elapsed:.0f} s, the machine's",
             "load average then {:.1f} (1 min), {:.1f} (15 min).".format(*os.getloadavg()[::2]), "",
             "| cases | behavior/close: count |", "|---|---|"]
    for group in sorted(groups, key=int):
        lines.append(f"| {group}.* | " + ", ".join(f"{k}: {n}" for k, n in sorted(groups[group].items())) + " |")
    lines += ["", "All: " + ", ".join(f"{b}/{c}: {n}" for (b, c), n in sorted(verdicts.items())), ""]
    informational = [r.case_id for r in results if "INFORMATIONAL" in (r.behavior, r.behavior_close)]
    if informational:
        lines += ["INFORMATIONAL (the RFC leaves the behaviour open): " + ", ".join(informational), ""]
    return "\n".join(lines)
