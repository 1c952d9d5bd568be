// Reference server on the official Node `socket.io` package: serves the page assets from
// crates/app/assets and implements the built-in events (docs/EVENTS.md) on one node, in memory.
// It exists so the page and the browser test can be checked against a known-good server;
// the real server under test is the `switchyard` binary.
//
// Usage: PORT=3000 node tests/browser/reference-server.js   (listens on 127.0.0.1 only)

import { createServer } from 'node:http';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Server } from 'socket.io';

const here = path.dirname(fileURLToPath(import.meta.url));
const assetDir = path.resolve(here, '../../crates/app/assets');
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

// The contract of docs/EVENTS.md, one node: ids are UUIDv7 (48-bit ms timestamp, version 7, random).
function uuidv7() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  const now = Date.now();
  for (let i = 0; i < 6; i++) bytes[i] = Math.floor(now / 2 ** (8 * (5 - i))) & 0xff;
  bytes[6] = 0x70 | (bytes[6] & 0x0f);
  bytes[8] = 0x80 | (bytes[8] & 0x3f);
  const hex = [...bytes].map((b) => b.toString(16).padStart(2, '0')).join('');
  return { id: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`, ts: now };
}

const ackOf = (maybeAck) => (typeof maybeAck === 'function' ? maybeAck : () => {});
const refuse = (ack, error) => ack({ ok: false, error });
const validRoom = (room) => typeof room === 'string' && room.length > 0 && Buffer.byteLength(room) <= 256 && !io.sockets.sockets.has(room);
const userOf = (socket) => {
  const user = socket.handshake.auth?.user;
  const usable = typeof user === 'string' && user.length > 0 && Buffer.byteLength(user) <= 64 && user.trim() === user && !/\p{Cc}/u.test(user);
  return usable ? user : socket.id;
};
// room -> user -> number of sockets
const presence = new Map();

function arrived(socket, room) {
  const users = presence.get(room) ?? new Map();
  presence.set(room, users);
  const user = userOf(socket);
  const count = (users.get(user) ?? 0) + 1;
  users.set(user, count);
  if (count === 1 && !room.startsWith('user:')) io.to(room).emit('user-connected', { room, user });
}

function departed(socket, room) {
  const users = presence.get(room);
  const user = userOf(socket);
  if (!users || !users.has(user)) return;
  const count = users.get(user) - 1;
  if (count > 0) {
    users.set(user, count);
    return;
  }
  users.delete(user);
  if (users.size === 0) presence.delete(room);
  if (!room.startsWith('user:')) io.to(room).emit('user-disconnected', { room, user });
}

io.on('connection', (socket) => {
  const own = `user:${userOf(socket)}`;
  socket.join(own);
  arrived(socket, own);

  socket.on('join', (room, maybeAck) => {
    const ack = ackOf(maybeAck);
    if (!validRoom(room)) return refuse(ack, 'invalid');
    if (room.startsWith('user:') && room !== own) return refuse(ack, 'forbidden');
    if (!socket.rooms.has(room)) {
      socket.join(room);
      arrived(socket, room);
    }
    ack({ ok: true, room });
  });

  socket.on('leave', (room, maybeAck) => {
    const ack = ackOf(maybeAck);
    if (!validRoom(room)) return refuse(ack, 'invalid');
    if (room === own) return refuse(ack, 'forbidden');
    if (socket.rooms.has(room)) {
      socket.leave(room);
      departed(socket, room);
    }
    ack({ ok: true, room });
  });

  socket.on('message', (...args) => {
    const ack = ackOf(args.at(-1));
    if (typeof args.at(-1) === 'function') args.pop();
    const [room, data] = args;
    if (!validRoom(room) || args.length < 2) return refuse(ack, 'invalid');
    if (!socket.rooms.has(room)) return refuse(ack, 'forbidden');
    const { id, ts } = uuidv7();
    io.to(room).emit('message', { id, room, user: userOf(socket), data, ts });
    ack({ ok: true, id, ts });
  });

  socket.on('typing', (room, maybeAck) => {
    const ack = ackOf(maybeAck);
    if (!validRoom(room)) return refuse(ack, 'invalid');
    if (!socket.rooms.has(room)) return refuse(ack, 'forbidden');
    socket.to(room).volatile.emit('typing', { room, user: userOf(socket) });
    ack({ ok: true });
  });

  socket.on('presence', (room, maybeAck) => {
    const ack = ackOf(maybeAck);
    if (!validRoom(room)) return refuse(ack, 'invalid');
    if (room.startsWith('user:')) return refuse(ack, 'forbidden');
    ack({ ok: true, users: [...(presence.get(room)?.keys() ?? [])].sort() });
  });

  socket.on('signal', (...args) => {
    const ack = ackOf(args.at(-1));
    if (typeof args.at(-1) === 'function') args.pop();
    const [user, data] = args;
    if (typeof user !== 'string' || user.length === 0 || Buffer.byteLength(user) > 256 || args.length < 2) {
      return refuse(ack, 'invalid');
    }
    if (!presence.get(`user:${user}`)?.has(user)) return refuse(ack, 'offline');
    io.to(`user:${user}`).emit('signal', { from: userOf(socket), data });
    ack({ ok: true });
  });

  socket.on('disconnecting', () => {
    for (const room of socket.rooms) if (room !== socket.id) departed(socket, room);
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
