// The HTTP API across a cluster: two `switchyard` nodes (the real binary, the key from
// SWITCHYARD_API_KEY) and a Node socket.io 4.8 server with @socket.io/redis-adapter on one Redis, in
// classic and sharded mode. Requests go to node A's API; the official socket.io-client sockets they act
// on are connected to node B and to the Node server. Every wait is bounded.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import {
  startRedis,
  startNodeServer,
  connect,
  cmd,
  nextEvent,
  record,
  eventually,
  freePort,
  stopAll,
  switchyardBin,
} from "../lib/cluster.js";

const KEY = "cluster-test-key-0123456789";

/** The `switchyard` binary joined to the cluster, its API on; resolves once ready. */
async function startNode(url, mode) {
  const port = await freePort();
  const args = ["--host", "127.0.0.1", "--port", String(port), "--redis-url", url, "--redis-mode", mode];
  // No rate limit: the tests poll the API. No connection state recovery: events arrive with exactly
  // the arguments emitted (recovery appends an offset).
  args.push("--set", "api.requests_per_second=0", "--set", "recovery.enabled=false");
  const child = spawn(switchyardBin, args, {
    env: { ...process.env, SWITCHYARD_API_KEY: KEY, RUST_LOG: process.env.RUST_LOG || "warn" },
    stdio: ["ignore", "ignore", process.env.CLUSTER_SERVER_LOG ? "inherit" : "ignore"],
  });
  const exited = new Promise((resolve) => child.once("exit", resolve));
  const node = { kind: "switchyard", port, url: `http://127.0.0.1:${port}`, child, exited };
  const ready = async () => (await request(node, "GET", "/readyz", undefined, false)).status === 200;
  await eventually(`node ${port} to be ready`, ready, 15000);
  return node;
}

/** An HTTP request to `node`, with the key unless `auth` is false; resolves with {status, body, headers}. */
async function request(node, method, path, body, auth = true) {
  const headers = { "content-type": "application/json" };
  if (auth) headers.authorization = `Bearer ${KEY}`;
  try {
    const response = await fetch(`${node.url}${path}`, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(8000),
    });
    const text = await response.text();
    let json;
    try {
      json = JSON.parse(text);
    } catch {
      json = undefined;
    }
    return { status: response.status, body: json, text, headers: response.headers };
  } catch (err) {
    return { status: 0, body: undefined, text: String(err), headers: new Headers() };
  }
}

const api = (node, method, path, body) => request(node, method, path, body);

async function assertOk(promise) {
  const response = await promise;
  assert.equal(response.status, 200, response.text);
  assert.deepEqual(response.body, { ok: true });
}

async function assertError(promise, status, error) {
  const response = await promise;
  assert.equal(response.status, status, response.text);
  assert.equal(response.body?.error, error, response.text);
}

/** The ids of the sockets in `room`, across the cluster, as node's API lists them. */
async function members(node, room) {
  const response = await api(node, "GET", `/api/rooms/${encodeURIComponent(room)}/sockets`);
  assert.equal(response.status, 200, response.text);
  return response.body.sockets.map((s) => s.id).sort();
}

for (const mode of ["classic", "sharded"]) {
  describe(`HTTP API across a cluster, ${mode} mode`, () => {
    let redis, nodeServer, a, b;
    let onB, onNode, onA; // official clients on node B, on the Node server, on node A

    before(async () => {
      redis = await startRedis();
      nodeServer = await startNodeServer({ url: redis.url, mode });
      a = await startNode(redis.url, mode);
      b = await startNode(redis.url, mode);
      onB = await connect(b, "on-b");
      onNode = await connect(nodeServer, "on-node");
      onA = await connect(a, "on-a");
      // Every server sees the other two before the tests start (the Node server answers serverCount).
      await eventually("three servers", async () => (await cmd(onNode, "serverCount")) === 3);
      await eventually("node A to see every socket", async () => {
        const response = await api(a, "GET", "/api/rooms");
        if (response.status !== 200) return false;
        return (await members(a, onB.id)).length === 1 && (await members(a, onNode.id)).length === 1;
      });
    });

    after(async () => {
      for (const node of [a, b]) {
        if (node && node.child.exitCode === null && node.child.signalCode === null) {
          node.child.kill("SIGKILL");
          await node.exited;
        }
      }
      await stopAll();
    });

    it("POST /api/emit on node A reaches clients on node B and on the Node server", async () => {
      const got = [onA, onB, onNode].map((c) => nextEvent(c, "news"));
      await assertOk(api(a, "POST", "/api/emit", { event: "news", data: { title: "hello", n: 1 } }));
      for (const args of await Promise.all(got)) {
        assert.deepEqual(args, [{ title: "hello", n: 1 }]);
      }
    });

    it("a socket on node B joins and leaves a room through node A's API", async () => {
      const room = `room-${mode}`;
      await assertOk(api(a, "POST", `/api/sockets/${onB.id}/join`, { room }));
      await eventually("B's socket in the room", async () => (await members(a, room)).includes(onB.id));
      // The room's members, from node B's API too.
      assert.deepEqual(await members(b, room), [onB.id]);
      const listed = await api(a, "GET", "/api/rooms");
      assert.ok(listed.body.rooms.some((r) => r.room === room && r.sockets === 1), listed.text);

      const seen = record(onA, "to-room");
      const got = nextEvent(onB, "to-room");
      await assertOk(api(a, "POST", "/api/emit", { event: "to-room", rooms: [room], data: "only B" }));
      assert.deepEqual(await got, ["only B"]);

      await assertOk(api(a, "POST", `/api/sockets/${onB.id}/leave`, { room }));
      await eventually("B's socket out of the room", async () => (await members(a, room)).length === 0);
      const seenByB = record(onB, "to-room");
      await assertOk(api(a, "POST", "/api/emit", { event: "to-room", rooms: [room], data: "nobody" }));
      // A broadcast to everyone after it arrives after the room emit would have: then nothing came.
      const everyone = nextEvent(onB, "after");
      await assertOk(api(a, "POST", "/api/emit", { event: "after" }));
      await everyone;
      assert.deepEqual(seenByB, []);
      assert.deepEqual(seen, []);
    });

    it("a socket on the Node server joins a room through node A's API, and except skips it", async () => {
      const room = `node-room-${mode}`;
      await assertOk(api(a, "POST", `/api/sockets/${onNode.id}/join`, { room }));
      // The Node server itself sees its socket in the room.
      await eventually("the Node socket in the room", async () => {
        const sockets = await cmd(onNode, "fetchSockets", { to: room });
        return sockets.length === 1 && sockets[0].id === onNode.id;
      });
      assert.deepEqual(await members(a, room), [onNode.id]);
      const got = nextEvent(onNode, "ping-room");
      await assertOk(api(a, "POST", "/api/emit", { event: "ping-room", rooms: [room], data: [1, 2] }));
      assert.deepEqual(await got, [[1, 2]]);

      const skipped = record(onNode, "skip");
      const gotB = nextEvent(onB, "skip");
      const gotA = nextEvent(onA, "skip");
      await assertOk(api(a, "POST", "/api/emit", { event: "skip", except: [room] }));
      await Promise.all([gotA, gotB]);
      const last = nextEvent(onNode, "last");
      await assertOk(api(a, "POST", "/api/emit", { event: "last" }));
      await last;
      assert.deepEqual(skipped, []);
      await assertOk(api(a, "POST", `/api/sockets/${onNode.id}/leave`, { room }));
      await eventually("the Node socket out of the room", async () => (await members(a, room)).length === 0);
    });

    it("POST /api/sockets/{id}/disconnect disconnects a socket on another node", async () => {
      for (const client of [onB, onNode]) {
        const reason = nextEvent(client, "disconnect");
        await assertOk(api(a, "POST", `/api/sockets/${client.id}/disconnect`, {}));
        assert.deepEqual(await reason, ["io server disconnect", undefined]);
      }
      const gone = async () => (await members(a, onB.id)).length === 0 && (await members(a, onNode.id)).length === 0;
      await eventually("the sockets gone", gone);
      // Gone from every node: a second disconnect finds nothing.
      await assertError(api(a, "POST", `/api/sockets/${onB.id}/disconnect`), 404, "socket not found");
      // Back on B (same client, new socket id), and disconnected with its whole connection this time.
      onB.connect();
      await nextEvent(onB, "connect");
      await eventually("B's new socket visible from A", async () => (await members(a, onB.id)).length === 1);
      const reason = nextEvent(onB, "disconnect");
      await assertOk(api(a, "POST", `/api/sockets/${onB.id}/disconnect`, { close: true }));
      assert.ok(["io server disconnect", "transport close"].includes((await reason)[0]));
      // The whole connection is closed, not only the namespace.
      await eventually("B's connection closed", () => onB.io.engine.readyState === "closed");
    });

    it("API errors, the cluster's included", async () => {
      await assertError(request(a, "GET", "/api/rooms", undefined, false), 401, "unauthorized");
      const nobody = "/api/sockets/NoSuchSocketAnywhere/join";
      await assertError(api(a, "POST", nobody, { room: "r" }), 404, "socket not found");
      await assertError(api(a, "POST", "/api/emit", { event: "x", namespace: "/nowhere" }), 404, "namespace not found");
      await assertError(api(a, "POST", "/api/emit", { event: "disconnect" }), 400, "reserved event");
      await assertError(api(a, "POST", "/api/emit", { data: 1 }), 400, "missing event");
      // With Redis gone, a cluster request fails (at once once the node noticed, else at the request
      // timeout) instead of answering with a part of the cluster. The Node server goes first, so that
      // its Redis clients can quit cleanly.
      await nodeServer.stop();
      await redis.stop();
      await eventually("the API to report the cluster unavailable", async () => {
        const response = await api(a, "GET", "/api/rooms");
        return response.status === 503 && response.body?.error === "cluster unavailable";
      }, 12000);
    });
  });
}
