//! Which consumed ids were emitted already, for `kafka.dedupe_window_ms`: a record Kafka delivers
//! again (a consumer restarted or moved to another node before committing) is not emitted twice.
//! In Redis (`SET <prefix>:kafka-seen:<id> 1 NX PX <window>`) when the server joined a cluster, so
//! the window holds across nodes; in memory otherwise.

use futures_util::future::BoxFuture;
use futures_util::FutureExt;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Ids kept in memory at most; past it the oldest are forgotten early (documented in docs/KAFKA.md).
pub const MEMORY_MAX_IDS: usize = 1_000_000;

/// Remembers emitted ids.
pub trait Dedupe: Send + Sync + 'static {
    /// `Ok(true)` the first time `id` is seen within the window (emit it), `Ok(false)` after.
    /// `Err`: the store cannot be reached.
    fn first_time(&self, id: &str) -> BoxFuture<'static, Result<bool, String>>;
}

/// The ids seen and when, and the same in arrival order (for expiry).
type Seen = (HashMap<String, Instant>, VecDeque<(Instant, String)>);

/// The in-memory window.
pub struct MemoryDedupe {
    window: Duration,
    inner: Mutex<Seen>,
}

impl MemoryDedupe {
    pub fn new(window: Duration) -> Self {
        MemoryDedupe { window, inner: Mutex::new((HashMap::new(), VecDeque::new())) }
    }

    /// Records `id` at `now`; whether it was new.
    pub fn check_at(&self, id: &str, now: Instant) -> bool {
        let mut guard = self.inner.lock();
        let (seen, order) = &mut *guard;
        while let Some((at, _)) = order.front() {
            if now.duration_since(*at) < self.window && order.len() < MEMORY_MAX_IDS {
                break;
            }
            let (at, old) = order.pop_front().expect("non-empty");
            if seen.get(&old) == Some(&at) {
                seen.remove(&old);
            }
        }
        if seen.contains_key(id) {
            return false;
        }
        seen.insert(id.to_string(), now);
        order.push_back((now, id.to_string()));
        true
    }
}

impl Dedupe for MemoryDedupe {
    fn first_time(&self, id: &str) -> BoxFuture<'static, Result<bool, String>> {
        futures_util::future::ready(Ok(self.check_at(id, Instant::now()))).boxed()
    }
}

/// The window in Redis, shared by the cluster.
pub struct RedisDedupe {
    key_prefix: String,
    window_ms: u64,
    link: switchyard_redis::RedisLink,
}

const TIMEOUT: Duration = Duration::from_secs(3);

impl RedisDedupe {
    pub fn new(target: switchyard_redis::RedisTarget, key_prefix: &str, window: Duration) -> Self {
        let timeouts = switchyard_redis::LinkTimeouts {
            connect: TIMEOUT,
            response: TIMEOUT,
            ..switchyard_redis::LinkTimeouts::default()
        };
        RedisDedupe {
            key_prefix: key_prefix.to_string(),
            window_ms: window.as_millis().max(1) as u64,
            link: switchyard_redis::RedisLink::new(target, timeouts),
        }
    }

    /// The key of one id.
    pub fn key(&self, id: &str) -> String {
        format!("{}:kafka-seen:{}", self.key_prefix, id)
    }

    async fn set_nx(&self, key: String) -> Result<bool, switchyard_redis::LinkError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(&key).arg(1).arg("NX").arg("PX").arg(self.window_ms);
        Ok(self.link.query::<Option<String>>(&cmd).await?.is_some())
    }
}

impl Dedupe for std::sync::Arc<RedisDedupe> {
    fn first_time(&self, id: &str) -> BoxFuture<'static, Result<bool, String>> {
        let this = self.clone();
        let key = this.key(id);
        async move { this.set_nx(key).await.map_err(|e| e.to_string()) }.boxed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_id_is_new_once_per_window() {
        let dedupe = MemoryDedupe::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert!(dedupe.check_at("a", t0));
        assert!(!dedupe.check_at("a", t0 + Duration::from_secs(5)));
        assert!(dedupe.check_at("b", t0 + Duration::from_secs(6)));
        // Past the window "a" is forgotten; "b" is still within its own.
        assert!(dedupe.check_at("a", t0 + Duration::from_secs(11)));
        assert!(!dedupe.check_at("b", t0 + Duration::from_secs(12)));
    }
}
