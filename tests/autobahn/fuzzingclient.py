"""Runs Autobahn|Testsuite's fuzzingclient cases (through kosoku) against the websocket server
at argv[1], one at a time as they are asked for: prints the case index first (``{"index":
[case ids]}``), then, for each case id read from stdin, one JSON object: case_id, behavior,
behavior_close, result, result_close. Ends at the end of stdin. Run by test_autobahn.py, which
hands the cases out to several of these processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import kosoku
import kosoku.cases  # noqa: F401  (builds the case index and its import path)


def _hash_bytes_in_compression_cases() -> None:
    """kosoku 0.1.0 hands the 12.* and 13.* cases an uncompressed message as ``str`` (text
    decoded as UTF-8, binary as Latin-1: Python 2's byte string) and a compressed one as
    ``bytes``; the cases hash what they receive, which Python 3 refuses for a ``str``. The
    server sends a message uncompressed when it is under 256 bytes or would not shrink (the
    PDF and bitmap data sets), so those cases would end in ERROR or FAILED for the runner's
    sake: the message is given back its bytes before the case sees it."""
    import case12_x_x  # importable once kosoku.cases has set up its case path

    original = case12_x_x.onMessage

    def on_message(self: Any, msg: str | bytes, binary: bool) -> Any:
        if isinstance(msg, str):
            msg = msg.encode("latin-1" if binary else "utf-8")
        return original(self, msg, binary)

    for case in case12_x_x.Case12_X_X + case12_x_x.Case13_X_X:
        case.onMessage = on_message


def main(url: str) -> None:
    _hash_bytes_in_compression_cases()
    print(json.dumps({"index": list(kosoku.cases.CASES)}), flush=True)
    for line in sys.stdin:
        try:
            (r,) = asyncio.run(kosoku.run_fuzzingclient(url, [line.strip()]))
        except kosoku.FailureError as failure:
            (r,) = failure.results
        print(json.dumps({"case_id": r.case_id, "behavior": r.behavior.value, "behavior_close": r.behavior_close.value,
                          "result": str(r.result), "result_close": str(r.result_close)}), flush=True)
    # Out without the interpreter's finalization (stdout is flushed after each case): a thread
    # of kosoku's runtime that wakes the asyncio loop during it cannot take the GIL, is ended
    # by CPython in the middle of Rust code, and the process aborts (SIGABRT, exit code 134).
    os._exit(0)


if __name__ == "__main__":
    main(sys.argv[1])
