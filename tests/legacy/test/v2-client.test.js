// The official Socket.IO v2 client (socket.io-client@2.5.0: Engine.IO v3, Socket.IO protocol v4)
// against Switchyard with allow_eio3: over long-polling, over WebSocket, and with the upgrade between
// them: connection, events, acks both ways, binary, namespaces (the query standing for auth), refusals,
// rooms, and the client-driven heartbeat. Under Node this client has no XHR2 (its XMLHttpRequest has no
// responseType), so its polling asks for base64 binary (`b64=1`); the XHR2 binary payload of a browser
// v2 client is covered by the engine's wire tests (crates/engine/tests/engine_io/eio3.rs).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { ask, bytes, closeAll, hello, next, once, record, sleep, until, v2 } from "../lib/clients.js";

const server = useServer();

const variants = [
  { name: "polling", options: { transports: ["polling"] } },
  { name: "websocket", options: { transports: ["websocket"] } },
];

for (const { name, options } of variants) {
  test(`${name}: connects to / without a CONNECT of its own; ids are the Engine.IO session's`, async (t) => {
    const socket = v2(server.url, "/", { ...options, query: { who: "v2" } });
    t.after(() => closeAll(socket));
    const [greeting] = await Promise.all([hello(socket), once(socket, "connect")]);
    assert.equal(socket.connected, true);
    assert.equal(greeting.nsp, "/");
    assert.equal(greeting.id, socket.id, "socket.id as the v2 client computes it");
    assert.equal(socket.id, socket.io.engine.id);
    assert.deepEqual(greeting.auth, {});
    assert.equal(greeting.query.who, "v2");
  });

  test(`${name}: events and acks both ways`, async (t) => {
    const socket = v2(server.url, "/", options);
    t.after(() => closeAll(socket));
    await hello(socket);
    socket.emit("echo", "text", 42, { nested: [true, null, "ü€😀"] });
    assert.deepEqual(await once(socket, "echo"), ["text", 42, { nested: [true, null, "ü€😀"] }]);
    assert.deepEqual(await ask(socket, "echo-ack", "a", { b: 1 }), ["a", { b: 1 }]);
    // The server asks, the client answers through its ack.
    socket.on("ask", (question, answer) => answer(`re: ${question}`));
    socket.emit("server-ack", "q1");
    assert.deepEqual(await once(socket, "server-ack-result"), ["re: q1"]);
  });

  test(`${name}: binary events and acks`, async (t) => {
    const socket = v2(server.url, "/", options);
    t.after(() => closeAll(socket));
    await hello(socket);
    socket.emit("binary");
    const [first, nested] = await once(socket, "binary");
    assert.deepEqual(bytes(first), [1, 2, 3]);
    assert.deepEqual(bytes(nested.nested), [4, 5]);
    assert.deepEqual(bytes(nested.list[0]), [6]);
    const payload = Buffer.from([0, 1, 254, 255]);
    socket.emit("echo", payload, { inner: Buffer.from("hé") }, "after");
    const [data, object, after] = await once(socket, "echo");
    assert.deepEqual(bytes(data), [0, 1, 254, 255]);
    assert.equal(Buffer.from(bytes(object.inner)).toString(), "hé");
    assert.equal(after, "after");
    const [acked] = await ask(socket, "echo-ack", Buffer.from([9, 8, 7]));
    assert.deepEqual(bytes(acked), [9, 8, 7]);
    socket.on("ask", (_question, answer) => answer(Buffer.from([5, 5])));
    socket.emit("server-ack", "bin");
    assert.deepEqual(bytes(await next(socket, "server-ack-result")), [5, 5]);
  });

  test(`${name}: namespaces, the query as auth, and refusals`, async (t) => {
    const root = v2(server.url, "/", options);
    const second = v2(server.url, "/second", { ...options, query: { token: "abc" } });
    t.after(() => closeAll(root, second));
    const [, greeting] = await Promise.all([hello(root), hello(second)]);
    assert.equal(greeting.nsp, "/second");
    assert.deepEqual(greeting.auth, { token: "abc" });
    assert.equal(greeting.id, second.io.engine.id);
    second.emit("echo", "on second");
    assert.deepEqual(await once(second, "echo"), ["on second"]);
    // Middleware refusal: the v2 client gets "error" with the error's data.
    const refused = v2(server.url, "/private", options);
    t.after(() => closeAll(refused));
    assert.deepEqual(await next(refused, "error"), { code: 403 });
    const unknown = v2(server.url, "/nowhere", options);
    t.after(() => closeAll(unknown));
    assert.deepEqual(await next(unknown, "error"), { message: "Invalid namespace" });
  });

  test(`${name}: rooms`, async (t) => {
    const sockets = [0, 1, 2].map(() => v2(server.url, "/", options));
    t.after(() => closeAll(sockets));
    await Promise.all(sockets.map((socket) => hello(socket)));
    const [a, b, c] = sockets;
    assert.deepEqual(await ask(a, "join", "r"), [[a.id, "r"].sort()]);
    await ask(b, "join", "r");
    const got = sockets.map((socket) => record(socket, "room-msg"));
    c.emit("to-room", "r", "to r", Buffer.from([1]));
    c.emit("to-room", a.id, "to a alone");
    await until(() => got[0].length === 2 && got[1].length === 1, 5000, () => JSON.stringify(got));
    assert.equal(got[0][0][0], "to r");
    assert.deepEqual(bytes(got[0][0][1]), [1]);
    assert.deepEqual(got[0][1], ["to a alone"]);
    assert.equal(got[1][0][0], "to r");
    b.emit("broadcast", "to all but b");
    const [text] = await Promise.all([next(a, "broadcast"), next(c, "broadcast")]);
    assert.equal(text, "to all but b");
    assert.equal(got[2].length, 0);
  });
}

test("polling then websocket: the upgrade keeps the session and its traffic", async (t) => {
  const socket = v2(server.url, "/", { transports: ["polling", "websocket"] });
  t.after(() => closeAll(socket));
  await hello(socket);
  const sid = socket.io.engine.id;
  await until(() => socket.io.engine.transport.name === "websocket", 5000);
  assert.equal(socket.io.engine.id, sid);
  socket.emit("echo", "after upgrade", Buffer.from([7]));
  const [text, data] = await once(socket, "echo");
  assert.equal(text, "after upgrade");
  assert.deepEqual(bytes(data), [7]);
});

test("heartbeat: the client pings, the server answers; the connection outlives the ping window", async (t) => {
  // The interop server: pingInterval 2000, pingTimeout 2000. Without client pings answered by pongs
  // the v2 client closes ("ping timeout") after 4 s; without the server accepting them it closes too.
  const sockets = [v2(server.url, "/", { transports: ["polling"] }), v2(server.url, "/", { transports: ["websocket"] })];
  t.after(() => closeAll(sockets));
  await Promise.all(sockets.map((socket) => hello(socket)));
  const pongs = sockets.map(() => 0);
  sockets.forEach((socket, i) => socket.on("pong", () => pongs[i]++));
  const disconnects = sockets.map((socket) => record(socket, "disconnect"));
  await sleep(5000);
  assert.deepEqual(disconnects, [[], []]);
  assert.ok(pongs.every((n) => n >= 2), `pongs: ${pongs}`);
  for (const socket of sockets) {
    socket.emit("echo", "still here");
    assert.deepEqual(await once(socket, "echo"), ["still here"]);
  }
});

test("server-side disconnect reaches the v2 client", async (t) => {
  const socket = v2(server.url, "/", { transports: ["websocket"] });
  t.after(() => closeAll(socket));
  await hello(socket);
  socket.emit("disconnect-me");
  assert.equal(await next(socket, "disconnect"), "io server disconnect");
});
