//! Message history: every accepted `message` kept per room, read back with the `history` event and
//! `GET /api/rooms/{room}/history` (docs/HISTORY.md).
//!
//! # Layout
//! - [`HistoryStore`]: the backend interface: append (in the caller's order), read since a message
//!   id with a limit, per-room retention by count and age.
//! - [`embedded::EmbeddedHistory`]: the default, on disk under `store.dir` (redb: one file,
//!   `history.redb`), kept across restarts with no external service.
//! - [`redis::RedisHistory`]: Redis Streams, for clusters (one stream per room, shared by every node).
//! - [`History`]: this node's history: the store, its metrics, and the [`MessageSink`] that makes a
//!   `message` wait for the store before it is broadcast and acknowledged.
//!
//! Ids: the cursor is the message's own `id` (the UUIDv7 every client sees in `message`); each
//! store keeps messages in the order it appended them, per room, and maps an id to its place.

pub mod embedded;
pub mod redis;

use crate::config::Config;
use crate::pipeline::{AcceptedMessage, Hold, MessageSink, Refused};
use futures_util::future::BoxFuture;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::limits::LogThrottle;

/// How many messages a read returns when it names no `limit`.
pub const DEFAULT_LIMIT: usize = 50;
/// The largest `limit` a read accepts.
pub const MAX_LIMIT: usize = 1000;
/// Messages waiting for the store before new ones are refused (`history_unavailable`): bounds the
/// memory a slow or unreachable store can take.
pub const QUEUE_CAPACITY: usize = 16_384;
/// Messages written in one transaction (embedded) or one pipeline (Redis) at most.
pub const MAX_BATCH: usize = 512;

/// The error strings of the acks (docs/EVENTS.md).
pub mod errors {
    /// The history store could not take the message (unreachable, failing, or its queue is full),
    /// or could not be read.
    pub const HISTORY_UNAVAILABLE: &str = "history_unavailable";
}

/// How much of each room's history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Messages kept per room (the oldest go first); at least 1.
    pub max_messages: u64,
    /// Messages older than this are dropped (`None`: kept until `max_messages` pushes them out).
    pub max_age: Option<Duration>,
}

impl Retention {
    /// The oldest `ts` (ms since the epoch) still kept at `now_ms`; 0 without an age limit.
    pub fn cutoff_ms(&self, now_ms: u64) -> u64 {
        self.max_age.map_or(0, |age| now_ms.saturating_sub(age.as_millis() as u64))
    }
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// The backend cannot be reached (Redis down) or failed (disk error).
    #[error("history store unavailable: {0}")]
    Unavailable(String),
    /// [`QUEUE_CAPACITY`] messages are already waiting for the store.
    #[error("history queue full ({QUEUE_CAPACITY} messages waiting for the store)")]
    QueueFull,
    /// The backend answered something this code cannot read.
    #[error("history store: {0}")]
    Backend(String),
}

/// One page of a room's history, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Page {
    /// Each as the `message` event carries it: `{"id", "room", "user", "data", "ts"}`.
    pub messages: Vec<Value>,
    /// True when the room has messages after the last one returned.
    pub more: bool,
}

/// A store's answer, resolved off the caller's task.
pub type HistoryFuture<T> = BoxFuture<'static, Result<T, HistoryError>>;

/// Where history is kept.
pub trait HistoryStore: Send + Sync + 'static {
    /// Appends `message` to its room. Called on the sender's connection task: the store takes the
    /// message's place in the room's order before returning (so messages keep the order of these
    /// calls) and must not block; the future resolves once the message is stored.
    fn append(&self, message: &AcceptedMessage) -> HistoryFuture<()>;

    /// Up to `limit` messages of `room` after the message `since` (from the oldest kept when `since`
    /// is `None`, or names a message the store does not hold: trimmed, or never there), oldest
    /// first; `more` when there are others after them. Messages past retention are never returned.
    fn read(&self, room: &str, since: Option<uuid::Uuid>, limit: usize) -> HistoryFuture<Page>;

    /// `embedded` or `redis`, for logs and metrics.
    fn kind(&self) -> &'static str;
}

/// The current time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// The history of this node: a store and its counters.
pub struct History {
    store: Arc<dyn HistoryStore>,
    appends: IntCounterVec,
    reads: IntCounterVec,
    append_seconds: HistogramVec,
    log: Arc<LogThrottle>,
}

/// Why `History::start` failed.
#[derive(Debug, thiserror::Error)]
#[error("history: {0}")]
pub struct StartError(pub String);

impl History {
    /// The history `config` asks for: `None` when `history.enabled` is false; Redis Streams when
    /// `history.store` is `redis`, or `auto` with `redis.url` or `redis.cluster_nodes` set; else the
    /// embedded store under `store.dir`.
    pub fn start(config: &Config) -> Result<Option<Arc<History>>, StartError> {
        if !config.history.enabled {
            return Ok(None);
        }
        let retention = config.history.retention();
        let redis = match config.history.store.as_str() {
            "embedded" => None,
            _ => config.redis.target(),
        };
        let store: Arc<dyn HistoryStore> = match redis {
            Some(target) => redis::RedisHistory::start(target, &config.redis.key_prefix, retention),
            None => {
                let dir = std::path::Path::new(&config.store.dir);
                embedded::EmbeddedHistory::open(dir, retention).map_err(|e| StartError(e.to_string()))?
            }
        };
        tracing::info!(
            store = store.kind(),
            max_messages = retention.max_messages,
            max_age_seconds = retention.max_age.map(|a| a.as_secs()),
            "message history on"
        );
        Ok(Some(History::new(store)))
    }

    /// History kept in `store`.
    pub fn new(store: Arc<dyn HistoryStore>) -> Arc<History> {
        let appends = IntCounterVec::new(
            Opts::new(
                "switchyard_history_appends_total",
                "Messages given to the history store, by result: ok, error (store failed: message refused), \
                 queue_full (message refused).",
            ),
            &["result"],
        )
        .expect("valid metric");
        let reads = IntCounterVec::new(
            Opts::new("switchyard_history_reads_total", "History reads (event and API), by result: ok, error."),
            &["result"],
        )
        .expect("valid metric");
        let append_seconds = HistogramVec::new(
            HistogramOpts::new(
                "switchyard_history_append_seconds",
                "Time from a message's append to the store holding it.",
            )
            .buckets(vec![0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]),
            &["store"],
        )
        .expect("valid metric");
        Arc::new(History { store, appends, reads, append_seconds, log: Arc::new(LogThrottle::default()) })
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn HistoryStore> {
        &self.store
    }

    /// Registers `switchyard_history_appends_total`, `switchyard_history_reads_total` and
    /// `switchyard_history_append_seconds`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.appends.clone()))?;
        registry.register(Box::new(self.reads.clone()))?;
        registry.register(Box::new(self.append_seconds.clone()))
    }

    /// Reads a page of `room` (see [`HistoryStore::read`]), counting and logging failures.
    pub async fn read(&self, room: &str, since: Option<uuid::Uuid>, limit: usize) -> Result<Page, HistoryError> {
        let result = self.store.read(room, since, limit.clamp(1, MAX_LIMIT)).await;
        match &result {
            Ok(_) => self.reads.with_label_values(&["ok"]).inc(),
            Err(e) => {
                self.reads.with_label_values(&["error"]).inc();
                if self.log.ready() {
                    tracing::warn!(error = %e, room, "history: read failed");
                }
            }
        }
        result
    }
}

impl MessageSink for History {
    fn accept(&self, message: &AcceptedMessage) -> Hold {
        let started = std::time::Instant::now();
        let stored = self.store.append(message);
        let appends = self.appends.clone();
        let timer = self.append_seconds.with_label_values(&[self.store.kind()]);
        let log = self.log.clone();
        let (id, room) = (message.id.clone(), message.room.clone());
        Hold::Pending(Box::pin(async move {
            match stored.await {
                Ok(()) => {
                    appends.with_label_values(&["ok"]).inc();
                    timer.observe(started.elapsed().as_secs_f64());
                    // Stored is all history promises: the sender's ack waits for nothing more.
                    Ok(None)
                }
                Err(e) => {
                    let result = if e == HistoryError::QueueFull { "queue_full" } else { "error" };
                    appends.with_label_values(&[result]).inc();
                    // Throttled: while the store is away every message fails the same way.
                    if log.ready() {
                        tracing::warn!(error = %e, id, room, "history: message refused (the store does not hold it)");
                    } else {
                        tracing::debug!(error = %e, id, room, "history: message refused");
                    }
                    Err(Refused { error: errors::HISTORY_UNAVAILABLE })
                }
            }
        }))
    }
}

/// The options of a read, from the `history` event's second argument or the API's query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadOptions {
    pub since: Option<uuid::Uuid>,
    pub limit: usize,
}

impl ReadOptions {
    /// Parses `since` (a message id) and `limit` (1 to [`MAX_LIMIT`], default [`DEFAULT_LIMIT`]).
    pub fn parse(since: Option<&str>, limit: Option<u64>) -> Result<ReadOptions, &'static str> {
        let since = match since {
            None => None,
            // An empty `since` is no id either (the OpenAPI schema says `format: uuid`).
            Some(id) => Some(uuid::Uuid::try_parse(id).map_err(|_| "since must be a message id (a UUID)")?),
        };
        let limit = match limit {
            None => DEFAULT_LIMIT,
            Some(n) if (1..=MAX_LIMIT as u64).contains(&n) => n as usize,
            Some(_) => return Err("limit must be between 1 and 1000"),
        };
        Ok(ReadOptions { since, limit })
    }

    /// From the `history` event's options object (absent or `null`: the defaults).
    pub fn from_value(value: Option<&Value>) -> Result<ReadOptions, &'static str> {
        let Some(value) = value.filter(|v| !v.is_null()) else { return ReadOptions::parse(None, None) };
        let Value::Object(map) = value else { return Err("options must be an object") };
        let since = match map.get("since") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s.as_str()),
            Some(_) => return Err("since must be a string"),
        };
        let limit = match map.get("limit") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().ok_or("limit must be a whole number")?),
        };
        ReadOptions::parse(since, limit)
    }
}

/// The stored form of a message: its `ts` and id in front (read by trimming without parsing), then
/// the JSON the `message` event carries.
pub(crate) fn encode_record(message: &AcceptedMessage) -> Result<(u128, Vec<u8>), HistoryError> {
    let id = uuid::Uuid::try_parse(&message.id)
        .map_err(|_| HistoryError::Backend(format!("message id {:?} is not a UUID", message.id)))?
        .as_u128();
    let mut bytes = Vec::with_capacity(24 + message.json.len());
    bytes.extend_from_slice(&message.ts.to_be_bytes());
    bytes.extend_from_slice(&id.to_be_bytes());
    bytes.extend_from_slice(&message.json);
    Ok((id, bytes))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A message for `room` sent at `ts`.
    pub fn message(room: &str, text: &str, ts: u64) -> AcceptedMessage {
        AcceptedMessage::new(
            uuid::Uuid::now_v7().to_string(),
            room.into(),
            "alice".into(),
            serde_json::json!({ "text": text }),
            ts,
        )
    }

    pub fn texts(page: &Page) -> Vec<String> {
        page.messages.iter().map(|m| m["data"]["text"].as_str().unwrap_or_default().to_string()).collect()
    }

    #[test]
    fn read_options_are_checked() {
        assert_eq!(ReadOptions::from_value(None), Ok(ReadOptions { since: None, limit: DEFAULT_LIMIT }));
        let id = uuid::Uuid::now_v7();
        let options = serde_json::json!({"since": id.to_string(), "limit": 3});
        assert_eq!(ReadOptions::from_value(Some(&options)), Ok(ReadOptions { since: Some(id), limit: 3 }));
        for bad in [
            serde_json::json!({"since": "nope"}),
            serde_json::json!({"since": ""}),
            serde_json::json!({"since": 5}),
            serde_json::json!({"limit": 0}),
            serde_json::json!({"limit": 1001}),
            serde_json::json!({"limit": -1}),
            serde_json::json!({"limit": "5"}),
            serde_json::json!([1]),
        ] {
            assert!(ReadOptions::from_value(Some(&bad)).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn retention_cutoff() {
        let r = Retention { max_messages: 10, max_age: Some(Duration::from_secs(2)) };
        assert_eq!(r.cutoff_ms(10_000), 8_000);
        assert_eq!(Retention { max_messages: 10, max_age: None }.cutoff_ms(10_000), 0);
    }
}
