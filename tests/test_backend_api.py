"""``POST /api/broadcast`` (server/backend_api.py): real node processes, a real HTTP client
(http.client, which urllib uses, for its ``source_address``) and real websocket subscribers.
The pure parts (the body parser, the throttle's windows, the ``api`` settings) are checked
in-process as well."""

from __future__ import annotations

import http.client
import json
import re
import socket
from pathlib import Path
from typing import Any

import pytest
import yaml

from server import settings
from server.backend_api import FAILURE_WINDOW, MAX_ADDRESSES, MAX_FAILURES, PATH, BadRequest, parse
from server.pubsub import Broadcast
from server.throttle import Throttle

from support.node_processes import NodeProcesses
from support.phoenix_client import TOPIC, PhoenixClient, join_room
from support.server_process import ServerProcess, run_node, wait_until

KEY = "backend-api-test-key-5f2c9d81e7"
OTHER_KEY = "another-key-entirely-0b7e4a19c3"

Response = tuple[int, dict[str, Any], http.client.HTTPMessage]


def post(node: ServerProcess, body: Any, key: str | None = KEY, headers: dict[str, str] | None = None,
         source: str | None = None, path: str = PATH) -> Response:
    """POSTs ``body`` (bytes as they are, anything else as JSON) with ``key`` as the bearer key."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    sent = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {}),
            **(headers or {})}
    conn = http.client.HTTPConnection(node.host, node.port, timeout=5,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("POST", path, data, sent)
        response = conn.getresponse()
        text = response.read()
        answer = json.loads(text) if response.headers.get("Content-Type", "").startswith("application/json") else {}
        return response.status, answer, response.headers
    finally:
        conn.close()


def exchange(node: ServerProcess, raw: bytes) -> bytes:
    """Sends ``raw`` bytes and returns all the node answers until it closes the connection."""
    with socket.create_connection((node.host, node.port), timeout=5) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


def head(length_header: str) -> bytes:
    return (f"POST {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\n{length_header}\r\n\r\n").encode()


def message(topic: str = TOPIC, event: str = "news", **payload: Any) -> dict[str, Any]:
    return {"topic": topic, "event": event, "payload": payload}


async def receive_broadcast(client: PhoenixClient, topic: str, event: str, payload: dict[str, Any]) -> None:
    frame = await client.receive()
    assert (frame.join_ref, frame.ref, frame.topic, frame.event, frame.payload) == (None, None, topic, event, payload), \
        f"on {client.host}:{client.port}: {frame.raw}"


def assert_no_key_logged(node: ServerProcess) -> None:
    log = node.log()
    assert KEY not in log and OTHER_KEY not in log, log


# ---- a node, over HTTP ---------------------------------------------------------------------

def test_without_a_key_the_api_does_not_exist(node: ServerProcess) -> None:
    status, _, _ = post(node, message())
    assert status == 404


async def test_one_message_and_a_batch_reach_every_subscriber_once(start_node) -> None:
    node = start_node(api={"key": KEY})
    room1 = [await join_room(node), await join_room(node, "2.0.0")]
    room2 = await join_room(node, topic="room:2")

    status, answer, headers = post(node, message(text="héllo", n=1))
    assert (status, answer) == (200, {"ok": True, "count": 1})
    assert headers["Content-Type"].startswith("application/json")
    for client in room1:
        await receive_broadcast(client, TOPIC, "news", {"text": "héllo", "n": 1})

    batch = {"messages": [message(n=2), message("room:2", "alert", n=3), message(n=4), message("room:9", n=5)]}
    assert post(node, batch)[:2] == (200, {"ok": True, "count": 4})
    for client in room1:  # in the order sent
        await receive_broadcast(client, TOPIC, "news", {"n": 2})
        await receive_broadcast(client, TOPIC, "news", {"n": 4})
    await receive_broadcast(room2, "room:2", "alert", {"n": 3})
    assert post(node, {"messages": []})[:2] == (200, {"ok": True, "count": 0})
    for client in room1 + [room2]:
        await client.assert_silent(0.2)
        client.close()
    node.assert_clean()
    assert_no_key_logged(node)


def test_a_missing_or_wrong_key_is_401_and_logged_without_the_key(start_node) -> None:
    node = start_node(api={"key": KEY})
    presented = {
        "no header": {},
        "wrong key": {"Authorization": f"Bearer {OTHER_KEY}"},
        "another scheme": {"Authorization": f"Basic {KEY}"},
        "no scheme": {"Authorization": KEY},
        "the key as a prefix": {"Authorization": f"Bearer {KEY}x"},
    }
    for case, headers in presented.items():
        status, answer, response_headers = post(node, message(), key=None, headers=headers)
        assert status == 401, case
        assert answer == {"error": "expected the header Authorization: Bearer <api.key>"}, case
        assert response_headers["WWW-Authenticate"] == 'Bearer realm="gossipy"', case
    refusals = node.lines(r"WARNING gossipy\.api: refused a broadcast from 127\.0\.0\.1: ")
    assert [line.rsplit(": ", 1)[1] for line in refusals] == ["no Authorization header"] + ["wrong key"] * 4
    # the access log line is written after the answer is sent
    wait_until(lambda: len(node.lines(r"tornado\.access: 401 POST /api/broadcast \(127\.0\.0\.1\)")) == 5,
               what="an access log line per request")
    node.assert_clean()
    assert_no_key_logged(node)


def test_repeated_wrong_keys_from_one_address_are_refused_at_once(start_node) -> None:
    node = start_node(api={"key": KEY})
    for _ in range(MAX_FAILURES):
        assert post(node, message(), key=OTHER_KEY)[0] == 401
    for key in (OTHER_KEY, KEY):  # the right key too: the address's keys are not compared any more
        status, answer, headers = post(node, message(), key=key)
        assert (status, answer) == (429, {"error": "too many wrong keys from this address; retry later"})
        assert 0 < int(headers["Retry-After"]) <= FAILURE_WINDOW
    assert post(node, message(), source="127.0.0.2")[0] == 200  # another address is not held back
    [line] = node.lines("refusing")  # once, however many requests it refuses
    assert re.search(rf"refusing 127\.0\.0\.1 for \d+ s: {MAX_FAILURES} wrong API keys since \d+ s ago$", line), line
    node.assert_clean()
    assert_no_key_logged(node)


def test_a_malformed_body_is_400_with_the_reason_and_nothing_is_sent(start_node) -> None:
    node = start_node(api={"key": KEY, "max_batch": 3})
    cases: list[tuple[Any, str]] = [
        (b"{", "the body is not JSON: Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (b"", "the body is not JSON: Expecting value: line 1 column 1 (char 0)"),
        (b'{"topic": "room:1", "event": "e", "payload": {"x": NaN}}', "the body is not JSON: NaN is not a JSON number"),
        (b"\xff", "the body is not JSON: not UTF-8 (invalid start byte at byte 0)"),
        ([message()], 'expected a JSON object: {"topic", "event", "payload"} or {"messages": [...]}'),
        ({"topic": TOPIC, "event": "e"}, "missing payload"),
        ({**message(), "ref": 1}, "a message has exactly the keys topic, event and payload"),
        (message(topic=""), "topic must be a non-empty string"),
        ({**message(), "topic": 5}, "topic must be a non-empty string"),
        ({**message(), "event": None}, "event must be a non-empty string"),
        (message(event="phx_close"), "events starting with phx_ are reserved by Phoenix"),
        ({**message(), "payload": ["a"]}, "payload must be an object"),
        ({**message(), "payload": "text"}, "payload must be an object"),
        ({"messages": {}}, "messages must be an array"),
        ({"messages": [], "topic": TOPIC}, 'a batch has the one key "messages"'),
        ({"messages": [message()] * 4}, "at most 3 messages per request, got 4"),
        ({"messages": [message(), "x"]}, "messages[1]: a message must be an object"),
        ({"messages": [message(), {**message(), "payload": 1}]}, "messages[1]: payload must be an object"),
    ]
    for body, error in cases:
        status, answer, _ = post(node, body)
        assert (status, answer) == (400, {"error": error}), body
    node.assert_clean()
    assert_no_key_logged(node)


async def test_a_body_over_api_max_body_is_413_before_it_is_read(start_node) -> None:
    node = start_node(api={"key": KEY, "max_body": 10_000})
    client = await join_room(node)
    # Over the node's 4 KiB, under api.max_body: this route has its own limit.
    big = message(text="x" * 8000)
    assert post(node, big)[:2] == (200, {"ok": True, "count": 1})
    await receive_broadcast(client, TOPIC, "news", {"text": "x" * 8000})

    # Declared too large: answered before a byte of the body is sent, then the connection ends.
    answer = exchange(node, head("Content-Length: 10001"))
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert answer.endswith(b'{"error": "the body is larger than 10000 bytes"}'), answer
    assert answer.count(b"HTTP/1.1") == 1, answer  # and nothing after it (no stray 400)

    # Chunked (no declared size): refused once the bytes overflow.
    chunk = b"1388\r\n" + b" " * 5000 + b"\r\n"
    answer = exchange(node, head("Transfer-Encoding: chunked") + chunk * 3)
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert answer.count(b"HTTP/1.1") == 1, answer

    # Every other route keeps the node's 4 KiB: Tornado refuses the declared size itself.
    status, _, _ = post(node, b"x" * 5000, path="/cluster")
    assert status == 400
    await client.assert_silent(0.2)
    client.close()
    node.assert_clean()
    assert_no_key_logged(node)


def test_tornados_own_refusals_answer_in_the_apis_json_shape(start_node) -> None:
    node = start_node(api={"key": KEY})
    answer = exchange(node, f"GET {PATH} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\nConnection: close\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 405 Method Not Allowed\r\n"), answer
    assert answer.endswith(b'{"error": "Method Not Allowed"}'), answer


# ---- settings: the key from vm.yml or GOSSIPY_API_KEY, never shown ----------------------------

def test_gossipy_api_key_wins_over_vm_yml(start_node) -> None:
    node = start_node(api={"key": OTHER_KEY}, env={settings.ENV_API_KEY: KEY})
    assert post(node, message(), key=KEY)[:2] == (200, {"ok": True, "count": 1})
    assert post(node, message(), key=OTHER_KEY)[0] == 401
    assert_no_key_logged(node)


def test_describe_masks_the_key(tmp_path: Path) -> None:
    config = tmp_path / "vm.yml"
    config.write_text(yaml.safe_dump({"api": {"key": OTHER_KEY, "max_batch": 10}}))
    for args, env in [(["--config", str(config)], {}), ([], {settings.ENV_API_KEY: KEY}),
                      (["--config", str(config)], {settings.ENV_API_KEY: KEY})]:
        done = run_node(*args, "describe", env=env)
        assert done.returncode == 0, done.stderr
        assert KEY not in done.stdout + done.stderr and OTHER_KEY not in done.stdout + done.stderr
        expected_batch = 10 if args else 1000
        assert json.loads(done.stdout)["api"] == {"key": "******", "max_body": 1024 * 1024,
                                                  "max_batch": expected_batch}
    assert json.loads(run_node("describe").stdout)["api"]["key"] is None


def test_the_api_section_is_checked_and_its_key_never_shown() -> None:
    loaded = settings.settings_from({"api": {"key": KEY}}, {})
    assert loaded.api.key is not None and loaded.api.key.matches(KEY.encode())
    assert not loaded.api.key.matches(KEY[:-1].encode())
    assert KEY not in repr(loaded) and KEY not in str(loaded.describe())
    assert settings.ApiKey("same") != settings.Cookie("same")
    assert settings.settings_from({"api": {"key": KEY}}, {settings.ENV_API_KEY: ""}).api.key is None

    doc = settings.parse_document("api:\n  key: 123456789\n", "vm.yml")
    with pytest.raises(settings.SettingsError) as refused:
        settings.validate(doc)
    assert str(refused.value) == "vm.yml, line 2: api.key: expected the backend API's bearer key, got int (not shown)"
    doc = settings.parse_document("api:\n  max_body: 0\n", "vm.yml")
    with pytest.raises(settings.SettingsError, match=r"api\.max_body: expected bytes, a positive integer"):
        settings.validate(doc)
    with pytest.raises(settings.SettingsError, match="the prod api.key is too weak") as refused:
        settings.settings_from({"release": {"environment": "prod"}, "api": {"key": "changeme"}}, {})
    assert "changeme" not in str(refused.value)


# ---- the pure parts ----------------------------------------------------------------------------

def test_parse_gives_broadcasts_in_order() -> None:
    body = json.dumps({"messages": [message(n=1), message("room:2", "e", n=2)]}).encode()
    assert parse(body, 2) == [Broadcast(TOPIC, "news", {"n": 1}), Broadcast("room:2", "e", {"n": 2})]
    assert parse(json.dumps(message(n=1)).encode(), 1) == [Broadcast(TOPIC, "news", {"n": 1})]
    with pytest.raises(BadRequest, match="at most 1 messages per request, got 2"):
        parse(body, 1)


def test_the_throttle_refuses_until_the_oldest_failure_ages_out_then_forgets() -> None:
    now = [1000.0]
    throttle = Throttle(MAX_FAILURES, FAILURE_WINDOW, MAX_ADDRESSES, clock=lambda: now[0])
    for _ in range(MAX_FAILURES - 1):
        throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == 0
    now[0] += 10
    throttle.failed("10.0.0.1")
    assert throttle.retry_after("10.0.0.1") == FAILURE_WINDOW - 10
    assert throttle.retry_after("10.0.0.2") == 0
    now[0] += FAILURE_WINDOW - 10
    assert throttle.retry_after("10.0.0.1") == 0
    throttle.failed("10.0.0.1")  # the nine aged out: two failures in the window now
    assert throttle.retry_after("10.0.0.1") == 0

    for _ in range(MAX_FAILURES):
        throttle.failed("10.0.0.9")
    assert throttle.retry_after("10.0.0.9") == FAILURE_WINDOW
    for i in range(MAX_ADDRESSES):  # a flood of addresses: the oldest windows make room
        throttle.failed(f"10.1.{i // 256}.{i % 256}")
    assert throttle.retry_after("10.0.0.9") == 0


# ---- a cluster ----------------------------------------------------------------------------------

@pytest.mark.cluster
async def test_a_post_to_one_node_reaches_subscribers_on_all_three_once(tmp_path: Path) -> None:
    async with NodeProcesses(tmp_path, sections={"api": {"key": KEY}}) as cluster:
        nodes = cluster.start_many([2, 3, 4])
        await cluster.async_wait_for_mesh(nodes)
        clients = [await join_room(node, vsn) for node in nodes for vsn in (None, "2.0.0")]
        assert post(nodes[0], message(n=1))[:2] == (200, {"ok": True, "count": 1})
        for client in clients:
            await receive_broadcast(client, TOPIC, "news", {"n": 1})
        assert post(nodes[2], {"messages": [message(n=2), message(n=3)]})[:2] == (200, {"ok": True, "count": 2})
        for client in clients:
            await receive_broadcast(client, TOPIC, "news", {"n": 2})
            await receive_broadcast(client, TOPIC, "news", {"n": 3})
        for client in clients:
            await client.assert_silent(0.2)  # once, on every node
            client.close()
        for node in nodes:
            node.assert_clean()
            assert_no_key_logged(node)
