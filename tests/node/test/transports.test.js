// Transports: HTTP long-polling only, WebSocket only, and polling upgraded to WebSocket while messages
// are in flight in both directions.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import {
  bytes,
  closeAll,
  connect,
  hello,
  next,
  pollingThenDelayedUpgrade,
  record,
  transportOf,
  until,
} from "../lib/client.js";

const server = useServer();

for (const transports of [["polling"], ["websocket"]]) {
  const name = transports[0];

  test(`${name} only: connects, says hello with auth and query, echoes`, { timeout: 15000 }, async (t) => {
    const auth = { token: "good", n: 7, nested: { list: [1, "two", null] } };
    const socket = connect(server.url, "/", {
      transports,
      auth,
      query: { room: "lobby", lang: "en" },
    });
    t.after(() => closeAll(socket));

    const greeting = await hello(socket);
    assert.equal(socket.connected, true);
    assert.equal(transportOf(socket), name);
    assert.equal(greeting.id, socket.id, "hello.id is the socket id the client got in CONNECT");
    assert.notEqual(socket.id, socket.io.engine.id, "socket id must differ from the Engine.IO sid");
    assert.equal(greeting.nsp, "/");
    assert.deepEqual(greeting.auth, auth);
    assert.deepEqual(greeting.query, { room: "lobby", lang: "en" });

    const payload = {
      text: "héllo wörld ✓ \u{1F680}",
      // The polling transport separates packets with \x1e; inside JSON it must stay escaped data.
      controls: "a\x1eb\x00c\n\"d\\",
      n: 3.5,
      ok: true,
      nothing: null,
      list: [1, [2, [3]]],
    };
    socket.emit("echo", payload, "second", 42);
    const echoed = await new Promise((resolve) => socket.once("echo", (...args) => resolve(args)));
    assert.deepEqual(echoed, [payload, "second", 42]);
    assert.equal(transportOf(socket), name, "a transports-restricted client must never switch");
  });

  test(`${name} only: 200 messages arrive in order exactly once`, { timeout: 15000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const echoes = record(socket, "echo");
    const count = 200;
    for (let i = 0; i < count; i++) socket.emit("echo", i);
    await until(() => echoes.length >= count, 10000, () => `(got ${echoes.length}/${count})`);
    assert.deepEqual(
      echoes.map(([i]) => i),
      Array.from({ length: count }, (_, i) => i),
    );
  });

  test(`${name} only: survives several heartbeats (pingInterval 2 s)`, { timeout: 15000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const id = socket.id;
    const disconnects = record(socket, "disconnect");
    let pings = 0;
    socket.io.engine.on("ping", () => pings++);
    await until(() => pings >= 2, 8000, () => `(got ${pings} pings)`);
    socket.emit("echo", "still here");
    assert.equal(await next(socket, "echo"), "still here");
    assert.deepEqual(disconnects, []);
    assert.equal(socket.id, id);
  });
}

test("default transports: upgrades to websocket; 50 emits right after connect arrive in order", { timeout: 20000 }, async (t) => {
  const socket = connect(server.url, "/", { transports: ["polling", "websocket"] });
  t.after(() => closeAll(socket));
  const echoes = record(socket, "echo");
  const sent = Array.from({ length: 50 }, (_, i) => `connect-${i}`);
  socket.on("connect", () => sent.forEach((message) => socket.emit("echo", message)));
  let upgradedTo = null;
  socket.io.on("open", () => socket.io.engine.on("upgrade", (transport) => (upgradedTo = transport.name)));

  await hello(socket);
  await until(() => echoes.length >= sent.length, 10000, () => `(got ${echoes.length}/${sent.length})`);
  await until(() => upgradedTo !== null, 10000, () => "(no upgrade happened)");
  assert.equal(upgradedTo, "websocket");
  assert.equal(transportOf(socket), "websocket");
  socket.emit("echo", "after-upgrade");
  await until(() => echoes.length > sent.length, 5000);
  assert.deepEqual(
    echoes.map(([message]) => message),
    [...sent, "after-upgrade"],
    "every message echoed in order, exactly once",
  );
});

test("upgrade while messages stream in both directions: in order, exactly once", { timeout: 20000 }, async (t) => {
  const socket = connect(server.url, "/", { transports: pollingThenDelayedUpgrade(300) });
  t.after(() => closeAll(socket));
  const received = [];
  socket.on("echo", (message) => received.push({ message, transport: transportOf(socket) }));
  const sent = [];
  const send = (phase, count) => {
    for (let i = 0; i < count; i++) {
      const message = `${phase}-${i}`;
      sent.push(message);
      socket.emit("echo", message);
    }
  };
  let connectTransport = null;
  let upgradingSeen = false;
  let upgradedTo = null;
  let stream = null;
  let streamed = 0;
  socket.on("connect", () => {
    connectTransport = transportOf(socket);
    send("connect", 50);
    // A steady trickle until shortly after the switch, so packets are queued on both sides when it happens.
    stream = setInterval(() => send(`stream${streamed++}`, 5), 5);
  });
  socket.io.on("open", () => {
    socket.io.engine.on("upgrading", () => {
      upgradingSeen = true;
      send("upgrading", 50);
    });
    socket.io.engine.on("upgrade", (transport) => {
      upgradedTo = transport.name;
      send("upgraded", 50);
      setTimeout(() => clearInterval(stream), 100);
    });
  });
  t.after(() => clearInterval(stream));

  await hello(socket);
  assert.equal(connectTransport, "polling");
  await until(() => upgradedTo !== null, 10000, () => "(no upgrade happened)");
  assert.equal(upgradingSeen, true);
  assert.equal(upgradedTo, "websocket");
  await new Promise((resolve) => setTimeout(resolve, 150));
  await until(() => received.length >= sent.length, 10000, () => `(got ${received.length}/${sent.length})`);
  assert.deepEqual(
    received.map(({ message }) => message),
    sent,
    "every message echoed in order, exactly once, across the upgrade",
  );
  assert.ok(received.some(({ transport }) => transport === "polling"), "some echoes came over polling");
  assert.ok(received.some(({ transport }) => transport === "websocket"), "some echoes came over websocket");
  assert.ok(sent.length > 200, `streamed ${sent.length} messages`);
  assert.equal(transportOf(socket), "websocket");
});

test("server binary events queued across the upgrade are not lost", { timeout: 20000 }, async (t) => {
  const socket = connect(server.url, "/", { transports: pollingThenDelayedUpgrade(200) });
  t.after(() => closeAll(socket));
  const received = [];
  socket.on("binary", (...args) => received.push({ kind: "binary", args }));
  socket.on("echo", (i) => received.push({ kind: "echo", i }));
  let asked = 0;
  let ticker = null;
  socket.on("connect", () => {
    ticker = setInterval(() => {
      if (asked >= 60) return clearInterval(ticker);
      socket.emit("binary");
      socket.emit("echo", asked++);
    }, 5);
  });
  t.after(() => clearInterval(ticker));
  await hello(socket);
  await until(() => transportOf(socket) === "websocket", 10000, () => "(no upgrade)");
  await until(() => received.length >= 120, 10000, () => `(got ${received.length}/120)`);
  assert.equal(received.length, 120);
  received.forEach((entry, index) => {
    if (index % 2 === 0) {
      assert.equal(entry.kind, "binary", `entry ${index} should be a binary event`);
      const [first, second] = entry.args;
      assert.deepEqual(bytes(first), [1, 2, 3]);
      assert.deepEqual(bytes(second.nested), [4, 5]);
      assert.deepEqual(bytes(second.list[0]), [6]);
    } else {
      assert.deepEqual(entry, { kind: "echo", i: (index - 1) / 2 });
    }
  });
});
