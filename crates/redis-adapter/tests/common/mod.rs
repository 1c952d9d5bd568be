//! Test setup for the cluster tests: redis-server processes started on free loopback ports (and killed
//! at the end), Switchyard nodes in this process on their own ports, and a small WebSocket Socket.IO
//! client. Every wait is bounded.

#![allow(dead_code)]

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;
use switchyard_redis::{RedisAdapterConfig, RedisNode, RedisTarget};
use switchyard_socketio::{Namespace, Payload, Sid, SocketIo, SocketIoConfig};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest one step of a test may take.
pub const WAIT: Duration = Duration::from_secs(10);

pub async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Polls `check` until it holds, for at most [`WAIT`].
pub async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    within(what, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// A free port whose cluster-bus port (port + 10000, which Redis Cluster also binds) is free too.
pub fn free_cluster_port() -> u16 {
    use rand::Rng;
    let mut rng = rand::thread_rng();
    for _ in 0..1000 {
        let port: u16 = rng.gen_range(20_000..50_000);
        let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(port) && free(port + 10_000) {
            return port;
        }
    }
    panic!("no free port pair for a cluster node");
}

fn redis_server_binary() -> PathBuf {
    for dir in std::env::var("PATH").unwrap_or_default().split(':').chain(["/usr/bin", "/usr/sbin", "/usr/local/bin"]) {
        let path = PathBuf::from(dir).join("redis-server");
        if path.is_file() {
            return path;
        }
    }
    panic!("redis-server not found: install it (scripts/install-deps.sh does)");
}

/// A redis-server on 127.0.0.1, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    extra: Vec<String>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        Self::start_with(free_port(), Vec::new()).await
    }

    pub async fn start_with(port: u16, extra: Vec<String>) -> RedisServer {
        let dir = std::env::temp_dir().join(format!("switchyard-redis-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut server = RedisServer { port, child: None, dir, extra };
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    async fn spawn(&mut self) {
        let child = Command::new(redis_server_binary())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", self.dir.to_str().unwrap_or("/tmp")])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("start redis-server");
        self.child = Some(child);
        let port = self.port;
        within("redis-server to answer PING", async move {
            loop {
                if ping(port).await {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }

    /// Kills the server (SIGKILL: no goodbye to clients).
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Starts it again on the same port.
    pub async fn restart(&mut self) {
        self.kill().await;
        self.spawn().await;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A raw PING: true when the server answers PONG.
pub async fn ping(port: u16) -> bool {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)).await else { return false };
    if stream.write_all(b"PING\r\n").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf)).await, Ok(Ok(n)) if buf[..n].starts_with(b"+PONG"))
}

/// Runs `redis-cli` with `args` against 127.0.0.1; panics on failure.
pub async fn redis_cli(args: &[&str]) -> String {
    let output = within("redis-cli", Command::new("redis-cli").args(args).stdin(Stdio::null()).output())
        .await
        .expect("run redis-cli");
    assert!(output.status.success(), "redis-cli {args:?} failed: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A Switchyard node: a server with the Redis adapter, on its own port, stopped when dropped.
pub struct Node {
    pub io: SocketIo,
    pub redis: RedisNode,
    pub addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

impl Node {
    pub async fn start(target: RedisTarget, config: RedisAdapterConfig) -> Node {
        Node::start_with(target, config, SocketIoConfig::default()).await
    }

    /// A node with these Socket.IO settings (the parser, say).
    pub async fn start_with(target: RedisTarget, config: RedisAdapterConfig, sio: SocketIoConfig) -> Node {
        let redis = RedisNode::start(target, config).expect("valid Redis address");
        let io = SocketIo::builder().config(sio).adapter(redis.adapter_factory()).build();
        // Clients ack "ask" with their own id and answer "whoami" likewise; every node answers the
        // server-side "ping" with its uid.
        let ns = io.of("/");
        ns.on_connection(|socket| {
            socket.on("echo", |_, payload, ack| {
                if let Some(ack) = ack {
                    ack.send(payload);
                }
            });
        });
        let uid = redis.uid().to_string();
        ns.on_server_side("ping", move |payload, ack| {
            if let Some(ack) = ack {
                let mut answer = vec![Value::String(uid.clone())];
                answer.extend(payload.args);
                ack(Payload::new(vec![Value::Array(answer)]));
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let app = axum::Router::new().route_service("/socket.io/", io.service());
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = switchyard_engine::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await;
        });
        Node { io, redis, addr, _stop: stop }
    }

    pub fn ns(&self) -> std::sync::Arc<Namespace> {
        self.io.of("/")
    }

    pub async fn connected(&self) {
        let redis = self.redis.clone();
        assert!(redis.wait_connected(WAIT).await, "node did not connect to Redis");
    }

    /// The local socket with this id.
    pub fn socket(&self, id: &str) -> std::sync::Arc<switchyard_socketio::Socket> {
        self.ns().get_socket(&Sid::parse(id).expect("socket id")).expect("socket on this node")
    }
}

/// Starts `n` nodes on one Redis and waits until each counts all `n` servers.
pub async fn cluster(n: usize, target: RedisTarget, config: RedisAdapterConfig) -> Vec<Node> {
    let mut nodes = Vec::new();
    for _ in 0..n {
        nodes.push(Node::start(target.clone(), config.clone()).await);
    }
    for node in &nodes {
        node.connected().await;
    }
    for node in &nodes {
        let redis = node.redis.clone();
        within("every node to see the whole cluster", async move {
            loop {
                if redis.server_count("/").await.ok() == Some(n) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    nodes
}

/// An event a client received: name and arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub name: String,
    pub args: Vec<Value>,
    pub ack: Option<u64>,
}

/// A Socket.IO client over WebSocket (text packets only), answering pings by itself.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub id: String,
    /// Acks for events named "ask": answered with this client's label.
    pub label: String,
    next_ack: u64,
}

impl Client {
    pub async fn connect(node: &Node, label: &str) -> Client {
        Self::connect_with_auth(node, label, None).await.0
    }

    /// Connects to `/` with `auth` in the CONNECT packet (a recovering client sends `{pid, offset}`);
    /// returns the client and the CONNECT reply's data.
    pub async fn connect_with_auth(node: &Node, label: &str, auth: Option<&Value>) -> (Client, Value) {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr);
        let (ws, _) = within("websocket connect", tokio_tungstenite::connect_async(url)).await.expect("connect");
        let mut client = Client { ws, id: String::new(), label: label.to_string(), next_ack: 1 };
        let open = client.next_text().await;
        assert!(open.starts_with('0'), "expected the Engine.IO open packet, got {open}");
        match auth {
            Some(auth) => client.send(&format!("40{auth}")).await,
            None => client.send("40").await,
        }
        let reply = client.next_text().await;
        let body = reply.strip_prefix("40").unwrap_or_else(|| panic!("expected CONNECT reply, got {reply}"));
        let body: Value = serde_json::from_str(body).expect("CONNECT reply JSON");
        client.id = body["sid"].as_str().expect("sid").to_string();
        (client, body)
    }

    /// Closes the WebSocket without a Socket.IO disconnect (a dropped transport).
    pub async fn drop_transport(mut self) {
        let _ = within("websocket close", self.ws.close(None)).await;
    }

    pub async fn send(&mut self, text: &str) {
        within("websocket send", self.ws.send(Message::text(text.to_string()))).await.expect("send");
    }

    /// The next text frame, answering pings on the way.
    async fn next_text(&mut self) -> String {
        loop {
            let message = within("a frame from the server", self.ws.next()).await;
            match message {
                Some(Ok(Message::Text(text))) => {
                    let text = text.to_string();
                    if text == "2" {
                        self.send("3").await;
                        continue;
                    }
                    return text;
                }
                Some(Ok(Message::Close(_))) | None => panic!("connection closed"),
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("websocket error: {err}"),
            }
        }
    }

    /// The next packet that is not a ping: `Some(event)` for events, `None` for a disconnect packet.
    pub async fn next_packet(&mut self) -> Option<Event> {
        loop {
            let text = self.next_text().await;
            if text == "41" {
                return None;
            }
            let Some(rest) = text.strip_prefix("42") else { continue };
            let digits = rest.chars().take_while(char::is_ascii_digit).count();
            let ack = rest[..digits].parse().ok();
            let mut args: Vec<Value> = serde_json::from_str(&rest[digits..]).expect("event JSON");
            let name = args.remove(0).as_str().expect("event name").to_string();
            let event = Event { name, args, ack };
            if let (Some(id), "ask") = (event.ack, event.name.as_str()) {
                let answer = serde_json::json!([self.label]).to_string();
                self.send(&format!("43{id}{answer}")).await;
            }
            return Some(event);
        }
    }

    pub async fn next_event(&mut self) -> Event {
        self.next_packet().await.expect("an event, not a disconnect")
    }

    /// Events until one named `marker`; returns the ones before it.
    pub async fn events_until(&mut self, marker: &str) -> Vec<Event> {
        let mut seen = Vec::new();
        loop {
            let event = self.next_event().await;
            if event.name == marker {
                return seen;
            }
            seen.push(event);
        }
    }

    /// The next binary event: its text packet and its attachments.
    pub async fn next_binary_event(&mut self) -> (String, Vec<Vec<u8>>) {
        let text = loop {
            let text = self.next_text().await;
            if text.starts_with("45") {
                break text;
            }
        };
        let count: usize = text[2..].split('-').next().and_then(|n| n.parse().ok()).expect("attachment count");
        let mut attachments = Vec::new();
        while attachments.len() < count {
            match within("an attachment", self.ws.next()).await {
                Some(Ok(Message::Binary(data))) => attachments.push(data.to_vec()),
                Some(Ok(_)) => continue,
                other => panic!("expected an attachment, got {other:?}"),
            }
        }
        (text, attachments)
    }

    /// Reads events until each of `names` arrived (in any order); fails on any other event.
    pub async fn expect_all(&mut self, names: &[&str]) {
        let mut missing: Vec<&str> = names.to_vec();
        while !missing.is_empty() {
            let event = self.next_event().await;
            let position = missing.iter().position(|n| *n == event.name);
            let position = position
                .unwrap_or_else(|| panic!("{}: unexpected event {event:?}, waiting for {missing:?}", self.label));
            missing.remove(position);
        }
    }

    pub async fn emit_with_ack(&mut self, event: &str, args: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        let mut all = vec![Value::String(event.to_string())];
        if let Value::Array(items) = args {
            all.extend(items);
        }
        self.send(&format!("42{id}{}", Value::Array(all))).await;
        loop {
            let text = self.next_text().await;
            if let Some(rest) = text.strip_prefix(&format!("43{id}")) {
                return serde_json::from_str(rest).expect("ack JSON");
            }
        }
    }
}

/// A TCP proxy in front of a redis-server that can lose the answers of the publisher's connection
/// (the one that sends `EVALSHA`): Redis runs the command, its answer never reaches the node, and
/// the connection closes a while later, as when Redis dies between running a command and answering
/// it. Every other connection (the subscriber, the stream readers) passes through untouched.
pub struct LossyProxy {
    pub port: u16,
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
    stall: std::sync::Arc<Stall>,
    accept: tokio::task::JoinHandle<()>,
}

/// How long the other connections' answers are held once answers start being lost (0: not held),
/// and until when.
#[derive(Default)]
struct Stall {
    ms: std::sync::atomic::AtomicU64,
    until: std::sync::Mutex<Option<tokio::time::Instant>>,
}

impl LossyProxy {
    /// How long a connection whose answers are lost stays open (its commands are not forwarded
    /// meanwhile), so that the other connections see what Redis did before the node notices.
    pub const CLOSE_AFTER: Duration = Duration::from_millis(300);

    pub async fn start(redis_port: u16) -> LossyProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let armed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stall = std::sync::Arc::new(Stall::default());
        let accept = {
            let (armed, stall) = (armed.clone(), stall.clone());
            tokio::spawn(async move {
                while let Ok((client, _)) = listener.accept().await {
                    tokio::spawn(Self::relay(client, redis_port, armed.clone(), stall.clone()));
                }
            })
        };
        LossyProxy { port, armed, stall, accept }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// The answers to the next `EVALSHA` sent through the proxy (and to everything after it on that
    /// connection) are lost; the connection closes [`Self::CLOSE_AFTER`] later.
    pub fn lose_next_answer(&self) {
        self.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// As [`Self::lose_next_answer`], and from then on every other connection's answers (the node's
    /// stream reader, its subscriber, the publisher's next connection) are held until `stall` after
    /// the lossy connection closed: the node learns that the outcome is unknown before it can read
    /// what Redis stored.
    pub fn lose_next_answer_stalling_others(&self, stall: Duration) {
        self.stall.ms.store(stall.as_millis() as u64, std::sync::atomic::Ordering::SeqCst);
        self.lose_next_answer();
    }

    async fn relay(
        client: TcpStream,
        redis_port: u16,
        armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
        stall: std::sync::Arc<Stall>,
    ) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(server) = TcpStream::connect(("127.0.0.1", redis_port)).await else { return };
        let (mut client_read, mut client_write) = client.into_split();
        let (mut server_read, mut server_write) = server.into_split();
        let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
        let mut losing = false;
        loop {
            tokio::select! {
                read = client_read.read(&mut up) => {
                    let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                    if up[..n].windows(7).any(|w| w == b"EVALSHA") && armed.swap(false, std::sync::atomic::Ordering::SeqCst) {
                        losing = true;
                        let ms = stall.ms.swap(0, std::sync::atomic::Ordering::SeqCst);
                        if ms > 0 {
                            let until = tokio::time::Instant::now() + Self::CLOSE_AFTER + Duration::from_millis(ms);
                            *stall.until.lock().expect("stall lock") = Some(until);
                        }
                    }
                    if server_write.write_all(&up[..n]).await.is_err() {
                        return;
                    }
                }
                read = server_read.read(&mut down) => {
                    let n = match read { Ok(0) | Err(_) => return, Ok(n) => n };
                    if losing {
                        // Dropping both sides after the pause closes the node's connection.
                        tokio::time::sleep(Self::CLOSE_AFTER).await;
                        return;
                    }
                    let until = *stall.until.lock().expect("stall lock");
                    if let Some(until) = until {
                        tokio::time::sleep_until(until).await;
                    }
                    if client_write.write_all(&down[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

impl Drop for LossyProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
