"""The chat page's presence sync (server/static/presence.js) against the official phoenix.js
``Presence`` on random message sequences, under Node.js's test runner
(tests/js/presence_sync.test.mjs; its failures name a seed to replay)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from support.requirements import need


def test_the_page_syncs_presences_as_phoenix_js_does(js_modules: Path) -> None:
    done = subprocess.run([need("node"), "--test", "presence_sync.test.mjs"], cwd=js_modules,
                          stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"node --test failed:\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert "# pass 2" in done.stdout and "# fail 0" in done.stdout, done.stdout[-2000:]
