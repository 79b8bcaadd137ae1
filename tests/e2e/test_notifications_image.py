"""The Docker image of a release built with your own app (the notifications example): the
repository's Dockerfile, unchanged, runs it; a phoenix.js client with a token gets what the
backend publishes."""

from __future__ import annotations

import secrets
import shutil
from pathlib import Path

import pytest
import yaml

from support import e2e_harness
from support.e2e_harness import HOST_PORTS, Cluster, ReleaseTree, cluster_view, log
from support.notifications_user import EXAMPLE, User, publish
from support.server_process import wait_until

pytestmark = pytest.mark.e2e


def test_the_image_of_a_release_with_the_example_app_serves_it(tmp_path: Path, js_modules: Path,
                                                              request: pytest.FixtureRequest) -> None:
    e2e_harness.live_progress(request.config)
    client = e2e_harness.docker_engine()
    api_key, jwt_secret = secrets.token_urlsafe(32), secrets.token_urlsafe(48)
    tree = ReleaseTree.copy_repository(tmp_path / "tree")
    cluster = Cluster(client, tree)
    user = None
    try:
        tree.build("release", f"--config={EXAMPLE / 'vm.yml'}", "--env=prod")
        compose_file = tree.path / "docker-compose.yml"
        compose = yaml.safe_load(compose_file.read_text())
        compose["services"]["ws1"]["environment"] = {"GOSSIPY_API_KEY": api_key, "GOSSIPY_JWT_SECRET": jwt_secret}
        compose_file.write_text(yaml.safe_dump(compose, sort_keys=False))
        cluster.up("ws1")
        port = HOST_PORTS["ws1"]
        wait_until(lambda: cluster_view(port), timeout=30, what=f"ws1 serving:\n{cluster.describe_state()}")
        assert "app examples.notifications.app: topics user:*" in cluster.logs("ws1")

        user = User(js_modules, f"ws://127.0.0.1:{port}/socket", "user:42", "42", jwt_secret)
        assert user.line() == {"join": {"status": "ok", "response": {}}}
        log("user 42 joined user:42 on ws1; publishing")
        assert publish(f"http://127.0.0.1:{port}", api_key, "42", "from the backend") == {"ok": True, "count": 1}
        assert user.line() == {"notification": {"message": "from the backend"}}
    finally:
        if user is not None:
            user.stop()
        cluster.remove()
        client.close()
        shutil.rmtree(tree.path, ignore_errors=True)  # the release build is tens of MB
