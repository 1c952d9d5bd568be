//! The built-in events at the wire, in process: the access policy's answers (a deny-by-default
//! policy, an identity with room patterns), and the events without presence. The full contract with
//! the official client is tests/node/test/events.test.js; across nodes, tests/cluster.

use serde_json::{json, Value};
use std::sync::Arc;
use switchyard::access::{Access, Identity, RoomPattern};
use switchyard::events::Events;
use switchyard_fixtures::{sio_config, within, SioServer, WsClient};

async fn call(ws: &mut WsClient, id: u64, args: Value) -> Value {
    ws.sio_send(&format!("2{id}{args}")).await;
    let prefix = format!("3{id}");
    loop {
        let packet = within("the ack", ws.sio_recv()).await;
        if let Some(rest) = packet.strip_prefix(&prefix) {
            let args: Value = serde_json::from_str(rest).expect("ack JSON");
            return args[0].clone();
        }
    }
}

/// A server with the built-in events on `/` under `access` and no presence; sockets whose handshake
/// `auth` has `rooms` get an [`Identity`] with those patterns (as auth will give them).
async fn server(access: Access) -> SioServer {
    SioServer::start(sio_config(), move |io| {
        let events = Events::new(Arc::new(access), None);
        io.of("/").on_connection(move |socket| {
            if let Some(rooms) = socket.auth().get("rooms").and_then(Value::as_array) {
                let patterns: Vec<RoomPattern> = rooms.iter().filter_map(Value::as_str).map(RoomPattern::new).collect();
                let user = socket.auth().get("sub").and_then(Value::as_str).unwrap_or("anon");
                socket.extensions().insert(Identity::new(user.into(), Some(patterns.into()), None, None));
            }
            events.attach(&socket);
        });
    })
    .await
}

#[tokio::test]
async fn a_deny_policy_refuses_joins_and_messages_but_not_the_users_own_room() {
    let server = server(Access::new(false)).await;
    let (mut ws, _) = server.connect("/", Some(r#"{"user":"dora"}"#)).await;
    let forbidden = json!({"ok": false, "error": "forbidden"});
    assert_eq!(call(&mut ws, 1, json!(["join", "lobby"])).await, forbidden);
    assert_eq!(call(&mut ws, 2, json!(["message", "lobby", "hi"])).await, forbidden);
    assert_eq!(call(&mut ws, 3, json!(["join", "user:dora"])).await, json!({"ok": true, "room": "user:dora"}));
    assert_eq!(call(&mut ws, 4, json!(["presence", "lobby"])).await, forbidden, "the policy first");
    // A signal needs the right to publish to user:<target>; one's own user is always allowed.
    assert_eq!(call(&mut ws, 5, json!(["signal", "nobody", {}])).await, forbidden);
    assert_eq!(call(&mut ws, 6, json!(["signal", "dora", {}])).await, json!({"ok": true}));
}

#[tokio::test]
async fn signals_reach_the_users_the_sender_may_publish_to() {
    let server = server(Access::new(false)).await;
    let (mut bob, _) = server.connect("/", Some(r#"{"sub":"bob","rooms":["chat:*"]}"#)).await;
    let (mut erin, _) = server.connect("/", Some(r#"{"sub":"erin","rooms":["chat:*","user:bob"]}"#)).await;
    let (mut mallory, _) = server.connect("/", Some(r#"{"sub":"mallory","rooms":["chat:*"]}"#)).await;
    let forbidden = json!({"ok": false, "error": "forbidden"});
    // Without presence a signal is sent without the offline check.
    assert_eq!(call(&mut erin, 1, json!(["signal", "bob", {"sdp": "offer"}])).await, json!({"ok": true}));
    loop {
        let packet = within("the signal", bob.sio_recv()).await;
        if let Some(rest) = packet.strip_prefix("2[\"signal\",") {
            let message: Value = serde_json::from_str(rest.strip_suffix(']').expect("array")).expect("JSON");
            assert_eq!(message, json!({"from": "erin", "data": {"sdp": "offer"}}));
            break;
        }
    }
    assert_eq!(call(&mut mallory, 1, json!(["signal", "bob", {"sdp": "x"}])).await, forbidden);
    assert_eq!(call(&mut bob, 1, json!(["signal", "erin", {}])).await, forbidden, "the rule is not symmetric");
    // Nothing from mallory reached bob: the next packet bob sees is the answer to his own call.
    bob.sio_send(r#"22["join","chat:x"]"#).await;
    loop {
        let packet = within("bob's ack", bob.sio_recv()).await;
        assert!(!packet.contains("mallory"), "{packet}");
        if packet.starts_with("32") {
            break;
        }
    }
}

#[tokio::test]
async fn room_patterns_decide_joins_and_publishing() {
    let server = server(Access::new(false)).await;
    let (mut ws, _) = server.connect("/", Some(r#"{"sub":"erin","rooms":["chat:*"]}"#)).await;
    assert_eq!(call(&mut ws, 1, json!(["join", "chat:general"])).await, json!({"ok": true, "room": "chat:general"}));
    assert_eq!(call(&mut ws, 2, json!(["join", "ops"])).await, json!({"ok": false, "error": "forbidden"}));
    // The identity's user is the one the events speak as.
    assert_eq!(call(&mut ws, 3, json!(["join", "user:erin"])).await, json!({"ok": true, "room": "user:erin"}));
    let ack = call(&mut ws, 4, json!(["message", "chat:general", {"text": "hi"}])).await;
    assert_eq!(ack["ok"], json!(true), "{ack}");
    assert_eq!(
        call(&mut ws, 5, json!(["presence", "chat:general"])).await,
        json!({"ok": false, "error": "unavailable"}),
        "presence off"
    );
}

/// A sink that holds each message for the delay its data names and refuses data `"refuse"`.
struct DelayingSink;

impl switchyard::pipeline::MessageSink for DelayingSink {
    fn accept(
        &self,
        message: &switchyard::pipeline::AcceptedMessage,
    ) -> switchyard::pipeline::Hold {
        let data = message.data.clone();
        switchyard::pipeline::Hold::Pending(Box::pin(async move {
            if data == json!("refuse") {
                return Err(switchyard::pipeline::Refused { error: "unavailable" });
            }
            let delay = data.get("delay").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            Ok(None)
        }))
    }
}

/// A server whose built-in events pass every message through `sink`, and a client in "lobby".
async fn in_lobby_with_sink(sink: Arc<dyn switchyard::pipeline::MessageSink>) -> (SioServer, WsClient) {
    let server = SioServer::start(sio_config(), move |io| {
        let events = Events::with_sinks(Arc::new(Access::allow_all()), None, vec![sink.clone()]);
        events.install(&io.of("/"));
    })
    .await;
    let (mut ws, _) = server.connect("/", None).await;
    assert_eq!(call(&mut ws, 1, json!(["join", "lobby"])).await["ok"], json!(true));
    (server, ws)
}

/// Sends three `message`s to "lobby" (the first slowest to sink, the second refused, the third at
/// once) and returns the data broadcast back and the three acks in the order they were asked for.
async fn send_slow_refused_fast(ws: &mut WsClient) -> (Vec<Value>, Vec<(String, Value)>) {
    ws.sio_send(r#"22["message","lobby",{"n":1,"delay":300}]"#).await;
    ws.sio_send(r#"23["message","lobby","refuse"]"#).await;
    ws.sio_send(r#"24["message","lobby",{"n":2,"delay":0}]"#).await;
    let mut seen = Vec::new();
    let mut acks = Vec::new();
    while seen.len() < 2 || acks.len() < 3 {
        let packet = within("messages and acks", ws.sio_recv()).await;
        if let Some(rest) = packet.strip_prefix("2[\"message\",") {
            let message: Value = serde_json::from_str(rest.strip_suffix(']').expect("array")).expect("JSON");
            seen.push(message["data"].clone());
        } else if let Some(rest) = packet.strip_prefix('3') {
            acks.push((rest[..1].to_string(), serde_json::from_str::<Value>(&rest[1..]).expect("ack")[0].clone()));
        }
    }
    acks.sort_by(|a, b| a.0.cmp(&b.0));
    (seen, acks)
}

#[tokio::test]
async fn sinks_keep_a_senders_order_and_a_refused_message_is_neither_sent_nor_acked_ok() {
    let (_server, mut ws) = in_lobby_with_sink(Arc::new(DelayingSink)).await;
    // The first message's sink takes longest: it must still be broadcast first.
    let (seen, acks) = send_slow_refused_fast(&mut ws).await;
    assert_eq!(seen, vec![json!({"n": 1, "delay": 300}), json!({"n": 2, "delay": 0})]);
    assert_eq!(acks[0].1["ok"], json!(true));
    assert_eq!(acks[1].1, json!({"ok": false, "error": "unavailable"}));
    assert_eq!(acks[2].1["ok"], json!(true));
}

/// A sink that lets every message be broadcast at once and confirms it to the sender after the
/// delay its data names (`{"confirm": ms}`), or fails the confirm for data `"unconfirmed"` (as Kafka's
/// `persisted` does: the room does not wait, the sender's ack does).
struct ConfirmingSink;

impl switchyard::pipeline::MessageSink for ConfirmingSink {
    fn accept(&self, message: &switchyard::pipeline::AcceptedMessage) -> switchyard::pipeline::Hold {
        let data = message.data.clone();
        let confirm: switchyard::pipeline::Confirm = Box::pin(async move {
            if data == json!("unconfirmed") {
                return Err(switchyard::pipeline::Refused { error: "unavailable" });
            }
            let delay = data.get("confirm").and_then(Value::as_u64).unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            Ok(())
        });
        switchyard::pipeline::Hold::Ready(Ok(Some(confirm)))
    }
}

#[tokio::test]
async fn a_confirm_holds_only_the_senders_ack_and_acks_keep_the_senders_order() {
    let (_server, mut ws) = in_lobby_with_sink(Arc::new(ConfirmingSink)).await;
    ws.sio_send(r#"22["message","lobby",{"n":1,"confirm":400}]"#).await;
    ws.sio_send(r#"23["message","lobby","unconfirmed"]"#).await;
    ws.sio_send(r#"24["message","lobby",{"n":2,"confirm":0}]"#).await;
    // Everything the sender gets, in the order it comes: the room (the sender is in it) must have all
    // three before the first confirm ends, and the acks must follow in the order they were asked for,
    // the failed confirm's error in its place, though it and the third were ready long before the first.
    let mut got = Vec::new();
    while got.len() < 6 {
        let packet = within("messages and acks", ws.sio_recv()).await;
        if let Some(rest) = packet.strip_prefix("2[\"message\",") {
            let message: Value = serde_json::from_str(rest.strip_suffix(']').expect("array")).expect("JSON");
            got.push(("message".to_string(), message["data"].clone()));
        } else if let Some(rest) = packet.strip_prefix('3') {
            let ack = serde_json::from_str::<Value>(&rest[1..]).expect("ack")[0].clone();
            got.push((format!("ack {}", &rest[..1]), ack));
        }
    }
    let kinds: Vec<&str> = got.iter().map(|(kind, _)| kind.as_str()).collect();
    assert_eq!(kinds, ["message", "message", "message", "ack 2", "ack 3", "ack 4"], "{got:?}");
    assert_eq!(got[1].1, json!("unconfirmed"), "a message whose confirm fails was still broadcast");
    assert_eq!(got[3].1["ok"], json!(true));
    assert_eq!(got[4].1, json!({"ok": false, "error": "unavailable"}));
    assert_eq!(got[5].1["ok"], json!(true));
}

/// A sink that records the data of every message it takes, in the order it takes them.
#[derive(Default)]
struct RecordingSink(parking_lot::Mutex<Vec<Value>>);

impl switchyard::pipeline::MessageSink for RecordingSink {
    fn accept(
        &self,
        message: &switchyard::pipeline::AcceptedMessage,
    ) -> switchyard::pipeline::Hold {
        self.0.lock().push(message.data.clone());
        switchyard::pipeline::Hold::Ready(Ok(None))
    }
}

/// History is the gate before Kafka: a message the gate refuses must never reach the later sinks
/// (tests/kafka/fault.test.mjs found messages refused with `history_unavailable` in Kafka), and the
/// later sinks still take one sender's messages in its order, whatever order the gate finishes in.
#[tokio::test]
async fn a_message_the_gate_refuses_never_reaches_the_later_sinks() {
    let recorder = Arc::new(RecordingSink::default());
    let later: Arc<dyn switchyard::pipeline::MessageSink> = recorder.clone();
    let server = SioServer::start(sio_config(), move |io| {
        let events =
            Events::with_gate(Arc::new(Access::allow_all()), None, Arc::new(DelayingSink), vec![later.clone()]);
        events.install(&io.of("/"));
    })
    .await;
    let (mut ws, _) = server.connect("/", None).await;
    assert_eq!(call(&mut ws, 1, json!(["join", "lobby"])).await["ok"], json!(true));
    let (seen, acks) = send_slow_refused_fast(&mut ws).await;
    assert_eq!(seen, vec![json!({"n": 1, "delay": 300}), json!({"n": 2, "delay": 0})]);
    assert_eq!(acks[1].1, json!({"ok": false, "error": "unavailable"}));
    assert_eq!((acks[0].1["ok"].clone(), acks[2].1["ok"].clone()), (json!(true), json!(true)));
    // The refused message never reached the later sink; the others did, in the sender's order.
    assert_eq!(*recorder.0.lock(), vec![json!({"n": 1, "delay": 300}), json!({"n": 2, "delay": 0})]);
}
