//! Pieces shared by both wire formats of Node's Redis adapters: broadcast options, event packets and
//! fetch-sockets entries, as JSON and as msgpack. Plain types only: rooms are anything that reads as
//! a `&str`, arguments are JSON values with binary placeholders beside their attachments.

use super::msgpack::{select_attachments, Writer};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use std::borrow::Cow;

/// Socket.IO packet type of an event (Node always publishes EVENT; binary-ness is the encoder's call).
pub const EVENT: u64 = 2;
/// BINARY_EVENT: accepted too, in case a peer publishes packets already typed for the wire.
pub const BINARY_EVENT: u64 = 5;

/// Broadcast flags that travel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Flags {
    pub volatile: bool,
    pub local: bool,
}

/// Broadcast options to write, borrowed from the caller's.
#[derive(Debug, Clone, Copy)]
pub struct OptionsRef<'a, R> {
    pub rooms: &'a [R],
    pub except: &'a [R],
    pub flags: Flags,
}

/// Broadcast options as read from the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options<R> {
    pub rooms: Vec<R>,
    pub except: Vec<R>,
    pub flags: Flags,
}

impl<R> Default for Options<R> {
    fn default() -> Self {
        Options { rooms: Vec::new(), except: Vec::new(), flags: Flags::default() }
    }
}

fn names<R: AsRef<str>>(rooms: &[R]) -> Vec<&str> {
    rooms.iter().map(AsRef::as_ref).collect()
}

/// `{rooms: [...], except: [...], flags: {...}}`, as JSON.
pub fn options_json<R: AsRef<str>>(opts: OptionsRef<'_, R>) -> Value {
    json!({
        "rooms": names(opts.rooms),
        "except": names(opts.except),
        "flags": flags_json(opts.flags),
    })
}

/// `{rooms, except}`: the socket filter of classic requests.
pub fn rooms_filter_json<R: AsRef<str>>(rooms: &[R], except: &[R]) -> Value {
    json!({"rooms": names(rooms), "except": names(except)})
}

/// Only the flags that are set, as notepack drops undefined properties.
pub fn flags_json(flags: Flags) -> Value {
    let mut map = Map::new();
    if flags.volatile {
        map.insert("volatile".into(), Value::Bool(true));
    }
    if flags.local {
        map.insert("local".into(), Value::Bool(true));
    }
    Value::Object(map)
}

/// Writes broadcast options as a msgpack map.
pub fn write_options<R: AsRef<str>>(w: &mut Writer, opts: OptionsRef<'_, R>) {
    w.map_len(3);
    w.str("rooms");
    w.array_len(opts.rooms.len());
    for room in opts.rooms {
        w.str(room.as_ref());
    }
    w.str("except");
    w.array_len(opts.except.len());
    for room in opts.except {
        w.str(room.as_ref());
    }
    w.str("flags");
    w.value(&flags_json(opts.flags), &[]);
}

/// Writes `{type: 2, data: [event, ...args], nsp}` as a msgpack map (binary as `bin`).
pub fn write_packet(w: &mut Writer, nsp: &str, event: &str, args: &[Value], binary: &[Bytes]) {
    w.map_len(3);
    w.str("type");
    w.uint(EVENT);
    w.str("data");
    w.array_len(args.len() + 1);
    w.str(event);
    w.args(args, binary);
    w.str("nsp");
    w.str(nsp);
}

/// `{type: 2, data: [event, ...args], nsp}` as JSON with placeholders (msgpack turns them into bin).
pub fn packet_json(nsp: &str, event: &str, args: &[Value]) -> Value {
    json!({"type": EVENT, "data": event_data(event, args), "nsp": nsp})
}

/// `[event, ...args]`, placeholders kept.
pub fn event_data(event: &str, args: &[Value]) -> Vec<Value> {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Value::String(event.to_string()));
    data.extend(args.iter().cloned());
    data
}

/// Reads broadcast options; a missing or malformed field means "none".
pub fn parse_options<R: for<'s> From<&'s str>>(value: Option<&Value>) -> Options<R> {
    let mut opts = Options::default();
    let Some(Value::Object(map)) = value else { return opts };
    opts.rooms = rooms(map.get("rooms")).map(|r| R::from(&r)).collect();
    opts.except = rooms(map.get("except")).map(|r| R::from(&r)).collect();
    if let Some(Value::Object(flags)) = map.get("flags") {
        opts.flags.volatile = flags.get("volatile").and_then(Value::as_bool).unwrap_or(false);
    }
    opts
}

/// Room names from a JSON array; Node rooms may be numbers, which match their decimal form.
pub fn rooms(value: Option<&Value>) -> impl Iterator<Item = Cow<'_, str>> {
    value.and_then(Value::as_array).into_iter().flatten().filter_map(room_name)
}

pub fn room_name(value: &Value) -> Option<Cow<'_, str>> {
    match value {
        Value::String(s) => Some(Cow::Borrowed(s.as_str())),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// An event packet taken apart: the namespace, the event name, its arguments and the attachments
/// they reference (numbered from 0).
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    pub nsp: String,
    pub event: String,
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

/// Reads `{type, data: [event, ...args], nsp}`; `None` for anything but an event with a name.
pub fn parse_packet(value: Value, binary: &[Bytes]) -> Option<EventPacket> {
    let Value::Object(mut map) = value else { return None };
    let kind = map.get("type").and_then(Value::as_u64)?;
    if kind != EVENT && kind != BINARY_EVENT {
        return None;
    }
    let nsp = match map.remove("nsp") {
        Some(Value::String(nsp)) => nsp,
        _ => "/".to_string(),
    };
    let Some(Value::Array(mut data)) = map.remove("data") else { return None };
    if data.is_empty() {
        return None;
    }
    let event = match data.remove(0) {
        Value::String(event) => event,
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    let (args, binary) = select_attachments(data, binary);
    Some(EventPacket { nsp, event, args, binary })
}

/// `[event, ...args]` for server-side emit over JSON: binary becomes Node's `Buffer.toJSON()` form,
/// which is what `JSON.stringify` makes of a Buffer.
pub fn server_side_data(event: &str, args: &[Value], binary: &[Bytes]) -> Vec<Value> {
    let mut data = Vec::with_capacity(args.len() + 1);
    data.push(Value::String(event.to_string()));
    data.extend(args.iter().map(|arg| buffers_as_json(arg, binary)));
    data
}

fn buffers_as_json(value: &Value, binary: &[Bytes]) -> Value {
    if binary.is_empty() {
        return value.clone();
    }
    match value {
        Value::Array(items) => Value::Array(items.iter().map(|v| buffers_as_json(v, binary)).collect()),
        Value::Object(map) => {
            if let Some(data) = payload_binary(map, binary) {
                return json!({"type": "Buffer", "data": data.iter().map(|b| u64::from(*b)).collect::<Vec<_>>()});
            }
            Value::Object(map.iter().map(|(k, v)| (k.clone(), buffers_as_json(v, binary))).collect())
        }
        other => other.clone(),
    }
}

fn payload_binary<'a>(map: &Map<String, Value>, binary: &'a [Bytes]) -> Option<&'a Bytes> {
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    binary.get(map.get("num")?.as_u64()? as usize)
}

/// The first argument of an answer, which is all Node's adapters forward (`undefined` when none),
/// binary as a Node Buffer's JSON.
pub fn first_arg(args: &[Value], binary: &[Bytes]) -> Option<Value> {
    args.first().map(|arg| buffers_as_json(arg, binary))
}

/// A fetch-sockets entry from another node, before it gets a namespace.
#[derive(Debug, Clone, PartialEq)]
pub struct SocketEntry {
    pub id: String,
    pub handshake: Value,
    pub rooms: Vec<String>,
    pub data: Value,
}

/// A fetch-sockets entry `{id, handshake, rooms, data}`.
pub fn socket_json(id: &str, handshake: &Value, rooms: &[String], data: &Value) -> Value {
    json!({"id": id, "handshake": handshake, "rooms": rooms, "data": data})
}

/// Reads a fetch-sockets entry; `None` without a string id.
pub fn socket_from_json(value: &Value) -> Option<SocketEntry> {
    let id = value.get("id")?.as_str()?.to_string();
    let rooms = value
        .get("rooms")
        .and_then(Value::as_array)
        .map(|rooms| rooms.iter().filter_map(room_name).map(Cow::into_owned).collect())
        .unwrap_or_default();
    Some(SocketEntry {
        id,
        handshake: value.get("handshake").cloned().unwrap_or(Value::Null),
        rooms,
        data: value.get("data").cloned().unwrap_or(Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::msgpack;

    fn placeholder(n: usize) -> Value {
        crate::socketio::placeholder(n)
    }

    #[test]
    fn packet_round_trip_with_binary() {
        let args = vec![json!({"k": 1}), placeholder(0)];
        let binary = vec![Bytes::from_static(&[9, 8])];
        let mut w = Writer::default();
        write_packet(&mut w, "/chat", "ev", &args, &binary);
        let decoded = msgpack::decode(&w.finish()).unwrap();
        let packet = parse_packet(decoded.value, &decoded.binary).unwrap();
        assert_eq!(packet, EventPacket { nsp: "/chat".into(), event: "ev".into(), args, binary });
    }

    #[test]
    fn options_round_trip() {
        let rooms = ["a", "b"];
        let except = ["c"];
        let opts = OptionsRef { rooms: &rooms, except: &except, flags: Flags { volatile: true, local: false } };
        let mut w = Writer::default();
        write_options(&mut w, opts);
        let decoded = msgpack::decode(&w.finish()).unwrap();
        assert_eq!(decoded.value, options_json(opts));
        let parsed: Options<String> = parse_options(Some(&decoded.value));
        assert_eq!(parsed.rooms, ["a", "b"]);
        assert_eq!(parsed.except, ["c"]);
        assert_eq!(parsed.flags, opts.flags);
        let numbers: Options<String> = parse_options(Some(&json!({"rooms": [1, "x", null]})));
        assert_eq!(numbers.rooms, ["1", "x"]);
        assert_eq!(parse_options::<String>(None), Options::default());
        assert_eq!(rooms_filter_json(&rooms, &except), json!({"rooms": ["a", "b"], "except": ["c"]}));
    }

    #[test]
    fn packets_that_are_not_events_are_refused() {
        assert_eq!(parse_packet(json!({"type": 3, "data": ["x"]}), &[]), None);
        assert_eq!(parse_packet(json!({"type": 2, "data": []}), &[]), None);
        assert_eq!(parse_packet(json!({"type": 2, "data": [{}]}), &[]), None);
        assert_eq!(parse_packet(json!([1, 2]), &[]), None);
        let packet = parse_packet(json!({"type": 2, "data": ["e", 1]}), &[]).unwrap();
        assert_eq!(packet.nsp, "/");
        assert_eq!(packet_json("/", "e", &[json!(1)]), json!({"type": 2, "data": ["e", 1], "nsp": "/"}));
    }

    #[test]
    fn server_side_binary_is_a_node_buffer() {
        let binary = [Bytes::from_static(&[1, 2])];
        assert_eq!(
            server_side_data("ev", &[placeholder(0)], &binary),
            vec![json!("ev"), json!({"type": "Buffer", "data": [1, 2]})]
        );
        assert_eq!(first_arg(&[placeholder(0)], &binary), Some(json!({"type": "Buffer", "data": [1, 2]})));
        assert_eq!(first_arg(&[], &[]), None);
    }

    #[test]
    fn socket_entries_round_trip() {
        let value = socket_json("id1", &json!({"a": 1}), &["r".to_string()], &json!(null));
        let entry = socket_from_json(&value).unwrap();
        assert_eq!(
            entry,
            SocketEntry { id: "id1".into(), handshake: json!({"a": 1}), rooms: vec!["r".into()], data: Value::Null }
        );
        assert_eq!(socket_from_json(&json!({"rooms": []})), None);
    }
}
