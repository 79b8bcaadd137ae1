"""Fixtures for the browser tests: one headless Chromium per session (Debian's, driven by
playwright-core through tests/js/browser_driver.mjs), fresh pages per test, screenshots into
tests/artifacts/browser/, and the helpers the tests share.

Missing chromium or node skips locally and fails under CI=true (tests/support/requirements.py).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

import pytest

from .browser_bridge import Browser, Page, StaticSite
from support.node_processes import NodeProcess, NodeProcesses
from support.requirements import need
from support.tcp_proxy import TcpProxy

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "server" / "static"
ARTIFACTS = ROOT / "tests" / "artifacts" / "browser"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = str(Path(__file__).parent)
    for item in items:
        if str(item.fspath).startswith(here):
            item.add_marker(pytest.mark.browser)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """Keeps each phase's report on the test item, so fixtures know whether the test failed."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"report_{report.when}", report)


@pytest.fixture(scope="session")
def chromium_browser(js_modules: Path) -> Iterator[Browser]:
    chromium = need("chromium", "Debian's chromium: apt-get install -y chromium")
    node = need("node", "Node.js runs playwright-core")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob("*.png"):  # the artifacts are this run's screenshots
        old.unlink()
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
            self._assert_no_errors(page)

    def close_tab(self, page: Page) -> None:
        """Closes one page while the test goes on (a user closing a tab), its errors checked
        first: a closed page has no log left to read."""
        self._assert_no_errors(page)
        page.close()
        self.opened.remove(page)

    @staticmethod
    def _assert_no_errors(page: Page) -> None:
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
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        for page in opened.opened:  # what each page showed when the test failed
            try:
                opened.screenshot(page, f"FAILED-{page.name.rpartition(':')[2]}")
            except AssertionError:
                pass
    opened.close()


@pytest.fixture
def load_balancer() -> Iterator[Callable[..., TcpProxy]]:
    """A factory: ``load_balancer(port, host)`` -> a ``TcpProxy`` on a free port of 127.0.0.1
    in front of that node (``point_at`` another node, ``blackhole`` the open connections)."""
    made: list[TcpProxy] = []

    def make(target: int, target_host: str = "127.0.0.1") -> TcpProxy:
        made.append(TcpProxy(("127.0.0.1", 0), (target_host, target)).start())
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
    for name in ("presence.js", "chat.js", "chat.css"):
        shutil.copy(STATIC / name, root / "static" / name)
    (root / "blank.html").write_text("<!doctype html><title>another site</title><p>another site</p>\n")
    site = StaticSite(root, "127.0.0.2")
    yield site
    site.close()


# ---- nodes ------------------------------------------------------------------------------------

@pytest.fixture
def node_processes(tmp_path: Path) -> Iterator[NodeProcesses]:
    """support/node_processes.py: node i is gossipy@127.0.0.i, HTTP on 127.0.0.i (a port kept
    across restarts); every node is stopped by PID when the test ends."""
    folder = tmp_path / "nodes"
    folder.mkdir()
    with NodeProcesses(folder) as nodes:
        yield nodes


@pytest.fixture
def cluster(node_processes: NodeProcesses) -> Callable[[int], list[NodeProcess]]:
    """A factory: ``cluster(2)`` -> gossipy@127.0.0.2 and gossipy@127.0.0.3, meshed."""

    def start(count: int = 2) -> list[NodeProcess]:
        nodes = node_processes.start_many(list(range(2, 2 + count)))
        node_processes.wait_for_mesh(nodes, timeout=10)
        return nodes

    return start
