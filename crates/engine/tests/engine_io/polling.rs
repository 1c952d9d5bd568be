//! HTTP long-polling: payload encoding both ways, limits, misuse of the GET and POST slots, aborted
//! polls and the close packet.

use crate::common::*;
use std::time::Duration;
use switchyard_engine::CloseReason;

#[tokio::test]
async fn text_message_round_trip() {
    let (_server, session) = polling_session(engine_config()).await;
    let res = session.post(b"4hello").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.text(), "ok");
    let res = session.get().await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/plain; charset=UTF-8"));
    assert_eq!(res.text(), "4hello");
}

#[tokio::test]
async fn utf8_and_empty_messages_round_trip() {
    let (_server, session) = polling_session(engine_config()).await;
    session.send("4€uro 😀 ünïcode").await;
    assert_eq!(session.poll().await, "4€uro 😀 ünïcode");
    session.send("4").await;
    assert_eq!(session.poll().await, "4");
}

#[tokio::test]
async fn packets_joined_by_record_separator() {
    let (_server, session) = polling_session(engine_config()).await;
    session.send("4hello\x1e4€\x1e4world").await;
    // A poll returns everything buffered, in order, in one payload.
    assert_eq!(session.poll().await, "4hello\x1e4€\x1e4world");
}

#[tokio::test]
async fn binary_messages_are_base64_with_b_prefix() {
    let (_server, session) = polling_session(engine_config()).await;
    session.send("bAQIDBA==").await;
    assert_eq!(session.poll().await, "bAQIDBA==");
    let data: Vec<u8> = (0..=255).collect();
    session.send(&format!("4text\x1eb{}\x1e4more", b64(&data))).await;
    assert_eq!(session.poll().await, format!("4text\x1eb{}\x1e4more", b64(&data)));
}

#[tokio::test]
async fn get_waits_for_data() {
    let (_server, session) = polling_session(engine_config()).await;
    let mut pending = session.spawn_get();
    assert!(still_pending(&mut pending, Duration::from_millis(150)).await, "an empty poll is held open");
    session.send("4late").await;
    let res = join(pending).await;
    assert_eq!((res.status, res.text()), (200, "4late"));
}

#[tokio::test]
async fn noop_and_upgrade_packets_are_accepted_and_ignored() {
    let (_server, session) = polling_session(engine_config()).await;
    session.send("6\x1e4after").await;
    assert_eq!(session.poll().await, "4after");
}

#[tokio::test]
async fn octet_stream_post_is_rejected() {
    let (server, session) = polling_session(engine_config()).await;
    let res =
        http(server.addr, "POST", &session.url(), &[("Content-Type", "application/octet-stream")], &[4, 1, 2, 3]).await;
    assert_eq!(res.status, 400);
}

#[tokio::test]
async fn post_over_max_payload_is_413() {
    let (_server, session) = polling_session(engine_config()).await;
    let big = format!("4{}", "x".repeat(1500));
    let res = session.post(big.as_bytes()).await;
    assert_eq!(res.status, 413);
    // A body of exactly maxPayload bytes is fine.
    let exact = format!("4{}", "y".repeat(999));
    session.send(&exact).await;
    assert_eq!(session.poll().await, exact, "only the accepted payload was delivered");
}

#[tokio::test]
async fn chunked_post_over_max_payload_is_413() {
    let (server, session) = polling_session(engine_config()).await;
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nTransfer-Encoding: chunked\r\n\r\n",
        session.url(),
        server.addr
    );
    let mut body = Vec::new();
    body.extend_from_slice(b"1\r\n4\r\n");
    for _ in 0..3 {
        body.extend_from_slice(format!("{:x}\r\n{}\r\n", 500, "z".repeat(500)).as_bytes());
    }
    body.extend_from_slice(b"0\r\n\r\n");
    let mut stream = send_request(server.addr, &head, &body).await;
    let res = within("413 answer", read_response(&mut stream, &mut Vec::new())).await;
    assert_eq!(res.status, 413);

    // A small chunked body is accepted.
    let mut stream = send_request(server.addr, &head, b"3\r\n4ok\r\n0\r\n\r\n").await;
    let res = within("ok answer", read_response(&mut stream, &mut Vec::new())).await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    assert_eq!(session.poll().await, "4ok", "the oversized body was not delivered");
}

#[tokio::test]
async fn invalid_packet_is_400_and_closes_the_session() {
    for body in ["x", "9", "", "4a\x1e", "4a\x1e\x1e4b"] {
        let mut server = EchoServer::start(engine_config()).await;
        let (session, _) = Polling::open(server.addr, EIO_PATH).await;
        let res = session.post(body.as_bytes()).await;
        assert_eq!(res.status, 400, "POST {body:?}");
        assert_eq!(server.closed(&session.sid).await, CloseReason::ParseError, "POST {body:?}");
        session.get().await.assert_engine_error(1, "Session ID unknown");
    }
}

#[tokio::test]
async fn open_packet_from_client_closes_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let pending = session.spawn_get();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = session.post(b"0").await;
    assert_eq!(join(pending).await.text(), "1");
    assert_eq!(server.closed(&session.sid).await, CloseReason::ParseError);
}

#[tokio::test]
async fn concurrent_gets_close_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let mut first = session.spawn_get();
    assert!(still_pending(&mut first, Duration::from_millis(100)).await);
    let second = session.get().await;
    assert_eq!(second.status, 400, "the overlapping GET is refused");
    let first = join(first).await;
    assert_eq!((first.status, first.text()), (200, "1"), "the pending GET gets a close packet");
    assert_session_closed(&mut server, &session, CloseReason::TransportError).await;
}

#[tokio::test]
async fn concurrent_posts_close_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    // A POST whose body is still arriving holds the slot.
    let head = post_head_of_10_bytes(&server, &session);
    let _slow = send_request(server.addr, &head, b"4ab").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let res = session.post(b"4second").await;
    assert_eq!(res.status, 400);
    assert_session_closed(&mut server, &session, CloseReason::TransportError).await;
}

#[tokio::test]
async fn aborted_post_closes_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let head = post_head_of_10_bytes(&server, &session);
    let partial = send_request(server.addr, &head, b"4ab").await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(partial);
    assert_session_closed(&mut server, &session, CloseReason::TransportError).await;
}

#[tokio::test]
async fn aborted_get_closes_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    let head = format!("GET {} HTTP/1.1\r\nHost: {}\r\n\r\n", session.url(), server.addr);
    let stream = send_request(server.addr, &head, b"").await;
    // Give the server time to start holding the poll before the client goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(stream);
    assert_session_closed(&mut server, &session, CloseReason::TransportError).await;
}

#[tokio::test]
async fn close_packet_ends_the_pending_get_with_noop() {
    let (mut server, session) = polling_session(engine_config()).await;
    let mut pending = session.spawn_get();
    assert!(still_pending(&mut pending, Duration::from_millis(100)).await);
    session.send("1").await;
    let res = join(pending).await;
    assert_eq!((res.status, res.text()), (200, "6"));
    assert_session_closed(&mut server, &session, CloseReason::TransportClose).await;
    session.post(b"4late").await.assert_engine_error(1, "Session ID unknown");
}

#[tokio::test]
async fn close_packet_inside_a_payload_closes_the_session() {
    let (mut server, session) = polling_session(engine_config()).await;
    session.send("4before\x1e1\x1e4after").await;
    assert_session_closed(&mut server, &session, CloseReason::TransportClose).await;
}
