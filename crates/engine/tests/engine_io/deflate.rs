//! WebSocket per-message compression (RFC 7692) at the wire: the negotiation in the upgrade, compressed
//! frames both ways, the threshold, the inflated-size limit (1009), RSV1 without the extension (1002),
//! and a broadcast compressed once for all its recipients.

use crate::common::*;
use std::sync::atomic::Ordering;
use switchyard_engine::protocol::deflate;
use switchyard_engine::{CloseReason, EngineConfig};
use switchyard_socketio::SocketIoConfig;

/// What browsers and Node's `ws` offer.
const OFFER: (&str, &str) = ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits");
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

fn deflate_config() -> EngineConfig {
    EngineConfig {
        per_message_deflate: true,
        per_message_deflate_threshold: 200,
        max_payload: 10_000,
        ..engine_config()
    }
}

async fn deflate_session(server: &EchoServer, offer: &[(&str, &str)]) -> WsClient {
    let mut ws = WsClient::connect_with(server.addr, &eio_url(EIO_PATH, "websocket", None), offer)
        .await
        .unwrap_or_else(|res| panic!("WebSocket refused: {} {:?}", res.status, res.text()));
    parse_open(&ws.recv_text().await);
    ws
}

/// A masked client frame with RSV1 set: `payload` compressed.
fn compressed_client_frame(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let mut packed = bytes::BytesMut::new();
    assert!(deflate::compress(payload, &mut packed));
    let mut frame = encode_frame(true, opcode, &packed, true);
    frame[0] |= 0x40;
    frame
}

fn big_text(n: usize) -> String {
    let mut text = String::from("4");
    for i in 0..n {
        text.push_str(&format!("{{\"user\":\"user{}\",\"text\":\"hello number {i}\"}}", i % 7));
    }
    text
}

#[tokio::test]
async fn negotiated_only_when_on_and_offered() {
    let server = EchoServer::start(deflate_config()).await;
    let ws = deflate_session(&server, &[OFFER]).await;
    assert_eq!(ws.extensions.as_deref(), Some(ANSWER));
    // Without an offer, or with only unacceptable ones: no extension, the connection works uncompressed.
    for offer in [
        &[][..],
        &[("Sec-WebSocket-Extensions", "permessage-deflate; server_max_window_bits=10")],
        &[("Sec-WebSocket-Extensions", "permessage-deflate; bogus")],
        &[("Sec-WebSocket-Extensions", "permessage-deflate; ;;; =")],
        &[("Sec-WebSocket-Extensions", "x-webkit-deflate-frame")],
    ] {
        let mut ws = deflate_session(&server, offer).await;
        assert_eq!(ws.extensions, None, "{offer:?}");
        let text = big_text(20);
        ws.send_text(&text).await;
        assert_eq!(ws.recv_text().await, text);
        assert_eq!(ws.compressed_frames, 0);
    }
    assert_eq!(server.engine.stats().deflate_connections.load(Ordering::Relaxed), 1);
    // Off (the default): never negotiated.
    let off = EchoServer::start(engine_config()).await;
    let ws = deflate_session(&off, &[OFFER]).await;
    assert_eq!(ws.extensions, None);
}

#[tokio::test]
async fn client_context_takeover_when_allowed() {
    let config = EngineConfig { per_message_deflate_client_context_takeover: true, ..deflate_config() };
    let server = EchoServer::start(config).await;
    let ws = deflate_session(&server, &[OFFER]).await;
    assert_eq!(ws.extensions.as_deref(), Some("permessage-deflate; server_no_context_takeover"));
    let own = ("Sec-WebSocket-Extensions", "permessage-deflate; client_no_context_takeover");
    let ws = deflate_session(&server, &[own]).await;
    assert_eq!(ws.extensions.as_deref(), Some(ANSWER));
}

#[tokio::test]
async fn messages_over_the_threshold_are_compressed_both_ways() {
    let server = EchoServer::start(deflate_config()).await;
    let mut ws = deflate_session(&server, &[OFFER]).await;
    // Under the threshold: sent as it is.
    ws.send_text("4small").await;
    assert_eq!(ws.recv_text().await, "4small");
    assert_eq!(ws.compressed_frames, 0);
    // Over it: compressed (the fixture client inflates it and counts it).
    let text = big_text(40);
    ws.send_text(&text).await;
    assert_eq!(ws.recv_text().await, text);
    assert_eq!(ws.compressed_frames, 1);
    // A compressed message from the client, text and binary.
    ws.send_raw(&compressed_client_frame(OP_TEXT, text.as_bytes())).await;
    assert_eq!(ws.recv_text().await, text);
    let data: Vec<u8> = (0..2000u32).map(|i| (i % 10) as u8).collect();
    ws.send_raw(&compressed_client_frame(OP_BINARY, &data)).await;
    assert_eq!(ws.recv_binary().await, data);
    assert_eq!(ws.compressed_frames, 3);
    let stats = server.engine.stats();
    assert_eq!(stats.frames_deflated.load(Ordering::Relaxed), 3);
    // Bytes on the wire: the three large messages went out at a fraction of their size.
    let sent = stats.bytes_sent.load(Ordering::Relaxed) as usize;
    assert!(sent < (2 * text.len() + data.len()) / 3, "{sent} bytes sent");
    // Incompressible data is sent uncompressed, not inflated by the attempt.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: Vec<u8> = (0..3000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect();
    ws.send_binary(&noise).await;
    assert_eq!(ws.recv_binary().await, noise);
    assert_eq!(ws.compressed_frames, 3);
}

#[tokio::test]
async fn a_compression_bomb_closes_with_1009() {
    let mut server = EchoServer::start(deflate_config()).await;
    let mut ws = WsClient::connect_with(server.addr, &eio_url(EIO_PATH, "websocket", None), &[OFFER]).await.unwrap();
    let sid = parse_open(&ws.recv_text().await)["sid"].as_str().unwrap().to_string();
    // 5 MB of one letter in about 5 KB; the limit is 10 KB.
    let bomb = format!("4{}", "a".repeat(5_000_000));
    let frame = compressed_client_frame(OP_TEXT, bomb.as_bytes());
    assert!(frame.len() < 10_000, "{}", frame.len());
    ws.send_raw(&frame).await;
    assert_eq!(ws.expect_closed().await, Some(1009));
    assert_eq!(server.closed(&sid).await, CloseReason::TransportError);
}

#[tokio::test]
async fn rsv1_rules_at_the_wire() {
    // RSV1 without the extension negotiated (compression on, but not offered).
    let server = EchoServer::start(deflate_config()).await;
    let mut ws = deflate_session(&server, &[]).await;
    ws.send_raw(&compressed_client_frame(OP_TEXT, big_text(10).as_bytes())).await;
    assert_eq!(ws.expect_closed().await, Some(1002));
    // A compressed ping.
    let mut ws = deflate_session(&server, &[OFFER]).await;
    let mut ping = encode_frame(true, OP_PING, b"", true);
    ping[0] |= 0x40;
    ws.send_raw(&ping).await;
    assert_eq!(ws.expect_closed().await, Some(1002));
    // Data that does not inflate.
    let mut ws = deflate_session(&server, &[OFFER]).await;
    let mut bad = encode_frame(true, OP_TEXT, &[0xff, 0xfe, 0xfd, 0xfc], true);
    bad[0] |= 0x40;
    ws.send_raw(&bad).await;
    assert_eq!(ws.expect_closed().await, Some(1007));
}

#[tokio::test]
async fn fragmented_compressed_message() {
    let server = EchoServer::start(deflate_config()).await;
    let mut ws = deflate_session(&server, &[OFFER]).await;
    let text = big_text(30);
    let mut packed = bytes::BytesMut::new();
    assert!(deflate::compress(text.as_bytes(), &mut packed));
    let (a, b) = packed.split_at(packed.len() / 2);
    let mut first = encode_frame(false, OP_TEXT, a, true);
    first[0] |= 0x40;
    ws.send_raw(&first).await;
    ws.send_frame(true, OP_PING, b"between").await;
    assert_eq!(ws.recv().await, WsFrame::Pong(b"between".to_vec()));
    ws.send_frame(true, OP_CONTINUATION, b).await;
    assert_eq!(ws.recv_text().await, text);
}

#[tokio::test]
async fn upgrade_from_polling_negotiates_too() {
    let server = EchoServer::start(deflate_config()).await;
    let (polling, open) = Polling::open(server.addr, EIO_PATH).await;
    let sid = open["sid"].as_str().unwrap();
    let mut ws =
        WsClient::connect_with(server.addr, &eio_url(EIO_PATH, "websocket", Some(sid)), &[OFFER]).await.unwrap();
    assert_eq!(ws.extensions.as_deref(), Some(ANSWER));
    ws.send_text("2probe").await;
    assert_eq!(ws.recv_text().await, "3probe");
    assert_eq!(polling.poll().await, "6");
    ws.send_text("5").await;
    let text = big_text(20);
    ws.send_text(&text).await;
    assert_eq!(ws.recv_text().await, text);
    assert_eq!(ws.compressed_frames, 1);
}

#[tokio::test]
async fn a_broadcast_is_compressed_once_for_every_recipient() {
    let config = SocketIoConfig { engine: deflate_config(), ..sio_config() };
    let server = SioServer::start(config, |io| {
        io.of("/").on_connection(|_| {});
    })
    .await;
    let mut clients = Vec::new();
    for _ in 0..5 {
        let mut ws =
            WsClient::connect_with(server.addr, &eio_url(SIO_PATH, "websocket", None), &[OFFER]).await.unwrap();
        parse_open(&ws.recv_text().await);
        ws.sio_connect("/", None).await;
        clients.push(ws);
    }
    // One without compression, one over polling: both get the plain frame.
    let (mut plain, _) = server.connect("/", None).await;
    let (polling, open) = Polling::open(server.addr, SIO_PATH).await;
    assert!(open["sid"].is_string());
    polling.send("40").await;
    assert!(polling.poll().await.starts_with("40{"));

    let stats = server.io.engine().stats().clone();
    let before = stats.deflate_compressions.load(Ordering::Relaxed);
    let text: String = (0..50).map(|i| format!("line {i} of a long message; ")).collect();
    server.io.emit("news", text.as_str());
    let expected = serde_json::to_string(&("news", &text)).unwrap();
    for ws in &mut clients {
        assert_eq!(ws.sio_recv().await, format!("2{expected}"));
        assert_eq!(ws.compressed_frames, 1);
    }
    assert_eq!(plain.sio_recv().await, format!("2{expected}"));
    assert_eq!(plain.compressed_frames, 0);
    assert_eq!(polling.poll().await, format!("42{expected}"));
    assert_eq!(stats.deflate_compressions.load(Ordering::Relaxed) - before, 1, "compressed once, sent to 5");
    assert_eq!(stats.frames_deflated.load(Ordering::Relaxed), 5);

    // Each broadcast once.
    server.io.emit("again", text.as_str());
    for ws in &mut clients {
        ws.sio_recv().await;
    }
    assert_eq!(stats.deflate_compressions.load(Ordering::Relaxed) - before, 2);
}
