"""Clustering over persistent peer TCP streams, in the manner of Erlang distribution.

Wiring (``server/app.py``)::

    node = Node(settings.distribution)
    pubsub.adapter = ClusterAdapter(node, pubsub)
    await node.start()          # raises BootError
    ...
    await node.stop()

and, from another process with the same settings,
``await control.query(settings.distribution, "ping" | "nodes")`` (raises ControlError).
"""

from server.cluster import control
from server.cluster.control import ControlError
from server.cluster.membership import BootError, Node
from server.cluster.pubsub_adapter import ClusterAdapter

__all__ = ["BootError", "ClusterAdapter", "ControlError", "Node", "control"]
