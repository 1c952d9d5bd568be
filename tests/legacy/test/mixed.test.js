// A Socket.IO v2 client (Engine.IO v3) and a current client (Engine.IO v4) in one room: text and binary
// messages both ways, over each transport. The server encodes each broadcast once per protocol version.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { ask, bytes, closeAll, hello, once, v2, v4 } from "../lib/clients.js";

const server = useServer();

for (const [old, current] of [
  [["polling"], ["websocket"]],
  [["websocket"], ["polling"]],
  [["polling"], ["polling"]],
  [["websocket"], ["websocket"]],
]) {
  test(`v2 over ${old} and v4 over ${current} exchange messages in one room`, async (t) => {
    const a = v2(server.url, "/", { transports: old });
    const b = v4(server.url, "/", { transports: current });
    t.after(() => closeAll(a, b));
    await Promise.all([hello(a), hello(b)]);
    assert.deepEqual(await ask(a, "join", "mixed"), [[a.id, "mixed"].sort()]);
    assert.deepEqual(await b.timeout(5000).emitWithAck("join", "mixed"), [b.id, "mixed"].sort());

    const fromV2 = Promise.all([once(b, "room-msg"), once(a, "room-msg")]);
    a.emit("to-room", "mixed", "from v2", Buffer.from([1, 2, 3]));
    for (const [text, data] of await fromV2) {
      assert.equal(text, "from v2");
      assert.deepEqual(bytes(data), [1, 2, 3]);
    }
    const fromV4 = Promise.all([once(a, "room-msg"), once(b, "room-msg")]);
    b.emit("to-room", "mixed", "from v4", { bin: Buffer.from([4, 5]) });
    for (const [text, object] of await fromV4) {
      assert.equal(text, "from v4");
      assert.deepEqual(bytes(object.bin), [4, 5]);
    }

    // A broadcast from the v4 client reaches the v2 client, binary included.
    b.emit("broadcast", "everyone", Buffer.from([6]));
    const [text, data] = await once(a, "broadcast");
    assert.equal(text, "everyone");
    assert.deepEqual(bytes(data), [6]);
  });
}
