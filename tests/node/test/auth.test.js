// JWT authentication with the official client against the `switchyard` binary: tokens in the handshake's
// `auth`, in an `Authorization: Bearer` header and in a cookie; every refusal reason; the `auth_expired`
// event and the disconnect when a token runs out, then a reconnect with a fresh token; the user room; the
// room from the handshake (`rooms.from_handshake`), with an ES256 key made here by node:crypto.
// Tokens are signed here with node:crypto, independently of Switchyard's own minting.
import { after, before, test } from "node:test";
import assert from "node:assert/strict";
import { createHmac, generateKeyPairSync, sign } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { REPO_ROOT, startServer } from "../lib/server.js";
import { closeAll, connect, next, once, sleep } from "../lib/client.js";

const SWITCHYARD = path.join(REPO_ROOT, "target/release/switchyard");
// This file always runs Switchyard's own binary, whatever INTEROP_SERVER_CMD says.
const skip = existsSync(SWITCHYARD) ? false : `not built: ${SWITCHYARD} (cargo build --release -p switchyard)`;
const SECRET = "a shared secret of at least 32 bytes, for tests";
const ORIGIN = "http://app.test";

let hs = null; // HS256, cookies allowed (allowed origins set)
let es = null; // ES256 public key, rooms from the handshake
let dir = null;
let ecKey = null;

const b64url = (data) => Buffer.from(data).toString("base64url");
const now = () => Math.floor(Date.now() / 1000);

/** A JWT with `claims` (exp defaults to 10 minutes from now), signed with `alg`. */
function jwt(claims, { alg = "HS256", secret = SECRET, key = null, header = {} } = {}) {
  const body = { exp: now() + 600, ...claims };
  const input = `${b64url(JSON.stringify({ alg, typ: "JWT", ...header }))}.${b64url(JSON.stringify(body))}`;
  let signature = "";
  if (alg === "HS256") signature = createHmac("sha256", secret).update(input).digest("base64url");
  if (alg === "ES256") signature = sign("sha256", Buffer.from(input), { key, dsaEncoding: "ieee-p1363" }).toString("base64url");
  return `${input}.${signature}`;
}

before(async () => {
  if (skip) return;
  dir = mkdtempSync(path.join(tmpdir(), "switchyard-auth-"));
  const pair = generateKeyPairSync("ec", { namedCurve: "P-256" });
  ecKey = pair.privateKey;
  const publicKeyFile = path.join(dir, "es256.pem");
  writeFileSync(publicKeyFile, pair.publicKey.export({ type: "spki", format: "pem" }));
  const common = {
    SWITCHYARD_SERVER_HOST: "127.0.0.1",
    SWITCHYARD_AUTH_JWT_LEEWAY_SECONDS: "0",
    SWITCHYARD_LIMITS_HANDSHAKES_PER_SECOND_PER_IP: "0",
    SWITCHYARD_LOG_LEVEL: "info",
  };
  [hs, es] = await Promise.all([
    startServer({
      command: `exec '${SWITCHYARD}'`,
      env: { ...common, SWITCHYARD_AUTH_JWT_SECRET: SECRET, SWITCHYARD_LIMITS_ALLOWED_ORIGINS: ORIGIN },
    }),
    startServer({
      command: `exec '${SWITCHYARD}'`,
      env: { ...common, SWITCHYARD_AUTH_JWT_PUBLIC_KEY_FILE: publicKeyFile, SWITCHYARD_ROOMS_FROM_HANDSHAKE: "true" },
    }),
  ]);
});

after(async () => {
  await Promise.all([hs?.stop(), es?.stop()]);
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Resolves with the connect_error of `socket` (and asserts it never connected). */
async function refusal(socket) {
  const [error] = await once(socket, "connect_error", 5000);
  assert.equal(socket.connected, false);
  return { message: error.message, data: error.data };
}

test("a valid token in auth connects, and the socket is in user:<sub>", { skip, timeout: 20000 }, async (t) => {
  const aliceToken = jwt({ sub: "alice", rooms: ["*"] });
  const alice = connect(hs.url, "/", { auth: { token: aliceToken } });
  const tab2 = connect(hs.url, "/", { auth: { token: aliceToken }, transports: ["polling"] });
  const bob = connect(hs.url, "/", { auth: { token: jwt({ sub: "bob", rooms: ["*"] }) } });
  t.after(() => closeAll(alice, tab2, bob));
  await Promise.all([once(alice, "connect"), once(tab2, "connect"), once(bob, "connect")]);
  // Alice's second tab publishes to the room user:alice with the built-in `message` (docs/EVENTS.md):
  // both of her tabs are in that room since they connected, so her first tab hears it; Bob, in
  // user:bob only, does not, and may not join Alice's room even with a token allowing every room.
  const heard = next(alice, "message");
  let bobHeard = false;
  bob.on("message", () => (bobHeard = true));
  assert.deepEqual(await bob.timeout(5000).emitWithAck("join", "user:alice"), { ok: false, error: "forbidden" });
  const ack = await tab2.timeout(5000).emitWithAck("message", "user:alice", "to all my tabs");
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const message = await heard;
  assert.equal(message.data, "to all my tabs");
  assert.equal(message.user, "alice");
  assert.equal(message.room, "user:alice");
  await sleep(200);
  assert.equal(bobHeard, false);
});

test("Bearer header and cookie carry the token", { skip, timeout: 20000 }, async (t) => {
  const token = jwt({ sub: "carol" });
  for (const transports of [["websocket"], ["polling"]]) {
    const bearer = connect(hs.url, "/", { transports, extraHeaders: { Authorization: `Bearer ${token}` } });
    const cookie = connect(hs.url, "/", { transports, extraHeaders: { Cookie: `lang=en; token=${token}`, Origin: ORIGIN } });
    t.after(() => closeAll(bearer, cookie));
    await Promise.all([once(bearer, "connect"), once(cookie, "connect")]);
  }
  // A cookie from a site not in the allowed origins never gets that far.
  const other = connect(hs.url, "/", { transports: ["polling"], extraHeaders: { Cookie: `token=${token}`, Origin: "http://evil.test" } });
  t.after(() => closeAll(other));
  const [error] = await once(other, "connect_error", 5000);
  assert.equal(other.connected, false);
  assert.notEqual(error.message, "Auth error");
});

test("each refusal says missing, invalid or expired", { skip, timeout: 20000 }, async (t) => {
  const none = `${b64url(JSON.stringify({ alg: "none", typ: "JWT" }))}.${b64url(JSON.stringify({ sub: "admin", exp: now() + 600 }))}.`;
  const cases = [
    [{}, "missing"],
    [{ token: "not a token" }, "invalid"],
    [{ token: jwt({ sub: "mallory" }, { secret: "some other secret of at least 32 bytes" }) }, "invalid"],
    [{ token: none }, "invalid"],
    [{ token: jwt({ sub: "mallory" }, { alg: "ES256", key: ecKey }) }, "invalid"],
    [{ token: jwt({ sub: "mallory", nbf: now() + 3600 }) }, "invalid"],
    [{ token: jwt({ exp: now() + 600 }) }, "invalid"],
    [{ token: jwt({ sub: "late", exp: now() - 5 }) }, "expired"],
  ];
  for (const [auth, reason] of cases) {
    const socket = connect(hs.url, "/", { auth });
    t.after(() => closeAll(socket));
    assert.deepEqual(await refusal(socket), { message: "Auth error", data: { reason } }, JSON.stringify(auth));
  }
  // The same over a key of another kind: HS256 "signed" with the ES256 public key is refused.
  const socket = connect(es.url, "/", { auth: { token: jwt({ sub: "x" }, { secret: "x".repeat(40) }), room: "r" } });
  t.after(() => closeAll(socket));
  assert.deepEqual(await refusal(socket), { message: "Auth error", data: { reason: "invalid" } });
  const metrics = await (await fetch(`${hs.url}/metrics`)).text();
  assert.match(metrics, /switchyard_auth_failures_total\{reason="invalid"\} [1-9]/);
  assert.match(metrics, /switchyard_auth_failures_total\{reason="expired"\} [1-9]/);
  assert.doesNotMatch(hs.output(), /eyJ/, "tokens never appear in the log");
});

test("an expiring token gets auth_expired, then a server disconnect; a fresh token reconnects", { skip, timeout: 20000 }, async (t) => {
  const socket = connect(hs.url, "/", { auth: { token: jwt({ sub: "dave", exp: now() + 2 }) } });
  t.after(() => closeAll(socket));
  await once(socket, "connect");
  // Both listeners first: the two packets may arrive in one read.
  const order = [];
  socket.on("auth_expired", () => order.push("auth_expired"));
  const expired = once(socket, "auth_expired", 6000);
  const disconnected = once(socket, "disconnect", 6000);
  socket.on("disconnect", () => order.push("disconnect"));
  assert.deepEqual((await expired)[0], { reason: "expired" });
  assert.equal((await disconnected)[0], "io server disconnect");
  assert.deepEqual(order, ["auth_expired", "disconnect"]);
  socket.auth = { token: jwt({ sub: "dave" }) };
  socket.connect();
  await once(socket, "connect");
});

test("rooms.from_handshake: the room from auth is joined, a connection without one is refused (ES256)", { skip, timeout: 20000 }, async (t) => {
  const token = jwt({ sub: "erin", rooms: ["chat:*"] }, { alg: "ES256", key: ecKey });
  const member = connect(es.url, "/", { auth: { token, room: "chat:lobby" } });
  const speaker = connect(es.url, "/", { auth: { token, room: "chat:side" } });
  t.after(() => closeAll(member, speaker));
  await Promise.all([once(member, "connect"), once(speaker, "connect")]);
  // The speaker joins chat:lobby with the built-in `join` and publishes there: the member hears it, being
  // in chat:lobby only because its handshake named it.
  const heard = next(member, "message");
  assert.deepEqual(await speaker.timeout(5000).emitWithAck("join", "chat:lobby"), { ok: true, room: "chat:lobby" });
  const ack = await speaker.timeout(5000).emitWithAck("message", "chat:lobby", "hello lobby");
  assert.equal(ack.ok, true, JSON.stringify(ack));
  const message = await heard;
  assert.equal(message.room, "chat:lobby");
  assert.equal(message.data, "hello lobby");

  for (const auth of [{ token }, { token, room: "" }, { token, room: "ops" }, { token, room: "user:someone" }]) {
    const socket = connect(es.url, "/", { auth });
    t.after(() => closeAll(socket));
    assert.deepEqual(await refusal(socket), { message: "Invalid room id", data: undefined }, JSON.stringify(auth));
  }
});
