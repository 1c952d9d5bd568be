//! Three Switchyard nodes on one redis-server, classic mode: every cluster operation across nodes,
//! and a Redis crash in the middle of traffic.

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use switchyard_redis::{Emitter, Mode, RedisAdapterConfig, RedisTarget, SubscriptionMode};
use switchyard_socketio::{Payload, Room};

fn config(mode: Mode) -> RedisAdapterConfig {
    RedisAdapterConfig { mode, requests_timeout: Duration::from_secs(3), ..Default::default() }
}

/// Broadcasts to all, one room, several rooms and except rooms reach exactly the right clients on
/// every node, whichever node sends.
async fn broadcasts_cross_nodes(config: RedisAdapterConfig) {
    let redis = RedisServer::start().await;
    let nodes = cluster(3, RedisTarget::Single(redis.url()), config).await;
    let mut a = Client::connect(&nodes[0], "a").await;
    let mut b = Client::connect(&nodes[1], "b").await;
    let mut c = Client::connect(&nodes[2], "c").await;
    // a: r, s   b: s   c: r
    nodes[0].socket(&a.id).join("r").unwrap();
    nodes[0].socket(&a.id).join("s").unwrap();
    nodes[1].socket(&b.id).join("s").unwrap();
    nodes[2].socket(&c.id).join("r").unwrap();
    // Room subscriptions (sharded dynamic mode) are asynchronous: let them land.
    tokio::time::sleep(Duration::from_millis(200)).await;

    nodes[0].ns().emit("all", json!(1));
    for client in [&mut a, &mut b, &mut c] {
        let event = client.next_event().await;
        assert_eq!((event.name.as_str(), event.args.clone()), ("all", vec![json!(1)]), "client {}", client.label);
    }

    // One room, sent from a node with no member of it.
    nodes[1].ns().to("r").emit("to-r", json!({"k": "v"}));
    // Several rooms: a (in both) gets it once.
    nodes[2].ns().to("r").to("s").emit("to-rs", json!(2));
    // Except: everyone but the members of r.
    nodes[0].ns().except("r").emit("not-r", json!(3));
    // Room minus room.
    nodes[1].ns().to("s").except("r").emit("s-not-r", json!(4));
    for node in &nodes {
        node.ns().emit(&format!("end-{}", node.redis.uid()), ());
    }
    let expect = |client: &str| -> Vec<&str> {
        match client {
            "a" => vec!["to-r", "to-rs"],
            "b" => vec!["to-rs", "not-r", "s-not-r"],
            _ => vec!["to-r", "to-rs"],
        }
    };
    for client in [&mut a, &mut b, &mut c] {
        // Messages from one node arrive in order; wait for the end marker of every node.
        let mut got = Vec::new();
        let mut ends = 0;
        while ends < 3 {
            let event = client.next_event().await;
            if event.name.starts_with("end-") {
                ends += 1;
            } else {
                got.push(event.name);
            }
        }
        got.sort();
        let mut want: Vec<String> = expect(&client.label).into_iter().map(String::from).collect();
        want.sort();
        assert_eq!(got, want, "client {}", client.label);
    }

    // Binary crosses nodes as binary.
    nodes[0].ns().to(b.id.as_str()).emit("bin", Payload::empty().push_binary(vec![1u8, 2, 3]));
    let (text, attachments) = b.next_binary_event().await;
    assert_eq!(text, r#"451-["bin",{"_placeholder":true,"num":0}]"#);
    assert_eq!(attachments, vec![vec![1u8, 2, 3]]);
}

#[tokio::test]
async fn classic_broadcasts_cross_nodes() {
    broadcasts_cross_nodes(config(Mode::Classic)).await;
}

#[tokio::test]
async fn sharded_broadcasts_cross_nodes() {
    broadcasts_cross_nodes(config(Mode::Sharded)).await;
}

#[tokio::test]
async fn sharded_static_broadcasts_cross_nodes() {
    broadcasts_cross_nodes(RedisAdapterConfig { subscription_mode: SubscriptionMode::Static, ..config(Mode::Sharded) })
        .await;
}

/// Every socket has its own channel: broadcasts to one socket id go there.
#[tokio::test]
async fn sharded_dynamic_private_broadcasts_cross_nodes() {
    broadcasts_cross_nodes(RedisAdapterConfig {
        subscription_mode: SubscriptionMode::DynamicPrivate,
        ..config(Mode::Sharded)
    })
    .await;
}

/// fetch-sockets, rooms, remote join/leave/disconnect, server-side emit with acks and broadcast acks.
async fn cluster_requests(mode: Mode) {
    let redis = RedisServer::start().await;
    let nodes = cluster(3, RedisTarget::Single(redis.url()), config(mode)).await;
    let mut a = Client::connect(&nodes[0], "a").await;
    let mut b = Client::connect(&nodes[1], "b").await;
    let c = Client::connect(&nodes[2], "c").await;
    nodes[1].socket(&b.id).join("room-b").unwrap();
    nodes[1].socket(&b.id).set_data(json!({"name": "bee"}));
    nodes[2].socket(&c.id).join("room-c").unwrap();

    assert_eq!(nodes[0].redis.server_count("/").await.unwrap(), 3);

    // fetch-sockets sees every node's sockets, with rooms, data and handshake.
    let sockets = nodes[0].ns().broadcast().fetch_sockets().await.expect("fetch sockets");
    let ids: HashSet<String> = sockets.iter().map(|s| s.id.clone()).collect();
    assert_eq!(ids, HashSet::from([a.id.clone(), b.id.clone(), c.id.clone()]));
    let remote_b = sockets.iter().find(|s| s.id == b.id).unwrap();
    assert!(!remote_b.local);
    assert_eq!(remote_b.data, json!({"name": "bee"}));
    assert_eq!(remote_b.rooms, vec![b.id.clone(), "room-b".to_string()]);
    assert_eq!(remote_b.handshake["query"]["transport"], json!("websocket"));
    let in_c = nodes[0].ns().to("room-c").fetch_sockets().await.unwrap();
    assert_eq!(in_c.iter().map(|s| s.id.as_str()).collect::<Vec<_>>(), vec![c.id.as_str()]);

    // Rooms across the cluster (classic mode; the sharded format has no rooms request).
    let rooms = nodes[0].ns().adapter().all_rooms(&nodes[0].ns()).await.unwrap();
    if mode == Mode::Classic {
        assert!(rooms.contains(&Room::from("room-b")) && rooms.contains(&Room::from("room-c")), "{rooms:?}");
    }

    // Remote join and leave, by socket id room, from another node.
    nodes[0].ns().to(b.id.as_str()).sockets_join(&[Room::from("joined")]);
    eventually("b to join remotely", || nodes[1].socket(&b.id).rooms().contains(&Room::from("joined"))).await;
    nodes[2].ns().to("joined").sockets_leave(&[Room::from("room-b")]);
    eventually("b to leave remotely", || !nodes[1].socket(&b.id).rooms().contains(&Room::from("room-b"))).await;

    // Server-side emit with acks: every other node answers.
    let answers = nodes[0].ns().server_side_emit("ping", json!("hi"), Some(Duration::from_secs(3))).await.unwrap();
    let mut uids: Vec<String> = answers.iter().map(|p| p.args[0][0].as_str().unwrap().to_string()).collect();
    uids.sort();
    let mut want = vec![nodes[1].redis.uid().to_string(), nodes[2].redis.uid().to_string()];
    want.sort();
    assert_eq!(uids, want);
    assert!(answers.iter().all(|p| p.args[0][1] == json!("hi")));
    // A server with no handler for the event answers empty instead of letting the requester time out.
    let started = std::time::Instant::now();
    let answers =
        nodes[1].ns().server_side_emit("nobody-listens", json!(1), Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(answers, vec![Payload::new(vec![json!(null)]); 2]);
    assert!(started.elapsed() < Duration::from_secs(1), "took {:?}", started.elapsed());

    // Broadcast with acks gathers every client's answer across the nodes.
    let mut readers = Vec::new();
    for mut client in [a, b, c] {
        readers.push(tokio::spawn(async move {
            let event = client.next_event().await;
            assert_eq!(event.name, "ask");
            client
        }));
    }
    let answers = nodes[1].io.timeout(Duration::from_secs(3)).emit_with_ack("ask", json!(1)).await.expect("every ack");
    let mut labels: Vec<String> = answers.iter().map(|p| p.args[0].as_str().unwrap().to_string()).collect();
    labels.sort();
    assert_eq!(labels, vec!["a", "b", "c"]);
    let mut clients = Vec::new();
    for reader in readers {
        clients.push(reader.await.unwrap());
    }
    let mut c = clients.pop().unwrap();
    b = clients.pop().unwrap();
    a = clients.pop().unwrap();

    // Remote disconnect.
    nodes[0].ns().to("room-c").disconnect_sockets(false);
    assert_eq!(c.next_packet().await, None, "c gets a DISCONNECT packet");
    eventually("c to leave node 3", || nodes[2].ns().local_socket_count() == 0).await;
    let _ = (&mut a, &mut b);
}

#[tokio::test]
async fn classic_cluster_requests() {
    cluster_requests(Mode::Classic).await;
}

#[tokio::test]
async fn sharded_cluster_requests() {
    cluster_requests(Mode::Sharded).await;
}

/// The Rust emitter reaches clients on every node, by room, in both formats.
async fn emitter_reaches_clients(mode: Mode) {
    let redis = RedisServer::start().await;
    let nodes = cluster(2, RedisTarget::Single(redis.url()), config(mode)).await;
    let mut a = Client::connect(&nodes[0], "a").await;
    let mut b = Client::connect(&nodes[1], "b").await;
    nodes[1].socket(&b.id).join("news").unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let emitter = Emitter::connect(RedisTarget::Single(redis.url()), "socket.io", mode).await.unwrap();
    emitter.of("/").to("news").emit("headline", json!({"t": 1})).await.unwrap();
    emitter.of("/").emit("everyone", json!([1, 2])).await.unwrap();
    assert_eq!(b.next_event().await.name, "headline");
    assert_eq!(b.next_event().await.name, "everyone");
    assert_eq!(a.next_event().await.name, "everyone");
    emitter.of("/").to(a.id.as_str()).sockets_join(&["news"]).await.unwrap();
    eventually("a to join through the emitter", || nodes[0].socket(&a.id).rooms().contains(&Room::from("news"))).await;
    assert!(matches!(emitter.of("/").emit("connect", ()).await, Err(switchyard_redis::EmitterError::ReservedEvent(_))));
}

#[tokio::test]
async fn classic_emitter_reaches_clients() {
    emitter_reaches_clients(Mode::Classic).await;
}

#[tokio::test]
async fn sharded_emitter_reaches_clients() {
    emitter_reaches_clients(Mode::Sharded).await;
}

/// Redis dies in the middle of traffic: local delivery goes on, cross-node messages are counted as
/// dropped, cluster requests fail fast, and everything works again once Redis is back, without
/// restarting any node.
#[tokio::test]
async fn cluster_survives_a_redis_restart() {
    let mut redis = RedisServer::start().await;
    let nodes = cluster(3, RedisTarget::Single(redis.url()), config(Mode::Classic)).await;
    let mut a = Client::connect(&nodes[0], "a").await;
    let mut b = Client::connect(&nodes[1], "b").await;

    // Traffic from node 1 every 10 ms, numbered.
    let sender = nodes[0].io.clone();
    let traffic = tokio::spawn(async move {
        for i in 0..400u64 {
            sender.emit("tick", json!(i));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // b (remote) sees ticks before the crash.
    assert_eq!(b.next_event().await.name, "tick");

    redis.kill().await;
    let dropped_before = nodes[0].redis.stats().snapshot().dropped;
    // Local delivery keeps going while Redis is down.
    let mut last = 0;
    for _ in 0..30 {
        let event = a.next_event().await;
        last = event.args[0].as_u64().unwrap();
    }
    eventually("drops to be counted", || nodes[0].redis.stats().snapshot().dropped > dropped_before).await;
    // Cluster requests fail quickly with an error instead of hanging.
    let started = std::time::Instant::now();
    let result = nodes[0].ns().broadcast().fetch_sockets().await;
    assert!(result.is_err(), "fetch-sockets without Redis must fail");
    assert!(started.elapsed() < Duration::from_secs(4), "failed after {:?}", started.elapsed());

    redis.restart().await;
    for node in &nodes {
        node.connected().await;
    }
    // Cross-node traffic flows again: b receives ticks newer than the ones a saw during the outage.
    let resumed = within("b to receive ticks again", async {
        loop {
            let event = b.next_event().await;
            let n = event.args[0].as_u64().unwrap();
            if n > last {
                return n;
            }
        }
    })
    .await;
    assert!(resumed > last);
    let sockets = nodes[2].ns().broadcast().fetch_sockets().await.expect("fetch-sockets after the restart");
    assert_eq!(sockets.len(), 2);
    traffic.abort();
    let stats = nodes[0].redis.stats().snapshot();
    assert!(stats.connects >= 4, "both links reconnected: {stats:?}");
}

/// A server that counts in `PUBSUB NUMSUB` but never answers: requests end with a timeout error
/// after the requests timeout, not a hang, and the node goes on working.
#[tokio::test]
async fn requests_time_out_when_a_server_does_not_answer() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = RedisServer::start().await;
    let config = RedisAdapterConfig { requests_timeout: Duration::from_millis(500), ..config(Mode::Classic) };
    let nodes = cluster(1, RedisTarget::Single(redis.url()), config).await;
    // A silent member: subscribed to the request channel, answering nothing.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", redis.port)).await.unwrap();
    silent.write_all(b"SUBSCRIBE socket.io-request#/#\r\n").await.unwrap();
    let mut buf = [0u8; 128];
    let _ = within("the silent subscription", silent.read(&mut buf)).await;
    assert_eq!(nodes[0].redis.server_count("/").await.unwrap(), 2);

    let started = std::time::Instant::now();
    let result = nodes[0].ns().broadcast().fetch_sockets().await;
    assert!(matches!(result, Err(switchyard_socketio::AdapterError::Timeout)), "{result:?}");
    assert!(started.elapsed() >= Duration::from_millis(500) && started.elapsed() < Duration::from_secs(3));
    let result = nodes[0].ns().server_side_emit("ping", json!(1), Some(Duration::from_millis(300))).await;
    assert!(matches!(result, Err(switchyard_socketio::AdapterError::Timeout)), "{result:?}");
    assert!(nodes[0].redis.stats().snapshot().request_failures >= 2);
    // Broadcasts with acks settle at the emitter's timeout with what arrived.
    let mut a = Client::connect(&nodes[0], "a").await;
    let reader = tokio::spawn(async move {
        assert_eq!(a.next_event().await.name, "ask");
    });
    let answers = nodes[0].io.timeout(Duration::from_millis(500)).emit_with_ack("ask", ()).await;
    let error = answers.expect_err("the silent server never reports its client count");
    assert!(error.responses.len() <= 1);
    reader.await.unwrap();
}

/// Redis unreachable from the start: the node starts anyway, serves its own clients, counts every
/// cross-node message it cannot send (the queue stays bounded), fails cluster requests at once, and
/// joins the cluster as soon as Redis appears.
#[tokio::test]
async fn a_node_starts_and_serves_locally_without_redis() {
    let port = free_port();
    let small_queue = RedisAdapterConfig { publish_queue: 64, ..config(Mode::Classic) };
    let node = Node::start(RedisTarget::Single(format!("redis://127.0.0.1:{port}/")), small_queue).await;
    let mut a = Client::connect(&node, "a").await;
    for i in 0..500 {
        node.ns().emit("local", json!(i));
    }
    for i in 0..500 {
        assert_eq!(a.next_event().await.args, vec![json!(i)]);
    }
    eventually("all 500 cross-node copies counted as dropped", || node.redis.stats().snapshot().dropped >= 500).await;
    let started = std::time::Instant::now();
    assert!(node.ns().broadcast().fetch_sockets().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(1), "fetch-sockets took {:?}", started.elapsed());
    assert_eq!(node.redis.stats().snapshot().published, 0);

    let _redis = RedisServer::start_with(port, Vec::new()).await;
    node.connected().await;
    let other = Node::start(RedisTarget::Single(format!("redis://127.0.0.1:{port}/")), config(Mode::Classic)).await;
    other.connected().await;
    let redis = node.redis.clone();
    within("two servers", async move {
        while redis.server_count("/").await.ok() != Some(2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    other.ns().emit("remote", json!("hi"));
    assert_eq!(a.next_event().await.name, "remote");
}
