// Small helpers around the official socket.io-client for the interop tests.
import assert from "node:assert/strict";
import { io, Manager } from "socket.io-client";
import { NodeWebSocket, NodeXHR } from "engine.io-client";
import { once, next } from "../../lib/wait.js";

export { io, Manager, once, next };

/**
 * Opens a client socket with its own Manager (no multiplexing across tests) and without automatic
 * reconnection unless the caller asks for it, so a failure shows up instead of being retried away.
 */
export function connect(baseUrl, namespace = "/", options = {}) {
  return io(baseUrl + namespace, {
    forceNew: true,
    reconnection: false,
    timeout: 5000,
    ...options,
  });
}

/**
 * Waits for the socket's "hello" (sent by the server on connection) and fails fast on "connect_error".
 * Must be called right after creating the socket, before the event loop turns.
 */
export function hello(socket, ms = 5000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`timed out after ${ms} ms waiting for "hello" on ${socket.nsp}`));
    }, ms);
    const onHello = (payload) => {
      cleanup();
      resolve(payload);
    };
    const onError = (err) => {
      cleanup();
      reject(new Error(`connect_error on ${socket.nsp}: ${err.message} ${JSON.stringify(err.data)}`));
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off("hello", onHello);
      socket.off("connect_error", onError);
    };
    socket.on("hello", onHello);
    socket.on("connect_error", onError);
  });
}

/** Collects every call of `event` as an array of argument lists. */
export function record(socket, event) {
  const calls = [];
  socket.on(event, (...args) => calls.push(args));
  return calls;
}

/** Polls `predicate` until it holds, or throws after `ms` with `describe()` in the message. */
export async function until(predicate, ms, describe = () => "") {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${ms} ms ${describe()}`);
    await sleep(10);
  }
}

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

/** Closes sockets (and their managers) so no handle keeps the test process alive. */
export function closeAll(...sockets) {
  for (const socket of sockets.flat()) {
    if (!socket) continue;
    socket.disconnect();
    socket.io.engine?.close();
  }
}

/** Asserts `value` is binary data (Buffer, ArrayBuffer or typed array) and returns its bytes. */
export function bytes(value) {
  if (value instanceof ArrayBuffer) return [...new Uint8Array(value)];
  if (ArrayBuffer.isView(value)) {
    return [...new Uint8Array(value.buffer, value.byteOffset, value.byteLength)];
  }
  assert.fail(`expected binary data, got ${typeof value}: ${JSON.stringify(value)}`);
}

/** The transport the socket's Engine.IO connection currently uses. */
export function transportOf(socket) {
  return socket.io.engine.transport.name;
}

/**
 * Transport list for `transports`: long-polling first, then a WebSocket upgrade whose connection only
 * starts after `delayMs`. On loopback the upgrade otherwise finishes before the first event is even
 * sent; the delay guarantees traffic is flowing over polling when the transports switch.
 */
export function pollingThenDelayedUpgrade(delayMs) {
  class DelayedWebSocket extends NodeWebSocket {
    doOpen() {
      setTimeout(() => {
        // The engine may have given up on this probe (or closed) meanwhile.
        if (this.readyState === "opening") super.doOpen();
      }, delayMs);
    }
  }
  return [NodeXHR, DelayedWebSocket];
}
