//! The admin namespace in process, at the wire: what the official client cannot provoke in the
//! `switchyard` binary (an application that replaces a socket's data). The full contract with the
//! official client and UI is tests/admin.

use serde_json::{json, Value};
use switchyard::config::Loader;
use switchyard_fixtures::{sio_config, within, SioServer, WsClient};

/// The next event named `event` on `ws` (an admin connection), as its arguments.
async fn next_event(ws: &mut WsClient, event: &str) -> Vec<Value> {
    let prefix = "2/admin,";
    loop {
        let packet = within(event, ws.sio_recv()).await;
        let Some(rest) = packet.strip_prefix(prefix) else { continue };
        let Ok(Value::Array(mut args)) = serde_json::from_str::<Value>(rest) else { continue };
        if args.first() == Some(&json!(event)) {
            args.remove(0);
            return args;
        }
    }
}

#[tokio::test]
async fn replaced_data_is_a_socket_updated_and_keeps_the_admin_key_out_of_sight() {
    let config = Loader::new()
        .flag("admin.enabled", "true")
        .flag("admin.auth", "none")
        .flag("admin.mode", "development")
        .load()
        .expect("valid configuration");
    let server = SioServer::start(sio_config(), move |io| {
        let admin = switchyard::admin::Admin::new(&config, io).expect("admin").expect("enabled");
        assert_eq!(admin.namespace().name(), "/admin");
        io.of("/").on_connection(|socket| {
            socket.on("set", |socket, payload, _| {
                socket.set_data(payload.args.first().cloned().unwrap_or(Value::Null));
            });
        });
    })
    .await;
    let (mut admin, _) = server.connect("/admin", Some("{}")).await;
    let config = next_event(&mut admin, "config").await;
    assert!(config[0]["supportedFeatures"].as_array().unwrap().contains(&json!("ALL_EVENTS")));
    next_event(&mut admin, "all_sockets").await;

    let (mut client, id) = server.connect("/", None).await;
    let connected = next_event(&mut admin, "socket_connected").await;
    assert_eq!(connected[0]["id"], json!(id));
    assert_eq!(connected[0]["data"], json!({}));
    client.sio_send(r#"2["set",{"user":"ada","level":{"n":1}}]"#).await;
    let updated = next_event(&mut admin, "socket_updated").await;
    assert_eq!(updated[0], json!({"id": id, "nsp": "/", "data": {"user": "ada", "level": {"n": 1}}}));

    // The socket keeps `_admin` for the cluster's fetch-sockets, never shown to the UI.
    let socket = server.io.of("/").local_sockets().pop().expect("the client's socket");
    let data = socket.data();
    assert_eq!(data["_admin"]["transport"], json!("websocket"));
    assert_eq!(data["_admin"]["clientId"].as_str().map(str::len), Some(12));
    let (mut second, _) = server.connect("/admin", Some("{}")).await;
    let all = next_event(&mut second, "all_sockets").await;
    let listed = all[0].as_array().unwrap().iter().find(|s| s["id"] == json!(id)).expect("listed").clone();
    assert_eq!(listed["data"], json!({"user": "ada", "level": {"n": 1}}));
}
