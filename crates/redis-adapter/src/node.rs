//! One server's membership in the cluster: its Redis links, the namespaces it serves, the requests it
//! waits answers for, and what it does with other nodes' messages. Format-free: the wire format
//! ([`crate::format`]) names the channels and encodes and decodes the messages.

use crate::connection::{Publisher, PushHandler, RedisTarget, Subscriber, Subscription};
use crate::convert;
use crate::error::Error;
use crate::format::classic::Classic;
use crate::format::sharded::Sharded;
use crate::format::{Incoming, Message, RemoteOp, Reply, Request, Response, Route, WireFormat, REMOTE_ACK_WINDOW};
use crate::recovery::Recovery;
use crate::stats::Stats;
use crate::{Mode, RedisAdapterConfig};
use parking_lot::{Mutex, RwLock};
use redis::{PushInfo, PushKind};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchyard_socketio::{
    local_broadcast_with_ack, Adapter, AdapterError, BroadcastOptions, MemoryAdapter, Namespace, Payload, Room, Sid,
    SocketInfo,
};
use tokio::sync::mpsc;

pub(crate) struct Shared {
    pub(crate) uid: String,
    pub(crate) config: RedisAdapterConfig,
    pub(crate) stats: Arc<Stats>,
    format: Arc<dyn WireFormat>,
    publisher: Arc<Publisher>,
    subscriber: Subscriber,
    namespaces: RwLock<HashMap<String, Weak<Namespace>>>,
    routes: RwLock<HashMap<String, (String, Route)>>,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
    /// Connection state recovery through Redis (absent in sharded mode over a Redis Cluster, whose
    /// room channels cannot be published from the recording script).
    recovery: Option<Arc<Recovery>>,
}

/// Removes a pending request when its waiter finishes or gives up.
struct PendingGuard<'a> {
    shared: &'a Shared,
    id: String,
}

impl Drop for PendingGuard<'_> {
    fn drop(&mut self) {
        self.shared.pending.lock().remove(&self.id);
    }
}

impl Shared {
    pub(crate) fn start(target: RedisTarget, config: RedisAdapterConfig) -> Arc<Shared> {
        let stats = Arc::new(Stats::default());
        let format: Arc<dyn WireFormat> = match config.mode {
            Mode::Classic => Arc::new(Classic::new(&config)),
            Mode::Sharded => Arc::new(Sharded::new(&config)),
        };
        let publisher = Publisher::start(target.clone(), config.publish_queue, config.max_in_flight, stats.clone());
        let recovery = (config.mode == Mode::Classic || matches!(target, RedisTarget::Single(_))).then(|| {
            Recovery::start(
                &config.key_prefix,
                format.uid(),
                publisher.clone(),
                stats.clone(),
                config.requests_timeout,
                target.clone(),
            )
        });
        let shared = Arc::new_cyclic(|weak: &Weak<Shared>| {
            let weak = weak.clone();
            let handler: PushHandler = Arc::new(move |info: PushInfo| {
                if let Some(shared) = weak.upgrade() {
                    shared.on_push(info);
                }
            });
            Shared {
                uid: format.uid().to_string(),
                publisher,
                recovery,
                subscriber: Subscriber::start(target, handler, stats.clone()),
                format,
                config,
                stats,
                namespaces: RwLock::default(),
                routes: RwLock::default(),
                pending: Mutex::default(),
            }
        });
        if let Some(recovery) = &shared.recovery {
            let weak = Arc::downgrade(&shared);
            tokio::spawn(crate::recovery::run_flusher(Arc::downgrade(recovery), move || {
                if let Some(shared) = weak.upgrade() {
                    shared.resync_sessions();
                }
            }));
        }
        shared
    }

    /// Queues every local socket's live session (after Redis came back empty).
    fn resync_sessions(&self) {
        let Some(recovery) = &self.recovery else { return };
        let namespaces: Vec<Arc<Namespace>> = self.namespaces.read().values().filter_map(Weak::upgrade).collect();
        for ns in namespaces.iter().filter(|ns| ns.recovery().is_some()) {
            for socket in ns.local_sockets() {
                recovery.session_changed(ns, &socket);
            }
        }
    }

    // ---- channels ------------------------------------------------------------------------------

    /// Starts serving namespace `ns`: subscribes to its channels.
    pub(crate) fn register(&self, ns: &Arc<Namespace>) {
        let nsp = ns.name();
        self.namespaces.write().insert(nsp.to_string(), Arc::downgrade(ns));
        let subscriptions = self.format.namespace_subscriptions(nsp);
        for (subscription, route) in &subscriptions {
            self.routes.write().insert(subscription.name().to_string(), (nsp.to_string(), *route));
        }
        for (subscription, _) in subscriptions {
            self.subscriber.subscribe(subscription);
        }
        if let Some(recovery) = self.recovery_for(ns) {
            recovery.start_reader(ns);
        }
    }

    /// Adds a holder of a room channel (the subscriber counts them). The route changes under the
    /// routes lock, so a concurrent last release cannot remove the route of a held channel.
    fn subscribe_room(&self, nsp: &str, subscription: Option<Subscription>) {
        if let Some(subscription) = subscription {
            let mut routes = self.routes.write();
            routes.insert(subscription.name().to_string(), (nsp.to_string(), Route::Broadcasts));
            self.subscriber.subscribe(subscription);
        }
    }

    fn unsubscribe_room(&self, subscription: Option<Subscription>) {
        if let Some(subscription) = subscription {
            let mut routes = self.routes.write();
            let name = subscription.name().to_string();
            if self.subscriber.unsubscribe(subscription) {
                routes.remove(&name);
            }
        }
    }

    /// Subscribes to the channels that carry the packets of a session being restored (its rooms,
    /// and its own id in `dynamic-private`), for formats with room channels, before the socket joins
    /// them: the restore then reads the stream again past its first read, and everything stored
    /// after that second read reaches this node. `None` when the format has no room channels.
    /// The hold releases the channels when dropped (the joined socket holds its rooms by then).
    pub(crate) fn hold_session_channels(
        self: &Arc<Self>,
        nsp: &str,
        session: &switchyard_socketio::SessionToPersist,
    ) -> Option<(ChannelHold, tokio::sync::oneshot::Receiver<()>)> {
        let mut subscriptions: Vec<Subscription> =
            session.rooms.iter().filter_map(|room| self.format.room_subscription(nsp, room)).collect();
        subscriptions.extend(self.format.socket_subscription(nsp, &session.sid));
        if subscriptions.is_empty() {
            return None;
        }
        for subscription in &subscriptions {
            self.subscribe_room(nsp, Some(subscription.clone()));
        }
        let synced = self.subscriber.synced();
        Some((ChannelHold { shared: Arc::downgrade(self), subscriptions }, synced))
    }

    /// A (public) room has local members: formats with room channels listen on its channel.
    pub(crate) fn room_created(&self, nsp: &str, room: &Room) {
        self.subscribe_room(nsp, self.format.room_subscription(nsp, room));
    }

    pub(crate) fn room_deleted(&self, nsp: &str, room: &Room) {
        self.unsubscribe_room(self.format.room_subscription(nsp, room));
    }

    /// A socket's own room, for formats that give those a channel.
    pub(crate) fn socket_added(&self, nsp: &str, id: &Sid) {
        self.subscribe_room(nsp, self.format.socket_subscription(nsp, id.as_str()));
    }

    pub(crate) fn socket_removed(&self, nsp: &str, id: &Sid) {
        self.unsubscribe_room(self.format.socket_subscription(nsp, id.as_str()));
    }

    // ---- publishing ----------------------------------------------------------------------------

    /// Sends a broadcast to the other nodes (one publish, whatever their number).
    pub(crate) fn publish_broadcast(&self, nsp: &str, event: &str, payload: &Payload, opts: &BroadcastOptions) {
        self.publisher.publish(self.format.encode_broadcast(nsp, event, payload, opts));
    }

    fn publish_request(&self, nsp: &str, request: Request<'_>) {
        if let Some(message) = self.format.encode_request(nsp, request) {
            self.publisher.publish(message);
        }
    }

    /// Asks the other nodes to make the sockets `opts` selects join (`leave` false) or leave rooms.
    pub(crate) fn publish_rooms_change(&self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room], leave: bool) {
        self.publish_request(nsp, Request::RoomsChange { opts, rooms, leave });
    }

    pub(crate) fn publish_disconnect(&self, nsp: &str, opts: &BroadcastOptions, close: bool) {
        self.publish_request(nsp, Request::Disconnect { opts, close });
    }

    // ---- requests ------------------------------------------------------------------------------

    /// Number of servers serving `nsp`, this one included, from Redis's subscriber count.
    pub(crate) async fn server_count(&self, nsp: &str) -> Result<usize, AdapterError> {
        let (cmd, command) = self.format.server_count_command(nsp);
        let value = self.publisher.query(&cmd, self.config.requests_timeout).await?;
        let count =
            numsub_count(&value).ok_or_else(|| Error::UnexpectedReply { command, reply: format!("{value:?}") })?;
        Ok(count)
    }

    fn register_pending(&self) -> (String, mpsc::UnboundedReceiver<Response>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pending = self.pending.lock();
        let id = loop {
            let id = self.format.new_id();
            if !pending.contains_key(&id) {
                break id;
            }
        };
        pending.insert(id.clone(), tx);
        (id, rx)
    }

    /// Gathers `expected` answers to request `request_id` until `timeout`.
    async fn gather(
        &self,
        request_id: &str,
        mut answers: mpsc::UnboundedReceiver<Response>,
        expected: usize,
        timeout: Duration,
        mut accept: impl FnMut(Response) -> bool,
    ) -> Result<(), AdapterError> {
        let _guard = PendingGuard { shared: self, id: request_id.to_string() };
        let deadline = tokio::time::Instant::now() + timeout;
        let mut got = 0;
        while got < expected {
            match tokio::time::timeout_at(deadline, answers.recv()).await {
                Ok(Some(response)) => {
                    if accept(response) {
                        got += 1;
                    }
                }
                Ok(None) | Err(_) => {
                    self.stats.request_failures.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(request_id, got, expected, "redis adapter: cluster request timed out");
                    return Err(AdapterError::Timeout);
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn fetch_sockets(
        self: Arc<Self>,
        nsp: String,
        opts: BroadcastOptions,
        mut sockets: Vec<SocketInfo>,
    ) -> Result<Vec<SocketInfo>, AdapterError> {
        let count = self.server_count(&nsp).await.inspect_err(|_| {
            self.stats.request_failures.fetch_add(1, Ordering::Relaxed);
        })?;
        if count <= 1 {
            return Ok(sockets);
        }
        let (id, answers) = self.register_pending();
        self.publish_request(&nsp, Request::FetchSockets { id: &id, opts: &opts });
        self.gather(&id, answers, count - 1, self.config.requests_timeout, |response| match response {
            Response::Sockets(list) => {
                sockets.extend(list.iter().filter_map(|s| convert::socket_info(&nsp, s)));
                true
            }
            _ => false,
        })
        .await?;
        Ok(sockets)
    }

    pub(crate) async fn all_rooms(
        self: Arc<Self>,
        nsp: String,
        mut rooms: HashSet<Room>,
    ) -> Result<HashSet<Room>, AdapterError> {
        // Without a rooms request (sharded), a node knows its own rooms only.
        if !self.format.has_rooms_request() {
            return Ok(rooms);
        }
        let count = self.server_count(&nsp).await?;
        if count <= 1 {
            return Ok(rooms);
        }
        let (id, answers) = self.register_pending();
        self.publish_request(&nsp, Request::AllRooms { id: &id });
        self.gather(&id, answers, count - 1, self.config.requests_timeout, |response| match response {
            Response::Rooms(list) => {
                rooms.extend(list.iter().filter_map(convert::room));
                true
            }
            _ => false,
        })
        .await?;
        Ok(rooms)
    }

    pub(crate) async fn server_side_emit(
        self: Arc<Self>,
        nsp: String,
        event: String,
        payload: Payload,
        ack_timeout: Option<Duration>,
    ) -> Result<Vec<Payload>, AdapterError> {
        let Some(timeout) = ack_timeout else {
            self.publish_request(&nsp, Request::ServerSideEmit { id: None, event: &event, payload: &payload });
            return Ok(Vec::new());
        };
        let count = self.server_count(&nsp).await?;
        if count <= 1 {
            return Ok(Vec::new());
        }
        let (id, answers) = self.register_pending();
        self.publish_request(&nsp, Request::ServerSideEmit { id: Some(&id), event: &event, payload: &payload });
        let mut responses = Vec::new();
        self.gather(&id, answers, count - 1, timeout, |response| match response {
            Response::ServerSideAck(value) => {
                responses.push(Payload::new(vec![value]));
                true
            }
            _ => false,
        })
        .await?;
        Ok(responses)
    }

    /// Broadcast with acks to the other nodes: returns the total of their client counts (after each
    /// answered) and forwards every client answer to `answers`.
    pub(crate) fn broadcast_with_ack(
        self: &Arc<Self>,
        nsp: &str,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
        answers: mpsc::UnboundedSender<Payload>,
    ) -> tokio::sync::oneshot::Receiver<usize> {
        let (id, mut responses) = self.register_pending();
        self.publish_request(nsp, Request::BroadcastWithAck { id: &id, event, payload, opts });
        let (count_tx, count_rx) = tokio::sync::oneshot::channel();
        let shared = self.clone();
        let nsp = nsp.to_string();
        tokio::spawn(async move {
            let _guard = PendingGuard { shared: &shared, id: id.clone() };
            let servers = match shared.server_count(&nsp).await {
                Ok(count) => count,
                Err(err) => {
                    tracing::warn!(error = %err, "redis adapter: broadcast with acks: server count unknown");
                    shared.stats.request_failures.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            };
            let mut remaining_servers = servers.saturating_sub(1);
            let mut clients = 0;
            let mut count_tx = Some(count_tx);
            if remaining_servers == 0 {
                if let Some(tx) = count_tx.take() {
                    let _ = tx.send(0);
                }
                return;
            }
            let deadline = tokio::time::Instant::now() + REMOTE_ACK_WINDOW;
            loop {
                // Stop as soon as the emitter gave up (its receiver is gone).
                let recv = tokio::time::timeout(Duration::from_millis(500), responses.recv());
                match tokio::time::timeout_at(deadline, recv).await {
                    Err(_) => return,
                    Ok(Err(_)) => {
                        if answers.is_closed() {
                            return;
                        }
                    }
                    Ok(Ok(None)) => return,
                    Ok(Ok(Some(response))) => match response {
                        Response::ClientCount(n) => {
                            clients += n;
                            remaining_servers = remaining_servers.saturating_sub(1);
                            if remaining_servers == 0 {
                                if let Some(tx) = count_tx.take() {
                                    let _ = tx.send(clients);
                                }
                            }
                        }
                        Response::Ack(answer) => {
                            // The emitter stopped listening (it timed out): stop forwarding.
                            let forwarded = answers.send(answer);
                            if forwarded.is_err() {
                                return;
                            }
                        }
                        _ => {}
                    },
                }
            }
        });
        count_rx
    }

    // ---- receiving -----------------------------------------------------------------------------

    fn on_push(&self, info: PushInfo) {
        let (key, channel, payload) = match (info.kind, info.data.as_slice()) {
            (PushKind::Message | PushKind::SMessage, [channel, payload]) => (channel, channel, payload),
            (PushKind::PMessage, [pattern, channel, payload]) => (pattern, channel, payload),
            _ => return,
        };
        let (Some(key), Some(channel), Some(payload)) = (bulk(key), bulk(channel), bulk(payload)) else { return };
        let Some((nsp, route)) = self.routes.read().get(convert::text(key).as_ref()).cloned() else {
            return;
        };
        // A stored broadcast's pub/sub copy, when the namespace's stream reader delivers it: dropped
        // before decoding (the reader keeps the stream's order).
        if let (Some(recovery), Route::Broadcasts) = (&self.recovery, route) {
            let sharded = self.config.mode == Mode::Sharded;
            if crate::recovery::recorded_offset(payload, sharded).is_some_and(|id| recovery.read_from_stream(&nsp, id))
            {
                return;
            }
        }
        let Some(ns) = self.namespaces.read().get(&nsp).and_then(Weak::upgrade) else { return };
        // While a session is being restored here, broadcasts to rooms this node lacks are kept: the
        // restored socket joins its rooms only after its missed packets were read from the stream,
        // and what is stored after that read reaches it only through the restore's buffer.
        let all_rooms = self.recovery.as_ref().is_some_and(|r| r.is_restoring());
        match self.format.decode(&ns, route, channel, payload, all_rooms) {
            Ok(Some(message)) => self.on_message(&ns, route, message),
            Ok(None) => {}
            Err(err) => self.stats.malformed(route.label(), &err),
        }
    }

    fn on_message(&self, ns: &Arc<Namespace>, route: Route, message: Message) {
        let Message { from, request_id, incoming } = message;
        // Answers count once matched to a pending request; everything else counts on arrival.
        if !matches!(incoming, Incoming::Response(_)) {
            self.stats.received.fetch_add(1, Ordering::Relaxed);
        }
        let reply = |reply: Reply<'_>| self.reply(ns.name(), from.as_deref(), reply);
        match incoming {
            Incoming::Response(response) => {
                let Some(tx) = request_id.as_str().and_then(|id| self.pending.lock().get(id).cloned()) else { return };
                self.stats.received.fetch_add(1, Ordering::Relaxed);
                let _ = tx.send(response);
            }
            Incoming::Broadcast { event, payload, opts, ack_window: None, offset } => {
                self.deliver(ns, &event, &payload, &opts, offset.as_deref())
            }
            Incoming::Broadcast { event, payload, opts, ack_window: Some(window), .. } => {
                let (tx, rx) = mpsc::unbounded_channel();
                let count = local_broadcast_with_ack(ns, &event, &payload, &opts, tx);
                // Acks go where the count went; a request naming no sender gets neither.
                if reply(Reply::ClientCount { request_id: &request_id, count }) {
                    self.forward_acks(ns.name(), from, request_id, window, rx);
                }
            }
            Incoming::Remote { op, opts, rooms, close } => apply_remote(ns, op, &opts, &rooms, close),
            Incoming::RemoteSocket { op, sid, room, close } => {
                let Some(socket) = sid.as_deref().and_then(Sid::parse).and_then(|sid| ns.get_socket(&sid)) else {
                    return;
                };
                match (op, room) {
                    // Over the room limit: counted by the socket and skipped.
                    (RemoteOp::Join, Some(room)) => {
                        let _ = socket.join(room);
                    }
                    (RemoteOp::Leave, Some(room)) => socket.leave(&room),
                    (RemoteOp::Disconnect, _) => socket.disconnect(close),
                    _ => return,
                }
                reply(Reply::Done { request_id: &request_id });
            }
            Incoming::SocketIds { rooms } => {
                let opts = BroadcastOptions { rooms: rooms.into_iter().collect(), ..Default::default() };
                let ids: Vec<Value> =
                    ns.local_targets(&opts).iter().map(|s| Value::String(s.id().to_string())).collect();
                reply(Reply::Sockets { request_id: &request_id, sockets: &ids });
            }
            Incoming::FetchSockets { opts } => {
                let sockets: Vec<Value> =
                    ns.local_targets(&opts).iter().map(|s| convert::socket_json(&s.info())).collect();
                reply(Reply::Sockets { request_id: &request_id, sockets: &sockets });
            }
            Incoming::AllRooms => {
                reply(Reply::Rooms { request_id: &request_id, rooms: &node_rooms(ns) });
            }
            Incoming::ServerSideEmit { event, payload, wants_ack } => {
                let ack = wants_ack.then(|| {
                    let publisher = self.publisher.clone();
                    let format = self.format.clone();
                    let nsp = ns.name().to_string();
                    Box::new(move |answer: Payload| {
                        let reply = Reply::ServerSideAck { request_id: &request_id, answer: &answer };
                        if let Some(message) = format.encode_reply(&nsp, from.as_deref(), reply) {
                            publisher.publish(message);
                        }
                    }) as Box<dyn FnOnce(Payload) + Send>
                });
                dispatch_server_side(ns, &event, payload, ack);
            }
            Incoming::Ignored => {}
            Incoming::Unknown(kind) => tracing::debug!(kind, "redis adapter: ignoring a message of unknown type"),
            Incoming::Malformed(reason) => self.stats.malformed(route.label(), &reason),
        }
    }

    /// Publishes an answer to node `to`; false when the format could not address it.
    fn reply(&self, nsp: &str, to: Option<&str>, reply: Reply<'_>) -> bool {
        match self.format.encode_reply(nsp, to, reply) {
            Some(message) => {
                self.publisher.publish(message);
                true
            }
            None => false,
        }
    }

    /// Sends each local client's answer to another node's broadcast back to it, for `window`.
    fn forward_acks(
        &self,
        nsp: &str,
        to: Option<String>,
        request_id: Value,
        window: Duration,
        mut answers: mpsc::UnboundedReceiver<Payload>,
    ) {
        let publisher = self.publisher.clone();
        let format = self.format.clone();
        let nsp = nsp.to_string();
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + window;
            while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, answers.recv()).await {
                let reply = Reply::Ack { request_id: &request_id, answer: &answer };
                if let Some(message) = format.encode_reply(&nsp, to.as_deref(), reply) {
                    publisher.publish(message);
                }
            }
        });
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.publisher.is_connected() && self.stats.subscriber_connected.load(Ordering::Relaxed)
    }

    /// Recovery through Redis for namespace `ns`, when the namespace has recovery on.
    pub(crate) fn recovery_for(&self, ns: &Namespace) -> Option<&Arc<Recovery>> {
        self.recovery.as_ref().filter(|_| ns.recovery().is_some())
    }

    /// Delivers a broadcast from another node to the local sockets it selects. With recovery through
    /// Redis, a stored packet carries its stream id (and one without, from a Node peer or a node
    /// without recovery, none: it cannot be replayed). Otherwise as a local broadcast (the in-memory
    /// store, when on, keeps it for this node's disconnected sessions).
    fn deliver(
        &self,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
        offset: Option<&str>,
    ) {
        match self.recovery_for(ns) {
            Some(recovery) => recovery.deliver_published(ns, event, payload, opts, offset),
            None => MemoryAdapter.broadcast(ns, event, payload, opts),
        }
    }

    /// Stores a broadcast in the namespace's stream and publishes it; the local delivery follows with
    /// the stream id (at once without one when Redis cannot take it).
    pub(crate) fn publish_recorded(
        &self,
        recovery: &Arc<Recovery>,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) {
        let (mut message, entry, slot) = self.format.encode_recorded_broadcast(ns.name(), event, payload, opts);
        message.record = Some(recovery.record(ns, entry, slot, event, payload, opts));
        self.publisher.publish(message);
    }
}

/// Room channels held for a session being restored; released when dropped.
pub(crate) struct ChannelHold {
    shared: Weak<Shared>,
    subscriptions: Vec<Subscription>,
}

impl Drop for ChannelHold {
    fn drop(&mut self) {
        if let Some(shared) = self.shared.upgrade() {
            for subscription in self.subscriptions.drain(..) {
                shared.unsubscribe_room(Some(subscription));
            }
        }
    }
}

/// Rooms as a Node server reports them: its rooms and each socket's own id.
fn node_rooms(ns: &Namespace) -> Vec<String> {
    let mut rooms: Vec<String> = ns.local_rooms().iter().map(|r| r.to_string()).collect();
    rooms.extend(ns.local_sockets().iter().map(|s| s.id().to_string()));
    rooms
}

/// Runs the local handler of a server-side event from another node. Without a handler the requester
/// still gets an (empty) answer when it asked for one, so it does not wait for its timeout.
fn dispatch_server_side(ns: &Namespace, event: &str, payload: Payload, ack: Option<Box<dyn FnOnce(Payload) + Send>>) {
    let slot = Arc::new(Mutex::new(ack));
    let forward = slot.lock().is_some().then(|| {
        let slot = slot.clone();
        Box::new(move |answer: Payload| {
            if let Some(ack) = slot.lock().take() {
                ack(answer);
            }
        }) as Box<dyn FnOnce(Payload) + Send>
    });
    if !ns.dispatch_server_side(event, payload, forward) {
        tracing::debug!(event, "redis adapter: no handler for a server-side event; answering empty");
        if let Some(ack) = slot.lock().take() {
            ack(Payload::empty());
        }
    }
}

/// Joins, leaves or disconnects the local sockets `opts` selects, for another node.
fn apply_remote(ns: &Arc<Namespace>, op: RemoteOp, opts: &BroadcastOptions, rooms: &[Room], close: bool) {
    for socket in ns.local_targets(opts) {
        match op {
            RemoteOp::Join => rooms.iter().for_each(|room| {
                let _ = socket.join(room.clone());
            }),
            RemoteOp::Leave => rooms.iter().for_each(|room| socket.leave(room)),
            RemoteOp::Disconnect => socket.disconnect(close),
        }
    }
}

fn bulk(value: &redis::Value) -> Option<&[u8]> {
    match value {
        redis::Value::BulkString(bytes) => Some(bytes),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// The count out of a `PUBSUB NUMSUB`/`SHARDNUMSUB` reply for one channel (array or map form).
fn numsub_count(value: &redis::Value) -> Option<usize> {
    match value {
        redis::Value::Array(items) => match items.as_slice() {
            [_, redis::Value::Int(n)] => usize::try_from(*n).ok(),
            _ => None,
        },
        redis::Value::Map(pairs) => match pairs.as_slice() {
            [(_, redis::Value::Int(n))] => usize::try_from(*n).ok(),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numsub_replies_in_both_protocols() {
        let channel = redis::Value::BulkString(b"socket.io-request#/#".to_vec());
        let resp2 = redis::Value::Array(vec![channel.clone(), redis::Value::Int(3)]);
        assert_eq!(numsub_count(&resp2), Some(3));
        let resp3 = redis::Value::Map(vec![(channel, redis::Value::Int(2))]);
        assert_eq!(numsub_count(&resp3), Some(2));
        assert_eq!(numsub_count(&redis::Value::Nil), None);
        assert_eq!(numsub_count(&redis::Value::Array(vec![])), None);
    }
}
