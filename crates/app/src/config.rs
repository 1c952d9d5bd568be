//! One configuration: a TOML file, `SWITCHYARD_<SECTION>_<KEY>` environment variables and flags, with
//! the precedence flags > environment > file > defaults, parsed into one typed [`Config`].
//!
//! Every key lives in a section (`server.port`, `tls.cert_file`, ...). The list of keys is the
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
    /// Serve the demo chat page at `/`.
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
}

impl Default for SocketIoSection {
    fn default() -> Self {
        let d = switchyard_socketio::SocketIoConfig::default();
        Self { connect_timeout_ms: d.connect_timeout.as_millis() as u64, max_attachments: d.max_attachments }
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
        Ok(())
    }

    /// The configuration as TOML, with secrets replaced by `"<redacted>"` (`switchyard config`).
    pub fn to_redacted_toml(&self) -> String {
        let mut table = match Value::try_from(self) {
            Ok(Value::Table(table)) => table,
            _ => toml::Table::new(),
        };
        for (_, section) in table.iter_mut() {
            if let Value::Table(section) = section {
                for (key, value) in section.iter_mut() {
                    let Some(text) = value.as_str().filter(|s| !s.is_empty()) else { continue };
                    if SECRET_WORDS.iter().any(|w| key.contains(w)) {
                        *value = Value::String("<redacted>".into());
                    } else if key.ends_with("url") {
                        *value = Value::String(redact_url_password(text));
                    }
                }
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
            cors: (!self.cors.origins.is_empty()).then(|| switchyard_engine::CorsConfig {
                origins: self.cors.origins.clone(),
                credentials: self.cors.credentials,
            }),
            allowed_origins: self.limits.allowed_origins.clone(),
            handshakes_per_second_per_ip: self.limits.handshakes_per_second_per_ip,
        }
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

fn keys(table: &toml::Table) -> Vec<String> {
    let mut out = Vec::new();
    for (section, value) in table {
        if let Value::Table(inner) = value {
            out.extend(inner.keys().map(|k| format!("{section}.{k}")));
        }
    }
    out
}

fn lookup<'a>(table: &'a toml::Table, key: &str) -> Option<&'a Value> {
    let (section, name) = key.split_once('.')?;
    table.get(section)?.as_table()?.get(name)
}

fn set(table: &mut toml::Table, key: &str, value: Value) {
    let (section, name) = key.split_once('.').expect("keys have a section");
    let entry = table.entry(section).or_insert_with(|| Value::Table(toml::Table::new()));
    if !entry.is_table() {
        *entry = Value::Table(toml::Table::new());
    }
    if let Value::Table(inner) = entry {
        inner.insert(name.to_string(), value);
    }
}

/// Unknown sections or keys in a file are errors (a typo must not silently fall back to a default).
fn check_keys(table: &toml::Table, source_name: &str) -> Result<(), ConfigError> {
    let defaults = default_table();
    for (section, value) in table {
        let Some(Value::Table(known)) = defaults.get(section) else {
            return Err(ConfigError::UnknownKey { key: section.clone(), source_name: source_name.into() });
        };
        let Value::Table(inner) = value else {
            return Err(ConfigError::Value {
                key: section.clone(),
                reason: "must be a table ([section])".into(),
                source_name: source_name.into(),
            });
        };
        for key in inner.keys() {
            if !known.contains_key(key) {
                return Err(ConfigError::UnknownKey {
                    key: format!("{section}.{key}"),
                    source_name: source_name.into(),
                });
            }
        }
    }
    Ok(())
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
}
