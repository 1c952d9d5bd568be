//! A namespace: its middleware and connection handler, its local sockets and the room index that
//! broadcasts walk.

use crate::adapter::{Adapter, BroadcastOptions, Room};
use crate::config::Parser;
use crate::middleware::{EventMiddleware, Rejection};
use crate::observe::Observers;
use crate::operators::BroadcastOperator;
use crate::payload::{Frames, Payload};
use crate::recovery::{RecoveryConfig, RecoveryStore};
use crate::socket::{AckSender, EventHandler, Socket};
use futures_util::future::BoxFuture;
use parking_lot::RwLock;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use switchyard_engine::{Frame, Sid};

/// A middleware's refusal, sent to the client as CONNECT_ERROR `{message, data}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectError {
    pub message: String,
    pub data: Option<Value>,
}

impl ConnectError {
    pub fn new(message: impl Into<String>) -> Self {
        ConnectError { message: message.into(), data: None }
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    pub(crate) fn to_json(&self) -> Value {
        match &self.data {
            Some(data) => json!({"message": self.message, "data": data}),
            None => json!({"message": self.message}),
        }
    }
}

type Middleware = Arc<dyn Fn(Arc<Socket>) -> BoxFuture<'static, Result<(), ConnectError>> + Send + Sync>;
type ConnectionHandler = Arc<dyn Fn(Arc<Socket>) + Send + Sync>;
/// Handles an event another server of the cluster emitted with `server_side_emit`; the callback, when
/// present, answers that server.
pub type ServerSideHandler = Arc<dyn Fn(Payload, Option<Box<dyn FnOnce(Payload) + Send>>) + Send + Sync>;

/// Members of one room.
type Members = HashMap<Sid, Arc<Socket>>;

pub struct Namespace {
    name: Box<str>,
    middleware: RwLock<Vec<Middleware>>,
    /// Message middleware, a shared slice so that each event clones an `Arc` at most.
    event_middleware: RwLock<Arc<[EventMiddleware]>>,
    /// Set by the first message middleware: without any, an event reads this flag and takes no lock.
    has_event_middleware: AtomicBool,
    on_connection: RwLock<Option<ConnectionHandler>>,
    /// Event handlers shared by every socket of the namespace ([`Namespace::on`]): registered once,
    /// so an idle socket holds no handler of its own.
    events: RwLock<Vec<(Box<str>, EventHandler)>>,
    /// For dynamic children: the parent whose middleware and handler apply.
    parent: Option<Arc<Namespace>>,
    server_side: RwLock<Vec<(Box<str>, ServerSideHandler)>>,
    sockets: RwLock<HashMap<Sid, Arc<Socket>>>,
    rooms: RwLock<HashMap<Room, Members>>,
    adapter: Arc<dyn Adapter>,
    recovery: Option<RecoveryStore>,
    /// Ack ids are per namespace, as in Node.
    ack_ids: AtomicU64,
    /// The server's observers.
    observers: Arc<Observers>,
    /// The server's parser: how this namespace's packets are encoded.
    parser: Parser,
}

impl std::fmt::Debug for Namespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Namespace").field("name", &self.name).finish()
    }
}

impl Namespace {
    pub(crate) fn new(
        name: &str,
        adapter: Arc<dyn Adapter>,
        recovery: Option<RecoveryConfig>,
        observers: Arc<Observers>,
        parser: Parser,
    ) -> Arc<Self> {
        Self::build(name, None, adapter, recovery, observers, parser)
    }

    pub(crate) fn new_child(
        name: &str,
        parent: &Arc<Namespace>,
        adapter: Arc<dyn Adapter>,
        recovery: Option<RecoveryConfig>,
        observers: Arc<Observers>,
        parser: Parser,
    ) -> Arc<Self> {
        Self::build(name, Some(parent.clone()), adapter, recovery, observers, parser)
    }

    fn build(
        name: &str,
        parent: Option<Arc<Namespace>>,
        adapter: Arc<dyn Adapter>,
        recovery: Option<RecoveryConfig>,
        observers: Arc<Observers>,
        parser: Parser,
    ) -> Arc<Self> {
        let ns = Arc::new(Namespace {
            parser,
            name: name.into(),
            middleware: RwLock::default(),
            event_middleware: RwLock::new(Arc::new([])),
            has_event_middleware: AtomicBool::new(false),
            observers,
            on_connection: RwLock::default(),
            events: RwLock::default(),
            parent,
            server_side: RwLock::default(),
            sockets: RwLock::default(),
            rooms: RwLock::default(),
            adapter,
            recovery: recovery.map(RecoveryStore::new),
            ack_ids: AtomicU64::new(0),
        });
        ns.adapter.init(&ns);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The parser the server's clients speak: encode packets for this namespace's sockets with it
    /// (`ns.parser().encode_packet(..)`), as the adapter's broadcast does.
    pub fn parser(&self) -> Parser {
        self.parser
    }

    pub fn adapter(&self) -> &Arc<dyn Adapter> {
        &self.adapter
    }

    /// The local recovery store, when connection state recovery is on.
    pub fn recovery(&self) -> Option<&RecoveryStore> {
        self.recovery.as_ref()
    }

    /// Runs `handler` for every socket that connects (after the middleware accepted it).
    pub fn on_connection(&self, handler: impl Fn(Arc<Socket>) + Send + Sync + 'static) {
        *self.on_connection.write() = Some(Arc::new(handler));
    }

    /// Handles `event` on every socket of this namespace (on a dynamic namespace's parent: of every
    /// child), unless the socket registered its own handler for `event` with [`Socket::on`], which
    /// takes precedence. Replaces the namespace's earlier handler of `event`. One handler serves every
    /// socket, so a socket holds nothing for it: prefer this to `socket.on` in `on_connection` when
    /// every socket handles the event alike (idle memory per connection is a benchmarked goal).
    ///
    /// ```
    /// let io = switchyard_socketio::SocketIo::new(Default::default());
    /// io.of("/").on("echo", |_socket, payload, ack| {
    ///     if let Some(ack) = ack {
    ///         ack.send(payload);
    ///     }
    /// });
    /// ```
    pub fn on(&self, event: &str, handler: impl Fn(&Arc<Socket>, Payload, Option<AckSender>) + Send + Sync + 'static) {
        let mut events = self.events.write();
        events.retain(|(name, _)| &**name != event);
        events.push((event.into(), Arc::new(handler)));
    }

    /// [`Namespace::on`] for a handler that runs on its own Tokio task (as [`Socket::on_async`]).
    pub fn on_async<F, Fut>(&self, event: &str, handler: F)
    where
        F: Fn(Arc<Socket>, Payload, Option<AckSender>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.on(event, move |socket, payload, ack| {
            tokio::spawn(handler(socket.clone(), payload, ack));
        });
    }

    /// The namespace's handler of `event` (a dynamic child's own, else its parent's).
    pub(crate) fn event_handler(&self, event: &str) -> Option<EventHandler> {
        let own = self.events.read().iter().find(|(name, _)| &**name == event).map(|(_, h)| h.clone());
        own.or_else(|| self.parent.as_ref().and_then(|p| p.event_handler(event)))
    }

    /// Adds connect middleware; an `Err` refuses the connection with CONNECT_ERROR.
    pub fn use_middleware<F, Fut>(&self, middleware: F)
    where
        F: Fn(Arc<Socket>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), ConnectError>> + Send + 'static,
    {
        self.middleware.write().push(Arc::new(move |socket| Box::pin(middleware(socket))));
    }

    /// Handles `event` emitted by another server with `server_side_emit` (Node's
    /// `io.on("event", ...)` for server-side events).
    pub fn on_server_side(
        &self,
        event: &str,
        handler: impl Fn(Payload, Option<Box<dyn FnOnce(Payload) + Send>>) + Send + Sync + 'static,
    ) {
        self.server_side.write().push((event.into(), Arc::new(handler)));
    }

    /// Delivers a server-side event from another server to the local handler (used by cluster adapters).
    /// Returns false when no handler is registered.
    pub fn dispatch_server_side(
        &self,
        event: &str,
        payload: Payload,
        ack: Option<Box<dyn FnOnce(Payload) + Send>>,
    ) -> bool {
        let handler = self.server_side.read().iter().find(|(name, _)| &**name == event).map(|(_, h)| h.clone());
        match handler {
            Some(handler) => {
                handler(payload, ack);
                true
            }
            None => false,
        }
    }

    /// Sends `event` to the other servers of the cluster and gathers their answers (none on one server).
    pub async fn server_side_emit(
        self: &Arc<Self>,
        event: &str,
        payload: impl Into<Payload>,
        ack_timeout: Option<std::time::Duration>,
    ) -> Result<Vec<Payload>, crate::adapter::AdapterError> {
        self.adapter.server_side_emit(self, event, &payload.into(), ack_timeout).await
    }

    /// Adds message middleware for every socket of this namespace (and, on a dynamic namespace's
    /// parent, of every child): it sees each incoming event before its handlers and may reject it with
    /// a [`Rejection`], whose value answers the client's ack. Runs before the socket's own middleware;
    /// see [`crate::middleware`]. Called on the connection's task for every event: keep it cheap.
    pub fn use_event_middleware(
        &self,
        middleware: impl Fn(&Arc<Socket>, &str, &Payload) -> Result<(), Rejection> + Send + Sync + 'static,
    ) {
        let mut list = self.event_middleware.write();
        let mut next = list.to_vec();
        next.push(Arc::new(middleware));
        *list = next.into();
        self.has_event_middleware.store(true, Ordering::Release);
    }

    /// Runs the parent's (for a dynamic child) then this namespace's message middleware.
    pub(crate) fn run_event_middleware(
        &self,
        socket: &Arc<Socket>,
        event: &str,
        payload: &Payload,
    ) -> Result<(), Rejection> {
        if let Some(parent) = &self.parent {
            parent.run_event_middleware(socket, event, payload)?;
        }
        if !self.has_event_middleware.load(Ordering::Acquire) {
            return Ok(());
        }
        let chain = self.event_middleware.read().clone();
        crate::middleware::run(&chain, socket, event, payload)
    }

    pub(crate) fn observers(&self) -> &Observers {
        &self.observers
    }

    pub(crate) fn has_middleware(&self) -> bool {
        !self.middleware.read().is_empty() || self.parent.as_ref().is_some_and(|p| p.has_middleware())
    }

    pub(crate) async fn run_middleware(&self, socket: &Arc<Socket>) -> Result<(), ConnectError> {
        let chain: Vec<Middleware> = match &self.parent {
            Some(parent) => parent.middleware.read().iter().chain(self.middleware.read().iter()).cloned().collect(),
            None => self.middleware.read().clone(),
        };
        for middleware in chain {
            middleware(socket.clone()).await?;
        }
        Ok(())
    }

    pub(crate) fn on_socket_connected(&self, socket: &Arc<Socket>) {
        let handler = self
            .on_connection
            .read()
            .clone()
            .or_else(|| self.parent.as_ref().and_then(|p| p.on_connection.read().clone()));
        if let Some(handler) = handler {
            handler(socket.clone());
        }
    }

    pub(crate) fn next_ack_id(&self) -> u64 {
        self.ack_ids.fetch_add(1, Ordering::Relaxed)
    }

    // ---- operators -------------------------------------------------------------------------

    pub fn to(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().to(room)
    }

    pub fn except(self: &Arc<Self>, room: impl Into<Room>) -> BroadcastOperator {
        self.broadcast().except(room)
    }

    /// Every socket of the namespace.
    pub fn broadcast(self: &Arc<Self>) -> BroadcastOperator {
        BroadcastOperator::new(self.clone(), BroadcastOptions::default())
    }

    pub fn emit(self: &Arc<Self>, event: &str, payload: impl Into<Payload>) {
        self.broadcast().emit(event, payload)
    }

    // ---- the local index -------------------------------------------------------------------

    pub(crate) fn add_socket(&self, socket: &Arc<Socket>) {
        self.sockets.write().insert(socket.id(), socket.clone());
        self.adapter.on_socket_added(self, &socket.id());
    }

    pub(crate) fn remove_socket(&self, socket: &Socket) {
        if self.sockets.write().remove(&socket.id()).is_some() {
            self.adapter.on_socket_removed(self, &socket.id());
        }
    }

    pub fn get_socket(&self, id: &Sid) -> Option<Arc<Socket>> {
        self.sockets.read().get(id).cloned()
    }

    /// Every socket connected to this namespace on this server.
    pub fn local_sockets(&self) -> Vec<Arc<Socket>> {
        self.sockets.read().values().cloned().collect()
    }

    pub fn local_socket_count(&self) -> usize {
        self.sockets.read().len()
    }

    pub(crate) fn index_join(&self, socket: &Arc<Socket>, room: &Room) {
        let mut rooms = self.rooms.write();
        let members = rooms.entry(room.clone()).or_default();
        let created = members.is_empty();
        members.insert(socket.id(), socket.clone());
        if created {
            self.adapter.on_room_created(self, room);
        }
    }

    pub(crate) fn index_leave(&self, socket: &Socket, room: &Room) {
        let mut rooms = self.rooms.write();
        if let Some(members) = rooms.get_mut(room) {
            members.remove(&socket.id());
            if members.is_empty() {
                rooms.remove(room);
                self.adapter.on_room_deleted(self, room);
            }
        }
    }

    /// Whether `room` has members on this server, counting each local socket's own id as a room.
    pub fn has_room(&self, room: &str) -> bool {
        if self.rooms.read().contains_key(room) {
            return true;
        }
        Sid::parse(room).is_some_and(|sid| self.sockets.read().contains_key(&sid))
    }

    /// Rooms that exist on this server (not counting each socket's own room).
    pub fn local_rooms(&self) -> HashSet<Room> {
        self.rooms.read().keys().cloned().collect()
    }

    /// Calls `f` for every local socket `opts` selects, each once. Holds the index read lock: `f`
    /// must not join, leave or disconnect.
    pub(crate) fn for_each_target(&self, opts: &BroadcastOptions, mut f: impl FnMut(&Arc<Socket>)) {
        let sockets = self.sockets.read();
        let rooms = self.rooms.read();
        let mut except = ExceptSet::default();
        for room in &opts.except {
            if let Some(members) = rooms.get(room) {
                members.keys().for_each(|sid| except.insert(*sid));
            }
            if let Some(sid) = Sid::parse(room) {
                except.insert(sid);
            }
        }
        let keep = |s: &Arc<Socket>| !except.contains(&s.id());
        if opts.rooms.is_empty() {
            sockets.values().filter(|s| keep(s)).for_each(&mut f);
            return;
        }
        let single = opts.rooms.len() == 1;
        let mut seen: HashSet<Sid> = HashSet::new();
        for room in &opts.rooms {
            if let Some(members) = rooms.get(room) {
                for socket in members.values() {
                    if keep(socket) && (single || seen.insert(socket.id())) {
                        f(socket);
                    }
                }
            }
            // A socket's id is a room holding just that socket.
            if let Some(socket) = Sid::parse(room).and_then(|sid| sockets.get(&sid)) {
                if keep(socket)
                    && seen.insert(socket.id())
                    && !rooms.get(room).is_some_and(|m| m.contains_key(&socket.id()))
                {
                    f(socket);
                }
            }
        }
    }

    /// Sends pre-encoded frames to every local socket `opts` selects. Returns how many got them.
    pub fn local_broadcast(&self, frames: &Frames, opts: &BroadcastOptions) -> usize {
        let mut count = 0;
        // Engine.IO v3 clients (Socket.IO v2) take binary attachments in another frame form: encoded
        // once, at the first such recipient. Text-only packets are the same bytes for everyone.
        let mut eio3: Option<Frames> = None;
        self.for_each_target(opts, |socket| {
            if opts.flags.volatile && !socket.is_writable() {
                return;
            }
            let frames = if frames.len() > 1 && socket.client().connection().protocol().is_v3() {
                eio3.get_or_insert_with(|| frames.iter().map(Frame::to_eio3).collect())
            } else {
                frames
            };
            // A full queue closes that connection (counted and logged by the engine); its disconnect
            // runs on the connection's own task, outside this index lock.
            if socket.send_frames(frames).is_ok() {
                count += 1;
            }
        });
        if self.observers.active() {
            crate::observe::add_local(count);
        }
        count
    }

    /// Sockets selected by `opts` on this server.
    pub fn local_targets(&self, opts: &BroadcastOptions) -> Vec<Arc<Socket>> {
        let mut out = Vec::new();
        self.for_each_target(opts, |s| out.push(s.clone()));
        out
    }
}

/// The sockets a broadcast skips. Usually just the sender (`socket.to(room)`), so a short list is
/// compared directly and only a large one is hashed: this check runs once per recipient.
#[derive(Default)]
struct ExceptSet {
    few: smallvec::SmallVec<[Sid; 4]>,
    many: Option<HashSet<Sid>>,
}

impl ExceptSet {
    const LINEAR_LIMIT: usize = 8;

    fn insert(&mut self, sid: Sid) {
        if let Some(many) = &mut self.many {
            many.insert(sid);
        } else if !self.few.contains(&sid) {
            if self.few.len() < Self::LINEAR_LIMIT {
                self.few.push(sid);
            } else {
                let mut many: HashSet<Sid> = self.few.drain(..).collect();
                many.insert(sid);
                self.many = Some(many);
            }
        }
    }

    /// Runs once per recipient: no one excluded (`io.to(room)`) and one (`socket.to(room)`, the
    /// sender) are the common cases, each a comparison or two instead of the small vector's loop.
    #[inline(always)]
    fn contains(&self, sid: &Sid) -> bool {
        match self.few.as_slice() {
            // Also when the set went over to hashing (`few` is then drained).
            [] => self.many.as_ref().is_some_and(|many| many.contains(sid)),
            [one] => one == sid,
            few => few.contains(sid),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn except_set_switches_to_hashing_past_the_limit() {
        let mut set = ExceptSet::default();
        let sids: Vec<Sid> = (0..20).map(|_| Sid::random()).collect();
        assert!(!set.contains(&sids[0]), "an empty set excludes no one");
        set.insert(sids[0]);
        assert!(set.contains(&sids[0]) && !set.contains(&sids[1]), "one: compared directly");
        for sid in &sids[..3] {
            set.insert(*sid);
            set.insert(*sid);
        }
        assert!(set.many.is_none());
        assert_eq!(set.few.len(), 3);
        for sid in &sids {
            set.insert(*sid);
        }
        assert!(set.many.is_some());
        assert!(sids.iter().all(|sid| set.contains(sid)));
        assert!(!set.contains(&Sid::random()));
    }
}
