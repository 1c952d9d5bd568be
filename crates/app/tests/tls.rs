//! TLS end to end: the App serving https and wss with certificates made at test time (a CA and
//! leaves from switchyard-fixtures), a rustls client that trusts only that CA, and certificate reloads
//! on file change and on SIGHUP. Every wait is bounded.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use switchyard::config::Config;
use switchyard::tls::TlsCerts;
use switchyard::App;
use switchyard_engine::tls::rustls::pki_types::{CertificateDer, ServerName};
use switchyard_engine::tls::rustls::{ClientConfig, RootCertStore};
use switchyard_engine::tls::tokio_rustls::client::TlsStream;
use switchyard_engine::tls::tokio_rustls::TlsConnector;
use switchyard_engine::tls::{crypto_provider, TlsStats};
use switchyard_fixtures::certs::{Leaf, TestCa};
use switchyard_fixtures::encode_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;

const WAIT: Duration = Duration::from_secs(10);

async fn within<F: Future>(what: &str, fut: F) -> F::Output {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(out) => out,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Polls `check` every 50 ms until it is true, at most [`WAIT`].
async fn eventually<F: Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) {
    within(what, async {
        while !check().await {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
}

/// Writes a file by replacing it (write a temporary file, then rename), as a renewal tool would.
fn replace(path: &Path, contents: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Server {
    addr: SocketAddr,
    ca: TestCa,
    first: Leaf,
    cert_file: PathBuf,
    key_file: PathBuf,
    certs: Arc<TlsCerts>,
    _dir: tempfile::TempDir,
    _stop: oneshot::Sender<()>,
}

impl Server {
    /// Serves the App with TLS on 127.0.0.1:0; `reload_interval_ms` 0 reloads only on SIGHUP.
    async fn start(reload_interval_ms: u64) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new();
        let first = ca.leaf("first.switchyard.test", 1);
        let cert_file = dir.path().join("cert.pem");
        let key_file = dir.path().join("key.pem");
        std::fs::write(&cert_file, &first.cert_pem).unwrap();
        std::fs::write(&key_file, &first.key_pem).unwrap();
        let mut config = Config::default();
        config.server.host = "127.0.0.1".into();
        config.server.port = 0;
        config.engine.ping_interval_ms = 300;
        config.engine.ping_timeout_ms = 5_000;
        config.tls.cert_file = cert_file.display().to_string();
        config.tls.key_file = key_file.display().to_string();
        config.tls.reload_interval_ms = reload_interval_ms;
        let app = App::build(config).expect("build the app");
        let certs = app.tls().expect("TLS is on").clone();
        let listener = app.bind().await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        Server { addr, ca, first, cert_file, key_file, certs, _dir: dir, _stop: stop }
    }

    fn stats(&self) -> &Arc<TlsStats> {
        self.certs.stats()
    }

    fn install(&self, leaf: &Leaf) {
        replace(&self.cert_file, &leaf.cert_pem);
        replace(&self.key_file, &leaf.key_pem);
    }

    async fn connect(&self) -> TlsStream<TcpStream> {
        connect(self.addr, &self.ca, &[b"http/1.1"]).await
    }

    /// The leaf certificate a new connection is shown.
    async fn presented(&self) -> Vec<u8> {
        let stream = self.connect().await;
        stream.get_ref().1.peer_certificates().expect("a server certificate")[0].to_vec()
    }
}

async fn connect(addr: SocketAddr, ca: &TestCa, alpn: &[&[u8]]) -> TlsStream<TcpStream> {
    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from(ca.cert_der())).unwrap();
    let mut config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let tcp = within("TCP connect", TcpStream::connect(addr)).await.unwrap();
    let name = ServerName::try_from("localhost").unwrap();
    within("TLS handshake", TlsConnector::from(Arc::new(config)).connect(name, tcp)).await.expect("TLS handshake")
}

/// One request on its own connection (`Connection: close`): status and body.
async fn request(server: &Server, method: &str, target: &str, body: &str) -> (u16, String) {
    let mut stream = server.connect().await;
    let head = format!(
        "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(body.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    // A peer that closes without close_notify ends with UnexpectedEof: what was read still counts.
    let _ = within("the response", stream.read_to_end(&mut raw)).await;
    let text = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response head");
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("a status line");
    let body =
        if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { dechunk(body) } else { body.into() };
    (status, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("a chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}

/// A WebSocket over TLS (wss), read and written frame by frame.
struct Wss {
    stream: TlsStream<TcpStream>,
    buf: Vec<u8>,
}

impl Wss {
    async fn open(server: &Server) -> (Wss, String) {
        let mut stream = server.connect().await;
        let head = "GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut buf = Vec::new();
        let end = within("the upgrade response", async {
            loop {
                if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    break end + 4;
                }
                let mut chunk = [0u8; 4096];
                let n = stream.read(&mut chunk).await.unwrap();
                assert!(n > 0, "connection closed during the upgrade");
                buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        buf.drain(..end);
        let mut wss = Wss { stream, buf };
        let open = wss.recv().await;
        assert!(open.starts_with("0{"), "{open}");
        (wss, open)
    }

    /// The next text message (server frames are unmasked and, here, small and unfragmented).
    async fn recv(&mut self) -> String {
        within("a WebSocket message", async {
            loop {
                if self.buf.len() >= 2 {
                    let (len, start) = match self.buf[1] & 0x7f {
                        126 if self.buf.len() >= 4 => (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4),
                        126 => (usize::MAX, 0),
                        127 => panic!("unexpectedly large frame"),
                        n => (n as usize, 2),
                    };
                    if len != usize::MAX && self.buf.len() >= start + len {
                        let opcode = self.buf[0] & 0x0f;
                        let payload: Vec<u8> = self.buf.drain(..start + len).skip(start).collect();
                        assert_eq!(opcode, 1, "expected a text frame, got opcode {opcode}: {payload:?}");
                        return String::from_utf8(payload).unwrap();
                    }
                }
                let mut chunk = [0u8; 4096];
                let n = self.stream.read(&mut chunk).await.expect("read");
                assert!(n > 0, "the WebSocket connection closed");
                self.buf.extend_from_slice(&chunk[..n]);
            }
        })
        .await
    }

    async fn send(&mut self, text: &str) {
        self.stream.write_all(&encode_frame(true, 1, text.as_bytes(), true)).await.unwrap();
    }

    /// The next message that is not a ping (pings are answered).
    async fn recv_skipping_pings(&mut self) -> String {
        loop {
            let message = self.recv().await;
            if message == "2" {
                self.send("3").await;
            } else {
                return message;
            }
        }
    }
}

#[tokio::test]
async fn https_health_polling_and_wss() {
    let server = Server::start(0).await;

    let (status, body) = request(&server, "GET", "/healthz", "").await;
    assert_eq!(status, 200, "{body}");

    // ALPN: http/1.1 is chosen even when the client prefers h2.
    let stream = connect(server.addr, &server.ca, &[b"h2", b"http/1.1"]).await;
    assert_eq!(stream.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    drop(stream);

    // Engine.IO over https polling: handshake, Socket.IO CONNECT, its answer.
    let (status, open) = request(&server, "GET", "/socket.io/?EIO=4&transport=polling", "").await;
    assert_eq!(status, 200, "{open}");
    assert!(open.starts_with("0{"), "{open}");
    let sid = serde_json::from_str::<serde_json::Value>(&open[1..]).unwrap()["sid"].as_str().unwrap().to_owned();
    let url = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, body) = request(&server, "POST", &url, "40").await;
    assert_eq!((status, body.as_str()), (200, "ok"));
    let (status, body) = request(&server, "GET", &url, "").await;
    assert_eq!(status, 200);
    assert!(body.starts_with("40{") && body.contains("\"sid\":"), "{body}");

    // WebSocket over TLS.
    let (mut wss, _) = Wss::open(&server).await;
    wss.send("40").await;
    let connected = wss.recv_skipping_pings().await;
    assert!(connected.starts_with("40{") && connected.contains("\"sid\":"), "{connected}");
    // Heartbeats flow over wss.
    assert_eq!(wss.recv().await, "2");
    wss.send("3").await;

    assert_eq!(server.presented().await, server.first.cert_der);
    assert!(server.stats().handshakes() >= 6, "{}", server.stats().handshakes());
    assert_eq!(server.stats().handshake_failures(), 0);
}

#[tokio::test]
async fn plaintext_and_silent_clients_fail_the_handshake_and_are_counted() {
    let server = Server::start(0).await;
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut rest = Vec::new();
    // The server answers with a TLS alert (or nothing) and closes.
    let _ = within("the server to close a plaintext connection", plain.read_to_end(&mut rest)).await;
    assert!(!String::from_utf8_lossy(&rest).contains("HTTP/1.1"), "plain HTTP must not be served");
    let stats = server.stats().clone();
    eventually("the failed handshake to be counted", || std::future::ready(stats.handshake_failures() >= 1)).await;
    // The server still serves TLS clients.
    assert_eq!(request(&server, "GET", "/healthz", "").await.0, 200);
    // And the counters are on /metrics.
    let (status, metrics) = request(&server, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    let value = |name: &str| -> u64 {
        let line = metrics
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("{name} in {metrics}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    assert_eq!(value("switchyard_tls_handshake_failures_total"), stats.handshake_failures());
    assert!(value("switchyard_tls_handshakes_total") >= 1, "{metrics}");
    assert_eq!(value("switchyard_tls_reload_failures_total"), 0);
}

#[tokio::test]
async fn the_certificate_reloads_when_its_files_change_and_open_connections_stay_up() {
    let server = Server::start(100).await;
    let (mut wss, _) = Wss::open(&server).await;
    assert_eq!(server.presented().await, server.first.cert_der);

    let second = server.ca.leaf("second.switchyard.test", 2);
    server.install(&second);
    let (s, want) = (&server, &second.cert_der);
    eventually("new connections to see the new certificate", || async move { s.presented().await == *want }).await;
    assert!(server.certs.reloads() >= 1);

    // The WebSocket opened before the reload still works.
    wss.send("40").await;
    let connected = wss.recv_skipping_pings().await;
    assert!(connected.starts_with("40{") && connected.contains("\"sid\":"), "{connected}");
    assert_eq!(request(&server, "GET", "/healthz", "").await.0, 200);
}

#[tokio::test]
async fn sighup_reloads_the_certificate() {
    // No polling of the files: only SIGHUP reloads.
    let server = Server::start(0).await;
    let second = server.ca.leaf("second.switchyard.test", 2);
    server.install(&second);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(server.presented().await, server.first.cert_der, "no reload before SIGHUP");

    // The App installed its SIGHUP handler before serving, so this does not end the test process.
    assert_eq!(unsafe { libc::raise(libc::SIGHUP) }, 0);
    let (s, want) = (&server, &second.cert_der);
    eventually("SIGHUP to reload the certificate", || async move { s.presented().await == *want }).await;
    assert!(server.certs.reloads() >= 1);
}

#[tokio::test]
async fn a_bad_reload_keeps_the_current_certificate() {
    let server = Server::start(100).await;

    // A certificate file that is not PEM.
    replace(&server.cert_file, "not a certificate\n");
    let certs = server.certs.clone();
    eventually("the failed reload to be counted", || std::future::ready(certs.reload_failures() >= 1)).await;
    assert_eq!(server.presented().await, server.first.cert_der);

    // A valid certificate with a key that does not belong to it.
    let second = server.ca.leaf("second.switchyard.test", 2);
    let third = server.ca.leaf("third.switchyard.test", 3);
    replace(&server.cert_file, &second.cert_pem);
    replace(&server.key_file, &third.key_pem);
    let err = server.certs.reload().expect_err("a key that does not match");
    assert!(err.to_string().starts_with("tls.key_file: "), "{err}");
    assert!(err.to_string().contains("does not match"), "{err}");
    assert_eq!(server.presented().await, server.first.cert_der);

    // A missing key file.
    std::fs::remove_file(&server.key_file).unwrap();
    let err = server.certs.reload().expect_err("a missing key");
    assert!(err.to_string().starts_with("tls.key_file: "), "{err}");
    assert_eq!(server.presented().await, server.first.cert_der);

    // Good files again: reloaded.
    server.install(&second);
    let (s, want) = (&server, &second.cert_der);
    eventually("the good files to be loaded", || async move { s.presented().await == *want }).await;
}

#[test]
fn startup_fails_with_an_error_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new();
    let leaf = ca.leaf("localhost", 1);
    let other = ca.leaf("other", 2);
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let other_key = dir.path().join("other-key.pem");
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&cert, &leaf.cert_pem).unwrap();
    std::fs::write(&key, &leaf.key_pem).unwrap();
    std::fs::write(&other_key, &other.key_pem).unwrap();
    std::fs::write(&garbage, "hello\n").unwrap();
    let missing = dir.path().join("missing.pem");

    let build = |cert: &Path, key: &Path| {
        let mut config = Config::default();
        config.tls.cert_file = cert.display().to_string();
        config.tls.key_file = key.display().to_string();
        App::build(config).err().map(|e| e.to_string())
    };
    assert_eq!(build(&cert, &key), None);
    let err = build(&missing, &key).unwrap();
    assert!(err.starts_with("tls.cert_file: ") && err.contains("missing.pem"), "{err}");
    let err = build(&garbage, &key).unwrap();
    assert!(err.starts_with("tls.cert_file: ") && err.contains("no certificate"), "{err}");
    let err = build(&cert, &missing).unwrap();
    assert!(err.starts_with("tls.key_file: ") && err.contains("missing.pem"), "{err}");
    let err = build(&cert, &garbage).unwrap();
    assert!(err.starts_with("tls.key_file: ") && err.contains("no private key"), "{err}");
    let err = build(&cert, &other_key).unwrap();
    assert!(err.starts_with("tls.key_file: ") && err.contains("does not match"), "{err}");
    // The certificate file in place of the key.
    let err = build(&cert, &cert).unwrap();
    assert!(err.starts_with("tls.key_file: "), "{err}");
}
