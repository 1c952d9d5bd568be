//! A socket: one client in one namespace. Holds its handlers, rooms, data, extensions and pending acks.
//!
//! ```
//! use serde::Deserialize;
//! use serde_json::json;
//! use switchyard_socketio::SocketIo;
//!
//! #[derive(Deserialize)]
//! struct Move { x: i32, y: i32 }
//!
//! let io = SocketIo::new(Default::default());
//! io.of("/").on_connection(|socket| {
//!     // Runs on the connection's task: keep it short.
//!     socket.on("move", |socket, payload, _ack| {
//!         if let Ok(m) = payload.arg::<Move>(0) {
//!             socket.broadcast().emit("moved", json!({"x": m.x, "y": m.y}));
//!         }
//!     });
//!     // Spawned on the runtime: may await.
//!     socket.on_async("save", |socket, payload, ack| async move {
//!         tokio::time::sleep(std::time::Duration::from_millis(1)).await;
//!         if let Some(ack) = ack {
//!             ack.send(json!({"saved": payload.args.len(), "by": socket.id().as_str()}));
//!         }
//!     });
//!     socket.on_any(|_socket, event, _payload| tracing::debug!(event, "in"));
//!     socket.on_any_outgoing(|_socket, event, _payload| tracing::debug!(event, "out"));
//! });
//! ```

use crate::adapter::{BroadcastOptions, Room};
use crate::client::{Client, Handshake};
use crate::middleware::{EventMiddleware, Extensions, Rejection};
use crate::namespace::Namespace;
use crate::operators::BroadcastOperator;
use crate::payload::{Frames, Payload};
use parking_lot::{Mutex, RwLock};
use serde_json::Value;
use smallvec::SmallVec;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::protocol::socketio::{Packet, PacketType};
use switchyard_engine::{CloseReason, SendError, Sid};
use tokio::sync::oneshot;

/// Why a socket disconnected: the reasons of the Node implementation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DisconnectReason {
    TransportClose,
    TransportError,
    PingTimeout,
    ParseError,
    ForcedClose,
    ServerShutdown,
    ClientNamespaceDisconnect,
    ServerNamespaceDisconnect,
    ForcedServerClose,
}

impl DisconnectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DisconnectReason::TransportClose => "transport close",
            DisconnectReason::TransportError => "transport error",
            DisconnectReason::PingTimeout => "ping timeout",
            DisconnectReason::ParseError => "parse error",
            DisconnectReason::ForcedClose => "forced close",
            DisconnectReason::ServerShutdown => "server shutting down",
            DisconnectReason::ClientNamespaceDisconnect => "client namespace disconnect",
            DisconnectReason::ServerNamespaceDisconnect => "server namespace disconnect",
            DisconnectReason::ForcedServerClose => "forced server close",
        }
    }
}

impl DisconnectReason {
    /// Reasons after which connection state recovery keeps the session (a network drop, not a choice).
    pub fn is_recoverable(self) -> bool {
        matches!(
            self,
            DisconnectReason::TransportClose
                | DisconnectReason::TransportError
                | DisconnectReason::PingTimeout
                | DisconnectReason::ForcedClose
                | DisconnectReason::ServerShutdown
                | DisconnectReason::ForcedServerClose
        )
    }
}

impl From<CloseReason> for DisconnectReason {
    fn from(reason: CloseReason) -> Self {
        match reason {
            CloseReason::TransportClose => DisconnectReason::TransportClose,
            CloseReason::TransportError | CloseReason::SlowClient => DisconnectReason::TransportError,
            CloseReason::PingTimeout => DisconnectReason::PingTimeout,
            CloseReason::ParseError => DisconnectReason::ParseError,
            CloseReason::ForcedClose => DisconnectReason::ForcedClose,
            CloseReason::ServerShutdown => DisconnectReason::ServerShutdown,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error("socket disconnected")]
    Disconnected,
    #[error("client too slow: disconnected")]
    SlowClient,
    #[error("reserved event name")]
    ReservedEvent,
}

/// Why [`Socket::join`] refused a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum JoinError {
    /// The socket is in [`SocketIoConfig::max_rooms_per_socket`](crate::SocketIoConfig) rooms already.
    #[error("too many rooms")]
    TooManyRooms,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    #[error("operation has timed out")]
    Timeout,
    #[error("socket disconnected")]
    Disconnected,
    #[error("client too slow: disconnected")]
    SlowClient,
}

pub(crate) type EventHandler = Arc<dyn Fn(&Arc<Socket>, Payload, Option<AckSender>) + Send + Sync>;
type AnyHandler = Arc<dyn Fn(&Arc<Socket>, &str, &Payload) + Send + Sync>;
type OutgoingHandler = Arc<dyn Fn(&Socket, &str, &Payload) + Send + Sync>;
type DisconnectHandler = Arc<dyn Fn(&Arc<Socket>, DisconnectReason) + Send + Sync>;

#[derive(Default)]
struct Handlers {
    events: Vec<(Box<str>, EventHandler)>,
    disconnect: Vec<DisconnectHandler>,
    /// Handlers most sockets never register, boxed so that an idle socket pays one pointer for them.
    extra: Option<Box<ExtraHandlers>>,
}

/// Lists read on every event are shared slices: dispatching clones an `Arc`, never a `Vec`.
#[derive(Default)]
struct ExtraHandlers {
    any: Arc<[AnyHandler]>,
    any_outgoing: Arc<[OutgoingHandler]>,
    middleware: Arc<[EventMiddleware]>,
    disconnecting: Vec<DisconnectHandler>,
}

impl Handlers {
    fn extra(&mut self) -> &mut ExtraHandlers {
        self.extra.get_or_insert_with(Default::default)
    }
}

/// Appends to a shared slice (registration is rare; reading is on the hot path).
fn push<T: Clone>(list: &mut Arc<[T]>, item: T) {
    let mut items = list.to_vec();
    items.push(item);
    *list = items.into();
}

/// Acks this socket's client still owes, by id. Most sockets never wait for one, so the map is boxed
/// and made by the first: an idle socket pays a pointer, not an empty `HashMap` (48 bytes).
#[derive(Default)]
#[allow(clippy::box_collection)] // deliberate: the box is what makes the empty case one pointer
struct PendingAcks(Option<Box<HashMap<u64, oneshot::Sender<Payload>>>>);

impl PendingAcks {
    fn insert(&mut self, id: u64, tx: oneshot::Sender<Payload>) {
        self.0.get_or_insert_with(Default::default).insert(id, tx);
    }

    fn remove(&mut self, id: &u64) -> Option<oneshot::Sender<Payload>> {
        self.0.as_mut()?.remove(id)
    }

    /// Drops every pending ack (their receivers see the socket's end) and the map.
    fn clear(&mut self) {
        self.0 = None;
    }
}

/// `Socket::state` bits.
const CONNECTED: u8 = 1;
/// Some `on_any_outgoing` handler is registered: `emit` checks this bit before taking a lock.
const HAS_OUTGOING: u8 = 2;

/// Answers one client ack request. Dropping it without sending sends nothing, as in Node.
pub struct AckSender {
    socket: Arc<Socket>,
    id: u64,
}

impl AckSender {
    /// Answers the client's ack with `payload`.
    pub fn send(self, payload: impl Into<Payload>) {
        let ns = &self.socket.ns;
        let frames = ns.parser().encode_packet(ns.name(), None, &payload.into(), Some(self.id));
        let _ = self.socket.send_frames(&frames);
    }

    /// Answers the client's ack with one argument given as encoded JSON text (`json_arg`: one valid
    /// JSON value, the caller's promise): framed from these bytes with the JSON parser, parsed
    /// first with the MessagePack parser.
    pub fn send_json(self, json_arg: &[u8]) {
        let ns = &self.socket.ns;
        let frames = match ns.parser() {
            crate::config::Parser::Json => {
                crate::payload::encode_packet_json_arg(ns.name(), None, json_arg, &[], Some(self.id))
            }
            parser => match crate::payload::payload_of_json_arg(json_arg, Vec::new()) {
                Some(payload) => parser.encode_packet(ns.name(), None, &payload, Some(self.id)),
                None => return,
            },
        };
        let _ = self.socket.send_frames(&frames);
    }
}

/// One client connected to one namespace. Shared as `Arc<Socket>`; handlers get it by reference.
pub struct Socket {
    id: Sid,
    ns: Arc<Namespace>,
    client: Arc<Client>,
    /// The CONNECT's `auth` object when it has members; `None` stands for `{}`. Boxed, as `data` is: most
    /// sockets have neither, and the two inline `Value`s (72 bytes) put every socket's `Arc` in the next
    /// allocator size class.
    auth: Option<Box<Value>>,
    /// `None` stands for `null`.
    data: Mutex<Option<Box<Value>>>,
    rooms: Mutex<SmallVec<[Room; 2]>>,
    /// The socket's own handlers, boxed on first registration: a socket served by its namespace's
    /// handlers ([`Namespace::on`]) pays one pointer, and stays in a smaller allocator size class.
    handlers: RwLock<Option<Box<Handlers>>>,
    acks: Mutex<PendingAcks>,
    extensions: Extensions,
    /// [`CONNECTED`] and [`HAS_OUTGOING`].
    state: AtomicU8,
    /// Private session id, when connection state recovery is on.
    pid: Option<Box<str>>,
    recovered: bool,
}

impl std::fmt::Debug for Socket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket").field("id", &self.id).field("nsp", &self.ns.name()).finish()
    }
}

impl Socket {
    pub(crate) fn new(
        ns: Arc<Namespace>,
        client: Arc<Client>,
        auth: Value,
        restored: Option<&crate::recovery::SessionToPersist>,
    ) -> Arc<Self> {
        let id = restored.and_then(|s| Sid::parse(&s.sid)).unwrap_or_else(|| {
            if client.connection().protocol().is_v3() {
                // A v2 client knows its socket as the Engine.IO id (Node's v3 ids; Node writes
                // `/nsp#<id>` outside `/`, which a `Sid` cannot hold, so every namespace uses the id).
                client.connection().sid()
            } else {
                Sid::random()
            }
        });
        let pid = match restored {
            Some(session) => Some(session.pid.as_str().into()),
            None => ns.recovery().map(|_| ns.adapter().new_session_id(&ns).into()),
        };
        Arc::new(Socket {
            id,
            pid,
            recovered: restored.is_some(),
            ns,
            client,
            auth: match auth {
                Value::Object(map) if !map.is_empty() => Some(Box::new(Value::Object(map))),
                _ => None,
            },
            data: Mutex::new(None),
            rooms: Mutex::default(),
            handlers: RwLock::default(),
            acks: Mutex::default(),
            extensions: Extensions::default(),
            state: AtomicU8::new(CONNECTED),
        })
    }

    /// The socket id (not the Engine.IO session id).
    pub fn id(&self) -> Sid {
        self.id
    }

    pub fn ns(&self) -> &Arc<Namespace> {
        &self.ns
    }

    pub fn client(&self) -> &Arc<Client> {
        &self.client
    }

    pub fn handshake(&self) -> &Handshake {
        &self.client.handshake
    }

    /// The `auth` object the client sent with CONNECT (`{}` when none).
    pub fn auth(&self) -> &Value {
        static EMPTY: std::sync::LazyLock<Value> = std::sync::LazyLock::new(|| Value::Object(Default::default()));
        self.auth.as_deref().unwrap_or(&EMPTY)
    }

    /// Per-socket data, shared with the cluster by fetch-sockets.
    pub fn data(&self) -> Value {
        self.data.lock().as_deref().cloned().unwrap_or(Value::Null)
    }

    /// Replaces the socket's data (observers hear of it through [`Observer::on_data`](crate::Observer::on_data)).
    pub fn set_data(&self, data: Value) {
        *self.data.lock() = (!data.is_null()).then(|| Box::new(data));
        self.ns.observers().notify(|o| o.on_data(self));
        self.session_changed();
    }

    /// What connection state recovery keeps of this socket: `None` when recovery is off.
    pub fn session(&self) -> Option<crate::recovery::SessionToPersist> {
        let pid = self.pid()?;
        Some(crate::recovery::SessionToPersist {
            sid: self.id.to_string(),
            pid: pid.to_string(),
            rooms: self.rooms.lock().to_vec(),
            data: self.data(),
        })
    }

    /// Tells the adapter that the session's rooms or data changed (recovery on, socket connected).
    fn session_changed(&self) {
        if self.pid.is_some() && self.connected() {
            self.ns.adapter().on_session_changed(&self.ns, self);
        }
    }

    /// Typed values attached to this socket that never leave this server (see [`Extensions`]):
    /// authentication claims belong here, not in [`Socket::data`], which the cluster sees.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// True when this socket resumed a dropped session (connection state recovery).
    pub fn recovered(&self) -> bool {
        self.recovered
    }

    pub(crate) fn pid(&self) -> Option<&str> {
        self.pid.as_deref()
    }

    pub fn connected(&self) -> bool {
        self.state.load(Ordering::Acquire) & CONNECTED != 0
    }

    pub(crate) fn is_writable(&self) -> bool {
        self.connected() && !self.client.connection().has_backlog()
    }

    // ---- handlers ---------------------------------------------------------------------------

    /// The socket's own handlers, made by the first registration.
    fn handlers_mut(&self) -> parking_lot::MappedRwLockWriteGuard<'_, Handlers> {
        parking_lot::RwLockWriteGuard::map(self.handlers.write(), |h| &mut **h.get_or_insert_with(Default::default))
    }

    /// Handles event `event` on this socket (replacing its earlier handler of `event`, and taking
    /// precedence over the namespace's, see [`Namespace::on`]). `ack` is set when the client asked
    /// for an acknowledgement. Each socket holds the handlers it registers (about 50 bytes each):
    /// a handler every socket shares belongs on the namespace.
    pub fn on(&self, event: &str, handler: impl Fn(&Arc<Socket>, Payload, Option<AckSender>) + Send + Sync + 'static) {
        let mut handlers = self.handlers_mut();
        handlers.events.retain(|(name, _)| &**name != event);
        handlers.events.push((event.into(), Arc::new(handler)));
    }

    /// Handles event `event` on its own Tokio task: the future may await without holding up the
    /// connection's other packets, and needs no manual spawn. Replaces any handler of `event`.
    /// Events of one socket may then complete out of order.
    pub fn on_async<F, Fut>(&self, event: &str, handler: F)
    where
        F: Fn(Arc<Socket>, Payload, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on(event, move |socket, payload, ack| {
            tokio::spawn(handler(socket.clone(), payload, ack));
        });
    }

    /// Adds a handler that sees every incoming event the message middleware accepted, before the
    /// event's own handler. Several may be added; they run in order.
    pub fn on_any(&self, handler: impl Fn(&Arc<Socket>, &str, &Payload) + Send + Sync + 'static) {
        push(&mut self.handlers_mut().extra().any, Arc::new(handler));
    }

    /// Adds a handler that sees every event sent to this socket with [`Socket::emit`] or
    /// [`Socket::emit_with_ack`] (not broadcasts), before it is sent. Several may be added.
    pub fn on_any_outgoing(&self, handler: impl Fn(&Socket, &str, &Payload) + Send + Sync + 'static) {
        push(&mut self.handlers_mut().extra().any_outgoing, Arc::new(handler));
        self.state.fetch_or(HAS_OUTGOING, Ordering::Release);
    }

    /// Adds message middleware for this socket only (Node's `socket.use`), run after the
    /// namespace's; see [`crate::middleware`] for the rules.
    pub fn use_event_middleware(
        &self,
        middleware: impl Fn(&Arc<Socket>, &str, &Payload) -> Result<(), Rejection> + Send + Sync + 'static,
    ) {
        push(&mut self.handlers_mut().extra().middleware, Arc::new(middleware));
    }

    /// Runs before the socket leaves its rooms.
    pub fn on_disconnecting(&self, handler: impl Fn(&Arc<Socket>, DisconnectReason) + Send + Sync + 'static) {
        self.handlers_mut().extra().disconnecting.push(Arc::new(handler));
    }

    pub fn on_disconnect(&self, handler: impl Fn(&Arc<Socket>, DisconnectReason) + Send + Sync + 'static) {
        self.handlers_mut().disconnect.push(Arc::new(handler));
    }

    // ---- emitting ---------------------------------------------------------------------------

    // On every delivery of a broadcast: the frames go by reference to the queue, which clones each
    // once (a frame by value here cost a second reference-count round trip, a 48-byte copy and a drop).
    /// Queues already-encoded frames for this client (a cluster adapter replaying missed packets).
    #[inline]
    pub fn send_frames(&self, frames: &Frames) -> Result<(), SendError> {
        self.client.connection().send_all(frames)
    }

    /// Queues a recovered session's missed packets: outside the queue limit (see
    /// `Connection::send_all_uncounted`), so a client dropped for a full queue is not dropped again
    /// for its own replay.
    pub fn send_replay(&self, frames: &Frames) -> Result<(), SendError> {
        self.client.connection().send_all_uncounted(frames)
    }

    fn check_event(&self, event: &str) -> Result<(), EmitError> {
        if switchyard_engine::protocol::socketio::RESERVED_EVENTS.contains(&event) {
            return Err(EmitError::ReservedEvent);
        }
        if !self.connected() {
            return Err(EmitError::Disconnected);
        }
        Ok(())
    }

    /// Sends `event` to this client.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitError> {
        self.check_event(event)?;
        let payload = payload.into();
        self.notify_outgoing(event, &payload);
        let result = if self.ns.recovery().is_some() {
            // Stored with an offset, so a recovering client gets it again (as Node does).
            let mut opts = BroadcastOptions::default();
            opts.rooms.push(Room::from(self.id.as_str()));
            self.ns.adapter().broadcast(&self.ns, event, &payload, &opts);
            if self.connected() {
                Ok(())
            } else {
                Err(EmitError::Disconnected)
            }
        } else {
            let frames = self.ns.parser().encode_packet(self.ns.name(), Some(event), &payload, None);
            self.send_frames(&frames).map_err(|e| match e {
                SendError::Closed => EmitError::Disconnected,
                SendError::QueueFull => EmitError::SlowClient,
            })
        };
        if result.is_ok() {
            self.ns.observers().notify(|o| o.on_emit(self, event, &payload));
        }
        result
    }

    /// Runs the `on_any_outgoing` handlers, if any (one relaxed load when there are none).
    fn notify_outgoing(&self, event: &str, payload: &Payload) {
        if self.state.load(Ordering::Relaxed) & HAS_OUTGOING == 0 {
            return;
        }
        let handlers = self.handlers.read().as_ref().and_then(|h| h.extra.as_ref()).map(|e| e.any_outgoing.clone());
        for handler in handlers.iter().flat_map(|h| h.iter()) {
            handler(self, event, payload);
        }
    }

    /// Sends `event` and waits up to `timeout` for the client's acknowledgement.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
        timeout: Duration,
    ) -> Result<Payload, AckError> {
        self.check_event(event).map_err(|_| AckError::Disconnected)?;
        let payload = payload.into();
        self.notify_outgoing(event, &payload);
        let (id, rx) = self.register_ack();
        let frames = self.ns.parser().encode_packet(self.ns.name(), Some(event), &payload, Some(id));
        if let Err(e) = self.send_frames(&frames) {
            self.acks.lock().remove(&id);
            return Err(match e {
                SendError::Closed => AckError::Disconnected,
                SendError::QueueFull => AckError::SlowClient,
            });
        }
        self.ns.observers().notify(|o| o.on_emit(self, event, &payload));
        drop(payload);
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(payload)) => Ok(payload),
            Ok(Err(_)) => Err(AckError::Disconnected),
            Err(_) => {
                self.acks.lock().remove(&id);
                self.ns.observers().notify(|o| o.on_ack_timeout(self, event));
                Err(AckError::Timeout)
            }
        }
    }

    pub(crate) fn register_ack(&self) -> (u64, oneshot::Receiver<Payload>) {
        let id = self.ns.next_ack_id();
        if self.ns.observers().active() {
            // Inside a broadcast with acks, each registration is one local recipient.
            crate::observe::add_local(1);
        }
        let (tx, rx) = oneshot::channel();
        self.acks.lock().insert(id, tx);
        (id, rx)
    }

    /// Everyone in `room` but this socket.
    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    /// Everyone in the namespace but this socket.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        let mut opts = BroadcastOptions::default();
        opts.except.push(Room::from(self.id.as_str()));
        BroadcastOperator::new(self.ns.clone(), opts)
    }

    // ---- rooms ------------------------------------------------------------------------------

    /// Joins `room`. Joining a room the socket is in, or joining after the socket disconnected, does
    /// nothing. Fails when the socket is in
    /// [`SocketIoConfig::max_rooms_per_socket`](crate::SocketIoConfig::max_rooms_per_socket) rooms
    /// already (its own room not counted); the refusal is counted in
    /// [`LimitStats::rooms_refused`](crate::LimitStats).
    pub fn join(self: &Arc<Self>, room: impl Into<Room>) -> Result<(), JoinError> {
        let room = room.into();
        if !self.connected() {
            return Ok(());
        }
        {
            let mut rooms = self.rooms.lock();
            if rooms.contains(&room) {
                return Ok(());
            }
            let max = self.client.max_rooms_per_socket();
            if max != 0 && rooms.len() >= max {
                drop(rooms);
                self.client.count_room_refused();
                tracing::debug!(socket = %self.id, nsp = %self.ns.name(), room = %room, max, "join refused: too many rooms");
                return Err(JoinError::TooManyRooms);
            }
            rooms.push(room.clone());
        }
        self.ns.index_join(self, &room);
        self.ns.observers().notify(|o| o.on_join(self, &room));
        self.session_changed();
        Ok(())
    }

    pub fn leave(&self, room: &str) {
        let removed = {
            let mut rooms = self.rooms.lock();
            let before = rooms.len();
            rooms.retain(|r| &**r != room);
            before != rooms.len()
        };
        if removed {
            let room = Room::from(room);
            self.ns.index_leave(self, &room);
            self.ns.observers().notify(|o| o.on_leave(self, &room));
            self.session_changed();
        }
    }

    /// Whether the socket is in `room` (its own room, named by its id, included): what
    /// [`Socket::rooms`] would contain, without building the list.
    pub fn in_room(&self, room: &str) -> bool {
        room == self.id.as_str() || self.rooms.lock().iter().any(|r| &**r == room)
    }

    /// The rooms this socket is in, its own id first (as in Node).
    pub fn rooms(&self) -> Vec<Room> {
        let mut out = vec![Room::from(self.id.as_str())];
        out.extend(self.rooms.lock().iter().cloned());
        out
    }

    fn leave_all(&self) {
        let rooms = std::mem::take(&mut *self.rooms.lock());
        for room in rooms {
            self.ns.index_leave(self, &room);
            self.ns.observers().notify(|o| o.on_leave(self, &room));
        }
    }

    // ---- disconnecting ----------------------------------------------------------------------

    /// Disconnects this socket from its namespace; with `close`, closes the whole connection.
    pub fn disconnect(self: &Arc<Self>, close: bool) {
        if close {
            self.client.close_connection(DisconnectReason::ServerNamespaceDisconnect);
            return;
        }
        if !self.connected() {
            return;
        }
        self.send_disconnect_packet();
        self.on_close(DisconnectReason::ServerNamespaceDisconnect);
    }

    pub(crate) fn send_disconnect_packet(&self) {
        if self.connected() {
            let frame = self.ns.parser().encode_control(PacketType::Disconnect, self.ns.name(), None);
            let _ = self.client.connection().send(frame);
        }
    }

    /// Runs the disconnect sequence once: `disconnecting` handlers, leave rooms, `disconnect` handlers.
    pub(crate) fn on_close(self: &Arc<Self>, reason: DisconnectReason) {
        if self.state.fetch_and(!CONNECTED, Ordering::AcqRel) & CONNECTED == 0 {
            return;
        }
        let (disconnecting, disconnect) = {
            let handlers = self.handlers.read();
            match handlers.as_deref() {
                Some(handlers) => (
                    handlers.extra.as_ref().map(|e| e.disconnecting.clone()).unwrap_or_default(),
                    handlers.disconnect.clone(),
                ),
                None => (Vec::new(), Vec::new()),
            }
        };
        for handler in &disconnecting {
            handler(self, reason);
        }
        if let Some(pid) = self.pid() {
            if reason.is_recoverable() {
                let session = crate::recovery::SessionToPersist {
                    sid: self.id.to_string(),
                    pid: pid.to_string(),
                    rooms: self.rooms.lock().to_vec(),
                    data: self.data(),
                };
                self.ns.adapter().persist_session(&self.ns, session);
            } else {
                self.ns.adapter().discard_session(&self.ns, pid);
            }
        }
        self.leave_all();
        self.ns.remove_socket(self);
        self.client.remove_socket(self);
        // Pending acks fail with Disconnected when their senders drop.
        self.acks.lock().clear();
        self.ns.observers().notify(|o| o.on_disconnect(self, reason));
        for handler in &disconnect {
            handler(self, reason);
        }
        // Handlers may hold the socket; drop them so the socket can be freed.
        *self.handlers.write() = None;
    }

    // ---- incoming ---------------------------------------------------------------------------

    pub(crate) fn on_packet(self: &Arc<Self>, packet: Packet) {
        match packet.kind {
            PacketType::Event | PacketType::BinaryEvent => self.on_event(packet),
            PacketType::Ack | PacketType::BinaryAck => self.on_ack(packet),
            PacketType::Disconnect => self.on_close(DisconnectReason::ClientNamespaceDisconnect),
            PacketType::Connect | PacketType::ConnectError => {}
        }
    }

    fn on_event(self: &Arc<Self>, packet: Packet) {
        let Some(Value::Array(mut args)) = packet.data else { return };
        if args.is_empty() {
            return;
        }
        let name = match args.remove(0) {
            Value::String(name) => name,
            other => other.to_string(),
        };
        let payload = Payload { args, binary: packet.attachments };
        let observers = self.ns.observers();
        observers.notify(|o| o.on_event(self, &name, &payload));
        let (handler, extra) = {
            let handlers = self.handlers.read();
            // The socket's own handler first; the namespace's shared one otherwise (below, unlocked).
            let handler =
                handlers.as_deref().and_then(|h| h.events.iter().find(|(n, _)| **n == *name)).map(|(_, h)| h.clone());
            let extra =
                handlers.as_deref().and_then(|h| h.extra.as_ref()).map(|e| (e.middleware.clone(), e.any.clone()));
            (handler, extra)
        };
        let checked = self
            .client
            .run_server_event_middleware(self, &name, &payload)
            .and_then(|()| self.ns.run_event_middleware(self, &name, &payload))
            .and_then(|()| match &extra {
                Some((middleware, _)) => crate::middleware::run(middleware, self, &name, &payload),
                None => Ok(()),
            });
        if let Err(rejection) = checked {
            observers.notify(|o| o.on_event_rejected(self, &name, &rejection));
            if let (Some(id), Some(value)) = (packet.id, rejection.ack()) {
                AckSender { socket: self.clone(), id }.send(value.clone());
            }
            return;
        }
        if let Some((_, any)) = &extra {
            for handler in any.iter() {
                handler(self, &name, &payload);
            }
        }
        let ack = packet.id.map(|id| AckSender { socket: self.clone(), id });
        if let Some(handler) = handler.or_else(|| self.ns.event_handler(&name)) {
            handler(self, payload, ack);
        }
    }

    fn on_ack(&self, packet: Packet) {
        let Some(id) = packet.id else { return };
        let Some(tx) = self.acks.lock().remove(&id) else {
            tracing::debug!(socket = %self.id, id, "ack for an unknown id");
            return;
        };
        let args = match packet.data {
            Some(Value::Array(args)) => args,
            _ => Vec::new(),
        };
        let payload = Payload { args, binary: packet.attachments };
        self.ns.observers().notify(|o| o.on_ack(self, &payload));
        let _ = tx.send(payload);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Idle memory per connection is a benchmarked goal: the extension points must stay out of the
    /// way (rare handler lists are boxed, extensions are one pointer until used). 328 bytes before
    /// them), 312 with them (x86_64); 240 with the socket's own handlers boxed, so that the `Arc` (16
    /// bytes more) fits jemalloc's 256-byte size class instead of the 320-byte one; 192 with `auth` and
    /// `data` boxed, so that it fits the 224-byte class.
    #[test]
    fn socket_stays_small() {
        let size = std::mem::size_of::<Socket>();
        println!("Socket: {size} bytes");
        assert!(size + 16 <= 224, "Socket grew to {size} bytes");
    }
}
