// The official Phoenix client (npm `phoenix`, `ws` as its transport) connecting with tokens.
//
//   node auth_client.mjs PORT '{"valid": T1, "expired": T2, "wrong_secret": T3}'
//
// Each token goes where phoenix.js puts connect params, `new Socket(url, {params: {token}})`,
// plus one connect with no token. With the valid token it joins room:lobby (the join's
// response, a welcome push, whoami's reply with the assigns, its own shout through
// handle_out) and tries room:secret, which the token's topics claim leaves out. Prints one
// JSON line of what it saw; exits 0 when the run finished (the test judges the values).
import {Socket} from "phoenix";
import WebSocket from "ws";

import {outcome, reporter} from "./steps.mjs";

const [port, tokensJson] = process.argv.slice(2);
const tokens = JSON.parse(tokensJson);
const seen = {};

const finish = reporter(seen);

function within(promise, ms = 3000) {
  return Promise.race([promise, new Promise(resolve => setTimeout(() => resolve(null), ms))]);
}

// Connects; resolves to [socket, "open"] or [socket, "refused"] (an error before any open).
function connect(params) {
  const socket = new Socket(`ws://127.0.0.1:${port}/socket`, {
    transport: WebSocket, params, timeout: 2000,
    // a reconnect or a rejoin would hide a refusal: make them too late to happen here
    reconnectAfterMs: () => 60000, rejoinAfterMs: () => 60000,
  });
  return new Promise(resolve => {
    socket.onOpen(() => resolve([socket, "open"]));
    socket.onError(() => resolve([socket, "refused"]));
    socket.connect();
  });
}

try {
  for (const [name, params] of [["missing", {}], ["expired", {token: tokens.expired}],
                                ["wrong_secret", {token: tokens.wrong_secret}]]) {
    const [socket, result] = await connect(params);
    seen[name] = result;
    socket.disconnect();
  }

  const [socket, result] = await connect({token: tokens.valid});
  seen.valid = result;
  const lobby = socket.channel("room:lobby", {});
  const welcome = new Promise(resolve => lobby.on("welcome", resolve));
  const shout = new Promise(resolve => lobby.on("shout", resolve));
  seen.join = await outcome(lobby.join());
  seen.welcome = await within(welcome);
  seen.whoami = await outcome(lobby.push("whoami", {}));
  lobby.push("shout", {message: "hi"});
  seen.shout = await within(shout);
  seen.outside = await outcome(socket.channel("room:secret", {}).join());
  socket.disconnect(() => finish(0));
} catch (error) {
  finish(1, String(error));
}
