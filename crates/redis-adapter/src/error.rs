//! The Redis adapter's errors: the links to Redis, and messages from other nodes.

use std::time::Duration;
use switchyard_protocol::cluster::msgpack;
use switchyard_socketio::AdapterError;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No live connection to Redis (it is down, or the link is reconnecting).
    #[error("Redis is unreachable")]
    Unreachable,
    /// Connecting to Redis took longer than allowed.
    #[error("connecting to Redis timed out after {0:?}")]
    ConnectTimeout(Duration),
    /// A command got no answer in time.
    #[error("Redis did not answer within {0:?}")]
    Timeout(Duration),
    #[error("Redis error: {0}")]
    Redis(#[from] redis::RedisError),
    /// Redis answered a command with something it should not have.
    #[error("unexpected reply to {command}: {reply}")]
    UnexpectedReply { command: &'static str, reply: String },
    /// A message from another node that is not msgpack.
    #[error("cannot decode a msgpack message: {0}")]
    Msgpack(#[from] msgpack::DecodeError),
    /// A message from another node that is not JSON.
    #[error("cannot decode a JSON message: {0}")]
    Json(#[from] serde_json::Error),
    /// A message that decodes but is not what its channel carries.
    #[error("malformed message: {0}")]
    Malformed(&'static str),
}

impl Error {
    /// The link is down or does not answer, as opposed to a wrong answer.
    pub fn is_unavailable(&self) -> bool {
        match self {
            Error::Unreachable | Error::ConnectTimeout(_) | Error::Timeout(_) => true,
            Error::Redis(err) => crate::connection::is_connection_error(err),
            _ => false,
        }
    }
}

impl From<Error> for AdapterError {
    fn from(err: Error) -> Self {
        if err.is_unavailable() {
            AdapterError::unavailable(err)
        } else {
            AdapterError::backend(err)
        }
    }
}
