// Fan-out under concurrency: many clients in one room, all sending messages to the room at the same
// time. Every client must receive every message exactly once, and each sender's messages in order.
//
// At most `inFlight` messages are on their way at any moment (a message is done when its sender gets
// it back through the room; then the next is sent, round-robin over the clients, so all of them keep
// sending). Unbounded, the whole storm is queued at once: the Node reference server then spends seconds
// per event-loop turn fanning out, its pings go out late, and the clients rightly drop with "ping
// timeout" (pingInterval and pingTimeout are 2 s): a test of the machine's CPU, not of the server.

import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, until } from "../lib/client.js";

const server = useServer();

async function roomStorm(t, { clients: clientCount, messages: perClient, inFlight, transports, timeoutMs }) {
  const sockets = Array.from({ length: clientCount }, () => connect(server.url, "/", { transports }));
  t.after(() => closeAll(sockets));
  await Promise.all(sockets.map((socket) => hello(socket, 15000)));
  await Promise.all(sockets.map((socket) => socket.timeout(10000).emitWithAck("join", "everyone")));

  const expectedPerClient = clientCount * perClient;
  // Per receiver: the next sequence number expected from each sender, and any anomaly seen.
  const disconnects = [];
  // Round-robin send order: round 0 of every client, then round 1, ... so each sender's messages leave in order.
  let nextSend = 0;
  const sendNext = () => {
    if (nextSend >= clientCount * perClient) return;
    const from = nextSend % clientCount;
    const seq = Math.floor(nextSend / clientCount);
    nextSend++;
    sockets[from].emit("to-room", "everyone", { from, seq });
  };
  const receivers = sockets.map((socket, self) => {
    const state = { received: 0, nextSeq: new Array(clientCount).fill(0), anomalies: [] };
    socket.on("disconnect", (reason) => disconnects.push(`client ${self}: ${reason}`));
    socket.on("room-msg", (message) => {
      state.received++;
      const { from, seq } = message;
      if (from === self) sendNext();
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
  for (let i = 0; i < inFlight; i++) sendNext();
  const total = () => receivers.reduce((sum, r) => sum + r.received, 0);
  // A lost message stalls the flow control, so "no progress for a while" fails fast with the figures.
  let lastTotal = -1;
  let lastProgress = Date.now();
  await until(
    () => {
      const now = total();
      if (now !== lastTotal) [lastTotal, lastProgress] = [now, Date.now()];
      return now >= expectedPerClient * clientCount || disconnects.length > 0 || Date.now() - lastProgress > 10000;
    },
    timeoutMs,
    () => `(received ${total()} of ${expectedPerClient * clientCount} deliveries)`,
  );
  assert.ok(
    Date.now() - lastProgress <= 10000,
    `no delivery for 10 s after ${total()} of ${expectedPerClient * clientCount}: messages were lost`,
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
    inFlight: 50,
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
    inFlight: 40,
    transports: ["polling"],
    timeoutMs: 45000,
  });
  t.diagnostic(`${deliveries} deliveries in ${elapsed} ms`);
  assert.equal(deliveries, 40 * 40 * 10);
});
