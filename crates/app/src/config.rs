//! One configuration: a TOML file, `SWITCHYARD_<SECTION>_<KEY>` environment variables and flags, with
//! the precedence flags > environment > file > defaults, parsed into one typed [`Config`].
//!
//! Every key lives in a section (`server.port`, `tls.cert_file`, ...), or in a subsection of one
//! (`auth.jwt.secret`, the table `[auth.jwt]` in a file). The list of keys is the
//! serialized form of [`Config::default`], so the environment variables, `switchyard config` and the
//! docs/CONFIG.md check all follow the struct: a new field is a new key everywhere.
//!
//! Older names keep working, below the `SWITCHYARD_<SECTION>_<KEY>` form of the same key: `PORT`,
//! `HOST`, `REDIS_URL`, `REDIS_CLUSTER_NODES`, `REDIS_KEY_PREFIX`, `REDIS_MODE`,
//! `REDIS_SUBSCRIPTION_MODE`, `REDIS_REQUESTS_TIMEOUT_MS`, `SWITCHYARD_PING_INTERVAL_MS`,
//! `SWITCHYARD_PING_TIMEOUT_MS`, `SWITCHYARD_MAX_PAYLOAD`, `SWITCHYARD_MAX_QUEUE_BYTES`,
//! `SWITCHYARD_CORS_ORIGINS`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use toml::Value;

/// The prefix of every environment variable that sets a key.
pub const ENV_PREFIX: &str = "SWITCHYARD_";
/// The environment variable naming the configuration file (as `--config`).
pub const CONFIG_FILE_ENV: &str = "SWITCHYARD_CONFIG";

/// Legacy environment variables and the key each sets (below `SWITCHYARD_<SECTION>_<KEY>`).
pub const LEGACY_ENV: &[(&str, &str)] = &[
    ("HOST", "server.host"),
    ("PORT", "server.port"),
    ("SWITCHYARD_PING_INTERVAL_MS", "engine.ping_interval_ms"),
    ("SWITCHYARD_PING_TIMEOUT_MS", "engine.ping_timeout_ms"),
    ("SWITCHYARD_MAX_PAYLOAD", "engine.max_payload"),
    ("SWITCHYARD_MAX_QUEUE_BYTES", "engine.max_queue_bytes"),
    ("SWITCHYARD_CORS_ORIGINS", "cors.origins"),
    ("REDIS_URL", "redis.url"),
    ("REDIS_CLUSTER_NODES", "redis.cluster_nodes"),
    ("REDIS_KEY_PREFIX", "redis.key_prefix"),
    ("REDIS_MODE", "redis.mode"),
    ("REDIS_SUBSCRIPTION_MODE", "redis.subscription_mode"),
    ("REDIS_REQUESTS_TIMEOUT_MS", "redis.requests_timeout_ms"),
];

/// Keys whose values `switchyard config` and the logs never show.
const SECRET_WORDS: &[&str] = &["secret", "password", "api_key", "token"];

/// The whole configuration of a Switchyard server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub engine: EngineSection,
    pub socketio: SocketIoSection,
    pub cors: CorsSection,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
    pub metrics: MetricsConfig,
    pub log: LogConfig,
    pub redis: RedisSection,
    pub recovery: RecoverySection,
    pub api: ApiConfig,
    pub events: EventsConfig,
    pub presence: PresenceConfig,
    pub auth: AuthConfig,
    pub rooms: RoomsConfig,
    pub admin: AdminConfig,
    pub store: StoreConfig,
    pub kafka: KafkaConfig,
    pub history: HistoryConfig,
}

/// Where to listen and how to stop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port to listen on (0: any free port).
    pub port: u16,
    /// On shutdown, how long outgoing queues may take to drain before transports are closed.
    pub drain_timeout_ms: u64,
    /// Serve the demo chat page at `/` (a client of the built-in events).
    pub chat_page: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { host: "0.0.0.0".into(), port: 3000, drain_timeout_ms: 5_000, chat_page: true }
    }
}

/// Engine.IO settings (Node's defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EngineSection {
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub upgrade_timeout_ms: u64,
    /// Largest message or polling body, in bytes (Node's `maxHttpBufferSize`).
    pub max_payload: usize,
    /// Outgoing bytes queued per connection before it is disconnected as too slow.
    pub max_queue_bytes: usize,
    /// Serve HTTP long-polling.
    pub allow_polling: bool,
    /// Serve WebSocket.
    pub allow_websocket: bool,
    /// Let polling sessions upgrade to WebSocket.
    pub allow_upgrades: bool,
    /// WebSocket per-message compression (permessage-deflate) with clients that offer it (Node: off).
    pub per_message_deflate: bool,
    /// Messages shorter than this many bytes are sent uncompressed (Node: 1024).
    pub per_message_deflate_threshold: usize,
    /// Let clients keep their compression context (the server then keeps an inflater per such connection).
    pub per_message_deflate_client_context_takeover: bool,
    /// Also accept Engine.IO v3 / Socket.IO v2 clients (Node's `allowEIO3`).
    pub allow_eio3: bool,
}

impl Default for EngineSection {
    fn default() -> Self {
        let d = switchyard_engine::EngineConfig::default();
        Self {
            ping_interval_ms: d.ping_interval.as_millis() as u64,
            ping_timeout_ms: d.ping_timeout.as_millis() as u64,
            upgrade_timeout_ms: d.upgrade_timeout.as_millis() as u64,
            max_payload: d.max_payload,
            max_queue_bytes: d.max_queue_bytes,
            allow_polling: d.allow_polling,
            allow_websocket: d.allow_websocket,
            allow_upgrades: d.allow_upgrades,
            per_message_deflate: d.per_message_deflate,
            per_message_deflate_threshold: d.per_message_deflate_threshold,
            per_message_deflate_client_context_takeover: d.per_message_deflate_client_context_takeover,
            allow_eio3: d.allow_eio3,
        }
    }
}

/// Socket.IO settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SocketIoSection {
    /// Close connections that join no namespace within this time.
    pub connect_timeout_ms: u64,
    /// Largest number of binary attachments in one packet.
    pub max_attachments: usize,
    /// `json` (Node's default parser) or `msgpack` (npm `socket.io-msgpack-parser`); every client of
    /// the server must use the same one.
    pub parser: ParserKind,
}

impl Default for SocketIoSection {
    fn default() -> Self {
        let d = switchyard_socketio::SocketIoConfig::default();
        Self {
            connect_timeout_ms: d.connect_timeout.as_millis() as u64,
            max_attachments: d.max_attachments,
            parser: ParserKind::Json,
        }
    }
}

/// The Socket.IO parser (`socketio.parser`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ParserKind {
    /// Text packets with JSON data, binary as attachments.
    #[default]
    Json,
    /// MessagePack: one binary message per packet.
    Msgpack,
}

impl From<ParserKind> for switchyard_socketio::Parser {
    fn from(kind: ParserKind) -> Self {
        match kind {
            ParserKind::Json => switchyard_socketio::Parser::Json,
            ParserKind::Msgpack => switchyard_socketio::Parser::Msgpack,
        }
    }
}

/// Cross-origin requests (polling from another origin).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
pub struct CorsSection {
    /// Origins allowed to make cross-origin polling requests; `*` for any. None by default.
    pub origins: Vec<String>,
    /// Allow credentials (cookies); refused together with `*`.
    pub credentials: bool,
}

/// HTTPS and WSS on the same port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain; with `key_file`, turns TLS on. Empty: plain HTTP.
    pub cert_file: String,
    /// PEM private key.
    pub key_file: String,
    /// How often the two files are checked for changes (reloaded when they change). 0: only on SIGHUP.
    pub reload_interval_ms: u64,
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig { cert_file: String::new(), key_file: String::new(), reload_interval_ms: 2000 }
    }
}

impl TlsConfig {
    /// True when both files are set.
    pub fn enabled(&self) -> bool {
        !self.cert_file.is_empty() && !self.key_file.is_empty()
    }
}

/// Limits a public deployment can live with.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Open connections per client IP (0: no limit); over it, HTTP 429.
    pub connections_per_ip: u32,
    /// New Engine.IO sessions per second per client IP (0: no limit); over it, HTTP 429.
    pub handshakes_per_second_per_ip: u32,
    /// Events per second per socket, sustained (0: no limit).
    pub events_per_second: u32,
    /// Events a socket may send at once (the bucket size; 0: as many as `events_per_second`).
    pub events_burst: u32,
    /// Rate-limited events in a row after which the socket is disconnected (0: never).
    pub rate_limit_disconnect_after: u32,
    /// Namespaces one connection may join (0: no limit).
    pub namespaces_per_connection: u32,
    /// Rooms one socket may be in, besides its own (0: no limit).
    pub rooms_per_socket: u32,
    /// Origins allowed to open WebSocket and polling sessions (empty: any). Others get 403; requests
    /// without an `Origin` header (native clients) are always allowed.
    pub allowed_origins: Vec<String>,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            connections_per_ip: 256,
            handshakes_per_second_per_ip: 50,
            events_per_second: 100,
            events_burst: 200,
            rate_limit_disconnect_after: 100,
            namespaces_per_connection: 16,
            rooms_per_socket: 256,
            allowed_origins: Vec::new(),
        }
    }
}

/// Prometheus metrics.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve `/metrics` and count Socket.IO-level series.
    pub enabled: bool,
    /// Most distinct event names counted by name; others are counted as `other`.
    pub max_event_names: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        Self { enabled: true, max_event_names: 64 }
    }
}

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter (`info`, `switchyard=debug,info`); `RUST_LOG` overrides it.
    pub level: String,
    /// `text` or `json`.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: "info".into(), format: LogFormat::Text }
    }
}

/// How log lines look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The cluster's Redis (none: run alone on the in-memory adapter).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RedisSection {
    /// Redis to join a cluster through, e.g. `redis://127.0.0.1:6379/`. Empty: run alone.
    pub url: String,
    /// Seed nodes of a Redis Cluster, instead of `url`.
    pub cluster_nodes: Vec<String>,
    /// Channel prefix shared by every server of the cluster (Node's `key`).
    pub key_prefix: String,
    /// Wire format: `classic` or `sharded`.
    pub mode: String,
    /// Sharded mode's subscription mode: `dynamic`, `dynamic-private` or `static`.
    pub subscription_mode: String,
    /// How long cluster requests wait for other servers.
    pub requests_timeout_ms: u64,
    /// Plain Redis channels whose JSON messages are emitted to rooms (`crate::bridge`): each
    /// `{channel, event, room}`, the room a template such as `user:{userId}` filled from the
    /// message's fields. In the environment: `channel event room` items, comma-separated.
    pub bridge: Vec<BridgeRoute>,
}

impl Default for RedisSection {
    fn default() -> Self {
        Self {
            url: String::new(),
            cluster_nodes: Vec::new(),
            key_prefix: "socket.io".into(),
            mode: "classic".into(),
            subscription_mode: "dynamic".into(),
            requests_timeout_ms: 5_000,
            bridge: Vec::new(),
        }
    }
}

/// Connection state recovery (Node's `connectionStateRecovery`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RecoverySection {
    pub enabled: bool,
    /// How long a dropped session and its missed packets are kept.
    pub max_disconnection_ms: u64,
}

impl Default for RecoverySection {
    fn default() -> Self {
        Self { enabled: true, max_disconnection_ms: 120_000 }
    }
}

// ---- [api]: the HTTP API (crates/app/src/api.rs, docs/API.md) -------------------------------------

/// The HTTP API under `/api/` on the server's port: off (every `/api` path answers 404) until `key`
/// is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiConfig {
    /// The key every request carries as `Authorization: Bearer <key>` (`SWITCHYARD_API_KEY`); at
    /// least [`ApiConfig::MIN_KEY_LEN`] characters. Empty: the API is off.
    pub key: String,
    /// Largest request body in bytes; a larger one is answered 413.
    pub max_body_bytes: usize,
    /// Requests per second per client IP, with a burst of as many (0: no limit); over it, 429.
    pub requests_per_second: u32,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { key: String::new(), max_body_bytes: 1_048_576, requests_per_second: 100 }
    }
}

impl ApiConfig {
    /// The shortest key accepted: a short key could be guessed.
    pub const MIN_KEY_LEN: usize = 16;

    /// True when a key is set.
    pub fn enabled(&self) -> bool {
        !self.key.is_empty()
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if self.enabled() && self.key.len() < Self::MIN_KEY_LEN {
            return invalid("api.key", "must be at least 16 characters (a random value, e.g. `openssl rand -hex 32`)");
        }
        if self.enabled() && self.max_body_bytes == 0 {
            return invalid("api.max_body_bytes", "must be greater than 0");
        }
        Ok(())
    }
}

/// One `redis.bridge` entry: messages on `channel` are emitted as `event` to the room `room`
/// (a template: `{field}` is replaced by that field of the JSON message, `{a.b}` by a nested one).
/// A file gives a table `{channel = "...", event = "...", room = "..."}` or the string
/// `"channel event room"`; the environment, the string form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeRoute {
    pub channel: String,
    pub event: String,
    pub room: String,
}

impl<'de> Deserialize<'de> for BridgeRoute {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Table {
            channel: String,
            event: String,
            room: String,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Table(Table),
        }
        match Raw::deserialize(deserializer).map_err(|_| {
            serde::de::Error::custom("expected {channel, event, room} or the string \"channel event room\"")
        })? {
            Raw::Table(Table { channel, event, room }) => Ok(BridgeRoute { channel, event, room }),
            Raw::Text(text) => {
                let parts: Vec<&str> = text.split_whitespace().collect();
                match parts.as_slice() {
                    [channel, event, room] => Ok(BridgeRoute {
                        channel: channel.to_string(),
                        event: event.to_string(),
                        room: room.to_string(),
                    }),
                    _ => Err(serde::de::Error::custom(format!(
                        "{text:?}: expected \"channel event room\" (three words separated by spaces)"
                    ))),
                }
            }
        }
    }
}

// ---- store and history (docs/HISTORY.md) ------------------------------------------------------------

/// Where the server keeps files of its own (the embedded history store, the Kafka spool).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StoreConfig {
    /// The directory, created if missing; relative paths are from the working directory. One server
    /// per directory.
    pub dir: String,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig { dir: "data".into() }
    }
}

/// Message history: every accepted `message` kept per room (`history` event, `GET
/// /api/rooms/{room}/history`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Keep history; a `message` is acknowledged only once the store holds it.
    pub enabled: bool,
    /// `auto` (Redis Streams when `redis.*` is set, else embedded), `embedded` or `redis`.
    pub store: String,
    /// Messages kept per room (the oldest are dropped first).
    pub max_messages: u64,
    /// Messages older than this are dropped (0: no age limit).
    pub max_age_seconds: u64,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig { enabled: false, store: "auto".into(), max_messages: 1000, max_age_seconds: 7 * 86_400 }
    }
}

impl HistoryConfig {
    /// The retention of every room.
    pub fn retention(&self) -> crate::history::Retention {
        crate::history::Retention {
            max_messages: self.max_messages,
            max_age: (self.max_age_seconds > 0).then(|| Duration::from_secs(self.max_age_seconds)),
        }
    }
}

impl Config {
    /// The checks of `[store]`, `[history]` and `redis.bridge`.
    fn validate_history(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| Err(ConfigError::Invalid { key: key.into(), reason });
        if !matches!(self.history.store.as_str(), "auto" | "embedded" | "redis") {
            return invalid("history.store", "must be \"auto\", \"embedded\" or \"redis\"".into());
        }
        if self.history.store == "redis" && self.redis.target().is_none() {
            return invalid("history.store", "\"redis\" needs redis.url or redis.cluster_nodes".into());
        }
        if self.history.max_messages == 0 || self.history.max_messages > 10_000_000 {
            return invalid("history.max_messages", "must be between 1 and 10000000".into());
        }
        if self.history.max_age_seconds > 10 * 365 * 86_400 {
            return invalid("history.max_age_seconds", "must be at most ten years (0: no age limit)".into());
        }
        if !self.redis.bridge.is_empty() && self.redis.target().is_none() {
            return invalid("redis.bridge", "needs redis.url or redis.cluster_nodes".into());
        }
        for route in &self.redis.bridge {
            if route.channel.is_empty() || route.event.is_empty() || route.room.is_empty() {
                return invalid("redis.bridge", format!("{route:?}: channel, event and room must not be empty"));
            }
            if crate::api::RESERVED_EVENTS.contains(&route.event.as_str()) {
                return invalid("redis.bridge", format!("{:?} is a reserved event name", route.event));
            }
            if let Err(e) = crate::bridge::RoomTemplate::parse(&route.room) {
                return invalid("redis.bridge", format!("room {:?}: {e}", route.room));
            }
        }
        Ok(())
    }
}

// ---- the built-in events and presence (docs/EVENTS.md) -------------------------------------------

/// The built-in events (`join`, `leave`, `message`, `typing`, `presence`, `signal`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Handle the built-in events on the main namespace.
    pub enabled: bool,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self { enabled: true }
    }
}

/// Who is in which room, across the cluster (`user-connected`, `user-disconnected`, `presence`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PresenceConfig {
    /// Track presence and announce users joining and leaving rooms (needs `events.enabled`).
    pub enabled: bool,
    /// `auto` (Redis when `redis.*` is set, else memory), `memory` or `redis`.
    pub store: String,
    /// How long a node's entries live without a refresh: a dead node's users are announced gone
    /// within `ttl_ms` plus a third of it. Nodes refresh every third of it.
    pub ttl_ms: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self { enabled: true, store: "auto".into(), ttl_ms: 30_000 }
    }
}

// ---- [admin]: the Socket.IO Admin UI (crates/app/src/admin, docs/ADMIN.md) ---------------------

/// The official Socket.IO Admin UI (`@socket.io/admin-ui`): its namespace, login, mode and files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdminConfig {
    /// Serve the admin namespace (off by default: it shows every socket and can disconnect them).
    pub enabled: bool,
    /// The admin namespace the UI connects to ("Admin namespace" in its form).
    pub namespace: String,
    /// `basic` (a username and a bcrypt hash) or `none` (anyone reaching the port is an admin: an
    /// explicit choice, never a default).
    pub auth: String,
    /// The login name (with `auth = "basic"`).
    pub username: String,
    /// The bcrypt hash of the password (`$2a$`, `$2b$` or `$2y$`), checked at startup.
    pub password_hash: String,
    /// How long a login session lasts (shared through Redis when the server is in a cluster).
    pub session_ttl_ms: u64,
    /// `development` (every socket, room and event, live) or `production` (only counts, every 2 s).
    pub mode: String,
    /// Advertise and accept no command (join, leave, disconnect, emit).
    pub readonly: bool,
    /// How the UI names this server; empty: the host name and the port (`host:3000`).
    pub server_id: String,
    /// A directory holding the UI's built files (`ui/dist` of the npm package), served at `/admin/`.
    pub ui_dir: String,
    /// The origin of a UI served elsewhere (the hosted `https://admin.socket.io`), allowed exactly,
    /// with credentials, for cross-origin polling. Empty: no cross-origin access for the UI.
    pub cors_origin: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            enabled: false,
            namespace: "/admin".into(),
            auth: "basic".into(),
            username: String::new(),
            password_hash: String::new(),
            session_ttl_ms: 86_400_000,
            mode: "development".into(),
            readonly: false,
            server_id: String::new(),
            ui_dir: String::new(),
            cors_origin: String::new(),
        }
    }
}

impl AdminConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| Err(ConfigError::Invalid { key: key.into(), reason });
        if !self.namespace.starts_with('/') || self.namespace == "/" {
            return invalid(
                "admin.namespace",
                format!("{:?}: a namespace of its own, starting with \"/\"", self.namespace),
            );
        }
        if !matches!(self.mode.as_str(), "development" | "production") {
            return invalid("admin.mode", "must be \"development\" or \"production\"".into());
        }
        if self.cors_origin == "*" || self.cors_origin.ends_with('/') {
            return invalid(
                "admin.cors_origin",
                "one exact origin such as https://admin.socket.io (no \"*\", no trailing slash)".into(),
            );
        }
        if self.session_ttl_ms == 0 {
            return invalid("admin.session_ttl_ms", "must be greater than 0".into());
        }
        match self.auth.as_str() {
            "none" => Ok(()),
            "basic" if !self.enabled => Ok(()),
            "basic" if self.username.is_empty() => invalid(
                "admin.username",
                "needed with admin.auth = \"basic\" (or set admin.auth = \"none\" to run without a login)".into(),
            ),
            "basic" => match self.password_hash.parse::<bcrypt::HashParts>() {
                Ok(_) => Ok(()),
                Err(_) => invalid(
                    "admin.password_hash",
                    "must be a valid bcrypt hash (e.g. from `htpasswd -bnBC 10 \"\" PASSWORD | tr -d ':\\n'`)".into(),
                ),
            },
            _ => invalid("admin.auth", "must be \"basic\" or \"none\"".into()),
        }
    }
}

// ---- auth and rooms (issue 8) ------------------------------------------------------------------

/// Authentication: a JWT on every connection once a key is set (see `crate::auth`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// The cookie a token may come in (only when `limits.allowed_origins` is set).
    pub cookie: String,
    /// Namespaces that need no token (the admin UI's, which has its own login).
    pub exempt_namespaces: Vec<String>,
    /// Development only: serve `POST /dev/token`, which mints a token for any name with
    /// `auth.jwt.secret` (and the chat page offers "Get a token"). Needs the secret.
    pub dev_token_endpoint: bool,
    /// The key tokens are checked with; none set: no authentication.
    pub jwt: JwtConfig,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            cookie: "token".into(),
            exempt_namespaces: Vec::new(),
            dev_token_endpoint: false,
            jwt: JwtConfig::default(),
        }
    }
}

impl AuthConfig {
    /// True when a key is configured, so every connection needs a token.
    pub fn enabled(&self) -> bool {
        self.jwt.key_source().is_some()
    }
}

/// `[auth.jwt]`: one key source (a secret, a PEM public key or a local JWKS) and the claims checked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct JwtConfig {
    /// Shared secret for HS256/HS384/HS512 (at least 32 bytes).
    pub secret: String,
    /// PEM public key file: RSA (RS256/384/512, PS256/384/512), EC (ES256/384) or Ed25519 (EdDSA).
    pub public_key_file: String,
    /// Local JWKS file; the key is chosen by the token's `kid`.
    pub jwks_file: String,
    /// Required `iss` claim (empty: not checked).
    pub issuer: String,
    /// Required `aud` claim (empty: not checked; tokens carrying an `aud` are then refused).
    pub audience: String,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    pub leeway_seconds: u64,
}

impl Default for JwtConfig {
    fn default() -> Self {
        JwtConfig {
            secret: String::new(),
            public_key_file: String::new(),
            jwks_file: String::new(),
            issuer: String::new(),
            audience: String::new(),
            leeway_seconds: 60,
        }
    }
}

/// Which key option of `[auth.jwt]` is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Secret,
    PublicKeyFile,
    JwksFile,
}

impl KeySource {
    /// The configuration key of this source.
    pub fn key(self) -> &'static str {
        match self {
            KeySource::Secret => "auth.jwt.secret",
            KeySource::PublicKeyFile => "auth.jwt.public_key_file",
            KeySource::JwksFile => "auth.jwt.jwks_file",
        }
    }
}

impl JwtConfig {
    /// The key source set (the first of secret, public key file, JWKS file; `validate` refuses several).
    pub fn key_source(&self) -> Option<KeySource> {
        self.key_sources().first().copied()
    }

    fn key_sources(&self) -> Vec<KeySource> {
        [
            (KeySource::Secret, &self.secret),
            (KeySource::PublicKeyFile, &self.public_key_file),
            (KeySource::JwksFile, &self.jwks_file),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
        .map(|(source, _)| source)
        .collect()
    }
}

/// Rooms: the room from the handshake, the claims that list allowed rooms, the default policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoomsConfig {
    /// Join the room named by the handshake's `auth.room` (or `room` header) at connect; refuse
    /// connections without one.
    pub from_handshake: bool,
    /// The claim listing the room patterns a user may join.
    pub claim: String,
    /// The claim listing where a user may publish (absent: the `claim` list).
    pub publish_claim: String,
    /// `allow`, `deny`, or `auto` (allow without auth, deny with auth): for sockets without a
    /// token or tokens without the claim.
    pub default_policy: String,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        RoomsConfig {
            from_handshake: false,
            claim: "rooms".into(),
            publish_claim: "publish".into(),
            default_policy: "auto".into(),
        }
    }
}

impl RoomsConfig {
    /// Whether what no claim restricts is allowed, given whether auth is on.
    pub fn default_allow(&self, auth_enabled: bool) -> bool {
        match self.default_policy.as_str() {
            "allow" => true,
            "deny" => false,
            _ => !auth_enabled,
        }
    }
}

// ---- Kafka (issue 10; docs/KAFKA.md) ---------------------------------------

/// Kafka out (every accepted `message`, and `produce_events`) and in (`consume`): docs/KAFKA.md.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct KafkaConfig {
    /// Bootstrap brokers, comma-separated `host:port`. Empty: Kafka is off.
    pub brokers: String,
    /// The topic accepted messages and `produce_events` are produced to.
    pub topic: String,
    /// Events besides `message` that are produced when a client sends them (names; the
    /// environment variable takes them comma-separated).
    pub produce_events: Vec<String>,
    /// `accepted`: a `message` is acknowledged once it is queued for Kafka or spooled; `persisted`:
    /// once Kafka acknowledged it or the spool has it on disk (fsync).
    pub ack: String,
    /// Messages held in memory on their way to Kafka; past it (Kafka slow or down) new messages go
    /// to the spool.
    pub queue_max: usize,
    /// How long one delivery may take before Kafka is taken as down (librdkafka's
    /// `message.timeout.ms`); undelivered messages are then spooled and produced again.
    pub delivery_timeout_ms: u64,
    /// The spool's size on disk (`<store.dir>/kafka-spool/`) past which new messages are refused
    /// with the error `spool_full`.
    pub spool_max_bytes: u64,
    /// Topics to consume, comma-separated; their records are emitted to rooms. Empty: none.
    pub consume: String,
    /// The consumer group every node of the cluster shares.
    pub group: String,
    /// How long a consumed record's `id` is remembered, so that a redelivered record is not
    /// emitted twice (in Redis when the server joined a cluster, else in memory).
    pub dedupe_window_ms: u64,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: String::new(),
            topic: "switchyard.messages".into(),
            produce_events: Vec::new(),
            ack: "accepted".into(),
            queue_max: 10_000,
            delivery_timeout_ms: 10_000,
            spool_max_bytes: 256 * 1024 * 1024,
            consume: String::new(),
            group: "switchyard".into(),
            dedupe_window_ms: 600_000,
        }
    }
}

impl KafkaConfig {
    /// True when brokers are set: nothing of Kafka runs otherwise.
    pub fn enabled(&self) -> bool {
        !self.brokers.trim().is_empty()
    }

    /// The topics of `consume`.
    pub fn consume_topics(&self) -> Vec<String> {
        split_list(&self.consume)
    }

    /// Whether the sender's ack waits for Kafka (or the spool's fsync).
    pub fn ack_persisted(&self) -> bool {
        self.ack == "persisted"
    }

    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if !matches!(self.ack.as_str(), "accepted" | "persisted") {
            return invalid("kafka.ack", "must be \"accepted\" or \"persisted\"");
        }
        if !self.enabled() {
            if !self.consume.trim().is_empty() {
                return invalid("kafka.consume", "needs kafka.brokers");
            }
            return Ok(());
        }
        if !cfg!(feature = "kafka") {
            return invalid("kafka.brokers", "this binary was built without the `kafka` feature");
        }
        if split_list(&self.brokers).iter().any(|b| !b.contains(':')) {
            return invalid("kafka.brokers", "list host:port pairs separated by commas");
        }
        if !valid_topic(&self.topic) {
            return invalid("kafka.topic", "must be 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'");
        }
        if !self.consume_topics().iter().all(|t| valid_topic(t)) {
            return invalid("kafka.consume", "topics are 1-249 characters of a-z, A-Z, 0-9, '.', '_' and '-'");
        }
        if self.produce_events.iter().any(|e| e.is_empty()) {
            return invalid("kafka.produce_events", "event names must not be empty");
        }
        if self.queue_max == 0 {
            return invalid("kafka.queue_max", "must be greater than 0");
        }
        if self.delivery_timeout_ms < 100 {
            return invalid("kafka.delivery_timeout_ms", "must be at least 100");
        }
        if self.spool_max_bytes < 64 * 1024 {
            return invalid("kafka.spool_max_bytes", "must be at least 65536");
        }
        if self.group.is_empty() {
            return invalid("kafka.group", "must name a consumer group");
        }
        if self.dedupe_window_ms == 0 {
            return invalid("kafka.dedupe_window_ms", "must be greater than 0");
        }
        Ok(())
    }
}

/// The non-empty, trimmed items of a comma-separated list.
fn split_list(list: &str) -> Vec<String> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect()
}

/// Kafka's rule for topic names.
fn valid_topic(topic: &str) -> bool {
    (1..=249).contains(&topic.len())
        && topic != "."
        && topic != ".."
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl Config {
    /// The checks of the `events` and `presence` sections.
    fn validate_events(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if !matches!(self.presence.store.as_str(), "auto" | "memory" | "redis") {
            return invalid("presence.store", "must be \"auto\", \"memory\" or \"redis\"");
        }
        if self.presence.store == "redis" && self.redis.target().is_none() {
            return invalid("presence.store", "\"redis\" needs redis.url or redis.cluster_nodes");
        }
        if self.presence.ttl_ms < 300 {
            return invalid("presence.ttl_ms", "must be at least 300");
        }
        Ok(())
    }

    /// The rules of `[auth]` and `[rooms]` that types alone cannot express.
    fn validate_auth(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: String| Err(ConfigError::Invalid { key: key.into(), reason });
        let jwt = &self.auth.jwt;
        let sources = jwt.key_sources();
        if sources.len() > 1 {
            let names: Vec<&str> = sources.iter().map(|s| s.key()).collect();
            return invalid(sources[1].key(), format!("set only one of {}", names.join(", ")));
        }
        if !jwt.secret.is_empty() && jwt.secret.len() < 32 {
            return invalid(
                "auth.jwt.secret",
                "must be at least 32 bytes (RFC 7518 §3.2), e.g. the output of `openssl rand -base64 32`".into(),
            );
        }
        if jwt.leeway_seconds > 86_400 {
            return invalid("auth.jwt.leeway_seconds", "must be at most 86400 (one day)".into());
        }
        if !self.auth.cookie.is_empty()
            && !self.auth.cookie.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
        {
            return invalid("auth.cookie", "must be a cookie name (letters, digits, -, _, ...)".into());
        }
        if let Some(ns) = self.auth.exempt_namespaces.iter().find(|ns| !ns.starts_with('/')) {
            return invalid("auth.exempt_namespaces", format!("{ns:?}: namespaces start with \"/\""));
        }
        if self.auth.dev_token_endpoint && jwt.secret.is_empty() {
            return invalid(
                "auth.dev_token_endpoint",
                "needs auth.jwt.secret (tokens are minted with the shared secret)".into(),
            );
        }
        if !matches!(self.rooms.default_policy.as_str(), "allow" | "deny" | "auto") {
            return invalid("rooms.default_policy", "must be \"allow\", \"deny\" or \"auto\"".into());
        }
        if self.rooms.claim.is_empty() {
            return invalid("rooms.claim", "must name a claim".into());
        }
        if self.rooms.publish_claim.is_empty() {
            return invalid("rooms.publish_claim", "must name a claim".into());
        }
        Ok(())
    }
}

/// A configuration that cannot start a server: names the key and the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("configuration file {path}: {reason}")]
    Syntax { path: PathBuf, reason: String },
    #[error("{key}: {reason} (from {source_name})")]
    Value { key: String, reason: String, source_name: String },
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
    #[error("unknown key {key} (from {source_name})")]
    UnknownKey { key: String, source_name: String },
}

/// Where a layer of settings came from, for error messages.
#[derive(Debug, Clone)]
struct Layer {
    name: String,
    values: BTreeMap<String, String>,
}

/// Builds a [`Config`] from its layers. Later layers win.
#[derive(Debug, Default)]
pub struct Loader {
    file: Option<PathBuf>,
    env: Vec<(String, String)>,
    flags: Vec<(String, String)>,
}

impl Loader {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads this TOML file (the `--config` flag, else `SWITCHYARD_CONFIG`).
    pub fn file(mut self, path: Option<impl AsRef<Path>>) -> Self {
        self.file = path.map(|p| p.as_ref().to_path_buf());
        self
    }

    /// Environment variables to read (the process environment: `std::env::vars()`).
    pub fn env(mut self, vars: impl IntoIterator<Item = (String, String)>) -> Self {
        self.env = vars.into_iter().collect();
        self
    }

    /// Settings given as flags, as `section.key` = value (strings parsed like environment values).
    pub fn flag(mut self, key: &str, value: impl ToString) -> Self {
        self.flags.push((key.to_string(), value.to_string()));
        self
    }

    /// Parses and validates every layer.
    pub fn load(self) -> Result<Config, ConfigError> {
        let mut tree = match &self.file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError::File { path: path.clone(), reason: e.to_string() })?;
                let table: toml::Table = text
                    .parse()
                    .map_err(|e: toml::de::Error| ConfigError::Syntax { path: path.clone(), reason: e.to_string() })?;
                let file_name = format!("file {}", path.display());
                check_keys(&table, &file_name)?;
                table
            }
            None => toml::Table::new(),
        };
        let defaults = default_table();
        for layer in self.layers(&defaults)? {
            for (key, raw) in &layer.values {
                let kind = lookup(&defaults, key).expect("layers hold known keys");
                let value = parse_like(kind, raw).map_err(|reason| ConfigError::Value {
                    key: key.clone(),
                    reason,
                    source_name: layer.name.clone(),
                })?;
                set(&mut tree, key, value);
            }
        }
        let config: Config = serde_path_to_error::deserialize(Value::Table(tree)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid { key, reason: e.into_inner().to_string() }
        })?;
        config.validate()?;
        Ok(config)
    }

    fn layers(&self, defaults: &toml::Table) -> Result<Vec<Layer>, ConfigError> {
        let keys = keys(defaults);
        let env: BTreeMap<&str, &str> = self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let mut legacy = Layer { name: "environment".into(), values: BTreeMap::new() };
        for (var, key) in LEGACY_ENV {
            if let Some(value) = env.get(var) {
                legacy.values.insert(key.to_string(), value.to_string());
            }
        }
        let mut current = Layer { name: "environment".into(), values: BTreeMap::new() };
        for key in &keys {
            if let Some(value) = env.get(env_name(key).as_str()) {
                current.values.insert(key.clone(), value.to_string());
            }
        }
        let mut flags = Layer { name: "flags".into(), values: BTreeMap::new() };
        for (key, value) in &self.flags {
            if !keys.contains(key) {
                return Err(ConfigError::UnknownKey { key: key.clone(), source_name: "flags".into() });
            }
            flags.values.insert(key.clone(), value.clone());
        }
        Ok(vec![legacy, current, flags])
    }
}

impl Config {
    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| Err(ConfigError::Invalid { key: key.into(), reason: reason.into() });
        if self.engine.ping_interval_ms == 0 {
            return invalid("engine.ping_interval_ms", "must be greater than 0");
        }
        if self.limits.allowed_origins.iter().any(|o| o == "*" || o.is_empty() || o.ends_with('/')) {
            return invalid(
                "limits.allowed_origins",
                "list exact origins such as https://example.com (no \"*\", no trailing slash); empty allows any",
            );
        }
        if self.engine.ping_timeout_ms == 0 {
            return invalid("engine.ping_timeout_ms", "must be greater than 0");
        }
        if self.engine.max_payload == 0 {
            return invalid("engine.max_payload", "must be greater than 0");
        }
        if self.engine.max_queue_bytes < self.engine.max_payload.min(64 * 1024) {
            return invalid("engine.max_queue_bytes", "must hold at least one message (64 KiB or max_payload)");
        }
        if !self.engine.allow_polling && !self.engine.allow_websocket {
            return invalid("engine.allow_websocket", "polling and WebSocket cannot both be off");
        }
        if self.cors.credentials && self.cors.origins.iter().any(|o| o == "*") {
            return invalid(
                "cors.credentials",
                "any origin (\"*\") with credentials lets every site act as the user; list the allowed origins",
            );
        }
        if self.tls.cert_file.is_empty() != self.tls.key_file.is_empty() {
            let key = if self.tls.cert_file.is_empty() { "tls.cert_file" } else { "tls.key_file" };
            return invalid(key, "tls.cert_file and tls.key_file must be set together");
        }
        if self.limits.events_per_second > 0 && self.limits.events_burst == 0 {
            return invalid("limits.events_burst", "must be at least 1 when limits.events_per_second is set");
        }
        if !matches!(self.redis.mode.as_str(), "classic" | "sharded") {
            return invalid("redis.mode", "must be \"classic\" or \"sharded\"");
        }
        if !matches!(self.redis.subscription_mode.as_str(), "dynamic" | "dynamic-private" | "static") {
            return invalid("redis.subscription_mode", "must be \"dynamic\", \"dynamic-private\" or \"static\"");
        }
        if self.recovery.enabled && self.recovery.max_disconnection_ms == 0 {
            return invalid("recovery.max_disconnection_ms", "must be greater than 0 when recovery is enabled");
        }
        self.api.validate()?;
        self.admin.validate()?;
        if self.store.dir.trim().is_empty() {
            return invalid("store.dir", "must name a directory");
        }
        self.kafka.validate()?;
        self.validate_events()?;
        self.validate_history()?;
        self.validate_auth()
    }

    /// The configuration as TOML, with secrets replaced by `"<redacted>"` (`switchyard config`).
    pub fn to_redacted_toml(&self) -> String {
        let mut table = match Value::try_from(self) {
            Ok(Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        fn redact(prefix: &str, table: &mut toml::Table) {
            for (key, value) in table.iter_mut() {
                // `api.key` is checked as `api_key`: the section's name counts too.
                let qualified = format!("{prefix}_{key}");
                if let Value::Table(inner) = value {
                    redact(&qualified, inner);
                    continue;
                }
                let Some(text) = value.as_str().filter(|s| !s.is_empty()) else { continue };
                if SECRET_WORDS.iter().any(|w| qualified.contains(w)) {
                    *value = Value::String("<redacted>".into());
                } else if key.ends_with("url") {
                    *value = Value::String(redact_url_password(text));
                }
            }
        }
        for (name, section) in table.iter_mut() {
            if let Value::Table(section) = section {
                redact(name, section);
            }
        }
        toml::to_string(&table).unwrap_or_default()
    }
}

impl Config {
    /// The Engine.IO settings.
    pub fn engine_config(&self) -> switchyard_engine::EngineConfig {
        let e = &self.engine;
        switchyard_engine::EngineConfig {
            ping_interval: Duration::from_millis(e.ping_interval_ms),
            ping_timeout: Duration::from_millis(e.ping_timeout_ms),
            upgrade_timeout: Duration::from_millis(e.upgrade_timeout_ms),
            max_payload: e.max_payload,
            max_queue_bytes: e.max_queue_bytes,
            allow_polling: e.allow_polling,
            allow_websocket: e.allow_websocket,
            allow_upgrades: e.allow_upgrades,
            allow_eio3: e.allow_eio3,
            cors: self.cors_config(),
            allowed_origins: self.allowed_origins(),
            handshakes_per_second_per_ip: self.limits.handshakes_per_second_per_ip,
            per_message_deflate: e.per_message_deflate,
            per_message_deflate_threshold: e.per_message_deflate_threshold,
            per_message_deflate_client_context_takeover: e.per_message_deflate_client_context_takeover,
        }
    }

    /// The admin UI's own origin (`admin.cors_origin`), when the admin namespace is on and one is set.
    fn admin_origin(&self) -> Option<&str> {
        (self.admin.enabled && !self.admin.cors_origin.is_empty()).then_some(self.admin.cors_origin.as_str())
    }

    /// `cors.*`, plus the admin UI's origin: allowed exactly, and the engine answers an exact origin
    /// with `Access-Control-Allow-Credentials: true` (the UI polls with `withCredentials`).
    fn cors_config(&self) -> Option<switchyard_engine::CorsConfig> {
        let mut origins = self.cors.origins.clone();
        if let Some(origin) = self.admin_origin() {
            if !origins.iter().any(|o| o == origin) {
                origins.push(origin.to_string());
            }
        }
        (!origins.is_empty()).then_some(switchyard_engine::CorsConfig { origins, credentials: self.cors.credentials })
    }

    /// `limits.allowed_origins`, plus the admin UI's origin when that list is in force.
    fn allowed_origins(&self) -> Vec<String> {
        let mut origins = self.limits.allowed_origins.clone();
        if let Some(origin) = self.admin_origin() {
            if !origins.is_empty() && !origins.iter().any(|o| o == origin) {
                origins.push(origin.to_string());
            }
        }
        origins
    }

    /// The Socket.IO settings (engine included).
    pub fn socketio_config(&self) -> switchyard_socketio::SocketIoConfig {
        switchyard_socketio::SocketIoConfig {
            engine: self.engine_config(),
            connect_timeout: Duration::from_millis(self.socketio.connect_timeout_ms),
            max_attachments: self.socketio.max_attachments,
            recovery: self.recovery.enabled.then(|| switchyard_socketio::RecoveryConfig {
                max_disconnection_duration: Duration::from_millis(self.recovery.max_disconnection_ms),
                ..Default::default()
            }),
            max_namespaces_per_connection: self.limits.namespaces_per_connection as usize,
            max_rooms_per_socket: self.limits.rooms_per_socket as usize,
            parser: self.socketio.parser.into(),
        }
    }
}

/// `redis://user:secret@host/` -> `redis://user:<redacted>@host/`.
fn redact_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let Some((userinfo, host)) = rest.split_once('@') else { return url.to_string() };
    match userinfo.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:<redacted>@{host}"),
        None => format!("{scheme}://<redacted>@{host}"),
    }
}

/// The environment variable of a key: `server.port` -> `SWITCHYARD_SERVER_PORT`.
pub fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace(['.', '-'], "_").to_uppercase())
}

/// Every key (`section.key`) with its default value, sorted by key.
pub fn documented_keys() -> Vec<(String, Value)> {
    let defaults = default_table();
    keys(&defaults).into_iter().map(|k| (k.clone(), lookup(&defaults, &k).cloned().unwrap())).collect()
}

fn default_table() -> toml::Table {
    match Value::try_from(Config::default()) {
        Ok(Value::Table(table)) => table,
        _ => unreachable!("Config serializes to a table"),
    }
}

/// Every leaf key, as its dotted path (`server.port`; in a subsection, `auth.jwt.secret`).
fn keys(table: &toml::Table) -> Vec<String> {
    fn walk(table: &toml::Table, prefix: &str, out: &mut Vec<String>) {
        for (name, value) in table {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            match value {
                Value::Table(inner) => walk(inner, &path, out),
                // Top-level values are sections; only their contents are keys.
                _ if !prefix.is_empty() => out.push(path),
                _ => {}
            }
        }
    }
    let mut out = Vec::new();
    walk(table, "", &mut out);
    out
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a Value> {
    let (path, name) = key.rsplit_once('.')?;
    let mut table = table;
    for part in path.split('.') {
        table = table.get(part)?.as_table()?;
    }
    table.get(name)
}

fn set(table: &mut toml::Table, key: &str, value: Value) {
    let (path, name) = key.rsplit_once('.').expect("keys have a section");
    let mut table = table;
    for part in path.split('.') {
        let entry = table.entry(part).or_insert_with(|| Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(toml::Table::new());
        }
        let Value::Table(inner) = entry else { unreachable!("made a table above") };
        table = inner;
    }
    table.insert(name.to_string(), value);
}

/// Unknown sections or keys in a file are errors (a typo must not silently fall back to a default).
fn check_keys(table: &toml::Table, source_name: &str) -> Result<(), ConfigError> {
    fn walk(table: &toml::Table, known: &toml::Table, prefix: &str, source_name: &str) -> Result<(), ConfigError> {
        for (name, value) in table {
            let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
            let Some(default) = known.get(name) else {
                return Err(ConfigError::UnknownKey { key: path, source_name: source_name.into() });
            };
            match (default, value) {
                (Value::Table(known), Value::Table(inner)) => walk(inner, known, &path, source_name)?,
                (Value::Table(_), _) => {
                    return Err(ConfigError::Value {
                        key: path,
                        reason: "must be a table ([section])".into(),
                        source_name: source_name.into(),
                    })
                }
                _ if prefix.is_empty() => {
                    return Err(ConfigError::UnknownKey { key: path, source_name: source_name.into() })
                }
                _ => {}
            }
        }
        Ok(())
    }
    walk(table, &default_table(), "", source_name)
}

/// Parses a string from the environment or a flag as the type of the key's default.
fn parse_like(kind: &Value, raw: &str) -> Result<Value, String> {
    let raw = raw.trim();
    match kind {
        Value::String(_) => Ok(Value::String(raw.to_string())),
        Value::Integer(_) => {
            raw.parse::<i64>().map(Value::Integer).map_err(|_| format!("expected a whole number, got {raw:?}"))
        }
        Value::Float(_) => raw.parse::<f64>().map(Value::Float).map_err(|_| format!("expected a number, got {raw:?}")),
        Value::Boolean(_) => match raw.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => Ok(Value::Boolean(true)),
            "false" | "0" | "no" | "off" => Ok(Value::Boolean(false)),
            _ => Err(format!("expected true or false, got {raw:?}")),
        },
        Value::Array(_) => Ok(Value::Array(
            raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(|s| Value::String(s.into())).collect(),
        )),
        other => Err(format!("cannot be set from a string (a {})", other.type_str())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_load_and_validate() {
        assert_eq!(Loader::new().load().unwrap(), Config::default());
    }

    #[test]
    fn socketio_parser_reaches_the_socketio_config() {
        assert_eq!(Config::default().socketio_config().parser, switchyard_socketio::Parser::Json);
        let config = Loader::new().env(env(&[("SWITCHYARD_SOCKETIO_PARSER", "msgpack")])).load().unwrap();
        assert_eq!(config.socketio.parser, ParserKind::Msgpack);
        assert_eq!(config.socketio_config().parser, switchyard_socketio::Parser::Msgpack);
        let err = Loader::new().flag("socketio.parser", "xml").load().unwrap_err();
        assert!(err.to_string().contains("socketio.parser"), "{err}");
    }

    #[test]
    fn flags_beat_environment_beat_file_beat_defaults() {
        let f = file("[server]\nport = 4000\nhost = \"127.0.0.2\"\n[engine]\nping_interval_ms = 1000\n");
        let config = Loader::new()
            .file(Some(f.path()))
            .env(env(&[("SWITCHYARD_SERVER_PORT", "5000"), ("SWITCHYARD_ENGINE_PING_TIMEOUT_MS", "700")]))
            .flag("server.port", 6000)
            .load()
            .unwrap();
        assert_eq!(config.server.port, 6000, "flag wins");
        assert_eq!(config.engine.ping_timeout_ms, 700, "environment over default");
        assert_eq!(config.engine.ping_interval_ms, 1000, "file over default");
        assert_eq!(config.server.host, "127.0.0.2", "file over default");
        assert_eq!(config.engine.max_payload, 1_000_000, "default");
        let config = Loader::new().file(Some(f.path())).env(env(&[("SWITCHYARD_SERVER_PORT", "5000")])).load().unwrap();
        assert_eq!(config.server.port, 5000, "environment over file");
    }

    #[test]
    fn legacy_variables_work_below_the_new_names() {
        let config = Loader::new()
            .env(env(&[("PORT", "3100"), ("REDIS_URL", "redis://127.0.0.1:1/"), ("SWITCHYARD_CORS_ORIGINS", "a, b")]))
            .load()
            .unwrap();
        assert_eq!(config.server.port, 3100);
        assert_eq!(config.redis.url, "redis://127.0.0.1:1/");
        assert_eq!(config.cors.origins, vec!["a", "b"]);
        let config = Loader::new().env(env(&[("PORT", "3100"), ("SWITCHYARD_SERVER_PORT", "3200")])).load().unwrap();
        assert_eq!(config.server.port, 3200);
    }

    #[test]
    fn invalid_values_name_the_key_and_the_source() {
        let err = Loader::new().env(env(&[("SWITCHYARD_SERVER_PORT", "eighty")])).load().unwrap_err();
        assert_eq!(err.to_string(), "server.port: expected a whole number, got \"eighty\" (from environment)");
        let err = Loader::new().env(env(&[("SWITCHYARD_SERVER_PORT", "70000")])).load().unwrap_err();
        assert!(err.to_string().starts_with("server.port: "), "{err}");
        let err = Loader::new().flag("log.format", "xml").load().unwrap_err();
        assert!(err.to_string().starts_with("log.format: unknown variant `xml`"), "{err}");
        let err = Loader::new().flag("server.prot", 1).load().unwrap_err();
        assert_eq!(err.to_string(), "unknown key server.prot (from flags)");
    }

    #[test]
    fn invalid_files_are_refused() {
        let f = file("[server]\nprot = 1\n");
        let err = Loader::new().file(Some(f.path())).load().unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "server.prot"), "{err}");
        let f = file("[sever]\nport = 1\n");
        let err = Loader::new().file(Some(f.path())).load().unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "sever"), "{err}");
        let f = file("[server\nport = 1\n");
        assert!(matches!(Loader::new().file(Some(f.path())).load(), Err(ConfigError::Syntax { .. })));
        let f = file("[server]\nport = \"x\"\n");
        let err = Loader::new().file(Some(f.path())).load().unwrap_err();
        assert!(err.to_string().starts_with("server.port: "), "{err}");
        let err = Loader::new().file(Some("/nonexistent/switchyard.toml")).load().unwrap_err();
        assert!(matches!(err, ConfigError::File { .. }));
    }

    #[test]
    fn cross_field_rules() {
        let err = Loader::new().flag("cors.origins", "*").flag("cors.credentials", true).load().unwrap_err();
        assert!(err.to_string().starts_with("cors.credentials: "), "{err}");
        let err = Loader::new().flag("tls.cert_file", "cert.pem").load().unwrap_err();
        assert!(err.to_string().starts_with("tls.key_file: "), "{err}");
        let err = Loader::new().flag("limits.allowed_origins", "*").load().unwrap_err();
        assert!(err.to_string().starts_with("limits.allowed_origins: "), "{err}");
        let err = Loader::new().flag("redis.mode", "cluster").load().unwrap_err();
        assert!(err.to_string().starts_with("redis.mode: "), "{err}");
    }

    #[test]
    fn kafka_rules() {
        let config = Loader::new().load().unwrap();
        assert!(!config.kafka.enabled(), "Kafka is off by default");
        let config = Loader::new()
            .env(env(&[
                ("SWITCHYARD_KAFKA_BROKERS", "k1:9092, k2:9092"),
                ("SWITCHYARD_KAFKA_CONSUME", "a, b.c ,"),
                ("SWITCHYARD_KAFKA_PRODUCE_EVENTS", "order,cart"),
                ("SWITCHYARD_KAFKA_ACK", "persisted"),
            ]))
            .load()
            .unwrap();
        assert!(config.kafka.enabled());
        assert!(config.kafka.ack_persisted());
        assert_eq!(config.kafka.consume_topics(), vec!["a", "b.c"]);
        assert_eq!(config.kafka.produce_events, vec!["order", "cart"]);
        let refused = |pairs: &[(&str, &str)], key: &str| {
            let mut all = vec![("SWITCHYARD_KAFKA_BROKERS", "k1:9092")];
            all.extend_from_slice(pairs);
            let err = Loader::new().env(env(&all)).load().unwrap_err();
            assert!(err.to_string().starts_with(&format!("{key}: ")), "{err}");
        };
        refused(&[("SWITCHYARD_KAFKA_ACK", "sometimes")], "kafka.ack");
        refused(&[("SWITCHYARD_KAFKA_BROKERS", "no-port")], "kafka.brokers");
        refused(&[("SWITCHYARD_KAFKA_TOPIC", "a topic")], "kafka.topic");
        refused(&[("SWITCHYARD_KAFKA_CONSUME", "ok,b@d")], "kafka.consume");
        refused(&[("SWITCHYARD_KAFKA_QUEUE_MAX", "0")], "kafka.queue_max");
        refused(&[("SWITCHYARD_KAFKA_SPOOL_MAX_BYTES", "10")], "kafka.spool_max_bytes");
        refused(&[("SWITCHYARD_KAFKA_GROUP", "")], "kafka.group");
        // Consuming needs brokers.
        let err = Loader::new().env(env(&[("SWITCHYARD_KAFKA_CONSUME", "a")])).load().unwrap_err();
        assert!(err.to_string().starts_with("kafka.consume: "), "{err}");
    }

    #[test]
    fn environment_names_follow_the_keys() {
        assert_eq!(env_name("tls.cert_file"), "SWITCHYARD_TLS_CERT_FILE");
        assert_eq!(env_name("limits.events_per_second"), "SWITCHYARD_LIMITS_EVENTS_PER_SECOND");
        for (var, key) in LEGACY_ENV {
            assert!(documented_keys().iter().any(|(k, _)| k == key), "{var} maps to unknown key {key}");
        }
    }

    #[test]
    fn redacts_secrets() {
        let mut config = Config::default();
        config.redis.url = "redis://u:p@h/".into();
        let text = config.to_redacted_toml();
        assert!(text.contains("url = \"redis://u:<redacted>@h/\""), "{text}");
        assert!(!text.contains("u:p@"), "{text}");
        assert!(text.contains("[server]"));
        assert!(text.contains("port = 3000"));
        let round: Config = toml::from_str(&text).unwrap();
        assert_eq!(round.server, config.server);
    }

    #[test]
    fn api_key_comes_from_switchyard_api_key_and_is_redacted() {
        assert_eq!(env_name("api.key"), "SWITCHYARD_API_KEY");
        let key = "0123456789abcdef-secret";
        let config = Loader::new().env(env(&[("SWITCHYARD_API_KEY", key)])).load().unwrap();
        assert_eq!(config.api.key, key);
        assert!(config.api.enabled());
        let text = config.to_redacted_toml();
        assert!(!text.contains(key), "{text}");
        assert!(text.contains("[api]\nkey = \"<redacted>\""), "{text}");
        let err = Loader::new().env(env(&[("SWITCHYARD_API_KEY", "short")])).load().unwrap_err();
        assert!(err.to_string().starts_with("api.key: must be at least 16 characters"), "{err}");
        assert!(!Config::default().api.enabled());
    }

    #[test]
    fn subsection_keys_load_from_every_layer() {
        assert!(documented_keys().iter().any(|(k, _)| k == "auth.jwt.secret"));
        assert!(!documented_keys().iter().any(|(k, _)| k == "auth.jwt"), "a subsection is not a key");
        assert_eq!(env_name("auth.jwt.public_key_file"), "SWITCHYARD_AUTH_JWT_PUBLIC_KEY_FILE");
        let f = file("[auth]\ncookie = \"jwt\"\n[auth.jwt]\nissuer = \"https://issuer\"\nleeway_seconds = 5\n");
        let secret = "0123456789abcdef0123456789abcdef";
        let config = Loader::new()
            .file(Some(f.path()))
            .env(env(&[("SWITCHYARD_AUTH_JWT_SECRET", secret)]))
            .flag("auth.jwt.leeway_seconds", 7)
            .load()
            .unwrap();
        assert_eq!(config.auth.cookie, "jwt");
        assert_eq!(config.auth.jwt.issuer, "https://issuer");
        assert_eq!(config.auth.jwt.secret, secret);
        assert_eq!(config.auth.jwt.leeway_seconds, 7, "flag over file");
        assert!(config.auth.enabled());
        let text = config.to_redacted_toml();
        assert!(!text.contains(secret), "{text}");
        assert!(text.contains("[auth.jwt]"), "{text}");
        assert!(text.contains("secret = \"<redacted>\""), "{text}");
        let f = file("[auth.jwt]\nsecrt = \"x\"\n");
        let err = Loader::new().file(Some(f.path())).load().unwrap_err();
        assert!(matches!(&err, ConfigError::UnknownKey { key, .. } if key == "auth.jwt.secrt"), "{err}");
        let f = file("[auth]\njwt = 1\n");
        let err = Loader::new().file(Some(f.path())).load().unwrap_err();
        assert!(err.to_string().starts_with("auth.jwt: must be a table"), "{err}");
        let err = Loader::new().flag("auth.jwt", "x").load().unwrap_err();
        assert_eq!(err.to_string(), "unknown key auth.jwt (from flags)");
    }

    #[test]
    fn auth_rules() {
        let err = Loader::new().flag("auth.jwt.secret", "short").load().unwrap_err();
        assert!(err.to_string().starts_with("auth.jwt.secret: must be at least 32 bytes"), "{err}");
        let err = Loader::new()
            .flag("auth.jwt.secret", "0123456789abcdef0123456789abcdef")
            .flag("auth.jwt.jwks_file", "keys.json")
            .load()
            .unwrap_err();
        assert!(err.to_string().starts_with("auth.jwt.jwks_file: set only one of"), "{err}");
        let err = Loader::new().flag("rooms.default_policy", "maybe").load().unwrap_err();
        assert!(err.to_string().starts_with("rooms.default_policy: "), "{err}");
        let err = Loader::new().flag("auth.exempt_namespaces", "admin").load().unwrap_err();
        assert!(err.to_string().starts_with("auth.exempt_namespaces: "), "{err}");
        let err = Loader::new().flag("auth.cookie", "a b").load().unwrap_err();
        assert!(err.to_string().starts_with("auth.cookie: "), "{err}");
        let err = Loader::new().env(env(&[("SWITCHYARD_AUTH_DEV_TOKEN_ENDPOINT", "true")])).load().unwrap_err();
        assert!(err.to_string().starts_with("auth.dev_token_endpoint: needs auth.jwt.secret"), "{err}");
        let config = Loader::new()
            .flag("auth.jwt.secret", "0123456789abcdef0123456789abcdef")
            .env(env(&[("SWITCHYARD_AUTH_DEV_TOKEN_ENDPOINT", "true")]))
            .load()
            .unwrap();
        assert!(config.auth.dev_token_endpoint);
        assert!(!Config::default().auth.dev_token_endpoint);
        let rooms = RoomsConfig::default();
        assert!(rooms.default_allow(false) && !rooms.default_allow(true), "auto: allow without auth only");
        let config = Loader::new().flag("rooms.default_policy", "deny").load().unwrap();
        assert!(!config.rooms.default_allow(false));
        assert!(!Config::default().auth.enabled());
    }
}
