// Keeps a few official socket.io-client sockets connected to a Switchyard server while schemathesis
// runs, so the API's rooms and sockets are real: each socket joins a room through the API itself, and
// comes back after the API disconnected it (the `disconnect` operation). Prints "ready" once every
// socket is connected and in its room; runs until killed.
//   node clients.mjs http://127.0.0.1:PORT KEY [COUNT]
import { createRequire } from "node:module";

// socket.io-client from the Node interop suite's dependencies (tests/node/package.json).
const require = createRequire(new URL("../node/package.json", import.meta.url));
const { io } = require("socket.io-client");

const [url, key, count = "4"] = process.argv.slice(2);
if (!url || !key) {
  console.error("usage: node clients.mjs URL KEY [COUNT]");
  process.exit(2);
}

async function join(id, room) {
  const response = await fetch(`${url}/api/sockets/${encodeURIComponent(id)}/join`, {
    method: "POST",
    headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
    body: JSON.stringify({ room }),
  });
  if (response.status !== 200) throw new Error(`join ${id} ${room}: ${response.status} ${await response.text()}`);
}

let joined = 0;
const total = Number(count);
for (let i = 0; i < total; i++) {
  const room = `room-${i % 2}`;
  const socket = io(url, { transports: ["websocket"], reconnectionDelay: 100, reconnectionDelayMax: 500 });
  socket.on("connect", () => {
    join(socket.id, room).then(
      async () => {
        // A message in the room, so GET /api/rooms/{room}/history has something to page through.
        await socket.timeout(5000).emitWithAck("join", room).catch(() => {});
        await socket.timeout(5000).emitWithAck("message", room, { text: `hello from ${i}` }).catch(() => {});
        joined += 1;
        if (joined === total) console.log("ready");
      },
      (err) => console.error(String(err)),
    );
  });
  // A server-side disconnect is not retried by the client by itself.
  socket.on("disconnect", (reason) => {
    if (reason === "io server disconnect") setTimeout(() => socket.connect(), 100);
  });
}
setTimeout(() => {
  if (joined < total) {
    console.error(`only ${joined} of ${total} sockets joined within 10 s`);
    process.exit(1);
  }
}, 10000).unref();
