// Two Switchyard nodes over one redis-server, one admin connection to the first: sockets, rooms and
// server_stats of both nodes, live events from the other node, commands reaching sockets on the other
// node through the adapter, and a login session shared through Redis (socket.io-admin#<id>).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createClient } from "redis";
import { adminClient, connect, connected, eventually, startRedis, startSwitchyard, stopAll, within } from "../lib/harness.js";

let redis;
let a;
let b;

before(async () => {
  redis = await startRedis();
  const env = { SWITCHYARD_REDIS_URL: redis.url };
  a = await startSwitchyard({ ...env, SWITCHYARD_ADMIN_SERVER_ID: "node-a" });
  b = await startSwitchyard({ ...env, SWITCHYARD_ADMIN_SERVER_ID: "node-b" });
});

after(stopAll);

test("one admin connection sees both nodes: sockets, rooms, stats, live events, and its commands reach both", async () => {
  const onA = await connected(connect(a.url));
  const onB = await connected(connect(b.url));
  await within(5000, onB.emitWithAck("join", "room-b"), "join");

  const admin = adminClient(a.url);
  await connected(admin.socket);
  const [sockets] = await admin.next("all_sockets");
  const fromA = sockets.find((s) => s.id === onA.id);
  const fromB = sockets.find((s) => s.id === onB.id);
  assert.ok(fromA && fromB, "sockets of both nodes are listed");
  // The remote socket's clientId and transport come from the `_admin` data its node keeps.
  assert.equal(fromB.clientId, onB.io.engine.id.slice(0, 12));
  assert.equal(fromB.transport, "websocket");
  assert.deepEqual(fromB.data, {}, "`_admin` is not shown as data");
  assert.ok(fromB.rooms.includes(onB.id) && fromB.rooms.includes("room-b"), JSON.stringify(fromB.rooms));
  assert.equal(typeof fromB.handshake.issued, "number");
  assert.equal(sockets.filter((s) => s.id === onB.id).length, 1, "each socket once");

  // server_stats of both servers, through the adapter.
  await admin.next("server_stats", (s) => s.serverId === "node-a", 5000);
  const [statsB] = await admin.next("server_stats", (s) => s.serverId === "node-b", 5000);
  assert.ok(statsB.namespaces.find((n) => n.name === "/").socketsCount >= 1);

  // Live events from the other node.
  const late = await connected(connect(b.url));
  await admin.next("socket_connected", (s) => s.id === late.id, 5000);
  await within(5000, late.emitWithAck("join", "late-room"), "join");
  await admin.next("room_joined", (n, r, i) => r === "late-room" && i === late.id);
  late.emit("from-b", 1);
  await admin.next("event_received", (n, i, args) => i === late.id && args[0] === "from-b");

  // Commands reach the other node's sockets.
  admin.socket.emit("join", "/", "via-admin", onB.id);
  await admin.next("room_joined", (n, r, i) => r === "via-admin" && i === onB.id);
  const heard = new Promise((resolve) => onB.once("notice", resolve));
  admin.socket.emit("emit", "/", "via-admin", "notice", "hi");
  assert.equal(await within(5000, heard, "notice on node b"), "hi");
  admin.socket.emit("leave", "/", "via-admin", onB.id);
  await admin.next("room_left", (n, r, i) => r === "via-admin" && i === onB.id);
  const idB = onB.id; // socket.io-client forgets it on disconnect
  const reason = new Promise((resolve) => onB.once("disconnect", resolve));
  admin.socket.emit("_disconnect", "/", false, idB);
  assert.equal(await within(5000, reason, "disconnect on node b"), "io server disconnect");
  const [, , why] = await admin.next("socket_disconnected", (n, i) => i === idB);
  assert.equal(why, "server namespace disconnect");
  await admin.next("room_left", (n, r, i) => r === idB && i === idB);
  assert.ok(onA.connected);
  admin.socket.disconnect();
});

test("a login on one node is a session on the other, kept in Redis with an expiry", async () => {
  const admin = adminClient(a.url);
  const [sessionId] = await admin.next("session");
  const client = createClient({ url: redis.url });
  await client.connect();
  try {
    assert.equal(await client.get(`socket.io-admin#${sessionId}`), "1");
    const ttl = await client.ttl(`socket.io-admin#${sessionId}`);
    assert.ok(ttl > 86000 && ttl <= 86400, `ttl ${ttl}`);
  } finally {
    await client.quit();
  }
  const onB = adminClient(b.url, { sessionId });
  await connected(onB.socket);
  await onB.next("config");
  admin.socket.disconnect();
  onB.socket.disconnect();
});

test("an admin socket on one node makes the other node send its live events at once", async () => {
  const admin = adminClient(b.url);
  await admin.next("all_sockets");
  const c = await connected(connect(a.url));
  await admin.next("socket_connected", (s) => s.id === c.id, 5000);
  await eventually("the new socket in server_stats of node-a", () =>
    admin.of("server_stats").some(([s]) => s.serverId === "node-a" && s.namespaces.find((n) => n.name === "/")?.socketsCount >= 1),
  );
});
