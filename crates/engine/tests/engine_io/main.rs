//! Engine.IO v4 conformance, written from `docs/engine.io-protocol/v4-current.md`: every packet type,
//! both transports, the upgrade between them, heartbeats, limits and every documented error, checked
//! at the wire level against an in-process echo server.

use switchyard_fixtures as common;

mod deflate;
mod edge_cases;
mod eio3;
mod handshake;
mod heartbeat;
mod polling;
mod upgrade;
mod websocket;
