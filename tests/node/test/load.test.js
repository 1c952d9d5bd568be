// Fan-out under concurrency: many clients in one room, all sending messages to the room at the same
// time. Every client must receive every message exactly once, and each sender's messages in order.
//
// Each sender keeps at most `window` of its own messages in flight (it sends the next one when one of
// its own comes back through the room). Without that, the single client process falls seconds behind
// the fan-out, its pongs queue behind thousands of messages, and the server rightly drops the
// connections for missing the 2 s ping timeout: a test of the client's CPU, not of the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, until } from "../lib/client.js";

const server = useServer();

async function roomStorm(t, { clients: clientCount, messages: perClient, window, transports, timeoutMs }) {
  const sockets = Array.from({ length: clientCount }, () => connect(server.url, "/", { transports }));
  t.after(() => closeAll(sockets));
  await Promise.all(sockets.map((socket) => hello(socket, 15000)));
  await Promise.all(sockets.map((socket) => socket.timeout(10000).emitWithAck("join", "everyone")));

  const expectedPerClient = clientCount * perClient;
  // Per receiver: the next sequence number expected from each sender, and any anomaly seen.
  const disconnects = [];
  const receivers = sockets.map((socket, self) => {
    const state = { received: 0, nextSeq: new Array(clientCount).fill(0), anomalies: [] };
    socket.on("disconnect", (reason) => disconnects.push(`client ${self}: ${reason}`));
    socket.on("room-msg", (message) => {
      state.received++;
      const { from, seq } = message;
      if (from === self && seq + window < perClient) {
        socket.emit("to-room", "everyone", { from, seq: seq + window });
      }
      if (state.nextSeq[from] !== seq) {
        if (state.anomalies.length < 5) {
          state.anomalies.push(`from ${from}: got seq ${seq}, expected ${state.nextSeq[from]}`);
        }
      } else {
        state.nextSeq[from]++;
      }
    });
    return state;
  });

  const started = Date.now();
  sockets.forEach((socket, from) => {
    for (let seq = 0; seq < Math.min(window, perClient); seq++) socket.emit("to-room", "everyone", { from, seq });
  });
  const total = () => receivers.reduce((sum, r) => sum + r.received, 0);
  await until(
    () => total() >= expectedPerClient * clientCount || disconnects.length > 0,
    timeoutMs,
    () => `(received ${total()} of ${expectedPerClient * clientCount} deliveries)`,
  );
  assert.deepEqual(disconnects.slice(0, 5), [], `${disconnects.length} clients disconnected during the run`);
  const elapsed = Date.now() - started;
  // Give duplicates a moment to show up before counting.
  await new Promise((resolve) => setTimeout(resolve, 200));

  receivers.forEach((state, index) => {
    assert.deepEqual(state.anomalies, [], `client ${index}: loss, duplicate or reordering`);
    assert.equal(state.received, expectedPerClient, `client ${index}: message count`);
    assert.ok(
      state.nextSeq.every((next) => next === perClient),
      `client ${index}: missing messages from some senders`,
    );
  });
  return { deliveries: total(), elapsed };
}

test("websocket: 200 clients x 20 messages to a room of all, no loss, no duplicates", { timeout: 120000 }, async (t) => {
  const { deliveries, elapsed } = await roomStorm(t, {
    clients: 200,
    messages: 20,
    window: 1,
    transports: ["websocket"],
    timeoutMs: 90000,
  });
  t.diagnostic(`${deliveries} deliveries in ${elapsed} ms`);
  assert.equal(deliveries, 200 * 200 * 20);
});

test("polling: 40 clients x 10 messages to a room of all, no loss, no duplicates", { timeout: 60000 }, async (t) => {
  const { deliveries, elapsed } = await roomStorm(t, {
    clients: 40,
    messages: 10,
    window: 1,
    transports: ["polling"],
    timeoutMs: 45000,
  });
  t.diagnostic(`${deliveries} deliveries in ${elapsed} ms`);
  assert.equal(deliveries, 40 * 40 * 10);
});
