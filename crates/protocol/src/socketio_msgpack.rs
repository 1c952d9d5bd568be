//! Socket.IO v5 packets as npm `socket.io-msgpack-parser` (3.x) writes them: the whole packet object
//! `{type, data, id, nsp}` encoded with notepack's MessagePack and sent as one binary message.
//!
//! Differences from the JSON codec ([`crate::socketio`]):
//! - one binary message per packet, never a text message and never attachments: binary data sits
//!   inside the packet as msgpack `bin` (a `Buffer` to a Node peer);
//! - types 0 to 4 only: there is no BINARY_EVENT or BINARY_ACK, an event holding binary is an EVENT;
//! - fields left out are absent (notepack drops `undefined` properties): no `data` on DISCONNECT,
//!   no `id` without an ack.
//!
//! Decoded packets take the form the JSON codec gives them, so the layer above cannot tell the
//! parsers apart: each `bin` becomes a `{"_placeholder":true,"num":N}` marker in `data` and its bytes
//! go to `attachments[N]`, in order of appearance. Encoding does the reverse: a placeholder whose
//! attachment exists is written as `bin`.
//!
//! The decoder applies the checks of `socket.io-msgpack-parser` (type, `nsp` a string, `data` fitting
//! the type, `id` an integer) plus those of the JSON codec that a handler relies on: an event's name
//! is a string that is not reserved (or a number), an ack id is a non-negative safe integer, and the
//! attachment limit bounds the number of `bin` values.

use crate::cluster::msgpack::{self, Writer};
use crate::socketio::{count_placeholders, is_payload_valid, Packet, PacketType, MAX_ACK_ID};
use bytes::Bytes;
use serde_json::Value;

/// Why a message is not a Socket.IO packet of the msgpack parser.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Not one well-formed msgpack value (or more `bin` values than the attachment limit).
    #[error("invalid msgpack: {0}")]
    Msgpack(#[from] msgpack::DecodeError),
    /// The msgpack value is not a map (a JavaScript object).
    #[error("packet is not a map")]
    NotAMap,
    /// `type` missing, not an integer, or not 0 to 4.
    #[error("invalid packet type")]
    UnknownType,
    /// `nsp` missing or not a string.
    #[error("invalid namespace")]
    InvalidNamespace,
    /// `data` does not fit the packet type.
    #[error("invalid payload")]
    InvalidPayload,
    /// `id` not a non-negative integer up to 2^53 - 1.
    #[error("invalid packet id")]
    InvalidAckId,
    /// The data holds a literal `{"_placeholder": true}` object, which would pass for binary data.
    #[error("illegal attachments")]
    IllegalAttachments,
    /// A text message: this parser only reads binary messages.
    #[error("got plaintext data, the msgpack parser reads binary messages only")]
    UnexpectedText,
}

/// Decodes one binary message into a packet. `max_attachments` bounds the number of `bin` values, as
/// the JSON codec bounds attachments.
pub fn decode(input: &[u8], max_attachments: usize) -> Result<Packet, DecodeError> {
    let decoded = msgpack::decode_limited(input, max_attachments)?;
    let Value::Object(mut map) = decoded.value else {
        return Err(DecodeError::NotAMap);
    };
    let kind = match map.get("type").and_then(integer) {
        Some(0) => PacketType::Connect,
        Some(1) => PacketType::Disconnect,
        Some(2) => PacketType::Event,
        Some(3) => PacketType::Ack,
        Some(4) => PacketType::ConnectError,
        _ => return Err(DecodeError::UnknownType),
    };
    let nsp = match map.remove("nsp") {
        Some(Value::String(nsp)) => nsp,
        _ => return Err(DecodeError::InvalidNamespace),
    };
    let data = map.remove("data");
    if !is_payload_valid(kind, data.as_ref()) {
        return Err(DecodeError::InvalidPayload);
    }
    let id = match map.get("id") {
        None => None,
        Some(id) => {
            Some(integer(id).filter(|&id| (0..=MAX_ACK_ID as i128).contains(&id)).ok_or(DecodeError::InvalidAckId)?
                as u64)
        }
    };
    // Every placeholder must be one the decoder made for a `bin`: a literal `{"_placeholder": true}`
    // sent as data would otherwise alias an attachment.
    let placeholders = data.as_ref().map_or(0, count_placeholders);
    if placeholders != decoded.binary.len() {
        return Err(DecodeError::IllegalAttachments);
    }
    Ok(Packet { kind, nsp, id, data, attachments: decoded.binary })
}

/// An integral number, as JavaScript's `Number.isInteger` sees one (`2.0` is 2).
fn integer(value: &Value) -> Option<i128> {
    let Value::Number(n) = value else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    let f = n.as_f64()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1e30).then_some(f as i128)
}

/// The wire type of `kind`: BINARY_EVENT and BINARY_ACK do not exist for this parser.
fn wire_type(kind: PacketType) -> u64 {
    match kind {
        PacketType::BinaryEvent => PacketType::Event as u64,
        PacketType::BinaryAck => PacketType::Ack as u64,
        other => other as u64,
    }
}

/// Writes the map header and `type` of a packet with `fields` entries in all.
fn write_head(w: &mut Writer, kind: PacketType, fields: usize) {
    w.map_len(fields);
    w.str("type");
    w.uint(wire_type(kind));
}

fn write_tail(w: &mut Writer, nsp: &str, id: Option<u64>) {
    if let Some(id) = id {
        w.str("id");
        w.uint(id);
    }
    w.str("nsp");
    w.str(nsp);
}

/// Appends `packet` to `out`: `{type, data, id, nsp}` without the absent fields, each placeholder in
/// `data` written as the `bin` of its attachment.
pub fn encode(packet: &Packet, out: &mut Vec<u8>) {
    let mut w = Writer::from_vec(std::mem::take(out));
    write_head(&mut w, packet.kind, 2 + usize::from(packet.data.is_some()) + usize::from(packet.id.is_some()));
    if let Some(data) = &packet.data {
        w.str("data");
        w.value(data, &packet.attachments);
    }
    write_tail(&mut w, &packet.nsp, packet.id);
    *out = w.finish();
}

/// Appends an EVENT (`data` = `[event, ...args]`) or, without `event`, an ACK (`data` = `args`), with
/// placeholders in `args` written as the `bin` of their entry in `binary`. The same bytes as
/// [`encode`] of the equivalent packet, without building it.
pub fn encode_message(
    nsp: &str,
    event: Option<&str>,
    args: &[Value],
    binary: &[Bytes],
    id: Option<u64>,
    out: &mut Vec<u8>,
) {
    let kind = if event.is_some() { PacketType::Event } else { PacketType::Ack };
    let mut w = Writer::from_vec(std::mem::take(out));
    write_head(&mut w, kind, 3 + usize::from(id.is_some()));
    w.str("data");
    w.array_len(args.len() + usize::from(event.is_some()));
    if let Some(event) = event {
        w.str(event);
    }
    w.args(args, binary);
    write_tail(&mut w, nsp, id);
    *out = w.finish();
}

/// Appends a CONNECT, CONNECT_ERROR or DISCONNECT packet (no binary data).
pub fn encode_control(kind: PacketType, nsp: &str, data: Option<&Value>, out: &mut Vec<u8>) {
    let mut w = Writer::from_vec(std::mem::take(out));
    write_head(&mut w, kind, 2 + usize::from(data.is_some()));
    if let Some(data) = data {
        w.str("data");
        w.value(data, &[]);
    }
    write_tail(&mut w, nsp, None);
    *out = w.finish();
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_bytes_are_notepacks() {
        // notepack.encode({type: 2, data: ["ev", 1], nsp: "/"}) in Node.
        let mut out = Vec::new();
        encode_message("/", Some("ev"), &[json!(1)], &[], None, &mut out);
        assert_eq!(
            out,
            [
                0x83, 0xa4, b't', b'y', b'p', b'e', 0x02, 0xa4, b'd', b'a', b't', b'a', 0x92, 0xa2, b'e', b'v', 0x01,
                0xa3, b'n', b's', b'p', 0xa1, b'/'
            ]
        );
    }
}
