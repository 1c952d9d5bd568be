//! Prometheus metrics (`/metrics`), through the `prometheus` crate: no exposition text is written here.
//!
//! [`Metrics`] owns the application's [`Registry`]. Every concern registers its own collectors on it
//! with a `register_metrics(&self, registry: &prometheus::Registry)` method:
//! - the engine's counters and the sockets per namespace: [`ServerCollector`], which reads the
//!   atomics the engine keeps anyway, at scrape time (no work per event);
//! - the Socket.IO series (events by name, acks, broadcasts, disconnects by reason): [`SocketIoMetrics`],
//!   an [`Observer`] whose every call is a map lookup under a read lock and an atomic add;
//! - the Redis adapter's counters: [`RedisCollector`], reading the node's stats at scrape time;
//! - the presence tracker's counters: [`PresenceCollector`], reading its atomics at scrape time.
//!
//! Every name, type and label is listed in docs/METRICS.md.

use parking_lot::RwLock;
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use switchyard_redis::RedisNode;
use switchyard_socketio::{
    BroadcastOptions, DisconnectReason, Namespace, Observer, Payload, Rejection, Room, Socket, SocketIo,
};

/// The label value counting every event name past `metrics.max_event_names`.
pub const OTHER_EVENT: &str = "other";

/// The application's metrics: one registry, filled by every concern's `register_metrics`.
pub struct Metrics {
    registry: Registry,
}

impl Metrics {
    pub fn new() -> Metrics {
        Metrics { registry: Registry::new() }
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The text exposition of everything registered (the body of `/metrics`).
    pub fn render(&self) -> String {
        let mut out = Vec::with_capacity(4096);
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::with_opts(Opts::new(name, help)).expect("valid metric name")
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::with_opts(Opts::new(name, help)).expect("valid metric name")
}

/// The engine's counters and the sockets per namespace, read from the server at scrape time.
pub struct ServerCollector {
    io: SocketIo,
    descs: Vec<Desc>,
}

/// (name, help) of every engine counter, in `EngineStats` order.
const ENGINE_COUNTERS: [(&str, &str); 12] = [
    ("switchyard_connections_opened_total", "Engine.IO connections opened."),
    ("switchyard_connections_closed_total", "Engine.IO connections closed."),
    ("switchyard_upgrades_total", "Polling sessions upgraded to WebSocket."),
    ("switchyard_slow_client_disconnects_total", "Connections closed because their outgoing queue overflowed."),
    ("switchyard_frames_sent_total", "WebSocket frames written."),
    ("switchyard_bytes_sent_total", "WebSocket bytes written."),
    ("switchyard_messages_received_total", "Engine.IO messages received."),
    ("switchyard_bytes_received_total", "Bytes of the Engine.IO messages received."),
    ("switchyard_protocol_errors_total", "Connections closed for invalid input."),
    ("switchyard_websocket_deflate_connections_total", "WebSockets that negotiated permessage-deflate."),
    ("switchyard_websocket_deflated_frames_total", "WebSocket frames written compressed."),
    ("switchyard_websocket_deflate_compressions_total", "Messages compressed (once per broadcast)."),
];

impl ServerCollector {
    pub fn new(io: SocketIo) -> ServerCollector {
        let descs = Self::families(&io, false).iter().flat_map(|c| c.desc().into_iter().cloned()).collect();
        ServerCollector { io, descs }
    }

    /// The families with their current values (`with_values`) or empty, for their descriptions.
    fn families(io: &SocketIo, with_values: bool) -> Vec<Box<dyn Collector>> {
        let stats = io.engine().stats();
        let values = [
            &stats.connections_opened,
            &stats.connections_closed,
            &stats.upgrades,
            &stats.slow_client_disconnects,
            &stats.frames_sent,
            &stats.bytes_sent,
            &stats.messages_received,
            &stats.bytes_received,
            &stats.protocol_errors,
            &stats.deflate_connections,
            &stats.frames_deflated,
            &stats.deflate_compressions,
        ];
        let mut out: Vec<Box<dyn Collector>> = Vec::with_capacity(ENGINE_COUNTERS.len() + 3);
        for ((name, help), value) in ENGINE_COUNTERS.iter().zip(values) {
            let c = counter(name, help);
            if with_values {
                c.inc_by(value.load(Ordering::Relaxed));
            }
            out.push(Box::new(c));
        }
        let open = gauge("switchyard_connections", "Open Engine.IO connections.");
        let polling = gauge("switchyard_polling_connections", "Connections on HTTP long-polling.");
        let sockets =
            IntGaugeVec::new(Opts::new("switchyard_sockets", "Connected sockets per namespace."), &["namespace"])
                .expect("valid metric");
        if with_values {
            open.set(stats.open_connections() as i64);
            polling.set(stats.polling_connections.load(Ordering::Relaxed) as i64);
            for ns in io.namespaces() {
                sockets.with_label_values(&[ns.name()]).set(ns.local_socket_count() as i64);
            }
        }
        out.push(Box::new(open));
        out.push(Box::new(polling));
        out.push(Box::new(sockets));
        out
    }
}

impl Collector for ServerCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Self::families(&self.io, true).iter().flat_map(|c| c.collect()).collect()
    }
}

/// Registers the engine's counters and the sockets per namespace of `io`.
pub fn register_server_metrics(io: &SocketIo, registry: &Registry) {
    if let Err(e) = registry.register(Box::new(ServerCollector::new(io.clone()))) {
        tracing::warn!(error = %e, "registering the server's metrics");
    }
}

/// The Redis adapter's counters (`switchyard_redis_*`, see docs/CLUSTER.md), read at scrape time.
pub struct RedisCollector {
    node: RedisNode,
    descs: Vec<Desc>,
}

impl RedisCollector {
    pub fn new(node: RedisNode) -> RedisCollector {
        let descs = Self::families(&node, false).iter().flat_map(|c| c.desc().into_iter().cloned()).collect();
        RedisCollector { node, descs }
    }

    fn families(node: &RedisNode, with_values: bool) -> Vec<Box<dyn Collector>> {
        let s = node.stats().snapshot();
        let counters = [
            ("switchyard_redis_published_total", "Messages published to Redis.", s.published),
            ("switchyard_redis_dropped_total", "Cross-node messages that never reached Redis.", s.dropped),
            ("switchyard_redis_received_total", "Messages received from other nodes.", s.received),
            ("switchyard_redis_malformed_total", "Messages from Redis that could not be decoded.", s.malformed),
            (
                "switchyard_redis_request_failures_total",
                "Cluster requests that timed out or failed.",
                s.request_failures,
            ),
            ("switchyard_redis_connects_total", "Successful connections to Redis.", s.connects),
            (
                "switchyard_recovery_recorded_total",
                "Broadcasts stored in Redis for connection state recovery.",
                s.recorded,
            ),
            (
                "switchyard_recovery_unrecorded_total",
                "Broadcasts delivered without a recovery offset because Redis could not store them.",
                s.unrecorded,
            ),
            (
                "switchyard_recovery_republished_total",
                "Unrecorded broadcasts stored in Redis on a later attempt (the other nodes got them).",
                s.republished,
            ),
            (
                "switchyard_recovery_republish_dropped_total",
                "Unrecorded broadcasts given up before Redis took them (bounds: count, age, record distance).",
                s.republish_dropped,
            ),
            ("switchyard_recovery_restored_total", "Sessions restored from Redis.", s.restored),
            (
                "switchyard_recovery_refused_total",
                "Recovery attempts refused (unknown or expired session, offset too old, Redis error).",
                s.restore_refused,
            ),
            (
                "switchyard_recovery_session_write_failures_total",
                "Recovery session writes to Redis that failed.",
                s.session_write_failures,
            ),
        ];
        let mut out: Vec<Box<dyn Collector>> = Vec::with_capacity(counters.len() + 1);
        for (name, help, value) in counters {
            let c = counter(name, help);
            if with_values {
                c.inc_by(value);
            }
            out.push(Box::new(c));
        }
        let connected = gauge("switchyard_redis_connected", "1 when both Redis links are up.");
        if with_values {
            connected.set(i64::from(s.publisher_connected && s.subscriber_connected));
        }
        out.push(Box::new(connected));
        out
    }

    /// Registers the node's collector.
    pub fn register_metrics(node: &RedisNode, registry: &Registry) {
        if let Err(e) = registry.register(Box::new(RedisCollector::new(node.clone()))) {
            tracing::warn!(error = %e, "registering the Redis adapter's metrics");
        }
    }
}

impl Collector for RedisCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Self::families(&self.node, true).iter().flat_map(|c| c.collect()).collect()
    }
}

/// The presence tracker's counters (`switchyard_presence_*`), read from its atomics at scrape time.
pub struct PresenceCollector {
    presence: Arc<crate::presence::Presence>,
    descs: Vec<Desc>,
}

impl PresenceCollector {
    pub fn new(presence: Arc<crate::presence::Presence>) -> PresenceCollector {
        let descs = Self::families(&presence, false).iter().flat_map(|c| c.desc().into_iter().cloned()).collect();
        PresenceCollector { presence, descs }
    }

    fn families(presence: &crate::presence::Presence, with_values: bool) -> Vec<Box<dyn Collector>> {
        let s = presence.stats();
        let counters = [
            (
                "switchyard_presence_announcements_total",
                "user-connected and user-disconnected broadcasts sent by this node.",
                &s.announced,
            ),
            (
                "switchyard_presence_expired_total",
                "Users this node announced gone because their entries expired (their node died).",
                &s.expired,
            ),
            ("switchyard_presence_store_errors_total", "Presence store calls that failed.", &s.store_errors),
            ("switchyard_presence_refreshes_total", "Refreshes of this node's entries in the store.", &s.refreshes),
        ];
        let mut out: Vec<Box<dyn Collector>> = Vec::with_capacity(counters.len() + 1);
        for (name, help, value) in counters {
            let c = counter(name, help);
            if with_values {
                c.inc_by(value.load(Ordering::Relaxed));
            }
            out.push(Box::new(c));
        }
        let held = gauge("switchyard_presence_local_entries", "(namespace, room, user) entries this node holds.");
        if with_values {
            held.set(i64::try_from(presence.local_entries()).unwrap_or(i64::MAX));
        }
        out.push(Box::new(held));
        out
    }

    /// Registers the tracker's collector.
    pub fn register_metrics(presence: &Arc<crate::presence::Presence>, registry: &Registry) {
        if let Err(e) = registry.register(Box::new(PresenceCollector::new(presence.clone()))) {
            tracing::warn!(error = %e, "registering the presence metrics");
        }
    }
}

impl Collector for PresenceCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Self::families(&self.presence, true).iter().flat_map(|c| c.collect()).collect()
    }
}

/// TLS handshakes and certificate reloads (`switchyard_tls_*`), read at scrape time.
pub struct TlsCollector {
    certs: Arc<crate::tls::TlsCerts>,
    descs: Vec<Desc>,
}

impl TlsCollector {
    fn families(certs: &crate::tls::TlsCerts, with_values: bool) -> Vec<Box<dyn Collector>> {
        let stats = certs.stats();
        let counters = [
            ("switchyard_tls_handshakes_total", "TLS handshakes that completed.", stats.handshakes()),
            (
                "switchyard_tls_handshake_failures_total",
                "TLS handshakes that failed or timed out (the connection was closed).",
                stats.handshake_failures(),
            ),
            (
                "switchyard_tls_handshake_timeouts_total",
                "TLS handshakes that did not finish within the handshake timeout.",
                stats.handshake_timeouts(),
            ),
            ("switchyard_tls_reloads_total", "Certificate reloads that took effect.", certs.reloads()),
            (
                "switchyard_tls_reload_failures_total",
                "Certificate reloads that failed (the previous certificate stayed in use).",
                certs.reload_failures(),
            ),
        ];
        counters
            .into_iter()
            .map(|(name, help, value)| {
                let c = counter(name, help);
                if with_values {
                    c.inc_by(value);
                }
                Box::new(c) as Box<dyn Collector>
            })
            .collect()
    }

    /// Registers the TLS counters of `certs`.
    pub fn register_metrics(certs: &Arc<crate::tls::TlsCerts>, registry: &Registry) {
        let descs = Self::families(certs, false).iter().flat_map(|c| c.desc().into_iter().cloned()).collect();
        if let Err(e) = registry.register(Box::new(TlsCollector { certs: certs.clone(), descs })) {
            tracing::warn!(error = %e, "registering the TLS metrics");
        }
    }
}

impl Collector for TlsCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        Self::families(&self.certs, true).iter().flat_map(|c| c.collect()).collect()
    }
}

/// Counters of one event name.
#[derive(Clone)]
struct EventCounters {
    received: IntCounter,
    sent: IntCounter,
}

/// Event names mapped to their counters: read-mostly (a read lock and a hash per event once the name
/// is known), at most `max` names, every other name under [`OTHER_EVENT`].
struct EventNames {
    max: usize,
    names: RwLock<HashMap<Box<str>, EventCounters>>,
    other: EventCounters,
    received: IntCounterVec,
    sent: IntCounterVec,
}

impl EventNames {
    fn counters(&self, name: &str) -> EventCounters {
        if let Some(c) = self.names.read().get(name) {
            return c.clone();
        }
        let mut names = self.names.write();
        if let Some(c) = names.get(name) {
            return c.clone();
        }
        if names.len() >= self.max || name == OTHER_EVENT {
            return self.other.clone();
        }
        let c = EventCounters {
            received: self.received.with_label_values(&[name]),
            sent: self.sent.with_label_values(&[name]),
        };
        names.insert(name.into(), c.clone());
        c
    }

    fn with<R>(&self, name: &str, f: impl FnOnce(&EventCounters) -> R) -> R {
        if let Some(c) = self.names.read().get(name) {
            return f(c);
        }
        f(&self.counters(name))
    }
}

/// The Socket.IO series, fed by an [`Observer`]. Sockets per namespace are not here: the
/// [`ServerCollector`] reads them from the namespaces at scrape time.
pub struct SocketIoMetrics {
    events: EventNames,
    rejected: IntCounter,
    connects: IntCounter,
    disconnects: IntCounterVec,
    /// One counter per [`DisconnectReason`], resolved once.
    disconnects_by_reason: RwLock<HashMap<&'static str, IntCounter>>,
    joins: IntCounter,
    leaves: IntCounter,
    acks: IntCounter,
    ack_timeouts: IntCounter,
    broadcasts: IntCounter,
    recipients: IntCounter,
}

impl SocketIoMetrics {
    /// Counters for at most `max_event_names` distinct event names (the rest as `other`).
    pub fn new(max_event_names: usize) -> Arc<SocketIoMetrics> {
        let received = IntCounterVec::new(
            Opts::new("switchyard_events_received_total", "Events received from clients, by event name."),
            &["event"],
        )
        .expect("valid metric");
        let sent = IntCounterVec::new(
            Opts::new(
                "switchyard_events_sent_total",
                "Events sent to clients (one per recipient socket on this node), by event name.",
            ),
            &["event"],
        )
        .expect("valid metric");
        let other = EventCounters {
            received: received.with_label_values(&[OTHER_EVENT]),
            sent: sent.with_label_values(&[OTHER_EVENT]),
        };
        Arc::new(SocketIoMetrics {
            events: EventNames { max: max_event_names, names: RwLock::default(), other, received, sent },
            rejected: counter(
                "switchyard_events_rejected_total",
                "Incoming events rejected by message middleware (their handlers did not run).",
            ),
            connects: counter("switchyard_socket_connects_total", "Sockets connected to a namespace."),
            disconnects: IntCounterVec::new(
                Opts::new("switchyard_socket_disconnects_total", "Sockets disconnected, by reason."),
                &["reason"],
            )
            .expect("valid metric"),
            disconnects_by_reason: RwLock::default(),
            joins: counter("switchyard_room_joins_total", "Sockets that joined a room."),
            leaves: counter("switchyard_room_leaves_total", "Sockets that left a room (disconnects included)."),
            acks: counter("switchyard_acks_total", "Acknowledgements received from clients."),
            ack_timeouts: counter(
                "switchyard_ack_timeouts_total",
                "Acknowledgements a client did not send in time (emit with ack to one socket).",
            ),
            broadcasts: counter("switchyard_broadcasts_total", "Broadcasts emitted on this node."),
            recipients: counter(
                "switchyard_broadcast_recipients_total",
                "Local sockets the broadcasts of this node were written to.",
            ),
        })
    }

    /// Registers every series of this observer.
    pub fn register_metrics(&self, registry: &Registry) {
        let collectors: [Box<dyn Collector>; 11] = [
            Box::new(self.events.received.clone()),
            Box::new(self.events.sent.clone()),
            Box::new(self.rejected.clone()),
            Box::new(self.connects.clone()),
            Box::new(self.disconnects.clone()),
            Box::new(self.joins.clone()),
            Box::new(self.leaves.clone()),
            Box::new(self.acks.clone()),
            Box::new(self.ack_timeouts.clone()),
            Box::new(self.broadcasts.clone()),
            Box::new(self.recipients.clone()),
        ];
        for c in collectors {
            if let Err(e) = registry.register(c) {
                tracing::warn!(error = %e, "registering the Socket.IO metrics");
            }
        }
    }

    fn disconnect_counter(&self, reason: DisconnectReason) -> IntCounter {
        let key = reason.as_str();
        if let Some(c) = self.disconnects_by_reason.read().get(key) {
            return c.clone();
        }
        self.disconnects_by_reason
            .write()
            .entry(key)
            .or_insert_with(|| self.disconnects.with_label_values(&[key]))
            .clone()
    }
}

impl Observer for SocketIoMetrics {
    fn on_connect(&self, _socket: &Socket) {
        self.connects.inc();
    }

    fn on_disconnect(&self, _socket: &Socket, reason: DisconnectReason) {
        self.disconnect_counter(reason).inc();
    }

    fn on_join(&self, _socket: &Socket, _room: &Room) {
        self.joins.inc();
    }

    fn on_leave(&self, _socket: &Socket, _room: &Room) {
        self.leaves.inc();
    }

    fn on_event(&self, _socket: &Socket, event: &str, _payload: &Payload) {
        self.events.with(event, |c| c.received.inc());
    }

    fn on_event_rejected(&self, _socket: &Socket, _event: &str, _rejection: &Rejection) {
        self.rejected.inc();
    }

    fn on_emit(&self, _socket: &Socket, event: &str, _payload: &Payload) {
        self.events.with(event, |c| c.sent.inc());
    }

    fn on_broadcast(&self, _ns: &Namespace, _opts: &BroadcastOptions, event: &str, _payload: &Payload, n: usize) {
        self.broadcasts.inc();
        self.recipients.inc_by(n as u64);
        self.events.with(event, |c| c.sent.inc_by(n as u64));
    }

    fn on_ack(&self, _socket: &Socket, _payload: &Payload) {
        self.acks.inc();
    }

    fn on_ack_timeout(&self, _socket: &Socket, _event: &str) {
        self.ack_timeouts.inc();
    }
}
