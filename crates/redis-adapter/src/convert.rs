//! Between Socket.IO's types and the plain ones of the cluster codecs
//! ([`switchyard_protocol::cluster`]), and the random ids Node's adapters use.

use bytes::Bytes;
use serde_json::Value;
use switchyard_protocol::cluster::msgpack::select_attachments;
use switchyard_protocol::cluster::wire::{self, EventPacket, Flags, Options, OptionsRef};
use switchyard_socketio::{BroadcastFlags, BroadcastOptions, Payload, Room, SocketInfo};

/// Broadcast options as the codecs write them.
pub(crate) fn options_ref(opts: &BroadcastOptions) -> OptionsRef<'_, Room> {
    OptionsRef {
        rooms: &opts.rooms,
        except: &opts.except,
        flags: Flags { volatile: opts.flags.volatile, local: opts.flags.local },
    }
}

/// `{rooms, except, flags}` as JSON.
pub(crate) fn options_json(opts: &BroadcastOptions) -> Value {
    wire::options_json(options_ref(opts))
}

/// `{rooms, except}`: the socket filter of classic requests.
pub(crate) fn rooms_filter(opts: &BroadcastOptions) -> Value {
    wire::rooms_filter_json(&opts.rooms, &opts.except)
}

/// Reads broadcast options; a missing or malformed field means "none".
pub(crate) fn parse_options(value: Option<&Value>) -> BroadcastOptions {
    let Options { rooms, except, flags }: Options<Room> = wire::parse_options(value);
    BroadcastOptions {
        rooms: rooms.into_iter().collect(),
        except: except.into_iter().collect(),
        flags: BroadcastFlags { volatile: flags.volatile, local: flags.local },
    }
}

/// Room names from a JSON array (numbers as their decimal form).
pub(crate) fn rooms(value: Option<&Value>) -> Vec<Room> {
    wire::rooms(value).map(|r| Room::from(r.as_ref())).collect()
}

pub(crate) fn room(value: &Value) -> Option<Room> {
    wire::room_name(value).map(|r| Room::from(r.as_ref()))
}

/// Decoded arguments as a payload, with only the attachments they reference.
pub(crate) fn payload(args: Vec<Value>, binary: &[Bytes]) -> Payload {
    let (args, binary) = select_attachments(args, binary);
    Payload { args, binary }
}

/// An event packet's event name and payload.
pub(crate) fn event(packet: EventPacket) -> (String, Payload) {
    (packet.event, Payload { args: packet.args, binary: packet.binary })
}

/// A fetch-sockets entry `{id, handshake, rooms, data}`.
pub(crate) fn socket_json(info: &SocketInfo) -> Value {
    wire::socket_json(&info.id, &info.handshake, &info.rooms, &info.data)
}

/// A fetch-sockets entry from another node.
pub(crate) fn socket_info(nsp: &str, value: &Value) -> Option<SocketInfo> {
    let entry = wire::socket_from_json(value)?;
    Some(SocketInfo {
        id: entry.id,
        nsp: nsp.to_string(),
        handshake: entry.handshake,
        rooms: entry.rooms,
        data: entry.data,
        local: false,
    })
}

/// Six random characters, like Node's `uid2(6)` (uids and request ids of the classic adapter).
pub(crate) fn short_id() -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::thread_rng();
    (0..6).map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char).collect()
}

/// Sixteen hex digits, like the cluster adapter's `randomBytes(8).toString("hex")`.
pub(crate) fn hex_id() -> String {
    use rand::Rng;
    let value: u64 = rand::thread_rng().gen();
    format!("{value:016x}")
}

/// `bytes` as text, replacing invalid UTF-8 as `String::from_utf8_lossy` does. Channel names are
/// nearly always valid, and `std::str::from_utf8` checks them several times faster than the lossy
/// decoder's chunk iterator (~1,600 instructions per incoming broadcast under callgrind for two
/// names), so the lossy path runs only for invalid names.
pub(crate) fn text(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(text) => std::borrow::Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn options_round_trip() {
        let mut opts = BroadcastOptions::default();
        opts.rooms.push("a".into());
        opts.rooms.push("b".into());
        opts.except.push("c".into());
        opts.flags.volatile = true;
        assert_eq!(parse_options(Some(&options_json(&opts))), opts);
        assert_eq!(rooms_filter(&opts), json!({"rooms": ["a", "b"], "except": ["c"]}));
        assert_eq!(rooms(Some(&json!([1, "x", null]))), [Room::from("1"), "x".into()]);
    }

    #[test]
    fn payload_keeps_referenced_attachments() {
        let binary = [Bytes::from_static(b"skip"), Bytes::from_static(b"keep")];
        let payload = payload(vec![json!({"_placeholder": true, "num": 1})], &binary);
        assert_eq!(payload, Payload::empty().push_binary(&b"keep"[..]));
    }

    #[test]
    fn ids_have_node_shapes() {
        assert_eq!(short_id().len(), 6);
        assert!(hex_id().chars().all(|c| c.is_ascii_hexdigit()) && hex_id().len() == 16);
    }

    #[test]
    fn text_borrows_valid_names_and_replaces_invalid_bytes_like_the_lossy_decoder() {
        assert!(matches!(text(b"socket.io#/#room#"), std::borrow::Cow::Borrowed("socket.io#/#room#")));
        let invalid = b"room\xff#";
        assert_eq!(text(invalid), String::from_utf8_lossy(invalid));
        assert_eq!(text(invalid), "room\u{fffd}#");
    }
}
