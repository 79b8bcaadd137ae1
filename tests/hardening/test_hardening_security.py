"""Where the cookie must never be, what the compose file must not publish, and that a prod node
with a weak or no cookie does not start (``python -m server``; which cookies are refused, and
how, is tested in process: tests/test_settings_unit.py).

Elsewhere: the cookie on the wire (tests/hardening/test_hardening_cluster.py captures the peer
streams through a relay), in ``describe`` (tests/test_node.py::test_describe_masks_the_cookie,
tests/release/test_release_boot_script.py::test_describe_shows_the_embedded_prod_settings_with_the_cookie_masked),
in a release node's arguments and log (test_release_boot_script.py::
test_start_ping_nodes_pid_restart_stop_of_a_two_node_cluster); check_origin on by default
(tests/test_node.py::test_check_origin_refuses_another_host_by_default, tests/browser/
test_browser_check_origin.py: a cross-origin page is refused).
"""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from server.settings import Distribution

from support import ROOT
from support.node_processes import COOKIE, NodeProcesses
from support.server_process import run_node


def _published_container_ports(service: dict) -> list[int]:
    """The container ports of a compose service's ``ports`` (short and long syntax)."""
    published = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            target = entry["target"]
        else:  # "[ip:]host:container[/proto]", "container", or a range "4000-4001"
            target = str(entry).split("/")[0].rsplit(":", 1)[-1]
        first, _, last = str(target).partition("-")
        published.extend(range(int(first), int(last or first) + 1))
    return published


def test_the_compose_file_does_not_publish_the_distribution_port() -> None:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    vm = yaml.safe_load((ROOT / "vm.yml").read_text())
    dist_ports = {Distribution.port, (vm.get("node") or {}).get("dist_port", Distribution.port)}
    for env in (vm.get("environments") or {}).values():
        dist_ports.add(((env or {}).get("node") or {}).get("dist_port", Distribution.port))
    assert compose["services"], compose
    for name, service in compose["services"].items():
        assert service.get("network_mode") != "host", f"{name}: host networking exposes every port"
        assert not set(_published_container_ports(service)) & dist_ports, f"{name} publishes {service['ports']}"
    exposed = re.findall(r"^\s*EXPOSE\s+(.+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert exposed and not {int(p.split("/")[0]) for line in exposed for p in line.split()} & dist_ports


def test_the_port_parser_reads_every_syntax() -> None:
    service = {"ports": ["4001:4000", "127.0.0.1:4370:4370/tcp", "4371", "5000-5001:6000-6001",
                         {"target": 4372, "published": 1}]}
    assert _published_container_ports(service) == [4000, 4370, 4371, 6000, 6001, 4372]


def _prod_vm_yml(folder: Path, cookie: str) -> Path:
    path = folder / "vm.yml"
    path.write_text(yaml.safe_dump({
        "environments": {"prod": {"cookie": cookie}},
        "node": {"name": "gossipy@127.0.0.2"},
        "endpoint": {"host": "127.0.0.2", "port": 0},
    }))
    return path


def test_a_prod_node_refuses_to_start_with_a_weak_cookie(tmp_path) -> None:
    cookie = "changemechangeme"
    config = _prod_vm_yml(tmp_path, cookie)
    for command in ("describe", "foreground"):
        done = run_node("--config", str(config), "--env", "prod", command, timeout=10)
        assert done.returncode == 2, (cookie, done.stdout, done.stderr)
        [line] = done.stderr.splitlines()
        assert "prod cookie is too weak" in line, line
        assert len(cookie) < 8 or cookie not in line, line  # the refusal does not echo the secret
        assert "serving" not in done.stdout + done.stderr


def test_a_prod_node_refuses_to_start_without_a_cookie(tmp_path) -> None:
    config = _prod_vm_yml(tmp_path, "k7Qv2Lx9Rt4Wp8Zs3Hn6Jd1Fb5Gc0Ym")
    done = run_node("--config", str(config), "--env", "prod", "foreground", env={"RELEASE_COOKIE": ""})
    assert done.returncode == 2, done.stderr
    [line] = done.stderr.splitlines()
    assert "cookie" in line and "Traceback" not in done.stderr


async def test_the_cookie_is_in_no_argument_and_no_log_line_of_a_node(tmp_path) -> None:
    env_cookie = "from-the-environment-3f9a1c77d2"
    async with NodeProcesses(tmp_path) as cluster:
        from_file = cluster.start(2)
        from_env = cluster.start(3, sync=[2], env={"RELEASE_COOKIE": COOKIE})
        stranger = cluster.start(4, sync=[2], env={"RELEASE_COOKIE": env_cookie},
                                 sections={"kernel": {"sync_nodes_timeout": 300}})
        await cluster.async_wait_for_mesh([from_file, from_env])
        await from_file.async_wait_for_line(r"refused connection from 127\.0\.0\.4:\d+ \(claims gossipy@127\.0\.0\.4\): bad_cookie")
        await stranger.async_wait_for_line(r"cannot connect to gossipy@127\.0\.0\.2 .*bad_cookie")
        for node in (from_file, from_env, stranger):
            assert "--config" in node.cmdline()
            for secret in (COOKIE, env_cookie):
                assert secret not in node.cmdline(), node.cmdline()
                assert secret not in node.log()
            node.assert_clean()
