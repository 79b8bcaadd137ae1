"""Where nodes are dialed: the host part of the name, and the port all nodes share."""

from __future__ import annotations

from server.cluster.discovery import address, configured_nodes
from server.settings import Cookie, Distribution


def test_a_short_name_is_dialed_by_its_host_name_and_a_long_one_by_its_address() -> None:
    assert address("gossipy@ws1", Distribution(port=4370)) == ("ws1", 4370)
    assert address("gossipy@127.0.0.2", Distribution(port=9100)) == ("127.0.0.2", 9100)


def test_the_configured_nodes_leave_out_this_node_and_repeats() -> None:
    distribution = Distribution(node="gossipy@ws1", cookie=Cookie("c"),
                                sync_nodes_optional=("gossipy@ws1", "gossipy@ws2", "gossipy@ws3"),
                                sync_nodes_mandatory=("gossipy@ws3", "gossipy@ws4"))
    assert configured_nodes(distribution) == ["gossipy@ws2", "gossipy@ws3", "gossipy@ws4"]
