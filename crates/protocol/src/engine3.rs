//! Engine.IO v3 (the protocol of Socket.IO v2 clients): its packets and its two polling payload formats.
//!
//! The packet types and the text form of a packet (`<type digit><data>`) are those of v4
//! ([`crate::engine`]). What differs:
//!
//! - A binary packet carries its type: as a WebSocket binary frame, one type byte (`4`) before the
//!   data; in text form, `b<type digit><base64>` (v4: raw data, and `b<base64>`).
//! - A polling payload is length-prefixed, `<length>:<packet>` repeated with no separator, where the
//!   length counts the packet's characters as JavaScript does (UTF-16 code units), not bytes.
//! - A client that supports binary (XHR2) also sends and receives a binary payload: per packet, `0`
//!   (text) or `1` (binary), the byte length as one byte per decimal digit (values 0-9), `255`, then
//!   the packet (text as UTF-8; binary as its type byte and the data).
//!
//! Decoding never panics: malformed input is a [`DecodeError`].

use crate::engine::{self as v4, Packet, PacketData, PacketType};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};

/// Standard alphabet; encodes with padding, decodes with or without it (as Node's `Buffer.from`).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// The wire digit of a binary message, and the type byte in front of binary data.
const MESSAGE: u8 = PacketType::Message as u8;

/// Binary payload: the marker of a text packet and of a binary packet, and the end of a length.
const BINARY_PAYLOAD_TEXT: u8 = 0;
const BINARY_PAYLOAD_BINARY: u8 = 1;
const BINARY_PAYLOAD_SEPARATOR: u8 = 255;

/// Longest length prefix accepted (decimal digits); far above any body the engine reads.
const MAX_LENGTH_DIGITS: usize = 10;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("empty packet or payload")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("packet is not valid UTF-8")]
    InvalidUtf8,
    #[error("invalid base64 in binary packet")]
    InvalidBase64,
    #[error("invalid length prefix in polling payload")]
    InvalidLength,
    #[error("packet shorter than its length prefix")]
    Truncated,
    #[error("invalid packet marker in binary polling payload")]
    InvalidMarker,
}

impl From<v4::DecodeError> for DecodeError {
    fn from(e: v4::DecodeError) -> Self {
        match e {
            v4::DecodeError::Empty => DecodeError::Empty,
            v4::DecodeError::UnknownType => DecodeError::UnknownType,
            v4::DecodeError::InvalidUtf8 => DecodeError::InvalidUtf8,
            v4::DecodeError::InvalidBase64 => DecodeError::InvalidBase64,
        }
    }
}

/// Decodes a text packet (a WebSocket text frame, or one packet of a payload): `<type><data>`, or
/// `b4<base64>` for a binary message.
pub fn decode_text(input: Bytes) -> Result<Packet, DecodeError> {
    match input.first() {
        None => Err(DecodeError::Empty),
        Some(b'b') => {
            // Only messages carry binary data; any other type after `b` is refused.
            if input.get(1) != Some(&(b'0' + MESSAGE)) {
                return Err(DecodeError::UnknownType);
            }
            let raw = BASE64.decode(&input[2..]).map_err(|_| DecodeError::InvalidBase64)?;
            Ok(Packet { kind: PacketType::Message, data: PacketData::Binary(Bytes::from(raw)) })
        }
        Some(_) => Ok(v4::decode_text(input)?),
    }
}

/// Decodes a binary packet (a WebSocket binary frame, or one binary packet of a binary payload): the
/// type byte, then the data. Only a message may be binary.
pub fn decode_binary(input: Bytes) -> Result<Packet, DecodeError> {
    match input.first() {
        None => Err(DecodeError::Empty),
        Some(&MESSAGE) => Ok(Packet { kind: PacketType::Message, data: PacketData::Binary(input.slice(1..)) }),
        Some(_) => Err(DecodeError::UnknownType),
    }
}

/// The length of UTF-8 `text` as JavaScript counts it (`String.prototype.length`, UTF-16 code
/// units): one per character, two for a character outside the Basic Multilingual Plane.
pub fn utf16_len(text: &str) -> usize {
    text.bytes().map(|b| usize::from(b & 0xC0 != 0x80) + usize::from(b >= 0xF0)).sum()
}

/// Decodes a text polling payload: `<length>:<packet>` repeated, lengths in UTF-16 code units.
/// Empty packets (`0:`) are skipped, as Node does; anything else malformed fails the whole payload.
pub fn decode_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let text = std::str::from_utf8(&body).map_err(|_| DecodeError::InvalidUtf8)?;
    let mut packets = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let colon = text[pos..].find(':').map(|i| pos + i).ok_or(DecodeError::InvalidLength)?;
        let units = parse_decimal(&text.as_bytes()[pos..colon])?;
        let start = colon + 1;
        let mut end = start;
        let mut counted = 0;
        let mut chars = text[start..].chars();
        while counted < units {
            let c = chars.next().ok_or(DecodeError::Truncated)?;
            counted += c.len_utf16();
            end += c.len_utf8();
        }
        if counted != units {
            // The length ends inside a surrogate pair.
            return Err(DecodeError::InvalidLength);
        }
        if end > start {
            packets.push(decode_text(body.slice(start..end))?);
        }
        pos = end;
    }
    Ok(packets)
}

/// Decodes a binary polling payload (`application/octet-stream`, sent by clients with XHR2).
pub fn decode_binary_payload(body: Bytes) -> Result<Vec<Packet>, DecodeError> {
    if body.is_empty() {
        return Err(DecodeError::Empty);
    }
    let mut packets = Vec::new();
    let mut pos = 0;
    while pos < body.len() {
        let marker = body[pos];
        if marker != BINARY_PAYLOAD_TEXT && marker != BINARY_PAYLOAD_BINARY {
            return Err(DecodeError::InvalidMarker);
        }
        let digits_start = pos + 1;
        let separator = body[digits_start..]
            .iter()
            .position(|&b| b == BINARY_PAYLOAD_SEPARATOR)
            .map(|i| digits_start + i)
            .ok_or(DecodeError::InvalidLength)?;
        let digits = &body[digits_start..separator];
        if digits.is_empty() || digits.len() > MAX_LENGTH_DIGITS || digits.iter().any(|&d| d > 9) {
            return Err(DecodeError::InvalidLength);
        }
        // At most 10 digits: fits in a u64; on a 32-bit target a length past usize is truncated input.
        let len = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d));
        let len = usize::try_from(len).map_err(|_| DecodeError::Truncated)?;
        let start = separator + 1;
        let end = start.checked_add(len).filter(|&end| end <= body.len()).ok_or(DecodeError::Truncated)?;
        if len > 0 {
            let packet = body.slice(start..end);
            packets.push(if marker == BINARY_PAYLOAD_TEXT { decode_text(packet)? } else { decode_binary(packet)? });
        }
        pos = end;
    }
    Ok(packets)
}

/// `<digits>` of a length prefix: at least one ASCII digit, at most [`MAX_LENGTH_DIGITS`].
fn parse_decimal(digits: &[u8]) -> Result<usize, DecodeError> {
    if digits.is_empty() || digits.len() > MAX_LENGTH_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return Err(DecodeError::InvalidLength);
    }
    let value = digits.iter().fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    usize::try_from(value).map_err(|_| DecodeError::Truncated)
}

/// One packet of an outgoing payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A text packet in text form (type digit and data), valid UTF-8.
    Text(&'a [u8]),
    /// The data of a binary message (without its type byte).
    Binary(&'a [u8]),
}

/// Appends one packet to a text payload: `<length>:<packet>`, binary as `b4<base64>`.
pub fn encode_payload_item(item: Item<'_>, out: &mut BytesMut) {
    let mut number = itoa::Buffer::new();
    match item {
        Item::Text(packet) => {
            // Text packets are built from UTF-8 strings; a lossy count keeps this total.
            let units = match std::str::from_utf8(packet) {
                Ok(text) => utf16_len(text),
                Err(_) => String::from_utf8_lossy(packet).encode_utf16().count(),
            };
            out.extend_from_slice(number.format(units).as_bytes());
            out.put_u8(b':');
            out.extend_from_slice(packet);
        }
        Item::Binary(data) => {
            let encoded = base64::encoded_len(data.len(), true).unwrap_or(0);
            out.extend_from_slice(number.format(encoded + 2).as_bytes());
            out.extend_from_slice(b":b");
            out.put_u8(b'0' + MESSAGE);
            let start = out.len();
            out.resize(start + encoded, 0);
            let written = BASE64.encode_slice(data, &mut out[start..]).unwrap_or(0);
            out.truncate(start + written);
        }
    }
}

/// Appends a text payload of every item.
pub fn encode_payload<'a>(items: impl IntoIterator<Item = Item<'a>>, out: &mut BytesMut) {
    for item in items {
        encode_payload_item(item, out);
    }
}

/// Appends one packet to a binary payload (for clients that support binary; sent as
/// `application/octet-stream`).
pub fn encode_binary_payload_item(item: Item<'_>, out: &mut BytesMut) {
    let (marker, len) = match item {
        Item::Text(packet) => (BINARY_PAYLOAD_TEXT, packet.len()),
        Item::Binary(data) => (BINARY_PAYLOAD_BINARY, data.len() + 1),
    };
    out.put_u8(marker);
    let mut number = itoa::Buffer::new();
    out.extend(number.format(len).bytes().map(|d| d - b'0'));
    out.put_u8(BINARY_PAYLOAD_SEPARATOR);
    match item {
        Item::Text(packet) => out.extend_from_slice(packet),
        Item::Binary(data) => {
            out.put_u8(MESSAGE);
            out.extend_from_slice(data);
        }
    }
}

/// Appends a binary payload of every item.
pub fn encode_binary_payload<'a>(items: impl IntoIterator<Item = Item<'a>>, out: &mut BytesMut) {
    for item in items {
        encode_binary_payload_item(item, out);
    }
}
