// The two official JavaScript clients side by side: socket.io-client@2 (Socket.IO v2: Engine.IO v3,
// Socket.IO protocol v4) and socket.io-client@4 (installed under the alias socket.io-client-v4).
import assert from "node:assert/strict";
import ioV2 from "socket.io-client";
import { io as ioV4 } from "socket.io-client-v4";
import { once, next } from "../../lib/wait.js";

const defaults = { forceNew: true, reconnection: false, timeout: 5000 };

/** A Socket.IO v2 client socket on `namespace`, its own Manager, no reconnection. */
export function v2(baseUrl, namespace = "/", options = {}) {
  return ioV2(baseUrl + namespace, { ...defaults, ...options });
}

/** A current (v4) client socket on `namespace`. */
export function v4(baseUrl, namespace = "/", options = {}) {
  return ioV4(baseUrl + namespace, { ...defaults, ...options });
}

/**
 * The server's "hello" (sent on connection); a refusal ("error" in v2, "connect_error" in both) fails
 * at once. Call it right after creating the socket.
 */
export function hello(socket, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => done(reject, new Error(`timed out after ${ms} ms waiting for "hello"`)), ms);
    const onHello = (payload) => done(resolve, payload);
    const onError = (err) => done(reject, new Error(`refused: ${JSON.stringify(err?.message ?? err)}`));
    const done = (settle, value) => {
      clearTimeout(timer);
      socket.off("hello", onHello);
      socket.off("error", onError);
      socket.off("connect_error", onError);
      settle(value);
    };
    socket.on("hello", onHello);
    socket.on("error", onError);
    socket.on("connect_error", onError);
  });
}

/** Emits `event` with `args` and resolves with the ack's arguments (v2 has no emitWithAck). */
export function ask(socket, event, ...args) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no ack for "${event}" within 5000 ms`)), 5000);
    socket.emit(event, ...args, (...answer) => {
      clearTimeout(timer);
      resolve(answer);
    });
  });
}

/** Collects every call of `event` as an array of argument lists. */
export function record(socket, event) {
  const calls = [];
  socket.on(event, (...args) => calls.push(args));
  return calls;
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` until it holds, or throws after `ms`. */
export async function until(predicate, ms, describe = () => "") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms ${describe()}`);
    await sleep(10);
  }
}

/** Closes sockets and their Engine.IO connections. */
export function closeAll(...sockets) {
  for (const socket of sockets.flat()) {
    if (!socket) continue;
    socket.disconnect();
    socket.io.engine?.close();
  }
}

/** The bytes of binary data (Buffer, ArrayBuffer or typed array). */
export function bytes(value) {
  if (value instanceof ArrayBuffer) return [...new Uint8Array(value)];
  if (ArrayBuffer.isView(value)) return [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)];
  assert.fail(`expected binary data, got ${typeof value}: ${JSON.stringify(value)}`);
}

export { once, next };
