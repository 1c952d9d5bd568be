// Node socket.io peer for the Switchyard benchmark. Same handlers as every server under test, on "/":
//   join(room)          -> join the room
//   leave(room)         -> leave the room
//   msg(room, payload)  -> emit "msg" with the payload to everyone in the room except the sender
//   echo(payload, ack)  -> ack(payload)
// Listens on 127.0.0.1:$PORT (default 3000) with socket.io's default options.
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

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`node socket.io peer listening on 127.0.0.1:${port}`);
});

for (const signal of ["SIGINT", "SIGTERM"]) {
  process.on(signal, () => {
    io.close();
    process.exit(0);
  });
}
