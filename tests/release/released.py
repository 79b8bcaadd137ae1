"""Helpers for the release tests: a project copy where build.py runs, and an unpacked release
driven through bin/gossipy with a clean environment (no checkout, no Tornado for any python
on its PATH, traffic on 127.0.0.0/8 only)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

from release.project import read_project

from support.server_process import free_port

REPO = Path(__file__).resolve().parents[2]
VERSION = read_project(str(REPO)).version
TARBALL = Path(f"_build/prod/rel/gossipy/releases/{VERSION}/gossipy.tar.gz")
# The same bytes under a path without the version: what the Dockerfile adds.
IMAGE_TARBALL = Path("_build/prod/rel/gossipy/gossipy.tar.gz")
# What bin/gossipy calls besides sh builtins (and ldd, which the PEX asks whether the libc is
# musl; Debian's libc-bin has it): a PATH of just these has no python at all.
SCRIPT_TOOLS = ("dirname", "basename", "readlink", "cat", "mkdir", "tr", "grep", "tail", "head",
                "sleep", "setsid", "uname", "rm", "ldd")
# The tests' nodes: their own corner of 127.0.0.0/8.
HOSTS = ("127.0.4.1", "127.0.4.2")
# The ${VAR} the test vm.yml puts in endpoint.host: filled in at boot.
HOST_VAR = "GOSSIPY_TEST_HOST"


def build(project: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    environ.update(env or {})
    return subprocess.run([sys.executable, "build.py", *args], cwd=project, env=environ,
                          capture_output=True, text=True, timeout=300)


def unpack(tarball: Path, dest: Path) -> Path:
    dest.mkdir(parents=True)
    with tarfile.open(tarball) as tar:
        tar.extractall(dest, filter="tar")
    return dest


def bare_path(dest: Path, pythons: dict[str, str] | None = None) -> str:
    """A PATH folder with only what bin/gossipy needs, plus the given python links."""
    dest.mkdir(parents=True, exist_ok=True)
    for tool in SCRIPT_TOOLS:
        found = shutil.which(tool)
        assert found, f"{tool} is not installed"
        (dest / tool).symlink_to(found)
    for name, target in (pythons or {}).items():
        (dest / name).symlink_to(target)
    return str(dest)


class Release:
    """An unpacked release and one node's environment (its own RELEASE_TMP, address, ports)."""

    def __init__(self, root: Path, path: str, tmp: Path, host: str, **env: str) -> None:
        self.root = root
        self.host = host
        self.port = free_port([host])
        self.tmp = tmp
        self.env = {"PATH": path, "HOME": str(tmp), "LC_ALL": "C.UTF-8", "RELEASE_TMP": str(tmp),
                    "PORT": str(self.port), HOST_VAR: host, "RELEASE_DISTRIBUTION": "none"}
        self.env.update(env)
        self.foreground_process: subprocess.Popen[str] | None = None

    def distributed(self, *peers: str) -> "Release":
        self.env.update(RELEASE_DISTRIBUTION="name", RELEASE_NODE=self.node,
                        RELEASE_SYNC_NODES=",".join(peers))
        return self

    @property
    def node(self) -> str:
        return f"gossipy@{self.host}"

    @property
    def script(self) -> Path:
        return self.root / "bin" / "gossipy"

    def run(self, *args: str, timeout: float = 60, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(self.script), *args], env={**self.env, **env}, cwd=self.root,
                              capture_output=True, text=True, timeout=timeout)

    def serving(self) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{self.port}/", timeout=1) as answer:
                return answer.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def foreground(self, **env: str) -> subprocess.Popen[str]:
        log = open(self.tmp / "foreground.log", "w")
        self.foreground_process = subprocess.Popen(
            [str(self.script), "foreground"], env={**self.env, **env}, cwd=self.root,
            stdout=log, stderr=subprocess.STDOUT, text=True)
        log.close()
        return self.foreground_process

    def foreground_log(self) -> str:
        return (self.tmp / "foreground.log").read_text()

    def pong(self) -> bool:
        return self.run("ping").stdout.strip() == "pong"

    def cleanup(self) -> None:
        """Stops whatever this node left running, by its own pid."""
        process = self.foreground_process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        pid_file = self.tmp / "gossipy.pid"
        if pid_file.exists() and self.run("pid").returncode == 0:
            self.run("stop")
