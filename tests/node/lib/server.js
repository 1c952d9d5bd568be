// Starts the server under test for one test file and stops it when the file is done.
//
// The command comes from INTEROP_SERVER_CMD (run through /bin/sh, so it may carry arguments); the default
// is Switchyard's interop example from the release build. The server gets PORT=<free port> in its
// environment and must listen on 127.0.0.1:<PORT>. Each test file calls `useServer()` once, so files
// run in parallel on their own ports.
import { spawn } from "node:child_process";
import { createServer } from "node:net";
import { get as httpsGet } from "node:https";
import { after, before } from "node:test";
import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../../..");
const DEFAULT_COMMAND = path.join(REPO_ROOT, "target/release/interop");
const READY_TIMEOUT_MS = Number(process.env.INTEROP_READY_TIMEOUT_MS || 15000);
const STOP_GRACE_MS = 3000;
// Keep the tail of the server's output for failure messages without growing without bound.
const OUTPUT_TAIL_BYTES = 16 * 1024;

function serverCommand() {
  const configured = process.env.INTEROP_SERVER_CMD;
  if (configured && configured.trim() !== "") return configured;
  if (!existsSync(DEFAULT_COMMAND)) {
    throw new Error(
      `server under test not found: ${DEFAULT_COMMAND} (build it with ` +
        "`cargo build --release -p switchyard-fixtures --bin interop`, or set INTEROP_SERVER_CMD)",
    );
  }
  return `exec '${DEFAULT_COMMAND}'`;
}

function freePort() {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.unref();
    probe.on("error", reject);
    probe.listen(0, "127.0.0.1", () => {
      const { port } = probe.address();
      probe.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

async function answersHandshake(baseUrl, ca) {
  if (ca) return answersHandshakeOverTls(baseUrl, ca);
  try {
    const response = await fetch(`${baseUrl}/socket.io/?EIO=4&transport=polling`, {
      signal: AbortSignal.timeout(1000),
    });
    const body = await response.text();
    return response.status === 200 && body.startsWith("0{");
  } catch {
    return false;
  }
}

// fetch() cannot be given a CA: the TLS check uses node:https, trusting only `ca`.
function answersHandshakeOverTls(baseUrl, ca) {
  return new Promise((resolve) => {
    const request = httpsGet(
      `${baseUrl}/socket.io/?EIO=4&transport=polling`,
      { ca, timeout: 1000 },
      (response) => {
        let body = "";
        response.setEncoding("utf8");
        response.on("data", (chunk) => (body += chunk));
        response.on("end", () => resolve(response.statusCode === 200 && body.startsWith("0{")));
        response.on("error", () => resolve(false));
      },
    );
    request.on("timeout", () => request.destroy());
    request.on("error", () => resolve(false));
  });
}

/**
 * Starts the server under test; resolves once it answers an Engine.IO handshake.
 * Options (all optional): `command` instead of INTEROP_SERVER_CMD or the interop fixture; `env`, added
 * to the server's environment; `ca` (PEM), to reach the server over https trusting only that CA.
 */
export async function startServer({ command: ownCommand, env = {}, ca } = {}) {
  const command = ownCommand ?? serverCommand();
  const port = await freePort();
  const baseUrl = `${ca ? "https" : "http"}://127.0.0.1:${port}`;
  let output = "";
  const child = spawn("/bin/sh", ["-c", command], {
    env: { ...process.env, ...env, PORT: String(port) },
    stdio: ["ignore", "pipe", "pipe"],
    // Own process group, so stopping it also stops anything the shell command started.
    detached: true,
  });
  const keepTail = (chunk) => {
    output = (output + chunk.toString()).slice(-OUTPUT_TAIL_BYTES);
    if (process.env.INTEROP_SERVER_LOG) process.stderr.write(`[server:${port}] ${chunk}`);
  };
  child.stdout.on("data", keepTail);
  child.stderr.on("data", keepTail);
  let exited = null;
  const exitedPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exited = { code, signal };
      resolve(exited);
    });
  });
  // Safety net: never leave the server running if the test process ends early (an exception, or a
  // signal from `timeout`, Ctrl-C or a closed terminal: the server's own process group gets none of those).
  const killOnExit = () => killGroup(child, "SIGKILL");
  process.on("exit", killOnExit);
  const onSignal = (signal) => {
    killGroup(child, "SIGKILL");
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGHUP" ? 1 : 15));
  };
  for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.once(signal, onSignal);

  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await answersHandshake(baseUrl, ca))) {
    if (exited) {
      throw new Error(
        `server under test exited before answering (code ${exited.code}, signal ${exited.signal});` +
          ` command: ${command}\n--- server output ---\n${output}`,
      );
    }
    if (Date.now() > deadline) {
      killGroup(child, "SIGKILL");
      throw new Error(
        `server under test did not answer GET /socket.io/?EIO=4&transport=polling on ${baseUrl}` +
          ` within ${READY_TIMEOUT_MS} ms; command: ${command}\n--- server output ---\n${output}`,
      );
    }
    await sleep(100);
  }

  return {
    url: baseUrl,
    port,
    output: () => output,
    async stop() {
      process.off("exit", killOnExit);
      for (const signal of ["SIGTERM", "SIGINT", "SIGHUP"]) process.off(signal, onSignal);
      if (exited) return;
      killGroup(child, "SIGTERM");
      const stopped = await Promise.race([exitedPromise, sleep(STOP_GRACE_MS).then(() => null)]);
      if (!stopped) {
        killGroup(child, "SIGKILL");
        await Promise.race([exitedPromise, sleep(STOP_GRACE_MS)]);
      }
    },
  };
}

function killGroup(child, signal) {
  try {
    process.kill(-child.pid, signal);
  } catch {
    // Already gone.
  }
}

/**
 * Registers before/after hooks that start the server for the current test file and stop it afterwards.
 * Returns a handle whose `url` is valid inside tests.
 */
export function useServer(options) {
  const handle = { url: null, server: null };
  before(async () => {
    handle.server = await startServer(options);
    handle.url = handle.server.url;
  });
  after(async () => {
    if (handle.server) await handle.server.stop();
  });
  return handle;
}
