//! Emitting to a cluster's clients from any process, without running a server: the format of Node's
//! `@socket.io/redis-emitter` (uid `"emitter"`), in classic mode, or the cluster-adapter format over
//! SPUBLISH in sharded mode.
//!
//! ```no_run
//! # async fn run() -> Result<(), switchyard_redis::EmitterError> {
//! use switchyard_redis::{Emitter, Mode, RedisTarget};
//! let emitter = Emitter::connect(RedisTarget::Single("redis://127.0.0.1/".into()), "socket.io", Mode::Classic).await?;
//! emitter.of("/").to("room1").emit("news", serde_json::json!({"title": "hello"})).await?;
//! # Ok(()) }
//! ```

use crate::connection::{Conn, RedisTarget};
use crate::convert;
use crate::format::classic::{kind as classic, Classic};
use crate::format::sharded::{kind as sharded, Sharded};
use crate::Mode;
use serde_json::{json, Value};
use std::sync::Arc;
use switchyard_protocol::cluster::wire;
use switchyard_socketio::{BroadcastOptions, Payload, Room};

/// The uid Node's emitter publishes under.
pub const EMITTER_UID: &str = "emitter";

#[derive(Debug, thiserror::Error)]
pub enum EmitterError {
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("\"{0}\" is a reserved event name")]
    ReservedEvent(String),
}

struct Inner {
    conn: Conn,
    prefix: String,
    mode: Mode,
}

/// A connection to Redis that publishes like a cluster member. Cheap to clone.
#[derive(Clone)]
pub struct Emitter {
    inner: Arc<Inner>,
}

impl Emitter {
    pub async fn connect(target: RedisTarget, key_prefix: &str, mode: Mode) -> Result<Self, EmitterError> {
        let conn = target.connect(None).await?;
        Ok(Emitter { inner: Arc::new(Inner { conn, prefix: key_prefix.to_string(), mode }) })
    }

    /// Targets namespace `nsp` (`/` is the main one).
    pub fn of(&self, nsp: &str) -> EmitOperator {
        let nsp = if nsp.starts_with('/') { nsp.to_string() } else { format!("/{nsp}") };
        EmitOperator { inner: self.inner.clone(), nsp, opts: BroadcastOptions::default() }
    }
}

/// Who an emission reaches: `to` rooms (everyone when none), minus `except` rooms.
#[derive(Clone)]
pub struct EmitOperator {
    inner: Arc<Inner>,
    nsp: String,
    opts: BroadcastOptions,
}

impl EmitOperator {
    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    pub fn except(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.except.contains(&room) {
            self.opts.except.push(room);
        }
        self
    }

    pub fn volatile(mut self) -> Self {
        self.opts.flags.volatile = true;
        self
    }

    fn request_channel(&self) -> String {
        Classic::request_channel(&self.inner.prefix, &self.nsp)
    }

    async fn publish(&self, channel: String, message: Vec<u8>) -> Result<(), EmitterError> {
        let verb = if self.inner.mode == Mode::Sharded { "SPUBLISH" } else { "PUBLISH" };
        let mut cmd = redis::cmd(verb);
        cmd.arg(channel).arg(message);
        let mut conn = self.inner.conn.clone();
        conn.query(&cmd).await?;
        Ok(())
    }

    /// A cluster-adapter message on the namespace channel (Node's emitter has no room channels).
    async fn publish_cluster(&self, kind: u64, data: Value, payload: Option<&Payload>) -> Result<(), EmitterError> {
        let binary = payload.map_or(&[][..], |p| &p.binary[..]);
        let bytes = Sharded::message(EMITTER_UID, &self.nsp, kind, Some(data), binary);
        self.publish(Sharded::namespace_channel(&self.inner.prefix, &self.nsp), bytes).await
    }

    fn filter(&self) -> Value {
        convert::rooms_filter(&self.opts)
    }

    /// Emits `event` to the selected clients on every server (one publish).
    pub async fn emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitterError> {
        if switchyard_socketio::engine::protocol::socketio::RESERVED_EVENTS.contains(&event) {
            return Err(EmitterError::ReservedEvent(event.to_string()));
        }
        let payload = payload.into();
        match self.inner.mode {
            Mode::Classic => {
                let mut message =
                    Classic::broadcast(&self.inner.prefix, EMITTER_UID, &self.nsp, event, &payload, &self.opts);
                let (channel, payload) = (std::mem::take(&mut message.channel), std::mem::take(&mut message.payload));
                self.publish(channel, payload).await
            }
            Mode::Sharded => {
                let body = json!({
                    "packet": wire::packet_json(&self.nsp, event, &payload.args),
                    "opts": convert::options_json(&self.opts),
                });
                self.publish_cluster(sharded::BROADCAST, body, Some(&payload)).await
            }
        }
    }

    /// Makes the selected sockets join `rooms`, on every server.
    pub async fn sockets_join(&self, rooms: &[&str]) -> Result<(), EmitterError> {
        self.rooms_change(rooms, false).await
    }

    pub async fn sockets_leave(&self, rooms: &[&str]) -> Result<(), EmitterError> {
        self.rooms_change(rooms, true).await
    }

    async fn rooms_change(&self, rooms: &[&str], leave: bool) -> Result<(), EmitterError> {
        match self.inner.mode {
            Mode::Classic => {
                let kind = if leave { classic::REMOTE_LEAVE } else { classic::REMOTE_JOIN };
                let request = json!({"type": kind, "opts": self.filter(), "rooms": rooms});
                self.publish(self.request_channel(), request.to_string().into_bytes()).await
            }
            Mode::Sharded => {
                let kind = if leave { sharded::SOCKETS_LEAVE } else { sharded::SOCKETS_JOIN };
                self.publish_cluster(kind, json!({"opts": convert::options_json(&self.opts), "rooms": rooms}), None)
                    .await
            }
        }
    }

    /// Disconnects the selected sockets; with `close`, their whole connections.
    pub async fn disconnect_sockets(&self, close: bool) -> Result<(), EmitterError> {
        match self.inner.mode {
            Mode::Classic => {
                let request = json!({"type": classic::REMOTE_DISCONNECT, "opts": self.filter(), "close": close});
                self.publish(self.request_channel(), request.to_string().into_bytes()).await
            }
            Mode::Sharded => {
                let data = json!({"opts": convert::options_json(&self.opts), "close": close});
                self.publish_cluster(sharded::DISCONNECT_SOCKETS, data, None).await
            }
        }
    }

    /// Sends `event` to the servers' server-side handlers (no acknowledgement, as in Node).
    pub async fn server_side_emit(&self, event: &str, payload: impl Into<Payload>) -> Result<(), EmitterError> {
        let payload = payload.into();
        match self.inner.mode {
            Mode::Classic => {
                let request = json!({"uid": EMITTER_UID, "type": classic::SERVER_SIDE_EMIT, "data": wire::server_side_data(event, &payload.args, &payload.binary)});
                self.publish(self.request_channel(), request.to_string().into_bytes()).await
            }
            Mode::Sharded => {
                let packet = wire::event_data(event, &payload.args);
                self.publish_cluster(sharded::SERVER_SIDE_EMIT, json!({"packet": packet}), Some(&payload)).await
            }
        }
    }
}
