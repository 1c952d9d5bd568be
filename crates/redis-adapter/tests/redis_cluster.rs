//! Three Switchyard nodes on a three-master Redis Cluster: sharded mode (SSUBSCRIBE/SPUBLISH, routed
//! by slot) and classic mode (PUBLISH, which a Redis Cluster propagates to every node).

mod common;

use common::*;
use serde_json::json;
use std::collections::HashSet;
use std::time::Duration;
use switchyard_redis::{Emitter, Mode, RedisAdapterConfig, RedisTarget};

/// Starts three cluster-enabled redis-servers and joins them into one cluster.
async fn redis_cluster() -> (Vec<RedisServer>, Vec<String>) {
    let mut servers = Vec::new();
    for _ in 0..3 {
        let extra =
            ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"];
        servers.push(RedisServer::start_with(free_cluster_port(), extra.iter().map(|s| s.to_string()).collect()).await);
    }
    let addresses: Vec<String> = servers.iter().map(|s| format!("127.0.0.1:{}", s.port)).collect();
    let mut args = vec!["--cluster", "create"];
    args.extend(addresses.iter().map(String::as_str));
    args.extend(["--cluster-replicas", "0", "--cluster-yes"]);
    redis_cli(&args).await;
    for server in &servers {
        let port = server.port.to_string();
        within("the cluster to be ok", async {
            loop {
                if redis_cli(&["-p", &port, "cluster", "info"]).await.contains("cluster_state:ok") {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await;
    }
    let urls = servers.iter().map(|s| s.url()).collect();
    (servers, urls)
}

async fn works_over_redis_cluster(mode: Mode) {
    let (_servers, urls) = redis_cluster().await;
    let config = RedisAdapterConfig { mode, requests_timeout: Duration::from_secs(3), ..Default::default() };
    let nodes = cluster(3, RedisTarget::Cluster(urls.clone()), config).await;
    let mut clients = Vec::new();
    for (i, node) in nodes.iter().enumerate() {
        clients.push(Client::connect(node, &format!("c{i}")).await);
    }
    // c0 and c2 in "team"; the room's channel lives on whichever master owns its slot.
    nodes[0].socket(&clients[0].id).join("team").unwrap();
    nodes[2].socket(&clients[2].id).join("team").unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    nodes[1].ns().emit("all", json!("x"));
    for client in clients.iter_mut() {
        assert_eq!(client.next_event().await.name, "all");
    }
    // Channels live on different masters, so messages on two channels may arrive in either order:
    // wait for every expected event by name, and the marker, whatever the order.
    nodes[1].ns().to("team").emit("team", json!("y"));
    nodes[1].ns().emit("end", ());
    clients[0].expect_all(&["team", "end"]).await;
    clients[2].expect_all(&["team", "end"]).await;
    assert!(clients[1].events_until("end").await.is_empty(), "c1 is not in the room");

    let sockets = nodes[2].ns().broadcast().fetch_sockets().await.expect("fetch-sockets over the cluster");
    let ids: HashSet<String> = sockets.into_iter().map(|s| s.id).collect();
    assert_eq!(ids, clients.iter().map(|c| c.id.clone()).collect());

    let answers = nodes[0].ns().server_side_emit("ping", json!(1), Some(Duration::from_secs(3))).await.unwrap();
    assert_eq!(answers.len(), 2);

    let emitter = Emitter::connect(RedisTarget::Cluster(urls), "socket.io", mode).await.unwrap();
    emitter.of("/").to("team").emit("emitted", json!(3)).await.unwrap();
    emitter.of("/").emit("end", ()).await.unwrap();
    clients[0].expect_all(&["emitted", "end"]).await;
    clients[2].expect_all(&["emitted", "end"]).await;
    assert!(clients[1].events_until("end").await.is_empty(), "c1 is not in the room");

    let mut readers = Vec::new();
    for mut client in clients {
        readers.push(tokio::spawn(async move {
            assert_eq!(client.next_event().await.name, "ask");
            client
        }));
    }
    let answers = nodes[2].io.timeout(Duration::from_secs(3)).emit_with_ack("ask", ()).await.expect("every ack");
    assert_eq!(answers.len(), 3);
    for reader in readers {
        reader.await.unwrap();
    }
}

#[tokio::test]
async fn sharded_mode_over_a_redis_cluster() {
    works_over_redis_cluster(Mode::Sharded).await;
}

#[tokio::test]
async fn classic_mode_over_a_redis_cluster() {
    works_over_redis_cluster(Mode::Classic).await;
}
