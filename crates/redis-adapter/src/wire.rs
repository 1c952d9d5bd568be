//! Pieces shared by both wire formats: broadcast options, packets and fetch-sockets entries as the
//! Node adapters write them.

use crate::msgpack::{payload_from, Writer};
use bytes::Bytes;
use serde_json::{json, Map, Value};
use switchyard_socketio::{BroadcastFlags, BroadcastOptions, Payload, Room, SocketInfo};

/// Socket.IO packet type of an event (Node always publishes EVENT; binary-ness is the encoder's call).
pub const EVENT: u64 = 2;
/// BINARY_EVENT: accepted too, in case a peer publishes packets already typed for the wire.
pub const BINARY_EVENT: u64 = 5;

/// `{rooms: [...], except: [...], flags: {...}}`, as JSON.
pub fn options_json(opts: &BroadcastOptions) -> Value {
    json!({
        "rooms": opts.rooms.iter().map(|r| r.as_ref()).collect::<Vec<_>>(),
        "except": opts.except.iter().map(|r| r.as_ref()).collect::<Vec<_>>(),
        "flags": flags_json(&opts.flags),
    })
}

/// Only the flags that are set, as notepack drops undefined properties.
pub fn flags_json(flags: &BroadcastFlags) -> Value {
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
pub fn write_options(w: &mut Writer, opts: &BroadcastOptions) {
    w.map_len(3);
    w.str("rooms");
    w.array_len(opts.rooms.len());
    for room in &opts.rooms {
        w.str(room);
    }
    w.str("except");
    w.array_len(opts.except.len());
    for room in &opts.except {
        w.str(room);
    }
    w.str("flags");
    w.value(&flags_json(&opts.flags), &[]);
}

/// Writes `{type: 2, data: [event, ...args], nsp}` as a msgpack map (binary as `bin`).
pub fn write_packet(w: &mut Writer, nsp: &str, event: &str, payload: &Payload) {
    w.map_len(3);
    w.str("type");
    w.uint(EVENT);
    w.str("data");
    w.array_len(payload.args.len() + 1);
    w.str(event);
    w.payload_args(payload);
    w.str("nsp");
    w.str(nsp);
}

/// Reads broadcast options; a missing or malformed field means "none".
pub fn parse_options(value: Option<&Value>) -> BroadcastOptions {
    let mut opts = BroadcastOptions::default();
    let Some(Value::Object(map)) = value else { return opts };
    opts.rooms = rooms(map.get("rooms")).collect();
    opts.except = rooms(map.get("except")).collect();
    if let Some(Value::Object(flags)) = map.get("flags") {
        opts.flags.volatile = flags.get("volatile").and_then(Value::as_bool).unwrap_or(false);
    }
    opts
}

/// Room names from a JSON array; Node rooms may be numbers, which match their decimal form.
pub fn rooms(value: Option<&Value>) -> impl Iterator<Item = Room> + '_ {
    value.and_then(Value::as_array).into_iter().flatten().filter_map(room_name)
}

pub fn room_name(value: &Value) -> Option<Room> {
    match value {
        Value::String(s) => Some(Room::from(s.as_str())),
        Value::Number(n) => Some(Room::from(n.to_string().as_str())),
        _ => None,
    }
}

/// An event packet taken apart: the namespace, the event name and its arguments.
#[derive(Debug, Clone, PartialEq)]
pub struct EventPacket {
    pub nsp: String,
    pub event: String,
    pub payload: Payload,
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
    Some(EventPacket { nsp, event, payload: payload_from(data, binary) })
}

/// `[event, ...args]` for server-side emit over JSON: binary becomes Node's `Buffer.toJSON()` form,
/// which is what `JSON.stringify` makes of a Buffer.
pub fn server_side_data(event: &str, payload: &Payload) -> Vec<Value> {
    let mut data = Vec::with_capacity(payload.args.len() + 1);
    data.push(Value::String(event.to_string()));
    data.extend(payload.args.iter().map(|arg| buffers_as_json(arg, &payload.binary)));
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

/// The first argument of an answer, which is all Node's adapters forward (`undefined` when none).
pub fn first_arg(payload: &Payload) -> Option<Value> {
    payload.args.first().map(|arg| buffers_as_json(arg, &payload.binary))
}

/// A fetch-sockets entry `{id, handshake, rooms, data}`.
pub fn socket_json(info: &SocketInfo) -> Value {
    json!({"id": info.id, "handshake": info.handshake, "rooms": info.rooms, "data": info.data})
}

/// A fetch-sockets entry from another node.
pub fn socket_from_json(nsp: &str, value: &Value) -> Option<SocketInfo> {
    let id = value.get("id")?.as_str()?.to_string();
    let rooms = value
        .get("rooms")
        .and_then(Value::as_array)
        .map(|rooms| rooms.iter().filter_map(room_name).map(|r| r.to_string()).collect())
        .unwrap_or_default();
    Some(SocketInfo {
        id,
        nsp: nsp.to_string(),
        handshake: value.get("handshake").cloned().unwrap_or(Value::Null),
        rooms,
        data: value.get("data").cloned().unwrap_or(Value::Null),
        local: false,
    })
}

/// Six random characters, like Node's `uid2(6)` (request ids of the classic adapter).
pub fn short_id() -> String {
    random_chars(6)
}

/// Sixteen hex digits, like the cluster adapter's `randomBytes(8).toString("hex")`.
pub fn hex_id() -> String {
    use rand::Rng;
    let value: u64 = rand::thread_rng().gen();
    format!("{value:016x}")
}

fn random_chars(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..n).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::msgpack;

    #[test]
    fn packet_round_trip_with_binary() {
        let payload = Payload::new(vec![json!({"k": 1})]).push_binary(vec![9u8, 8]);
        let mut w = Writer::default();
        write_packet(&mut w, "/chat", "ev", &payload);
        let decoded = msgpack::decode(&w.finish()).unwrap();
        let packet = parse_packet(decoded.value, &decoded.binary).unwrap();
        assert_eq!(packet, EventPacket { nsp: "/chat".into(), event: "ev".into(), payload });
    }

    #[test]
    fn options_round_trip() {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("a".into());
        opts.rooms.push("b".into());
        opts.except.push("c".into());
        opts.flags.volatile = true;
        let mut w = Writer::default();
        write_options(&mut w, &opts);
        let decoded = msgpack::decode(&w.finish()).unwrap();
        assert_eq!(decoded.value, options_json(&opts));
        assert_eq!(parse_options(Some(&decoded.value)), opts);
        assert_eq!(
            parse_options(Some(&json!({"rooms": [1, "x", null]}))).rooms.as_slice(),
            &[Room::from("1"), "x".into()]
        );
        assert_eq!(parse_options(None), BroadcastOptions::default());
    }

    #[test]
    fn packets_that_are_not_events_are_refused() {
        assert_eq!(parse_packet(json!({"type": 3, "data": ["x"]}), &[]), None);
        assert_eq!(parse_packet(json!({"type": 2, "data": []}), &[]), None);
        assert_eq!(parse_packet(json!({"type": 2, "data": [{}]}), &[]), None);
        assert_eq!(parse_packet(json!([1, 2]), &[]), None);
        let packet = parse_packet(json!({"type": 2, "data": ["e", 1]}), &[]).unwrap();
        assert_eq!(packet.nsp, "/");
    }

    #[test]
    fn server_side_binary_is_a_node_buffer() {
        let payload = Payload::empty().push_binary(vec![1u8, 2]);
        assert_eq!(server_side_data("ev", &payload), vec![json!("ev"), json!({"type": "Buffer", "data": [1, 2]})]);
    }

    #[test]
    fn ids_have_node_shapes() {
        assert_eq!(short_id().len(), 6);
        assert!(hex_id().chars().all(|c| c.is_ascii_hexdigit()) && hex_id().len() == 16);
    }
}
