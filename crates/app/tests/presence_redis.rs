//! The Redis presence store against a real redis-server (started on a free loopback port, killed at
//! the end): the same contract as the memory store, several nodes sharing one Redis, a dead node's
//! entries expiring and being reported by exactly one sweeper.

use std::sync::Arc;
use std::time::Duration;
use switchyard::presence::{Expired, HeldRoom, PresenceStore, RedisPresence};
use switchyard_fixtures::redis_server::RedisServer;

const WAIT: Duration = Duration::from_secs(10);

fn store(redis: &RedisServer, node: &str, ttl: Duration) -> Arc<RedisPresence> {
    RedisPresence::new(redis.target(), "test", node, ttl)
}

fn held(room: &str, users: &[&str]) -> HeldRoom {
    HeldRoom { nsp: "/".into(), room: room.into(), users: users.iter().map(|u| Arc::from(*u)).collect() }
}

async fn bounded<T>(what: &str, fut: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, fut).await.unwrap_or_else(|_| panic!("{what} within {WAIT:?}"))
}

#[tokio::test]
async fn first_add_and_last_remove_across_nodes() {
    let redis = RedisServer::start("presence").await;
    let a = store(&redis, "a", Duration::from_secs(30));
    let b = store(&redis, "b", Duration::from_secs(30));
    bounded("the calls", async {
        assert!(a.add("/", "r", "alice").await.unwrap(), "first anywhere");
        assert!(!b.add("/", "r", "alice").await.unwrap(), "present through node a already");
        assert!(!a.add("/", "r", "alice").await.unwrap(), "adding twice is not a new arrival");
        assert!(a.add("/", "r", "bob").await.unwrap());
        assert!(a.add("/", "other", "alice").await.unwrap(), "rooms are separate");
        assert!(a.add("/chat", "r", "alice").await.unwrap(), "namespaces are separate");
        assert_eq!(b.users("/", "r").await.unwrap(), vec!["alice", "bob"]);
        assert!(!a.remove("/", "r", "alice").await.unwrap(), "still present through node b");
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["alice", "bob"]);
        assert!(b.remove("/", "r", "alice").await.unwrap(), "gone everywhere");
        assert!(b.remove("/", "r", "alice").await.unwrap(), "an absent user stays absent");
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["bob"]);
        assert!(a.users("/", "nowhere").await.unwrap().is_empty());
        // Names with separators and non-ASCII survive the JSON inside Redis.
        assert!(a.add("/", "r:ü \"q\"", "zoë:1").await.unwrap());
        assert_eq!(b.users("/", "r:ü \"q\"").await.unwrap(), vec!["zoë:1"]);
    })
    .await;
}

#[tokio::test]
async fn a_dead_nodes_entries_expire_and_exactly_one_sweeper_reports_them() {
    let redis = RedisServer::start("presence").await;
    let ttl = Duration::from_millis(600);
    let (a, b, c) = (store(&redis, "a", ttl), store(&redis, "b", ttl), store(&redis, "c", ttl));
    bounded("the calls", async {
        a.add("/", "r", "alice").await.unwrap();
        b.add("/", "r", "bob").await.unwrap();
        b.add("/", "r", "alice").await.unwrap();
        c.add("/", "r", "carol").await.unwrap();
        // b dies: no more refreshes. a and c refresh what they hold every 200 ms.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            assert!(a.refresh(vec![held("r", &["alice"])]).await.unwrap().is_empty());
            assert!(c.refresh(vec![held("r", &["carol"])]).await.unwrap().is_empty());
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        // Past the TTL, bob is not listed, even before a sweep.
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["alice", "carol"]);
        // Both survivors sweep at once: exactly one of them reports bob.
        let (from_a, from_c) =
            tokio::join!(a.refresh(vec![held("r", &["alice"])]), c.refresh(vec![held("r", &["carol"])]));
        let mut reported = from_a.unwrap();
        reported.extend(from_c.unwrap());
        assert_eq!(reported, vec![Expired { nsp: "/".into(), room: "r".into(), user: "bob".into() }]);
        assert_eq!(c.users("/", "r").await.unwrap(), vec!["alice", "carol"]);
        // bob back through a live node: a new arrival.
        assert!(c.add("/", "r", "bob").await.unwrap());
    })
    .await;
}

#[tokio::test]
async fn the_store_reports_an_unreachable_redis() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let store = RedisPresence::new(
        switchyard_redis::RedisTarget::Single(format!("redis://127.0.0.1:{port}/")),
        "test",
        "a",
        Duration::from_secs(30),
    );
    let err = bounded("the failing call", store.add("/", "r", "alice")).await.unwrap_err();
    assert!(err.to_string().starts_with("presence store unavailable"), "{err}");
    // Right after a failed connect, calls fail at once instead of each waiting for a timeout.
    let started = std::time::Instant::now();
    let err = bounded("the second call", store.users("/", "r")).await.unwrap_err();
    assert!(err.to_string().contains("retrying shortly"), "{err}");
    assert!(started.elapsed() < Duration::from_millis(100));
}

/// `cmdstat_eval` calls so far (INFO commandstats), read on a connection of its own.
async fn eval_calls(port: u16) -> u64 {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut conn).await.unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_eval:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_refresh_is_one_pipeline_of_batched_scripts_and_keeps_the_expiry() {
    let redis = RedisServer::start("presence").await;
    let ttl = Duration::from_millis(600);
    let (a, b) = (store(&redis, "a", ttl), store(&redis, "b", ttl));
    let rooms = switchyard::presence::REFRESH_ROOMS_PER_SCRIPT + 44;
    let names: Vec<String> = (0..rooms).map(|i| format!("room-{i}")).collect();
    bounded("the calls", async {
        // b holds bob in the first three rooms, a holds alice in every room.
        for name in &names[..3] {
            b.add("/", name, "bob").await.unwrap();
        }
        for name in &names {
            a.add("/", name, "alice").await.unwrap();
        }
        let held_a: Vec<HeldRoom> = names.iter().map(|n| held(n, &["alice"])).collect();
        // A refresh of 300 rooms is two scripts (256 rooms each at most), sent in one pipeline.
        let before = eval_calls(redis.port).await;
        assert!(a.refresh(held_a.clone()).await.unwrap().is_empty());
        assert_eq!(eval_calls(redis.port).await - before, 2);
        // b dies; a keeps refreshing. Past the TTL, b's entries go, reported once, in every room.
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let gone = a.refresh(held_a.clone()).await.unwrap();
            if !gone.is_empty() {
                let expected: Vec<Expired> = names[..3]
                    .iter()
                    .map(|n| Expired { nsp: "/".into(), room: n.as_str().into(), user: "bob".into() })
                    .collect();
                let mut expected = expected;
                expected.sort();
                assert_eq!(gone, expected);
                break;
            }
        }
        assert_eq!(a.users("/", &names[0]).await.unwrap(), vec!["alice"]);
        assert!(a.refresh(held_a.clone()).await.unwrap().is_empty(), "reported once");
        // a's own entries were kept alive by the refreshes, in the last room as in the first.
        assert_eq!(b.users("/", &names[rooms - 1]).await.unwrap(), vec!["alice"]);
        // An entry some other writer left unreadable is replaced, not a failed refresh.
        let client = redis::Client::open(format!("redis://127.0.0.1:{}/", redis.port)).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let _: () = redis::cmd("HSET")
            .arg(a.key("/", &names[5]))
            .arg("alice")
            .arg("not json")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(a.refresh(held_a.clone()).await.unwrap().is_empty());
        assert_eq!(b.users("/", &names[5]).await.unwrap(), vec!["alice"]);
        // An empty refresh sends nothing and reports nothing.
        assert!(a.refresh(Vec::new()).await.unwrap().is_empty());
    })
    .await;
}
