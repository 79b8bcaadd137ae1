"""Clustering over persistent peer TCP streams, in the manner of Erlang distribution.

``framing`` and ``handshake`` are sans-I/O; ``peer`` is one asyncio Protocol per connection
(and ``dial``); ``membership.Node`` owns the connection table; ``admission`` bounds what
strangers may hold; ``control`` is ``ping``/``nodes``/``broadcast``, both halves; ``discovery`` says whom to
dial and where; ``tls`` holds the contexts; ``pubsub_adapter`` is the seam to pubsub.

Wiring (``server/app.py``)::

    node = Node(settings.distribution)
    pubsub.adapter = ClusterAdapter(node, pubsub)
    node.set_publisher(publish)  # what `gossipy broadcast` does with a message (ValueError: refused)
    await node.start()          # raises BootError
    ...
    await node.stop()

and, from another process with the same settings,
``await control.query(settings.distribution, "ping" | "nodes" | "broadcast", message=...)``
(raises ControlError).
"""

from . import control
from .control import ControlError
from .membership import BootError, Node
from .pubsub_adapter import ClusterAdapter

__all__ = ["BootError", "ClusterAdapter", "ControlError", "Node", "control"]
