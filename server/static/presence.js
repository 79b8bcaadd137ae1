// gossipy's chat page: who is in the room, from the channel's presence_state and presence_diff
// messages, synced with the semantics of phoenix.js's Presence (its static syncState/syncDiff and
// its pendingDiffs), so that this page and a phoenix.js app shown the same messages end with the
// same state, key and meta order included. tests/js/presence_sync.test.mjs checks that against
// the official package on random message sequences.
//
// Unlike phoenix.js, these functions never change their arguments: a state is replaced, never
// edited, so a state handed to the page stays as it was shown.
//
// A state is {key: {metas: [{phx_ref, ...}, ...], ...}}. The browser gets window.gossipyPresence;
// Node.js (the tests) gets module.exports.
(function (api) {
  'use strict';

  // Keys are chosen by users (nicknames): an object indexed by them has no prototype, or a
  // "__proto__" or "constructor" member would read or write Object.prototype's.
  function dict() { return Object.create(null); }

  function names(obj) { return Object.getOwnPropertyNames(obj); }

  // obj[key] when obj holds it itself: incoming states are parsed JSON, with a prototype.
  function own(obj, key) {
    return Object.prototype.hasOwnProperty.call(obj, key) ? obj[key] : undefined;
  }

  function refs(metas) { return metas.map(function (meta) { return meta.phx_ref; }); }

  function without(metas, refsGone) {
    return metas.filter(function (meta) { return refsGone.indexOf(meta.phx_ref) < 0; });
  }

  // The presence with other metas, its other fields (a server may add some) kept.
  function withMetas(presence, metas) {
    var copy = {};
    Object.keys(presence).forEach(function (field) { copy[field] = presence[field]; });
    copy.metas = metas;
    return copy;
  }

  function copyState(state) {
    var copy = dict();
    names(state).forEach(function (key) { copy[key] = state[key]; });
    return copy;
  }

  // Applies {joins, leaves}: a joining meta replaces the one of the same phx_ref and goes after
  // the key's other metas; leaving metas go by phx_ref, and a key with none left goes. Leaves
  // of keys not held are ignored (the state was synced after them).
  function syncDiff(state, diff) {
    var next = copyState(state);
    var joins = diff.joins || {};
    var leaves = diff.leaves || {};
    names(joins).forEach(function (key) {
      var joined = joins[key];
      var current = next[key];
      var metas = current ? without(current.metas, refs(joined.metas)).concat(joined.metas) : joined.metas.slice();
      next[key] = withMetas(joined, metas);
    });
    names(leaves).forEach(function (key) {
      var current = next[key];
      if (!current) return;
      var metas = without(current.metas, refs(leaves[key].metas));
      if (metas.length === 0) {
        delete next[key];
      } else {
        next[key] = withMetas(current, metas);
      }
    });
    return next;
  }

  // Brings a state to a full listing (the presence_state after every join) as the diff between
  // them, so that metas both hold keep their place.
  function syncState(state, newState) {
    var joins = dict();
    var leaves = dict();
    names(state).forEach(function (key) {
      if (!own(newState, key)) leaves[key] = state[key];
    });
    names(newState).forEach(function (key) {
      var fresh = newState[key];
      var current = own(state, key);
      if (!current) {
        joins[key] = fresh;
        return;
      }
      var joined = without(fresh.metas, refs(current.metas));
      var left = without(current.metas, refs(fresh.metas));
      if (joined.length > 0) joins[key] = withMetas(fresh, joined);
      if (left.length > 0) leaves[key] = withMetas(current, left);
    });
    return syncDiff(state, {joins: joins, leaves: leaves});
  }

  // One channel's presences. The channel has on(event, callback) and joinRef, the ref of its
  // latest join. Diffs that arrive before that join's presence_state belong after it (the
  // state may already include them or not), so they wait and are applied once it comes.
  function Presence(channel, onSync) {
    var self = this;
    this.channel = channel;
    this.state = dict();
    this.pendingDiffs = [];
    this.joinRef = null;
    channel.on('presence_state', function (newState) {
      self.joinRef = channel.joinRef;
      self.state = syncState(self.state, newState);
      self.pendingDiffs.forEach(function (diff) { self.state = syncDiff(self.state, diff); });
      self.pendingDiffs = [];
      onSync();
    });
    channel.on('presence_diff', function (diff) {
      if (self.inPendingSyncState()) {
        self.pendingDiffs.push(diff);
      } else {
        self.state = syncDiff(self.state, diff);
        onSync();
      }
    });
  }

  Presence.prototype.inPendingSyncState = function () {
    return !this.joinRef || this.joinRef !== this.channel.joinRef;
  };

  // chooser(key, presence) for each key, in the state's order.
  Presence.prototype.list = function (chooser) {
    var state = this.state;
    return names(state).map(function (key) { return chooser(key, state[key]); });
  };

  api.syncState = syncState;
  api.syncDiff = syncDiff;
  api.Presence = Presence;
}(typeof module === 'object' && module.exports ? module.exports : (window.gossipyPresence = {})));
