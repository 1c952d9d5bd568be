// The built-in events across a cluster: `switchyard` nodes (the real binary) on one redis-server, the
// official client on each. `message`, `typing` and `signal` cross nodes; presence is cluster-wide;
// when a node is killed (SIGKILL: no goodbye), its users are announced gone once their entries expire
// (within 4/3 of presence.ttl_ms, set short here). Every wait is bounded.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { call, connectUser, eventually, startRedis, startSwitchyardBinary, stopAll, within } from "../lib/cluster.js";

const TTL_MS = 900;

const nodes = [];

/** The `switchyard` binary on a free port, joined to the cluster through `url`; resolves once ready. */
function startNode(url) {
  const args = ["--redis-url", url, "--set", `presence.ttl_ms=${TTL_MS}`, "--set", "server.chat_page=false"];
  return startSwitchyardBinary(args, { started: nodes });
}

const clients = [];

/** A client of `node` speaking as `name`. */
const user = (node, name) => connectUser(node, name, clients);

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
