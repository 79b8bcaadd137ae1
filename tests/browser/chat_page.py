"""What a person does on the chat page (server/static/index.html), as test steps.

Every wait is on what the page shows (its status line, its message list, its cluster panel),
so a failure says what the user would have seen.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from .browser_bridge import Page

STATE = "#status"


def state(page: Page) -> str | None:
    return page.attribute(STATE, "data-state")


def wait_state(page: Page, wanted: str, timeout: float = 10.0) -> str:
    """Waits until the status line is in state ``wanted``; returns its text."""
    try:
        page.wait_for("(wanted) => document.getElementById('status').dataset.state === wanted", wanted,
                      timeout=timeout, what=f"status {wanted!r}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(the status line says {page.text(STATE)!r})") from None
    return page.text(STATE)


def join(page: Page, nick: str, room: str = "1") -> None:
    page.wait("#join-form")
    page.fill("#nick", nick)
    page.fill("#room", room)
    page.click("#join")
    wait_state(page, "joined")
    page.wait("#message:enabled")


def say(page: Page, text: str) -> None:
    page.fill("#message", text)
    page.press("#message", "Enter")
    page.wait_for("() => document.getElementById('message').value === ''", what="the message to be sent")


_FIND = """([user, text]) => {
  for (const li of document.querySelectorAll('#messages li.message')) {
    const who = li.querySelector('.user').textContent;
    const body = li.querySelector('.text').textContent;
    const time = li.querySelector('time');
    if (who === user && body === text) {
      return {user: who, text: body, datetime: time.getAttribute('datetime'), shown: time.textContent,
              mine: li.classList.contains('mine')};
    }
  }
  return null;
}"""


def wait_message(page: Page, user: str, text: str, timeout: float = 10.0) -> dict:
    """Waits for a message from ``user`` saying ``text``; returns what the page shows of it."""
    return page.wait_for(_FIND, [user, text], timeout=timeout, what=f"{user}: {text!r} on {page.name}")


def assert_recent(shown: dict, within: float = 120.0) -> None:
    """The message carries the time it was sent (ISO, in its <time datetime>) and shows it."""
    sent = datetime.fromisoformat(shown["datetime"].replace("Z", "+00:00"))
    assert abs(datetime.now(timezone.utc) - sent) < timedelta(seconds=within), shown
    assert len(shown["shown"]) == 8 and shown["shown"].count(":") == 2, shown  # HH:MM:SS


def wait_cluster(page: Page, nodes: list[str], timeout: float = 15.0) -> list[str]:
    """Waits until the cluster panel lists exactly ``nodes`` (this node first)."""
    return page.wait_for(
        """(want) => {
             const have = [...document.querySelectorAll('#cluster-nodes li')].map(li => li.dataset.node);
             const stale = document.getElementById('cluster-panel').dataset.stale === 'true';
             return !stale && have.length === want.length && have[0] === want[0]
                    && want.every(n => have.includes(n)) ? have : null;
           }""", nodes, timeout=timeout, what=f"the cluster panel to list {nodes}")


def fits_width(page: Page) -> bool:
    """No horizontal scrolling: the page fits its (phone-sized) viewport."""
    return page.eval("() => document.documentElement.scrollWidth <= window.innerWidth")


def members(page: Page) -> list[list[str]]:
    """The member list as shown: [name, the nodes line under it], in the page's order."""
    return page.eval("""() => [...document.querySelectorAll('#members li')].map(
                          li => [li.dataset.member, li.querySelector('.member-nodes').textContent])""")


def wait_members(page: Page, want: dict[str, str], timeout: float = 10.0) -> list[list[str]]:
    """Waits until the member list, up to date (not stale), shows exactly ``want``: each name
    once, with its nodes line ("gossipy@127.0.0.2 · gossipy@127.0.0.3", "gossipy@127.0.0.2 ×2")."""
    wanted = [[name, nodes] for name, nodes in sorted(want.items())]
    try:
        return page.wait_for(
            """(want) => {
                 if (document.getElementById('members-panel').dataset.stale !== 'false') return null;
                 const have = [...document.querySelectorAll('#members li')].map(
                   li => [li.dataset.member, li.querySelector('.member-nodes').textContent]);
                 return JSON.stringify(have) === JSON.stringify(want) ? have : null;
               }""", wanted, timeout=timeout, what=f"the member list to show {want}")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n(the page lists {members(page)})") from None
