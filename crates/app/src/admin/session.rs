//! Login sessions of the admin UI: after a username/password login the UI reconnects with
//! `auth: {sessionId}` only, so the id must be known to whichever node it reaches. In memory on one
//! server; in Redis under `socket.io-admin#<id>` (Node's `RedisStore` key, value `"1"`, with an expiry)
//! when the server is in a cluster, so Node servers instrumented with that store share the sessions.

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_redis::{LinkTimeouts, RedisLink, RedisTarget};

/// Node's `RedisStore` default prefix: a key is `socket.io-admin#<session id>`.
pub const REDIS_PREFIX: &str = "socket.io-admin";

/// Why a session could not be saved or looked up.
#[derive(Debug, thiserror::Error)]
#[error("admin session store: {0}")]
pub struct StoreError(String);

/// Where login sessions live (Node's `Store`: `doesSessionExist`, `saveSession`).
pub trait SessionStore: Send + Sync + 'static {
    /// Whether `id` is a live session.
    fn exists(&self, id: &str) -> BoxFuture<'static, Result<bool, StoreError>>;
    /// Saves `id` for the store's session lifetime.
    fn save(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>>;
}

/// One server's sessions, each with its expiry; expired ones are dropped on the next save.
pub struct MemoryStore {
    ttl: Duration,
    sessions: Mutex<HashMap<String, Instant>>,
}

impl MemoryStore {
    pub fn new(ttl: Duration) -> Arc<Self> {
        Arc::new(MemoryStore { ttl, sessions: Mutex::default() })
    }
}

impl SessionStore for MemoryStore {
    fn exists(&self, id: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let live = self.sessions.lock().get(id).is_some_and(|until| *until > Instant::now());
        Box::pin(std::future::ready(Ok(live)))
    }

    fn save(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let now = Instant::now();
        let mut sessions = self.sessions.lock();
        sessions.retain(|_, until| *until > now);
        sessions.insert(id.to_string(), now + self.ttl);
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Sessions in Redis (one key per session, `SET key 1 EX ttl`), shared by every node of a cluster.
pub struct RedisStore {
    ttl_seconds: u64,
    link: RedisLink,
}

/// Connect and reply timeout of the session store's Redis link.
const TIMEOUT: Duration = Duration::from_secs(2);

impl RedisStore {
    pub fn new(target: RedisTarget, ttl: Duration) -> Arc<Self> {
        let timeouts = LinkTimeouts { connect: TIMEOUT, response: TIMEOUT, ..LinkTimeouts::default() };
        Arc::new(RedisStore { ttl_seconds: ttl.as_secs().max(1), link: RedisLink::new(target, timeouts) })
    }

    /// The key of session `id`.
    pub fn key(id: &str) -> String {
        format!("{REDIS_PREFIX}#{id}")
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Result<T, StoreError> {
        self.link.query(&cmd).await.map_err(|e| StoreError(e.to_string()))
    }
}

impl SessionStore for Arc<RedisStore> {
    fn exists(&self, id: &str) -> BoxFuture<'static, Result<bool, StoreError>> {
        let store = self.clone();
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(RedisStore::key(id));
        Box::pin(async move { store.query::<i64>(cmd).await.map(|n| n > 0) })
    }

    fn save(&self, id: &str) -> BoxFuture<'static, Result<(), StoreError>> {
        let store = self.clone();
        let mut cmd = redis::cmd("SET");
        cmd.arg(RedisStore::key(id)).arg("1").arg("EX").arg(self.ttl_seconds);
        Box::pin(async move { store.query::<()>(cmd).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_sessions_expire() {
        let store = MemoryStore::new(Duration::from_millis(30));
        assert!(!store.exists("a").await.unwrap());
        store.save("a").await.unwrap();
        assert!(store.exists("a").await.unwrap());
        assert!(!store.exists("b").await.unwrap());
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(!store.exists("a").await.unwrap());
    }

    #[test]
    fn redis_keys_are_nodes() {
        assert_eq!(RedisStore::key("0123456789abcdef"), "socket.io-admin#0123456789abcdef");
    }
}
