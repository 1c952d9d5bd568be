//! Edge cases found by probing, each answered as the Node reference answers it: bytes that share the
//! upgrade request's TCP segment, malformed WebSocket keys, upgrades of sessions that ended, lone
//! UTF-16 surrogates in JSON, and the ordering of a session's removal against the response that
//! ends it (which the official suites hit as intermittent failures).

use crate::common::*;
use std::time::Duration;
use switchyard_engine::{CloseReason, EngineConfig};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// A valid key (RFC 6455's example).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";

fn upgrade_head(addr: std::net::SocketAddr, target: &str, key: &str) -> String {
    format!(
        "GET {target} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// Reads unmasked server frames from `stream` (after the 101) until a text frame arrives.
async fn read_text_frame(stream: &mut TcpStream, buf: &mut Vec<u8>) -> String {
    use tokio::io::AsyncReadExt;
    loop {
        if buf.len() >= 2 {
            let opcode = buf[0] & 0x0f;
            let len = (buf[1] & 0x7f) as usize;
            assert!(len < 126, "short frames only in these tests");
            if buf.len() >= 2 + len {
                let payload: Vec<u8> = buf.drain(..2 + len).skip(2).collect();
                if opcode == OP_TEXT {
                    return String::from_utf8(payload).expect("UTF-8 text frame");
                }
                assert_ne!(opcode, OP_CLOSE, "connection closed while a text frame was expected");
                continue;
            }
        }
        let mut chunk = [0u8; 4096];
        let n = within("a WebSocket frame", stream.read(&mut chunk)).await.expect("read");
        assert!(n > 0, "connection closed while a text frame was expected");
        buf.extend_from_slice(&chunk[..n]);
    }
}

// ---- bytes in the same TCP segment as the upgrade request ---------------------------------------

#[tokio::test]
async fn probe_in_the_upgrade_requests_segment_is_answered() {
    let (server, session) = polling_session(engine_config()).await;
    let head = upgrade_head(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)), KEY);
    // One write: the request head and the `2probe` frame travel together.
    let probe = encode_frame(true, OP_TEXT, b"2probe", true);
    let mut stream = send_request(server.addr, &head, &probe).await;
    let mut buf = Vec::new();
    let res = within("the 101", read_response(&mut stream, &mut buf)).await;
    assert_eq!(res.status, 101);
    assert_eq!(read_text_frame(&mut stream, &mut buf).await, "3probe");
    // The upgrade completes and the session now talks over this WebSocket.
    let mut rest = encode_frame(true, OP_TEXT, b"5", true);
    rest.extend(encode_frame(true, OP_TEXT, b"4after", true));
    within("write", stream.write_all(&rest)).await.expect("write");
    assert_eq!(read_text_frame(&mut stream, &mut buf).await, "4after");
}

#[tokio::test]
async fn message_in_a_new_websockets_request_segment_is_answered() {
    let server = EchoServer::start(engine_config()).await;
    let head = upgrade_head(server.addr, &eio_url(EIO_PATH, "websocket", None), KEY);
    let message = encode_frame(true, OP_TEXT, b"4early", true);
    let mut stream = send_request(server.addr, &head, &message).await;
    let mut buf = Vec::new();
    assert_eq!(within("the 101", read_response(&mut stream, &mut buf)).await.status, 101);
    let open = read_text_frame(&mut stream, &mut buf).await;
    parse_open(&open);
    assert_eq!(read_text_frame(&mut stream, &mut buf).await, "4early");
}

// ---- Sec-WebSocket-Key ----------------------------------------------------------------------------

#[tokio::test]
async fn malformed_websocket_keys_are_refused_with_400() {
    let (server, session) = polling_session(engine_config()).await;
    let targets = [eio_url(EIO_PATH, "websocket", None), eio_url(EIO_PATH, "websocket", Some(&session.sid))];
    let bad_keys = [
        "",
        "abc",
        // 16 bytes, but without the padding.
        "dGhlIHNhbXBsZSBub25jZQ",
        // 17 bytes.
        "dGhlIHNhbXBsZSBub25jZQE=",
        // Not base64.
        "dGhlIHNhbXBsZSBub25jZ*==",
        "dGhlIHNhbXBsZSBub25jZQ==x",
    ];
    for target in &targets {
        for key in bad_keys {
            let headers = [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", key),
                ("Sec-WebSocket-Version", "13"),
            ];
            let res = http(server.addr, "GET", target, &headers, b"").await;
            assert_eq!(res.status, 400, "key {key:?} on {target}");
        }
    }
    // The session is unharmed and still upgrades with a valid key.
    let mut ws = WsClient::connect(server.addr, &targets[1]).await.unwrap_or_else(|r| panic!("refused: {}", r.status));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3probe".into()));
}

// ---- upgrades of sessions that ended -------------------------------------------------------------

/// An upgrade timeout far longer than any wait below: a close must come from the session's end.
fn slow_upgrade_config() -> EngineConfig {
    EngineConfig { upgrade_timeout: Duration::from_secs(30), ..engine_config() }
}

#[tokio::test]
async fn probe_closes_at_once_when_its_polling_session_ends() {
    let (mut server, session) = polling_session(slow_upgrade_config()).await;
    let mut ws = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)))
        .await
        .unwrap_or_else(|r| panic!("refused: {}", r.status));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3probe".into()));
    // The client closes the polling session before sending the upgrade packet.
    let started = Instant::now();
    session.send("1").await;
    assert_eq!(ws.expect_closed().await, Some(1000));
    assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
    assert_eq!(server.closed(&session.sid).await, CloseReason::TransportClose);
}

#[tokio::test]
async fn websocket_before_its_probe_closes_at_once_when_its_polling_session_ends() {
    let (server, session) = polling_session(slow_upgrade_config()).await;
    let mut ws = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)))
        .await
        .unwrap_or_else(|r| panic!("refused: {}", r.status));
    let started = Instant::now();
    session.send("1").await;
    assert_eq!(ws.expect_closed().await, Some(1000));
    assert!(started.elapsed() < Duration::from_secs(2), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn probe_closes_at_once_when_its_polling_session_times_out() {
    let config = EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        ..slow_upgrade_config()
    };
    let (mut server, session) = polling_session(config).await;
    let mut ws = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)))
        .await
        .unwrap_or_else(|r| panic!("refused: {}", r.status));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3probe".into()));
    // No pong ever: the session ends pingInterval + pingTimeout after the handshake, and the probe
    // with it.
    assert_eq!(ws.expect_closed().await, Some(1000));
    assert_eq!(server.closed(&session.sid).await, CloseReason::PingTimeout);
    let res = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid))).await;
    assert_eq!(res.err().map(|r| r.status), Some(400), "an upgrade of an ended session is refused");
}

// ---- a session is gone before the response that ends it ------------------------------------------

/// Sends `requests` (full HTTP/1.1 requests) pipelined in one write and reads one response each.
async fn pipelined(addr: std::net::SocketAddr, requests: &[String]) -> Vec<HttpResponse> {
    let mut stream = send_request(addr, &requests.concat(), b"").await;
    let mut buf = Vec::new();
    let mut responses = Vec::new();
    for _ in requests {
        responses.push(within("a pipelined response", read_response(&mut stream, &mut buf)).await);
    }
    responses
}

fn request(addr: std::net::SocketAddr, method: &str, target: &str, body: &str) -> String {
    format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

#[tokio::test]
async fn invalid_payload_removes_the_session_before_the_400() {
    let server = EchoServer::start(engine_config()).await;
    for _ in 0..10 {
        let (session, _) = Polling::open(server.addr, EIO_PATH).await;
        // The GET follows the bad POST on the same connection, in the same segment: hyper reads it
        // right after writing the 400, before the session task gets a chance to run.
        let responses = pipelined(
            server.addr,
            &[request(server.addr, "POST", &session.url(), "abc"), request(server.addr, "GET", &session.url(), "")],
        )
        .await;
        assert_eq!(responses[0].status, 400);
        responses[1].assert_engine_error(1, "Session ID unknown");
    }
    assert_eq!(server.engine.polling_sessions(), 0);
}

/// The client's close packet ends the session at once (as in Node): the POST's `ok` is sent after
/// the session is gone.
#[tokio::test]
async fn close_packet_removes_the_session_before_the_ok() {
    let (mut server, session) = polling_session(engine_config()).await;
    let responses = pipelined(
        server.addr,
        &[request(server.addr, "POST", &session.url(), "1"), request(server.addr, "GET", &session.url(), "")],
    )
    .await;
    assert_eq!((responses[0].status, responses[0].text()), (200, "ok"));
    responses[1].assert_engine_error(1, "Session ID unknown");
    assert_eq!(server.closed(&session.sid).await, CloseReason::TransportClose);
}

/// The heartbeat deadline counts from the handshake, not from when the heartbeat task ran: a poll
/// at pingInterval + pingTimeout finds the session closed even when that task is scheduled late.
#[tokio::test]
async fn polling_ping_timeout_counts_from_the_handshake_even_when_the_timer_runs_late() {
    let server = EchoServer::start(quick_heartbeat_config()).await;
    for _ in 0..3 {
        let (session, _) = Polling::open(server.addr, EIO_PATH).await;
        // Block this (single-threaded) runtime past pingInterval + pingTimeout: the server's timers
        // are all late, as on a machine whose core is busy.
        std::thread::sleep(Duration::from_millis(550));
        session.get().await.assert_engine_error(1, "Session ID unknown");
    }
}

#[tokio::test]
async fn polling_ping_timeout_with_a_late_ping_keeps_the_deadline() {
    let (_server, session) = polling_session(quick_heartbeat_config()).await;
    // Late by 150 ms: the ping goes out at ~450 ms, but its deadline stays at 500 ms.
    std::thread::sleep(Duration::from_millis(450));
    tokio::time::sleep(Duration::from_millis(100)).await;
    session.get().await.assert_engine_error(1, "Session ID unknown");
}

// ---- lone UTF-16 surrogates in JSON ----------------------------------------------------------------

#[tokio::test]
async fn lone_surrogate_escapes_are_accepted_not_a_parse_error() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    // What JSON.stringify writes for strings holding lone surrogates; Node's JSON.parse accepts them.
    ws.sio_send(r#"2["message","\ud800","a\udfffb",{"k\udbff":"\ud83d\ude00"}]"#).await;
    assert_eq!(ws.sio_recv().await, "2[\"message-back\",\"\u{fffd}\",\"a\u{fffd}b\",{\"k\u{fffd}\":\"😀\"}]");
    // Still connected: an ack round trip works.
    ws.sio_send(r#"21["message-with-ack","\udc00"]"#).await;
    assert_eq!(ws.sio_recv().await, "31[\"\u{fffd}\"]");
    // An escaped backslash before `ud800` is no escape of a surrogate, and stays as sent.
    ws.sio_send(r#"2["message","\\ud800"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","\\ud800"]"#);
}
