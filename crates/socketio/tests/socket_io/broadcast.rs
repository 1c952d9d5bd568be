//! Broadcasts: acks gathered from many clients (all, partial on timeout, per room), volatile emits,
//! and a slow client whose outgoing queue overflows while the others keep receiving everything.

use crate::common::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::Duration;
use switchyard_engine::EngineConfig;
use switchyard_socketio::{BroadcastAckError, Payload, SocketIoConfig};

async fn clients(server: &SioServer, n: usize) -> Vec<(WsClient, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(server.client("/").await);
    }
    out
}

/// Reads the broadcast question on `ws`; returns its ack id.
async fn question(ws: &mut WsClient) -> u64 {
    let packet = ws.sio_recv().await;
    let (id, rest) = split_ack_id(&packet, "2");
    assert_eq!(rest, r#"["poll","q"]"#);
    id
}

fn sorted_args(answers: &[Payload]) -> Vec<Value> {
    let mut args: Vec<Value> = answers.iter().map(|p| Value::Array(p.args.clone())).collect();
    args.sort_by_key(|v| v.to_string());
    args
}

#[tokio::test]
async fn broadcast_ack_gathers_every_answer() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    let op = server.io.timeout(Duration::from_secs(4));
    let gathering = tokio::spawn(async move { op.emit_with_ack("poll", "q").await });
    let first = question(&mut c[0].0).await;
    c[0].0.sio_send(&format!("3{first}[0]")).await;
    let second = question(&mut c[1].0).await;
    c[1].0.sio_send(&format!(r#"3{second}[1,"one"]"#)).await;
    // One answer carries binary: a BINARY_ACK.
    let third = question(&mut c[2].0).await;
    c[2].0.sio_send(&format!(r#"61-{third}[{{"_placeholder":true,"num":0}}]"#)).await;
    c[2].0.send_binary(&[2, 2]).await;

    let answers = within("the broadcast acks", gathering).await.expect("task").expect("every client answered");
    assert_eq!(answers.len(), 3);
    assert_eq!(sorted_args(&answers), [json!([0]), json!([1, "one"]), json!([{"_placeholder": true, "num": 0}])]);
    let binary = answers.iter().find(|p| !p.binary.is_empty()).expect("binary answer");
    assert_eq!(binary.binary_of(&binary.args[0]).map(|b| b.to_vec()), Some(vec![2, 2]));
}

#[tokio::test]
async fn broadcast_ack_times_out_with_partial_answers() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 3).await;
    let op = server.io.timeout(Duration::from_millis(400));
    let gathering = tokio::spawn(async move { op.emit_with_ack("poll", "q").await });
    for (i, (ws, _)) in c.iter_mut().enumerate() {
        let id = question(ws).await;
        if i < 2 {
            ws.sio_send(&format!("3{id}[{i}]")).await;
        }
    }
    let result = within("the broadcast ack timeout", gathering).await.expect("task");
    let BroadcastAckError { expected, responses } = result.expect_err("one client never answers");
    assert_eq!(expected, 3);
    assert_eq!(sorted_args(&responses), [json!([0]), json!([1])]);
}

#[tokio::test]
async fn broadcast_ack_to_a_room_counts_its_members_only() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let mut c = clients(&server, 2).await;
    c[0].0.sio_send(r#"21["join","r1"]"#).await;
    c[0].0.sio_recv().await;
    let op = server.io.to("r1").timeout(Duration::from_secs(4));
    let gathering = tokio::spawn(async move { op.emit_with_ack("poll", "q").await });
    let id = question(&mut c[0].0).await;
    c[0].0.sio_send(&format!(r#"3{id}["member"]"#)).await;
    let answers = within("the room's acks", gathering).await.expect("task").expect("answered");
    assert_eq!(sorted_args(&answers), [json!(["member"])]);
    server.io.emit("marker", ());
    assert_eq!(c[1].0.sio_recv().await, r#"2["marker"]"#, "the non-member was not asked");

    // Nobody to ask: an immediate empty answer, not a timeout.
    let op = server.io.to("empty-room").timeout(Duration::from_secs(4));
    let answers = within("an empty broadcast", op.emit_with_ack("poll", "q")).await;
    assert_eq!(answers, Ok(Vec::new()));
}

#[tokio::test]
async fn volatile_emit_reaches_writable_clients() {
    let (server, _seen) = SioServer::reference(sio_config()).await;
    let (mut ws, _) = server.client("/").await;
    server.io.of("/").broadcast().volatile().emit("vol", "now");
    assert_eq!(ws.sio_recv().await, r#"2["vol","now"]"#);
}

#[tokio::test]
async fn volatile_emit_skips_clients_with_a_backlog() {
    let (server, mut seen) = SioServer::reference(sio_config()).await;
    // A polling client that is not polling: whatever is sent to it waits in its queue.
    let (session, _) = Polling::open(server.addr, SIO_PATH).await;
    session.send("40").await;
    session.poll_packets(2).await;
    seen.next().await;
    let (mut ws, _) = server.client("/").await;

    server.io.emit("first", ());
    assert_eq!(ws.sio_recv().await, r#"2["first"]"#, "the WebSocket client drained its queue");
    server.io.of("/").broadcast().volatile().emit("vol", ());
    assert_eq!(ws.sio_recv().await, r#"2["vol"]"#);
    server.io.emit("marker", ());
    assert_eq!(ws.sio_recv().await, r#"2["marker"]"#);
    assert_eq!(
        session.poll_packets(2).await,
        [r#"42["first"]"#, r#"42["marker"]"#],
        "the volatile packet was dropped for the backed-up client, nothing else"
    );
}

/// Messages of the flood test: 16 KB each.
const FLOOD_PAD: usize = 16 * 1024;
/// At most this many (32 MB) before the test gives up on seeing the slow client disconnected.
const FLOOD_MAX: u64 = 2000;

fn slow_client_config() -> SocketIoConfig {
    let config = sio_config();
    SocketIoConfig { engine: EngineConfig { max_queue_bytes: 128 * 1024, ..config.engine.clone() }, ..config }
}

/// Parses `2["flood",<n>,"xxx..."]`.
fn flood_number(packet: &str) -> Option<u64> {
    let rest = packet.strip_prefix(r#"2["flood","#)?;
    rest[..rest.find(',')?].parse().ok()
}

/// Reads flood messages until `done`; returns the numbers received and the total announced.
async fn read_flood(mut ws: WsClient) -> (Vec<u64>, u64) {
    let mut numbers = Vec::new();
    loop {
        let packet = ws.sio_recv().await;
        if let Some(n) = flood_number(&packet) {
            numbers.push(n);
        } else if let Some(total) = packet.strip_prefix(r#"2["done","#).and_then(|r| r.strip_suffix(']')) {
            return (numbers, total.parse().expect("total"));
        } else {
            panic!("unexpected packet during the flood: {:.80}", packet);
        }
    }
}

/// Broadcasts flood messages, yielding between them so that writers and readers run, until a slow
/// client was disconnected (plus `after` more); then announces the total. Returns the total.
async fn flood(server: &SioServer, after: u64) -> u64 {
    let stats = server.io.engine().stats().clone();
    let pad = "x".repeat(FLOOD_PAD);
    let mut sent = 0;
    while sent < FLOOD_MAX && stats.slow_client_disconnects.load(Ordering::Relaxed) == 0 {
        server.io.emit("flood", vec![json!(sent), json!(pad)]);
        sent += 1;
        tokio::task::yield_now().await;
    }
    assert_eq!(stats.slow_client_disconnects.load(Ordering::Relaxed), 1, "the slow client overflowed its queue");
    for _ in 0..after {
        server.io.emit("flood", vec![json!(sent), json!(pad)]);
        sent += 1;
        tokio::task::yield_now().await;
    }
    server.io.emit("done", json!(sent));
    sent
}

#[tokio::test]
async fn slow_client_is_disconnected_and_others_get_everything() {
    let (server, mut seen) = SioServer::reference(slow_client_config()).await;
    let (mut slow, slow_sid) = server.client("/").await;
    let readers: Vec<_> = clients(&server, 2).await.into_iter().map(|(ws, _)| tokio::spawn(read_flood(ws))).collect();

    let total = flood(&server, 20).await;
    for reader in readers {
        let (numbers, announced) = within("a fast client to read the flood", reader).await.expect("reader task");
        assert_eq!(announced, total);
        assert!(numbers.iter().copied().eq(0..total), "a fast client got every message, in order");
    }

    // The slow client, reading at last, finds a gap-free prefix of the flood and then the close.
    let mut expected = 0;
    loop {
        match slow.recv_data().await {
            WsFrame::Text(text) => {
                let n = text.strip_prefix('4').and_then(flood_number).unwrap_or_else(|| panic!("flood: {text:.60}"));
                assert_eq!(n, expected, "no message skipped for the slow client");
                expected += 1;
            }
            WsFrame::Close(_) | WsFrame::Eof => break,
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert!(expected < total, "the slow client was cut off");
    assert_eq!(seen.disconnect_reason(&slow_sid).await, "transport error");
    assert_eq!(server.io.engine().stats().slow_client_disconnects.load(Ordering::Relaxed), 1);
}

#[tokio::test]
async fn slow_client_is_disconnected_while_it_still_does_not_read() {
    let (server, mut seen) = SioServer::reference(slow_client_config()).await;
    let (_slow, slow_sid) = server.client("/").await;
    let (fast, _) = server.client("/").await;
    let reader = tokio::spawn(read_flood(fast));
    flood(&server, 0).await;
    within("the fast reader", reader).await.expect("reader task");
    // The server must not wait for the peer to drain its socket before ending the connection.
    assert_eq!(seen.disconnect_reason(&slow_sid).await, "transport error");
    assert_eq!(server.io.of("/").local_socket_count(), 1);
}
