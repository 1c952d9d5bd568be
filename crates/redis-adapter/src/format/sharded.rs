//! The sharded format (`createShardedAdapter`, Redis 7+): every message is the cluster adapter's
//! `{uid, nsp, type, data}` (JSON, or msgpack when it carries binary), SPUBLISHed on the namespace
//! channel `prefix#nsp#`, on a room's channel `prefix#nsp#room#` (dynamic subscription modes), or, for
//! answers, on the requester's channel `prefix#nsp#<uid>#`.

use super::{
    answer_payload, decode_json_or_msgpack, Incoming, Message, RemoteOp, Reply, Request, Response, Route, WireFormat,
    REMOTE_ACK_WINDOW,
};
use crate::connection::{Outgoing, Subscription};
use crate::convert;
use crate::error::Error;
use crate::format::classic::Classic;
use crate::recovery::OffsetSlot;
use crate::{RedisAdapterConfig, SubscriptionMode};
use bytes::Bytes;
use serde_json::{json, Value};
use switchyard_protocol::cluster::{msgpack, wire};
use switchyard_socketio::{BroadcastOptions, Namespace, Payload};

/// Message types of the cluster-adapter format.
pub(crate) mod kind {
    pub const INITIAL_HEARTBEAT: u64 = 1;
    pub const HEARTBEAT: u64 = 2;
    pub const BROADCAST: u64 = 3;
    pub const SOCKETS_JOIN: u64 = 4;
    pub const SOCKETS_LEAVE: u64 = 5;
    pub const DISCONNECT_SOCKETS: u64 = 6;
    pub const FETCH_SOCKETS: u64 = 7;
    pub const FETCH_SOCKETS_RESPONSE: u64 = 8;
    pub const SERVER_SIDE_EMIT: u64 = 9;
    pub const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
    pub const BROADCAST_CLIENT_COUNT: u64 = 11;
    pub const BROADCAST_ACK: u64 = 12;
    pub const ADAPTER_CLOSE: u64 = 13;
}

pub(crate) struct Sharded {
    uid: String,
    prefix: String,
    subscription_mode: SubscriptionMode,
}

impl Sharded {
    pub(crate) fn new(config: &RedisAdapterConfig) -> Self {
        Sharded {
            uid: convert::hex_id(),
            prefix: config.key_prefix.clone(),
            subscription_mode: config.subscription_mode,
        }
    }

    /// `prefix#nsp#`: the namespace channel.
    pub(crate) fn namespace_channel(prefix: &str, nsp: &str) -> String {
        format!("{prefix}#{nsp}#")
    }

    /// A node's response channel, or a room's channel.
    fn sub_channel(&self, nsp: &str, suffix: &str) -> String {
        format!("{}#{}#{}#", self.prefix, nsp, suffix)
    }

    /// `{uid, nsp, type, data}`: JSON, or msgpack when `binary` is not empty.
    pub(crate) fn message(uid: &str, nsp: &str, kind: u64, data: Option<Value>, binary: &[Bytes]) -> Vec<u8> {
        let mut message = json!({"uid": uid, "nsp": nsp, "type": kind});
        if let Some(data) = data {
            message["data"] = data;
        }
        if binary.is_empty() {
            message.to_string().into_bytes()
        } else {
            msgpack::encode(&message, binary)
        }
    }

    fn publish(channel: String, payload: Vec<u8>) -> Outgoing {
        Outgoing { sharded: true, channel, payload, record: None }
    }

    /// A message on the namespace channel.
    fn to_namespace(&self, nsp: &str, kind: u64, data: Value, binary: &[Bytes]) -> Outgoing {
        let payload = Self::message(&self.uid, nsp, kind, Some(data), binary);
        Self::publish(Self::namespace_channel(&self.prefix, nsp), payload)
    }

    /// Dynamic modes: a broadcast to this one room goes to the room's channel. As in Node, `dynamic`
    /// keeps rooms that look like socket ids (20 characters) on the namespace channel.
    fn publishes_to_room_channel(&self, room: &str) -> bool {
        match self.subscription_mode {
            SubscriptionMode::Static => false,
            SubscriptionMode::Dynamic => room.len() != 20,
            SubscriptionMode::DynamicPrivate => true,
        }
    }

    fn decode_response(kind: u64, data: &Value, binary: &[Bytes]) -> Option<Response> {
        Some(match kind {
            kind::BROADCAST_CLIENT_COUNT => {
                Response::ClientCount(data.get("clientCount").and_then(Value::as_u64).unwrap_or(0) as usize)
            }
            kind::BROADCAST_ACK => Response::Ack(answer_payload(data.get("packet"), binary)),
            kind::FETCH_SOCKETS_RESPONSE => {
                Response::Sockets(data.get("sockets").and_then(Value::as_array).cloned().unwrap_or_default())
            }
            kind::SERVER_SIDE_EMIT_RESPONSE => {
                Response::ServerSideAck(data.get("packet").cloned().unwrap_or(Value::Null))
            }
            _ => return None,
        })
    }
}

impl WireFormat for Sharded {
    fn uid(&self) -> &str {
        &self.uid
    }

    fn new_id(&self) -> String {
        convert::hex_id()
    }

    fn namespace_subscriptions(&self, nsp: &str) -> Vec<(Subscription, Route)> {
        vec![
            (Subscription::Shard(Self::namespace_channel(&self.prefix, nsp)), Route::Broadcasts),
            (Subscription::Shard(self.sub_channel(nsp, &self.uid)), Route::Responses),
        ]
    }

    fn room_subscription(&self, nsp: &str, room: &str) -> Option<Subscription> {
        (self.subscription_mode != SubscriptionMode::Static).then(|| Subscription::Shard(self.sub_channel(nsp, room)))
    }

    fn socket_subscription(&self, nsp: &str, id: &str) -> Option<Subscription> {
        (self.subscription_mode == SubscriptionMode::DynamicPrivate)
            .then(|| Subscription::Shard(self.sub_channel(nsp, id)))
    }

    fn server_count_command(&self, nsp: &str) -> (redis::Cmd, &'static str) {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("SHARDNUMSUB").arg(Self::namespace_channel(&self.prefix, nsp));
        (cmd, "PUBSUB SHARDNUMSUB")
    }

    fn encode_broadcast(&self, nsp: &str, event: &str, payload: &Payload, opts: &BroadcastOptions) -> Outgoing {
        let data = json!({
            "packet": wire::packet_json(nsp, event, &payload.args),
            "opts": convert::options_json(opts),
        });
        let message = Self::message(&self.uid, nsp, kind::BROADCAST, Some(data), &payload.binary);
        let channel = match opts.rooms.as_slice() {
            [room] if self.publishes_to_room_channel(room) => self.sub_channel(nsp, room),
            _ => Self::namespace_channel(&self.prefix, nsp),
        };
        Self::publish(channel, message)
    }

    fn encode_recorded_broadcast(
        &self,
        nsp: &str,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> (Outgoing, Vec<u8>, OffsetSlot) {
        let entry = std::mem::take(&mut Classic::broadcast(&self.prefix, &self.uid, nsp, event, payload, opts).payload);
        let mut message = self.encode_broadcast(nsp, event, payload, opts);
        let slot = match message.payload.first().copied() {
            // JSON: the script closes the object with `,"offset":"<id>"}`.
            Some(b'{') => {
                message.payload.pop();
                OffsetSlot::JsonField
            }
            // A msgpack map of fewer than 15 entries: one more entry, the key `offset` written here.
            Some(header @ 0x80..=0x8e) => {
                message.payload[0] = header + 1;
                message.payload.push(0xa6);
                message.payload.extend_from_slice(b"offset");
                OffsetSlot::MsgpackValue
            }
            // Not expected (the message has four keys); peers then deliver it without an offset.
            _ => OffsetSlot::Absent,
        };
        (message, entry, slot)
    }

    fn encode_request(&self, nsp: &str, request: Request<'_>) -> Option<Outgoing> {
        Some(match request {
            Request::BroadcastWithAck { id, event, payload, opts } => {
                let data = json!({
                    "packet": wire::packet_json(nsp, event, &payload.args),
                    "requestId": id,
                    "opts": convert::options_json(opts),
                });
                self.to_namespace(nsp, kind::BROADCAST, data, &payload.binary)
            }
            Request::RoomsChange { opts, rooms, leave } => {
                let kind = if leave { kind::SOCKETS_LEAVE } else { kind::SOCKETS_JOIN };
                let rooms: Vec<&str> = rooms.iter().map(|r| r.as_ref()).collect();
                self.to_namespace(nsp, kind, json!({"opts": convert::options_json(opts), "rooms": rooms}), &[])
            }
            Request::Disconnect { opts, close } => {
                let data = json!({"opts": convert::options_json(opts), "close": close});
                self.to_namespace(nsp, kind::DISCONNECT_SOCKETS, data, &[])
            }
            Request::FetchSockets { id, opts } => {
                let data = json!({"opts": convert::options_json(opts), "requestId": id});
                self.to_namespace(nsp, kind::FETCH_SOCKETS, data, &[])
            }
            // The cluster-adapter format has no rooms request.
            Request::AllRooms { .. } => return None,
            Request::ServerSideEmit { id, event, payload } => {
                let mut data = json!({"packet": wire::event_data(event, &payload.args)});
                if let Some(id) = id {
                    data["requestId"] = json!(id);
                }
                self.to_namespace(nsp, kind::SERVER_SIDE_EMIT, data, &payload.binary)
            }
        })
    }

    fn has_rooms_request(&self) -> bool {
        false
    }

    fn encode_reply(&self, nsp: &str, to: Option<&str>, reply: Reply<'_>) -> Option<Outgoing> {
        let to = to?;
        let (kind, data, binary): (u64, Value, &[Bytes]) = match reply {
            Reply::ClientCount { request_id, count } => {
                (kind::BROADCAST_CLIENT_COUNT, json!({"requestId": request_id, "clientCount": count}), &[])
            }
            Reply::Ack { request_id, answer } => {
                let first = answer.args.first().cloned().unwrap_or(Value::Null);
                (kind::BROADCAST_ACK, json!({"requestId": request_id, "packet": first}), &answer.binary)
            }
            Reply::Sockets { request_id, sockets } => {
                (kind::FETCH_SOCKETS_RESPONSE, json!({"requestId": request_id, "sockets": sockets}), &[])
            }
            Reply::ServerSideAck { request_id, answer } => {
                let mut data = json!({"requestId": request_id});
                if let Some(first) = answer.args.first() {
                    data["packet"] = first.clone();
                }
                (kind::SERVER_SIDE_EMIT_RESPONSE, data, &answer.binary)
            }
            // Classic-only answers.
            Reply::Rooms { .. } | Reply::Done { .. } => return None,
        };
        let payload = Self::message(&self.uid, nsp, kind, Some(data), binary);
        Some(Self::publish(self.sub_channel(nsp, to), payload))
    }

    fn decode(
        &self,
        ns: &Namespace,
        route: Route,
        _channel: &[u8],
        payload: &[u8],
        _all_rooms: bool,
    ) -> Result<Option<Message>, Error> {
        let msgpack::Decoded { value: message, binary } = decode_json_or_msgpack(payload)?;
        let from = message.get("uid").and_then(Value::as_str).map(str::to_string);
        if from.as_deref() == Some(self.uid.as_str()) {
            return Ok(None);
        }
        if message.get("nsp").and_then(Value::as_str).unwrap_or("/") != ns.name() {
            return Ok(None);
        }
        let Some(kind) = message.get("type").and_then(Value::as_u64) else { return Err(Error::Malformed("no type")) };
        let data = message.get("data").cloned().unwrap_or(Value::Null);
        let request_id = data.get("requestId").cloned().unwrap_or(Value::Null);
        let is_response = matches!(
            kind,
            kind::FETCH_SOCKETS_RESPONSE
                | kind::SERVER_SIDE_EMIT_RESPONSE
                | kind::BROADCAST_CLIENT_COUNT
                | kind::BROADCAST_ACK
        );
        if route == Route::Responses || is_response {
            let Some(response) = Self::decode_response(kind, &data, &binary) else { return Ok(None) };
            return Ok(Some(Message::new(from, request_id, Incoming::Response(response))));
        }
        let incoming = match kind {
            kind::BROADCAST => {
                let opts = convert::parse_options(data.get("opts"));
                match data.get("packet").cloned().and_then(|p| wire::parse_packet(p, &binary)) {
                    Some(packet) => {
                        let (event, payload) = convert::event(packet);
                        let ack_window = request_id.is_string().then_some(REMOTE_ACK_WINDOW);
                        // A Switchyard node with connection state recovery adds the stream id.
                        let offset = message.get("offset").and_then(Value::as_str).map(str::to_string);
                        Incoming::Broadcast { event, payload, opts, ack_window, offset }
                    }
                    None => Incoming::Malformed("broadcast without an event packet"),
                }
            }
            kind::SOCKETS_JOIN | kind::SOCKETS_LEAVE | kind::DISCONNECT_SOCKETS => Incoming::Remote {
                op: match kind {
                    kind::SOCKETS_JOIN => RemoteOp::Join,
                    kind::SOCKETS_LEAVE => RemoteOp::Leave,
                    _ => RemoteOp::Disconnect,
                },
                opts: convert::parse_options(data.get("opts")),
                rooms: convert::rooms(data.get("rooms")),
                close: data.get("close").and_then(Value::as_bool).unwrap_or(false),
            },
            kind::FETCH_SOCKETS => Incoming::FetchSockets { opts: convert::parse_options(data.get("opts")) },
            kind::SERVER_SIDE_EMIT => match data.get("packet").and_then(Value::as_array).map(|p| p.split_first()) {
                Some(Some((Value::String(event), args))) => Incoming::ServerSideEmit {
                    event: event.clone(),
                    payload: convert::payload(args.to_vec(), &binary),
                    // Answers go to the sender's channel: without a uid there is nowhere to answer.
                    wants_ack: request_id.is_string() && from.is_some(),
                },
                _ => Incoming::Ignored,
            },
            kind::INITIAL_HEARTBEAT | kind::HEARTBEAT | kind::ADAPTER_CLOSE => Incoming::Ignored,
            other => Incoming::Unknown(other),
        };
        Ok(Some(Message::new(from, request_id, incoming)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sharded() -> Sharded {
        Sharded {
            uid: "AAAAAAAAAAAAAAAA".into(),
            prefix: "socket.io".into(),
            subscription_mode: SubscriptionMode::Dynamic,
        }
    }

    fn shown(message: &Outgoing) -> String {
        assert!(message.sharded);
        format!("{} {}", message.channel, message.payload.escape_ascii())
    }

    /// What the recording script does with the message once it has the stream id.
    fn with_offset(message: &Outgoing, slot: OffsetSlot, id: &str) -> Vec<u8> {
        let mut full = message.payload.clone();
        match slot {
            OffsetSlot::JsonField => full.extend_from_slice(format!(",\"offset\":\"{id}\"}}").as_bytes()),
            OffsetSlot::MsgpackValue => {
                full.extend_from_slice(&[0xd9, id.len() as u8]);
                full.extend_from_slice(id.as_bytes());
            }
            other => panic!("unexpected slot {other:?}"),
        }
        full
    }

    #[test]
    fn recorded_broadcasts_carry_the_offset_as_an_extra_field() {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("room".into());
        let text = Payload::new(vec![json!({"k": "v"})]);
        let binary = Payload::new(vec![json!(1)]).push_binary(vec![1u8, 2, 3]);
        for payload in [text, binary] {
            let (message, entry, slot) = sharded().encode_recorded_broadcast("/", "ev", &payload, &opts);
            let decoded = decode_json_or_msgpack(&with_offset(&message, slot, "1700000000000-42")).unwrap();
            // Everything Node reads is as in a plain broadcast; `offset` is one more key.
            let plain =
                decode_json_or_msgpack(&sharded().encode_broadcast("/", "ev", &payload, &opts).payload).unwrap();
            let mut without = decoded.value.clone();
            without.as_object_mut().unwrap().remove("offset");
            assert_eq!(without, plain.value);
            assert_eq!(decoded.value["offset"], "1700000000000-42");
            // The stream keeps the classic encoding, which decodes to the same event.
            let (event, stored, stored_opts) = crate::recovery::decode_entry(&entry).unwrap();
            assert_eq!(
                (event.as_str(), stored.args, stored_opts.rooms),
                ("ev", payload.args.clone(), opts.rooms.clone())
            );
        }
    }

    // Same bytes as tests/wire_bytes.rs pins through Redis.
    #[test]
    fn broadcast_bytes() {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("r".into());
        opts.except.push("x".into());
        opts.flags.volatile = true;
        let payload = Payload::new(vec![json!({"k": "v"}), json!(1.5)]).push_binary(vec![1u8, 2, 3]);
        assert_eq!(
            shown(&sharded().encode_broadcast("/", "bin", &payload, &opts)),
            r"socket.io#/#r# \x84\xa4data\x82\xa4opts\x83\xa6except\x91\xa1x\xa5flags\x81\xa8volatile\xc3\xa5rooms\x91\xa1r\xa6packet\x83\xa4data\x94\xa3bin\x81\xa1k\xa1v\xcb?\xf8\x00\x00\x00\x00\x00\x00\xc4\x03\x01\x02\x03\xa3nsp\xa1/\xa4type\x02\xa3nsp\xa1/\xa4type\x03\xa3uid\xb0AAAAAAAAAAAAAAAA"
        );
        // Static mode keeps one-room broadcasts on the namespace channel.
        let fixed = Sharded { subscription_mode: SubscriptionMode::Static, ..sharded() };
        assert_eq!(fixed.encode_broadcast("/", "bin", &payload, &opts).channel, "socket.io#/#");
    }

    #[test]
    fn request_and_reply_bytes() {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("r".into());
        let payload = Payload::new(vec![json!(1)]);
        let id = "RRRRRRRRRRRRRRRR";
        let request = Request::BroadcastWithAck { id, event: "ask", payload: &payload, opts: &opts };
        assert_eq!(
            shown(&sharded().encode_request("/", request).unwrap()),
            r#"socket.io#/# {\"data\":{\"opts\":{\"except\":[],\"flags\":{},\"rooms\":[\"r\"]},\"packet\":{\"data\":[\"ask\",1],\"nsp\":\"/\",\"type\":2},\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":3,\"uid\":\"AAAAAAAAAAAAAAAA\"}"#
        );
        assert!(sharded().encode_request("/", Request::AllRooms { id }).is_none());
        let id = json!(id);
        let answer = Payload::new(vec![json!("b")]);
        let reply = Reply::Ack { request_id: &id, answer: &answer };
        assert_eq!(
            shown(&sharded().encode_reply("/", Some("BBBBBBBBBBBBBBBB"), reply).unwrap()),
            r#"socket.io#/#BBBBBBBBBBBBBBBB# {\"data\":{\"packet\":\"b\",\"requestId\":\"RRRRRRRRRRRRRRRR\"},\"nsp\":\"/\",\"type\":12,\"uid\":\"AAAAAAAAAAAAAAAA\"}"#
        );
        // No sender, no answer.
        assert!(sharded().encode_reply("/", None, reply).is_none());
    }
}
