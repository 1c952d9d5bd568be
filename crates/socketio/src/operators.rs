//! Broadcast operators: `to(room).except(other).volatile().timeout(d).emit(..)`, as in Node.

use crate::adapter::{BroadcastOptions, Room, SocketInfo};
use crate::namespace::Namespace;
use crate::payload::Payload;
use crate::socket::Socket;
use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

/// The answers gathered before a broadcast's ack timeout expired.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("operation has timed out: {} answers of {expected}", responses.len())]
pub struct BroadcastAckError {
    pub expected: usize,
    pub responses: Vec<Payload>,
}

#[derive(Clone)]
pub struct BroadcastOperator {
    ns: Arc<Namespace>,
    opts: BroadcastOptions,
    timeout: Option<Duration>,
}

impl BroadcastOperator {
    pub(crate) fn new(ns: Arc<Namespace>, opts: BroadcastOptions) -> Self {
        BroadcastOperator { ns, opts, timeout: None }
    }

    pub fn to(mut self, room: impl Into<Room>) -> Self {
        let room = room.into();
        if !self.opts.rooms.contains(&room) {
            self.opts.rooms.push(room);
        }
        self
    }

    pub fn to_many<R: Into<Room>>(mut self, rooms: impl IntoIterator<Item = R>) -> Self {
        for room in rooms {
            self = self.to(room);
        }
        self
    }

    pub fn except(mut self, room: impl Into<Room>) -> Self {
        self.opts.except.push(room.into());
        self
    }

    pub fn volatile(mut self) -> Self {
        self.opts.flags.volatile = true;
        self
    }

    /// This server only, not the rest of the cluster.
    pub fn local(mut self) -> Self {
        self.opts.flags.local = true;
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    pub fn options(&self) -> &BroadcastOptions {
        &self.opts
    }

    /// Emits to every selected socket; the packet is encoded once.
    pub fn emit(&self, event: &str, payload: impl Into<Payload>) {
        let payload = payload.into();
        let observers = self.ns.observers();
        if !observers.active() {
            self.ns.adapter().broadcast(&self.ns, event, &payload, &self.opts);
            return;
        }
        let recipients =
            crate::observe::count_local(|| self.ns.adapter().broadcast(&self.ns, event, &payload, &self.opts));
        observers.notify(|o| o.on_broadcast(&self.ns, &self.opts, event, &payload, recipients));
    }

    /// Whether [`Self::emit_json`] frames its bytes as they are (the in-memory adapter, the JSON
    /// parser, no connection state recovery, no observer). When not, a caller that has the argument
    /// as a `Value` too does better with [`Self::emit`] than having the bytes parsed again.
    pub fn takes_json(&self) -> bool {
        let ns = &self.ns;
        ns.adapter().is_local()
            && ns.parser() == crate::config::Parser::Json
            && (ns.recovery().is_none() || self.opts.flags.volatile)
            && !ns.observers().active()
    }

    /// Emits `event` with one argument given as encoded JSON text (`json_arg`: one valid JSON value,
    /// the caller's promise) and its `binary` attachments. With the in-memory adapter, the JSON
    /// parser, no connection state recovery and no observer, the packet is framed from these bytes
    /// once and no `Value` is built; otherwise `json_arg` is parsed and sent as [`Self::emit`] sends it.
    /// For a server-built argument that it encodes anyway (the built-in `message`, whose JSON is also
    /// the Kafka record's), this saves building and serializing a `Value` per broadcast.
    /// See [`Self::takes_json`] for when it is framed from the bytes.
    pub fn emit_json(&self, event: &str, json_arg: &[u8], binary: Vec<Bytes>) {
        let ns = &self.ns;
        if self.takes_json() {
            let frames = crate::payload::encode_packet_json_arg(ns.name(), Some(event), json_arg, &binary, None);
            ns.local_broadcast(&frames, &self.opts);
        } else if let Some(payload) = crate::payload::payload_of_json_arg(json_arg, binary) {
            self.emit(event, payload);
        }
    }

    /// Emits and gathers every client's ack until all answered or the timeout (default 5 s) expired.
    pub async fn emit_with_ack(
        &self,
        event: &str,
        payload: impl Into<Payload>,
    ) -> Result<Vec<Payload>, BroadcastAckError> {
        let timeout = self.timeout.unwrap_or(Duration::from_secs(5));
        let deadline = tokio::time::Instant::now() + timeout;
        let payload = payload.into();
        let observers = self.ns.observers();
        let mut stream = if observers.active() {
            let mut stream = None;
            let recipients = crate::observe::count_local(|| {
                stream = Some(self.ns.adapter().broadcast_with_ack(&self.ns, event, &payload, &self.opts))
            });
            observers.notify(|o| o.on_broadcast(&self.ns, &self.opts, event, &payload, recipients));
            stream.expect("broadcast_with_ack ran")
        } else {
            self.ns.adapter().broadcast_with_ack(&self.ns, event, &payload, &self.opts)
        };
        drop(payload);
        let mut responses = Vec::new();
        let expected = match tokio::time::timeout_at(deadline, stream.expected).await {
            Ok(expected) => expected,
            Err(_) => return Err(BroadcastAckError { expected: 0, responses }),
        };
        while responses.len() < expected {
            match tokio::time::timeout_at(deadline, stream.answers.recv()).await {
                Ok(Some(answer)) => responses.push(answer),
                Ok(None) | Err(_) => return Err(BroadcastAckError { expected, responses }),
            }
        }
        Ok(responses)
    }

    /// Selected sockets on this server.
    pub fn local_sockets(&self) -> Vec<Arc<Socket>> {
        self.ns.local_targets(&self.opts)
    }

    /// Selected sockets across the cluster.
    pub async fn fetch_sockets(&self) -> Result<Vec<SocketInfo>, crate::adapter::AdapterError> {
        self.ns.adapter().fetch_sockets(&self.ns, &self.opts).await
    }

    pub fn sockets_join(&self, rooms: &[Room]) {
        self.ns.adapter().add_sockets(&self.ns, &self.opts, rooms)
    }

    pub fn sockets_leave(&self, rooms: &[Room]) {
        self.ns.adapter().del_sockets(&self.ns, &self.opts, rooms)
    }

    pub fn disconnect_sockets(&self, close: bool) {
        self.ns.adapter().disconnect_sockets(&self.ns, &self.opts, close)
    }
}
