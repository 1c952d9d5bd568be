//! The MessagePack parser (`socketio.parser = "msgpack"`, npm `socket.io-msgpack-parser`) at the
//! wire: every packet one binary message holding `{type, data, id, nsp}`, binary data inline as msgpack
//! `bin`, over WebSocket and polling (base64 `b` packets), with the reference handlers of `common`.

use crate::common::*;
use bytes::Bytes;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_protocol::cluster::msgpack;
use switchyard_protocol::socketio::{placeholder, Packet, PacketType};
use switchyard_protocol::socketio_msgpack;
use switchyard_socketio::{Parser, Payload, SocketIoConfig};

fn msgpack_config() -> SocketIoConfig {
    SocketIoConfig { parser: Parser::Msgpack, ..sio_config() }
}

/// A packet as the npm parser writes it: `value` is the packet object, placeholders in it stand
/// for `binary`.
fn encode(value: Value, binary: &[&[u8]]) -> Vec<u8> {
    let binary: Vec<Bytes> = binary.iter().map(|b| Bytes::copy_from_slice(b)).collect();
    msgpack::encode(&value, &binary)
}

/// Decodes a server packet (with placeholders and attachments, as the codec gives them).
fn decode(data: &[u8]) -> Packet {
    socketio_msgpack::decode(data, 100).unwrap_or_else(|e| panic!("msgpack packet expected ({e}): {data:02x?}"))
}

async fn send(ws: &mut WsClient, value: Value, binary: &[&[u8]]) {
    ws.send_binary(&encode(value, binary)).await;
}

async fn recv(ws: &mut WsClient) -> Packet {
    let data = ws.recv_binary().await;
    decode(&data)
}

/// Connects a WebSocket client to `nsp`; returns it and its socket id, the `auth` event read.
async fn client(server: &SioServer, nsp: &str, auth: Option<Value>) -> (WsClient, String) {
    let mut ws = server.ws().await;
    let mut connect = json!({"type": 0, "nsp": nsp});
    if let Some(auth) = auth {
        connect["data"] = auth;
    }
    send(&mut ws, connect, &[]).await;
    let reply = recv(&mut ws).await;
    assert_eq!((reply.kind, reply.nsp.as_str(), reply.id), (PacketType::Connect, nsp, None), "{reply:?}");
    let sid = reply.data.as_ref().and_then(|d| d["sid"].as_str()).expect("sid in CONNECT reply").to_string();
    let auth = recv(&mut ws).await;
    assert_eq!(auth.data.as_ref().map(|d| &d[0]), Some(&json!("auth")), "{auth:?}");
    (ws, sid)
}

#[tokio::test]
async fn connect_event_and_ack_over_websocket() {
    let (server, mut seen) = SioServer::reference(msgpack_config()).await;
    let (mut ws, sid) = client(&server, "/", Some(json!({"token": "t"}))).await;
    assert!(matches!(seen.next().await, Seen::Connected { id, .. } if id == sid));

    send(&mut ws, json!({"type": 2, "nsp": "/", "data": ["message", 1, "two", {"three": [3, 3.5]}, null, true]}), &[])
        .await;
    let back = recv(&mut ws).await;
    assert_eq!(back.kind, PacketType::Event);
    assert_eq!(back.data, Some(json!(["message-back", 1, "two", {"three": [3, 3.5]}, null, true])));
    assert!(back.attachments.is_empty());

    // Client ack request -> the server's ACK with the same id.
    send(&mut ws, json!({"type": 2, "nsp": "/", "id": 7, "data": ["message-with-ack", "a", 2]}), &[]).await;
    let ack = recv(&mut ws).await;
    assert_eq!((ack.kind, ack.id, ack.data), (PacketType::Ack, Some(7), Some(json!(["a", 2]))));
    // Text is not this parser's: the connection closes.
    ws.sio_send(r#"2["message"]"#).await;
    ws.expect_closed().await;
    assert_eq!(seen.disconnect_reason(&sid).await, "parse error");
}

#[tokio::test]
async fn binary_both_ways_is_inline_bin() {
    let (server, _seen) = SioServer::reference(msgpack_config()).await;
    let (mut ws, _) = client(&server, "/", None).await;
    // Handlers see placeholders and attachments, as with the JSON parser.
    let args = json!(["binary-info", placeholder(0), {"nested": [placeholder(1)]}, "text"]);
    send(&mut ws, json!({"type": 2, "nsp": "/", "data": args}), &[&[1, 2, 3], &[0xff]]).await;
    let back = recv(&mut ws).await;
    assert_eq!(
        back.data,
        Some(json!(["binary-info-back", {"bytes": "010203"}, {"nested": [{"bytes": "ff"}]}, "text"]))
    );

    // The echo carries the bytes back as bin, in one binary message, type EVENT (no BINARY_EVENT).
    send(&mut ws, json!({"type": 2, "nsp": "/", "data": ["message", placeholder(0), "tail"]}), &[&[9, 8, 7]]).await;
    let raw = ws.recv_binary().await;
    let echo = decode(&raw);
    assert_eq!(echo.kind, PacketType::Event);
    assert_eq!(echo.data, Some(json!(["message-back", placeholder(0), "tail"])));
    assert_eq!(echo.attachments, vec![Bytes::from_static(&[9, 8, 7])]);
    assert!(raw.windows(5).any(|w| w == [0xc4, 3, 9, 8, 7]), "bin 9 8 7 inline: {raw:02x?}");

    // A binary ack.
    send(&mut ws, json!({"type": 2, "nsp": "/", "id": 3, "data": ["message-with-ack", placeholder(0)]}), &[&[]]).await;
    let ack = recv(&mut ws).await;
    assert_eq!((ack.kind, ack.id), (PacketType::Ack, Some(3)));
    assert_eq!(ack.attachments, vec![Bytes::new()]);
}

#[tokio::test]
async fn server_emit_with_ack_gets_the_clients_answer() {
    let (server, mut seen) = SioServer::reference(msgpack_config()).await;
    let (mut ws, sid) = client(&server, "/custom", None).await;
    send(&mut ws, json!({"type": 2, "nsp": "/custom", "data": ["ask", "q"]}), &[]).await;
    let question = recv(&mut ws).await;
    assert_eq!((question.kind, question.nsp.as_str()), (PacketType::Event, "/custom"));
    assert_eq!(question.data, Some(json!(["question", "q"])));
    let id = question.id.expect("the server asks for an ack");
    send(&mut ws, json!({"type": 3, "nsp": "/custom", "id": id, "data": ["answer", placeholder(0)]}), &[&[5]]).await;
    let result = seen.ack_result(&sid).await.expect("acked");
    assert_eq!(result.args[0], json!("answer"));
    assert_eq!(result.binary_of(&result.args[1]).map(|b| &b[..]), Some(&[5u8][..]));
}

#[tokio::test]
async fn rooms_and_broadcasts_share_one_msgpack_frame() {
    let (server, _seen) = SioServer::reference(msgpack_config()).await;
    let (mut a, _) = client(&server, "/", None).await;
    let (mut b, _) = client(&server, "/", None).await;
    let (mut c, _) = client(&server, "/", None).await;
    for ws in [&mut a, &mut b] {
        send(ws, json!({"type": 2, "nsp": "/", "id": 1, "data": ["join", "r"]}), &[]).await;
        assert_eq!(recv(ws).await.kind, PacketType::Ack);
    }
    send(&mut a, json!({"type": 2, "nsp": "/", "id": 2, "data": ["to-room", "r", "hello"]}), &[]).await;
    assert_eq!(recv(&mut a).await.kind, PacketType::Ack);
    assert_eq!(recv(&mut b).await.data, Some(json!(["room-message", "hello"])));

    // A server-side broadcast with binary: every member gets the same bytes.
    server.io.to("r").emit("news", Payload::empty().push(json!(1)).push_binary(vec![7u8; 3]));
    let (ra, rb) = (a.recv_binary().await, b.recv_binary().await);
    assert_eq!(ra, rb);
    assert_eq!(decode(&ra).data, Some(json!(["news", 1, placeholder(0)])));
    server.io.of("/").emit("all", "x");
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(recv(ws).await.data, Some(json!(["all", "x"])));
    }
}

#[tokio::test]
async fn namespaces_connect_errors_and_disconnects() {
    let (server, mut seen) = SioServer::reference(msgpack_config()).await;
    let mut ws = server.ws().await;
    send(&mut ws, json!({"type": 0, "nsp": "/random"}), &[]).await;
    let refused = recv(&mut ws).await;
    assert_eq!(
        (refused.kind, refused.nsp.as_str(), refused.data),
        (PacketType::ConnectError, "/random", Some(json!({"message": "Invalid namespace"})))
    );
    send(&mut ws, json!({"type": 0, "nsp": "/private", "data": {"token": "wrong"}}), &[]).await;
    let refused = recv(&mut ws).await;
    assert_eq!(refused.kind, PacketType::ConnectError);
    assert_eq!(refused.data, Some(json!({"message": "not authorized", "data": {"code": 4001}})));

    // Two namespaces on one connection.
    for nsp in ["/", "/custom"] {
        send(&mut ws, json!({"type": 0, "nsp": nsp}), &[]).await;
        assert_eq!(recv(&mut ws).await.kind, PacketType::Connect);
        assert_eq!(recv(&mut ws).await.data, Some(json!(["auth", {}])));
    }
    let custom = match seen.next().await {
        Seen::Connected { .. } => match seen.next().await {
            Seen::Connected { id, nsp } => {
                assert_eq!(nsp, "/custom");
                id
            }
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    send(&mut ws, json!({"type": 2, "nsp": "/custom", "data": ["message", "c"]}), &[]).await;
    let back = recv(&mut ws).await;
    assert_eq!((back.nsp.as_str(), back.data), ("/custom", Some(json!(["message-back", "c"]))));
    // The client leaves /custom; / goes on.
    send(&mut ws, json!({"type": 1, "nsp": "/custom"}), &[]).await;
    assert_eq!(seen.disconnect_reason(&custom).await, "client namespace disconnect");
    send(&mut ws, json!({"type": 2, "nsp": "/", "data": ["message", "still"]}), &[]).await;
    assert_eq!(recv(&mut ws).await.data, Some(json!(["message-back", "still"])));
    // A server-side disconnect is a msgpack DISCONNECT.
    send(&mut ws, json!({"type": 2, "nsp": "/", "data": ["disconnect-me"]}), &[]).await;
    let bye = recv(&mut ws).await;
    assert_eq!((bye.kind, bye.nsp.as_str(), bye.data), (PacketType::Disconnect, "/", None));
}

#[tokio::test]
async fn malformed_msgpack_closes_the_connection() {
    let (server, _seen) = SioServer::reference(msgpack_config()).await;
    let cases: Vec<Vec<u8>> = vec![
        vec![0xc1],
        vec![0x93, 0x01],
        encode(json!([2, "/", ["message"]]), &[]),
        encode(json!({"type": 5, "nsp": "/", "data": ["message"]}), &[]),
        encode(json!({"type": 2, "nsp": "/", "data": ["disconnect"]}), &[]),
        encode(json!({"type": 2, "nsp": "/", "data": "message"}), &[]),
        encode(json!({"type": 2, "nsp": "/", "id": -1, "data": ["message"]}), &[]),
        encode(json!({"type": 2, "data": ["message"]}), &[]),
        // More bin values than max_attachments (10).
        encode(
            json!({"type": 2, "nsp": "/", "data": ["message", (0..11).map(placeholder).collect::<Vec<_>>()]}),
            &[&[0u8][..]; 11],
        ),
    ];
    for input in cases {
        let (mut ws, _) = client(&server, "/", None).await;
        ws.send_binary(&input).await;
        assert!(
            tokio::time::timeout(Duration::from_secs(5), ws.expect_closed()).await.is_ok(),
            "closed after {input:02x?}"
        );
    }
    // A packet for a namespace not joined closes too, as with JSON.
    let (mut ws, _) = client(&server, "/", None).await;
    send(&mut ws, json!({"type": 2, "nsp": "/custom", "data": ["message"]}), &[]).await;
    ws.expect_closed().await;
}

#[tokio::test]
async fn polling_carries_msgpack_as_base64_binary_packets() {
    let (server, _seen) = SioServer::reference(msgpack_config()).await;
    let (polling, _open) = Polling::open(server.addr, SIO_PATH).await;
    let connect = encode(json!({"type": 0, "nsp": "/"}), &[]);
    polling.send(&format!("b{}", b64(&connect))).await;
    let packets = polling.poll_packets(2).await;
    let binary: Vec<Packet> = packets
        .iter()
        .map(|p| {
            let data = p.strip_prefix('b').unwrap_or_else(|| panic!("binary packet expected: {p:?}"));
            decode(&base64_decode(data))
        })
        .collect();
    assert_eq!(binary[0].kind, PacketType::Connect);
    assert_eq!(binary[1].data, Some(json!(["auth", {}])));
    let event = encode(json!({"type": 2, "nsp": "/", "data": ["message", placeholder(0)]}), &[&[1, 2]]);
    polling.send(&format!("b{}", b64(&event))).await;
    let back = polling.poll().await;
    let back = decode(&base64_decode(back.strip_prefix('b').expect("binary packet")));
    assert_eq!(back.data, Some(json!(["message-back", placeholder(0)])));
    assert_eq!(back.attachments, vec![Bytes::from_static(&[1, 2])]);
}

fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).expect("base64")
}
