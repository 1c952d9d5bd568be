// One Switchyard server with [admin] on, the official socket.io-client playing the admin UI: every event
// shape and ordering the UI relies on (ADMIN-UI-NOTES.md, checked against @socket.io/admin-ui 0.5.1's
// lib/ and ui/src/), every command, the login, readonly, production and no-auth modes.
import { test, before, after, describe } from "node:test";
import assert from "node:assert/strict";
import {
  adminClient,
  connect,
  connected,
  eventually,
  startSwitchyard,
  stopAll,
  sleep,
  within,
} from "../lib/harness.js";

const ISO = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/;
const DEV_FEATURES = ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS", "ALL_EVENTS"];

after(stopAll);

/** Checks a SerializedSocket against the client it describes. */
function assertSerialized(s, client, nsp = "/", transport = "websocket") {
  assert.equal(s.id, client.id);
  assert.equal(s.clientId, client.io.engine.id.slice(0, 12));
  assert.equal(s.transport, transport);
  assert.equal(s.nsp, nsp);
  assert.deepEqual(s.data, {});
  assert.ok(s.rooms.includes(client.id), "the private room is listed");
  const h = s.handshake;
  assert.equal(typeof h.address, "string");
  assert.equal(typeof h.headers, "object");
  assert.equal(typeof h.query, "object");
  assert.equal(h.query.EIO, "4");
  assert.equal(typeof h.issued, "number");
  assert.ok(!Number.isNaN(new Date(h.issued).getTime()));
  assert.equal(typeof h.secure, "boolean");
  assert.equal(typeof h.xdomain, "boolean");
  assert.equal(typeof h.time, "string");
  assert.equal(typeof h.url, "string");
  assert.ok(!("auth" in h), "the handshake's auth is never shown");
}

describe("development mode, basic auth", () => {
  let server;
  before(async () => {
    server = await startSwitchyard();
  });

  test("a wrong password, a wrong user and no credentials are refused with 'invalid credentials'", async () => {
    for (const auth of [{ username: "admin", password: "wrong" }, { username: "root", password: "changeit" }, {}]) {
      const { socket } = adminClient(server.url, auth);
      const err = await within(5000, new Promise((resolve) => socket.once("connect_error", resolve)), "connect_error");
      assert.equal(err.message, "invalid credentials");
    }
    const { socket } = adminClient(server.url, { sessionId: "0123456789abcdef" });
    const err = await within(5000, new Promise((resolve) => socket.once("connect_error", resolve)), "connect_error");
    assert.equal(err.message, "invalid credentials", "an unknown session id is no login");
  });

  test("login: session, then config, then all_sockets with every socket in every namespace", async () => {
    const a = await connected(connect(server.url));
    const admin = adminClient(server.url);
    await connected(admin.socket);
    const [sessionId] = await admin.next("session");
    assert.match(sessionId, /^[0-9a-f]{16}$/);
    const [config] = await admin.next("config");
    assert.deepEqual(config, { supportedFeatures: DEV_FEATURES });
    const [sockets] = await admin.next("all_sockets");
    const order = admin.events.map((e) => e.event).filter((e) => ["session", "config", "all_sockets"].includes(e));
    assert.deepEqual(order, ["session", "config", "all_sockets"]);
    const mine = sockets.find((s) => s.id === a.id);
    assert.ok(mine, "the client's socket is listed");
    assertSerialized(mine, a);
    const own = sockets.find((s) => s.id === admin.socket.id);
    assert.ok(own, "the admin namespace's sockets are listed too, as Node does");
    assert.equal(own.nsp, "/admin");

    // The session id logs in without the password.
    const again = adminClient(server.url, { sessionId });
    await connected(again.socket);
    await again.next("config");
    assert.equal(again.of("session").length, 0, "no new session for a session login");
  });

  test("server_stats every 2 s with the counts and aggregated events", async () => {
    const c = await connected(connect(server.url));
    c.emit("ping-me", "x".repeat(10));
    const admin = adminClient(server.url);
    await connected(admin.socket);
    const first = (await admin.next("server_stats", () => true, 4000))[0];
    const t0 = Date.now();
    const [second] = await admin.next("server_stats", (s) => s !== first, 4000);
    assert.ok(Date.now() - t0 > 1500, "about 2 s apart");
    for (const stats of [first, second]) {
      assert.equal(stats.serverId, server.serverId);
      assert.equal(typeof stats.hostname, "string");
      assert.equal(typeof stats.pid, "number");
      assert.equal(typeof stats.uptime, "number");
      assert.equal(typeof stats.clientsCount, "number");
      assert.equal(typeof stats.pollingClientsCount, "number");
      assert.ok(Array.isArray(stats.aggregatedEvents));
      const root = stats.namespaces.find((n) => n.name === "/");
      assert.ok(root && root.socketsCount >= 1, JSON.stringify(stats.namespaces));
      assert.ok(stats.namespaces.find((n) => n.name === "/admin"));
    }
    assert.ok(first.clientsCount >= 2);
    const all = admin.of("server_stats").flatMap(([s]) => s.aggregatedEvents);
    for (const e of all) {
      assert.equal(e.timestamp % 1000, 0, "cut to the second");
      assert.ok(["rawConnection", "rawDisconnection", "packetsIn", "packetsOut", "bytesIn", "bytesOut"].includes(e.type));
      assert.ok(e.count > 0);
    }
    // Counts since the previous stats: a new client is one rawConnection, its close a rawDisconnection.
    const d = await connected(connect(server.url));
    d.disconnect();
    await eventually(
      "rawConnection and rawDisconnection after a client came and went",
      () => {
        const events = admin.of("server_stats").slice(1).flatMap(([s]) => s.aggregatedEvents);
        return (
          events.some((e) => e.type === "rawConnection") &&
          events.some((e) => e.type === "rawDisconnection" && e.subType === "transport close") &&
          events.some((e) => e.type === "bytesIn")
        );
      },
      6000,
    );
  });

  test("live events: connected, joined, received, sent, left, disconnected, in the UI's order", async () => {
    const admin = adminClient(server.url);
    await connected(admin.socket);
    await admin.next("all_sockets");
    const c = await connected(connect(server.url));
    const [socket, date] = await admin.next("socket_connected", (s) => s.id === c.id);
    assertSerialized(socket, c);
    assert.deepEqual(socket.rooms, [c.id], "a new socket is in its own room only");
    assert.match(date, ISO);

    await within(5000, c.emitWithAck("join", "room-a"), "join ack");
    const [nsp, room, id, joinedAt] = await admin.next("room_joined", (n, r, i) => i === c.id && r === "room-a");
    assert.deepEqual([nsp, room, id], ["/", "room-a", c.id]);
    assert.match(joinedAt, ISO);
    const joined = admin.of("room_joined").filter(([, r, i]) => i === c.id && r === "room-a");
    assert.equal(joined.length, 1, "each membership reported once");

    c.emit("custom", { a: 1 }, [2, 3]);
    const [rn, rid, rargs, rdate] = await admin.next("event_received", (n, i, args) => i === c.id && args[0] === "custom");
    assert.deepEqual([rn, rid, rargs], ["/", c.id, ["custom", { a: 1 }, [2, 3]]]);
    assert.match(rdate, ISO);
    // An ack callback is stripped: the UI sees the event name and payload only.
    await within(5000, c.emitWithAck("join", "room-b"), "join ack");
    const [, , jargs] = await admin.next("event_received", (n, i, args) => i === c.id && args[1] === "room-b");
    assert.deepEqual(jargs, ["join", "room-b"]);

    // event_sent: the admin's `emit` command reaches the client, and the UI hears it was sent.
    const got = new Promise((resolve) => c.once("hello", (...args) => resolve(args)));
    admin.socket.emit("emit", "/", c.id, "hello", "world", 42);
    assert.deepEqual(await within(5000, got, "hello"), ["world", 42]);
    const [sn, sid, sargs, sdate] = await admin.next("event_sent", (n, i, args) => i === c.id && args[0] === "hello");
    assert.deepEqual([sn, sid, sargs], ["/", c.id, ["hello", "world", 42]]);
    assert.match(sdate, ISO);

    // Nothing about the admin namespace's own events (its commands are events too).
    assert.equal(admin.of("event_received").filter(([n]) => n === "/admin").length, 0);
    assert.equal(admin.of("event_sent").filter(([n]) => n === "/admin").length, 0);

    // A client disconnect: room_left for every room (the private one included) and socket_disconnected.
    const id0 = c.id;
    c.disconnect();
    const [dn, did, reason, ddate] = await admin.next("socket_disconnected", (n, i) => i === id0);
    assert.deepEqual([dn, did, reason], ["/", id0, "client namespace disconnect"]);
    assert.match(ddate, ISO);
    for (const r of [id0, "room-a", "room-b"]) {
      await admin.next("room_left", (n, room, i) => i === id0 && room === r);
    }
  });

  test("an upgrade from polling is a socket_updated with the new transport", async () => {
    const admin = adminClient(server.url);
    await connected(admin.socket);
    await admin.next("all_sockets");
    const c = await connected(connect(server.url, "/", { transports: ["polling", "websocket"] }));
    const [socket] = await admin.next("socket_connected", (s) => s.id === c.id);
    assert.equal(socket.transport, "polling");
    const [update] = await admin.next("socket_updated", (u) => u.id === c.id);
    assert.deepEqual(update, { id: c.id, nsp: "/", transport: "websocket" });
    const again = adminClient(server.url);
    const [sockets] = await again.next("all_sockets");
    assert.equal(sockets.find((s) => s.id === c.id).transport, "websocket");
  });

  test("commands: join, leave (one socket, a room, clear), emit to a room, _disconnect with and without close", async () => {
    const admin = adminClient(server.url);
    await connected(admin.socket);
    await admin.next("all_sockets");
    const a = await connected(connect(server.url));
    const b = await connected(connect(server.url));

    admin.socket.emit("join", "/", "team", a.id);
    await admin.next("room_joined", (n, r, i) => r === "team" && i === a.id);
    admin.socket.emit("join", "/", "everyone");
    await admin.next("room_joined", (n, r, i) => r === "everyone" && i === a.id);
    await admin.next("room_joined", (n, r, i) => r === "everyone" && i === b.id);
    assert.equal(admin.of("room_joined").filter(([, r, i]) => r === "team" && i === b.id).length, 0, "the filter holds");

    // emit with a room filter reaches that room's members only.
    const heardByB = [];
    b.on("news", (...args) => heardByB.push(args));
    const heardByA = new Promise((resolve) => a.once("news", (...args) => resolve(args)));
    admin.socket.emit("emit", "/", "team", "news", { n: 1 });
    assert.deepEqual(await within(5000, heardByA, "news"), [{ n: 1 }]);
    await sleep(200);
    assert.equal(heardByB.length, 0);

    admin.socket.emit("leave", "/", "team", a.id);
    await admin.next("room_left", (n, r, i) => r === "team" && i === a.id);
    // "clear": everyone leaves the room.
    admin.socket.emit("leave", "/", "everyone");
    await admin.next("room_left", (n, r, i) => r === "everyone" && i === a.id);
    await admin.next("room_left", (n, r, i) => r === "everyone" && i === b.id);

    // Disconnect a socket (the UI passes its id as the filter): the client hears io server disconnect.
    // (socket.io-client forgets `id` on disconnect: keep it.)
    const [idA, idB] = [a.id, b.id];
    const reasonA = new Promise((resolve) => a.once("disconnect", resolve));
    admin.socket.emit("_disconnect", "/", false, idA);
    assert.equal(await within(5000, reasonA, "a's disconnect"), "io server disconnect");
    const [, , why] = await admin.next("socket_disconnected", (n, i) => i === idA);
    assert.equal(why, "server namespace disconnect");
    assert.ok(b.connected, "only the filtered socket");

    // Disconnect a client (close = true): the whole connection goes (after a DISCONNECT, as in Node).
    const reasonB = new Promise((resolve) => b.once("disconnect", resolve));
    const closed = new Promise((resolve) => b.io.engine.once("close", resolve));
    admin.socket.emit("_disconnect", "/", true, idB);
    assert.equal(await within(5000, reasonB, "b's disconnect"), "io server disconnect");
    await within(5000, closed, "b's connection closed");
    const [, , whyB] = await admin.next("socket_disconnected", (n, i) => i === idB);
    assert.equal(whyB, "server namespace disconnect");
  });

  test("a room filter on _disconnect reaches every member; bad commands are refused without harm", async () => {
    const admin = adminClient(server.url);
    await connected(admin.socket);
    await admin.next("all_sockets");
    const a = await connected(connect(server.url));
    const b = await connected(connect(server.url));
    const c = await connected(connect(server.url));
    await within(5000, a.emitWithAck("join", "doomed"), "join");
    await within(5000, b.emitWithAck("join", "doomed"), "join");
    // Unknown namespace, wrong types, missing arguments: ignored, the admin socket stays usable.
    admin.socket.emit("_disconnect", "/nope", false);
    admin.socket.emit("_disconnect", "/", "yes", "doomed");
    admin.socket.emit("join", "/");
    admin.socket.emit("join", 42, "x");
    admin.socket.emit("emit", "/", null, "connect");
    admin.socket.emit("leave");
    await sleep(200);
    assert.ok(a.connected && b.connected && c.connected);
    const gone = [a, b].map((s) => new Promise((resolve) => s.once("disconnect", resolve)));
    admin.socket.emit("_disconnect", "/", false, "doomed");
    assert.deepEqual(await within(5000, Promise.all(gone), "room disconnect"), ["io server disconnect", "io server disconnect"]);
    await sleep(200);
    assert.ok(c.connected, "not in the room");
    assert.ok(admin.socket.connected);
    const stats = await fetch(`${server.url}/metrics`).then((r) => r.text());
    assert.match(stats, /switchyard_admin_commands_total\{command="_disconnect",outcome="unknown_namespace"\} 1/);
    assert.match(stats, /switchyard_admin_commands_total\{command="_disconnect",outcome="invalid"\} 1/);
    assert.match(stats, /switchyard_admin_logins_total\{outcome="refused"\}/);
  });
});

describe("readonly, production and no-auth servers", () => {
  test("readonly: no command advertised, none carried out", async () => {
    const server = await startSwitchyard({ SWITCHYARD_ADMIN_READONLY: "true" });
    const c = await connected(connect(server.url));
    const admin = adminClient(server.url);
    const [config] = await admin.next("config");
    assert.deepEqual(config.supportedFeatures, ["AGGREGATED_EVENTS", "ALL_EVENTS"]);
    await admin.next("all_sockets");
    admin.socket.emit("_disconnect", "/", false, c.id);
    admin.socket.emit("join", "/", "x", c.id);
    await sleep(300);
    assert.ok(c.connected);
    assert.equal(admin.of("room_joined").length, 0);
    await server.stop();
  });

  test("production: config and server_stats only, no per-socket events", async () => {
    const server = await startSwitchyard({ SWITCHYARD_ADMIN_MODE: "production" });
    const admin = adminClient(server.url);
    const [config] = await admin.next("config");
    assert.deepEqual(config.supportedFeatures, ["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT", "AGGREGATED_EVENTS"]);
    const c = await connected(connect(server.url));
    await within(5000, c.emitWithAck("join", "r"), "join");
    c.emit("custom", 1);
    const [stats] = await admin.next("server_stats", (s) => s.namespaces.some((n) => n.name === "/" && n.socketsCount === 1), 5000);
    assert.ok(stats.aggregatedEvents.length > 0);
    c.disconnect();
    await sleep(300);
    const names = new Set(admin.events.map((e) => e.event));
    assert.deepEqual([...names].sort(), ["config", "server_stats", "session"]);
    // Commands still work in production mode.
    const d = await connected(connect(server.url));
    const reason = new Promise((resolve) => d.once("disconnect", resolve));
    admin.socket.emit("_disconnect", "/", false, d.id);
    assert.equal(await within(5000, reason, "disconnect"), "io server disconnect");
    await server.stop();
  });

  test("auth none: anyone connects, no session; JWT auth does not cover the admin namespace", async () => {
    const server = await startSwitchyard({
      SWITCHYARD_ADMIN_AUTH: "none",
      SWITCHYARD_AUTH_JWT_SECRET: "0123456789abcdef0123456789abcdef",
    });
    const admin = adminClient(server.url, {});
    await connected(admin.socket);
    await admin.next("config");
    assert.equal(admin.of("session").length, 0);
    const plain = connect(server.url);
    const err = await within(5000, new Promise((resolve) => plain.once("connect_error", resolve)), "refusal");
    assert.notEqual(err.message, "invalid credentials", "the main namespace still needs a token");
    await server.stop();
  });

  test("admin.cors_origin: that origin exactly, with credentials; no other", async () => {
    const server = await startSwitchyard({ SWITCHYARD_ADMIN_CORS_ORIGIN: "https://admin.socket.io" });
    const poll = (origin) =>
      fetch(`${server.url}/socket.io/?EIO=4&transport=polling`, { headers: { Origin: origin } });
    const ok = await poll("https://admin.socket.io");
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get("access-control-allow-origin"), "https://admin.socket.io");
    assert.equal(ok.headers.get("access-control-allow-credentials"), "true");
    const other = await poll("https://evil.example");
    assert.equal(other.headers.get("access-control-allow-origin"), null);
    assert.equal(other.headers.get("access-control-allow-credentials"), null);
    await server.stop();
  });

  test("a bad password hash stops the server at startup with a clear error", async () => {
    await assert.rejects(
      startSwitchyard({ SWITCHYARD_ADMIN_PASSWORD_HASH: "changeit" }),
      /admin\.password_hash: must be a valid bcrypt hash/,
    );
  });
});
