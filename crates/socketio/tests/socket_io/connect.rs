//! CONNECT and CONNECT_ERROR: the main and custom namespaces, auth payloads, unknown namespaces,
//! middleware refusals and the connect timeout.

use crate::common::*;
use serde_json::{json, Value};
use std::time::Duration;
use tokio::time::Instant;

/// The JSON of a packet after its `header` (key order is not significant in JSON).
#[track_caller]
fn packet_json(packet: &str, header: &str) -> Value {
    let json = packet.strip_prefix(header).unwrap_or_else(|| panic!("{header}... expected, got {packet:?}"));
    serde_json::from_str(json).unwrap_or_else(|e| panic!("JSON expected after {header} ({e}): {packet:?}"))
}

/// Splits a CONNECT reply `0[/nsp,]{...}` into namespace prefix and JSON.
fn connect_reply(packet: &str, nsp: &str) -> Value {
    let prefix = connect_packet(nsp, None);
    let json = packet.strip_prefix(&prefix).unwrap_or_else(|| panic!("CONNECT reply for {nsp} expected: {packet:?}"));
    serde_json::from_str(json).expect("CONNECT reply JSON")
}

#[tokio::test]
async fn connect_to_main_namespace_over_websocket() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, open) = WsClient::open_session(server.addr, SIO_PATH).await;
    let engine_sid = open["sid"].as_str().expect("engine sid").to_string();
    ws.sio_send("0").await;
    let reply = connect_reply(&ws.sio_recv().await, "/");
    let keys: Vec<&String> = reply.as_object().expect("object").keys().collect();
    assert_eq!(keys, ["sid"], "no pid without connection state recovery");
    let sid = reply["sid"].as_str().expect("sid");
    assert!(!sid.is_empty());
    assert_ne!(sid, engine_sid, "the socket id is not the Engine.IO session id");
    assert_eq!(seen.next().await, Seen::Connected { nsp: "/".into(), id: sid.into() });
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
}

#[tokio::test]
async fn connect_over_polling() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (session, open) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    let packets = session.poll_packets(2).await;
    let reply = connect_reply(packets[0].strip_prefix('4').expect("message"), "/");
    assert_ne!(reply["sid"], open["sid"]);
    assert_eq!(packets[1], r#"42["auth",{}]"#);
    session.send(r#"42["message","over polling"]"#).await;
    assert_eq!(session.poll().await, r#"42["message-back","over polling"]"#);
}

#[tokio::test]
async fn sockets_survive_the_upgrade_to_websocket() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    let Seen::Connected { id, .. } = seen.next().await else { panic!("connected first") };
    let mut ws = WsClient::connect(server.addr, &eio_url(SIO_PATH, "websocket", Some(&session.sid)))
        .await
        .unwrap_or_else(|res| panic!("upgrade refused: {}", res.status));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv().await, WsFrame::Text("3probe".into()));
    ws.send_text("5").await;
    ws.sio_send(r#"2["message","upgraded"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","upgraded"]"#);
    ws.sio_send("1").await;
    assert_eq!(seen.disconnect_reason(&id).await, "client namespace disconnect");
}

#[tokio::test]
async fn connect_to_custom_namespace() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    ws.sio_send("0/custom,").await;
    let reply = connect_reply(&ws.sio_recv().await, "/custom");
    let sid = reply["sid"].as_str().expect("sid");
    assert_eq!(seen.next().await, Seen::Connected { nsp: "/custom".into(), id: sid.into() });
    assert_eq!(ws.sio_recv().await, r#"2/custom,["auth",{}]"#);
}

#[tokio::test]
async fn connect_to_custom_namespace_without_trailing_comma() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    ws.sio_send("0/custom").await;
    connect_reply(&ws.sio_recv().await, "/custom");
    assert_eq!(ws.sio_recv().await, r#"2/custom,["auth",{}]"#);
}

#[tokio::test]
async fn auth_payload_reaches_the_handler() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.connect("/", Some(r#"{"token":"abc","n":[1,2]}"#)).await;
    assert_eq!(packet_json(&ws.sio_recv().await, "2"), json!(["auth", {"token": "abc", "n": [1, 2]}]));
    let (mut ws, _) = server.connect("/custom", Some(r#"{"user":"ünï"}"#)).await;
    assert_eq!(ws.sio_recv().await, r#"2/custom,["auth",{"user":"ünï"}]"#);
}

#[tokio::test]
async fn several_namespaces_share_one_connection() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, main_sid) = server.connect("/", None).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    let custom_sid = ws.sio_connect("/custom", None).await;
    assert_eq!(ws.sio_recv().await, r#"2/custom,["auth",{}]"#);
    assert_ne!(main_sid, custom_sid, "each namespace gets its own socket id");
    ws.sio_send(r#"2/custom,["message","to custom"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2/custom,["message-back","to custom"]"#);
    ws.sio_send(r#"2["message","to main"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","to main"]"#);
}

#[tokio::test]
async fn unknown_namespace_gets_connect_error() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    ws.sio_send("0/random,").await;
    assert_eq!(ws.sio_recv().await, r#"4/random,{"message":"Invalid namespace"}"#);
    ws.sio_send(r#"0/other,{"token":"x"}"#).await;
    assert_eq!(ws.sio_recv().await, r#"4/other,{"message":"Invalid namespace"}"#);
    assert!(seen.nothing_yet(), "no socket was created");
    // The connection stays usable.
    ws.sio_connect("/", None).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
}

#[tokio::test]
async fn middleware_refusal_sends_message_and_data() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    let refusal = json!({"message": "not authorized", "data": {"code": 4001}});
    ws.sio_send(r#"0/private,{"token":"wrong"}"#).await;
    assert_eq!(packet_json(&ws.sio_recv().await, "4/private,"), refusal);
    ws.sio_send("0/private,").await;
    assert_eq!(packet_json(&ws.sio_recv().await, "4/private,"), refusal);
    assert!(seen.nothing_yet(), "a refused socket never connects");
    // The middleware lets the right token through, on the same connection.
    ws.sio_connect("/private", Some(r#"{"token":"secret"}"#)).await;
    assert_eq!(ws.sio_recv().await, r#"2/private,["auth",{"token":"secret"}]"#);
}

#[tokio::test]
async fn middleware_refusal_without_data() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    ws.sio_send("0/closed,").await;
    assert_eq!(ws.sio_recv().await, r#"4/closed,{"message":"closed for maintenance"}"#);
}

#[tokio::test]
async fn no_connect_within_connect_timeout_closes_websocket() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let started = Instant::now();
    let mut ws = server.ws().await;
    ws.expect_closed().await;
    assert!(started.elapsed() >= Duration::from_millis(800), "closed after {:?}", started.elapsed());
}

#[tokio::test]
async fn no_connect_within_connect_timeout_closes_polling() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    // The pending poll is answered with a close packet.
    assert_eq!(session.poll().await, "1");
    let mut result = session.get().await;
    for _ in 0..50 {
        if result.status == 400 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        result = session.get().await;
    }
    result.assert_engine_error(1, "Session ID unknown");
}

#[tokio::test]
async fn connect_error_does_not_count_as_joining() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    ws.sio_send("0/random,").await;
    assert_eq!(ws.sio_recv().await, r#"4/random,{"message":"Invalid namespace"}"#);
    ws.expect_closed().await;
}

#[tokio::test]
async fn connected_client_outlives_connect_timeout() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.connect("/", None).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    ws.sio_send(r#"2["message","still here"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","still here"]"#);
}

#[tokio::test]
async fn connect_reply_json_is_valid_for_any_namespace_name() {
    let server = SioServer::start(sio_config(), |io| {
        io.of("/with space-and-ünï").on_connection(|_socket| {});
    })
    .await;
    let mut ws = server.ws().await;
    ws.sio_send("0/with space-and-ünï,").await;
    let reply = connect_reply(&ws.sio_recv().await, "/with space-and-ünï");
    assert!(matches!(reply.get("sid"), Some(Value::String(_))));
    assert_eq!(reply, json!({"sid": reply["sid"]}));
}
