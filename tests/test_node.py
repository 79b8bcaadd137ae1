"""A real node process (``python -m server``) and real websocket clients on 127.0.0.1.

One test per behaviour of issue 2, V1 (the article's page) and V2 (phoenix.js) where both
apply. The node's log is asserted on: bad input is a one-line warning, never a traceback.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

import pytest
from tornado.httpclient import HTTPClientError

from support.phoenix_client import PhoenixClient, RawWebSocket, assert_shout_reaches, join_room
from support.recorded import RECORDED_V1, RECORDED_V2
from support.server_process import ServerProcess, run_node

VSNS = pytest.mark.parametrize("vsn", [None, "2.0.0"], ids=["v1", "v2"])


# ---- the article's flow ----------------------------------------------------------------------

async def test_article_flow_shout_reaches_every_socket_sender_included(node: ServerProcess) -> None:
    page_a, page_b = [await PhoenixClient.connect(node.port) for _ in range(2)]
    js = await PhoenixClient.connect(node.port, vsn="2.0.0")
    # exactly what the article's page sends (V1, ref 0) and what phoenix.js sends (V2)
    for page in (page_a, page_b):
        await page.send_raw('{"topic":"room:1","event":"phx_join","payload":{},"ref":0}')
        assert json.loads((await page.receive()).raw) == \
            {"topic": "room:1", "event": "phx_reply", "payload": {"status": "ok", "response": {}}, "ref": 0}
    await js.send_raw('["1","1","room:1","phx_join",{}]')
    assert json.loads((await js.receive()).raw) == ["1", "1", "room:1", "phx_reply", {"status": "ok", "response": {}}]

    await page_a.send_raw('{"topic":"room:1","event":"shout","payload":{"message":"hi"},"ref":0}')
    for page in (page_a, page_b):
        assert json.loads((await page.receive()).raw) == \
            json.loads('{"event":"shout","payload":{"message":"hi"},"ref":null,"topic":"room:1"}')
    assert (await js.receive()).raw == '[null,null,"room:1","shout",{"message":"hi"}]'

    await js.send_raw('["1","2","room:1","shout",{"message":"from js"}]')
    assert (await js.receive()).raw == '[null,null,"room:1","shout",{"message":"from js"}]'
    for page in (page_a, page_b):
        assert (await page.receive()).payload == {"message": "from js"}
    for client in (page_a, page_b, js):
        await client.assert_silent(0.1)  # one broadcast each, nothing else
        client.close()
    assert node.lines(r"JOIN room:1") and not node.warnings()


@pytest.mark.parametrize("vsn, conversation", [(None, RECORDED_V1), ("2.0.0", RECORDED_V2)], ids=["v1", "v2"])
async def test_recorded_conversation_over_a_real_socket(node: ServerProcess, vsn: str | None,
                                                        conversation: list[tuple[str, list[str]]]) -> None:
    client = await PhoenixClient.connect(node.port, vsn=vsn)
    for sent, received in conversation:
        await client.send_raw(sent)
        for expected in received:
            assert json.loads((await client.receive()).raw) == json.loads(expected), sent
    await client.assert_silent(0.1)
    client.close()
    node.assert_clean()


# ---- the chat's member list -------------------------------------------------------------------

async def test_chat_lists_members_by_name_with_their_node_and_leaves_nameless_joins_out(node: ServerProcess) -> None:
    article = await join_room(node, vsn="2.0.0")  # the article's page joins with {}: no presence
    ada = await PhoenixClient.connect(node.port, vsn="2.0.0")
    before = int(time.time() * 1000)
    assert (await ada.join("room:1", {"name": "ada"})).payload == {"status": "ok", "response": {}}
    state = await ada.receive()
    assert state.event == "presence_state" and list(state.payload) == ["ada"], state.raw
    [meta] = state.payload["ada"]["metas"]
    assert meta["node"] == "nonode@nohost" and before <= meta["online_at"] <= int(time.time() * 1000), meta
    # The nameless page hears who comes and goes (and ignores it); it is never listed itself.
    diff = await article.receive()
    assert (diff.event, list(diff.payload["joins"]), diff.payload["leaves"]) == ("presence_diff", ["ada"], {})

    # A second tab of ada: one key, two metas.
    tab = await PhoenixClient.connect(node.port, vsn="2.0.0")
    await tab.join("room:1", {"name": "ada"})
    state = await tab.receive()
    assert list(state.payload) == ["ada"] and len(state.payload["ada"]["metas"]) == 2, state.raw
    diff = await ada.receive()
    assert (diff.event, list(diff.payload["joins"]), diff.payload["leaves"]) == ("presence_diff", ["ada"], {})

    for bad in ("", "   ", "x" * 33, 42, ["ada"]):
        refused = await PhoenixClient.connect(node.port, vsn="2.0.0")
        reply = await refused.join("room:1", {"name": bad})
        assert reply.payload == {"status": "error", "response": {"reason": "name: 1 to 32 characters"}}, bad
        refused.close()
    tab.close()
    diff = await ada.receive()
    assert (diff.event, diff.payload["joins"], list(diff.payload["leaves"])) == ("presence_diff", {}, ["ada"])
    for client in (ada, article):
        client.close()


# ---- HTTP: the upgrade, vsn, origin, the page --------------------------------------------------

async def test_unknown_vsn_is_refused_with_403(node: ServerProcess) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await PhoenixClient.connect(node.port, vsn="3.0.0")
    assert refused.value.code == 403
    await node.async_wait_for_line(r"WARNING .*unknown vsn '3.0.0'")


def test_get_without_upgrade_is_400(node: ServerProcess) -> None:
    with pytest.raises(urllib.error.HTTPError) as answer:
        urllib.request.urlopen(node.url("/socket/websocket"), timeout=5)
    assert answer.value.code == 400


@pytest.mark.parametrize("origin", ["http://evil.example", "http://127.0.0.2:4000", "null"])
async def test_check_origin_refuses_another_host_by_default(node: ServerProcess, origin: str) -> None:
    with pytest.raises(HTTPClientError) as refused:
        await PhoenixClient.connect(node.port, headers={"Origin": origin})
    assert refused.value.code == 403
    await node.async_wait_for_line(r"WARNING .*origin .* not allowed")


@pytest.mark.parametrize("headers", [{"Origin": "http://127.0.0.1:1234"}, {"Origin": "https://127.0.0.1"}, {}],
                         ids=["same-host-other-port", "same-host-https", "no-origin"])
async def test_check_origin_allows_the_same_host_and_no_origin(node: ServerProcess, headers: dict[str, str]) -> None:
    client = await join_room(node, headers=headers)
    await assert_shout_reaches(client, [client], "ok")
    client.close()


async def test_check_origin_false_allows_any_origin(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"check_origin": False})
    client = await join_room(node, headers={"Origin": "http://evil.example"})
    await assert_shout_reaches(client, [client], "anyone")
    client.close()


async def test_check_origin_list_allows_only_the_listed_origins(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"check_origin": ["//chat.example", "https://other.example:8443"]})
    for allowed in ("http://chat.example", "https://chat.example:9", "https://other.example:8443"):
        (await join_room(node, headers={"Origin": allowed})).close()
    for refused in ("http://127.0.0.1", "https://other.example", "http://other.example:8443"):
        with pytest.raises(HTTPClientError) as answer:
            await PhoenixClient.connect(node.port, headers={"Origin": refused})
        assert answer.value.code == 403, refused


def test_the_articles_page_is_served(node: ServerProcess) -> None:
    with urllib.request.urlopen(node.url("/ws.html"), timeout=5) as response:
        assert response.status == 200
        assert response.headers["Content-Type"].startswith("text/html")
        page = response.read().decode()
    assert "/socket/websocket" in page and "port=" in page and "room:1" in page


# ---- timeouts, limits, bad input --------------------------------------------------------------

async def test_idle_socket_is_closed_after_the_server_timeout(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"server_timeout": 0.5})
    idle = await PhoenixClient.connect(node.port)
    lively = await PhoenixClient.connect(node.port, vsn="2.0.0")
    started = time.monotonic()

    async def heartbeats() -> None:
        while True:
            ref = await lively.push("phoenix", "heartbeat", join_ref=None)
            assert (await lively.reply_to(ref)).payload["status"] == "ok"
            await asyncio.sleep(0.15)

    beating = asyncio.ensure_future(heartbeats())
    assert await idle.expect_close(timeout=3) == 1000
    assert time.monotonic() - started >= 0.45
    await asyncio.sleep(0.6)  # longer than the timeout: heartbeats keep the other one open
    assert not beating.done(), beating
    beating.cancel()
    lively.close()
    await node.async_wait_for_line(r"INFO .*idle")


@VSNS
async def test_oversized_frame_closes_1009_and_others_carry_on(start_node: Callable[..., ServerProcess],
                                                               vsn: str | None) -> None:
    node = start_node(endpoint={"max_frame_size": 1024})
    big, other = await join_room(node, vsn), await join_room(node, vsn)
    await big.shout("room:1", {"message": "x" * 2000})
    assert await big.expect_close() == 1009
    await assert_shout_reaches(other, [other], "still here")
    other.close()
    await node.async_wait_for_line(r"WARNING .*(too big|oversized|1009|max_frame_size)")
    node.assert_clean()


@VSNS
@pytest.mark.parametrize("data", ["not JSON", '{"foo":1}', '["1","1","room:1"]', "[]"],
                         ids=["not-json", "wrong-object", "short-array", "empty-array"])
async def test_bad_frame_closes_1011_with_a_one_line_warning(node: ServerProcess, vsn: str | None, data: str) -> None:
    bad, other = await join_room(node, vsn), await join_room(node, vsn)
    await bad.send_raw(data)
    assert await bad.expect_close() == 1011
    await assert_shout_reaches(other, [other], "carry on")
    other.close()
    [warning] = node.warnings()
    assert "bad frame" in warning
    node.assert_clean()


@VSNS
async def test_non_object_payload_gets_an_error_reply_not_a_close(node: ServerProcess, vsn: str | None) -> None:
    client = await join_room(node, vsn)
    ref = await client.push("room:1", "shout", [1, 2])
    answer = await client.reply_to(ref)
    assert answer.payload["status"] == "error"
    await assert_shout_reaches(client, [client], "still joined")
    client.close()
    [warning] = node.warnings()
    assert "not an object" in warning
    node.assert_clean()


async def test_binary_frame_on_v2_closes_the_socket(node: ServerProcess) -> None:
    client, other = await join_room(node, "2.0.0"), await join_room(node, "2.0.0")
    await client.send_raw(b'["1","2","room:1","shout",{"message":"bin"}]')
    assert await client.expect_close() == 1003
    await assert_shout_reaches(other, [other], "text is fine")
    await other.assert_silent(0.1)  # the binary shout was not broadcast
    other.close()
    await node.async_wait_for_line(r"WARNING .*binary")
    node.assert_clean()


async def test_channel_limit_over_a_real_socket(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"max_channels": 2})
    client = await PhoenixClient.connect(node.port, vsn="2.0.0")
    assert [(await client.join(f"room:{n}")).payload["status"] for n in (1, 2)] == ["ok", "ok"]
    refused = await client.join("room:3")
    assert refused.payload == {"status": "error", "response": {"reason": "too many channels joined"}}
    await assert_shout_reaches(client, [client], "still two")
    client.close()


async def test_slow_consumer_is_dropped_and_the_others_carry_on(start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(endpoint={"outbound_buffer": 64 * 1024})
    stalled = RawWebSocket.connect(node.port, receive_buffer=4096)
    stalled.send_text('{"topic":"room:1","event":"phx_join","payload":{},"ref":"1"}')
    await node.async_wait_for_line(r"JOIN room:1")  # joined; from here on it never reads
    shouter, listener = await join_room(node, "2.0.0"), await join_room(node)
    big = "x" * 30_000
    for n in range(400):
        await assert_shout_reaches(shouter, [shouter, listener], f"{n} {big}")
        if node.has_line("slow consumer"):
            break
    warning = await node.async_wait_for_line(r"WARNING .*dropping socket .*slow consumer", timeout=1)
    assert "65536" in warning
    # the node cut it off: after whatever the kernel buffered, the connection ends
    drained = await asyncio.get_running_loop().run_in_executor(None, stalled.drain_until_eof)
    assert drained < 8 * 1024 * 1024
    stalled.close()
    await assert_shout_reaches(listener, [shouter, listener], "after the drop")
    shouter.close()
    listener.close()
    node.assert_clean()


# ---- lifecycle and the command line -------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_sigterm_closes_websockets_with_1001_and_exits_0(node: ServerProcess, sig: int) -> None:
    clients = [await join_room(node), await join_room(node, "2.0.0")]
    node.send_signal(sig)
    assert [await c.expect_close() for c in clients] == [1001, 1001]
    assert await node.exit_status() == 0
    assert node.lines(r"INFO .*stopping") and node.lines(r"INFO .*stopped")
    assert "Traceback" not in node.log()


async def test_runs_on_embedded_defaults_and_port_comes_from_the_environment(
        start_node: Callable[..., ServerProcess]) -> None:
    node = start_node(config=False)  # no --config at all; PORT=0 picks a free port
    assert node.has_line(r"serving websockets on 0\.0\.0\.0:\d+ \(not distributed\)")
    client = await join_room(node)
    await assert_shout_reaches(client, [client], "defaults")
    client.close()
    overridden = start_node(endpoint={"port": 1})
    assert overridden.port != 1  # PORT wins over vm.yml


def test_describe_masks_the_cookie(tmp_path: Path) -> None:
    config = tmp_path / "vm.yml"
    config.write_text("node:\n  sname: gossipy\n  cookie: sekrit-cookie-from-vm-yml\n"
                      "endpoint:\n  check_origin: false\n", encoding="utf-8")
    done = run_node("--config", str(config), "describe")
    assert done.returncode == 0, done.stderr
    described = json.loads(done.stdout)
    assert described["distribution"]["cookie"] == "******"
    assert described["distribution"]["node"].startswith("gossipy@")
    assert described["endpoint"]["check_origin"] is False
    assert "sekrit" not in done.stdout + done.stderr
    from_env = run_node("--config", str(config), "describe", env={"RELEASE_COOKIE": "another-sekrit-value"})
    assert from_env.returncode == 0 and "sekrit" not in from_env.stdout + from_env.stderr


# What settings refuse, and how they word it, is tested in process (tests/test_settings_unit.py);
# here, that the command line turns it into one line and exit status 2.
@pytest.mark.parametrize("command", ["foreground", "describe"])
def test_bad_vm_yml_key_is_one_clear_line_and_exit_2(tmp_path: Path, command: str) -> None:
    config = tmp_path / "vm.yml"
    config.write_text("endpoint:\n  host: 127.0.0.1\n  prot: 4000\n", encoding="utf-8")
    done = run_node("--config", str(config), command, env={"PORT": "0"})
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert str(config) in line and "endpoint.prot" in line and "line 3" in line
    assert "Traceback" not in done.stderr
