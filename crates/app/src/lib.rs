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
//! - [`access`]: who a socket is ([`access::Identity`]) and what it may join and publish.
//! - [`api`]: the HTTP API under `/api/` (emit, rooms, sockets; its OpenAPI document).
//! - [`events`]: the built-in events (`join`, `leave`, `message`, `typing`, `presence`, `signal`;
//!   docs/EVENTS.md).
//! - [`presence`]: who is in which room across the cluster: the [`presence::PresenceStore`] trait
//!   (memory, Redis) and this node's tracker.
//! - [`auth`]: JWTs checked on every connection (`[auth]`), the user and handshake rooms (`[rooms]`),
//!   token expiry, `switchyard token`.
//! - [`admin`]: the official Socket.IO Admin UI's namespace (`[admin]`, docs/ADMIN.md): login,
//!   `server_stats`, live events from an observer, commands through the adapter, the UI's files.
//! - [`pipeline`]: the stages (message sinks) an accepted `message` passes before its broadcast.
//! - [`json`]: the `message` envelope and ack written by hand, encoded once per message.
//! - [`kafka`]: Kafka out (accepted messages, `kafka.produce_events`; the on-disk spool) and in
//!   (`kafka.consume` emitted to rooms); docs/KAFKA.md.
//! - [`history`]: message history per room: the [`history::HistoryStore`] trait (embedded redb
//!   under `store.dir`, Redis Streams), the sink every accepted `message` waits for, the `history`
//!   event and `GET /api/rooms/{room}/history` (docs/HISTORY.md).
//! - [`bridge`]: `redis.bridge`: plain Redis channels emitted to rooms as events.
//! - [`chat`]: the demo chat page at `/`, a client of the built-in events, and the development
//!   token endpoint `POST /dev/token` (`auth.dev_token_endpoint`).
//!
//! The binary (`src/main.rs`) only parses arguments and calls [`App::build`] and [`App::serve`]
//! (or [`run`]).

pub mod access;
pub mod admin;
pub mod api;
pub mod auth;
pub mod bridge;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod events;
pub mod health;
pub mod history;
pub mod json;
pub mod kafka;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod pipeline;
pub mod presence;
pub mod shutdown;
pub mod tls;

use axum::http::header::CONTENT_TYPE;
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
    #[error("presence.store: {0}")]
    Presence(String),
    #[error(transparent)]
    Kafka(#[from] kafka::KafkaError),
    /// The history store cannot be opened (`store.dir` unusable or in use by another server).
    #[error(transparent)]
    History(#[from] history::StartError),
    #[error("redis.bridge: {0}")]
    Bridge(String),
    /// A JWT key that cannot be used (an invalid configuration: the binary exits with status 2).
    #[error(transparent)]
    Auth(#[from] auth::AuthError),
    #[error(transparent)]
    Admin(#[from] admin::AdminError),
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
    /// The registry behind `/metrics`, when `metrics.enabled`.
    metrics: Option<Arc<metrics::Metrics>>,
    /// The policy every join and publish is checked against.
    access: Arc<access::Access>,
    /// The HTTP API, when `api.key` is set.
    api: Option<Arc<api::Api>>,
    /// This node's presence tracker, when `events.enabled` and `presence.enabled`.
    presence: Option<Arc<presence::Presence>>,
    /// Authentication and handshake rooms (installed only when configured).
    auth: Arc<auth::Auth>,
    /// The admin UI's namespace, when `admin.enabled`.
    admin: Option<Arc<admin::Admin>>,
    /// Kafka out and in, when `kafka.brokers` is set.
    kafka: Option<Arc<kafka::Kafka>>,
    /// Message history, when `history.enabled`.
    history: Option<Arc<history::History>>,
    /// The `redis.bridge` subscription, when configured (stopped with the app).
    _bridge: Option<AbortOnDrop>,
}

/// The presence tracker `config` asks for: in Redis when the server joined a cluster (or
/// `presence.store = "redis"`), else in memory.
fn start_presence(
    config: &Config,
    io: &SocketIo,
    cluster: Option<&RedisNode>,
) -> Result<Option<Arc<presence::Presence>>, AppError> {
    if !config.events.enabled || !config.presence.enabled {
        return Ok(None);
    }
    let ttl = Duration::from_millis(config.presence.ttl_ms);
    let redis = match config.presence.store.as_str() {
        "memory" => None,
        _ => config.redis.target(),
    };
    let store: Arc<dyn presence::PresenceStore> = match redis {
        Some(target) => {
            let node = match cluster {
                Some(node) => node.uid().to_string(),
                None => return Err(AppError::Presence("the Redis store needs the server to join a cluster".into())),
            };
            Arc::new(presence::RedisPresence::new(target, &config.redis.key_prefix, &node, ttl))
        }
        None => Arc::new(presence::MemoryPresence::new(ttl)),
    };
    Ok(Some(presence::Presence::start(io, store, ttl)))
}

impl App {
    /// Builds every part `config` asks for. Nothing listens yet.
    pub fn build(config: Config) -> Result<App, AppError> {
        config.validate()?;
        // The event rate is server-wide message middleware, set on the builder: it covers every
        // namespace a client can reach (static, dynamic children, and those added after build).
        let limits = limits::Limits::new(&config.limits);
        // Authentication is server-wide connect middleware, so it also covers every namespace.
        let access = Arc::new(access::Access::new(config.rooms.default_allow(config.auth.enabled())));
        let auth = auth::Auth::new(&config, access.clone())?;
        if config.auth.dev_token_endpoint {
            tracing::warn!(
                path = chat::DEV_TOKEN_PATH,
                "auth.dev_token_endpoint is on: development only: anyone can mint tokens"
            );
        }
        let mut builder = auth
            .install(limits.install(SocketIo::builder().config(config.socketio_config())))
            .observer(Arc::new(logging::ConnectionLog));
        let socketio_metrics =
            config.metrics.enabled.then(|| metrics::SocketIoMetrics::new(config.metrics.max_event_names));
        if let Some(observer) = &socketio_metrics {
            builder = builder.observer(observer.clone());
        }
        let (io, cluster) = cluster::configure(builder, &config.redis)?;
        limits.bind(&io);
        // The main namespace always exists, as in Node: clients may connect to `/` with no handler.
        let main_ns = io.of("/");
        let health = Health::new(cluster.clone());
        let tls = if config.tls.enabled() { Some(TlsCerts::load(&config.tls)?) } else { None };
        let metrics = socketio_metrics.map(|observer| {
            let metrics = metrics::Metrics::new();
            let registry = metrics.registry();
            metrics::register_server_metrics(&io, registry);
            observer.register_metrics(registry);
            if let Err(e) = limits.register_metrics(registry) {
                tracing::warn!(error = %e, "registering the limits' metrics");
            }
            if let Err(e) = auth.register_metrics(registry) {
                tracing::warn!(error = %e, "registering the auth metrics");
            }
            if let Some(node) = &cluster {
                metrics::RedisCollector::register_metrics(node, registry);
            }
            if let Some(certs) = &tls {
                metrics::TlsCollector::register_metrics(certs, registry);
            }
            Arc::new(metrics)
        });
        let admin = admin::Admin::new(&config, &io)?;
        if let (Some(admin), Some(metrics)) = (&admin, &metrics) {
            if let Err(e) = admin.register_metrics(metrics.registry()) {
                tracing::warn!(error = %e, "registering the admin metrics");
            }
        }
        let presence = start_presence(&config, &io, cluster.as_ref())?;
        let history = history::History::start(&config)?;
        if let (Some(metrics), Some(presence)) = (&metrics, &presence) {
            metrics::PresenceCollector::register_metrics(presence, metrics.registry());
        }
        let kafka = kafka::Kafka::start(&config, &io)?;
        if let Some(kafka) = &kafka {
            kafka.install_event_producer(&main_ns);
            let part = kafka.clone();
            health.add_part("kafka", Arc::new(move || part.readiness()));
            if let Some(metrics) = &metrics {
                if let Err(e) = kafka.register_metrics(metrics.registry()) {
                    tracing::warn!(error = %e, "registering the Kafka metrics");
                }
            }
        }
        if config.events.enabled {
            let sinks: Vec<Arc<dyn pipeline::MessageSink>> = kafka.iter().map(|k| k.sink()).collect();
            let events = match &history {
                Some(history) => events::Events::with_history(access.clone(), presence.clone(), sinks, history.clone()),
                None => events::Events::with_sinks(access.clone(), presence.clone(), sinks),
            };
            events.install(&main_ns);
        }
        let bridge = match config.redis.target().filter(|_| !config.redis.bridge.is_empty()) {
            Some(target) => {
                let bridge = bridge::Bridge::new(io.clone(), &config.redis.bridge).map_err(AppError::Bridge)?;
                if let Some(metrics) = &metrics {
                    if let Err(e) = bridge.register_metrics(metrics.registry()) {
                        tracing::warn!(error = %e, "registering the redis.bridge metrics");
                    }
                }
                Some(AbortOnDrop(bridge.spawn(target)))
            }
            None => None,
        };
        if let (Some(history), Some(metrics)) = (&history, &metrics) {
            if let Err(e) = history.register_metrics(metrics.registry()) {
                tracing::warn!(error = %e, "registering the history metrics");
            }
        }
        let api = api::Api::new(io.clone(), &config.api, presence.clone(), history.clone());
        if let (Some(api), Some(metrics)) = (&api, &metrics) {
            if let Err(e) = api.register_metrics(metrics.registry()) {
                tracing::warn!(error = %e, "registering the API's metrics");
            }
        }
        Ok(App {
            config,
            io,
            cluster,
            health,
            tls,
            limits,
            metrics,
            access,
            api,
            presence,
            auth,
            admin,
            kafka,
            history,
            _bridge: bridge,
        })
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

    /// The cluster node, when the server joined one through Redis.
    pub fn cluster(&self) -> Option<&RedisNode> {
        self.cluster.as_ref()
    }

    /// The access policy (room patterns from tokens, the default policy).
    pub fn access(&self) -> &Arc<access::Access> {
        &self.access
    }

    /// The HTTP API, when `api.key` is set.
    pub fn api(&self) -> Option<&Arc<api::Api>> {
        self.api.as_ref()
    }

    /// The presence tracker, when the built-in events and presence are on.
    pub fn presence(&self) -> Option<&Arc<presence::Presence>> {
        self.presence.as_ref()
    }

    /// Message history, when `history.enabled`.
    pub fn history(&self) -> Option<&Arc<history::History>> {
        self.history.as_ref()
    }

    /// Authentication (`[auth]`) and handshake rooms (`[rooms]`).
    pub fn auth(&self) -> &Arc<auth::Auth> {
        &self.auth
    }

    /// The admin UI's namespace, when `admin.enabled`.
    pub fn admin(&self) -> Option<&Arc<admin::Admin>> {
        self.admin.as_ref()
    }

    /// Kafka, when `kafka.brokers` is set.
    pub fn kafka(&self) -> Option<&Arc<kafka::Kafka>> {
        self.kafka.as_ref()
    }

    /// The metrics registry (when `metrics.enabled`), for other concerns to register collectors on.
    pub fn metrics(&self) -> Option<&Arc<metrics::Metrics>> {
        self.metrics.as_ref()
    }

    /// Every HTTP route on the one port: Socket.IO, health, metrics, the HTTP API, the admin UI's
    /// files, the chat page and the development token endpoint.
    pub fn router(&self) -> Router {
        let mut router = Router::new().merge(self.health.routes());
        router = match &self.api {
            Some(api) => router.merge(api.routes()),
            None => router.merge(api::disabled_routes()),
        };
        if let Some(metrics) = self.metrics.clone() {
            router = router.route(
                "/metrics",
                get(move || {
                    let body = metrics.render();
                    std::future::ready(([(CONTENT_TYPE, prometheus::TEXT_FORMAT)], body))
                }),
            );
        }
        let dev_tokens = self.config.auth.dev_token_endpoint;
        if dev_tokens {
            router = router.merge(chat::dev_token_routes(&self.config));
        }
        if let Some(ui) = self.admin.as_ref().and_then(|admin| admin.ui_routes()) {
            router = router.merge(ui);
        }
        if self.config.server.chat_page {
            router = router.merge(chat::routes(dev_tokens.then_some(chat::DEV_TOKEN_PATH)));
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
        let drain = Duration::from_millis(self.config.server.drain_timeout_ms);
        let mut serve = switchyard_engine::serve(listener, router).drain_timeout(drain);
        // Reloads the certificate on SIGHUP and when its files change, for as long as this serves.
        let mut _watcher = None;
        if let Some(certs) = &self.tls {
            serve = serve.tls(certs.tls());
            _watcher = Some(AbortOnDrop(certs.watch(Duration::from_millis(self.config.tls.reload_interval_ms))));
        }
        let _admin_stats = self.admin.as_ref().map(|admin| AbortOnDrop(admin.start()));
        if let Some(limiter) = self.limits.connection_limiter() {
            serve = serve.connection_limit(limiter.clone());
        }
        let kafka = self.kafka.clone();
        let served = shutdown::serve_until(serve, self.io.clone(), self.health.clone(), drain, signal).await;
        if let Some(kafka) = kafka {
            // Messages accepted before the stop reach Kafka, or the spool for the next start.
            kafka.close(drain).await;
        }
        served
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
    tracing::info!(%address, tls = app.tls.is_some(), auth = app.auth.enabled(), "switchyard listening");
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_main_namespace_exists_without_the_chat_page() {
        let mut config = Config::default();
        config.server.chat_page = false;
        let app = App::build(config).expect("valid configuration");
        let names: Vec<String> = app.io().namespaces().iter().map(|ns| ns.name().to_string()).collect();
        assert_eq!(names, vec!["/".to_string()]);
    }
}
