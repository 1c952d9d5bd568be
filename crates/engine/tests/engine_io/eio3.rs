//! Engine.IO v3 (`EIO=3`, Socket.IO v2 clients) behind `allow_eio3`, written from
//! `docs/engine.io-protocol/v3.md` and its test suite: refused when off; the handshake; length-prefixed
//! text payloads and XHR2 binary payloads; client pings answered with pongs, and the ping timeout when
//! the client stops pinging (the server never pings); typed binary WebSocket frames; the upgrade.

use crate::common::*;
use std::time::Duration;
use switchyard_engine::{CloseReason, EngineConfig};
use tokio::time::Instant;

fn v3_config() -> EngineConfig {
    EngineConfig { allow_eio3: true, ..engine_config() }
}

/// pingInterval 300 ms, pingTimeout 200 ms: a v3 client must ping within 500 ms.
fn v3_quick_config() -> EngineConfig {
    EngineConfig { allow_eio3: true, ..quick_heartbeat_config() }
}

fn url(transport: &str, sid: Option<&str>, b64: bool) -> String {
    let mut url = format!("{EIO_PATH}?EIO=3&transport={transport}");
    if let Some(sid) = sid {
        url.push_str(&format!("&sid={sid}"));
    }
    if b64 {
        url.push_str("&b64=1");
    }
    url
}

/// Splits a text payload into its packets, checking each length prefix (UTF-16 code units).
#[track_caller]
fn packets(payload: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = payload;
    while !rest.is_empty() {
        let (len, tail) = rest.split_once(':').unwrap_or_else(|| panic!("length prefix expected in {payload:?}"));
        let len: usize = len.parse().unwrap_or_else(|_| panic!("bad length in {payload:?}"));
        let mut units = 0;
        let end = tail
            .char_indices()
            .find(|(_, c)| {
                let done = units >= len;
                units += c.len_utf16();
                done
            })
            .map_or(tail.len(), |(i, _)| i);
        out.push(tail[..end].to_string());
        rest = &tail[end..];
    }
    out
}

/// A v3 polling session (`b64`: the client asked for base64 binary).
struct Session {
    addr: std::net::SocketAddr,
    sid: String,
    b64: bool,
}

impl Session {
    async fn open(addr: std::net::SocketAddr, b64: bool) -> (Session, serde_json::Value) {
        let res = get(addr, &url("polling", None, b64)).await;
        assert_eq!(res.status, 200, "handshake: {:?}", res.text());
        assert_eq!(res.header("content-type"), Some("text/plain; charset=UTF-8"));
        let packets = packets(res.text());
        let open = parse_open(&packets[0]);
        let sid = open["sid"].as_str().expect("sid").to_string();
        (Session { addr, sid, b64 }, open)
    }

    fn url(&self) -> String {
        url("polling", Some(&self.sid), false)
    }

    async fn get(&self) -> HttpResponse {
        get(self.addr, &self.url()).await
    }

    async fn poll(&self) -> String {
        let res = self.get().await;
        assert_eq!(res.status, 200, "poll: {:?}", res.text());
        res.text().to_string()
    }

    async fn send(&self, body: &str) {
        let res = post(self.addr, &self.url(), body.as_bytes()).await;
        assert_eq!((res.status, res.text()), (200, "ok"), "POST {body:?}");
    }

    async fn send_binary(&self, body: &[u8]) -> HttpResponse {
        http(self.addr, "POST", &self.url(), &[("Content-Type", "application/octet-stream")], body).await
    }
}

#[tokio::test]
async fn refused_when_not_allowed() {
    let server = EchoServer::start(engine_config()).await;
    get(server.addr, &url("polling", None, false)).await.assert_engine_error(5, "Unsupported protocol version");
    let refused = WsClient::connect(server.addr, &url("websocket", None, false)).await;
    refused.err().expect("no WebSocket for EIO=3").assert_engine_error(5, "Unsupported protocol version");
    // Only 3 and 4 are versions; anything else is refused even when v3 is allowed.
    let server = EchoServer::start(v3_config()).await;
    let res = get(server.addr, &format!("{EIO_PATH}?EIO=2&transport=polling")).await;
    res.assert_engine_error(5, "Unsupported protocol version");
}

#[tokio::test]
async fn polling_handshake_is_length_prefixed() {
    let mut server = EchoServer::start(v3_config()).await;
    let res = get(server.addr, &url("polling", None, false)).await;
    assert_eq!(res.status, 200);
    let body = res.text();
    let (len, packet) = body.split_once(':').expect("length prefix");
    assert_eq!(len, packet.len().to_string(), "one packet: the open packet");
    let open = parse_open(packet);
    assert_eq!(open["upgrades"], serde_json::json!(["websocket"]));
    assert_eq!(open["pingInterval"], 20_000);
    assert_eq!(open["pingTimeout"], 10_000);
    assert_eq!(server.opened().await, open["sid"].as_str().unwrap());
}

#[tokio::test]
async fn polling_text_and_base64_binary() {
    let server = EchoServer::start(v3_config()).await;
    let (session, _) = Session::open(server.addr, true).await;
    session.send("6:4hello").await;
    assert_eq!(session.poll().await, "6:4hello");
    session.send("6:4test16:4test26:4test3").await;
    assert_eq!(session.poll().await, "6:4test16:4test26:4test3");
    session.send("6:4hello10:b4AQIDBA==").await;
    assert_eq!(session.poll().await, "6:4hello10:b4AQIDBA==");
    // Lengths count characters as JavaScript does: € is one, 😀 two.
    session.send("2:4€3:4😀").await;
    assert_eq!(session.poll().await, "2:4€3:4😀");
    assert!(session.b64);
}

#[tokio::test]
async fn polling_binary_payloads_for_xhr2_clients() {
    let server = EchoServer::start(v3_config()).await;
    let (session, _) = Session::open(server.addr, false).await;
    // A text POST with base64 binary; the poll answers with a binary payload.
    session.send("6:4hello10:b4AQIDBA==").await;
    let res = session.get().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("application/octet-stream"));
    assert_eq!(res.body, [0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4]);
    // A binary POST (what the v2 client sends with XHR2 when it has binary to send).
    let body = [0, 2, 255, b'4', b'x', 1, 3, 255, 4, 9, 9];
    let res = session.send_binary(&body).await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    assert_eq!(session.get().await.body, body);
    // Without binary queued, the answer is text.
    session.send("3:4ok").await;
    let res = session.get().await;
    assert_eq!((res.header("content-type"), res.text()), (Some("text/plain; charset=UTF-8"), "3:4ok"));
}

#[tokio::test]
async fn malformed_payload_closes_the_session() {
    let mut server = EchoServer::start(v3_config()).await;
    for body in ["abc", "4hello", "7:4hello", "2:9x", "\u{1e}"] {
        let (session, _) = Session::open(server.addr, true).await;
        let res = post(server.addr, &session.url(), body.as_bytes()).await;
        res.assert_engine_error(3, "Bad request");
        assert_eq!(server.closed(&session.sid).await, CloseReason::ParseError, "{body:?}");
        session.get().await.assert_engine_error(1, "Session ID unknown");
    }
    let (session, _) = Session::open(server.addr, false).await;
    session.send_binary(&[0, 9, 255, b'4']).await.assert_engine_error(3, "Bad request");
    assert_eq!(server.closed(&session.sid).await, CloseReason::ParseError);
}

#[tokio::test]
async fn polling_client_pings_get_pongs_and_keep_the_session() {
    let mut server = EchoServer::start(v3_quick_config()).await;
    let (session, _) = Session::open(server.addr, true).await;
    let started = Instant::now();
    // Six pings 200 ms apart: well past pingInterval + pingTimeout (500 ms) in all.
    for _ in 0..6 {
        session.send("1:2").await;
        assert_eq!(session.poll().await, "1:3");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(started.elapsed() > Duration::from_millis(1000));
    assert!(server.no_close_yet(), "a pinging client stays connected");
    session.send("6:2probe").await;
    assert_eq!(session.poll().await, "6:3probe", "a pong carries the ping's data");
}

#[tokio::test]
async fn polling_ping_timeout_when_the_client_stops_pinging() {
    let mut server = EchoServer::start(v3_quick_config()).await;
    let (session, _) = Session::open(server.addr, true).await;
    let opened = Instant::now();
    // The server never pings: the pending poll ends with the close packet at the deadline.
    assert_eq!(session.poll().await, "1:1");
    assert!(opened.elapsed() >= Duration::from_millis(450), "closed after {:?}", opened.elapsed());
    assert_eq!(server.closed(&session.sid).await, CloseReason::PingTimeout);
    let res = post(server.addr, &session.url(), b"1:2").await;
    res.assert_engine_error(1, "Session ID unknown");
}

#[tokio::test]
async fn polling_pong_from_the_client_is_invalid() {
    let mut server = EchoServer::start(v3_config()).await;
    let (session, _) = Session::open(server.addr, true).await;
    session.send("1:3").await;
    assert_eq!(server.closed(&session.sid).await, CloseReason::TransportError);
}

#[tokio::test]
async fn polling_close_packet_ends_the_pending_poll_with_noop() {
    let mut server = EchoServer::start(v3_config()).await;
    let (session, _) = Session::open(server.addr, true).await;
    let pending = tokio::spawn({
        let url = session.url();
        let addr = session.addr;
        async move { get(addr, &url).await }
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.send("1:1").await;
    assert_eq!(join(pending).await.text(), "1:6");
    assert_eq!(server.closed(&session.sid).await, CloseReason::TransportClose);
    session.get().await.assert_engine_error(1, "Session ID unknown");
}

async fn ws_session(addr: std::net::SocketAddr) -> (WsClient, serde_json::Value) {
    let mut ws = WsClient::connect(addr, &url("websocket", None, false))
        .await
        .unwrap_or_else(|res| panic!("WebSocket refused: {} {:?}", res.status, res.text()));
    let open = parse_open(&ws.recv_text().await);
    (ws, open)
}

#[tokio::test]
async fn websocket_handshake_text_and_typed_binary() {
    let server = EchoServer::start(v3_config()).await;
    let (mut ws, open) = ws_session(server.addr).await;
    assert_eq!(open["upgrades"], serde_json::json!([]));
    ws.send_text("4hello").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4hello".into()));
    // A binary frame starts with the packet type, both ways.
    ws.send_binary(&[4, 1, 2, 3, 4]).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![4, 1, 2, 3, 4]));
    // A client without binary support may send base64 text; the echo comes back as binary.
    ws.send_text("b4AQID").await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![4, 1, 2, 3]));
}

#[tokio::test]
async fn websocket_client_pings_and_ping_timeout() {
    let mut server = EchoServer::start(v3_quick_config()).await;
    let (mut ws, open) = ws_session(server.addr).await;
    let sid = open["sid"].as_str().unwrap().to_string();
    let mut last_ping = Instant::now();
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        last_ping = Instant::now();
        ws.send_text("2").await;
        assert_eq!(ws.recv().await, WsFrame::Text("3".into()));
    }
    assert!(server.no_close_yet());
    // Stop pinging: the next thing from the server is the close, never a ping.
    let stopped = last_ping;
    match ws.recv().await {
        WsFrame::Close(_) | WsFrame::Eof => {}
        other => panic!("close expected, got {other:?}"),
    }
    assert!(stopped.elapsed() >= Duration::from_millis(400), "closed after {:?}", stopped.elapsed());
    assert_eq!(server.closed(&sid).await, CloseReason::PingTimeout);
}

#[tokio::test]
async fn websocket_invalid_packets_close() {
    let mut server = EchoServer::start(v3_config()).await;
    for (text, binary) in [(Some("abc"), None), (None, Some(vec![2u8, 1])), (None, Some(vec![]))] {
        let (mut ws, open) = ws_session(server.addr).await;
        if let Some(text) = text {
            ws.send_text(text).await;
        }
        if let Some(binary) = &binary {
            ws.send_binary(binary).await;
        }
        let _ = ws.expect_closed().await;
        assert_eq!(server.closed(open["sid"].as_str().unwrap()).await, CloseReason::ParseError, "{text:?} {binary:?}");
    }
}

#[tokio::test]
async fn upgrade_from_polling() {
    let server = EchoServer::start(v3_config()).await;
    let (session, _) = Session::open(server.addr, false).await;
    let mut ws = WsClient::connect(server.addr, &url("websocket", Some(&session.sid), false))
        .await
        .unwrap_or_else(|res| panic!("upgrade refused: {}", res.status));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3probe".into()));
    assert_eq!(session.poll().await, "1:6", "the pending poll ends with a noop");
    ws.send_text("5").await;
    ws.send_text("4hello").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4hello".into()));
    session.get().await.assert_engine_error(3, "Bad request");
    // Heartbeats continue over the WebSocket, still client-driven.
    ws.send_text("2").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3".into()));
    ws.send_binary(&[4, 7]).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![4, 7]));
}

#[tokio::test]
async fn v4_clients_are_unchanged_when_v3_is_allowed() {
    let (server, session) = polling_session(v3_config()).await;
    session.send("4hello\u{1e}bAQID").await;
    assert_eq!(session.poll().await, "4hello\u{1e}bAQID");
    let res = http(server.addr, "POST", &session.url(), &[("Content-Type", "application/octet-stream")], b"x").await;
    res.assert_engine_error(3, "Bad request");
    let (mut ws, _) = WsClient::open_session(server.addr, EIO_PATH).await;
    ws.send_binary(&[1, 2]).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![1, 2]));
}
