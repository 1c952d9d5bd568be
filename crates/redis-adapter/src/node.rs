//! One server's membership in the cluster: its uid, its Redis links, the namespaces it serves, and
//! the requests it waits answers for. Both wire formats are handled here; `classic` and `sharded`
//! only differ in how messages are framed and where they are published.

use crate::connection::{Outgoing, Publisher, PushHandler, RedisTarget, Subscriber, Subscription};
use crate::msgpack::{self, Decoded, Writer};
use crate::stats::Stats;
use crate::wire::{self, EventPacket};
use crate::{Mode, RedisAdapterConfig, SubscriptionMode};
use bytes::Bytes;
use parking_lot::{Mutex, RwLock};
use redis::{PushInfo, PushKind};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::Duration;
use switchyard_socketio::{
    local_broadcast_with_ack, Adapter, AdapterError, BroadcastOptions, MemoryAdapter, Namespace, Payload, Room, Sid,
    SocketInfo,
};
use tokio::sync::mpsc;

/// Request types of the classic adapter.
pub(crate) mod classic {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
}

/// Message types of the cluster-adapter format (sharded mode).
pub(crate) mod sharded {
    pub const INITIAL_HEARTBEAT: u64 = 1;
    pub const HEARTBEAT: u64 = 2;
    pub const BROADCAST: u64 = 3;
    pub const SOCKETS_JOIN: u64 = 4;
    pub const SOCKETS_LEAVE: u64 = 5;
    pub const DISCONNECT_SOCKETS: u64 = 6;
    pub const FETCH_SOCKETS: u64 = 7;
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub const SERVER_SIDE_EMIT: u64 = 9;
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub const BROADCAST_ACK: u64 = 12;
    pub const ADAPTER_CLOSE: u64 = 13;
}

/// The longest a node forwards client acks for another node's broadcast when it gave no timeout.
const REMOTE_ACK_WINDOW: Duration = Duration::from_secs(60);

/// What a subscribed channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Classic broadcasts (the pattern `prefix#nsp#*`).
    Broadcast,
    /// Classic requests.
    Request,
    /// Classic responses (shared or this node's own channel).
    Response,
    /// Sharded: the namespace channel or a room channel.
    ClusterMessage,
    /// Sharded: this node's response channel.
    ClusterResponse,
}

/// An answer to one of this node's requests.
#[derive(Debug)]
enum Response {
    ClientCount(usize),
    Ack(Payload),
    Sockets(Vec<Value>),
    Rooms(Vec<Value>),
    ServerSideAck(Value),
}

pub(crate) struct Shared {
    pub(crate) uid: String,
    pub(crate) config: RedisAdapterConfig,
    pub(crate) stats: Arc<Stats>,
    publisher: Arc<Publisher>,
    subscriber: Subscriber,
    namespaces: RwLock<HashMap<String, Weak<Namespace>>>,
    routes: RwLock<HashMap<String, (String, Route)>>,
    pending: Mutex<HashMap<String, mpsc::UnboundedSender<Response>>>,
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
        let uid = match config.mode {
            Mode::Classic => wire::short_id(),
            Mode::Sharded => wire::hex_id(),
        };
        Arc::new_cyclic(|weak: &Weak<Shared>| {
            let weak = weak.clone();
            let handler: PushHandler = Arc::new(move |info: PushInfo| {
                if let Some(shared) = weak.upgrade() {
                    shared.on_push(info);
                }
            });
            Shared {
                uid,
                publisher: Publisher::start(target.clone(), config.publish_queue, config.max_in_flight, stats.clone()),
                subscriber: Subscriber::start(target, handler, stats.clone()),
                config,
                stats,
                namespaces: RwLock::default(),
                routes: RwLock::default(),
                pending: Mutex::default(),
            }
        })
    }

    fn prefix(&self) -> &str {
        &self.config.key_prefix
    }

    // ---- channels ------------------------------------------------------------------------------

    /// `prefix#nsp#`: classic broadcasts (plus `room#` for one room), and the sharded namespace channel.
    fn broadcast_channel(&self, nsp: &str) -> String {
        format!("{}#{}#", self.prefix(), nsp)
    }

    fn request_channel(&self, nsp: &str) -> String {
        format!("{}-request#{}#", self.prefix(), nsp)
    }

    fn response_channel(&self, nsp: &str) -> String {
        format!("{}-response#{}#", self.prefix(), nsp)
    }

    /// Where a classic node answers a request from `uid`.
    fn classic_response_channel_for(&self, nsp: &str, uid: Option<&str>) -> String {
        match uid {
            Some(uid) if self.config.publish_on_specific_response_channel => {
                format!("{}{}#", self.response_channel(nsp), uid)
            }
            _ => self.response_channel(nsp),
        }
    }

    /// Sharded: a node's response channel, or a room's channel.
    fn shard_sub_channel(&self, nsp: &str, suffix: &str) -> String {
        format!("{}#{}#{}#", self.prefix(), nsp, suffix)
    }

    fn add_route(&self, key: String, nsp: &str, route: Route) {
        self.routes.write().insert(key, (nsp.to_string(), route));
    }

    /// Starts serving namespace `ns`: subscribes to its channels.
    pub(crate) fn register(&self, ns: &Arc<Namespace>) {
        let nsp = ns.name();
        self.namespaces.write().insert(nsp.to_string(), Arc::downgrade(ns));
        match self.config.mode {
            Mode::Classic => {
                let pattern = format!("{}*", self.broadcast_channel(nsp));
                let request = self.request_channel(nsp);
                let response = self.response_channel(nsp);
                let own_response = format!("{response}{}#", self.uid);
                self.add_route(pattern.clone(), nsp, Route::Broadcast);
                self.add_route(request.clone(), nsp, Route::Request);
                self.add_route(response.clone(), nsp, Route::Response);
                self.add_route(own_response.clone(), nsp, Route::Response);
                self.subscriber.subscribe(Subscription::Pattern(pattern));
                self.subscriber.subscribe(Subscription::Channel(request));
                self.subscriber.subscribe(Subscription::Channel(response));
                self.subscriber.subscribe(Subscription::Channel(own_response));
            }
            Mode::Sharded => {
                let main = self.broadcast_channel(nsp);
                let own_response = self.shard_sub_channel(nsp, &self.uid);
                self.add_route(main.clone(), nsp, Route::ClusterMessage);
                self.add_route(own_response.clone(), nsp, Route::ClusterResponse);
                self.subscriber.subscribe(Subscription::Shard(main));
                self.subscriber.subscribe(Subscription::Shard(own_response));
            }
        }
    }

    /// Sharded dynamic modes: a broadcast to this one room goes to the room's channel. As in Node,
    /// `dynamic` keeps rooms that look like socket ids (20 characters) on the namespace channel.
    fn publishes_to_room_channel(&self, room: &str) -> bool {
        self.config.mode == Mode::Sharded
            && match self.config.subscription_mode {
                SubscriptionMode::Static => false,
                SubscriptionMode::Dynamic => room.len() != 20,
                SubscriptionMode::DynamicPrivate => true,
            }
    }

    fn subscribe_room(&self, nsp: &str, room: &str) {
        let channel = self.shard_sub_channel(nsp, room);
        self.add_route(channel.clone(), nsp, Route::ClusterMessage);
        self.subscriber.subscribe(Subscription::Shard(channel));
    }

    fn unsubscribe_room(&self, nsp: &str, room: &str) {
        let channel = self.shard_sub_channel(nsp, room);
        self.routes.write().remove(&channel);
        self.subscriber.unsubscribe(Subscription::Shard(channel));
    }

    /// A (public) room has local members: the dynamic modes listen on its channel.
    pub(crate) fn room_created(&self, nsp: &str, room: &Room) {
        if self.config.mode == Mode::Sharded && self.config.subscription_mode != SubscriptionMode::Static {
            self.subscribe_room(nsp, room);
        }
    }

    pub(crate) fn room_deleted(&self, nsp: &str, room: &Room) {
        if self.config.mode == Mode::Sharded && self.config.subscription_mode != SubscriptionMode::Static {
            self.unsubscribe_room(nsp, room);
        }
    }

    /// `dynamic-private` also gives each socket's own room a channel.
    pub(crate) fn socket_added(&self, nsp: &str, id: &Sid) {
        if self.config.mode == Mode::Sharded && self.config.subscription_mode == SubscriptionMode::DynamicPrivate {
            self.subscribe_room(nsp, id.as_str());
        }
    }

    pub(crate) fn socket_removed(&self, nsp: &str, id: &Sid) {
        if self.config.mode == Mode::Sharded && self.config.subscription_mode == SubscriptionMode::DynamicPrivate {
            self.unsubscribe_room(nsp, id.as_str());
        }
    }

    // ---- publishing ----------------------------------------------------------------------------

    fn publish(&self, channel: String, payload: Vec<u8>) {
        let sharded = self.config.mode == Mode::Sharded;
        self.publisher.publish(Outgoing { sharded, channel, payload });
    }

    /// A sharded-format message `{uid, nsp, type, data}`: JSON, or msgpack when `binary` is not empty.
    fn cluster_message(&self, nsp: &str, kind: u64, data: Option<Value>, binary: &[Bytes]) -> Vec<u8> {
        let mut message = json!({"uid": self.uid, "nsp": nsp, "type": kind});
        if let Some(data) = data {
            message["data"] = data;
        }
        if binary.is_empty() {
            message.to_string().into_bytes()
        } else {
            msgpack::encode(&message, binary)
        }
    }

    fn publish_cluster(&self, nsp: &str, kind: u64, data: Option<Value>, binary: &[Bytes]) {
        let payload = self.cluster_message(nsp, kind, data, binary);
        self.publish(self.broadcast_channel(nsp), payload);
    }

    /// Sends a broadcast to the other nodes (one publish, whatever their number).
    pub(crate) fn publish_broadcast(&self, nsp: &str, event: &str, payload: &Payload, opts: &BroadcastOptions) {
        match self.config.mode {
            Mode::Classic => {
                let mut w = Writer::with_capacity(64 + payload.binary.iter().map(|b| b.len()).sum::<usize>());
                w.array_len(3);
                w.str(&self.uid);
                wire::write_packet(&mut w, nsp, event, payload);
                wire::write_options(&mut w, opts);
                let mut channel = self.broadcast_channel(nsp);
                if opts.rooms.len() == 1 {
                    channel.push_str(&opts.rooms[0]);
                    channel.push('#');
                }
                self.publish(channel, w.finish());
            }
            Mode::Sharded => {
                let data = json!({
                    "packet": packet_json(nsp, event, payload),
                    "opts": wire::options_json(opts),
                });
                let message = self.cluster_message(nsp, sharded::BROADCAST, Some(data), &payload.binary);
                let channel = match opts.rooms.as_slice() {
                    [room] if self.publishes_to_room_channel(room) => self.shard_sub_channel(nsp, room),
                    _ => self.broadcast_channel(nsp),
                };
                self.publish(channel, message);
            }
        }
    }

    /// Asks the other nodes to make the sockets `opts` selects join (`leave` false) or leave rooms.
    pub(crate) fn publish_rooms_change(&self, nsp: &str, opts: &BroadcastOptions, rooms: &[Room], leave: bool) {
        let rooms: Vec<&str> = rooms.iter().map(|r| r.as_ref()).collect();
        let filter = rooms_filter(opts);
        match self.config.mode {
            Mode::Classic => {
                let kind = if leave { classic::REMOTE_LEAVE } else { classic::REMOTE_JOIN };
                let request = json!({"uid": self.uid, "type": kind, "opts": filter, "rooms": rooms});
                self.publish(self.request_channel(nsp), request.to_string().into_bytes());
            }
            Mode::Sharded => {
                let kind = if leave { sharded::SOCKETS_LEAVE } else { sharded::SOCKETS_JOIN };
                self.publish_cluster(nsp, kind, Some(json!({"opts": wire::options_json(opts), "rooms": rooms})), &[]);
            }
        }
    }

    pub(crate) fn publish_disconnect(&self, nsp: &str, opts: &BroadcastOptions, close: bool) {
        match self.config.mode {
            Mode::Classic => {
                let filter = rooms_filter(opts);
                let request =
                    json!({"uid": self.uid, "type": classic::REMOTE_DISCONNECT, "opts": filter, "close": close});
                self.publish(self.request_channel(nsp), request.to_string().into_bytes());
            }
            Mode::Sharded => {
                let data = json!({"opts": wire::options_json(opts), "close": close});
                self.publish_cluster(nsp, sharded::DISCONNECT_SOCKETS, Some(data), &[]);
            }
        }
    }

    // ---- requests ------------------------------------------------------------------------------

    /// Number of servers serving `nsp`, this one included, from Redis's subscriber count.
    pub(crate) async fn server_count(&self, nsp: &str) -> Result<usize, AdapterError> {
        let mut cmd = redis::cmd("PUBSUB");
        match self.config.mode {
            Mode::Classic => cmd.arg("NUMSUB").arg(self.request_channel(nsp)),
            Mode::Sharded => cmd.arg("SHARDNUMSUB").arg(self.broadcast_channel(nsp)),
        };
        let value = self.publisher.query(&cmd, self.config.requests_timeout).await.map_err(AdapterError::Other)?;
        numsub_count(&value).ok_or_else(|| AdapterError::Other(format!("unexpected PUBSUB reply: {value:?}")))
    }

    fn register_pending(&self) -> (String, mpsc::UnboundedReceiver<Response>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let mut pending = self.pending.lock();
        let id = loop {
            let id = match self.config.mode {
                Mode::Classic => wire::short_id(),
                Mode::Sharded => wire::hex_id(),
            };
            if !pending.contains_key(&id) {
                break id;
            }
        };
        pending.insert(id.clone(), tx);
        (id, rx)
    }

    /// Publishes a request and gathers `expected` answers until the requests timeout.
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
        match self.config.mode {
            Mode::Classic => {
                let filter = rooms_filter(&opts);
                let request = json!({"uid": self.uid, "requestId": id, "type": classic::REMOTE_FETCH, "opts": filter});
                self.publish(self.request_channel(&nsp), request.to_string().into_bytes());
            }
            Mode::Sharded => {
                let data = json!({"opts": wire::options_json(&opts), "requestId": id});
                self.publish_cluster(&nsp, sharded::FETCH_SOCKETS, Some(data), &[]);
            }
        }
        self.gather(&id, answers, count - 1, self.config.requests_timeout, |kind| match kind {
            Response::Sockets(list) => {
                sockets.extend(list.iter().filter_map(|s| wire::socket_from_json(&nsp, s)));
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
        mut rooms: std::collections::HashSet<Room>,
    ) -> Result<std::collections::HashSet<Room>, AdapterError> {
        // The cluster-adapter format has no rooms request: sharded mode knows its own rooms only.
        if self.config.mode == Mode::Sharded {
            return Ok(rooms);
        }
        let count = self.server_count(&nsp).await?;
        if count <= 1 {
            return Ok(rooms);
        }
        let (id, answers) = self.register_pending();
        let request = json!({"uid": self.uid, "requestId": id, "type": classic::ALL_ROOMS});
        self.publish(self.request_channel(&nsp), request.to_string().into_bytes());
        self.gather(&id, answers, count - 1, self.config.requests_timeout, |kind| match kind {
            Response::Rooms(list) => {
                rooms.extend(list.iter().filter_map(wire::room_name));
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
            self.publish_server_side(&nsp, &event, &payload, None);
            return Ok(Vec::new());
        };
        let count = self.server_count(&nsp).await?;
        if count <= 1 {
            return Ok(Vec::new());
        }
        let (id, answers) = self.register_pending();
        self.publish_server_side(&nsp, &event, &payload, Some(&id));
        let mut responses = Vec::new();
        self.gather(&id, answers, count - 1, timeout, |kind| match kind {
            Response::ServerSideAck(value) => {
                responses.push(Payload::new(vec![value]));
                true
            }
            _ => false,
        })
        .await?;
        Ok(responses)
    }

    fn publish_server_side(&self, nsp: &str, event: &str, payload: &Payload, request_id: Option<&str>) {
        match self.config.mode {
            Mode::Classic => {
                let mut request = json!({"uid": self.uid, "type": classic::SERVER_SIDE_EMIT, "data": wire::server_side_data(event, payload)});
                if let Some(id) = request_id {
                    request["requestId"] = json!(id);
                }
                self.publish(self.request_channel(nsp), request.to_string().into_bytes());
            }
            Mode::Sharded => {
                let mut data = Vec::with_capacity(payload.args.len() + 1);
                data.push(Value::String(event.to_string()));
                data.extend(payload.args.iter().cloned());
                let mut body = json!({"packet": data});
                if let Some(id) = request_id {
                    body["requestId"] = json!(id);
                }
                self.publish_cluster(nsp, sharded::SERVER_SIDE_EMIT, Some(body), &payload.binary);
            }
        }
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
        match self.config.mode {
            Mode::Classic => {
                let mut w = Writer::with_capacity(96);
                w.map_len(5);
                w.str("uid");
                w.str(&self.uid);
                w.str("requestId");
                w.str(&id);
                w.str("type");
                w.uint(classic::BROADCAST);
                w.str("packet");
                wire::write_packet(&mut w, nsp, event, payload);
                w.str("opts");
                wire::write_options(&mut w, opts);
                self.publish(self.request_channel(nsp), w.finish());
            }
            Mode::Sharded => {
                let data = json!({
                    "packet": packet_json(nsp, event, payload),
                    "requestId": id,
                    "opts": wire::options_json(opts),
                });
                self.publish_cluster(nsp, sharded::BROADCAST, Some(data), &payload.binary);
            }
        }
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
        let Some((nsp, route)) = self.routes.read().get(String::from_utf8_lossy(key).as_ref()).cloned() else {
            return;
        };
        let Some(ns) = self.namespaces.read().get(&nsp).and_then(Weak::upgrade) else { return };
        match route {
            Route::Broadcast => self.on_classic_broadcast(&ns, channel, payload),
            Route::Request => self.on_classic_request(&ns, payload),
            Route::Response => self.on_classic_response(payload),
            Route::ClusterMessage => self.on_cluster_message(&ns, payload, false),
            Route::ClusterResponse => self.on_cluster_message(&ns, payload, true),
        }
    }

    fn decode(&self, payload: &[u8], what: &str) -> Option<Decoded> {
        let decoded = if payload.first() == Some(&b'{') {
            serde_json::from_slice(payload)
                .map(|value| Decoded { value, binary: Vec::new() })
                .map_err(|e| e.to_string())
        } else {
            msgpack::decode(payload).map_err(|e| e.to_string())
        };
        match decoded {
            Ok(decoded) => Some(decoded),
            Err(err) => {
                self.stats.malformed(what, &err);
                None
            }
        }
    }

    fn on_classic_broadcast(&self, ns: &Arc<Namespace>, channel: &[u8], payload: &[u8]) {
        // `prefix#nsp#room#`: skip rooms this node does not have before decoding anything.
        let base = self.broadcast_channel(ns.name());
        if let Some(rest) = channel.strip_prefix(base.as_bytes()) {
            if let Some(room) = rest.strip_suffix(b"#") {
                if !room.is_empty() && !ns.has_room(&String::from_utf8_lossy(room)) {
                    return;
                }
            }
        }
        let decoded = match msgpack::decode(payload) {
            Ok(decoded) => decoded,
            Err(err) => return self.stats.malformed("broadcast", &err),
        };
        let Value::Array(mut parts) = decoded.value else {
            return self.stats.malformed("broadcast", &"not an array");
        };
        if parts.len() < 3 || parts[0].as_str() == Some(self.uid.as_str()) {
            return;
        }
        let opts = wire::parse_options(parts.get(2));
        let Some(packet) = wire::parse_packet(parts.swap_remove(1), &decoded.binary) else {
            return self.stats.malformed("broadcast", &"not an event packet");
        };
        if packet.nsp != ns.name() {
            return;
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        deliver(ns, &packet, &opts);
    }

    fn on_classic_request(&self, ns: &Arc<Namespace>, payload: &[u8]) {
        let Some(Decoded { value: request, binary }) = self.decode(payload, "request") else { return };
        let Some(kind) = request.get("type").and_then(Value::as_u64) else {
            return self.stats.malformed("request", &"no type");
        };
        let from = request.get("uid").and_then(Value::as_str);
        if from == Some(self.uid.as_str()) {
            // Our own request: everything it does here was done locally already.
            return;
        }
        let request_id = request.get("requestId").and_then(Value::as_str);
        let respond = |body: Value| {
            self.publish(self.classic_response_channel_for(ns.name(), from), body.to_string().into_bytes());
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        match kind {
            classic::SOCKETS => {
                let opts =
                    BroadcastOptions { rooms: wire::rooms(request.get("rooms")).collect(), ..Default::default() };
                let ids: Vec<String> = ns.local_targets(&opts).iter().map(|s| s.id().to_string()).collect();
                respond(json!({"requestId": request_id, "sockets": ids}));
            }
            classic::ALL_ROOMS => {
                respond(json!({"requestId": request_id, "rooms": node_rooms(ns)}));
            }
            classic::REMOTE_JOIN | classic::REMOTE_LEAVE | classic::REMOTE_DISCONNECT => {
                if let Some(opts) = request.get("opts") {
                    let opts = wire::parse_options(Some(opts));
                    let rooms: Vec<Room> = wire::rooms(request.get("rooms")).collect();
                    let close = request.get("close").and_then(Value::as_bool).unwrap_or(false);
                    apply_remote(ns, kind, &opts, &rooms, close);
                    return;
                }
                // The older form names one socket; the requester waits for an answer from its node.
                let Some(socket) =
                    request.get("sid").and_then(Value::as_str).and_then(Sid::parse).and_then(|sid| ns.get_socket(&sid))
                else {
                    return;
                };
                let room = request.get("room").and_then(wire::room_name);
                match (kind, room) {
                    (classic::REMOTE_JOIN, Some(room)) => socket.join(room),
                    (classic::REMOTE_LEAVE, Some(room)) => socket.leave(&room),
                    (classic::REMOTE_DISCONNECT, _) => {
                        socket.disconnect(request.get("close").and_then(Value::as_bool).unwrap_or(false))
                    }
                    _ => return,
                }
                respond(json!({"requestId": request_id}));
            }
            classic::REMOTE_FETCH => {
                let opts = wire::parse_options(request.get("opts"));
                let sockets: Vec<Value> =
                    ns.local_targets(&opts).iter().map(|s| wire::socket_json(&s.info())).collect();
                respond(json!({"requestId": request_id, "sockets": sockets}));
            }
            classic::SERVER_SIDE_EMIT => {
                let Some(Value::Array(mut data)) = request.get("data").cloned() else { return };
                if data.is_empty() {
                    return;
                }
                let event = match data.remove(0) {
                    Value::String(event) => event,
                    _ => return,
                };
                let ack = request_id.map(|id| {
                    let channel = self.response_channel(ns.name());
                    let id = id.to_string();
                    let publisher = self.publisher.clone();
                    Box::new(move |answer: Payload| {
                        let mut body = json!({"type": classic::SERVER_SIDE_EMIT, "requestId": id});
                        if let Some(first) = wire::first_arg(&answer) {
                            body["data"] = first;
                        }
                        publisher.publish(Outgoing { sharded: false, channel, payload: body.to_string().into_bytes() });
                    }) as Box<dyn FnOnce(Payload) + Send>
                });
                dispatch_server_side(ns, &event, msgpack::payload_from(data, &binary), ack);
            }
            classic::BROADCAST => {
                let Some(request_id) = request_id.map(str::to_string) else { return };
                let opts = wire::parse_options(request.get("opts"));
                let window = request
                    .pointer("/opts/flags/timeout")
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis)
                    .unwrap_or(REMOTE_ACK_WINDOW);
                let Some(packet) = request.get("packet").cloned().and_then(|p| wire::parse_packet(p, &binary)) else {
                    return self.stats.malformed("request", &"broadcast without an event packet");
                };
                let channel = self.classic_response_channel_for(ns.name(), from);
                let (tx, mut rx) = mpsc::unbounded_channel();
                let count = local_broadcast_with_ack(ns, &packet.event, &packet.payload, &opts, tx);
                let body =
                    json!({"type": classic::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count});
                self.publish(channel.clone(), body.to_string().into_bytes());
                let publisher = self.publisher.clone();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + window;
                    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                        let mut w = Writer::default();
                        w.map_len(3);
                        w.str("type");
                        w.uint(classic::BROADCAST_ACK);
                        w.str("requestId");
                        w.str(&request_id);
                        w.str("packet");
                        match answer.args.first() {
                            Some(first) => w.value(first, &answer.binary),
                            None => w.nil(),
                        }
                        publisher.publish(Outgoing { sharded: false, channel: channel.clone(), payload: w.finish() });
                    }
                });
            }
            _ => tracing::debug!(kind, "redis adapter: ignoring a request of unknown type"),
        }
    }

    fn on_classic_response(&self, payload: &[u8]) {
        let Some(Decoded { value, binary }) = self.decode(payload, "response") else { return };
        let Some(id) = value.get("requestId").and_then(Value::as_str) else { return };
        let Some(tx) = self.pending.lock().get(id).cloned() else { return };
        let response = match value.get("type").and_then(Value::as_u64) {
            Some(classic::BROADCAST_CLIENT_COUNT) => {
                Response::ClientCount(value.get("clientCount").and_then(Value::as_u64).unwrap_or(0) as usize)
            }
            Some(classic::BROADCAST_ACK) => Response::Ack(answer_payload(value.get("packet"), &binary)),
            Some(classic::SERVER_SIDE_EMIT) => {
                Response::ServerSideAck(value.get("data").cloned().unwrap_or(Value::Null))
            }
            _ => {
                if let Some(Value::Array(sockets)) = value.get("sockets") {
                    Response::Sockets(sockets.clone())
                } else if let Some(Value::Array(rooms)) = value.get("rooms") {
                    Response::Rooms(rooms.clone())
                } else {
                    return;
                }
            }
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(response);
    }

    fn on_cluster_message(&self, ns: &Arc<Namespace>, payload: &[u8], response_channel: bool) {
        let Some(Decoded { value: message, binary }) = self.decode(payload, "cluster message") else { return };
        let from = message.get("uid").and_then(Value::as_str).map(str::to_string);
        if from.as_deref() == Some(self.uid.as_str()) {
            return;
        }
        if message.get("nsp").and_then(Value::as_str).unwrap_or("/") != ns.name() {
            return;
        }
        let Some(kind) = message.get("type").and_then(Value::as_u64) else {
            return self.stats.malformed("cluster message", &"no type");
        };
        let data = message.get("data").cloned().unwrap_or(Value::Null);
        let is_response = matches!(
            kind,
            sharded::FETCH_SOCKETS_RESPONSE
                | sharded::SERVER_SIDE_EMIT_RESPONSE
                | sharded::BROADCAST_CLIENT_COUNT
                | sharded::BROADCAST_ACK
        );
        if response_channel || is_response {
            return self.on_cluster_response(kind, &data, &binary);
        }
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let respond = |kind: u64, body: Value, binary: &[Bytes]| {
            let Some(from) = from.as_deref() else { return };
            let message = self.cluster_message(ns.name(), kind, Some(body), binary);
            self.publish(self.shard_sub_channel(ns.name(), from), message);
        };
        match kind {
            sharded::BROADCAST => {
                let opts = wire::parse_options(data.get("opts"));
                let Some(packet) = data.get("packet").cloned().and_then(|p| wire::parse_packet(p, &binary)) else {
                    return self.stats.malformed("cluster message", &"broadcast without an event packet");
                };
                let Some(request_id) = data.get("requestId").and_then(Value::as_str).map(str::to_string) else {
                    return deliver(ns, &packet, &opts);
                };
                let (tx, mut rx) = mpsc::unbounded_channel();
                let count = local_broadcast_with_ack(ns, &packet.event, &packet.payload, &opts, tx);
                respond(sharded::BROADCAST_CLIENT_COUNT, json!({"requestId": request_id, "clientCount": count}), &[]);
                let Some(from) = from.clone() else { return };
                let channel = self.shard_sub_channel(ns.name(), &from);
                let publisher = self.publisher.clone();
                let uid = self.uid.clone();
                let nsp = ns.name().to_string();
                tokio::spawn(async move {
                    let deadline = tokio::time::Instant::now() + REMOTE_ACK_WINDOW;
                    while let Ok(Some(answer)) = tokio::time::timeout_at(deadline, rx.recv()).await {
                        let first = answer.args.first().cloned().unwrap_or(Value::Null);
                        let message = json!({"uid": uid, "nsp": nsp, "type": sharded::BROADCAST_ACK, "data": {"requestId": request_id, "packet": first}});
                        let payload = if answer.binary.is_empty() {
                            message.to_string().into_bytes()
                        } else {
                            msgpack::encode(&message, &answer.binary)
                        };
                        publisher.publish(Outgoing { sharded: true, channel: channel.clone(), payload });
                    }
                });
            }
            sharded::SOCKETS_JOIN | sharded::SOCKETS_LEAVE | sharded::DISCONNECT_SOCKETS => {
                let opts = wire::parse_options(data.get("opts"));
                let rooms: Vec<Room> = wire::rooms(data.get("rooms")).collect();
                let close = data.get("close").and_then(Value::as_bool).unwrap_or(false);
                let classic_kind = match kind {
                    sharded::SOCKETS_JOIN => classic::REMOTE_JOIN,
                    sharded::SOCKETS_LEAVE => classic::REMOTE_LEAVE,
                    _ => classic::REMOTE_DISCONNECT,
                };
                apply_remote(ns, classic_kind, &opts, &rooms, close);
            }
            sharded::FETCH_SOCKETS => {
                let opts = wire::parse_options(data.get("opts"));
                let sockets: Vec<Value> =
                    ns.local_targets(&opts).iter().map(|s| wire::socket_json(&s.info())).collect();
                respond(
                    sharded::FETCH_SOCKETS_RESPONSE,
                    json!({"requestId": data.get("requestId"), "sockets": sockets}),
                    &[],
                );
            }
            sharded::SERVER_SIDE_EMIT => {
                let Some(Value::Array(mut packet)) = data.get("packet").cloned() else { return };
                if packet.is_empty() {
                    return;
                }
                let Value::String(event) = packet.remove(0) else { return };
                let ack = match (data.get("requestId").and_then(Value::as_str), from.clone()) {
                    (Some(id), Some(from)) => {
                        let id = id.to_string();
                        let publisher = self.publisher.clone();
                        let channel = self.shard_sub_channel(ns.name(), &from);
                        let uid = self.uid.clone();
                        let nsp = ns.name().to_string();
                        Some(Box::new(move |answer: Payload| {
                            let mut body = json!({"requestId": id});
                            if let Some(first) = answer.args.first() {
                                body["packet"] = first.clone();
                            }
                            let message = json!({"uid": uid, "nsp": nsp, "type": sharded::SERVER_SIDE_EMIT_RESPONSE, "data": body});
                            let payload = if answer.binary.is_empty() {
                                message.to_string().into_bytes()
                            } else {
                                msgpack::encode(&message, &answer.binary)
                            };
                            publisher.publish(Outgoing { sharded: true, channel, payload });
                        }) as Box<dyn FnOnce(Payload) + Send>)
                    }
                    _ => None,
                };
                dispatch_server_side(ns, &event, msgpack::payload_from(packet, &binary), ack);
            }
            sharded::INITIAL_HEARTBEAT | sharded::HEARTBEAT | sharded::ADAPTER_CLOSE => {}
            _ => tracing::debug!(kind, "redis adapter: ignoring a cluster message of unknown type"),
        }
    }

    fn on_cluster_response(&self, kind: u64, data: &Value, binary: &[Bytes]) {
        let Some(id) = data.get("requestId").and_then(Value::as_str) else { return };
        let Some(tx) = self.pending.lock().get(id).cloned() else { return };
        let response = match kind {
            sharded::BROADCAST_CLIENT_COUNT => {
                Response::ClientCount(data.get("clientCount").and_then(Value::as_u64).unwrap_or(0) as usize)
            }
            sharded::BROADCAST_ACK => Response::Ack(answer_payload(data.get("packet"), binary)),
            sharded::FETCH_SOCKETS_RESPONSE => {
                Response::Sockets(data.get("sockets").and_then(Value::as_array).cloned().unwrap_or_default())
            }
            sharded::SERVER_SIDE_EMIT_RESPONSE => {
                Response::ServerSideAck(data.get("packet").cloned().unwrap_or(Value::Null))
            }
            _ => return,
        };
        self.stats.received.fetch_add(1, Ordering::Relaxed);
        let _ = tx.send(response);
    }

    pub(crate) fn is_connected(&self) -> bool {
        self.publisher.is_connected() && self.stats.subscriber_connected.load(Ordering::Relaxed)
    }
}

/// `{rooms, except}`: the socket filter of classic requests.
fn rooms_filter(opts: &BroadcastOptions) -> Value {
    json!({
        "rooms": opts.rooms.iter().map(|r| r.as_ref()).collect::<Vec<_>>(),
        "except": opts.except.iter().map(|r| r.as_ref()).collect::<Vec<_>>(),
    })
}

/// `{type: 2, data: [event, ...args], nsp}` as JSON with placeholders (msgpack turns them into bin).
fn packet_json(nsp: &str, event: &str, payload: &Payload) -> Value {
    let mut data = Vec::with_capacity(payload.args.len() + 1);
    data.push(Value::String(event.to_string()));
    data.extend(payload.args.iter().cloned());
    json!({"type": wire::EVENT, "data": data, "nsp": nsp})
}

/// A client's answer as Node forwards it: its first argument only.
fn answer_payload(value: Option<&Value>, binary: &[Bytes]) -> Payload {
    msgpack::payload_from(vec![value.cloned().unwrap_or(Value::Null)], binary)
}

/// Rooms as a Node server reports them: its rooms and each socket's own id.
fn node_rooms(ns: &Namespace) -> Vec<String> {
    let mut rooms: Vec<String> = ns.local_rooms().iter().map(|r| r.to_string()).collect();
    rooms.extend(ns.local_sockets().iter().map(|s| s.id().to_string()));
    rooms
}

/// Delivers a broadcast from another node to the local sockets it selects, as a local broadcast
/// (so connection state recovery, when on, keeps it for this node's disconnected sessions too).
fn deliver(ns: &Arc<Namespace>, packet: &EventPacket, opts: &BroadcastOptions) {
    MemoryAdapter.broadcast(ns, &packet.event, &packet.payload, opts);
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
fn apply_remote(ns: &Arc<Namespace>, kind: u64, opts: &BroadcastOptions, rooms: &[Room], close: bool) {
    for socket in ns.local_targets(opts) {
        match kind {
            classic::REMOTE_JOIN => rooms.iter().for_each(|room| socket.join(room.clone())),
            classic::REMOTE_LEAVE => rooms.iter().for_each(|room| socket.leave(room)),
            _ => socket.disconnect(close),
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
