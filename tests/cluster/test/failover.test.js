// Graceful shutdown behind a load balancer: two `switchyard` nodes (the real binary) behind nginx. A
// socket.io-client connected through nginx to node A; SIGTERM to A. A flushes, closes the client's
// transport without a Socket.IO DISCONNECT and stops listening, so the client reconnects by itself,
// nginx (its upstream refused) sends it to node B, and it exchanges events there; A exits 0 within
// its drain bound. Every wait is bounded.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import http from "node:http";
import { startRedis, connect, eventually, freePort, stopAll, within, switchyardBin } from "../lib/cluster.js";
import { startNginx } from "../lib/nginx.js";

const DRAIN_MS = 3000;

function httpGet(url) {
  return new Promise((resolve) => {
    const req = http.get(url, (res) => {
      let body = "";
      res.on("data", (chunk) => (body += chunk));
      res.on("end", () => resolve({ status: res.statusCode, body }));
    });
    req.on("error", () => resolve({ status: 0, body: "" }));
    req.setTimeout(2000, () => req.destroy());
  });
}

/** The `switchyard` binary on a free port, joined to the cluster through `url`; resolves once ready. */
async function startNode(url) {
  const port = await freePort();
  const args = ["--host", "127.0.0.1", "--port", String(port), "--redis-url", url];
  args.push("--set", `server.drain_timeout_ms=${DRAIN_MS}`);
  const child = spawn(switchyardBin, args, {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
    stdio: ["ignore", "ignore", process.env.CLUSTER_SERVER_LOG ? "inherit" : "ignore"],
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const node = { port, url: `http://127.0.0.1:${port}`, child, exited };
  await eventually(`node ${port} to be ready`, async () => (await httpGet(`${node.url}/readyz`)).status === 200, 15000);
  return node;
}

/** Connected sockets of namespace `/` on `node`, from its metrics. */
async function sockets(node) {
  const { body } = await httpGet(`${node.url}/metrics`);
  const match = body.match(/^switchyard_sockets\{namespace="\/"\} (\d+)$/m);
  return match ? Number(match[1]) : 0;
}

describe("failover behind nginx on SIGTERM", () => {
  let nodes = [];
  let nginx;

  before(async () => {
    const redis = await startRedis();
    nodes = [await startNode(redis.url), await startNode(redis.url)];
    nginx = await startNginx(nodes.map((n) => `127.0.0.1:${n.port}`));
  });

  after(async () => {
    await nginx?.stop();
    for (const node of nodes) {
      if (node.child.exitCode === null && node.child.signalCode === null) {
        node.child.kill("SIGKILL");
        await node.exited;
      }
    }
    await stopAll();
  });

  it("a client of a stopped node reconnects through nginx to the other node by itself", async () => {
    const agent = new http.Agent({ localAddress: "127.0.0.2", keepAlive: true });
    const client = await connect({ kind: "nginx", url: nginx.url }, "roamer", {
      transports: ["polling", "websocket"],
      agent,
      reconnection: true,
      reconnectionDelay: 100,
      reconnectionDelayMax: 500,
    });
    await eventually("the client to upgrade to WebSocket", () => client.io.engine.transport.name === "websocket");
    const reasons = [];
    client.on("disconnect", (reason) => reasons.push(reason));
    const reconnected = new Promise((resolve) => client.once("disconnect", () => client.once("connect", resolve)));

    // A friend connected straight to each node, so the event exchange works wherever the client lands.
    const friends = await Promise.all(nodes.map((n, i) => connect({ kind: "switchyard", url: n.url }, `friend-${i}`)));

    const counts = await Promise.all(nodes.map(sockets));
    const victim = counts.findIndex((c) => c === 2);
    assert.notEqual(victim, -1, `the client should be on one node: ${counts}`);
    const survivor = 1 - victim;

    const started = Date.now();
    nodes[victim].child.kill("SIGTERM");

    await within(10000, reconnected, "the client to reconnect by itself");
    assert.equal(reasons[0], "transport close", `a transport close, not "io server disconnect": ${reasons}`);
    assert.ok(client.connected);
    await eventually("the client to count on the surviving node", async () => (await sockets(nodes[survivor])) === 2);

    // Events both ways on the surviving node.
    const friend = friends[survivor];
    // The built-in events (docs/EVENTS.md): join, presence and message on the surviving node.
    await within(3000, client.emitWithAck("join", "lobby"), "the client to join");
    const joined = await within(3000, friend.emitWithAck("join", "lobby"), "the friend to join");
    assert.deepEqual(joined, { ok: true, room: "lobby" });
    const here = await within(3000, friend.emitWithAck("presence", "lobby"), "presence");
    assert.deepEqual(here.users.sort(), [client.id, friend.id].sort());
    const got = new Promise((resolve) => client.once("message", resolve));
    const ack = await within(3000, friend.emitWithAck("message", "lobby", "welcome"), "the message ack");
    assert.equal(ack.ok, true);
    const message = await within(3000, got, "the message on the client");
    assert.equal(message.data, "welcome");
    assert.equal(message.id, ack.id);
    const back = await within(3000, client.emitWithAck("message", "lobby", "thanks"), "the client's message");
    assert.equal(back.ok, true);

    const { code, signal } = await within(DRAIN_MS + 5000, nodes[victim].exited, "the stopped node to exit");
    assert.equal(signal, null);
    assert.equal(code, 0);
    assert.ok(Date.now() - started < DRAIN_MS + 5000);
    client.disconnect();
    for (const f of friends) f.disconnect();
    agent.destroy();
  });
});
