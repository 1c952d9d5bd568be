/*
 * Switchyard chat page: a small Socket.IO v5 / Engine.IO v4 client over the browser WebSocket, and the UI.
 *
 * Chat event contract (namespace "/"):
 *   client -> server  "chat:join"    (room: string, name: string, ack)
 *       The server leaves the previous chat room (telling it "<name> left"), joins `room`, acks
 *       {room, members: [name, ...]} and emits "chat:system" {room, text: "<name> joined"} to the room.
 *   client -> server  "chat:message" (room: string, text: string, ack)
 *       The server emits "chat:message" {room, name, text, at: <ms since epoch>, id: <string>} to everyone in
 *       the room, the sender included, and acks {ok: true}; it acks {ok: false, error} when the sender is not
 *       in that room or the text is empty or longer than 2000 characters.
 *   server -> client  "chat:system"  {room, text}
 *       Also sent to the room as "<name> left" when a member disconnects.
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
          // This client is text only; the chat contract never sends binary.
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
          this.sendRaw(EIO_MESSAGE + SIO_CONNECT);
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

  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $('status'),
    statusText: $('status-text'),
    joinForm: $('join-form'),
    name: $('name'),
    room: $('room'),
    join: $('join'),
    roomTitle: $('room-title'),
    messages: $('messages'),
    composeForm: $('compose-form'),
    message: $('message'),
    send: $('send'),
    composeError: $('compose-error'),
    members: $('members'),
    memberCount: $('member-count'),
  };

  const state = {
    joinedRoom: null, // the room the server confirmed
    joiningRoom: null, // the room asked for and not yet confirmed: its events may arrive before the ack
    joinedName: null,
    members: new Set(),
    seenMessageIds: new Set(),
  };

  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const socket = new TinySocket(`${scheme}//${location.host}/socket.io/?EIO=4&transport=websocket`, setStatus);

  function setStatus(connState, detail, reason) {
    if (ui.status.dataset.state === 'connected' && connState !== 'connected' && state.joinedRoom !== null) {
      addSystemLine('Connection lost, reconnecting…');
    }
    ui.status.dataset.state = connState;
    ui.statusText.textContent = detail;
    ui.status.title = reason ? `Last disconnect: ${reason}` : '';
    if (reason) console.info(`chat: disconnected (${reason})`);
    updateControls();
  }

  function updateControls() {
    const canSend = socket.connected && state.joinedRoom !== null;
    ui.join.disabled = !socket.connected;
    ui.message.disabled = !canSend;
    ui.send.disabled = !canSend;
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

  function addChatMessage(msg) {
    if (msg.id !== undefined) {
      if (state.seenMessageIds.has(msg.id)) return;
      state.seenMessageIds.add(msg.id);
    }
    const item = document.createElement('li');
    item.className = msg.name === state.joinedName ? 'message own' : 'message';
    item.dataset.kind = 'message';
    if (msg.id !== undefined) item.dataset.id = String(msg.id);

    const meta = document.createElement('div');
    meta.className = 'meta';
    const author = document.createElement('span');
    author.className = 'author';
    author.textContent = String(msg.name);
    const time = document.createElement('time');
    if (typeof msg.at === 'number') time.dateTime = new Date(msg.at).toISOString();
    time.textContent = formatTime(msg.at);
    meta.append(author, time);

    const body = document.createElement('p');
    body.className = 'text';
    body.textContent = String(msg.text);

    item.append(meta, body);
    appendItem(item);
  }

  function renderMembers() {
    ui.members.replaceChildren();
    const names = [...state.members].sort((a, b) => a.localeCompare(b));
    for (const name of names) {
      const item = document.createElement('li');
      item.textContent = name;
      if (name === state.joinedName) {
        item.classList.add('me');
        item.title = 'you';
      }
      ui.members.appendChild(item);
    }
    ui.memberCount.textContent = String(names.length);
  }

  function showComposeError(text) {
    ui.composeError.textContent = text;
    ui.composeError.hidden = !text;
  }

  function isCurrentRoom(room) {
    return room === state.joinedRoom || (room !== null && room === state.joiningRoom);
  }

  async function joinRoom(room, name) {
    state.joiningRoom = room;
    let reply;
    try {
      [reply] = await socket.emitWithAck('chat:join', room, name);
    } finally {
      if (state.joiningRoom === room) state.joiningRoom = null;
    }
    if (!reply || typeof reply.room !== 'string') {
      throw new Error(reply && reply.error ? reply.error : 'unexpected join reply');
    }
    const changedRoom = state.joinedRoom !== reply.room;
    state.joinedRoom = reply.room;
    state.joinedName = name;
    state.members = new Set(Array.isArray(reply.members) ? reply.members.map(String) : [name]);
    ui.roomTitle.textContent = `#${reply.room}`;
    document.title = `#${reply.room} · Switchyard chat`;
    if (changedRoom) addSystemLine(`You are in #${reply.room} as ${name}`);
    renderMembers();
    updateControls();
  }

  ui.joinForm.addEventListener('submit', async (event) => {
    event.preventDefault();
    const name = ui.name.value.trim();
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
      await joinRoom(room, name);
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
      const [reply] = await socket.emitWithAck('chat:message', state.joinedRoom, text);
      if (!reply || reply.ok !== true) {
        throw new Error(reply && reply.error ? reply.error : 'rejected by the server');
      }
      showComposeError('');
    } catch (err) {
      // Give the text back so nothing typed is lost.
      if (!ui.message.value) ui.message.value = text;
      showComposeError(`Not sent: ${err.message}`);
    }
  });

  socket.on('chat:message', (msg) => {
    if (!msg || typeof msg !== 'object') return;
    if (!isCurrentRoom(msg.room)) return;
    addChatMessage(msg);
  });

  socket.on('chat:system', (msg) => {
    if (!msg || typeof msg !== 'object' || !isCurrentRoom(msg.room)) return;
    const text = String(msg.text);
    addSystemLine(text);
    // The contract carries membership only in these lines; names are unique enough for a member list.
    const joined = / joined$/.exec(text);
    const left = / left$/.exec(text);
    if (joined) state.members.add(text.slice(0, joined.index));
    if (left) state.members.delete(text.slice(0, left.index));
    if (joined || left) renderMembers();
  });

  socket.onConnected(() => {
    // After a reconnect the server has forgotten us: join the same room again.
    if (state.joinedRoom !== null && state.joinedName !== null) {
      joinRoom(state.joinedRoom, state.joinedName).then(
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
