"""The replicated presence state: who is tracked on which topic across the cluster, sans-I/O.

One :class:`PresenceState` per node. It holds every node's presences, but each presence has
one owner, the replica (node name + per-boot creation) whose connection tracked it, and only
the owner adds or removes it. Everything here is pure: no timers, no asyncio, no sockets. The
tracker that will own this object decides when to ship a delta, when a replica is down, and
when it is gone for good, and pushes the :class:`PresenceDiff` each call returns to clients.

How it converges (the design of Phoenix.Tracker's ``State``, an add-wins observed-remove set):

* every local change takes the owner's next clock value; a presence is named by its *dot*
  (owner, clock), and removing one takes a clock value too, so that a replica which missed a
  removal can tell that it is behind;
* each replica remembers, per owner, which clock values it has *seen* (1..n plus, after a lost
  message, islands beyond the gap). A presence that is seen but not held was removed, so no
  tombstones are kept;
* a :class:`StateMessage` is a set of :class:`Slice`\\ s: an owner, the clock values the sender
  has seen of it, and the presences among them it still holds. A delta is a slice of the
  sender's own recent clock values; a full state is a slice per owner from clock 1. Merging
  adds what the receiver has not seen, and removes what the sender has seen gone. That is a
  join of sets, so messages can be merged twice, in any order, or lost and repaired later by a
  full state, and every replica ends with the same presences.

Only the owner's word counts for its own presences: a slice about this replica is ignored,
and so is a slice about a replica this state does not know (never announced by
:meth:`PresenceState.replica_up`, or forgotten), so a dead incarnation's presences can not come
back through a peer that still held them.
"""

from __future__ import annotations

import base64
import hashlib
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

Meta = dict[str, Any]
"""A presence's metadata as the application gave it: a JSON object."""

# What this module adds to a meta; a meta's own fields of these names are overwritten.
_REF_FIELDS = ("phx_ref", "phx_ref_prev")

WIRE_VERSION = 1
# The largest integer every JSON reader keeps exact (JavaScript's Number.MAX_SAFE_INTEGER + 1).
_MAX_CLOCK = 2**53


class ReplicaId(NamedTuple):
    """One incarnation of a node: a node restarted under the same name has a new creation."""

    name: str
    creation: int


class PresenceError(Exception):
    """Base of the errors this module raises."""


class AlreadyTracked(PresenceError):
    """The connection already tracks this key on this topic (update it instead)."""


class NotTracked(PresenceError):
    """The connection does not track this key on this topic."""


class LimitExceeded(PresenceError):
    """A join would go over a configured limit; nothing was changed."""


class TopicFull(LimitExceeded):
    """The topic holds ``Limits.max_per_topic`` presences already."""


class NodeFull(LimitExceeded):
    """This node tracks ``Limits.max_per_node`` presences already."""


class MalformedState(PresenceError, ValueError):
    """A peer's message is not a valid state message; the state was not changed."""


@dataclass(frozen=True)
class Limits:
    """Caps that keep one topic, one node or one peer's message from growing without bound."""

    # Checked when a local connection joins, counting every presence held for the topic,
    # those of down replicas too (they come back). Joins on different nodes at the same moment can
    # take a topic past it cluster-wide, by at most one join per node; a remote owner's
    # presences are never refused, since refusing them would keep replicas from converging.
    max_per_topic: int = 20_000
    # Checked for local joins, and for each owner in a peer's message (an honest owner never
    # holds more, so a slice with more entries is malformed).
    max_per_node: int = 200_000
    # The most slices (owners) one message may carry.
    max_replicas: int = 1_024


@dataclass
class PresenceDiff:
    """What changed on one topic: the metas that joined and left, by key.

    An update shows as the old meta leaving and the new one (with ``phx_ref_prev``) joining,
    as Phoenix sends it. The metas are the state's own, as in :meth:`PresenceState.list`.
    """

    joins: dict[str, list[Meta]] = field(default_factory=dict)
    leaves: dict[str, list[Meta]] = field(default_factory=dict)

    def payload(self) -> dict[str, Any]:
        """The ``presence_diff`` payload: ``{joins: {key: {metas}}, leaves: {key: {metas}}}``."""
        return {"joins": {key: {"metas": metas} for key, metas in self.joins.items()},
                "leaves": {key: {"metas": metas} for key, metas in self.leaves.items()}}


Changes = dict[str, PresenceDiff]
"""The diffs a call caused, by topic; topics with no visible change are absent."""


class SliceEntry(NamedTuple):
    """A presence as it crosses the wire. The owner's connection id stays home: it means
    nothing elsewhere, and ``phx_ref`` is derived from the owner and the clock."""

    clock: int
    topic: str
    key: str
    meta: Meta
    ref_prev: str | None


@dataclass(frozen=True)
class Slice:
    """What the sender knows of one owner: the clock values seen (sorted, disjoint, inclusive
    ranges) and the presences among them that it still holds."""

    origin: ReplicaId
    seen: tuple[tuple[int, int], ...]
    entries: tuple[SliceEntry, ...]


@dataclass(frozen=True)
class StateMessage:
    """A delta or a full state, as it is merged and as it crosses the wire (:meth:`to_json`)."""

    slices: tuple[Slice, ...]

    def to_json(self) -> dict[str, Any]:
        """Plain dicts, lists, strings and ints; see :meth:`from_json` for the shape."""
        return {"v": WIRE_VERSION, "slices": [
            {"origin": list(piece.origin), "seen": [list(span) for span in piece.seen],
             "entries": [list(entry) for entry in piece.entries]}
            for piece in self.slices]}

    @classmethod
    def from_json(cls, value: Any, limits: Limits = Limits()) -> StateMessage:
        """Check a decoded JSON value from a peer and build the message; :class:`MalformedState`
        names the first thing wrong.

        The shape: ``{"v": 1, "slices": [{"origin": [name, creation], "seen": [[lo, hi], ...],
        "entries": [[clock, topic, key, meta, ref_prev_or_null], ...]}, ...]}``.
        """
        fields = _object(value, "message", {"v", "slices"})
        if fields["v"] != WIRE_VERSION:
            raise MalformedState(f"message.v is {fields['v']!r}, not {WIRE_VERSION}")
        slices = _array(fields["slices"], "message.slices", limits.max_replicas)
        return cls(tuple(_parse_slice(item, f"message.slices[{index}]", limits)
                         for index, item in enumerate(slices)))


def clocks_to_json(clocks: Mapping[ReplicaId, int]) -> list[list[Any]]:
    """``[[name, creation, clock], ...]``, for a heartbeat that lets peers see they are behind."""
    return [[replica.name, replica.creation, clock] for replica, clock in clocks.items()]


def clocks_from_json(value: Any, limits: Limits = Limits()) -> dict[ReplicaId, int]:
    """The inverse of :func:`clocks_to_json`, checked like :meth:`StateMessage.from_json`."""
    clocks: dict[ReplicaId, int] = {}
    for index, item in enumerate(_array(value, "clocks", limits.max_replicas)):
        where = f"clocks[{index}]"
        row = _array(item, where, 3)
        if len(row) != 3:
            raise MalformedState(f"{where} is not [name, creation, clock]")
        clocks[_replica(row[:2], where)] = _int(row[2], f"{where}[2]", 0)
    return clocks


class PresenceState:
    """The presences of every known replica, with this replica's own changes since the last
    delta. Every method is O(what it changes), except :meth:`list` (O(the topic)) and
    :meth:`extract_state` and a full-state :meth:`merge` (O(the owners they carry))."""

    def __init__(self, replica: ReplicaId, limits: Limits = Limits()) -> None:
        self.replica = replica
        self.limits = limits
        self._own = _Origin(replica)
        # By node name: at most one incarnation of a name is known at a time.
        self._origins: dict[str, _Origin] = {replica.name: self._own}
        self._by_topic: dict[str, dict[str, _Entry]] = {}  # topic → phx_ref → entry
        self._by_conn: dict[str, dict[tuple[str, str], _Entry]] = {}  # own presences only
        # The delta being gathered: own clock values after _delta_from, the presences added
        # in them and still held, and the older presences removed since.
        self._delta_from = 0
        self._delta_joins: dict[int, _Entry] = {}
        self._delta_removed: list[int] = []

    # ---- local changes -----------------------------------------------------------------------

    def join(self, conn: str, topic: str, key: str, meta: Mapping[str, Any]) -> Changes:
        """Track ``key`` on ``topic`` for a local connection."""
        if (topic, key) in self._by_conn.get(conn, {}):
            raise AlreadyTracked(f"connection {conn!r} already tracks {key!r} on {topic!r}")
        if len(self._by_topic.get(topic, {})) >= self.limits.max_per_topic:
            raise TopicFull(f"topic {topic!r} has {self.limits.max_per_topic} presences, the most allowed")
        if len(self._own.entries) >= self.limits.max_per_node:
            raise NodeFull(f"this node tracks {self.limits.max_per_node} presences, the most allowed")
        diffs = _Diffs()
        _check_meta(meta)
        self._join_local(conn, topic, key, meta, None, diffs)
        return diffs.changes

    def update(self, conn: str, topic: str, key: str, meta: Mapping[str, Any]) -> Changes:
        """Replace the meta: the presence gets a new ``phx_ref``, the old one as ``phx_ref_prev``."""
        entry = self._by_conn.get(conn, {}).get((topic, key))
        if entry is None:
            raise NotTracked(f"connection {conn!r} does not track {key!r} on {topic!r}")
        _check_meta(meta)
        diffs = _Diffs()
        self._leave_local(entry, diffs)
        self._join_local(conn, topic, key, meta, entry.ref, diffs)
        return diffs.changes

    def leave(self, conn: str, topic: str, key: str) -> Changes:
        """Untrack one presence; nothing happens if it is not tracked."""
        diffs = _Diffs()
        entry = self._by_conn.get(conn, {}).get((topic, key))
        if entry is not None:
            self._leave_local(entry, diffs)
        return diffs.changes

    def leave_conn(self, conn: str) -> Changes:
        """Untrack every presence of a connection that left, closed or died."""
        diffs = _Diffs()
        for entry in list(self._by_conn.get(conn, {}).values()):
            self._leave_local(entry, diffs)
        return diffs.changes

    # ---- reading -----------------------------------------------------------------------------

    def list(self, topic: str) -> dict[str, dict[str, list[Meta]]]:
        """``{key: {"metas": [...]}}`` of the presences on ``topic`` whose replica is up, as
        Phoenix's ``presence_state`` has it. The metas are this state's own: encode them,
        never change them."""
        listed: dict[str, dict[str, list[Meta]]] = {}
        for entry in self._by_topic.get(topic, {}).values():
            if entry.origin.up:
                listed.setdefault(entry.key, {"metas": []})["metas"].append(entry.shown)
        return listed

    def clocks(self) -> dict[ReplicaId, int]:
        """Per known replica, the clock up to which every change of it has been seen here."""
        return {origin.replica: origin.seen_through for origin in self._origins.values()}

    def lagging(self, remote_clocks: Mapping[ReplicaId, int] | None = None) -> set[ReplicaId]:
        """The known replicas this state misses changes of: a lost delta left a gap here, or a
        peer's clocks (a heartbeat's) show changes not seen. Ask for their :meth:`extract_state`."""
        remote = remote_clocks or {}
        return {origin.replica for origin in self._origins.values()
                if origin is not self._own
                and (origin.islands or remote.get(origin.replica, 0) > origin.seen_through)}

    # ---- replication -------------------------------------------------------------------------

    def extract_delta(self) -> StateMessage | None:
        """This replica's changes since the last delta (None if none), to broadcast; it resets
        the delta. A lost delta is repaired by a full state, found with :meth:`lagging`."""
        own_clock = self._own.seen_through
        if own_clock == self._delta_from:
            return None
        seen = tuple(_normalized([(self._delta_from + 1, own_clock)] + [(c, c) for c in self._delta_removed]))
        delta = Slice(self.replica, seen, tuple(entry.wire() for entry in self._delta_joins.values()))
        self._delta_from = own_clock
        self._delta_joins = {}
        self._delta_removed = []
        return StateMessage((delta,))

    def extract_state(self, origins: Iterable[ReplicaId] | None = None) -> StateMessage:
        """A full state of the given replicas (default: all known), for a node that joined or
        lags. Down replicas are included: what was seen of them is still true."""
        chosen = (self._origins.values() if origins is None else
                  [origin for replica in origins
                   if (origin := self._origins.get(replica.name)) is not None and origin.replica == replica])
        return StateMessage(tuple(
            Slice(origin.replica, origin.seen(), tuple(entry.wire() for entry in origin.entries.values()))
            for origin in chosen))

    def extract_own_state(self, size: int) -> Iterator[StateMessage]:
        """This replica's own full state as messages of at most ``size`` presences each, split
        by clock range, for a peer that came up or lags. A whole state of 10,000 presences takes
        too long to build, encode, decode and merge in one loop step; the tracker sends these
        one at a time and lets the loop run between them. Each is true when it is taken, so
        changes meanwhile are safe: a removal in a range already sent goes in the next delta,
        and new presences take clocks past the ranges this yields."""
        through = self._own.seen_through
        clocks = sorted(self._own.entries)
        low, start = 1, 0
        while low <= through:
            batch = clocks[start:start + size]
            start += size
            high = batch[-1] if start < len(clocks) else through
            entries = tuple(entry.wire() for clock in batch if (entry := self._own.entries.get(clock)) is not None)
            yield StateMessage((Slice(self.replica, ((low, high),), entries),))
            low = high + 1

    def merge(self, message: StateMessage) -> Changes:
        """Merge a peer's delta or full state; the diffs are what clients of each topic must be
        told. Idempotent, commutative and associative."""
        diffs = _Diffs()
        for piece in message.slices:
            origin = self._origins.get(piece.origin.name)
            if origin is not None and origin is not self._own and origin.replica == piece.origin:
                self._merge_slice(origin, piece, diffs)
        return diffs.changes

    # ---- replicas ----------------------------------------------------------------------------

    def replica_up(self, replica: ReplicaId) -> Changes:
        """A replica is (again) connected: its presences show, as joins. A new creation of a
        known name replaces the old incarnation, whose presences leave."""
        self._refuse_own_name(replica, "come up")
        diffs = _Diffs()
        origin = self._origins.get(replica.name)
        if origin is not None and origin.replica != replica:
            self._forget(origin, diffs)
            origin = None
        if origin is None:
            self._origins[replica.name] = _Origin(replica)
        elif not origin.up:
            origin.up = True
            for entry in origin.entries.values():
                diffs.joined(entry)
        return diffs.changes

    def replica_down(self, replica: ReplicaId) -> Changes:
        """A replica is unreachable for now: its presences leave, but are kept (and still
        merged) for when it comes back."""
        self._refuse_own_name(replica, "go down")
        diffs = _Diffs()
        origin = self._origins.get(replica.name)
        if origin is not None and origin.replica == replica and origin.up:
            origin.up = False
            for entry in origin.entries.values():
                diffs.left(entry)
        return diffs.changes

    def forget_replica(self, replica: ReplicaId) -> Changes:
        """A replica stopped, or stayed down too long: its presences go, and what peers still
        say of it is ignored from now on."""
        self._refuse_own_name(replica, "be forgotten")
        diffs = _Diffs()
        origin = self._origins.get(replica.name)
        if origin is not None and origin.replica == replica:
            self._forget(origin, diffs)
        return diffs.changes

    # ---- internals ---------------------------------------------------------------------------

    def _join_local(self, conn: str, topic: str, key: str, meta: Mapping[str, Any], ref_prev: str | None,
                    diffs: _Diffs) -> None:
        clock = self._own.tick()
        entry = _Entry(self._own, clock, topic, key, meta, ref_prev, conn)
        self._insert(entry)
        self._delta_joins[clock] = entry
        diffs.joined(entry)

    def _leave_local(self, entry: _Entry, diffs: _Diffs) -> None:
        self._remove(entry, diffs)
        # Added and removed within one delta: the delta's clock range says it all.
        if self._delta_joins.pop(entry.clock, None) is None:
            self._delta_removed.append(entry.clock)
        self._own.tick()

    def _merge_slice(self, origin: _Origin, piece: Slice, diffs: _Diffs) -> None:
        incoming = {entry.clock: entry for entry in piece.entries}
        # Seen gone by the sender: held here, in its seen ranges, not in its entries. Walk the
        # smaller side, so a delta costs O(delta) however many presences the owner has.
        if _span_count(piece.seen) <= len(origin.entries):
            clocks: Iterable[int] = _iter_clocks(piece.seen)
        else:
            clocks = [c for c in origin.entries if _covers(piece.seen, c)]
        for clock in clocks:
            held = origin.entries.get(clock)
            if held is not None and clock not in incoming:
                self._remove(held, diffs)
        for clock, wire in incoming.items():
            if not origin.has_seen(clock):
                self._insert(_Entry(origin, clock, wire.topic, wire.key, wire.meta, wire.ref_prev, None))
                if origin.up:
                    diffs.joined(origin.entries[clock])
        origin.absorb(piece.seen)

    def _forget(self, origin: _Origin, diffs: _Diffs) -> None:
        for entry in list(origin.entries.values()):
            self._remove(entry, diffs)
        del self._origins[origin.replica.name]

    def _insert(self, entry: _Entry) -> None:
        entry.origin.entries[entry.clock] = entry
        self._by_topic.setdefault(entry.topic, {})[entry.ref] = entry
        if entry.conn is not None:
            self._by_conn.setdefault(entry.conn, {})[(entry.topic, entry.key)] = entry

    def _remove(self, entry: _Entry, diffs: _Diffs) -> None:
        del entry.origin.entries[entry.clock]
        _discard(self._by_topic, entry.topic, entry.ref)
        if entry.conn is not None:
            _discard(self._by_conn, entry.conn, (entry.topic, entry.key))
        if entry.origin.up:
            diffs.left(entry)

    def _refuse_own_name(self, replica: ReplicaId, what: str) -> None:
        if replica.name == self.replica.name:
            raise ValueError(f"{replica} has this replica's own name; it cannot {what} here")


class _Origin:
    """One known replica: what has been seen of its clock, and its presences held here."""

    __slots__ = ("replica", "ref_prefix", "seen_through", "islands", "entries", "up")

    def __init__(self, replica: ReplicaId) -> None:
        self.replica = replica
        # phx_ref is opaque to clients and must differ across incarnations of one name: a short
        # hash of the replica, then the clock. Every node derives the same refs.
        digest = hashlib.blake2b(f"{replica.name}\x00{replica.creation}".encode("utf-8", "surrogatepass"),
                                 digest_size=6).digest()
        self.ref_prefix = base64.urlsafe_b64encode(digest).decode("ascii")
        self.seen_through = 0  # every clock value 1..seen_through has been seen
        self.islands: list[tuple[int, int]] = []  # seen ranges past a gap, sorted, disjoint
        self.entries: dict[int, _Entry] = {}
        self.up = True

    def tick(self) -> int:
        """The next clock value of the replica this state belongs to."""
        self.seen_through += 1
        return self.seen_through

    def has_seen(self, clock: int) -> bool:
        return clock <= self.seen_through or _covers(self.islands, clock)

    def seen(self) -> tuple[tuple[int, int], ...]:
        from_one = ((1, self.seen_through),) if self.seen_through else ()
        return from_one + tuple(self.islands)

    def absorb(self, spans: Iterable[tuple[int, int]]) -> None:
        """Add seen ranges; islands that now touch 1..seen_through join it."""
        fresh = [span for span in spans if span[1] > self.seen_through]
        if not fresh:
            return
        merged = _normalized(self.islands + fresh)
        taken = 0
        while taken < len(merged) and merged[taken][0] <= self.seen_through + 1:
            self.seen_through = max(self.seen_through, merged[taken][1])
            taken += 1
        self.islands = merged[taken:]


class _Entry:
    """One presence held here; ``conn`` is set only for this replica's own."""

    __slots__ = ("origin", "clock", "topic", "key", "shown", "ref", "conn")

    def __init__(self, origin: _Origin, clock: int, topic: str, key: str, meta: Mapping[str, Any],
                 ref_prev: str | None, conn: str | None) -> None:
        self.origin = origin
        self.clock = clock
        self.topic = topic
        self.key = key
        self.ref = f"{origin.ref_prefix}{clock}"
        # The meta as clients see it, built once and shared by every listing and diff (with
        # 10,000 presences in a topic, a dict per presence per listing was most of its cost);
        # a copy, so the caller changing its dict later cannot change a presence.
        self.shown = {**meta, "phx_ref": self.ref}
        if ref_prev is not None:
            self.shown["phx_ref_prev"] = ref_prev
        self.conn = conn

    def wire(self) -> SliceEntry:
        meta = {name: value for name, value in self.shown.items() if name not in _REF_FIELDS}
        return SliceEntry(self.clock, self.topic, self.key, meta, self.shown.get("phx_ref_prev"))


class _Diffs:
    """Gathers one call's joins and leaves, by topic."""

    def __init__(self) -> None:
        self.changes: Changes = {}

    def joined(self, entry: _Entry) -> None:
        self._diff(entry.topic).joins.setdefault(entry.key, []).append(entry.shown)

    def left(self, entry: _Entry) -> None:
        self._diff(entry.topic).leaves.setdefault(entry.key, []).append(entry.shown)

    def _diff(self, topic: str) -> PresenceDiff:
        diff = self.changes.get(topic)
        if diff is None:
            diff = self.changes[topic] = PresenceDiff()
        return diff


def _discard(index: dict[Any, dict[Any, _Entry]], outer: Any, inner: Any) -> None:
    """Remove one entry from a two-level index, and the outer key once it is empty (so a topic
    or connection that has gone costs nothing)."""
    entries = index[outer]
    del entries[inner]
    if not entries:
        del index[outer]


def _normalized(spans: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    """Sorted, disjoint ranges, touching ones joined: (1, 3) and (4, 6) are (1, 6)."""
    merged: list[tuple[int, int]] = []
    for low, high in sorted(spans):
        if merged and low <= merged[-1][1] + 1:
            if high > merged[-1][1]:
                merged[-1] = (merged[-1][0], high)
        else:
            merged.append((low, high))
    return merged


def _covers(spans: list[tuple[int, int]] | tuple[tuple[int, int], ...], clock: int) -> bool:
    index = bisect_right(spans, (clock, _MAX_CLOCK)) - 1
    return index >= 0 and spans[index][1] >= clock


def _span_count(spans: Iterable[tuple[int, int]]) -> int:
    return sum(high - low + 1 for low, high in spans)


def _check_meta(meta: Mapping[str, Any]) -> None:
    if not isinstance(meta, Mapping) or not all(isinstance(name, str) for name in meta):
        raise TypeError(f"a presence's meta must be a mapping with string keys, not {meta!r}")


# ---- checking a peer's message ---------------------------------------------------------------

def _parse_slice(value: Any, where: str, limits: Limits) -> Slice:
    fields = _object(value, where, {"origin", "seen", "entries"})
    origin = _replica(fields["origin"], f"{where}.origin")
    spans = []
    # A delta lists each removed clock as its own range, so an owner's own count bounds them.
    for index, item in enumerate(_array(fields["seen"], f"{where}.seen", 2 * limits.max_per_node + 2)):
        at = f"{where}.seen[{index}]"
        pair = _array(item, at, 2)
        if len(pair) != 2:
            raise MalformedState(f"{at} is not [low, high]")
        low, high = _int(pair[0], f"{at}[0]", 1), _int(pair[1], f"{at}[1]", 1)
        if low > high:
            raise MalformedState(f"{at} runs backwards ({low} > {high})")
        spans.append((low, high))
    seen = tuple(_normalized(spans))
    entries = []
    clocks = set()
    for index, item in enumerate(_array(fields["entries"], f"{where}.entries", limits.max_per_node)):
        entry = _parse_entry(item, f"{where}.entries[{index}]")
        if entry.clock in clocks or not _covers(seen, entry.clock):
            raise MalformedState(f"{where}.entries[{index}] has clock {entry.clock}, "
                                 "repeated or outside the slice's seen ranges")
        clocks.add(entry.clock)
        entries.append(entry)
    return Slice(origin, seen, tuple(entries))


def _parse_entry(value: Any, where: str) -> SliceEntry:
    row = _array(value, where, 5)
    if len(row) != 5:
        raise MalformedState(f"{where} is not [clock, topic, key, meta, ref_prev]")
    clock, topic, key, meta, ref_prev = row
    if not isinstance(topic, str) or not isinstance(key, str):
        raise MalformedState(f"{where}: topic and key must be strings")
    if not isinstance(meta, dict) or not all(isinstance(name, str) for name in meta):
        raise MalformedState(f"{where}: meta must be an object")
    if ref_prev is not None and not isinstance(ref_prev, str):
        raise MalformedState(f"{where}: ref_prev must be a string or null")
    return SliceEntry(_int(clock, f"{where}[0]", 1), topic, key, meta, ref_prev)


def _replica(value: Any, where: str) -> ReplicaId:
    pair = _array(value, where, 2)
    if len(pair) != 2 or not isinstance(pair[0], str) or not pair[0]:
        raise MalformedState(f"{where} is not [name, creation]")
    return ReplicaId(pair[0], _int(pair[1], f"{where}[1]", 0))


def _object(value: Any, where: str, names: set[str]) -> dict[str, Any]:
    if not isinstance(value, dict) or set(value) != names:
        raise MalformedState(f"{where} is not an object with exactly {sorted(names)}")
    return value


def _array(value: Any, where: str, most: int) -> list[Any]:
    if not isinstance(value, list):
        raise MalformedState(f"{where} is not an array")
    if len(value) > most:
        raise MalformedState(f"{where} has {len(value)} items, more than {most}")
    return value


def _int(value: Any, where: str, least: int) -> int:
    # bool is an int to Python, never to JSON.
    if type(value) is not int or not least <= value <= _MAX_CLOCK:
        raise MalformedState(f"{where} is not an integer from {least} to 2**53: {value!r:.40}")
    return value


def _iter_clocks(spans: Iterable[tuple[int, int]]) -> Iterator[int]:
    for low, high in spans:
        yield from range(low, high + 1)
