#!/usr/bin/env node
// The scale benchmark's clients (bench/scale.py drives several of these processes): many
// Phoenix Channels websockets joined to one topic, each bound to a loopback source address
// (one address has only ~28,000 ephemeral ports), heartbeating like phoenix.js, recording when
// broadcasts arrive, and, when told to, coming back after a lost connection with phoenix.js's
// backoff.
//
// Driven over stdin/stdout, one JSON object per line each way (bench/loadgen.py's call):
//   {"cmd":"connect","urls":[...],"sources":[...],"clients":C,"topic":"room:scale",...} -> {"ok":true,"joined":...}
//   {"cmd":"watch","event":"scale"}       from now on, note when each client gets event "scale" (payload.id)
//   {"cmd":"receipts","event":"scale"}    per payload id: every receipt's time, and the duplicates
//   {"cmd":"reconnect","jitter":0.5,"health_check_ms":500}
//                                         lost connections come back (phoenix.js's backoff, plus jitter),
//                                         each try to a node a balancer would pick (see Client.retry)
//   {"cmd":"storm"}                       how the comebacks went: closed, rejoined, tries, when
//   {"cmd":"stats"}  {"cmd":"close"}  {"cmd":"quit"}
// Times are epoch milliseconds (performance.timeOrigin + now), comparable across processes.
'use strict';

const fs = require('fs');
const http = require('http');
const readline = require('readline');
const { performance } = require('perf_hooks');
const { PhoenixClient, startHeartbeats } = require('./phoenix_client');

const BACKOFF_MS = [10, 50, 100, 150, 200, 250, 500, 1000, 2000];  // phoenix.js's reconnectAfterMs...
const BACKOFF_LAST_MS = 5000;                                      // ...and after that

let clients = [];
let urls = [];
let topic = 'room:scale';
let jitter = null;          // null: a lost connection stays lost; else backoff × (1 + jitter × U[0,1))
let heartbeatTimer = null;
let live = null;            // the nodes whose last health check passed; null: no checks, every node
let healthTimer = null;
const watches = new Map();  // event -> Map(payload id -> {seen, dup, times})
const failedTries = new Map();  // why a comeback's try failed -> how many did

const now = () => performance.timeOrigin + performance.now();

// Each client's local port is picked here, in turn over the ephemeral range of its source
// address (one that this process alone binds), not by the kernel: bind() to port 0 searches the
// range for a free port, which with thousands of sockets bound costs milliseconds of kernel time
// per connect, several times the node's whole join (bench/README.md, "Scale").
const [LOW_PORT, HIGH_PORT] = fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
const nextPorts = new Map();  // source address -> the port its next connect binds
function nextPort(source) {
  const port = nextPorts.get(source) || LOW_PORT;
  nextPorts.set(source, port >= HIGH_PORT ? LOW_PORT : port + 1);
  return port;
}
const BUSY_PORT_TRIES = 100;
function log(...args) { process.stderr.write(`[swarm] ${args.join(' ')}\n`); }

class Client extends PhoenixClient {
  constructor(index, source) {
    super(index, urls[index % urls.length], topic);
    this.source = source;
    this.tries = 0;         // failed tries since the connection was lost
    this.lostAt = null;     // when the joined connection was lost
    this.rejoinedAt = null;
    this.maxTries = 0;
  }

  socketOptions() { return this.source ? { localAddress: this.source, localPort: nextPort(this.source) } : {}; }

  // A port still taken (a socket of an earlier run in TIME_WAIT, say) is passed over at once.
  async connect(timeoutMs) {
    for (let i = 0; i < BUSY_PORT_TRIES; i++) {
      if (await super.connect(timeoutMs)) return true;
      if (!String(this.lastError).includes('EADDRINUSE')) return false;
      this.lastError = null;
    }
    return false;
  }

  received(data) { receive(this, this.decode(data.toString())); }
  closed(wasJoined) { if (wasJoined) this.lost(); }

  lost() {
    if (jitter === null) return;
    this.lostAt = now();
    this.rejoinedAt = null;
    this.tries = 0;
    this.retry();
  }

  // phoenix.js waits reconnectAfterMs(tries) and tries again, through a load balancer: each try
  // goes to a node picked at random among those whose last health check passed (all of them
  // without checks, or while none passes: a balancer that has not noticed the dead node).
  retry() {
    const base = BACKOFF_MS[this.tries] || BACKOFF_LAST_MS;
    setTimeout(async () => {
      const pool = live && live.length ? live : urls;
      this.url = pool[Math.floor(Math.random() * pool.length)];
      if (await this.connect(10000)) {
        this.rejoinedAt = now();
        this.maxTries = Math.max(this.maxTries, this.tries + 1);
      } else {
        // Without the local address and port a bound connect's error names: one count per cause.
        const why = (this.lastError || this.failure || 'unknown').replace(/ - Local \(.*\)$/, '');
        failedTries.set(why, (failedTries.get(why) || 0) + 1);
        this.lastError = null;
        this.tries += 1;
        this.retry();
      }
    }, base * (1 + jitter * Math.random()));
  }
}

function receive(client, m) {
  const ids = watches.get(m.event);
  if (!ids) return;                       // heartbeat replies and the like
  const at = now();
  let w = ids.get(m.payload.id);
  if (!w) { w = { seen: new Uint8Array(clients.length), dup: 0, times: [] }; ids.set(m.payload.id, w); }
  if (w.seen[client.index]) { w.dup += 1; return; }
  w.seen[client.index] = 1;
  w.times.push(at);
}

async function cmdConnect(msg) {
  urls = msg.urls;
  topic = msg.topic || topic;
  const sources = msg.sources || [undefined];
  const first = clients.length;
  for (let i = first; i < first + msg.clients; i++) clients.push(new Client(i, sources[i % sources.length]));
  const list = clients.slice(first);
  // From the first connect on, as phoenix.js does: a long connect phase must not leave the early
  // sockets silent past the node's idle timeout.
  if (!heartbeatTimer) heartbeatTimer = startHeartbeats(() => clients);
  const timeoutMs = (msg.timeout || 30) * 1000;
  const until = performance.now() + (msg.deadline || 600) * 1000;
  const start = performance.now();
  let next = 0, joined = 0;
  async function worker() {
    while (next < list.length && performance.now() < until) {
      if (await list[next++].connect(timeoutMs)) joined += 1;
    }
  }
  await Promise.all(Array.from({ length: Math.min(msg.concurrency || 100, list.length) }, worker));
  const failed = list.find((c) => c.state !== 'joined');
  return { joined, failed: list.length - joined, seconds: (performance.now() - start) / 1000,
           first_failure: failed ? `${failed.failure || 'not tried before the deadline'}${failed.lastError ? ` (${failed.lastError})` : ''}` : null };
}


function cmdWatch(msg) { watches.set(msg.event, new Map()); return {}; }

function cmdReceipts(msg) {
  const out = {};
  for (const [id, w] of watches.get(msg.event) || []) out[id] = { dup: w.dup, times: w.times };
  return { receipts: out, joined: countJoined() };
}

function cmdReconnect(msg) {
  jitter = msg.jitter === undefined ? 0.5 : msg.jitter;
  if (msg.health_check_ms && !healthTimer) startHealthChecks(msg.health_check_ms);
  return {};
}

// The balancer's health check, as HAProxy's `option httpchk GET /readyz` with `fall 1 rise 1`:
// every intervalMs each node's /readyz; a node is picked only while its last check got a 200
// (a refused connection, a 503 while it drains, or no answer within the interval take it out).
function startHealthChecks(intervalMs) {
  const ready = (url) => new Promise((resolve) => {
    const probe = new URL(url.replace(/^ws/, 'http'));
    probe.pathname = '/readyz';
    probe.search = '';
    const req = http.get(probe, { timeout: intervalMs }, (res) => { res.resume(); resolve(res.statusCode === 200); });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', () => resolve(false));
  });
  const check = async () => {
    const passed = await Promise.all(urls.map(ready));
    live = urls.filter((_, i) => passed[i]);
  };
  check();
  healthTimer = setInterval(check, intervalMs);
}

function cmdStorm() {
  const lost = clients.filter((c) => c.lostAt !== null);
  const back = lost.filter((c) => c.rejoinedAt !== null);
  const tries = {};
  for (const c of back) tries[c.maxTries] = (tries[c.maxTries] || 0) + 1;
  const byUrl = {};
  for (const c of back) byUrl[c.url] = (byUrl[c.url] || 0) + 1;
  return { lost: lost.length, rejoined: back.length, first_lost: lost.reduce((t, c) => Math.min(t, c.lostAt), Infinity),
           last_rejoined: back.reduce((t, c) => Math.max(t, c.rejoinedAt), 0), rejoin_ms: back.map((c) => c.rejoinedAt - c.lostAt),
           tries, rejoined_on: byUrl, joined: countJoined(), failed_tries: Object.fromEntries(failedTries) };
}

function countJoined() { return clients.reduce((n, c) => n + (c.state === 'joined' ? 1 : 0), 0); }

function cmdStats() {
  return { clients: clients.length, joined: countJoined(), rss_bytes: process.memoryUsage().rss,
           cpu_seconds: (process.cpuUsage().user + process.cpuUsage().system) / 1e6 };
}

async function cmdClose() {
  jitter = null;
  if (healthTimer) { clearInterval(healthTimer); healthTimer = null; live = null; }
  if (heartbeatTimer) { clearInterval(heartbeatTimer); heartbeatTimer = null; }
  for (const c of clients) { try { c.ws.terminate(); } catch (e) { /* gone */ } }
  clients = [];
  return {};
}

const handlers = { connect: cmdConnect, watch: cmdWatch, receipts: cmdReceipts, reconnect: cmdReconnect,
                   storm: cmdStorm, stats: cmdStats, close: cmdClose };

const rl = readline.createInterface({ input: process.stdin });
let queue = Promise.resolve();
rl.on('line', (line) => {
  queue = queue.then(async () => {
    const msg = JSON.parse(line);
    if (msg.cmd === 'quit') process.exit(0);
    try { reply({ ok: true, ...(await handlers[msg.cmd](msg)) }); }
    catch (e) { log(e && e.stack || e); reply({ ok: false, error: String(e && e.stack || e) }); }
  });
});
rl.on('close', () => process.exit(0));

function reply(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }
