"""The node's HTTP port (server/listener.py) against real sockets: how it reads a connection's
first request head, and who serves it (the websocket upgrade, or Tornado with the bytes the
listener already read)."""

from __future__ import annotations

import json
import socket
import time
from typing import Callable

from support.phoenix_client import join_room, upgrade_request
from support.server_process import ServerProcess, async_wait_until


def _connect(node: ServerProcess) -> socket.socket:
    return socket.create_connection(("127.0.0.1", node.port), timeout=5)


def _response(sock: socket.socket) -> bytes:
    """Everything the node sends until it closes the connection."""
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


def _head(sock: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    return data


def _websocket_path(node: ServerProcess) -> str:
    return f"/socket/websocket?vsn=2.0.0&token=s3cr3t-{node.port}"


async def test_a_head_sent_a_few_bytes_at_a_time_is_upgraded(node: ServerProcess) -> None:
    request = upgrade_request("127.0.0.1", node.port, _websocket_path(node))
    with _connect(node) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(request), 7):
            sock.sendall(request[i:i + 7])
            time.sleep(0.002)
        assert _head(sock).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    # The access line is Tornado's format, the token redacted, as for a request Tornado served.
    line = node.wait_for_line(r"101 GET /socket/websocket")
    assert "token=[redacted]" in line and "s3cr3t" not in line
    node.assert_clean()


def test_a_first_request_for_tornado_gets_the_bytes_already_read_with_its_body(node: ServerProcess) -> None:
    """The listener read the head and the body in one go: Tornado still gets the whole request
    (the backend API is off here, so the body is read and answered with 404)."""
    body = json.dumps({"topic": "room:1", "event": "x", "payload": {}}).encode()
    with _connect(node) as sock:
        sock.sendall(b"POST /api/broadcast HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        assert _response(sock).startswith(b"HTTP/1.1 404 ")
    with _connect(node) as sock:  # and a page, kept alive, then asked again on the same connection
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b'{"status":"ok"}' in sock.recv(4096)
        sock.sendall(b"GET /cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert b'"node": "nonode@nohost"' in _response(sock)


async def test_an_upgrade_after_another_request_on_a_kept_alive_connection_is_served_too(
        node: ServerProcess) -> None:
    with _connect(node) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert b"200 OK" in _head(sock)  # with its 16-byte body
        sock.sendall(upgrade_request("127.0.0.1", node.port, _websocket_path(node)))
        assert _head(sock).startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert node.wait_for_line(r"101 GET /socket/websocket")


def test_refusals_are_plain_answers_with_their_access_lines(node: ServerProcess) -> None:
    cases: list[tuple[bytes, bytes, str]] = [
        (upgrade_request("127.0.0.1", node.port, "/socket/websocket?vsn=9.9.9"), b"403 Forbidden", "403 GET"),
        (upgrade_request("127.0.0.1", node.port, "/socket/websocket").replace(b"GET", b"PUT", 1),
         b"405 Method Not Allowed", "405 PUT"),
        (upgrade_request("127.0.0.1", node.port).replace(b"Version: 13", b"Version: 8"),
         b"426 Upgrade Required", "426 GET"),
        (b"GET /socket/websocket HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n", b"400 Bad Request", ""),
    ]
    for request, status, access in cases:
        with _connect(node) as sock:
            sock.sendall(request)
            response = _response(sock)
        assert response.startswith(b"HTTP/1.1 " + status + b"\r\n"), (request, response)
        assert b"Connection: close\r\n" in response
        if access:
            assert node.wait_for_line(access)
    assert "Sec-WebSocket-Version: 13" in _last_426(node)
    assert node.wait_for_line(r"bad request from 127\.0\.0\.1: .*header")


def _last_426(node: ServerProcess) -> str:
    with _connect(node) as sock:
        sock.sendall(upgrade_request("127.0.0.1", node.port).replace(b"Version: 13", b"Version: 7"))
        return _response(sock).decode()


def test_a_head_over_64_kib_is_refused_with_431(node: ServerProcess) -> None:
    with _connect(node) as sock:
        sock.sendall(b"GET /socket/websocket HTTP/1.1\r\nX-Long: " + b"a" * (70 * 1024))
        assert _response(sock).startswith(b"HTTP/1.1 431 ")
    assert node.wait_for_line(r"refusing a request from 127\.0\.0\.1: its head is over 65536 bytes")


async def test_a_silent_or_half_sent_connection_is_closed_after_server_timeout(
        start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"server_timeout": 0.5})
    fds = node.open_fds()
    silent, half = _connect(node), _connect(node)
    half.sendall(upgrade_request("127.0.0.1", node.port)[:30])
    try:
        started = time.monotonic()
        assert _response(silent) == b"" and _response(half) == b""
        assert 0.4 < time.monotonic() - started < 3.0
    finally:
        silent.close()
        half.close()
    await async_wait_until(lambda: node.open_fds() <= fds, timeout=5)
    (await join_room(node)).close()
    node.assert_clean()
