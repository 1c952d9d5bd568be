//! The server side of RFC 6455 framing: parse masked client frames, reassemble fragmented messages,
//! and write unmasked server frame headers. Written here (not taken from a WebSocket crate) so the
//! engine keeps no read or write buffer on an idle connection and can send one pre-framed broadcast
//! buffer to every recipient.

use bytes::{Bytes, BytesMut};

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
}

impl FrameError {
    /// The close code to send before dropping the connection (1002, 1009 or 1007).
    pub fn close_code(&self) -> u16 {
        match self {
            FrameError::Protocol(_) => 1002,
            FrameError::TooBig => 1009,
            FrameError::InvalidUtf8 => 1007,
        }
    }
}

/// Incremental frame decoder. Holds nothing between messages unless a fragmented message is in progress.
#[derive(Debug)]
pub struct FrameDecoder {
    max_message_size: usize,
    fragments: Option<(OpCode, BytesMut)>,
}

impl FrameDecoder {
    pub fn new(max_message_size: usize) -> Self {
        Self { max_message_size, fragments: None }
    }

    /// Consumes complete frames from the front of `buf` and returns the next complete message, or
    /// `Ok(None)` when `buf` holds only part of a frame (which stays in `buf`). Client frames must be masked.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Message>, FrameError> {
        let _ = buf;
        todo!()
    }
}

/// Writes an unmasked, final server frame header for a payload of `len` bytes; returns its length.
pub fn encode_header(opcode: OpCode, len: usize, out: &mut [u8; MAX_HEADER_LEN]) -> usize {
    let _ = (opcode, len, out);
    todo!()
}

/// Appends a whole unmasked server frame.
pub fn encode_frame(opcode: OpCode, payload: &[u8], out: &mut BytesMut) {
    let _ = (opcode, payload, out);
    todo!()
}

/// Appends a close frame carrying `code`.
pub fn encode_close(code: u16, out: &mut BytesMut) {
    let _ = (code, out);
    todo!()
}

/// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`.
pub fn accept_key(key: &[u8]) -> String {
    let _ = key;
    todo!()
}
