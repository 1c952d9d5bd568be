//! A node whose clients speak the MessagePack parser (`socket.io-msgpack-parser`) in a cluster with a
//! JSON node: the Redis wire does not depend on the clients' parser, so broadcasts from either node
//! reach both kinds of clients, binary included, each encoded once by the receiving node's parser.

mod common;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use std::time::Duration;
use switchyard_redis::{Mode, RedisAdapterConfig, RedisTarget};
use switchyard_socketio::engine::protocol::cluster::msgpack;
use switchyard_socketio::engine::protocol::socketio::{placeholder, Packet, PacketType};
use switchyard_socketio::engine::protocol::socketio_msgpack;
use switchyard_socketio::{Parser, Payload, SocketIoConfig};
use tokio_tungstenite::tungstenite::Message;

/// A WebSocket client speaking the msgpack parser, connected to `/`.
struct MsgpackClient {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    id: String,
}

impl MsgpackClient {
    async fn connect(node: &Node) -> MsgpackClient {
        let url = format!("ws://{}/socket.io/?EIO=4&transport=websocket", node.addr);
        let (ws, _) = within("websocket connect", tokio_tungstenite::connect_async(url)).await.expect("connect");
        let mut client = MsgpackClient { ws, id: String::new() };
        // The Engine.IO open packet stays text whatever the parser.
        match within("the open packet", client.ws.next()).await {
            Some(Ok(Message::Text(open))) => assert!(open.starts_with('0'), "open packet expected: {open}"),
            other => panic!("open packet expected, got {other:?}"),
        }
        let connect = msgpack::encode(&json!({"type": 0, "nsp": "/"}), &[]);
        within("send", client.ws.send(Message::binary(connect))).await.expect("send");
        let reply = client.next_packet().await;
        assert_eq!(reply.kind, PacketType::Connect);
        client.id = reply.data.as_ref().and_then(|d| d["sid"].as_str()).expect("sid").to_string();
        client
    }

    /// The next Socket.IO packet (a binary message), answering pings on the way.
    async fn next_packet(&mut self) -> Packet {
        loop {
            match within("a frame from the server", self.ws.next()).await {
                Some(Ok(Message::Binary(data))) => {
                    return socketio_msgpack::decode(&data, 10).expect("a msgpack Socket.IO packet")
                }
                Some(Ok(Message::Text(text))) if text.as_str() == "2" => {
                    within("pong", self.ws.send(Message::text("3"))).await.expect("pong");
                }
                Some(Ok(Message::Text(text))) => panic!("text from a msgpack server: {text}"),
                Some(Ok(_)) => continue,
                other => panic!("connection ended: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn broadcasts_cross_between_json_and_msgpack_nodes() {
    let redis = RedisServer::start().await;
    let target = RedisTarget::Single(redis.url());
    let config =
        RedisAdapterConfig { mode: Mode::Classic, requests_timeout: Duration::from_secs(3), ..Default::default() };
    let json_node = Node::start(target.clone(), config.clone()).await;
    let msgpack_node =
        Node::start_with(target, config, SocketIoConfig { parser: Parser::Msgpack, ..Default::default() }).await;
    for node in [&json_node, &msgpack_node] {
        node.connected().await;
        let redis = node.redis.clone();
        within("both nodes to see each other", async move {
            while redis.server_count("/").await.ok() != Some(2) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
    }
    let mut j = Client::connect(&json_node, "j").await;
    let mut m = MsgpackClient::connect(&msgpack_node).await;
    json_node.socket(&j.id).join("r").unwrap();
    msgpack_node.socket(&m.id).join("r").unwrap();

    // From the JSON node: its client gets JSON, the other node's client msgpack, binary inline.
    json_node.ns().to("r").emit("from-json", Payload::empty().push(json!({"k": 1})).push_binary(vec![1u8, 2, 3]));
    let (text, attachments) = j.next_binary_event().await;
    assert_eq!(text, r#"451-["from-json",{"k":1},{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, vec![vec![1u8, 2, 3]]);
    let packet = m.next_packet().await;
    assert_eq!((packet.kind, packet.nsp.as_str()), (PacketType::Event, "/"));
    assert_eq!(packet.data, Some(json!(["from-json", {"k": 1}, placeholder(0)])));
    assert_eq!(packet.attachments, vec![bytes_of(&[1, 2, 3])]);

    // From the msgpack node: the same, the other way round.
    msgpack_node.ns().emit("from-msgpack", Payload::empty().push(json!("x")).push_binary(vec![9u8]));
    let packet = m.next_packet().await;
    assert_eq!(packet.data, Some(json!(["from-msgpack", "x", placeholder(0)])));
    assert_eq!(packet.attachments, vec![bytes_of(&[9])]);
    let (text, attachments) = j.next_binary_event().await;
    assert_eq!(text, r#"451-["from-msgpack","x",{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, vec![vec![9u8]]);

    // Plain events too, to a room from a node without members of it on the other side.
    json_node.ns().to(m.id.as_str()).emit("direct", json!([1, "two"]));
    assert_eq!(m.next_packet().await.data, Some(json!(["direct", [1, "two"]])));
}

fn bytes_of(data: &[u8]) -> bytes::Bytes {
    bytes::Bytes::copy_from_slice(data)
}
