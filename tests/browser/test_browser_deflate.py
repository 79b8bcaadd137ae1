"""permessage-deflate with context takeover in real Chromium: Chrome offers it, a node with
``endpoint.compress`` and ``deflate_context_takeover`` agrees, and every chat page reads every
shout of its room. The pages share the node's compressors while they hear the same; a page
that joins late, whose join presence diffs go to the others, starts on its own and merges;
its own short messages (join replies, heartbeats' replies) go plain in between."""

from __future__ import annotations

import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from . import chat_page

CONTEXT_TAKEOVER = {"endpoint": {"compress": True, "deflate_context_takeover": True}}

# What the page's own socket agreed on: Chrome's offer, the node's answer.
_EXTENSIONS = """async (url) => {
  const ws = new WebSocket(url);
  await new Promise((resolve, reject) => { ws.onopen = resolve; ws.onerror = reject; });
  const agreed = ws.extensions;
  ws.close();
  return agreed;
}"""


def written(url: str) -> tuple[float, float]:
    """The node's websocket messages and bytes written so far (its /metrics)."""
    with urllib.request.urlopen(url, timeout=5) as response:
        families = {family.name: family for family in text_string_to_metric_families(response.read().decode())}
    messages, bytes_ = (families[name].samples[0].value
                        for name in ("gossipy_websocket_messages_sent", "gossipy_websocket_written_bytes"))
    return messages, bytes_


@pytest.mark.browser
def test_chromium_reads_every_shout_compressed_with_context(node_processes, pages) -> None:
    node = node_processes.start(2, sections=CONTEXT_TAKEOVER)
    ann = pages.open("ann", node.url("/"))
    agreed = ann.eval(_EXTENSIONS, node.url("/socket/websocket?vsn=2.0.0", scheme="ws"))
    assert agreed.startswith("permessage-deflate") and "server_no_context_takeover" not in agreed, agreed

    room = {"ann": ann, "ben": pages.open("ben", node.url("/")), "cat": pages.open("cat", node.url("/"))}
    for nick, page in room.items():
        chat_page.join(page, nick, "lobby")
    messages_before, bytes_before = written(node.url("/metrics"))
    said = []
    for line in range(6):
        for nick, page in room.items():
            said.append((nick, f"{nick}'s line {line}: the weather in the lobby is fine today"))
            chat_page.say(page, said[-1][1])
    for page in room.values():
        for nick, text in said:
            chat_page.wait_message(page, nick, text)
    messages, bytes_ = written(node.url("/metrics"))
    # A shout is ~150 bytes as a plain frame; with the room's context, a third of that.
    assert messages - messages_before >= 3 * len(said)
    assert (bytes_ - bytes_before) / (messages - messages_before) < 80

    room["dan"] = pages.open("dan", node.url("/"))
    chat_page.join(room["dan"], "dan", "lobby")
    chat_page.wait_members(room["ann"], {nick: node.name for nick in room})
    late = [(nick, f"{nick} welcomes dan, line {line}") for line in range(3) for nick in ("ann", "dan")]
    for nick, text in late:
        chat_page.say(room[nick], text)
    for page in room.values():
        for nick, text in late:
            chat_page.wait_message(page, nick, text)
    pages.assert_no_page_errors()
