use crate::connection::{CloseReason, ConnShared, Connection, Farewell, Protocol, TransportKind};
use crate::frame::Frame;
use crate::http_util::{self, Body, EngineError, EngineQuery};
use crate::sid::Sid;
use crate::stats::EngineStats;
use crate::{EngineConfig, Handler, OpenRequest};
use bytes::{Bytes, BytesMut};
use http::{header, Method, Request, Response, StatusCode};
use parking_lot::{Mutex, RwLock};
use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use switchyard_protocol::engine::{self as eio, PacketType};
use tokio::sync::Notify;

/// The client's address, put into request extensions by the server that accepted the connection.
#[derive(Debug, Clone, Copy)]
pub struct RemoteAddr(pub std::net::SocketAddr);

/// A polling session the engine can find by sid.
pub(crate) struct Session<C> {
    pub(crate) conn: Arc<Connection>,
    pub(crate) client: Arc<C>,
}

/// The Engine.IO server. Cheap to share; [`Engine::service`] mounts it in hyper or axum.
pub struct Engine<H: Handler> {
    pub(crate) config: EngineConfig,
    pub(crate) handler: H,
    pub(crate) sessions: RwLock<HashMap<Sid, Arc<Session<H::Client>>>>,
    pub(crate) stats: Arc<EngineStats>,
    /// The settings and counters every connection points to.
    conn_shared: Arc<ConnShared>,
    /// Per-IP handshake buckets, only when the handshake rate is limited.
    handshakes: Option<crate::limits::HandshakeLimiter>,
    /// Every open connection, both transports: what a graceful shutdown closes and waits for.
    /// Touched once when a connection opens and once when it ends, never per message.
    live: Mutex<LiveConnections>,
    /// Woken when the last open connection ends.
    idle: Notify,
    /// The heartbeat task of this engine's WebSocket connections is running (see `heartbeat_scan`).
    heartbeat_running: AtomicBool,
}

/// Every open connection, in numbered slots; each connection keeps its slot number, so it is
/// found again without a lookup. Costs a pointer per connection (a map keyed by sid cost several
/// times that, on every idle connection).
#[derive(Default)]
struct LiveConnections {
    slots: Vec<Option<Arc<Connection>>>,
    free: Vec<u32>,
    count: usize,
}

impl LiveConnections {
    fn insert(&mut self, conn: &Arc<Connection>) {
        let slot = match self.free.pop() {
            Some(slot) => slot,
            None => {
                self.slots.push(None);
                (self.slots.len() - 1) as u32
            }
        };
        self.slots[slot as usize] = Some(conn.clone());
        conn.set_live_slot(slot);
        self.count += 1;
    }

    fn remove(&mut self, conn: &Arc<Connection>) {
        let slot = conn.live_slot();
        if let Some(entry) = self.slots.get_mut(slot as usize) {
            if entry.as_ref().is_some_and(|c| Arc::ptr_eq(c, conn)) {
                *entry = None;
                self.free.push(slot);
                self.count -= 1;
            }
        }
    }
}

impl<H: Handler> Engine<H> {
    pub fn new(config: EngineConfig, handler: H) -> Arc<Self> {
        if config.per_message_deflate {
            crate::frame::enable_shared_deflate(config.per_message_deflate_threshold);
        }
        let handshakes = (config.handshakes_per_second_per_ip > 0).then(|| {
            crate::limits::HandshakeLimiter::new(
                config.handshakes_per_second_per_ip,
                crate::limits::HandshakeLimiter::DEFAULT_MAX_ENTRIES,
            )
        });
        let stats = Arc::<EngineStats>::default();
        let conn_shared = ConnShared::new(&config, stats.clone());
        Arc::new(Engine {
            config,
            handler,
            sessions: RwLock::default(),
            stats,
            conn_shared,
            handshakes,
            live: Mutex::default(),
            idle: Notify::new(),
            heartbeat_running: AtomicBool::new(false),
        })
    }

    /// Drives the heartbeat of `conn` (a WebSocket that owns its connection) from this engine's one
    /// heartbeat task instead of a timer in the connection's task: a `Sleep` in every connection's
    /// long-lived future cost more than a hundred bytes per idle connection. Starts that task on the
    /// first call (from inside the runtime).
    pub(crate) fn drive_heartbeat(self: &Arc<Self>, conn: &Connection) {
        conn.set_engine_heartbeat();
        if !self.heartbeat_running.swap(true, Ordering::AcqRel) {
            tokio::spawn(heartbeat_task(Arc::downgrade(self)));
        }
    }

    /// How late the heartbeat task may look at a connection: an eighth of the shorter of the ping
    /// interval and the ping timeout, within 5 ms..1 s (1 s with the defaults, 25 s and 20 s). A ping
    /// goes out at most this late, and an overdue pong is noticed at most this late; the pong deadline
    /// itself counts from when the ping was due, never from when it was sent.
    pub(crate) fn heartbeat_step(&self) -> std::time::Duration {
        let shorter = self.config.ping_interval.min(self.config.ping_timeout);
        (shorter / 8).clamp(std::time::Duration::from_millis(5), std::time::Duration::from_secs(1))
    }

    /// One pass of the heartbeat task over the open connections it drives: pings that are due go
    /// out, connections whose pong is overdue close (`ping timeout`). Returns when to look again:
    /// the earliest deadline seen, no sooner than one step from now and no later than one ping
    /// interval (every deadline set after this pass, by a pong or a new connection, is at least
    /// a ping interval away). One pass per step costs a lock and a comparison per connection.
    pub(crate) fn heartbeat_scan(&self, now: tokio::time::Instant) -> tokio::time::Instant {
        let mut next = now + self.config.ping_interval;
        let live = self.live.lock();
        for conn in live.slots.iter().flatten() {
            if let Some(deadline) = conn.engine_heartbeat_step(now) {
                next = next.min(deadline);
            }
        }
        drop(live);
        next.max(now + self.heartbeat_step())
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    pub fn handler(&self) -> &H {
        &self.handler
    }

    pub fn stats(&self) -> &Arc<EngineStats> {
        &self.stats
    }

    /// A tower `Service` answering Engine.IO requests, for `axum::Router::route_service` or hyper.
    pub fn service(self: &Arc<Self>) -> EngineService<H> {
        EngineService { engine: self.clone() }
    }

    /// Closes every open connection for `reason` (see [`Connection::close`]): each flushes what is
    /// already queued, then its transport closes (a WebSocket with close code 1001 when `reason` is
    /// [`CloseReason::ServerShutdown`]; over polling, the next poll gets the queue, then the close
    /// packet). The layer above sees `reason` in `Handler::on_close`. Returns how many were open.
    pub fn close_all(&self, reason: CloseReason) -> usize {
        let open: Vec<Arc<Connection>> = self.live.lock().slots.iter().flatten().cloned().collect();
        for conn in &open {
            conn.close(reason);
        }
        open.len()
    }

    /// Ends at once the polling sessions that a server close left waiting for their last poll (at
    /// most a heartbeat window otherwise). For a graceful shutdown, once no poll can arrive any more:
    /// the listener is closed and the open HTTP requests have finished.
    pub fn end_lingering_sessions(&self) {
        let sessions: Vec<Arc<Connection>> = self.sessions.read().values().map(|s| s.conn.clone()).collect();
        for conn in sessions {
            let closed = conn.with_state(|s| {
                if s.closed.is_some() {
                    s.farewell_sent = true;
                }
                s.closed.is_some()
            });
            if closed {
                conn.owner_wake.notify_one();
            }
        }
    }

    /// Connections opened and not yet ended (their task still running or `on_close` not yet called).
    pub fn live_connections(&self) -> usize {
        self.live.lock().count
    }

    /// Resolves once no connection is open (every connection task ended and `on_close` ran).
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.live.lock().count == 0 {
                return;
            }
            notified.await;
        }
    }

    /// Number of sessions currently on the polling transport.
    pub fn polling_sessions(&self) -> usize {
        self.sessions.read().len()
    }

    pub(crate) fn cors_origin(&self, req_origin: Option<&str>) -> Option<String> {
        self.config.cors.as_ref().and_then(|c| c.allow_origin(req_origin))
    }

    /// Opens a connection: queues the handshake packet and hands the connection to the handler.
    pub(crate) fn open(&self, transport: TransportKind, req: OpenRequest) -> (Arc<Connection>, Arc<H::Client>) {
        let sid = Sid::random();
        let conn = Connection::new(sid, transport, req.protocol, self.conn_shared.clone());
        let upgrades: &[&str] =
            if transport == TransportKind::Polling && self.config.allow_websocket && self.config.allow_upgrades {
                &["websocket"]
            } else {
                &[]
            };
        let mut open = BytesMut::with_capacity(128);
        eio::encode_open(
            sid.as_str(),
            upgrades,
            self.config.ping_interval.as_millis() as u64,
            self.config.ping_timeout.as_millis() as u64,
            self.config.max_payload as u64,
            &mut open,
        );
        // The digit is part of `open`; Frame::text adds its own, so pass the rest.
        let frame = Frame::text(PacketType::Open, open.len(), |b| b.extend_from_slice(&open[1..]));
        let _ = conn.send(frame);
        EngineStats::add(&self.stats.connections_opened, 1);
        self.live.lock().insert(&conn);
        let client = self.handler.on_open(conn.clone(), req);
        (conn, client)
    }

    /// The single place a connection ends: tells the handler, exactly once per connection.
    pub(crate) fn finish(&self, conn: &Arc<Connection>, client: &Arc<H::Client>, reason: CloseReason) {
        conn.close_with(reason, None);
        let reason = conn.closed_reason().unwrap_or(reason);
        // Sessions that started on polling stay findable after an upgrade, so that late polls and
        // second WebSockets for the same sid get Node's answers.
        if self.sessions.read().contains_key(&conn.sid()) {
            self.sessions.write().remove(&conn.sid());
        }
        EngineStats::add(&self.stats.connections_closed, 1);
        EngineStats::add(&self.stats.closed_by_reason[reason.index()], 1);
        self.handler.on_close(client, reason);
        let idle = {
            let mut live = self.live.lock();
            live.remove(conn);
            live.count == 0
        };
        if idle {
            self.idle.notify_waiters();
        }
    }

    /// The session `sid`, unless it is over. A session the heartbeat task has not yet closed, but
    /// whose pong deadline has passed, is closed here: the answer to a request never depends on how
    /// promptly that task was scheduled.
    fn find_session(&self, sid: Sid) -> Option<Arc<Session<H::Client>>> {
        let session = self.sessions.read().get(&sid).cloned()?;
        let conn = &session.conn;
        if conn.transport() == TransportKind::Polling
            && !conn.is_closed()
            && conn.heartbeat_expired(tokio::time::Instant::now())
        {
            tracing::debug!(sid = %sid, "pong deadline passed: closing session");
            conn.close(CloseReason::PingTimeout);
        }
        if self.forget_if_over(conn) {
            return None;
        }
        Some(session)
    }

    /// Removes the session of `conn` from the sid map once it is over (see
    /// [`Connection::session_over`]), so that a request after the one that closed it finds no session.
    /// Called before the response that closes the session is sent. Returns true when it is over.
    pub(crate) fn forget_if_over(&self, conn: &Arc<Connection>) -> bool {
        if !conn.with_state(|s| Connection::session_over(s)) {
            return false;
        }
        let mut sessions = self.sessions.write();
        if sessions.get(&conn.sid()).is_some_and(|s| Arc::ptr_eq(&s.conn, conn)) {
            sessions.remove(&conn.sid());
        }
        true
    }

    /// Handles one decoded Engine.IO packet from the client, whatever the transport.
    /// Returns `false` when the connection must close.
    pub(crate) fn on_packet(&self, conn: &Arc<Connection>, client: &Arc<H::Client>, packet: eio::Packet) -> bool {
        match packet.kind {
            PacketType::Message => {
                EngineStats::add(&self.stats.messages_received, 1);
                let len = match &packet.data {
                    eio::PacketData::Binary(b) | eio::PacketData::Text(b) => b.len(),
                    eio::PacketData::Empty => 0,
                };
                EngineStats::add(&self.stats.bytes_received, len as u64);
                let message = match packet.data {
                    eio::PacketData::Binary(b) => crate::Incoming::Binary(b),
                    eio::PacketData::Text(t) => crate::Incoming::Text(t),
                    eio::PacketData::Empty => crate::Incoming::Text(Bytes::new()),
                };
                self.handler.on_message(client, message);
                true
            }
            PacketType::Pong if conn.protocol().is_v3() => {
                tracing::debug!(sid = %conn.sid(), "invalid heartbeat direction: server pong in Engine.IO v3");
                conn.close_with(CloseReason::TransportError, Some(Farewell::Close));
                false
            }
            PacketType::Pong => {
                conn.on_pong();
                true
            }
            PacketType::Ping if conn.protocol().is_v3() => {
                conn.on_client_ping();
                let data = match &packet.data {
                    eio::PacketData::Text(data) => &data[..],
                    _ => &[],
                };
                let _ = conn.send(crate::eio3::pong(data));
                true
            }
            PacketType::Ping => {
                tracing::debug!(sid = %conn.sid(), "invalid heartbeat direction: client ping in Engine.IO v4");
                conn.close_with(CloseReason::TransportError, Some(Farewell::Close));
                false
            }
            PacketType::Close => {
                // The client asked to close: a pending poll ends with a noop, as in Node.
                conn.close_with(CloseReason::TransportClose, Some(Farewell::Noop));
                false
            }
            PacketType::Noop | PacketType::Upgrade => true,
            PacketType::Open => {
                EngineStats::add(&self.stats.protocol_errors, 1);
                conn.close_with(CloseReason::ParseError, Some(Farewell::Close));
                false
            }
        }
    }

    async fn handle<B>(self: Arc<Self>, req: Request<B>) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let req_origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cors = self.cors_origin(req_origin.as_deref());
        let cors = cors.as_deref();
        if req.method() == Method::OPTIONS {
            return self.preflight(cors);
        }
        let query = EngineQuery::parse(req.uri().query());
        let transport = match query.transport {
            Some("polling") if self.config.allow_polling => TransportKind::Polling,
            Some("websocket") if self.config.allow_websocket => TransportKind::WebSocket,
            _ => return http_util::error_response(EngineError::UnknownTransport, cors),
        };
        if (query.sid.is_none() || transport == TransportKind::WebSocket) && !self.check_origin(&req) {
            EngineStats::add(&self.stats.refused_origin, 1);
            return http_util::error_response(EngineError::Forbidden, cors);
        }
        if let Some(sid) = query.sid {
            let session = Sid::parse(sid).and_then(|sid| self.find_session(sid));
            let Some(session) = session else {
                return http_util::error_response(EngineError::UnknownSid, cors);
            };
            return match (transport, req.method()) {
                (TransportKind::Polling, &Method::GET) => self.poll(session, cors).await,
                (TransportKind::Polling, &Method::POST) => self.post(session, req, cors).await,
                (TransportKind::WebSocket, &Method::GET) if self.config.allow_upgrades => {
                    crate::websocket::upgrade(self.clone(), req, Some(session), cors)
                }
                _ => http_util::error_response(EngineError::BadRequest, cors),
            };
        }
        if req.method() != Method::GET {
            return http_util::error_response(EngineError::BadHandshakeMethod, cors);
        }
        match query.eio {
            Some("4") => {}
            Some("3") if self.config.allow_eio3 => {}
            _ => return http_util::error_response(EngineError::UnsupportedProtocolVersion, cors),
        }
        if !self.check_handshake_rate(&req) {
            EngineStats::add(&self.stats.refused_handshake_rate, 1);
            return http_util::too_many_handshakes(cors);
        }
        match transport {
            TransportKind::Polling => self.polling_handshake(req, cors).await,
            TransportKind::WebSocket => crate::websocket::upgrade(self.clone(), req, None, cors),
        }
    }

    /// The `Origin` check of [`EngineConfig::allowed_origins`]; free when no list is configured.
    fn check_origin<B>(&self, req: &Request<B>) -> bool {
        if self.config.allowed_origins.is_empty() {
            return true;
        }
        let origin = req.headers().get(header::ORIGIN).map(|v| v.as_bytes());
        let allowed = self.config.origin_allowed(origin);
        if !allowed {
            tracing::debug!(origin = ?String::from_utf8_lossy(origin.unwrap_or_default()), "handshake refused: origin not allowed");
        }
        allowed
    }

    /// Takes a token from the client IP's handshake bucket, when the handshake rate is limited.
    fn check_handshake_rate<B>(&self, req: &Request<B>) -> bool {
        let (Some(limiter), Some(addr)) = (&self.handshakes, req.extensions().get::<RemoteAddr>()) else {
            return true;
        };
        let ip = addr.0.ip();
        if limiter.check(ip, crate::limits::monotonic_nanos()) {
            return true;
        }
        if limiter.log_ready() {
            tracing::info!(%ip, "handshake refused: too many handshakes from this IP (further refusals for 10 s at debug)");
        } else {
            tracing::debug!(%ip, "handshake refused: too many handshakes from this IP");
        }
        false
    }

    fn preflight(&self, cors: Option<&str>) -> Response<Body> {
        let mut res = http_util::status_response(StatusCode::NO_CONTENT, cors);
        if cors.is_some() {
            let h = res.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::HeaderValue::from_static("GET,HEAD,PUT,PATCH,POST,DELETE"),
            );
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, header::HeaderValue::from_static("content-type"));
        }
        res
    }

    pub(crate) fn open_request<B>(req: &Request<B>, transport: TransportKind) -> OpenRequest {
        // The version was checked against the configuration before any connection opens.
        let query = EngineQuery::parse(req.uri().query());
        let protocol = match query.eio {
            Some("3") => Protocol::V3 { base64: query.b64 },
            _ => Protocol::V4,
        };
        OpenRequest {
            protocol,
            headers: req.headers().clone(),
            uri: req.uri().clone(),
            remote_addr: req.extensions().get::<RemoteAddr>().map(|a| a.0),
            transport,
        }
    }
}

/// The engine as a tower `Service`. Mount it at the Engine.IO path (e.g. `/socket.io/`).
pub struct EngineService<H: Handler> {
    engine: Arc<Engine<H>>,
}

impl<H: Handler> Clone for EngineService<H> {
    fn clone(&self) -> Self {
        EngineService { engine: self.engine.clone() }
    }
}

impl<H, B> tower_service::Service<Request<B>> for EngineService<H>
where
    H: Handler,
    B: http_body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let engine = self.engine.clone();
        Box::pin(async move { Ok(engine.handle(req).await) })
    }
}

impl<H: Handler> Engine<H> {
    pub(crate) fn count_polling(&self, delta: i64) {
        if delta > 0 {
            self.stats.polling_connections.fetch_add(delta as u64, Ordering::Relaxed);
        } else {
            self.stats.polling_connections.fetch_sub((-delta) as u64, Ordering::Relaxed);
        }
    }
}

/// The heartbeat task of one engine's WebSocket connections (see `Engine::heartbeat_scan`). Ends
/// with the engine; if its runtime ends first, the next WebSocket starts a new one.
async fn heartbeat_task<H: Handler>(engine: std::sync::Weak<Engine<H>>) {
    struct Running<H: Handler>(std::sync::Weak<Engine<H>>);
    impl<H: Handler> Drop for Running<H> {
        fn drop(&mut self) {
            if let Some(engine) = self.0.upgrade() {
                engine.heartbeat_running.store(false, Ordering::Release);
            }
        }
    }
    let _running = Running(engine.clone());
    loop {
        let next = match engine.upgrade() {
            Some(engine) => engine.heartbeat_scan(tokio::time::Instant::now()),
            None => return,
        };
        tokio::time::sleep_until(next).await;
    }
}
