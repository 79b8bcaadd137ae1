// The official Phoenix client's Presence (npm `phoenix`, `ws` as its transport) against gossipy
// nodes, for as long as the test runs it.
//
//   node presence_client.mjs '[{"name": "ada", "host": "127.0.0.2", "port": 4000}, ...]'
//
// Each entry is one client: its own socket to that node, joined to room:1 with {name}, and a
// `new Presence(channel)`. On every onSync it prints one JSON line, {"name", "list"} with the
// list as {key: number of metas}, plus the joins and leaves (onJoin/onLeave) since the last line.
// Sockets reconnect and channels rejoin after 200 ms, as a browser's would (sooner, for the
// test's sake). Commands, one JSON line each on stdin: {"leave": name} leaves the room.
import {Presence, Socket} from "phoenix";
import WebSocket from "ws";
import readline from "node:readline";

const TOPIC = "room:1";
const clients = new Map();

for (const {name, host, port} of JSON.parse(process.argv[2])) {
  const socket = new Socket(`ws://${host}:${port}/socket`, {
    transport: WebSocket,
    heartbeatIntervalMs: 1000,
    timeout: 2000,
    reconnectAfterMs: () => 200,
    rejoinAfterMs: () => 200,
  });
  socket.connect();
  const channel = socket.channel(TOPIC, {name});
  const presence = new Presence(channel);
  const changes = {joins: [], leaves: []};
  presence.onJoin((key, current, joined) => changes.joins.push(key));
  presence.onLeave((key, current, left) => changes.leaves.push(key));
  presence.onSync(() => {
    const list = Object.fromEntries(presence.list((key, {metas}) => [key, metas.length]));
    process.stdout.write(JSON.stringify({name, list, joins: changes.joins, leaves: changes.leaves}) + "\n");
    changes.joins = [];
    changes.leaves = [];
  });
  channel.join();
  clients.set(name, {socket, channel});
}

readline.createInterface({input: process.stdin}).on("line", line => {
  const command = JSON.parse(line);
  if (command.leave) clients.get(command.leave).channel.leave();
});
