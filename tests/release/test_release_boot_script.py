"""bin/gossipy of an unpacked prod release (include_python: true), on a PATH without python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

from released import HOST_VAR, HOSTS, Release
from support.requirements import require
from support.server_process import wait_until


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.lstat().st_size, p.lstat().st_mtime_ns) for p in root.rglob("*")}


def test_usage_version_and_unknown_commands(prod_root: Path, no_python_path: str, make_node) -> None:
    node = make_node(prod_root, no_python_path)
    bare = node.run()
    assert bare.returncode == 1 and "Usage: gossipy COMMAND" in bare.stderr
    for command in ("foreground", "start", "stop", "restart", "ping", "pid", "version", "nodes", "describe",
                    "broadcast"):
        assert f"  {command} " in bare.stderr
    wrong = node.run("launch")
    assert wrong.returncode == 1
    assert "unknown command: launch" in wrong.stderr and "Usage:" in wrong.stderr
    assert node.run("help").returncode == 0
    assert node.run("version").stdout == "gossipy 0.0.1\n"


def test_describe_shows_the_embedded_prod_settings_with_the_cookie_masked(
        prod_root: Path, no_python_path: str, make_node) -> None:
    node = make_node(prod_root, no_python_path)
    del node.env["RELEASE_DISTRIBUTION"]  # the embedded sname applies
    done = node.run("describe")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["environment"] == "prod"
    assert described["endpoint"]["check_origin"] is False
    assert described["endpoint"]["host"] == node.host  # ${GOSSIPY_TEST_HOST}, filled in at boot
    distribution = described["distribution"]
    assert distribution["node"].startswith("gossipy@") and distribution["longnames"] is False  # sname
    assert distribution["cookie"] == "******"
    assert distribution["sync_nodes_optional"] == ["gossipy@ws1", "gossipy@ws2"]
    assert distribution["sync_nodes_timeout_ms"] == 10000
    assert described["tmp_dir"] == str(node.tmp)
    assert _embedded_cookie(prod_root) not in done.stdout + done.stderr


def _embedded_cookie(prod_root: Path) -> str:
    embedded = (prod_root / "releases/0.0.1/vm.yml").read_text()
    return next(line.split(":", 1)[1].strip().strip('"') for line in embedded.splitlines()
                if line.strip().startswith("cookie:"))


def test_environment_variables_override_the_embedded_settings(
        prod_root: Path, no_python_path: str, make_node) -> None:
    node = make_node(prod_root, no_python_path)
    done = node.run("describe", PORT="4999", RELEASE_DISTRIBUTION="name", RELEASE_NODE="gossipy@127.0.4.9",
                    RELEASE_SYNC_NODES="gossipy@127.0.4.10,gossipy@127.0.4.11",
                    RELEASE_COOKIE="an-overriding-cookie-of-some-length")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["endpoint"]["port"] == 4999
    assert described["distribution"]["node"] == "gossipy@127.0.4.9"
    assert described["distribution"]["longnames"] is True
    assert described["distribution"]["sync_nodes_optional"] == ["gossipy@127.0.4.10", "gossipy@127.0.4.11"]
    assert "an-overriding-cookie" not in done.stdout
    none = node.run("describe", RELEASE_DISTRIBUTION="none")
    assert json.loads(none.stdout)["distribution"]["node"] is None


def test_a_missing_variable_or_a_bad_override_is_one_clear_line_and_exit_2(
        prod_root: Path, no_python_path: str, make_node) -> None:
    node = make_node(prod_root, no_python_path)
    env = dict(node.env)
    del env[HOST_VAR]
    node.env = env
    unset = node.run("describe")
    assert unset.returncode == 2
    assert f"${{{HOST_VAR}}}" in unset.stderr and "endpoint.host" in unset.stderr and "line" in unset.stderr
    assert len(unset.stderr.strip().splitlines()) == 1, unset.stderr
    node.env[HOST_VAR] = node.host
    bad_port = node.run("describe", PORT="http")
    assert bad_port.returncode == 2 and "PORT='http'" in bad_port.stderr
    # start checks the settings before it detaches: the error reaches the terminal, no node runs
    start = node.run("start", PORT="http")
    assert start.returncode == 2 and "PORT='http'" in start.stderr
    assert node.run("pid").returncode == 1


def test_foreground_is_exec_d_serves_and_stops_on_sigterm(
        prod_root: Path, no_python_path: str, make_node) -> None:
    node = make_node(prod_root, no_python_path)
    before = _snapshot(prod_root)
    process = node.foreground(TMPDIR="/a-read-only-root")
    wait_until(node.serving, 30, f"the node to serve on {node.host}:{node.port}")
    # exec: the pid the caller (Docker) holds is the node's, and so is the pid file's
    assert (node.tmp / "gossipy.pid").read_text().strip() == str(process.pid)
    assert node.run("pid").stdout.strip() == str(process.pid)
    # nothing but RELEASE_TMP need be writable (a read-only root): temporary files go there too
    environ = dict(item.split("=", 1) for item in
                   Path(f"/proc/{process.pid}/environ").read_text().split("\0") if "=" in item)
    assert environ["TMPDIR"] == str(node.tmp / "tmp") and (node.tmp / "tmp").is_dir()
    # the bundled runtime runs, with the bundled libpython, not the build machine's
    exe = os.path.realpath(f"/proc/{process.pid}/exe")
    assert exe == str(prod_root / "python-3.11.7/bin/python3.11"), exe
    maps = Path(f"/proc/{process.pid}/maps").read_text()
    libpython = {line.split()[-1] for line in maps.splitlines() if "libpython" in line}
    assert libpython == {str(prod_root / "python-3.11.7/lib/libpython3.11.so.1.0")}, libpython
    process.send_signal(signal.SIGTERM)
    assert process.wait(15) == 0, node.foreground_log()
    # the release folder may be read-only: nothing was written into it
    assert _snapshot(prod_root) == before


def test_start_ping_nodes_pid_restart_stop_of_a_two_node_cluster(
        prod_root: Path, no_python_path: str, make_node) -> None:
    first = make_node(prod_root, no_python_path, host=HOSTS[0]).distributed()
    second = make_node(prod_root, no_python_path, host=HOSTS[1]).distributed(f"gossipy@{HOSTS[0]}")
    started = first.run("start")
    assert started.returncode == 0, started.stderr
    pid = first.run("pid").stdout.strip()
    assert f"started (pid {pid})" in started.stdout
    assert first.run("start").returncode == 1  # already running
    wait_until(first.pong, 30, "the first node to answer ping")
    assert second.run("start").returncode == 0
    wait_until(second.pong, 30, "the second node to answer ping")

    def members(node: Release) -> list[str]:
        return sorted(node.run("nodes").stdout.split())

    wait_until(lambda: members(first) == sorted([first.node, second.node]), 30, "the cluster to form")
    assert members(second) == sorted([first.node, second.node])
    assert wait_until(first.serving, 10, "the first node's HTTP port")
    log = first.tmp / "log" / "gossipy.log"
    assert "serving websockets" in log.read_text()
    # the cookie is in no node's arguments (ps shows them to every user) and in no log line
    cookie = _embedded_cookie(prod_root)
    for node in (first, second):
        arguments = Path(f"/proc/{node.run('pid').stdout.strip()}/cmdline").read_bytes()
        assert b"--config" in arguments and cookie.encode() not in arguments
        assert cookie not in (node.tmp / "log" / "gossipy.log").read_text()

    # ping goes to the node over its distribution channel, with the cookie
    wrong = first.run("ping", RELEASE_COOKIE="not-the-cookie-of-this-cluster")
    assert wrong.returncode != 0 and wrong.stdout.strip() != "pong"
    # and so does broadcast (its delivery to every node: tests/cluster/test_cluster_processes.py)
    published = second.run("broadcast", "room:lobby", "news", '{"body": "from the release"}')
    assert (published.returncode, published.stdout) == (0, "ok\n"), published.stderr

    restarted = second.run("restart")
    assert restarted.returncode == 0, restarted.stderr
    wait_until(second.pong, 30, "the restarted node to answer ping")

    for node in (second, first):
        node_pid = int(node.run("pid").stdout)
        stopped = node.run("stop")
        assert stopped.returncode == 0, stopped.stderr
        assert not Path(f"/proc/{node_pid}/cmdline").exists() or not Path(f"/proc/{node_pid}/cmdline").read_bytes()
        assert not (node.tmp / "gossipy.pid").exists()
        assert node.run("ping").returncode != 0
        again = node.run("stop")
        assert again.returncode == 1 and "not running" in again.stderr
        assert node.run("pid").returncode == 1


def test_a_symlink_to_the_script_finds_the_release(prod_root: Path, no_python_path: str,
                                                  make_node, scratch: Path) -> None:
    node = make_node(prod_root, no_python_path)
    link = scratch / "elsewhere" / "gossipy"
    link.parent.mkdir()
    link.symlink_to(os.path.relpath(prod_root / "bin" / "gossipy", link.parent))
    done = subprocess.run([str(link), "describe"], env=node.env, cwd=scratch, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["environment"] == "prod"


def test_a_symlink_as_tmp_folder_is_refused(prod_root: Path, no_python_path: str,
                                            make_node, scratch: Path) -> None:
    elsewhere = scratch / "elsewhere"
    elsewhere.mkdir()
    planted = scratch / "planted"
    planted.symlink_to(elsewhere)
    linked = make_node(prod_root, no_python_path).run("describe", RELEASE_TMP=str(planted))
    assert linked.returncode == 1 and "is a symlink" in linked.stderr
    assert not list(elsewhere.iterdir())


def test_another_user_s_tmp_folder_is_refused(prod_root: Path, no_python_path: str,
                                              make_node, scratch: Path) -> None:
    require(os.geteuid() == 0, "giving a folder to another user needs root")
    foreign = scratch / "foreign"
    foreign.mkdir()
    os.chown(foreign, 65534, 65534)
    taken = make_node(prod_root, no_python_path).run("start", RELEASE_TMP=str(foreign))
    assert taken.returncode == 1 and "belongs to another user" in taken.stderr
    assert not (foreign / "gossipy.pid").exists()
