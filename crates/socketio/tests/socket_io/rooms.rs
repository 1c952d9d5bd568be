//! Rooms: join and leave, emitting to rooms, exclusions, the sender left out of its own broadcasts,
//! and every socket's id as a room of its own.
//!
//! To show that a client did NOT receive something, the server then emits a `marker` to everyone:
//! packets on one connection keep their order, so the marker must be the client's next packet.

use crate::common::*;

async fn clients(server: &SioServer, n: usize) -> Vec<(WsClient, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(server.client("/").await);
    }
    out
}

/// Joins `rooms` through the `join` event; returns the rooms the server then reports for the socket.
async fn join(ws: &mut WsClient, nsp_prefix: &str, rooms: &[&str]) -> String {
    let args: Vec<String> = rooms.iter().map(|r| format!("\"{r}\"")).collect();
    ws.sio_send(&format!(r#"2{nsp_prefix}1["join",{}]"#, args.join(","))).await;
    let ack = ws.sio_recv().await;
    ack.strip_prefix(&format!("3{nsp_prefix}1")).unwrap_or_else(|| panic!("join ack expected: {ack:?}")).to_string()
}

async fn leave(ws: &mut WsClient, room: &str) -> String {
    ws.sio_send(&format!(r#"22["leave","{room}"]"#)).await;
    let ack = ws.sio_recv().await;
    ack.strip_prefix("32").unwrap_or_else(|| panic!("leave ack expected: {ack:?}")).to_string()
}

/// Emits `marker` to every socket of `/`.
fn marker(server: &SioServer) {
    server.io.emit("marker", ());
}

const MARKER: &str = r#"2["marker"]"#;

#[tokio::test]
async fn join_and_leave_report_rooms_with_own_id_first() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    assert_eq!(join(&mut ws, "", &["r1", "r2"]).await, format!(r#"[["{sid}","r1","r2"]]"#));
    assert_eq!(join(&mut ws, "", &["r1"]).await, format!(r#"[["{sid}","r1","r2"]]"#), "joining twice is a no-op");
    assert_eq!(leave(&mut ws, "r1").await, format!(r#"[["{sid}","r2"]]"#));
    assert_eq!(leave(&mut ws, "never-joined").await, format!(r#"[["{sid}","r2"]]"#));
}

#[tokio::test]
async fn in_room_agrees_with_the_rooms_list() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, sid) = server.client("/").await;
    join(&mut ws, "", &["r1", "r2"]).await;
    leave(&mut ws, "r1").await;
    let socket = server.io.of("/").get_socket(&switchyard_socketio::Sid::parse(&sid).unwrap()).expect("the socket");
    for room in [sid.as_str(), "r1", "r2", "r3", ""] {
        let listed = socket.rooms().iter().any(|r| &**r == room);
        assert_eq!(socket.in_room(room), listed, "room {room:?}");
    }
    assert!(socket.in_room(&sid) && socket.in_room("r2") && !socket.in_room("r1"));
}

#[tokio::test]
async fn emit_to_room_reaches_members_only() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    join(&mut c[0].0, "", &["r1"]).await;
    join(&mut c[1].0, "", &["r1"]).await;
    server.io.to("r1").emit("news", "for r1");
    marker(&server);
    for (ws, _) in &mut c[..2] {
        assert_eq!(ws.sio_recv().await, r#"2["news","for r1"]"#);
        assert_eq!(ws.sio_recv().await, MARKER);
    }
    assert_eq!(c[2].0.sio_recv().await, MARKER, "a non-member gets nothing");
}

#[tokio::test]
async fn emit_to_several_rooms_reaches_each_member_once() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    join(&mut c[0].0, "", &["r1", "r2"]).await;
    join(&mut c[1].0, "", &["r2"]).await;
    server.io.to("r1").to("r2").emit("news", serde_json::json!(1));
    marker(&server);
    for (ws, _) in &mut c[..2] {
        assert_eq!(ws.sio_recv().await, r#"2["news",1]"#);
        assert_eq!(ws.sio_recv().await, MARKER, "one copy only");
    }
    assert_eq!(c[2].0.sio_recv().await, MARKER);
}

#[tokio::test]
async fn except_leaves_out_members_of_the_excluded_room() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    join(&mut c[0].0, "", &["r1"]).await;
    join(&mut c[1].0, "", &["r1", "vip"]).await;
    server.io.to("r1").except("vip").emit("news", "r1 but not vip");
    server.io.of("/").except("vip").emit("news", "all but vip");
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, r#"2["news","r1 but not vip"]"#);
    assert_eq!(c[0].0.sio_recv().await, r#"2["news","all but vip"]"#);
    assert_eq!(c[0].0.sio_recv().await, MARKER);
    assert_eq!(c[1].0.sio_recv().await, MARKER);
    assert_eq!(c[2].0.sio_recv().await, r#"2["news","all but vip"]"#);
    assert_eq!(c[2].0.sio_recv().await, MARKER);
}

#[tokio::test]
async fn broadcast_from_a_socket_leaves_out_the_sender() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    c[0].0.sio_send(r#"27["broadcast","from zero"]"#).await;
    assert_eq!(c[0].0.sio_recv().await, "37[]");
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, MARKER, "the sender does not hear itself");
    for (ws, _) in &mut c[1..] {
        assert_eq!(ws.sio_recv().await, r#"2["broadcast","from zero"]"#);
        assert_eq!(ws.sio_recv().await, MARKER);
    }
}

#[tokio::test]
async fn emit_to_room_from_a_member_leaves_out_the_sender() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    join(&mut c[0].0, "", &["r1"]).await;
    join(&mut c[1].0, "", &["r1"]).await;
    c[0].0.sio_send(r#"28["to-room","r1","hello room"]"#).await;
    assert_eq!(c[0].0.sio_recv().await, "38[]");
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, MARKER);
    assert_eq!(c[1].0.sio_recv().await, r#"2["room-message","hello room"]"#);
    assert_eq!(c[1].0.sio_recv().await, MARKER);
    assert_eq!(c[2].0.sio_recv().await, MARKER);
}

#[tokio::test]
async fn socket_id_is_a_room() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    let second = c[1].1.clone();
    let third = c[2].1.clone();
    server.io.to(second.as_str()).emit("direct", "to one");
    c[0].0.sio_send(&format!(r#"29["to-room","{third}","psst"]"#)).await;
    assert_eq!(c[0].0.sio_recv().await, "39[]");
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, MARKER);
    assert_eq!(c[1].0.sio_recv().await, r#"2["direct","to one"]"#);
    assert_eq!(c[1].0.sio_recv().await, MARKER);
    assert_eq!(c[2].0.sio_recv().await, r#"2["room-message","psst"]"#);
    assert_eq!(c[2].0.sio_recv().await, MARKER);
    // Excluding a socket id leaves out that socket.
    server.io.of("/").except(second.as_str()).emit("news", "not for one");
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, r#"2["news","not for one"]"#);
    assert_eq!(c[1].0.sio_recv().await, MARKER);
}

#[tokio::test]
async fn left_room_gets_nothing_more() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 2).await;
    join(&mut c[0].0, "", &["r1"]).await;
    join(&mut c[1].0, "", &["r1"]).await;
    leave(&mut c[0].0, "r1").await;
    server.io.to("r1").emit("news", "after leave");
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, MARKER);
    assert_eq!(c[1].0.sio_recv().await, r#"2["news","after leave"]"#);
}

#[tokio::test]
async fn rooms_belong_to_their_namespace() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut main, _) = server.client("/").await;
    let (mut custom, _) = server.client("/custom").await;
    join(&mut main, "", &["r1"]).await;
    join(&mut custom, "/custom,", &["r1"]).await;
    server.io.to("r1").emit("news", "main r1");
    server.io.of("/custom").to("r1").emit("news", "custom r1");
    assert_eq!(main.sio_recv().await, r#"2["news","main r1"]"#);
    assert_eq!(custom.sio_recv().await, r#"2/custom,["news","custom r1"]"#);
    server.io.emit("marker", ());
    server.io.of("/custom").emit("marker", ());
    assert_eq!(main.sio_recv().await, MARKER);
    assert_eq!(custom.sio_recv().await, r#"2/custom,["marker"]"#);
}

#[tokio::test]
async fn disconnected_socket_leaves_its_rooms() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 2).await;
    join(&mut c[0].0, "", &["solo"]).await;
    join(&mut c[1].0, "", &["shared"]).await;
    join(&mut c[0].0, "", &["shared"]).await;
    assert!(server.io.of("/").has_room("solo"));
    c[0].0.sio_send("1").await;
    assert_eq!(seen.disconnect_reason(&c[0].1).await, "client namespace disconnect");
    assert!(!server.io.of("/").has_room("solo"), "an emptied room is gone");
    assert!(server.io.of("/").has_room("shared"));
    server.io.to("shared").emit("news", "still shared");
    assert_eq!(c[1].0.sio_recv().await, r#"2["news","still shared"]"#);
}

#[tokio::test]
async fn an_encoded_json_argument_reaches_members_as_the_same_value_would() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 2).await;
    join(&mut c[0].0, "", &["r1"]).await;
    let to = server.io.to("r1");
    assert!(to.takes_json(), "the in-memory adapter with the JSON parser frames the bytes as they are");
    to.emit_json("news", br#"{"b":[1,"x"],"a":null}"#, Vec::new());
    server.io.to("r1").emit("news", serde_json::json!({"b": [1, "x"], "a": null}));
    marker(&server);
    assert_eq!(c[0].0.sio_recv().await, r#"2["news",{"b":[1,"x"],"a":null}]"#);
    // serde_json's map orders keys; the encoded argument keeps the caller's order.
    assert_eq!(c[0].0.sio_recv().await, r#"2["news",{"a":null,"b":[1,"x"]}]"#);
    assert_eq!(c[0].0.sio_recv().await, MARKER);
    assert_eq!(c[1].0.sio_recv().await, MARKER, "a non-member gets nothing");
}

#[tokio::test]
async fn an_encoded_json_argument_takes_the_value_path_when_recovery_needs_an_offset() {
    let config = switchyard_socketio::SocketIoConfig { recovery: Some(Default::default()), ..sio_config() };
    let (server, _seen) = SioServer::reference(config).await;
    assert!(!server.io.to("r1").takes_json(), "with recovery each packet carries its offset: parsed, then emitted");
    assert!(server.io.to("r1").volatile().takes_json(), "a volatile packet is not stored");
}
