//! The client side of RFC 6455 framing: masked client frames out, unmasked server frames in.
//! (switchyard-protocol holds the server side; the XOR masking itself is shared with it.)

use bytes::{Buf, Bytes, BytesMut};
use switchyard_protocol::websocket::unmask;

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// One frame as sent by a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1: a permessage-deflate message (only when the extension was negotiated).
    pub compressed: bool,
    pub opcode: u8,
    pub payload: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A server must not mask its frames (RFC 6455 section 5.1).
    MaskedServerFrame,
    ReservedBits,
    UnknownOpcode(u8),
    TooBig(u64),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::MaskedServerFrame => write!(f, "server sent a masked frame"),
            FrameError::ReservedBits => write!(f, "server frame has reserved bits set"),
            FrameError::UnknownOpcode(op) => write!(f, "server frame has unknown opcode {op:#x}"),
            FrameError::TooBig(len) => write!(f, "server frame of {len} bytes is over the limit"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Takes one complete server frame off the front of `buf`, or returns `Ok(None)` (leaving `buf` as it
/// was) when `buf` holds only part of one. RSV1 is allowed when `deflate` (permessage-deflate negotiated).
pub fn parse_server_frame(buf: &mut BytesMut, max_len: usize, deflate: bool) -> Result<Option<Frame>, FrameError> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let reserved = if deflate { 0x30 } else { 0x70 };
    if b0 & reserved != 0 {
        return Err(FrameError::ReservedBits);
    }
    if b1 & 0x80 != 0 {
        return Err(FrameError::MaskedServerFrame);
    }
    let opcode = b0 & 0x0F;
    if !matches!(opcode, OP_CONTINUATION | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG) {
        return Err(FrameError::UnknownOpcode(opcode));
    }
    let (header_len, len) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (4, u64::from(u16::from_be_bytes([buf[2], buf[3]])))
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut raw = [0u8; 8];
            raw.copy_from_slice(&buf[2..10]);
            (10, u64::from_be_bytes(raw))
        }
        short => (2, u64::from(short)),
    };
    if len > max_len as u64 {
        return Err(FrameError::TooBig(len));
    }
    let len = len as usize;
    if buf.len() < header_len + len {
        return Ok(None);
    }
    buf.advance(header_len);
    let payload = buf.split_to(len).freeze();
    Ok(Some(Frame { fin: b0 & 0x80 != 0, compressed: b0 & 0x40 != 0, opcode, payload }))
}

/// Appends one final, masked client frame.
pub fn encode_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut BytesMut) {
    out.reserve(14 + payload.len());
    out.extend_from_slice(&[0x80 | (opcode & 0x0F)]);
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[0x80 | len as u8]);
    } else if len <= usize::from(u16::MAX) {
        out.extend_from_slice(&[0x80 | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[0x80 | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(&mask);
    let start = out.len();
    out.extend_from_slice(payload);
    unmask(&mut out[start..], mask);
}

/// A cheap per-connection source of mask keys (xorshift32). Masking only has to defeat proxy cache
/// poisoning, which does not exist on loopback, so no cryptographic randomness is needed here.
#[derive(Debug, Clone)]
pub struct MaskSource(u32);

impl MaskSource {
    pub fn new(seed: u32) -> Self {
        Self(seed | 1)
    }

    pub fn next_mask(&mut self) -> [u8; 4] {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        self.0 = x;
        x.to_ne_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frame_is_masked_and_round_trips_through_unmasking() {
        let mut out = BytesMut::new();
        encode_client_frame(OP_TEXT, b"42[\"echo\"]", [1, 2, 3, 4], &mut out);
        assert_eq!(out[0], 0x81);
        assert_eq!(out[1], 0x80 | 10);
        assert_eq!(&out[2..6], &[1, 2, 3, 4]);
        let mut body = out[6..].to_vec();
        assert_ne!(&body[..], b"42[\"echo\"]");
        unmask(&mut body, [1, 2, 3, 4]);
        assert_eq!(&body[..], b"42[\"echo\"]");
    }

    #[test]
    fn client_frame_uses_extended_lengths() {
        let mut out = BytesMut::new();
        encode_client_frame(OP_BINARY, &[7u8; 300], [0; 4], &mut out);
        assert_eq!(out[1], 0x80 | 126);
        assert_eq!(u16::from_be_bytes([out[2], out[3]]), 300);
        assert_eq!(out.len(), 4 + 4 + 300);

        let mut out = BytesMut::new();
        encode_client_frame(OP_BINARY, &vec![7u8; 70_000], [0; 4], &mut out);
        assert_eq!(out[1], 0x80 | 127);
        assert_eq!(out.len(), 10 + 4 + 70_000);
    }

    #[test]
    fn parses_consecutive_server_frames_and_waits_for_partial_ones() {
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&[0x81, 2, b'4', b'x', 0x89, 0]);
        buf.extend_from_slice(&[0x82, 126, 0x01]); // partial 16-bit length
        let first = parse_server_frame(&mut buf, 1 << 20, false).unwrap().unwrap();
        assert_eq!(first, Frame { fin: true, compressed: false, opcode: OP_TEXT, payload: Bytes::from_static(b"4x") });
        let ping = parse_server_frame(&mut buf, 1 << 20, false).unwrap().unwrap();
        assert_eq!(ping.opcode, OP_PING);
        assert!(ping.payload.is_empty());
        assert_eq!(parse_server_frame(&mut buf, 1 << 20, false).unwrap(), None);
        assert_eq!(buf.len(), 3, "a partial frame stays in the buffer");
        buf.extend_from_slice(&[0x2C]); // length 300
        buf.extend_from_slice(&[9u8; 299]);
        assert_eq!(parse_server_frame(&mut buf, 1 << 20, false).unwrap(), None);
        buf.extend_from_slice(&[9u8]);
        let big = parse_server_frame(&mut buf, 1 << 20, false).unwrap().unwrap();
        assert_eq!(big.payload.len(), 300);
        assert!(buf.is_empty());
    }

    #[test]
    fn rejects_bad_server_frames() {
        let mut masked = BytesMut::from(&[0x81u8, 0x81, 0, 0, 0, 0, b'x'][..]);
        assert_eq!(parse_server_frame(&mut masked, 100, false), Err(FrameError::MaskedServerFrame));
        let mut reserved = BytesMut::from(&[0xC1u8, 0][..]);
        assert_eq!(parse_server_frame(&mut reserved, 100, false), Err(FrameError::ReservedBits));
        // RSV1 is a compressed message once permessage-deflate is negotiated; RSV2 never is anything.
        let mut compressed = BytesMut::from(&[0xC1u8, 0][..]);
        assert!(parse_server_frame(&mut compressed, 100, true).unwrap().unwrap().compressed);
        let mut rsv2 = BytesMut::from(&[0xA1u8, 0][..]);
        assert_eq!(parse_server_frame(&mut rsv2, 100, true), Err(FrameError::ReservedBits));
        let mut opcode = BytesMut::from(&[0x83u8, 0][..]);
        assert_eq!(parse_server_frame(&mut opcode, 100, false), Err(FrameError::UnknownOpcode(3)));
        let mut big = BytesMut::from(&[0x82u8, 126, 0x10, 0x00][..]);
        assert_eq!(parse_server_frame(&mut big, 100, false), Err(FrameError::TooBig(4096)));
    }

    #[test]
    fn mask_source_varies() {
        let mut source = MaskSource::new(42);
        let a = source.next_mask();
        let b = source.next_mask();
        assert_ne!(a, b);
    }
}
