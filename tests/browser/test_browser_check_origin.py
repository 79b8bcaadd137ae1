"""check_origin in a real browser: with the default settings a node accepts websockets only
from pages whose origin names the host the browser asked for, so another site open in the
same browser cannot talk to the node on the user's behalf.

The other site is a static web server on 127.0.0.2; "localhost" is another origin too.
"""

from __future__ import annotations

import pytest

from . import chat_page

OPEN_SOCKET = """(url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  const timer = setTimeout(() => resolve('no answer'), 5000);
  ws.onopen = () => { clearTimeout(timer); ws.close(); resolve('open'); };
  ws.onclose = (event) => { clearTimeout(timer); resolve('closed ' + event.code); };
})"""


@pytest.mark.browser
def test_pages_of_another_origin_cannot_open_a_websocket(node, pages, foreign_site) -> None:
    socket_url = f"ws://127.0.0.1:{node.port}/socket/websocket?vsn=2.0.0"

    own = pages.open("own-origin", node.url("/cluster"))
    assert own.eval(OPEN_SOCKET, socket_url) == "open"

    foreign = pages.open("foreign", foreign_site.url("/blank.html"))
    assert foreign.eval(OPEN_SOCKET, socket_url) == "closed 1006"  # the handshake got a 403
    node.wait_for_line(rf"refusing websocket from 127\.0\.0\.1: origin 'http://127\.0\.0\.2:{foreign_site.port}' "
                       rf"not allowed for host '127\.0\.0\.1:{node.port}' \(check_origin\)")

    other_name = pages.open("localhost", f"http://localhost:{node.port}/cluster")
    assert other_name.eval(OPEN_SOCKET, socket_url) == "closed 1006"
    node.wait_for_line(rf"origin 'http://localhost:{node.port}' not allowed")
    pages.assert_no_page_errors()


@pytest.mark.browser
def test_the_chat_page_served_by_another_site_cannot_join(node, pages, foreign_site) -> None:
    """The chat page itself, copied to another site and pointed at the node with ?node=HOST:PORT:
    it never connects, and says it is reconnecting instead of pretending to work."""
    page = pages.open("copied-chat", foreign_site.url(f"/?node=127.0.0.1:{node.port}"))
    assert page.text("#endpoint") == f"ws://127.0.0.1:{node.port}/socket/websocket?vsn=2.0.0"
    chat_page.wait_state(page, "reconnecting", timeout=5)
    assert page.text("#banner").startswith(f"Cannot reach 127.0.0.1:{node.port}")
    page.fill("#nick", "mallory")
    page.click("#join")
    page.wait_for("() => window.gossipyChat.socket.tries >= 3", timeout=5, what="three refused attempts")
    assert chat_page.state(page) == "reconnecting"
    assert page.eval("() => document.getElementById('message').disabled")
    assert node.has_line(r"refusing websocket .* origin 'http://127\.0\.0\.2:")
    assert not node.has_line(r"JOIN room:")
    pages.screenshot(page, "foreign-origin-refused")
