//! The server side of RFC 6455 framing: parse masked client frames, reassemble fragmented messages,
//! and write unmasked server frame headers. Written here (not taken from a WebSocket crate) so the
//! engine keeps no read or write buffer on an idle connection and can send one pre-framed broadcast
//! buffer to every recipient.

use crate::deflate;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Buf, Bytes, BytesMut};
use sha1::{Digest, Sha1};

pub const MAX_HEADER_LEN: usize = 10;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

/// A complete message (control frames are always complete).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// Valid UTF-8 text.
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    Close(Option<u16>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("message too big")]
    TooBig,
    #[error("invalid UTF-8 in text message")]
    InvalidUtf8,
    /// A compressed message (permessage-deflate) that does not inflate.
    #[error("invalid compressed data")]
    BadCompression,
}

impl FrameError {
    /// The close code to send before dropping the connection (1002, 1009 or 1007).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::TooBig => 1009,
            FrameError::InvalidUtf8 | FrameError::BadCompression => 1007,
        }
    }
}

/// Incremental frame decoder. Holds nothing between messages unless a fragmented message is in
/// progress (or, with permessage-deflate and client context takeover, once the client has sent a
/// compressed message: its inflater).
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_size: usize,
    fragments: Option<Fragments>,
    /// permessage-deflate, when negotiated. Boxed: a pointer's worth on every connection without it.
    deflate: Option<Box<Deflate>>,
}

/// A fragmented message waiting for its remaining frames.
#[derive(Debug)]
struct Fragments {
    opcode: OpCode,
    /// The payload so far; still compressed when `compressed`.
    data: BytesMut,
    compressed: bool,
}

/// permessage-deflate on the receiving side (not negotiated: no `Deflate`, and RSV1 is a protocol error).
#[derive(Debug)]
enum Deflate {
    /// Negotiated with `client_no_context_takeover`: each message inflates on its own, through a
    /// per-thread scratch inflater.
    NoContextTakeover,
    /// Negotiated with client context takeover: this connection's inflater.
    ContextTakeover(deflate::Inflater),
}

impl FrameDecoder {
    pub fn new(max_message_size: usize) -> Self {
        Self { max_message_size, fragments: None, deflate: None }
    }

    /// A decoder for a connection that negotiated permessage-deflate (RFC 7692): a data message whose
    /// first frame has RSV1 set is inflated, and may inflate to `max_message_size` bytes at most
    /// ([`FrameError::TooBig`] past that, having allocated no more). `client_context_takeover` as agreed
    /// (see [`deflate::Agreed`]).
    pub fn with_deflate(max_message_size: usize, client_context_takeover: bool) -> Self {
        let deflate = if client_context_takeover {
            Deflate::ContextTakeover(deflate::Inflater::default())
        } else {
            Deflate::NoContextTakeover
        };
        Self { max_message_size, fragments: None, deflate: Some(Box::new(deflate)) }
    }

    /// True when this connection keeps an inflater (context takeover, after a compressed message).
    pub fn holds_inflater(&self) -> bool {
        matches!(self.deflate.as_deref(), Some(Deflate::ContextTakeover(inflater)) if inflater.is_allocated())
    }

    /// Consumes complete frames from the front of `buf` and returns the next complete message, or
    /// `Ok(None)` when `buf` holds only part of a frame (which stays in `buf`). Client frames must be masked.
    ///
    /// Unfragmented payloads are unmasked in place and returned without a copy, so they share `buf`'s
    /// allocation; fragmented messages are reassembled in a buffer of their own.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        let result = self.decode_inner(buf);
        if result.is_err() {
            // The connection is closed after an error; keep nothing for it.
            self.fragments = None;
        }
        result
    }

    /// True while a fragmented message waits for its remaining frames.
    pub fn is_reassembling(&self) -> bool {
        self.fragments.is_some()
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        loop {
            let Some(header) = self.parse_header(buf)? else {
                return Ok(None);
            };
            // No reserve here: a peer announcing a large frame must not make us allocate before it sends it.
            // parse_header only returns once the whole header (mask included) is buffered.
            if buf.len() - header.header_len < header.payload_len {
                return Ok(None);
            }
            buf.advance(header.header_len);
            let mut payload = buf.split_to(header.payload_len);
            unmask(&mut payload, header.mask);

            match header.opcode {
                OpCode::Ping => return Ok(Some(Message::Ping(payload.freeze()))),
                OpCode::Pong => return Ok(Some(Message::Pong(payload.freeze()))),
                OpCode::Close => return parse_close(&payload).map(|code| Some(Message::Close(code))),
                OpCode::Text | OpCode::Binary if header.fin => {
                    let payload = if header.compressed { self.inflate(&payload)? } else { payload };
                    return data_message(header.opcode, payload).map(Some);
                }
                OpCode::Text | OpCode::Binary => {
                    // A copy of its own: the continuations will grow it, and it must not keep the
                    // caller's read buffer alive while the rest of the message trickles in.
                    self.fragments = Some(Fragments {
                        opcode: header.opcode,
                        data: BytesMut::from(&payload[..]),
                        compressed: header.compressed,
                    });
                }
                OpCode::Continuation => {
                    let Some(mut message) = self.fragments.take() else {
                        return Err(FrameError::Protocol("continuation frame without a message"));
                    };
                    message.data.extend_from_slice(&payload);
                    if header.fin {
                        // Compressed fragments are kept compressed (bounded like any message) and
                        // inflated once whole, so no inflater state waits between frames.
                        let data = if message.compressed { self.inflate(&message.data)? } else { message.data };
                        return data_message(message.opcode, data).map(Some);
                    }
                    self.fragments = Some(message);
                }
            }
        }
    }

    /// Inflates one whole compressed message, at most `max_message_size` bytes of output.
    fn inflate(&mut self, compressed: &[u8]) -> Result<BytesMut, FrameError> {
        let limit = self.max_message_size;
        let result = match self.deflate.as_deref_mut() {
            None => return Err(FrameError::Protocol("compressed message without permessage-deflate")),
            Some(Deflate::NoContextTakeover) => deflate::inflate_message(&[compressed], limit),
            Some(Deflate::ContextTakeover(inflater)) => inflater.inflate(&[compressed], limit),
        };
        result.map_err(|e| match e {
            deflate::InflateError::TooBig => FrameError::TooBig,
            deflate::InflateError::Corrupt => FrameError::BadCompression,
        })
    }

    /// Validates the header at the front of `buf` before any of the payload is buffered;
    /// `None` when the header itself is incomplete.
    fn parse_header(&self, buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
        let [first, second, ..] = *buf else {
            return Ok(None);
        };
        let fin = first & 0x80 != 0;
        // RSV1 means "compressed" once permessage-deflate is negotiated; RSV2 and RSV3 never mean anything.
        let compressed = first & 0x40 != 0;
        if first & 0x30 != 0 || (compressed && self.deflate.is_none()) {
            return Err(FrameError::Protocol("reserved bits set without a negotiated extension"));
        }
        let opcode = OpCode::from_u8(first & 0x0f).ok_or(FrameError::Protocol("unknown opcode"))?;
        if compressed && opcode.is_control() {
            return Err(FrameError::Protocol("compressed control frame"));
        }
        if compressed && opcode == OpCode::Continuation {
            // RFC 7692 6.1: only the first frame of a message carries RSV1.
            return Err(FrameError::Protocol("RSV1 set on a continuation frame"));
        }
        if second & 0x80 == 0 {
            return Err(FrameError::Protocol("client frame is not masked"));
        }
        let short_len = second & 0x7f;
        if opcode.is_control() {
            if !fin {
                return Err(FrameError::Protocol("fragmented control frame"));
            }
            if short_len > 125 {
                return Err(FrameError::Protocol("control frame payload over 125 bytes"));
            }
        } else if opcode == OpCode::Continuation {
            if self.fragments.is_none() {
                return Err(FrameError::Protocol("continuation frame without a message"));
            }
        } else if self.fragments.is_some() {
            return Err(FrameError::Protocol("new message before the fragmented one ended"));
        }

        let (length_bytes, payload_len) = match short_len {
            126 => {
                let Some(ext) = buf.get(2..4) else {
                    return Ok(None);
                };
                (2, u64::from(u16::from_be_bytes([ext[0], ext[1]])))
            }
            127 => {
                let Some(ext) = buf.get(2..10) else {
                    return Ok(None);
                };
                let mut raw = [0u8; 8];
                raw.copy_from_slice(ext);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("64-bit length with the top bit set"));
                }
                (8, len)
            }
            len => (0, u64::from(len)),
        };
        let buffered = self.fragments.as_ref().map_or(0, |message| message.data.len() as u64);
        if payload_len.saturating_add(buffered) > self.max_message_size as u64 {
            return Err(FrameError::TooBig);
        }
        let mask_start = 2 + length_bytes;
        let Some(mask) = buf.get(mask_start..mask_start + 4) else {
            return Ok(None);
        };
        Ok(Some(FrameHeader {
            fin,
            compressed,
            opcode,
            mask: [mask[0], mask[1], mask[2], mask[3]],
            header_len: mask_start + 4,
            // Fits: it is at most max_message_size, a usize.
            payload_len: payload_len as usize,
        }))
    }
}

struct FrameHeader {
    fin: bool,
    /// RSV1 on the first frame of a message, with permessage-deflate negotiated.
    compressed: bool,
    opcode: OpCode,
    mask: [u8; 4],
    header_len: usize,
    payload_len: usize,
}

impl OpCode {
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, Ping and Pong: never fragmented, at most 125 bytes.
    pub fn is_control(self) -> bool {
        self as u8 & 0x8 != 0
    }
}

fn data_message(opcode: OpCode, payload: BytesMut) -> Result<Message, FrameError> {
    if opcode == OpCode::Text {
        if std::str::from_utf8(&payload).is_err() {
            return Err(FrameError::InvalidUtf8);
        }
        Ok(Message::Text(payload.freeze()))
    } else {
        Ok(Message::Binary(payload.freeze()))
    }
}

fn parse_close(payload: &[u8]) -> Result<Option<u16>, FrameError> {
    match payload {
        [] => Ok(None),
        [_] => Err(FrameError::Protocol("close frame with a 1-byte payload")),
        [high, low, reason @ ..] => {
            let code = u16::from_be_bytes([*high, *low]);
            if !is_valid_close_code(code) {
                return Err(FrameError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(reason).is_err() {
                return Err(FrameError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

/// Codes a peer may send (RFC 6455 section 7.4): 1005, 1006 and 1015 are reserved for local use, 1004 and
/// anything under 1000 or in 1015..3000 are not assigned, 3000..=4999 belong to libraries and applications.
pub fn is_valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// XORs `payload` with the 4-byte client mask, eight bytes at a time.
pub fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3]]);
    let mut chunks = payload.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    // The tail starts at a multiple of 8, so the mask phase is 0 again.
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i & 3];
    }
}

/// Writes an unmasked, final server frame header for a payload of `len` bytes; returns its length.
pub fn encode_header(opcode: OpCode, len: usize, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    encode_header_rsv1(opcode, len, false, out)
}

/// [`encode_header`], with RSV1 set when `compressed` (a permessage-deflate message, RFC 7692 6).
pub fn encode_header_rsv1(opcode: OpCode, len: usize, compressed: bool, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    out[0] = 0x80 | if compressed { 0x40 } else { 0 } | opcode as u8;
    if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// Appends a whole unmasked server frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header(opcode, payload.len(), &mut header);
    out.reserve(header_len + payload.len());
    out.extend_from_slice(&header[..header_len]);
    out.extend_from_slice(payload);
}

/// Appends a whole unmasked server frame holding `payload` compressed (permessage-deflate, RSV1 set).
/// Returns false, with `out` unchanged, when compression fails.
pub fn encode_deflated_frame(opcode: OpCode, payload: &[u8], out: &mut BytesMut) -> bool {
    let start = out.len();
    out.resize(start + MAX_HEADER_LEN, 0);
    if !deflate::compress(payload, out) {
        out.truncate(start);
        return false;
    }
    let compressed_len = out.len() - start - MAX_HEADER_LEN;
    let mut header = [0u8; MAX_HEADER_LEN];
    let header_len = encode_header_rsv1(opcode, compressed_len, true, &mut header);
    // Move the header next to the payload: drop the unused part of the reserve.
    let gap = MAX_HEADER_LEN - header_len;
    out[start + gap..start + MAX_HEADER_LEN].copy_from_slice(&header[..header_len]);
    if gap > 0 {
        let tail = out.split_off(start);
        out.extend_from_slice(&tail[gap..]);
    }
    true
}

/// Appends a close frame carrying `code`.
pub fn encode_close(code: u16, out: &mut BytesMut) {
    encode_frame(OpCode::Close, &code.to_be_bytes(), out);
}

/// The GUID RFC 6455 appends to the client key.
const ACCEPT_GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let mut hasher = Sha1::new();
    hasher.update(key);
    hasher.update(ACCEPT_GUID);
    STANDARD.encode(hasher.finalize())
}
