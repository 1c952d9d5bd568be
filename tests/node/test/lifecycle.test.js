// Connection lifecycle: the client's automatic reconnection after the server closes the Engine.IO
// connection, and a server-side namespace disconnect (which must not trigger a reconnection).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { Manager, closeAll, connect, hello, next, once, record, sleep, transportOf, until } from "../lib/client.js";

const server = useServer();

const FAST_RECONNECT = {
  reconnection: true,
  reconnectionDelay: 100,
  reconnectionDelayMax: 200,
  randomizationFactor: 0,
};

for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
  const name = transports.join("+");

  test(`${name}: close-conn -> "transport close", automatic reconnection with a new socket id`, { timeout: 15000 }, async (t) => {
    const auth = { token: "good", user: "reconnecting" };
    const socket = connect(server.url, "/", { transports, auth, ...FAST_RECONNECT });
    t.after(() => closeAll(socket));
    const first = await hello(socket);
    const firstId = socket.id;
    const firstEngineId = socket.io.engine.id;
    assert.equal(first.id, firstId);
    if (transports.length > 1) {
      // Let the upgrade finish so the close arrives over the websocket.
      await until(() => transportOf(socket) === "websocket", 5000, () => "(no upgrade)");
    }

    const reconnects = record(socket.io, "reconnect");
    const disconnected = once(socket, "disconnect");
    socket.emit("close-conn");
    const [reason] = await disconnected;
    assert.equal(reason, "transport close");
    assert.equal(socket.connected, false);
    assert.equal(socket.active, true, "the client keeps trying after a transport close");

    const second = await hello(socket, 8000);
    assert.equal(socket.connected, true);
    assert.notEqual(socket.id, firstId, "a new connection gets a new socket id");
    assert.notEqual(socket.io.engine.id, firstEngineId, "and a new Engine.IO session");
    assert.equal(second.id, socket.id);
    assert.deepEqual(second.auth, auth, "the auth payload is sent again on reconnection");
    assert.equal(reconnects.length, 1);

    socket.emit("echo", "after reconnect");
    assert.equal(await next(socket, "echo"), "after reconnect");
  });

  test(`${name}: disconnect-me -> "io server disconnect" and no reconnection`, { timeout: 15000 }, async (t) => {
    const socket = connect(server.url, "/", { transports, ...FAST_RECONNECT });
    t.after(() => closeAll(socket));
    await hello(socket);
    const attempts = record(socket.io, "reconnect_attempt");
    const connects = record(socket, "connect");
    const disconnected = once(socket, "disconnect");
    socket.emit("disconnect-me");
    const [reason] = await disconnected;
    assert.equal(reason, "io server disconnect");
    await sleep(800);
    assert.equal(socket.connected, false);
    assert.equal(socket.active, false, "a server-side disconnect is final for the client");
    assert.deepEqual(attempts, []);
    assert.deepEqual(connects, []);

    // An explicit connect() is allowed again and gives a fresh socket.
    const oldId = socket.id;
    const greeting = hello(socket);
    socket.connect();
    assert.equal((await greeting).id, socket.id);
    assert.notEqual(socket.id, oldId);
  });
}

for (const transports of [["polling"], ["websocket"]]) {
  const name = transports[0];

  test(`${name}: events queued before disconnect-me / close-conn arrive before the disconnect`, { timeout: 15000 }, async (t) => {
    for (const [request, expectedReason] of [
      ["disconnect-me", "io server disconnect"],
      ["close-conn", "transport close"],
    ]) {
      const socket = connect(server.url, "/", { transports });
      t.after(() => closeAll(socket));
      await hello(socket);
      const log = [];
      socket.on("echo", (i) => log.push(i));
      socket.on("binary", () => log.push("binary"));
      const disconnected = new Promise((resolve) =>
        socket.on("disconnect", (reason) => {
          log.push(`disconnect: ${reason}`);
          resolve();
        }),
      );
      for (let i = 0; i < 20; i++) socket.emit("echo", i);
      socket.emit("binary");
      socket.emit(request);
      await disconnected;
      assert.deepEqual(
        log,
        [...Array.from({ length: 20 }, (_, i) => i), "binary", `disconnect: ${expectedReason}`],
        `${request}: everything the server emitted before it, then the disconnect`,
      );
      closeAll(socket);
    }
  });

  test(`${name}: unknown events are ignored; the connection stays usable`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const disconnects = record(socket, "disconnect");
    let acked = false;
    socket.emit("no-such-event", { x: 1 });
    socket.emit("no-such-event-with-ack", "y", () => (acked = true));
    socket.emit("echo", "after unknown events");
    assert.equal(await next(socket, "echo"), "after unknown events");
    await sleep(200);
    assert.equal(acked, false, "nobody handled the event, so nobody acknowledged it");
    assert.deepEqual(disconnects, []);
  });
}

test("disconnect-me on \"/\" leaves \"/second\" connected on the same Engine.IO session", { timeout: 10000 }, async (t) => {
  const manager = new Manager(server.url, { transports: ["websocket"], forceNew: true, ...FAST_RECONNECT });
  const root = manager.socket("/");
  const second = manager.socket("/second");
  t.after(() => closeAll(root, second));
  await Promise.all([hello(root), hello(second)]);
  const engineId = manager.engine.id;
  const secondDisconnects = record(second, "disconnect");
  const disconnected = once(root, "disconnect");
  root.emit("disconnect-me");
  assert.deepEqual(await disconnected, ["io server disconnect", undefined]);
  second.emit("echo", "unaffected");
  assert.equal(await next(second, "echo"), "unaffected");
  assert.equal(manager.engine.id, engineId);
  assert.deepEqual(secondDisconnects, []);
});

test("close-conn drops every namespace of the connection; all of them reconnect", { timeout: 15000 }, async (t) => {
  const manager = new Manager(server.url, { transports: ["websocket"], forceNew: true, ...FAST_RECONNECT });
  const root = manager.socket("/");
  const second = manager.socket("/second");
  t.after(() => closeAll(root, second));
  await Promise.all([hello(root), hello(second)]);
  const ids = [root.id, second.id];
  const reasons = Promise.all([next(root, "disconnect"), next(second, "disconnect")]);
  const rehello = reasons.then(() => Promise.all([hello(root, 8000), hello(second, 8000)]));
  root.emit("close-conn");
  assert.deepEqual(await reasons, ["transport close", "transport close"]);
  const [rootHello, secondHello] = await rehello;
  assert.equal(rootHello.nsp, "/");
  assert.equal(secondHello.nsp, "/second");
  assert.notEqual(root.id, ids[0]);
  assert.notEqual(second.id, ids[1]);
  assert.equal(root.io.engine.id, second.io.engine.id);
});
