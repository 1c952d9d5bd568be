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

async fn recovers_on_another_node_during_a_burst(mode: Mode) {
    let redis = RedisServer::start().await;
    let target = RedisTarget::Single(redis.url());
    let config = RedisAdapterConfig { mode, ..RedisAdapterConfig::default() };
    let a = Node::start_with(target.clone(), config.clone(), sio()).await;
    let b = Node::start_with(target, config, sio()).await;
    a.connected().await;
    b.connected().await;

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
