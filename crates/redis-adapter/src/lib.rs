//! Horizontal scaling for Switchyard over Redis, wire-compatible with Node's
//! `@socket.io/redis-adapter` 8 (classic and sharded) and `@socket.io/redis-emitter` 5: Switchyard
//! and Node socket.io servers can share one cluster, and Node services that emit through the Redis
//! emitter reach Switchyard's clients unchanged.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchyard_redis::ConfigError> {
//! use switchyard_redis::{RedisAdapterConfig, RedisNode, RedisTarget};
//! let node = RedisNode::start(RedisTarget::Single("redis://127.0.0.1:6379".into()), RedisAdapterConfig::default())?;
//! let io = switchyard_socketio::SocketIo::builder().adapter(node.adapter_factory()).build();
//! # let _ = io;
//! # Ok(()) }
//! ```
//!
//! Each node keeps two Redis connections, both supervised: a publisher behind a bounded queue, and a
//! subscriber that reconnects and resubscribes by itself. Local delivery never waits for Redis; when
//! Redis is away, cross-node messages are dropped, counted in [`Stats`] and logged, and cluster
//! requests fail with [`AdapterError`](switchyard_socketio::AdapterError) instead of hanging (its
//! source, when Redis is at fault, is an [`Error`]).
//!
//! The message codecs are pure and live in [`switchyard_protocol::cluster`]; the two wire formats
//! (classic and sharded) are one module each behind one interface.

mod connection;
mod convert;
pub mod emitter;
mod error;
mod format;
mod link;
mod node;
mod recovery;
mod stats;

pub use connection::RedisTarget;
pub use emitter::{Emitter, EmitterError};
pub use error::Error;
pub use link::{LinkConn, LinkError, LinkTimeouts, RedisLink};
pub use stats::{Stats, StatsSnapshot};

use futures_util::future::BoxFuture;
use node::Shared;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use switchyard_socketio::{
    AckStream, Adapter, AdapterError, BroadcastOptions, MemoryAdapter, Namespace, Payload, RestoredSession, Room,
    SessionToPersist, Sid, Socket, SocketInfo,
};
use tokio::sync::mpsc;

/// Which wire format the cluster speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// `createAdapter`: PUBLISH/PSUBSCRIBE, msgpack broadcasts, request/response channels.
    #[default]
    Classic,
    /// `createShardedAdapter`: SPUBLISH/SSUBSCRIBE (Redis 7+) and the cluster-adapter message format.
    Sharded,
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "classic" => Ok(Mode::Classic),
            "sharded" => Ok(Mode::Sharded),
            other => Err(format!("unknown Redis mode {other:?} (classic or sharded)")),
        }
    }
}

/// Sharded mode's `subscriptionMode`, as in Node's `createShardedAdapter`. Every server of a cluster
/// must use the same one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SubscriptionMode {
    /// Every message on the namespace channel.
    Static,
    /// Broadcasts to one public room go to that room's channel; nodes subscribe to their rooms.
    #[default]
    Dynamic,
    /// As `Dynamic`, and each socket's own room (its id) gets a channel too.
    DynamicPrivate,
}

impl std::str::FromStr for SubscriptionMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "static" => Ok(SubscriptionMode::Static),
            "dynamic" => Ok(SubscriptionMode::Dynamic),
            "dynamic-private" => Ok(SubscriptionMode::DynamicPrivate),
            other => Err(format!("unknown subscription mode {other:?} (static, dynamic or dynamic-private)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct RedisAdapterConfig {
    /// Channel prefix (`key` in Node's classic adapter, `channelPrefix` in the sharded one).
    pub key_prefix: String,
    pub mode: Mode,
    pub subscription_mode: SubscriptionMode,
    /// How long fetch-sockets, rooms and server-side-emit requests wait for other nodes.
    pub requests_timeout: Duration,
    /// Classic mode: answer on `prefix-response#nsp#<uid>#` (Node's `publishOnSpecificResponseChannel`).
    pub publish_on_specific_response_channel: bool,
    /// Messages waiting to be published; beyond this they are dropped and counted.
    pub publish_queue: usize,
    /// Publishes awaiting Redis's reply at once on the publisher connection.
    pub max_in_flight: usize,
}

impl Default for RedisAdapterConfig {
    fn default() -> Self {
        RedisAdapterConfig {
            key_prefix: "socket.io".into(),
            mode: Mode::Classic,
            subscription_mode: SubscriptionMode::Dynamic,
            requests_timeout: Duration::from_millis(5000),
            publish_on_specific_response_channel: false,
            publish_queue: 16_384,
            max_in_flight: 512,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("invalid Redis address: {0}")]
    Address(#[from] redis::RedisError),
}

/// This server's membership in a Redis cluster. Cheap to clone; every namespace of the server uses it.
#[derive(Clone)]
pub struct RedisNode {
    shared: Arc<Shared>,
}

impl RedisNode {
    /// Starts the Redis links (in the background: Redis need not be up yet). Needs a Tokio runtime.
    pub fn start(target: RedisTarget, config: RedisAdapterConfig) -> Result<Self, ConfigError> {
        target.validate()?;
        Ok(RedisNode { shared: Shared::start(target, config) })
    }

    /// The adapter factory to give `SocketIo::builder().adapter(..)`: every namespace of the server
    /// then uses this node's adapter.
    pub fn adapter_factory(&self) -> impl Fn(&str) -> Arc<dyn Adapter> + Send + Sync + 'static {
        let node = self.clone();
        move |nsp| node.adapter(nsp)
    }

    /// The adapter of namespace `nsp`.
    pub fn adapter(&self, nsp: &str) -> Arc<dyn Adapter> {
        Arc::new(RedisAdapter { shared: self.shared.clone(), nsp: nsp.to_string() })
    }

    /// This node's id on the wire.
    pub fn uid(&self) -> &str {
        &self.shared.uid
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.shared.stats
    }

    /// Both Redis links are up.
    pub fn is_connected(&self) -> bool {
        self.shared.is_connected()
    }

    /// Waits until both Redis links are up, or `timeout` passes. Returns whether they are.
    pub async fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_connected() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// Number of servers serving namespace `nsp`, as Redis counts subscribers.
    pub async fn server_count(&self, nsp: &str) -> Result<usize, AdapterError> {
        self.shared.server_count(nsp).await
    }

    pub fn config(&self) -> &RedisAdapterConfig {
        &self.shared.config
    }
}

/// The adapter of one namespace: local delivery as the memory adapter does it, plus Redis.
struct RedisAdapter {
    shared: Arc<Shared>,
    nsp: String,
}

impl Adapter for RedisAdapter {
    fn init(&self, ns: &Arc<Namespace>) {
        self.shared.register(ns);
    }

    fn on_room_created(&self, ns: &Namespace, room: &Room) {
        self.shared.room_created(ns.name(), room);
    }

    fn on_room_deleted(&self, ns: &Namespace, room: &Room) {
        self.shared.room_deleted(ns.name(), room);
    }

    fn on_socket_added(&self, ns: &Namespace, id: &Sid) {
        self.shared.socket_added(ns.name(), id);
    }

    fn on_socket_removed(&self, ns: &Namespace, id: &Sid) {
        self.shared.socket_removed(ns.name(), id);
    }

    fn broadcast(&self, ns: &Arc<Namespace>, event: &str, payload: &Payload, opts: &BroadcastOptions) {
        if let Some(recovery) = self.shared.recovery_for(ns) {
            if opts.flags.local || opts.flags.volatile {
                // Not stored (as in Node): delivered without an offset.
                if !opts.flags.local {
                    self.shared.publish_broadcast(ns.name(), event, payload, opts);
                }
                recovery.deliver(ns, event, payload, opts, None);
            } else {
                self.shared.publish_recorded(recovery, ns, event, payload, opts);
            }
            return;
        }
        if !opts.flags.local {
            self.shared.publish_broadcast(ns.name(), event, payload, opts);
        }
        MemoryAdapter.broadcast(ns, event, payload, opts);
    }

    fn new_session_id(&self, ns: &Namespace) -> String {
        match self.shared.recovery_for(ns) {
            Some(recovery) => recovery.new_pid(),
            None => MemoryAdapter.new_session_id(ns),
        }
    }

    fn on_session_changed(&self, ns: &Namespace, socket: &Socket) {
        if let Some(recovery) = self.shared.recovery_for(ns) {
            recovery.session_changed(ns, socket);
        }
    }

    fn persist_session(&self, ns: &Arc<Namespace>, session: SessionToPersist) {
        match self.shared.recovery_for(ns) {
            Some(recovery) => recovery.persist(ns, session),
            None => MemoryAdapter.persist_session(ns, session),
        }
    }

    fn discard_session(&self, ns: &Arc<Namespace>, pid: &str) {
        if let Some(recovery) = self.shared.recovery_for(ns) {
            recovery.discard(ns, pid);
        }
    }

    fn restore_session(
        &self,
        ns: &Arc<Namespace>,
        pid: &str,
        offset: &str,
    ) -> BoxFuture<'static, Option<RestoredSession>> {
        match self.shared.recovery_for(ns) {
            Some(recovery) => {
                let (shared, nsp) = (self.shared.clone(), ns.name().to_string());
                let hold = move |session: &SessionToPersist| {
                    shared
                        .hold_session_channels(&nsp, session)
                        .map(|(hold, synced)| (Box::new(hold) as Box<dyn Send>, synced))
                };
                Box::pin(recovery.clone().restore(ns.clone(), pid.to_string(), offset.to_string(), hold))
            }
            None => MemoryAdapter.restore_session(ns, pid, offset),
        }
    }

    fn complete_restore(&self, ns: &Arc<Namespace>, socket: &Arc<Socket>, restored: RestoredSession) {
        match self.shared.recovery_for(ns) {
            Some(recovery) => recovery.complete(ns, socket, restored),
            None => MemoryAdapter.complete_restore(ns, socket, restored),
        }
    }

    fn broadcast_with_ack(
        &self,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> AckStream {
        if opts.flags.local {
            return MemoryAdapter.broadcast_with_ack(ns, event, payload, opts);
        }
        let (tx, answers) = mpsc::unbounded_channel();
        let remote = self.shared.broadcast_with_ack(ns.name(), event, payload, opts, tx.clone());
        let local = switchyard_socketio::local_broadcast_with_ack(ns, event, payload, opts, tx);
        let expected = Box::pin(async move {
            match remote.await {
                Ok(remote) => local + remote,
                // The cluster count is unknown: the emitter's timeout settles it.
                Err(_) => std::future::pending().await,
            }
        });
        AckStream { expected, answers }
    }

    fn fetch_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<SocketInfo>, AdapterError>> {
        let local: Vec<SocketInfo> = ns.local_targets(opts).iter().map(|s| s.info()).collect();
        if opts.flags.local {
            return Box::pin(async move { Ok(local) });
        }
        Box::pin(self.shared.clone().fetch_sockets(ns.name().to_string(), opts.clone(), local))
    }

    fn add_sockets(&self, ns: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[Room]) {
        if !opts.flags.local {
            self.shared.publish_rooms_change(ns.name(), opts, rooms, false);
        }
        MemoryAdapter.add_sockets(ns, opts, rooms);
    }

    fn del_sockets(&self, ns: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[Room]) {
        if !opts.flags.local {
            self.shared.publish_rooms_change(ns.name(), opts, rooms, true);
        }
        MemoryAdapter.del_sockets(ns, opts, rooms);
    }

    fn disconnect_sockets(&self, ns: &Arc<Namespace>, opts: &BroadcastOptions, close: bool) {
        if !opts.flags.local {
            self.shared.publish_disconnect(ns.name(), opts, close);
        }
        MemoryAdapter.disconnect_sockets(ns, opts, close);
    }

    fn all_rooms(&self, ns: &Arc<Namespace>) -> BoxFuture<'static, Result<HashSet<Room>, AdapterError>> {
        let rooms = ns.local_rooms();
        Box::pin(self.shared.clone().all_rooms(ns.name().to_string(), rooms))
    }

    fn server_side_emit(
        &self,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        ack_timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        Box::pin(self.shared.clone().server_side_emit(
            ns.name().to_string(),
            event.to_string(),
            payload.clone(),
            ack_timeout,
        ))
    }

    fn server_count(&self) -> BoxFuture<'static, usize> {
        let shared = self.shared.clone();
        let nsp = self.nsp.clone();
        // Unknown while Redis is away: this server at least.
        Box::pin(async move { shared.server_count(&nsp).await.unwrap_or(1).max(1) })
    }
}
