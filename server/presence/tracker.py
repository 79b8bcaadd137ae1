"""The tracker: one per node, it owns presence's timers and messages and calls into the pure
:class:`~.state.PresenceState` (as Phoenix.Tracker's Shard drives its State).

It knows the cluster only through pubsub (never ``server.cluster``): messages to the other
nodes' trackers are broadcasts on :data:`TOPIC`, a reserved topic no client can join or
publish to, and node up/down come from :meth:`~server.pubsub.PubSub.watch_nodes`.

* A local change (track, update, untrack, a connection's end) changes the state at once and
  its ``presence_diff`` goes to this node's subscribers of the topic, through
  ``pubsub.local_broadcast``. Diffs never cross the cluster: each node computes and pushes its
  own from what it merges.
* The changes of one :data:`DELTA_INTERVAL` go to every other node as one ``delta`` (a burst
  of joins is one message); when no delta went out for :data:`HEARTBEAT_INTERVAL`, a
  ``heartbeat`` carries this node's clock, so a node that missed a delta sees it lags.
* A node that lags (a gap in what it saw, or a heartbeat ahead of it) ``ask``\\ s the owner,
  which answers with its own ``state`` in chunks of :data:`CHUNK` presences, one per loop
  step. A node that comes up gets the same at once: a node joining a running cluster, a
  healed partition and a restarted node all catch up this way.
* A node down: its presences leave (they are kept, hidden, for when it comes back); down for
  :data:`PERMDOWN_PERIOD`, or stopped cleanly (it said so), they are forgotten. A node back
  under the same name with a new creation replaces its old incarnation.

Messages, each a JSON object whose ``from`` is the sender's ``[name, creation]``:
``delta {from, state}`` and ``heartbeat {from, clock}`` to all nodes; ``ask {from}`` and
``state {from, state}`` to one. What a peer sends is checked by
:meth:`~.state.StateMessage.from_json` and :func:`_envelope`; a malformed message is dropped
with one log line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Mapping
from typing import Any

from ..pubsub import RESERVED_TOPIC_PREFIX, Broadcast, NodeId, PubSub, Subscriber
from .state import Changes, Limits, MalformedState, Meta, PresenceState, ReplicaId, StateMessage, clocks_from_json

log = logging.getLogger("gossipy.presence")

TOPIC = RESERVED_TOPIC_PREFIX + "presence"
DIFF = "presence_diff"

# Chat presence is seen by people: a join or a status change that shows on other nodes within
# 50 ms is as quick as a message between two of them, and a burst (a room filling at
# reconnect) still goes as one delta per 50 ms per node. Phoenix.Tracker's 1.5 s suits servers
# tracking processes; a member list that lags by seconds looks broken.
DELTA_INTERVAL = 0.05
# When idle: one small message (~80 bytes) per second to each other node, so a lost delta is
# repaired within about a second, for about (n-1) * 80 B/s per node (bench/README.md).
HEARTBEAT_INTERVAL = 1.0
# How long a down node's presences are kept, hidden: a partition that heals within it shows
# them again at once, before the catch-up confirms them. Shorter than Phoenix's 20 min because
# hidden presences still count against a topic's limit and hold memory, and a node that comes
# back later loses nothing: it sends its whole state when it comes up.
PERMDOWN_PERIOD = 120.0
# Presences per ``state`` message: about a millisecond of CPU to build and encode here, and
# about as much to decode, check and merge at the receiver (bench/README.md), so 10,000
# presences are 40 short loop steps, not one of about 90 ms.
CHUNK = 250
# A node that lags is asked again no sooner than this after the last ask or chunk from it, so
# a heartbeat that overtakes a catch-up in progress does not start another.
ASK_AGAIN_AFTER = 2 * HEARTBEAT_INTERVAL

Listing = dict[str, dict[str, list[Meta]]]


class Tracker:
    """This node's presences and its share of the cluster's, kept current (module docstring).

    ``Tracker(pubsub)``; :meth:`start` once the pubsub's adapter is in place (it names this
    node) and before the cluster connects, so no node up is missed; :meth:`stop`. The local
    operations raise :mod:`.state`'s errors (``TopicFull``, ``NodeFull``, ``AlreadyTracked``,
    ``NotTracked``) with nothing changed. The keyword arguments exist for tests.
    """

    def __init__(self, pubsub: PubSub, limits: Limits | None = None, *, delta_interval: float = DELTA_INTERVAL,
                 heartbeat_interval: float = HEARTBEAT_INTERVAL, permdown_period: float = PERMDOWN_PERIOD,
                 chunk: int = CHUNK) -> None:
        self._pubsub = pubsub
        self._limits = limits or Limits()
        self._delta_interval = delta_interval
        self._heartbeat_interval = heartbeat_interval
        self._permdown_period = permdown_period
        self._chunk = chunk
        self._state: PresenceState | None = None
        self._conns = itertools.count(1)
        self._flush: asyncio.TimerHandle | None = None
        self._heartbeat: asyncio.TimerHandle | None = None
        self._sent_since_heartbeat = False
        self._permdown: dict[str, asyncio.TimerHandle] = {}
        self._sending: dict[str, asyncio.Task[None]] = {}
        self._asked: dict[ReplicaId, float] = {}
        #: ``state`` messages sent, for tests and the bench: a catch-up's chunking shows here.
        self.chunks_sent = 0

    @property
    def state(self) -> PresenceState:
        if self._state is None:
            raise RuntimeError("the presence tracker is not started")
        return self._state

    # ---- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        node = self._pubsub.node
        self._state = PresenceState(ReplicaId(node.name, node.creation), self._limits)
        self._pubsub.subscribe(TOPIC, self)
        self._pubsub.watch_nodes(self)
        self._heartbeat = asyncio.get_running_loop().call_later(self._heartbeat_interval, self._beat)

    def stop(self) -> None:
        """Stops sending. The other nodes forget this one's presences when its cluster
        connection says it is leaving (a clean stop), so nothing more is sent here."""
        self._pubsub.unsubscribe(TOPIC, self)
        for handle in (self._flush, self._heartbeat, *self._permdown.values()):
            if handle is not None:
                handle.cancel()
        for task in self._sending.values():
            task.cancel()
        self._state = None

    # ---- local operations (the channels') ------------------------------------------------------

    def new_conn(self) -> str:
        """An id for a new owner of presences (a joined channel): unique on this node."""
        return str(next(self._conns))

    def track(self, conn: str, topic: str, key: str, meta: Mapping[str, Any],
              exclude: Subscriber | None = None) -> None:
        """Tracks ``key`` on ``topic`` for ``conn``; its diff goes to the topic's local
        subscribers but ``exclude`` (one that was just given the whole list)."""
        self._changed(self.state.join(conn, topic, key, meta), exclude)

    def update(self, conn: str, topic: str, key: str, meta: Mapping[str, Any]) -> None:
        self._changed(self.state.update(conn, topic, key, meta))

    def untrack(self, conn: str, topic: str, key: str) -> None:
        self._changed(self.state.leave(conn, topic, key))

    def untrack_conn(self, conn: str) -> None:
        """Every presence of ``conn`` leaves (it left, closed, crashed or was replaced). Does
        nothing once the tracker is stopped: the node is going, and the others forget it."""
        if self._state is not None:
            self._changed(self._state.leave_conn(conn))

    def list(self, topic: str) -> Listing:
        """``{key: {"metas": [...]}}`` for ``topic``, every node's presences: ``presence_state``."""
        return self.state.list(topic)

    def _changed(self, changes: Changes, exclude: Subscriber | None = None) -> None:
        if not changes:
            return
        self._publish(changes, exclude)
        if self._flush is None:
            self._flush = asyncio.get_running_loop().call_later(self._delta_interval, self._send_delta)

    def _publish(self, changes: Changes, exclude: Subscriber | None = None) -> None:
        for topic, diff in changes.items():
            self._pubsub.local_broadcast(Broadcast(topic, DIFF, diff.payload()), exclude)

    # ---- to the other nodes --------------------------------------------------------------------

    def _send_delta(self) -> None:
        self._flush = None
        delta = self.state.extract_delta()
        if delta is not None:
            self._broadcast("delta", state=delta.to_json())

    def _beat(self) -> None:
        if not self._sent_since_heartbeat:
            self._broadcast("heartbeat", clock=self.state.clocks()[self.state.replica])
        self._sent_since_heartbeat = False
        self._heartbeat = asyncio.get_running_loop().call_later(self._heartbeat_interval, self._beat)

    def _broadcast(self, event: str, **fields: Any) -> None:
        self._sent_since_heartbeat = True
        # broadcast_from: to the trackers of the other nodes, not back to this one.
        self._pubsub.broadcast(Broadcast(TOPIC, event, {"from": list(self.state.replica), **fields}), exclude=self)

    def _send_state(self, name: str) -> None:
        """Starts sending this node's own state to ``name`` unless a sending is under way."""
        task = self._sending.get(name)
        if task is None or task.done():
            self._sending[name] = asyncio.create_task(self._state_chunks(name), name=f"presence state to {name}")

    async def _state_chunks(self, name: str) -> None:
        try:
            for chunk in self.state.extract_own_state(self._chunk):
                self._pubsub.direct_broadcast(
                    name, Broadcast(TOPIC, "state", {"from": list(self.state.replica), "state": chunk.to_json()}))
                self.chunks_sent += 1
                await asyncio.sleep(0)  # one chunk per loop step: clients and peers are served between
        finally:
            if self._sending.get(name) is asyncio.current_task():
                del self._sending[name]

    def _ask(self, replicas: set[ReplicaId]) -> None:
        now = asyncio.get_running_loop().time()
        for replica in replicas:
            if now - self._asked.get(replica, -ASK_AGAIN_AFTER) >= ASK_AGAIN_AFTER:
                self._asked[replica] = now
                log.info("presence: asking %s for its state (missed changes of it)", replica.name)
                self._pubsub.direct_broadcast(replica.name, Broadcast(TOPIC, "ask", {"from": list(self.state.replica)}))

    # ---- from the other nodes ------------------------------------------------------------------

    def deliver(self, message: Broadcast, cache: dict[Any, Any]) -> None:
        """Pubsub's call with another node's tracker message."""
        if self._state is None:
            return
        try:
            sender, fields = _envelope(message, self._limits)
            self._received(message.event, sender, fields)
        except MalformedState as exc:
            log.warning("presence: dropped a malformed %.40r message: %s", message.event, exc)

    def _received(self, event: str, sender: ReplicaId, fields: dict[str, Any]) -> None:
        state = self.state
        if event == "heartbeat":
            self._ask(state.lagging({sender: fields["clock"]}))
        elif event == "ask":
            self._send_state(sender.name)
        else:  # delta, state
            if event == "state":
                self._asked[sender] = asyncio.get_running_loop().time()
            self._publish(state.merge(StateMessage.from_json(fields["state"], self._limits)))
            self._ask(state.lagging())

    def node_up(self, node: NodeId) -> None:
        permdown = self._permdown.pop(node.name, None)
        if permdown is not None:
            permdown.cancel()
        self._publish(self.state.replica_up(ReplicaId(*node)))
        self._send_state(node.name)

    def node_down(self, node: NodeId, left: bool) -> None:
        if self._state is None:
            return
        task = self._sending.pop(node.name, None)
        if task is not None:
            task.cancel()
        replica = ReplicaId(*node)
        self._asked.pop(replica, None)
        if left:
            self._publish(self._state.forget_replica(replica))
            return
        self._publish(self._state.replica_down(replica))
        self._permdown[node.name] = asyncio.get_running_loop().call_later(
            self._permdown_period, self._forget, replica)

    def _forget(self, replica: ReplicaId) -> None:
        del self._permdown[replica.name]
        log.info("presence: forgetting %s's presences, down for %g s", replica.name, self._permdown_period)
        self._publish(self.state.forget_replica(replica))


_FIELDS = {"delta": {"from", "state"}, "state": {"from", "state"}, "heartbeat": {"from", "clock"}, "ask": {"from"}}


def _envelope(message: Broadcast, limits: Limits) -> tuple[ReplicaId, dict[str, Any]]:
    """A tracker message's sender and fields, checked (the state inside is checked when merged);
    MalformedState says what is wrong."""
    names = _FIELDS.get(message.event)
    if names is None:
        raise MalformedState("not a presence event")
    fields = message.payload
    if not isinstance(fields, dict) or set(fields) != names:
        raise MalformedState(f"the payload is not an object with exactly {sorted(names)}")
    origin, clock = fields["from"], fields.get("clock", 0)
    if not isinstance(origin, list):
        raise MalformedState("from is not [name, creation]")
    # The clocks' parser checks a [name, creation] and a clock as a heartbeat's clocks are checked.
    ((sender, clock),) = clocks_from_json([[*origin, clock]], limits).items()
    return sender, {**fields, "clock": clock} if "clock" in fields else fields
