//! One engine connection seen by Socket.IO: decodes packets, connects namespaces (through their
//! middleware), and routes events and acks to the sockets multiplexed on the connection.

use crate::config::Parser;
use crate::namespace::{ConnectError, Namespace};
use crate::server::ServerInner;
use crate::socket::{DisconnectReason, Socket};
use parking_lot::Mutex;
use serde_json::{json, Value};
use smallvec::SmallVec;
use std::future::Future;
use std::sync::Arc;
use switchyard_engine::protocol::socketio::{Decoder, Packet, PacketType};
use switchyard_engine::protocol::socketio_msgpack;
use switchyard_engine::{CloseReason, Connection, Handler, Incoming, OpenRequest, TransportKind};

/// The request headers of a handshake, as `name:value\n` lines (names lowercase): a view into the
/// handshake's one allocation, since an idle connection keeps its handshake and a `HeaderMap` costs
/// several times more.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompactHeaders<'a>(&'a [u8]);

impl<'a> CompactHeaders<'a> {
    /// Appends `headers` in this form to `out`.
    fn write(headers: &http::HeaderMap, out: &mut Vec<u8>) {
        for (name, value) in headers {
            out.extend_from_slice(name.as_str().as_bytes());
            out.push(b':');
            // Header values cannot contain '\n' (hyper rejects them), so the line format is unambiguous.
            out.extend_from_slice(value.as_bytes());
            out.push(b'\n');
        }
    }

    fn encoded_len(headers: &http::HeaderMap) -> usize {
        headers.iter().map(|(k, v)| k.as_str().len() + v.len() + 2).sum()
    }

    /// Every header, in request order; values that are not UTF-8 are skipped.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        self.0.split(|b| *b == b'\n').filter_map(|line| {
            let colon = line.iter().position(|b| *b == b':')?;
            let name = std::str::from_utf8(&line[..colon]).ok()?;
            let value = std::str::from_utf8(&line[colon + 1..]).ok()?;
            Some((name, value))
        })
    }

    /// The first value of header `name` (case-insensitive).
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v)
    }

    /// The headers as a `HeaderMap` (a copy).
    pub fn to_map(&self) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        for (name, value) in self.iter() {
            if let (Ok(name), Ok(value)) =
                (http::HeaderName::from_bytes(name.as_bytes()), http::HeaderValue::from_str(value))
            {
                map.append(name, value);
            }
        }
        map
    }
}

/// The request that opened the connection, shared by its sockets.
///
/// Its URL, the client's address and the header lines share one allocation (`url`, `address` and
/// `headers` slice it): an idle connection keeps its handshake, and three allocations plus their
/// `String`/`Box` fields cost 32 bytes more in the connection's `Client` alone.
#[derive(Debug)]
pub struct Handshake {
    /// The URL, then the address, then the header lines.
    text: Box<[u8]>,
    url_len: u32,
    address_len: u32,
    /// Milliseconds since the Unix epoch.
    pub issued: u64,
    pub secure: bool,
}

impl Handshake {
    /// Builds a handshake from the request's URL (path and query), the client's address and its headers.
    pub fn new(url: &str, address: &str, headers: &http::HeaderMap, issued: u64, secure: bool) -> Handshake {
        // The HTTP parser bounds the request far below 4 GiB; longer parts are cut rather than trusted.
        let url = prefix(url, u32::MAX as usize);
        let address = prefix(address, u32::MAX as usize - url.len());
        let mut text = Vec::with_capacity(url.len() + address.len() + CompactHeaders::encoded_len(headers));
        text.extend_from_slice(url.as_bytes());
        text.extend_from_slice(address.as_bytes());
        CompactHeaders::write(headers, &mut text);
        Handshake {
            text: text.into_boxed_slice(),
            url_len: url.len() as u32,
            address_len: address.len() as u32,
            issued,
            secure,
        }
    }

    /// The request headers.
    pub fn headers(&self) -> CompactHeaders<'_> {
        CompactHeaders(self.text.get(self.url_len as usize + self.address_len as usize..).unwrap_or_default())
    }

    /// The request URL (path and query).
    pub fn url(&self) -> &str {
        self.text.get(..self.url_len as usize).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
    }

    /// The client's address (its IP; the first `X-Forwarded-For` entry when present).
    pub fn address(&self) -> &str {
        let start = self.url_len as usize;
        self.text
            .get(start..start + self.address_len as usize)
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or_default()
    }

    /// The query parameters, decoded.
    pub fn query(&self) -> Vec<(String, String)> {
        let query = self.url().split_once('?').map(|(_, q)| q).unwrap_or_default();
        form_urlencoded::parse(query.as_bytes()).into_owned().collect()
    }

    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query().into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers().get(name)
    }

    /// The `time` field of Node's handshake, as an HTTP date.
    pub fn time(&self) -> String {
        httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_millis(self.issued))
    }

    /// Node's handshake object, as sent in fetch-sockets replies.
    pub fn to_json(&self, auth: &Value) -> Value {
        let headers: serde_json::Map<String, Value> =
            self.headers().iter().map(|(k, v)| (k.to_string(), Value::String(v.to_string()))).collect();
        let query: serde_json::Map<String, Value> =
            self.query().into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        json!({
            "headers": headers,
            "time": self.time(),
            "address": self.address(),
            "xdomain": self.headers().get("origin").is_some(),
            "secure": self.secure,
            "issued": self.issued,
            "url": self.url(),
            "query": query,
            "auth": auth,
        })
    }
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn prefix(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Socket.IO state of one engine connection.
pub struct Client {
    conn: Arc<Connection>,
    server: Arc<ServerInner>,
    /// Inline, not behind its own `Arc`: only ever read through the client (one allocation less per
    /// connection).
    pub(crate) handshake: Handshake,
    /// The JSON parser's decoder (binary reassembly is state); the msgpack parser needs none.
    decoder: Mutex<Decoder>,
    sockets: Mutex<SmallVec<[Arc<Socket>; 1]>>,
    /// The connect-timeout timer, cancelled by the first namespace join.
    connect_timer: Mutex<Option<tokio::task::AbortHandle>>,
}

impl Client {
    pub fn connection(&self) -> &Arc<Connection> {
        &self.conn
    }

    pub fn transport(&self) -> TransportKind {
        self.conn.transport()
    }

    /// Closes the whole connection; every socket on it disconnects with `reason`.
    pub fn close_connection(&self, reason: DisconnectReason) {
        let close = match reason {
            DisconnectReason::ServerShutdown => CloseReason::ServerShutdown,
            _ => CloseReason::ForcedClose,
        };
        for socket in self.sockets() {
            socket.send_disconnect_packet();
            socket.on_close(reason);
        }
        self.conn.close(close);
    }

    fn parser(&self) -> Parser {
        self.server.config.parser
    }

    pub(crate) fn max_rooms_per_socket(&self) -> usize {
        self.server.config.max_rooms_per_socket
    }

    pub(crate) fn count_room_refused(&self) {
        self.server.limit_stats.rooms_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    #[inline]
    pub(crate) fn run_server_event_middleware(
        &self,
        socket: &Arc<Socket>,
        event: &str,
        payload: &crate::Payload,
    ) -> Result<(), crate::Rejection> {
        self.server.run_event_middleware(socket, event, payload)
    }

    fn sockets(&self) -> SmallVec<[Arc<Socket>; 1]> {
        self.sockets.lock().clone()
    }

    fn socket(&self, nsp: &str) -> Option<Arc<Socket>> {
        self.sockets.lock().iter().find(|s| s.ns().name() == nsp).cloned()
    }

    pub(crate) fn remove_socket(&self, socket: &Socket) {
        self.sockets.lock().retain(|s| s.id() != socket.id());
    }

    fn on_packet(self: &Arc<Self>, packet: Packet) {
        match packet.kind {
            PacketType::Connect if self.conn.protocol().is_v3() => {
                // Socket.IO v4 protocol (v2 clients): no auth object; the query in the namespace
                // (`/admin?token=1`) stands for it.
                let (nsp, auth) = split_namespace_query(&packet.nsp);
                self.connect(nsp, auth)
            }
            PacketType::Connect => self.connect(packet.nsp, packet.data.unwrap_or(Value::Null)),
            PacketType::ConnectError => {
                tracing::debug!(sid = %self.conn.sid(), "client sent CONNECT_ERROR: closing");
                self.conn.close(CloseReason::ParseError);
            }
            _ => {
                let Some(socket) = self.socket(&packet.nsp) else {
                    tracing::debug!(sid = %self.conn.sid(), nsp = %packet.nsp, "packet for a namespace not joined: closing");
                    self.conn.close(CloseReason::ParseError);
                    return;
                };
                socket.on_packet(packet);
            }
        }
    }

    fn connect(self: &Arc<Self>, nsp: String, auth: Value) {
        if self.socket(&nsp).is_some() {
            tracing::debug!(sid = %self.conn.sid(), nsp = %nsp, "namespace already joined");
            return;
        }
        let max = self.server.config.max_namespaces_per_connection;
        if max != 0 && self.sockets.lock().len() >= max {
            self.server.limit_stats.namespaces_refused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(sid = %self.conn.sid(), nsp = %nsp, max, "CONNECT refused: too many namespaces");
            let error = json!({"message": "Too many namespaces"});
            let _ = self.conn.send(self.parser().encode_control(PacketType::ConnectError, &nsp, Some(&error)));
            return;
        }
        let Some(ns) = self.server.namespace(&nsp) else {
            let error = json!({"message": "Invalid namespace"});
            let _ = self.conn.send(self.parser().encode_control(PacketType::ConnectError, &nsp, Some(&error)));
            return;
        };
        let recovery = match (ns.recovery(), auth.get("pid"), auth.get("offset")) {
            (Some(_), Some(Value::String(pid)), Some(Value::String(offset))) => Some((pid.clone(), offset.clone())),
            _ => None,
        };
        if recovery.is_none() {
            let socket = Socket::new(ns.clone(), self.clone(), auth, None);
            if self.server.connect_middleware.is_empty() && !ns.has_middleware() {
                self.finish_connect(&ns, socket, None);
                return;
            }
            // Middleware that completes at once (synchronous checks such as a JWT's) runs here, on the
            // connection's task: no task spawned and no extra wake-up before the CONNECT reply. Middleware
            // that has to wait goes on in a task of its own (a future may be polled with another waker).
            let mut checks = Box::pin(self.clone().run_connect_middleware(ns.clone(), socket.clone(), false));
            let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
            match checks.as_mut().poll(&mut cx) {
                std::task::Poll::Ready(result) => self.after_middleware(&ns, socket, None, result),
                std::task::Poll::Pending => {
                    let client = self.clone();
                    tokio::spawn(async move {
                        let result = checks.await;
                        client.after_middleware(&ns, socket, None, result);
                    });
                }
            }
            return;
        }
        let client = self.clone();
        tokio::spawn(async move {
            let restored = match &recovery {
                Some((pid, offset)) => ns.adapter().restore_session(&ns, pid, offset).await,
                None => None,
            };
            let socket = Socket::new(ns.clone(), client.clone(), auth, restored.as_ref().map(|r| &r.session));
            // The namespace's middleware may be skipped for a restored session (never the server-wide).
            let skip = restored.is_some() && ns.recovery().is_some_and(|r| r.config().skip_middlewares);
            let result = client.clone().run_connect_middleware(ns.clone(), socket.clone(), skip).await;
            client.after_middleware(&ns, socket, restored, result);
        });
    }

    /// The server-wide connect middleware (always: authentication sees every socket), then the
    /// namespace's unless `skip_namespace`; stops at the first refusal.
    async fn run_connect_middleware(
        self: Arc<Self>,
        ns: Arc<Namespace>,
        socket: Arc<Socket>,
        skip_namespace: bool,
    ) -> Result<(), ConnectError> {
        for middleware in self.server.connect_middleware.iter() {
            middleware(socket.clone()).await?;
        }
        if !skip_namespace {
            ns.run_middleware(&socket).await?;
        }
        Ok(())
    }

    /// Answers CONNECT_ERROR for a refusal, else connects the socket.
    fn after_middleware(
        self: &Arc<Self>,
        ns: &Arc<Namespace>,
        socket: Arc<Socket>,
        restored: Option<crate::recovery::RestoredSession>,
        result: Result<(), ConnectError>,
    ) {
        match result {
            Ok(()) => self.finish_connect(ns, socket, restored),
            Err(error) => {
                let data = if self.conn.protocol().is_v3() {
                    // Socket.IO v4 protocol: the error's data, or else its message (as Node).
                    error.data.clone().filter(|d| !d.is_null()).unwrap_or(Value::String(error.message.clone()))
                } else {
                    error.to_json()
                };
                let _ = self.conn.send(self.parser().encode_control(PacketType::ConnectError, ns.name(), Some(&data)));
            }
        }
    }

    fn finish_connect(
        self: &Arc<Self>,
        ns: &Arc<Namespace>,
        socket: Arc<Socket>,
        restored: Option<crate::recovery::RestoredSession>,
    ) {
        if self.conn.is_closed() {
            return;
        }
        self.sockets.lock().push(socket.clone());
        if let Some(timer) = self.connect_timer.lock().take() {
            timer.abort();
        }
        ns.add_socket(&socket);
        ns.observers().notify(|o| o.on_connect(&socket));
        let reply = match socket.pid() {
            // Socket.IO v4 protocol (v2 clients): CONNECT carries no data; the client takes its id
            // from the Engine.IO session.
            _ if self.conn.protocol().is_v3() => None,
            Some(pid) => Some(json!({"sid": socket.id().as_str(), "pid": pid})),
            None => Some(json!({"sid": socket.id().as_str()})),
        };
        let _ = self.conn.send(self.parser().encode_control(PacketType::Connect, ns.name(), reply.as_ref()));
        if let Some(restored) = restored {
            ns.adapter().complete_restore(ns, &socket, restored);
        }
        if socket.pid().is_some() {
            ns.adapter().on_session_changed(ns, &socket);
        }
        ns.on_socket_connected(&socket);
    }

    fn decode(self: &Arc<Self>, message: Incoming) {
        let decoded = match self.parser() {
            Parser::Json => {
                let mut decoder = self.decoder.lock();
                match &message {
                    Incoming::Text(text) => match std::str::from_utf8(text) {
                        Ok(text) => decoder.decode_text(text),
                        Err(_) => Err(switchyard_engine::protocol::socketio::DecodeError::InvalidPayload),
                    },
                    Incoming::Binary(data) => decoder.decode_binary(data.clone()),
                }
                .map_err(|e| e.to_string())
            }
            // One binary message per packet, binary data inline; a text message is an error.
            Parser::Msgpack => match &message {
                Incoming::Binary(data) => socketio_msgpack::decode(data, self.server.config.max_attachments).map(Some),
                Incoming::Text(_) => Err(socketio_msgpack::DecodeError::UnexpectedText),
            }
            .map_err(|e| e.to_string()),
        };
        match decoded {
            Ok(Some(packet)) => self.on_packet(packet),
            Ok(None) => {}
            Err(e) => {
                tracing::debug!(sid = %self.conn.sid(), error = %e, "invalid Socket.IO packet: closing");
                self.conn.close(CloseReason::ParseError);
            }
        }
    }
}

/// Plugs Socket.IO into the engine.
pub struct SioHandler {
    server: Arc<ServerInner>,
}

impl SioHandler {
    pub(crate) fn new(server: Arc<ServerInner>) -> Self {
        SioHandler { server }
    }
}

impl Handler for SioHandler {
    type Client = Client;

    fn on_open(&self, conn: Arc<Connection>, req: OpenRequest) -> Arc<Client> {
        let address =
            forwarded_for(&req.headers).or_else(|| req.remote_addr.map(|a| a.ip().to_string())).unwrap_or_default();
        let issued = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let secure = req.uri.scheme_str() == Some("https");
        let url = req.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let handshake = Handshake::new(url, &address, &req.headers, issued, secure);
        let client = Arc::new(Client {
            conn,
            server: self.server.clone(),
            handshake,
            decoder: Mutex::new(Decoder::new(self.server.config.max_attachments)),
            sockets: Mutex::new(SmallVec::new()),
            connect_timer: Mutex::new(None),
        });
        // Close connections that never join a namespace.
        let weak = Arc::downgrade(&client);
        let timeout = self.server.config.connect_timeout;
        let timer = tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            if let Some(client) = weak.upgrade() {
                if client.sockets.lock().is_empty() && !client.conn.is_closed() {
                    tracing::debug!(sid = %client.conn.sid(), "no namespace joined in time: closing");
                    client.conn.close(CloseReason::ForcedClose);
                }
            }
        });
        *client.connect_timer.lock() = Some(timer.abort_handle());
        if client.conn.protocol().is_v3() && self.server.namespace("/").is_some() {
            // Socket.IO v4 protocol: every connection joins `/` at once, without a CONNECT from the
            // client (whose `/` socket waits for the server's CONNECT).
            client.connect("/".to_owned(), Value::Object(Default::default()));
        }
        client
    }

    fn on_message(&self, client: &Arc<Client>, message: Incoming) {
        client.decode(message);
    }

    fn on_upgrade(&self, client: &Arc<Client>) {
        let observers = &self.server.observers;
        if observers.active() {
            for socket in client.sockets() {
                observers.notify(|o| o.on_upgrade(&socket));
            }
        }
    }

    fn on_close(&self, client: &Arc<Client>, reason: CloseReason) {
        if let Some(timer) = client.connect_timer.lock().take() {
            timer.abort();
        }
        let reason = DisconnectReason::from(reason);
        for socket in client.sockets() {
            socket.on_close(reason);
        }
    }
}

/// A v2 client's CONNECT namespace, `/admin?token=1&x=2`: the namespace and its query as an object.
fn split_namespace_query(nsp: &str) -> (String, Value) {
    let Some((name, query)) = nsp.split_once('?') else {
        return (nsp.to_owned(), Value::Object(Default::default()));
    };
    let query: serde_json::Map<String, Value> = form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), Value::String(v.into_owned())))
        .collect();
    (name.to_owned(), Value::Object(query))
}

fn forwarded_for(headers: &http::HeaderMap) -> Option<String> {
    let value = headers.get("x-forwarded-for")?.to_str().ok()?;
    value.split(',').next().map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v2_namespace_queries() {
        assert_eq!(split_namespace_query("/admin"), ("/admin".to_owned(), json!({})));
        assert_eq!(
            split_namespace_query("/admin?token=a%20b&x=1"),
            ("/admin".to_owned(), json!({"token": "a b", "x": "1"}))
        );
        assert_eq!(split_namespace_query("/?"), ("/".to_owned(), json!({})));
    }

    /// An idle connection keeps one `Arc<Client>`: with the `Arc`'s two counts it must stay within
    /// jemalloc's 160-byte size class (the next is 192).
    #[test]
    fn client_fits_its_size_class() {
        let size = std::mem::size_of::<Client>();
        assert!(size + 16 <= 160, "Client is {size} bytes");
        assert!(std::mem::size_of::<Handshake>() <= 40, "Handshake is {} bytes", std::mem::size_of::<Handshake>());
    }

    #[test]
    fn compact_headers_round_trip() {
        let mut map = http::HeaderMap::new();
        map.insert("host", "localhost:3000".parse().unwrap());
        map.append("x-multi", "a".parse().unwrap());
        map.append("x-multi", "b:c".parse().unwrap());
        let handshake = Handshake::new("/socket.io/?EIO=4&x=%C3%A9", "10.0.0.1", &map, 0, false);
        let compact = handshake.headers();
        assert_eq!(handshake.url(), "/socket.io/?EIO=4&x=%C3%A9");
        assert_eq!(handshake.address(), "10.0.0.1");
        assert_eq!(handshake.query_param("x").as_deref(), Some("é"));
        assert_eq!(compact.get("Host"), Some("localhost:3000"));
        assert_eq!(compact.iter().filter(|(n, _)| *n == "x-multi").map(|(_, v)| v).collect::<Vec<_>>(), ["a", "b:c"]);
        assert_eq!(compact.to_map(), map);
        assert_eq!(compact.get("missing"), None);
        let empty = Handshake::new("/", "", &http::HeaderMap::new(), 0, false);
        assert_eq!((empty.url(), empty.address(), empty.headers().iter().count()), ("/", "", 0));
        assert_eq!(prefix("aé", 2), "a");
    }
}
