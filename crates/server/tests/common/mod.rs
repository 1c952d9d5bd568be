//! Shared setup for the conformance tests: in-process servers on 127.0.0.1:0, and raw HTTP/1.1 and
//! WebSocket clients written here so that every byte on the wire is under the test's control (unmasked
//! frames, fragments, chunked bodies, aborted requests).
//!
//! Every wait is bounded by [`WAIT`]; a test that waits longer fails with what it was waiting for.

#![allow(dead_code)]

use axum::Router;
use base64::Engine as _;
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{CloseReason, Connection, Engine, EngineConfig, Frame, Handler, Incoming, OpenRequest};
use switchyard_socketio::{AckError, ConnectError, Payload, Socket, SocketIo, SocketIoConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// The longest any single step of a test may take. Generous, because the machine is shared.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `fut`, failing the test if it takes longer than [`WAIT`].
pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// True when `fut` is still pending after `delay` (used only to check that a long poll is held open).
pub async fn still_pending<F: Future + Unpin>(fut: &mut F, delay: Duration) -> bool {
    tokio::time::timeout(delay, fut).await.is_err()
}

/// Next item of a channel the server-side handlers report into.
pub async fn next<T>(rx: &mut mpsc::UnboundedReceiver<T>, what: &str) -> T {
    within(what, rx.recv()).await.unwrap_or_else(|| panic!("channel closed while waiting for {what}"))
}

// ---- servers ------------------------------------------------------------------------------------

/// A server serving a router on an ephemeral loopback port until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    _shutdown: oneshot::Sender<()>,
}

pub async fn serve(router: Router) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(async move {
        let _ = switchyard::serve(listener, router, async {
            let _ = rx.await;
        })
        .await;
    });
    TestServer { addr, _shutdown: tx }
}

/// Engine settings for tests that do not exercise heartbeats: pings far enough apart that no `2`
/// lands in the middle of an exact wire assertion.
pub fn engine_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_secs(20),
        ping_timeout: Duration::from_secs(10),
        upgrade_timeout: Duration::from_secs(5),
        max_payload: 1000,
        ..EngineConfig::default()
    }
}

/// Engine settings for heartbeat tests: those of the official conformance suites.
pub fn quick_heartbeat_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..engine_config()
    }
}

/// What the echo handler saw, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EngineEvent {
    Open(String),
    Close(String, CloseReason),
}

/// Engine.IO echo handler: sends every message back, and reports opens and closes.
pub struct Echo {
    events: mpsc::UnboundedSender<EngineEvent>,
}

impl Handler for Echo {
    type Client = Connection;

    fn on_open(&self, conn: Arc<Connection>, _req: OpenRequest) -> Arc<Connection> {
        let _ = self.events.send(EngineEvent::Open(conn.sid().as_str().to_string()));
        conn
    }

    fn on_message(&self, conn: &Arc<Connection>, message: Incoming) {
        let frame = match message {
            Incoming::Text(text) => Frame::message(&text),
            Incoming::Binary(data) => Frame::binary(&data),
        };
        let _ = conn.send(frame);
    }

    fn on_close(&self, conn: &Arc<Connection>, reason: CloseReason) {
        let _ = self.events.send(EngineEvent::Close(conn.sid().as_str().to_string(), reason));
    }
}

pub const EIO_PATH: &str = "/engine.io/";

/// An Engine.IO echo server at `/engine.io/`.
pub struct EchoServer {
    pub addr: SocketAddr,
    pub engine: Arc<Engine<Echo>>,
    events: mpsc::UnboundedReceiver<EngineEvent>,
    _server: TestServer,
}

impl EchoServer {
    pub async fn start(config: EngineConfig) -> EchoServer {
        let (tx, events) = mpsc::unbounded_channel();
        let engine = Engine::new(config, Echo { events: tx });
        let server = serve(Router::new().route_service(EIO_PATH, engine.service())).await;
        EchoServer { addr: server.addr, engine, events, _server: server }
    }

    /// Waits until session `sid` closes and returns why.
    pub async fn closed(&mut self, sid: &str) -> CloseReason {
        loop {
            match next(&mut self.events, &format!("session {sid} to close")).await {
                EngineEvent::Close(closed, reason) if closed == sid => return reason,
                _ => {}
            }
        }
    }

    /// Waits for the next session to open and returns its sid.
    pub async fn opened(&mut self) -> String {
        loop {
            if let EngineEvent::Open(sid) = next(&mut self.events, "a session to open").await {
                return sid;
            }
        }
    }

    /// True when no close has been reported so far (without waiting).
    pub fn no_close_yet(&mut self) -> bool {
        while let Ok(event) = self.events.try_recv() {
            if matches!(event, EngineEvent::Close(..)) {
                return false;
            }
        }
        true
    }

    pub fn polling(&self, sid: &str) -> Polling {
        Polling { addr: self.addr, path: EIO_PATH, sid: sid.to_string() }
    }
}

pub const SIO_PATH: &str = "/socket.io/";

/// Socket.IO settings for most tests: slow heartbeats, the suites' 1 s connect timeout.
pub fn sio_config() -> SocketIoConfig {
    SocketIoConfig {
        engine: EngineConfig { max_payload: 100_000, ..engine_config() },
        connect_timeout: Duration::from_millis(1000),
        ..SocketIoConfig::default()
    }
}

/// A Socket.IO server at `/socket.io/`; `io` stays usable by the test to emit, broadcast and inspect.
pub struct SioServer {
    pub addr: SocketAddr,
    pub io: SocketIo,
    _server: TestServer,
}

impl SioServer {
    /// Starts a server whose namespaces and handlers `setup` registers.
    pub async fn start(config: SocketIoConfig, setup: impl FnOnce(&SocketIo)) -> SioServer {
        let io = SocketIo::new(config);
        setup(&io);
        let server = serve(Router::new().route_service(SIO_PATH, io.service())).await;
        SioServer { addr: server.addr, io, _server: server }
    }

    /// A WebSocket Engine.IO session (open packet read), not yet connected to any namespace.
    pub async fn ws(&self) -> WsClient {
        let (ws, _open) = WsClient::open_session(self.addr, SIO_PATH).await;
        ws
    }

    /// A WebSocket client connected to namespace `nsp` (with `auth` when given); returns it and the
    /// socket id the server sent.
    pub async fn connect(&self, nsp: &str, auth: Option<&str>) -> (WsClient, String) {
        let mut ws = self.ws().await;
        let sid = ws.sio_connect(nsp, auth).await;
        (ws, sid)
    }

    pub fn polling(&self, sid: &str) -> Polling {
        Polling { addr: self.addr, path: SIO_PATH, sid: sid.to_string() }
    }

    /// A client connected to `nsp` whose `auth` event (sent by the reference handlers) was read.
    pub async fn client(&self, nsp: &str) -> (WsClient, String) {
        let (mut ws, sid) = self.connect(nsp, None).await;
        let auth = ws.sio_recv().await;
        assert!(auth.ends_with(r#"["auth",{}]"#), "auth event expected: {auth:?}");
        (ws, sid)
    }
}

/// The CONNECT packet for `nsp` (namespace omitted for `/`), with an optional auth object.
pub fn connect_packet(nsp: &str, auth: Option<&str>) -> String {
    let prefix = if nsp == "/" { String::new() } else { format!("{nsp},") };
    format!("0{prefix}{}", auth.unwrap_or(""))
}

// ---- raw HTTP/1.1 -------------------------------------------------------------------------------

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.body).expect("UTF-8 response body")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("JSON body expected ({e}): {:?}", self.text()))
    }

    /// Asserts an Engine.IO error: status 400, JSON content type and exactly `{"code":..,"message":..}`.
    #[track_caller]
    pub fn assert_engine_error(&self, code: u8, message: &str) {
        assert_eq!(self.status, 400, "status of {:?}", self.text());
        assert_eq!(self.header("content-type"), Some("application/json"));
        assert_eq!(self.json(), serde_json::json!({"code": code, "message": message}));
    }
}

/// Writes `head` and `body` on a new connection; the caller reads the answer (or drops the connection).
pub async fn send_request(addr: SocketAddr, head: &str, body: &[u8]) -> TcpStream {
    let mut stream = within("TCP connect", TcpStream::connect(addr)).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let mut bytes = head.as_bytes().to_vec();
    bytes.extend_from_slice(body);
    within("request write", stream.write_all(&bytes)).await.expect("write request");
    stream
}

/// One request on a fresh connection. Adds `Host` and, unless the caller set a framing header,
/// `Content-Length` for requests with a body or a POST.
pub async fn http(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> HttpResponse {
    let mut head = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let framed = headers
        .iter()
        .any(|(n, _)| n.eq_ignore_ascii_case("content-length") || n.eq_ignore_ascii_case("transfer-encoding"));
    if !framed && (!body.is_empty() || method == "POST") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut stream = send_request(addr, &head, body).await;
    within(&format!("response to {method} {target}"), read_response(&mut stream, &mut Vec::new())).await
}

pub async fn get(addr: SocketAddr, target: &str) -> HttpResponse {
    http(addr, "GET", target, &[], b"").await
}

/// A POST with the content type browsers use for Engine.IO text payloads.
pub async fn post(addr: SocketAddr, target: &str, body: &[u8]) -> HttpResponse {
    http(addr, "POST", target, &[("Content-Type", "text/plain;charset=UTF-8")], body).await
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.unwrap_or(0);
    buf.extend_from_slice(&chunk[..n]);
    n
}

/// Reads a response head; leaves whatever follows it in `buf`.
pub async fn read_head(stream: &mut TcpStream, buf: &mut Vec<u8>) -> (u16, Vec<(String, String)>) {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf).expect("valid HTTP response head") {
            httparse::Status::Complete(len) => {
                let status = response.code.expect("status code");
                let headers = response
                    .headers
                    .iter()
                    .map(|h| (h.name.to_string(), String::from_utf8_lossy(h.value).into_owned()))
                    .collect();
                buf.drain(..len);
                return (status, headers);
            }
            httparse::Status::Partial => {
                if read_more(stream, buf).await == 0 {
                    panic!("connection closed before a complete response head: {:?}", String::from_utf8_lossy(buf));
                }
            }
        }
    }
}

/// Reads one whole response (Content-Length, chunked, or up to the end of the connection).
pub async fn read_response(stream: &mut TcpStream, buf: &mut Vec<u8>) -> HttpResponse {
    let (status, headers) = read_head(stream, buf).await;
    let mut response = HttpResponse { status, headers, body: Vec::new() };
    if status == 101 || status == 204 || status == 304 {
        return response;
    }
    if let Some(len) = response.header("content-length") {
        let len: usize = len.trim().parse().expect("numeric Content-Length");
        while buf.len() < len {
            if read_more(stream, buf).await == 0 {
                panic!("connection closed inside a {len}-byte body");
            }
        }
        response.body = buf.drain(..len).collect();
    } else if response.header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        loop {
            if let Some((body, used)) = decode_chunked(buf) {
                buf.drain(..used);
                response.body = body;
                break;
            }
            if read_more(stream, buf).await == 0 {
                panic!("connection closed inside a chunked body");
            }
        }
    } else {
        while read_more(stream, buf).await > 0 {}
        response.body = std::mem::take(buf);
    }
    response
}

/// A complete chunked body and the bytes it used, or `None` when more is needed.
fn decode_chunked(data: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut body = Vec::new();
    let mut pos = 0;
    loop {
        let line_end = pos + data[pos..].windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[pos..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).expect("chunk size");
        pos = line_end + 2;
        if size == 0 {
            // No trailers are expected: the body ends with an empty line.
            return (data.len() >= pos + 2).then_some((body, pos + 2));
        }
        if data.len() < pos + size + 2 {
            return None;
        }
        body.extend_from_slice(&data[pos..pos + size]);
        pos += size + 2;
    }
}

/// Builds `<path>?EIO=4&transport=<transport>[&sid=<sid>]`.
pub fn eio_url(path: &str, transport: &str, sid: Option<&str>) -> String {
    match sid {
        Some(sid) => format!("{path}?EIO=4&transport={transport}&sid={sid}"),
        None => format!("{path}?EIO=4&transport={transport}"),
    }
}

/// Parses an open packet `0{...}`.
#[track_caller]
pub fn parse_open(packet: &str) -> Value {
    let json = packet.strip_prefix('0').unwrap_or_else(|| panic!("open packet expected, got {packet:?}"));
    serde_json::from_str(json).expect("open packet JSON")
}

/// One polling session, identified by its sid.
#[derive(Clone)]
pub struct Polling {
    pub addr: SocketAddr,
    pub path: &'static str,
    pub sid: String,
}

impl Polling {
    /// Opens a session with a polling handshake; returns it with the handshake's JSON.
    pub async fn open(addr: SocketAddr, path: &'static str) -> (Polling, Value) {
        let res = get(addr, &eio_url(path, "polling", None)).await;
        assert_eq!(res.status, 200, "handshake: {:?}", res.text());
        let open = parse_open(res.text());
        let sid = open["sid"].as_str().expect("sid").to_string();
        (Polling { addr, path, sid }, open)
    }

    pub fn url(&self) -> String {
        eio_url(self.path, "polling", Some(&self.sid))
    }

    pub async fn get(&self) -> HttpResponse {
        get(self.addr, &self.url()).await
    }

    /// A GET that answers 200; returns its body.
    pub async fn poll(&self) -> String {
        let res = self.get().await;
        assert_eq!(res.status, 200, "poll: {:?}", res.text());
        res.text().to_string()
    }

    /// Polls until `count` packets have arrived; returns them in order.
    pub async fn poll_packets(&self, count: usize) -> Vec<String> {
        let mut packets = Vec::new();
        while packets.len() < count {
            packets.extend(self.poll().await.split('\x1e').map(str::to_string));
        }
        assert_eq!(packets.len(), count, "more packets than expected: {packets:?}");
        packets
    }

    /// A GET left running in the background (a long poll).
    pub fn spawn_get(&self) -> JoinHandle<HttpResponse> {
        let this = self.clone();
        tokio::spawn(async move { this.get().await })
    }

    pub async fn post(&self, body: &[u8]) -> HttpResponse {
        post(self.addr, &self.url(), body).await
    }

    /// A POST that must be accepted (`200 ok`).
    pub async fn send(&self, body: &str) {
        let res = self.post(body.as_bytes()).await;
        assert_eq!((res.status, res.text()), (200, "ok"), "POST {body:?}");
    }
}

/// Awaits a background request.
pub async fn join(handle: JoinHandle<HttpResponse>) -> HttpResponse {
    within("a pending request to answer", handle).await.expect("request task")
}

// ---- raw WebSocket ------------------------------------------------------------------------------

/// The key of RFC 6455's example handshake, and the accept value it must produce.
const WS_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const WS_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xa;

/// One frame from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsFrame {
    Text(String),
    Binary(Vec<u8>),
    /// A close frame and its status code, if any.
    Close(Option<u16>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The TCP connection ended.
    Eof,
}

/// A client frame: FIN bit, opcode, payload, masked (as RFC 6455 requires) unless `masked` is false.
pub fn encode_frame(fin: bool, opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![if fin { 0x80 | opcode } else { opcode }];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xffff => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [0x3a, 0x91, 0x5c, 0x07];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// A server frame from the front of `buf`, with the bytes it used.
fn decode_server_frame(buf: &[u8]) -> Option<(WsFrame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    assert!(buf[0] & 0x80 != 0, "the server fragmented a message");
    assert!(buf[1] & 0x80 == 0, "the server masked a frame");
    let (len, mut pos) = match buf[1] & 0x7f {
        126 => (u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(buf.get(2..10)?.try_into().ok()?) as usize, 10),
        len => (len as usize, 2),
    };
    let payload = buf.get(pos..pos + len)?.to_vec();
    pos += len;
    let frame = match buf[0] & 0x0f {
        OP_TEXT => WsFrame::Text(String::from_utf8(payload).expect("server text frame is UTF-8")),
        OP_BINARY => WsFrame::Binary(payload),
        OP_CLOSE => WsFrame::Close((payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))),
        OP_PING => WsFrame::Ping(payload),
        OP_PONG => WsFrame::Pong(payload),
        op => panic!("unexpected opcode {op:#x} from the server"),
    };
    Some((frame, pos))
}

pub struct WsClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl WsClient {
    /// Opens a WebSocket on `target`; a refused upgrade returns the HTTP response.
    pub async fn connect(addr: SocketAddr, target: &str) -> Result<WsClient, HttpResponse> {
        Self::connect_with(addr, target, &[]).await
    }

    pub async fn connect_with(
        addr: SocketAddr,
        target: &str,
        extra_headers: &[(&str, &str)],
    ) -> Result<WsClient, HttpResponse> {
        let mut head = format!(
            "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {WS_KEY}\r\nSec-WebSocket-Version: 13\r\n"
        );
        for (name, value) in extra_headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = send_request(addr, &head, b"").await;
        let mut buf = Vec::new();
        let response = within("WebSocket handshake", read_response(&mut stream, &mut buf)).await;
        if response.status != 101 {
            return Err(response);
        }
        assert_eq!(response.header("sec-websocket-accept"), Some(WS_ACCEPT), "Sec-WebSocket-Accept");
        assert!(response.header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket")));
        Ok(WsClient { stream, buf })
    }

    /// Opens a WebSocket-only Engine.IO session at `path`; returns it and the open packet's JSON.
    pub async fn open_session(addr: SocketAddr, path: &str) -> (WsClient, Value) {
        let mut ws = Self::connect(addr, &eio_url(path, "websocket", None))
            .await
            .unwrap_or_else(|res| panic!("WebSocket refused: {} {:?}", res.status, res.text()));
        let open = parse_open(&ws.recv_text().await);
        (ws, open)
    }

    pub async fn send_raw(&mut self, bytes: &[u8]) {
        // A server that already closed may reset the connection; the test then sees it when reading.
        let _ = within("WebSocket write", self.stream.write_all(bytes)).await;
    }

    pub async fn send_frame(&mut self, fin: bool, opcode: u8, payload: &[u8]) {
        self.send_raw(&encode_frame(fin, opcode, payload, true)).await;
    }

    pub async fn send_text(&mut self, text: &str) {
        self.send_frame(true, OP_TEXT, text.as_bytes()).await;
    }

    pub async fn send_binary(&mut self, data: &[u8]) {
        self.send_frame(true, OP_BINARY, data).await;
    }

    /// The next frame, whatever it is (no timeout).
    pub async fn read_frame(&mut self) -> WsFrame {
        loop {
            if let Some((frame, used)) = decode_server_frame(&self.buf) {
                self.buf.drain(..used);
                return frame;
            }
            if read_more(&mut self.stream, &mut self.buf).await == 0 {
                return WsFrame::Eof;
            }
        }
    }

    /// The next frame, within [`WAIT`].
    pub async fn recv(&mut self) -> WsFrame {
        within("a WebSocket frame", self.read_frame()).await
    }

    /// The next data frame, answering Engine.IO pings (`2`) with pongs on the way.
    pub async fn recv_data(&mut self) -> WsFrame {
        loop {
            match self.recv().await {
                WsFrame::Text(text) if text == "2" => self.send_text("3").await,
                WsFrame::Ping(_) | WsFrame::Pong(_) => {}
                frame => return frame,
            }
        }
    }

    /// The next text frame (pings answered); anything else fails the test.
    pub async fn recv_text(&mut self) -> String {
        match self.recv_data().await {
            WsFrame::Text(text) => text,
            other => panic!("text frame expected, got {other:?}"),
        }
    }

    pub async fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv_data().await {
            WsFrame::Binary(data) => data,
            other => panic!("binary frame expected, got {other:?}"),
        }
    }

    /// Waits for the server to end the connection; returns the close code (`None`: TCP closed without
    /// a close frame). Any data other than a ping fails the test.
    pub async fn expect_closed(&mut self) -> Option<u16> {
        loop {
            match self.recv().await {
                WsFrame::Close(code) => return code,
                WsFrame::Eof => return None,
                WsFrame::Text(text) if text == "2" => {}
                WsFrame::Ping(_) | WsFrame::Pong(_) => {}
                other => panic!("connection close expected, got {other:?}"),
            }
        }
    }

    /// After a close frame: the server also ends the TCP connection.
    pub async fn expect_eof(&mut self) {
        loop {
            match self.recv().await {
                WsFrame::Eof => return,
                WsFrame::Close(_) | WsFrame::Ping(_) | WsFrame::Pong(_) => {}
                other => panic!("end of connection expected, got {other:?}"),
            }
        }
    }

    // ---- Socket.IO over this connection ---------------------------------------------------------

    /// Sends a Socket.IO packet (inside an Engine.IO message).
    pub async fn sio_send(&mut self, packet: &str) {
        self.send_text(&format!("4{packet}")).await;
    }

    /// The next Socket.IO packet (the text after the Engine.IO `4`).
    pub async fn sio_recv(&mut self) -> String {
        let text = self.recv_text().await;
        match text.strip_prefix('4') {
            Some(packet) => packet.to_string(),
            None => panic!("Engine.IO message expected, got {text:?}"),
        }
    }

    /// Connects to `nsp`; returns the socket id of the CONNECT reply.
    pub async fn sio_connect(&mut self, nsp: &str, auth: Option<&str>) -> String {
        self.sio_send(&connect_packet(nsp, auth)).await;
        let reply = self.sio_recv().await;
        let expected = connect_packet(nsp, None);
        let json =
            reply.strip_prefix(&expected).unwrap_or_else(|| panic!("CONNECT reply for {nsp} expected, got {reply:?}"));
        let data: Value = serde_json::from_str(json).expect("CONNECT reply JSON");
        data["sid"].as_str().expect("sid in CONNECT reply").to_string()
    }
}

/// The ack id and the rest of a server EVENT `2[/nsp,]<id>[...]` (or BINARY_EVENT `5N-[/nsp,]<id>[...]`).
pub fn split_ack_id<'a>(packet: &'a str, header: &str) -> (u64, &'a str) {
    let rest = packet.strip_prefix(header).unwrap_or_else(|| panic!("{header}... expected, got {packet:?}"));
    let digits = rest.chars().take_while(char::is_ascii_digit).count();
    assert!(digits > 0, "the server asked for an ack: {packet:?}");
    (rest[..digits].parse().expect("ack id"), &rest[digits..])
}

/// Base64 with padding, as in the polling binary encoding.
pub fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// Lowercase hex, for reporting binary data as JSON from a handler.
pub fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

// ---- Socket.IO reference behaviours -------------------------------------------------------------

/// What the reference handlers saw, reported to the test.
#[derive(Debug, Clone, PartialEq)]
pub enum Seen {
    Connected {
        nsp: String,
        id: String,
    },
    Disconnected {
        nsp: String,
        id: String,
        reason: &'static str,
    },
    /// The outcome of a server emit with ack (the `ask` event).
    AckResult {
        id: String,
        result: Result<Payload, AckError>,
    },
}

/// The stream of [`Seen`] reports.
pub struct Observed(mpsc::UnboundedReceiver<Seen>);

impl Observed {
    pub async fn next(&mut self) -> Seen {
        next(&mut self.0, "a report from the server-side handlers").await
    }

    /// Waits for socket `id` to disconnect and returns the reason.
    pub async fn disconnect_reason(&mut self, id: &str) -> &'static str {
        loop {
            if let Seen::Disconnected { id: gone, reason, .. } = self.next().await {
                if gone == id {
                    return reason;
                }
            }
        }
    }

    /// Waits for the outcome of the emit with ack made for socket `id`.
    pub async fn ack_result(&mut self, id: &str) -> Result<Payload, AckError> {
        loop {
            if let Seen::AckResult { id: asked, result } = self.next().await {
                if asked == id {
                    return result;
                }
            }
        }
    }

    /// True when nothing was reported so far (without waiting).
    pub fn nothing_yet(&mut self) -> bool {
        self.0.try_recv().is_err()
    }
}

/// How long the server waits for the client's ack to a `question`.
pub const ASK_TIMEOUT: Duration = Duration::from_millis(500);

/// Replaces every binary placeholder in `value` with `{"bytes": "<hex>"}`.
pub fn resolve_placeholders(value: &Value, payload: &Payload) -> Value {
    if let Some(bytes) = payload.binary_of(value) {
        return serde_json::json!({ "bytes": hex(bytes) });
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| resolve_placeholders(v, payload)).collect()),
        Value::Object(map) => {
            Value::Object(map.iter().map(|(k, v)| (k.clone(), resolve_placeholders(v, payload))).collect())
        }
        other => other.clone(),
    }
}

fn rooms_json(socket: &Socket) -> Payload {
    Payload::new(vec![Value::Array(socket.rooms().iter().map(|r| Value::String(r.to_string())).collect())])
}

fn string_args(payload: &Payload) -> Vec<String> {
    payload.args.iter().filter_map(|a| a.as_str().map(str::to_string)).collect()
}

/// The behaviours the Socket.IO tests rely on, for one connected socket:
/// - on connection: emits `auth` with the CONNECT auth object;
/// - `message` -> emits `message-back` with the same arguments (binary included);
/// - `message-with-ack` -> acks with the same arguments;
/// - `binary-info` -> emits `binary-info-back` with the arguments, placeholders resolved to hex;
/// - `join` / `leave` rooms -> ack with the socket's rooms;
/// - `to-room` [room, text] -> `room-message` to that room (sender excluded), then an empty ack;
/// - `broadcast` [text] -> `broadcast` to everyone else, then an empty ack;
/// - `disconnect-me` [close] -> `socket.disconnect(close)`;
/// - `ask` (args) -> emits `question` with the args and waits [`ASK_TIMEOUT`] for the client's ack.
fn reference_socket(socket: Arc<Socket>, seen: mpsc::UnboundedSender<Seen>) {
    let _ = seen.send(Seen::Connected { nsp: socket.ns().name().to_string(), id: socket.id().as_str().to_string() });
    let _ = socket.emit("auth", socket.auth().clone());
    socket.on("message", |socket, payload, _ack| {
        let _ = socket.emit("message-back", payload);
    });
    socket.on("message-with-ack", |_socket, payload, ack| {
        if let Some(ack) = ack {
            ack.send(payload);
        }
    });
    socket.on("binary-info", |socket, payload, _ack| {
        let resolved = payload.args.iter().map(|a| resolve_placeholders(a, &payload)).collect::<Vec<_>>();
        let _ = socket.emit("binary-info-back", resolved);
    });
    socket.on("join", |socket, payload, ack| {
        for room in string_args(&payload) {
            socket.join(room.as_str());
        }
        if let Some(ack) = ack {
            ack.send(rooms_json(socket));
        }
    });
    socket.on("leave", |socket, payload, ack| {
        for room in string_args(&payload) {
            socket.leave(&room);
        }
        if let Some(ack) = ack {
            ack.send(rooms_json(socket));
        }
    });
    socket.on("to-room", |socket, payload, ack| {
        let args = string_args(&payload);
        if let [room, text] = args.as_slice() {
            socket.to(room.as_str()).emit("room-message", text.as_str());
        }
        if let Some(ack) = ack {
            ack.send(());
        }
    });
    socket.on("broadcast", |socket, payload, ack| {
        socket.broadcast().emit("broadcast", payload);
        if let Some(ack) = ack {
            ack.send(());
        }
    });
    socket.on("disconnect-me", |socket, payload, _ack| {
        socket.disconnect(payload.args.first().and_then(Value::as_bool).unwrap_or(false));
    });
    let asked = seen.clone();
    socket.on("ask", move |socket, payload, _ack| {
        let socket = socket.clone();
        let asked = asked.clone();
        tokio::spawn(async move {
            let result = socket.emit_with_ack("question", payload, ASK_TIMEOUT).await;
            let _ = asked.send(Seen::AckResult { id: socket.id().as_str().to_string(), result });
        });
    });
    socket.on_disconnect(move |socket, reason| {
        let _ = seen.send(Seen::Disconnected {
            nsp: socket.ns().name().to_string(),
            id: socket.id().as_str().to_string(),
            reason: reason.as_str(),
        });
    });
}

/// Registers the reference behaviours on `/` and `/custom`, `/private` (middleware: auth token
/// `secret` required, refusal with data) and `/closed` (middleware refusing everyone). Any other
/// namespace is unknown.
pub fn reference_handlers(io: &SocketIo) -> Observed {
    let (tx, rx) = mpsc::unbounded_channel();
    for name in ["/", "/custom", "/private", "/closed"] {
        let seen = tx.clone();
        io.of(name).on_connection(move |socket| reference_socket(socket, seen.clone()));
    }
    io.of("/private").use_middleware(|socket| {
        let allowed = socket.auth().get("token").and_then(Value::as_str) == Some("secret");
        async move {
            if allowed {
                Ok(())
            } else {
                Err(ConnectError::new("not authorized").with_data(serde_json::json!({"code": 4001})))
            }
        }
    });
    io.of("/closed").use_middleware(|_socket| async { Err(ConnectError::new("closed for maintenance")) });
    Observed(rx)
}

impl SioServer {
    /// A server with the [`reference_handlers`].
    pub async fn reference(config: SocketIoConfig) -> (SioServer, Observed) {
        let mut observed = None;
        let server = SioServer::start(config, |io| observed = Some(reference_handlers(io))).await;
        (server, observed.expect("handlers registered"))
    }
}
