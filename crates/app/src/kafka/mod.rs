//! Kafka out and in (docs/KAFKA.md is the contract: formats, keys, guarantees).
//!
//! - Out: every accepted `message` (a [`MessageSink`] on the built-in event) and every event named
//!   in `kafka.produce_events` (a message middleware on the main namespace) becomes a record on
//!   `kafka.topic`, keyed by its room, produced by an idempotent, batching producer through a
//!   bounded queue, with the on-disk [`spool`] while Kafka is down ([`producer`]).
//! - In: records of the topics of `kafka.consume` are emitted to rooms across the cluster, by one
//!   consumer group for the cluster, offsets committed after the emit, redelivered ids skipped
//!   ([`dedupe`]).
//!
//! With `kafka.brokers` empty none of this is built: no sink, no middleware, no task.
//! [`record`] and [`spool`] are pure code; the Kafka client (rdkafka with librdkafka built in) is
//! behind the cargo feature `kafka` (on by default).

pub mod dedupe;
pub mod producer;
pub mod record;
pub mod spool;

#[cfg(feature = "kafka")]
mod client;

use crate::pipeline::{AcceptedMessage, Hold, MessageSink};
use prometheus::core::{Collector, Desc};
use prometheus::proto::MetricFamily;
use prometheus::{IntCounter, IntGauge, Registry};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

pub use producer::{KafkaOut, SPOOL_FULL, UNAVAILABLE};

/// The spool's folder under `store.dir`.
pub const SPOOL_DIR: &str = "kafka-spool";

/// Counters and state of Kafka out and in, read by `/metrics` and `/readyz`.
#[derive(Debug, Default)]
pub struct Stats {
    /// Records Kafka acknowledged.
    pub produced: AtomicU64,
    /// Records taken back after a failed delivery or probe, or from a producer that lost every
    /// broker (spooled or kept, then produced again).
    pub failed: AtomicU64,
    /// Messages refused (`spool_full`, `unavailable`).
    pub refused: AtomicU64,
    /// Records written to the spool.
    pub spooled: AtomicU64,
    /// Records waiting in the spool.
    pub spool_records: AtomicU64,
    /// Bytes of the spool on disk.
    pub spool_bytes: AtomicU64,
    /// Records held in memory on their way to Kafka.
    pub queued: AtomicU64,
    /// Whether the last delivery succeeded (false from a failed delivery until the next success).
    pub up: AtomicBool,
    /// Set when the spool refuses a record for being full; cleared by the next record it takes or
    /// when it is drained.
    pub spool_full: AtomicBool,
    /// Set when the server stops.
    pub closing: AtomicBool,
    /// Records consumed from `kafka.consume`.
    pub consumed: AtomicU64,
    /// Consumed records emitted to rooms.
    pub emitted: AtomicU64,
    /// Consumed records skipped as malformed.
    pub bad_records: AtomicU64,
    /// Consumed records skipped because their id was already emitted.
    pub duplicates: AtomicU64,
    /// Dedupe checks that could not reach their store (the record was emitted anyway).
    pub dedupe_errors: AtomicU64,
}

/// Kafka for one server: the producing side (when brokers are set) and the consumer.
pub struct Kafka {
    out: Option<Arc<KafkaOut>>,
    stats: Arc<Stats>,
    events: Arc<[String]>,
    topic: String,
    spool_max_bytes: u64,
    #[cfg_attr(not(feature = "kafka"), allow(dead_code))]
    consumer: parking_lot::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

/// Why Kafka could not start.
#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("kafka spool {path}: {source}")]
    Spool { path: String, source: std::io::Error },
    #[error("kafka client: {0}")]
    Client(String),
}

impl Kafka {
    /// Starts Kafka as `config` asks (none when `kafka.brokers` is empty), on the current runtime.
    /// `cluster`: the Redis the cluster shares, for the cross-node dedupe of consumed ids.
    #[cfg(feature = "kafka")]
    pub fn start(
        config: &crate::config::Config,
        io: &switchyard_socketio::SocketIo,
    ) -> Result<Option<Arc<Kafka>>, KafkaError> {
        let kafka = &config.kafka;
        if !kafka.enabled() {
            return Ok(None);
        }
        let stats = Arc::new(Stats::default());
        let dir = std::path::Path::new(&config.store.dir).join(SPOOL_DIR);
        let (spool, opened) = spool::Spool::open(&dir, kafka.spool_max_bytes)
            .map_err(|source| KafkaError::Spool { path: dir.display().to_string(), source })?;
        if opened.records > 0 || opened.discarded_bytes > 0 {
            tracing::info!(
                records = opened.records,
                discarded_bytes = opened.discarded_bytes,
                dir = %dir.display(),
                "kafka: spool holds records from a previous run; producing them first"
            );
        }
        let connect = client::connector(kafka, stats.clone());
        let out = KafkaOut::start(connect, Arc::new(spool), kafka.queue_max, kafka.ack_persisted(), stats.clone());
        let consumer = if kafka.consume_topics().is_empty() {
            None
        } else {
            let dedupe: Arc<dyn dedupe::Dedupe> = match config.redis.target() {
                Some(target) => Arc::new(Arc::new(dedupe::RedisDedupe::new(
                    target,
                    &config.redis.key_prefix,
                    std::time::Duration::from_millis(kafka.dedupe_window_ms),
                ))),
                None => Arc::new(dedupe::MemoryDedupe::new(std::time::Duration::from_millis(kafka.dedupe_window_ms))),
            };
            Some(client::start_consumer(kafka, io.clone(), dedupe, stats.clone()).map_err(KafkaError::Client)?)
        };
        Ok(Some(Arc::new(Kafka {
            out: Some(Arc::new(out)),
            stats,
            events: kafka.produce_events.iter().cloned().collect(),
            topic: kafka.topic.clone(),
            spool_max_bytes: kafka.spool_max_bytes,
            consumer: parking_lot::Mutex::new(consumer),
        })))
    }

    /// Without the `kafka` feature: nothing (the configuration check refuses `kafka.brokers`).
    #[cfg(not(feature = "kafka"))]
    pub fn start(
        _config: &crate::config::Config,
        _io: &switchyard_socketio::SocketIo,
    ) -> Result<Option<Arc<Kafka>>, KafkaError> {
        Ok(None)
    }

    /// A Kafka whose producer is `out` (tests with a fake [`producer::Transport`]).
    pub fn with_out(out: KafkaOut, stats: Arc<Stats>, produce_events: Vec<String>) -> Arc<Kafka> {
        Arc::new(Kafka {
            out: Some(Arc::new(out)),
            stats,
            events: produce_events.into(),
            topic: String::new(),
            spool_max_bytes: u64::MAX,
            consumer: parking_lot::Mutex::new(None),
        })
    }

    /// The counters.
    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// The sink for the built-in `message` event.
    pub fn sink(self: &Arc<Self>) -> Arc<dyn MessageSink> {
        Arc::new(MessageToKafka(self.clone()))
    }

    /// Produces the events of `kafka.produce_events` that clients send to `ns` (a message
    /// middleware: it runs after the server-wide ones such as the rate limit, so an event refused
    /// there is not produced; an event the spool cannot take is refused with `spool_full`).
    pub fn install_event_producer(self: &Arc<Self>, ns: &Arc<switchyard_socketio::Namespace>) {
        if self.events.is_empty() || self.out.is_none() {
            return;
        }
        let kafka = self.clone();
        ns.use_event_middleware(move |socket, event, payload| {
            if !kafka.events.iter().any(|e| e == event) {
                return Ok(());
            }
            let Some(out) = &kafka.out else { return Ok(()) };
            let id = uuid::Uuid::now_v7();
            let record = record::OutRecord::event(
                &id.to_string(),
                event,
                &crate::access::user_of(socket),
                &payload.args,
                uuid_millis(&id),
            );
            // Refusals are decided at once (queue or spool); the event's own handler answers its ack.
            out.enqueue_unconfirmed(record.key, record.value)
                .map_err(|refused| switchyard_socketio::Rejection::new(json!({"ok": false, "error": refused.error})))
        });
    }

    /// `/readyz`'s part: not ready while the spool refuses messages for being full.
    pub fn readiness(&self) -> (Result<(), &'static str>, Value) {
        let s = &self.stats;
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let spooling = self.out.as_ref().is_some_and(|o| o.spooling());
        let up = s.up.load(Ordering::Relaxed);
        let state = match (up, spooling) {
            (true, false) => "up",
            (true, true) => "catching_up",
            (false, _) => "down",
        };
        let bytes = load(&s.spool_bytes);
        let full = spooling && s.spool_full.load(Ordering::Relaxed);
        let detail = json!({
            "state": state,
            "topic": self.topic,
            "spooling": spooling,
            "spool_records": load(&s.spool_records),
            "spool_bytes": bytes,
            "spool_full": full,
            "spool_max_bytes": self.spool_max_bytes,
        });
        (if full { Err("kafka spool full") } else { Ok(()) }, detail)
    }

    /// Stops taking messages, lets the pump deliver (or spool) what memory holds within `timeout`,
    /// and stops the consumer.
    pub async fn close(&self, timeout: std::time::Duration) {
        self.stats.closing.store(true, Ordering::Relaxed);
        if let Some(consumer) = self.consumer.lock().take() {
            consumer.abort();
        }
        if let Some(out) = &self.out {
            out.close(timeout).await;
        }
    }

    /// Registers the `switchyard_kafka_*` series (docs/METRICS.md).
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(KafkaCollector::new(self.stats.clone())))
    }
}

/// The time part of a UUIDv7 in milliseconds.
pub fn uuid_millis(id: &uuid::Uuid) -> u64 {
    id.get_timestamp()
        .map(|t| {
            let (secs, nanos) = t.to_unix();
            secs * 1000 + u64::from(nanos / 1_000_000)
        })
        .unwrap_or_default()
}

struct MessageToKafka(Arc<Kafka>);

impl MessageSink for MessageToKafka {
    fn accept(&self, message: &AcceptedMessage) -> Hold {
        let Some(out) = &self.0.out else { return Hold::Ready(Ok(None)) };
        let record = record::OutRecord::message(message);
        Hold::Ready(out.enqueue(record.key, record.value))
    }
}

/// A counter and the atomic it follows.
type CounterOf = (IntCounter, fn(&Stats) -> &AtomicU64);
/// A gauge and how to read its value.
type GaugeOf = (IntGauge, fn(&Stats) -> u64);

struct KafkaCollector {
    stats: Arc<Stats>,
    counters: Vec<CounterOf>,
    gauges: Vec<GaugeOf>,
    sync: parking_lot::Mutex<()>,
}

impl KafkaCollector {
    fn new(stats: Arc<Stats>) -> Self {
        let counter = |name: &str, help: &str| IntCounter::new(name, help).expect("valid metric name");
        let gauge = |name: &str, help: &str| IntGauge::new(name, help).expect("valid metric name");
        let counters: Vec<CounterOf> = vec![
            (counter("switchyard_kafka_produced_total", "Records Kafka acknowledged"), |s| &s.produced),
            (
                counter(
                    "switchyard_kafka_produce_failed_total",
                    "Records taken back after a failed delivery, to be produced again",
                ),
                |s| &s.failed,
            ),
            (
                counter(
                    "switchyard_kafka_refused_total",
                    "Messages refused because the spool was full or could not be written",
                ),
                |s| &s.refused,
            ),
            (counter("switchyard_kafka_spooled_total", "Records written to the on-disk spool"), |s| &s.spooled),
            (counter("switchyard_kafka_consumed_total", "Records consumed from kafka.consume"), |s| &s.consumed),
            (counter("switchyard_kafka_emitted_total", "Consumed records emitted to rooms"), |s| &s.emitted),
            (counter("switchyard_kafka_bad_records_total", "Consumed records skipped as malformed"), |s| {
                &s.bad_records
            }),
            (
                counter(
                    "switchyard_kafka_duplicates_total",
                    "Consumed records skipped because their id was already emitted",
                ),
                |s| &s.duplicates,
            ),
            (
                counter(
                    "switchyard_kafka_dedupe_errors_total",
                    "Dedupe checks that could not reach their store (record emitted anyway)",
                ),
                |s| &s.dedupe_errors,
            ),
        ];
        let gauges: Vec<GaugeOf> = vec![
            (gauge("switchyard_kafka_spool_records", "Records waiting in the spool"), |s| {
                s.spool_records.load(Ordering::Relaxed)
            }),
            (gauge("switchyard_kafka_spool_bytes", "Bytes of the spool on disk"), |s| {
                s.spool_bytes.load(Ordering::Relaxed)
            }),
            (gauge("switchyard_kafka_queued", "Records held in memory on their way to Kafka"), |s| {
                s.queued.load(Ordering::Relaxed)
            }),
            (
                gauge(
                    "switchyard_kafka_up",
                    "1 while Kafka takes records, 0 after a failed delivery until the next success",
                ),
                |s| u64::from(s.up.load(Ordering::Relaxed)),
            ),
        ];
        KafkaCollector { stats, counters, gauges, sync: parking_lot::Mutex::new(()) }
    }
}

impl Collector for KafkaCollector {
    fn desc(&self) -> Vec<&Desc> {
        let mut out: Vec<&Desc> = self.counters.iter().flat_map(|(c, _)| c.desc()).collect();
        out.extend(self.gauges.iter().flat_map(|(g, _)| g.desc()));
        out
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let _guard = self.sync.lock();
        let mut out = Vec::new();
        for (counter, read) in &self.counters {
            let value = read(&self.stats).load(Ordering::Relaxed);
            let current = counter.get();
            if value > current {
                counter.inc_by(value - current);
            }
            out.extend(counter.collect());
        }
        for (gauge, read) in &self.gauges {
            gauge.set(read(&self.stats) as i64);
            out.extend(gauge.collect());
        }
        out
    }
}
