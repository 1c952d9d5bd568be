//! Socket.IO v5 conformance, written from `docs/socket.io-protocol/v5-current.md`: every packet type
//! (CONNECT, DISCONNECT, EVENT, ACK, CONNECT_ERROR, BINARY_EVENT, BINARY_ACK) both ways, namespaces,
//! middleware, malformed packets, disconnect reasons, rooms and broadcasts, checked at the wire level
//! against an in-process server running the reference handlers of `common`.

use switchyard_fixtures as common;

mod broadcast;
mod connect;
mod disconnect;
mod eio3;
mod events;
mod extensions;
mod malformed;
mod msgpack;
mod rooms;
