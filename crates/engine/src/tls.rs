//! TLS for the serve path: https and wss on the same port as plain HTTP would use.
//!
//! [`Tls`] wraps a `tokio_rustls::TlsAcceptor`; [`Serve::tls`](crate::serve::Serve::tls) turns it on.
//! The handshake runs in the connection's own task, never in the accept loop, bounded by a timeout
//! (10 s by default) so a slow or silent client cannot hold a task and a socket for long; failures are
//! logged at debug and counted in [`TlsStats`]. [`ReloadableCert`] is a certificate resolver whose
//! certificate can be swapped while serving (renewals without a restart); [`server_config`] builds a
//! rustls configuration around any resolver with the ring provider (set explicitly, never installed
//! process-wide) and ALPN `http/1.1`.

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

pub use rustls;
pub use tokio_rustls;

/// The default bound on a TLS handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The crypto provider Switchyard uses: rustls' ring provider.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A server configuration over `resolver`: ring provider, TLS 1.2 and 1.3, no client certificates,
/// ALPN `http/1.1` only (this server speaks HTTP/1.1 with upgrades).
pub fn server_config(resolver: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// A certificate resolver whose certificate can be replaced at any time: handshakes that start after
/// [`ReloadableCert::set`] present the new certificate; connections already up are not affected.
#[derive(Debug)]
pub struct ReloadableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ReloadableCert {
    pub fn new(key: Arc<CertifiedKey>) -> Arc<ReloadableCert> {
        Arc::new(ReloadableCert { current: RwLock::new(key) })
    }

    /// Presents `key` from the next handshake on.
    pub fn set(&self, key: Arc<CertifiedKey>) {
        *self.current.write() = key;
    }

    /// The certificate handshakes present now.
    pub fn get(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }
}

impl ResolvesServerCert for ReloadableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.get())
    }
}

/// Counters of the TLS listener (the metrics export them).
#[derive(Debug, Default)]
pub struct TlsStats {
    handshakes: AtomicU64,
    handshake_failures: AtomicU64,
    handshake_timeouts: AtomicU64,
}

impl TlsStats {
    /// Handshakes that completed.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.load(Ordering::Relaxed)
    }

    /// Handshakes that failed, timeouts included.
    pub fn handshake_failures(&self) -> u64 {
        self.handshake_failures.load(Ordering::Relaxed)
    }

    /// Handshakes that did not finish within the handshake timeout (also in `handshake_failures`).
    pub fn handshake_timeouts(&self) -> u64 {
        self.handshake_timeouts.load(Ordering::Relaxed)
    }
}

/// The TLS side of a listener: an acceptor, the handshake timeout and the counters.
#[derive(Clone)]
pub struct Tls {
    acceptor: TlsAcceptor,
    handshake_timeout: Duration,
    stats: Arc<TlsStats>,
}

impl Tls {
    pub fn new(config: Arc<ServerConfig>) -> Tls {
        Tls::from(TlsAcceptor::from(config))
    }

    /// How long a client may take to complete the handshake (default 10 s).
    pub fn handshake_timeout(mut self, timeout: Duration) -> Tls {
        self.handshake_timeout = timeout;
        self
    }

    /// The counters, shared with every clone.
    pub fn stats(&self) -> &Arc<TlsStats> {
        &self.stats
    }

    /// Runs the server side of the handshake on `stream`; `None` (logged and counted) if it fails or
    /// times out.
    pub(crate) async fn accept(&self, stream: TcpStream, addr: SocketAddr) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(self.handshake_timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(stream)) => {
                self.stats.handshakes.fetch_add(1, Ordering::Relaxed);
                Some(stream)
            }
            Ok(Err(e)) => {
                self.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%addr, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                self.stats.handshake_failures.fetch_add(1, Ordering::Relaxed);
                self.stats.handshake_timeouts.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%addr, timeout = ?self.handshake_timeout, "TLS handshake timed out");
                None
            }
        }
    }
}

impl From<TlsAcceptor> for Tls {
    fn from(acceptor: TlsAcceptor) -> Tls {
        Tls { acceptor, handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT, stats: Arc::default() }
    }
}
