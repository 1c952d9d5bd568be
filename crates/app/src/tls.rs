//! TLS: `tls.cert_file` and `tls.key_file` (PEM) turn on https and wss on the server's one port.
//!
//! The certificate is reloaded without a restart: the two files are checked every
//! `tls.reload_interval_ms` (their modification time, length and inode) and on SIGHUP. A reload that
//! fails (an unreadable or malformed file, a key that does not match the certificate) keeps the
//! certificate in use, logs an error naming the file and counts it; connections already up are never
//! touched, and handshakes after a successful reload present the new certificate. At startup the same
//! failures stop the server with an error naming the key (`tls.cert_file: ...`).

use crate::config::TlsConfig;
use parking_lot::Mutex;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use switchyard_engine::tls::{crypto_provider, server_config, ReloadableCert, Tls, TlsStats};
use tokio::task::JoinHandle;

/// Why a certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("tls.cert_file: {path}: {reason}")]
    Cert { path: String, reason: String },
    #[error("tls.key_file: {path}: {reason}")]
    Key { path: String, reason: String },
    #[error("tls: {0}")]
    Config(String),
}

fn cert_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Cert { path: path.display().to_string(), reason: reason.to_string() }
}

fn key_error(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::Key { path: path.display().to_string(), reason: reason.to_string() }
}

/// Loads a PEM certificate chain (leaf first) and the PEM private key that goes with it, checking
/// that the key matches the leaf.
pub fn load_certified_key(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let cert_pem = std::fs::read(cert_file).map_err(|e| cert_error(cert_file, e))?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, pem::Error>>()
        .map_err(|e| cert_error(cert_file, format!("not a PEM certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(cert_error(cert_file, "no certificate found (expected PEM \"CERTIFICATE\" blocks)"));
    }
    let key_pem = std::fs::read(key_file).map_err(|e| key_error(key_file, e))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        pem::Error::NoItemsFound => key_error(key_file, "no private key found (expected a PEM \"PRIVATE KEY\" block)"),
        e => key_error(key_file, format!("not a PEM private key: {e}")),
    })?;
    let signing_key = crypto_provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| key_error(key_file, format!("unsupported private key: {e}")))?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(key_error(key_file, format!("does not match the certificate in {}", cert_file.display())))
        }
        Err(e) => Err(cert_error(cert_file, format!("invalid certificate: {e}"))),
    }
}

/// What identifies one version of a file without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp { modified: meta.modified().ok(), len: meta.len(), inode })
}

/// The server's certificate: loaded from the configured files, reloadable, and the TLS acceptor that
/// presents it.
pub struct TlsCerts {
    cert_file: PathBuf,
    key_file: PathBuf,
    resolver: Arc<ReloadableCert>,
    tls: Tls,
    /// The files' stamps at the last load attempt.
    seen: Mutex<(Option<Stamp>, Option<Stamp>)>,
    reloads: AtomicU64,
    reload_failures: AtomicU64,
}

impl TlsCerts {
    /// Loads `tls.cert_file` and `tls.key_file`.
    pub fn load(config: &TlsConfig) -> Result<Arc<TlsCerts>, TlsError> {
        let cert_file = PathBuf::from(&config.cert_file);
        let key_file = PathBuf::from(&config.key_file);
        let seen = (stamp(&cert_file), stamp(&key_file));
        let key = load_certified_key(&cert_file, &key_file)?;
        let resolver = ReloadableCert::new(Arc::new(key));
        let server = server_config(resolver.clone()).map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Arc::new(TlsCerts {
            cert_file,
            key_file,
            resolver,
            tls: Tls::new(Arc::new(server)),
            seen: Mutex::new(seen),
            reloads: AtomicU64::new(0),
            reload_failures: AtomicU64::new(0),
        }))
    }

    /// The acceptor for [`switchyard_engine::serve::Serve::tls`].
    pub fn tls(&self) -> Tls {
        self.tls.clone()
    }

    /// Handshake counters (completed, failed, timed out).
    pub fn stats(&self) -> &Arc<TlsStats> {
        self.tls.stats()
    }

    /// The certificate new handshakes present.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.resolver.get()
    }

    /// Successful reloads since startup.
    pub fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Relaxed)
    }

    /// Reloads that failed (the previous certificate stayed in use).
    pub fn reload_failures(&self) -> u64 {
        self.reload_failures.load(Ordering::Relaxed)
    }

    /// Reads both files again and, if they are valid, presents the new certificate from the next
    /// handshake on. On failure the current certificate stays; the error is logged and counted.
    pub fn reload(&self) -> Result<(), TlsError> {
        *self.seen.lock() = (stamp(&self.cert_file), stamp(&self.key_file));
        match load_certified_key(&self.cert_file, &self.key_file) {
            Ok(key) => {
                self.resolver.set(Arc::new(key));
                self.reloads.fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    cert_file = %self.cert_file.display(),
                    key_file = %self.key_file.display(),
                    "TLS certificate reloaded"
                );
                Ok(())
            }
            Err(e) => {
                self.reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, "TLS certificate reload failed; keeping the current certificate");
                Err(e)
            }
        }
    }

    /// Reloads if either file changed since the last attempt. True if it tried.
    pub fn reload_if_changed(&self) -> bool {
        let now = (stamp(&self.cert_file), stamp(&self.key_file));
        if *self.seen.lock() == now {
            return false;
        }
        let _ = self.reload();
        true
    }

    /// Reloads on SIGHUP and, unless `interval` is zero, when the files change (checked every
    /// `interval`). The SIGHUP handler is installed before this returns; abort the handle to stop.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> JoinHandle<()> {
        #[cfg(unix)]
        let mut hangup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(signal) => Some(signal),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGHUP: TLS certificates reload only on file changes");
                None
            }
        };
        let certs = self.clone();
        tokio::spawn(async move {
            let mut ticker = (!interval.is_zero()).then(|| {
                let mut ticker = tokio::time::interval(interval);
                ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                ticker
            });
            loop {
                #[cfg(unix)]
                let hup = async {
                    match hangup.as_mut() {
                        Some(signal) => signal.recv().await,
                        None => std::future::pending().await,
                    }
                };
                #[cfg(not(unix))]
                let hup = std::future::pending::<Option<()>>();
                let tick = async {
                    match ticker.as_mut() {
                        Some(ticker) => ticker.tick().await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    _ = hup => {
                        tracing::info!("SIGHUP: reloading the TLS certificate");
                        let _ = certs.reload();
                    }
                    _ = tick => {
                        certs.reload_if_changed();
                    }
                }
            }
        })
    }
}
