"""Where candidate nodes come from, and where to dial them.

Today the candidates are the configured sync_nodes lists. A node's address is the host part
of its name (``gossipy@ws1`` -> ``ws1``, resolved when dialed; ``gossipy@127.0.0.2`` ->
127.0.0.2) and the one distribution port every node of a cluster shares, the way a pinned
``inet_dist_listen_min`` replaces epmd.
"""

from __future__ import annotations

from ..nodename import NodeName
from ..settings import Distribution


def configured_nodes(distribution: Distribution) -> list[str]:
    """The nodes this node is told to join, in order, without itself or repeats: a shared
    config lists every node, this one included."""
    listed = distribution.sync_nodes_optional + distribution.sync_nodes_mandatory
    return [name for name in dict.fromkeys(listed) if name != distribution.node]


def address(name: str, distribution: Distribution) -> tuple[str, int]:
    """The host and port to dial for node ``name``."""
    return NodeName.parse(name).host, distribution.port


def own_address(distribution: Distribution) -> str | None:
    """The one address this node listens on, or None when it listens on every interface
    (then it has no single address to dial from, and a local asker reaches it on loopback)."""
    listen = distribution.listen_address
    return None if listen in ("0.0.0.0", "::") else listen
