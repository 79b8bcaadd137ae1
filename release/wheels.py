"""The local wheelhouse: the pinned run-time wheels, fetched once, so later builds are offline."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Callable, Mapping, Sequence

from . import BuildError


def default_wheelhouse(environ: Mapping[str, str], env_var: str) -> str:
    if environ.get(env_var):
        return os.path.abspath(environ[env_var])
    cache = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "gossipy", "wheels")


def _pip_download(requirements_files: Sequence[str], wheelhouse: str,
                  offline: bool) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
               "--only-binary=:all:", "--dest", wheelhouse, *requirement_args(requirements_files)]
    if offline:
        # --isolated: no pip configuration may add an index; only the wheelhouse counts.
        command += ["--isolated", "--no-index", "--find-links", wheelhouse]
    return subprocess.run(command, capture_output=True, text=True)


def requirement_args(requirements_files: Sequence[str]) -> list[str]:
    """``-r FILE`` for each file: pip and pex resolve them together, as one set of pins."""
    return [arg for path in requirements_files for arg in ("-r", path)]


def ensure_wheels(requirements_files: Sequence[str], wheelhouse: str, say: Callable[[str], None]) -> None:
    """Makes sure ``wheelhouse`` holds a wheel for every pin and every dependency of one."""
    os.makedirs(wheelhouse, exist_ok=True)
    if _pip_download(requirements_files, wheelhouse, offline=True).returncode == 0:
        say(f"all pinned wheels already cached in {wheelhouse}")
        return
    say(f"fetching the pinned wheels into {wheelhouse} (once; later builds are offline)")
    fetched = _pip_download(requirements_files, wheelhouse, offline=False)
    if fetched.returncode != 0:
        tail = "\n  ".join((fetched.stderr or fetched.stdout).strip().splitlines()[-5:])
        raise BuildError(f"cannot fetch the pinned wheels of {' and '.join(requirements_files)} "
                         f"(no network, and not all cached in {wheelhouse}):\n  {tail}")
