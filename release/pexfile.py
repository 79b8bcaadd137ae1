"""The PEX: the server package, the app, and their pinned wheels in one reproducible file."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from typing import Sequence

from . import BuildError
from .wheels import requirement_args


def build_pex(source_dir: str, requirements_files: Sequence[str], wheelhouse: str, entry_point: str,
              out: str) -> None:
    """Builds ``out`` from the packages in ``source_dir`` (the server, and the app) and the
    wheels in ``wheelhouse`` only.

    A venv PEX: its first run makes a virtualenv under PEX_ROOT, and every later run (ping,
    describe, a restart) starts straight from it, without re-reading the zip.
    """
    if importlib.util.find_spec("pex") is None:
        raise BuildError(f"pex is not installed for {sys.executable}; install the build tools "
                         f"with: {sys.executable} -m pip install -r requirements-dev.txt")
    command = [sys.executable, "-m", "pex",
               "--no-pypi", "--find-links", wheelhouse, *requirement_args(requirements_files),
               "--sources-directory", source_dir, "--entry-point", entry_point,
               "--venv", "--no-emit-warnings", "--output-file", out]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode != 0:
        tail = "\n  ".join((built.stderr or built.stdout).strip().splitlines()[-10:])
        raise BuildError(f"pex failed (exit {built.returncode}):\n  {tail}")
