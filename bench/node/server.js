// Node socket.io peer for the Switchyard benchmark. Same handlers as every server under test, on "/":
//   join(room)          -> join the room
//   leave(room)         -> leave the room
//   msg(room, ...args)  -> emit "msg" with the arguments after the room to everyone in the room except the
//                          sender (as Switchyard's bench-server does: the recovery scenario sends a count
//                          and a payload)
//   echo(payload, ack)  -> ack(payload)
//   message(room, data, ack) -> the built-in `message` of Switchyard's docs/EVENTS.md, done the way Node
//                          apps commonly add Kafka: with KAFKA_BROKERS set, `await producer.send(...)` of
//                          {id, event, room, user, data, ts} keyed by the room to KAFKA_TOPIC (kafkajs),
//                          then the broadcast to the room and the ack {ok, id, ts}; without it, at once.
// Listens on 127.0.0.1:$PORT (default 3000) with socket.io's default options. With REDIS_URL set it joins a
// cluster through @socket.io/redis-adapter (classic mode), like Switchyard's bench-server. With
// CONNECTION_STATE_RECOVERY=1 socket.io's connection state recovery is on (in memory, 2 minutes, the
// middlewares skipped: its defaults), for `switchyard-bench recovery` (the Redis adapter above has no
// recovery: that needs @socket.io/redis-streams-adapter).
"use strict";

const http = require("node:http");
const { randomUUID } = require("node:crypto");
const { Server } = require("socket.io");

const port = Number.parseInt(process.env.PORT || "3000", 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`invalid PORT: ${process.env.PORT}`);
  process.exit(2);
}

const recovery = process.env.CONNECTION_STATE_RECOVERY;
if (recovery !== undefined && recovery !== "0" && recovery !== "1") {
  console.error(`invalid CONNECTION_STATE_RECOVERY: ${recovery} (expected 0 or 1)`);
  process.exit(2);
}

const httpServer = http.createServer();
const io = new Server(
  httpServer,
  recovery === "1" ? { connectionStateRecovery: { maxDisconnectionDuration: 2 * 60 * 1000 } } : {},
);
const redisClients = [];
let producer = null;
const kafkaTopic = process.env.KAFKA_TOPIC || "switchyard.messages";

io.on("connection", (socket) => {
  socket.on("join", (room) => {
    if (typeof room === "string") socket.join(room);
  });
  socket.on("leave", (room) => {
    if (typeof room === "string") socket.leave(room);
  });
  socket.on("msg", (room, ...args) => {
    if (typeof room === "string") socket.to(room).emit("msg", ...args);
  });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  });
  socket.on("message", async (room, data, ack) => {
    if (typeof room !== "string" || !socket.rooms.has(room)) {
      if (typeof ack === "function") ack({ ok: false, error: "forbidden" });
      return;
    }
    const ts = Date.now();
    const message = { id: randomUUID(), room, user: socket.id, data, ts };
    if (producer) {
      try {
        await producer.send({
          topic: kafkaTopic,
          messages: [{ key: room, value: JSON.stringify({ ...message, event: "message" }) }],
        });
      } catch (err) {
        if (typeof ack === "function") ack({ ok: false, error: "unavailable" });
        return;
      }
    }
    io.to(room).emit("message", message);
    if (typeof ack === "function") ack({ ok: true, id: message.id, ts });
  });
});

async function connectKafka(brokers) {
  // Required only here, so a run without Kafka does not load it.
  const { Kafka, logLevel } = require("kafkajs");
  const kafka = new Kafka({ clientId: "bench-node", brokers: brokers.split(","), logLevel: logLevel.WARN });
  producer = kafka.producer({ allowAutoTopicCreation: true });
  await producer.connect();
  console.log(`producing messages to ${kafkaTopic} on ${brokers}`);
}

async function joinCluster(url) {
  // Required only here, so a run without Redis needs neither package.
  const { createAdapter } = require("@socket.io/redis-adapter");
  const { createClient } = require("redis");
  const pub = createClient({ url });
  const sub = pub.duplicate();
  for (const client of [pub, sub]) {
    client.on("error", (err) => console.error(`redis: ${err.message}`));
    redisClients.push(client);
  }
  await Promise.all([pub.connect(), sub.connect()]);
  io.adapter(createAdapter(pub, sub));
  console.log(`joined the cluster through ${url}`);
}

async function start() {
  if (process.env.REDIS_URL) await joinCluster(process.env.REDIS_URL);
  if (process.env.KAFKA_BROKERS) await connectKafka(process.env.KAFKA_BROKERS);
  httpServer.listen(port, "127.0.0.1", () => {
    console.log(`node socket.io peer listening on 127.0.0.1:${port}`);
  });
}

start().catch((err) => {
  console.error(`cannot start: ${err.message}`);
  process.exit(1);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    for (const client of redisClients) client.disconnect().catch(() => {});
    if (producer) producer.disconnect().catch(() => {});
    process.exit(0);
  });
}
