//! The Socket.IO v5 server layer on top of the Switchyard engine: namespaces (static and dynamic),
//! sockets with handshake and data, rooms, events, acknowledgements both ways, broadcast operators,
//! connect middleware, disconnect reasons, and the [`Adapter`] trait that a cluster adapter implements.
//!
//! ```no_run
//! use switchyard_socketio::{SocketIo, Payload};
//! let io = SocketIo::new(Default::default());
//! io.of("/").on_connection(|socket| {
//!     socket.on("message", |socket, payload, ack| {
//!         socket.emit("message-back", payload.clone()).ok();
//!         if let Some(ack) = ack { ack.send(payload); }
//!     });
//! });
//! // axum::Router::new().route_service("/socket.io/", io.service())
//! ```

mod adapter;
mod client;
mod config;
mod namespace;
mod operators;
mod payload;
mod recovery;
mod server;
mod socket;

pub use adapter::{
    local_broadcast_with_ack, AckStream, Adapter, AdapterError, BroadcastFlags, BroadcastOptions, MemoryAdapter, Room,
    SocketInfo,
};
pub use client::{CompactHeaders, Handshake, SioHandler};
pub use config::SocketIoConfig;
pub use namespace::{ConnectError, Namespace, ServerSideHandler};
pub use operators::{BroadcastAckError, BroadcastOperator};
pub use payload::{encode_packet, Frames, Payload};
pub use recovery::{RecoveryConfig, RecoveryStore, RestoredSession, SessionToPersist};
pub use server::SocketIo;
pub use socket::{AckError, AckSender, DisconnectReason, EmitError, Socket};
pub use switchyard_engine as engine;
pub use switchyard_engine::Sid;
