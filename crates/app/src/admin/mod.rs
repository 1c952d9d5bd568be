//! The official Socket.IO Admin UI (`@socket.io/admin-ui` 0.5.1) against Switchyard: the admin
//! namespace (`admin.namespace`, default `/admin`) speaks what the UI expects from Node's
//! `instrument()`, on one server or across a cluster (Node peers included). docs/ADMIN.md has the
//! operator's view; the wire contract is Node's:
//!
//! - login ([`session`]): the CONNECT `auth` object carries `{username, password}` (checked against a
//!   bcrypt hash) or `{sessionId}` from an earlier login; a refusal is CONNECT_ERROR
//!   `{"message":"invalid credentials"}`. A login is answered with `session`(id) right after CONNECT.
//! - on every admin connection: `config` `{supportedFeatures}`, then, in development mode,
//!   `all_sockets` (every namespace's sockets across the cluster, by the adapter's fetch-sockets).
//! - every 2 s, to the admin namespace across the cluster: `server_stats` ([`stats`]).
//! - development mode only, while some admin socket is connected anywhere in the cluster: the live
//!   events of [`live`] (`socket_connected`, `socket_updated`, `socket_disconnected`, `room_joined`,
//!   `room_left`, `event_received`, `event_sent`).
//! - commands ([`commands`]): `join`, `leave`, `_disconnect`, `emit`, through the adapter so they
//!   reach sockets on every node; none in readonly mode.
//!
//! Cost: in production mode no observer is registered at all (the counts come from the engine's own
//! counters and the namespace indexes, read every 2 s). In development mode an observer is
//! registered; while no admin socket is connected in the cluster each hook reads one atomic flag and
//! returns.

mod commands;
mod live;
pub mod session;
mod stats;
pub mod ui;

use crate::config::Config;
use prometheus::{IntCounterVec, Opts, Registry};
use serde_json::{json, Value};
use session::SessionStore;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use switchyard_socketio::{ConnectError, Namespace, Payload, Socket, SocketInfo, SocketIo};

/// The refusal of a login, exactly as Node's `instrument()` words it (the UI compares it).
pub const INVALID_CREDENTIALS: &str = "invalid credentials";
/// How often `server_stats` goes out (Node's interval; the UI calls a server unhealthy after 10 s).
pub const STATS_INTERVAL: Duration = Duration::from_secs(2);
/// A server-side event between Switchyard nodes: "an admin socket is connected to me", sent on each
/// admin connection and every [`STATS_INTERVAL`] while one is, so that every node sends live events.
pub const WATCHING_EVENT: &str = "switchyard:admin-watching";
/// How long one [`WATCHING_EVENT`] keeps a node sending live events.
const WATCHING_FOR: Duration = Duration::from_secs(6);

/// Why the admin namespace could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error(transparent)]
    UiDir(#[from] ui::UiDirError),
}

/// The username and bcrypt hash of `admin.auth = "basic"`.
struct Basic {
    username: String,
    hash: Arc<str>,
}

/// A session id minted by the login middleware, sent as `session` once the socket is connected.
#[derive(Clone)]
struct NewSession(String);

/// The admin namespace of this server.
pub struct Admin {
    inner: Arc<Inner>,
    ui_dir: Option<std::path::PathBuf>,
}

pub(crate) struct Inner {
    io: SocketIo,
    ns: Arc<Namespace>,
    dev: bool,
    readonly: bool,
    server_id: String,
    hostname: String,
    started: Instant,
    auth: Option<Basic>,
    sessions: Arc<dyn SessionStore>,
    /// Admin sockets connected to this node.
    local_admins: AtomicUsize,
    /// Until when (ms since `started`) another node has an admin socket connected.
    remote_until_ms: AtomicU64,
    /// Whether live events are wanted: the one thing the observer's hooks read when nobody watches.
    watching: AtomicBool,
    stats: stats::StatsState,
    counters: Counters,
}

/// `switchyard_admin_*` counters.
struct Counters {
    logins: IntCounterVec,
    commands: IntCounterVec,
    errors: IntCounterVec,
}

impl Counters {
    fn new() -> Counters {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric")
        };
        Counters {
            logins: vec("switchyard_admin_logins_total", "Admin namespace connections, by outcome.", &["outcome"]),
            commands: vec(
                "switchyard_admin_commands_total",
                "Admin UI commands (join, leave, _disconnect, emit), by outcome.",
                &["command", "outcome"],
            ),
            errors: vec(
                "switchyard_admin_errors_total",
                "Admin operations that failed (session store, cluster requests), by operation.",
                &["operation"],
            ),
        }
    }
}

impl Admin {
    /// The admin namespace `config` asks for (`None` unless `admin.enabled`): its login, its handlers
    /// and, in development mode, its observer. The stats timer starts with [`Admin::start`].
    pub fn new(config: &Config, io: &SocketIo) -> Result<Option<Arc<Admin>>, AdminError> {
        let c = &config.admin;
        if !c.enabled {
            return Ok(None);
        }
        let ui_dir = if c.ui_dir.is_empty() { None } else { Some(ui::check_dir(&c.ui_dir)?) };
        let ttl = Duration::from_millis(c.session_ttl_ms);
        let sessions: Arc<dyn SessionStore> = match config.redis.target() {
            Some(target) => Arc::new(session::RedisStore::new(target, ttl)),
            None => session::MemoryStore::new(ttl),
        };
        let hostname = hostname();
        let server_id =
            if c.server_id.is_empty() { format!("{hostname}:{}", config.server.port) } else { c.server_id.clone() };
        let auth =
            (c.auth == "basic").then(|| Basic { username: c.username.clone(), hash: c.password_hash.as_str().into() });
        if auth.is_none() {
            tracing::warn!(namespace = %c.namespace, "admin.auth = \"none\": anyone reaching this port can use the admin UI");
        }
        let ns = io.of(&c.namespace);
        let inner = Arc::new(Inner {
            io: io.clone(),
            ns: ns.clone(),
            dev: c.mode == "development",
            readonly: c.readonly,
            server_id,
            hostname,
            started: Instant::now(),
            auth,
            sessions,
            local_admins: AtomicUsize::new(0),
            remote_until_ms: AtomicU64::new(0),
            watching: AtomicBool::new(false),
            stats: stats::StatsState::default(),
            counters: Counters::new(),
        });
        let login = inner.clone();
        ns.use_middleware(move |socket| {
            let inner = login.clone();
            async move { inner.authenticate(&socket).await }
        });
        let connected = inner.clone();
        ns.on_connection(move |socket| connected.on_admin_connection(socket));
        let watched = inner.clone();
        ns.on_server_side(WATCHING_EVENT, move |_payload, _ack| watched.remote_watcher());
        if inner.dev {
            io.observe(Arc::new(live::LiveEvents(inner.clone())));
        }
        tracing::info!(
            namespace = %c.namespace,
            mode = %c.mode,
            readonly = c.readonly,
            server_id = %inner.server_id,
            ui = ui_dir.is_some(),
            "admin UI namespace enabled"
        );
        Ok(Some(Arc::new(Admin { inner, ui_dir })))
    }

    /// Starts the `server_stats` timer (one now, then every 2 s); it stops when the handle drops.
    pub fn start(&self) -> tokio::task::JoinHandle<()> {
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(STATS_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                inner.refresh_watching();
                if inner.dev {
                    if inner.local_admins.load(Ordering::Relaxed) > 0 {
                        inner.announce_watching();
                    } else {
                        inner.look_for_watchers();
                    }
                }
                inner.emit_stats();
            }
        })
    }

    /// The routes serving `admin.ui_dir` at `/admin/`, when it is set.
    pub fn ui_routes(&self) -> Option<axum::Router> {
        self.ui_dir.clone().map(ui::routes)
    }

    /// The admin namespace.
    pub fn namespace(&self) -> &Arc<Namespace> {
        &self.inner.ns
    }

    /// The features advertised in `config`.
    pub fn features(&self) -> Vec<&'static str> {
        self.inner.features()
    }

    /// Registers `switchyard_admin_logins_total{outcome}`, `switchyard_admin_commands_total{command,
    /// outcome}` and `switchyard_admin_errors_total{operation}`.
    pub fn register_metrics(&self, registry: &Registry) -> prometheus::Result<()> {
        let c = &self.inner.counters;
        registry.register(Box::new(c.logins.clone()))?;
        registry.register(Box::new(c.commands.clone()))?;
        registry.register(Box::new(c.errors.clone()))
    }
}

impl Inner {
    fn features(&self) -> Vec<&'static str> {
        let mut features = Vec::new();
        if !self.readonly {
            features.extend(["EMIT", "JOIN", "LEAVE", "DISCONNECT", "MJOIN", "MLEAVE", "MDISCONNECT"]);
        }
        features.push("AGGREGATED_EVENTS");
        if self.dev {
            features.push("ALL_EVENTS");
        }
        features
    }

    fn is_admin_ns(&self, ns: &Namespace) -> bool {
        std::ptr::eq(ns, &*self.ns)
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Whether live events go out now (development mode, someone watching in the cluster).
    #[inline]
    pub(crate) fn watching(&self) -> bool {
        self.watching.load(Ordering::Relaxed)
    }

    fn refresh_watching(&self) {
        let watching = self.local_admins.load(Ordering::Relaxed) > 0
            || self.remote_until_ms.load(Ordering::Relaxed) > self.now_ms();
        self.watching.store(watching, Ordering::Relaxed);
    }

    /// Another node has an admin socket connected.
    fn remote_watcher(&self) {
        let until = self.now_ms() + WATCHING_FOR.as_millis() as u64;
        self.remote_until_ms.fetch_max(until, Ordering::Relaxed);
        self.watching.store(true, Ordering::Relaxed);
    }

    /// Tells the other nodes that an admin socket is connected here (nothing on one server).
    fn announce_watching(self: &Arc<Self>) {
        let inner = self.clone();
        tokio::spawn(async move {
            let payload = Payload::new(vec![Value::String(inner.server_id.clone())]);
            if let Err(e) = inner.ns.server_side_emit(WATCHING_EVENT, payload, None).await {
                inner.counters.errors.with_label_values(&["announce"]).inc();
                tracing::debug!(error = %e, "admin: announcing the admin connection to the cluster");
            }
        });
    }

    /// Asks the cluster whether an admin socket is connected anywhere (a Node server instrumented
    /// with `@socket.io/admin-ui` sends no announcement of its own): one fetch-sockets request on the
    /// admin namespace per stats interval, only while none is connected here. On one server it
    /// reads the local index.
    fn look_for_watchers(self: &Arc<Self>) {
        let inner = self.clone();
        tokio::spawn(async move {
            match inner.ns.broadcast().fetch_sockets().await {
                Ok(sockets) if !sockets.is_empty() => inner.remote_watcher(),
                Ok(_) => {}
                Err(e) => {
                    inner.counters.errors.with_label_values(&["fetch_sockets"]).inc();
                    tracing::debug!(error = %e, "admin: asking the cluster for admin sockets");
                }
            }
        });
    }

    /// Emits `event` to every admin socket of the cluster.
    fn broadcast(&self, event: &str, args: Vec<Value>) {
        self.ns.emit(event, Payload::new(args));
    }

    /// The connect middleware of the admin namespace (Node's `instrument()` login).
    async fn authenticate(&self, socket: &Arc<Socket>) -> Result<(), ConnectError> {
        let Some(basic) = &self.auth else {
            self.counters.logins.with_label_values(&["open"]).inc();
            return Ok(());
        };
        let auth = socket.auth();
        if let Some(id) = auth.get("sessionId").and_then(Value::as_str).filter(|id| !id.is_empty()) {
            match self.sessions.exists(id).await {
                Ok(true) => {
                    self.counters.logins.with_label_values(&["session"]).inc();
                    return Ok(());
                }
                Ok(false) => {}
                Err(e) => {
                    self.counters.errors.with_label_values(&["session_lookup"]).inc();
                    tracing::warn!(error = %e, "admin: looking up a session");
                }
            }
        }
        let username = auth.get("username").and_then(Value::as_str);
        let password = auth.get("password").and_then(Value::as_str);
        if let (Some(username), Some(password)) = (username, password) {
            let name_ok: bool = subtle::ConstantTimeEq::ct_eq(username.as_bytes(), basic.username.as_bytes()).into();
            // bcrypt takes tens of milliseconds on purpose: off the runtime's worker threads.
            let (hash, password) = (basic.hash.clone(), password.to_string());
            let verified = tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
                .await
                .unwrap_or(false);
            if name_ok && verified {
                let id = new_session_id();
                if let Err(e) = self.sessions.save(&id).await {
                    // The login itself stands; only a later reconnect by session id will fail.
                    self.counters.errors.with_label_values(&["session_save"]).inc();
                    tracing::warn!(error = %e, "admin: saving a session");
                }
                socket.extensions().insert(NewSession(id));
                self.counters.logins.with_label_values(&["password"]).inc();
                return Ok(());
            }
        }
        self.counters.logins.with_label_values(&["refused"]).inc();
        tracing::info!(address = %socket.handshake().address(), "admin: invalid credentials");
        Err(ConnectError::new(INVALID_CREDENTIALS))
    }

    fn on_admin_connection(self: &Arc<Self>, socket: Arc<Socket>) {
        self.local_admins.fetch_add(1, Ordering::Relaxed);
        self.watching.store(self.dev, Ordering::Relaxed);
        if self.dev {
            self.announce_watching();
        }
        let inner = self.clone();
        socket.on_disconnect(move |_socket, _reason| {
            inner.local_admins.fetch_sub(1, Ordering::Relaxed);
            inner.refresh_watching();
        });
        if let Some(NewSession(id)) = socket.extensions().remove::<NewSession>() {
            let _ = socket.emit("session", id);
        }
        let _ = socket.emit("config", json!({ "supportedFeatures": self.features() }));
        commands::register(self, &socket);
        if self.dev {
            let inner = self.clone();
            tokio::spawn(async move {
                let sockets = inner.all_sockets().await;
                let _ = socket.emit("all_sockets", Value::Array(sockets));
            });
        }
    }

    /// Every socket of every namespace across the cluster, as the UI's `all_sockets` wants them.
    async fn all_sockets(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut namespaces = self.io.namespaces();
        namespaces.sort_by(|a, b| a.name().cmp(b.name()));
        for ns in namespaces {
            let infos = match ns.broadcast().fetch_sockets().await {
                Ok(infos) => infos,
                Err(e) => {
                    // The cluster did not answer in time: this node's sockets at least.
                    self.counters.errors.with_label_values(&["fetch_sockets"]).inc();
                    tracing::warn!(nsp = %ns.name(), error = %e, "admin: fetching the cluster's sockets; showing this node's");
                    ns.local_sockets().iter().map(|s| s.info()).collect()
                }
            };
            for info in infos {
                let local = info.local.then(|| switchyard_socketio::Sid::parse(&info.id)).flatten();
                match local.and_then(|sid| ns.get_socket(&sid)) {
                    Some(socket) => out.push(serialize(&socket)),
                    None => out.push(serialize_remote(&info)),
                }
            }
        }
        out
    }
}

/// 8 random bytes as 16 hex digits, as Node's `instrument()` makes session ids.
fn new_session_id() -> String {
    use rand::RngCore;
    let mut raw = [0u8; 8];
    rand::thread_rng().fill_bytes(&mut raw);
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

/// This machine's host name (the UI's "Hostname" column and the default server id).
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// The key Node's `instrument()` keeps in `socket.data` (clientId, transport), so that servers that
/// fetch this socket can show it; never shown as data.
pub(crate) const ADMIN_DATA_KEY: &str = "_admin";

fn transport_name(socket: &Socket) -> &'static str {
    match socket.client().connection().transport() {
        switchyard_engine::TransportKind::Polling => "polling",
        switchyard_engine::TransportKind::WebSocket => "websocket",
    }
}

fn client_id(socket: &Socket) -> String {
    socket.client().connection().sid().as_str()[..12].to_string()
}

/// `data` without the `_admin` key.
fn visible_data(data: Value) -> Value {
    match data {
        Value::Object(mut map) => {
            map.remove(ADMIN_DATA_KEY);
            Value::Object(map)
        }
        Value::Null => Value::Object(Default::default()),
        other => other,
    }
}

/// Node's handshake object as the UI shows it: no `auth`, `address` from `cf-connecting-ip` first.
fn handshake_for_ui(mut handshake: Value) -> Value {
    if let Value::Object(map) = &mut handshake {
        map.remove("auth");
        let forwarded =
            map.get("headers").and_then(|h| h.get("cf-connecting-ip").or_else(|| h.get("x-forwarded-for"))).cloned();
        if let Some(address) = forwarded {
            map.insert("address".into(), address);
        }
        for key in ["headers", "query"] {
            if !map.get(key).is_some_and(Value::is_object) {
                map.insert(key.into(), Value::Object(Default::default()));
            }
        }
    }
    handshake
}

/// A local socket as the UI's `SerializedSocket`.
pub(crate) fn serialize(socket: &Socket) -> Value {
    json!({
        "id": socket.id().as_str(),
        "clientId": client_id(socket),
        "transport": transport_name(socket),
        "nsp": socket.ns().name(),
        "data": visible_data(socket.data()),
        "handshake": handshake_for_ui(socket.handshake().to_json(&Value::Null)),
        "rooms": socket.rooms().iter().map(|r| r.to_string()).collect::<Vec<_>>(),
    })
}

/// A socket on another node (Switchyard or Node): clientId and transport from its `data._admin`
/// when that node keeps one; otherwise the socket id's first 12 characters and "websocket".
fn serialize_remote(info: &SocketInfo) -> Value {
    let admin = info.data.get(ADMIN_DATA_KEY);
    let client_id = admin
        .and_then(|a| a.get("clientId"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| info.id.chars().take(12).collect());
    let transport = admin.and_then(|a| a.get("transport")).and_then(Value::as_str).unwrap_or("websocket");
    json!({
        "id": info.id,
        "clientId": client_id,
        "transport": transport,
        "nsp": info.nsp,
        "data": visible_data(info.data.clone()),
        "handshake": handshake_for_ui(info.handshake.clone()),
        "rooms": info.rooms,
    })
}

/// Now as ISO-8601 UTC with milliseconds (a JavaScript `Date` in JSON), the timestamp of live events.
pub(crate) fn iso_now() -> String {
    iso_date(SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default())
}

fn iso_date(since_epoch: Duration) -> String {
    let secs = i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX);
    switchyard_engine::protocol::cluster::msgpack::iso_time(secs, since_epoch.subsec_nanos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates_match_javascript() {
        assert_eq!(iso_date(Duration::from_millis(0)), "1970-01-01T00:00:00.000Z");
        // new Date(1714557600123).toISOString()
        assert_eq!(iso_date(Duration::from_millis(1_714_557_600_123)), "2024-05-01T10:00:00.123Z");
        assert_eq!(iso_date(Duration::from_millis(951_782_400_000)), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn session_ids_are_16_hex_digits() {
        let id = new_session_id();
        assert_eq!(id.len(), 16);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(id, new_session_id());
    }

    #[test]
    fn remote_sockets_take_node_admin_data() {
        let info = SocketInfo {
            id: "abcdefghijklmnopqrst".into(),
            nsp: "/".into(),
            handshake: json!({"headers": {"x-forwarded-for": "10.0.0.1"}, "address": "::1", "auth": {"t": 1}}),
            rooms: vec!["abcdefghijklmnopqrst".into(), "r".into()],
            data: json!({"_admin": {"clientId": "0123456789ab", "transport": "polling"}, "user": "u"}),
            local: false,
        };
        let v = serialize_remote(&info);
        assert_eq!(v["clientId"], "0123456789ab");
        assert_eq!(v["transport"], "polling");
        assert_eq!(v["data"], json!({"user": "u"}));
        assert_eq!(v["handshake"]["address"], "10.0.0.1");
        assert!(v["handshake"].get("auth").is_none());
        assert_eq!(v["handshake"]["query"], json!({}));
        let bare = SocketInfo { data: Value::Null, ..info };
        let v = serialize_remote(&bare);
        assert_eq!(v["clientId"], "abcdefghijkl");
        assert_eq!(v["data"], json!({}));
    }
}

#[cfg(test)]
mod config_tests {
    use crate::config::Loader;

    fn load(flags: &[(&str, &str)]) -> Result<crate::config::Config, String> {
        let mut loader = Loader::new().flag("admin.enabled", "true");
        for (key, value) in flags {
            loader = loader.flag(key, value);
        }
        loader.load().map_err(|e| e.to_string())
    }

    const HASH: &str = "$2b$10$nu1FHRkuxkZkqID.31gz4uQsyERZAn.m4IIruysTsHDODBtrqS5Me";

    #[test]
    fn the_admin_section_is_checked_at_startup() {
        let err = load(&[]).unwrap_err();
        assert!(err.contains("admin.username"), "{err}");
        let err = load(&[("admin.username", "admin"), ("admin.password_hash", "changeit")]).unwrap_err();
        assert!(err.contains("admin.password_hash") && err.contains("bcrypt"), "{err}");
        load(&[("admin.username", "admin"), ("admin.password_hash", HASH)]).unwrap();
        load(&[("admin.auth", "none")]).unwrap();
        for (key, value) in [
            ("admin.auth", "digest"),
            ("admin.mode", "debug"),
            ("admin.namespace", "admin"),
            ("admin.namespace", "/"),
            ("admin.cors_origin", "*"),
            ("admin.cors_origin", "https://admin.socket.io/"),
        ] {
            let err = load(&[("admin.auth", "none"), (key, value)]).unwrap_err();
            assert!(err.contains(key), "{key}={value}: {err}");
        }
    }

    #[test]
    fn the_admin_origin_is_allowed_exactly() {
        let config = load(&[("admin.auth", "none"), ("admin.cors_origin", "https://admin.socket.io")]).unwrap();
        let cors = config.engine_config().cors.expect("cors on");
        assert_eq!(cors.allow_origin(Some("https://admin.socket.io")).as_deref(), Some("https://admin.socket.io"));
        assert_eq!(cors.allow_origin(Some("https://evil.example")), None);
        assert!(config.engine_config().allowed_origins.is_empty(), "no origin list imposed");
        let config = load(&[
            ("admin.auth", "none"),
            ("admin.cors_origin", "https://admin.socket.io"),
            ("limits.allowed_origins", "https://app.example"),
        ])
        .unwrap();
        assert_eq!(config.engine_config().allowed_origins, vec!["https://app.example", "https://admin.socket.io"]);
        let off = Loader::new().flag("admin.cors_origin", "https://admin.socket.io").load().unwrap();
        assert!(off.engine_config().cors.is_none(), "only with admin.enabled");
    }
}
