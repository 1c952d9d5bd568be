//! The Switchyard application: one configuration turned into a running server.
//!
//! # Layout
//! One module per concern; the layers below (`switchyard-engine`, `switchyard-socketio`,
//! `switchyard-redis`) know nothing of them.
//! - [`config`]: the typed [`Config`](config::Config) from file, environment and flags.
//! - [`cluster`]: joining a cluster through Redis; `switchyard emit`.
//! - [`health`]: `/healthz` and `/readyz`.
//! - [`limits`]: the `[limits]` section: per-IP connections and handshakes, allowed origins, event
//!   rate, namespaces and rooms, and their counters.
//! - [`metrics`]: Prometheus `/metrics`.
//! - [`logging`]: text or JSON logs.
//! - [`shutdown`]: the signal and the order of a graceful stop.
//! - [`tls`]: https and wss on the same port, certificates reloaded without a restart.
//! - [`chat`]: the demo chat page at `/` and its events.
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`App::build`] and [`App::serve`]
//! (or [`run`]).

pub mod chat;
pub mod cluster;
pub mod config;
pub mod health;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod shutdown;
pub mod tls;

use axum::routing::get;
use axum::Router;
use config::Config;
use health::Health;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchyard_redis::RedisNode;
use switchyard_socketio::SocketIo;
use tls::TlsCerts;
use tokio::net::TcpListener;

/// Why a server could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("redis: {0}")]
    Redis(#[from] switchyard_redis::ConfigError),
    #[error("cannot listen on {address}: {source}")]
    Bind { address: String, source: std::io::Error },
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("serving: {0}")]
    Serve(#[source] std::io::Error),
}

/// A configured server, ready to serve.
pub struct App {
    config: Config,
    io: SocketIo,
    cluster: Option<RedisNode>,
    health: Arc<Health>,
    tls: Option<Arc<TlsCerts>>,
    limits: Arc<limits::Limits>,
}

impl App {
    /// Builds every part `config` asks for. Nothing listens yet.
    pub fn build(config: Config) -> Result<App, AppError> {
        config.validate()?;
        // The event rate is server-wide message middleware, set on the builder: it covers every
        // namespace a client can reach (static, dynamic children, and those added after build).
        let limits = limits::Limits::new(&config.limits);
        let builder = limits.install(SocketIo::builder().config(config.socketio_config()));
        let (io, cluster) = cluster::configure(builder, &config.redis)?;
        limits.bind(&io);
        if config.server.chat_page {
            chat::install(&io);
        }
        let health = Health::new(cluster.clone());
        let tls = if config.tls.enabled() { Some(TlsCerts::load(&config.tls)?) } else { None };
        Ok(App { config, io, cluster, health, tls, limits })
    }

    /// The Socket.IO server, to add handlers before serving.
    pub fn io(&self) -> &SocketIo {
        &self.io
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn health(&self) -> &Arc<Health> {
        &self.health
    }

    /// The TLS certificate and its counters, when `tls.cert_file` and `tls.key_file` are set.
    pub fn tls(&self) -> Option<&Arc<TlsCerts>> {
        self.tls.as_ref()
    }

    /// The limits and their counters ([`limits::Limits::register_metrics`]).
    pub fn limits(&self) -> &Arc<limits::Limits> {
        &self.limits
    }

    /// Every HTTP route on the one port: Socket.IO, health, metrics and the chat page.
    pub fn router(&self) -> Router {
        let mut router = Router::new().merge(self.health.routes());
        if self.config.metrics.enabled {
            let io = self.io.clone();
            let cluster = self.cluster.clone();
            router = router.route(
                "/metrics",
                get(move || {
                    let mut text = metrics::render(&io);
                    if let Some(node) = &cluster {
                        text.push_str(&cluster::render_metrics(node));
                    }
                    std::future::ready(text)
                }),
            );
        }
        if self.config.server.chat_page {
            router = router.merge(chat::routes());
        }
        router.route_service("/socket.io/", self.io.service())
    }

    /// Binds `server.host`:`server.port`.
    pub async fn bind(&self) -> Result<TcpListener, AppError> {
        let address = format!("{}:{}", self.config.server.host, self.config.server.port);
        TcpListener::bind(&address).await.map_err(|source| AppError::Bind { address, source })
    }

    /// Serves on `listener` until `signal` completes, then stops gracefully (see [`shutdown`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let router = self.router();
        let io = self.io.clone();
        let health = self.health.clone();
        let drain = Duration::from_millis(self.config.server.drain_timeout_ms);
        let mut serve = switchyard_engine::serve(listener, router).drain_timeout(drain);
        // Reloads the certificate on SIGHUP and when its files change, for as long as this serves.
        let mut _watcher = None;
        if let Some(certs) = &self.tls {
            serve = serve.tls(certs.tls());
            _watcher = Some(AbortOnDrop(certs.watch(Duration::from_millis(self.config.tls.reload_interval_ms))));
        }
        if let Some(limiter) = self.limits.connection_limiter() {
            serve = serve.connection_limit(limiter.clone());
        }
        serve
            .with_graceful_shutdown(async move {
                signal.await;
                tracing::info!("shutting down: not ready, closing client connections");
                health.set_shutting_down();
                io.close();
            })
            .await
    }
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs a server with `config` until SIGTERM or Ctrl-C.
pub async fn run(config: Config) -> Result<(), AppError> {
    let app = App::build(config)?;
    let listener = app.bind().await?;
    let address = listener.local_addr().map_err(AppError::Serve)?;
    tracing::info!(%address, tls = app.tls.is_some(), "switchyard listening");
    app.serve(listener, shutdown::signal()).await.map_err(AppError::Serve)
}

/// The port from the `PORT` environment variable, or `default` (for the fixture servers).
pub fn port_from_env(default: u16) -> u16 {
    std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

/// Text logs filtered by `RUST_LOG` (default `info`), for the fixture servers.
pub fn init_tracing() {
    logging::init(&config::LogConfig::default());
}

pub use shutdown::signal as shutdown_signal;
