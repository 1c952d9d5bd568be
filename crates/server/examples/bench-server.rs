//! The server that `switchyard-bench` measures. Namespace `/`:
//! `join`(room), `leave`(room), `msg`(room, payload) -> `msg`(payload) to the room but the sender,
//! `echo`(payload, ack) -> ack(payload). Port from `PORT` (default 3000).
//!
//! With `REDIS_URL` (or `REDIS_CLUSTER_NODES`) set it joins a cluster through Redis, in
//! `REDIS_MODE=classic` (default) or `sharded` mode, so benchmarks and tests start cluster nodes alike.

use axum::Router;
use serde_json::Value;
use switchyard_socketio::{Payload, SocketIo, SocketIoConfig};

fn room_arg(payload: &Payload) -> Option<&str> {
    payload.args.first().and_then(Value::as_str)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    switchyard::init_tracing();
    let cluster = switchyard::cluster::ClusterArgs::from_env().map_err(std::io::Error::other)?;
    let builder = SocketIo::builder().config(SocketIoConfig::default());
    let (io, _node) = switchyard::cluster::configure(builder, &cluster).map_err(std::io::Error::other)?;
    io.of("/").on_connection(|socket| {
        socket.on("join", |socket, payload, _| {
            if let Some(room) = room_arg(&payload) {
                socket.join(room);
            }
        });
        socket.on("leave", |socket, payload, _| {
            if let Some(room) = room_arg(&payload) {
                socket.leave(room);
            }
        });
        socket.on("msg", |socket, mut payload, _| {
            let Some(room) = room_arg(&payload).map(str::to_owned) else { return };
            payload.args.remove(0);
            socket.to(room).emit("msg", payload);
        });
        socket.on("echo", |_, payload, ack| {
            if let Some(ack) = ack {
                ack.send(payload);
            }
        });
    });
    let app = Router::new().route_service("/socket.io/", io.service());
    let port = switchyard::port_from_env(3000);
    let listener = tokio::net::TcpListener::bind(("0.0.0.0", port)).await?;
    tracing::info!(port, "bench server listening");
    switchyard::serve(listener, app, switchyard::shutdown_signal()).await
}
