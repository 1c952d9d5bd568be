// Processes and bounded waits shared by the Node test suites (tests/cluster, tests/admin, tests/kafka):
// a registry of cleanups, free ports, redis-server, stopping a child within a bound. No package imports,
// so any suite can load it by relative path whatever its own node_modules hold.
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
/** The repository's root directory. */
export const repoRoot = path.resolve(here, "../..");
/** The release `switchyard` binary (SWITCHYARD_BIN overrides it). */
export const switchyardBin = process.env.SWITCHYARD_BIN || path.join(repoRoot, "target/release/switchyard");

const cleanups = [];

/** Registers `fn` (sync or async) to run at {@link stopAll}. */
export function onCleanup(fn) {
  cleanups.push(fn);
}

/** Runs every registered cleanup, newest first; one that fails does not stop the others. */
export async function stopAll() {
  while (cleanups.length) {
    const cleanup = cleanups.pop();
    try {
      await cleanup();
    } catch {
      // Best effort: the next cleanup still runs.
    }
  }
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Rejects if `promise` takes longer than `ms`. */
export function within(ms, promise, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Polls `check` (sync or async) until it returns truthy, for at most `ms`; resolves with that value. */
export async function eventually(what, check, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(25);
  }
}

/** True while `child` runs. A child killed by a signal keeps `exitCode` null: `signalCode` says it ended. */
export function running(child) {
  return child.exitCode === null && child.signalCode === null;
}

/**
 * Stops `child`, bounded: `signal` (SIGTERM by default), then SIGKILL after `graceMs` (reported on
 * stderr: the suite must end even if a process hangs). Safe on a child that has exited already (its
 * "exit" has fired then, so waiting for it would never end: this once hung a suite).
 */
export async function stopChild(child, { signal = "SIGTERM", graceMs = 5000, name = `process ${child.pid}` } = {}) {
  if (!running(child)) return;
  const exited = new Promise((r) => child.once("exit", r));
  child.kill(signal);
  if (signal !== "SIGKILL") {
    const timer = setTimeout(() => {
      if (running(child)) {
        console.error(`${name} did not exit within ${graceMs} ms of ${signal}: killed`);
        child.kill("SIGKILL");
      }
    }, graceMs);
    await exited;
    clearTimeout(timer);
    return;
  }
  await within(graceMs, exited, `${name} to exit after SIGKILL`);
}

/** Resolves true if a Redis server on `port` answers PING. */
export function pingRedis(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1");
    let data = "";
    const done = (ok) => {
      socket.destroy();
      resolve(ok);
    };
    socket.setTimeout(1000, () => done(false));
    socket.on("error", () => done(false));
    socket.on("connect", () => socket.write("PING\r\n"));
    socket.on("data", (chunk) => {
      data += chunk;
      if (data.includes("\r\n")) done(data.startsWith("+PONG"));
    });
  });
}

/**
 * Starts a redis-server on `port` (a free one if not given), keeping nothing on disk unless `extraArgs`
 * say so (it runs in a scratch directory); resolves with {port, url, dir, stop} once it answers PING.
 * `stop()` kills it (SIGKILL, bounded) and may be called twice; `keepDir` keeps its directory for a restart.
 */
export async function startRedis(extraArgs = [], port, { dir } = {}) {
  port = port || (await freePort());
  const ownDir = !dir;
  dir = dir || mkdtempSync(path.join(os.tmpdir(), "switchyard-test-redis-"));
  const child = spawn(
    "redis-server",
    ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir, ...extraArgs],
    { stdio: "ignore" },
  );
  const stop = async ({ keepDir = false } = {}) => {
    await stopChild(child, { signal: "SIGKILL", name: `redis-server on ${port}` });
    if (ownDir && !keepDir) rmSync(dir, { recursive: true, force: true });
  };
  onCleanup(stop);
  await eventually(`redis-server on ${port}`, () => pingRedis(port), 10000);
  return { port, url: `redis://127.0.0.1:${port}`, dir, child, stop };
}
