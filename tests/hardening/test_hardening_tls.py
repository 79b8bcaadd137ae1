"""TLS for the peer streams (``node.tls``) between real node processes, with certificates of a
CA the test makes with the openssl command (Debian's openssl package).

The streams are TLS end to end (what a relay between the nodes sees is ciphertext); both ends
present a certificate of the cluster's CA and it must name their host; the cookie handshake
still runs inside; a node without TLS, or with another CA's certificate, or with a certificate
for another host, is refused and the log says why; ``ping`` speaks TLS too.
"""

from __future__ import annotations

import pytest
import yaml

from support.certificates import Certificates
from support.node_processes import COOKIE, NodeProcesses, address
from support.phoenix_client import TOPIC, join_room
from support.server_process import async_wait_until, run_node
from support.tcp_proxy import TcpProxy

pytestmark = pytest.mark.cluster


def tls_sections(tls: dict[str, str], bind: str | None = None) -> dict:
    node: dict = {"tls": tls}
    if bind:
        node["dist_bind"] = bind
    return {"node": node}


async def test_tls_nodes_mesh_their_streams_are_ciphertext_and_ping_speaks_tls(tmp_path) -> None:
    ca = Certificates(tmp_path / "ca", "gossipy test CA")
    async with NodeProcesses(tmp_path, addresses=range(2, 14)) as cluster:
        port = cluster.dist_port
        with TcpProxy((address(2), port), (address(12), port)) as to_a, \
                TcpProxy((address(3), port), (address(13), port)) as to_b:
            a, b = [cluster.spawn(i, sync=[2, 3], sections=tls_sections(ca.node(address(i)), address(10 + i)))
                    for i in (2, 3)]
            await async_wait_until(lambda: a.serving() and b.serving(), 15, "both nodes to serve")
            await cluster.async_wait_for_mesh([a, b])
            ca_, cb = await join_room(a, "2.0.0"), await join_room(b, "2.0.0")
            secret_words = "the eagle lands at midnight"
            await ca_.shout(TOPIC, {"message": secret_words})
            await cb.receive_until(lambda f: f.event == "shout" and f.payload["message"] == secret_words)
            captured = bytes(to_a.captured + to_b.captured)
            assert captured[:1] == b"\x16"  # a TLS handshake record
            for clear in (secret_words.encode(), COOKIE.encode(), b"gossipy@", b"room:1", b"challenge"):
                assert clear not in captured, clear
            asker = tmp_path / "ask.yml"
            asker.write_text(yaml.safe_dump(a.config))
            pinged = run_node("--config", str(asker), "ping")
            assert (pinged.returncode, pinged.stdout) == (0, "pong\n"), pinged.stderr
            for client in (ca_, cb):
                client.close()
            # Checked while the proxies still carry the mesh: once they close, each node
            # rightly warns that it cannot reach the other.
            for node in (a, b):
                assert node.has_line(r"listening for peer nodes on .* \(TLS\)")
                node.assert_clean()
                assert not node.warnings(), node.log()


@pytest.mark.parametrize("case", ["no tls", "another CA", "another host's certificate"])
async def test_a_node_without_the_clusters_certificate_is_refused_and_the_logs_say_why(tmp_path, case: str) -> None:
    ca = Certificates(tmp_path / "ca", "gossipy test CA")
    async with NodeProcesses(tmp_path) as cluster:
        member = cluster.start(2, sync=[3], sections={**tls_sections(ca.node(address(2))),
                                                      "kernel": {"sync_nodes_timeout": 0}})
        if case == "no tls":
            sections: dict = {}
        elif case == "another CA":
            sections = tls_sections(Certificates(tmp_path / "rogue", "a rogue CA").node(address(3)))
        else:  # a real certificate of the cluster's CA, but for 127.0.0.9, used by 127.0.0.3
            sections = tls_sections(ca.node(address(9)))
        stranger = cluster.start(3, sync=[2], sections={**sections, "kernel": {"sync_nodes_timeout": 500}})
        expected = {
            # the stranger dials the member; the member's TLS dial of the stranger is refused too
            "no tls": (r"cannot connect to gossipy@127\.0\.0\.2 .*closed",
                       r"cannot connect to gossipy@127\.0\.0\.3 .*TLS: .*\(does the peer have node\.tls\?\)"),
            "another CA": (r"cannot connect to gossipy@127\.0\.0\.2 .*TLS: the peer's certificate is not accepted",
                           r"cannot connect to gossipy@127\.0\.0\.3 .*TLS: the peer's certificate is not accepted"),
            "another host's certificate": (
                r"cannot connect to gossipy@127\.0\.0\.2 .*refused by the peer: not_allowed",
                r"cannot connect to gossipy@127\.0\.0\.3 .*TLS: the peer's certificate is not accepted "
                r"\(IP address mismatch"),
        }[case]
        await stranger.async_wait_for_line(expected[0], timeout=5)
        await member.async_wait_for_line(expected[1], timeout=8)
        if case == "another host's certificate":
            await member.async_wait_for_line(r"refused connection from 127\.0\.0\.3:\d+ \(claims gossipy@127\.0\.0\.3\): not_allowed: "
                              r"its certificate does not name 127\.0\.0\.3")
        assert member.connected() == stranger.connected() == []
        for node in (member, stranger):
            node.assert_clean()


def test_a_missing_certificate_file_stops_the_node_with_one_line(tmp_path) -> None:
    config = tmp_path / "vm.yml"
    config.write_text(yaml.safe_dump({
        "node": {"name": "gossipy@127.0.0.2", "cookie": COOKIE,
                 "tls": {"certfile": str(tmp_path / "none.pem"), "keyfile": str(tmp_path / "none.key"),
                         "cafile": str(tmp_path / "none-ca.pem")}},
        "endpoint": {"host": "127.0.0.2", "port": 0}}))
    done = run_node("--config", str(config), "foreground", timeout=20)
    assert done.returncode == 1
    [error] = [line for line in done.stdout.splitlines() + done.stderr.splitlines() if " ERROR " in line]
    assert "node.tls.cafile" in error and "none-ca.pem: no such file" in error
    assert "Traceback" not in done.stdout + done.stderr
