"""The browser test again, against the article's Docker cluster: ws1 on 127.0.0.1:4001 and
ws2 on 127.0.0.1:4002, built and run by the e2e harness (tests/support/e2e_harness.py).

* ``GOSSIPY_BROWSER_CLUSTER=4001,4002`` (ports of a cluster someone already runs, e.g.
  ``docker-compose up``): the pages chat across it; nothing is killed.
* otherwise, with a Docker engine: the harness builds a release of the working tree, brings up
  its compose project, and the test also kills ws2 (the page on 4002 shows it is reconnecting)
  and starts it again (the page recovers by itself, as in the article: "Everything recovers").
  The project is removed at the end, pass or fail.
* no Docker engine: skipped locally, a failure under CI=true (tests/support/requirements.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Iterator

import pytest

from . import chat_page
from support.requirements import missing

ENV_PORTS = "GOSSIPY_BROWSER_CLUSTER"


@dataclass
class DockerCluster:
    ports: list[int]
    names: list[str] | None          # gossipy@ws1, ... when known
    compose: Any = None              # the harness's Cluster when this test runs its own

    def url(self, index: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.ports[index]}{path}"


def _harness():
    try:
        import docker

        from support import baseimage, e2e_harness
    except ImportError as exc:
        missing(f"the e2e harness cannot be imported ({exc}); pip install -r requirements-dev.txt")
    return docker, e2e_harness, baseimage


@pytest.fixture(scope="module")
def docker_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DockerCluster]:
    if os.environ.get(ENV_PORTS):
        ports = [int(p) for p in os.environ[ENV_PORTS].split(",") if p.strip()]
        assert len(ports) >= 2, f"{ENV_PORTS}={os.environ[ENV_PORTS]!r}: expected two ports or more"
        yield DockerCluster(ports, None)
        return
    docker, harness, baseimage = _harness()
    try:
        client = docker.from_env(timeout=120)
        client.ping()
    except docker.errors.DockerException as exc:
        missing(f"no Docker engine reachable ({exc}); `bash .ci/setup-machine` starts one, "
                f"or set {ENV_PORTS}=4001,4002 for a cluster already running")
    try:
        harness.compose_command()
    except harness.CommandError as exc:
        missing(str(exc))
    baseimage.ensure_base_image(client, log=harness.log)
    tree = harness.ReleaseTree.copy_repository(tmp_path_factory.mktemp("browser-docker") / "tree")
    tree.release()
    cluster = harness.Cluster(client, tree)
    try:
        cluster.up()
        cluster.wait_mesh(["ws1", "ws2"])
        yield DockerCluster([harness.HOST_PORTS["ws1"], harness.HOST_PORTS["ws2"]],
                            [harness.node("ws1"), harness.node("ws2")], cluster)
    finally:
        cluster.remove()
        client.close()


def wait_shown(page, text: str, timeout: float = 10.0) -> None:
    page.wait_for("(text) => document.getElementById('messages').textContent.split('\\n').includes(text)",
                  text, timeout=timeout, what=f"{text!r} on {page.name}")


@pytest.mark.e2e
@pytest.mark.browser
def test_pages_on_the_docker_cluster(docker_cluster: DockerCluster, pages) -> None:
    one, two = docker_cluster.ports[:2]
    # The article's page, as the README says: both from :4001, ?port= picks the node.
    article_1 = pages.open("ws-4001", docker_cluster.url(0, f"/ws.html?port={one}"))
    article_2 = pages.open("ws-4002", docker_cluster.url(0, f"/ws.html?port={two}"))
    alice = pages.open("alice-4001", docker_cluster.url(0))
    bob = pages.open("bob-4002", docker_cluster.url(1), phone=True)
    chat_page.join(alice, "alice", "1")
    chat_page.join(bob, "bob", "1")

    names = docker_cluster.names
    if names is None:  # a cluster we did not start: learn its names from the pages
        names = [alice.text("#node-name"), bob.text("#node-name")]
    chat_page.wait_cluster(alice, [names[0], names[1]], timeout=20)
    chat_page.wait_cluster(bob, [names[1], names[0]], timeout=20)

    chat_page.say(alice, "hello from 4001")
    chat_page.assert_recent(chat_page.wait_message(bob, "alice", "hello from 4001"))
    chat_page.say(bob, "hello from 4002")
    chat_page.wait_message(alice, "bob", "hello from 4002")
    for article in (article_1, article_2):
        wait_shown(article, "hello from 4001")
        wait_shown(article, "hello from 4002")
    article_2.fill("#shout-content", "typed on the article's page, via 4002")
    article_2.press("#shout-content", "Enter")
    chat_page.wait_message(alice, "anonymous", "typed on the article's page, via 4002")
    wait_shown(article_1, "typed on the article's page, via 4002")
    pages.screenshot(alice, "docker-chat-desktop")
    pages.screenshot(bob, "docker-chat-phone")

    compose = docker_cluster.compose
    if compose is None:
        pages.assert_no_page_errors()
        return

    # `docker-compose kill ws2`: the page on 4002 says it is reconnecting; 4001 chats on.
    compose.kill("ws2")
    chat_page.wait_state(bob, "reconnecting", timeout=15)
    pages.screenshot(bob, "docker-ws2-killed-phone")
    chat_page.wait_cluster(alice, [names[0]], timeout=45)  # ws1 notices ws2 is gone
    chat_page.say(alice, "ws2 is down, 4001 still works")
    wait_shown(article_1, "ws2 is down, 4001 still works")

    # `docker-compose start ws2`: the page on 4002 reconnects and rejoins by itself.
    compose.start("ws2")
    chat_page.wait_state(bob, "joined", timeout=40)
    chat_page.wait_cluster(bob, [names[1], names[0]], timeout=30)
    chat_page.wait_cluster(alice, [names[0], names[1]], timeout=30)
    chat_page.say(bob, "ws2 is back")
    chat_page.wait_message(alice, "bob", "ws2 is back")
    chat_page.say(alice, "welcome back")
    chat_page.wait_message(bob, "alice", "welcome back")
    pages.screenshot(bob, "docker-ws2-back-phone")
    pages.assert_no_page_errors()
