// Message history (docs/HISTORY.md) with the official client and the real `switchyard` binary:
// - one node with the embedded store: `message` acked once stored, the `history` event (since, limit,
//   more, forbidden, invalid), `GET /api/rooms/{room}/history`, and history surviving a restart of
//   the node on the same store.dir;
// - two nodes on one redis-server with the Redis Streams store: a message sent on one node is in the
//   history read on the other, in one order;
// - Redis killed: messages are refused with `history_unavailable` (never acked unstored); Redis
//   restarted: history resumes.
// Every wait is bounded.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import {
  call,
  connectUser,
  eventually,
  freePort,
  httpGet as request,
  sleep,
  startRedis,
  startSwitchyardBinary,
  stopAll,
  switchyardBin,
  within,
} from "../lib/cluster.js";

const API_KEY = "history-test-key-0123456789";

const api = (node, p) => request(`${node.url}${p}`, { authorization: `Bearer ${API_KEY}` });

const nodes = [];

/** The `switchyard` binary with history on; resolves once ready. */
function startNode({ redisUrl, dir, port, extra = [] }) {
  const args = [];
  if (redisUrl) args.push("--redis-url", redisUrl);
  args.push("--set", "server.chat_page=false", "--set", "history.enabled=true", "--set", `api.key=${API_KEY}`);
  args.push("--set", "limits.events_per_second=0");
  if (dir) args.push("--set", `store.dir=${dir}`);
  args.push(...extra);
  return startSwitchyardBinary(args, { port, started: nodes });
}

async function stopNode(node, signal = "SIGTERM") {
  if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill(signal);
  return within(10000, node.exited, `node ${node.port} to exit`);
}

const clients = [];

const user = (node, name) => connectUser(node, name, clients);
const texts = (reply) => reply.messages.map((m) => m.data.text);

after(async () => {
  for (const socket of clients) socket.close();
  for (const node of nodes) await stopNode(node, "SIGKILL").catch(() => {});
  await stopAll();
});

describe("history on one node with the embedded store", () => {
  let dir;
  before(() => {
    dir = mkdtempSync(path.join(os.tmpdir(), "switchyard-history-"));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  it("keeps every acked message, pages with since/limit/more, serves the API, survives a restart", async () => {
    let node = await startNode({ dir, extra: ["--set", "rooms.default_policy=allow"] });
    const alice = await user(node, "alice");
    assert.deepEqual(await call(alice, "join", "lobby"), { ok: true, room: "lobby" });
    const ids = [];
    for (let i = 0; i < 5; i++) {
      const ack = await call(alice, "message", "lobby", { text: `m${i}` });
      assert.equal(ack.ok, true, JSON.stringify(ack));
      ids.push(ack.id);
    }
    // The whole room, then pages.
    let reply = await call(alice, "history", "lobby");
    assert.equal(reply.ok, true);
    assert.deepEqual(texts(reply), ["m0", "m1", "m2", "m3", "m4"]);
    assert.equal(reply.more, false);
    assert.deepEqual(reply.messages[0], { id: ids[0], room: "lobby", user: "alice", data: { text: "m0" }, ts: reply.messages[0].ts });
    reply = await call(alice, "history", "lobby", { limit: 2 });
    assert.deepEqual(texts(reply), ["m0", "m1"]);
    assert.equal(reply.more, true);
    reply = await call(alice, "history", "lobby", { since: ids[1], limit: 2 });
    assert.deepEqual(texts(reply), ["m2", "m3"]);
    assert.equal(reply.more, true);
    reply = await call(alice, "history", "lobby", { since: ids[3] });
    assert.deepEqual(texts(reply), ["m4"]);
    assert.equal(reply.more, false);
    // Errors as the other events answer them.
    assert.deepEqual(await call(alice, "history", "lobby", { limit: 0 }), { ok: false, error: "invalid" });
    assert.deepEqual(await call(alice, "history", "lobby", { since: "not-an-id" }), { ok: false, error: "invalid" });
    assert.deepEqual(await call(alice, "history", 42), { ok: false, error: "invalid" });
    assert.deepEqual(await call(alice, "history", "user:bob"), { ok: false, error: "forbidden" });

    // The HTTP API answers the same.
    let res = await api(node, `/api/rooms/lobby/history?since=${ids[0]}&limit=3`);
    assert.equal(res.status, 200);
    assert.deepEqual(texts(res.json), ["m1", "m2", "m3"]);
    assert.equal(res.json.more, true);
    assert.equal(res.json.room, "lobby");
    res = await api(node, "/api/rooms/lobby/history?limit=0");
    assert.equal(res.status, 400);
    assert.equal(res.json.error, "invalid query");
    res = await request(`${node.url}/api/rooms/lobby/history`);
    assert.equal(res.status, 401);
    const doc = await request(`${node.url}/api/openapi.json`);
    assert.ok(doc.json.paths["/api/rooms/{room}/history"], "the endpoint is in the OpenAPI document");

    // Metrics count the appends.
    const metrics = await new Promise((resolve) => {
      http.get(`${node.url}/metrics`, (r) => {
        let b = "";
        r.on("data", (c) => (b += c));
        r.on("end", () => resolve(b));
      });
    });
    assert.match(metrics, /switchyard_history_appends_total\{result="ok"\} 5/);

    // Restart on the same directory: the history is still there, and new messages follow it.
    alice.close();
    await stopNode(node);
    node = await startNode({ dir, extra: ["--set", "rooms.default_policy=allow"] });
    const again = await user(node, "alice");
    reply = await call(again, "history", "lobby");
    assert.deepEqual(texts(reply), ["m0", "m1", "m2", "m3", "m4"]);
    await call(again, "join", "lobby");
    assert.equal((await call(again, "message", "lobby", { text: "m5" })).ok, true);
    reply = await call(again, "history", "lobby", { since: ids[4] });
    assert.deepEqual(texts(reply), ["m5"]);
    again.close();
    await stopNode(node);
  });

  it("refuses history where the socket may not join, and a second server on the same store.dir", async () => {
    const node = await startNode({ dir, extra: ["--set", "rooms.default_policy=deny"] });
    const bob = await user(node, "bob");
    assert.deepEqual(await call(bob, "history", "lobby"), { ok: false, error: "forbidden" });
    // The user's own room is theirs.
    assert.deepEqual(await call(bob, "history", "user:bob"), { ok: true, messages: [], more: false });
    // Another server cannot open the same store: it exits with an error instead of sharing the file.
    const port = await freePort();
    const child = spawn(switchyardBin, ["--host", "127.0.0.1", "--port", String(port), "--set", "history.enabled=true", "--set", `store.dir=${dir}`], {
      stdio: ["ignore", "ignore", "pipe"],
    });
    let stderr = "";
    child.stderr.on("data", (c) => (stderr += c));
    const { code } = await within(10000, new Promise((resolve) => child.once("exit", (code) => resolve({ code }))), "second server to exit");
    assert.notEqual(code, 0);
    assert.match(stderr, /open in another process/);
    bob.close();
    await stopNode(node);
  });
});

describe("history in Redis Streams across two nodes", () => {
  it("shares one order across nodes, refuses while Redis is down, resumes after", async () => {
    const redis = await startRedis();
    const a = await startNode({ redisUrl: redis.url });
    const b = await startNode({ redisUrl: redis.url });
    const alice = await user(a, "alice");
    const bob = await user(b, "bob");
    await call(alice, "join", "lobby");
    await call(bob, "join", "lobby");
    const first = await call(alice, "message", "lobby", { text: "from a" });
    assert.equal(first.ok, true);
    assert.equal((await call(bob, "message", "lobby", { text: "from b" })).ok, true);
    assert.equal((await call(alice, "message", "lobby", { text: "from a again" })).ok, true);
    for (const socket of [alice, bob]) {
      const reply = await call(socket, "history", "lobby");
      assert.deepEqual(texts(reply), ["from a", "from b", "from a again"]);
    }
    const reply = await call(bob, "history", "lobby", { since: first.id });
    assert.deepEqual(texts(reply), ["from b", "from a again"]);
    const res = await api(b, "/api/rooms/lobby/history?limit=1");
    assert.deepEqual(texts(res.json), ["from a"]);
    assert.equal(res.json.more, true);

    // Redis killed: a message is refused (not acked as stored, not broadcast), reads fail the same way.
    const port = redis.port;
    await redis.stop();
    const seen = [];
    bob.on("message", (m) => seen.push(m.data.text));
    const refused = await call(alice, "message", "lobby", { text: "while down" });
    assert.deepEqual(refused, { ok: false, error: "history_unavailable" });
    assert.deepEqual(await call(alice, "history", "lobby"), { ok: false, error: "history_unavailable" });
    assert.equal((await api(a, "/api/rooms/lobby/history")).status, 503);

    // Restarted (empty: this Redis keeps nothing on disk): history resumes on both nodes.
    await startRedis([], port);
    const after = await eventually(
      "a message to be stored again",
      async () => {
        const ack = await call(alice, "message", "lobby", { text: "after" });
        return ack.ok ? ack : null;
      },
      15000,
    );
    assert.equal(after.ok, true);
    await eventually("node b to read the history again", async () => {
      const r = await call(bob, "history", "lobby");
      return r.ok && texts(r).includes("after");
    }, 10000);
    // The refused message was not broadcast.
    assert.ok(!seen.includes("while down"), JSON.stringify(seen));
    alice.close();
    bob.close();
  });
});

describe("redis.bridge", () => {
  it("emits a plain channel's JSON messages to the templated room on every node; bad messages are counted", async () => {
    const redis = await startRedis();
    const bridge = ["--set", "redis.bridge=order.created order user:{userId}"];
    const a = await startNode({ redisUrl: redis.url, extra: bridge });
    const b = await startNode({ redisUrl: redis.url, extra: bridge });
    const u42a = await user(a, "42");
    const u42b = await user(b, "42");
    const other = await user(b, "7");
    const got = { a: [], b: [], other: [] };
    u42a.on("order", (o) => got.a.push(o));
    u42b.on("order", (o) => got.b.push(o));
    other.on("order", (o) => got.other.push(o));
    const { createClient } = await import("redis");
    const publisher = createClient({ url: redis.url });
    await publisher.connect();
    try {
      // The nodes subscribe shortly after starting: publish until both tabs have one order.
      await eventually(
        "both of user 42's tabs to get the order",
        async () => {
          if (got.a.length === 0 || got.b.length === 0) {
            await publisher.publish("order.created", JSON.stringify({ userId: "42", total: 9.5, probe: true }));
          }
          return got.a.length > 0 && got.b.length > 0;
        },
        10000,
      );
      got.a.length = 0;
      got.b.length = 0;
      await publisher.publish("order.created", "not json");
      await publisher.publish("order.created", JSON.stringify({ user: "no userId" }));
      await publisher.publish("order.created", JSON.stringify({ userId: 42, total: 3 }));
      await eventually("the good order on both nodes", () => got.a.length === 1 && got.b.length === 1, 5000);
      await sleep(200);
      assert.deepEqual(got.a, [{ userId: 42, total: 3 }]);
      assert.deepEqual(got.b, [{ userId: 42, total: 3 }]);
      assert.deepEqual(got.other, []);
      const metrics = await new Promise((resolve) => {
        http.get(`${a.url}/metrics`, (r) => {
          let body = "";
          r.on("data", (c) => (body += c));
          r.on("end", () => resolve(body));
        });
      });
      assert.match(metrics, /switchyard_redis_bridge_messages_total\{channel="order.created",result="bad_json"\} 1/);
      assert.match(metrics, /switchyard_redis_bridge_messages_total\{channel="order.created",result="missing_field"\} 1/);
      // The nodes are alive after the bad messages.
      assert.equal((await request(`${a.url}/readyz`)).status, 200);
    } finally {
      await publisher.quit();
      for (const s of [u42a, u42b, other]) s.close();
    }
  });
});
