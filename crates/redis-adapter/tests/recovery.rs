//! Connection state recovery across nodes against a real redis-server: a client that drops on one
//! node and comes back on another while the first node is still storing a burst gets every packet
//! it missed and every later one, each once and in order (docs/GUARANTEES.md).

mod common;

use common::{within, Client, Node, RedisServer};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_redis::{Mode, RedisAdapterConfig, RedisTarget};
use switchyard_socketio::{RecoveryConfig, SocketIoConfig};

/// Packets broadcast while the client is away and while it comes back.
const TOTAL: u64 = 4000;
/// Packets per tick of the sender: a steady flow, so some are stored while the restore runs.
const PER_TICK: u64 = 40;

fn sio() -> SocketIoConfig {
    SocketIoConfig { recovery: Some(RecoveryConfig::default()), ..SocketIoConfig::default() }
}

/// A redis-server and two connected nodes with recovery on, in `mode`.
async fn two_nodes(mode: Mode) -> (RedisServer, Node, Node) {
    let redis = RedisServer::start().await;
    let target = RedisTarget::Single(redis.url());
    let config = RedisAdapterConfig { mode, ..RedisAdapterConfig::default() };
    let a = Node::start_with(target.clone(), config.clone(), sio()).await;
    let b = Node::start_with(target, config, sio()).await;
    a.connected().await;
    b.connected().await;
    (redis, a, b)
}

async fn recovers_on_another_node_during_a_burst(mode: Mode) {
    let (_redis, a, b) = two_nodes(mode).await;

    // A client on A in room "r" gets one packet: its offset.
    let (mut client, reply) = Client::connect_with_auth(&a, "c", None).await;
    let pid = reply["pid"].as_str().expect("a pid: recovery is on").to_string();
    a.socket(&client.id).join("r").expect("join");
    // The session (with its room) is written to Redis within the flush interval; the first packet
    // is only sent once B can see it, so the restore below never races the session write.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.ns().to("r").emit("m", json!(-1));
    let first = client.next_event().await;
    assert_eq!(first.args.first(), Some(&json!(-1)));
    let offset = first.args.last().and_then(Value::as_str).expect("an offset").to_string();
    let sid = client.id.clone();
    client.drop_transport().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    // A steady flow from A to the room, until TOTAL.
    let started = Arc::new(AtomicBool::new(false));
    let sender = {
        let ns = a.ns();
        let started = started.clone();
        tokio::spawn(async move {
            let mut i = 0;
            while i < TOTAL {
                for _ in 0..PER_TICK {
                    ns.to("r").emit("m", json!(i));
                    i += 1;
                }
                started.store(true, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    // Come back on B while A is still storing the flow.
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert!(started.load(Ordering::SeqCst));
    let auth = json!({"pid": pid, "offset": offset});
    let (mut back, reply) = Client::connect_with_auth(&b, "c", Some(&auth)).await;
    assert_eq!(reply["sid"], json!(sid), "recovered with the same socket id");
    within("the sender to finish", sender).await.expect("sender task");

    // Every packet once, in order: the replay, then what was stored during the restore, then live.
    for expected in 0..TOTAL {
        let event = back.next_event().await;
        assert_eq!(event.name, "m");
        assert_eq!(event.args.first(), Some(&json!(expected)), "packet {expected} (got {:?})", event.args);
    }
    // And nothing more (no packet twice): the next one is a marker sent after the flow.
    a.ns().to("r").emit("end", json!(null));
    let next = within("the end marker", back.next_event()).await;
    assert_eq!(next.name, "end", "unexpected packet after the flow: {next:?}");
}

#[tokio::test]
async fn classic_recovery_across_nodes_during_a_burst_loses_nothing() {
    recovers_on_another_node_during_a_burst(Mode::Classic).await;
}

/// Sharded mode with dynamic subscriptions (the default): the restoring node listens to the room's
/// channel only from the restore on, so the restore subscribes first and reads the stream again.
#[tokio::test]
async fn sharded_recovery_across_nodes_during_a_burst_loses_nothing() {
    recovers_on_another_node_during_a_burst(Mode::Sharded).await;
}

/// Packets per node in the two-sender test.
const PER_NODE: u64 = 1500;

/// The stream offsets of `events` (each event's last argument), checked to grow strictly: a client
/// resumes from its last offset, so a packet reaching it ahead of an older one would make the older
/// one's replay come twice, or be skipped.
fn offsets_in_stream_order(who: &str, events: &[common::Event]) {
    let id = |e: &common::Event| -> (u64, u64) {
        let offset = e.args.last().and_then(Value::as_str).unwrap_or_else(|| panic!("{who}: no offset in {e:?}"));
        let (ms, seq) = offset.split_once('-').expect("a stream id");
        (ms.parse().expect("ms"), seq.parse().expect("seq"))
    };
    for pair in events.windows(2) {
        assert!(id(&pair[0]) < id(&pair[1]), "{who}: {:?} before {:?}", pair[0].args, pair[1].args);
    }
}

/// Two nodes store packets to one room at once: pub/sub (the other node's packets) and the script's
/// reply (a node's own) are two connections with no order between them, so without reading the
/// stream a client gets some packets out of stream order. A client that stays gets every packet
/// once in stream order; one that drops mid-burst and comes back on the other node gets every packet
/// once (replay, then live), in stream order.
async fn two_senders_in_stream_order(mode: Mode) {
    let (_redis, a, b) = two_nodes(mode).await;

    let mut stay = Client::connect(&a, "stay").await;
    a.socket(&stay.id).join("r").expect("join");
    let (mut mover, reply) = Client::connect_with_auth(&a, "mover", None).await;
    let pid = reply["pid"].as_str().expect("a pid").to_string();
    a.socket(&mover.id).join("r").expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.ns().to("r").emit("m", json!(["start", 0]));
    assert_eq!(stay.next_event().await.args.first(), Some(&json!(["start", 0])));
    let first = mover.next_event().await;
    let offset = first.args.last().and_then(Value::as_str).expect("an offset").to_string();
    let sid = mover.id.clone();
    mover.drop_transport().await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    let send = |ns: Arc<switchyard_socketio::Namespace>, name: &'static str| {
        tokio::spawn(async move {
            let mut i = 0;
            while i < PER_NODE {
                for _ in 0..PER_TICK / 2 {
                    ns.to("r").emit("m", json!([name, i]));
                    i += 1;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
    };
    let senders = [send(a.ns(), "a"), send(b.ns(), "b")];
    tokio::time::sleep(Duration::from_millis(20)).await;
    let auth = json!({"pid": pid, "offset": offset});
    let (mut back, reply) = Client::connect_with_auth(&b, "mover", Some(&auth)).await;
    assert_eq!(reply["sid"], json!(sid), "recovered with the same socket id");
    for sender in senders {
        within("a sender to finish", sender).await.expect("sender task");
    }
    // Both nodes' packets are stored before the marker: it comes last.
    tokio::time::sleep(Duration::from_millis(200)).await;
    a.ns().to("r").emit("end", json!(null));

    for (who, client) in [("stay", &mut stay), ("mover", &mut back)] {
        let events = within("the packets and the end marker", client.events_until("end")).await;
        let mut seen = std::collections::HashSet::new();
        let mut next = [0u64, 0u64];
        for e in &events {
            let key = e.args.first().cloned().expect("a packet");
            assert!(seen.insert(key.clone()), "{who}: {key} twice");
            let (name, i) = (key[0].as_str().expect("sender"), key[1].as_u64().expect("index"));
            let n = &mut next[usize::from(name == "b")];
            assert_eq!(i, *n, "{who}: sender {name}'s packets in order");
            *n += 1;
        }
        assert_eq!(next, [PER_NODE, PER_NODE], "{who}: every packet of both senders");
        offsets_in_stream_order(who, &events);
    }
}

#[tokio::test]
async fn classic_packets_of_two_nodes_reach_clients_in_stream_order_once() {
    two_senders_in_stream_order(Mode::Classic).await;
}

#[tokio::test]
async fn sharded_packets_of_two_nodes_reach_clients_in_stream_order_once() {
    two_senders_in_stream_order(Mode::Sharded).await;
}

/// Node A reaches Redis through a [`common::LossyProxy`], node B directly; one client of each in
/// room `r`, both of which got a first packet (`0`) from A.
async fn behind_a_lossy_proxy(mode: Mode) -> (RedisServer, common::LossyProxy, Node, Node, Client, Client) {
    let redis = RedisServer::start().await;
    let proxy = common::LossyProxy::start(redis.port).await;
    let config = RedisAdapterConfig { mode, ..RedisAdapterConfig::default() };
    let a = Node::start_with(RedisTarget::Single(proxy.url()), config.clone(), sio()).await;
    let b = Node::start_with(RedisTarget::Single(redis.url()), config, sio()).await;
    a.connected().await;
    b.connected().await;
    let mut here = Client::connect(&a, "here").await;
    a.socket(&here.id).join("r").expect("join");
    let mut there = Client::connect(&b, "there").await;
    b.socket(&there.id).join("r").expect("join");
    // Both nodes' readers are positioned and both clients reachable: a first packet reaches both.
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.ns().to("r").emit("m", json!(0));
    for client in [&mut here, &mut there] {
        assert_eq!(within("the first packet", client.next_event()).await.args.first(), Some(&json!(0)));
    }
    (redis, proxy, a, b, here, there)
}

/// Redis stores a broadcast (and publishes it) but its answer to the sending node is lost with the
/// connection: the node's stream reader reads the entry and delivers it with its offset before the
/// node learns that the outcome is unknown, and the failure path then delivers it again without an
/// offset unless the two agree on who delivers it. Every client, on the sender's node and on the
/// other, gets the packet exactly once, with its offset.
async fn answer_lost_after_storing(mode: Mode) {
    let (_redis, proxy, a, _b, mut here, mut there) = behind_a_lossy_proxy(mode).await;

    let before = a.redis.stats().snapshot();
    proxy.lose_next_answer();
    a.ns().to("r").emit("m", json!(1));
    // The lost connection is noticed, and the node connects again.
    common::eventually("A's publisher to lose its connection", || {
        a.redis.stats().snapshot().connects > before.connects
    })
    .await;
    a.connected().await;
    a.ns().to("r").emit("end", json!(null));

    for (who, client) in [("here", &mut here), ("there", &mut there)] {
        let events = within("the packet and the end marker", client.events_until("end")).await;
        assert_eq!(events.len(), 1, "{who}: the packet exactly once, got {events:?}");
        let args = &events[0].args;
        assert_eq!(args.first(), Some(&json!(1)), "{who}: {args:?}");
        assert!(args.get(1).and_then(Value::as_str).is_some_and(|o| o.contains('-')), "{who}: an offset in {args:?}");
    }
    let after = a.redis.stats().snapshot();
    assert_eq!(after.unrecorded, before.unrecorded, "nothing delivered without an offset");
}

#[tokio::test]
async fn classic_broadcast_stored_with_its_answer_lost_is_delivered_once() {
    answer_lost_after_storing(Mode::Classic).await;
}

#[tokio::test]
async fn sharded_broadcast_stored_with_its_answer_lost_is_delivered_once() {
    answer_lost_after_storing(Mode::Sharded).await;
}

/// The stream of namespace `/` (default key prefix).
const STREAM: &str = "{socket.io:recovery:/}:packets";

/// Entries in the stream of namespace `/`.
async fn stream_len(redis: &RedisServer) -> u64 {
    let port = redis.port.to_string();
    common::redis_cli(&["-p", &port, "XLEN", STREAM]).await.trim().parse().expect("XLEN answers a number")
}

/// Redis is away when node A broadcasts: its clients get the packets at once without an offset, and
/// once Redis is back A stores and publishes them again, first on its new connection. B's clients get
/// them (with their new offsets) in order, before a packet A broadcasts as soon as it is connected;
/// A's clients do not get them again; a client recovering with an offset from before gets them in
/// its replay once.
async fn broadcast_while_redis_is_away_is_republished(mode: Mode) {
    let mut redis = RedisServer::start().await;
    let target = RedisTarget::Single(redis.url());
    let config = RedisAdapterConfig { mode, ..RedisAdapterConfig::default() };
    let a = Node::start_with(target.clone(), config.clone(), sio()).await;
    let b = Node::start_with(target, config, sio()).await;
    a.connected().await;
    b.connected().await;
    let mut here = Client::connect(&a, "here").await;
    a.socket(&here.id).join("r").expect("join");
    let mut there = Client::connect(&b, "there").await;
    b.socket(&there.id).join("r").expect("join");
    let (mut mover, reply) = Client::connect_with_auth(&b, "mover", None).await;
    let pid = reply["pid"].as_str().expect("a pid").to_string();
    b.socket(&mover.id).join("r").expect("join");
    tokio::time::sleep(Duration::from_millis(300)).await;
    a.ns().to("r").emit("m", json!(0));
    for client in [&mut here, &mut there] {
        assert_eq!(within("the first packet", client.next_event()).await.args.first(), Some(&json!(0)));
    }
    let first = within("the first packet", mover.next_event()).await;
    let offset = first.args.last().and_then(Value::as_str).expect("an offset").to_string();

    redis.kill().await;
    common::eventually("A's publisher to notice Redis is gone", || !a.redis.stats().snapshot().publisher_connected)
        .await;
    let before = a.redis.stats().snapshot();
    for i in [1, 2] {
        a.ns().to("r").emit("m", json!(i));
        let local = within("the packet on A", here.next_event()).await;
        assert_eq!(local.args, vec![json!(i)], "delivered on A at once, without an offset");
    }
    assert_eq!(a.redis.stats().snapshot().unrecorded, before.unrecorded + 2);

    redis.restart().await;
    a.connected().await;
    a.ns().to("r").emit("m", json!(3));
    assert_eq!(within("the packet on A", here.next_event()).await.args.first(), Some(&json!(3)));
    for (who, client) in [("there", &mut there), ("mover", &mut mover)] {
        for i in [1, 2, 3] {
            let event = within("the packets published again, then the next one", client.next_event()).await;
            assert_eq!(event.args.first(), Some(&json!(i)), "{who}: {event:?}");
            assert!(event.args.get(1).and_then(Value::as_str).is_some_and(|o| o.contains('-')), "{who}: an offset");
        }
    }
    common::eventually("A to count them republished", || {
        a.redis.stats().snapshot().republished == before.republished + 2
    })
    .await;
    // Nothing twice: the next packet anyone gets is the marker.
    a.ns().to("r").emit("end", json!(null));
    for (who, client) in [("here", &mut here), ("there", &mut there), ("mover", &mut mover)] {
        let events = within("the end marker", client.events_until("end")).await;
        assert!(events.is_empty(), "{who}: unexpected {events:?}");
    }
    assert_eq!(stream_len(&redis).await, 4, "the republished packets, the next one and the marker, once each");

    // A client that missed them (offset from before Redis died) gets them in its replay, once.
    let sid = mover.id.clone();
    mover.drop_transport().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let auth = json!({"pid": pid, "offset": offset});
    let (mut back, reply) = Client::connect_with_auth(&a, "mover", Some(&auth)).await;
    assert_eq!(reply["sid"], json!(sid), "recovered with the same socket id");
    let replay = within("the replay", back.events_until("end")).await;
    let replayed: Vec<Value> = replay.iter().filter_map(|e| e.args.first().cloned()).collect();
    assert_eq!(replayed, [json!(1), json!(2), json!(3)], "each once in the replay, in order");
    assert_eq!(a.redis.stats().snapshot().republish_dropped, 0);
}

#[tokio::test]
async fn classic_broadcast_while_redis_is_away_reaches_the_other_node_once_it_is_back() {
    broadcast_while_redis_is_away_is_republished(Mode::Classic).await;
}

#[tokio::test]
async fn sharded_broadcast_while_redis_is_away_reaches_the_other_node_once_it_is_back() {
    broadcast_while_redis_is_away_is_republished(Mode::Sharded).await;
}

/// Redis stores and publishes a broadcast, its answer is lost, and the sending node learns that the
/// outcome is unknown before its stream reader can read the entry (the proxy holds the reader's
/// answers): the node delivers it locally without an offset and keeps it, then publishes it again
/// once reconnected. The republished record finds itself in the stream and is neither stored nor
/// published a second time: every client gets the packet once, and the stream holds it once.
async fn answer_lost_and_republished(mode: Mode) {
    let (redis, proxy, a, _b, mut here, mut there) = behind_a_lossy_proxy(mode).await;

    let before = a.redis.stats().snapshot();
    proxy.lose_next_answer_stalling_others(Duration::from_millis(1500));
    a.ns().to("r").emit("m", json!(1));
    let local = within("the packet on A", here.next_event()).await;
    assert_eq!(local.args, vec![json!(1)], "delivered on A without an offset (its reader was held)");
    common::eventually("A to publish it again", || {
        let s = a.redis.stats().snapshot();
        s.republished + s.republish_dropped > before.republished + before.republish_dropped
    })
    .await;
    let after = a.redis.stats().snapshot();
    assert_eq!((after.unrecorded, after.republished), (before.unrecorded + 1, before.republished + 1));
    // Past the stall: A's reader has read the stored entry (and skipped it) by the marker.
    tokio::time::sleep(Duration::from_millis(500)).await;
    a.ns().to("r").emit("end", json!(null));
    let events = within("the end marker", here.events_until("end")).await;
    assert!(events.is_empty(), "here: the packet once, then {events:?}");
    let events = within("the packet and the end marker", there.events_until("end")).await;
    assert_eq!(events.len(), 1, "there: the packet exactly once, got {events:?}");
    assert_eq!(events[0].args.first(), Some(&json!(1)));
    assert_eq!(stream_len(&redis).await, 3, "the first packet, this one once, the marker");
}

#[tokio::test]
async fn classic_broadcast_stored_with_its_answer_lost_is_not_republished_twice() {
    answer_lost_and_republished(Mode::Classic).await;
}

#[tokio::test]
async fn sharded_broadcast_stored_with_its_answer_lost_is_not_republished_twice() {
    answer_lost_and_republished(Mode::Sharded).await;
}
