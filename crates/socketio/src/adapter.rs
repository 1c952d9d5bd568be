//! The adapter: how a namespace reaches sockets. The in-memory adapter serves one server; a cluster
//! adapter (Redis) delivers locally through the namespace index and forwards to other nodes.
//!
//! Every method has the single-server behaviour as its default, so [`MemoryAdapter`] is empty and a
//! cluster adapter overrides what crosses nodes.

use crate::namespace::Namespace;
use crate::payload::Payload;
use crate::recovery::{RestoredSession, SessionToPersist};
use futures_util::future::BoxFuture;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::Sid;
use tokio::sync::mpsc;

// The shared value types live in a leaf module; these paths stay valid for the rest of the crate.
pub use crate::types::{BroadcastOptions, Room, SocketInfo};

/// Answers to a broadcast with acks: how many clients got it, then each client's answer.
pub struct AckStream {
    /// Number of clients the packet reached (across the cluster).
    pub expected: BoxFuture<'static, usize>,
    pub answers: mpsc::UnboundedReceiver<Payload>,
}

/// The source of an [`AdapterError`]: whatever error type the cluster backend has.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a cluster operation (fetch-sockets, all rooms, server-side emit acks, server count) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdapterError {
    /// Some servers did not answer within the request timeout.
    #[error("timeout reached while waiting for the cluster's answers")]
    Timeout,
    /// The backend (Redis, say) cannot be reached right now.
    #[error("cluster backend unavailable: {0}")]
    Unavailable(#[source] BoxError),
    /// The backend answered, but not as expected.
    #[error("cluster backend error: {0}")]
    Backend(#[source] BoxError),
}

impl AdapterError {
    pub fn unavailable(err: impl Into<BoxError>) -> Self {
        AdapterError::Unavailable(err.into())
    }

    pub fn backend(err: impl Into<BoxError>) -> Self {
        AdapterError::Backend(err.into())
    }

    pub fn is_timeout(&self) -> bool {
        matches!(self, AdapterError::Timeout)
    }
}

pub trait Adapter: Send + Sync + 'static {
    /// Called once when the namespace is created.
    fn init(&self, _ns: &Arc<Namespace>) {}

    /// Whether [`Adapter::broadcast`] only delivers on this server, as [`MemoryAdapter`] does: then a
    /// broadcast whose argument is already encoded JSON ([`crate::BroadcastOperator::emit_json`]) is
    /// framed from those bytes, with no `Value` built. A cluster adapter answers `false` (the default).
    fn is_local(&self) -> bool {
        false
    }

    /// A room got its first member on this server (never called for a socket's own id room). Runs
    /// under the namespace's room-index lock, so calls arrive in order; it must not touch the
    /// namespace and must not block (a cluster adapter queues a subscription, say).
    fn on_room_created(&self, _ns: &Namespace, _room: &Room) {}

    /// The last member of a room on this server left it. Same rules as [`Adapter::on_room_created`].
    fn on_room_deleted(&self, _ns: &Namespace, _room: &Room) {}

    /// A socket joined the namespace on this server (its own id room now exists). Called after the
    /// socket is indexed; must not block.
    fn on_socket_added(&self, _ns: &Namespace, _id: &Sid) {}

    /// A socket left the namespace on this server.
    fn on_socket_removed(&self, _ns: &Namespace, _id: &Sid) {}

    /// Delivers an event to every socket `opts` selects.
    fn broadcast(&self, ns: &Arc<Namespace>, event: &str, payload: &Payload, opts: &BroadcastOptions) {
        let frames = match ns.recovery().filter(|_| !opts.flags.volatile) {
            Some(store) => ns.parser().encode_packet(ns.name(), Some(event), &store.record(event, payload, opts), None),
            None => ns.parser().encode_packet(ns.name(), Some(event), payload, None),
        };
        ns.local_broadcast(&frames, opts);
    }

    /// Keeps the session of a socket that dropped for a network reason (connection state recovery).
    fn persist_session(&self, ns: &Arc<Namespace>, session: SessionToPersist) {
        if let Some(store) = ns.recovery() {
            store.persist(session);
        }
    }

    /// A fresh private session id (`pid`) for a socket of `ns` when connection state recovery is on.
    /// A cluster adapter may put in it what it needs to find the session again (the node holding it).
    fn new_session_id(&self, _ns: &Namespace) -> String {
        Sid::random().as_str().to_string()
    }

    /// A socket with a recoverable session connected, or its rooms or data changed. Called only when
    /// recovery is on; must not block. A cluster adapter keeps the live session where another node
    /// finds it if this node dies without persisting it.
    fn on_session_changed(&self, _ns: &Namespace, _socket: &crate::socket::Socket) {}

    /// A socket with a session left for a reason that does not keep it (its session ends here).
    fn discard_session(&self, _ns: &Arc<Namespace>, _pid: &str) {}

    /// Gives a restored socket its rooms, its data and the packets it missed, once it is connected
    /// (indexed, CONNECT answered). A cluster adapter overrides this to close the gap between reading
    /// the missed packets and the socket joining its rooms.
    fn complete_restore(&self, ns: &Arc<Namespace>, socket: &Arc<crate::socket::Socket>, restored: RestoredSession) {
        for room in &restored.session.rooms {
            // A room over the limit (lowered since the session was stored) is counted and skipped.
            let _ = socket.join(room.clone());
        }
        socket.set_data(restored.session.data);
        for (event, payload) in &restored.missed {
            let _ = socket.send_replay(&ns.parser().encode_packet(ns.name(), Some(event), payload, None));
        }
    }

    /// The session `pid` with the packets it missed after `offset`, if it can be recovered.
    fn restore_session(
        &self,
        ns: &Arc<Namespace>,
        pid: &str,
        offset: &str,
    ) -> BoxFuture<'static, Option<RestoredSession>> {
        let restored = ns.recovery().and_then(|store| store.restore(pid, offset));
        Box::pin(async move { restored })
    }

    /// Delivers an event that every client acknowledges.
    fn broadcast_with_ack(
        &self,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> AckStream {
        let (tx, answers) = mpsc::unbounded_channel();
        let count = local_broadcast_with_ack(ns, event, payload, opts, tx);
        AckStream { expected: Box::pin(async move { count }), answers }
    }

    /// Sockets `opts` selects, across the cluster.
    fn fetch_sockets(
        &self,
        ns: &Arc<Namespace>,
        opts: &BroadcastOptions,
    ) -> BoxFuture<'static, Result<Vec<SocketInfo>, AdapterError>> {
        let sockets = ns.local_targets(opts).iter().map(|s| s.info()).collect();
        Box::pin(async move { Ok(sockets) })
    }

    /// Makes the sockets `opts` selects join `rooms`, across the cluster.
    fn add_sockets(&self, ns: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[Room]) {
        for socket in ns.local_targets(opts) {
            for room in rooms {
                // Over the room limit: counted by the socket and skipped, as for a local join.
                let _ = socket.join(room.clone());
            }
        }
    }

    fn del_sockets(&self, ns: &Arc<Namespace>, opts: &BroadcastOptions, rooms: &[Room]) {
        for socket in ns.local_targets(opts) {
            for room in rooms {
                socket.leave(room);
            }
        }
    }

    fn disconnect_sockets(&self, ns: &Arc<Namespace>, opts: &BroadcastOptions, close: bool) {
        for socket in ns.local_targets(opts) {
            socket.disconnect(close);
        }
    }

    /// Every room across the cluster.
    fn all_rooms(&self, ns: &Arc<Namespace>) -> BoxFuture<'static, Result<HashSet<Room>, AdapterError>> {
        let rooms = ns.local_rooms();
        Box::pin(async move { Ok(rooms) })
    }

    /// Emits to the other servers of the cluster; returns their acks (none on one server).
    fn server_side_emit(
        &self,
        _ns: &Arc<Namespace>,
        _event: &str,
        _payload: &Payload,
        _ack_timeout: Option<Duration>,
    ) -> BoxFuture<'static, Result<Vec<Payload>, AdapterError>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Number of servers in the cluster.
    fn server_count(&self) -> BoxFuture<'static, usize> {
        Box::pin(async { 1 })
    }
}

/// The single-server adapter.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryAdapter;

impl Adapter for MemoryAdapter {
    fn is_local(&self) -> bool {
        true
    }
}

/// Sends an acked event to each local target (each with its own ack id) and forwards the answers to
/// `answers`. Returns the number of targets.
pub fn local_broadcast_with_ack(
    ns: &Arc<Namespace>,
    event: &str,
    payload: &Payload,
    opts: &BroadcastOptions,
    answers: mpsc::UnboundedSender<Payload>,
) -> usize {
    let mut count = 0;
    for socket in ns.local_targets(opts) {
        let (id, rx) = socket.register_ack();
        let frames = ns.parser().encode_packet(ns.name(), Some(event), payload, Some(id));
        if socket.send_frames(&frames).is_err() {
            continue;
        }
        count += 1;
        let answers = answers.clone();
        tokio::spawn(async move {
            if let Ok(answer) = rx.await {
                let _ = answers.send(answer);
            }
        });
    }
    count
}

impl crate::socket::Socket {
    /// This socket as fetch-sockets reports it.
    pub fn info(&self) -> SocketInfo {
        SocketInfo {
            id: self.id().to_string(),
            nsp: self.ns().name().to_string(),
            handshake: self.handshake().to_json(self.auth()),
            rooms: self.rooms().iter().map(|r| r.to_string()).collect(),
            data: self.data(),
            local: true,
        }
    }
}
