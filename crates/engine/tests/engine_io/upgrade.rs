//! The upgrade from polling to WebSocket: probe, noop for the pending poll, the upgrade packet, the
//! packets buffered meanwhile, and what is refused afterwards.

use crate::common::*;
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_engine::{CloseReason, EngineConfig};

async fn probe(server: &EchoServer, session: &Polling) -> WsClient {
    let mut ws = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)))
        .await
        .unwrap_or_else(|res| panic!("upgrade refused: {} {:?}", res.status, res.text()));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3probe".into()));
    ws
}

/// A probe and the upgrade packet, done once the WebSocket answers a message.
async fn upgraded(server: &EchoServer, session: &Polling) -> WsClient {
    let mut ws = probe(server, session).await;
    ws.send_text("5").await;
    ws.send_text("4sync").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4sync".into()));
    ws
}

/// Another WebSocket for `session` is refused: 400, or closed at its probe.
async fn second_websocket_is_refused(server: &EchoServer, session: &Polling) {
    match WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid))).await {
        Err(res) => assert_eq!(res.status, 400),
        Ok(mut second) => {
            second.send_text("2probe").await;
            second.expect_closed().await;
        }
    }
}

#[tokio::test]
async fn upgrade_completes_and_traffic_moves_to_websocket() {
    let (server, session) = polling_session(engine_config()).await;
    let mut pending = session.spawn_get();
    assert!(still_pending(&mut pending, Duration::from_millis(100)).await);
    let mut ws = probe(&server, &session).await;
    let res = join(pending).await;
    assert_eq!((res.status, res.text()), (200, "6"), "the pending poll ends with a noop");
    ws.send_text("5").await;
    ws.send_text("4over websocket").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4over websocket".into()));
    ws.send_binary(&[7, 7]).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![7, 7]));
    assert_eq!(server.engine.stats().upgrades.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn buffered_packets_are_flushed_over_websocket_in_order() {
    let (server, session) = polling_session(engine_config()).await;
    // Echoes queue up while nobody polls.
    session.send("4one\x1e4two\x1ebAQID").await;
    let mut ws = probe(&server, &session).await;
    session.send("4three").await;
    ws.send_text("5").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4one".into()));
    assert_eq!(ws.recv().await, WsFrame::Text("4two".into()));
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![1, 2, 3]));
    assert_eq!(ws.recv().await, WsFrame::Text("4three".into()));
    ws.send_text("4four").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4four".into()));
}

#[tokio::test]
async fn get_after_upgrade_is_rejected() {
    let (server, session) = polling_session(engine_config()).await;
    let mut ws = upgraded(&server, &session).await;
    session.get().await.assert_engine_error(3, "Bad request");
    // The WebSocket is unaffected.
    ws.send_text("4still").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4still".into()));
}

#[tokio::test]
async fn post_after_upgrade_is_rejected() {
    let (server, session) = polling_session(engine_config()).await;
    let mut ws = upgraded(&server, &session).await;
    session.post(b"4via polling").await.assert_engine_error(3, "Bad request");
    ws.send_text("4next").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4next".into()), "nothing from the refused POST was delivered");
}

#[tokio::test]
async fn second_websocket_for_an_upgraded_session_is_closed() {
    let (server, session) = polling_session(engine_config()).await;
    let mut ws = upgraded(&server, &session).await;

    second_websocket_is_refused(&server, &session).await;
    ws.send_text("4first still works").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4first still works".into()));
}

#[tokio::test]
async fn second_websocket_during_a_probe_is_closed() {
    let (server, session) = polling_session(engine_config()).await;
    let mut first = probe(&server, &session).await;
    second_websocket_is_refused(&server, &session).await;
    first.send_text("5").await;
    first.send_text("4done").await;
    assert_eq!(first.recv().await, WsFrame::Text("4done".into()));
}

#[tokio::test]
async fn upgrade_of_unknown_sid_is_refused() {
    let server = EchoServer::start(engine_config()).await;
    let res = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some("unknown-sid")))
        .await
        .err()
        .expect("upgrade refused");
    assert_eq!(res.status, 400);
    res.assert_engine_error(1, "Session ID unknown");
}

#[tokio::test]
async fn upgrade_is_refused_when_upgrades_are_disabled() {
    let (server, session) = polling_session(EngineConfig { allow_upgrades: false, ..engine_config() }).await;
    let res = WsClient::connect(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)))
        .await
        .err()
        .expect("upgrade refused");
    assert_eq!(res.status, 400);
    session.send("4polling goes on").await;
    assert_eq!(session.poll().await, "4polling goes on");
}

#[tokio::test]
async fn upgrade_timeout_keeps_the_polling_session() {
    let config = EngineConfig { upgrade_timeout: Duration::from_millis(300), ..engine_config() };
    let (mut server, session) = polling_session(config).await;
    let mut ws = probe(&server, &session).await;
    // No upgrade packet: the server gives up on this WebSocket.
    ws.expect_closed().await;
    assert!(server.no_close_yet(), "the session itself stays open");
    session.send("4still polling").await;
    assert_eq!(session.poll().await, "4still polling");
    // A later upgrade attempt works.
    let mut ws = probe(&server, &session).await;
    ws.send_text("5").await;
    ws.send_text("4upgraded").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4upgraded".into()));
}

#[tokio::test]
async fn probe_websocket_closed_by_the_client_keeps_the_polling_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let ws = probe(&server, &session).await;
    drop(ws);
    // The session keeps polling.
    session.send("4back to polling").await;
    assert_eq!(session.poll().await, "4back to polling");
    assert!(server.no_close_yet());
}

#[tokio::test]
async fn close_over_websocket_after_upgrade_ends_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let mut ws = probe(&server, &session).await;
    ws.send_text("5").await;
    ws.send_text("1").await;
    ws.expect_closed().await;
    assert_session_closed(&mut server, &session, CloseReason::TransportClose).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.no_close_yet(), "the handler hears of the close exactly once");
}

#[tokio::test]
async fn heartbeat_continues_over_websocket_after_upgrade() {
    let (mut server, session) = polling_session(quick_heartbeat_config()).await;
    let mut ws = probe(&server, &session).await;
    ws.send_text("5").await;
    for _ in 0..3 {
        assert_eq!(ws.recv().await, WsFrame::Text("2".into()));
        ws.send_text("3").await;
    }
    assert!(server.no_close_yet());
}
