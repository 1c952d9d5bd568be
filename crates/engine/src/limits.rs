//! Admission limits per client: open TCP connections per IP (in the accept loop, see
//! [`Serve::connection_limit`](crate::serve::Serve::connection_limit)), new Engine.IO sessions per
//! second per IP (in the engine, see [`EngineConfig::handshakes_per_second_per_ip`](crate::EngineConfig)),
//! and the [`Rate`] (a token bucket kept as one `u64`) both use and the application reuses for events.
//!
//! Clients are keyed by [`client_key`]: an IPv4 address, or the /64 prefix of an IPv6 address (one
//! host usually owns a whole /64, so per-address limits would not hold there).
//!
//! Every per-IP table is bounded: the connection table holds only IPs with open connections, and the
//! handshake table holds at most a fixed number of buckets, dropping full (idle) buckets first and an
//! arbitrary one when none is idle, so an address scan cannot grow memory.

use parking_lot::Mutex;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// Nanoseconds on a monotonic clock shared by the process (its origin is the first call).
#[inline]
pub fn monotonic_nanos() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    ORIGIN.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The key of a client address: IPv4 (IPv4-mapped IPv6 included) as is, IPv6 by its /64 prefix.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
}

/// A token bucket of `burst` tokens refilled at `per_second`, in the "virtual scheduling" form (GCRA):
/// the whole state of one bucket is a `u64` (the time at which it will be full again, in the
/// nanoseconds of the caller's clock; `0` for a new, full bucket), and a check is a few arithmetic ops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    /// Nanoseconds per token.
    interval: u64,
    /// Nanoseconds a full bucket represents (`burst * interval`).
    capacity: u64,
}

impl Rate {
    /// `per_second` tokens per second (at least 1), at most `burst` at once (at least 1).
    pub fn new(per_second: u32, burst: u32) -> Rate {
        let interval = (1_000_000_000 / u64::from(per_second.max(1))).max(1);
        Rate { interval, capacity: interval * u64::from(burst.max(1)) }
    }

    /// Takes a token from the bucket `state` at time `now` (nanoseconds); false when it is empty
    /// (the state is then unchanged).
    #[inline]
    pub fn allow(&self, state: &mut u64, now: u64) -> bool {
        let next = (*state).max(now) + self.interval;
        if next - now > self.capacity {
            return false;
        }
        *state = next;
        true
    }

    /// True when the bucket `state` is full at `now` (forgetting it changes nothing).
    #[inline]
    pub fn is_full(&self, state: u64, now: u64) -> bool {
        state <= now
    }
}

/// Logs a refusal at info at most once per interval per kind (the rest at debug), so an attack cannot
/// flood the logs.
#[derive(Debug, Default)]
pub struct LogThrottle {
    next: AtomicU64,
}

impl LogThrottle {
    const INTERVAL: u64 = 10_000_000_000;

    /// True at most once per 10 seconds.
    pub fn ready(&self) -> bool {
        let now = monotonic_nanos();
        let next = self.next.load(Ordering::Relaxed);
        now >= next
            && self.next.compare_exchange(next, now + Self::INTERVAL, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

/// New sessions per second per client IP: one [`Rate`] per IP in a bounded table.
#[derive(Debug)]
pub struct HandshakeLimiter {
    rate: Rate,
    max_entries: usize,
    table: Mutex<RateTable>,
    log: LogThrottle,
}

#[derive(Debug, Default)]
struct RateTable {
    buckets: HashMap<IpAddr, u64>,
    /// When idle buckets were last swept out (a full table sweeps at most once per second).
    last_sweep: u64,
}

impl HandshakeLimiter {
    /// Buckets kept at most by default (some 3 MB at worst).
    pub const DEFAULT_MAX_ENTRIES: usize = 65_536;

    /// `per_second` handshakes per second per IP, with a burst of as many.
    pub fn new(per_second: u32, max_entries: usize) -> Self {
        HandshakeLimiter {
            rate: Rate::new(per_second, per_second),
            max_entries: max_entries.max(1),
            table: Mutex::default(),
            log: LogThrottle::default(),
        }
    }

    /// Takes a handshake token for `ip` at `now` (nanoseconds of [`monotonic_nanos`] or a test clock).
    pub fn check(&self, ip: IpAddr, now: u64) -> bool {
        let key = client_key(ip);
        let mut table = self.table.lock();
        if table.buckets.len() >= self.max_entries && !table.buckets.contains_key(&key) {
            table.make_room(&self.rate, now, self.max_entries);
        }
        let state = table.buckets.entry(key).or_insert(0);
        self.rate.allow(state, now)
    }

    /// Buckets currently kept.
    pub fn len(&self) -> usize {
        self.table.lock().buckets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub(crate) fn log_ready(&self) -> bool {
        self.log.ready()
    }
}

impl RateTable {
    fn make_room(&mut self, rate: &Rate, now: u64, max_entries: usize) {
        if now.saturating_sub(self.last_sweep) >= 1_000_000_000 || self.last_sweep == 0 {
            self.last_sweep = now.max(1);
            self.buckets.retain(|_, state| !rate.is_full(*state, now));
        }
        if self.buckets.len() >= max_entries {
            // Every bucket is in use: forget one (its owner gets a full bucket back, as a new IP would).
            if let Some(key) = self.buckets.keys().next().copied() {
                self.buckets.remove(&key);
            }
        }
    }
}

/// Open TCP connections per client IP, counted from accept to the end of the connection (including
/// the life of a WebSocket upgraded from it). Holds only IPs with open connections.
#[derive(Debug)]
pub struct ConnectionLimiter {
    max_per_ip: u32,
    open: Mutex<HashMap<IpAddr, u32>>,
    refused: AtomicU64,
    log: LogThrottle,
}

impl ConnectionLimiter {
    pub fn new(max_per_ip: u32) -> Arc<Self> {
        Arc::new(ConnectionLimiter {
            max_per_ip: max_per_ip.max(1),
            open: Mutex::default(),
            refused: AtomicU64::new(0),
            log: LogThrottle::default(),
        })
    }

    /// Counts one more connection from `ip`, or refuses it (counted in [`ConnectionLimiter::refused`]).
    pub fn try_acquire(self: &Arc<Self>, ip: IpAddr) -> Option<ConnectionGuard> {
        let key = client_key(ip);
        {
            let mut open = self.open.lock();
            let count = open.entry(key).or_insert(0);
            if *count >= self.max_per_ip {
                drop(open);
                self.refused.fetch_add(1, Ordering::Relaxed);
                if self.log.ready() {
                    tracing::info!(ip = %ip, limit = self.max_per_ip, "connection refused: too many connections from this IP (further refusals for 10 s at debug)");
                } else {
                    tracing::debug!(ip = %ip, limit = self.max_per_ip, "connection refused: too many connections from this IP");
                }
                return None;
            }
            *count += 1;
        }
        Some(ConnectionGuard(Arc::new(GuardInner { limiter: self.clone(), key })))
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// Open connections from `ip` (by its [`client_key`]).
    pub fn open_from(&self, ip: IpAddr) -> u32 {
        self.open.lock().get(&client_key(ip)).copied().unwrap_or(0)
    }

    /// IPs with open connections.
    pub fn tracked_ips(&self) -> usize {
        self.open.lock().len()
    }
}

/// One counted connection; the count drops when the last clone does. The serve loop keeps one for the
/// HTTP connection and puts one in every request's extensions, so a WebSocket upgraded from the
/// connection keeps it for its own life.
#[derive(Debug, Clone)]
pub struct ConnectionGuard(#[allow(dead_code)] Arc<GuardInner>);

#[derive(Debug)]
struct GuardInner {
    limiter: Arc<ConnectionLimiter>,
    key: IpAddr,
}

impl Drop for GuardInner {
    fn drop(&mut self) {
        let mut open = self.limiter.open.lock();
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The whole answer to a connection refused at accept.
pub(crate) const TOO_MANY_CONNECTIONS: &[u8] = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: text/plain\r\n\
content-length: 38\r\nretry-after: 1\r\nconnection: close\r\n\r\nToo many connections from this address";

/// Answers a refused connection with 429 and closes it, reading what the client sent for a short
/// while so that closing does not reset the connection before the client reads the answer.
pub(crate) async fn refuse<IO>(mut io: IO)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_millis(500), async {
        io.write_all(TOO_MANY_CONNECTIONS).await?;
        io.shutdown().await?;
        let mut sink = [0u8; 1024];
        while io.read(&mut sink).await? > 0 {}
        Ok::<(), std::io::Error>(())
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn rate_allows_a_burst_then_the_sustained_rate() {
        let rate = Rate::new(10, 3);
        let mut state = 0;
        let t0 = 5 * S;
        assert!(rate.allow(&mut state, t0));
        assert!(rate.allow(&mut state, t0));
        assert!(rate.allow(&mut state, t0));
        assert!(!rate.allow(&mut state, t0), "burst of 3");
        assert!(!rate.allow(&mut state, t0 + S / 20), "half a token later");
        assert!(rate.allow(&mut state, t0 + S / 10), "one token per 100 ms");
        assert!(!rate.allow(&mut state, t0 + S / 10));
        assert!(!rate.is_full(state, t0 + S / 10));
        assert!(rate.is_full(state, t0 + S), "refilled after a second");
        for _ in 0..3 {
            assert!(rate.allow(&mut state, t0 + S));
        }
        assert!(!rate.allow(&mut state, t0 + S));
        // Sustained: exactly 10 per second over 10 seconds, after the burst.
        let mut allowed = 0;
        for ms in 0..10_000u64 {
            if rate.allow(&mut state, t0 + S + ms * 1_000_000) {
                allowed += 1;
            }
        }
        assert!((99..=101).contains(&allowed), "{allowed}");
    }

    #[test]
    fn rate_at_time_zero_and_with_zero_settings() {
        let rate = Rate::new(0, 0);
        let mut state = 0;
        assert!(rate.allow(&mut state, 0));
        assert!(!rate.allow(&mut state, 0));
        assert!(rate.allow(&mut state, S));
    }

    #[test]
    fn handshake_limiter_refills_per_ip() {
        let limiter = HandshakeLimiter::new(2, 100);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let t = 3 * S;
        assert!(limiter.check(a, t));
        assert!(limiter.check(a, t));
        assert!(!limiter.check(a, t));
        assert!(limiter.check(b, t), "another IP has its own bucket");
        assert!(limiter.check(a, t + S / 2));
        assert!(!limiter.check(a, t + S / 2));
    }

    #[test]
    fn handshake_table_stays_bounded_under_an_address_scan() {
        let limiter = HandshakeLimiter::new(5, 64);
        let mut now = 10 * S;
        for i in 0..10_000u32 {
            let ip = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            assert!(limiter.check(ip, now), "a new IP gets a full bucket");
            assert!(limiter.len() <= 64, "{} buckets", limiter.len());
            now += S / 1000;
        }
        // A busy IP keeps being limited while the scan goes on, unless evicted; idle buckets go first.
        let busy: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            assert!(limiter.check(busy, now));
        }
        assert!(!limiter.check(busy, now));
        now += 2 * S;
        let ip = IpAddr::from(std::net::Ipv4Addr::new(198, 51, 100, 1));
        assert!(limiter.check(ip, now));
        assert!(limiter.len() <= 64);
    }

    #[test]
    fn ipv6_is_keyed_by_its_64_prefix() {
        let a: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.1.2.3".parse().unwrap();
        assert_eq!(client_key(mapped), "10.1.2.3".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn refusal_is_a_complete_response() {
        let text = std::str::from_utf8(TOO_MANY_CONNECTIONS).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 429 Too Many Requests\r\n"));
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())), "{head}");
    }

    #[test]
    fn connection_limiter_counts_for_the_life_of_every_clone() {
        let limiter = ConnectionLimiter::new(2);
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let first = limiter.try_acquire(ip).unwrap();
        let second = limiter.try_acquire(ip).unwrap();
        assert!(limiter.try_acquire(ip).is_none());
        assert_eq!(limiter.refused(), 1);
        assert!(limiter.try_acquire("10.0.0.2".parse().unwrap()).is_some(), "other IPs unaffected");
        let clone = second.clone();
        drop(second);
        assert!(limiter.try_acquire(ip).is_none(), "a clone keeps the connection counted");
        drop(clone);
        assert_eq!(limiter.open_from(ip), 1);
        let third = limiter.try_acquire(ip).unwrap();
        drop((first, third));
        assert_eq!(limiter.tracked_ips(), 0, "no entry for IPs without connections");
    }
}
