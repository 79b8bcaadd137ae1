"""Headless Chromium for pytest, through ``tests/js/browser_driver.mjs`` (playwright-core).

``Browser`` starts the Node.js driver as a child process (its own process group, ended by its
PID at the end) and sends it one JSON request per line; ``Page`` wraps the page-level calls.
A call that fails in the browser raises ``BrowserError`` with the driver's message; a call
that gets no answer within its timeout raises too, instead of hanging the suite.

Also here, for the tests: ``LoadBalancer`` (a TCP forwarder that can be pointed at another
node, as a load balancer would after a node dies) and ``StaticSite`` (a tiny static web
server on another loopback address: a foreign origin for the check_origin test).
"""

from __future__ import annotations

import functools
import http.server
import itertools
import json
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

DRIVER = Path(__file__).resolve().parents[1] / "js" / "browser_driver.mjs"


class BrowserError(AssertionError):
    pass


def wait_until(condition: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Polls ``condition`` (exceptions count as not yet) until it returns something truthy."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except Exception as exc:  # a node not answering yet, say
            last, result = exc, None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}" + (f" (last error: {last})" if last else ""))


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


class LoadBalancer:
    """A TCP forwarder on 127.0.0.1: each new connection goes to the current target.

    ``point_at(port, host)`` changes the target for new connections, as a load balancer does
    once a health check fails; connections already open stay where they are (until their node
    dies). A connection that cannot reach its target is closed at once (the browser sees a
    drop). ``blackhole()`` makes the open connections lose every byte from then on without
    closing them: a network path that died silently.
    """

    def __init__(self, target: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: set[socket.socket] = set()
        self._blackholed: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closed = False
        threading.Thread(target=self._accept, name=f"lb-{self.port}", daemon=True).start()

    def point_at(self, port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, port)

    def blackhole(self) -> None:
        with self._lock:
            self._blackholed.update(self._sockets)

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        self._track(client)
        try:
            upstream = socket.create_connection(self.target, timeout=2)
        except OSError:
            self._close(client)
            return
        upstream.settimeout(None)
        self._track(upstream)
        threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()
        self._pump(client, upstream)

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if source not in self._blackholed:
                    sink.sendall(data)
        except OSError:
            pass
        self._close(source)
        self._close(sink)

    def _close(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)
            self._blackholed.discard(sock)
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        sock.close()

    def close(self) -> None:
        self._closed = True
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        for sock in sockets:
            self._close(sock)


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
