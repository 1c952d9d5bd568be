// Broadcast with acknowledgements: io.timeout(1000).emit("ping-all", payload, cb) collects one answer per
// connected client of "/". This file's server only ever sees the clients of its single test, so the
// expected set of answers is exact.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, sleep } from "../lib/client.js";

const server = useServer();

test("broadcast ack: every client (sender included, both transports) answers once", { timeout: 15000 }, async (t) => {
  const clients = ["polling", "websocket", "polling", "websocket", "websocket"].map((transport, index) => ({
    name: `c${index}`,
    socket: connect(server.url, "/", { transports: [transport] }),
  }));
  t.after(() => closeAll(clients.map((c) => c.socket)));
  await Promise.all(clients.map((c) => hello(c.socket)));

  const pings = new Map(clients.map((c) => [c.name, 0]));
  for (const { name, socket } of clients) {
    socket.on("ping-all", (payload, ack) => {
      pings.set(name, pings.get(name) + 1);
      ack({ name, payload });
    });
  }

  const result = await clients[0].socket.timeout(5000).emitWithAck("broadcast-ack", { round: 1 });
  assert.equal(result.timedOut, false);
  assert.deepEqual(
    [...result.responses].sort((a, b) => a.name.localeCompare(b.name)),
    clients.map((c) => ({ name: c.name, payload: { round: 1 } })),
  );
  assert.deepEqual([...pings.values()], [1, 1, 1, 1, 1]);

  // A second round reuses nothing stale from the first.
  const again = await clients[3].socket.timeout(5000).emitWithAck("broadcast-ack", "round-2");
  assert.equal(again.timedOut, false);
  assert.equal(again.responses.length, clients.length);
  assert.ok(again.responses.every((r) => r.payload === "round-2"));

  // A client that has left is no longer waited for.
  const leaving = clients.pop();
  leaving.socket.disconnect();
  await sleep(300);
  const third = await clients[1].socket.timeout(5000).emitWithAck("broadcast-ack", "round-3");
  assert.equal(third.timedOut, false, "the departed client must not be waited for");
  assert.deepEqual(
    third.responses.map((r) => r.name).sort(),
    clients.map((c) => c.name),
  );
});
