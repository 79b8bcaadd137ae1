#!/usr/bin/env node
// The benchmark's load generator: C Phoenix Channels clients in this one process, joined to one
// topic (or spread over `rooms` topics: client i joins room i % rooms), S of them shouting at a
// total rate R for D seconds, each shout reaching the members of the sender's room. Every receipt is accounted for
// (lost, duplicated, out of order, latency), and the generator measures its own CPU so a run can
// say when the generator, not the server, was the limit.
//
// Driven over stdin/stdout, one JSON object per line each way (bench/loadgen.py is the driver):
//   {"cmd":"connect","urls":[...],"clients":C,"topic":"room:1","rooms":1,"vsn":"2.0.0"} -> {"ok":true,"joined":...}
//   {"cmd":"run","step":1,"senders":S,"rate":R,"duration":D,...}               -> {"ok":true,"delivered":...}
//   {"cmd":"ensure"}   reconnect and rejoin whatever was closed                 -> {"ok":true,"joined":...}
//   {"cmd":"stats"}    connection counts                                       -> {"ok":true,...}
//   {"cmd":"close"}    close every client                                      -> {"ok":true}
//   {"cmd":"quit"}
// Diagnostics go to stderr. Every wait is bounded by a timeout given in the command (or a default).
'use strict';

const readline = require('readline');
const { performance, monitorEventLoopDelay } = require('perf_hooks');
const WebSocket = require('ws');
const { PhoenixClient, startHeartbeats } = require('./phoenix_client');

const MESSAGE = 'hello from the benchmark, a chat line of ordinary length';

let clients = [];      // index -> Client
let topic = 'room:1';  // with rooms > 1: room:1/0, room:1/1, ...
let rooms = 1;
let vsn = '2.0.0';
let urls = [];
let run = null;        // the step being measured, or null between steps
let stale = 0;         // shouts of an earlier step that arrived between or during later steps
let heartbeatTimer = null;

function log(...args) { process.stderr.write(`[loadgen] ${args.join(' ')}\n`); }

function encode(joinRef, ref, topic, event, payload) {
  if (vsn === '2.0.0') return JSON.stringify([joinRef, ref, topic, event, payload]);
  return JSON.stringify({ topic, event, payload, ref, join_ref: joinRef });
}

function roomOf(index) { return index % rooms; }
function topicOf(index) { return rooms === 1 ? topic : `${topic}/${roomOf(index)}`; }

function decode(text) {
  const m = JSON.parse(text);
  if (Array.isArray(m)) return { ref: m[1], topic: m[2], event: m[3], payload: m[4] };
  return m;
}

class Client extends PhoenixClient {
  constructor(index, url) {
    super(index, url, topicOf(index));
    this.closeCode = null;
  }

  encode(...args) { return encode(...args); }
  decode(text) { return decode(text); }
  socketUrl() { return `${this.url}${this.url.includes('?') ? '&' : '?'}vsn=${vsn}`; }
  received(data) { receive(this, data); }

  closed(wasJoined, code) {
    this.closeCode = code;
    if (wasJoined && run) run.disconnects += 1;
  }
}

// ---- accounting --------------------------------------------------------------------------------

function receive(client, data) {
  const r = run;
  let m;
  try { m = decode(data.toString()); } catch (e) { if (r) r.badFrames += 1; return; }
  if (m.event !== 'shout') return;                       // heartbeat replies and the like
  const p = m.payload;
  if (!r || p.k !== r.step) { stale += 1; return; }
  const now = performance.now();
  const s = p.s, q = p.q;
  if (!(s >= 0 && s < r.senders && q >= 0 && q < r.perSender)) { r.badFrames += 1; return; }
  const c = client.index;
  if (r.roomOfSender[s] !== roomOf(c)) { r.misrouted += 1; return; }
  const slot = (s * r.perSender + q) * r.roomSize + r.position[c];
  const seen = r.seen[slot];
  if (seen) { r.duplicates += 1; if (seen < 255) r.seen[slot] = seen + 1; return; }
  r.seen[slot] = 1;
  const pair = s * r.roomSize + r.position[c];
  if (q < r.lastSeq[pair]) r.outOfOrder += 1; else r.lastSeq[pair] = q;
  const latency = now - p.t / 1000;
  if (r.nLatency < r.latency.length) r.latency[r.nLatency++] = latency;
  const shout = s * r.perSender + q;
  if (latency > r.worstOfShout[shout]) r.worstOfShout[shout] = latency;
  if (latency > 1000) r.over1s += 1;
  r.delivered += 1;
  r.lastReceipt = now;
}

function percentile(sorted, n, p) {
  if (n === 0) return null;
  const i = Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1));
  return sorted[i];
}

function round(x, digits = 3) { return x === null ? null : Math.round(x * 10 ** digits) / 10 ** digits; }

// ---- commands ----------------------------------------------------------------------------------

async function cmdConnect(msg) {
  urls = msg.urls;
  topic = msg.topic || topic;
  if (clients.length === 0) rooms = Math.max(1, msg.rooms || 1);
  vsn = msg.vsn || vsn;
  const wanted = msg.clients;
  const concurrency = msg.concurrency || 100;
  const timeoutMs = (msg.timeout || 20) * 1000;
  const start = performance.now();
  const first = clients.length;
  for (let i = first; i < first + wanted; i++) clients.push(new Client(i, urls[i % urls.length]));
  // From the first connect on, as phoenix.js does: a long connect phase must not leave the early
  // sockets silent past the node's idle timeout.
  if (!heartbeatTimer) heartbeatTimer = startHeartbeats(() => clients);
  const joined = await connectAll(clients.slice(first), concurrency, timeoutMs, (msg.deadline || 600) * 1000);
  return { joined, failed: wanted - joined, total_joined: countJoined(), seconds: round((performance.now() - start) / 1000),
           first_failure: firstFailure(clients.slice(first)) };
}

async function connectAll(list, concurrency, timeoutMs, deadlineMs) {
  let next = 0, joined = 0;
  const until = performance.now() + deadlineMs;
  async function worker() {
    while (next < list.length && performance.now() < until) {
      const c = list[next++];
      if (await c.connect(timeoutMs)) joined += 1;
    }
  }
  await Promise.all(Array.from({ length: Math.min(concurrency, list.length) }, worker));
  return joined;
}

function firstFailure(list) {
  const c = list.find((x) => x.state !== 'joined');
  return c ? `${c.failure || 'not joined'}${c.lastError ? ` (${c.lastError})` : ''}` : null;
}

function countJoined() { return clients.reduce((n, c) => n + (c.state === 'joined' ? 1 : 0), 0); }

async function cmdEnsure(msg) {
  const closed = clients.filter((c) => c.state !== 'joined');
  const joined = await connectAll(closed, msg.concurrency || 100, (msg.timeout || 20) * 1000, (msg.deadline || 120) * 1000);
  return { reconnected: joined, still_closed: closed.length - joined, total_joined: countJoined() };
}


async function cmdRun(msg) {
  const senders = msg.senders;
  const rate = msg.rate;                 // shouts per second, all senders together
  const duration = msg.duration;         // seconds of sending
  const drainMs = (msg.drain || 5) * 1000;
  const quietMs = (msg.quiet || 1.5) * 1000;
  const abortOver1s = msg.abort_over_1s_fraction || 0;  // > 0: stop early once p99 < 1 s is lost anyway
  const total = Math.max(1, Math.round(rate * duration));   // shouts in this step
  const perSender = Math.ceil(total / senders);
  const joinedIdx = clients.filter((c) => c.state === 'joined').map((c) => c.index);
  if (joinedIdx.length < senders) throw new Error(`only ${joinedIdx.length} clients joined, need ${senders} senders`);
  const senderClients = [];
  // Spread the senders over the clients (and so over the nodes, which clients alternate between).
  for (let i = 0; i < senders; i++) senderClients.push(clients[joinedIdx[Math.floor((i * joinedIdx.length) / senders)]]);
  const nClients = clients.length;
  // Members of each room (joined at the start of the step) and each client's place in its room.
  const members = Array.from({ length: rooms }, () => []);
  const position = new Int32Array(nClients);
  const roomSize = Math.ceil(nClients / rooms);
  for (let i = 0; i < nClients; i++) position[i] = Math.floor(i / rooms);
  for (const i of joinedIdx) members[roomOf(i)].push(i);
  const roomOfSender = Int32Array.from(senderClients, (c) => roomOf(c.index));
  // Shout n comes from sender n % S: the deliveries it should make are its room's members.
  let expectedTotal = 0;
  for (let n = 0; n < total; n++) expectedTotal += members[roomOfSender[n % senders]].length;
  const maxLatency = Math.min(expectedTotal, msg.max_samples || 30000000);
  const r = {
    step: msg.step, senders, perSender, clients: nClients, roomSize, position, roomOfSender,
    seen: new Uint8Array(senders * perSender * roomSize),
    worstOfShout: new Float64Array(senders * perSender),
    lastSeq: new Int32Array(senders * roomSize).fill(-1),
    latency: new Float64Array(maxLatency), nLatency: 0,
    delivered: 0, duplicates: 0, outOfOrder: 0, badFrames: 0, misrouted: 0, over1s: 0, disconnects: 0,
    lastReceipt: 0,
  };
  const sent = new Int32Array(senders);
  const staleBefore = stale;
  const padding = msg.padding ? 'x'.repeat(msg.padding) : undefined;
  const loopDelay = monitorEventLoopDelay({ resolution: 5 });
  loopDelay.enable();
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  run = r;

  // A test hook (the smoke test's check that losses are counted): cut `drop` receiving
  // clients off abruptly `drop_after` seconds into the step.
  let dropTimer = null;
  if (msg.drop) {
    dropTimer = setTimeout(() => {
      const victims = joinedIdx.filter((i) => !senderClients.includes(clients[i])).slice(-msg.drop);
      for (const i of victims) clients[i].ws.terminate();
    }, (msg.drop_after || 0) * 1000);
  }

  // Open loop: shout n goes at t0 + n/rate, from sender n % S (its seq n / S), whatever the
  // server does, stamped with the intended time (a late send shows up as latency, not as a
  // lower rate: no coordinated omission).
  const interval = 1000 / rate;
  let sendSlipMax = 0;
  let aborted = false;
  let nSent = 0;
  await new Promise((resolve) => {
    function tick() {
      const now = performance.now();
      while (nSent < total && t0 + nSent * interval <= now) {
        const intended = t0 + nSent * interval;
        sendSlipMax = Math.max(sendSlipMax, now - intended);
        const i = nSent % senders;
        const c = senderClients[i];
        const payload = { message: MESSAGE, s: i, q: sent[i], t: Math.round(intended * 1000), k: r.step };
        if (padding) payload.pad = padding;
        if (c.state === 'joined') c.send(encode(c.joinRef, c.nextRef(), c.topic, 'shout', payload));
        sent[i] += 1;
        nSent += 1;
      }
      if (abortOver1s && r.over1s > abortOver1s * expectedTotal) { aborted = true; resolve(); return; }
      if (nSent >= total) { resolve(); return; }
      // Timers fire at 1 ms granularity at best: at high rates each tick sends all shouts due
      // (never spinning the loop, which would starve the receiving side).
      const wait = t0 + nSent * interval - performance.now();
      setTimeout(tick, Math.max(1, Math.min(wait, 50)));
    }
    tick();
  });
  const tSent = performance.now();
  if (dropTimer) clearTimeout(dropTimer);
  const shouts = sent.reduce((a, b) => a + b, 0);
  let expected = 0;
  for (let i = 0; i < senders; i++) expected += sent[i] * members[roomOfSender[i]].length;

  // Drain: until everything arrived, or nothing arrived for quietMs, or drainMs passed.
  await new Promise((resolve) => {
    let lastCount = -1, lastChange = performance.now();
    function check() {
      const now = performance.now();
      if (r.delivered !== lastCount) { lastCount = r.delivered; lastChange = now; }
      if (r.delivered >= expected || now - lastChange > quietMs || now - tSent > drainMs) { resolve(); return; }
      setTimeout(check, 10);
    }
    check();
  });
  run = null;
  const tEnd = performance.now();
  const cpu = process.cpuUsage(cpu0);
  loopDelay.disable();

  // Lost: a shout that was sent, times a client that was joined when the step began, not seen.
  let lost = 0;
  let extra = 0; // deliveries to room places whose client was not joined at the start (should be none)
  const joinedPlace = new Uint8Array(rooms * roomSize);
  for (const c of joinedIdx) joinedPlace[roomOf(c) * roomSize + position[c]] = 1;
  for (let s = 0; s < senders; s++) {
    const room = roomOfSender[s];
    for (let q = 0; q < perSender; q++) {
      const base = (s * perSender + q) * roomSize;
      for (let p = 0; p < roomSize; p++) {
        const got = r.seen[base + p];
        if (joinedPlace[room * roomSize + p]) { if (!got && q < sent[s]) lost += 1; }
        else if (got) extra += 1;
      }
    }
  }

  // The slowest shouts (by their last delivery): with few shouts, each reaching many clients,
  // one slow shout sets the p99, and when it was sent tells warm-up from a stall.
  const slowest = Array.from(r.worstOfShout.keys()).sort((a, b) => r.worstOfShout[b] - r.worstOfShout[a]).slice(0, 3)
    .map((i) => { const s = Math.floor(i / perSender), q = i % perSender, nth = q * senders + s;
                  return { nth, at_s: round(nth / rate, 3), worst_ms: round(r.worstOfShout[i]) }; });
  const n = r.nLatency;
  const lat = r.latency.subarray(0, n).sort();
  const wall = (tEnd - t0) / 1000;
  // Deliveries over the longer of the planned sending time and the time to the last receipt.
  const active = Math.max(aborted ? 0 : duration, ((r.lastReceipt || tSent) - t0) / 1000);
  const genCpu = (cpu.user + cpu.system) / 1e6;
  return {
    step: r.step, senders, clients: joinedIdx.length, rooms, rate, duration, aborted,
    shouts, expected, delivered: r.delivered, lost, duplicates: r.duplicates, out_of_order: r.outOfOrder,
    extra, misrouted: r.misrouted, bad_frames: r.badFrames, disconnects: r.disconnects, stale: stale - staleBefore,
    offered_per_s: round(expected / (aborted ? Math.max(1e-9, (tSent - t0) / 1000) : duration), 1),
    deliveries_per_s: round(r.delivered / Math.max(1e-9, active), 1),
    latency_ms: {
      p50: round(percentile(lat, n, 50)), p90: round(percentile(lat, n, 90)),
      p99: round(percentile(lat, n, 99)), max: round(n ? lat[n - 1] : null),
      mean: round(n ? lat.reduce((a, b) => a + b, 0) / n : null),
    },
    over_1s: r.over1s, slowest_shouts: slowest,
    send_seconds: round((tSent - t0) / 1000), wall_seconds: round(wall),
    send_slip_max_ms: round(sendSlipMax),
    generator: {
      cpu_seconds: round(genCpu), cpu_fraction: round(genCpu / wall), system_seconds: round(cpu.system / 1e6),
      loop_delay_p99_ms: round(loopDelay.percentile(99) / 1e6), loop_delay_max_ms: round(loopDelay.max / 1e6),
    },
  };
}

function cmdStats() {
  const byState = {};
  for (const c of clients) byState[c.state] = (byState[c.state] || 0) + 1;
  return { clients: clients.length, states: byState, stale, rss_bytes: process.memoryUsage().rss };
}

async function cmdClose(msg) {
  if (heartbeatTimer) { clearInterval(heartbeatTimer); heartbeatTimer = null; }
  const waits = clients.map((c) => new Promise((resolve) => {
    if (!c.ws || c.ws.readyState === WebSocket.CLOSED) { resolve(); return; }
    const t = setTimeout(() => { try { c.ws.terminate(); } catch (e) { /* gone */ } resolve(); }, (msg.timeout || 5) * 1000);
    c.ws.once('close', () => { clearTimeout(t); resolve(); });
    try { c.ws.close(1000); } catch (e) { clearTimeout(t); resolve(); }
  }));
  await Promise.all(waits);
  clients = [];
  return {};
}

const handlers = { connect: cmdConnect, run: cmdRun, ensure: cmdEnsure, stats: cmdStats, close: cmdClose };

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    let msg;
    try { msg = JSON.parse(line); } catch (e) { reply({ ok: false, error: `bad command: ${e.message}` }); return; }
    if (msg.cmd === 'quit') { process.exit(0); }
    const handler = handlers[msg.cmd];
    if (!handler) { reply({ ok: false, error: `unknown command ${msg.cmd}` }); return; }
    try { reply({ ok: true, ...(await handler(msg)) }); }
    catch (e) { reply({ ok: false, error: String(e && e.stack || e) }); }
  });
});
rl.on('close', () => process.exit(0));

function reply(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
