use crate::recovery::RecoveryConfig;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use switchyard_engine::EngineConfig;

/// Socket.IO server options; the defaults are those of the Node implementation.
#[derive(Debug, Clone)]
pub struct SocketIoConfig {
    pub engine: EngineConfig,
    /// Close connections that join no namespace within this time.
    pub connect_timeout: Duration,
    /// Largest number of binary attachments in one packet.
    pub max_attachments: usize,
    /// Connection state recovery; off by default, as in Node.
    pub recovery: Option<RecoveryConfig>,
    /// Namespaces one connection may join at once (0: no limit). A CONNECT over it is answered
    /// CONNECT_ERROR `{"message":"Too many namespaces"}` and counted in
    /// [`LimitStats::namespaces_refused`]; the connection and its other sockets go on.
    pub max_namespaces_per_connection: usize,
    /// Rooms one socket may be in, not counting the room named after its id (0: no limit). A join
    /// over it fails with [`JoinError::TooManyRooms`](crate::JoinError) and is counted in
    /// [`LimitStats::rooms_refused`].
    pub max_rooms_per_socket: usize,
    /// How packets are written on the wire: JSON text (the default, Node's) or MessagePack binary
    /// (npm `socket.io-msgpack-parser`). Every client of the server must use the same parser.
    pub parser: Parser,
}

/// The Socket.IO parser, as Node's `parser` server option chooses it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Parser {
    /// Text packets `<type>[<nsp>,][<id>][JSON]`, binary data as separate attachments.
    #[default]
    Json,
    /// `socket.io-msgpack-parser`: each packet one binary message, binary data inline as msgpack `bin`.
    Msgpack,
}

/// Refusals of the Socket.IO limits, since the server started.
#[derive(Debug, Default)]
pub struct LimitStats {
    /// CONNECTs refused by [`SocketIoConfig::max_namespaces_per_connection`].
    pub namespaces_refused: AtomicU64,
    /// Joins refused by [`SocketIoConfig::max_rooms_per_socket`].
    pub rooms_refused: AtomicU64,
}

impl Default for SocketIoConfig {
    fn default() -> Self {
        Self {
            engine: EngineConfig::default(),
            connect_timeout: Duration::from_millis(45_000),
            max_attachments: 10,
            recovery: None,
            max_namespaces_per_connection: 0,
            max_rooms_per_socket: 0,
            parser: Parser::Json,
        }
    }
}
