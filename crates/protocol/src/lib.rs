//! Pure protocol code for Switchyard: Engine.IO v4 packets and polling payloads (and v3's, in
//! [`engine3`], for Socket.IO v2 clients), Socket.IO v5 packets with binary attachments (JSON) and as
//! `socket.io-msgpack-parser` writes them (MessagePack), the server side of RFC 6455 WebSocket framing
//! and of its per-message compression (RFC 7692), and the MessagePack and message codecs of the Redis
//! cluster wire.
//!
//! Nothing here does I/O or allocates more than the packet itself needs, so every decoder can be fuzzed
//! and every encoder shared by the engine, the Redis adapter and the benchmark client.

pub mod cluster;
pub mod deflate;
pub mod engine;
pub mod engine3;
pub mod socketio;
pub mod socketio_msgpack;
pub mod websocket;
