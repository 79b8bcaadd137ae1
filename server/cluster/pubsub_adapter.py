"""The cluster as pubsub's adapter: the one place where the cluster touches pubsub.

A local broadcast is encoded as JSON ``[topic, event, payload]`` once, and those bytes go to
each up peer once, however many subscribers it has; the peer fans it out locally. A direct
broadcast is the same frame to one peer. A broadcast from a peer goes to
``pubsub.local_broadcast`` as it arrives, so one sender's messages keep their order on every
receiving node. The node's up and down events go to ``pubsub.node_up``/``node_down`` with the
peer's creation, and whether it left cleanly (its LEAVE frame) or was lost.
"""

from __future__ import annotations

import logging
from typing import Callable

from .. import strictjson
from ..pubsub import Broadcast, NodeId, PubSub, reserved_topic
from .framing import FrameError
from .handshake import PeerInfo
from .membership import Node

log = logging.getLogger("gossipy.cluster.pubsub")


class ClusterAdapter:
    """``pubsub.adapter = ClusterAdapter(node, pubsub)``: implements ``server.pubsub.Adapter``."""

    def __init__(self, node: Node, pubsub: PubSub) -> None:
        self._node = node
        self._pubsub = pubsub
        # Broadcasts from peer nodes dispatched here (for GET /metrics).
        self.received = 0
        self.node = NodeId(node.name, node.creation)
        node.set_receiver(self._received)
        node.set_watcher(self._up, self._down)

    def broadcast(self, message: Broadcast) -> None:
        """Sends ``message`` once to every up peer node."""
        if self._node.is_connected:
            self._send(message, self._node.broadcast)

    def direct_broadcast(self, node: str, message: Broadcast) -> None:
        """Sends ``message`` to the peer node ``node`` only, if it is up."""
        if self._node.is_connected:
            self._send(message, lambda data: self._node.send(node, data))

    def _send(self, message: Broadcast, send: Callable[[bytes], None]) -> None:
        try:
            send(message.between_nodes())
        except (TypeError, ValueError, FrameError) as exc:
            # The other nodes miss this one message; this node's subscribers still get it.
            log.error("broadcast of %s on %s not sent to the other nodes: %s", message.event, message.topic, exc)

    def _up(self, info: PeerInfo) -> None:
        self._pubsub.node_up(NodeId(info.name, info.creation))

    def _down(self, info: PeerInfo, left: bool) -> None:
        self._pubsub.node_down(NodeId(info.name, info.creation), left)

    def _received(self, sender: str, data: bytes) -> None:
        try:
            # Strict, as for clients: what is delivered here must encode again for every socket.
            value = strictjson.loads(data)
        except strictjson.NotJSON:
            value = None
        if not (isinstance(value, list) and len(value) == 3 and isinstance(value[0], str)
                and isinstance(value[1], str)):
            log.warning("dropped a malformed broadcast from %s (%d bytes)", sender, len(data))
            return
        if not reserved_topic(value[0]):  # the app's broadcasts, as counted where they are made
            self.received += 1
        self._pubsub.local_broadcast(Broadcast(value[0], value[1], value[2]))
