//! DISCONNECT both ways, and the reason the server reports for each way a socket can go.

use crate::common::*;
use std::time::Duration;
use switchyard_engine::EngineConfig;

#[tokio::test]
async fn client_disconnect_packet() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.sio_send("1").await;
    assert_eq!(seen.disconnect_reason(&sid).await, "client namespace disconnect");
    // Only the namespace is left: the connection can join again, as a new socket.
    let again = ws.sio_connect("/", None).await;
    assert_ne!(again, sid);
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    ws.sio_send(r#"2["message","back again"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","back again"]"#);
}

#[tokio::test]
async fn client_disconnect_from_one_namespace_keeps_the_others() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _main) = server.client("/").await;
    let custom = ws.sio_connect("/custom", None).await;
    ws.sio_recv().await; // auth
    ws.sio_send("1/custom,").await;
    assert_eq!(seen.disconnect_reason(&custom).await, "client namespace disconnect");
    ws.sio_send(r#"2["message","main lives"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","main lives"]"#);
}

#[tokio::test]
async fn server_namespace_disconnect_sends_disconnect_packet() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.sio_send(r#"2["disconnect-me",false]"#).await;
    assert_eq!(ws.sio_recv().await, "1");
    assert_eq!(seen.disconnect_reason(&sid).await, "server namespace disconnect");
    // The connection itself stays open.
    ws.sio_connect("/", None).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);

    let custom = ws.sio_connect("/custom", None).await;
    assert_eq!(ws.sio_recv().await, r#"2/custom,["auth",{}]"#);
    ws.sio_send(r#"2/custom,["disconnect-me",false]"#).await;
    assert_eq!(ws.sio_recv().await, "1/custom,");
    assert_eq!(seen.disconnect_reason(&custom).await, "server namespace disconnect");
}

#[tokio::test]
async fn server_disconnect_with_close_ends_every_namespace_and_the_connection() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, main) = server.client("/").await;
    let custom = ws.sio_connect("/custom", None).await;
    ws.sio_recv().await; // auth
    ws.sio_send(r#"2["disconnect-me",true]"#).await;
    let mut packets = vec![ws.sio_recv().await, ws.sio_recv().await];
    packets.sort();
    assert_eq!(packets, ["1", "1/custom,"]);
    ws.expect_closed().await;
    assert_eq!(seen.disconnect_reason(&main).await, "server namespace disconnect");
    assert_eq!(seen.disconnect_reason(&custom).await, "server namespace disconnect");
}

#[tokio::test]
async fn server_disconnect_with_close_answers_the_pending_poll() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    let Seen::Connected { id, .. } = seen.next().await else { panic!("connected first") };
    let mut pending = session.spawn_get();
    assert!(still_pending(&mut pending, Duration::from_millis(100)).await);
    session.send(r#"42["disconnect-me",true]"#).await;
    let res = join(pending).await;
    assert_eq!(res.status, 200);
    assert!(res.text() == "41" || res.text() == "41\x1e1", "DISCONNECT (and close) expected: {:?}", res.text());
    assert_eq!(seen.disconnect_reason(&id).await, "server namespace disconnect");
}

#[tokio::test]
async fn server_disconnect_with_close_over_polling() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    let Seen::Connected { id, .. } = seen.next().await else { panic!("connected first") };
    session.send(r#"42["disconnect-me",true]"#).await;
    assert_eq!(session.poll_packets(2).await, ["41", "1"], "DISCONNECT, then the Engine.IO close packet");
    assert_eq!(seen.disconnect_reason(&id).await, "server namespace disconnect");
}

#[tokio::test]
async fn transport_close_reasons() {
    // WebSocket close frame.
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.send_frame(true, OP_CLOSE, &1000u16.to_be_bytes()).await;
    assert_eq!(seen.disconnect_reason(&sid).await, "transport close");

    // Engine.IO close packet.
    let (mut ws, sid) = server.client("/").await;
    ws.send_text("1").await;
    assert_eq!(seen.disconnect_reason(&sid).await, "transport close");

    // TCP connection dropped.
    let (ws, sid) = server.client("/").await;
    drop(ws);
    assert_eq!(seen.disconnect_reason(&sid).await, "transport close");

    // Engine.IO close packet over polling.
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    let sid = loop {
        if let Seen::Connected { id, .. } = seen.next().await {
            break id;
        }
    };
    session.send("1").await;
    assert_eq!(seen.disconnect_reason(&sid).await, "transport close");
}

#[tokio::test]
async fn ping_timeout_reason() {
    let config = sio_config();
    let config = switchyard_socketio::SocketIoConfig {
        engine: EngineConfig {
            ping_interval: Duration::from_millis(300),
            ping_timeout: Duration::from_millis(200),
            ..config.engine.clone()
        },
        ..config
    };
    let (server, mut seen) = SioServer::reference(config).await;
    let (mut ws, sid) = server.client("/").await;
    // expect_closed reads without answering pings.
    ws.expect_closed().await;
    assert_eq!(seen.disconnect_reason(&sid).await, "ping timeout");
}

#[tokio::test]
async fn aborted_poll_reason() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    let Seen::Connected { id, .. } = seen.next().await else { panic!("connected first") };
    let head = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", session.url(), server.addr);
    let stream = send_request(server.addr, &head, b"").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    assert_eq!(seen.disconnect_reason(&id).await, "transport error");
}

#[tokio::test]
async fn server_shutdown_reason() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    server.io.close();
    assert_eq!(ws.sio_recv().await, "1");
    ws.expect_closed().await;
    assert_eq!(seen.disconnect_reason(&sid).await, "server shutting down");
}
