// A mixed cluster on one redis-server: a Node socket.io server instrumented with @socket.io/admin-ui
// (its RedisStore for sessions) and a Switchyard node. One UI connection, to either server, sees both
// servers and the sockets of both, and its commands reach both.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import {
  HASH,
  adminClient,
  connect,
  connected,
  startInstrumentedNode,
  startRedis,
  startSwitchyard,
  stopAll,
  within,
} from "../lib/harness.js";

let node;
let sy;

before(async () => {
  const redis = await startRedis();
  node = await startInstrumentedNode(redis.url, {
    auth: { type: "basic", username: "admin", password: HASH },
    serverId: "node-srv",
    mode: "development",
  });
  sy = await startSwitchyard({ SWITCHYARD_REDIS_URL: redis.url, SWITCHYARD_ADMIN_SERVER_ID: "switchyard-srv" });
});

after(stopAll);

for (const via of ["switchyard", "node"]) {
  test(`a UI connected to the ${via} server sees both servers and commands reach both`, async () => {
    const url = via === "switchyard" ? sy.url : node.url;
    const onNode = await connected(connect(node.url));
    const onSy = await connected(connect(sy.url));
    const admin = adminClient(url);
    await connected(admin.socket);
    const [sockets] = await admin.next("all_sockets");
    for (const client of [onNode, onSy]) {
      const s = sockets.find((x) => x.id === client.id);
      assert.ok(s, `socket ${client.id} listed`);
      assert.equal(s.clientId, client.io.engine.id.slice(0, 12));
      assert.equal(s.transport, "websocket");
      assert.equal(s.nsp, "/");
      assert.deepEqual(s.data, {});
    }
    await admin.next("server_stats", (s) => s.serverId === "node-srv", 5000);
    const [first] = await admin.next("server_stats", (s) => s.serverId === "switchyard-srv", 5000);
    // A Switchyard node learns of admin sockets on Node servers by asking the cluster every 2 s.
    await admin.next("server_stats", (s) => s.serverId === "switchyard-srv" && s !== first, 5000);

    for (const client of [onNode, onSy]) {
      admin.socket.emit("join", "/", "mixed", client.id);
      await admin.next("room_joined", (n, r, i) => r === "mixed" && i === client.id);
    }
    const heard = [onNode, onSy].map((c) => new Promise((resolve) => c.once("hello", resolve)));
    admin.socket.emit("emit", "/", "mixed", "hello", via);
    assert.deepEqual(await within(5000, Promise.all(heard), "hello on both"), [via, via]);
    for (const client of [onNode, onSy]) {
      const id = client.id; // socket.io-client forgets it on disconnect
      const reason = new Promise((resolve) => client.once("disconnect", resolve));
      admin.socket.emit("_disconnect", "/", false, id);
      assert.equal(await within(5000, reason, `disconnect ${id}`), "io server disconnect");
      await admin.next("socket_disconnected", (n, i) => i === id);
    }
    admin.socket.disconnect();
  });
}

test("a login on the Switchyard node is a session on the Node server (one Redis store)", async () => {
  const admin = adminClient(sy.url);
  const [sessionId] = await admin.next("session");
  const onNode = adminClient(node.url, { sessionId });
  await connected(onNode.socket);
  const [config] = await onNode.next("config");
  assert.ok(config.supportedFeatures.includes("ALL_EVENTS"));
});

test("a login on the Node server is a session on the Switchyard node", async () => {
  const admin = adminClient(node.url);
  const [sessionId] = await admin.next("session");
  const onSy = adminClient(sy.url, { sessionId });
  await connected(onSy.socket);
  await onSy.next("config");
});
