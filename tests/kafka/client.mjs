// The socket.io side of the Kafka test (tests/kafka/test_kafka.py runs it): the official
// socket.io-client from tests/node's npm dependencies. Prints one JSON line with what happened.
//
//   node client.mjs send URL ROOMS COUNT INTERVAL_MS [DATA_BYTES]
//     a sender socket joins every room (comma-separated) and sends COUNT `message`s round-robin over
//     them, one per INTERVAL_MS, each with {seq, room, pad}; a receiver socket in the same rooms
//     records every `message` it gets. Prints {"acks": [...], "received": [...]}: acks in send order
//     ({seq, room, ok, id, error}), received as {id, room, seq}.
//   node client.mjs emit URL EVENT COUNT
//     sends COUNT events EVENT with arguments (i, "arg") and waits for their acks (the server has no
//     handler for them: the ack is answered only by a refusal). Prints {"sent": COUNT}.
//   node client.mjs listen URL ROOMS EVENT SECONDS
//     joins the rooms, prints "ready", then records every EVENT for SECONDS (printing each at once as
//     `event [...args]`) and prints {"events": [[...args], ...]}.
import { createRequire } from "node:module";

// tests/node's npm dependencies (pinned by its package-lock.json): no second copy for this suite.
const require = createRequire(new URL("../node/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [mode, url, ...rest] = process.argv.slice(2);

function connect() {
  return io(url, { forceNew: true, reconnection: false, transports: ["websocket"], timeout: 5000 });
}

function connected(socket) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("connect timed out")), 5000);
    socket.once("connect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("connect_error", (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

async function join(socket, rooms) {
  for (const room of rooms) {
    const reply = await socket.timeout(5000).emitWithAck("join", room);
    if (!reply.ok) throw new Error(`join ${room}: ${JSON.stringify(reply)}`);
  }
}

// process.exit() right after console.log cuts a long line written to a pipe: wait for the write.
const print = (value) => new Promise((resolve) => process.stdout.write(JSON.stringify(value) + "\n", resolve));

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function send([roomList, count, interval, dataBytes = "0"]) {
  const rooms = roomList.split(",");
  const sender = connect();
  const receiver = connect();
  await Promise.all([connected(sender), connected(receiver)]);
  await join(sender, rooms);
  await join(receiver, rooms);
  const received = [];
  receiver.on("message", (m) => received.push({ id: m.id, room: m.room, seq: m.data.seq }));
  const pad = "x".repeat(Number(dataBytes));
  const pending = [];
  for (let seq = 0; seq < Number(count); seq++) {
    const room = rooms[seq % rooms.length];
    pending.push(
      sender
        .timeout(30000)
        .emitWithAck("message", room, { seq, room, pad })
        .then(
          (reply) => ({ seq, room, ok: reply.ok, id: reply.id, error: reply.error }),
          (e) => ({ seq, room, ok: false, error: `no ack: ${e.message}` }),
        ),
    );
    if (Number(interval) > 0) await sleep(Number(interval));
  }
  const acks = await Promise.all(pending);
  await sleep(500);
  sender.close();
  receiver.close();
  await print({ acks, received });
}

async function emit([event, count]) {
  const socket = connect();
  await connected(socket);
  for (let i = 0; i < Number(count); i++) socket.emit(event, i, "arg");
  // A round trip after them: the server handled every event before this ack.
  await socket.timeout(5000).emitWithAck("join", "after-events");
  socket.close();
  await print({ sent: Number(count) });
}

async function listen([roomList, event, seconds]) {
  const socket = connect();
  await connected(socket);
  await join(socket, roomList.split(","));
  const events = [];
  socket.on(event, (...args) => {
    events.push(args);
    // Also at once, one line each, for a test that watches while it acts.
    console.log(`event ${JSON.stringify(args)}`);
  });
  console.log("ready");
  await sleep(Number(seconds) * 1000);
  socket.close();
  await print({ events });
}

const modes = { send, emit, listen };
if (!modes[mode]) {
  console.error(`unknown mode ${mode}`);
  process.exit(2);
}
modes[mode](rest).then(
  () => process.exit(0),
  (e) => {
    console.error(e);
    process.exit(1);
  },
);
