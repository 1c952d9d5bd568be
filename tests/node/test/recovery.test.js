// Connection state recovery (server started with INTEROP_RECOVERY=1): a client whose connection drops
// comes back with the same socket id, its rooms, and every room message sent while it was away.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, next, once, sleep } from "../lib/client.js";

process.env.INTEROP_RECOVERY = "1";
const server = useServer();

const RECONNECT = { reconnection: true, reconnectionDelay: 300, reconnectionDelayMax: 300, randomizationFactor: 0 };

for (const transports of [["websocket"], ["polling"]]) {
  const name = transports.join("+");

  test(`${name}: a dropped client recovers its id, rooms and missed room messages`, { timeout: 20000 }, async (t) => {
    const a = connect(server.url, "/", { transports, ...RECONNECT });
    const b = connect(server.url, "/", { transports, ...RECONNECT });
    t.after(() => closeAll(a, b));
    await Promise.all([hello(a), hello(b)]);
    const firstId = a.id;
    const rooms = await a.timeout(3000).emitWithAck("join", "recovery-room");
    assert.ok(rooms.includes("recovery-room"));

    // Everything A gets in the room, with the offset the server appends as the last argument.
    const received = [];
    a.on("room-msg", (text) => received.push(text));

    b.emit("to-room", "recovery-room", "before");
    await sleep(200);

    const dropped = once(a, "disconnect");
    a.emit("close-conn");
    const [reason] = await dropped;
    assert.equal(reason, "transport close");

    // Sent while A is away (it reconnects after 300 ms).
    b.emit("to-room", "recovery-room", "missed-1");
    b.emit("to-room", "recovery-room", "missed-2");

    const recoveredInfo = await next(a, "recovered", 8000);
    assert.equal(a.recovered, true, "the client reports a recovered session");
    assert.equal(a.id, firstId, "same socket id after recovery");
    assert.equal(recoveredInfo.id, firstId);
    assert.ok(recoveredInfo.rooms.includes("recovery-room"), "rooms are restored");

    b.emit("to-room", "recovery-room", "after");
    const deadline = Date.now() + 5000;
    while (received.length < 4 && Date.now() < deadline) await sleep(50);
    assert.deepEqual(received, ["before", "missed-1", "missed-2", "after"], "every message exactly once, in order");
  });
}

test("a client with an unknown session gets a fresh one", { timeout: 10000 }, async (t) => {
  const socket = connect(server.url, "/", { transports: ["websocket"], auth: { pid: "unknown", offset: "0-1" } });
  t.after(() => closeAll(socket));
  const info = await hello(socket);
  assert.equal(socket.recovered, false);
  assert.equal(info.id, socket.id);
});
