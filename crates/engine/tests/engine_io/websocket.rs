//! The WebSocket transport: one packet per frame, raw binary, the close packet, payload limits, and
//! the RFC 6455 framing rules a server must enforce (masking, fragments, control frames, UTF-8).

use crate::common::*;
use std::time::Duration;
use switchyard_engine::CloseReason;

async fn session(server: &EchoServer) -> (WsClient, String) {
    let (ws, open) = WsClient::open_session(server.addr, EIO_PATH).await;
    (ws, open["sid"].as_str().expect("sid").to_string())
}

#[tokio::test]
async fn text_messages_echo() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    for text in ["4hello", "4", "4€uro 😀", "4{\"json\":[1,2]}"] {
        ws.send_text(text).await;
        assert_eq!(ws.recv().await, WsFrame::Text(text.into()));
    }
}

#[tokio::test]
async fn binary_messages_echo_without_prefix() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    let data: Vec<u8> = (0..=255).collect();
    ws.send_binary(&data).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(data));
    ws.send_binary(&[0x34]).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![0x34]), "a binary '4' is data, not a packet type");
}

#[tokio::test]
async fn many_frames_keep_their_order() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    let mut burst = Vec::new();
    for i in 0..50u8 {
        if i % 2 == 0 {
            burst.extend(encode_frame(true, OP_TEXT, format!("4msg{i}").as_bytes(), true));
        } else {
            burst.extend(encode_frame(true, OP_BINARY, &[i, i, i], true));
        }
    }
    // All frames in one TCP write.
    ws.send_raw(&burst).await;
    for i in 0..50u8 {
        let expected = if i % 2 == 0 { WsFrame::Text(format!("4msg{i}")) } else { WsFrame::Binary(vec![i, i, i]) };
        assert_eq!(ws.recv().await, expected);
    }
}

#[tokio::test]
async fn frame_delivered_byte_by_byte_is_decoded() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    let frame = encode_frame(true, OP_TEXT, format!("4{}", "s".repeat(200)).as_bytes(), true);
    for byte in &frame {
        ws.send_raw(std::slice::from_ref(byte)).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(ws.recv().await, WsFrame::Text(format!("4{}", "s".repeat(200))));
}

#[tokio::test]
async fn close_packet_closes_the_connection() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, sid) = session(&server).await;
    ws.send_text("1").await;
    ws.expect_closed().await;
    assert_eq!(server.closed(&sid).await, CloseReason::TransportClose);
}

#[tokio::test]
async fn close_frame_closes_the_connection() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, sid) = session(&server).await;
    ws.send_frame(true, OP_CLOSE, &1000u16.to_be_bytes()).await;
    ws.expect_closed().await;
    assert_eq!(server.closed(&sid).await, CloseReason::TransportClose);
}

#[tokio::test]
async fn close_frame_is_answered_with_a_close_frame() {
    // RFC 6455 5.5.1: an endpoint that receives a Close frame it did not initiate sends one back.
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    ws.send_frame(true, OP_CLOSE, &1000u16.to_be_bytes()).await;
    assert!(matches!(ws.recv().await, WsFrame::Close(_)), "a close frame before the end of the connection");
    ws.expect_eof().await;
}

#[tokio::test]
async fn dropped_tcp_connection_closes_the_session() {
    let mut server = EchoServer::start(engine_config()).await;
    let (ws, sid) = session(&server).await;
    drop(ws);
    assert_eq!(server.closed(&sid).await, CloseReason::TransportClose);
}

#[tokio::test]
async fn message_of_max_payload_is_accepted() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    let text = format!("4{}", "m".repeat(999));
    ws.send_text(&text).await;
    assert_eq!(ws.recv().await, WsFrame::Text(text));
}

#[tokio::test]
async fn message_over_max_payload_closes_with_1009() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, sid) = session(&server).await;
    ws.send_text(&format!("4{}", "x".repeat(5000))).await;
    assert_eq!(ws.expect_closed().await, Some(1009));
    server.closed(&sid).await;
}

#[tokio::test]
async fn announced_huge_length_closes_with_1009_without_waiting_for_the_body() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, sid) = session(&server).await;
    // A 64-bit length of 10 MB, a mask, and no payload at all.
    let mut header = vec![0x81, 0x80 | 127];
    header.extend_from_slice(&10_000_000u64.to_be_bytes());
    header.extend_from_slice(&[1, 2, 3, 4]);
    ws.send_raw(&header).await;
    assert_eq!(ws.expect_closed().await, Some(1009));
    server.closed(&sid).await;
}

#[tokio::test]
async fn fragmented_message_over_max_payload_closes_with_1009() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, sid) = session(&server).await;
    ws.send_frame(false, OP_TEXT, format!("4{}", "a".repeat(600)).as_bytes()).await;
    ws.send_frame(true, OP_CONTINUATION, "b".repeat(600).as_bytes()).await;
    assert_eq!(ws.expect_closed().await, Some(1009));
    server.closed(&sid).await;
}

#[tokio::test]
async fn unmasked_client_frame_closes_with_1002() {
    let mut server = EchoServer::start(engine_config()).await;
    let (mut ws, sid) = session(&server).await;
    ws.send_raw(&encode_frame(true, OP_TEXT, b"4unmasked", false)).await;
    assert_eq!(ws.expect_closed().await, Some(1002));
    assert_eq!(server.closed(&sid).await, CloseReason::ParseError);
}

#[tokio::test]
async fn framing_violations_close_with_1002() {
    let cases: [(&str, Vec<u8>); 5] = [
        ("reserved bit", {
            let mut f = encode_frame(true, OP_TEXT, b"4x", true);
            f[0] |= 0x40;
            f
        }),
        ("unknown opcode", encode_frame(true, 0x3, b"4x", true)),
        ("continuation without a message", encode_frame(true, OP_CONTINUATION, b"4x", true)),
        ("fragmented control frame", encode_frame(false, OP_PING, b"x", true)),
        ("control frame over 125 bytes", encode_frame(true, OP_PING, &[0; 126], true)),
    ];
    for (what, frame) in cases {
        let mut server = EchoServer::start(engine_config()).await;
        let (mut ws, sid) = session(&server).await;
        ws.send_raw(&frame).await;
        assert_eq!(ws.expect_closed().await, Some(1002), "{what}");
        server.closed(&sid).await;
    }
}

#[tokio::test]
async fn new_message_inside_a_fragmented_one_closes_with_1002() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    ws.send_frame(false, OP_TEXT, b"4par").await;
    ws.send_frame(true, OP_TEXT, b"4other").await;
    assert_eq!(ws.expect_closed().await, Some(1002));
}

#[tokio::test]
async fn invalid_utf8_text_closes_with_1007() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    ws.send_frame(true, OP_TEXT, &[b'4', 0xff, 0xfe]).await;
    assert_eq!(ws.expect_closed().await, Some(1007));
}

#[tokio::test]
async fn invalid_engine_io_packet_closes_the_connection() {
    for packet in ["9", "", "x", "7"] {
        let mut server = EchoServer::start(engine_config()).await;
        let (mut ws, sid) = session(&server).await;
        ws.send_text(packet).await;
        ws.expect_closed().await;
        assert_eq!(server.closed(&sid).await, CloseReason::ParseError, "packet {packet:?}");
    }
}

#[tokio::test]
async fn fragmented_messages_are_reassembled() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    ws.send_frame(false, OP_TEXT, b"4hel").await;
    ws.send_frame(false, OP_CONTINUATION, b"lo w").await;
    ws.send_frame(true, OP_CONTINUATION, b"orld").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4hello world".into()));

    // A character split across two fragments.
    let text = "4caf€".as_bytes();
    ws.send_frame(false, OP_TEXT, &text[..5]).await;
    ws.send_frame(true, OP_CONTINUATION, &text[5..]).await;
    assert_eq!(ws.recv().await, WsFrame::Text("4caf€".into()));

    ws.send_frame(false, OP_BINARY, &[1, 2]).await;
    ws.send_frame(true, OP_CONTINUATION, &[3, 4]).await;
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![1, 2, 3, 4]));
}

#[tokio::test]
async fn control_frame_between_fragments_is_answered() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    ws.send_frame(false, OP_TEXT, b"4inter").await;
    ws.send_frame(true, OP_PING, b"are you there").await;
    assert_eq!(ws.recv().await, WsFrame::Pong(b"are you there".to_vec()));
    ws.send_frame(true, OP_CONTINUATION, b"leaved").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4interleaved".into()));
}

#[tokio::test]
async fn websocket_ping_gets_pong_with_same_payload() {
    let server = EchoServer::start(engine_config()).await;
    let (mut ws, _) = session(&server).await;
    ws.send_frame(true, OP_PING, b"").await;
    assert_eq!(ws.recv().await, WsFrame::Pong(Vec::new()));
    ws.send_frame(true, OP_PING, &[9, 8, 7]).await;
    assert_eq!(ws.recv().await, WsFrame::Pong(vec![9, 8, 7]));
    // A WebSocket pong is not an Engine.IO packet: nothing happens.
    ws.send_frame(true, OP_PONG, b"unsolicited").await;
    ws.send_text("4ok").await;
    assert_eq!(ws.recv().await, WsFrame::Text("4ok".into()));
}

/// A raw upgrade request for a new WebSocket session with the given header lines.
async fn raw_upgrade(server: &EchoServer, header_lines: &str) -> HttpResponse {
    let head =
        format!("GET {} HTTP/1.1\r\nHost: {}\r\n{header_lines}\r\n", eio_url(EIO_PATH, "websocket", None), server.addr);
    let mut stream = send_request(server.addr, &head, b"").await;
    within("the upgrade answer", read_response(&mut stream, &mut Vec::new())).await
}

#[tokio::test]
async fn upgrade_headers_are_matched_as_token_lists() {
    let server = EchoServer::start(engine_config()).await;
    // As Firefox sends them.
    let res = raw_upgrade(
        &server,
        "Upgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
    )
    .await;
    assert_eq!(res.status, 101);
    assert_eq!(res.header("sec-websocket-accept"), Some("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="));
}

#[tokio::test]
async fn incomplete_upgrade_requests_are_refused() {
    let server = EchoServer::start(engine_config()).await;
    for (what, lines) in [
        ("no key", "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"),
        (
            "unsupported version",
            "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 99\r\n",
        ),
        (
            "no Connection: Upgrade",
            "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n",
        ),
    ] {
        let res = raw_upgrade(&server, lines).await;
        assert_eq!(res.status, 400, "{what}");
    }
}
