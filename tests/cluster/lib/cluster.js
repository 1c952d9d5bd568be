// Setup for the mixed-cluster tests: redis-server processes on free loopback ports, Switchyard nodes
// (the cluster-node example), a Node socket.io server with @socket.io/redis-adapter in this process,
// and socket.io-client connections. Everything started here is stopped by `stopAll()`.
import { spawn, execFile } from "node:child_process";
import http, { createServer } from "node:http";
import net from "node:net";
import path from "node:path";
import { Server } from "socket.io";
import { io as ioClient } from "socket.io-client";
import { createAdapter, createShardedAdapter } from "@socket.io/redis-adapter";
import { createClient } from "redis";
import { eventually, freePort, onCleanup, repoRoot, startRedis, stopChild, switchyardBin, within } from "../../lib/process.js";

// The process helpers live in tests/lib/process.js (shared with tests/admin and tests/kafka).
export { eventually, freePort, repoRoot, sleep, startRedis, stopAll, switchyardBin, within } from "../../lib/process.js";
export const clusterNodeBin =
  process.env.CLUSTER_NODE_BIN || path.join(repoRoot, "target/release/cluster-node");

function run(cmd, args) {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 30000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(" ")}: ${err.message} ${stderr}`)) : resolve(stdout),
    );
  });
}

function portIsFree(port) {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

/** A free port whose Redis Cluster bus port (port + 10000) is free too. */
async function freeClusterPort() {
  for (let i = 0; i < 1000; i++) {
    const port = 20000 + Math.floor(Math.random() * 30000);
    if ((await portIsFree(port)) && (await portIsFree(port + 10000))) return port;
  }
  throw new Error("no free port pair for a Redis Cluster node");
}

/** A three-master Redis Cluster on free ports; returns {ports, urls}. */
export async function startRedisCluster(size = 3) {
  const ports = [];
  for (let i = 0; i < size; i++) {
    const args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
    ports.push((await startRedis(args, await freeClusterPort())).port);
  }
  await run("redis-cli", ["--cluster", "create", ...ports.map((p) => `127.0.0.1:${p}`), "--cluster-replicas", "0", "--cluster-yes"]);
  for (const port of ports) {
    await eventually(
      `cluster state ok on ${port}`,
      async () => (await run("redis-cli", ["-p", String(port), "cluster", "info"])).includes("cluster_state:ok"),
      15000,
    );
  }
  return { ports, urls: ports.map((p) => `redis://127.0.0.1:${p}`) };
}

/**
 * Starts a Switchyard cluster node (the cluster-node example). `redis` is {url} or {clusterNodes};
 * `recoveryMs` turns connection state recovery on with that window; `maxQueueBytes` bounds each
 * connection's outgoing queue; `port` (0: any) where it listens.
 * Resolves with {port, url, child} once it listens and is connected to Redis.
 */
export async function startSwitchyard({ url, clusterNodes, mode = "classic", subscriptionMode = "dynamic", recoveryMs, maxQueueBytes, port: listenPort = 0 }) {
  const env = {
    ...process.env,
    PORT: String(listenPort),
    REDIS_MODE: mode,
    REDIS_SUBSCRIPTION_MODE: subscriptionMode,
    RUST_LOG: process.env.RUST_LOG || "warn",
  };
  if (clusterNodes) env.REDIS_CLUSTER_NODES = clusterNodes.join(",");
  else env.REDIS_URL = url;
  // Connection state recovery (off unless asked, as in Node).
  if (recoveryMs) env.RECOVERY_MS = String(recoveryMs);
  if (maxQueueBytes) env.MAX_QUEUE_BYTES = String(maxQueueBytes);
  const child = spawn(clusterNodeBin, [], { env, stdio: ["ignore", "pipe", process.env.CLUSTER_SERVER_LOG ? "inherit" : "ignore"] });
  // Bounded (SIGTERM, then SIGKILL after 5 s) and safe on a node a test killed already: the tests' nodes
  // hold nothing worth draining.
  onCleanup(() => stopChild(child, { name: `cluster-node ${child.pid}` }));
  const port = await within(
    15000,
    new Promise((resolve, reject) => {
      let out = "";
      child.stdout.on("data", (chunk) => {
        out += chunk;
        const match = out.match(/listening on (\d+)/);
        if (match) resolve(Number(match[1]));
      });
      child.once("exit", (code) => reject(new Error(`cluster-node exited with ${code}`)));
      child.once("error", reject);
    }),
    "the Switchyard node to listen",
  );
  return { kind: "switchyard", port, url: `http://127.0.0.1:${port}`, child };
}

/** The same contract as the cluster-node example, on Node socket.io with the Redis adapter. */
export async function startNodeServer({ url, clusterNodes, mode = "classic", subscriptionMode = "dynamic" }) {
  let pub, sub;
  if (clusterNodes) {
    const { createCluster } = await import("redis");
    pub = createCluster({ rootNodes: clusterNodes.map((u) => ({ url: u })) });
  } else {
    pub = createClient({ url });
  }
  sub = pub.duplicate();
  pub.on("error", () => {});
  sub.on("error", () => {});
  await Promise.all([pub.connect(), sub.connect()]);
  const httpServer = createServer();
  const io = new Server(httpServer);
  io.adapter(
    mode === "sharded"
      ? createShardedAdapter(pub, sub, { subscriptionMode })
      : createAdapter(pub, sub, { requestsTimeout: 3000 }),
  );
  await new Promise((r) => httpServer.listen(0, "127.0.0.1", r));
  const port = httpServer.address().port;
  const notes = [];
  io.on("note", (...args) => notes.push(args));
  io.on("ping", (...args) => {
    const ack = args.pop();
    ack(["node", port, ...args]);
  });
  const op = (options = {}) => {
    let target = io.to(options.to ?? []);
    if (options.except) target = target.except(options.except);
    return target;
  };
  const commands = {
    broadcast: async (o) => (op(o).emit(o.event, ...(o.args ?? [])), true),
    fetchSockets: async (o) =>
      (await op(o).fetchSockets()).map((s) => ({ id: s.id, rooms: [...s.rooms], data: s.data, local: !!s.emit && io.of("/").sockets.has(s.id) })),
    allRooms: async () => [...(await io.of("/").adapter.allRooms())],
    serverSideEmit: async (o) => {
      try {
        return { responses: await io.serverSideEmitWithAck(o.event, ...(o.args ?? [])) };
      } catch (err) {
        return { error: err.message, responses: err.responses };
      }
    },
    serverSideEmitNoAck: async (o) => (io.serverSideEmit(o.event, ...(o.args ?? [])), true),
    emitWithAck: async (o) => {
      try {
        return { responses: await op(o).timeout(o.timeout ?? 3000).emitWithAck(o.event, ...(o.args ?? [])) };
      } catch (err) {
        return { error: err.message };
      }
    },
    socketsJoin: async (o) => (op(o).socketsJoin(o.rooms), true),
    socketsLeave: async (o) => (op(o).socketsLeave(o.rooms), true),
    disconnectSockets: async (o) => (op(o).disconnectSockets(!!o.close), true),
    serverCount: async () => io.of("/").adapter.serverCount(),
    notes: async () => notes,
  };
  io.on("connection", (socket) => {
    socket.on("join", (rooms, ack) => (socket.join(rooms), ack?.("ok")));
    socket.on("leave", (rooms, ack) => ([].concat(rooms).forEach((r) => socket.leave(r)), ack?.("ok")));
    socket.on("setData", (data, ack) => ((socket.data = data), ack?.("ok")));
    socket.on("cmd", async (name, options, ack) => {
      const command = commands[name];
      try {
        ack(command ? await command(options ?? {}) : { error: `unknown command ${name}` });
      } catch (err) {
        ack({ error: err.message });
      }
    });
  });
  const stop = async () => {
    io.close();
    // quit() lets pending commands finish; disconnect() would reject them.
    await Promise.allSettled([pub.quit(), sub.quit()]);
  };
  onCleanup(stop);
  return { kind: "node", port, url: `http://127.0.0.1:${port}`, io, pub, stop };
}

/** A connected client; it answers every "ask" with `answer` (its label by default). */
export async function connect(server, label, options = {}) {
  const socket = ioClient(server.url, { forceNew: true, reconnection: false, transports: ["websocket"], timeout: 5000, ...options });
  socket.label = label;
  socket.on("ask", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(label);
  });
  onCleanup(async () => socket.disconnect());
  await within(
    5000,
    new Promise((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("connect_error", reject);
    }),
    `client ${label} to connect to ${server.kind}`,
  );
  return socket;
}

/** Sends `cmd` to the client's server and resolves with the answer. */
export function cmd(socket, name, options = {}, ms = 6000) {
  return within(ms, socket.emitWithAck("cmd", name, options), `command ${name} on ${socket.label}`);
}

/** Resolves with the arguments of the next `event` on `socket`. */
export function nextEvent(socket, event, ms = 5000) {
  return within(ms, new Promise((resolve) => socket.once(event, (...args) => resolve(args))), `"${event}" on ${socket.label}`);
}

/** Resolves once `socket` got `event` `n` times. */
export function countEvents(socket, event, n, ms = 5000) {
  let seen = 0;
  return within(
    ms,
    new Promise((resolve) => {
      const listener = () => {
        seen += 1;
        if (seen === n) {
          socket.off(event, listener);
          resolve();
        }
      };
      socket.on(event, listener);
    }),
    `${n} "${event}" on ${socket.label}`,
  );
}

/** Collects every `event` a socket receives (for checks that something did NOT arrive). */
export function record(socket, event) {
  const seen = [];
  socket.on(event, (...args) => seen.push(args));
  return seen;
}

/** Runs `switchyard emit ...`. */
export function switchyardEmit(args) {
  return run(switchyardBin, ["emit", ...args]);
}

/** GET `url` (3 s at most): {status, json} (json undefined when the body is not JSON; status 0 on failure). */
export function httpGet(url, headers = {}) {
  return new Promise((resolve) => {
    const req = http.get(url, { headers }, (res) => {
      let body = "";
      res.on("data", (c) => (body += c));
      res.on("end", () => {
        let json;
        try {
          json = JSON.parse(body);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, json });
      });
    });
    req.on("error", () => resolve({ status: 0 }));
    req.setTimeout(3000, () => req.destroy());
  });
}

/**
 * Spawns the `switchyard` binary on 127.0.0.1:`port` (a free one by default) with `args` after
 * `--host`/`--port`, adds it to `started` at once (so a node that never gets ready is still stopped by
 * the caller), and resolves with {port, url, child, exited} once GET /readyz answers 200 (15 s at most).
 */
export async function startSwitchyardBinary(args, { port, started }) {
  port = port || (await freePort());
  const child = spawn(switchyardBin, ["--host", "127.0.0.1", "--port", String(port), ...args], {
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "info" },
    stdio: ["ignore", "ignore", process.env.CLUSTER_SERVER_LOG ? "inherit" : "ignore"],
  });
  const exited = new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal })));
  const node = { port, url: `http://127.0.0.1:${port}`, child, exited };
  started.push(node);
  await eventually(`node ${port} to be ready`, async () => (await httpGet(`${node.url}/readyz`)).status === 200, 15000);
  return node;
}

/**
 * The official client of `node` speaking as `name` (`auth.user`): WebSocket only, no reconnection,
 * added to `clients` for the caller to close; resolves once connected (5 s at most).
 */
export async function connectUser(node, name, clients) {
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

/** `socket.emitWithAck(...args)`, answered within 5 s. */
export const call = (socket, ...args) => within(5000, socket.emitWithAck(...args), `${args[0]} ack`);

/**
 * The mixed cluster most tests use: a Node socket.io server and two Switchyard nodes on one Redis
 * (`redis`: {url} or {clusterNodes}, with mode and subscriptionMode), a client of each (labels
 * node-client, sy1-client, sy2-client); resolves once every server counts the three servers.
 */
export async function startMixedTrio(redis) {
  const nodeServer = await startNodeServer(redis);
  const sy1 = await startSwitchyard(redis);
  const sy2 = await startSwitchyard(redis);
  const cn = await connect(nodeServer, "node-client");
  const c1 = await connect(sy1, "sy1-client");
  const c2 = await connect(sy2, "sy2-client");
  for (const c of [cn, c1, c2]) {
    await eventually(`${c.label}'s server to count 3 servers`, async () => (await cmd(c, "serverCount")) === 3);
  }
  return { nodeServer, sy1, sy2, cn, c1, c2 };
}
