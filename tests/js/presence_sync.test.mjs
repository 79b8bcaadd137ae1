// The chat page's presence sync (server/static/presence.js) against the official phoenix.js
// Presence on random message sequences: after every message both must hold the same state,
// key and meta order included (JSON text compared), and ours must leave its inputs alone.
//
//   node --test presence_sync.test.mjs        (from tests/js; tests/test_chat_presence_sync.py runs it)
//
// A failure names the seed: PRESENCE_SEED=<seed> replays that one sequence.
import assert from "node:assert/strict";
import {createRequire} from "node:module";
import test from "node:test";

import {Presence as PhoenixPresence} from "phoenix";

const ours = createRequire(import.meta.url)("../../server/static/presence.js");

const SEQUENCES = 200;
const STEPS = 80;
// Nicknames are user text: integer-like keys (which JavaScript orders first) and names of
// Object.prototype's members must behave like any other.
const KEYS = ["alice", "bob", "carol", "0", "10", "2", "__proto__", "constructor", "toString", "hasOwnProperty"];
const NODES = ["gossipy@127.0.0.2", "gossipy@127.0.0.3", "gossipy@127.0.0.4"];

function random(seed) {  // mulberry32: small, seedable, good enough to pick test cases
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6D2B79F5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  next.int = n => Math.floor(next() * n);
  next.pick = list => list[next.int(list.length)];
  return next;
}

// Messages are built without prototypes and cross as JSON text, as from the socket, so that a
// "__proto__" key is a key like the others.
const dict = () => Object.create(null);
const wire = value => JSON.parse(JSON.stringify(value));

function deepFreeze(value) {
  if (value && typeof value === "object") {
    Object.getOwnPropertyNames(value).forEach(name => deepFreeze(value[name]));
    Object.freeze(value);
  }
  return value;
}

// The server side: one topic's presences, and the messages a tracker (or a confused or
// replaying network) could send about them.
class Topic {
  constructor(rand) {
    this.rand = rand;
    this.presences = new Map();  // key -> metas
    this.clock = 0;
  }

  meta(extra = {}) {
    this.clock += 1;
    return {phx_ref: `F${this.clock}`, node: this.rand.pick(NODES), online_at: 1_700_000_000_000 + this.clock, ...extra};
  }

  state() {
    const state = dict();
    for (const [key, metas] of this.presences) state[key] = {metas: metas.slice()};
    return wire(state);
  }

  held() {
    return [...this.presences].flatMap(([key, metas]) => metas.map(meta => [key, meta]));
  }

  // One diff of one to three changes: joins, leaves, updates (a leave and a join that names
  // the meta it replaces), and now and then a stale or repeated one.
  diff() {
    const joins = dict();
    const leaves = dict();
    const add = (side, key, meta) => { (side[key] ||= {metas: []}).metas.push(meta); };
    for (let changes = 1 + this.rand.int(3); changes > 0; changes--) {
      const held = this.held();
      const roll = this.rand();
      if (roll < 0.4 || held.length === 0) {
        const key = this.rand.pick(KEYS);
        const meta = this.meta();
        this.presences.set(key, [...(this.presences.get(key) || []), meta]);
        add(joins, key, meta);
      } else if (roll < 0.7) {
        const [key, meta] = this.rand.pick(held);
        const rest = this.presences.get(key).filter(m => m !== meta);
        if (rest.length) this.presences.set(key, rest); else this.presences.delete(key);
        add(leaves, key, meta);
      } else if (roll < 0.85) {
        const [key, meta] = this.rand.pick(held);
        const updated = this.meta({phx_ref_prev: meta.phx_ref, typing: this.rand() < 0.5});
        this.presences.set(key, this.presences.get(key).map(m => (m === meta ? updated : m)));
        add(leaves, key, meta);
        add(joins, key, updated);
      } else if (roll < 0.93) {  // a join seen again (a replayed diff): same ref, maybe new fields
        const [key, meta] = this.rand.pick(held);
        add(joins, key, {...meta, replayed: true});
      } else {  // a leave of something never held, or already gone
        add(leaves, this.rand.pick(KEYS), this.meta());
      }
    }
    return wire({joins, leaves});
  }
}

const json = state => JSON.stringify(state);

function seeds() {
  if (process.env.PRESENCE_SEED) return [Number(process.env.PRESENCE_SEED)];
  const base = Date.now() % 1_000_000;
  return Array.from({length: SEQUENCES}, (_, i) => base + i);
}

test("syncState and syncDiff end where phoenix.js's do, and change no argument", () => {
  for (const seed of seeds()) {
    const rand = random(seed);
    const topic = new Topic(rand);
    let theirs = dict();
    let mine = deepFreeze(ours.syncState(dict(), {}));
    for (let step = 0; step < STEPS; step++) {
      // A full state now and then: a (re)join's presence_state, after diffs the client missed
      // while it was away (the state is then the only news of those changes).
      const message = rand() < 0.15 ? {kind: "state", payload: topic.state()} : {kind: "diff", payload: topic.diff()};
      if (message.kind === "diff" && rand() < 0.2) continue;
      const sync = message.kind === "state" ? "syncState" : "syncDiff";
      theirs = PhoenixPresence[sync](wire(theirs), wire(message.payload));
      mine = deepFreeze(ours[sync](mine, deepFreeze(wire(message.payload))));
      assert.equal(json(mine), json(theirs), `seed ${seed}, step ${step}, ${sync} of ${json(message.payload)}`);
      assert.equal(Object.getPrototypeOf(mine), null, "a state indexed by user keys has no prototype");
    }
  }
});

// A channel as each Presence class sees it: phoenix.js asks joinRef(), ours reads joinRef.
class FakeChannels {
  constructor() {
    this.ref = null;
    this.handlers = {};
    const on = (event, callback) => { (this.handlers[event] ||= []).push(callback); };
    this.phoenix = {on, joinRef: () => this.ref};
    const self = this;
    this.page = {on, get joinRef() { return self.ref; }};
  }

  deliver(event, payload) {
    (this.handlers[event] || []).forEach(callback => callback(wire(payload)));
  }
}

test("a Presence holds diffs until its join's presence_state, as phoenix.js's does", () => {
  for (const seed of seeds()) {
    const rand = random(seed);
    const topic = new Topic(rand);
    const channels = new FakeChannels();
    const theirs = new PhoenixPresence(channels.phoenix);
    let theirSyncs = 0;
    theirs.onSync(() => theirSyncs++);
    let mySyncs = 0;
    const mine = new ours.Presence(channels.page, () => mySyncs++);
    let joins = 0;
    for (let step = 0; step < STEPS; step++) {
      const roll = rand();
      let what;
      if (roll < 0.08 || channels.ref === null) {  // a rejoin: diffs now wait for its state
        joins += 1;
        channels.ref = String(joins);
        what = "rejoin";
      } else if (roll < 0.25) {
        what = "presence_state";
        channels.deliver(what, topic.state());
      } else {
        what = "presence_diff";
        const diff = topic.diff();
        if (rand() < 0.2) what = "a presence_diff lost"; else channels.deliver(what, diff);
      }
      const where = `seed ${seed}, step ${step} (${what})`;
      assert.equal(json(mine.state), json(theirs.state), where);
      assert.equal(mine.pendingDiffs.length, theirs.pendingDiffs.length, where);
      assert.equal(mine.inPendingSyncState(), theirs.inPendingSyncState(), where);
      assert.equal(mySyncs, theirSyncs, where);
      const listing = (key, presence) => [key, presence.metas.map(meta => meta.phx_ref)];
      assert.deepEqual(mine.list(listing), theirs.list(listing), where);
    }
  }
});
