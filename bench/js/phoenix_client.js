'use strict';
// A Phoenix Channels client over `ws` that connects and joins one topic: what the benchmark's
// generators (loadgen.js, swarm.js) share. A subclass says what to do with frames once joined
// (received) and when a joined socket closes (closed); the V2 serializer is the default.
const { performance } = require('perf_hooks');
const WebSocket = require('ws');

class PhoenixClient {
  constructor(index, url, topic) {
    this.index = index;
    this.url = url;
    this.topic = topic;
    this.ws = null;
    this.state = 'new';   // new | connecting | joined | closed
    this.ref = 0;
    this.joinRef = null;
  }

  nextRef() { this.ref += 1; return String(this.ref); }

  encode(joinRef, ref, topic, event, payload) { return JSON.stringify([joinRef, ref, topic, event, payload]); }

  decode(text) {
    const m = JSON.parse(text);
    return { ref: m[1], topic: m[2], event: m[3], payload: m[4] };
  }

  socketUrl() { return `${this.url}${this.url.includes('?') ? '&' : '?'}vsn=2.0.0`; }

  socketOptions() { return {}; }

  received(data) { /* a frame once joined */ }

  closed(wasJoined, code) { /* the socket closed */ }

  // Resolves true once joined, false on any failure or after timeoutMs.
  connect(timeoutMs) {
    return new Promise((resolve) => {
      let done = false;
      const finish = (ok, why) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        if (!ok) {
          if (why) this.failure = why;
          this.state = 'closed';
          try { this.ws.terminate(); } catch (e) { /* already gone */ }
        }
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false, 'timeout'), timeoutMs);
      this.state = 'connecting';
      const ws = new WebSocket(this.socketUrl(), { perMessageDeflate: false, handshakeTimeout: timeoutMs,
                                                   ...this.socketOptions() });
      this.ws = ws;
      ws.on('open', () => {
        this.joinRef = this.nextRef();
        ws.send(this.encode(this.joinRef, this.joinRef, this.topic, 'phx_join', {}));
      });
      ws.on('message', (data) => {
        if (this.state === 'joined') { this.received(data); return; }
        let m;
        try { m = this.decode(data.toString()); } catch (e) { finish(false, 'bad frame'); return; }
        if (m.event === 'phx_reply' && m.ref === this.joinRef) {
          if (m.payload && m.payload.status === 'ok') { this.state = 'joined'; finish(true); }
          else finish(false, `join refused: ${JSON.stringify(m.payload)}`);
        }
      });
      ws.on('close', (code) => {
        const wasJoined = this.state === 'joined';
        this.state = 'closed';
        finish(false, `closed ${code}`);
        this.closed(wasJoined, code);
      });
      ws.on('error', (err) => { this.lastError = String(err && err.message || err); });
    });
  }

  send(text) { this.ws.send(text); }
}

// Every joined socket of clients() sends phoenix.js's heartbeat every 30 s (its
// heartbeatIntervalMs), the sockets spread evenly over the interval; returns the timer. Each
// tick sends as many as the time since the last tick calls for, so a busy process whose ticks
// come late still visits every socket within the node's 60 s idle timeout.
const HEARTBEAT_MS = 30000;
function startHeartbeats(clients) {
  let cursor = 0;
  let last = performance.now();
  let owed = 0;
  return setInterval(() => {
    const list = clients();
    const now = performance.now();
    owed += (list.length * (now - last)) / HEARTBEAT_MS;
    last = now;
    for (; owed >= 1 && list.length; owed -= 1) {
      // A position, not a count modulo the length: while connects grow the list, a count
      // modulo it would jump about and leave some sockets unvisited for minutes.
      if (cursor >= list.length) cursor = 0;
      const c = list[cursor++];
      if (c.state === 'joined' && c.ws.readyState === WebSocket.OPEN) {
        c.send(c.encode(null, c.nextRef(), 'phoenix', 'heartbeat', {}));
      }
    }
  }, 100);
}

module.exports = { PhoenixClient, startHeartbeats };
