// The MessagePack parser: the official client with `parser: require("socket.io-msgpack-parser")`
// against a server started with INTEROP_PARSER=msgpack (Switchyard's interop fixture with
// `socketio.parser = "msgpack"`, or the reference server with the same parser). Every packet is one
// binary message; buffers travel inline. Connect, events, binary, acks both ways, rooms, broadcasts,
// namespaces, CONNECT_ERROR, on both transports and across the upgrade.
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { useServer } from "../lib/server.js";
import { Manager, bytes, closeAll, connect, hello, next, once, record, until } from "../lib/client.js";

const require = createRequire(import.meta.url);
const parser = require("socket.io-msgpack-parser");

const server = useServer({ env: { INTEROP_PARSER: "msgpack" } });

const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

function mconnect(namespace, options = {}) {
  return connect(server.url, namespace, { parser, ...options });
}

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

for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
  const name = transports.join("+");

  test(`msgpack ${name}: connect with auth, events and acks both ways`, { timeout: 10000 }, async (t) => {
    const socket = mconnect("/", { transports, auth: { user: "mp", n: [1, 2] } });
    t.after(() => closeAll(socket));
    const greeting = await hello(socket);
    assert.equal(greeting.id, socket.id);
    assert.deepEqual(greeting.auth, { user: "mp", n: [1, 2] });

    const echoed = once(socket, "echo");
    socket.emit("echo", 1, "two", { three: [3, 3.5] }, null, true, "€😀", -7, 2 ** 40);
    assert.deepEqual(await echoed, [1, "two", { three: [3, 3.5] }, null, true, "€😀", -7, 2 ** 40]);

    // client -> server with ack
    assert.deepEqual(await socket.timeout(5000).emitWithAck("echo-ack", "a", { b: 1 }), "a");
    // server -> client with ack, relayed back
    socket.on("ask", (payload, ack) => ack({ got: payload }));
    const relayed = once(socket, "server-ack-result");
    socket.emit("server-ack", "question");
    assert.deepEqual(await relayed, [{ got: "question" }]);
  });

  test(`msgpack ${name}: binary inline both ways, in events and acks`, { timeout: 10000 }, async (t) => {
    const socket = mconnect("/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);

    const [first, second, ...rest] = await new Promise((resolve) => {
      socket.once("binary", (...args) => resolve(args));
      socket.emit("binary");
    });
    assert.deepEqual(rest, []);
    assert.deepEqual(bytes(first), [1, 2, 3]);
    assert.deepEqual(bytes(second.nested), [4, 5]);
    assert.deepEqual(bytes(second.list[0]), [6]);

    const large = Buffer.alloc(100 * 1024);
    for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
    const echoed = once(socket, "echo");
    socket.emit("echo", ALL_BYTES, { deep: [[Buffer.alloc(0)], "text"] }, large);
    const [all, nested, big] = await echoed;
    assert.deepEqual(bytes(all), [...ALL_BYTES]);
    assert.deepEqual(bytes(nested.deep[0][0]), []);
    assert.equal(nested.deep[1], "text");
    assert.equal(Buffer.compare(Buffer.from(bytes(big)), large), 0, "100 KiB buffer intact");

    const acked = await socket.timeout(5000).emitWithAck("echo-ack", Buffer.from([9, 8, 7]));
    assert.deepEqual(bytes(acked), [9, 8, 7]);
    socket.on("ask", (payload, ack) => ack({ got: payload, blob: Buffer.from([42, 0, 42]) }));
    const relayed = once(socket, "server-ack-result");
    socket.emit("server-ack", Buffer.from([5, 6]));
    const [result] = await relayed;
    assert.deepEqual(bytes(result.got), [5, 6]);
    assert.deepEqual(bytes(result.blob), [42, 0, 42]);
  });

  test(`msgpack ${name}: rooms and broadcasts`, { timeout: 10000 }, async (t) => {
    const sockets = ["a", "b", "c"].map(() => mconnect("/", { transports }));
    t.after(() => closeAll(sockets));
    await Promise.all(sockets.map((socket) => hello(socket)));
    const [a, b, c] = sockets;
    const join = (socket, room) => socket.timeout(5000).emitWithAck("join", room);
    assert.deepEqual(await join(a, "r1"), [a.id, "r1"].sort());
    await Promise.all([join(b, "r1"), join(a, "all"), join(b, "all"), join(c, "all")]);
    const got = sockets.map((socket) => record(socket, "room-msg"));
    a.emit("to-room", "r1", "hello r1", Buffer.from([7]));
    a.emit("to-room", "all", "marker");
    await until(() => got.every((calls) => calls.some((args) => args[0] === "marker")), 5000);
    for (const [i, calls] of got.entries()) {
      const inRoom = calls.filter((args) => args[0] === "hello r1");
      assert.equal(inRoom.length, i < 2 ? 1 : 0, `socket ${i}`);
      if (i < 2) assert.deepEqual(bytes(inRoom[0][1]), [7]);
    }
    // A broadcast reaches everyone but the sender.
    const broadcasts = sockets.map((socket) => record(socket, "broadcast"));
    a.emit("broadcast", { from: "a" });
    await until(() => broadcasts[1].length === 1 && broadcasts[2].length === 1, 5000);
    assert.deepEqual(broadcasts[1], [[{ from: "a" }]]);
    // Broadcast with acks: every client answers.
    for (const socket of sockets) socket.on("ping-all", (payload, ack) => ack(`${payload}-${socket.id}`));
    const answer = await a.timeout(5000).emitWithAck("broadcast-ack", "p");
    assert.equal(answer.timedOut, false);
    assert.deepEqual(answer.responses.sort(), sockets.map((s) => `p-${s.id}`).sort());
    assert.equal(broadcasts[0].length, 0, "the sender got no broadcast");
  });

  test(`msgpack ${name}: namespaces and CONNECT_ERROR`, { timeout: 10000 }, async (t) => {
    const manager = new Manager(server.url, { transports, parser, reconnection: false, forceNew: true });
    const root = manager.socket("/");
    const second = manager.socket("/second", { auth: { who: "second" } });
    const dynamic = manager.socket("/dyn-42");
    const privateNs = manager.socket("/private");
    const unknown = manager.socket("/nope");
    const refusedRoot = mconnect("/", { transports, auth: { token: "bad" } });
    t.after(() => closeAll(root, second, dynamic, privateNs, unknown, refusedRoot));
    const [forbidden, invalid, unauthorized] = [connectError(privateNs), connectError(unknown), connectError(refusedRoot)];
    const [, secondHello, dynHello] = await Promise.all([hello(root), hello(second), hello(dynamic)]);
    assert.equal(root.io.engine.id, second.io.engine.id, "one connection carries every namespace");
    assert.deepEqual(secondHello, { id: second.id, nsp: "/second", auth: { who: "second" } });
    assert.equal(dynHello.nsp, "/dyn-42");
    const err = await forbidden;
    assert.equal(err.message, "forbidden");
    assert.deepEqual(err.data, { code: 403 });
    assert.equal((await invalid).message, "Invalid namespace");
    const bad = await unauthorized;
    assert.equal(bad.message, "unauthorized");
    assert.deepEqual(bad.data, { reason: "bad token" });

    second.emit("echo", "in second");
    assert.equal(await next(second, "echo"), "in second");
    // The server disconnects "/" only; "/second" goes on.
    const gone = once(root, "disconnect");
    root.emit("disconnect-me");
    assert.equal((await gone)[0], "io server disconnect");
    second.emit("echo", "still here");
    assert.equal(await next(second, "echo"), "still here");
  });
}
