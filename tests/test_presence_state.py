"""The replicated presence state alone: replicas as plain objects, the network as a list.

The property test drives several replicas with random local changes, and moves their deltas
through a network that reorders, duplicates and loses them, partitions replicas and restarts
them. After every step each replica's diffs, applied the way Phoenix's JS client applies them,
must give its ``list``; after anti-entropy every replica must list the same presences, those
the model says are live.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from server.presence.state import (
    AlreadyTracked,
    Changes,
    Limits,
    MalformedState,
    NodeFull,
    NotTracked,
    PresenceState,
    ReplicaId,
    StateMessage,
    TopicFull,
    clocks_from_json,
    clocks_to_json,
)

NAMES = ("a@host", "b@host", "c@host")
TOPICS = ("room:1", "room:2")
KEYS = ("alice", "bob")
CONNS = ("conn1", "conn2")
metas = st.fixed_dictionaries({"status": st.sampled_from(["online", "away"]), "n": st.integers(0, 3)})

Listing = dict[str, dict[str, list[dict[str, Any]]]]


def over_the_wire(message: StateMessage) -> StateMessage:
    """What a peer gets: the message as JSON text, decoded and checked again."""
    return StateMessage.from_json(json.loads(json.dumps(message.to_json())))


def by_ref(listing: Listing) -> dict[str, list[tuple[str, str]]]:
    """A listing with each key's metas in a fixed order (replicas hold them in arrival order)."""
    return {key: sorted((meta["phx_ref"], json.dumps(meta, sort_keys=True)) for meta in entry["metas"])
            for key, entry in listing.items()}


def without_refs(listing: Listing) -> dict[str, list[str]]:
    return {key: sorted(json.dumps({name: value for name, value in meta.items() if not name.startswith("phx_ref")},
                                   sort_keys=True) for meta in entry["metas"])
            for key, entry in listing.items()}


class ClientView:
    """A topic's presences as a client holds them, built only from the diffs (Phoenix's
    syncDiff: joins add metas, leaves remove them by phx_ref)."""

    def __init__(self) -> None:
        self.by_topic: dict[str, dict[str, tuple[str, dict[str, Any]]]] = {}

    def apply(self, changes: Changes) -> None:
        for topic, diff in changes.items():
            assert diff.joins or diff.leaves, "an empty diff was reported"
            held = self.by_topic.setdefault(topic, {})
            for key, metas in diff.leaves.items():
                for meta in metas:
                    assert held.pop(meta["phx_ref"]) == (key, meta), "a leave of a meta never joined"
            for key, metas in diff.joins.items():
                for meta in metas:
                    assert meta["phx_ref"] not in held, "a join of a meta already shown"
                    held[meta["phx_ref"]] = (key, meta)

    def listing(self, topic: str) -> Listing:
        listed: Listing = {}
        for key, meta in self.by_topic.get(topic, {}).values():
            listed.setdefault(key, {"metas": []})["metas"].append(meta)
        return listed


class Cluster(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.creation = {name: 0 for name in NAMES}
        self.nodes = {name: PresenceState(ReplicaId(name, 0)) for name in NAMES}
        self.views = {name: ClientView() for name in NAMES}
        for name in NAMES:
            for other in NAMES:
                if other != name:
                    self.apply(name, self.nodes[name].replica_up(self.nodes[other].replica))
        # The model: the presences live on their owners, (owner, conn, topic, key) → meta.
        self.live: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.in_flight: list[tuple[str, str]] = []  # (recipient, JSON text of a message)
        self.cut: set[frozenset[str]] = set()  # pairs that see each other down

    def apply(self, name: str, changes: Changes) -> None:
        self.views[name].apply(changes)

    # ---- local changes ---------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES), conn=st.sampled_from(CONNS), topic=st.sampled_from(TOPICS),
          key=st.sampled_from(KEYS), meta=metas)
    def join(self, name: str, conn: str, topic: str, key: str, meta: dict[str, Any]) -> None:
        if (name, conn, topic, key) in self.live:
            with pytest.raises(AlreadyTracked):
                self.nodes[name].join(conn, topic, key, meta)
            return
        self.apply(name, self.nodes[name].join(conn, topic, key, meta))
        self.live[(name, conn, topic, key)] = meta

    @rule(name=st.sampled_from(NAMES), conn=st.sampled_from(CONNS), topic=st.sampled_from(TOPICS),
          key=st.sampled_from(KEYS), meta=metas)
    def update(self, name: str, conn: str, topic: str, key: str, meta: dict[str, Any]) -> None:
        if (name, conn, topic, key) not in self.live:
            with pytest.raises(NotTracked):
                self.nodes[name].update(conn, topic, key, meta)
            return
        changes = self.nodes[name].update(conn, topic, key, meta)
        [(old,)] = [metas for metas in changes[topic].leaves.values()]
        [(new,)] = [metas for metas in changes[topic].joins.values()]
        assert new["phx_ref_prev"] == old["phx_ref"] != new["phx_ref"]
        self.apply(name, changes)
        self.live[(name, conn, topic, key)] = meta

    @rule(name=st.sampled_from(NAMES), conn=st.sampled_from(CONNS), topic=st.sampled_from(TOPICS),
          key=st.sampled_from(KEYS))
    def leave(self, name: str, conn: str, topic: str, key: str) -> None:
        self.apply(name, self.nodes[name].leave(conn, topic, key))
        self.live.pop((name, conn, topic, key), None)

    @rule(name=st.sampled_from(NAMES), conn=st.sampled_from(CONNS))
    def connection_closes(self, name: str, conn: str) -> None:
        self.apply(name, self.nodes[name].leave_conn(conn))
        self.live = {place: meta for place, meta in self.live.items() if place[:2] != (name, conn)}

    # ---- the network -----------------------------------------------------------------------

    @rule(name=st.sampled_from(NAMES))
    def broadcast_delta(self, name: str) -> None:
        delta = self.nodes[name].extract_delta()
        if delta is not None:
            text = json.dumps(delta.to_json())
            self.in_flight += [(other, text) for other in NAMES if other != name]

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data(), keep_a_copy=st.booleans())
    def deliver(self, data: st.DataObject, keep_a_copy: bool) -> None:
        """Any message, not the oldest: delivery in any order; a kept copy comes again later."""
        index = data.draw(st.integers(0, len(self.in_flight) - 1))
        recipient, text = self.in_flight[index] if keep_a_copy else self.in_flight.pop(index)
        self.apply(recipient, self.nodes[recipient].merge(StateMessage.from_json(json.loads(text))))

    @precondition(lambda self: self.in_flight)
    @rule(data=st.data())
    def lose(self, data: st.DataObject) -> None:
        self.in_flight.pop(data.draw(st.integers(0, len(self.in_flight) - 1)))

    @rule(name=st.sampled_from(NAMES), peer=st.sampled_from(NAMES))
    def heartbeat(self, name: str, peer: str) -> None:
        """The peer's clocks show what the replica lags behind in; it asks for just that."""
        if name == peer:
            return
        clocks = clocks_from_json(json.loads(json.dumps(clocks_to_json(self.nodes[peer].clocks()))))
        behind = self.nodes[name].lagging(clocks)
        if behind:
            reply = self.nodes[peer].extract_state(behind)
            self.apply(name, self.nodes[name].merge(over_the_wire(reply)))

    # ---- replicas --------------------------------------------------------------------------

    @rule(pair=st.sets(st.sampled_from(NAMES), min_size=2, max_size=2), forget=st.booleans())
    def partition(self, pair: set[str], forget: bool) -> None:
        """Each side sees the other down; after net_ticktime it may forget it for good."""
        one, other = sorted(pair)
        for name, peer in ((one, other), (other, one)):
            node, replica = self.nodes[name], self.nodes[peer].replica
            self.apply(name, node.forget_replica(replica) if forget else node.replica_down(replica))
        self.cut.add(frozenset(pair))

    @precondition(lambda self: self.cut)
    @rule(data=st.data())
    def heal(self, data: st.DataObject) -> None:
        self.heal_pair(data.draw(st.sampled_from(sorted(self.cut, key=sorted))))

    def heal_pair(self, pair: frozenset[str]) -> None:
        self.cut.discard(pair)
        for name, peer in (sorted(pair), sorted(pair, reverse=True)):
            self.apply(name, self.nodes[name].replica_up(self.nodes[peer].replica))

    @rule(name=st.sampled_from(NAMES))
    def restart(self, name: str) -> None:
        """The node dies and boots again under its name with a new creation, with nothing
        tracked; its old incarnation's messages may still be in flight."""
        self.creation[name] += 1
        reborn = PresenceState(ReplicaId(name, self.creation[name]))
        self.nodes[name], self.views[name] = reborn, ClientView()
        self.live = {place: meta for place, meta in self.live.items() if place[0] != name}
        self.cut = {pair for pair in self.cut if name not in pair}
        for other in NAMES:
            if other != name:
                self.apply(other, self.nodes[other].replica_up(reborn.replica))
                self.apply(name, reborn.replica_up(self.nodes[other].replica))

    # ---- what must hold --------------------------------------------------------------------

    @invariant()
    def clients_see_the_list(self) -> None:
        for name in NAMES:
            for topic in TOPICS:
                assert by_ref(self.views[name].listing(topic)) == by_ref(self.nodes[name].list(topic))

    @rule()
    def anti_entropy_converges(self) -> None:
        """Partitions heal, every node sends every other its full state: all list the same,
        and exactly the live presences, whatever the network lost or repeated."""
        for pair in list(self.cut):
            self.heal_pair(pair)
        for name in NAMES:
            for peer in NAMES:
                if peer != name:
                    self.apply(name, self.nodes[name].merge(over_the_wire(self.nodes[peer].extract_state())))
        for topic in TOPICS:
            first = by_ref(self.nodes[NAMES[0]].list(topic))
            for name in NAMES:
                assert by_ref(self.nodes[name].list(topic)) == first
                assert without_refs(self.nodes[name].list(topic)) == without_refs(listing_of(self.live, topic))
        for name in NAMES:
            assert not self.nodes[name].lagging(), "a replica still has a gap after a full state"

    def teardown(self) -> None:
        self.anti_entropy_converges()


Cluster.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
test_replicas_converge = Cluster.TestCase


# ---- deltas alone, when none is lost ----------------------------------------------------------

ops = st.lists(st.tuples(st.sampled_from(("join", "update", "leave", "close", "send")), st.sampled_from(NAMES),
                         st.sampled_from(CONNS), st.sampled_from(TOPICS), st.sampled_from(KEYS), metas),
               max_size=40)


def connected() -> dict[str, PresenceState]:
    nodes = {name: PresenceState(ReplicaId(name, 7)) for name in NAMES}
    for node in nodes.values():
        for other in nodes.values():
            if other is not node:
                node.replica_up(other.replica)
    return nodes


Script = list[tuple[str, str, str, str, str, dict[str, Any]]]
Live = dict[tuple[str, str, str, str], dict[str, Any]]


def run(nodes: dict[str, PresenceState], script: Script, live: Live | None = None
        ) -> tuple[list[tuple[str, StateMessage]], Live]:
    """Play local changes ("send" extracts the node's delta), then the last deltas: the deltas
    as (sender, delta) in the order sent, and the model's live presences (``live`` updated)."""
    sent: list[tuple[str, StateMessage]] = []
    live = {} if live is None else live
    for op, name, conn, topic, key, meta in script:
        node, place = nodes[name], (name, conn, topic, key)
        if op == "join" and place not in live:
            node.join(conn, topic, key, meta)
            live[place] = meta
        elif op == "update" and place in live:
            node.update(conn, topic, key, meta)
            live[place] = meta
        elif op == "leave":
            node.leave(conn, topic, key)
            live.pop(place, None)
        elif op == "close":
            node.leave_conn(conn)
            for held in [held for held in live if held[:2] == (name, conn)]:
                del live[held]
        elif op == "send" and (delta := node.extract_delta()) is not None:
            sent.append((name, delta))
    for name, node in nodes.items():
        if (delta := node.extract_delta()) is not None:
            sent.append((name, delta))
    return sent, live


def listing_of(live: Live, topic: str) -> Listing:
    listed: Listing = {}
    for (_, _, at, key), meta in live.items():
        if at == topic:
            listed.setdefault(key, {"metas": []})["metas"].append(meta)
    return listed


@given(script=ops, data=st.data())
def test_deltas_alone_converge_in_any_order_when_none_is_lost(script: Script, data: st.DataObject) -> None:
    nodes = connected()
    sent, live = run(nodes, script)
    deliveries = [(receiver, delta) for sender, delta in sent for receiver in NAMES if receiver != sender]
    deliveries += data.draw(st.lists(st.sampled_from(deliveries), max_size=5)) if deliveries else []
    for receiver, delta in data.draw(st.permutations(deliveries)):
        nodes[receiver].merge(over_the_wire(delta))
    for topic in TOPICS:
        first = by_ref(nodes[NAMES[0]].list(topic))
        assert all(by_ref(node.list(topic)) == first for node in nodes.values())
        assert without_refs(nodes[NAMES[0]].list(topic)) == without_refs(listing_of(live, topic))
    assert not any(node.lagging(other.clocks()) for node in nodes.values() for other in nodes.values())


# ---- merge laws on full states ----------------------------------------------------------------

@given(script=ops, gossip=st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)), max_size=4),
       data=st.data())
def test_merge_is_commutative_associative_and_idempotent(
        script: Script, gossip: list[tuple[str, str]], data: st.DataObject) -> None:
    """Full states, some carrying what one replica heard of another (so third-party and stale
    knowledge meet), merged into a fresh replica in any order and any number of times."""
    nodes = connected()
    _, live = run(nodes, script[: len(script) // 2])
    for receiver, sender in gossip:  # knowledge of others, soon stale
        if receiver != sender:
            nodes[receiver].merge(nodes[sender].extract_state())
    run(nodes, script[len(script) // 2:], live)
    states = [over_the_wire(node.extract_state()) for node in nodes.values()]

    def merged(order: list[StateMessage]) -> tuple[dict[str, Any], dict[ReplicaId, int]]:
        observer = PresenceState(ReplicaId("observer@host", 1))
        for node in nodes.values():
            observer.replica_up(node.replica)
        for message in order:
            observer.merge(message)
        return {topic: by_ref(observer.list(topic)) for topic in TOPICS}, observer.clocks()

    expected = merged(states)
    assert merged(data.draw(st.permutations(states))) == expected
    assert merged(states + data.draw(st.lists(st.sampled_from(states), max_size=3))) == expected
    assert merged(list(reversed(states))) == expected


# ---- examples -----------------------------------------------------------------------------------

def pair() -> tuple[PresenceState, PresenceState]:
    a, b = PresenceState(ReplicaId("a@host", 1)), PresenceState(ReplicaId("b@host", 2))
    a.replica_up(b.replica)
    b.replica_up(a.replica)
    return a, b


def witness(of: PresenceState) -> PresenceState:
    """A third replica holding what ``of`` holds now, and still holding it once it is stale."""
    c = PresenceState(ReplicaId("c@host", 3))
    c.replica_up(of.replica)
    c.merge(of.extract_state())
    return c


def send(sender: PresenceState, receiver: PresenceState) -> Changes:
    delta = sender.extract_delta()
    assert delta is not None
    return receiver.merge(over_the_wire(delta))


def test_list_and_diffs_have_phoenix_shapes() -> None:
    a, b = pair()
    given_meta = {"status": "online"}
    joined = a.join("conn1", "room:1", "alice", given_meta)
    given_meta["status"] = "changed later by the caller"
    [meta] = joined["room:1"].joins["alice"]
    assert isinstance(meta["phx_ref"], str) and meta["status"] == "online"
    assert joined["room:1"].payload() == {"joins": {"alice": {"metas": [meta]}}, "leaves": {}}
    assert send(a, b)["room:1"].payload() == {"joins": {"alice": {"metas": [meta]}}, "leaves": {}}
    assert b.list("room:1") == a.list("room:1") == {"alice": {"metas": [meta]}}
    assert b.list("room:2") == {}


def test_an_update_is_a_leave_and_a_join_with_phx_ref_prev() -> None:
    a, b = pair()
    [old] = a.join("conn1", "room:1", "alice", {"status": "online"})["room:1"].joins["alice"]
    send(a, b)
    a.update("conn1", "room:1", "alice", {"status": "away"})
    diff = send(a, b)["room:1"]
    [new] = diff.joins["alice"]
    assert diff.leaves == {"alice": [old]}
    assert new == {"status": "away", "phx_ref": new["phx_ref"], "phx_ref_prev": old["phx_ref"]}
    assert new["phx_ref"] != old["phx_ref"]
    assert b.list("room:1") == {"alice": {"metas": [new]}}


def test_one_key_on_two_nodes_shows_twice_and_a_leave_removes_only_the_one_it_saw() -> None:
    """Add wins: b's leave of its own alice says nothing of a's concurrent alice."""
    a, b = pair()
    a.join("conn1", "room:1", "alice", {"on": "a"})
    b.join("conn9", "room:1", "alice", {"on": "b"})
    b.leave("conn9", "room:1", "alice")
    b_delta, a_delta = b.extract_delta(), a.extract_delta()
    assert a_delta is not None and b_delta is not None
    a.merge(b_delta)
    b.merge(a_delta)
    assert without_refs(a.list("room:1")) == without_refs(b.list("room:1")) == {"alice": ['{"on": "a"}']}


def test_a_stale_full_state_does_not_undo_a_newer_join() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    c = witness(a)
    a.leave("conn1", "room:1", "alice")
    a.join("conn1", "room:1", "alice", {"again": True})
    send(a, b)
    b.replica_up(c.replica)
    b.merge(c.extract_state())  # c still holds the first alice, which b knows is gone
    assert without_refs(b.list("room:1")) == {"alice": ['{"again": true}']}


def test_a_connection_closing_takes_all_its_presences() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    a.join("conn1", "room:2", "alice", {})
    a.join("conn2", "room:1", "bob", {})
    send(a, b)
    changes = a.leave_conn("conn1")
    assert set(changes) == {"room:1", "room:2"} and all(not diff.joins for diff in changes.values())
    send(a, b)
    assert list(b.list("room:1")) == ["bob"] and b.list("room:2") == {}


def test_a_replica_down_hides_its_presences_and_up_shows_them_again() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    send(a, b)
    shown = b.list("room:1")
    left = b.replica_down(a.replica)
    assert left["room:1"].leaves == {"alice": shown["alice"]["metas"]} and b.list("room:1") == {}
    a.join("conn2", "room:1", "bob", {})
    assert send(a, b) == {}, "what a down replica says is kept, not shown"
    assert b.replica_down(a.replica) == {}
    joined = b.replica_up(a.replica)
    assert sorted(joined["room:1"].joins) == ["alice", "bob"] and b.list("room:1") == a.list("room:1")


def test_a_restarted_replica_replaces_its_old_incarnation_and_never_doubles() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    send(a, b)
    late = a.extract_state()  # still in flight when a dies
    a2 = PresenceState(ReplicaId("a@host", 99))
    a2.replica_up(b.replica)
    a2.join("conn1", "room:1", "alice", {"boot": 2})
    left = b.replica_up(a2.replica)
    assert list(left["room:1"].leaves) == ["alice"]
    send(a2, b)
    b.merge(late)
    assert without_refs(b.list("room:1")) == {"alice": ['{"boot": 2}']}


def test_a_forgotten_replica_stays_gone_whatever_peers_still_say() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    c = witness(a)
    send(a, b)
    assert "room:1" in b.forget_replica(a.replica)
    b.replica_up(c.replica)
    assert b.merge(c.extract_state()) == {} and b.list("room:1") == {}
    assert b.forget_replica(a.replica) == {}


def test_a_lost_delta_leaves_a_gap_that_lagging_reports_and_a_full_state_fills() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    send(a, b)
    a.join("conn1", "room:1", "bob", {})
    a.leave("conn1", "room:1", "alice")
    assert a.extract_delta() is not None  # lost
    a.join("conn1", "room:2", "carol", {})
    send(a, b)
    assert b.lagging() == {a.replica}
    assert list(b.list("room:1")) == ["alice"] and list(b.list("room:2")) == ["carol"]
    b.merge(over_the_wire(a.extract_state(b.lagging())))
    assert b.lagging() == set() and b.list("room:1") == a.list("room:1") and list(b.list("room:1")) == ["bob"]


def test_a_heartbeat_shows_that_the_last_delta_was_lost() -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    send(a, b)
    a.leave("conn1", "room:1", "alice")
    assert a.extract_delta() is not None  # lost, and no later delta shows the gap
    assert b.lagging() == set() and b.lagging(a.clocks()) == {a.replica}
    b.merge(a.extract_state([a.replica]))
    assert b.list("room:1") == {} and b.lagging(a.clocks()) == set()


def test_an_own_state_in_chunks_is_a_full_state_even_with_changes_between_chunks() -> None:
    a, b = pair()
    assert list(a.extract_own_state(2)) == []  # nothing ever happened: nothing to say
    for key in ("k1", "k2", "k3", "k4", "k5"):
        a.join("conn1", "room:1", key, {})
    a.leave("conn1", "room:1", "k2")
    a.extract_delta()  # lost: b learns everything from the chunks and the next delta
    chunks = a.extract_own_state(2)
    b.merge(over_the_wire(next(chunks)))
    a.leave("conn1", "room:1", "k1")  # in a range already sent
    a.leave("conn1", "room:1", "k5")  # in a range still to come
    a.join("conn1", "room:1", "k6", {})  # past every range
    rest = [over_the_wire(chunk) for chunk in chunks]
    assert [len(chunk.slices[0].entries) for chunk in rest] == [1]  # k4 (k5 went meanwhile)
    for chunk in rest:
        b.merge(chunk)
    send(a, b)
    assert by_ref(b.list("room:1")) == by_ref(a.list("room:1")) and sorted(a.list("room:1")) == ["k3", "k4", "k6"]
    assert b.lagging(a.clocks()) == set()


def test_no_change_no_delta_and_a_join_then_leave_sends_only_a_clock_range() -> None:
    a, b = pair()
    assert a.extract_delta() is None
    a.join("conn1", "room:1", "alice", {})
    a.leave("conn1", "room:1", "alice")
    delta = a.extract_delta()
    assert delta is not None and delta.to_json() == {
        "v": 1, "slices": [{"origin": ["a@host", 1], "seen": [[1, 2]], "entries": []}]}
    assert b.merge(delta) == {} and b.clocks()[a.replica] == 2


def test_local_misuse_raises_named_errors() -> None:
    a, _ = pair()
    a.join("conn1", "room:1", "alice", {})
    with pytest.raises(AlreadyTracked):
        a.join("conn1", "room:1", "alice", {})
    with pytest.raises(NotTracked):
        a.update("conn1", "room:1", "bob", {})
    assert a.leave("conn1", "room:1", "bob") == {} and a.leave_conn("nobody") == {}
    with pytest.raises(TypeError):
        a.join("conn1", "room:1", "bob", {1: "x"})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        a.replica_down(ReplicaId("a@host", 5))


def test_limits_per_topic_and_per_node() -> None:
    node = PresenceState(ReplicaId("a@host", 1), Limits(max_per_topic=2, max_per_node=3))
    node.join("c1", "room:1", "alice", {})
    node.join("c2", "room:1", "bob", {})
    with pytest.raises(TopicFull, match="room:1"):
        node.join("c3", "room:1", "carol", {})
    node.update("c2", "room:1", "bob", {"status": "away"})  # an update is not a new presence
    node.join("c3", "room:2", "carol", {})
    with pytest.raises(NodeFull):
        node.join("c4", "room:3", "dave", {})
    node.leave("c1", "room:1", "alice")
    node.join("c4", "room:3", "dave", {})


# ---- the wire ----------------------------------------------------------------------------------

@given(script=ops)
def test_messages_round_trip_through_json(script: Script) -> None:
    nodes = connected()
    sent, _ = run(nodes, script)
    for message in [delta for _, delta in sent] + [node.extract_state() for node in nodes.values()]:
        assert over_the_wire(message) == message
    clocks = nodes[NAMES[0]].clocks()
    assert clocks_from_json(json.loads(json.dumps(clocks_to_json(clocks)))) == clocks


def valid_message() -> dict[str, Any]:
    return {"v": 1, "slices": [{"origin": ["b@host", 2], "seen": [[1, 3], [5, 5]],
                                "entries": [[2, "room:1", "alice", {"s": 1}, None], [5, "room:1", "bob", {}, "ref"]]}]}


@pytest.mark.parametrize("break_it, why", [
    (lambda m: m.update(v=2), "message.v"),
    (lambda m: m.pop("slices"), "exactly"),
    (lambda m: m.update(extra=1), "exactly"),
    (lambda m: m.update(slices={}), "not an array"),
    (lambda m: m["slices"][0].update(origin=["b@host"]), "origin"),
    (lambda m: m["slices"][0].update(origin=["", 2]), "origin"),
    (lambda m: m["slices"][0].update(origin=["b@host", True]), "origin"),
    (lambda m: m["slices"][0].update(origin=["b@host", -1]), "origin"),
    (lambda m: m["slices"][0].update(seen=[[3, 1]]), "backwards"),
    (lambda m: m["slices"][0].update(seen=[[0, 1]]), "seen"),
    (lambda m: m["slices"][0].update(seen=[[1, 2**60]]), "seen"),
    (lambda m: m["slices"][0].update(seen=[[1.0, 3]]), "seen"),
    (lambda m: m["slices"][0].update(seen=[[1, 3, 4]]), "seen"),
    (lambda m: m["slices"][0]["entries"].append([9, "room:1", "carol", {}, None]), "outside"),
    (lambda m: m["slices"][0]["entries"].append([2, "room:1", "carol", {}, None]), "repeated"),
    (lambda m: m["slices"][0]["entries"][0].pop(), "entries"),
    (lambda m: m["slices"][0]["entries"][0].__setitem__(1, 7), "strings"),
    (lambda m: m["slices"][0]["entries"][0].__setitem__(3, []), "meta"),
    (lambda m: m["slices"][0]["entries"][0].__setitem__(4, 1), "ref_prev"),
    (lambda m: m["slices"][0].__setitem__("entries", "x"), "not an array"),
])
def test_a_malformed_message_is_refused_with_a_reason_and_changes_nothing(break_it: Any, why: str) -> None:
    a, b = pair()
    a.join("conn1", "room:1", "alice", {})
    send(a, b)
    before = b.extract_state().to_json()
    message = valid_message()
    StateMessage.from_json(message)  # valid before it is broken
    break_it(message)
    with pytest.raises(MalformedState, match=why):
        b.merge(StateMessage.from_json(message))
    assert b.extract_state().to_json() == before


def test_a_peer_over_the_per_node_limit_is_refused() -> None:
    message = valid_message()
    with pytest.raises(MalformedState, match="more than 1"):
        StateMessage.from_json(message, Limits(max_per_node=1))


json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=4),
                           max_leaves=20)


@settings(max_examples=200)
@given(value=json_values | st.builds(lambda slices: {"v": 1, "slices": slices}, json_values))
def test_any_json_is_a_message_or_refused(value: Any) -> None:
    try:
        message = StateMessage.from_json(value)
    except MalformedState:
        return
    node = PresenceState(ReplicaId("x@host", 1))
    node.merge(message)


@settings(max_examples=200)
@given(path=st.lists(st.integers(0, 5), min_size=1, max_size=5), replacement=json_values)
def test_a_message_with_any_part_replaced_is_refused_or_merges_safely(path: list[int], replacement: Any) -> None:
    """Replace one node of a valid message: either it is still valid and merges into a state
    that stays consistent, or it is refused."""
    message: Any = valid_message()
    parent: Any = message
    slot: Any = "slices"
    for step in path:  # down the path while there is a child to go to
        value = parent[slot]
        children = list(value) if isinstance(value, dict) else list(range(len(value))) if isinstance(value, list) else []
        if not children:
            break
        parent, slot = value, children[step % len(children)]
    parent[slot] = replacement
    observer = PresenceState(ReplicaId("o@host", 1))
    observer.replica_up(ReplicaId("b@host", 2))
    try:
        parsed = StateMessage.from_json(message)
    except MalformedState:
        return
    view = ClientView()
    view.apply(observer.merge(parsed))
    view.apply(observer.merge(parsed))
    for topic in {entry.topic for piece in parsed.slices for entry in piece.entries}:
        assert by_ref(view.listing(topic)) == by_ref(observer.list(topic))
