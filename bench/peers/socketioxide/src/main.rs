//! socketioxide peer for the Switchyard benchmark. Same handlers as every server under test, on "/":
//! `join`(room), `leave`(room), `msg`(room, payload) -> `msg`(payload) to the room except the sender,
//! `echo`(payload, ack) -> ack(payload). Listens on 127.0.0.1:$PORT (default 3000), default options.

use serde_json::Value;
use socketioxide::extract::{AckSender, Data, SocketRef};
use socketioxide::SocketIo;

async fn on_connect(socket: SocketRef) {
    socket.on("join", |socket: SocketRef, Data::<String>(room)| async move {
        socket.join(room);
    });
    socket.on("leave", |socket: SocketRef, Data::<String>(room)| async move {
        socket.leave(room);
    });
    socket.on(
        "msg",
        |socket: SocketRef, Data::<(String, Value)>((room, payload))| async move {
            if let Err(err) = socket.to(room).emit("msg", &payload).await {
                eprintln!("broadcast failed: {err}");
            }
        },
    );
    socket.on("echo", |Data::<Value>(payload), ack: AckSender| async move {
        if let Err(err) = ack.send(&payload) {
            eprintln!("ack failed: {err}");
        }
    });
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let port: u16 = match std::env::var("PORT") {
        Ok(text) => text.parse().map_err(|_| format!("invalid PORT: {text}"))?,
        Err(_) => 3000,
    };
    let (layer, io) = SocketIo::new_layer();
    io.ns("/", on_connect);
    let app = axum::Router::new().layer(layer);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("socketioxide peer listening on 127.0.0.1:{port}");
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
