"""The notifications example as a user would run it: a prod release built with its vm.yml,
unpacked with no checkout and no python on the PATH, a phoenix.js client per user with a token
from mint_token.py, and events published by publish.py through the node's HTTP API. The node
gets its token secret and API key from the environment (GOSSIPY_JWT_SECRET, GOSSIPY_API_KEY)."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Callable, Iterator

import pytest

from released import TARBALL, Release, build, unpack
from support.checkout import copy_repository
from support.notifications_user import EXAMPLE, User, publish
from support.server_process import wait_until

API_KEY = secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(48)


@pytest.fixture(scope="module")
def notifications_root(workdir: Path) -> Path:
    project = copy_repository(workdir / "notifications-project")
    done = build(project, "release", f"--config={EXAMPLE / 'vm.yml'}", "--env=prod")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "app examples.notifications.app (packing examples)" in done.stdout
    return unpack(project / TARBALL, workdir / "unpacked" / "notifications")


@pytest.fixture
def node(notifications_root: Path, no_python_path: str, make_node: Callable[..., Release]) -> Release:
    node = make_node(notifications_root, no_python_path, GOSSIPY_API_KEY=API_KEY, GOSSIPY_JWT_SECRET=JWT_SECRET)
    node.foreground()
    wait_until(node.serving, timeout=30, what=f"the release serving:\n{node.foreground_log()}")
    return node


@pytest.fixture
def users(js_modules: Path, node: Release) -> Iterator[Callable[[str, str], User]]:
    made: list[User] = []

    def user(topic: str, user_id: str) -> User:
        made.append(User(js_modules, f"ws://{node.host}:{node.port}/socket", topic, user_id, JWT_SECRET))
        return made[-1]

    yield user
    for one in made:
        one.stop()


def test_a_user_s_client_gets_what_the_backend_publishes_to_them(node: Release, users) -> None:
    alice = users("user:42", "42")
    assert alice.line() == {"join": {"status": "ok", "response": {}}}
    assert publish(f"http://{node.host}:{node.port}", API_KEY, "42", "Your order has shipped") == {"ok": True,
                                                                                                "count": 1}
    assert alice.line() == {"notification": {"message": "Your order has shipped"}}


def test_another_user_s_token_cannot_join_user_42(node: Release, users) -> None:
    mallory = users("user:42", "7")  # a valid token, for user 7
    assert mallory.line() == {"join": {"status": "error", "response": {"reason": "unauthorized"}}}
    assert "refusing join of 'user:42'" in node.foreground_log()
