//! Engine.IO v4 packets (`0`..`6`) and the HTTP long-polling payload (packets joined by `\x1e`).

use bytes::{Bytes, BytesMut};

/// Engine.IO packet types, with their wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Open = 0,
    Close = 1,
    Ping = 2,
    Pong = 3,
    Message = 4,
    Upgrade = 5,
    Noop = 6,
}

/// One Engine.IO packet. `data` is the text after the type digit, or the raw bytes of a binary message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    pub kind: PacketType,
    pub data: PacketData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PacketData {
    Empty,
    /// UTF-8 text (validated by the decoder).
    Text(Bytes),
    /// A binary message (only with `PacketType::Message`).
    Binary(Bytes),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("packet is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
}

/// Decodes a text packet: a WebSocket text frame, or one item of a polling payload (where a leading
/// `b` means base64-encoded binary message).
pub fn decode_text(input: Bytes) -> Result<Packet, DecodeError> {
    let _ = input;
    todo!()
}

/// A WebSocket binary frame is always a binary `message` packet.
pub fn decode_binary(input: Bytes) -> Packet {
    Packet { kind: PacketType::Message, data: PacketData::Binary(input) }
}

/// Splits a polling POST body on `\x1e` and decodes every packet.
pub fn decode_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    let _ = body;
    todo!()
}

/// Appends the WebSocket/text form of `packet` (type digit + text; binary is NOT handled here).
pub fn encode_text(packet: &Packet, out: &mut BytesMut) {
    let _ = (packet, out);
    todo!()
}

/// Appends the polling form of one packet: text as in `encode_text`, binary as `b` + base64.
pub fn encode_polling_packet(packet: &Packet, out: &mut BytesMut) {
    let _ = (packet, out);
    todo!()
}

/// Appends a polling payload: every packet in polling form, joined by `\x1e`.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Packet>, out: &mut BytesMut) {
    let _ = (packets, out);
    todo!()
}

/// Writes the JSON handshake packet `0{"sid":..,"upgrades":[..],"pingInterval":..,"pingTimeout":..,"maxPayload":..}`.
pub fn encode_open(
    sid: &str,
    upgrades: &[&str],
    ping_interval_ms: u64,
    ping_timeout_ms: u64,
    max_payload: u64,
    out: &mut BytesMut,
) {
    let _ = (sid, upgrades, ping_interval_ms, ping_timeout_ms, max_payload, out);
    todo!()
}
