//! Connection state recovery (Socket.IO >= 4.6): sessions of sockets that dropped for a network reason
//! are kept for `max_disconnection_duration`, every stored broadcast carries an offset as its last
//! argument, and a client that reconnects with `{pid, offset}` gets its id, rooms, data and every packet
//! it missed.
//!
//! This is the single-server store the default adapter methods use; a cluster adapter keeps sessions
//! and packets where every node can read them.

use crate::adapter::{BroadcastOptions, Room};
use crate::payload::Payload;
use parking_lot::Mutex;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::time::Instant;

/// Recovery options (Node's `connectionStateRecovery`).
#[derive(Debug, Clone)]
pub struct RecoveryConfig {
    /// How long a dropped session and the packets it may miss are kept.
    pub max_disconnection_duration: Duration,
    /// A recovered socket skips the namespace middleware.
    pub skip_middlewares: bool,
    /// Packets kept per namespace at most; older ones are forgotten first (their offsets then no
    /// longer recover, and the client gets a new session, as in Node when an offset is too old).
    pub max_stored_packets: usize,
}

impl Default for RecoveryConfig {
    fn default() -> Self {
        Self {
            max_disconnection_duration: Duration::from_secs(120),
            skip_middlewares: true,
            max_stored_packets: 100_000,
        }
    }
}

/// What is kept of a socket that dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionToPersist {
    pub sid: String,
    pub pid: String,
    pub rooms: Vec<Room>,
    pub data: Value,
}

/// A session found again, with the events it missed (`[event, ...args, offset]` arrays).
#[derive(Debug, Clone, PartialEq)]
pub struct RestoredSession {
    pub session: SessionToPersist,
    pub missed: Vec<(String, Payload)>,
}

struct StoredPacket {
    offset: u64,
    opts: BroadcastOptions,
    event: String,
    payload: Payload,
    at: Instant,
}

#[derive(Default)]
struct Store {
    sessions: HashMap<String, (SessionToPersist, Instant)>,
    /// `(persisted at, pid)` in persist order, which is also expiry order (one duration for all), so
    /// pruning looks at the oldest entries only: O(1) amortized per persist instead of a scan of every
    /// session. An entry whose session was restored, or persisted again later, is skipped when reached.
    expiry: VecDeque<(Instant, String)>,
    /// Ordered by offset (offsets only grow).
    packets: VecDeque<StoredPacket>,
}

/// The in-memory session and packet store of one namespace.
pub struct RecoveryStore {
    config: RecoveryConfig,
    /// Distinguishes this process's offsets from another's.
    epoch: u64,
    next_offset: AtomicU64,
    store: Mutex<Store>,
}

impl RecoveryStore {
    pub fn new(config: RecoveryConfig) -> Self {
        RecoveryStore {
            config,
            epoch: rand::random::<u32>() as u64,
            next_offset: AtomicU64::new(1),
            store: Mutex::default(),
        }
    }

    pub fn config(&self) -> &RecoveryConfig {
        &self.config
    }

    fn format_offset(&self, offset: u64) -> String {
        format!("{:x}-{:x}", self.epoch, offset)
    }

    fn parse_offset(&self, offset: &str) -> Option<u64> {
        let (epoch, n) = offset.split_once('-')?;
        (u64::from_str_radix(epoch, 16).ok()? == self.epoch).then_some(())?;
        u64::from_str_radix(n, 16).ok()
    }

    /// Stores a broadcast and returns its payload with the offset appended.
    pub fn record(&self, event: &str, payload: &Payload, opts: &BroadcastOptions) -> Payload {
        let offset = self.next_offset.fetch_add(1, Ordering::Relaxed);
        let mut stored = payload.clone();
        stored.args.push(Value::String(self.format_offset(offset)));
        let now = Instant::now();
        let mut store = self.store.lock();
        Self::prune(&mut store, now, &self.config);
        if store.packets.len() >= self.config.max_stored_packets {
            store.packets.pop_front();
        }
        store.packets.push_back(StoredPacket {
            offset,
            opts: opts.clone(),
            event: event.to_string(),
            payload: stored.clone(),
            at: now,
        });
        stored
    }

    fn prune(store: &mut Store, now: Instant, config: &RecoveryConfig) {
        let max = config.max_disconnection_duration;
        while store.packets.front().is_some_and(|p| now.duration_since(p.at) > max) {
            store.packets.pop_front();
        }
    }

    /// Keeps `session` for `max_disconnection_duration`, and forgets sessions older than that.
    pub fn persist(&self, session: SessionToPersist) {
        let now = Instant::now();
        let mut store = self.store.lock();
        let max = self.config.max_disconnection_duration;
        while let Some((at, _)) = store.expiry.front() {
            if now.duration_since(*at) <= max {
                break;
            }
            let (at, pid) = store.expiry.pop_front().expect("front exists");
            // Only the entry of this persist: the same pid may have been restored and persisted again.
            if store.sessions.get(&pid).is_some_and(|(_, persisted)| *persisted == at) {
                store.sessions.remove(&pid);
            }
        }
        store.expiry.push_back((now, session.pid.clone()));
        store.sessions.insert(session.pid.clone(), (session, now));
    }

    /// Number of sessions kept (restorable or not yet pruned).
    pub fn session_count(&self) -> usize {
        self.store.lock().sessions.len()
    }

    /// The session `pid` and the packets after `offset` it should have received, if both are still known.
    pub fn restore(&self, pid: &str, offset: &str) -> Option<RestoredSession> {
        let now = Instant::now();
        let mut store = self.store.lock();
        let (session, at) = store.sessions.remove(pid)?;
        if now.duration_since(at) > self.config.max_disconnection_duration {
            return None;
        }
        let offset = self.parse_offset(offset)?;
        let first = store.packets.front().map(|p| p.offset)?;
        if offset + 1 < first {
            // Packets after `offset` were forgotten: recovery would lose some.
            return None;
        }
        // Packets are ordered by offset: find the first one after `offset` by bisection.
        let start = store.packets.partition_point(|p| p.offset <= offset);
        let missed = store
            .packets
            .range(start..)
            .filter(|p| should_include(&session.rooms, &session.sid, &p.opts))
            .map(|p| (p.event.clone(), p.payload.clone()))
            .collect();
        Some(RestoredSession { session, missed })
    }
}

/// Whether a broadcast with `opts` reaches a socket with id `sid` in `rooms` (its own room aside).
pub fn should_include(rooms: &[Room], sid: &str, opts: &BroadcastOptions) -> bool {
    let in_room = |room: &Room| &**room == sid || rooms.contains(room);
    (opts.rooms.is_empty() || opts.rooms.iter().any(in_room)) && !opts.except.iter().any(in_room)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn opts(rooms: &[&str], except: &[&str]) -> BroadcastOptions {
        BroadcastOptions {
            rooms: rooms.iter().map(|r| Room::from(*r)).collect(),
            except: except.iter().map(|r| Room::from(*r)).collect(),
            ..Default::default()
        }
    }

    fn session(pid: &str) -> SessionToPersist {
        SessionToPersist { sid: "s1".into(), pid: pid.into(), rooms: vec![Room::from("a")], data: json!({"k": 1}) }
    }

    #[tokio::test]
    async fn restores_missed_packets_for_the_sessions_rooms() {
        let store = RecoveryStore::new(RecoveryConfig::default());
        let first = store.record("ev", &Payload::from(json!(1)), &opts(&[], &[]));
        let seen_offset = first.args.last().and_then(Value::as_str).unwrap().to_string();
        store.persist(session("p1"));
        store.record("ev", &Payload::from(json!(2)), &opts(&["a"], &[]));
        store.record("ev", &Payload::from(json!(3)), &opts(&["b"], &[]));
        store.record("ev", &Payload::from(json!(4)), &opts(&[], &["a"]));
        store.record("ev", &Payload::from(json!(5)), &opts(&["s1"], &[]));
        let restored = store.restore("p1", &seen_offset).expect("restored");
        let got: Vec<Value> = restored.missed.iter().map(|(_, p)| p.args[0].clone()).collect();
        assert_eq!(got, vec![json!(2), json!(5)]);
        assert_eq!(restored.session.data, json!({"k": 1}));
        // A session is restored once.
        assert!(store.restore("p1", &seen_offset).is_none());
    }

    #[tokio::test]
    async fn unknown_or_foreign_offsets_do_not_restore() {
        let store = RecoveryStore::new(RecoveryConfig::default());
        store.persist(session("p1"));
        assert!(store.restore("p1", "nonsense").is_none());
        store.persist(session("p2"));
        assert!(store.restore("p2", "0-1").is_none());
        assert!(store.restore("missing", "0-1").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn expired_sessions_are_forgotten_without_a_scan() {
        let config = RecoveryConfig { max_disconnection_duration: Duration::from_secs(10), ..Default::default() };
        let store = RecoveryStore::new(config);
        let first = store.record("ev", &Payload::from(json!(1)), &opts(&[], &[]));
        let offset = first.args.last().and_then(Value::as_str).unwrap().to_string();
        store.persist(session("old"));
        store.persist(session("again"));
        tokio::time::advance(Duration::from_secs(6)).await;
        // Restored and persisted again: the first entry's expiry must not remove the second.
        assert!(store.restore("again", &offset).is_some());
        store.persist(session("again"));
        tokio::time::advance(Duration::from_secs(5)).await;
        store.persist(session("new"));
        assert_eq!(store.session_count(), 2, "only `old` expired");
        assert!(store.restore("old", &offset).is_none());
        assert!(store.restore("again", &offset).is_some());
        assert!(store.restore("new", &offset).is_some());
    }

    #[tokio::test]
    async fn forgotten_packets_refuse_recovery() {
        let store = RecoveryStore::new(RecoveryConfig { max_stored_packets: 2, ..Default::default() });
        let first = store.record("ev", &Payload::from(json!(1)), &opts(&[], &[]));
        let offset = first.args.last().and_then(Value::as_str).unwrap().to_string();
        store.persist(session("p1"));
        for i in 2..6 {
            store.record("ev", &Payload::from(json!(i)), &opts(&[], &[]));
        }
        assert!(store.restore("p1", &offset).is_none());
    }
}
