"""The official Phoenix JS client (npm ``phoenix`` 1.8 over ``ws``) against a real node."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from support.requirements import need
from support.server_process import ServerProcess


def test_official_phoenix_client_joins_shouts_heartbeats_and_is_refused(js_modules: Path, node: ServerProcess) -> None:
    done = subprocess.run([need("node"), "official_client.mjs", str(node.port)], cwd=js_modules,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30)
    assert done.stdout, f"no output (exit {done.returncode}):\n{done.stderr}"
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen["join"] == {"status": "ok", "response": {}}
    assert seen["broadcast"] == {"message": "hello from phoenix.js"}
    assert seen["heartbeat_replies"] >= 3 and seen["connected_after_heartbeats"] is True
    assert seen["opens"] == 1 and seen["closes_before_disconnect"] == [] and seen["errors"] == 0
    assert seen["refused"] == {"status": "error", "response": {"reason": "unmatched topic"}}
    assert done.returncode == 0, seen.get("problem") or done.stderr
    # the node saw a V2 socket (what phoenix.js speaks) join room:1, and only the refusal warned
    assert node.lines(r"101 GET /socket/websocket\?vsn=2\.0\.0") and node.lines(r"JOIN room:1")
    assert [w for w in node.warnings() if "nothing:here" not in w] == []
    node.assert_clean()
