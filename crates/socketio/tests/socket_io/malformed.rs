//! Packets the Socket.IO decoder must reject: each closes the whole connection, and the sockets on it
//! disconnect with reason "parse error".

use crate::common::*;

/// What a test client sends.
enum Msg {
    /// A Socket.IO packet (inside an Engine.IO message).
    Packet(String),
    Binary(Vec<u8>),
}

fn packet(text: impl Into<String>) -> Msg {
    Msg::Packet(text.into())
}

fn binary(data: &[u8]) -> Msg {
    Msg::Binary(data.to_vec())
}

/// Connects to `/`, sends `messages`, and checks that the server closes the connection with the
/// socket disconnected for "parse error".
async fn assert_parse_error(what: &str, messages: &[Msg]) {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.connect("/", None).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    for message in messages {
        match message {
            Msg::Packet(packet) => ws.sio_send(packet).await,
            Msg::Binary(data) => ws.send_binary(data).await,
        }
    }
    ws.expect_closed().await;
    assert_eq!(seen.disconnect_reason(&sid).await, "parse error", "{what}");
}

#[tokio::test]
async fn unknown_packet_type() {
    assert_parse_error("type 7", &[packet(r#"7["message"]"#)]).await;
    assert_parse_error("type 9", &[packet("9")]).await;
    assert_parse_error("not a digit", &[packet(r#"x["message"]"#)]).await;
    assert_parse_error("empty packet", &[packet("")]).await;
}

#[tokio::test]
async fn invalid_json() {
    assert_parse_error("unterminated array", &[packet(r#"2["message""#)]).await;
    assert_parse_error("trailing garbage", &[packet(r#"2["message"]x"#)]).await;
    assert_parse_error("bare word", &[packet("2message")]).await;
    assert_parse_error("ack with broken JSON", &[packet("31[")]).await;
}

#[tokio::test]
async fn invalid_ack_id() {
    // Beyond what any client can represent (2^53 - 1).
    assert_parse_error("ack id too large", &[packet(r#"29007199254740992["message-with-ack"]"#)]).await;
    assert_parse_error("ack id overflowing", &[packet(r#"2123456789012345678901234567890["message"]"#)]).await;
}

#[tokio::test]
async fn event_payload_must_be_a_non_empty_array_starting_with_a_name() {
    assert_parse_error("object", &[packet(r#"2{"message":1}"#)]).await;
    assert_parse_error("string", &[packet(r#"2"message""#)]).await;
    assert_parse_error("empty array", &[packet("2[]")]).await;
    assert_parse_error("object as name", &[packet(r#"2[{"a":1},"x"]"#)]).await;
    assert_parse_error("null as name", &[packet("2[null]")]).await;
    assert_parse_error("no payload", &[packet("2")]).await;
    assert_parse_error("ack id but no payload", &[packet("212")]).await;
}

#[tokio::test]
async fn reserved_event_names() {
    for name in ["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"] {
        assert_parse_error(name, &[packet(format!(r#"2["{name}"]"#))]).await;
    }
}

#[tokio::test]
async fn ack_payload_must_be_an_array() {
    assert_parse_error("object", &[packet(r#"30{"a":1}"#)]).await;
    assert_parse_error("no payload", &[packet("30")]).await;
    assert_parse_error("string", &[packet(r#"30"yes""#)]).await;
}

#[tokio::test]
async fn disconnect_with_payload() {
    assert_parse_error("DISCONNECT with data", &[packet(r#"1{"reason":"x"}"#)]).await;
}

#[tokio::test]
async fn client_connect_error_packet() {
    assert_parse_error("CONNECT_ERROR from a client", &[packet(r#"4{"message":"no"}"#)]).await;
}

#[tokio::test]
async fn attachments_over_the_limit() {
    let placeholders: Vec<String> = (0..11).map(|n| format!(r#"{{"_placeholder":true,"num":{n}}}"#)).collect();
    let eleven = format!(r#"511-["message",{}]"#, placeholders.join(","));
    assert_parse_error("11 attachments", &[packet(eleven)]).await;
    assert_parse_error("huge count", &[packet(r#"599999999999999999999-["message"]"#)]).await;
}

#[tokio::test]
async fn invalid_attachment_count() {
    assert_parse_error("no dash", &[packet(r#"51["message",{"_placeholder":true,"num":0}]"#)]).await;
    assert_parse_error("negative", &[packet(r#"5-1-["message",{"_placeholder":true,"num":0}]"#)]).await;
    assert_parse_error("not a number", &[packet(r#"5a-["message",{"_placeholder":true,"num":0}]"#)]).await;
}

#[tokio::test]
async fn binary_frame_while_not_reconstructing() {
    assert_parse_error("stray attachment", &[binary(&[1, 2, 3])]).await;
    assert_parse_error(
        "one attachment too many",
        &[packet(r#"51-["nobody-listens",{"_placeholder":true,"num":0}]"#), binary(&[1]), binary(&[2])],
    )
    .await;
}

#[tokio::test]
async fn text_while_reconstructing() {
    assert_parse_error(
        "text instead of the attachment",
        &[packet(r#"51-["message",{"_placeholder":true,"num":0}]"#), packet(r#"2["message"]"#)],
    )
    .await;
}

#[tokio::test]
async fn placeholder_out_of_range() {
    assert_parse_error(
        "num beyond the attachments",
        &[packet(r#"51-["message",{"_placeholder":true,"num":1}]"#), binary(&[1])],
    )
    .await;
    assert_parse_error("negative num", &[packet(r#"51-["message",{"_placeholder":true,"num":-1}]"#), binary(&[1])])
        .await;
}

#[tokio::test]
async fn connect_payload_must_be_an_object() {
    for packet in [r#"0"token""#, "0[1,2]", r#"0/custom,"str""#, "0/custom,true", "0null"] {
        let (server, _seen) = SioServer::reference(sio_config()).await;
        let mut ws = server.ws().await;
        ws.sio_send(packet).await;
        ws.expect_closed().await;
    }
}

#[tokio::test]
async fn packet_for_a_namespace_not_joined_closes_the_connection() {
    for packet in [r#"2/custom,["message"]"#, r#"3/custom,1[]"#, "1/custom,"] {
        let (server, _seen) = SioServer::reference(sio_config()).await;
        let (mut ws, _) = server.connect("/", None).await;
        assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
        ws.sio_send(packet).await;
        ws.expect_closed().await;
    }
    // Before any CONNECT at all.
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut ws = server.ws().await;
    ws.sio_send(r#"2["message"]"#).await;
    ws.expect_closed().await;
}

#[tokio::test]
async fn events_after_leaving_a_namespace_close_the_connection() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.connect("/", None).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    ws.sio_send("1").await;
    assert_eq!(seen.disconnect_reason(&sid).await, "client namespace disconnect");
    ws.sio_send(r#"2["message"]"#).await;
    ws.expect_closed().await;
}
