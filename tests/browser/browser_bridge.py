"""Headless Chromium for pytest, through ``tests/js/browser_driver.mjs`` (playwright-core).

``Browser`` starts the Node.js driver as a child process (its own process group, ended by its
PID at the end) and sends it one JSON request per line; ``Page`` wraps the page-level calls.
A call that fails in the browser raises ``BrowserError`` with the driver's message; a call
that gets no answer within its timeout raises too, instead of hanging the suite.

Also here, for the tests: ``StaticSite`` (a tiny static web server on another loopback
address: a foreign origin for the check_origin test). The load balancer in front of a node is
support/tcp_proxy.py's ``TcpProxy``; waiting for a condition is support/server_process.py's ``wait_until``.
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import queue
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

DRIVER = Path(__file__).resolve().parents[1] / "js" / "browser_driver.mjs"


class BrowserError(AssertionError):
    pass


class Browser:
    def __init__(self, node: str, chromium: str, log_path: Path) -> None:
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [node, str(DRIVER)], cwd=DRIVER.parent, env={**os.environ, "CHROMIUM": chromium},
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
            start_new_session=True)
        self._ids = itertools.count(1)
        self._answers: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, name="browser-driver-reader", daemon=True)
        self._reader.start()
        self.log_path = log_path
        self.version = self.call("launch", timeout=60)["version"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self._answers.put(json.loads(line))
            except ValueError:
                continue
        self._answers.put(None)

    def call(self, cmd: str, timeout: float = 20.0, **args: Any) -> Any:
        request_id = next(self._ids)
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write((json.dumps({"id": request_id, "cmd": cmd, **args}) + "\n").encode())
            self.proc.stdin.flush()
        except BrokenPipeError:
            raise BrowserError(f"the browser driver is gone (exit {self.proc.poll()}); see {self.log_path}") from None
        deadline = time.monotonic() + timeout
        while True:
            try:
                answer = self._answers.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise BrowserError(f"no answer to {cmd} within {timeout} s; see {self.log_path}") from None
            if answer is None:
                raise BrowserError(f"the browser driver exited ({self.proc.poll()}) during {cmd}; "
                                   f"see {self.log_path}:\n{self.log_path.read_text(errors='replace')[-2000:]}")
            if answer.get("id") == request_id:
                break
        if not answer["ok"]:
            raise BrowserError(f"{cmd} {args}: {answer['error']}")
        return answer["result"]

    def open(self, name: str, url: str | None = None, *, phone: bool = False,
             clock: bool = False) -> "Page":
        viewport = {"width": 390, "height": 760} if phone else {"width": 1100, "height": 720}
        self.call("open", page=name, url=url, viewport=viewport, clock=clock, timeout=30)
        return Page(self, name)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.call("quit", timeout=15)
            except BrowserError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                # Chromium runs in the driver's process group (started by us, for this reason).
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._log.close()


class Page:
    def __init__(self, browser: Browser, name: str) -> None:
        self.browser = browser
        self.name = name

    def _call(self, cmd: str, timeout: float = 20.0, **args: Any) -> Any:
        return self.browser.call(cmd, page=self.name, timeout=timeout, **args)

    def goto(self, url: str) -> int | None:
        return self._call("goto", url=url, timeout=30)

    def fill(self, selector: str, value: str) -> None:
        self._call("fill", selector=selector, value=value)

    def press(self, selector: str, key: str) -> None:
        self._call("press", selector=selector, key=key)

    def click(self, selector: str) -> None:
        self._call("click", selector=selector)

    def text(self, selector: str) -> str:
        return self._call("text", selector=selector)

    def texts(self, selector: str) -> list[str]:
        return self._call("texts", selector=selector)

    def attribute(self, selector: str, name: str) -> str | None:
        return self._call("attribute", selector=selector, name=name)

    def visible(self, selector: str) -> bool:
        return self._call("visible", selector=selector)

    def wait(self, selector: str, state: str = "visible", timeout: float = 10.0) -> None:
        """Waits until ``selector`` is in ``state`` (visible, hidden, attached, detached)."""
        self._call("wait", timeout=timeout + 10, selector=selector, state=state, timeoutMs=timeout * 1000)

    def wait_for(self, expr: str, arg: Any = None, timeout: float = 10.0, what: str = "") -> Any:
        """Polls the JS function ``expr`` (called with ``arg``) until it returns something truthy,
        and returns that."""
        try:
            return self._call("waitFor", timeout=timeout + 10, expr=expr, arg=arg, timeoutMs=timeout * 1000)
        except BrowserError as exc:
            raise BrowserError(f"{self.name}: waiting for {what or expr}: {exc}") from None

    def eval(self, expr: str, arg: Any = None, timeout: float = 20.0) -> Any:
        return self._call("eval", expr=expr, arg=arg, timeout=timeout)

    def screenshot(self, path: Path, full_page: bool = False) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._call("screenshot", path=str(path), fullPage=full_page)
        return path

    def clock(self, action: str, value: Any = None) -> None:
        self._call("clock", action=action, value=value)

    def log(self) -> dict[str, Any]:
        return self._call("log")

    def close(self) -> None:
        self._call("close")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class StaticSite:
    """A static web server for ``root`` on ``host`` (another loopback address: another origin)."""

    def __init__(self, root: Path, host: str = "127.0.0.2") -> None:
        handler = functools.partial(_QuietHandler, directory=str(root))
        self.server = http.server.ThreadingHTTPServer((host, 0), handler)
        self.host = host
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, name=f"static-{self.port}",
                                        daemon=True)
        self._thread.start()

    def url(self, path: str = "/") -> str:
        return f"http://{self.host}:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
