// Connection state recovery across nodes with the official socket.io-client (>= 4.6,
// `connectionStateRecovery`): sessions and missed packets live in Redis (streams), so a client whose
// transport dropped, or whose node was killed, comes back on another node with the same id, rooms
// and data and every packet it missed. Classic and sharded adapters; a Node socket.io peer in the
// same cluster keeps working; `kill -9` of a node behind nginx under traffic loses nothing (counted);
// Redis killed and restarted: local delivery goes on, recovery resumes. Every wait is bounded.
import { describe, it, before, after } from "node:test";
import assert from "node:assert/strict";
import http from "node:http";
import { io as ioClient } from "socket.io-client";
import {
  startRedis,
  startSwitchyard,
  startNodeServer,
  cmd,
  nextEvent,
  eventually,
  stopAll,
  within,
  sleep,
} from "../lib/cluster.js";
import { startNginx } from "../lib/nginx.js";

const RECOVERY_MS = 60000;
const clients = [];

/** A client that reconnects by itself (quickly), with the server's recovery offsets kept. */
async function recoveringClient(url, label, options = {}) {
  const socket = ioClient(url, {
    forceNew: true,
    transports: ["websocket"],
    timeout: 5000,
    reconnectionDelay: 100,
    reconnectionDelayMax: 300,
    randomizationFactor: 0,
    ...options,
  });
  socket.label = label;
  clients.push(socket);
  // Every "tick" with its first argument, in arrival order; the last argument is the offset.
  socket.ticks = [];
  socket.offsets = [];
  socket.on("tick", (...args) => {
    socket.ticks.push(args[0]);
    socket.offsets.push(args[args.length - 1]);
  });
  await within(
    5000,
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    `client ${label} to connect`,
  );
  return socket;
}

/** Drops the client's transport (as a network failure would) and points its reconnection at `url`. */
function dropAndMoveTo(socket, url) {
  socket.io.uri = url;
  socket.io.engine.close();
}

function nextConnect(socket, ms = 8000) {
  return within(ms, new Promise((resolve) => socket.once("connect", resolve)), `${socket.label} to reconnect`);
}

after(async () => {
  for (const socket of clients) socket.disconnect();
  await stopAll();
});

for (const mode of ["classic", "sharded"]) {
  describe(`recovery across two nodes (${mode})`, () => {
    let a, b, node;
    before(async () => {
      const redis = await startRedis();
      a = await startSwitchyard({ url: redis.url, mode, recoveryMs: RECOVERY_MS });
      b = await startSwitchyard({ url: redis.url, mode, recoveryMs: RECOVERY_MS });
      node = await startNodeServer({ url: redis.url, mode });
    });

    it("a client dropped from one node comes back on the other with id, rooms, data and every missed packet", async () => {
      const client = await recoveringClient(a.url, `${mode}-roamer`);
      const sender = await recoveringClient(b.url, `${mode}-sender`);
      assert.equal(await within(3000, client.emitWithAck("join", ["room1", "room2"]), "join"), "ok");
      assert.equal(await within(3000, client.emitWithAck("setData", { user: "ann" }), "setData"), "ok");
      // One packet received, so the client has an offset.
      const first = nextEvent(client, "tick");
      await cmd(sender, "broadcast", { to: "room1", event: "tick", args: [0] });
      await first;
      const id = client.id;
      // Give node A's session write (batched every 50 ms) time to land.
      await sleep(200);
      const reconnected = nextConnect(client);
      dropAndMoveTo(client, b.url);
      await eventually("the client to notice the drop", () => !client.connected, 3000);
      // Missed while away: to its rooms, to every client, and one it must not get (another room).
      await cmd(sender, "broadcast", { to: "room1", event: "tick", args: [1] });
      await cmd(sender, "broadcast", { to: "elsewhere", event: "tick", args: [99] });
      await cmd(sender, "broadcast", { to: "room2", event: "tick", args: [2] });
      await cmd(sender, "broadcast", { event: "tick", args: [3] });
      await reconnected;
      assert.equal(client.recovered, true, "the session was recovered");
      assert.equal(client.id, id, "same socket id");
      await eventually("the missed ticks", () => client.ticks.length >= 4, 3000);
      assert.deepEqual(client.ticks, [0, 1, 2, 3]);
      // Rooms and data now live on node B: a cluster-wide fetch sees them there.
      const sockets = await cmd(sender, "fetchSockets", { to: "room2" });
      const found = sockets.find((s) => s.id === id);
      assert.ok(found, JSON.stringify(sockets));
      assert.deepEqual([...found.rooms].sort(), [id, "room1", "room2"].sort());
      assert.deepEqual(found.data, { user: "ann" });
      // And it gets live packets on node B, once each.
      await cmd(sender, "broadcast", { to: "room1", event: "tick", args: [4] });
      await eventually("the live tick", () => client.ticks.length >= 5, 3000);
      await sleep(100);
      assert.deepEqual(client.ticks, [0, 1, 2, 3, 4]);
    });

    it("a Node socket.io peer keeps working: its broadcasts reach Switchyard clients, ours reach its clients without an offset", async () => {
      const ours = await recoveringClient(a.url, `${mode}-ours`);
      const theirs = await recoveringClient(node.url, `${mode}-theirs`);
      assert.equal(await within(3000, ours.emitWithAck("join", "mixed"), "join"), "ok");
      assert.equal(await within(3000, theirs.emitWithAck("join", "mixed"), "join"), "ok");
      await sleep(100);
      const atTheirs = nextEvent(theirs, "hello");
      const atOurs = nextEvent(ours, "hello");
      await cmd(ours, "broadcast", { to: "mixed", event: "hello", args: ["from switchyard"] });
      assert.deepEqual(await atTheirs, ["from switchyard"], "Node ignores the offset");
      const ourArgs = await atOurs;
      assert.equal(ourArgs[0], "from switchyard");
      assert.match(ourArgs[1], /^\d+-\d+$/, "a stream id as the offset");
      const fromNode = nextEvent(ours, "hi");
      await cmd(theirs, "broadcast", { to: "mixed", event: "hi", args: ["from node"] });
      assert.deepEqual(await fromNode, ["from node"]);
    });

    it("an unknown session or an offset that is not a stream id gets a new session", async () => {
      const client = await recoveringClient(a.url, `${mode}-stranger`, {
        auth: { pid: "nope.none", offset: "not-an-offset" },
      });
      assert.equal(client.recovered, false);
    });
  });
}

describe("one node with Redis: recovery on the same node", () => {
  let a;
  before(async () => {
    const redis = await startRedis();
    a = await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS });
  });

  it("a dropped client reconnecting to the same node recovers what it missed", async () => {
    const client = await recoveringClient(a.url, "single");
    const sender = await recoveringClient(a.url, "single-sender");
    const first = nextEvent(client, "tick");
    await cmd(sender, "broadcast", { event: "tick", args: [0] });
    await first;
    await sleep(200);
    const reconnected = nextConnect(client);
    dropAndMoveTo(client, a.url);
    await eventually("the drop", () => !client.connected, 3000);
    for (let i = 1; i <= 20; i++) await cmd(sender, "broadcast", { to: client.id, event: "tick", args: [i] });
    await reconnected;
    assert.equal(client.recovered, true);
    await eventually("20 missed ticks", () => client.ticks.length >= 21, 3000);
    assert.deepEqual(client.ticks, Array.from({ length: 21 }, (_, i) => i));
  });
});

describe("a slow client dropped for an overflowing queue", () => {
  let a, b;
  before(async () => {
    const redis = await startRedis();
    a = await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS, maxQueueBytes: 65536 });
    b = await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS });
  });

  it("recovers every message it was too slow to take, in order", async () => {
    const slow = await recoveringClient(a.url, "slow");
    const sender = await recoveringClient(b.url, "slow-sender");
    assert.equal(await within(3000, slow.emitWithAck("join", "firehose"), "join"), "ok");
    await sleep(200);
    // The client stops reading: the kernel buffers fill, then node A's queue (64 KiB) overflows.
    slow.io.engine.transport.ws._socket.pause();
    const reasons = [];
    slow.on("disconnect", (reason) => reasons.push(reason));
    const big = "x".repeat(16 * 1024);
    const total = 1500;
    for (let i = 0; i < total; i++) await cmd(sender, "broadcast", { to: "firehose", event: "tick", args: [i, big] });
    const reconnected = nextConnect(slow, 15000);
    slow.io.engine.transport.ws._socket.resume();
    await reconnected;
    assert.equal(slow.recovered, true, `recovered after ${reasons}`);
    await eventually("every message", () => slow.ticks.length >= total, 10000).catch((err) => {
      const gap = slow.ticks.findIndex((t, i) => t !== i);
      throw new Error(`${err.message}: got ${slow.ticks.length}, first gap at ${gap} (${slow.ticks.slice(Math.max(0, gap - 2), gap + 3)}), reasons ${reasons}`);
    });
    assert.deepEqual(slow.ticks, Array.from({ length: total }, (_, i) => i), "all, once, in order");
  });
});

describe("kill -9 of a node behind nginx under traffic", () => {
  let nodes, nginx;
  before(async () => {
    const redis = await startRedis();
    nodes = [
      await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS }),
      await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS }),
    ];
    nginx = await startNginx(nodes.map((n) => `127.0.0.1:${n.port}`));
  });
  after(async () => nginx?.stop());

  it("clients of the killed node reconnect to the other and recover every message: 0 lost", async () => {
    // Eight clients from eight source addresses, so nginx's address hash spreads them.
    const subscribers = [];
    for (let i = 0; i < 8; i++) {
      const agent = new http.Agent({ localAddress: `127.0.0.${i + 10}` });
      const socket = await recoveringClient(nginx.url, `sub-${i}`, { agent });
      assert.equal(await within(3000, socket.emitWithAck("join", "feed"), "join"), "ok");
      socket.port = await cmd(socket, "port");
      subscribers.push(socket);
    }
    const victimPort = subscribers[0].port;
    const victim = nodes.find((n) => n.port === victimPort);
    const survivor = nodes.find((n) => n.port !== victimPort);
    const moving = subscribers.filter((s) => s.port === victimPort);
    assert.ok(moving.length >= 1 && moving.length < subscribers.length, `spread: ${subscribers.map((s) => s.port)}`);
    const ids = new Map(moving.map((s) => [s, s.id]));
    // The sender talks to the survivor directly; every acknowledged command is one accepted message.
    const sender = await recoveringClient(survivor.url, "sender");
    let sent = 0;
    let stop = false;
    const traffic = (async () => {
      while (!stop) {
        await cmd(sender, "broadcast", { to: "feed", event: "tick", args: [sent] });
        sent += 1;
        await sleep(5);
      }
    })();
    await eventually("traffic to flow", () => moving.every((s) => s.ticks.length > 20), 5000);
    await sleep(200);
    const back = moving.map((s) => nextConnect(s, 15000));
    victim.child.kill("SIGKILL");
    await within(15000, Promise.all(back), "the killed node's clients to reconnect");
    await sleep(500);
    stop = true;
    await traffic;
    const last = sent - 1;
    await eventually(
      "every subscriber to get the last message",
      () => subscribers.every((s) => s.ticks.includes(last)),
      10000,
    );
    let lost = 0;
    let duplicated = 0;
    for (const s of subscribers) {
      const seen = new Set(s.ticks);
      duplicated += s.ticks.length - seen.size;
      for (let i = 0; i < sent; i++) if (!seen.has(i)) lost += 1;
      // In order, too.
      assert.deepEqual(s.ticks, [...s.ticks].sort((x, y) => x - y), `${s.label} in order`);
    }
    console.log(
      `# kill -9: ${sent} messages to ${subscribers.length} subscribers, ${moving.length} moved; lost ${lost}, duplicated ${duplicated}`,
    );
    assert.equal(lost, 0, "messages lost");
    assert.equal(duplicated, 0, "messages delivered twice");
    for (const s of moving) {
      assert.equal(s.recovered, true, `${s.label} recovered`);
      assert.equal(s.id, ids.get(s), `${s.label} kept its id`);
      assert.equal(await cmd(s, "port"), survivor.port);
    }
  });
});

describe("Redis killed and restarted", () => {
  let redis, a, b;
  before(async () => {
    redis = await startRedis();
    a = await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS });
    b = await startSwitchyard({ url: redis.url, recoveryMs: RECOVERY_MS });
  });

  it("connected clients keep getting their node's messages, and recovery resumes once Redis is back", async () => {
    const client = await recoveringClient(a.url, "r-client");
    const local = await recoveringClient(a.url, "r-local");
    const remote = await recoveringClient(b.url, "r-remote");
    await redis.stop();
    // Without Redis: a broadcast reaches the node's own clients at once (no offset to give).
    const got = nextEvent(client, "tick", 5000);
    await cmd(local, "broadcast", { event: "tick", args: ["during"] });
    assert.deepEqual((await got)[0], "during");
    const restarted = await startRedis([], redis.port);
    // Back: cross-node delivery resumes by itself.
    await eventually(
      "cross-node delivery after the restart",
      async () => {
        const seen = client.ticks.length;
        await cmd(remote, "broadcast", { event: "tick", args: ["after"] });
        await sleep(200);
        return client.ticks.length > seen;
      },
      15000,
    );
    // A stored packet gives the client a fresh offset; its session was written again on reconnect.
    await eventually(
      "a stored packet with a stream offset",
      async () => {
        await cmd(remote, "broadcast", { event: "tick", args: ["stored"] });
        await sleep(100);
        return /^\d+-\d+$/.test(client.offsets.at(-1) ?? "");
      },
      5000,
    );
    await sleep(1500);
    const id = client.id;
    const before = client.ticks.length;
    const reconnected = nextConnect(client);
    dropAndMoveTo(client, b.url);
    await eventually("the drop", () => !client.connected, 3000);
    for (let i = 0; i < 5; i++) await cmd(remote, "broadcast", { event: "tick", args: [`missed-${i}`] });
    await reconnected;
    assert.equal(client.recovered, true, "recovered after the Redis restart");
    assert.equal(client.id, id);
    await eventually("the missed ticks", () => client.ticks.length >= before + 5, 3000);
    assert.deepEqual(client.ticks.slice(before), [0, 1, 2, 3, 4].map((i) => `missed-${i}`));
    await restarted.stop();
  });
});
