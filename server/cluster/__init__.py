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

from . import control
from .control import ControlError
from .membership import BootError, Node
from .pubsub_adapter import ClusterAdapter

__all__ = ["BootError", "ClusterAdapter", "ControlError", "Node", "control"]
