//! The Engine.IO v4 server: sessions over HTTP long-polling and WebSocket, the upgrade between them,
//! server-sent heartbeats, CORS and payload limits; and, behind `EngineConfig::allow_eio3`, Engine.IO
//! v3 for Socket.IO v2 clients (`eio3.rs`).
//!
//! The engine knows nothing of Socket.IO. A [`Handler`] receives each connection, its messages and its
//! close; it sends by pushing [`Frame`]s onto the connection's bounded queue. One task per connection
//! (the WebSocket task, or the polling session task) owns heartbeats and the close.

mod config;
mod connection;
mod eio3;
mod frame;
mod http_util;
pub mod limits;
mod polling;
pub mod serve;
mod service;
mod sid;
mod stats;
pub mod tls;
mod websocket;

pub use config::{CorsConfig, EngineConfig};
pub use connection::{CloseReason, Connection, Protocol, SendError, TransportKind};
pub use frame::Frame;
pub use limits::{ConnectionGuard, ConnectionLimiter, HandshakeLimiter, Rate};
pub use serve::serve;
pub use service::{Engine, EngineService, RemoteAddr};
pub use sid::Sid;
pub use stats::EngineStats;
pub use switchyard_protocol as protocol;

use bytes::Bytes;
use std::sync::Arc;

/// A message received from the client, without the Engine.IO `4` prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    /// UTF-8 text.
    Text(Bytes),
    Binary(Bytes),
}

/// What the engine knows about the request that opened a connection. The header values and the URI
/// share hyper's connection read buffer: a handler that keeps them for the life of the connection
/// should copy them, or it keeps that whole buffer (8 KiB+) alive.
#[derive(Debug, Clone)]
pub struct OpenRequest {
    pub headers: http::HeaderMap,
    pub uri: http::Uri,
    pub remote_addr: Option<std::net::SocketAddr>,
    pub transport: TransportKind,
    /// The Engine.IO revision the client asked for (`EIO=`).
    pub protocol: Protocol,
}

/// The layer above the engine (Socket.IO, or an echo server in the conformance example).
///
/// Callbacks run on the connection's own task and must not block; they send by queueing frames.
pub trait Handler: Send + Sync + 'static {
    /// Per-connection state kept by the layer above.
    type Client: Send + Sync + 'static;

    fn on_open(&self, conn: Arc<Connection>, req: OpenRequest) -> Arc<Self::Client>;
    fn on_message(&self, client: &Arc<Self::Client>, message: Incoming);
    /// Called exactly once per connection opened with `on_open`.
    fn on_close(&self, client: &Arc<Self::Client>, reason: CloseReason);
    /// A polling connection moved to WebSocket (once per connection at most; nothing by default).
    fn on_upgrade(&self, _client: &Arc<Self::Client>) {}
}
