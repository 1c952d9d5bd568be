// Node socket.io peer for the Switchyard benchmark. Same handlers as every server under test, on "/":
//   join(room)          -> join the room
//   leave(room)         -> leave the room
//   msg(room, payload)  -> emit "msg" with the payload to everyone in the room except the sender
//   echo(payload, ack)  -> ack(payload)
// Listens on 127.0.0.1:$PORT (default 3000) with socket.io's default options. With REDIS_URL set it joins a
// cluster through @socket.io/redis-adapter (classic mode), like Switchyard's bench-server.
"use strict";

const http = require("node:http");
const { Server } = require("socket.io");

const port = Number.parseInt(process.env.PORT || "3000", 10);
if (!Number.isInteger(port) || port <= 0 || port > 65535) {
  console.error(`invalid PORT: ${process.env.PORT}`);
  process.exit(2);
}

const httpServer = http.createServer();
const io = new Server(httpServer);
const redisClients = [];

io.on("connection", (socket) => {
  socket.on("join", (room) => {
    if (typeof room === "string") socket.join(room);
  });
  socket.on("leave", (room) => {
    if (typeof room === "string") socket.leave(room);
  });
  socket.on("msg", (room, payload) => {
    if (typeof room === "string") socket.to(room).emit("msg", payload);
  });
  socket.on("echo", (payload, ack) => {
    if (typeof ack === "function") ack(payload);
  });
});

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
    process.exit(0);
  });
}
