//! The Redis Streams history store against a real redis-server (started on a free loopback port,
//! killed at the end): order, since/limit/more, retention by count and age with the index trimmed
//! too, two stores (two nodes) sharing one room, and Redis going away and coming back.

use std::sync::Arc;
use std::time::Duration;
use switchyard::history::redis::RedisHistory;
use switchyard::history::{HistoryError, HistoryStore, Page, Retention};
use switchyard::pipeline::AcceptedMessage;
use switchyard_fixtures::redis_server::RedisServer;

const WAIT: Duration = Duration::from_secs(10);

fn store(redis: &RedisServer, max_messages: u64, max_age: Option<Duration>) -> Arc<RedisHistory> {
    RedisHistory::start(redis.target(), "test", Retention { max_messages, max_age })
}

fn message(room: &str, text: &str) -> AcceptedMessage {
    AcceptedMessage::new(
        uuid::Uuid::now_v7().to_string(),
        room.into(),
        "alice".into(),
        serde_json::json!({ "text": text }),
        switchyard::history::now_ms(),
    )
}

fn texts(page: &Page) -> Vec<String> {
    page.messages.iter().map(|m| m["data"]["text"].as_str().unwrap_or_default().to_string()).collect()
}

fn uuid(m: &AcceptedMessage) -> uuid::Uuid {
    uuid::Uuid::parse_str(&m.id).unwrap()
}

async fn append_all(store: &RedisHistory, messages: &[AcceptedMessage]) {
    let pending: Vec<_> = messages.iter().map(|m| store.append(m)).collect();
    for stored in tokio::time::timeout(WAIT, futures_util::future::join_all(pending)).await.expect("appends in time") {
        stored.expect("stored");
    }
}

async fn int(v: redis::Value) -> i64 {
    match v {
        redis::Value::Int(n) => n,
        other => panic!("not an integer: {other:?}"),
    }
}

#[tokio::test]
async fn order_since_limit_and_more() {
    let redis = RedisServer::start("history").await;
    let store = store(&redis, 100, None);
    let sent: Vec<_> = (0..7).map(|i| message("lobby", &format!("m{i}"))).collect();
    append_all(&store, &sent).await;
    let page = store.read("lobby", None, 3).await.unwrap();
    assert_eq!(texts(&page), ["m0", "m1", "m2"]);
    assert!(page.more);
    assert_eq!(page.messages[0]["id"], sent[0].id.as_str());
    assert_eq!(page.messages[0]["user"], "alice");
    let page = store.read("lobby", Some(uuid(&sent[2])), 3).await.unwrap();
    assert_eq!(texts(&page), ["m3", "m4", "m5"]);
    assert!(page.more);
    let page = store.read("lobby", Some(uuid(&sent[5])), 3).await.unwrap();
    assert_eq!(texts(&page), ["m6"]);
    assert!(!page.more);
    assert_eq!(store.read("lobby", Some(uuid(&sent[6])), 3).await.unwrap(), Page::default());
    assert_eq!(texts(&store.read("lobby", Some(uuid::Uuid::now_v7()), 2).await.unwrap()), ["m0", "m1"]);
    assert_eq!(store.read("empty", None, 5).await.unwrap(), Page::default());
    // The documented keys.
    assert_eq!(int(redis.command(&["XLEN", "test:history:{lobby}"]).await).await, 7);
    assert_eq!(int(redis.command(&["HLEN", "test:history:{lobby}:ids"]).await).await, 7);
}

#[tokio::test]
async fn retention_by_count_trims_the_stream_and_its_index() {
    let redis = RedisServer::start("history").await;
    let store = store(&redis, 3, None);
    let sent: Vec<_> = (0..5).map(|i| message("r", &format!("m{i}"))).collect();
    append_all(&store, &sent).await;
    assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["m2", "m3", "m4"]);
    assert_eq!(texts(&store.read("r", Some(uuid(&sent[0])), 10).await.unwrap()), ["m2", "m3", "m4"]);
    assert_eq!(int(redis.command(&["XLEN", "test:history:{r}"]).await).await, 3);
    assert_eq!(int(redis.command(&["HLEN", "test:history:{r}:ids"]).await).await, 3);
}

#[tokio::test]
async fn retention_by_age_drops_old_messages_and_expires_the_keys() {
    let redis = RedisServer::start("history").await;
    let store = store(&redis, 100, Some(Duration::from_millis(400)));
    append_all(&store, &[message("r", "old")]).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    // Hidden from reads before any trim, and both keys expire with the last message.
    assert_eq!(store.read("r", None, 10).await.unwrap(), Page::default());
    append_all(&store, &[message("r", "a"), message("r", "b")]).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    append_all(&store, &[message("r", "new")]).await;
    assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["a", "b", "new"]);
    tokio::time::sleep(Duration::from_millis(300)).await;
    append_all(&store, &[message("r", "newest")]).await;
    assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["new", "newest"]);
    assert_eq!(int(redis.command(&["XLEN", "test:history:{r}"]).await).await, 2, "old entries trimmed (MINID)");
    assert_eq!(int(redis.command(&["HLEN", "test:history:{r}:ids"]).await).await, 2);
    let ttl = int(redis.command(&["PTTL", "test:history:{r}"]).await).await;
    assert!(ttl > 0 && ttl <= 400, "stream expires with its newest message: {ttl}");
}

#[tokio::test]
async fn two_nodes_share_one_room_in_one_order() {
    let redis = RedisServer::start("history").await;
    let a = store(&redis, 100, None);
    let b = store(&redis, 100, None);
    let first = message("r", "from a");
    append_all(&a, std::slice::from_ref(&first)).await;
    append_all(&b, &[message("r", "from b")]).await;
    append_all(&a, &[message("r", "from a again")]).await;
    for store in [&a, &b] {
        assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["from a", "from b", "from a again"]);
        assert_eq!(texts(&store.read("r", Some(uuid(&first)), 10).await.unwrap()), ["from b", "from a again"]);
    }
}

#[tokio::test]
async fn redis_away_refuses_then_resumes() {
    let redis = RedisServer::start("history").await;
    let store = store(&redis, 100, None);
    append_all(&store, &[message("r", "before")]).await;
    let (port, dir) = redis.stop().await;
    let refused = tokio::time::timeout(WAIT, store.append(&message("r", "while down"))).await.expect("answer in time");
    assert!(matches!(refused, Err(HistoryError::Unavailable(_))), "{refused:?}");
    assert!(matches!(store.read("r", None, 10).await, Err(HistoryError::Unavailable(_))));
    // Back (empty: no persistence in this test): appends and reads work again on the same store.
    let redis = RedisServer::start_on(port, dir).await;
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match store.append(&message("r", "after")).await {
            Ok(()) => break,
            Err(e) if tokio::time::Instant::now() < deadline => {
                let _ = e;
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => panic!("history did not resume: {e}"),
        }
    }
    assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["after"]);
    drop(redis);
}
