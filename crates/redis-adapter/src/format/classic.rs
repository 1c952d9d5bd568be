//! The classic format (`createAdapter`): broadcasts as msgpack `[uid, packet, opts]` on
//! `prefix#nsp#` (or `prefix#nsp#room#` for one room), PSUBSCRIBEd as `prefix#nsp#*`; requests as
//! JSON (msgpack for broadcasts with acks) on `prefix-request#nsp#`; answers on
//! `prefix-response#nsp#`, or on `prefix-response#nsp#<uid>#` with
//! `publish_on_specific_response_channel`.

use super::{
    answer_payload, decode_json_or_msgpack, string_id, Incoming, Message, RemoteOp, Reply, Request, Response, Route,
    WireFormat, REMOTE_ACK_WINDOW,
};
use crate::connection::{Outgoing, Subscription};
use crate::convert;
use crate::error::Error;
use crate::recovery::OffsetSlot;
use crate::RedisAdapterConfig;
use serde_json::{json, Value};
use std::time::Duration;
use switchyard_protocol::cluster::msgpack::{self, Writer};
use switchyard_protocol::cluster::wire;
use switchyard_socketio::{BroadcastOptions, Namespace, Payload};

/// Request types of the classic adapter.
pub(crate) mod kind {
    pub const SOCKETS: u64 = 0;
    pub const ALL_ROOMS: u64 = 1;
    pub const REMOTE_JOIN: u64 = 2;
    pub const REMOTE_LEAVE: u64 = 3;
    pub const REMOTE_DISCONNECT: u64 = 4;
    pub const REMOTE_FETCH: u64 = 5;
    pub const SERVER_SIDE_EMIT: u64 = 6;
    pub const BROADCAST: u64 = 7;
    pub const BROADCAST_CLIENT_COUNT: u64 = 8;
    pub const BROADCAST_ACK: u64 = 9;
}

pub(crate) struct Classic {
    uid: String,
    prefix: String,
    specific_response_channel: bool,
}

impl Classic {
    pub(crate) fn new(config: &RedisAdapterConfig) -> Self {
        Classic {
            uid: convert::short_id(),
            prefix: config.key_prefix.clone(),
            specific_response_channel: config.publish_on_specific_response_channel,
        }
    }

    /// `prefix#nsp#`: broadcasts (plus `room#` for one room).
    pub(crate) fn broadcast_channel(prefix: &str, nsp: &str) -> String {
        format!("{prefix}#{nsp}#")
    }

    pub(crate) fn request_channel(prefix: &str, nsp: &str) -> String {
        format!("{prefix}-request#{nsp}#")
    }

    fn response_channel(&self, nsp: &str) -> String {
        format!("{}-response#{}#", self.prefix, nsp)
    }

    /// Where this node answers a request from `uid`.
    fn response_channel_for(&self, nsp: &str, uid: Option<&str>) -> String {
        match uid {
            Some(uid) if self.specific_response_channel => format!("{}{}#", self.response_channel(nsp), uid),
            _ => self.response_channel(nsp),
        }
    }

    fn publish(channel: String, payload: Vec<u8>) -> Outgoing {
        Outgoing { sharded: false, channel, payload, record: None }
    }

    fn request(&self, nsp: &str, body: Value) -> Outgoing {
        Self::publish(Self::request_channel(&self.prefix, nsp), body.to_string().into_bytes())
    }

    /// `[uid, packet, opts]` in msgpack, on the namespace's (or the one room's) broadcast channel.
    pub(crate) fn broadcast(
        prefix: &str,
        uid: &str,
        nsp: &str,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> Outgoing {
        let mut w = Writer::with_capacity(64 + payload.binary.iter().map(|b| b.len()).sum::<usize>());
        w.array_len(3);
        w.str(uid);
        wire::write_packet(&mut w, nsp, event, &payload.args, &payload.binary);
        wire::write_options(&mut w, convert::options_ref(opts));
        let mut channel = Self::broadcast_channel(prefix, nsp);
        if opts.rooms.len() == 1 {
            channel.push_str(&opts.rooms[0]);
            channel.push('#');
        }
        Self::publish(channel, w.finish())
    }

    fn decode_broadcast(
        &self,
        ns: &Namespace,
        channel: &[u8],
        payload: &[u8],
        all_rooms: bool,
    ) -> Result<Option<Message>, Error> {
        // `prefix#nsp#room#`: skip rooms this node does not have before decoding anything (unless a
        // restore here may still join them).
        let base = Self::broadcast_channel(&self.prefix, ns.name());
        if let Some(rest) = channel.strip_prefix(base.as_bytes()).filter(|_| !all_rooms) {
            if let Some(room) = rest.strip_suffix(b"#") {
                if !room.is_empty() && !ns.has_room(&convert::text(room)) {
                    return Ok(None);
                }
            }
        }
        // Redis hands every node its own broadcasts back: recognised from the first element, before
        // the whole message is decoded (~3,500 instructions per broadcast on the sending node).
        if sent_by(payload, &self.uid) {
            return Ok(None);
        }
        let decoded = msgpack::decode(payload)?;
        let Value::Array(mut parts) = decoded.value else { return Err(Error::Malformed("not an array")) };
        if parts.len() < 3 || parts[0].as_str() == Some(self.uid.as_str()) {
            return Ok(None);
        }
        let opts = convert::parse_options(parts.get(2));
        let from = parts[0].as_str().map(str::to_string);
        // A Switchyard node with connection state recovery adds the stream id (Node ignores it).
        let offset = parts.get(3).and_then(Value::as_str).map(str::to_string);
        let Some(packet) = wire::parse_packet(parts.swap_remove(1), &decoded.binary) else {
            return Err(Error::Malformed("not an event packet"));
        };
        if packet.nsp != ns.name() {
            return Ok(None);
        }
        let (event, payload) = convert::event(packet);
        Ok(Some(Message::new(
            from,
            Value::Null,
            Incoming::Broadcast { event, payload, opts, ack_window: None, offset },
        )))
    }

    fn decode_request(&self, payload: &[u8]) -> Result<Option<Message>, Error> {
        let msgpack::Decoded { value: request, binary } = decode_json_or_msgpack(payload)?;
        let Some(kind) = request.get("type").and_then(Value::as_u64) else { return Err(Error::Malformed("no type")) };
        let from = request.get("uid").and_then(Value::as_str);
        if from == Some(self.uid.as_str()) {
            // Our own request: everything it does here was done locally already.
            return Ok(None);
        }
        let request_id = string_id(request.get("requestId"));
        let remote_op = |kind| match kind {
            kind::REMOTE_JOIN => RemoteOp::Join,
            kind::REMOTE_LEAVE => RemoteOp::Leave,
            _ => RemoteOp::Disconnect,
        };
        let close = request.get("close").and_then(Value::as_bool).unwrap_or(false);
        let incoming = match kind {
            kind::SOCKETS => Incoming::SocketIds { rooms: convert::rooms(request.get("rooms")) },
            kind::ALL_ROOMS => Incoming::AllRooms,
            kind::REMOTE_JOIN | kind::REMOTE_LEAVE | kind::REMOTE_DISCONNECT => match request.get("opts") {
                Some(opts) => Incoming::Remote {
                    op: remote_op(kind),
                    opts: convert::parse_options(Some(opts)),
                    rooms: convert::rooms(request.get("rooms")),
                    close,
                },
                // The older form names one socket; the requester waits for an answer from its node.
                None => Incoming::RemoteSocket {
                    op: remote_op(kind),
                    sid: request.get("sid").and_then(Value::as_str).map(str::to_string),
                    room: request.get("room").and_then(convert::room),
                    close,
                },
            },
            kind::REMOTE_FETCH => Incoming::FetchSockets { opts: convert::parse_options(request.get("opts")) },
            kind::SERVER_SIDE_EMIT => match request.get("data").and_then(Value::as_array).map(|d| d.split_first()) {
                Some(Some((Value::String(event), args))) => Incoming::ServerSideEmit {
                    event: event.clone(),
                    payload: convert::payload(args.to_vec(), &binary),
                    wants_ack: request_id.is_string(),
                },
                _ => Incoming::Ignored,
            },
            kind::BROADCAST if request_id.is_string() => {
                let opts = convert::parse_options(request.get("opts"));
                let window = request
                    .pointer("/opts/flags/timeout")
                    .and_then(Value::as_u64)
                    .map(Duration::from_millis)
                    .unwrap_or(REMOTE_ACK_WINDOW);
                match request.get("packet").cloned().and_then(|p| wire::parse_packet(p, &binary)) {
                    Some(packet) => {
                        let (event, payload) = convert::event(packet);
                        Incoming::Broadcast { event, payload, opts, ack_window: Some(window), offset: None }
                    }
                    None => Incoming::Malformed("broadcast without an event packet"),
                }
            }
            // Broadcasts travel on the broadcast channel: one here without an id has nobody to answer.
            kind::BROADCAST => Incoming::Ignored,
            other => Incoming::Unknown(other),
        };
        Ok(Some(Message::new(from.map(str::to_string), request_id, incoming)))
    }

    fn decode_response(&self, payload: &[u8]) -> Result<Option<Message>, Error> {
        let msgpack::Decoded { value, binary } = decode_json_or_msgpack(payload)?;
        let Some(id) = value.get("requestId").and_then(Value::as_str) else { return Ok(None) };
        let response = match value.get("type").and_then(Value::as_u64) {
            Some(kind::BROADCAST_CLIENT_COUNT) => {
                Response::ClientCount(value.get("clientCount").and_then(Value::as_u64).unwrap_or(0) as usize)
            }
            Some(kind::BROADCAST_ACK) => Response::Ack(answer_payload(value.get("packet"), &binary)),
            Some(kind::SERVER_SIDE_EMIT) => Response::ServerSideAck(value.get("data").cloned().unwrap_or(Value::Null)),
            _ => {
                if let Some(Value::Array(sockets)) = value.get("sockets") {
                    Response::Sockets(sockets.clone())
                } else if let Some(Value::Array(rooms)) = value.get("rooms") {
                    Response::Rooms(rooms.clone())
                } else {
                    return Ok(None);
                }
            }
        };
        Ok(Some(Message::new(None, Value::String(id.to_string()), Incoming::Response(response))))
    }
}

impl WireFormat for Classic {
    fn uid(&self) -> &str {
        &self.uid
    }

    fn new_id(&self) -> String {
        convert::short_id()
    }

    fn namespace_subscriptions(&self, nsp: &str) -> Vec<(Subscription, Route)> {
        let response = self.response_channel(nsp);
        let own_response = format!("{response}{}#", self.uid);
        vec![
            (Subscription::Pattern(format!("{}*", Self::broadcast_channel(&self.prefix, nsp))), Route::Broadcasts),
            (Subscription::Channel(Self::request_channel(&self.prefix, nsp)), Route::Requests),
            (Subscription::Channel(response), Route::Responses),
            (Subscription::Channel(own_response), Route::Responses),
        ]
    }

    fn room_subscription(&self, _nsp: &str, _room: &str) -> Option<Subscription> {
        None
    }

    fn socket_subscription(&self, _nsp: &str, _id: &str) -> Option<Subscription> {
        None
    }

    fn server_count_command(&self, nsp: &str) -> (redis::Cmd, &'static str) {
        let mut cmd = redis::cmd("PUBSUB");
        cmd.arg("NUMSUB").arg(Self::request_channel(&self.prefix, nsp));
        (cmd, "PUBSUB NUMSUB")
    }

    fn encode_broadcast(&self, nsp: &str, event: &str, payload: &Payload, opts: &BroadcastOptions) -> Outgoing {
        Self::broadcast(&self.prefix, &self.uid, nsp, event, payload, opts)
    }

    fn encode_recorded_broadcast(
        &self,
        nsp: &str,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> (Outgoing, Vec<u8>, OffsetSlot) {
        // The stored entry is the message itself; the script publishes it as `[uid, packet, opts, id]`.
        let mut message = Self::broadcast(&self.prefix, &self.uid, nsp, event, payload, opts);
        let entry = std::mem::take(&mut message.payload);
        (message, entry, OffsetSlot::Classic)
    }

    fn encode_request(&self, nsp: &str, request: Request<'_>) -> Option<Outgoing> {
        let uid = &self.uid;
        Some(match request {
            Request::BroadcastWithAck { id, event, payload, opts } => {
                let mut w = Writer::with_capacity(96);
                w.map_len(5);
                w.str("uid");
                w.str(uid);
                w.str("requestId");
                w.str(id);
                w.str("type");
                w.uint(kind::BROADCAST);
                w.str("packet");
                wire::write_packet(&mut w, nsp, event, &payload.args, &payload.binary);
                w.str("opts");
                wire::write_options(&mut w, convert::options_ref(opts));
                Self::publish(Self::request_channel(&self.prefix, nsp), w.finish())
            }
            Request::RoomsChange { opts, rooms, leave } => {
                let kind = if leave { kind::REMOTE_LEAVE } else { kind::REMOTE_JOIN };
                let rooms: Vec<&str> = rooms.iter().map(|r| r.as_ref()).collect();
                let filter = convert::rooms_filter(opts);
                self.request(nsp, json!({"uid": uid, "type": kind, "opts": filter, "rooms": rooms}))
            }
            Request::Disconnect { opts, close } => {
                let filter = convert::rooms_filter(opts);
                self.request(nsp, json!({"uid": uid, "type": kind::REMOTE_DISCONNECT, "opts": filter, "close": close}))
            }
            Request::FetchSockets { id, opts } => {
                let filter = convert::rooms_filter(opts);
                self.request(nsp, json!({"uid": uid, "requestId": id, "type": kind::REMOTE_FETCH, "opts": filter}))
            }
            Request::AllRooms { id } => {
                self.request(nsp, json!({"uid": uid, "requestId": id, "type": kind::ALL_ROOMS}))
            }
            Request::ServerSideEmit { id, event, payload } => {
                let data = wire::server_side_data(event, &payload.args, &payload.binary);
                let mut request = json!({"uid": uid, "type": kind::SERVER_SIDE_EMIT, "data": data});
                if let Some(id) = id {
                    request["requestId"] = json!(id);
                }
                self.request(nsp, request)
            }
        })
    }

    fn has_rooms_request(&self) -> bool {
        true
    }

    fn encode_reply(&self, nsp: &str, to: Option<&str>, reply: Reply<'_>) -> Option<Outgoing> {
        let body = match reply {
            Reply::ClientCount { request_id, count } => {
                json!({"type": kind::BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count})
            }
            Reply::Ack { request_id, answer } => {
                let mut w = Writer::default();
                w.map_len(3);
                w.str("type");
                w.uint(kind::BROADCAST_ACK);
                w.str("requestId");
                w.value(request_id, &[]);
                w.str("packet");
                match answer.args.first() {
                    Some(first) => w.value(first, &answer.binary),
                    None => w.nil(),
                }
                return Some(Self::publish(self.response_channel_for(nsp, to), w.finish()));
            }
            Reply::Sockets { request_id, sockets } => json!({"requestId": request_id, "sockets": sockets}),
            Reply::Rooms { request_id, rooms } => json!({"requestId": request_id, "rooms": rooms}),
            Reply::Done { request_id } => json!({"requestId": request_id}),
            Reply::ServerSideAck { request_id, answer } => {
                let mut body = json!({"type": kind::SERVER_SIDE_EMIT, "requestId": request_id});
                if let Some(first) = wire::first_arg(&answer.args, &answer.binary) {
                    body["data"] = first;
                }
                // Node's classic adapter answers server-side emits on the shared response channel.
                return Some(Self::publish(self.response_channel(nsp), body.to_string().into_bytes()));
            }
        };
        Some(Self::publish(self.response_channel_for(nsp, to), body.to_string().into_bytes()))
    }

    fn decode(
        &self,
        ns: &Namespace,
        route: Route,
        channel: &[u8],
        payload: &[u8],
        all_rooms: bool,
    ) -> Result<Option<Message>, Error> {
        match route {
            Route::Broadcasts => self.decode_broadcast(ns, channel, payload, all_rooms),
            Route::Requests => self.decode_request(payload),
            Route::Responses => self.decode_response(payload),
        }
    }
}

/// Whether `payload` is a broadcast `[uid, ...]` (an array of at least 3) whose first element is the
/// string `uid`: only the headers and that string are read. Anything else is left to the full decode.
fn sent_by(payload: &[u8], uid: &str) -> bool {
    let (len, rest) = match payload {
        [b @ 0x90..=0x9f, rest @ ..] => (usize::from(b & 0x0f), rest),
        [0xdc, a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
        _ => return false,
    };
    let (str_len, rest) = match rest {
        [b @ 0xa0..=0xbf, rest @ ..] => (usize::from(b & 0x1f), rest),
        [0xd9, n, rest @ ..] => (usize::from(*n), rest),
        _ => return false,
    };
    len >= 3 && str_len == uid.len() && rest.starts_with(uid.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn own_broadcasts_are_recognised_from_their_first_element() {
        let opts = BroadcastOptions::default();
        let payload = Payload::from(json!("hi"));
        let ours = std::mem::take(&mut Classic::broadcast("socket.io", "abc123", "/", "e", &payload, &opts).payload);
        assert!(sent_by(&ours, "abc123"));
        assert!(!sent_by(&ours, "abc12"));
        assert!(!sent_by(&ours, "xyz789"));
        // A longer uid (str8) and a message that is not a 3-array are read as well.
        let long = "u".repeat(40);
        let mut w = Writer::with_capacity(64);
        w.array_len(3);
        w.str(&long);
        w.nil();
        w.nil();
        assert!(sent_by(&w.finish(), &long));
        let mut w = Writer::with_capacity(64);
        w.array_len(2);
        w.str("abc123");
        w.nil();
        assert!(!sent_by(&w.finish(), "abc123"));
        assert!(!sent_by(b"", "abc123") && !sent_by(&[0x93], "abc123") && !sent_by(&[0x93, 0xa6, b'a'], "abc123"));
    }

    fn classic() -> Classic {
        Classic { uid: "AAAAAA".into(), prefix: "socket.io".into(), specific_response_channel: false }
    }

    fn opts() -> BroadcastOptions {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("r".into());
        opts.except.push("x".into());
        opts.flags.volatile = true;
        opts
    }

    fn shown(message: &Outgoing) -> String {
        assert!(!message.sharded);
        format!("{} {}", message.channel, message.payload.escape_ascii())
    }

    // Same bytes as tests/wire_bytes.rs pins through Redis.
    #[test]
    fn broadcast_bytes() {
        let payload = Payload::new(vec![json!({"k": "v"}), json!(1.5)]).push_binary(vec![1u8, 2, 3]);
        assert_eq!(
            shown(&classic().encode_broadcast("/", "bin", &payload, &opts())),
            r"socket.io#/#r# \x93\xa6AAAAAA\x83\xa4type\x02\xa4data\x94\xa3bin\x81\xa1k\xa1v\xcb?\xf8\x00\x00\x00\x00\x00\x00\xc4\x03\x01\x02\x03\xa3nsp\xa1/\x83\xa5rooms\x91\xa1r\xa6except\x91\xa1x\xa5flags\x81\xa8volatile\xc3"
        );
    }

    #[test]
    fn request_bytes() {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("r".into());
        let payload = Payload::new(vec![json!(1)]);
        let request = Request::BroadcastWithAck { id: "RRRRRR", event: "ask", payload: &payload, opts: &opts };
        assert_eq!(
            shown(&classic().encode_request("/", request).unwrap()),
            r"socket.io-request#/# \x85\xa3uid\xa6AAAAAA\xa9requestId\xa6RRRRRR\xa4type\x07\xa6packet\x83\xa4type\x02\xa4data\x92\xa3ask\x01\xa3nsp\xa1/\xa4opts\x83\xa5rooms\x91\xa1r\xa6except\x90\xa5flags\x80"
        );
        let request = Request::FetchSockets { id: "RRRRRR", opts: &opts };
        assert_eq!(
            shown(&classic().encode_request("/", request).unwrap()),
            r#"socket.io-request#/# {\"opts\":{\"except\":[],\"rooms\":[\"r\"]},\"requestId\":\"RRRRRR\",\"type\":5,\"uid\":\"AAAAAA\"}"#
        );
    }

    #[test]
    fn replies_go_to_the_requester_channel_when_asked() {
        let classic = Classic { specific_response_channel: true, ..classic() };
        let id = json!("RRRRRR");
        let reply = classic.encode_reply("/", Some("BBBBBB"), Reply::ClientCount { request_id: &id, count: 2 });
        assert_eq!(
            shown(&reply.unwrap()),
            r#"socket.io-response#/#BBBBBB# {\"clientCount\":2,\"requestId\":\"RRRRRR\",\"type\":8}"#
        );
        // Server-side emit answers always use the shared channel, as Node's adapter does.
        let answer = Payload::new(vec![json!("ok")]);
        let reply =
            classic.encode_reply("/", Some("BBBBBB"), Reply::ServerSideAck { request_id: &id, answer: &answer });
        assert_eq!(
            shown(&reply.unwrap()),
            r#"socket.io-response#/# {\"data\":\"ok\",\"requestId\":\"RRRRRR\",\"type\":6}"#
        );
    }
}
