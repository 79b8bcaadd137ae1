"""Cluster lifecycle timings: a new node linking to a running cluster, a killed node and a frozen
node being noticed, and a release's ``bin/gossipy foreground`` starting to serve.

Each wait polls ``GET /cluster`` every few milliseconds and is bounded.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from typing import Any, Iterator

import yaml

from . import procs, systems

POLL = 0.005


def _lists(node: systems.RunningServer, name: str) -> bool | None:
    try:
        return name in node.cluster(0.5)["nodes"]
    except (OSError, ValueError, KeyError):
        return None


def _record(workload: str, what: str, seconds: float | None, **more: Any) -> dict[str, Any]:
    return {"system": "lifecycle", "workload": workload, "what": what,
            "seconds": round(seconds, 3) if seconds is not None else None, **more}


def cluster_events(outdir: str, core: int | None, src: str = systems.REPO) -> Iterator[dict[str, Any]]:
    cluster = systems.Gossipy(os.path.join(outdir, "nodes"), src=src, core=core, label="lifecycle")
    try:
        cluster.start()
        members = list(cluster.nodes)
        hosts = [n.host for n in members]
        joiner_host = systems.ADDRESSES["gossipy-joiner"]
        joiner_name = cluster.node_name(joiner_host)

        # A new node, told about the members, joins the running cluster.
        t0 = time.monotonic()
        joiner = cluster.start_member("joiner", joiner_host, hosts)
        serving = linked = None
        deadline = t0 + 30
        while time.monotonic() < deadline and linked is None:
            if not joiner.proc.alive():
                raise RuntimeError(f"the joining node exited:\n{joiner.proc.log_tail()}")
            if serving is None:
                try:
                    joiner.cluster(0.5)
                    serving = time.monotonic() - t0
                except OSError:
                    pass
            if serving is not None and systems.meshed(members + [joiner]):
                linked = time.monotonic() - t0
            time.sleep(POLL)
        yield _record("join", "start → linked to every member, and every member to it", linked,
                      serving_seconds=round(serving, 3) if serving is not None else None,
                      linked_after_serving=round(max(0.0, linked - serving), 3) if linked and serving else None,
                      note=f"serving after {serving:.2f} s (process start, imports, boot sync)" if serving else "never served")

        # SIGKILL: the kernel closes its streams, so the others should notice at once.
        t0 = time.monotonic()
        joiner.proc.signal(signal.SIGKILL)
        noticed = _wait_gone(members, joiner_name, 30)
        yield _record("kill", "SIGKILL → no member lists it", noticed - t0 if noticed else None,
                      note="streams closed by the kernel")
        joiner.proc.stop()
        cluster.nodes.remove(joiner)

        # SIGSTOP: the streams stay open and silent; only the tick timeout can tell.
        ticktime = 10.0
        joiner = cluster.start_member("joiner2", joiner_host, hosts)
        procs.wait_for("the joiner in the mesh", lambda: systems.meshed(members + [joiner]), 30)
        t0 = time.monotonic()
        joiner.proc.signal(signal.SIGSTOP)
        noticed = _wait_gone(members, joiner_name, ticktime * 2 + 5)
        yield _record("freeze", "SIGSTOP → no member lists it", noticed - t0 if noticed else None,
                      note=f"net_ticktime {ticktime:.0f} s (the default)")
        joiner.proc.signal(signal.SIGKILL)
        joiner.proc.stop()
        cluster.nodes.remove(joiner)
    finally:
        cluster.stop()


def _wait_gone(members: list[systems.RunningServer], name: str, timeout: float) -> float | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_lists(m, name) is False for m in members):
            return time.monotonic()
        time.sleep(POLL)
    return None


def release_foreground(outdir: str, core: int | None, build: bool) -> Iterator[dict[str, Any]]:
    """``bin/gossipy foreground`` of the prod release: time to serve, cold and warm."""
    repo = systems.REPO
    if not os.path.exists(os.path.join(repo, "build.py")):
        yield _record("release-foreground", "bin/gossipy foreground → serving", None,
                      note="skipped: build.py is not in this checkout yet")
        return
    tarballs = sorted(glob.glob(os.path.join(repo, "_build", "prod", "rel", "*", "releases", "*", "*.tar.gz")))
    built_now = None
    if not tarballs or build:
        t0 = time.monotonic()
        done = subprocess.run([sys.executable, "build.py", "release", "--env=prod"], cwd=repo,
                              capture_output=True, text=True, timeout=600)
        built_now = time.monotonic() - t0
        if done.returncode != 0:
            yield _record("release-foreground", "bin/gossipy foreground → serving", None,
                          note=f"skipped: the release build failed: {(done.stderr or done.stdout).strip()[-300:]}")
            return
        tarballs = sorted(glob.glob(os.path.join(repo, "_build", "prod", "rel", "*", "releases", "*", "*.tar.gz")))
    if not tarballs:
        yield _record("release-foreground", "bin/gossipy foreground → serving", None,
                      note="skipped: no release tarball under _build/prod")
        return
    tarball = tarballs[-1]
    root = os.path.join(outdir, "release")
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    with tarfile.open(tarball) as tar:
        tar.extractall(root, filter="tar")
    host = systems.ADDRESSES["release"]
    # Only configuration changes, as the article allows: listen on this benchmark's loopback
    # address instead of every interface, on free ports.
    settings_files = glob.glob(os.path.join(root, "releases", "*", "vm.yml"))
    for path in settings_files:
        with open(path) as f:
            data = yaml.safe_load(f)
        data.setdefault("endpoint", {})["host"] = host
        data.setdefault("node", {})["dist_port"] = procs.free_port(host)
        with open(path, "w") as f:
            yaml.safe_dump(data, f)
    tmp = os.path.join(outdir, "release-tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    age = time.time() - os.path.getmtime(tarball)
    for attempt in ("cold", "warm"):
        port = procs.free_port(host)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RELEASE_", "PEX_", "PYTHON"))}
        env.update(PORT=str(port), RELEASE_TMP=tmp, RELEASE_DISTRIBUTION="name",
                   RELEASE_NODE=f"gossipy@{host}", RELEASE_SYNC_NODES="")
        t0 = time.monotonic()
        proc = procs.Proc(f"release-{attempt}", [os.path.join(root, "bin", "gossipy"), "foreground"], env=env,
                          log_path=os.path.join(outdir, f"release-{attempt}.log"), core=core)
        node = systems.RunningServer("release", host, port, proc)
        try:
            node.wait_serving(60)
            seconds: float | None = time.monotonic() - t0
        except (TimeoutError, RuntimeError) as exc:
            seconds = None
            error = str(exc)
        proc.stop()
        note = ("first start: the PEX unpacks into RELEASE_TMP" if attempt == "cold"
                else "second start: the PEX already unpacked")
        if seconds is None:
            note += f"; did not serve: {error}"
        yield _record("release-" + attempt, "bin/gossipy foreground → serving", seconds, note=note,
                      tarball=os.path.relpath(tarball, repo), tarball_age_s=round(age),
                      build_seconds=round(built_now, 1) if built_now else None)


def run_all(outdir: str, core: int | None, args: argparse.Namespace,
            src: str = systems.REPO) -> Iterator[dict[str, Any]]:
    try:
        yield from cluster_events(outdir, core, src)
    except Exception as exc:
        yield {"system": "lifecycle", "workload": "error", "error": str(exc)[:2000]}
    try:
        yield from release_foreground(outdir, core, getattr(args, "build_release", False))
    except Exception as exc:
        yield {"system": "lifecycle", "workload": "error", "error": str(exc)[:2000]}
