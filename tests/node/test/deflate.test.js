// WebSocket per-message compression (permessage-deflate) with the official client, against the
// interop server with INTEROP_DEFLATE=1 (engine.per_message_deflate on, threshold 1024 as in Node).
// The official client's `ws` offers the extension by default; what it reads off the TCP socket shows
// that large messages really travel compressed.
import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, next, once } from "../lib/client.js";

const server = useServer({ env: { INTEROP_DEFLATE: "1" } });

/** Asserts that `ws` negotiated permessage-deflate with the server's parameters. */
function assertNegotiated(ws) {
  assert.equal(ws.extensions, "permessage-deflate");
  const params = ws._extensions["permessage-deflate"].params;
  assert.equal(params.server_no_context_takeover, true, JSON.stringify(params));
  assert.equal(params.client_no_context_takeover, true, JSON.stringify(params));
}

// About 120 KB of chat-like JSON: compresses well, and is far over the threshold.
const BIG = Array.from({ length: 1500 }, (_, i) => ({ user: `user${i % 13}`, text: `message number ${i}` }));
const BIG_LEN = JSON.stringify(BIG).length;

/** The `ws` WebSocket under a connected official client. */
function wsOf(socket) {
  const ws = socket.io.engine.transport.ws;
  assert.ok(ws, "a WebSocket transport");
  return ws;
}

/** Bytes the client has read off its TCP connection so far. */
const bytesRead = (socket) => wsOf(socket)._socket.bytesRead;

test("the official client negotiates compression; large messages travel compressed both ways", { timeout: 15000 }, async (t) => {
  const socket = connect(server.url, "/", { transports: ["websocket"] });
  t.after(() => closeAll(socket));
  await hello(socket);
  assertNegotiated(wsOf(socket));

  const before = bytesRead(socket);
  const reply = once(socket, "echo");
  // The client compresses this (over its own 1024-byte threshold); the server inflates and echoes it.
  socket.emit("echo", BIG, "tail");
  const [echoed, tail] = await reply;
  assert.deepEqual(echoed, BIG);
  assert.equal(tail, "tail");
  const read = bytesRead(socket) - before;
  assert.ok(read < BIG_LEN / 4, `the echo took ${read} bytes on the wire for ${BIG_LEN} bytes of JSON`);

  // Small messages (under the threshold) still work, uncompressed.
  const small = once(socket, "echo");
  socket.emit("echo", "hi");
  assert.deepEqual(await small, ["hi"]);
});

test("a broadcast reaches compressing, non-compressing and polling clients intact", { timeout: 15000 }, async (t) => {
  const sender = connect(server.url, "/", { transports: ["websocket"] });
  const compressing = [1, 2, 3].map(() => connect(server.url, "/", { transports: ["websocket"] }));
  const plain = connect(server.url, "/", { transports: ["websocket"], perMessageDeflate: false });
  const polling = connect(server.url, "/", { transports: ["polling"] });
  const all = [sender, ...compressing, plain, polling];
  t.after(() => closeAll(all));
  await Promise.all(all.map((s) => hello(s)));
  assert.equal(wsOf(plain).extensions, "", "a client that does not offer compression gets none");

  const before = compressing.map(bytesRead);
  const plainBefore = bytesRead(plain);
  const received = [...compressing, plain, polling].map((s) => next(s, "broadcast"));
  sender.emit("broadcast", BIG);
  for (const payload of await Promise.all(received)) assert.deepEqual(payload, BIG);
  compressing.forEach((s, i) => {
    const read = bytesRead(s) - before[i];
    assert.ok(read < BIG_LEN / 4, `client ${i} read ${read} bytes for ${BIG_LEN} bytes of JSON`);
  });
  const plainRead = bytesRead(plain) - plainBefore;
  assert.ok(plainRead > BIG_LEN, `the uncompressed client read ${plainRead} bytes`);
});

test("a raw ws client sees the extension, and compressed small messages are accepted", { timeout: 15000 }, async (t) => {
  const url = `${server.url.replace("http", "ws")}/socket.io/?EIO=4&transport=websocket`;
  // threshold 0: the client compresses every message, even the 2-byte pong.
  const ws = new WebSocket(url, { perMessageDeflate: { threshold: 0 } });
  t.after(() => ws.terminate());
  const messages = [];
  const waiters = [];
  ws.on("message", (data) => {
    const text = data.toString();
    if (text === "2") return ws.send("3");
    const waiter = waiters.shift();
    if (waiter) waiter(text);
    else messages.push(text);
  });
  const nextMessage = () =>
    new Promise((resolve, reject) => {
      if (messages.length) return resolve(messages.shift());
      const timer = setTimeout(() => reject(new Error("no message within 5 s")), 5000);
      waiters.push((text) => {
        clearTimeout(timer);
        resolve(text);
      });
    });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  assertNegotiated(ws);
  assert.match(await nextMessage(), /^0\{"sid":/);
  ws.send("40");
  assert.match(await nextMessage(), /^40\{"sid":/);
  assert.match(await nextMessage(), /^42\["hello",/);
  const before = ws._socket.bytesRead;
  ws.send(`42${JSON.stringify(["echo", BIG])}`);
  const echoed = await nextMessage();
  assert.ok(echoed.startsWith("42"), echoed.slice(0, 40));
  assert.deepEqual(JSON.parse(echoed.slice(2)), ["echo", BIG]);
  assert.ok(ws._socket.bytesRead - before < BIG_LEN / 4);
});
