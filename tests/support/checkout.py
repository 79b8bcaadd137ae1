"""The checkout under test, copied for the tests that build from it (tests/release, tests/e2e),
so that a test may change vm.yml or the compose file and rebuild without touching the repository."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from . import ROOT


def copy_repository(dest: Path) -> Path:
    """The files git knows of (tracked, or new and not ignored), as the working tree has them."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                            cwd=ROOT, check=True, capture_output=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():  # not deleted in the working tree
            target = dest / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return dest
