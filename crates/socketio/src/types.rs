//! Value types shared by the Socket.IO layer and cluster adapters: rooms, broadcast options and
//! fetch-sockets entries. A leaf module: it depends on nothing else in the crate.

use serde_json::Value;
use smallvec::SmallVec;
use std::sync::Arc;

/// A room name. Cheap to clone.
pub type Room = Arc<str>;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastFlags {
    /// May be dropped for clients that are not ready to receive.
    pub volatile: bool,
    /// Only this server's sockets, never other nodes.
    pub local: bool,
}

/// Who a broadcast reaches: sockets in any of `rooms` (everyone when empty), minus sockets in any of
/// `except`. A socket id is also a room holding just that socket.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BroadcastOptions {
    pub rooms: SmallVec<[Room; 1]>,
    pub except: SmallVec<[Room; 1]>,
    pub flags: BroadcastFlags,
}

/// A socket as fetch-sockets reports it, local or on another node.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketInfo {
    pub id: String,
    pub nsp: String,
    /// Node's handshake object.
    pub handshake: Value,
    pub rooms: Vec<String>,
    pub data: Value,
    /// False for sockets on another node.
    pub local: bool,
}
