//! The development mode's live events, from the Socket.IO layer's observer hooks. Every hook first
//! reads one flag ([`Inner::watching`]): with no admin socket connected anywhere in the cluster it
//! builds and sends nothing. The shapes are those of Node's `instrument()`:
//!
//! - `socket_connected`(socket, date): at connect, before the namespace's connection handler, with
//!   the rooms the socket is in at that moment; a room joined later is a `room_joined`, so the UI
//!   sees each membership once.
//! - `socket_updated`({id, nsp, transport}) on the upgrade to WebSocket, ({id, nsp, data}) when
//!   [`Socket::set_data`] replaced the data.
//! - `room_left`(nsp, room, id, date) for every room a disconnecting socket leaves, then
//!   `socket_disconnected`(nsp, id, reason, date), then `room_left` for its own room, so the UI keeps
//!   no stale room.
//! - `event_received`(nsp, id, [event, ...args], date) and `event_sent` (one per recipient on this
//!   server, for emits to one socket and broadcasts), never for the admin namespace's own sockets.
//!
//! Development mode also keeps `_admin: {clientId, transport}` in each socket's data (as Node does),
//! so that servers fetching the socket from this node (Switchyard or Node) can show it.

use super::{client_id, iso_now, serialize, transport_name, visible_data, Inner, ADMIN_DATA_KEY};
use serde_json::{json, Value};
use std::cell::Cell;
use std::sync::Arc;
use switchyard_socketio::{BroadcastOptions, DisconnectReason, Namespace, Observer, Payload, Room, Socket};

/// The observer of the development mode.
pub(crate) struct LiveEvents(pub(crate) Arc<Inner>);

thread_local! {
    /// Set while this module writes `_admin` into a socket's data: that write is not a user's
    /// data change and makes no `socket_updated`.
    static OWN_WRITE: Cell<bool> = const { Cell::new(false) };
}

/// Writes `_admin` into the socket's data (when the data is an object or nothing yet).
fn stamp(socket: &Socket, transport: &str) {
    let mut data = socket.data();
    let admin = json!({"clientId": client_id(socket), "transport": transport});
    match &mut data {
        Value::Object(map) => {
            if map.get(ADMIN_DATA_KEY) == Some(&admin) {
                return;
            }
            map.insert(ADMIN_DATA_KEY.into(), admin);
        }
        Value::Null => data = json!({ ADMIN_DATA_KEY: admin }),
        // Data that is not an object has no room for it: fetched elsewhere, the socket shows its id.
        _ => return,
    }
    OWN_WRITE.with(|w| w.set(true));
    socket.set_data(data);
    OWN_WRITE.with(|w| w.set(false));
}

impl LiveEvents {
    fn event(&self, kind: &str, args: Vec<Value>) {
        self.0.broadcast(kind, args);
    }

    /// `event_received` / `event_sent`: `[event, ...args]`, binary attachments carried along.
    fn event_args(&self, kind: &str, socket: &Socket, event: &str, payload: &Payload) {
        let mut list = Vec::with_capacity(payload.args.len() + 1);
        list.push(Value::String(event.to_string()));
        list.extend(payload.args.iter().cloned());
        let args = vec![
            Value::String(socket.ns().name().to_string()),
            Value::String(socket.id().to_string()),
            Value::Array(list),
            Value::String(iso_now()),
        ];
        self.0.ns.emit(kind, Payload { args, binary: payload.binary.clone() });
    }
}

impl Observer for LiveEvents {
    fn on_connect(&self, socket: &Socket) {
        stamp(socket, transport_name(socket));
        if self.0.watching() {
            let args = Payload::new(vec![serialize(socket), Value::String(iso_now())]);
            if self.0.is_admin_ns(socket.ns()) {
                // Observers run before the CONNECT reply: a connecting admin socket learns of itself
                // from `all_sockets`, never from an event ahead of its CONNECT.
                self.0.ns.except(socket.id().as_str()).emit("socket_connected", args);
            } else {
                self.0.ns.emit("socket_connected", args);
            }
        }
    }

    fn on_upgrade(&self, socket: &Socket) {
        stamp(socket, "websocket");
        if self.0.watching() {
            let update = json!({"id": socket.id().as_str(), "nsp": socket.ns().name(), "transport": "websocket"});
            self.event("socket_updated", vec![update]);
        }
    }

    fn on_data(&self, socket: &Socket) {
        if OWN_WRITE.with(Cell::get) {
            return;
        }
        // The application (or a recovered session) replaced the data: keep this connection's
        // `_admin` in it; the write below reports the change.
        stamp(socket, transport_name(socket));
        let data = socket.data();
        if self.0.watching() {
            let update = json!({"id": socket.id().as_str(), "nsp": socket.ns().name(), "data": visible_data(data)});
            self.event("socket_updated", vec![update]);
        }
    }

    fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        if self.0.watching() {
            let (nsp, id) = (socket.ns().name(), socket.id().to_string());
            self.event("socket_disconnected", vec![json!(nsp), json!(id), json!(reason.as_str()), json!(iso_now())]);
            // The socket's own room, which has no leave of its own.
            self.event("room_left", vec![json!(nsp), json!(id), json!(id), json!(iso_now())]);
        }
    }

    fn on_join(&self, socket: &Socket, room: &Room) {
        if self.0.watching() {
            let args = vec![json!(socket.ns().name()), json!(&**room), json!(socket.id().as_str()), json!(iso_now())];
            self.event("room_joined", args);
        }
    }

    fn on_leave(&self, socket: &Socket, room: &Room) {
        if self.0.watching() {
            let args = vec![json!(socket.ns().name()), json!(&**room), json!(socket.id().as_str()), json!(iso_now())];
            self.event("room_left", args);
        }
    }

    fn on_event(&self, socket: &Socket, event: &str, payload: &Payload) {
        if self.0.watching() && !self.0.is_admin_ns(socket.ns()) {
            self.event_args("event_received", socket, event, payload);
        }
    }

    fn on_emit(&self, socket: &Socket, event: &str, payload: &Payload) {
        if self.0.watching() && !self.0.is_admin_ns(socket.ns()) {
            self.event_args("event_sent", socket, event, payload);
        }
    }

    fn on_broadcast(&self, ns: &Namespace, opts: &BroadcastOptions, event: &str, payload: &Payload, recipients: usize) {
        if recipients == 0 || !self.0.watching() || self.0.is_admin_ns(ns) {
            return;
        }
        for socket in ns.local_targets(opts) {
            self.event_args("event_sent", &socket, event, payload);
        }
    }
}
