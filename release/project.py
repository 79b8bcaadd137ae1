"""What the source tree says about a build: name, version, Python and the pinned dependencies."""

from __future__ import annotations

import operator
import os
import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from typing import Mapping

from . import BuildError

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([A-Za-z0-9.+!_-]+)$")
_CLAUSE = re.compile(r"^(>=|<=|==|!=|>|<)\s*(\d+(?:\.\d+)*)$")
_COMPARE = {">=": operator.ge, "<=": operator.le, "==": operator.eq, "!=": operator.ne,
            ">": operator.gt, "<": operator.lt}
# 1980-01-01: the earliest time a zip entry (inside the PEX) can carry.
_FALLBACK_EPOCH = 315532800


@dataclass(frozen=True)
class Project:
    root: str
    name: str
    version: str
    requires_python: str
    # `build.py release --config FILE`: another settings file than the project's vm.yml (an
    # example's); the app it names is still looked for in the project.
    config: str | None = None

    @property
    def vm_yml(self) -> str:
        return self.config or os.path.join(self.root, "vm.yml")

    @property
    def requirements_file(self) -> str:
        return os.path.join(self.root, "requirements.txt")

    def build_dir(self, env: str | None = None) -> str:
        return os.path.join(self.root, "_build", env) if env else os.path.join(self.root, "_build")


def read_project(root: str) -> Project:
    path = os.path.join(root, "pyproject.toml")
    try:
        with open(path, "rb") as f:
            meta = tomllib.load(f).get("project", {})
    except OSError as exc:
        raise BuildError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise BuildError(f"{path}: not valid TOML: {exc}") from None
    for key in ("name", "version"):
        if not isinstance(meta.get(key), str):
            raise BuildError(f"{path}: [project] needs a {key}")
    return Project(root, meta["name"], meta["version"], meta.get("requires-python", ""))


def read_pins(path: str) -> tuple[str, ...]:
    """The run-time dependencies a requirements file lists (gossipy's, or an app's), each
    pinned as name==version (a release is exact)."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as exc:
        raise BuildError(f"{path}: cannot read: {exc.strerror}") from None
    pins = []
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not _PIN.match(line):
            raise BuildError(f"{path}, line {number}: {line!r} is not pinned as name==version; "
                             f"a release holds exact versions")
        pins.append(line)
    return tuple(pins)


def check_python(project: Project) -> str:
    """The build interpreter's "X.Y", if it satisfies requires-python: the PEX's wheels are
    chosen for it, and with include_python it is the runtime shipped."""
    current = sys.version_info[:2]
    for clause in filter(None, (c.strip() for c in project.requires_python.split(","))):
        match = _CLAUSE.match(clause)
        if not match:
            raise BuildError(f"pyproject.toml: requires-python clause {clause!r} is not understood")
        op, version = match.groups()
        wanted = tuple(int(p) for p in version.split("."))[:2]
        if not _COMPARE[op](current, wanted):
            raise BuildError(f"this build runs on Python {current[0]}.{current[1]} ({sys.executable}), "
                             f"but pyproject.toml requires {project.requires_python}; run build.py "
                             f"with a matching Python")
    return f"{current[0]}.{current[1]}"


def source_date_epoch(project: Project, environ: Mapping[str, str], env_var: str) -> tuple[int, str]:
    """The timestamp of every archive entry, and where it came from: $SOURCE_DATE_EPOCH, else
    the last commit's time, so that rebuilding the same tree gives the same bytes."""
    if environ.get(env_var):
        try:
            return int(environ[env_var]), env_var
        except ValueError:
            raise BuildError(f"{env_var}={environ[env_var]!r}: expected seconds since 1970") from None
    try:
        out = subprocess.run(["git", "-C", project.root, "log", "-1", "--format=%ct"],
                             capture_output=True, text=True, check=True).stdout.strip()
        return max(int(out), _FALLBACK_EPOCH), "the last commit"
    except (OSError, subprocess.CalledProcessError, ValueError):
        return _FALLBACK_EPOCH, "a fixed date (no git history)"
