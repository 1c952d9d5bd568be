//! Engine.IO v4 packets (`0`..`6`) and the HTTP long-polling payload (packets joined by `\x1e`).

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// Standard alphabet; encodes with padding, and decodes with or without it (as Node's `Buffer.from`).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Separates packets in a polling payload (ASCII record separator).
pub const SEPARATOR: u8 = 0x1e;

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
impl PacketType {
    /// The type for a wire digit `b'0'..=b'6'`.
    pub fn from_digit(digit: u8) -> Option<Self> {
        Some(match digit {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }

    /// The wire digit (`b'0'..=b'6'`).
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }
}

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
    let first = *input.first().ok_or(DecodeError::Empty)?;
    if first == b'b' {
        let raw = BASE64.decode(&input[1..]).map_err(|_| DecodeError::InvalidBase64)?;
        return Ok(Packet { kind: PacketType::Message, data: PacketData::Binary(Bytes::from(raw)) });
    }
    let kind = PacketType::from_digit(first).ok_or(DecodeError::UnknownType)?;
    let rest = input.slice(1..);
    if std::str::from_utf8(&rest).is_err() {
        return Err(DecodeError::InvalidUtf8);
    }
    let data = if rest.is_empty() && kind != PacketType::Message { PacketData::Empty } else { PacketData::Text(rest) };
    Ok(Packet { kind, data })
}

/// A WebSocket binary frame is always a binary `message` packet.
pub fn decode_binary(input: Bytes) -> Packet {
    Packet { kind: PacketType::Message, data: PacketData::Binary(input) }
}

/// Splits a polling POST body on `\x1e` and decodes every packet.
pub fn decode_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    let mut packets = Vec::new();
    let mut start = 0;
    loop {
        let end = body[start..].iter().position(|&b| b == SEPARATOR).map(|p| start + p);
        let item = body.slice(start..end.unwrap_or(body.len()));
        packets.push(decode_text(item)?);
        match end {
            Some(end) => start = end + 1,
            None => return Ok(packets),
        }
    }
}

/// Appends the WebSocket/text form of `packet` (type digit + text; binary is NOT handled here).
pub fn encode_text(packet: &Packet, out: &mut BytesMut) {
    out.put_u8(packet.kind.digit());
    match &packet.data {
        PacketData::Empty => {}
        PacketData::Text(text) => out.extend_from_slice(text),
        PacketData::Binary(_) => {
            debug_assert!(false, "binary packets are sent as WebSocket binary frames, not text")
        }
    }
}

/// Appends the polling form of one packet: text as in `encode_text`, binary as `b` + base64.
pub fn encode_polling_packet(packet: &Packet, out: &mut BytesMut) {
    match &packet.data {
        PacketData::Binary(raw) => {
            out.put_u8(b'b');
            let start = out.len();
            out.resize(start + base64::encoded_len(raw.len(), true).unwrap_or(0), 0);
            let written = BASE64.encode_slice(raw, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
        }
        _ => encode_text(packet, out),
    }
}

/// Appends a polling payload: every packet in polling form, joined by `\x1e`.
pub fn encode_payload<'a>(packets: impl IntoIterator<Item = &'a Packet>, out: &mut BytesMut) {
    for (i, packet) in packets.into_iter().enumerate() {
        if i > 0 {
            out.put_u8(SEPARATOR);
        }
        encode_polling_packet(packet, out);
    }
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
    let mut number = itoa::Buffer::new();
    out.extend_from_slice(b"0{\"sid\":");
    write_json_string(sid, out);
    out.extend_from_slice(b",\"upgrades\":[");
    for (i, upgrade) in upgrades.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        write_json_string(upgrade, out);
    }
    out.extend_from_slice(b"],\"pingInterval\":");
    out.extend_from_slice(number.format(ping_interval_ms).as_bytes());
    out.extend_from_slice(b",\"pingTimeout\":");
    out.extend_from_slice(number.format(ping_timeout_ms).as_bytes());
    out.extend_from_slice(b",\"maxPayload\":");
    out.extend_from_slice(number.format(max_payload).as_bytes());
    out.put_u8(b'}');
}

fn write_json_string(value: &str, out: &mut BytesMut) {
    // Serializing a &str into a growable buffer cannot fail.
    let _ = serde_json::to_writer(out.writer(), value);
}
