// Broadcast with acknowledgements where one client never answers: the server reports the timeout with
// the answers it did get. Its own file (own server) so no other test's clients are connected to "/".
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, record } from "../lib/client.js";

const server = useServer();

test("broadcast ack: a silent client makes it time out with the partial answers", { timeout: 15000 }, async (t) => {
  const talkers = ["t0", "t1", "t2"].map((name, index) => ({
    name,
    socket: connect(server.url, "/", { transports: [index === 1 ? "polling" : "websocket"] }),
  }));
  const silent = connect(server.url, "/", { transports: ["websocket"] });
  t.after(() => closeAll(silent, talkers.map((c) => c.socket)));
  await Promise.all([silent, ...talkers.map((c) => c.socket)].map((socket) => hello(socket)));

  for (const { name, socket } of talkers) socket.on("ping-all", (payload, ack) => ack(`${name}:${payload}`));
  const silentPings = record(silent, "ping-all");

  const started = Date.now();
  const result = await talkers[0].socket.timeout(5000).emitWithAck("broadcast-ack", "p");
  const elapsed = Date.now() - started;
  assert.equal(result.timedOut, true);
  assert.deepEqual([...result.responses].sort(), ["t0:p", "t1:p", "t2:p"]);
  assert.ok(elapsed >= 800, `timed out after ${elapsed} ms, expected about 1000`);
  assert.equal(silentPings.length, 1, "the silent client did receive the event");
});
