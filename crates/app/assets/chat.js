/*
 * Switchyard chat page: a small Socket.IO v5 / Engine.IO v4 client over the browser WebSocket, and the UI.
 *
 * It is a client of the server's built-in events only (docs/EVENTS.md is the contract), on namespace "/":
 *   CONNECT auth     {user: <name>, token: <JWT>}: with auth configured the token decides who the user is;
 *                    without, `user` names the user.
 *   "join"     (room, ack)        ack {ok: true, room} | {ok: false, error}
 *   "leave"    (room, ack)        ack {ok: true, room} | {ok: false, error}
 *   "message"  (room, data, ack)  ack {ok: true, id, ts}; the room (sender included) gets
 *                                 "message" {id, room, user, data, ts}. This page sends data = {text}.
 *   "typing"   (room)             the others in the room get "typing" {room, user} (volatile).
 *   "presence" (room, ack)        ack {ok: true, users: [...]}
 *   "signal"   (user, data, ack)  the user's sockets get "signal" {from, data}; ack {ok: false, error:
 *                                 "offline"} when they have none. Private messages are signals with
 *                                 data = {type: "dm", text}.
 *   server -> client "user-connected" / "user-disconnected" {room, user}.
 */
(() => {
  'use strict';

  const MAX_MESSAGE_LENGTH = 2000;
  const ACK_TIMEOUT_MS = 10000;
  const CONNECT_TIMEOUT_MS = 10000;
  const RECONNECT_BASE_MS = 500;
  const RECONNECT_MAX_MS = 10000;

  // Engine.IO v4 packet types (first character of every text frame).
  const EIO_OPEN = '0';
  const EIO_CLOSE = '1';
  const EIO_PING = '2';
  const EIO_PONG = '3';
  const EIO_MESSAGE = '4';
  const EIO_NOOP = '6';

  // Socket.IO v5 packet types (first character after the Engine.IO "4").
  const SIO_CONNECT = 0;
  const SIO_DISCONNECT = 1;
  const SIO_EVENT = 2;
  const SIO_ACK = 3;
  const SIO_CONNECT_ERROR = 4;
  const SIO_BINARY_EVENT = 5;
  const SIO_BINARY_ACK = 6;

  /**
   * Decodes a Socket.IO text packet: <type>[<attachments>-][<nsp>,][<ack id>][JSON].
   * Throws on anything malformed so the caller can drop the connection, as the protocol asks.
   */
  function decodeSocketPacket(text) {
    const type = Number(text.charAt(0));
    if (!Number.isInteger(type) || type < SIO_CONNECT || type > SIO_BINARY_ACK || text.charAt(0) === '') {
      throw new Error(`unknown packet type in ${JSON.stringify(text.slice(0, 20))}`);
    }
    let i = 1;
    let attachments = 0;
    if (type === SIO_BINARY_EVENT || type === SIO_BINARY_ACK) {
      const dash = text.indexOf('-', i);
      if (dash === -1 || !/^\d+$/.test(text.slice(i, dash))) throw new Error('bad attachment count');
      attachments = Number(text.slice(i, dash));
      i = dash + 1;
    }
    let nsp = '/';
    if (text.charAt(i) === '/') {
      const comma = text.indexOf(',', i);
      const end = comma === -1 ? text.length : comma;
      nsp = text.slice(i, end);
      i = comma === -1 ? end : end + 1;
    }
    let id = null;
    const idStart = i;
    while (i < text.length && text.charCodeAt(i) >= 48 && text.charCodeAt(i) <= 57) i++;
    if (i > idStart) id = Number(text.slice(idStart, i));
    const data = i < text.length ? JSON.parse(text.slice(i)) : undefined;
    return { type, attachments, nsp, id, data };
  }

  /**
   * One Socket.IO connection to the default namespace over a single WebSocket, reconnecting with
   * exponential backoff. Status changes are reported through `onStatus(state, detail, reason)` where state is
   * one of "connecting", "connected", "reconnecting", and reason says why the last connection ended.
   */
  class TinySocket {
    constructor(url, onStatus) {
      this.url = url;
      this.onStatus = onStatus;
      this.handlers = new Map();
      this.connectedHandlers = [];
      this.ws = null;
      this.connected = false;
      this.sid = null;
      this.nextAckId = 0;
      this.pendingAcks = new Map();
      this.attempt = 0;
      this.heartbeatTimer = null;
      this.connectTimer = null;
      this.reconnectTimer = null;
      this.heartbeatWindowMs = 0;
      this.auth = null;
    }

    /** Registers a handler for a server event; it gets the event arguments (and a reply function last when
     * the server asked for an acknowledgement). */
    on(event, handler) {
      if (!this.handlers.has(event)) this.handlers.set(event, []);
      this.handlers.get(event).push(handler);
    }

    /** Runs `handler` after every successful Socket.IO CONNECT (first connect and each reconnect). */
    onConnected(handler) {
      this.connectedHandlers.push(handler);
    }

    /** Connects again at once (no backoff) with a new CONNECT `auth` object, e.g. another user or token. */
    reconnectWith(auth) {
      this.auth = auth;
      const ws = this.ws;
      this.ws = null;
      if (ws) {
        ws.onmessage = ws.onclose = ws.onerror = null;
        ws.close();
      }
      this.connected = false;
      clearTimeout(this.heartbeatTimer);
      clearTimeout(this.connectTimer);
      for (const [id, pending] of this.pendingAcks) {
        clearTimeout(pending.timer);
        pending.reject(new Error('reconnecting as another user'));
        this.pendingAcks.delete(id);
      }
      this.attempt = 0;
      this.open();
    }

    /** Emits an event without asking for an acknowledgement. */
    emit(event, ...args) {
      if (this.connected) this.sendRaw(EIO_MESSAGE + SIO_EVENT + JSON.stringify([event, ...args]));
    }

    open() {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
      this.onStatus(this.attempt === 0 ? 'connecting' : 'reconnecting', 'Connecting…');
      let ws;
      try {
        ws = new WebSocket(this.url);
      } catch (err) {
        this.scheduleReconnect(`cannot open WebSocket: ${err.message}`);
        return;
      }
      this.ws = ws;
      ws.onmessage = (event) => {
        if (this.ws !== ws) return;
        if (typeof event.data !== 'string') {
          // This client is text only; the page never sends binary.
          console.warn('chat: ignoring a binary frame');
          return;
        }
        try {
          this.handleEnginePacket(event.data);
        } catch (err) {
          console.error('chat: protocol error, reconnecting', err);
          this.drop(`protocol error: ${err.message}`);
        }
      };
      ws.onclose = (event) => {
        if (this.ws !== ws) return;
        this.drop(event.reason || `connection closed (code ${event.code})`);
      };
      ws.onerror = () => {
        // A close event always follows and does the bookkeeping; nothing more to do here.
      };
      this.connectTimer = setTimeout(() => {
        if (this.ws === ws && !this.connected) this.drop('connect timeout');
      }, CONNECT_TIMEOUT_MS);
    }

    handleEnginePacket(frame) {
      this.armHeartbeat();
      const kind = frame.charAt(0);
      const body = frame.slice(1);
      switch (kind) {
        case EIO_OPEN: {
          const handshake = JSON.parse(body);
          if (typeof handshake.sid !== 'string') throw new Error('open packet without sid');
          // The server pings every pingInterval and gives us pingTimeout to answer; if nothing at all
          // arrives within both, the link is dead even though the socket may not have noticed yet.
          this.heartbeatWindowMs = (Number(handshake.pingInterval) || 25000) + (Number(handshake.pingTimeout) || 20000);
          this.armHeartbeat();
          this.sendRaw(EIO_MESSAGE + SIO_CONNECT + (this.auth ? JSON.stringify(this.auth) : ''));
          break;
        }
        case EIO_PING:
          this.sendRaw(EIO_PONG + body);
          break;
        case EIO_MESSAGE:
          this.handleSocketPacket(decodeSocketPacket(body));
          break;
        case EIO_CLOSE:
          this.drop('server closed the session');
          break;
        case EIO_PONG:
        case EIO_NOOP:
          break;
        default:
          throw new Error(`unknown Engine.IO packet type ${JSON.stringify(kind)}`);
      }
    }

    handleSocketPacket(packet) {
      if (packet.nsp !== '/') {
        console.warn(`chat: ignoring a packet for namespace ${packet.nsp}`);
        return;
      }
      switch (packet.type) {
        case SIO_CONNECT:
          if (!packet.data || typeof packet.data.sid !== 'string') throw new Error('CONNECT without sid');
          clearTimeout(this.connectTimer);
          this.connected = true;
          this.sid = packet.data.sid;
          this.attempt = 0;
          this.onStatus('connected', 'Connected');
          for (const handler of this.connectedHandlers) handler();
          break;
        case SIO_CONNECT_ERROR: {
          const message = packet.data && packet.data.message ? packet.data.message : 'connect error';
          this.drop(`server refused: ${message}`);
          break;
        }
        case SIO_DISCONNECT:
          this.drop('disconnected by the server');
          break;
        case SIO_EVENT:
          this.deliverEvent(packet);
          break;
        case SIO_ACK: {
          const pending = this.pendingAcks.get(packet.id);
          if (!pending) {
            console.warn(`chat: ack ${packet.id} arrived for no pending request (timed out?)`);
            return;
          }
          this.pendingAcks.delete(packet.id);
          clearTimeout(pending.timer);
          if (!Array.isArray(packet.data)) {
            pending.reject(new Error('malformed ack'));
          } else {
            pending.resolve(packet.data);
          }
          break;
        }
        case SIO_BINARY_EVENT:
        case SIO_BINARY_ACK:
          console.warn('chat: ignoring a binary packet (this client is text only)');
          break;
        default:
          throw new Error(`unexpected Socket.IO packet type ${packet.type}`);
      }
    }

    deliverEvent(packet) {
      if (!Array.isArray(packet.data) || typeof packet.data[0] !== 'string') {
        throw new Error('EVENT payload is not ["name", ...]');
      }
      const [event, ...args] = packet.data;
      if (packet.id !== null) {
        let replied = false;
        args.push((...reply) => {
          if (replied) return;
          replied = true;
          this.sendRaw(EIO_MESSAGE + SIO_ACK + packet.id + JSON.stringify(reply));
        });
      }
      const handlers = this.handlers.get(event);
      if (!handlers) {
        console.warn(`chat: no handler for event ${event}`);
        return;
      }
      for (const handler of handlers) {
        try {
          handler(...args);
        } catch (err) {
          console.error(`chat: handler for ${event} failed`, err);
        }
      }
    }

    /** Emits an event and resolves with the server's acknowledgement arguments (rejects on timeout or
     * disconnect). */
    emitWithAck(event, ...args) {
      return new Promise((resolve, reject) => {
        if (!this.connected) {
          reject(new Error('not connected'));
          return;
        }
        const id = this.nextAckId++;
        const timer = setTimeout(() => {
          this.pendingAcks.delete(id);
          reject(new Error(`no answer to ${event} within ${ACK_TIMEOUT_MS / 1000}s`));
        }, ACK_TIMEOUT_MS);
        this.pendingAcks.set(id, { resolve, reject, timer });
        this.sendRaw(EIO_MESSAGE + SIO_EVENT + id + JSON.stringify([event, ...args]));
      });
    }

    sendRaw(frame) {
      if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(frame);
    }

    armHeartbeat() {
      if (!this.heartbeatWindowMs) return;
      clearTimeout(this.heartbeatTimer);
      this.heartbeatTimer = setTimeout(() => this.drop('ping timeout'), this.heartbeatWindowMs);
    }

    /** Tears down the current WebSocket, fails pending acks and schedules a reconnect. */
    drop(reason) {
      const ws = this.ws;
      this.ws = null;
      this.connected = false;
      this.sid = null;
      clearTimeout(this.heartbeatTimer);
      clearTimeout(this.connectTimer);
      this.heartbeatWindowMs = 0;
      if (ws) {
        ws.onmessage = ws.onclose = ws.onerror = null;
        if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
      }
      for (const [id, pending] of this.pendingAcks) {
        clearTimeout(pending.timer);
        pending.reject(new Error(`disconnected (${reason})`));
        this.pendingAcks.delete(id);
      }
      this.scheduleReconnect(reason);
    }

    scheduleReconnect(reason) {
      if (this.reconnectTimer) return;
      const backoff = Math.min(RECONNECT_MAX_MS, RECONNECT_BASE_MS * 2 ** this.attempt);
      // Jitter spreads the reconnects of many pages after a server restart.
      const delay = Math.round(backoff * (0.75 + Math.random() * 0.5));
      this.attempt++;
      this.onStatus('reconnecting', `Offline, retrying in ${Math.max(1, Math.round(delay / 1000))}s`, reason);
      this.reconnectTimer = setTimeout(() => this.open(), delay);
    }
  }

  // ---------------------------------------------------------------------------------------------------------
  // The page.

  const TYPING_SEND_EVERY_MS = 1500;
  const TYPING_SHOW_MS = 3000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    statusText: $('status-text'),
    joinForm: $('join-form'),
    name: $('name'),
    token: $('token'),
    getToken: $('get-token'),
    room: $('room'),
    join: $('join'),
    roomTitle: $('room-title'),
    messages: $('messages'),
    typing: $('typing'),
    composeForm: $('compose-form'),
    message: $('message'),
    send: $('send'),
    composeError: $('compose-error'),
    members: $('members'),
    memberCount: $('member-count'),
    dmForm: $('dm-form'),
    dmTo: $('dm-to'),
    dmText: $('dm-text'),
    dmSend: $('dm-send'),
  };

  const state = {
    joinedRoom: null, // the room the server confirmed
    joiningRoom: null, // the room asked for and not yet confirmed: its events may arrive before the ack
    user: null, // who the page connected as (auth.user)
    token: '',
    members: new Set(),
    seenMessageIds: new Set(),
    typists: new Map(), // user -> timer hiding them
    lastTypingSentAt: 0,
    connectedWaiters: [],
  };

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new TinySocket(`${scheme}//${location.host}/socket.io/?EIO=4&transport=websocket`, setStatus);

  function setStatus(connState, detail, reason) {
    if (ui.status.dataset.state === 'connected' && connState !== 'connected' && state.joinedRoom !== null) {
      addSystemLine('Connection lost, reconnecting…');
    }
    ui.status.dataset.state = connState;
    ui.statusText.textContent = state.user && connState === 'connected' ? `Connected as ${state.user}` : detail;
    ui.status.title = reason ? `Last disconnect: ${reason}` : '';
    if (reason) console.info(`chat: disconnected (${reason})`);
    updateControls();
  }

  function updateControls() {
    const canSend = socket.connected && state.joinedRoom !== null;
    ui.join.disabled = !socket.connected;
    ui.message.disabled = !canSend;
    ui.send.disabled = !canSend;
    for (const input of [ui.dmTo, ui.dmText, ui.dmSend]) input.disabled = !canSend;
    if (canSend) ui.message.placeholder = `Message #${state.joinedRoom}`;
    else if (!socket.connected) {
      ui.message.placeholder = ui.status.dataset.state === 'reconnecting' ? 'Offline, waiting for the connection…' : 'Connecting…';
    }
    else ui.message.placeholder = 'Join a room to start chatting';
  }

  function isScrolledToBottom() {
    const list = ui.messages;
    return list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  }

  function appendItem(item) {
    const stick = isScrolledToBottom();
    const hint = ui.messages.querySelector('.hint');
    if (hint) hint.remove();
    ui.messages.appendChild(item);
    if (stick) ui.messages.scrollTop = ui.messages.scrollHeight;
  }

  function formatTime(ms) {
    const date = new Date(typeof ms === 'number' ? ms : Date.now());
    return date.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  }

  function addSystemLine(text) {
    const item = document.createElement('li');
    item.className = 'system';
    item.dataset.kind = 'system';
    item.textContent = text;
    appendItem(item);
  }

  /** A chat line: kind "message" (a room message) or "dm" (a private message, in or out). */
  function addLine({ kind, id, author, text, ts, own }) {
    const item = document.createElement('li');
    item.className = `message${own ? ' own' : ''}${kind === 'dm' ? ' dm' : ''}`;
    item.dataset.kind = kind;
    if (id !== undefined) item.dataset.id = String(id);

    const meta = document.createElement('div');
    meta.className = 'meta';
    const authorEl = document.createElement('span');
    authorEl.className = 'author';
    authorEl.textContent = author;
    const time = document.createElement('time');
    if (typeof ts === 'number') time.dateTime = new Date(ts).toISOString();
    time.textContent = formatTime(ts);
    meta.append(authorEl, time);

    const body = document.createElement('p');
    body.className = 'text';
    body.textContent = text;

    item.append(meta, body);
    appendItem(item);
  }

  /** The text of a message's data: this page sends {text}; other clients may send anything. */
  function textOf(data) {
    if (data && typeof data === 'object' && typeof data.text === 'string') return data.text;
    return typeof data === 'string' ? data : JSON.stringify(data);
  }

  function renderMembers() {
    ui.members.replaceChildren();
    const names = [...state.members].sort((a, b) => a.localeCompare(b));
    for (const name of names) {
      const item = document.createElement('li');
      item.textContent = name;
      if (name === state.user) {
        item.classList.add('me');
        item.title = 'you';
      } else {
        item.title = `Send ${name} a private message`;
      }
      ui.members.appendChild(item);
    }
    ui.memberCount.textContent = String(names.length);
  }

  function renderTyping() {
    const names = [...state.typists.keys()].sort();
    if (names.length === 0) ui.typing.textContent = '';
    else if (names.length === 1) ui.typing.textContent = `${names[0]} is typing…`;
    else ui.typing.textContent = `${names.join(', ')} are typing…`;
  }

  function stopTyping(user) {
    const timer = state.typists.get(user);
    if (timer === undefined) return;
    clearTimeout(timer);
    state.typists.delete(user);
    renderTyping();
  }

  function showComposeError(text) {
    ui.composeError.textContent = text;
    ui.composeError.hidden = !text;
  }

  function isCurrentRoom(room) {
    return room === state.joinedRoom || (room !== null && room === state.joiningRoom);
  }

  function refused(reply, what) {
    return new Error(reply && reply.error ? `${what}: ${reply.error}` : `${what}: unexpected reply`);
  }

  /** Resolves on the next successful CONNECT. */
  function nextConnect() {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('could not connect')), CONNECT_TIMEOUT_MS * 2);
      state.connectedWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  /** Connects as `user` (with `token`) unless the connection already is that. */
  async function connectAs(user, token) {
    if (socket.connected && state.user === user && state.token === token) return;
    state.user = user;
    state.token = token;
    state.joinedRoom = null;
    const auth = { user };
    if (token) auth.token = token;
    const connected = nextConnect();
    socket.reconnectWith(auth);
    await connected;
  }

  async function joinRoom(room) {
    const previous = state.joinedRoom;
    state.joiningRoom = room;
    let reply;
    try {
      [reply] = await socket.emitWithAck('join', room);
    } finally {
      if (state.joiningRoom === room) state.joiningRoom = null;
    }
    if (!reply || reply.ok !== true) throw refused(reply, 'join');
    if (previous !== null && previous !== room) {
      // One room at a time on this page: the old room hears that we left.
      await socket.emitWithAck('leave', previous).catch(() => {});
    }
    const changedRoom = previous !== room;
    state.joinedRoom = room;
    for (const user of [...state.typists.keys()]) stopTyping(user);
    ui.roomTitle.textContent = `#${room}`;
    document.title = `#${room} · Switchyard chat`;
    if (changedRoom) addSystemLine(`You are in #${room} as ${state.user}`);
    const [presence] = await socket.emitWithAck('presence', room);
    if (!presence || presence.ok !== true || !Array.isArray(presence.users)) throw refused(presence, 'presence');
    state.members = new Set(presence.users.map(String));
    renderMembers();
    updateControls();
  }

  ui.joinForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = ui.name.value.trim();
    const token = ui.token.value.trim();
    const room = ui.room.value.trim() || 'lobby';
    if (!name) {
      ui.name.focus();
      return;
    }
    try {
      localStorage.setItem('switchyard-chat-name', name);
    } catch {
      // Storage may be unavailable (private mode); the name just is not remembered.
    }
    ui.join.disabled = true;
    try {
      await connectAs(name, token);
      await joinRoom(room);
      showComposeError('');
      ui.message.focus();
    } catch (err) {
      showComposeError(`Could not join: ${err.message}`);
    } finally {
      updateControls();
    }
  });

  ui.composeForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const text = ui.message.value;
    if (!text.trim() || state.joinedRoom === null) return;
    if (text.length > MAX_MESSAGE_LENGTH) {
      showComposeError(`Messages are limited to ${MAX_MESSAGE_LENGTH} characters.`);
      return;
    }
    ui.message.value = '';
    try {
      const [reply] = await socket.emitWithAck('message', state.joinedRoom, { text });
      if (!reply || reply.ok !== true) throw refused(reply, 'rejected');
      showComposeError('');
    } catch (err) {
      // Give the text back so nothing typed is lost.
      if (!ui.message.value) ui.message.value = text;
      showComposeError(`Not sent: ${err.message}`);
    }
  });

  ui.message.addEventListener('input', () => {
    const now = Date.now();
    if (state.joinedRoom === null || !ui.message.value || now - state.lastTypingSentAt < TYPING_SEND_EVERY_MS) return;
    state.lastTypingSentAt = now;
    socket.emit('typing', state.joinedRoom);
  });

  ui.members.addEventListener('click', (event) => {
    const item = event.target.closest('li');
    if (!item || item.classList.contains('me')) return;
    ui.dmTo.value = item.textContent;
    ui.dmText.focus();
  });

  ui.dmForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const to = ui.dmTo.value.trim();
    const text = ui.dmText.value;
    if (!to || !text.trim()) return;
    ui.dmText.value = '';
    try {
      const [reply] = await socket.emitWithAck('signal', to, { type: 'dm', text });
      if (!reply || reply.ok !== true) throw refused(reply, `to ${to}`);
      addLine({ kind: 'dm', author: `${state.user} → ${to}`, text, ts: Date.now(), own: true });
      showComposeError('');
    } catch (err) {
      if (!ui.dmText.value) ui.dmText.value = text;
      showComposeError(`Private message not sent: ${err.message}`);
    }
  });

  const tokenEndpoint = document.body.dataset.tokenEndpoint;
  if (tokenEndpoint) {
    // A development server may mint tokens; never offered unless the page names the endpoint.
    ui.getToken.hidden = false;
    ui.getToken.addEventListener('click', async () => {
      try {
        const response = await fetch(tokenEndpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ sub: ui.name.value.trim() }),
        });
        const body = await response.json();
        if (!response.ok || typeof body.token !== 'string') throw new Error(body.error || `HTTP ${response.status}`);
        ui.token.value = body.token;
      } catch (err) {
        showComposeError(`No token: ${err.message}`);
      }
    });
  }

  socket.on('message', (msg) => {
    if (!msg || typeof msg !== 'object' || !isCurrentRoom(msg.room)) return;
    if (state.seenMessageIds.has(msg.id)) return;
    state.seenMessageIds.add(msg.id);
    stopTyping(String(msg.user));
    addLine({ kind: 'message', id: msg.id, author: String(msg.user), text: textOf(msg.data), ts: msg.ts, own: msg.user === state.user });
  });

  socket.on('signal', (msg) => {
    if (!msg || typeof msg !== 'object' || !msg.data || msg.data.type !== 'dm') return;
    addLine({ kind: 'dm', author: `${msg.from} → you`, text: textOf(msg.data), ts: Date.now(), own: false });
  });

  socket.on('typing', (msg) => {
    if (!msg || typeof msg !== 'object' || msg.room !== state.joinedRoom || msg.user === state.user) return;
    const user = String(msg.user);
    clearTimeout(state.typists.get(user));
    state.typists.set(user, setTimeout(() => stopTyping(user), TYPING_SHOW_MS));
    renderTyping();
  });

  socket.on('user-connected', (msg) => {
    if (!msg || typeof msg !== 'object' || !isCurrentRoom(msg.room)) return;
    addSystemLine(`${msg.user} joined`);
    state.members.add(String(msg.user));
    renderMembers();
  });

  socket.on('user-disconnected', (msg) => {
    if (!msg || typeof msg !== 'object' || !isCurrentRoom(msg.room)) return;
    addSystemLine(`${msg.user} left`);
    state.members.delete(String(msg.user));
    stopTyping(String(msg.user));
    renderMembers();
  });

  socket.onConnected(() => {
    for (const resolve of state.connectedWaiters.splice(0)) resolve();
    setStatus('connected', 'Connected');
    // After a reconnect the server has forgotten our rooms: join the same room again.
    if (state.joinedRoom !== null) {
      const room = state.joinedRoom;
      state.joinedRoom = null;
      joinRoom(room).then(
        () => addSystemLine('Reconnected'),
        (err) => showComposeError(`Could not rejoin: ${err.message}`),
      );
    }
  });

  try {
    const remembered = localStorage.getItem('switchyard-chat-name');
    if (remembered && !ui.name.value) ui.name.value = remembered;
  } catch {
    // No storage: start with an empty name.
  }
  updateControls();
  socket.open();
})();
