//! Heartbeats (Engine.IO v4): the server pings every pingInterval and expects a pong within
//! pingTimeout; a client ping is a protocol violation. Timings: pingInterval 300 ms, pingTimeout 200 ms.

use crate::common::*;
use std::time::Duration;
use switchyard_engine::CloseReason;
use tokio::time::Instant;

/// Lower bound for the gap before a ping: pingInterval less scheduling slack.
const MIN_PING_GAP: Duration = Duration::from_millis(250);

#[tokio::test]
async fn polling_pong_keeps_the_session_alive() {
    let (mut server, session) = polling_session(quick_heartbeat_config()).await;
    let mut since = Instant::now();
    // Three full cycles outlast pingInterval + pingTimeout several times over.
    for _ in 0..3 {
        assert_eq!(session.poll().await, "2");
        assert!(since.elapsed() >= MIN_PING_GAP, "ping after {:?}, before pingInterval", since.elapsed());
        session.send("3").await;
        since = Instant::now();
    }
    assert!(server.no_close_yet(), "the session stays open while the client answers pings");
    session.send("4alive").await;
    assert_eq!(session.poll().await, "4alive");
}

#[tokio::test]
async fn polling_missing_pong_closes_with_ping_timeout() {
    let (mut server, session) = polling_session(quick_heartbeat_config()).await;
    assert_eq!(session.poll().await, "2");
    let pinged = Instant::now();
    // No pong: the next poll ends with a close packet once pingTimeout has passed.
    assert_eq!(session.poll().await, "1");
    assert!(pinged.elapsed() >= Duration::from_millis(150), "closed {:?} after the ping", pinged.elapsed());
    assert_session_closed(&mut server, &session, CloseReason::PingTimeout).await;
}

#[tokio::test]
async fn polling_client_ping_closes_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let mut pending = session.spawn_get();
    assert!(still_pending(&mut pending, Duration::from_millis(100)).await);
    let _ = session.post(b"2").await;
    assert_eq!(join(pending).await.text(), "1");
    assert_session_closed(&mut server, &session, CloseReason::TransportError).await;
}

#[tokio::test]
async fn websocket_pong_keeps_the_connection_alive() {
    let mut server = EchoServer::start(quick_heartbeat_config()).await;
    let (mut ws, _) = WsClient::open_session(server.addr, EIO_PATH).await;
    let mut since = Instant::now();
    for _ in 0..3 {
        assert_eq!(ws.recv().await, WsFrame::Text("2".into()));
        assert!(since.elapsed() >= MIN_PING_GAP, "ping after {:?}, before pingInterval", since.elapsed());
        ws.send_text("3").await;
        since = Instant::now();
    }
    assert!(server.no_close_yet());
    ws.send_text("4alive").await;
    assert_eq!(ws.recv_text().await, "4alive");
}

#[tokio::test]
async fn websocket_missing_pong_closes_with_ping_timeout() {
    let mut server = EchoServer::start(quick_heartbeat_config()).await;
    let (mut ws, open) = WsClient::open_session(server.addr, EIO_PATH).await;
    assert_eq!(ws.recv().await, WsFrame::Text("2".into()));
    ws.expect_closed().await;
    let sid = open["sid"].as_str().expect("sid");
    assert_eq!(server.closed(sid).await, CloseReason::PingTimeout);
}

/// One heartbeat task drives every WebSocket connection of the engine, each on its own deadline:
/// connections opened at different times are each pinged about pingInterval after their own
/// handshake (or pong), and the one that stops answering is closed for a ping timeout while the
/// others stay open.
#[tokio::test]
async fn websocket_heartbeats_are_per_connection_under_one_task() {
    let mut server = EchoServer::start(quick_heartbeat_config()).await;
    let (mut first, _) = WsClient::open_session(server.addr, EIO_PATH).await;
    tokio::time::sleep(Duration::from_millis(120)).await;
    let (mut second, _) = WsClient::open_session(server.addr, EIO_PATH).await;
    let second_opened = Instant::now();
    let (mut silent, silent_open) = WsClient::open_session(server.addr, EIO_PATH).await;
    // The first is pinged first, about 120 ms before the second.
    assert_eq!(first.recv().await, WsFrame::Text("2".into()));
    assert!(second_opened.elapsed() < MIN_PING_GAP, "the second connection's deadline came first");
    first.send_text("3").await;
    assert_eq!(second.recv().await, WsFrame::Text("2".into()));
    assert!(second_opened.elapsed() >= MIN_PING_GAP, "ping after {:?}, before pingInterval", second_opened.elapsed());
    second.send_text("3").await;
    assert_eq!(silent.recv().await, WsFrame::Text("2".into()));
    // The silent one is closed for it; the two that answer are pinged again and stay open.
    silent.expect_closed().await;
    let silent_sid = silent_open["sid"].as_str().expect("sid");
    assert_eq!(server.closed(silent_sid).await, CloseReason::PingTimeout);
    for ws in [&mut first, &mut second] {
        assert_eq!(ws.recv().await, WsFrame::Text("2".into()));
        ws.send_text("3").await;
    }
    assert!(server.no_close_yet(), "connections that answer pings stay open");
    first.send_text("4still").await;
    assert_eq!(first.recv_text().await, "4still");
}

#[tokio::test]
async fn websocket_client_ping_closes_the_connection() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, open) = WsClient::open_session(server.addr, EIO_PATH).await;
    ws.send_text("2").await;
    ws.expect_closed().await;
    assert_eq!(server.closed(open["sid"].as_str().expect("sid")).await, CloseReason::TransportError);
}

#[tokio::test]
async fn unsolicited_pong_is_harmless() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = WsClient::open_session(server.addr, EIO_PATH).await;
    ws.send_text("3").await;
    ws.send_text("4still here").await;
    assert_eq!(ws.recv_text().await, "4still here");
}

/// A client that stops reading while the server writes to it: the write stalls (the echo is larger
/// than the loopback socket buffers, the queue limit is not reached), yet the connection still ends
/// within the heartbeat window (ping timeout or stalled write), instead of pinning its task.
#[tokio::test]
async fn websocket_write_stalled_by_a_client_that_stops_reading_closes_the_connection() {
    const MESSAGE: usize = 24 * 1024 * 1024;
    let config = switchyard_engine::EngineConfig {
        max_payload: MESSAGE + 16,
        max_queue_bytes: 4 * MESSAGE,
        ..quick_heartbeat_config()
    };
    let mut server = EchoServer::start(config).await;
    let (mut ws, open) = WsClient::open_session(server.addr, EIO_PATH).await;
    let sid = open["sid"].as_str().expect("sid").to_string();
    // The server reads all of it, then its echo blocks: this client never reads again.
    ws.send_binary(&vec![7u8; MESSAGE]).await;
    let started = Instant::now();
    let reason = within("the stalled connection to close", server.closed(&sid)).await;
    assert!(
        matches!(reason, CloseReason::SlowClient | CloseReason::PingTimeout),
        "closed for {reason:?} after {:?}",
        started.elapsed()
    );
    // pingInterval + pingTimeout is 500 ms; the stall is counted from the first timer tick.
    assert!(started.elapsed() < Duration::from_secs(3), "closed after {:?}", started.elapsed());
    drop(ws);
}
