//! What an accepted `message` passes through before it is broadcast and acknowledged: the message
//! sinks (history, Kafka). Each is a small trait object chosen by configuration; with none
//! configured the `message` event broadcasts and acknowledges at once, with nothing extra on its
//! path.
//!
//! The contract of a sink, so that several can be chained and order kept:
//! - [`MessageSink::accept`] is called on the sender's connection task, in the order the messages
//!   arrive, and does its ordering-relevant work there (assign a sequence, enqueue); it must not
//!   block.
//! - The future it returns resolves once the sink holds the message as durably as its
//!   configuration promises (for example: written to the history store; queued or spooled for
//!   Kafka, or acknowledged by Kafka with `kafka.ack = "persisted"`).
//! - An `Err` refuses the message: it is not broadcast and the sender's ack is
//!   `{"ok": false, "error": <the refusal's error>}`. A sink that refuses counts and logs why.
//! - With a gate (history: `Events::with_history`, `Events::with_gate`) the gate takes the message
//!   on the connection's task; the other sinks take it only once the gate holds it, from the
//!   message's task, still in the sender's order, so a message the gate refuses reaches none of them
//!   (a message history refuses is not produced to Kafka). A later sink's refusal cannot take the
//!   message back out of the gate's store.

use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::Value;

/// A `message` the server accepted: what history keeps, Kafka receives and the room is sent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AcceptedMessage {
    /// UUIDv7: unique across the cluster and ordered by time.
    pub id: String,
    /// The room it was sent to.
    pub room: String,
    /// The sender's user name (`access::user_of`).
    pub user: String,
    /// The message's data, as the client sent it.
    pub data: Value,
    /// Milliseconds since the Unix epoch, the time part of `id`.
    pub ts: u64,
}

/// Why a sink refused a message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("message refused: {error}")]
pub struct Refused {
    /// The `error` of the sender's ack (docs/EVENTS.md lists them).
    pub error: &'static str,
}

/// A stage an accepted message must reach before it is broadcast and acknowledged.
pub trait MessageSink: Send + Sync + 'static {
    /// Takes `message` (see the module docs for the contract).
    fn accept(&self, message: &AcceptedMessage) -> BoxFuture<'static, Result<(), Refused>>;
}
