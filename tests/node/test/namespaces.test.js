// Namespaces: several on one Engine.IO connection (Manager multiplexing), dynamic namespaces, and the
// connect errors (middleware rejections with data, unknown namespaces).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { Manager, closeAll, connect, hello, io, next, once, record, sleep, until } from "../lib/client.js";

const server = useServer();

/** Resolves with the error of the socket's next "connect_error"; fails if it connects instead. */
function connectError(socket, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no connect_error within ${ms} ms`)), ms);
    socket.once("connect", () => {
      clearTimeout(timer);
      reject(new Error(`${socket.nsp} connected but should have been refused`));
    });
    socket.once("connect_error", (err) => {
      clearTimeout(timer);
      resolve(err);
    });
  });
}

for (const transports of [["polling"], ["websocket"]]) {
  const name = transports[0];

  test(`${name}: "/" and "/second" share one Engine.IO connection`, { timeout: 10000 }, async (t) => {
    const manager = new Manager(server.url, { transports, reconnection: false, forceNew: true });
    const root = manager.socket("/", { auth: { who: "root" } });
    const second = manager.socket("/second", { auth: { who: "second" } });
    t.after(() => closeAll(root, second));
    const openings = record(manager, "open");

    const [rootHello, secondHello] = await Promise.all([hello(root), hello(second)]);
    assert.equal(root.io, second.io);
    assert.equal(root.io.engine.id, second.io.engine.id, "one engine session carries both namespaces");
    assert.equal(openings.length, 1, "the manager opened exactly one engine connection");
    assert.deepEqual(rootHello.auth, { who: "root" });
    assert.equal(rootHello.nsp, "/");
    assert.equal(rootHello.id, root.id);
    assert.deepEqual(secondHello, { id: second.id, nsp: "/second", auth: { who: "second" } });
    assert.notEqual(root.id, second.id, "each namespace gets its own socket id");

    // Events stay in their namespace.
    const rootEchoes = record(root, "echo");
    const secondEchoes = record(second, "echo");
    second.emit("echo", "for second");
    root.emit("echo", "for root");
    second.emit("echo", "second again");
    await until(() => rootEchoes.length >= 1 && secondEchoes.length >= 2, 5000);
    assert.deepEqual(rootEchoes, [["for root"]]);
    assert.deepEqual(secondEchoes, [["for second"], ["second again"]]);

    // Leaving one namespace keeps the other working on the same connection.
    const engineId = second.io.engine.id;
    root.disconnect();
    await sleep(100);
    second.emit("echo", "still here");
    assert.equal(await next(second, "echo"), "still here");
    assert.equal(second.io.engine.id, engineId);
    assert.equal(second.connected, true);
  });

  test(`${name}: dynamic namespaces /dyn-<digits>`, { timeout: 10000 }, async (t) => {
    const manager = new Manager(server.url, { transports, reconnection: false, forceNew: true });
    const dyn42 = manager.socket("/dyn-42", { auth: { n: 42 } });
    const dyn7 = manager.socket("/dyn-7");
    const notDyn = manager.socket("/dyn-abc");
    t.after(() => closeAll(dyn42, dyn7, notDyn));
    const refused = connectError(notDyn);
    const [hello42, hello7] = await Promise.all([hello(dyn42), hello(dyn7)]);
    assert.deepEqual(hello42, { id: dyn42.id, nsp: "/dyn-42", auth: { n: 42 } });
    assert.deepEqual(hello7, { id: dyn7.id, nsp: "/dyn-7", auth: {} });
    assert.equal(dyn42.io.engine.id, dyn7.io.engine.id);
    assert.equal((await refused).message, "Invalid namespace");
  });

  test(`${name}: middleware rejection on "/" carries message and data`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports, auth: { token: "bad" } });
    t.after(() => closeAll(socket));
    const helloCalls = record(socket, "hello");
    const err = await connectError(socket);
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(err.data, { reason: "bad token" });
    assert.equal(socket.connected, false);
    await sleep(100);
    assert.deepEqual(helloCalls, [], "no connection handler ran");
  });

  test(`${name}: "/private" always refuses with data; other namespaces on the connection unaffected`, { timeout: 10000 }, async (t) => {
    const manager = new Manager(server.url, { transports, reconnection: false, forceNew: true });
    const privateSocket = manager.socket("/private", { auth: { token: "good" } });
    const second = manager.socket("/second");
    t.after(() => closeAll(privateSocket, second));
    const [err, secondHello] = await Promise.all([connectError(privateSocket), hello(second)]);
    assert.equal(err.message, "forbidden");
    assert.deepEqual(err.data, { code: 403 });
    assert.equal(secondHello.nsp, "/second");
    second.emit("echo", "after refusal");
    assert.equal(await next(second, "echo"), "after refusal");
  });

  test(`${name}: a bad token is refused on "/" only; "/second" has no middleware`, { timeout: 10000 }, async (t) => {
    const manager = new Manager(server.url, { transports, reconnection: false, forceNew: true });
    const root = manager.socket("/", { auth: { token: "bad" } });
    const second = manager.socket("/second", { auth: { token: "bad" } });
    t.after(() => closeAll(root, second));
    const [err, secondHello] = await Promise.all([connectError(root), hello(second)]);
    assert.equal(err.message, "unauthorized");
    assert.deepEqual(secondHello.auth, { token: "bad" });
  });

  test(`${name}: unknown namespace -> "Invalid namespace"`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/does-not-exist", { transports });
    t.after(() => closeAll(socket));
    const err = await connectError(socket);
    assert.equal(err.message, "Invalid namespace");
    assert.equal(err.data, undefined);
  });

  test(`${name}: the client retries a refused namespace with new auth on the same connection`, { timeout: 10000 }, async (t) => {
    const manager = new Manager(server.url, { transports, reconnection: false, forceNew: true });
    const root = manager.socket("/", { auth: { token: "bad" } });
    const keeper = manager.socket("/second");
    t.after(() => closeAll(root, keeper));
    await Promise.all([hello(keeper), connectError(root)]);
    const engineId = manager.engine.id;
    root.auth = { token: "good" };
    const greeting = hello(root);
    root.connect();
    assert.deepEqual((await greeting).auth, { token: "good" });
    assert.equal(manager.engine.id, engineId, "the retry used the existing engine connection");
  });
}

test("a namespace connect does not wait for an unrelated refused one", { timeout: 10000 }, async (t) => {
  const manager = new Manager(server.url, { transports: ["websocket"], reconnection: false, forceNew: true });
  const sockets = ["/private", "/nope", "/second", "/dyn-1", "/"].map((nsp) => manager.socket(nsp));
  t.after(() => closeAll(sockets));
  const [privateErr, nopeErr, ...hellos] = await Promise.all([
    connectError(sockets[0]),
    connectError(sockets[1]),
    hello(sockets[2]),
    hello(sockets[3]),
    hello(sockets[4]),
  ]);
  assert.equal(privateErr.message, "forbidden");
  assert.equal(nopeErr.message, "Invalid namespace");
  assert.deepEqual(
    hellos.map((h) => h.nsp),
    ["/second", "/dyn-1", "/"],
  );
  const [echo] = await Promise.all([once(sockets[2], "echo"), sockets[2].emit("echo", 1)]);
  assert.deepEqual(echo, [1]);
});

// Once per file: io()'s Manager cache is keyed by host and port, which this file's server fixes.
test("io() without forceNew multiplexes namespaces of one URL", { timeout: 10000 }, async (t) => {
  const options = { reconnection: false };
  const root = io(server.url, options);
  const second = io(`${server.url}/second`, options);
  t.after(() => closeAll(root, second));
  await Promise.all([hello(root), hello(second)]);
  assert.equal(root.io, second.io, "same Manager");
  assert.equal(root.io.engine.id, second.io.engine.id);
});
