"""Release builds, made once per session in a copy of the repository, and unpacked releases.

The copy's vm.yml differs from the repository's in two run-time details only: the distribution
port is a free one (the tests' nodes use 127.0.4.x), and endpoint.host is ``${GOSSIPY_TEST_HOST}``
so that every boot exercises the substitution.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import yaml

from released import HOST_VAR, HOSTS, TARBALL, Release, bare_path, build, unpack
from support.checkout import copy_repository
from support.requirements import missing
from support.server_process import free_port

SYSTEM_PYTHON = "/usr/bin/python3.11"


@dataclass
class Build:
    tarball: Path           # a copy of the first build's tarball
    rebuilt_tarball: Path   # the second build's, in the project
    output: str
    rebuild_output: str
    seconds: float


@pytest.fixture(scope="session")
def workdir() -> Iterator[Path]:
    """The session's folder. Not pytest's tmp_path: a concurrent pytest run of the same user
    prunes old pytest-of-<user> folders, which must not take builds away mid-session."""
    path = Path(tempfile.mkdtemp(prefix="gossipy-release-tests-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def project(workdir: Path) -> Path:
    path = copy_repository(workdir / "project")
    vm_yml = path / "vm.yml"
    doc = yaml.safe_load(vm_yml.read_text())
    doc["node"]["dist_port"] = free_port(HOSTS)
    doc["endpoint"]["host"] = "${%s}" % HOST_VAR
    vm_yml.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def _build(project: Path, env: str) -> tuple[str, float]:
    started = time.monotonic()
    done = build(project, "release", f"--env={env}")
    assert done.returncode == 0, f"build.py release --env={env} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout, time.monotonic() - started


@pytest.fixture(scope="session")
def prod_build(project: Path, workdir: Path) -> Build:
    """Two builds of the same tree: the first tarball kept aside, the second left in place."""
    output, seconds = _build(project, "prod")
    kept = workdir / "first-build.tar.gz"
    shutil.copy2(project / TARBALL, kept)
    rebuild_output, _ = _build(project, "prod")
    return Build(kept, project / TARBALL, output, rebuild_output, seconds)


@pytest.fixture(scope="session")
def dev_tarball(project: Path, prod_build: Build) -> Path:
    _build(project, "dev")
    return project / str(TARBALL).replace("/prod/", "/dev/")


@pytest.fixture(scope="session")
def prod_root(prod_build: Build, workdir: Path) -> Path:
    return unpack(prod_build.tarball, workdir / "unpacked" / "prod")


@pytest.fixture(scope="session")
def dev_root(dev_tarball: Path, workdir: Path) -> Path:
    return unpack(dev_tarball, workdir / "unpacked" / "dev")


@pytest.fixture(scope="session")
def no_python_path(workdir: Path) -> str:
    """A PATH without any python: include_python releases must not need one."""
    return bare_path(workdir / "bin" / "no-python")


@pytest.fixture(scope="session")
def system_python_path(workdir: Path) -> str:
    """A PATH whose only python is the system's 3.11, which cannot import Tornado."""
    if not Path(SYSTEM_PYTHON).exists():
        missing(f"{SYSTEM_PYTHON} is not installed (Debian: apt-get install python3.11)")
    probe = subprocess.run([SYSTEM_PYTHON, "-I", "-c", "import tornado"], capture_output=True)
    assert probe.returncode != 0, f"{SYSTEM_PYTHON} can import tornado; the test would prove nothing"
    return bare_path(workdir / "bin" / "system-python", {"python3": SYSTEM_PYTHON})


@pytest.fixture
def scratch(workdir: Path) -> Path:
    """A test's own folder (instead of tmp_path, for the reason given in ``workdir``)."""
    return Path(tempfile.mkdtemp(prefix="test-", dir=workdir))


@pytest.fixture
def make_node(scratch: Path) -> Iterator[Callable[..., Release]]:
    """``make_node(root, path, host=..., **env)``: a node environment, cleaned up after the test."""
    made: list[Release] = []

    def make(root: Path, path: str, host: str = HOSTS[0], **env: str) -> Release:
        tmp = scratch / f"node-{len(made)}"
        tmp.mkdir()
        node = Release(root, path, tmp, host, **env)
        made.append(node)
        return node

    yield make
    for node in made:
        node.cleanup()
