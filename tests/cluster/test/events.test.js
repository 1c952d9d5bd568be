// The built-in events across a cluster: `switchyard` nodes (the real binary) on one redis-server, the
// official client on each. `message`, `typing` and `signal` cross nodes; presence is cluster-wide;
// when a node is killed (SIGKILL: no goodbye), its users are announced gone once their entries expire
// (within 4/3 of presence.ttl_ms, set short here). Every wait is bounded.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import { io as ioClient } from "socket.io-client";
import { startRedis, eventually, freePort, stopAll, within, switchyardBin } from "../lib/cluster.js";

const TTL_MS = 900;

function httpStatus(url) {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      res.resume();
      res.on("end", () => resolve(res.statusCode));
    });
    req.on("error", () => resolve(0));
    req.setTimeout(2000, () => req.destroy());
  });
}

const nodes = [];

/** The `switchyard` binary on a free port, joined to the cluster through `url`; resolves once ready. */
async function startNode(url) {
  const port = await freePort();
  const args = ["--host", "127.0.0.1", "--port", String(port), "--redis-url", url];
  args.push("--set", `presence.ttl_ms=${TTL_MS}`, "--set", "server.chat_page=false");
  const child = spawn(switchyardBin, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
    stdio: ["ignore", "ignore", process.env.CLUSTER_SERVER_LOG ? "inherit" : "ignore"],
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const node = { port, url: `http://127.0.0.1:${port}`, child, exited };
  nodes.push(node);
  await eventually(`node ${port} to be ready`, async () => (await httpStatus(`${node.url}/readyz`)) === 200, 15000);
  return node;
}

const clients = [];

/** A client of `node` speaking as `user`. */
async function user(node, name) {
  const socket = ioClient(node.url, { forceNew: true, reconnection: false, transports: ["websocket"], auth: { user: name } });
  clients.push(socket);
  await within(
    5000,
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    `${name} to connect to node ${node.port}`,
  );
  return socket;
}

const call = (socket, ...args) => within(5000, socket.emitWithAck(...args), `${args[0]} ack`);
const next = (socket, event, ms = 5000) => within(ms, new Promise((resolve) => socket.once(event, resolve)), `"${event}"`);
/** The next `event` whose payload passes `accept`. */
function nextWhere(socket, event, accept, ms = 5000) {
  return within(
    ms,
    new Promise((resolve) => {
      const listener = (payload) => {
        if (!accept(payload)) return;
        socket.off(event, listener);
        resolve(payload);
      };
      socket.on(event, listener);
    }),
    `"${event}" matching`,
  );
}

describe("built-in events across two nodes", () => {
  let a;
  let b;
  let redis;

  before(async () => {
    redis = await startRedis();
    [a, b] = [await startNode(redis.url), await startNode(redis.url)];
  });

  after(async () => {
    for (const socket of clients) socket.disconnect();
    for (const node of nodes) if (node.child.exitCode === null) node.child.kill("SIGKILL");
    await Promise.all(nodes.map((n) => n.exited));
    await stopAll();
  });

  it("message, typing, presence and signal cross nodes", async () => {
    const alice = await user(a, "alice");
    const bob = await user(b, "bob");
    // alice hears her own arrival too; this waits for bob's.
    const aliceHearsBob = nextWhere(alice, "user-connected", (m) => m.user === "bob");
    assert.deepEqual(await call(alice, "join", "lobby"), { ok: true, room: "lobby" });
    assert.deepEqual(await call(bob, "join", "lobby"), { ok: true, room: "lobby" });
    // Presence is cluster-wide, and bob's arrival on node B is announced to alice on node A.
    assert.deepEqual(await aliceHearsBob, { room: "lobby", user: "bob" });
    assert.deepEqual(await call(alice, "presence", "lobby"), { ok: true, users: ["alice", "bob"] });
    assert.deepEqual(await call(bob, "presence", "lobby"), { ok: true, users: ["alice", "bob"] });

    // One message, every member on every node, sender included, with the same id.
    const onAlice = next(alice, "message");
    const onBob = next(bob, "message");
    const ack = await call(alice, "message", "lobby", { text: "across" });
    assert.equal(ack.ok, true);
    const expected = { id: ack.id, room: "lobby", user: "alice", data: { text: "across" }, ts: ack.ts };
    assert.deepEqual(await onAlice, expected);
    assert.deepEqual(await onBob, expected);

    const typing = next(bob, "typing");
    alice.emit("typing", "lobby");
    assert.deepEqual(await typing, { room: "lobby", user: "alice" });

    const signal = next(alice, "signal");
    assert.deepEqual(await call(bob, "signal", "alice", { type: "offer" }), { ok: true });
    assert.deepEqual(await signal, { from: "bob", data: { type: "offer" } });
    assert.deepEqual(await call(bob, "signal", "nobody", {}), { ok: false, error: "offline" });

    // A second socket of bob on node A: no second announcement; bob leaves only with his last socket.
    const connectedSeen = [];
    alice.on("user-connected", (m) => connectedSeen.push(m));
    const bob2 = await user(a, "bob");
    await call(bob2, "join", "lobby");
    const bobGone = next(alice, "user-disconnected");
    await call(bob, "leave", "lobby");
    assert.deepEqual(await call(alice, "presence", "lobby"), { ok: true, users: ["alice", "bob"] });
    bob2.disconnect();
    assert.deepEqual(await bobGone, { room: "lobby", user: "bob" });
    assert.deepEqual(connectedSeen, [], "bob's second socket was no news");
    assert.deepEqual(await call(alice, "presence", "lobby"), { ok: true, users: ["alice"] });
  });

  it("a killed node's users are announced gone once their entries expire", async () => {
    const c = await startNode(redis.url);
    const alice = await user(a, "alice-k");
    const bob = await user(b, "bob-k");
    const carol = await user(c, "carol-k");
    for (const socket of [alice, bob, carol]) await call(socket, "join", "kill-room");
    assert.deepEqual(await call(alice, "presence", "kill-room"), { ok: true, users: ["alice-k", "bob-k", "carol-k"] });

    const goneOnA = [];
    const goneOnB = [];
    alice.on("user-disconnected", (m) => goneOnA.push(m));
    bob.on("user-disconnected", (m) => goneOnB.push(m));
    const killedAt = Date.now();
    c.child.kill("SIGKILL");
    await within(3000, c.exited, "node C to die");
    // Bound: TTL after C's last refresh, plus one refresh period of a survivor (TTL / 3), plus slack.
    const bound = Math.ceil((TTL_MS * 4) / 3) + 1500;
    await eventually("carol announced gone on both survivors", () => goneOnA.length === 1 && goneOnB.length === 1, bound);
    const took = Date.now() - killedAt;
    console.log(`carol announced gone ${took} ms after the kill (ttl ${TTL_MS} ms, bound ${bound} ms)`);
    assert.deepEqual(goneOnA, [{ room: "kill-room", user: "carol-k" }]);
    assert.deepEqual(goneOnB, [{ room: "kill-room", user: "carol-k" }]);
    assert.ok(took >= TTL_MS - 400, `not before the entries could expire (${took} ms)`);
    assert.deepEqual(await call(bob, "presence", "kill-room"), { ok: true, users: ["alice-k", "bob-k"] });
    // Announced once: both survivors swept, only one reported.
    await new Promise((r) => setTimeout(r, TTL_MS));
    assert.equal(goneOnA.length, 1);
    assert.equal(goneOnB.length, 1);
  });
});
