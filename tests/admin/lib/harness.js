// Setup for the admin UI tests: Switchyard servers (target/release/switchyard) with [admin] set through
// SWITCHYARD_* variables, redis-server on free loopback ports, a Node socket.io server instrumented with
// @socket.io/admin-ui, and socket.io-client connections. `stopAll()` stops everything started here.
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import net from "node:net";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { io as ioClient } from "socket.io-client";
import { eventually, freePort, onCleanup, stopChild, switchyardBin, within } from "../../lib/process.js";

// The process helpers live in tests/lib/process.js (shared with tests/cluster and tests/kafka).
export { eventually, freePort, repoRoot, sleep, startRedis, stopAll, switchyardBin, within } from "../../lib/process.js";

const here = path.dirname(fileURLToPath(import.meta.url));
export const uiDir = path.join(here, "../node_modules/@socket.io/admin-ui/ui/dist");
/** bcrypt of "changeit" (the hash @socket.io/admin-ui's own tests use). */
export const HASH = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";
export const PASSWORD = "changeit";

function canConnect(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(500, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => done(true));
  });
}

/** A Switchyard server with the admin namespace; `env` adds or overrides SWITCHYARD_* variables. */
export async function startSwitchyard(env = {}) {
  const port = await freePort();
  const child = spawn(switchyardBin, [], {
    env: {
      PATH: process.env.PATH,
      RUST_LOG: process.env.ADMIN_SERVER_LOG ? "info" : "warn",
      SWITCHYARD_SERVER_HOST: "127.0.0.1",
      SWITCHYARD_SERVER_PORT: String(port),
      // Without connection state recovery: broadcasts then carry no offset argument to compare around.
      SWITCHYARD_RECOVERY_ENABLED: "false",
      SWITCHYARD_ADMIN_ENABLED: "true",
      SWITCHYARD_ADMIN_USERNAME: "admin",
      SWITCHYARD_ADMIN_PASSWORD_HASH: HASH,
      SWITCHYARD_ADMIN_SERVER_ID: `switchyard-${port}`,
      ...env,
    },
    stdio: ["ignore", "inherit", process.env.ADMIN_SERVER_LOG ? "inherit" : "pipe"],
  });
  let stderr = "";
  child.stderr?.on("data", (chunk) => (stderr += chunk));
  // The admin tests' servers hold nothing worth draining: SIGKILL, bounded.
  const stop = () => stopChild(child, { signal: "SIGKILL", name: `switchyard on ${port}` });
  onCleanup(stop);
  await eventually(
    `switchyard on ${port}`,
    async () => {
      if (child.exitCode !== null) throw new Error(`switchyard exited (${child.exitCode}): ${stderr}`);
      return canConnect(port);
    },
    15000,
  );
  return { port, url: `http://127.0.0.1:${port}`, serverId: env.SWITCHYARD_ADMIN_SERVER_ID || `switchyard-${port}`, child, stop, stderr: () => stderr };
}

/** A Node socket.io server on the Redis adapter, instrumented with @socket.io/admin-ui. */
export async function startInstrumentedNode(redisUrl, options) {
  const { Server } = await import("socket.io");
  const { createAdapter } = await import("@socket.io/redis-adapter");
  const { createClient } = await import("redis");
  const { instrument, RedisStore } = await import("@socket.io/admin-ui");
  const pub = createClient({ url: redisUrl });
  const sub = pub.duplicate();
  await Promise.all([pub.connect(), sub.connect()]);
  // RedisStore of @socket.io/admin-ui 0.5.1 speaks the callback API of redis@3 (npm alias redis-v3).
  const { default: redisV3 } = await import("redis-v3");
  const storeClient = redisV3.createClient({ url: redisUrl });
  const port = await freePort();
  const httpServer = createServer();
  const io = new Server(httpServer, { adapter: createAdapter(pub, sub) });
  instrument(io, { store: new RedisStore(storeClient), ...options });
  await new Promise((resolve) => httpServer.listen(port, "127.0.0.1", resolve));
  onCleanup(async () => {
    io.close();
    await Promise.allSettled([pub.quit(), sub.quit(), new Promise((resolve) => storeClient.quit(resolve))]);
  });
  return { io, port, url: `http://127.0.0.1:${port}` };
}

/** A socket.io-client connection (websocket only unless `opts.transports` says otherwise). */
export function connect(url, nsp = "/", opts = {}) {
  const socket = ioClient(url + nsp, { forceNew: true, reconnection: false, transports: ["websocket"], ...opts });
  onCleanup(() => socket.disconnect());
  return socket;
}

/** Resolves once `socket` connected; rejects with its connect_error. */
export function connected(socket, ms = 5000) {
  if (socket.connected) return Promise.resolve(socket);
  return within(
    ms,
    new Promise((resolve, reject) => {
      socket.once("connect", () => resolve(socket));
      socket.once("connect_error", reject);
    }),
    "connect",
  );
}

/**
 * An admin connection that records every event it gets: `admin.events` is a list of {event, args, at}.
 * `admin.next(event, filter)` resolves with the args of the first matching event (past or future).
 */
export function adminClient(url, auth = { username: "admin", password: PASSWORD }, opts = {}) {
  const socket = connect(url, opts.namespace || "/admin", { auth, ...opts });
  const events = [];
  const waiters = [];
  socket.onAny((event, ...args) => {
    events.push({ event, args, at: Date.now() });
    for (const w of [...waiters]) {
      if (w.event === event && w.filter(...args)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(args);
      }
    }
  });
  const next = (event, filter = () => true, ms = 5000) => {
    const past = events.find((e) => e.event === event && filter(...e.args));
    if (past) return Promise.resolve(past.args);
    return within(
      ms,
      new Promise((resolve) => waiters.push({ event, filter, resolve })),
      `admin event ${event}`,
    );
  };
  const of = (event) => events.filter((e) => e.event === event).map((e) => e.args);
  return { socket, events, next, of };
}
