// TLS: the official client over wss and over https long-polling against the `switchyard` binary, started
// with a CA and a server certificate generated for this run (the `tls-certs` fixture binary). The
// client trusts only that CA, and a client that does not trust it is refused.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { REPO_ROOT, startServer } from "../lib/server.js";
import { closeAll, connect, next, once, transportOf, until } from "../lib/client.js";

const SWITCHYARD = path.join(REPO_ROOT, "target/release/switchyard");
const TLS_CERTS = path.join(REPO_ROOT, "target/release/tls-certs");
// This file always runs Switchyard's own binary, whatever INTEROP_SERVER_CMD says.
const missing = [SWITCHYARD, TLS_CERTS].filter((file) => !existsSync(file));
const skip = missing.length > 0 ? `not built: ${missing.join(", ")} (cargo build --release --workspace)` : false;

let server = null;
let ca = null;
let dir = null;

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), "switchyard-tls-"));
  execFileSync(TLS_CERTS, [dir], { timeout: 10000 });
  ca = readFileSync(path.join(dir, "ca.pem"));
  server = await startServer({
    command: `exec '${SWITCHYARD}'`,
    ca,
    env: {
      SWITCHYARD_SERVER_HOST: "127.0.0.1",
      SWITCHYARD_TLS_CERT_FILE: path.join(dir, "cert.pem"),
      SWITCHYARD_TLS_KEY_FILE: path.join(dir, "key.pem"),
      SWITCHYARD_LOG_LEVEL: "info",
    },
  });
});

after(async () => {
  if (server) await server.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function chatRoundTrip(socket, room) {
  await once(socket, "connect", 10000);
  const joined = await socket.timeout(5000).emitWithAck("join", room);
  assert.deepEqual(joined, { ok: true, room });
  const message = next(socket, "message");
  const ack = await socket.timeout(5000).emitWithAck("message", room, "hello over TLS ✓");
  assert.equal(ack.ok, true);
  const received = await message;
  assert.equal(received.data, "hello over TLS ✓");
  assert.equal(received.user, "alice");
  assert.equal(received.id, ack.id);
}

for (const transports of [["websocket"], ["polling"]]) {
  const name = transports[0] === "websocket" ? "wss" : "https polling";
  test(`${name}: the official client connects trusting the test CA and chats`, { skip, timeout: 20000 }, async (t) => {
    const socket = connect(server.url, "/", { transports, ca, auth: { user: "alice" } });
    t.after(() => closeAll(socket));
    await chatRoundTrip(socket, `room-${transports[0]}`);
    assert.equal(transportOf(socket), transports[0]);
    assert.ok(server.url.startsWith("https://"));
  });
}

test("https polling upgrades to wss", { skip, timeout: 20000 }, async (t) => {
  const socket = connect(server.url, "/", { ca, auth: { user: "alice" } });
  t.after(() => closeAll(socket));
  await chatRoundTrip(socket, "room-upgrade");
  await until(() => transportOf(socket) === "websocket", 5000, () => `transport is ${transportOf(socket)}`);
});

for (const transports of [["websocket"], ["polling"]]) {
  test(`${transports[0]}: a client that does not trust the CA is refused`, { skip, timeout: 20000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    const [error] = await once(socket, "connect_error", 10000);
    assert.ok(error instanceof Error);
    assert.equal(socket.connected, false);
  });
}

test("the server logs that TLS is on", { skip, timeout: 5000 }, () => {
  assert.match(server.output(), /tls\W+true/);
});
