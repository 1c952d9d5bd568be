// nginx in front of three Switchyard nodes (sticky by client address, WebSocket upgrade headers
// passed on): polling-only clients and upgrading clients work through it, and a broadcast from any
// node reaches every client wherever nginx placed it. Clients connect from different loopback
// addresses (127.0.0.2, 127.0.0.3, ...) so that the address hash spreads them over the nodes.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import {
  startRedis,
  startSwitchyard,
  connect,
  cmd,
  nextEvent,
  eventually,
  stopAll,
  within,
  sleep,
} from "../lib/cluster.js";
import { startNginx } from "../lib/nginx.js";

describe("nginx in front of three nodes", () => {
  let nginx;
  const clients = [];

  before(async () => {
    const redis = await startRedis();
    const nodes = [];
    for (let i = 0; i < 3; i++) nodes.push(await startSwitchyard({ url: redis.url }));
    nginx = await startNginx(nodes.map((n) => `127.0.0.1:${n.port}`));
  });

  after(async () => {
    await nginx?.stop();
    await stopAll();
  });

  it("polling-only and upgrading clients connect, spread over the nodes", async () => {
    // Six clients from six source addresses: odd ones polling only, even ones upgrading to WebSocket.
    for (let i = 0; i < 6; i++) {
      const agent = new http.Agent({ localAddress: `127.0.0.${i + 2}`, keepAlive: true });
      const transports = i % 2 ? ["polling"] : ["polling", "websocket"];
      const socket = await connect({ kind: "nginx", url: nginx.url }, `client-${i}`, { transports, agent });
      clients.push(socket);
    }
    for (const [i, socket] of clients.entries()) {
      const want = i % 2 ? "polling" : "websocket";
      await eventually(`client-${i} on ${want}`, () => socket.io.engine.transport.name === want);
    }
    const ports = new Set();
    for (const socket of clients) {
      const port = await cmd(socket, "port");
      assert.equal(typeof port, "number", JSON.stringify(port));
      ports.add(port);
    }
    assert.ok(ports.size >= 2, `clients should land on several nodes, got ${[...ports]}`);
  });

  it("a broadcast from any node reaches every client through nginx", async () => {
    for (const sender of [clients[0], clients[1]]) {
      const got = clients.map((c) => nextEvent(c, "hello", 8000));
      await cmd(sender, "broadcast", { event: "hello", args: [sender.label] });
      for (const args of await Promise.all(got)) assert.deepEqual(args, [sender.label]);
    }
  });

  it("broadcast acks from every client, polling or not, come back", async () => {
    const result = await cmd(clients[1], "emitWithAck", { event: "ask", timeout: 5000 }, 8000);
    assert.equal(result.error, undefined, JSON.stringify(result));
    assert.deepEqual(result.responses.sort(), clients.map((c) => c.label).sort());
  });

  it("polling sessions stay on their node over many requests", async () => {
    // Each polling round trip is a new HTTP request: a session moved to another node would die.
    const poller = clients[1];
    for (let i = 0; i < 20; i++) {
      assert.equal(await within(3000, poller.emitWithAck("setData", { i }), "a polling round trip"), "ok");
    }
    await sleep(50);
    assert.ok(poller.connected);
  });
});
