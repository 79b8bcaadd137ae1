"""The notifications example's parts, driven as its README says: its scripts (mint_token.py,
publish.py, run from the repository's root with only the environment they name) and a
phoenix.js client per user (tests/js/notifications_client.mjs). For tests/release and tests/e2e."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from . import ROOT
from .requirements import need

EXAMPLE = Path("examples/notifications")


def example(script: str, *args: str, **env: str) -> str:
    """What one of the example's scripts prints, asserting it succeeded."""
    done = subprocess.run([sys.executable, str(EXAMPLE / script), *args], cwd=ROOT,
                          env={"PATH": "/usr/bin:/bin", **env}, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, f"{script} {' '.join(args)} exited with {done.returncode}:\n{done.stderr}"
    return done.stdout


def publish(url: str, api_key: str, user_id: str, message: str) -> dict[str, object]:
    answer: dict[str, object] = json.loads(example("publish.py", "--url", url, user_id, message,
                                                   GOSSIPY_API_KEY=api_key))
    return answer


class User:
    """A phoenix.js client that connects to ``socket_url`` with a token for ``user_id`` (from
    mint_token.py) and joins ``topic``; :meth:`line` reads what it saw, one step at a time."""

    def __init__(self, js_modules: Path, socket_url: str, topic: str, user_id: str, jwt_secret: str) -> None:
        token = example("mint_token.py", user_id, GOSSIPY_JWT_SECRET=jwt_secret).strip()
        self.process = subprocess.Popen([need("node"), "notifications_client.mjs", socket_url, topic, token],
                                        cwd=js_modules, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)

    def line(self) -> dict[str, object]:
        """The client's next line; it prints each within its own 5 s timeouts, or exits."""
        assert self.process.stdout is not None
        text = self.process.stdout.readline()
        assert text, f"the client exited ({self.process.wait()}) without a line"
        seen: dict[str, object] = json.loads(text)
        return seen

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()
