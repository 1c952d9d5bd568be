//! The HTTP API as a backend meets it: a real `App` on 127.0.0.1:0, requests over real HTTP
//! (`switchyard_fixtures::http`), and raw Socket.IO clients that must see what the API did. Every
//! error the API documents is provoked here at least once. (Across two nodes over Redis, with the
//! official client: tests/cluster/test/api.test.js.)

use serde_json::{json, Value};
use std::net::SocketAddr;
use switchyard::api::{ErrorKind, ENDPOINTS};
use switchyard::config::{ApiConfig, Config};
use switchyard::App;
use switchyard_fixtures::{http, HttpResponse, WsClient, SIO_PATH};
use tokio::sync::oneshot;

const KEY: &str = "test-key-0123456789abcdef";

struct Server {
    addr: SocketAddr,
    _stop: oneshot::Sender<()>,
}

fn config(api: ApiConfig) -> Config {
    let mut config = Config::default();
    config.server.host = "127.0.0.1".into();
    config.server.port = 0;
    config.server.chat_page = false;
    config.engine.ping_interval_ms = 20_000;
    config.engine.ping_timeout_ms = 10_000;
    config.limits.connections_per_ip = 0;
    config.limits.handshakes_per_second_per_ip = 0;
    // Exact packets on the wire: no recovery offsets appended to broadcasts.
    config.recovery.enabled = false;
    // Exact packets: no presence announcements (the presence test turns the built-in events on).
    config.events.enabled = false;
    config.api = api;
    config
}

fn api_on() -> ApiConfig {
    ApiConfig { key: KEY.into(), requests_per_second: 0, ..ApiConfig::default() }
}

impl Server {
    /// The app with the test handlers below on `/` and `/admin` (which replace the built-in events).
    async fn start(config: Config) -> Server {
        Server::serve(config, true).await
    }

    /// The app as configured, with no test handlers.
    async fn start_plain(config: Config) -> Server {
        Server::serve(config, false).await
    }

    async fn serve(config: Config, test_handlers: bool) -> Server {
        let app = App::build(config).expect("valid configuration");
        if test_handlers {
            Server::install_test_handlers(&app);
        }
        let listener = app.bind().await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        Server { addr, _stop: stop }
    }

    fn install_test_handlers(app: &App) {
        // A second namespace whose sockets carry `data`, and whose `whoami` event acks the socket's rooms.
        app.io().of("/admin").on_connection(|socket| {
            socket.set_data(json!({"role": "admin"}));
        });
        app.io().of("/").on_connection(|socket| {
            socket.on("rooms", |socket, _payload, ack| {
                let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
                rooms.sort();
                if let Some(ack) = ack {
                    ack.send(json!(rooms));
                }
            });
        });
    }

    async fn with_api() -> Server {
        Server::start(config(api_on())).await
    }

    /// A request carrying the key.
    async fn call(&self, method: &str, target: &str, body: Option<Value>) -> HttpResponse {
        let auth = format!("Bearer {KEY}");
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        http(
            self.addr,
            method,
            target,
            &[("Authorization", &auth), ("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .await
    }

    async fn client(&self, nsp: &str) -> (WsClient, String) {
        let (mut ws, _) = WsClient::open_session(self.addr, SIO_PATH).await;
        let sid = ws.sio_connect(nsp, None).await;
        (ws, sid)
    }
}

/// Asserts an API error: its status, a JSON body with that `error` string.
#[track_caller]
fn assert_error(response: &HttpResponse, kind: ErrorKind) {
    assert_eq!(response.status, kind.status().as_u16(), "status of {:?}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.json()["error"], kind.message(), "{}", response.text());
}

#[track_caller]
fn assert_ok(response: &HttpResponse) {
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.json(), json!({"ok": true}));
}

/// Asks the client's server which rooms its socket is in (the `rooms` event, acked).
async fn rooms_of(ws: &mut WsClient) -> Value {
    ws.sio_send(r#"21["rooms"]"#).await;
    let answer = ws.sio_recv().await;
    let list = answer.strip_prefix("31").unwrap_or_else(|| panic!("ack expected, got {answer:?}"));
    serde_json::from_str::<Value>(list).unwrap()[0].clone()
}

#[tokio::test]
async fn without_a_key_every_api_path_answers_404() {
    let server = Server::start(config(ApiConfig::default())).await;
    for (method, target) in [
        ("GET", "/api"),
        ("GET", "/api/"),
        ("GET", "/api/openapi.json"),
        ("GET", "/api/rooms"),
        ("POST", "/api/emit"),
        ("POST", "/api/sockets/x/disconnect"),
        ("DELETE", "/api/anything/else"),
    ] {
        let response = server.call(method, target, Some(json!({"event": "x"}))).await;
        assert_error(&response, ErrorKind::NotFound);
    }
}

#[tokio::test]
async fn requests_without_the_key_are_refused_with_401() {
    let server = Server::with_api().await;
    let wrong = [
        vec![],
        vec![("Authorization", "Bearer wrong-key-0123456789abcdef".to_string())],
        vec![("Authorization", format!("Bearer {}", &KEY[..KEY.len() - 1]))],
        vec![("Authorization", format!("Bearer {KEY}x"))],
        vec![("Authorization", format!("Basic {KEY}"))],
        vec![("Authorization", KEY.to_string())],
        vec![("Authorization", "Bearer ".to_string())],
    ];
    for headers in &wrong {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
        for (method, target) in [("GET", "/api/rooms"), ("POST", "/api/emit"), ("GET", "/api/nowhere")] {
            let response = http(server.addr, method, target, &headers, br#"{"event":"x"}"#).await;
            assert_error(&response, ErrorKind::Unauthorized);
            assert_eq!(response.header("www-authenticate"), Some("Bearer"));
        }
    }
    // The scheme is case-insensitive.
    let lower = format!("bearer {KEY}");
    let response = http(server.addr, "GET", "/api/rooms", &[("Authorization", &lower)], b"").await;
    assert_eq!(response.status, 200, "{}", response.text());
}

#[tokio::test]
async fn emit_reaches_the_rooms_it_names_except_those_it_excludes() {
    let server = Server::with_api().await;
    let (mut a, a_id) = server.client("/").await;
    let (mut b, b_id) = server.client("/").await;
    let (mut c, c_id) = server.client("/").await;
    for (id, room) in [(&a_id, "news"), (&b_id, "news"), (&b_id, "muted")] {
        assert_ok(&server.call("POST", &format!("/api/sockets/{id}/join"), Some(json!({"room": room}))).await);
    }

    let response =
        server.call("POST", "/api/emit", Some(json!({"rooms": ["news"], "event": "headline", "data": {"n": 1}}))).await;
    assert_ok(&response);
    assert_eq!(a.sio_recv().await, r#"2["headline",{"n":1}]"#);
    assert_eq!(b.sio_recv().await, r#"2["headline",{"n":1}]"#);

    let body = json!({"rooms": ["news"], "except": ["muted"], "event": "quiet", "data": [1, "two"]});
    assert_ok(&server.call("POST", "/api/emit", Some(body)).await);
    assert_eq!(a.sio_recv().await, r#"2["quiet",[1,"two"]]"#);

    // No rooms: every socket of the namespace; no data: no argument; null data: one null argument.
    assert_ok(&server.call("POST", "/api/emit", Some(json!({"event": "all"}))).await);
    assert_ok(&server.call("POST", "/api/emit", Some(json!({"event": "nothing", "data": null}))).await);
    for ws in [&mut a, &mut b, &mut c] {
        assert_eq!(ws.sio_recv().await, r#"2["all"]"#);
        assert_eq!(ws.sio_recv().await, r#"2["nothing",null]"#);
    }
    // b's first packet after "headline" was "all": "quiet" skipped it, and c got neither room event.

    // A socket id is a room holding that socket.
    assert_ok(&server.call("POST", "/api/emit", Some(json!({"rooms": [c_id], "event": "dm"}))).await);
    assert_ok(&server.call("POST", "/api/emit", Some(json!({"event": "after"}))).await);
    assert_eq!(c.sio_recv().await, r#"2["dm"]"#);
    assert_eq!(c.sio_recv().await, r#"2["after"]"#);
    assert_eq!(a.sio_recv().await, r#"2["after"]"#);
}

#[tokio::test]
async fn emit_to_another_namespace() {
    let server = Server::with_api().await;
    let (mut main, _) = server.client("/").await;
    let (mut admin, _) = server.client("/admin").await;
    assert_ok(&server.call("POST", "/api/emit", Some(json!({"event": "hi", "namespace": "/admin", "data": 5}))).await);
    assert_eq!(admin.sio_recv().await, r#"2/admin,["hi",5]"#);
    assert_ok(&server.call("POST", "/api/emit", Some(json!({"event": "main"}))).await);
    // The main namespace's client got only its own event.
    assert_eq!(main.sio_recv().await, r#"2["main"]"#);
}

#[tokio::test]
async fn emit_refuses_what_it_cannot_send() {
    let server = Server::with_api().await;
    let cases = [
        (json!({}), ErrorKind::MissingEvent),
        (json!({"event": ""}), ErrorKind::MissingEvent),
        (json!({"data": 1}), ErrorKind::MissingEvent),
        (json!({"event": "connect"}), ErrorKind::ReservedEvent),
        (json!({"event": "disconnect"}), ErrorKind::ReservedEvent),
        (json!({"event": "connect_error"}), ErrorKind::ReservedEvent),
        (json!({"event": "disconnecting"}), ErrorKind::ReservedEvent),
        (json!({"event": "newListener"}), ErrorKind::ReservedEvent),
        (json!({"event": "removeListener"}), ErrorKind::ReservedEvent),
        (json!({"event": 5}), ErrorKind::InvalidJson),
        (json!({"event": "x", "rooms": "news"}), ErrorKind::InvalidJson),
        (json!({"event": "x", "room": "news"}), ErrorKind::InvalidJson),
        (json!(["event", "x"]), ErrorKind::InvalidJson),
        (json!({"event": "x", "rooms": [""]}), ErrorKind::InvalidRoom),
        (json!({"event": "x", "except": [""]}), ErrorKind::InvalidRoom),
        (json!({"event": "x", "namespace": "admin"}), ErrorKind::InvalidNamespace),
        (json!({"event": "x", "namespace": "/nowhere"}), ErrorKind::NamespaceNotFound),
    ];
    for (body, kind) in cases {
        let response = server.call("POST", "/api/emit", Some(body.clone())).await;
        assert_error(&response, kind);
    }
    for raw in [&b"{"[..], b"not json", b"{\"event\":\"x\"} trailing", &[0xff, 0xfe]] {
        let auth = format!("Bearer {KEY}");
        let response = http(server.addr, "POST", "/api/emit", &[("Authorization", &auth)], raw).await;
        assert_error(&response, ErrorKind::InvalidJson);
        assert!(response.json()["detail"].is_string(), "{}", response.text());
    }
    // A namespace no request created stays absent.
    let response = server.call("GET", "/api/rooms?namespace=/nowhere", None).await;
    assert_error(&response, ErrorKind::NamespaceNotFound);
}

#[tokio::test]
async fn rooms_and_their_sockets() {
    let server = Server::with_api().await;
    let (_a, a_id) = server.client("/").await;
    let (_b, b_id) = server.client("/").await;
    let (_admin, admin_id) = server.client("/admin").await;
    assert_eq!(server.call("GET", "/api/rooms", None).await.json(), json!({"namespace": "/", "rooms": []}));
    for (id, room) in [(&a_id, "news"), (&b_id, "news"), (&b_id, "sport/live")] {
        assert_ok(&server.call("POST", &format!("/api/sockets/{id}/join"), Some(json!({"room": room}))).await);
    }
    let rooms = server.call("GET", "/api/rooms", None).await;
    assert_eq!(
        rooms.json(),
        json!({"namespace": "/", "rooms": [{"room": "news", "sockets": 2}, {"room": "sport/live", "sockets": 1}]})
    );
    let response = server.call("GET", "/api/rooms/news/sockets", None).await;
    let mut expected = vec![
        json!({"id": a_id, "rooms": ["news"], "data": null}),
        json!({"id": b_id, "rooms": ["news", "sport/live"], "data": null}),
    ];
    expected.sort_by_key(|s| s["id"].as_str().unwrap().to_string());
    let mut got = response.json();
    for socket in got["sockets"].as_array_mut().unwrap() {
        let rooms = socket["rooms"].as_array_mut().unwrap();
        rooms.sort_by_key(|r| r.as_str().unwrap().to_string());
    }
    assert_eq!(got, json!({"namespace": "/", "room": "news", "sockets": expected}));
    // A room name with a slash, percent-encoded in the path.
    let live = server.call("GET", "/api/rooms/sport%2Flive/sockets", None).await.json();
    assert_eq!(live["room"], "sport/live");
    assert_eq!(live["sockets"].as_array().unwrap().len(), 1);
    // An empty room, and another namespace with the sockets' data.
    let empty = server.call("GET", "/api/rooms/nobody/sockets", None).await.json();
    assert_eq!(empty, json!({"namespace": "/", "room": "nobody", "sockets": []}));
    let admin = server.call("GET", &format!("/api/rooms/{admin_id}/sockets?namespace=%2Fadmin"), None).await.json();
    assert_eq!(admin["sockets"], json!([{"id": admin_id, "rooms": [], "data": {"role": "admin"}}]));
    // Errors of these routes.
    assert_error(&server.call("GET", "/api/rooms?namespace=admin", None).await, ErrorKind::InvalidNamespace);
    assert_error(&server.call("GET", "/api/rooms/%FF/sockets", None).await, ErrorKind::InvalidPath);
    assert_error(
        &server.call("GET", "/api/rooms/x/sockets?namespace=/&namespace=/", None).await,
        ErrorKind::InvalidQuery,
    );
    assert_error(&server.call("GET", "/api/rooms/x/sockets?namespace=/none", None).await, ErrorKind::NamespaceNotFound);
}

#[tokio::test]
async fn join_and_leave_move_a_socket_between_rooms() {
    let server = Server::with_api().await;
    let (mut ws, id) = server.client("/").await;
    assert_ok(&server.call("POST", &format!("/api/sockets/{id}/join"), Some(json!({"room": "a"}))).await);
    assert_ok(
        &server.call("POST", &format!("/api/sockets/{id}/join"), Some(json!({"room": "b", "namespace": "/"}))).await,
    );
    let mut expected = vec![json!("a"), json!("b"), json!(id)];
    expected.sort_by_key(|r| r.as_str().unwrap().to_string());
    assert_eq!(rooms_of(&mut ws).await, Value::Array(expected));
    assert_ok(&server.call("POST", &format!("/api/sockets/{id}/leave"), Some(json!({"room": "a"}))).await);
    let mut expected = vec![json!("b"), json!(id)];
    expected.sort_by_key(|r| r.as_str().unwrap().to_string());
    assert_eq!(rooms_of(&mut ws).await, Value::Array(expected));
    // Leaving a room the socket is not in is not an error.
    assert_ok(&server.call("POST", &format!("/api/sockets/{id}/leave"), Some(json!({"room": "a"}))).await);

    for action in ["join", "leave"] {
        let target = format!("/api/sockets/{id}/{action}");
        assert_error(&server.call("POST", &target, Some(json!({}))).await, ErrorKind::MissingRoom);
        assert_error(&server.call("POST", &target, None).await, ErrorKind::MissingRoom);
        assert_error(&server.call("POST", &target, Some(json!({"room": ""}))).await, ErrorKind::MissingRoom);
        assert_error(&server.call("POST", &target, Some(json!({"room": 1}))).await, ErrorKind::InvalidJson);
        let wrong_ns = json!({"room": "r", "namespace": "/admin"});
        assert_error(&server.call("POST", &target, Some(wrong_ns)).await, ErrorKind::SocketNotFound);
        let missing = format!("/api/sockets/NoSuchSocket0000000/{action}");
        assert_error(&server.call("POST", &missing, Some(json!({"room": "r"}))).await, ErrorKind::SocketNotFound);
        // A room is not a socket: "b" holds a socket, but no socket has the id "b".
        let room = format!("/api/sockets/b/{action}");
        assert_error(&server.call("POST", &room, Some(json!({"room": "r"}))).await, ErrorKind::SocketNotFound);
    }
}

#[tokio::test]
async fn disconnect_ends_the_socket_or_its_connection() {
    let server = Server::with_api().await;
    let (mut ws, id) = server.client("/").await;
    assert_ok(&server.call("POST", &format!("/api/sockets/{id}/disconnect"), None).await);
    // A namespace disconnect: the client gets DISCONNECT, the connection stays.
    assert_eq!(ws.sio_recv().await, "1");
    assert_error(&server.call("POST", &format!("/api/sockets/{id}/disconnect"), None).await, ErrorKind::SocketNotFound);
    let id = ws.sio_connect("/", None).await;
    let body = json!({"close": true, "namespace": "/"});
    assert_ok(&server.call("POST", &format!("/api/sockets/{id}/disconnect"), Some(body)).await);
    // The whole connection closes.
    loop {
        match ws.recv().await {
            switchyard_fixtures::WsFrame::Close(_) | switchyard_fixtures::WsFrame::Eof => break,
            _ => {}
        }
    }
    let target = "/api/sockets/x/disconnect";
    assert_error(&server.call("POST", target, Some(json!({"close": "yes"}))).await, ErrorKind::InvalidJson);
    assert_error(&server.call("POST", target, Some(json!({"namespace": "x"}))).await, ErrorKind::InvalidNamespace);
    assert_error(&server.call("POST", target, Some(json!({"namespace": "/x"}))).await, ErrorKind::NamespaceNotFound);
}

#[tokio::test]
async fn presence_lists_the_users_in_a_room() {
    // The built-in events on `/` (no test handlers there): a user joins with the `join` event.
    let mut config = config(api_on());
    config.events.enabled = true;
    let server = Server::start_plain(config).await;
    let empty = server.call("GET", "/api/presence/lobby", None).await;
    assert_eq!(empty.status, 200, "{}", empty.text());
    assert_eq!(empty.json(), json!({"namespace": "/", "room": "lobby", "users": []}));

    let (mut ws, _) = WsClient::open_session(server.addr, SIO_PATH).await;
    ws.sio_connect("/", Some(r#"{"user":"ada"}"#)).await;
    ws.sio_send(r#"21["join","lobby"]"#).await;
    loop {
        let packet = ws.sio_recv().await;
        if let Some(ack) = packet.strip_prefix("31") {
            assert_eq!(serde_json::from_str::<Value>(ack).unwrap(), json!([{"ok": true, "room": "lobby"}]));
            break;
        }
    }
    let present = server.call("GET", "/api/presence/lobby", None).await;
    assert_eq!(present.status, 200, "{}", present.text());
    assert_eq!(present.json(), json!({"namespace": "/", "room": "lobby", "users": ["ada"]}));
    assert_error(
        &server.call("GET", "/api/presence/lobby?namespace=/nowhere", None).await,
        ErrorKind::NamespaceNotFound,
    );
}

#[tokio::test]
async fn presence_answers_501_when_it_is_off() {
    let mut config = config(api_on());
    config.presence.enabled = false;
    let server = Server::start(config).await;
    assert_error(&server.call("GET", "/api/presence/lobby", None).await, ErrorKind::PresenceUnavailable);
}

#[tokio::test]
async fn history_answers_501_when_it_is_off() {
    let server = Server::start(config(api_on())).await;
    assert_error(&server.call("GET", "/api/rooms/lobby/history", None).await, ErrorKind::HistoryUnavailable);
}

#[tokio::test]
async fn unknown_paths_and_methods() {
    let server = Server::with_api().await;
    for target in ["/api", "/api/", "/api/nowhere", "/api/emit/", "/api/rooms/x", "/api/sockets/x/explode"] {
        assert_error(&server.call("GET", target, None).await, ErrorKind::NotFound);
    }
    let response = server.call("GET", "/api/emit", None).await;
    assert_error(&response, ErrorKind::MethodNotAllowed);
    assert_eq!(response.header("allow"), Some("POST"));
    let response = server.call("DELETE", "/api/rooms", None).await;
    assert_error(&response, ErrorKind::MethodNotAllowed);
    assert_eq!(response.header("allow"), Some("GET"));
    let response = server.call("POST", "/api/openapi.json", None).await;
    assert_error(&response, ErrorKind::MethodNotAllowed);
    assert_eq!(response.header("allow"), Some("GET"));
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let server = Server::start(config(ApiConfig { max_body_bytes: 100, ..api_on() })).await;
    let auth = format!("Bearer {KEY}");
    let big = json!({"event": "x", "data": "y".repeat(200)}).to_string();
    let response = http(server.addr, "POST", "/api/emit", &[("Authorization", &auth)], big.as_bytes()).await;
    assert_error(&response, ErrorKind::BodyTooLarge);
    // Without a Content-Length: the limit applies while reading.
    let chunked = format!("{:x}\r\n{big}\r\n0\r\n\r\n", big.len());
    let headers = [("Authorization", auth.as_str()), ("Transfer-Encoding", "chunked")];
    let response = http(server.addr, "POST", "/api/emit", &headers, chunked.as_bytes()).await;
    assert_error(&response, ErrorKind::BodyTooLarge);
    // At the limit it is read.
    let fits = json!({"event": "x", "data": "y".repeat(60)}).to_string();
    assert!(fits.len() <= 100);
    let response = http(server.addr, "POST", "/api/emit", &[("Authorization", &auth)], fits.as_bytes()).await;
    assert_ok(&response);
}

#[tokio::test]
async fn requests_over_the_rate_get_429_and_every_answer_is_counted() {
    // One request per second per IP, a burst of one: the second within the second is refused.
    let server = Server::start(config(ApiConfig { requests_per_second: 1, ..api_on() })).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(server.call("GET", "/api/rooms", None).await.status);
    }
    assert_eq!(statuses[0], 200, "{statuses:?}");
    assert!(statuses[1..].iter().all(|s| *s == 429), "{statuses:?}");
    let response = server.call("GET", "/api/rooms", None).await;
    assert_error(&response, ErrorKind::RateLimited);
    assert_eq!(response.header("retry-after"), Some("1"));
    // Unauthenticated requests take from the same bucket (no brute force of the key).
    assert_error(&http(server.addr, "GET", "/api/rooms", &[], b"").await, ErrorKind::RateLimited);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(server.call("GET", "/api/rooms", None).await.status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_error(&http(server.addr, "GET", "/api/rooms", &[], b"").await, ErrorKind::Unauthorized);

    let metrics = http(server.addr, "GET", "/metrics", &[], b"").await;
    let text = metrics.text();
    let count = |series: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("{series} in\n{text}"))
    };
    assert_eq!(count(r#"switchyard_api_requests_total{method="GET",route="/api/rooms",status="200"} "#), 2);
    assert_eq!(count(r#"switchyard_api_requests_total{method="GET",route="/api/rooms",status="429"} "#), 5);
    assert_eq!(count(r#"switchyard_api_requests_total{method="GET",route="/api/rooms",status="401"} "#), 1);
}

#[tokio::test]
async fn the_openapi_document_describes_every_route() {
    let server = Server::with_api().await;
    // Served without the key: it holds no secret.
    let response = http(server.addr, "GET", "/api/openapi.json", &[], b"").await;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let doc = response.json();
    assert_eq!(doc["openapi"], "3.0.3");
    assert_eq!(doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer");
    let paths = doc["paths"].as_object().unwrap();
    assert_eq!(paths.len(), 8, "{:?}", paths.keys().collect::<Vec<_>>());
    for endpoint in ENDPOINTS {
        let operation = &doc["paths"][endpoint.path][endpoint.method.as_str().to_ascii_lowercase()];
        assert_eq!(operation["operationId"], endpoint.operation_id, "{}", endpoint.path);
        assert!(operation["responses"]["200"].is_object());
        assert!(operation["responses"]["401"].is_object());
        assert!(operation["responses"]["429"].is_object());
    }
    assert!(doc["paths"]["/api/emit"]["post"]["responses"]["413"].is_object());
}

#[test]
fn the_binary_takes_the_key_from_switchyard_api_key_and_never_prints_it() {
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("config")
        .env_clear()
        .env("SWITCHYARD_API_KEY", KEY)
        .output()
        .expect("run switchyard config");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(!text.contains(KEY), "{text}");
    let printed: Config = toml::from_str(&text).expect("TOML");
    assert_eq!(printed.api.key, "<redacted>");
    // A key too short to be safe stops the server with the key named.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .arg("config")
        .env_clear()
        .env("SWITCHYARD_API_KEY", "short")
        .output()
        .expect("run switchyard config");
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("api.key: must be at least 16 characters"));
}

#[test]
fn docs_api_md_lists_every_error_with_its_status() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/API.md");
    let text = std::fs::read_to_string(path).expect("docs/API.md");
    let rows: Vec<(String, String)> = text
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            // | status | `error` | when |
            (cells.len() >= 4 && cells[1].parse::<u16>().is_ok() && cells[2].starts_with('`'))
                .then(|| (cells[1].to_string(), cells[2].trim_matches('`').to_string()))
        })
        .collect();
    for kind in ErrorKind::ALL {
        let row = (kind.status().as_str().to_string(), kind.message().to_string());
        assert!(rows.contains(&row), "docs/API.md lacks the row {row:?}");
    }
    assert_eq!(rows.len(), ErrorKind::ALL.len(), "docs/API.md lists errors the code does not have: {rows:?}");
}
