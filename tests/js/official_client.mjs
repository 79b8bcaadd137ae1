// The official Phoenix client (npm `phoenix`, `ws` as its transport) against a gossipy node.
//
//   node official_client.mjs PORT [HOST]
//
// Joins room:1, pushes a shout and waits for its broadcast, lets several heartbeat rounds pass
// (200 ms interval) without the socket closing, and joins a topic no channel handles. Prints
// one JSON line of what it saw and exits 0 only if every step went as Phoenix would have it.
import {Socket} from "phoenix";
import WebSocket from "ws";

import {outcome, reporter} from "./steps.mjs";

const [port, host = "127.0.0.1"] = process.argv.slice(2);
const HEARTBEAT_MS = 200;
const ROUNDS = 3;
const seen = {opens: 0, closes: [], errors: 0, heartbeat_replies: 0};

const finish = reporter(seen);

function until(condition, what, ms = 5000) {
  return new Promise((resolve, reject) => {
    const started = Date.now();
    const poll = setInterval(() => {
      if (condition()) { clearInterval(poll); resolve(); }
      else if (Date.now() - started > ms) { clearInterval(poll); reject(new Error(`no ${what}`)); }
    }, 10);
  });
}

const socket = new Socket(`ws://${host}:${port}/socket`, {
  transport: WebSocket,
  heartbeatIntervalMs: HEARTBEAT_MS,
  timeout: 2000,
  // a reconnect or a rejoin would hide a failure: make them too late to happen here
  reconnectAfterMs: () => 60000,
  rejoinAfterMs: () => 60000,
});
socket.onOpen(() => seen.opens++);
socket.onClose(event => seen.closes.push(event.code));
socket.onError(() => seen.errors++);
socket.onMessage(({topic, event}) => { if (topic === "phoenix" && event === "phx_reply") seen.heartbeat_replies++; });
socket.connect();

try {
  const room = socket.channel("room:1", {});
  const broadcast = new Promise(resolve => room.on("shout", resolve));
  seen.join = await outcome(room.join());
  room.push("shout", {message: "hello from phoenix.js"});  // the room answers with a broadcast, no reply
  seen.broadcast = await Promise.race([broadcast, new Promise(r => setTimeout(() => r(null), 2000))]);

  const before = seen.heartbeat_replies;
  await until(() => seen.heartbeat_replies >= before + ROUNDS, `${ROUNDS} heartbeat replies`);
  seen.connected_after_heartbeats = socket.isConnected();

  seen.refused = await outcome(socket.channel("nothing:here", {}).join());
} catch (error) {
  finish(1, String(error));
}

seen.closes_before_disconnect = [...seen.closes];
const ok = seen.join.status === "ok"
  && seen.broadcast && seen.broadcast.message === "hello from phoenix.js"
  && seen.connected_after_heartbeats && seen.opens === 1 && seen.closes_before_disconnect.length === 0 && seen.errors === 0
  && seen.refused.status === "error" && seen.refused.response.reason === "unmatched topic";
socket.disconnect(() => finish(ok ? 0 : 1, ok ? undefined : "a step did not go as expected"));
