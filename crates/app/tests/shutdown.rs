//! Graceful shutdown of the whole application: readiness turns false, the listener closes, queued
//! messages are delivered, then each transport closes (WebSocket: close frame 1001, never a Socket.IO
//! DISCONNECT packet) and `serve` returns within the drain timeout.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use std::time::{Duration, Instant};
use switchyard::config::Config;
use switchyard::App;
use switchyard_fixtures::{next, within, Polling, WsClient, WsFrame};
use switchyard_socketio::DisconnectReason;
use tokio::sync::{mpsc, oneshot};
use tower::ServiceExt;

const PATH: &str = "/socket.io/";
const DRAIN: Duration = Duration::from_millis(1500);
const MESSAGES: usize = 320;

/// A server on a free loopback port, draining for [`DRAIN`], without recovery (a shutdown then ends
/// every session outright).
fn loopback_config() -> Config {
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.chat_page = false;
    config.server.drain_timeout_ms = DRAIN.as_millis() as u64;
    config.recovery.enabled = false;
    config
}

#[tokio::test]
async fn shutdown_flushes_then_closes_transports_without_disconnect_packets() {
    let mut config = loopback_config();
    // Room for more than the socket buffers hold, so the flush outlasts the checks below.
    config.engine.max_queue_bytes = 64 << 20;
    let app = App::build(config).expect("app");
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    app.io().of("/").on_connection(move |socket| {
        let reasons = reasons_tx.clone();
        socket.on_disconnect(move |_, reason| {
            let _ = reasons.send(reason);
        });
    });
    let router = app.router();
    let health = app.health().clone();
    let io = app.io().clone();
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));

    let (mut ws, _) = WsClient::open_session(addr, PATH).await;
    ws.sio_connect("/", None).await;
    let (polling, _) = Polling::open(addr, PATH).await;
    polling.send("40").await;
    let reply = polling.poll().await;
    assert!(reply.starts_with("40{"), "{reply:?}");

    // Queued right before the signal, more than the socket buffers hold (the client does not read
    // yet): every message must arrive before the close.
    let big = "x".repeat(100_000);
    for i in 0..MESSAGES {
        io.emit("bye", serde_json::json!([i, big]));
    }
    let signalled = Instant::now();
    stop.send(()).unwrap();

    // The drain: not ready, not accepting, still serving.
    within("the listener to close", async {
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    assert_eq!(health.readiness(), Err("shutting down"));
    let readyz = router.clone().oneshot(Request::get("/readyz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(readyz.status(), StatusCode::SERVICE_UNAVAILABLE);
    let healthz = router.oneshot(Request::get("/healthz").body(Body::empty()).unwrap()).await.unwrap();
    assert_eq!(healthz.status(), StatusCode::OK);
    assert!(!served.is_finished(), "still flushing the WebSocket's queue");
    assert!(tokio::net::TcpStream::connect(addr).await.is_err(), "no new connection during the drain");

    let mut texts = 0;
    let close = within("the WebSocket to close", async {
        loop {
            match ws.recv().await {
                WsFrame::Text(text) => {
                    let expected = format!("42[\"bye\",[{texts},\"{big}\"]]");
                    assert!(text == expected, "message {texts} expected, got {:?}", &text[..text.len().min(40)]);
                    texts += 1;
                }
                WsFrame::Close(code) => return code,
                other => panic!("unexpected {other:?} after {texts} messages"),
            }
        }
    })
    .await;
    assert_eq!(texts, MESSAGES, "every queued message, then the close; no `41` DISCONNECT");
    assert_eq!(close, Some(1001), "going away");
    ws.expect_eof().await;

    let result = tokio::time::timeout(DRAIN + Duration::from_secs(2), served)
        .await
        .expect("serve returns within the drain bound")
        .expect("serve task");
    assert!(result.is_ok());
    assert!(signalled.elapsed() < DRAIN + Duration::from_secs(1), "took {:?}", signalled.elapsed());
    // The WebSocket's socket and the polling one (its session ended once no poll could arrive).
    for _ in 0..2 {
        assert_eq!(next(&mut reasons, "a disconnect").await, DisconnectReason::ServerShutdown);
    }
}

#[tokio::test]
async fn a_pending_poll_gets_the_queue_then_the_close_packet() {
    let config = loopback_config();
    let app = App::build(config).expect("app");
    app.io().of("/");
    let listener = app.bind().await.expect("bind");
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let served = tokio::spawn(app.serve(listener, async {
        let _ = stopped.await;
    }));
    let (polling, _) = Polling::open(addr, PATH).await;
    polling.send("40").await;
    let reply = polling.poll().await;
    assert!(reply.starts_with("40{"), "{reply:?}");
    let pending = polling.spawn_get();
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop.send(()).unwrap();
    // Nothing was queued: the long poll gets the Engine.IO close packet (the client reconnects), not
    // a Socket.IO DISCONNECT.
    let response = switchyard_fixtures::join(pending).await;
    assert_eq!(response.text(), "1");
    let started = Instant::now();
    within("serve to return", served).await.unwrap().unwrap();
    assert!(started.elapsed() < DRAIN, "every connection closed: no need to wait for the drain timeout");
}
