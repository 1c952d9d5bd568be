//! The `[limits]` section at work: what each limit refuses, where, and the counters that show it.
//!
//! | limit | where | a client over it sees |
//! |---|---|---|
//! | `connections_per_ip` | accept loop (`switchyard_engine::serve`) | `HTTP/1.1 429 Too Many Requests`, connection closed |
//! | `handshakes_per_second_per_ip` | engine, before a session exists | 429 `{"code":3,"message":"Too many handshakes"}` |
//! | `allowed_origins` | engine, before a session exists | 403 `{"code":4,"message":"Forbidden"}` |
//! | `events_per_second` / `events_burst` | server-wide message middleware (here) | ack `{"error":"rate_limited"}`, handler not run |
//! | `rate_limit_disconnect_after` | same | namespace disconnect (`io server disconnect`) |
//! | `namespaces_per_connection` | Socket.IO CONNECT | CONNECT_ERROR `{"message":"Too many namespaces"}` |
//! | `rooms_per_socket` | `Socket::join` | `Err(JoinError::TooManyRooms)` to the server code |
//!
//! A limit set to 0 is off and costs nothing: no per-IP table, no middleware.
//!
//! Every refusal is counted ([`Limits::register_metrics`]) and logged at debug; the ones an attack
//! produces in bulk are also logged at info at most once per 10 s per kind.

use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntCounterVec, Opts, Registry};
use serde_json::{json, Value};
use std::sync::Arc;
use switchyard_engine::limits::{monotonic_nanos, LogThrottle};
use switchyard_engine::{ConnectionLimiter, EngineStats, Rate};
use switchyard_socketio::{LimitStats, Rejection, Socket, SocketIo, SocketIoBuilder};

use crate::config::LimitsConfig;

/// The reason logged when a socket is disconnected for sending too many events.
pub const RATE_LIMIT_REASON: &str = "rate limit exceeded";

/// The limits of one server and their counters.
pub struct Limits {
    config: LimitsConfig,
    connections: Option<Arc<ConnectionLimiter>>,
    counters: Arc<Counters>,
}

/// The Prometheus collectors. Counts kept as atomics by the engine and the Socket.IO layer are copied
/// into their counters when the registry is gathered.
struct Counters {
    rate_limited_events: IntCounter,
    rate_limit_disconnects: IntCounter,
    handshakes_refused: IntCounterVec,
    namespaces_refused: IntCounter,
    rooms_refused: IntCounter,
    /// The engine's and the Socket.IO layer's counts, once [`Limits::bind`] saw the server.
    sources: std::sync::OnceLock<(Arc<EngineStats>, Arc<LimitStats>)>,
    connections: Option<Arc<ConnectionLimiter>>,
    /// Serializes the copy from the atomics (two gathers at once must not add a delta twice).
    sync: std::sync::Mutex<()>,
}

impl Limits {
    /// The limits of `config` and their counters, with the per-IP connection table that
    /// [`crate::App::serve`] gives the accept loop. Then [`Limits::install`] the event rate on the
    /// server's builder and [`Limits::bind`] the built server (built with
    /// [`crate::config::Config::socketio_config`], which carries the engine- and Socket.IO-level
    /// limits).
    pub fn new(config: &LimitsConfig) -> Arc<Limits> {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric name");
        let connections = (config.connections_per_ip > 0).then(|| ConnectionLimiter::new(config.connections_per_ip));
        let counters = Arc::new(Counters {
            rate_limited_events: counter(
                "switchyard_rate_limited_events_total",
                "Incoming events refused by the per-socket event rate (limits.events_per_second).",
            ),
            rate_limit_disconnects: counter(
                "switchyard_rate_limit_disconnects_total",
                "Sockets disconnected for exceeding the event rate (limits.rate_limit_disconnect_after).",
            ),
            handshakes_refused: IntCounterVec::new(
                Opts::new("switchyard_handshakes_refused_total", "Connections and handshakes refused, by cause."),
                &["cause"],
            )
            .expect("valid metric"),
            namespaces_refused: counter(
                "switchyard_namespaces_refused_total",
                "CONNECTs refused by limits.namespaces_per_connection.",
            ),
            rooms_refused: counter("switchyard_rooms_refused_total", "Joins refused by limits.rooms_per_socket."),
            sources: std::sync::OnceLock::new(),
            connections: connections.clone(),
            sync: std::sync::Mutex::new(()),
        });
        for cause in ["connections_per_ip", "handshake_rate", "origin"] {
            counters.handshakes_refused.with_label_values(&[cause]);
        }
        Arc::new(Limits { config: config.clone(), connections, counters })
    }

    /// Adds the event rate to `builder` as server-wide message middleware (so it covers every
    /// namespace, static, dynamic, and those created later); nothing when `events_per_second` is 0.
    pub fn install(&self, builder: SocketIoBuilder) -> SocketIoBuilder {
        if self.config.events_per_second == 0 {
            return builder;
        }
        builder.event_middleware(event_rate(&self.config, &self.counters))
    }

    /// Reads the refusals the engine and the Socket.IO layer of `io` count.
    pub fn bind(&self, io: &SocketIo) {
        let _ = self.counters.sources.set((io.engine().stats().clone(), io.limit_stats().clone()));
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// The per-IP connection table for the accept loop, when `connections_per_ip` is set.
    pub fn connection_limiter(&self) -> Option<&Arc<ConnectionLimiter>> {
        self.connections.as_ref()
    }

    /// Registers every limit counter: `switchyard_rate_limited_events_total`,
    /// `switchyard_rate_limit_disconnects_total`,
    /// `switchyard_handshakes_refused_total{cause="connections_per_ip"|"handshake_rate"|"origin"}`,
    /// `switchyard_namespaces_refused_total` and `switchyard_rooms_refused_total`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(LimitsCollector(self.counters.clone())))
    }
}

/// The per-socket state of the event rate: a [`Rate`] bucket and the run of refused events.
/// 16 bytes in the socket's extensions, inserted at its first event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventBucket {
    state: u64,
    rejected_in_a_row: u32,
}

/// What the event rate does with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    /// Not handled; the client's ack gets `{"error":"rate_limited"}`.
    Reject,
    /// Not handled, and the socket is disconnected (the `rate_limit_disconnect_after`-th refusal in a row).
    Disconnect,
}

impl EventBucket {
    /// Decides on one event at `now` (nanoseconds); `disconnect_after` 0: never disconnect.
    #[inline]
    pub fn step(&mut self, rate: &Rate, now: u64, disconnect_after: u32) -> Verdict {
        if rate.allow(&mut self.state, now) {
            self.rejected_in_a_row = 0;
            return Verdict::Allow;
        }
        self.rejected_in_a_row = self.rejected_in_a_row.saturating_add(1);
        if disconnect_after != 0 && self.rejected_in_a_row >= disconnect_after {
            Verdict::Disconnect
        } else {
            Verdict::Reject
        }
    }
}

/// The event rate as server-wide message middleware. Per event: one clock read, a lock of the socket's
/// own extensions and a few arithmetic ops; no allocation and no shared lock.
fn event_rate(
    config: &LimitsConfig,
    counters: &Counters,
) -> impl Fn(&Arc<Socket>, &str, &switchyard_socketio::Payload) -> Result<(), Rejection> + Send + Sync + 'static {
    let burst = if config.events_burst == 0 { config.events_per_second } else { config.events_burst };
    let rate = Rate::new(config.events_per_second, burst);
    let disconnect_after = config.rate_limit_disconnect_after;
    let rejected = counters.rate_limited_events.clone();
    let disconnects = counters.rate_limit_disconnects.clone();
    let ack: Value = json!({"error": "rate_limited"});
    let log = LogThrottle::default();
    move |socket: &Arc<Socket>, event: &str, _payload: &switchyard_socketio::Payload| {
        let now = monotonic_nanos();
        let verdict = socket
            .extensions()
            .with_mut::<EventBucket, _>(|bucket| bucket.map(|bucket| bucket.step(&rate, now, disconnect_after)));
        let verdict = verdict.unwrap_or_else(|| {
            let mut bucket = EventBucket::default();
            let verdict = bucket.step(&rate, now, disconnect_after);
            socket.extensions().insert(bucket);
            verdict
        });
        match verdict {
            Verdict::Allow => Ok(()),
            Verdict::Reject => {
                rejected.inc();
                tracing::debug!(socket = %socket.id(), nsp = %socket.ns().name(), event, "event refused: rate limited");
                Err(Rejection::new(ack.clone()))
            }
            Verdict::Disconnect => {
                rejected.inc();
                disconnects.inc();
                let address = socket.handshake().address();
                if log.ready() {
                    tracing::info!(socket = %socket.id(), nsp = %socket.ns().name(), %address, reason = RATE_LIMIT_REASON, "socket disconnected (further ones for 10 s at debug)");
                } else {
                    tracing::debug!(socket = %socket.id(), nsp = %socket.ns().name(), %address, reason = RATE_LIMIT_REASON, "socket disconnected");
                }
                socket.disconnect(false);
                Err(Rejection::silent())
            }
        }
    }
}

struct LimitsCollector(Arc<Counters>);

impl Counters {
    fn sync(&self) {
        let _guard = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let set = |counter: &IntCounter, value: u64| {
            let current = counter.get();
            if value > current {
                counter.inc_by(value - current);
            }
        };
        let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        let vec = &self.handshakes_refused;
        set(&vec.with_label_values(&["connections_per_ip"]), self.connections.as_ref().map_or(0, |c| c.refused()));
        if let Some((engine, socketio)) = self.sources.get() {
            set(&vec.with_label_values(&["handshake_rate"]), load(&engine.refused_handshake_rate));
            set(&vec.with_label_values(&["origin"]), load(&engine.refused_origin));
            set(&self.namespaces_refused, load(&socketio.namespaces_refused));
            set(&self.rooms_refused, load(&socketio.rooms_refused));
        }
    }
}

impl Collector for LimitsCollector {
    fn desc(&self) -> Vec<&Desc> {
        let c = &self.0;
        let mut out = c.rate_limited_events.desc();
        out.extend(c.rate_limit_disconnects.desc());
        out.extend(c.handshakes_refused.desc());
        out.extend(c.namespaces_refused.desc());
        out.extend(c.rooms_refused.desc());
        out
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let c = &self.0;
        c.sync();
        let mut out = c.rate_limited_events.collect();
        out.extend(c.rate_limit_disconnects.collect());
        out.extend(c.handshakes_refused.collect());
        out.extend(c.namespaces_refused.collect());
        out.extend(c.rooms_refused.collect());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    #[test]
    fn event_bucket_rejects_over_the_rate_then_disconnects_after_a_run() {
        let rate = Rate::new(10, 2);
        let mut bucket = EventBucket::default();
        let t = 1_000 * MS;
        assert_eq!(bucket.step(&rate, t, 3), Verdict::Allow);
        assert_eq!(bucket.step(&rate, t, 3), Verdict::Allow);
        assert_eq!(bucket.step(&rate, t, 3), Verdict::Reject);
        assert_eq!(bucket.step(&rate, t, 3), Verdict::Reject);
        // An allowed event ends the run.
        assert_eq!(bucket.step(&rate, t + 100 * MS, 3), Verdict::Allow);
        assert_eq!(bucket.step(&rate, t + 100 * MS, 3), Verdict::Reject);
        assert_eq!(bucket.step(&rate, t + 100 * MS, 3), Verdict::Reject);
        assert_eq!(bucket.step(&rate, t + 100 * MS, 3), Verdict::Disconnect);
        let mut never = EventBucket::default();
        for _ in 0..1000 {
            assert_ne!(never.step(&rate, t, 0), Verdict::Disconnect);
        }
        assert!(std::mem::size_of::<EventBucket>() <= 16);
    }

    #[test]
    fn metrics_register_with_every_name() {
        let limits = Limits::new(&LimitsConfig::default());
        let io = limits.install(SocketIo::builder()).build();
        limits.bind(&io);
        let registry = Registry::new();
        limits.register_metrics(&registry).unwrap();
        let names: Vec<String> = registry.gather().iter().map(|f| f.name().to_string()).collect();
        for name in [
            "switchyard_rate_limited_events_total",
            "switchyard_rate_limit_disconnects_total",
            "switchyard_handshakes_refused_total",
            "switchyard_namespaces_refused_total",
            "switchyard_rooms_refused_total",
        ] {
            assert!(names.iter().any(|n| n == name), "{name} in {names:?}");
        }
    }
}
