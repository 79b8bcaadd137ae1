"""What a run says: progress lines on stderr, and its records, one JSON line each, on stdout and
in ``results.jsonl`` of the run's folder."""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any


def log(message: str) -> None:
    sys.stderr.write(f"[bench {time.strftime('%H:%M:%S')}] {message}\n")
    sys.stderr.flush()


class Results:
    """The records of one run, kept in order for the summary, the README and the plot."""

    def __init__(self, outdir: str) -> None:
        self.outdir = outdir
        self.path = os.path.join(outdir, "results.jsonl")
        self.records: list[dict[str, Any]] = []

    def emit(self, record: dict[str, Any]) -> dict[str, Any]:
        record = {"run": os.path.basename(self.outdir), **record}
        self.records.append(record)
        line = json.dumps(record, separators=(",", ":"))
        print(line, flush=True)
        with open(self.path, "a") as f:
            f.write(line + "\n")
        return record
