// Reference implementation of the interop test contract, written with the official `socket.io` server.
// The interop tests must pass against it; Switchyard's `interop` example implements the same contract.
// Usage: PORT=3000 node reference-server.js   (listens on 127.0.0.1:$PORT)
//
// The contract (namespace "/" unless said otherwise):
// - server options: pingInterval 2000, pingTimeout 2000, CORS origin "*"; with INTEROP_PARSER=msgpack
//   the socket.io-msgpack-parser parser (clients must use it too).
// - "/" middleware: handshake auth.token === "bad" -> refused, message "unauthorized", data {reason:"bad token"}.
// - on connection: emit("hello", {id, nsp, auth: handshake auth, query: handshake query minus EIO/transport/t}).
// - "echo"(...args)           -> emit("echo", ...args), binary preserved.
// - "echo-ack"(...args, ack)  -> ack(...args).
// - "server-ack"(payload)     -> emitWithAck("ask", payload) with a 2000 ms timeout, then
//                                emit("server-ack-result", answer) or emit("server-ack-result", {error:"timeout"}).
// - "join"(room, ack) / "leave"(room, ack) -> join/leave, then ack(sorted list of the socket's rooms).
// - "to-room"(room, ...args)  -> io.to(room).emit("room-msg", ...args) (the sender too, if in the room).
// - "broadcast"(...args)      -> socket.broadcast.emit("broadcast", ...args).
// - "broadcast-ack"(payload, ack) -> io.timeout(1000).emit("ping-all", payload, (err, responses) =>
//                                ack({timedOut: !!err, responses})).
// - "disconnect-me"           -> socket.disconnect();  "close-conn" -> socket.conn.close().
// - "binary"                  -> emit("binary", <Buffer 01 02 03>, {nested: <Buffer 04 05>, list: [<Buffer 06>]}).
// - "/second": on connection emit("hello", {id, nsp: "/second", auth}); "echo" as above.
// - /^\/dyn-\d+$/ (dynamic): on connection emit("hello", {id, nsp: <actual name>, auth}).
// - "/private": middleware always refuses, message "forbidden", data {code: 403}.
// - any other namespace is unknown ("Invalid namespace").
import { createServer } from "node:http";
import { Server } from "socket.io";
import msgpackParser from "socket.io-msgpack-parser";

const port = Number(process.env.PORT || 3000);

const httpServer = createServer();
const io = new Server(httpServer, {
  pingInterval: 2000,
  pingTimeout: 2000,
  cors: { origin: "*" },
  // INTEROP_RECOVERY=1: connection state recovery (test/recovery.test.js).
  ...(process.env.INTEROP_RECOVERY === "1" ? { connectionStateRecovery: {} } : {}),
  // INTEROP_PARSER=msgpack: socket.io-msgpack-parser instead of the default parser (test/msgpack.test.js).
  ...(process.env.INTEROP_PARSER === "msgpack" ? { parser: msgpackParser } : {}),
  // INTEROP_DEFLATE=1: WebSocket compression with Switchyard's parameters (test/deflate.test.js).
  ...(process.env.INTEROP_DEFLATE === "1"
    ? { perMessageDeflate: { serverNoContextTakeover: true, clientNoContextTakeover: true } }
    : {}),
});

// Engine.IO bookkeeping parameters are not part of what the client asked for.
const TRANSPORT_QUERY_KEYS = new Set(["EIO", "transport", "t"]);

function clientQuery(handshake) {
  const query = {};
  for (const [key, value] of Object.entries(handshake.query)) {
    if (!TRANSPORT_QUERY_KEYS.has(key)) query[key] = value;
  }
  return query;
}

function rejection(message, data) {
  const err = new Error(message);
  err.data = data;
  return err;
}

io.use((socket, next) => {
  if (socket.handshake.auth && socket.handshake.auth.token === "bad") {
    next(rejection("unauthorized", { reason: "bad token" }));
  } else {
    next();
  }
});

io.on("connection", (socket) => {
  socket.emit("hello", {
    id: socket.id,
    nsp: socket.nsp.name,
    auth: socket.handshake.auth,
    query: clientQuery(socket.handshake),
  });
  if (socket.recovered) {
    socket.emit("recovered", { id: socket.id, rooms: [...socket.rooms].sort() });
  }

  socket.on("echo", (...args) => socket.emit("echo", ...args));

  socket.on("echo-ack", (...args) => {
    const ack = args.pop();
    if (typeof ack === "function") ack(...args);
  });

  socket.on("server-ack", async (payload) => {
    try {
      const result = await socket.timeout(2000).emitWithAck("ask", payload);
      socket.emit("server-ack-result", result);
    } catch {
      socket.emit("server-ack-result", { error: "timeout" });
    }
  });

  socket.on("join", (room, ack) => {
    socket.join(room);
    ack([...socket.rooms].sort());
  });

  socket.on("leave", (room, ack) => {
    socket.leave(room);
    ack([...socket.rooms].sort());
  });

  socket.on("to-room", (room, ...args) => io.to(room).emit("room-msg", ...args));

  socket.on("broadcast", (...args) => socket.broadcast.emit("broadcast", ...args));

  socket.on("broadcast-ack", (payload, ack) => {
    io.timeout(1000).emit("ping-all", payload, (err, responses) => {
      ack({ timedOut: !!err, responses });
    });
  });

  socket.on("disconnect-me", () => socket.disconnect());

  socket.on("close-conn", () => socket.conn.close());

  socket.on("binary", () => {
    socket.emit("binary", Buffer.from([1, 2, 3]), {
      nested: Buffer.from([4, 5]),
      list: [Buffer.from([6])],
    });
  });
});

io.of("/second").on("connection", (socket) => {
  socket.emit("hello", { id: socket.id, nsp: "/second", auth: socket.handshake.auth });
  socket.on("echo", (...args) => socket.emit("echo", ...args));
});

io.of(/^\/dyn-\d+$/).on("connection", (socket) => {
  socket.emit("hello", { id: socket.id, nsp: socket.nsp.name, auth: socket.handshake.auth });
});

io.of("/private").use((_socket, next) => next(rejection("forbidden", { code: 403 })));

httpServer.listen(port, "127.0.0.1", () => {
  console.log(`reference server listening on 127.0.0.1:${port}`);
});

function shutdown() {
  io.close();
  httpServer.close();
  process.exit(0);
}
process.on("SIGTERM", shutdown);
process.on("SIGINT", shutdown);
