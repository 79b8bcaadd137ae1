"""Shared fixtures: a real node process (see support/server_process.py), async tests, npm
packages, and the hypothesis profile of every property test.

``start_node(endpoint={...})`` starts a ``python -m server`` process with those settings and
returns a serving ``ServerProcess``; every node a test started is stopped (SIGTERM, by PID) after it.
``async def`` tests run on a fresh asyncio loop each (no plugin needed), bounded in time.
"""

from __future__ import annotations

import asyncio
import inspect
import subprocess
from pathlib import Path
from typing import Callable, Iterator

import pytest
from hypothesis import HealthCheck, settings

from support import ROOT
from support.requirements import need
from support.server_process import NodeStarter, ServerProcess

JS_DIR = ROOT / "tests" / "js"

ASYNC_TEST_TIMEOUT = 30.0

# Property tests check what holds for every input, not how fast inputs are made: on a busy
# machine (two suites at once, say) a slow draw or example is not a failure.
settings.register_profile("gossipy", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("gossipy")


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    if not inspect.iscoroutinefunction(pyfuncitem.obj):
        return None
    args = {name: pyfuncitem.funcargs[name] for name in pyfuncitem._fixtureinfo.argnames}
    asyncio.run(asyncio.wait_for(pyfuncitem.obj(**args), ASYNC_TEST_TIMEOUT))
    return True


@pytest.fixture
def start_node(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """A factory: ``start_node(endpoint={"server_timeout": 0.5})`` -> a serving ``ServerProcess``."""
    starter = NodeStarter(tmp_path)
    yield starter.start
    starter.stop_all()


@pytest.fixture
def node(start_node: Callable[..., ServerProcess]) -> ServerProcess:
    """A node on the default settings (bound to 127.0.0.1)."""
    return start_node()


@pytest.fixture(scope="session")
def js_modules() -> Path:
    """``tests/js`` with its node_modules installed (``npm ci``, once, when missing or stale)."""
    need("node", "Node.js 20 runs the official Phoenix client")
    npm = need("npm", "installs tests/js/package-lock.json")
    stamp = JS_DIR / "node_modules" / ".package-lock.json"
    lock = JS_DIR / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=JS_DIR,
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm ci in {JS_DIR} failed:\n{done.stdout}\n{done.stderr}"
    return JS_DIR
