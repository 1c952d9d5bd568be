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
//!
//! Extension points, each small and cheap when unused:
//! - [`SocketIo::builder`]: options, adapter and observers chosen before any namespace exists;
//! - [`Socket::extensions`]: typed per-socket values that never leave this server;
//! - [`middleware`]: message middleware server-wide, per namespace and per socket (Node's `socket.use`);
//! - [`observe`]: server-wide [`Observer`]s of connections, rooms, events, broadcasts and acks;
//! - [`Socket::on_any`] / [`Socket::on_any_outgoing`] (several each) and [`Socket::on_async`];
//! - [`Payload::arg`], [`Payload::args_as`], [`Payload::from_serialize`]: arguments through serde.

mod adapter;
mod client;
mod config;
pub mod middleware;
mod namespace;
pub mod observe;
mod operators;
mod payload;
mod recovery;
mod server;
mod socket;
mod types;

pub use adapter::{local_broadcast_with_ack, AckStream, Adapter, AdapterError, BoxError, MemoryAdapter};
pub use client::{CompactHeaders, Handshake, SioHandler};
pub use config::{LimitStats, Parser, SocketIoConfig};
pub use middleware::{Extensions, Rejection};
pub use namespace::{ConnectError, Namespace, ServerSideHandler};
pub use observe::Observer;
pub use operators::{BroadcastAckError, BroadcastOperator};
pub use payload::{encode_packet, Frames, Payload, PayloadError};
pub use recovery::{should_include, RecoveryConfig, RecoveryStore, RestoredSession, SessionToPersist};
pub use server::{SocketIo, SocketIoBuilder};
pub use socket::{AckError, AckSender, DisconnectReason, EmitError, JoinError, Socket};
pub use switchyard_engine as engine;
pub use switchyard_engine::Sid;
pub use types::{BroadcastFlags, BroadcastOptions, Room, SocketInfo};
