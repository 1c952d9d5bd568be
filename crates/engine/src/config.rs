use std::time::Duration;

/// Engine.IO server options; the defaults are those of the Node implementation.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    pub upgrade_timeout: Duration,
    /// Largest accepted message or polling body (`maxHttpBufferSize`).
    pub max_payload: usize,
    /// Bytes queued for one connection before it is disconnected as too slow.
    pub max_queue_bytes: usize,
    pub allow_polling: bool,
    pub allow_websocket: bool,
    pub allow_upgrades: bool,
    /// Also accept Engine.IO v3 clients (`EIO=3`: Socket.IO v2 clients), as Node's `allowEIO3`. Off by
    /// default; when off such a handshake gets `{"code":5,"message":"Unsupported protocol version"}`.
    pub allow_eio3: bool,
    pub cors: Option<CorsConfig>,
    /// Origins allowed to open a session (polling handshake) or a WebSocket (new or upgrade). Empty:
    /// any. A request whose `Origin` header is present and not listed is refused with 403 and
    /// `{"code":4,"message":"Forbidden"}` before any session exists; a request without `Origin` (a
    /// native, non-browser client) is allowed. Compared exactly (`https://example.com`, no path).
    pub allowed_origins: Vec<String>,
    /// New sessions per second per client IP, with a burst of as many (0: no limit). Over it, a
    /// handshake (polling open or direct WebSocket) is refused with 429 and
    /// `{"code":3,"message":"Too many handshakes"}`. The client IP is the peer address.
    pub handshakes_per_second_per_ip: u32,
    /// WebSocket per-message compression (RFC 7692 permessage-deflate), negotiated with clients that
    /// offer it; off by default, as in Node. The server never keeps a compression context
    /// (`server_no_context_takeover`), so a broadcast is compressed once for every recipient.
    pub per_message_deflate: bool,
    /// Messages (Engine.IO packets) shorter than this many bytes are sent uncompressed (Node: 1024).
    pub per_message_deflate_threshold: usize,
    /// Let clients keep their compression context between messages: better compression of what they
    /// send, for an inflater (about 40 KB) kept by each connection once it has sent a compressed
    /// message. Off: the answer asks for `client_no_context_takeover` and no connection keeps one.
    pub per_message_deflate_client_context_takeover: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            ping_interval: Duration::from_millis(25_000),
            ping_timeout: Duration::from_millis(20_000),
            upgrade_timeout: Duration::from_millis(10_000),
            max_payload: 1_000_000,
            max_queue_bytes: 4 * 1024 * 1024,
            allow_polling: true,
            allow_websocket: true,
            allow_upgrades: true,
            allow_eio3: false,
            cors: None,
            allowed_origins: Vec::new(),
            handshakes_per_second_per_ip: 0,
            per_message_deflate: false,
            per_message_deflate_threshold: 1024,
            per_message_deflate_client_context_takeover: false,
        }
    }
}

/// Cross-origin settings for the polling transport.
#[derive(Debug, Clone)]
pub struct CorsConfig {
    /// Allowed origins; `*` allows any.
    pub origins: Vec<String>,
    pub credentials: bool,
}

impl CorsConfig {
    pub fn any() -> Self {
        Self { origins: vec!["*".into()], credentials: false }
    }

    /// The `Access-Control-Allow-Origin` value for a request from `origin`, if allowed.
    pub fn allow_origin(&self, origin: Option<&str>) -> Option<String> {
        if self.origins.iter().any(|o| o == "*") {
            return Some(match (self.credentials, origin) {
                (true, Some(o)) => o.to_string(),
                _ => "*".to_string(),
            });
        }
        let origin = origin?;
        self.origins.iter().any(|o| o == origin).then(|| origin.to_string())
    }
}

impl EngineConfig {
    /// Whether a handshake with this `Origin` header may go on (see [`EngineConfig::allowed_origins`]).
    pub fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match origin {
            None => true,
            Some(_) if self.allowed_origins.is_empty() => true,
            Some(origin) => self.allowed_origins.iter().any(|o| o.as_bytes() == origin),
        }
    }
}
