// The built-in events (docs/EVENTS.md) with the official client against the `switchyard` binary:
// every event's ack shapes and error strings, what each room member receives, presence
// announcements, signals, and the platform's limits applying to the built-in events.
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import path from "node:path";
import { REPO_ROOT, startServer } from "../lib/server.js";
import { closeAll, connect, next, once, record, sleep, until } from "../lib/client.js";

const SWITCHYARD = path.join(REPO_ROOT, "target/release/switchyard");
// This file always runs Switchyard's own binary, whatever INTEROP_SERVER_CMD says.
const skip = existsSync(SWITCHYARD) ? false : `not built: ${SWITCHYARD} (cargo build --release -p switchyard)`;
const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

const BASE_ENV = {
  SWITCHYARD_SERVER_HOST: "127.0.0.1",
  SWITCHYARD_SERVER_CHAT_PAGE: "false",
  SWITCHYARD_LOG_LEVEL: "warn",
};

let server = null;
const sockets = [];

before(async () => {
  if (skip) return;
  server = await startServer({ command: `exec '${SWITCHYARD}'`, env: BASE_ENV });
});

after(async () => {
  closeAll(...sockets);
  if (server) await server.stop();
});

/** A connected client speaking as `user` (handshake auth.user: no auth is configured). */
async function user(name, url = server.url) {
  const socket = connect(url, "/", { transports: ["websocket"], auth: name ? { user: name } : {} });
  sockets.push(socket);
  await once(socket, "connect", 5000);
  return socket;
}

const call = (socket, ...args) => socket.timeout(5000).emitWithAck(...args);
/** The first argument of each recorded event (with connection state recovery on, the server's
 * default, the client also gets each non-volatile event's offset as a last argument). */
const firsts = (calls) => calls.map((args) => args[0]);
const refused = (error) => ({ ok: false, error });
let roomCounter = 0;
const freshRoom = () => `room-${process.pid}-${++roomCounter}`;

describe("built-in events", { skip }, () => {
  test("join and leave: acks and errors", async () => {
    const alice = await user("alice");
    const room = freshRoom();
    for (const bad of [[], [42], [""], [null], [{ room }], ["x".repeat(257)], [alice.id]]) {
      assert.deepEqual(await call(alice, "join", ...bad), refused("invalid"), `join ${JSON.stringify(bad)}`);
      assert.deepEqual(await call(alice, "leave", ...bad), refused("invalid"), `leave ${JSON.stringify(bad)}`);
    }
    assert.deepEqual(await call(alice, "join", "x".repeat(256)), { ok: true, room: "x".repeat(256) });
    assert.deepEqual(await call(alice, "join", room), { ok: true, room });
    assert.deepEqual(await call(alice, "join", room), { ok: true, room }, "joining twice is fine");
    // Users' own rooms: only one's own, which every socket is in already and cannot leave.
    assert.deepEqual(await call(alice, "join", "user:bob"), refused("forbidden"));
    assert.deepEqual(await call(alice, "join", "user:alice"), { ok: true, room: "user:alice" });
    assert.deepEqual(await call(alice, "leave", "user:alice"), refused("forbidden"));
    assert.deepEqual(await call(alice, "leave", room), { ok: true, room });
    assert.deepEqual(await call(alice, "leave", room), { ok: true, room }, "leaving a room one is not in is fine");
  });

  test("message: every member on the server gets it once, sender included; acks and errors", async () => {
    const [alice, bob, carol] = [await user("alice"), await user("bob"), await user("carol")];
    const room = freshRoom();
    assert.deepEqual(await call(alice, "message", room, "too early"), refused("forbidden"), "not joined");
    await call(alice, "join", room);
    await call(bob, "join", room);
    assert.deepEqual(await call(alice, "message", room), refused("invalid"), "no data");
    assert.deepEqual(await call(alice, "message", 7, "x"), refused("invalid"), "room not a string");
    assert.deepEqual(await call(carol, "message", room, "x"), refused("forbidden"), "carol has not joined");
    const seen = [alice, bob, carol].map((s) => record(s, "message"));
    const data = { text: "hello", nested: [1, 2, { deep: true }] };
    const ack = await call(alice, "message", room, data);
    assert.deepEqual(Object.keys(ack).sort(), ["id", "ok", "ts"]);
    assert.equal(ack.ok, true);
    assert.match(ack.id, UUID_V7);
    assert.ok(Math.abs(ack.ts - Date.now()) < 10000, `ts in ms: ${ack.ts}`);
    await until(() => seen[0].length === 1 && seen[1].length === 1, 5000, () => JSON.stringify(seen));
    const expected = { id: ack.id, room, user: "alice", data, ts: ack.ts };
    assert.deepEqual(firsts(seen[0]), [expected]);
    assert.deepEqual(firsts(seen[1]), [expected]);
    // Ids grow with time, across messages.
    const second = await call(bob, "message", room, "again");
    assert.ok(second.id > ack.id, `${second.id} after ${ack.id}`);
    await until(() => seen[0].length === 2, 5000);
    await sleep(100);
    assert.equal(seen[2].length, 0, "a socket outside the room gets nothing");
    assert.equal(seen[0].length, 2, "each message arrives once");
  });

  test("message carries binary data unchanged", async () => {
    const [alice, bob] = [await user("alice"), await user("bob")];
    const room = freshRoom();
    await call(alice, "join", room);
    await call(bob, "join", room);
    const got = next(bob, "message");
    const ack = await call(alice, "message", room, { file: Buffer.from([0, 1, 2, 255]), name: "bytes.bin" });
    assert.equal(ack.ok, true);
    const message = await got;
    assert.equal(message.user, "alice");
    assert.equal(message.data.name, "bytes.bin");
    assert.deepEqual([...message.data.file], [0, 1, 2, 255]);
  });

  test("typing: the others in the room, not the sender; only when joined", async () => {
    const [alice, bob, carol] = [await user("alice"), await user("bob"), await user("carol")];
    const room = freshRoom();
    assert.deepEqual(await call(alice, "typing", room), refused("forbidden"));
    await call(alice, "join", room);
    await call(bob, "join", room);
    const [aliceSeen, carolSeen] = [record(alice, "typing"), record(carol, "typing")];
    const got = next(bob, "typing");
    assert.deepEqual(await call(alice, "typing", room), { ok: true });
    assert.deepEqual(await got, { room, user: "alice" });
    // Without an ack, as the chat page sends it.
    const again = next(bob, "typing");
    alice.emit("typing", room);
    assert.deepEqual(await again, { room, user: "alice" });
    await sleep(100);
    assert.deepEqual(aliceSeen, [], "not to the sender");
    assert.deepEqual(carolSeen, [], "not outside the room");
    assert.deepEqual(await call(alice, "typing", 3), refused("invalid"));
  });

  test("presence: user-connected once per user, presence lists users, user-disconnected on the last leave or disconnect", async () => {
    const room = freshRoom();
    const watcher = await user("watcher");
    await call(watcher, "join", room);
    const connected = record(watcher, "user-connected");
    const disconnected = record(watcher, "user-disconnected");
    const alice1 = await user("alice");
    const alice2 = await user("alice");
    const bob = await user("bob");
    await call(alice1, "join", room);
    await call(alice2, "join", room);
    await call(bob, "join", room);
    assert.deepEqual(await call(watcher, "presence", room), { ok: true, users: ["alice", "bob", "watcher"] });
    await until(() => connected.length === 2, 5000, () => JSON.stringify(connected));
    assert.deepEqual(firsts(connected), [{ room, user: "alice" }, { room, user: "bob" }], "alice's second tab is no news");
    // alice's first tab leaves, then the second disconnects: one user-disconnected, after the last.
    await call(alice1, "leave", room);
    await sleep(100);
    assert.deepEqual(disconnected, []);
    alice2.disconnect();
    await until(() => disconnected.length === 1, 5000);
    assert.deepEqual(firsts(disconnected), [{ room, user: "alice" }]);
    assert.deepEqual(await call(watcher, "presence", room), { ok: true, users: ["bob", "watcher"] });
    await call(bob, "leave", room);
    await until(() => disconnected.length === 2, 5000);
    assert.deepEqual(disconnected[1][0], { room, user: "bob" });
    assert.deepEqual(await call(watcher, "presence", room), { ok: true, users: ["watcher"] });
    assert.deepEqual(await call(watcher, "presence", freshRoom()), { ok: true, users: [] }, "an empty room");
    assert.deepEqual(await call(watcher, "presence", 5), refused("invalid"));
    assert.deepEqual(await call(watcher, "presence", "user:bob"), refused("forbidden"), "users' own rooms are private");
    // A socket without a user name speaks as its socket id.
    const anonymous = await user(null);
    const anonRoom = freshRoom();
    await call(anonymous, "join", anonRoom);
    assert.deepEqual(await call(anonymous, "presence", anonRoom), { ok: true, users: [anonymous.id] });
  });

  test("signal: to every socket of the user, from the sender; offline and invalid", async () => {
    const alice = await user("alice-s");
    const bob1 = await user("bob-s");
    const bob2 = await user("bob-s");
    const got = [next(bob1, "signal"), next(bob2, "signal")];
    const offer = { type: "offer", sdp: "v=0..." };
    assert.deepEqual(await call(alice, "signal", "bob-s", offer), { ok: true });
    for (const message of await Promise.all(got)) assert.deepEqual(message, { from: "alice-s", data: offer });
    assert.deepEqual(await call(alice, "signal", "nobody-at-all", offer), refused("offline"));
    assert.deepEqual(await call(alice, "signal", "bob-s"), refused("invalid"), "no data");
    assert.deepEqual(await call(alice, "signal", 12, offer), refused("invalid"), "user not a string");
    assert.deepEqual(await call(alice, "signal", "", offer), refused("invalid"), "empty user");
    // Once bob's sockets are gone he is offline.
    closeAll(bob1, bob2);
    const deadline = Date.now() + 5000;
    while ((await call(alice, "signal", "bob-s", offer)).ok) {
      assert.ok(Date.now() < deadline, "bob offline within 5 s of closing his sockets");
      await sleep(50);
    }
  });
});

describe("built-in events under the platform's limits", { skip }, () => {
  let limited = null;
  before(async () => {
    limited = await startServer({
      command: `exec '${SWITCHYARD}'`,
      env: {
        ...BASE_ENV,
        SWITCHYARD_LIMITS_EVENTS_PER_SECOND: "5",
        SWITCHYARD_LIMITS_EVENTS_BURST: "5",
        SWITCHYARD_LIMITS_RATE_LIMIT_DISCONNECT_AFTER: "0",
        SWITCHYARD_LIMITS_ROOMS_PER_SOCKET: "3",
        SWITCHYARD_ENGINE_MAX_PAYLOAD: "2000",
      },
    });
  });
  after(async () => {
    if (limited) await limited.stop();
  });

  test("the event rate applies to built-in events", async () => {
    const alice = await user("alice", limited.url);
    const replies = await Promise.all(Array.from({ length: 8 }, () => call(alice, "typing", "nowhere")));
    const limitedReplies = replies.filter((r) => r.error === "rate_limited");
    assert.ok(limitedReplies.length >= 2, JSON.stringify(replies));
    assert.deepEqual(limitedReplies[0], { error: "rate_limited" });
  });

  test("rooms per socket: too_many_rooms (the user's own room counts)", async () => {
    const alice = await user("alice", limited.url);
    await sleep(1100); // a fresh token bucket
    assert.deepEqual(await call(alice, "join", "a"), { ok: true, room: "a" });
    assert.deepEqual(await call(alice, "join", "b"), { ok: true, room: "b" });
    assert.deepEqual(await call(alice, "join", "c"), refused("too_many_rooms"));
  });

  test("a message over engine.max_payload closes the connection", async () => {
    const alice = await user("alice", limited.url);
    await sleep(1100);
    await call(alice, "join", "big");
    const closed = once(alice, "disconnect", 5000);
    alice.emit("message", "big", "x".repeat(5000));
    const [reason] = await closed;
    assert.equal(reason, "transport close");
  });
});
