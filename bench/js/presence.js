#!/usr/bin/env node
// The presence benchmark's clients (bench/presence.py drives them; the nodes run
// bench/presence_app.py): fillers that put N presences in a topic, observers that only listen,
// a probe timing its joins to their presence_state, and a toucher whose meta updates are timed
// to every observer's receipt of the presence_diff.
//
// One JSON object per line each way:
//   {"cmd":"fill","urls":[...],"topic":T,"counts":[keys per url]}      -> {"ok":true}
//   {"cmd":"observe","urls":[...],"topic":T,"observers":M}             -> {"ok":true}
//   {"cmd":"joins","url":U,"topic":T,"repeat":R,"expect":K}            -> {"ok":true,"samples":[...]}
//   {"cmd":"toucher","url":U,"topic":T}                                -> {"ok":true}
//   {"cmd":"touches","repeat":R}                                       -> {"ok":true,"samples":[...]}
//   {"cmd":"close"}                                                    -> {"ok":true}
// Every wait is bounded (TIMEOUT_MS, or the warm-up's deadline); diagnostics go to stderr.
'use strict';

const readline = require('readline');
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

const TIMEOUT_MS = 60000;    // filling 10,000 presences on a busy machine is the slowest wait
const WARMUP_MS = 30000;     // for every node's presences to reach the probe's node

function within(ms, what, promise) {
  let timer;
  const expired = new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms); });
  return Promise.race([promise, expired]).finally(() => clearTimeout(timer));
}

// One Phoenix V2 connection: pushes that resolve with their reply, and a listener for the rest.
class Conn {
  constructor(url, onMessage) {
    this.url = url;
    this.ref = 0;
    this.replies = new Map();
    this.onMessage = onMessage || (() => {});
  }

  open() {
    this.ws = new WebSocket(`${this.url}?vsn=2.0.0`);
    this.ws.on('message', (data) => {
      const at = performance.now();
      const text = data.toString();
      const [joinRef, ref, , event, payload] = JSON.parse(text);
      if (event === 'phx_reply' && this.replies.has(ref)) {
        this.replies.get(ref)({ at, status: payload.status, response: payload.response });
        this.replies.delete(ref);
      } else {
        this.onMessage({ joinRef, event, payload, at, bytes: text.length });
      }
    });
    return within(TIMEOUT_MS, `connection to ${this.url}`, new Promise((resolve, reject) => {
      this.ws.once('open', resolve);
      this.ws.once('error', reject);
    }));
  }

  // Sends now; resolves with {at, status, response} when the reply comes.
  push(joinRef, topic, event, payload) {
    this.ref += 1;
    const ref = String(this.ref);
    const reply = new Promise((resolve) => this.replies.set(ref, resolve));
    this.ws.send(JSON.stringify([joinRef ?? ref, ref, topic, event, payload]));
    return { ref, reply: within(TIMEOUT_MS, `reply to ${event}`, reply) };
  }

  async join(topic, payload) {
    const push = this.push(null, topic, 'phx_join', payload);
    const { status, response } = await push.reply;
    if (status !== 'ok') throw new Error(`join ${topic} refused: ${JSON.stringify(response)}`);
    this.joinRef = push.ref;
    return push.ref;
  }

  close() { try { this.ws.terminate(); } catch (e) { /* already closed */ } }
}

let conns = [];
let observers = [];
let toucher = null;
let touch = null;   // the touch being timed: {n, t0, times, done}

function opened(url, onMessage) {
  const conn = new Conn(url, onMessage);
  conns.push(conn);
  return conn.open().then(() => conn);
}

function waitFor(onMessage, event, what) {
  return within(TIMEOUT_MS, what, new Promise((resolve) => { onMessage.next = { event, resolve }; }));
}

// A listener that hands the next message of one event to whoever waits for it.
function listener() {
  const onMessage = (msg) => {
    const next = onMessage.next;
    if (next && msg.event === next.event) { onMessage.next = null; next.resolve(msg); }
  };
  return onMessage;
}

async function cmdFill({ urls, topic, counts }) {
  await Promise.all(urls.map(async (url, i) => {
    if (!counts[i]) return;
    const onMessage = listener();
    const conn = await opened(url, onMessage);
    const state = waitFor(onMessage, 'presence_state', `the filler's presence_state from ${url}`);
    await conn.join(topic, { fill: counts[i], prefix: `fill${i}-` });
    await state;
  }));
  return {};
}

function observerMessage(msg) {
  if (msg.event !== 'presence_diff' || !touch) return;
  const joined = msg.payload.joins.toucher;
  if (joined && joined.metas.some((meta) => meta.n === touch.n)) {
    touch.times.push(msg.at - touch.t0);
    if (touch.times.length === observers.length) touch.done();
  }
}

async function cmdObserve({ urls, topic, observers: count }) {
  const made = await Promise.all(Array.from({ length: count }, async (_, i) => {
    const conn = await opened(urls[i % urls.length], observerMessage);
    await conn.join(topic, {});
    return conn;
  }));
  observers = observers.concat(made);
  return {};
}

// Joins (tracked as "probe") until the presence_state holds `expect` keys, then `repeat` timed
// joins: send -> reply -> presence_state, each followed by a leave.
async function cmdJoins({ url, topic, repeat, expect }) {
  const onMessage = listener();
  const conn = await opened(url, onMessage);
  const samples = [];
  const warmupUntil = performance.now() + WARMUP_MS;
  let keys = 0;
  while (samples.length < repeat) {
    const state = waitFor(onMessage, 'presence_state', 'presence_state after a join');
    const t0 = performance.now();
    const push = conn.push(null, topic, 'phx_join', { name: 'probe' });
    const reply = await push.reply;
    const got = await state;
    keys = Object.keys(got.payload).length;
    if (keys >= expect) {
      samples.push({ reply_ms: reply.at - t0, state_ms: got.at - t0, state_bytes: got.bytes, keys });
    } else if (performance.now() > warmupUntil) {
      throw new Error(`the presence_state still holds ${keys} keys of ${expect} after ${WARMUP_MS} ms`);
    }
    await conn.push(push.ref, topic, 'phx_leave', {}).reply;
  }
  conn.close();
  return { samples };
}

async function cmdToucher({ url, topic }) {
  const onMessage = listener();
  toucher = await opened(url, onMessage);
  const state = waitFor(onMessage, 'presence_state', "the toucher's presence_state");
  await toucher.join(topic, { name: 'toucher' });
  await state;
  toucher.topic = topic;
  return {};
}

// One touch at a time: the next leaves once every observer has the diff of the last.
async function cmdTouches({ repeat }) {
  const samples = [];
  for (let n = 1; n <= repeat; n++) {
    const arrived = new Promise((resolve) => { touch = { n, times: [], done: resolve }; });
    touch.t0 = performance.now();
    toucher.push(toucher.joinRef, toucher.topic, 'touch', { n });
    await within(TIMEOUT_MS, `the diff of touch ${n} at every observer`, arrived);
    const times = touch.times.sort((a, b) => a - b);
    samples.push({ first_ms: times[0], median_ms: times[Math.floor(times.length / 2)], last_ms: times[times.length - 1] });
  }
  touch = null;
  return { samples };
}

function cmdClose() {
  conns.forEach((conn) => conn.close());
  conns = [];
  observers = [];
  toucher = null;
  return {};
}

const commands = { fill: cmdFill, observe: cmdObserve, joins: cmdJoins, toucher: cmdToucher, touches: cmdTouches, close: cmdClose };

const reply = (answer) => process.stdout.write(JSON.stringify(answer) + '\n');
let queue = Promise.resolve();
readline.createInterface({ input: process.stdin }).on('line', (line) => {
  const msg = JSON.parse(line);
  queue = queue.then(async () => {
    try {
      reply({ ok: true, ...(await commands[msg.cmd](msg)) });
    } catch (err) {
      process.stderr.write(`[presence] ${msg.cmd}: ${err.stack}\n`);
      reply({ ok: false, error: String(err.message || err) });
    }
  });
}).on('close', () => { cmdClose(); process.exit(0); });
