//! The web chat served at `/`: the page (assets/, with its own small Socket.IO client) and its
//! server side. The event contract is written at the top of assets/chat.js.

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use switchyard_socketio::{AckSender, Socket, SocketIo};

const INDEX_HTML: &str = include_str!("../assets/index.html");
const CHAT_JS: &str = include_str!("../assets/chat.js");
const CHAT_CSS: &str = include_str!("../assets/chat.css");

pub const MAX_MESSAGE_CHARS: usize = 2000;
const MAX_NAME_CHARS: usize = 32;
const MAX_ROOM_CHARS: usize = 64;

/// Routes for the page and its assets.
pub fn routes() -> Router {
    Router::new()
        .route(
            "/",
            get(|| async { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX_HTML).into_response() }),
        )
        .route(
            "/chat.js",
            get(|| async { ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], CHAT_JS).into_response() }),
        )
        .route(
            "/chat.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CHAT_CSS).into_response() }),
        )
}

fn valid_text(value: Option<&Value>, max_chars: usize) -> Option<String> {
    let text = value?.as_str()?.trim();
    let chars = text.chars().count();
    (chars > 0 && chars <= max_chars).then(|| text.to_string())
}

fn reject(ack: Option<AckSender>, error: &str) {
    if let Some(ack) = ack {
        ack.send(json!({"ok": false, "error": error}));
    }
}

/// The chat member a socket is: `{name, room}` in its data.
fn member(socket: &Socket) -> Option<(String, String)> {
    let data = socket.data();
    Some((data.get("name")?.as_str()?.to_string(), data.get("room")?.as_str()?.to_string()))
}

/// Registers the chat events on the main namespace.
pub fn install(io: &SocketIo) {
    let message_ids = Arc::new(AtomicU64::new(1));
    io.of("/").on_connection(move |socket| {
        let ids = message_ids.clone();
        socket.on("chat:join", |socket, payload, ack| {
            let (Some(room), Some(name)) =
                (valid_text(payload.args.first(), MAX_ROOM_CHARS), valid_text(payload.args.get(1), MAX_NAME_CHARS))
            else {
                return reject(ack, "room and name must be non-empty strings");
            };
            if let Some((old_name, old_room)) = member(socket) {
                socket.leave(&old_room);
                socket
                    .to(old_room.as_str())
                    .emit("chat:system", json!({"room": old_room, "text": format!("{old_name} left")}));
            }
            if socket.join(room.as_str()).is_err() {
                return reject(ack, "too many rooms");
            }
            socket.set_data(json!({"name": name, "room": room}));
            let mut members: Vec<String> =
                socket.ns().to(room.as_str()).local_sockets().iter().filter_map(|s| member(s).map(|m| m.0)).collect();
            members.sort();
            if let Some(ack) = ack {
                ack.send(json!({"room": room, "members": members}));
            }
            socket.ns().to(room.as_str()).emit("chat:system", json!({"room": room, "text": format!("{name} joined")}));
        });
        socket.on("chat:message", move |socket, payload, ack| {
            let Some((name, joined)) = member(socket) else {
                return reject(ack, "join a room first");
            };
            if payload.args.first().and_then(Value::as_str) != Some(joined.as_str()) {
                return reject(ack, "not in that room");
            }
            let Some(text) = valid_text(payload.args.get(1), MAX_MESSAGE_CHARS) else {
                return reject(ack, "message must be 1 to 2000 characters");
            };
            let at = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or_default();
            let id = ids.fetch_add(1, Ordering::Relaxed).to_string();
            socket
                .ns()
                .to(joined.as_str())
                .emit("chat:message", json!({"room": joined, "name": name, "text": text, "at": at, "id": id}));
            if let Some(ack) = ack {
                ack.send(json!({"ok": true}));
            }
        });
        socket.on_disconnect(|socket, _reason| {
            if let Some((name, room)) = member(socket) {
                socket
                    .ns()
                    .to(room.as_str())
                    .emit("chat:system", json!({"room": room, "text": format!("{name} left")}));
            }
        });
    });
}
