// Reference chat server on the official Node `socket.io` package: serves the page assets from
// crates/server/assets and implements the chat event contract written at the top of chat.js.
// It exists so the page and the browser test can be checked against a known-good server;
// the real server under test is the `switchyard` binary.
//
// Usage: PORT=3000 node tests/browser/reference-server.js   (listens on 127.0.0.1 only)

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server } from 'socket.io';

const MAX_TEXT_LENGTH = 2000;
const here = path.dirname(fileURLToPath(import.meta.url));
const assetDir = path.resolve(here, '../../crates/server/assets');
const assets = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/chat.js': ['chat.js', 'text/javascript; charset=utf-8'],
  '/chat.css': ['chat.css', 'text/css; charset=utf-8'],
};

const httpServer = createServer(async (req, res) => {
  const { pathname } = new URL(req.url, 'http://localhost');
  const asset = assets[pathname];
  if (!asset || (req.method !== 'GET' && req.method !== 'HEAD')) {
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8' }).end('not found\n');
    return;
  }
  try {
    const body = await readFile(path.join(assetDir, asset[0]));
    res.writeHead(200, { 'content-type': asset[1], 'cache-control': 'no-cache' });
    res.end(req.method === 'HEAD' ? undefined : body);
  } catch (err) {
    res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8' }).end(`cannot read ${asset[0]}: ${err.message}\n`);
  }
});

const io = new Server(httpServer, { serveClient: false });
const messagePrefix = randomBytes(4).toString('hex');
let messageCounter = 0;

const isNonEmptyString = (value) => typeof value === 'string' && value.trim() !== '';
// Events that omit the ack callback still get handled; the reply just goes nowhere.
const ackOf = (maybeAck) => (typeof maybeAck === 'function' ? maybeAck : () => {});

io.on('connection', (socket) => {
  socket.on('chat:join', async (room, name, maybeAck) => {
    const ack = ackOf(maybeAck);
    if (!isNonEmptyString(room) || !isNonEmptyString(name)) {
      ack({ ok: false, error: 'room and name must be non-empty strings' });
      return;
    }
    if (socket.data.room) {
      socket.leave(socket.data.room);
      io.to(socket.data.room).emit('chat:system', { room: socket.data.room, text: `${socket.data.name} left` });
    }
    socket.data.room = room;
    socket.data.name = name;
    socket.join(room);
    const members = (await io.in(room).fetchSockets()).map((peer) => peer.data.name);
    ack({ room, members });
    io.to(room).emit('chat:system', { room, text: `${name} joined` });
  });

  socket.on('chat:message', (room, text, maybeAck) => {
    const ack = ackOf(maybeAck);
    if (typeof room !== 'string' || room !== socket.data.room) {
      ack({ ok: false, error: 'not in that room' });
      return;
    }
    if (typeof text !== 'string' || text.length === 0) {
      ack({ ok: false, error: 'empty message' });
      return;
    }
    if (text.length > MAX_TEXT_LENGTH) {
      ack({ ok: false, error: `message longer than ${MAX_TEXT_LENGTH} characters` });
      return;
    }
    const id = `${messagePrefix}-${++messageCounter}`;
    io.to(room).emit('chat:message', { room, name: socket.data.name, text, at: Date.now(), id });
    ack({ ok: true });
  });

  socket.on('disconnect', () => {
    const { room, name } = socket.data;
    if (room) io.to(room).emit('chat:system', { room, text: `${name} left` });
  });
});

const port = Number(process.env.PORT || 3000);
httpServer.listen(port, '127.0.0.1', () => {
  console.log(`reference chat server listening on http://127.0.0.1:${port}/`);
});

for (const signal of ['SIGINT', 'SIGTERM']) {
  process.on(signal, () => {
    io.close();
    httpServer.close(() => process.exit(0));
    // Open keep-alive sockets must not hold the process past a short grace period.
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
