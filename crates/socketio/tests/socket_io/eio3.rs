//! Socket.IO protocol v4 over Engine.IO v3 (Socket.IO v2 clients, `allow_eio3`), written from
//! `docs/socket.io-protocol/v4.md`: the implicit connection to `/` (the server's CONNECT right after
//! open, no client CONNECT), CONNECT without payload both ways, the query in the namespace standing
//! for auth, middleware errors as the error's data or message, socket ids taken from the Engine.IO
//! session, binary events and acks with typed binary frames, and v2 and v4 clients in one room.

use crate::common::*;
use switchyard_engine::EngineConfig;
use switchyard_socketio::SocketIoConfig;

fn v3_config() -> SocketIoConfig {
    let config = sio_config();
    SocketIoConfig { engine: EngineConfig { allow_eio3: true, ..config.engine.clone() }, ..config }
}

/// A WebSocket-only v3 session: the open packet, then the server's CONNECT for `/`.
async fn v3_ws(server: &SioServer) -> (WsClient, String) {
    let mut ws = WsClient::connect(server.addr, &format!("{SIO_PATH}?EIO=3&transport=websocket"))
        .await
        .unwrap_or_else(|res| panic!("refused: {} {:?}", res.status, res.text()));
    let open = parse_open(&ws.recv_text().await);
    assert_eq!(ws.sio_recv().await, "0", "the server connects `/` at once, without data");
    (ws, open["sid"].as_str().unwrap().to_string())
}

#[tokio::test]
async fn refused_when_not_allowed() {
    let (server, _) = SioServer::reference(sio_config()).await;
    let res = get(server.addr, &format!("{SIO_PATH}?EIO=3&transport=polling")).await;
    res.assert_engine_error(5, "Unsupported protocol version");
}

#[tokio::test]
async fn polling_handshake_carries_the_implicit_connect() {
    let (server, mut seen) = SioServer::reference(v3_config()).await;
    let res = get(server.addr, &format!("{SIO_PATH}?EIO=3&transport=polling&b64=1")).await;
    assert_eq!(res.status, 200);
    let body = res.text();
    // `<n>:0{...}2:40` then the reference handler's `auth` event: one response, length-prefixed.
    let (len, rest) = body.split_once(':').unwrap();
    let open = &rest[..len.parse::<usize>().unwrap()];
    let sid = parse_open(open)["sid"].as_str().unwrap().to_string();
    assert_eq!(&rest[open.len()..], "2:4013:42[\"auth\",{}]");
    // The socket id is the Engine.IO id, as the v2 client computes it.
    assert_eq!(seen.next().await, Seen::Connected { nsp: "/".into(), id: sid });
}

#[tokio::test]
async fn events_acks_and_binary_on_the_default_namespace() {
    let (server, _) = SioServer::reference(v3_config()).await;
    let (mut ws, _) = v3_ws(&server).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    ws.sio_send(r#"2["message",1,"two",{"three":3}]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back",1,"two",{"three":3}]"#);
    ws.sio_send(r#"27["message-with-ack",1]"#).await;
    assert_eq!(ws.sio_recv().await, "37[1]");
    // A binary event: the attachment frame starts with the Engine.IO type byte, both ways.
    ws.sio_send(r#"51-["message",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 1, 2, 3]).await;
    assert_eq!(ws.sio_recv().await, r#"51-["message-back",{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![4, 1, 2, 3]));
    // A binary ack.
    ws.sio_send(r#"51-9["message-with-ack",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 9]).await;
    assert_eq!(ws.sio_recv().await, r#"61-9[{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.recv().await, WsFrame::Binary(vec![4, 9]));
}

#[tokio::test]
async fn namespaces_take_their_query_as_auth() {
    let (server, mut seen) = SioServer::reference(v3_config()).await;
    let (mut ws, sid) = v3_ws(&server).await;
    assert_eq!(ws.sio_recv().await, r#"2["auth",{}]"#);
    assert!(matches!(seen.next().await, Seen::Connected { .. }));
    ws.sio_send("0/custom?token=abc&x=1,").await;
    assert_eq!(ws.sio_recv().await, "0/custom,", "CONNECT reply without data");
    assert_eq!(ws.sio_recv().await, r#"2/custom,["auth",{"token":"abc","x":"1"}]"#);
    assert_eq!(seen.next().await, Seen::Connected { nsp: "/custom".into(), id: sid.clone() });
    // Middleware errors: the error's data, or its message when it has none.
    ws.sio_send("0/private?token=wrong,").await;
    assert_eq!(ws.sio_recv().await, r#"4/private,{"code":4001}"#);
    ws.sio_send("0/private?token=secret,").await;
    assert_eq!(ws.sio_recv().await, "0/private,");
    assert_eq!(ws.sio_recv().await, r#"2/private,["auth",{"token":"secret"}]"#);
    ws.sio_send("0/closed,").await;
    assert_eq!(ws.sio_recv().await, r#"4/closed,"closed for maintenance""#);
    ws.sio_send("0/nowhere,").await;
    assert_eq!(ws.sio_recv().await, r#"4/nowhere,{"message":"Invalid namespace"}"#);
    // Leaving a namespace.
    ws.sio_send("1/custom,").await;
    assert_eq!(seen.disconnect_reason(&sid).await, "client namespace disconnect");
}

#[tokio::test]
async fn v2_and_v4_clients_share_a_room() {
    let (server, _) = SioServer::reference(v3_config()).await;
    let (mut v3, _) = v3_ws(&server).await;
    assert_eq!(v3.sio_recv().await, r#"2["auth",{}]"#);
    let (mut v4, _) = server.client("/").await;
    for ws in [&mut v3, &mut v4] {
        ws.sio_send(r#"21["join","lobby"]"#).await;
        let ack = ws.sio_recv().await;
        assert!(ack.starts_with("31[") && ack.contains("lobby"), "{ack}");
    }
    v3.sio_send(r#"22["to-room","lobby","from v2"]"#).await;
    assert_eq!(v4.sio_recv().await, r#"2["room-message","from v2"]"#);
    assert_eq!(v3.sio_recv().await, "32[]");
    v4.sio_send(r#"22["to-room","lobby","from v4"]"#).await;
    assert_eq!(v3.sio_recv().await, r#"2["room-message","from v4"]"#);
    assert_eq!(v4.sio_recv().await, "32[]");
    // A binary broadcast, encoded once per protocol version: raw data for v4, typed for v3.
    server.io.to("lobby").emit("bin", switchyard_socketio::Payload::empty().push_binary(vec![7u8, 8]));
    for ws in [&mut v3, &mut v4] {
        assert_eq!(ws.sio_recv().await, r#"51-["bin",{"_placeholder":true,"num":0}]"#);
    }
    assert_eq!(v3.recv().await, WsFrame::Binary(vec![4, 7, 8]));
    assert_eq!(v4.recv().await, WsFrame::Binary(vec![7, 8]));
    // And one from a v2 client to the others.
    v3.sio_send(r#"51-["broadcast",{"_placeholder":true,"num":0}]"#).await;
    v3.send_binary(&[4, 5]).await;
    assert_eq!(v4.sio_recv().await, r#"51-["broadcast",{"_placeholder":true,"num":0}]"#);
    assert_eq!(v4.recv().await, WsFrame::Binary(vec![5]));
}

#[tokio::test]
async fn polling_v2_client_gets_base64_or_binary_payloads() {
    let (server, _) = SioServer::reference(v3_config()).await;
    for b64 in [true, false] {
        let url = format!("{SIO_PATH}?EIO=3&transport=polling{}", if b64 { "&b64=1" } else { "" });
        let res = get(server.addr, &url).await;
        let sid = parse_open(res.text().split_once(':').unwrap().1.split("2:40").next().unwrap())["sid"]
            .as_str()
            .unwrap()
            .to_string();
        let session_url = format!("{SIO_PATH}?EIO=3&transport=polling&sid={sid}");
        let packet = r#"451-["message",{"_placeholder":true,"num":0}]"#;
        let body = format!("{}:{packet}6:b4AQID", packet.len());
        let res = post(server.addr, &session_url, body.as_bytes()).await;
        assert_eq!((res.status, res.text()), (200, "ok"));
        let res = get(server.addr, &session_url).await;
        if b64 {
            let back = r#"451-["message-back",{"_placeholder":true,"num":0}]"#;
            assert_eq!(res.text(), format!("{}:{back}6:b4AQID", back.len()));
        } else {
            assert_eq!(res.header("content-type"), Some("application/octet-stream"));
            let mut expected = vec![0, 5, 0, 255];
            expected.extend_from_slice(br#"451-["message-back",{"_placeholder":true,"num":0}]"#);
            expected.extend_from_slice(&[1, 4, 255, 4, 1, 2, 3]);
            assert_eq!(res.body, expected);
        }
    }
}
