// Rooms: join/leave (acked with the socket's sorted room list), emitting to a room, and broadcasts that
// exclude the sender. Absence is checked with an ordering barrier rather than a sleep: the server handles
// one socket's events in order and each connection delivers in order, so a later marker arriving first
// proves an earlier message was never sent to that client.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { bytes, closeAll, connect, hello, next, record, until } from "../lib/client.js";

const server = useServer();

async function trio(t, transports) {
  const sockets = ["a", "b", "c"].map(() => connect(server.url, "/", { transports }));
  t.after(() => closeAll(sockets));
  await Promise.all(sockets.map((socket) => hello(socket)));
  return sockets;
}

const join = (socket, room) => socket.timeout(5000).emitWithAck("join", room);
const leave = (socket, room) => socket.timeout(5000).emitWithAck("leave", room);

for (const transports of [["polling"], ["websocket"]]) {
  const name = transports[0];

  test(`${name}: join and leave answer with the sorted room list`, { timeout: 10000 }, async (t) => {
    const [a] = await trio(t, transports);
    assert.deepEqual(await join(a, "zeta"), [a.id, "zeta"].sort());
    assert.deepEqual(await join(a, "alpha"), [a.id, "alpha", "zeta"].sort());
    assert.deepEqual(await join(a, "alpha"), [a.id, "alpha", "zeta"].sort(), "joining twice is a no-op");
    assert.deepEqual(await leave(a, "zeta"), [a.id, "alpha"].sort());
    assert.deepEqual(await leave(a, "never-joined"), [a.id, "alpha"].sort(), "leaving a room not joined is a no-op");
  });

  test(`${name}: to-room reaches members only (sender included when a member)`, { timeout: 10000 }, async (t) => {
    const [a, b, c] = await trio(t, transports);
    await Promise.all([join(a, "r1"), join(b, "r1"), join(a, "all"), join(b, "all"), join(c, "all")]);
    const got = [a, b, c].map((socket) => record(socket, "room-msg"));

    a.emit("to-room", "r1", "hello r1", { n: 1 });
    a.emit("to-room", "all", "marker");
    await until(() => got.every((calls) => calls.some(([m]) => m === "marker")), 5000);
    assert.deepEqual(got[0], [["hello r1", { n: 1 }], ["marker"]], "sender is in r1");
    assert.deepEqual(got[1], [["hello r1", { n: 1 }], ["marker"]]);
    assert.deepEqual(got[2], [["marker"]], "non-member got nothing for r1");

    // A non-member may emit to a room.
    c.emit("to-room", "r1", "from outside");
    c.emit("to-room", "all", "marker 2");
    await until(() => got.every((calls) => calls.some(([m]) => m === "marker 2")), 5000);
    assert.deepEqual(got[0].slice(2), [["from outside"], ["marker 2"]]);
    assert.deepEqual(got[1].slice(2), [["from outside"], ["marker 2"]]);
    assert.deepEqual(got[2].slice(1), [["marker 2"]]);

    // After leaving, a socket no longer receives the room's messages.
    await leave(a, "r1");
    b.emit("to-room", "r1", "after leave");
    b.emit("to-room", "all", "marker 3");
    await until(() => got.every((calls) => calls.some(([m]) => m === "marker 3")), 5000);
    assert.deepEqual(got[0].slice(4), [["marker 3"]]);
    assert.deepEqual(got[1].slice(4), [["after leave"], ["marker 3"]]);
  });

  test(`${name}: a socket's own id is a room`, { timeout: 10000 }, async (t) => {
    const [a, b] = await trio(t, transports);
    const got = record(b, "room-msg");
    a.emit("to-room", b.id, "direct", Buffer.from([1, 2]));
    const [text, blob] = await new Promise((resolve) => b.once("room-msg", (...args) => resolve(args)));
    assert.equal(text, "direct");
    assert.deepEqual(bytes(blob), [1, 2]);
    assert.equal(got.length, 1);
  });

  test(`${name}: broadcast reaches every other client, never the sender`, { timeout: 10000 }, async (t) => {
    const [a, b, c] = await trio(t, transports);
    // A client of another namespace on its own connection must not receive "/" broadcasts.
    const other = connect(server.url, "/second", { transports });
    t.after(() => closeAll(other));
    await hello(other);
    const got = [a, b, c, other].map((socket) => record(socket, "broadcast"));

    a.emit("broadcast", "from a", [1, 2]);
    a.emit("echo", "barrier");
    assert.equal(await next(a, "echo"), "barrier");
    await until(() => got[1].length >= 1 && got[2].length >= 1, 5000);
    assert.deepEqual(got[0], [], "the sender is excluded");
    assert.deepEqual(got[1], [["from a", [1, 2]]]);
    assert.deepEqual(got[2], [["from a", [1, 2]]]);

    // Barrier for the other namespace: it does receive its own echo, and no broadcast before it.
    other.emit("echo", "barrier");
    assert.equal(await next(other, "echo"), "barrier");
    assert.deepEqual(got[3], []);
  });
}
