// Acknowledgements: client -> server (the server acks), and server -> client (emitWithAck with a
// timeout, the client's answer relayed back by the server).
import { test } from "node:test";
import assert from "node:assert/strict";
import { useServer } from "../lib/server.js";
import { closeAll, connect, hello, next, record, sleep, until } from "../lib/client.js";

const server = useServer();

for (const transports of [["polling"], ["websocket"]]) {
  const name = transports[0];

  test(`${name}: client -> server ack returns every argument`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);

    const args = await new Promise((resolve) =>
      socket.emit("echo-ack", 1, "two", { three: [3] }, null, (...reply) => resolve(reply)),
    );
    assert.deepEqual(args, [1, "two", { three: [3] }, null]);

    const empty = await new Promise((resolve) => socket.emit("echo-ack", (...reply) => resolve(reply)));
    assert.deepEqual(empty, [], "an ack without arguments");

    const first = await socket.timeout(5000).emitWithAck("echo-ack", { only: "first" }, "ignored");
    assert.deepEqual(first, { only: "first" });
  });

  test(`${name}: 100 concurrent acks each get their own answer`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const answers = await Promise.all(
      Array.from({ length: 100 }, (_, i) => socket.timeout(5000).emitWithAck("echo-ack", { i })),
    );
    assert.deepEqual(
      answers,
      Array.from({ length: 100 }, (_, i) => ({ i })),
    );
  });

  test(`${name}: server -> client ack, the answer relayed back`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const asked = record(socket, "ask");
    socket.on("ask", (payload, ack) => {
      assert.equal(typeof ack, "function", "the server's event must carry an ack id");
      ack({ doubled: payload.n * 2, tag: payload.tag });
    });
    const result = next(socket, "server-ack-result");
    socket.emit("server-ack", { n: 21, tag: "x" });
    assert.deepEqual(await result, { doubled: 42, tag: "x" });
    assert.equal(asked.length, 1);
  });

  test(`${name}: server -> client ack answered asynchronously`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    socket.on("ask", async (payload, ack) => {
      await sleep(300);
      ack(`late ${payload}`);
    });
    const results = record(socket, "server-ack-result");
    socket.emit("server-ack", "a");
    socket.emit("server-ack", "b");
    await until(() => results.length >= 2, 5000, () => `(got ${results.length}/2)`);
    assert.deepEqual(results.map(([r]) => r).sort(), ["late a", "late b"]);
  });

  test(`${name}: server -> client ack times out when the client never answers`, { timeout: 10000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const asked = record(socket, "ask");
    const started = Date.now();
    const result = next(socket, "server-ack-result", 6000);
    socket.emit("server-ack", "anyone?");
    assert.deepEqual(await result, { error: "timeout" });
    const elapsed = Date.now() - started;
    assert.ok(elapsed >= 1500, `timed out after ${elapsed} ms, expected about 2000`);
    assert.equal(asked.length, 1, "the ask event still reached the client");
  });

  test(`${name}: an ack arriving after the server's timeout is ignored`, { timeout: 15000 }, async (t) => {
    const socket = connect(server.url, "/", { transports });
    t.after(() => closeAll(socket));
    await hello(socket);
    const disconnects = record(socket, "disconnect");
    socket.on("ask", (_payload, ack) => setTimeout(() => ack("too late"), 2600));
    const results = record(socket, "server-ack-result");
    socket.emit("server-ack", "slow");
    await sleep(3200);
    assert.deepEqual(results, [[{ error: "timeout" }]], "exactly one result: the timeout");
    socket.emit("echo", "alive");
    assert.equal(await next(socket, "echo"), "alive");
    assert.deepEqual(disconnects, []);
  });
}
