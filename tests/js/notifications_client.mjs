// One user of the notifications example (examples/notifications) with the official client.
//
//   node notifications_client.mjs URL TOPIC [TOKEN]
//
// Connects to URL (ws://host:port/socket) with the token as phoenix.js sends it (a `token`
// param), joins TOPIC and prints one JSON line per step: {"join": {status, response}}, then
// {"notification": payload} for each notification, until killed. Exits 1 if the join fails.
import {Socket} from "phoenix";
import WebSocket from "ws";

const [url, topic, token] = process.argv.slice(2);
const say = line => process.stdout.write(JSON.stringify(line) + "\n");

const socket = new Socket(url, {
  transport: WebSocket,
  params: token ? {token} : {},
  timeout: 5000,
  // one attempt: a refused connection or join is the answer, not something to retry
  reconnectAfterMs: () => 60000,
  rejoinAfterMs: () => 60000,
});
socket.onError(() => say({socket_error: true}));
socket.connect();

const channel = socket.channel(topic, {});
channel.on("notification", payload => say({notification: payload}));
channel.join()
  .receive("ok", response => say({join: {status: "ok", response}}))
  .receive("error", response => { say({join: {status: "error", response}}); process.exit(1); })
  .receive("timeout", () => { say({join: {status: "timeout"}}); process.exit(1); });
