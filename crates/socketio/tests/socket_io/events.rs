//! EVENT, ACK, BINARY_EVENT and BINARY_ACK in both directions, over WebSocket and polling.

use crate::common::*;
use serde_json::{json, Value};
use switchyard_socketio::{AckError, Payload};

#[tokio::test]
async fn event_arguments_round_trip() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    ws.sio_send(r#"2["message",1,"two",{"three":[3,3.5]},null,true,"€😀"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back",1,"two",{"three":[3,3.5]},null,true,"€😀"]"#);
    ws.sio_send(r#"2["message"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back"]"#);
}

#[tokio::test]
async fn event_in_custom_namespace() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/custom").await;
    ws.sio_send(r#"2/custom,["message",{"a":"b"}]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2/custom,["message-back",{"a":"b"}]"#);
}

#[tokio::test]
async fn client_event_with_ack_gets_ack() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    ws.sio_send(r#"20["message-with-ack",1,"2",{"3":[4]}]"#).await;
    assert_eq!(ws.sio_recv().await, r#"30[1,"2",{"3":[4]}]"#);
    ws.sio_send(r#"2456["message-with-ack"]"#).await;
    assert_eq!(ws.sio_recv().await, "3456[]");
    // The largest id a JavaScript client can produce.
    ws.sio_send(r#"29007199254740991["message-with-ack","max"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"39007199254740991["max"]"#);

    let (mut ws, _) = server.client("/custom").await;
    ws.sio_send(r#"2/custom,7["message-with-ack","c"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"3/custom,7["c"]"#);
}

#[tokio::test]
async fn event_without_handler_is_ignored() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    seen.next().await; // connected
    ws.sio_send(r#"2["nobody-listens",1]"#).await;
    ws.sio_send(r#"23["nobody-listens-with-ack"]"#).await;
    // A number is a valid event name too.
    ws.sio_send(r#"2[42,"numbered"]"#).await;
    ws.sio_send(r#"2["message","after"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","after"]"#);
    assert!(seen.nothing_yet(), "the socket stayed connected");
}

#[tokio::test]
async fn binary_event_placeholders_are_resolved_for_the_handler() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    ws.sio_send(
        r#"52-["binary-info",{"_placeholder":true,"num":0},{"nested":[{"_placeholder":true,"num":1}]},"text"]"#,
    )
    .await;
    ws.send_binary(&[1, 2, 3]).await;
    ws.send_binary(&[0xff]).await;
    assert_eq!(ws.sio_recv().await, r#"2["binary-info-back",{"bytes":"010203"},{"nested":[{"bytes":"ff"}]},"text"]"#);
    // Attachments referenced out of order, and an empty one.
    ws.sio_send(r#"52-["binary-info",[{"_placeholder":true,"num":1},{"_placeholder":true,"num":0}]]"#).await;
    ws.send_binary(&[]).await;
    ws.send_binary(&[0xab, 0xcd]).await;
    assert_eq!(ws.sio_recv().await, r#"2["binary-info-back",[{"bytes":"abcd"},{"bytes":""}]]"#);
}

#[tokio::test]
async fn binary_event_is_echoed_as_binary_event() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/custom").await;
    ws.sio_send(r#"51-/custom,["message",{"_placeholder":true,"num":0},"tail"]"#).await;
    ws.send_binary(&[9, 8, 7]).await;
    assert_eq!(ws.sio_recv().await, r#"51-/custom,["message-back",{"_placeholder":true,"num":0},"tail"]"#);
    assert_eq!(ws.recv_binary().await, vec![9, 8, 7], "the attachment follows as a raw binary frame");
}

#[tokio::test]
async fn binary_event_with_ack_gets_binary_ack() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    ws.sio_send(r#"52-12["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#).await;
    ws.send_binary(&[1]).await;
    ws.send_binary(&[2, 2]).await;
    assert_eq!(ws.sio_recv().await, r#"62-12[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#);
    assert_eq!(ws.recv_binary().await, vec![1]);
    assert_eq!(ws.recv_binary().await, vec![2, 2]);

    let (mut ws, _) = server.client("/custom").await;
    ws.sio_send(r#"51-/custom,3["message-with-ack",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[5]).await;
    assert_eq!(ws.sio_recv().await, r#"61-/custom,3[{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.recv_binary().await, vec![5]);
}

#[tokio::test]
async fn binary_event_over_polling() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    session.send(&format!(r#"451-["message",{{"_placeholder":true,"num":0}}]{}b{}"#, '\x1e', b64(&[1, 2, 3, 4]))).await;
    assert_eq!(
        session.poll().await,
        format!(r#"451-["message-back",{{"_placeholder":true,"num":0}}]{}bAQIDBA=="#, '\x1e')
    );
    // The attachment may also come in its own POST.
    session.send(r#"451-["binary-info",{"_placeholder":true,"num":0}]"#).await;
    session.send(&format!("b{}", b64(&[0xca, 0xfe]))).await;
    assert_eq!(session.poll().await, r#"42["binary-info-back",{"bytes":"cafe"}]"#);
}

#[tokio::test]
async fn server_emit_with_ack_gets_client_ack() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.sio_send(r#"2["ask","hello",{"n":1}]"#).await;
    let question = ws.sio_recv().await;
    let (id, rest) = split_ack_id(&question, "2");
    assert_eq!(rest, r#"["question","hello",{"n":1}]"#);
    ws.sio_send(&format!(r#"3{id}["answer",42]"#)).await;
    assert_eq!(seen.ack_result(&sid).await, Ok(Payload::new(vec![json!("answer"), json!(42)])));
}

#[tokio::test]
async fn server_emit_with_ack_in_custom_namespace() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/custom").await;
    ws.sio_send(r#"2/custom,["ask"]"#).await;
    let question = ws.sio_recv().await;
    let (id, rest) = split_ack_id(&question, "2/custom,");
    assert_eq!(rest, r#"["question"]"#);
    ws.sio_send(&format!(r#"3/custom,{id}[]"#)).await;
    assert_eq!(seen.ack_result(&sid).await, Ok(Payload::empty()));
}

#[tokio::test]
async fn server_emit_with_ack_gets_client_binary_ack() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.sio_send(r#"2["ask"]"#).await;
    let (id, _) = split_ack_id(&ws.sio_recv().await, "2");
    ws.sio_send(&format!(r#"61-{id}["bin",{{"_placeholder":true,"num":0}}]"#)).await;
    ws.send_binary(&[0xde, 0xad]).await;
    let answer = seen.ack_result(&sid).await.expect("answered");
    assert_eq!(answer.args[0], json!("bin"));
    assert_eq!(answer.binary_of(&answer.args[1]).map(|b| b.to_vec()), Some(vec![0xde, 0xad]));
}

#[tokio::test]
async fn server_binary_emit_with_ack() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    // The question carries the client's binary argument: a BINARY_EVENT with an ack id.
    ws.sio_send(r#"51-["ask",{"_placeholder":true,"num":0}]"#).await;
    ws.send_binary(&[4, 2]).await;
    let question = ws.sio_recv().await;
    let (id, rest) = split_ack_id(&question, "51-");
    assert_eq!(rest, r#"["question",{"_placeholder":true,"num":0}]"#);
    assert_eq!(ws.recv_binary().await, vec![4, 2]);
    ws.sio_send(&format!("3{id}[true]")).await;
    assert_eq!(seen.ack_result(&sid).await, Ok(Payload::new(vec![json!(true)])));
}

#[tokio::test]
async fn server_emit_with_ack_times_out() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.sio_send(r#"2["ask"]"#).await;
    let (id, _) = split_ack_id(&ws.sio_recv().await, "2");
    assert_eq!(seen.ack_result(&sid).await, Err(AckError::Timeout));
    // A late answer is ignored; the connection goes on.
    ws.sio_send(&format!(r#"3{id}["too late"]"#)).await;
    ws.sio_send(r#"2["message","after"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","after"]"#);
}

#[tokio::test]
async fn pending_server_ack_fails_when_the_client_leaves() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    ws.sio_send(r#"2["ask"]"#).await;
    split_ack_id(&ws.sio_recv().await, "2");
    ws.sio_send("1").await;
    assert_eq!(seen.ack_result(&sid).await, Err(AckError::Disconnected));
}

#[tokio::test]
async fn ack_for_unknown_id_is_ignored() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    seen.next().await; // connected
    ws.sio_send(r#"3999["nobody asked"]"#).await;
    ws.sio_send(r#"2["message","still fine"]"#).await;
    assert_eq!(ws.sio_recv().await, r#"2["message-back","still fine"]"#);
    assert!(seen.nothing_yet());
}

#[tokio::test]
async fn server_emit_reaches_client_over_polling() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    let Seen::Connected { id, .. } = seen.next().await else { panic!("connected first") };
    session.send(r#"42["ask","via polling"]"#).await;
    let packets = session.poll_packets(1).await;
    let (ack_id, rest) = split_ack_id(&packets[0], "42");
    assert_eq!(rest, r#"["question","via polling"]"#);
    session.send(&format!(r#"43{ack_id}["ok"]"#)).await;
    assert_eq!(seen.ack_result(&id).await, Ok(Payload::new(vec![json!("ok")])));
}

/// Handlers registered once on the namespace serve every socket (and a dynamic parent's serve its
/// children); a socket's own handler of the same event takes precedence, for that socket only.
#[tokio::test]
async fn namespace_handlers_serve_every_socket_and_a_socket_handler_overrides_them() {
    let server = SioServer::start(sio_config(), |io| {
        let ns = io.of("/");
        ns.on("echo", |_socket, payload, ack| {
            if let Some(ack) = ack {
                ack.send(payload);
            }
        });
        ns.on("who", |socket, _payload, _ack| {
            let _ = socket.emit("who-back", json!("namespace"));
        });
        ns.on_connection(|socket| {
            // The second socket's own "who" handler replaces the namespace's, for it alone.
            if socket.auth().get("own").is_some() {
                socket.on("who", |socket, _payload, _ack| {
                    let _ = socket.emit("who-back", json!("socket"));
                });
            }
        });
        let parent = io.dynamic_namespace(|name| name.starts_with("/room-"));
        parent.on("who", |socket, _payload, _ack| {
            let _ = socket.emit("who-back", json!(socket.ns().name()));
        });
    })
    .await;
    let (mut plain, _) = server.connect("/", None).await;
    plain.sio_send(r#"27["echo",1,"two"]"#).await;
    assert_eq!(plain.sio_recv().await, r#"37[1,"two"]"#);
    plain.sio_send(r#"2["who"]"#).await;
    assert_eq!(plain.sio_recv().await, r#"2["who-back","namespace"]"#);

    let (mut own, _) = server.connect("/", Some(r#"{"own":true}"#)).await;
    own.sio_send(r#"2["who"]"#).await;
    assert_eq!(own.sio_recv().await, r#"2["who-back","socket"]"#);
    // The namespace's other handlers still serve it.
    own.sio_send(r#"28["echo","x"]"#).await;
    assert_eq!(own.sio_recv().await, r#"38["x"]"#);
    // And the override did not leak to the other socket.
    plain.sio_send(r#"2["who"]"#).await;
    assert_eq!(plain.sio_recv().await, r#"2["who-back","namespace"]"#);

    let (mut child, _) = server.connect("/room-7", None).await;
    child.sio_send(r#"2/room-7,["who"]"#).await;
    assert_eq!(child.sio_recv().await, r#"2/room-7,["who-back","/room-7"]"#);
}

/// `auth` and `data` are boxed only when they hold something: a socket without auth reads `{}`, one
/// with an empty auth too, one with members reads them; data is `null` until set, and
/// setting `null` again reads `null`.
#[tokio::test]
async fn auth_and_data_read_as_sent_and_set() {
    let server = SioServer::start(sio_config(), |io| {
        io.of("/").on("show", |socket, _payload, ack| {
            let before = socket.data();
            socket.set_data(json!({"n": 1}));
            let set = socket.data();
            socket.set_data(Value::Null);
            if let Some(ack) = ack {
                ack.send(Payload::new(vec![socket.auth().clone(), before, set, socket.data()]));
            }
        });
    })
    .await;
    for (auth, expected) in [(None, "{}"), (Some("{}"), "{}"), (Some(r#"{"token":"t"}"#), r#"{"token":"t"}"#)] {
        let (mut ws, _) = server.connect("/", auth).await;
        ws.sio_send(r#"21["show"]"#).await;
        assert_eq!(ws.sio_recv().await, format!(r#"31[{expected},null,{{"n":1}},null]"#), "auth {auth:?}");
    }
}
