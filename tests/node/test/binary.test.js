// Binary payloads (BINARY_EVENT / BINARY_ACK with attachments) in both directions, on both transports.
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { bytes, closeAll, connect, hello, once, until } from "../lib/client.js";

const server = useServer();

// Every byte value, so any text re-encoding (UTF-8, latin1, base64 mishandling) shows up.
const ALL_BYTES = Buffer.from(Array.from({ length: 256 }, (_, i) => i));

for (const transports of [["polling"], ["websocket"]]) {
  const name = transports[0];

  test(`${name}: server sends a binary event with top-level and nested buffers`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const reply = once(socket, "binary");
    socket.emit("binary");
    const [first, second, ...rest] = await reply;
    assert.deepEqual(rest, []);
    assert.deepEqual(bytes(first), [1, 2, 3]);
    assert.deepEqual(Object.keys(second).sort(), ["list", "nested"]);
    assert.deepEqual(bytes(second.nested), [4, 5]);
    assert.equal(second.list.length, 1);
    assert.deepEqual(bytes(second.list[0]), [6]);
  });

  test(`${name}: buffers sent by the client come back byte for byte`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const large = Buffer.alloc(100 * 1024);
    for (let i = 0; i < large.length; i++) large[i] = (i * 31 + 7) & 0xff;
    const reply = once(socket, "echo");
    socket.emit(
      "echo",
      ALL_BYTES,
      { label: "nested", data: Buffer.from([0xde, 0xad, 0xbe, 0xef]), deep: [[Buffer.alloc(0)], "text"] },
      "plain text",
      large,
    );
    const [all, nested, text, big, ...rest] = await reply;
    assert.deepEqual(rest, []);
    assert.deepEqual(bytes(all), [...ALL_BYTES]);
    assert.equal(nested.label, "nested");
    assert.deepEqual(bytes(nested.data), [0xde, 0xad, 0xbe, 0xef]);
    assert.deepEqual(bytes(nested.deep[0][0]), []);
    assert.equal(nested.deep[1], "text");
    assert.equal(text, "plain text");
    assert.equal(Buffer.compare(Buffer.from(bytes(big)), large), 0, "100 KiB buffer intact");
  });

  test(`${name}: binary in acknowledgements both ways`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);

    // client -> server event with ack; the server acks with the same (binary) arguments: BINARY_ACK.
    const acked = await socket.timeout(5000).emitWithAck("echo-ack", Buffer.from([9, 8, 7]), {
      inner: Buffer.from([0, 255]),
    });
    assert.deepEqual(bytes(acked), [9, 8, 7]);

    // server -> client event with ack; the client acks with binary, the server relays the result.
    socket.on("ask", (payload, ack) => ack({ got: payload, blob: Buffer.from([42, 0, 42]) }));
    const relayed = once(socket, "server-ack-result");
    socket.emit("server-ack", Buffer.from([5, 6]));
    const [result] = await relayed;
    assert.deepEqual(bytes(result.got), [5, 6]);
    assert.deepEqual(bytes(result.blob), [42, 0, 42]);
  });

  test(`${name}: binary events interleaved with text keep their order`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const received = [];
    socket.on("echo", (value) => received.push(value));
    const count = 60;
    for (let i = 0; i < count; i++) {
      socket.emit("echo", i % 3 === 0 ? Buffer.from([i, i + 1]) : i);
    }
    await until(() => received.length >= count, 8000, () => `(got ${received.length}/${count})`);
    assert.equal(received.length, count);
    received.forEach((value, i) => {
      if (i % 3 === 0) assert.deepEqual(bytes(value), [i, i + 1], `message ${i}`);
      else assert.equal(value, i, `message ${i}`);
    });
  });
}
