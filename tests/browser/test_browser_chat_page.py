"""The chat page (``/``) in real Chromium: nicknames, times, who is in the room and on which
node, the node and cluster panel, reconnection when its node goes away, heartbeats, and user
text shown as text.

Screenshots of each step go to tests/artifacts/browser/.
"""

from __future__ import annotations

import json

import pytest

from . import chat_page
from support.server_process import wait_until


@pytest.mark.browser
def test_two_nodes_chat_and_a_page_survives_losing_its_node(cluster, pages, load_balancer) -> None:
    a, b = cluster(2)
    # Bob reaches node B through a load balancer (one address, as in production); Alice is on A.
    lb = load_balancer(b.port, b.host)
    alice = pages.open("alice", a.url("/"))
    bob = pages.open("bob", f"http://127.0.0.1:{lb.port}/", phone=True)
    chat_page.join(alice, "alice", "lobby")
    chat_page.join(bob, "bob", "lobby")

    # Each page names its node and lists the cluster as that node sees it.
    chat_page.wait_cluster(alice, [a.name, b.name])
    chat_page.wait_cluster(bob, [b.name, a.name])
    assert alice.text("#node-name") == a.name
    assert bob.text("#node-name") == b.name
    assert a.name in chat_page.wait_state(alice, "joined")
    # Both list both, each with the node its page is connected to.
    chat_page.wait_members(alice, {"alice": a.name, "bob": b.name})
    chat_page.wait_members(bob, {"alice": a.name, "bob": b.name})

    # Both ways, with who sent it and when.
    chat_page.say(alice, "hi Bob, this is node A")
    shown = chat_page.wait_message(bob, "alice", "hi Bob, this is node A")
    chat_page.assert_recent(shown)
    assert not shown["mine"]
    assert chat_page.wait_message(alice, "alice", "hi Bob, this is node A")["mine"]
    chat_page.say(bob, "hello Alice, B here")
    chat_page.assert_recent(chat_page.wait_message(alice, "bob", "hello Alice, B here"))
    assert chat_page.fits_width(bob), "the chat page scrolls sideways on a phone-sized screen"
    pages.screenshot(alice, "chat-desktop")
    pages.screenshot(bob, "chat-phone")

    # Node B dies (SIGKILL: no close frame, the connection just drops).
    b.kill()
    status = chat_page.wait_state(bob, "reconnecting", timeout=5)
    assert "Reconnecting" in status
    assert bob.visible("#banner") and "Reconnecting" in bob.text("#banner")
    assert bob.eval("() => document.getElementById('message').disabled")
    pages.screenshot(bob, "reconnecting")
    assert chat_page.state(alice) == "joined"
    # Bob's presence went with his node; his page shows its last list, greyed out, meanwhile.
    chat_page.wait_members(alice, {"alice": a.name}, timeout=15)
    assert bob.attribute("#members-panel", "data-stale") == "true"

    # The load balancer sends new connections to the surviving node; the page recovers by
    # itself, rejoins its room there, and says where it is now.
    lb.point_at((a.host, a.port))
    chat_page.wait_state(bob, "joined", timeout=10)
    assert not bob.visible("#banner")
    chat_page.wait_cluster(bob, [a.name], timeout=15)
    chat_page.wait_cluster(alice, [a.name], timeout=15)
    assert bob.text("#node-name") == a.name
    assert any("Rejoined room lobby" in line for line in bob.texts("#messages li.system"))
    # The rejoin's presence_state brings Bob's page up to date: Bob is on node A now.
    chat_page.wait_members(bob, {"alice": a.name, "bob": a.name})
    chat_page.wait_members(alice, {"alice": a.name, "bob": a.name})

    chat_page.say(bob, "back, now through node A")
    chat_page.wait_message(alice, "bob", "back, now through node A")
    chat_page.say(alice, "welcome back")
    chat_page.wait_message(bob, "alice", "welcome back")
    pages.screenshot(bob, "recovered-phone")
    pages.screenshot(alice, "after-failover-desktop")
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_member_list_one_entry_per_name_across_two_nodes(cluster, pages) -> None:
    a, b = cluster(2)
    alice = pages.open("alice", a.url("/"))
    bob = pages.open("bob", b.url("/"))
    chat_page.join(alice, "alice", "lobby")
    chat_page.join(bob, "bob", "lobby")
    chat_page.wait_members(alice, {"alice": a.name, "bob": b.name})
    assert alice.texts("#members li .tag") == ["you"]
    assert alice.text("#member-count") == "· 2"

    # Bob opens two more tabs, on node A and on node B: still one Bob, on both nodes.
    bob_a = pages.open("bob-on-a", a.url("/"), phone=True)
    bob_b = pages.open("bob-again-on-b", b.url("/"))
    chat_page.join(bob_a, "bob", "lobby")
    chat_page.join(bob_b, "bob", "lobby")
    both = {"alice": a.name, "bob": f"{a.name} · {b.name} ×2"}
    for page in (alice, bob, bob_a, bob_b):
        chat_page.wait_members(page, both)
    assert alice.attribute('#members li[data-member="bob"]', "data-count") == "3"
    assert chat_page.fits_width(bob_a)
    chat_page.say(bob_a, "three tabs, one me")
    chat_page.wait_message(alice, "bob", "three tabs, one me")
    chat_page.say(alice, "hi Bob, all of you")
    chat_page.wait_message(bob, "alice", "hi Bob, all of you")
    pages.screenshot(alice, "members-desktop")
    pages.screenshot(bob_a, "members-phone")

    # Closing tabs takes their metas away; the last one takes Bob off the list.
    pages.close_tab(bob)
    chat_page.wait_members(alice, {"alice": a.name, "bob": f"{a.name} · {b.name}"})
    pages.close_tab(bob_b)
    chat_page.wait_members(alice, {"alice": a.name, "bob": a.name})
    pages.close_tab(bob_a)
    chat_page.wait_members(alice, {"alice": a.name})
    assert alice.text("#member-count") == "· 1"
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_page_reconnects_after_close_1001_and_rejoins(node_processes, pages) -> None:
    """A node shutting down closes its websockets with 1001: the page says so, retries with
    backoff, and once the node is back (same address) it rejoins its room by itself."""
    node = node_processes.start(2)
    page = pages.open("carol", node.url("/?nick=carol&room=ops"))
    assert page.eval("() => document.getElementById('nick').value") == "carol"
    chat_page.join(page, "carol", "ops")

    assert node.terminate() == 0
    chat_page.wait_state(page, "reconnecting", timeout=5)
    assert "the node went away, code 1001" in page.text("#banner")
    pages.screenshot(page, "node-stopped")

    node = node_processes.restart(node)
    chat_page.wait_state(page, "joined", timeout=10)  # backoff reaches 5 s at the most
    chat_page.say(page, "still here")
    chat_page.wait_message(page, "carol", "still here")
    sockets = page.log()["sockets"]
    assert len(sockets) >= 2 and sockets[0]["closed"], sockets
    assert all(s["url"] == sockets[0]["url"] for s in sockets), "the page changed its address"
    last_join = [json.loads(f) for f in sockets[-1]["sent"] if '"phx_join"' in f]
    assert last_join and last_join[-1][2] == "room:ops", sockets[-1]["sent"]
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_page_sends_a_heartbeat_every_30_seconds(node, pages) -> None:
    page = pages.open("heartbeat", node.url("/"), clock=True)
    chat_page.join(page, "dora", "1")

    def heartbeats() -> tuple[list, list]:
        websocket = page.log()["sockets"][0]
        sent = [json.loads(f) for f in websocket["sent"] if '"heartbeat"' in f]
        replies = [json.loads(f) for f in websocket["received"] if '"phoenix"' in f]
        return sent, replies

    assert heartbeats() == ([], [])
    page.clock("fastForward", "00:31")
    wait_until(lambda: len(heartbeats()[1]) == 1, 5, "a heartbeat and its reply")
    page.clock("fastForward", "00:30")
    wait_until(lambda: len(heartbeats()[1]) == 2, 5, "a second heartbeat and its reply")
    sent, replies = heartbeats()
    assert [f[:4] for f in sent] == [[None, sent[0][1], "phoenix", "heartbeat"],
                                     [None, sent[1][1], "phoenix", "heartbeat"]]
    assert [r[1] for r in replies] == [s[1] for s in sent]
    assert all(r[4]["status"] == "ok" for r in replies)
    # Answered heartbeats keep the connection: still the first websocket, still in the room.
    assert len(page.log()["sockets"]) == 1
    assert chat_page.state(page) == "joined"
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_user_text_is_shown_as_text_never_as_html(node, pages) -> None:
    sender = pages.open("sender", node.url("/"))
    reader = pages.open("reader", node.url("/"), phone=True)
    nick = '<img src=x onerror=pwned=1>'
    chat_page.join(sender, nick, "1")
    chat_page.join(reader, "reader", "1")
    text = '<script>window.pwned=2</script><b onmouseover="pwned=3">bold?</b>'
    chat_page.say(sender, text)
    chat_page.wait_message(reader, nick, text)
    # Payloads from other clients need not be well-formed: a number, no user, a bad time.
    sender.eval("() => window.gossipyChat.channel().push('shout', {message: 42, user: {x: 1}, sent_at: 'yesterday'})")
    shown = chat_page.wait_message(reader, "anonymous", "42")
    chat_page.assert_recent(shown)
    assert reader.eval("() => document.querySelectorAll('#messages img, #messages script, #messages b').length") == 0
    assert reader.eval("() => window.pwned === undefined")
    assert chat_page.fits_width(reader)
    pages.screenshot(reader, "text-not-html-phone")
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_page_reconnects_when_heartbeats_go_unanswered(node, pages, load_balancer) -> None:
    """A path that dies without a close (no FIN, no RST): the unanswered heartbeat is the
    only sign. One interval later the page gives up on the connection and reconnects."""
    lb = load_balancer(node.port)
    page = pages.open("silent", f"http://127.0.0.1:{lb.port}/?port={lb.port}", clock=True)
    chat_page.join(page, "erin", "1")
    lb.blackhole()
    page.clock("fastForward", "00:31")  # the heartbeat goes out and vanishes
    wait_until(lambda: any('"heartbeat"' in f for f in page.log()["sockets"][0]["sent"]), 5, "a heartbeat")
    assert chat_page.state(page) == "joined"
    page.clock("fastForward", "00:30")  # no reply within an interval: reconnect
    wait_until(lambda: len(page.log()["sockets"]) == 2, 10, "a second websocket")
    chat_page.wait_state(page, "joined", timeout=10)
    chat_page.say(page, "back after a silent drop")
    chat_page.wait_message(page, "erin", "back after a silent drop")
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_leaving_a_room_and_joining_another(node, pages) -> None:
    one = pages.open("one", node.url("/"))
    other = pages.open("other", node.url("/"), phone=True)
    chat_page.join(one, "fay", "1")
    chat_page.join(other, "gus", "1")
    other.click("#leave")
    other.wait("#join-form")
    assert not other.visible("#chat-view")
    chat_page.join(other, "gus", "side-room")
    assert other.text("#room-label") == "room side-room as gus"
    chat_page.say(one, "only for room 1")
    chat_page.say(other, "only for the side room")
    chat_page.wait_message(other, "gus", "only for the side room")
    chat_page.wait_message(one, "fay", "only for room 1")
    assert other.texts("#messages li.message .text") == ["only for the side room"]
    assert one.texts("#messages li.message .text") == ["only for room 1"]
    pages.assert_no_page_errors()
