//! Counters of a node's Redis traffic, for tests and for the application's metrics (which exports
//! them as `switchyard_redis_*` through a Prometheus collector reading [`Stats::snapshot`]).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Default)]
pub struct Stats {
    /// Messages published (broadcasts, requests, responses).
    pub published: AtomicU64,
    /// Messages that never reached Redis: queue full, Redis unreachable, connection lost.
    pub dropped: AtomicU64,
    /// Messages received from other nodes and handled.
    pub received: AtomicU64,
    /// Messages received that could not be decoded.
    pub malformed: AtomicU64,
    /// Cluster requests (fetch-sockets, rooms, server-side emit acks) that timed out or failed.
    pub request_failures: AtomicU64,
    /// Successful (re)connections of either link.
    pub connects: AtomicU64,
    pub publisher_connected: AtomicBool,
    pub subscriber_connected: AtomicBool,
    /// Connection state recovery: broadcasts stored in the namespace's stream (offset = stream id).
    pub recorded: AtomicU64,
    /// Broadcasts delivered locally without an offset because Redis could not store them at once
    /// (kept to be published again once Redis answers, see [`Stats::republished`]).
    pub unrecorded: AtomicU64,
    /// Unrecorded broadcasts stored (or found stored) in the stream on a later attempt, so the other
    /// nodes got them.
    pub republished: AtomicU64,
    /// Unrecorded broadcasts given up without being published again: too many kept, older than the
    /// recovery window, or too far behind the node's record numbers (logged at most once a second).
    pub republish_dropped: AtomicU64,
    /// Sessions restored from Redis.
    pub restored: AtomicU64,
    /// Recovery attempts refused: unknown or expired session, offset too old or invalid, Redis error.
    pub restore_refused: AtomicU64,
    /// Session writes (live, persisted, discarded) that failed.
    pub session_write_failures: AtomicU64,
    /// Seconds since the epoch of the last drop warning, to log at most once a second.
    last_drop_log: AtomicU64,
    last_unrecorded_log: AtomicU64,
    last_republish_log: AtomicU64,
    last_republish_dropped_log: AtomicU64,
}

/// A copy of the counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub published: u64,
    pub dropped: u64,
    pub received: u64,
    pub malformed: u64,
    pub request_failures: u64,
    pub connects: u64,
    pub publisher_connected: bool,
    pub subscriber_connected: bool,
    pub recorded: u64,
    pub unrecorded: u64,
    pub republished: u64,
    pub republish_dropped: u64,
    pub restored: u64,
    pub restore_refused: u64,
    pub session_write_failures: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            published: self.published.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            malformed: self.malformed.load(Ordering::Relaxed),
            request_failures: self.request_failures.load(Ordering::Relaxed),
            connects: self.connects.load(Ordering::Relaxed),
            publisher_connected: self.publisher_connected.load(Ordering::Relaxed),
            subscriber_connected: self.subscriber_connected.load(Ordering::Relaxed),
            recorded: self.recorded.load(Ordering::Relaxed),
            unrecorded: self.unrecorded.load(Ordering::Relaxed),
            republished: self.republished.load(Ordering::Relaxed),
            republish_dropped: self.republish_dropped.load(Ordering::Relaxed),
            restored: self.restored.load(Ordering::Relaxed),
            restore_refused: self.restore_refused.load(Ordering::Relaxed),
            session_write_failures: self.session_write_failures.load(Ordering::Relaxed),
        }
    }

    /// Counts `n` cross-node messages lost, and logs it (at most once a second, with the total).
    pub(crate) fn dropped(&self, reason: &str, n: u64) {
        let total = self.dropped.fetch_add(n, Ordering::Relaxed) + n;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let last = self.last_drop_log.load(Ordering::Relaxed);
        if now != last && self.last_drop_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
            tracing::warn!(reason, total_dropped = total, "redis adapter: cross-node message dropped");
        }
    }

    /// Counts a broadcast delivered without an offset, and logs it (at most once a second).
    pub(crate) fn unrecorded(&self, reason: &str) {
        let total = self.unrecorded.fetch_add(1, Ordering::Relaxed) + 1;
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
        let last = self.last_unrecorded_log.load(Ordering::Relaxed);
        if now != last
            && self.last_unrecorded_log.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
        {
            tracing::warn!(
                reason,
                total_unrecorded = total,
                "redis adapter: broadcast delivered without a recovery offset"
            );
        }
    }

    /// Counts `n` unrecorded broadcasts stored on a later attempt, and logs it (at most once a second).
    pub(crate) fn republished(&self, n: u64) {
        let total = self.republished.fetch_add(n, Ordering::Relaxed) + n;
        if once_a_second(&self.last_republish_log) {
            tracing::info!(total_republished = total, "redis adapter: unrecorded broadcast republished");
        }
    }

    /// Counts `n` unrecorded broadcasts given up, and logs it (at most once a second).
    pub(crate) fn republish_dropped(&self, reason: &str, n: u64) {
        let total = self.republish_dropped.fetch_add(n, Ordering::Relaxed) + n;
        if once_a_second(&self.last_republish_dropped_log) {
            tracing::warn!(
                reason,
                total_republish_dropped = total,
                "redis adapter: unrecorded broadcast not republished (other nodes' clients miss it)"
            );
        }
    }

    pub(crate) fn malformed(&self, what: &str, error: &dyn std::fmt::Display) {
        self.malformed.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(what, %error, "redis adapter: ignoring a malformed message");
    }
}

/// True at most once a second per `last` (seconds since the epoch of the last true).
fn once_a_second(last: &AtomicU64) -> bool {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default();
    let seen = last.load(Ordering::Relaxed);
    now != seen && last.compare_exchange(seen, now, Ordering::Relaxed, Ordering::Relaxed).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_copies_the_counters() {
        let stats = Stats::default();
        stats.published.store(7, Ordering::Relaxed);
        stats.dropped("test", 2);
        let s = stats.snapshot();
        assert_eq!((s.published, s.dropped, s.publisher_connected), (7, 2, false));
    }
}
