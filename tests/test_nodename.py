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


@pytest.mark.parametrize("text, worker", [
    ("gossipy@ws1", 1), ("gossipy-2@ws1", 2), ("gossipy-12@ws1", 12), ("a-b-3@h", 3),
    ("gossipy-1@ws1", 1), ("gossipy-0@ws1", 1), ("gossipy-02@ws1", 1), ("gossipy-x@ws1", 1), ("a_b-9@h_o-st", 9),
])
def test_a_name_ending_in_a_number_from_2_is_that_worker_of_its_host(text: str, worker: int) -> None:
    assert NodeName.parse(text).worker == worker


def test_worker_names_and_ports_derive_from_the_first_workers_name() -> None:
    first = NodeName.parse("gossipy@ws1")
    assert [str(first.for_worker(k)) for k in (1, 2, 3)] == ["gossipy@ws1", "gossipy-2@ws1", "gossipy-3@ws1"]
    assert [first.for_worker(k).port(4370) for k in (1, 2, 3)] == [4370, 4371, 4372]
    assert NodeName.parse("gossipy-2@ws1").port(65534) == 65535
    with pytest.raises(NodeNameError, match="gossipy-3@ws1: worker 3's port, 65534 \\+ 2, is over 65535"):
        NodeName.parse("gossipy-3@ws1").port(65534)


def test_a_workers_name_leads_back_to_its_hosts_first_worker() -> None:
    second = NodeName.parse("gossipy-2@ws1")
    assert str(second.first) == "gossipy@ws1" and str(second.for_worker(3)) == "gossipy-3@ws1"
    assert NodeName.parse("a-1@h").first == NodeName.parse("a-1@h")
