//! `/metrics` after a scripted session: two clients connect, join a room, emit events (some past the
//! event-name limit), a broadcast, an answered ack and an ack that times out, then both disconnect.
//! Every named series is checked for its exact value in the text exposition.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use switchyard::config::Config;
use switchyard::App;
use switchyard_fixtures::{get, within, WsClient};
use tokio::sync::oneshot;

const PATH: &str = "/socket.io/";

/// Every sample of the exposition: `name{labels}` -> value.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (key, value) = l.rsplit_once(' ')?;
            Some((key.to_string(), value.parse().ok()?))
        })
        .collect()
}

async fn scrape(addr: SocketAddr) -> HashMap<String, f64> {
    let response = get(addr, "/metrics").await;
    assert_eq!(response.status, 200);
    assert!(response.header("content-type").is_some_and(|t| t.starts_with("text/plain")));
    samples(response.text())
}

async fn start() -> (SocketAddr, oneshot::Sender<()>) {
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.chat_page = false;
    config.metrics.max_event_names = 5;
    // Without offsets appended to every event, to compare packets exactly.
    config.recovery.enabled = false;
    // Its own handlers below: no built-in events (their presence broadcasts would count).
    config.events.enabled = false;
    let app = App::build(config).expect("app");
    app.io().of("/").on_connection(|socket| {
        socket.on("join", |s, _, ack| {
            s.join("room1").expect("join");
            if let Some(ack) = ack {
                ack.send(());
            }
        });
        socket.on("shout", |s, payload, ack| {
            s.ns().to("room1").emit("news", payload);
            if let Some(ack) = ack {
                ack.send(());
            }
        });
        socket.on("ask", |s, _, _| {
            let s = s.clone();
            tokio::spawn(async move {
                let _ = s.emit_with_ack("question", (), Duration::from_millis(300)).await;
                let _ = s.emit("asked", ());
            });
        });
        socket.on_any(|s, event, _| {
            if event.starts_with('x') {
                let _ = s.emit("seen", ());
            }
        });
    });
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel();
    tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

async fn client(addr: SocketAddr) -> WsClient {
    let (mut ws, _open) = WsClient::open_session(addr, PATH).await;
    ws.sio_connect("/", None).await;
    ws
}

#[tokio::test]
async fn series_after_a_scripted_session() {
    let (addr, _stop) = start().await;
    let mut a = client(addr).await;
    let mut b = client(addr).await;

    for ws in [&mut a, &mut b] {
        ws.sio_send(r#"20["join"]"#).await;
        assert_eq!(ws.sio_recv().await, "30[]");
    }
    a.sio_send(r#"21["shout","hi"]"#).await;
    assert_eq!(a.sio_recv().await, r#"2["news","hi"]"#);
    assert_eq!(a.sio_recv().await, "31[]");
    assert_eq!(b.sio_recv().await, r#"2["news","hi"]"#);

    // A answers the server's ack, B lets it time out.
    a.sio_send(r#"2["ask"]"#).await;
    let question = a.sio_recv().await;
    let id = question.strip_prefix('2').and_then(|r| r.strip_suffix(r#"["question"]"#)).expect("ack id");
    a.sio_send(&format!("3{id}[\"yes\"]")).await;
    assert_eq!(a.sio_recv().await, r#"2["asked"]"#);
    b.sio_send(r#"2["ask"]"#).await;
    assert!(b.sio_recv().await.ends_with(r#"["question"]"#));
    assert_eq!(b.sio_recv().await, r#"2["asked"]"#);

    // Past the five names (join, shout, news, ask, question): counted as `other`.
    a.sio_send(r#"2["x1"]"#).await;
    assert_eq!(a.sio_recv().await, r#"2["seen"]"#);
    a.sio_send(r#"2["x2"]"#).await;
    assert_eq!(a.sio_recv().await, r#"2["seen"]"#);

    let m = scrape(addr).await;
    assert_eq!(m["switchyard_sockets{namespace=\"/\"}"], 2.0);
    assert_eq!(m["switchyard_connections"], 2.0);

    a.sio_send("1").await;
    drop(b);
    let m = within("both sockets gone", async {
        loop {
            let m = scrape(addr).await;
            if m["switchyard_sockets{namespace=\"/\"}"] == 0.0 && m["switchyard_connections"] <= 1.0 {
                return m;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;

    let expected: &[(&str, f64)] = &[
        ("switchyard_socket_connects_total", 2.0),
        ("switchyard_socket_disconnects_total{reason=\"client namespace disconnect\"}", 1.0),
        ("switchyard_socket_disconnects_total{reason=\"transport close\"}", 1.0),
        ("switchyard_room_joins_total", 2.0),
        ("switchyard_room_leaves_total", 2.0),
        ("switchyard_events_received_total{event=\"join\"}", 2.0),
        ("switchyard_events_received_total{event=\"shout\"}", 1.0),
        ("switchyard_events_received_total{event=\"ask\"}", 2.0),
        ("switchyard_events_received_total{event=\"other\"}", 2.0),
        ("switchyard_events_sent_total{event=\"news\"}", 2.0),
        ("switchyard_events_sent_total{event=\"question\"}", 2.0),
        ("switchyard_events_sent_total{event=\"other\"}", 4.0),
        ("switchyard_broadcasts_total", 1.0),
        ("switchyard_broadcast_recipients_total", 2.0),
        ("switchyard_acks_total", 1.0),
        ("switchyard_ack_timeouts_total", 1.0),
        ("switchyard_events_rejected_total", 0.0),
        ("switchyard_rate_limited_events_total", 0.0),
        ("switchyard_connections_opened_total", 2.0),
        ("switchyard_sockets{namespace=\"/\"}", 0.0),
    ];
    for (name, value) in expected {
        assert_eq!(m.get(*name), Some(value), "{name} in {m:#?}");
    }
    // No name outside the documented prefix, and at most five names plus `other` per event series.
    assert!(m.keys().all(|k| k.starts_with("switchyard_")), "{:?}", m.keys());
    let names = m.keys().filter(|k| k.starts_with("switchyard_events_received_total{")).count();
    assert_eq!(names, 6, "join, shout, news, ask, question, other");
    assert!(!m.keys().any(|k| k.contains("\"x1\"") || k.contains("\"seen\"")));
    assert!(!m.contains_key("switchyard_redis_connected"), "no Redis configured");
}

/// The presence tracker's series: two users join a room through the built-in `join` (acked once the
/// change reached the store), each also in their own `user:` room.
#[tokio::test]
async fn presence_series_count_entries_and_announcements() {
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.chat_page = false;
    config.recovery.enabled = false;
    let app = App::build(config).expect("app");
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (_stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let mut clients = Vec::new();
    for user in ["ann", "ben"] {
        let (mut ws, _open) = WsClient::open_session(addr, PATH).await;
        ws.sio_connect("/", Some(&format!(r#"{{"user":"{user}"}}"#))).await;
        ws.sio_send(r#"21["join","lobby"]"#).await;
        loop {
            let packet = within("the join ack", ws.sio_recv()).await;
            if packet.starts_with("31") {
                assert!(packet.contains(r#""ok":true"#), "{packet}");
                break;
            }
        }
        clients.push(ws);
    }
    let s = scrape(addr).await;
    // ann and ben, each in lobby and in their own room.
    assert_eq!(s["switchyard_presence_local_entries"], 4.0);
    // user-connected for each in lobby; own rooms are never announced.
    assert_eq!(s["switchyard_presence_announcements_total"], 2.0);
    assert_eq!(s["switchyard_presence_store_errors_total"], 0.0);
    assert_eq!(s["switchyard_presence_expired_total"], 0.0);
    assert!(s.contains_key("switchyard_presence_refreshes_total"));
}
