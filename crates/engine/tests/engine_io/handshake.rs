//! Handshakes over both transports, the documented HTTP errors (codes 0, 1, 2, 3, 5) and CORS.

use crate::common::*;
use serde_json::json;
use switchyard_engine::{CorsConfig, EngineConfig};

#[tokio::test]
async fn polling_handshake_announces_session_and_settings() {
    let mut server = EchoServer::start(quick_heartbeat_config()).await;
    let res = get(server.addr, "/engine.io/?EIO=4&transport=polling&t=Ov1Jj2z").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("content-type"), Some("text/plain; charset=UTF-8"));
    let open = parse_open(res.text());
    let keys: Vec<&str> = open.as_object().expect("object").keys().map(String::as_str).collect();
    let mut sorted = keys.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, ["maxPayload", "pingInterval", "pingTimeout", "sid", "upgrades"]);
    let sid = open["sid"].as_str().expect("sid is a string");
    assert!(!sid.is_empty());
    assert_eq!(open["upgrades"], json!(["websocket"]));
    assert_eq!(open["pingInterval"], json!(300));
    assert_eq!(open["pingTimeout"], json!(200));
    assert_eq!(open["maxPayload"], json!(1000));
    assert_eq!(server.opened().await, sid, "the handler sees the announced sid");
}

#[tokio::test]
async fn websocket_handshake_sends_open_packet_without_upgrades() {
    let mut server = EchoServer::start(quick_heartbeat_config()).await;
    let (_ws, open) = WsClient::open_session(server.addr, EIO_PATH).await;
    assert_eq!(open["upgrades"], json!([]));
    assert_eq!(open["pingInterval"], json!(300));
    assert_eq!(open["pingTimeout"], json!(200));
    assert_eq!(open["maxPayload"], json!(1000));
    assert_eq!(server.opened().await, open["sid"].as_str().expect("sid"));
}

#[tokio::test]
async fn handshake_lists_no_upgrade_when_upgrades_are_disabled() {
    let server = EchoServer::start(EngineConfig { allow_upgrades: false, ..engine_config() }).await;
    let (_session, open) = Polling::open(server.addr, EIO_PATH).await;
    assert_eq!(open["upgrades"], json!([]));
}

#[tokio::test]
async fn every_handshake_gets_its_own_sid() {
    let server = EchoServer::start(engine_config()).await;
    let mut sids = std::collections::HashSet::new();
    for _ in 0..20 {
        let (session, _) = Polling::open(server.addr, EIO_PATH).await;
        assert!(sids.insert(session.sid.clone()), "sid {} handed out twice", session.sid);
    }
    let (_ws, open) = WsClient::open_session(server.addr, EIO_PATH).await;
    assert!(sids.insert(open["sid"].as_str().expect("sid").to_string()));
}

#[tokio::test]
async fn missing_or_unknown_transport_is_error_0() {
    let server = EchoServer::start(engine_config()).await;
    for target in [
        "/engine.io/?EIO=4",
        "/engine.io/?EIO=4&transport=",
        "/engine.io/?EIO=4&transport=flashsocket",
        "/engine.io/?EIO=4&transport=webtransport",
        "/engine.io/?EIO=4&transport=polling2",
    ] {
        get(server.addr, target).await.assert_engine_error(0, "Transport unknown");
    }
    // A WebSocket upgrade for an unknown transport is refused too.
    let refused = WsClient::connect(server.addr, "/engine.io/?EIO=4&transport=foo").await.err().expect("refused");
    refused.assert_engine_error(0, "Transport unknown");
}

#[tokio::test]
async fn disabled_transport_is_error_0() {
    let server = EchoServer::start(EngineConfig { allow_websocket: false, ..engine_config() }).await;
    let refused = WsClient::connect(server.addr, "/engine.io/?EIO=4&transport=websocket").await.err().expect("refused");
    refused.assert_engine_error(0, "Transport unknown");
    let (_session, open) = Polling::open(server.addr, EIO_PATH).await;
    assert_eq!(open["upgrades"], json!([]), "no websocket upgrade offered when websocket is disabled");

    let server = EchoServer::start(EngineConfig { allow_polling: false, ..engine_config() }).await;
    get(server.addr, "/engine.io/?EIO=4&transport=polling").await.assert_engine_error(0, "Transport unknown");
    WsClient::open_session(server.addr, EIO_PATH).await;
}

#[tokio::test]
async fn unknown_sid_is_error_1() {
    let server = EchoServer::start(engine_config()).await;
    let unknown = eio_url(EIO_PATH, "polling", Some("not-a-session"));
    get(server.addr, &unknown).await.assert_engine_error(1, "Session ID unknown");
    post(server.addr, &unknown, b"4hello").await.assert_engine_error(1, "Session ID unknown");
    // A well-formed sid that was never handed out.
    let (session, _) = Polling::open(server.addr, EIO_PATH).await;
    let mut forged: Vec<char> = session.sid.chars().collect();
    forged[0] = if forged[0] == 'A' { 'B' } else { 'A' };
    let forged: String = forged.into_iter().collect();
    get(server.addr, &eio_url(EIO_PATH, "polling", Some(&forged))).await.assert_engine_error(1, "Session ID unknown");
    // Without EIO, the sid is still looked up first.
    get(server.addr, "/engine.io/?transport=polling&sid=nope").await.assert_engine_error(1, "Session ID unknown");
}

#[tokio::test]
async fn handshake_with_another_method_is_error_2() {
    let server = EchoServer::start(engine_config()).await;
    let target = eio_url(EIO_PATH, "polling", None);
    post(server.addr, &target, b"4hello").await.assert_engine_error(2, "Bad handshake method");
    http(server.addr, "PUT", &target, &[], b"").await.assert_engine_error(2, "Bad handshake method");
    http(server.addr, "DELETE", &target, &[], b"").await.assert_engine_error(2, "Bad handshake method");
}

#[tokio::test]
async fn unexpected_requests_on_a_session_are_error_3() {
    let (server, session) = polling_session(engine_config()).await;
    http(server.addr, "PUT", &session.url(), &[], b"4x").await.assert_engine_error(3, "Bad request");
    // A plain GET (no upgrade headers) for the websocket transport.
    get(server.addr, "/engine.io/?EIO=4&transport=websocket").await.assert_engine_error(3, "Bad request");
    get(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid))).await.assert_engine_error(3, "Bad request");
    // A POST naming the other transport than the session's.
    post(server.addr, &eio_url(EIO_PATH, "websocket", Some(&session.sid)), b"4x")
        .await
        .assert_engine_error(3, "Bad request");
}

#[tokio::test]
async fn missing_or_unsupported_protocol_version_is_error_5() {
    let server = EchoServer::start(engine_config()).await;
    for target in [
        "/engine.io/?transport=polling",
        "/engine.io/?EIO=&transport=polling",
        "/engine.io/?EIO=3&transport=polling",
        "/engine.io/?EIO=5&transport=polling",
        "/engine.io/?EIO=four&transport=polling",
    ] {
        get(server.addr, target).await.assert_engine_error(5, "Unsupported protocol version");
    }
    let refused = WsClient::connect(server.addr, "/engine.io/?EIO=3&transport=websocket").await.err().expect("refused");
    assert_eq!(refused.status, 400);
    let refused = WsClient::connect(server.addr, "/engine.io/?transport=websocket").await.err().expect("refused");
    assert_eq!(refused.status, 400);
}

#[tokio::test]
async fn errors_are_checked_in_documented_order() {
    let server = EchoServer::start(engine_config()).await;
    // Transport before sid, sid before method, method before version.
    get(server.addr, "/engine.io/?EIO=3&transport=foo&sid=nope").await.assert_engine_error(0, "Transport unknown");
    post(server.addr, "/engine.io/?EIO=3&transport=polling&sid=nope", b"x")
        .await
        .assert_engine_error(1, "Session ID unknown");
    post(server.addr, "/engine.io/?EIO=3&transport=polling", b"x").await.assert_engine_error(2, "Bad handshake method");
}

#[tokio::test]
async fn cors_headers_for_any_origin() {
    let server = EchoServer::start(EngineConfig { cors: Some(CorsConfig::any()), ..engine_config() }).await;
    let origin = [("Origin", "http://client.example")];
    let res = http(server.addr, "GET", &eio_url(EIO_PATH, "polling", None), &origin, b"").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let sid = parse_open(res.text())["sid"].as_str().expect("sid").to_string();

    let url = eio_url(EIO_PATH, "polling", Some(&sid));
    let res = http(server.addr, "POST", &url, &[("Origin", "http://client.example")], b"4hi").await;
    assert_eq!((res.status, res.text()), (200, "ok"));
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let res = http(server.addr, "GET", &url, &origin, b"").await;
    assert_eq!(res.text(), "4hi");
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));

    // Errors carry the headers too, so browsers can read them.
    let res = http(server.addr, "GET", "/engine.io/?EIO=4&transport=foo", &origin, b"").await;
    res.assert_engine_error(0, "Transport unknown");
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn cors_preflight_is_answered() {
    let server = EchoServer::start(EngineConfig { cors: Some(CorsConfig::any()), ..engine_config() }).await;
    let headers = [
        ("Origin", "http://client.example"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type"),
    ];
    let res = http(server.addr, "OPTIONS", &eio_url(EIO_PATH, "polling", None), &headers, b"").await;
    assert_eq!(res.status, 204);
    assert_eq!(res.header("access-control-allow-origin"), Some("*"));
    let methods = res.header("access-control-allow-methods").expect("allowed methods").to_ascii_uppercase();
    assert!(
        methods.split(',').any(|m| m.trim() == "GET") && methods.split(',').any(|m| m.trim() == "POST"),
        "{methods}"
    );
    let allowed = res.header("access-control-allow-headers").expect("allowed headers").to_ascii_lowercase();
    assert!(allowed.contains("content-type"), "{allowed}");
}

#[tokio::test]
async fn cors_with_an_origin_list_and_credentials() {
    let cors = CorsConfig { origins: vec!["http://good.example".into()], credentials: true };
    let server = EchoServer::start(EngineConfig { cors: Some(cors), ..engine_config() }).await;
    let target = eio_url(EIO_PATH, "polling", None);
    let res = http(server.addr, "GET", &target, &[("Origin", "http://good.example")], b"").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), Some("http://good.example"));
    assert_eq!(res.header("access-control-allow-credentials"), Some("true"));

    let res = http(server.addr, "GET", &target, &[("Origin", "http://evil.example")], b"").await;
    assert_eq!(res.header("access-control-allow-origin"), None, "a foreign origin is not allowed");

    let preflight = [("Origin", "http://evil.example"), ("Access-Control-Request-Method", "POST")];
    let res = http(server.addr, "OPTIONS", &target, &preflight, b"").await;
    assert_eq!(res.header("access-control-allow-origin"), None);
}

#[tokio::test]
async fn no_cors_headers_unless_configured() {
    let server = EchoServer::start(engine_config()).await;
    let target = eio_url(EIO_PATH, "polling", None);
    let res = http(server.addr, "GET", &target, &[("Origin", "http://client.example")], b"").await;
    assert_eq!(res.status, 200);
    assert_eq!(res.header("access-control-allow-origin"), None);
}
