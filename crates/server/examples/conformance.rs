//! Serves the reference behaviours of the official Engine.IO v4 and Socket.IO v5 conformance suites
//! (socket.io monorepo, `docs/*/v*-test-suite`) on port 3000 (or `PORT`):
//! an Engine.IO echo server at `/engine.io/` and the Socket.IO server at `/socket.io/`.

use axum::Router;
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::{
    CloseReason, Connection, CorsConfig, Engine, EngineConfig, Frame, Handler, Incoming, OpenRequest,
};
use switchyard_socketio::{SocketIo, SocketIoConfig};

/// Sends every message back.
struct Echo;

impl Handler for Echo {
    type Client = Connection;

    fn on_open(&self, conn: Arc<Connection>, _req: OpenRequest) -> Arc<Connection> {
        conn
    }

    fn on_message(&self, conn: &Arc<Connection>, message: Incoming) {
        let frame = match message {
            Incoming::Text(text) => Frame::message(&text),
            Incoming::Binary(data) => Frame::binary(&data),
        };
        let _ = conn.send(frame);
    }

    fn on_close(&self, _conn: &Arc<Connection>, _reason: CloseReason) {}
}

fn engine_config() -> EngineConfig {
    EngineConfig {
        ping_interval: Duration::from_millis(300),
        ping_timeout: Duration::from_millis(200),
        max_payload: 1_000_000,
        cors: Some(CorsConfig::any()),
        ..EngineConfig::default()
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    switchyard::init_tracing();
    let echo = Engine::new(engine_config(), Echo);
    let io = SocketIo::new(SocketIoConfig {
        engine: engine_config(),
        connect_timeout: Duration::from_millis(1000),
        ..Default::default()
    });
    for name in ["/", "/custom"] {
        io.of(name).on_connection(|socket| {
            let _ = socket.emit("auth", socket.auth().clone());
            socket.on("message", |socket, payload, _ack| {
                let _ = socket.emit("message-back", payload);
            });
            socket.on("message-with-ack", |_socket, payload, ack| {
                if let Some(ack) = ack {
                    ack.send(payload);
                }
            });
        });
    }
    let app = Router::new().route_service("/engine.io/", echo.service()).route_service("/socket.io/", io.service());
    let port = switchyard::port_from_env(3000);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, "conformance server listening");
    switchyard::serve(listener, app, switchyard::shutdown_signal()).await
}
