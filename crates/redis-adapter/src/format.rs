//! The two wire formats behind one interface. [`classic`] is `@socket.io/redis-adapter`'s
//! `createAdapter` (PUBLISH/PSUBSCRIBE, msgpack broadcasts, request and response channels);
//! [`sharded`] is its `createShardedAdapter` (SPUBLISH/SSUBSCRIBE and the cluster-adapter message
//! format). A format names the channels, encodes what this node sends and decodes what other nodes
//! send into format-free [`Incoming`] messages; the node (`node.rs`) does everything else once.

pub(crate) mod classic;
pub(crate) mod sharded;

use crate::connection::{Outgoing, Subscription};
use crate::error::Error;
use bytes::Bytes;
use serde_json::Value;
use std::time::Duration;
use switchyard_protocol::cluster::msgpack::{self, Decoded};
use switchyard_socketio::{BroadcastOptions, Namespace, Payload, Room};

/// The longest a node forwards client acks for another node's broadcast when it gave no timeout.
pub(crate) const REMOTE_ACK_WINDOW: Duration = Duration::from_secs(60);

/// What a subscribed channel carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Route {
    /// Classic: broadcasts (the pattern `prefix#nsp#*`). Sharded: the namespace channel or a room's
    /// channel, which carry every kind of message.
    Broadcasts,
    /// Classic: requests.
    Requests,
    /// Answers to this node's requests (classic: the shared or this node's own channel; sharded:
    /// this node's channel).
    Responses,
}

impl Route {
    /// What a malformed message on this route is called in logs.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Route::Broadcasts => "broadcast",
            Route::Requests => "request",
            Route::Responses => "response",
        }
    }
}

/// A request (or a broadcast with acks) this node sends to the others.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Request<'a> {
    BroadcastWithAck {
        id: &'a str,
        event: &'a str,
        payload: &'a Payload,
        opts: &'a BroadcastOptions,
    },
    /// Join (`leave` false) or leave rooms.
    RoomsChange {
        opts: &'a BroadcastOptions,
        rooms: &'a [Room],
        leave: bool,
    },
    Disconnect {
        opts: &'a BroadcastOptions,
        close: bool,
    },
    FetchSockets {
        id: &'a str,
        opts: &'a BroadcastOptions,
    },
    AllRooms {
        id: &'a str,
    },
    ServerSideEmit {
        id: Option<&'a str>,
        event: &'a str,
        payload: &'a Payload,
    },
}

/// This node's answer to another node's request. `request_id` is as the request carried it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Reply<'a> {
    ClientCount {
        request_id: &'a Value,
        count: usize,
    },
    /// One client's answer to a broadcast with acks.
    Ack {
        request_id: &'a Value,
        answer: &'a Payload,
    },
    /// Fetch-sockets entries (or, for classic's older sockets request, bare ids).
    Sockets {
        request_id: &'a Value,
        sockets: &'a [Value],
    },
    Rooms {
        request_id: &'a Value,
        rooms: &'a [String],
    },
    /// Classic's older single-socket join/leave/disconnect: done.
    Done {
        request_id: &'a Value,
    },
    ServerSideAck {
        request_id: &'a Value,
        answer: &'a Payload,
    },
}

/// An answer to one of this node's requests.
#[derive(Debug)]
pub(crate) enum Response {
    ClientCount(usize),
    Ack(Payload),
    Sockets(Vec<Value>),
    Rooms(Vec<Value>),
    ServerSideAck(Value),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RemoteOp {
    Join,
    Leave,
    Disconnect,
}

/// What another node asks of this one (or answers it).
#[derive(Debug)]
pub(crate) enum Incoming {
    /// An answer to one of this node's requests (the message's request id says which).
    Response(Response),
    /// An event for the local sockets `opts` selects; with `ack_window`, each client's answer goes
    /// back to the sender for that long. `offset`: its recovery stream id, when the sender stored it.
    Broadcast {
        event: String,
        payload: Payload,
        opts: BroadcastOptions,
        ack_window: Option<Duration>,
        offset: Option<String>,
    },
    /// Join, leave or disconnect the local sockets `opts` selects.
    Remote {
        op: RemoteOp,
        opts: BroadcastOptions,
        rooms: Vec<Room>,
        close: bool,
    },
    /// Classic's older form: one socket, one room; answered with [`Reply::Done`].
    RemoteSocket {
        op: RemoteOp,
        sid: Option<String>,
        room: Option<Room>,
        close: bool,
    },
    /// Classic's older sockets request: the ids of the local sockets in `rooms`.
    SocketIds {
        rooms: Vec<Room>,
    },
    FetchSockets {
        opts: BroadcastOptions,
    },
    AllRooms,
    /// A server-side event; `wants_ack` when the sender waits for an answer.
    ServerSideEmit {
        event: String,
        payload: Payload,
        wants_ack: bool,
    },
    /// Understood, nothing to do (heartbeats, say).
    Ignored,
    /// A message type this node does not know.
    Unknown(u64),
    /// Counted as received, then found malformed.
    Malformed(&'static str),
}

/// A decoded message from another node.
#[derive(Debug)]
pub(crate) struct Message {
    /// The sender's uid, when the message names it.
    pub from: Option<String>,
    /// The request id as the message carried it (`null` when none).
    pub request_id: Value,
    pub incoming: Incoming,
}

impl Message {
    pub(crate) fn new(from: Option<String>, request_id: Value, incoming: Incoming) -> Self {
        Message { from, request_id, incoming }
    }
}

/// A wire format, with this node's uid and the channel prefix.
pub(crate) trait WireFormat: Send + Sync + 'static {
    /// This node's id on the wire.
    fn uid(&self) -> &str;

    /// A fresh request id, in the format's shape.
    fn new_id(&self) -> String;

    // ---- channels ------------------------------------------------------------------------------

    /// What a node serving `nsp` subscribes to, and what each subscription carries.
    fn namespace_subscriptions(&self, nsp: &str) -> Vec<(Subscription, Route)>;

    /// The subscription for a room with local members, if the format has room channels.
    fn room_subscription(&self, nsp: &str, room: &str) -> Option<Subscription>;

    /// The subscription for a local socket's own room, if the format gives those a channel.
    fn socket_subscription(&self, nsp: &str, id: &str) -> Option<Subscription>;

    /// The command counting the servers of `nsp`, and its name for errors.
    fn server_count_command(&self, nsp: &str) -> (redis::Cmd, &'static str);

    // ---- encoding ------------------------------------------------------------------------------

    /// A broadcast to the other nodes (one publish, whatever their number).
    fn encode_broadcast(&self, nsp: &str, event: &str, payload: &Payload, opts: &BroadcastOptions) -> Outgoing;

    /// A broadcast stored for connection state recovery: the message to publish without its offset,
    /// the stream entry (classic encoding) and where the stream id goes in the message.
    fn encode_recorded_broadcast(
        &self,
        nsp: &str,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> (Outgoing, Vec<u8>, crate::recovery::OffsetSlot);

    /// A request; `None` when the format has no such request.
    fn encode_request(&self, nsp: &str, request: Request<'_>) -> Option<Outgoing>;

    /// Whether the format can ask the other nodes for their rooms.
    fn has_rooms_request(&self) -> bool;

    /// An answer to node `to` (`None` when the request named no sender); `None` when it cannot be
    /// addressed.
    fn encode_reply(&self, nsp: &str, to: Option<&str>, reply: Reply<'_>) -> Option<Outgoing>;

    // ---- decoding ------------------------------------------------------------------------------

    /// Decodes a message that arrived on `channel` (a `route` channel of namespace `ns`). `Ok(None)`
    /// for messages this node skips (its own, another namespace's, a room it does not have unless
    /// `all_rooms`: a session being restored here joins its rooms only once its missed packets are
    /// read, and what is published to them meanwhile must reach the restore's buffer).
    fn decode(
        &self,
        ns: &Namespace,
        route: Route,
        channel: &[u8],
        payload: &[u8],
        all_rooms: bool,
    ) -> Result<Option<Message>, Error>;
}

/// A message in either encoding: JSON when it starts with `{`, msgpack otherwise.
pub(crate) fn decode_json_or_msgpack(payload: &[u8]) -> Result<Decoded, Error> {
    if payload.first() == Some(&b'{') {
        Ok(Decoded { value: serde_json::from_slice(payload)?, binary: Vec::new() })
    } else {
        Ok(msgpack::decode(payload)?)
    }
}

/// A client's answer as Node forwards it: its first argument only.
pub(crate) fn answer_payload(value: Option<&Value>, binary: &[Bytes]) -> Payload {
    crate::convert::payload(vec![value.cloned().unwrap_or(Value::Null)], binary)
}

/// A format-free reading of a request's `requestId`: the string, or `null`.
pub(crate) fn string_id(value: Option<&Value>) -> Value {
    value.and_then(Value::as_str).map_or(Value::Null, |id| Value::String(id.to_string()))
}
