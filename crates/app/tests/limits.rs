//! Every limit of `[limits]` as a client sees it on the wire, and in the counters: a real `App` on
//! 127.0.0.1:0 with small limits, driven by the raw clients of `switchyard_fixtures`.

use prometheus::{Encoder, Registry, TextEncoder};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard::config::{Config, LimitsConfig};
use switchyard::App;
use switchyard_fixtures::{connect_packet, eio_url, get, http, within, Polling, WsClient, SIO_PATH};
use switchyard_socketio::SocketIo;
use tokio::sync::{mpsc, oneshot};

/// Every limit off; each test turns on the ones it exercises.
fn off() -> LimitsConfig {
    LimitsConfig {
        connections_per_ip: 0,
        handshakes_per_second_per_ip: 0,
        events_per_second: 0,
        events_burst: 0,
        rate_limit_disconnect_after: 0,
        namespaces_per_connection: 0,
        rooms_per_socket: 0,
        allowed_origins: Vec::new(),
    }
}

struct Server {
    addr: SocketAddr,
    registry: Registry,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(limits: LimitsConfig, setup: impl FnOnce(&SocketIo)) -> Server {
        let mut config = Config::default();
        config.server.host = "127.0.0.1".into();
        config.server.port = 0;
        config.server.chat_page = false;
        // These tests install their own handlers: no built-in events, no presence announcements.
        config.events.enabled = false;
        config.engine.ping_interval_ms = 20_000;
        config.engine.ping_timeout_ms = 10_000;
        config.limits = limits;
        let app = App::build(config).expect("valid configuration");
        setup(app.io());
        let registry = Registry::new();
        app.limits().register_metrics(&registry).expect("register limit metrics");
        let listener = app.bind().await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        Server { addr, registry, _stop: stop }
    }

    /// The value of counter `name` (with `cause` when given) in the registry's text exposition.
    fn counter(&self, name: &str, cause: Option<&str>) -> u64 {
        let mut text = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        let series = match cause {
            Some(cause) => format!("{name}{{cause=\"{cause}\"}} "),
            None => format!("{name} "),
        };
        let line = text.lines().find(|l| l.starts_with(&series)).unwrap_or_else(|| panic!("{series} in\n{text}"));
        line[series.len()..].parse().unwrap()
    }

    /// A WebSocket client connected to namespace "/".
    async fn client(&self) -> WsClient {
        let (mut ws, _) = WsClient::open_session(self.addr, SIO_PATH).await;
        ws.sio_connect("/", None).await;
        ws
    }
}

/// "ping" acks "pong" and counts its calls.
fn ping_handler(io: &SocketIo, calls: Arc<AtomicUsize>) {
    io.of("/").on_connection(move |socket| {
        let calls = calls.clone();
        socket.on("ping", move |_socket, _payload, ack| {
            calls.fetch_add(1, Ordering::SeqCst);
            if let Some(ack) = ack {
                ack.send(json!("pong"));
            }
        });
    });
}

/// Sends `ping` with ack id `id`; returns the ack's arguments.
async fn ping(ws: &mut WsClient, id: u64) -> Value {
    ws.sio_send(&format!("2{id}[\"ping\"]")).await;
    let reply = ws.sio_recv().await;
    let args = reply.strip_prefix(&format!("3{id}")).unwrap_or_else(|| panic!("ack {id} expected, got {reply:?}"));
    serde_json::from_str(args).unwrap()
}

#[tokio::test]
async fn connections_over_the_per_ip_limit_get_429_and_others_keep_working() {
    let calls = Arc::new(AtomicUsize::new(0));
    let server =
        Server::start(LimitsConfig { connections_per_ip: 2, ..off() }, |io| ping_handler(io, calls.clone())).await;
    let mut first = server.client().await;
    let mut second = server.client().await;
    let refused = get(server.addr, &eio_url(SIO_PATH, "polling", None)).await;
    assert_eq!(refused.status, 429, "{:?}", refused.text());
    assert_eq!(refused.header("connection"), Some("close"));
    assert_eq!(server.counter("switchyard_handshakes_refused_total", Some("connections_per_ip")), 1);
    // Every HTTP route is behind the same limit.
    assert_eq!(get(server.addr, "/healthz").await.status, 429);
    assert_eq!(ping(&mut first, 1).await, json!(["pong"]));
    assert_eq!(ping(&mut second, 1).await, json!(["pong"]));
    // A WebSocket counts for its whole life: once one ends, a new connection is accepted.
    drop(second);
    within("a slot freed by a closed WebSocket", async {
        loop {
            let res = get(server.addr, &eio_url(SIO_PATH, "polling", None)).await;
            if res.status == 200 {
                break;
            }
            assert_eq!(res.status, 429);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert_eq!(ping(&mut first, 2).await, json!(["pong"]));
    assert_eq!(server.counter("switchyard_handshakes_refused_total", Some("handshake_rate")), 0);
}

#[tokio::test]
async fn handshakes_over_the_rate_get_429_until_the_bucket_refills() {
    let server = Server::start(LimitsConfig { handshakes_per_second_per_ip: 4, ..off() }, |io| {
        io.of("/");
    })
    .await;
    for _ in 0..4 {
        Polling::open(server.addr, SIO_PATH).await;
    }
    let refused = get(server.addr, &eio_url(SIO_PATH, "polling", None)).await;
    assert_eq!(refused.status, 429);
    assert_eq!(refused.header("content-type"), Some("application/json"));
    assert_eq!(refused.json(), json!({"code": 3, "message": "Too many handshakes"}));
    let refused = WsClient::connect(server.addr, &eio_url(SIO_PATH, "websocket", None)).await.err().expect("refused");
    assert_eq!(refused.status, 429);
    assert_eq!(refused.json(), json!({"code": 3, "message": "Too many handshakes"}));
    assert_eq!(server.counter("switchyard_handshakes_refused_total", Some("handshake_rate")), 2);
    // The bucket refills (one handshake per 250 ms).
    let sid = within("refill", async {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let res = get(server.addr, &eio_url(SIO_PATH, "polling", None)).await;
            if res.status == 200 {
                return switchyard_fixtures::parse_open(res.text())["sid"].as_str().unwrap().to_string();
            }
            assert_eq!(res.status, 429);
        }
    })
    .await;
    // Requests on an existing session are not handshakes.
    let polling = Polling { addr: server.addr, path: SIO_PATH, sid };
    polling.send(&format!("4{}", connect_packet("/", None))).await;
    let reply = polling.poll().await;
    assert!(reply.starts_with("40{") && reply.contains("\"sid\""), "{reply:?}");
}

#[tokio::test]
async fn events_over_the_rate_are_refused_with_an_ack_and_not_handled() {
    let calls = Arc::new(AtomicUsize::new(0));
    let limits = LimitsConfig { events_per_second: 1, events_burst: 3, ..off() };
    let server = Server::start(limits, |io| ping_handler(io, calls.clone())).await;
    let mut ws = server.client().await;
    for id in 0..5 {
        ws.sio_send(&format!("2{id}[\"ping\"]")).await;
    }
    let mut replies = Vec::new();
    for _ in 0..5 {
        replies.push(ws.sio_recv().await);
    }
    assert_eq!(
        replies,
        [
            "30[\"pong\"]",
            "31[\"pong\"]",
            "32[\"pong\"]",
            "33[{\"error\":\"rate_limited\"}]",
            "34[{\"error\":\"rate_limited\"}]"
        ]
    );
    assert_eq!(calls.load(Ordering::SeqCst), 3, "refused events do not reach the handler");
    assert_eq!(server.counter("switchyard_rate_limited_events_total", None), 2);
    assert_eq!(server.counter("switchyard_rate_limit_disconnects_total", None), 0);
    // An event without an ack is refused silently; the socket stays connected.
    ws.sio_send("2[\"ping\"]").await;
    ws.sio_send("25[\"ping\"]").await;
    assert_eq!(ws.sio_recv().await, "35[{\"error\":\"rate_limited\"}]");
    assert_eq!(server.counter("switchyard_rate_limited_events_total", None), 4);
    assert_eq!(calls.load(Ordering::SeqCst), 3);
    // The bucket refills at one event per second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(ping(&mut ws, 9).await, json!(["pong"]));
}

#[tokio::test]
async fn continued_excess_disconnects_the_socket_and_spares_the_others() {
    let calls = Arc::new(AtomicUsize::new(0));
    let (reasons_tx, mut reasons) = mpsc::unbounded_channel();
    let limits = LimitsConfig { events_per_second: 1, events_burst: 1, rate_limit_disconnect_after: 3, ..off() };
    let server = Server::start(limits, |io| {
        ping_handler(io, calls.clone());
        io.observe(Arc::new(Reasons(reasons_tx)));
    })
    .await;
    let mut flooder = server.client().await;
    let mut other = server.client().await;
    for id in 0..4 {
        flooder.sio_send(&format!("2{id}[\"ping\"]")).await;
    }
    assert_eq!(flooder.sio_recv().await, "30[\"pong\"]");
    assert_eq!(flooder.sio_recv().await, "31[{\"error\":\"rate_limited\"}]");
    assert_eq!(flooder.sio_recv().await, "32[{\"error\":\"rate_limited\"}]");
    // The third refusal in a row: a namespace DISCONNECT (the client sees "io server disconnect").
    assert_eq!(flooder.sio_recv().await, "1");
    let reason = within("disconnect reason", reasons.recv()).await.unwrap();
    assert_eq!(reason, "server namespace disconnect");
    assert_eq!(server.counter("switchyard_rate_limit_disconnects_total", None), 1);
    assert_eq!(server.counter("switchyard_rate_limited_events_total", None), 3);
    assert_eq!(ping(&mut other, 1).await, json!(["pong"]));
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

struct Reasons(mpsc::UnboundedSender<&'static str>);

impl switchyard_socketio::Observer for Reasons {
    fn on_disconnect(&self, _socket: &switchyard_socketio::Socket, reason: switchyard_socketio::DisconnectReason) {
        let _ = self.0.send(reason.as_str());
    }
}

#[tokio::test]
async fn namespaces_over_the_limit_get_connect_error() {
    let server = Server::start(LimitsConfig { namespaces_per_connection: 2, ..off() }, |io| {
        for name in ["/", "/a", "/b"] {
            io.of(name).on_connection(|socket| {
                socket.on("ping", |_s, _p, ack| {
                    if let Some(ack) = ack {
                        ack.send(json!("pong"));
                    }
                });
            });
        }
    })
    .await;
    let mut ws = server.client().await;
    ws.sio_connect("/a", None).await;
    ws.sio_send(&connect_packet("/b", None)).await;
    assert_eq!(ws.sio_recv().await, "4/b,{\"message\":\"Too many namespaces\"}");
    assert_eq!(server.counter("switchyard_namespaces_refused_total", None), 1);
    ws.sio_send("2/a,5[\"ping\"]").await;
    assert_eq!(ws.sio_recv().await, "3/a,5[\"pong\"]");
    // Leaving one makes room for another.
    ws.sio_send("1/a,").await;
    ws.sio_connect("/b", None).await;
}

#[tokio::test]
async fn joins_over_the_room_limit_fail_and_are_counted() {
    let server = Server::start(LimitsConfig { rooms_per_socket: 2, ..off() }, |io| {
        io.of("/").on_connection(|socket| {
            socket.on("join", |socket, payload, ack| {
                let room = payload.arg::<String>(0).unwrap();
                let result = socket.join(room).map_err(|e| e.to_string());
                if let Some(ack) = ack {
                    ack.send(json!({"ok": result.is_ok(), "error": result.err(), "rooms": socket.rooms().len()}));
                }
            });
        });
    })
    .await;
    let mut ws = server.client().await;
    async fn join(ws: &mut WsClient, id: u64, room: &str) -> Value {
        ws.sio_send(&format!("2{id}[\"join\",\"{room}\"]")).await;
        let reply = ws.sio_recv().await;
        let args: Value = serde_json::from_str(reply.strip_prefix(&format!("3{id}")).unwrap()).unwrap();
        args[0].clone()
    }
    assert_eq!(join(&mut ws, 1, "a").await, json!({"ok": true, "error": null, "rooms": 2}));
    assert_eq!(join(&mut ws, 2, "b").await, json!({"ok": true, "error": null, "rooms": 3}));
    assert_eq!(join(&mut ws, 3, "c").await, json!({"ok": false, "error": "too many rooms", "rooms": 3}));
    assert_eq!(join(&mut ws, 4, "a").await, json!({"ok": true, "error": null, "rooms": 3}), "already in: not refused");
    assert_eq!(server.counter("switchyard_rooms_refused_total", None), 1);
}

#[tokio::test]
async fn origins_not_allowed_get_403_for_polling_and_websocket() {
    let limits = LimitsConfig { allowed_origins: vec!["https://good.example".into()], ..off() };
    let server = Server::start(limits, |_| {}).await;
    let polling = eio_url(SIO_PATH, "polling", None);
    let websocket = eio_url(SIO_PATH, "websocket", None);
    let evil = [("Origin", "https://evil.example")];
    let res = http(server.addr, "GET", &polling, &evil, b"").await;
    assert_eq!(res.status, 403);
    assert_eq!(res.header("content-type"), Some("application/json"));
    assert_eq!(res.json(), json!({"code": 4, "message": "Forbidden"}));
    let res = WsClient::connect_with(server.addr, &websocket, &evil).await.err().expect("refused");
    assert_eq!(res.status, 403);
    assert_eq!(res.json(), json!({"code": 4, "message": "Forbidden"}));
    assert_eq!(server.counter("switchyard_handshakes_refused_total", Some("origin")), 2);

    let good = [("Origin", "https://good.example")];
    let res = http(server.addr, "GET", &polling, &good, b"").await;
    assert_eq!(res.status, 200, "{:?}", res.text());
    // Upgrading a polling session from another origin is refused too.
    let sid = switchyard_fixtures::parse_open(res.text())["sid"].as_str().unwrap().to_string();
    let upgrade = eio_url(SIO_PATH, "websocket", Some(&sid));
    let res = WsClient::connect_with(server.addr, &upgrade, &evil).await.err().expect("refused");
    assert_eq!(res.status, 403);
    let mut ws = WsClient::connect_with(server.addr, &websocket, &good).await.expect("allowed origin");
    assert!(ws.recv_text().await.starts_with("0{"));
    // Native clients send no Origin: allowed.
    Polling::open(server.addr, SIO_PATH).await;
    WsClient::open_session(server.addr, SIO_PATH).await;
    assert_eq!(server.counter("switchyard_handshakes_refused_total", Some("origin")), 3);
}

#[tokio::test]
async fn limits_off_cost_nothing_and_defaults_are_on() {
    let calls = Arc::new(AtomicUsize::new(0));
    let mut config = Config { limits: off(), ..Config::default() };
    config.server.chat_page = false;
    let app = App::build(config).unwrap();
    assert!(app.limits().connection_limiter().is_none(), "no per-IP table when off");
    let defaults = LimitsConfig::default();
    assert_eq!(
        (defaults.connections_per_ip, defaults.handshakes_per_second_per_ip, defaults.events_per_second),
        (256, 50, 100)
    );
    // No event middleware when the event rate is off: a burst far over any rate is handled in full.
    let server = Server::start(off(), |io| ping_handler(io, calls.clone())).await;
    let mut ws = server.client().await;
    for id in 0..300 {
        ws.sio_send(&format!("2{id}[\"ping\"]")).await;
    }
    for id in 0..300 {
        assert_eq!(ws.sio_recv().await, format!("3{id}[\"pong\"]"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 300);
    assert_eq!(server.counter("switchyard_rate_limited_events_total", None), 0);
}

#[test]
fn cors_with_any_origin_and_credentials_is_refused_at_startup() {
    let mut config = Config::default();
    config.cors.origins = vec!["*".into()];
    config.cors.credentials = true;
    let err = App::build(config).err().expect("refused");
    assert!(err.to_string().starts_with("cors.credentials: "), "{err}");
    let mut config = Config::default();
    config.cors.origins = vec!["https://good.example".into()];
    config.cors.credentials = true;
    assert!(App::build(config).is_ok());
}
