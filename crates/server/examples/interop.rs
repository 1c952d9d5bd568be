//! The server behind the interop tests with the official Node client (tests/node). Its handlers follow
//! the contract written in tests/node/README or the test files; PORT selects the port (default 3000).

use axum::Router;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{CloseReason, CorsConfig, EngineConfig};
use switchyard_socketio::{ConnectError, Payload, RecoveryConfig, Socket, SocketIo, SocketIoConfig};

fn hello(socket: &Arc<Socket>, with_query: bool) {
    let mut hello = json!({
        "id": socket.id().as_str(),
        "nsp": socket.ns().name(),
        "auth": socket.auth(),
    });
    if with_query {
        let query: serde_json::Map<String, Value> = socket
            .handshake()
            .query()
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "EIO" | "transport" | "t"))
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        hello["query"] = Value::Object(query);
    }
    let _ = socket.emit("hello", hello);
}

fn on_echo(socket: &Arc<Socket>) {
    socket.on("echo", |socket, payload, _| {
        let _ = socket.emit("echo", payload);
    });
}

fn sorted_rooms(socket: &Socket) -> Value {
    let mut rooms: Vec<String> = socket.rooms().iter().map(|r| r.to_string()).collect();
    rooms.sort();
    json!(rooms)
}

fn main_namespace(io: &SocketIo) {
    let ns = io.of("/");
    ns.use_middleware(|socket| async move {
        if socket.auth().get("token").and_then(Value::as_str) == Some("bad") {
            return Err(ConnectError::new("unauthorized").with_data(json!({"reason": "bad token"})));
        }
        Ok(())
    });
    let io = io.clone();
    ns.on_connection(move |socket| {
        hello(&socket, true);
        if socket.recovered() {
            let _ = socket.emit("recovered", json!({"id": socket.id().as_str(), "rooms": sorted_rooms(&socket)}));
        }
        on_echo(&socket);
        socket.on("echo-ack", |_, payload, ack| {
            if let Some(ack) = ack {
                ack.send(payload);
            }
        });
        socket.on("server-ack", |socket, payload, _| {
            let socket = socket.clone();
            tokio::spawn(async move {
                let result = match socket.emit_with_ack("ask", payload, Duration::from_millis(2000)).await {
                    Ok(answer) => Payload { args: answer.args.into_iter().take(1).collect(), binary: answer.binary },
                    Err(_) => Payload::from(json!({"error": "timeout"})),
                };
                let _ = socket.emit("server-ack-result", result);
            });
        });
        socket.on("join", |socket, payload, ack| {
            if let Some(room) = payload.args.first().and_then(Value::as_str) {
                socket.join(room);
            }
            if let Some(ack) = ack {
                ack.send(sorted_rooms(socket));
            }
        });
        socket.on("leave", |socket, payload, ack| {
            if let Some(room) = payload.args.first().and_then(Value::as_str) {
                socket.leave(room);
            }
            if let Some(ack) = ack {
                ack.send(sorted_rooms(socket));
            }
        });
        let room_io = io.clone();
        socket.on("to-room", move |_, mut payload, _| {
            if payload.args.is_empty() {
                return;
            }
            let room = payload.args.remove(0);
            if let Some(room) = room.as_str() {
                room_io.to(room).emit("room-msg", payload);
            }
        });
        socket.on("broadcast", |socket, payload, _| {
            socket.broadcast().emit("broadcast", payload);
        });
        let ack_io = io.clone();
        socket.on("broadcast-ack", move |_, payload, ack| {
            let io = ack_io.clone();
            tokio::spawn(async move {
                let (timed_out, responses) =
                    match io.timeout(Duration::from_millis(1000)).emit_with_ack("ping-all", payload).await {
                        Ok(responses) => (false, responses),
                        Err(e) => (true, e.responses),
                    };
                let responses: Vec<Value> =
                    responses.into_iter().map(|p| p.args.into_iter().next().unwrap_or(Value::Null)).collect();
                if let Some(ack) = ack {
                    ack.send(json!({"timedOut": timed_out, "responses": responses}));
                }
            });
        });
        socket.on("disconnect-me", |socket, _, _| socket.disconnect(false));
        socket.on("close-conn", |socket, _, _| socket.client().connection().close(CloseReason::ForcedClose));
        socket.on("binary", |socket, _, _| {
            let mut payload = Payload::empty().push_binary(vec![1u8, 2, 3]);
            let nested = payload.attach(vec![4u8, 5]);
            let listed = payload.attach(vec![6u8]);
            payload.args.push(json!({"nested": nested, "list": [listed]}));
            let _ = socket.emit("binary", payload);
        });
    });
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    switchyard::init_tracing();
    let engine = EngineConfig {
        ping_interval: Duration::from_millis(2000),
        ping_timeout: Duration::from_millis(2000),
        cors: Some(CorsConfig::any()),
        ..EngineConfig::default()
    };
    // INTEROP_RECOVERY=1 turns on connection state recovery (tests/node/test/recovery.test.js).
    let recovery = std::env::var("INTEROP_RECOVERY").is_ok_and(|v| v == "1").then(RecoveryConfig::default);
    let io = SocketIo::new(SocketIoConfig { engine, recovery, ..Default::default() });
    main_namespace(&io);
    io.of("/second").on_connection(|socket| {
        hello(&socket, false);
        on_echo(&socket);
    });
    io.of("/private").use_middleware(|_| async { Err(ConnectError::new("forbidden").with_data(json!({"code": 403}))) });
    let dynamic = io.dynamic_namespace(|name| {
        name.strip_prefix("/dyn-").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    });
    dynamic.on_connection(|socket| hello(&socket, false));
    let app = Router::new().route_service("/socket.io/", io.service());
    let port = switchyard::port_from_env(3000);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    tracing::info!(port, "interop server listening");
    switchyard::serve(listener, app, switchyard::shutdown_signal()).await
}
