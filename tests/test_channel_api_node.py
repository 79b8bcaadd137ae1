"""The public channel API and token auth on a real node: ``Server`` in this process on a free
port of 127.0.0.1 with the app in apps/api_app.py (until an ``app:`` setting can name it for a
``python -m server`` process), the official phoenix.js client under Node.js, and the node's
whole log (access lines included) searched for the tokens."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import jwt
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import websocket_connect

from server.app import Server, StartupError
from server.channels import Socket
from server.settings import SettingsError, parse_document, settings_from, validate

from apps import api_app
from support.phoenix_client import Closed, PhoenixClient
from support.requirements import need

SECRET = "node-test-jwt-secret-" + "s" * 40
TOPIC = "room:lobby"


def token(secret: str = SECRET, expires_in: int = 60, **claims: Any) -> str:
    now = int(time.time())
    return jwt.encode({"sub": "42", "iat": now - 120, "exp": now + expires_in, **claims}, secret, algorithm="HS256")


@asynccontextmanager
async def serving(auth: dict[str, Any] | None = None, socket_class: type[Socket] = Socket) -> AsyncIterator[Server]:
    settings = settings_from({"endpoint": {"host": "127.0.0.1", "port": 0}, **({"auth": auth} if auth else {})}, {})
    server = Server(settings, routes=api_app.ROUTES, socket_class=socket_class)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


@pytest.fixture(autouse=True)
def _logs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    api_app.ENDED.clear()


def node_log(caplog: pytest.LogCaptureFixture) -> str:
    """Every record the node logged, formatted, tracebacks included."""
    return caplog.text


# ---- the official client with tokens ---------------------------------------------------------------

async def test_phoenix_js_with_valid_expired_wrongly_signed_and_missing_tokens(
        js_modules: Path, caplog: pytest.LogCaptureFixture) -> None:
    tokens = {"valid": token(name="ada", topics=[TOPIC]), "expired": token(expires_in=-60),
              "wrong_secret": token(secret="another-secret-" + "o" * 40)}
    async with serving({"jwt_secret": SECRET}) as server:
        client = await asyncio.create_subprocess_exec(
            need("node"), "auth_client.mjs", str(server.port), json.dumps(tokens), cwd=js_modules,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(client.communicate(), 20)
    assert out, f"no output (exit {client.returncode}):\n{err.decode()}"
    seen = json.loads(out.decode().splitlines()[-1])
    assert client.returncode == 0, seen.get("problem") or err.decode()

    assert (seen["missing"], seen["expired"], seen["wrong_secret"], seen["valid"]) == \
        ("refused", "refused", "refused", "open")
    assert seen["join"] == {"status": "ok", "response": {"user_id": "42"}}
    assert seen["welcome"] == {"topic": TOPIC}  # send_after(0) in join: pushed after the reply
    assert seen["whoami"]["status"] == "ok"
    assert {k: seen["whoami"]["response"][k] for k in ("sub", "user_id", "name", "topics")} == \
        {"sub": "42", "user_id": "42", "name": "ada", "topics": [TOPIC]}
    assert seen["shout"] == {"message": "hi", "from": "42", "to": "42"}  # through handle_out
    assert seen["outside"] == {"status": "error", "response": {"reason": "unauthorized"}}

    log = node_log(caplog)
    for name, value in tokens.items():
        assert value not in log, f"the {name} token is in the node's log"
        assert value.split(".")[2] not in log
    # one line per refusal, naming its reason; the access lines show the token redacted
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("refusing websocket")]
    assert sorted(refusals) == sorted(f"refusing websocket from 127.0.0.1: token {reason}" for reason in (
        "missing: no connect token", "expired: the token has expired",
        "bad_signature: the token is not signed by an allowed algorithm with the configured secret"))
    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert sum("403 GET /socket/websocket?token=[redacted]&vsn=2.0.0" in line for line in access) == 2
    assert sum("101 GET /socket/websocket?token=[redacted]&vsn=2.0.0" in line for line in access) == 1
    assert [r.getMessage() for r in caplog.records if "room:secret" in r.getMessage()] == \
        ["refusing join of 'room:secret' from 127.0.0.1: not a topic this connection may join "
         "(repeats on this socket are not logged)"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


async def test_every_routes_access_line_redacts_credentials(caplog: pytest.LogCaptureFixture) -> None:
    async with serving() as server:
        http = AsyncHTTPClient()
        page = await http.fetch(f"http://127.0.0.1:{server.port}/?token=page-token-1234&x=1")
        assert page.code == 200
        with pytest.raises(HTTPClientError):
            await http.fetch(f"http://127.0.0.1:{server.port}/nowhere?api_key=key-5678")
    log = node_log(caplog)
    assert "page-token-1234" not in log and "key-5678" not in log
    assert "200 GET /?token=[redacted]&x=1 (127.0.0.1)" in log
    assert "404 GET /nowhere?api_key=[redacted] (127.0.0.1)" in log


# ---- an app's own connect hook, and shutdown ---------------------------------------------------------

async def connect(port: int, query: str) -> PhoenixClient:
    url = f"ws://127.0.0.1:{port}/socket/websocket?vsn=2.0.0&{query}"
    return PhoenixClient(await websocket_connect(HTTPRequest(url)), "2.0.0", port=port)


async def test_an_apps_socket_class_replaces_the_token_check_and_shutdown_is_a_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    async with serving({"jwt_secret": SECRET}, socket_class=api_app.KeySocket) as server:
        with pytest.raises(HTTPClientError) as refused:
            await connect(server.port, f"token={token()}")  # the configured token is not its check
        assert refused.value.code == 403
        client = await connect(server.port, "key=letmein&user=bob")
        joined = await client.join(TOPIC)
        assert joined.payload == {"status": "ok", "response": {"user_id": "bob"}}
        ref = await client.push(TOPIC, "whoami")
        assert (await client.reply_to(ref)).payload["response"] == {"user_id": "bob", "peer": "127.0.0.1"}
        await server.stop()
        with pytest.raises(Closed) as closed:
            while True:
                await client.receive()
    assert closed.value.code == 1001
    assert api_app.ENDED == [(TOPIC, "bob", "shutdown")]
    assert "refusing websocket from 127.0.0.1: no or wrong key" in node_log(caplog)


async def test_a_crash_in_connect_is_a_403_and_one_record_with_its_traceback(
        caplog: pytest.LogCaptureFixture) -> None:
    class Crashing(Socket):
        def connect(self, params: Any, info: Any) -> None:
            raise RuntimeError("bug in connect")

    async with serving(socket_class=Crashing) as server:
        with pytest.raises(HTTPClientError) as refused:
            await connect(server.port, "")
        assert refused.value.code == 403
        assert (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{server.port}/")).code == 200
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.exc_info is not None and str(record.exc_info[1]) == "bug in connect"


# ---- the auth settings -------------------------------------------------------------------------------

def test_auth_settings_from_vm_yml_and_the_environment_with_the_secret_never_shown() -> None:
    settings = settings_from({"auth": {"jwt_secret": SECRET, "jwt_algorithms": ["HS256", "HS512"]}}, {})
    assert settings.auth.jwt_secret is not None and settings.auth.jwt_secret.reveal() == SECRET.encode()
    assert settings.auth.jwt_algorithms == ("HS256", "HS512")
    assert settings_from({}, {}).auth.jwt_secret is None and settings_from({}, {}).auth.jwt_algorithms == ("HS256",)
    from_env = settings_from({"auth": {"jwt_secret": SECRET}}, {"GOSSIPY_JWT_SECRET": "from-env-" + "e" * 40})
    assert from_env.auth.jwt_secret is not None and from_env.auth.jwt_secret.reveal().startswith(b"from-env-")
    for shown in (json.dumps(from_env.describe()), repr(from_env), str(from_env.auth)):
        assert "from-env-" not in shown and SECRET not in shown
    assert from_env.describe()["auth"] == {"jwt_secret": "******", "jwt_algorithms": ("HS256",)}
    guessable = "secret-" * 6
    with pytest.raises(SettingsError, match="the prod auth.jwt_secret is too weak") as weak:
        settings_from({"release": {"environment": "prod"}}, {"GOSSIPY_JWT_SECRET": guessable})
    assert guessable not in str(weak.value)


@pytest.mark.parametrize("text, error", [
    ("auth:\n  jwt_secret: 123456789\n", "auth.jwt_secret: expected the secret that signs connect tokens (HMAC), "
                                          "got int (not shown)"),
    ("auth:\n  jwt_algorithms: HS256\n", "auth.jwt_algorithms: expected a non-empty list"),
    ("auth:\n  jwt_algorithms: [HS256, '']\n", "auth.jwt_algorithms: expected a non-empty list of HMAC"),
    ("auth:\n  jwt_algorithms: []\n", "auth.jwt_algorithms: expected a non-empty list of HMAC"),
    ("auth:\n  secret: x\n", "auth.secret: unknown key; expected one of jwt_secret, jwt_algorithms"),
])
def test_a_wrong_auth_section_names_the_key(text: str, error: str) -> None:
    with pytest.raises(SettingsError, match=error.replace("(", r"\(").replace(")", r"\)")) as caught:
        validate(parse_document(text, "vm.yml"))
    assert "123456789" not in str(caught.value)


@pytest.mark.parametrize("auth, error", [
    ({"jwt_secret": "short"}, "auth: the token secret is 5 bytes; HS256 needs at least 32"),
    ({"jwt_secret": SECRET, "jwt_algorithms": ["none"]}, "auth: token algorithms ['none'] are not among"),
])
async def test_a_secret_or_algorithm_that_cannot_be_safe_stops_the_node_before_it_serves(
        auth: dict[str, Any], error: str) -> None:
    server = Server(settings_from({"endpoint": {"host": "127.0.0.1", "port": 0}, "auth": auth}, {}))
    with pytest.raises(StartupError, match=error.replace("[", r"\[").replace("]", r"\]")) as caught:
        await server.start()
    assert auth["jwt_secret"] not in str(caught.value) and server.port == 0


# ---- no log line shows a token ---------------------------------------------------------------------

async def test_no_log_line_shows_a_token_when_a_request_fails(caplog: pytest.LogCaptureFixture) -> None:
    """Tornado's own error lines (a bad query argument, an uncaught exception) print the request
    URI and repr(request) as they are; the node's handlers print the URI redacted."""
    secret = "connect-token-" + "t" * 20

    class Broken(Socket):
        def __init__(self, verifier: Any) -> None:
            raise RuntimeError("bug in the socket class")

    async with serving() as server:
        with pytest.raises(HTTPClientError) as not_utf8:
            await connect(server.port, f"token={secret}&x=%ff")
    assert not_utf8.value.code == 400
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert "refusing websocket from 127.0.0.1: a query parameter is not UTF-8" in node_log(caplog)
    async with serving(socket_class=Broken) as server:
        with pytest.raises(HTTPClientError) as crashed:
            await connect(server.port, f"token={secret}")
    assert crashed.value.code == 500
    [record] = [r for r in caplog.records if r.exc_info]
    assert record.getMessage() == "Uncaught exception GET /socket/websocket?vsn=2.0.0&token=[redacted] (127.0.0.1)"
    assert record.exc_info is not None and str(record.exc_info[1]) == "bug in the socket class"
    assert secret not in node_log(caplog) and "HTTPServerRequest(" not in node_log(caplog)


async def test_assigns_that_are_not_a_mapping_refuse_the_connect_before_the_upgrade(
        caplog: pytest.LogCaptureFixture) -> None:
    class ListAssigns(Socket):
        def connect(self, params: Any, info: Any) -> None:
            self.assigns = ["user_id", "42"]  # type: ignore[assignment]  # the app's bug

    async with serving(socket_class=ListAssigns) as server:
        with pytest.raises(HTTPClientError) as refused:
            await connect(server.port, "")
        assert refused.value.code == 403
        assert (await AsyncHTTPClient().fetch(f"http://127.0.0.1:{server.port}/")).code == 200
    access = [r.getMessage() for r in caplog.records if r.name == "tornado.access"]
    assert [line.split(" (")[0] for line in access] == ["403 GET /socket/websocket?vsn=2.0.0&", "200 GET /"]
    [record] = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name != "tornado.access"]
    assert record.getMessage() == "refusing websocket from 127.0.0.1: ListAssigns.connect crashed"
    assert record.exc_info is not None and str(record.exc_info[1]) == "assigns must be a mapping, not list"


async def test_a_socket_class_that_replaces_connect_is_warned_of_once_when_a_jwt_secret_is_set(
        caplog: pytest.LogCaptureFixture) -> None:
    def warnings() -> list[str]:
        return [r.getMessage() for r in caplog.records if "replaces the token check" in r.getMessage()]

    async with serving({"jwt_secret": SECRET}):
        pass
    async with serving(socket_class=api_app.KeySocket):
        pass
    assert warnings() == []  # the base class's check, or no secret to check with
    async with serving({"jwt_secret": SECRET}, socket_class=api_app.KeySocket) as server:
        await connect(server.port, "key=letmein")
    assert warnings() == ["auth.jwt_secret is set, but KeySocket.connect replaces the token check: "
                          "connect tokens are checked only if it calls super().connect(params, info)"]
