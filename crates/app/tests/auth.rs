//! Authentication and handshake rooms as a client sees them on the wire: a real `App` on 127.0.0.1:0
//! with `[auth]` and `[rooms]` set, driven by the raw clients of `switchyard_fixtures`; the server's
//! side (rooms, identity, counters) read from the `App`.

use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use switchyard::access::{identity, Access};
use switchyard::auth::{mint, unix_now, Auth, Failure, TokenRequest};
use switchyard::config::Config;
use switchyard::{App, AppError};
use switchyard_fixtures::{connect_packet, eio_url, get, http, parse_open, within, HttpResponse, WsClient, SIO_PATH};
use switchyard_socketio::{Sid, SocketIo};
use tokio::sync::oneshot;

const SECRET: &str = "an HS256 secret of at least 32 bytes for tests";

struct Server {
    addr: SocketAddr,
    io: SocketIo,
    auth: Arc<Auth>,
    access: Arc<Access>,
    config: Config,
    _stop: oneshot::Sender<()>,
}

impl Server {
    async fn start(set: impl FnOnce(&mut Config)) -> Server {
        let mut config = Config::default();
        config.server.host = "127.0.0.1".into();
        config.server.port = 0;
        config.server.chat_page = false;
        config.limits.handshakes_per_second_per_ip = 0;
        config.auth.jwt.secret = SECRET.into();
        config.auth.jwt.leeway_seconds = 0;
        // The rooms auth puts a socket in, alone: the built-in events would add the user's room of
        // an anonymous socket (docs/EVENTS.md) and presence announcements.
        config.events.enabled = false;
        set(&mut config);
        let app = App::build(config.clone()).expect("valid configuration");
        for nsp in ["/second", "/short", "/admin", "/x"] {
            let _ = app.io().of(nsp);
        }
        let (io, auth, access) = (app.io().clone(), app.auth().clone(), app.access().clone());
        let listener = app.bind().await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        tokio::spawn(app.serve(listener, async {
            let _ = stopped.await;
        }));
        Server { addr, io, auth, access, config, _stop: stop }
    }

    fn token(&self, sub: &str, rooms: &[&str], ttl_secs: u64) -> String {
        let request = TokenRequest {
            sub: sub.into(),
            rooms: rooms.iter().map(|r| r.to_string()).collect(),
            publish: Vec::new(),
            ttl: Duration::from_secs(ttl_secs),
        };
        mint(&self.config, &request).expect("mint")
    }

    async fn ws(&self, headers: &[(&str, &str)]) -> WsClient {
        let mut ws = WsClient::connect_with(self.addr, &eio_url(SIO_PATH, "websocket", None), headers)
            .await
            .unwrap_or_else(|res| panic!("WebSocket refused: {}", res.status));
        parse_open(&ws.recv_text().await);
        ws
    }

    /// Sends CONNECT to `nsp` with `auth` and returns the reply packet.
    async fn connect(&self, ws: &mut WsClient, nsp: &str, auth: Option<Value>) -> String {
        ws.sio_send(&connect_packet(nsp, auth.map(|a| a.to_string()).as_deref())).await;
        ws.sio_recv().await
    }

    /// The rooms of socket `sid` in `nsp`, sorted, without its own id.
    fn rooms(&self, nsp: &str, sid: &str) -> Vec<String> {
        let socket = self.io.of(nsp).get_socket(&Sid::parse(sid).expect("sid")).expect("connected socket");
        let mut rooms: Vec<String> = socket.rooms().iter().skip(1).map(|r| r.to_string()).collect();
        rooms.sort();
        rooms
    }
}

/// The sid of a CONNECT reply (`0{"sid":...}` or `0/nsp,{"sid":...}`), or a panic naming the packet.
#[track_caller]
fn sid_of(reply: &str) -> String {
    let json = reply.split_once('{').map(|(_, rest)| format!("{{{rest}")).unwrap_or_default();
    assert!(reply.starts_with('0'), "CONNECT reply expected, got {reply:?}");
    let value: Value = serde_json::from_str(&json).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
    value["sid"].as_str().expect("sid").to_string()
}

fn auth_error(reason: &str) -> String {
    format!(r#"4{{"data":{{"reason":"{reason}"}},"message":"Auth error"}}"#)
}

#[tokio::test]
async fn a_valid_token_connects_as_its_user_in_the_user_room() {
    let server = Server::start(|_| {}).await;
    let token = server.token("alice", &["chat:*"], 600);
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", Some(json!({"token": token}))).await);
    assert_eq!(server.rooms("/", &sid), ["user:alice"]);
    let socket = server.io.of("/").get_socket(&Sid::parse(&sid).unwrap()).unwrap();
    let who = identity(&socket).expect("identity in the extensions");
    assert_eq!(&*who.user, "alice");
    // The access policy reads the claims: chat:* yes, others no (auth on: default deny).
    assert!(server.access.may_join(&socket, "chat:general"));
    assert!(!server.access.may_join(&socket, "ops"));
    assert!(!server.access.may_join(&socket, "user:bob"));
    // A second tab of alice on another namespace of the same connection: same user room there.
    let sid2 = sid_of(&server.connect(&mut ws, "/second", Some(json!({"token": token}))).await);
    assert_eq!(server.rooms("/second", &sid2), ["user:alice"]);
    assert_eq!(server.auth.expiry().len(), 2, "both sockets tracked for expiry");
    ws.sio_send("1/second,").await;
    within("expiry entry removed on disconnect", async {
        while server.auth.expiry().len() != 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn refusals_say_missing_invalid_or_expired_and_are_counted() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.ws(&[]).await;
    assert_eq!(server.connect(&mut ws, "/", None).await, auth_error("missing"));
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"token": null}))).await, auth_error("missing"));
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"token": ""}))).await, auth_error("missing"));
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"token": "x.y.z"}))).await, auth_error("invalid"));
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"token": 42}))).await, auth_error("invalid"));
    let other = Config {
        auth: switchyard::config::AuthConfig {
            jwt: switchyard::config::JwtConfig {
                secret: "another secret, at least 32 bytes long".into(),
                ..Default::default()
            },
            ..Default::default()
        },
        ..Config::default()
    };
    let forged =
        mint(&other, &TokenRequest { sub: "alice".into(), ttl: Duration::from_secs(60), ..Default::default() })
            .unwrap();
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"token": forged}))).await, auth_error("invalid"));
    let expired = server.token("alice", &[], 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"token": expired}))).await, auth_error("expired"));
    // Every namespace, a dynamic one made after the build included.
    server.io.dynamic_namespace(|name| name.starts_with("/dyn-"));
    assert_eq!(server.connect(&mut ws, "/dyn-1", None).await, format!("4/dyn-1,{}", &auth_error("missing")[1..]));
    assert_eq!(server.auth.failures(Failure::Missing), 4);
    assert_eq!(server.auth.failures(Failure::Invalid), 3);
    assert_eq!(server.auth.failures(Failure::Expired), 1);
    // The connection itself stays usable.
    let token = server.token("alice", &[], 60);
    sid_of(&server.connect(&mut ws, "/", Some(json!({"token": token}))).await);
}

#[tokio::test]
async fn bearer_header_and_cookie_carry_the_token() {
    let server = Server::start(|c| c.limits.allowed_origins = vec!["https://app.test".into()]).await;
    let token = server.token("bob", &[], 600);
    let bearer = format!("Bearer {token}");
    let mut ws = server.ws(&[("Authorization", &bearer)]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", None).await);
    assert_eq!(server.rooms("/", &sid), ["user:bob"]);
    // The handshake's auth.token comes first: a bad one is refused, not skipped for the header.
    assert_eq!(
        server.connect(&mut ws, "/x", Some(json!({"token": "bad"}))).await,
        format!("4/x,{}", &auth_error("invalid")[1..])
    );

    let cookie = format!("theme=dark; token={token}");
    let mut ws = server.ws(&[("Origin", "https://app.test"), ("Cookie", &cookie)]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", None).await);
    assert_eq!(server.rooms("/", &sid), ["user:bob"]);
    // Another scheme in Authorization is not a token.
    let mut ws = server.ws(&[("Authorization", "Basic dXNlcjpwYXNz")]).await;
    assert_eq!(server.connect(&mut ws, "/", None).await, auth_error("missing"));
}

#[tokio::test]
async fn cookies_are_ignored_without_allowed_origins() {
    let server = Server::start(|_| {}).await;
    let cookie = format!("token={}", server.token("bob", &[], 600));
    let mut ws = server.ws(&[("Cookie", &cookie)]).await;
    assert_eq!(server.connect(&mut ws, "/", None).await, auth_error("missing"));
}

#[tokio::test]
async fn exempt_namespaces_need_no_token() {
    let server = Server::start(|c| c.auth.exempt_namespaces = vec!["/admin".into()]).await;
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/admin", None).await);
    assert!(server.rooms("/admin", &sid).is_empty());
    assert_eq!(server.connect(&mut ws, "/", None).await, auth_error("missing"));
}

#[tokio::test]
async fn an_expiring_token_gets_auth_expired_then_a_disconnect() {
    let server = Server::start(|_| {}).await;
    let mut ws = server.ws(&[]).await;
    let long = server.token("carol", &[], 600);
    let short = server.token("carol", &[], 1);
    sid_of(&server.connect(&mut ws, "/", Some(json!({"token": long}))).await);
    let sid = sid_of(&server.connect(&mut ws, "/short", Some(json!({"token": short}))).await);
    let started = tokio::time::Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(4), ws.sio_recv()).await.expect("auth_expired within 4 s");
    // (Connection state recovery, on by default, appends the packet's offset.)
    assert!(event.starts_with(r#"2/short,["auth_expired",{"reason":"expired"}"#), "{event}");
    assert_eq!(ws.sio_recv().await, "1/short,", "then the namespace disconnect");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(server.io.of("/short").get_socket(&Sid::parse(&sid).unwrap()).is_none());
    // The other namespace, with a longer token, stays.
    assert_eq!(server.io.of("/").local_socket_count(), 1);
    assert_eq!(server.auth.expiry().len(), 1);
}

#[tokio::test]
async fn from_handshake_joins_the_room_or_refuses_the_connection() {
    let server = Server::start(|c| c.rooms.from_handshake = true).await;
    let token = server.token("dave", &["chat:*"], 600);
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", Some(json!({"token": token, "room": "chat:lobby"}))).await);
    assert_eq!(server.rooms("/", &sid), ["chat:lobby", "user:dave"]);
    // A connection joins a namespace once: refusals are tried on another connection.
    let mut ws = server.ws(&[]).await;
    let invalid_room = r#"4{"message":"Invalid room id"}"#;
    let refusals = [
        json!({"token": token}),
        json!({"token": token, "room": ""}),
        json!({"token": token, "room": 7}),
        json!({"token": token, "room": "ops"}),
        json!({"token": token, "room": "user:erin"}),
        json!({"token": token, "room": "x".repeat(257)}),
    ];
    for auth in refusals {
        assert_eq!(server.connect(&mut ws, "/", Some(auth.clone())).await, invalid_room, "{auth}");
    }
    // The token is checked first.
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"room": "chat:lobby"}))).await, auth_error("missing"));
    // The room header, when auth has no room.
    let mut ws = server.ws(&[("room", "chat:side")]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", Some(json!({"token": token}))).await);
    assert_eq!(server.rooms("/", &sid), ["chat:side", "user:dave"]);
}

#[tokio::test]
async fn from_handshake_without_auth_follows_the_default_policy() {
    let server = Server::start(|c| {
        c.auth.jwt.secret.clear();
        c.rooms.from_handshake = true;
    })
    .await;
    assert!(!server.auth.enabled());
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", Some(json!({"room": "lobby"}))).await);
    // A connection joins a namespace once: refusals are tried on another connection.
    let mut ws = server.ws(&[]).await;
    assert_eq!(server.rooms("/", &sid), ["lobby"]);
    assert_eq!(
        server.connect(&mut ws, "/", Some(json!({"room": "user:x"}))).await,
        r#"4{"message":"Invalid room id"}"#
    );
    assert_eq!(server.connect(&mut ws, "/", None).await, r#"4{"message":"Invalid room id"}"#);
    let server = Server::start(|c| {
        c.auth.jwt.secret.clear();
        c.rooms.from_handshake = true;
        c.rooms.default_policy = "deny".into();
    })
    .await;
    let mut ws = server.ws(&[]).await;
    assert_eq!(server.connect(&mut ws, "/", Some(json!({"room": "lobby"}))).await, r#"4{"message":"Invalid room id"}"#);
}

#[tokio::test]
async fn without_a_key_nothing_is_checked() {
    let server = Server::start(|c| c.auth.jwt.secret.clear()).await;
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", None).await);
    assert!(server.rooms("/", &sid).is_empty());
    assert!(unix_now() > 0);
}

// ---- the development token endpoint (auth.dev_token_endpoint) -----------------------------------

impl Server {
    /// `POST /dev/token` with a JSON body.
    async fn dev_token(&self, body: &str) -> HttpResponse {
        http(self.addr, "POST", "/dev/token", &[("Content-Type", "application/json")], body.as_bytes()).await
    }
}

#[tokio::test]
async fn the_dev_token_endpoint_mints_tokens_that_connect() {
    let server = Server::start(|c| {
        c.auth.dev_token_endpoint = true;
        c.server.chat_page = true;
    })
    .await;
    let response = server.dev_token(r#"{"sub": "Ada Lovelace"}"#).await;
    assert_eq!(response.status, 200, "{}", response.text());
    assert_eq!(response.header("content-type"), Some("application/json"));
    assert_eq!(response.header("cache-control"), Some("no-store"));
    let token = response.json()["token"].as_str().expect("a token").to_string();
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", Some(json!({"token": token}))).await);
    assert_eq!(server.rooms("/", &sid), ["user:Ada Lovelace"]);
    let socket = server.io.of("/").get_socket(&Sid::parse(&sid).unwrap()).unwrap();
    let who = identity(&socket).expect("identity");
    assert_eq!(&*who.user, "Ada Lovelace");
    let ttl = who.expires_at.unwrap() - unix_now();
    assert!((3590..=3600).contains(&ttl), "an hour: {ttl}");
    // The default patterns, ["*"], open every room but other users' own.
    assert!(server.access.may_join(&socket, "lobby"));
    assert!(server.access.may_publish(&socket, "lobby"));
    assert!(!server.access.may_join(&socket, "user:bob"));
    // Rooms, when given, are the token's patterns.
    let response = server.dev_token(r#"{"sub": "bob", "rooms": ["chat:*"]}"#).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let token = response.json()["token"].as_str().unwrap().to_string();
    let mut ws = server.ws(&[]).await;
    let sid = sid_of(&server.connect(&mut ws, "/", Some(json!({"token": token}))).await);
    let socket = server.io.of("/").get_socket(&Sid::parse(&sid).unwrap()).unwrap();
    assert!(server.access.may_join(&socket, "chat:general"));
    assert!(!server.access.may_join(&socket, "lobby"));
    // The page names the endpoint.
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains(r#"<body data-token-endpoint="/dev/token">"#), "{}", page.text());
}

#[tokio::test]
async fn the_dev_token_endpoint_refuses_bad_requests_with_400() {
    let server = Server::start(|c| c.auth.dev_token_endpoint = true).await;
    let long = format!(r#"{{"sub": "{}"}}"#, "x".repeat(65));
    let many = format!(r#"{{"sub": "a", "rooms": {}}}"#, json!(vec!["r"; 33]));
    let too_long_room = format!(r#"{{"sub": "a", "rooms": ["{}"]}}"#, "r".repeat(257));
    let bad = [
        "",
        "not json",
        "[]",
        r#"{}"#,
        r#"{"sub": ""}"#,
        r#"{"sub": 7}"#,
        r#"{"sub": " padded"}"#,
        r#"{"sub": "a\nb"}"#,
        r#"{"sub": "a\u0000"}"#,
        &long,
        r#"{"sub": "a", "rooms": []}"#,
        r#"{"sub": "a", "rooms": "chat:*"}"#,
        r#"{"sub": "a", "rooms": [""]}"#,
        r#"{"sub": "a", "rooms": ["a\tb"]}"#,
        &many,
        &too_long_room,
        r#"{"sub": "a", "admin": true}"#,
    ];
    for body in bad {
        let response = server.dev_token(body).await;
        assert_eq!(response.status, 400, "{body:?}: {}", response.text());
        assert!(response.json()["error"].as_str().is_some_and(|e| !e.is_empty()), "{body:?}");
    }
    // The largest name is fine; a body that is not declared JSON is not.
    let longest = format!(r#"{{"sub": "{}"}}"#, "x".repeat(64));
    assert_eq!(server.dev_token(&longest).await.status, 200);
    let form = http(server.addr, "POST", "/dev/token", &[("Content-Type", "text/plain")], br#"{"sub": "a"}"#).await;
    assert_eq!(form.status, 400);
    assert_eq!(form.json()["error"], "content-type must be application/json");
    let huge = format!(r#"{{"sub": "a", "rooms": ["{}"]}}"#, "r".repeat(10_000));
    assert_eq!(server.dev_token(&huge).await.status, 413);
    assert_eq!(get(server.addr, "/dev/token").await.status, 405);
    assert_eq!(server.auth.expiry().len(), 0);
}

#[tokio::test]
async fn without_the_setting_there_is_no_dev_token_endpoint() {
    let server = Server::start(|c| c.server.chat_page = true).await;
    assert_eq!(server.dev_token(r#"{"sub": "alice"}"#).await.status, 404);
    assert_eq!(get(server.addr, "/dev/token").await.status, 404);
    let page = get(server.addr, "/").await;
    assert_eq!(page.status, 200);
    assert!(page.text().contains(r#"<body data-token-endpoint="">"#), "{}", page.text());
}

#[test]
fn the_dev_token_endpoint_needs_the_secret() {
    for key_file in [false, true] {
        let mut config = Config::default();
        config.auth.dev_token_endpoint = true;
        if key_file {
            // A public key verifies tokens but cannot mint them.
            config.auth.jwt.public_key_file = "/nonexistent/jwt.pem".into();
        }
        let Err(e) = App::build(config) else { panic!("the server must not start") };
        assert!(matches!(e, AppError::Config(_)), "{e}");
        assert!(e.to_string().starts_with("auth.dev_token_endpoint: needs auth.jwt.secret"), "{e}");
    }
}
