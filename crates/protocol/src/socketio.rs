//! Socket.IO v5 packets: `<type>[<attachments>-][<nsp>,][<ackId>][JSON]`, binary attachments with
//! `{"_placeholder":true,"num":N}` markers, and a decoder that reassembles binary packets.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;

/// Socket.IO packet types, with their wire digit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    /// The type for a wire digit `b'0'..=b'6'`.
    pub fn from_digit(digit: u8) -> Option<Self> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The wire digit (`b'0'..=b'6'`).
    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// BINARY_EVENT and BINARY_ACK, whose header carries an attachment count.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }
}

/// The attachment limit of the official parser (`maxAttachments`).
pub const DEFAULT_MAX_ATTACHMENTS: usize = 10;

/// Event names a client may not emit (the official parser's reserved list).
pub const RESERVED_EVENTS: &[&str] =
    &["connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"];

/// A decoded (or to-be-encoded) Socket.IO packet. For binary packets `data` holds placeholders and
/// `attachments` the buffers they point at, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    /// Namespace, `/` when omitted on the wire.
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
    pub attachments: Vec<Bytes>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown packet type")]
    UnknownType,
    #[error("invalid attachments")]
    InvalidAttachments,
    #[error("too many attachments")]
    TooManyAttachments,
    #[error("invalid namespace")]
    InvalidNamespace,
    #[error("invalid ack id")]
    InvalidAckId,
    #[error("invalid payload")]
    InvalidPayload,
    #[error("illegal attachments")]
    IllegalAttachments,
    #[error("got binary data when not reconstructing a packet")]
    UnexpectedBinary,
    #[error("got plaintext data when reconstructing a packet")]
    UnexpectedText,
}

/// Incremental decoder: text packets come first; a binary packet then waits for its attachments.
#[derive(Debug)]
pub struct Decoder {
    max_attachments: usize,
    /// A binary packet waiting for its attachments, and how many it expects. Boxed: every connection
    /// keeps a decoder, and a `Packet` inline made each one 128 bytes, for a state few ever enter.
    pending: Option<Box<(Packet, usize)>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_ATTACHMENTS)
    }
}

impl Decoder {
    pub fn new(max_attachments: usize) -> Self {
        Self { max_attachments, pending: None }
    }

    /// Decodes one text message. Returns `Ok(None)` when the packet is binary and now waits for attachments.
    pub fn decode_text(&mut self, text: &str) -> Result<Option<Packet>, DecodeError> {
        if self.pending.take().is_some() {
            return Err(DecodeError::UnexpectedText);
        }
        let (packet, attachments) = decode_packet(text, self.max_attachments)?;
        if !packet.kind.is_binary() {
            return Ok(Some(packet));
        }
        if attachments == 0 {
            check_placeholders(&packet)?;
            return Ok(Some(packet));
        }
        self.pending = Some(Box::new((packet, attachments)));
        Ok(None)
    }

    /// Feeds one binary attachment. Returns the packet once its last attachment has arrived.
    pub fn decode_binary(&mut self, data: Bytes) -> Result<Option<Packet>, DecodeError> {
        let Some(mut pending) = self.pending.take() else {
            return Err(DecodeError::UnexpectedBinary);
        };
        pending.0.attachments.push(data);
        if pending.0.attachments.len() < pending.1 {
            self.pending = Some(pending);
            return Ok(None);
        }
        let (packet, _) = *pending;
        check_placeholders(&packet)?;
        Ok(Some(packet))
    }

    /// True while a binary packet waits for attachments.
    pub fn is_reconstructing(&self) -> bool {
        self.pending.is_some()
    }

    /// Drops a partially received binary packet (e.g. when the connection closes).
    pub fn reset(&mut self) {
        self.pending = None;
    }
}

/// Largest ack id a JavaScript peer can represent exactly (`Number.MAX_SAFE_INTEGER`).
pub const MAX_ACK_ID: u64 = (1 << 53) - 1;

/// Parses one text packet without any decoder state; returns the packet and, for binary packets, the
/// number of attachments announced in its header (`packet.attachments` is left empty).
pub fn decode_packet(text: &str, max_attachments: usize) -> Result<(Packet, usize), DecodeError> {
    let bytes = text.as_bytes();
    let kind = bytes.first().and_then(|&b| PacketType::from_digit(b)).ok_or(DecodeError::UnknownType)?;
    let mut pos = 1;

    let mut attachments = 0;
    if kind.is_binary() {
        let dash = bytes[pos..].iter().position(|&b| b == b'-').ok_or(DecodeError::InvalidAttachments)? + pos;
        let digits = &bytes[pos..dash];
        if !digits.iter().all(u8::is_ascii_digit) {
            return Err(DecodeError::InvalidAttachments);
        }
        // An empty count reads as 0, as in the official parser (`Number("") === 0`); a count too large
        // for u64 is still a number, just over the limit.
        let count = digits.iter().try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')));
        match count {
            Some(n) if n <= max_attachments as u64 => attachments = n as usize,
            _ => return Err(DecodeError::TooManyAttachments),
        }
        pos = dash + 1;
    }

    let nsp = if bytes.get(pos) == Some(&b'/') {
        let end = bytes[pos..].iter().position(|&b| b == b',').map_or(bytes.len(), |p| pos + p);
        let nsp = &text[pos..end];
        pos = (end + 1).min(bytes.len());
        nsp.to_owned()
    } else {
        "/".to_owned()
    };

    let id_len = bytes[pos..].iter().take_while(|b| b.is_ascii_digit()).count();
    let id = if id_len > 0 {
        let id = bytes[pos..pos + id_len]
            .iter()
            .try_fold(0u64, |acc, &d| acc.checked_mul(10)?.checked_add(u64::from(d - b'0')))
            .filter(|&id| id <= MAX_ACK_ID)
            .ok_or(DecodeError::InvalidAckId)?;
        pos += id_len;
        Some(id)
    } else {
        None
    };

    let data = if pos < bytes.len() { Some(parse_json(&text[pos..])?) } else { None };
    if !is_payload_valid(kind, data.as_ref()) {
        return Err(DecodeError::InvalidPayload);
    }
    Ok((Packet { kind, nsp, id, data, attachments: Vec::new() }, attachments))
}

/// Parses a packet's JSON data.
///
/// JavaScript strings are UTF-16 and may hold lone surrogates, which `JSON.stringify` writes as
/// escapes (`"\ud800"`) and Node's `JSON.parse` accepts. A Rust `String` cannot hold them, so
/// serde_json rejects such input. Rather than disconnect the client, as a parse error would, each
/// lone surrogate escape becomes `\ufffd` (U+FFFD REPLACEMENT CHARACTER, what a lossy UTF-16 to
/// UTF-8 conversion yields) and the text is parsed again. The repair runs only after a failed parse
/// that has a lone surrogate escape to repair, so valid input costs nothing extra; it replaces
/// six ASCII bytes with six ASCII bytes, so it is linear, never grows the input, and keeps UTF-8 valid.
fn parse_json(json: &str) -> Result<Value, DecodeError> {
    match serde_json::from_str::<Value>(json) {
        Ok(value) => Ok(value),
        Err(_) => {
            let repaired = replace_lone_surrogates(json).ok_or(DecodeError::InvalidPayload)?;
            serde_json::from_str::<Value>(&repaired).map_err(|_| DecodeError::InvalidPayload)
        }
    }
}

/// Returns `json` with every `\uXXXX` escape of a lone UTF-16 surrogate replaced by `\ufffd`, or
/// `None` when there is none. Escapes of a valid surrogate pair (`\ud83d\ude00`) are kept, and an
/// escaped backslash (`\\ud800`) is not an escape of a surrogate. Escapes outside strings are
/// invalid JSON either way, so no string tracking is needed.
pub fn replace_lone_surrogates(json: &str) -> Option<String> {
    /// The code unit of a `\uXXXX` escape starting at `at`.
    fn unit_at(bytes: &[u8], at: usize) -> Option<u16> {
        let escape = bytes.get(at..at + 6)?;
        if escape[0] != b'\\' || escape[1] != b'u' {
            return None;
        }
        escape[2..].iter().try_fold(0u16, |acc, &b| Some(acc << 4 | (b as char).to_digit(16)? as u16))
    }
    let bytes = json.as_bytes();
    let mut out: Option<String> = None;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            i += 1;
            continue;
        }
        let Some(unit) = unit_at(bytes, i) else {
            // Any other escape (`\\`, `\"`, `\n`...) or a malformed one: skip the backslash and the
            // character it escapes.
            i += 2;
            continue;
        };
        let lone = match unit {
            0xD800..=0xDBFF => match unit_at(bytes, i + 6) {
                Some(0xDC00..=0xDFFF) => {
                    i += 12;
                    continue;
                }
                _ => true,
            },
            0xDC00..=0xDFFF => true,
            _ => false,
        };
        if lone {
            out.get_or_insert_with(|| json.to_owned()).replace_range(i..i + 6, "\\ufffd");
        }
        i += 6;
    }
    out
}

/// Whether `data` is a valid payload for a packet of `kind` (shared by the JSON and MessagePack parsers).
pub(crate) fn is_payload_valid(kind: PacketType, data: Option<&Value>) -> bool {
    match kind {
        PacketType::Connect => matches!(data, None | Some(Value::Object(_))),
        PacketType::Disconnect => data.is_none(),
        PacketType::ConnectError => matches!(data, Some(Value::String(_) | Value::Object(_))),
        PacketType::Event | PacketType::BinaryEvent => match data {
            Some(Value::Array(items)) => match items.first() {
                Some(Value::String(name)) => !RESERVED_EVENTS.contains(&name.as_str()),
                Some(Value::Number(_)) => true,
                _ => false,
            },
            _ => false,
        },
        PacketType::Ack | PacketType::BinaryAck => matches!(data, Some(Value::Array(_))),
    }
}

/// Every placeholder in a completed binary packet must point at one of its attachments.
fn check_placeholders(packet: &Packet) -> Result<(), DecodeError> {
    fn check(value: &Value, count: usize) -> bool {
        if is_placeholder(value) {
            return placeholder_num(value).is_some_and(|num| num < count);
        }
        match value {
            Value::Array(items) => items.iter().all(|item| check(item, count)),
            Value::Object(map) => map.values().all(|item| check(item, count)),
            _ => true,
        }
    }
    match &packet.data {
        Some(data) if !check(data, packet.attachments.len()) => Err(DecodeError::IllegalAttachments),
        _ => Ok(()),
    }
}

/// Writes `<type>[<n>-][<nsp>,][<id>]` (the namespace is omitted for `/`).
pub fn encode_header(kind: PacketType, attachments: usize, nsp: &str, id: Option<u64>, out: &mut BytesMut) {
    let mut number = itoa::Buffer::new();
    out.put_u8(kind.digit());
    if kind.is_binary() {
        out.extend_from_slice(number.format(attachments).as_bytes());
        out.put_u8(b'-');
    }
    if !nsp.is_empty() && nsp != "/" {
        out.extend_from_slice(nsp.as_bytes());
        out.put_u8(b',');
    }
    if let Some(id) = id {
        out.extend_from_slice(number.format(id).as_bytes());
    }
}

/// Writes the text part of `packet` (header and JSON data). Attachments are sent by the caller afterwards.
pub fn encode(packet: &Packet, out: &mut BytesMut) {
    encode_header(packet.kind, packet.attachments.len(), &packet.nsp, packet.id, out);
    if let Some(data) = &packet.data {
        // Serializing a `Value` into a growable buffer cannot fail.
        let _ = serde_json::to_writer(out.writer(), data);
    }
}

/// The JSON placeholder standing for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    let mut map = serde_json::Map::with_capacity(2);
    map.insert("_placeholder".to_owned(), Value::Bool(true));
    map.insert("num".to_owned(), Value::from(num));
    Value::Object(map)
}

/// True for any object with `"_placeholder": true` (the official parser's test), whatever its `num`.
pub fn is_placeholder(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.get("_placeholder") == Some(&Value::Bool(true)))
}

/// `Some(num)` when `value` is a placeholder object.
pub fn placeholder_num(value: &Value) -> Option<usize> {
    let Value::Object(map) = value else {
        return None;
    };
    if map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    let num = map.get("num")?;
    // JSON has one number type: `1.0` is the same index as `1` to a JavaScript peer.
    match num.as_u64() {
        Some(n) => usize::try_from(n).ok(),
        None => num.as_f64().filter(|f| *f >= 0.0 && f.fract() == 0.0 && *f < usize::MAX as f64).map(|f| f as usize),
    }
}

/// Counts placeholders anywhere in `value`.
pub fn count_placeholders(value: &Value) -> usize {
    if is_placeholder(value) {
        return 1;
    }
    match value {
        Value::Array(items) => items.iter().map(count_placeholders).sum(),
        Value::Object(map) => map.values().map(count_placeholders).sum(),
        _ => 0,
    }
}
