"""The article's Appendix 1 page (``/ws.html``) in real Chromium, on a local two-node cluster.

As in the article: one page per node, chosen with ``?port=``, both in room:1, and what is
typed into either shows on both (which needs the cluster: each node only has its own page).
"""

from __future__ import annotations

import pytest

from . import chat_page
from support.server_process import wait_until


def shout(page, text: str) -> None:
    page.fill("#shout-content", text)
    page.press("#shout-content", "Enter")


def joined(page) -> bool:
    """The page's websocket got the ok reply to its phx_join."""
    return any('"phx_reply"' in frame and '"ok"' in frame
               for websocket in page.log()["sockets"] for frame in websocket["received"])


def wait_shown(page, text: str) -> None:
    page.wait_for("(text) => document.getElementById('messages').textContent.split('\\n').includes(text)",
                  text, what=f"{text!r} on {page.name}")


@pytest.mark.browser
def test_article_page_on_two_nodes_exchanges_messages_both_ways(cluster, pages) -> None:
    a, b = cluster(2)
    # As in the article: ws.html?port=N on each node (here each node has its own address too).
    page_a = pages.open("ws-a", a.url(f"/ws.html?port={a.port}"))
    page_b = pages.open("ws-b", b.url(f"/ws.html?port={b.port}"))
    for page, node in ((page_a, a), (page_b, b)):
        # The page joins room:1 with the article's V1 frames, on the node its ?port= names.
        wait_until(lambda page=page: joined(page), 10, f"{page.name} to join room:1")
        urls = [s["url"] for s in page.log()["sockets"]]
        assert urls == [f"ws://{node.host}:{node.port}/socket/websocket"], urls
        node.wait_for_line(r"JOIN room:1 to RoomChannel", timeout=5)

    shout(page_a, "hello from the node A page")
    wait_shown(page_b, "hello from the node A page")
    wait_shown(page_a, "hello from the node A page")  # the sender sees its own shout too
    shout(page_b, "and back from B")
    wait_shown(page_a, "and back from B")
    wait_shown(page_b, "and back from B")
    assert page_a.eval("() => document.getElementById('shout-content').value") == ""
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_article_page_shows_what_the_chat_page_says(cluster, pages) -> None:
    """The chat page sends {message, user, sent_at}; the article's page shows ``message``."""
    a, b = cluster(2)
    article = pages.open("ws-a", a.url(f"/ws.html?port={a.port}"))
    chat = pages.open("chat-b", b.url("/"))
    a.wait_for_line(r"JOIN room:1", timeout=10)
    chat_page.join(chat, "ada", "1")
    # The article's page joins with no name: in the room, never in its member list.
    chat_page.wait_members(chat, {"ada": b.name})
    chat_page.say(chat, "from the chat page")
    wait_shown(article, "from the chat page")
    shout(article, "from the article's page")
    shown = chat_page.wait_message(chat, "anonymous", "from the article's page")
    chat_page.assert_recent(shown)
    pages.assert_no_page_errors()
