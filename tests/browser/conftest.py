"""Fixtures for the browser tests: one headless Chromium per session (Debian's, driven by
playwright-core through tests/js/browser_driver.mjs), fresh pages per test, screenshots into
tests/artifacts/browser/, and the helpers the tests share.

Missing chromium or node skips locally and fails under CI=true (tests/requirements.py).
"""

from __future__ import annotations

import json
import re
import shutil
import urllib.request
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .browser_bridge import Browser, LoadBalancer, Page, StaticSite, wait_until
from requirements import need

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "server" / "static"
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)


@pytest.fixture(scope="session")
def chromium_browser(js_modules: Path) -> Iterator[Browser]:
    chromium = need("chromium", "Debian's chromium: apt-get install -y chromium")
    node = need("node", "Node.js runs playwright-core")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    browser = Browser(node, chromium, ARTIFACTS / "driver.log")
    yield browser
    browser.close()


class Pages:
    """The pages of one test: opened on the session's browser, closed when the test ends."""

    def __init__(self, browser: Browser, test_name: str) -> None:
        self.browser = browser
        self.test = re.sub(r"[^A-Za-z0-9_.-]+", "_", test_name)
        self.opened: list[Page] = []
        self.shots: list[Path] = []

    def open(self, name: str, url: str | None = None, **options) -> Page:
        page = self.browser.open(f"{self.test}:{name}", url, **options)
        self.opened.append(page)
        return page

    def screenshot(self, page: Page, label: str) -> Path:
        path = ARTIFACTS / f"{self.test}--{len(self.shots) + 1:02d}-{label}.png"
        self.shots.append(page.screenshot(path))
        return path

    def assert_no_page_errors(self) -> None:
        for page in self.opened:
            errors = page.log()["errors"]
            assert not errors, f"{page.name}: uncaught exceptions in the page: {errors}"

    def close(self) -> None:
        for page in self.opened:
            try:
                page.close()
            except AssertionError:
                pass


@pytest.fixture
def pages(chromium_browser: Browser, request: pytest.FixtureRequest) -> Iterator[Pages]:
    opened = Pages(chromium_browser, request.node.name)
    yield opened
    opened.close()


@pytest.fixture
def load_balancer() -> Iterator[Callable[[int], LoadBalancer]]:
    """A factory: ``load_balancer(port)`` -> a ``LoadBalancer`` in front of that node port."""
    made: list[LoadBalancer] = []

    def make(target: int) -> LoadBalancer:
        made.append(LoadBalancer(target))
        return made[-1]

    yield make
    for lb in made:
        lb.close()


@pytest.fixture
def foreign_site(tmp_path: Path) -> Iterator[StaticSite]:
    """The project's pages, copied and served from 127.0.0.2: another origin than the node's."""
    root = tmp_path / "foreign-site"
    (root / "static").mkdir(parents=True)
    shutil.copy(STATIC / "index.html", root / "index.html")
    shutil.copy(STATIC / "ws.html", root / "ws.html")
    for name in ("chat.js", "chat.css"):
        shutil.copy(STATIC / name, root / "static" / name)
    (root / "blank.html").write_text("<!doctype html><title>another site</title><p>another site</p>\n")
    site = StaticSite(root, "127.0.0.2")
    yield site
    site.close()


# ---- nodes ------------------------------------------------------------------------------------

COOKIE = "browser-tests-cookie-0123456789"


def cluster_view(node) -> dict:
    with urllib.request.urlopen(node.url("/cluster"), timeout=2) as response:
        return json.loads(response.read())


@pytest.fixture
def cluster(start_node) -> Callable[[int], list]:
    """A factory: ``cluster(2)`` -> two real node processes meshed as gossipy@127.0.0.2 and
    gossipy@127.0.0.3 (HTTP on 127.0.0.1, a free port each); each has ``.name``."""

    def start(count: int = 2) -> list:
        names = [f"gossipy@127.0.0.{i + 2}" for i in range(count)]
        nodes = []
        for index, name in enumerate(names):
            # Each node dials the ones started before it (a node waits at boot for the nodes it
            # lists, so listing later ones would stall it); the mesh forms either way.
            env = {"RELEASE_NODE": name, "RELEASE_DISTRIBUTION": "name", "RELEASE_COOKIE": COOKIE,
                   "RELEASE_SYNC_NODES": ",".join(names[:index])}
            node = start_node(env=env)
            node.name = name
            nodes.append(node)
        for node in nodes:
            wait_until(lambda: set(cluster_view(node)["nodes"]) == set(names) - {node.name}, 15,
                       f"{node.name} to see the others")
        return nodes

    return start
