"""Node names, in process: the NAME@HOST grammar, short vs long, the host part."""

from __future__ import annotations

import pytest

from server.nodename import NodeName, NodeNameError, is_ip, is_long, kind


@pytest.mark.parametrize("text, name, host, long", [
    ("gossipy@ws1", "gossipy", "ws1", False),
    ("gossipy@127.0.0.2", "gossipy", "127.0.0.2", True),
    ("gossipy@ws1.example.com", "gossipy", "ws1.example.com", True),
    ("gossipy@::1", "gossipy", "::1", True),
    ("a_b-9@h_o-st", "a_b-9", "h_o-st", False),
])
def test_a_name_parses_into_its_parts_and_kind(text: str, name: str, host: str, long: bool) -> None:
    parsed = NodeName.parse(text)
    assert (parsed.name, parsed.host, parsed.long) == (name, host, long)
    assert str(parsed) == text
    assert is_long(text) is long


@pytest.mark.parametrize("text", ["gossipy", "gossipy@", "@ws1", "a@b@c", "gos sipy@ws1", "gossipy@ws 1",
                                  "gössipy@ws1", "gossipy@ws1/x", ""])
def test_what_is_not_name_at_host_is_refused_showing_the_text(text: str) -> None:
    with pytest.raises(NodeNameError) as refused:
        NodeName.parse(text)
    assert str(refused.value) == f"{text!r} is not a node name of the form NAME@HOST"


def test_a_bare_name_counts_as_short_without_being_checked() -> None:
    assert not is_long("gossipy") and is_long("gossipy@10.0.0.1") and not is_long("gossipy@ws1")


def test_ip_addresses_are_told_from_host_names() -> None:
    assert is_ip("127.0.0.2") and is_ip("::1") and is_ip("fe80::1")
    assert not is_ip("ws1") and not is_ip("ws1.example.com") and not is_ip("300.1.1.1")


def test_the_kind_for_messages() -> None:
    assert (kind(True), kind(False)) == ("long", "short")
