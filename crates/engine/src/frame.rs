use bytes::{BufMut, Bytes, BytesMut};
use std::sync::OnceLock;
use switchyard_protocol::engine::PacketType;
use switchyard_protocol::websocket::{self, OpCode, MAX_HEADER_LEN};

/// One outgoing Engine.IO packet, encoded once and shared by every recipient.
///
/// `bytes` holds the complete unmasked WebSocket frame: the header followed by the Engine.IO packet
/// (`4...` for text, raw bytes for binary). The polling transport sends the part after the header.
/// Cloning is a reference-count increment.
#[derive(Clone, Debug)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
    binary: bool,
    /// A binary message in Engine.IO v3 form: the payload starts with the type byte (see `eio3.rs`).
    pub(crate) eio3: bool,
}

impl Frame {
    /// A text packet of `kind` whose body `write_body` appends (after the type digit).
    pub fn text(kind: PacketType, capacity_hint: usize, write_body: impl FnOnce(&mut BytesMut)) -> Frame {
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + 1 + capacity_hint);
        buf.put_bytes(0, MAX_HEADER_LEN);
        buf.put_u8(b'0' + kind as u8);
        write_body(&mut buf);
        Self::finish(buf, OpCode::Text)
    }

    /// A `message` text packet: `4` followed by `body`.
    pub fn message(body: &[u8]) -> Frame {
        Self::text(PacketType::Message, body.len(), |b| b.extend_from_slice(body))
    }

    /// A binary `message` packet.
    pub fn binary(data: &[u8]) -> Frame {
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + data.len());
        buf.put_bytes(0, MAX_HEADER_LEN);
        buf.extend_from_slice(data);
        Self::finish(buf, OpCode::Binary)
    }

    pub(crate) fn finish(mut buf: BytesMut, opcode: OpCode) -> Frame {
        let payload_len = buf.len() - MAX_HEADER_LEN;
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = websocket::encode_header(opcode, payload_len, &mut header);
        let start = MAX_HEADER_LEN - header_len;
        buf[start..MAX_HEADER_LEN].copy_from_slice(&header[..header_len]);
        Frame {
            bytes: buf.freeze().slice(start..),
            header_len: header_len as u8,
            binary: opcode == OpCode::Binary,
            eio3: false,
        }
    }

    /// The whole WebSocket frame.
    pub fn ws_bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// The Engine.IO packet (text form) or the raw binary data.
    pub fn payload(&self) -> &[u8] {
        &self.bytes[self.header_len as usize..]
    }

    pub fn is_binary(&self) -> bool {
        self.binary
    }

    /// Bytes this frame counts against a connection's queue bound.
    pub fn queued_len(&self) -> usize {
        self.bytes.len()
    }

    pub(crate) fn ping() -> Frame {
        static PING: OnceLock<Frame> = OnceLock::new();
        PING.get_or_init(|| Frame::text(PacketType::Ping, 0, |_| {})).clone()
    }

    pub(crate) fn noop() -> Frame {
        static NOOP: OnceLock<Frame> = OnceLock::new();
        NOOP.get_or_init(|| Frame::text(PacketType::Noop, 0, |_| {})).clone()
    }

    pub(crate) fn close() -> Frame {
        static CLOSE: OnceLock<Frame> = OnceLock::new();
        CLOSE.get_or_init(|| Frame::text(PacketType::Close, 0, |_| {})).clone()
    }

    pub(crate) fn probe_pong() -> Frame {
        static PONG: OnceLock<Frame> = OnceLock::new();
        PONG.get_or_init(|| Frame::text(PacketType::Pong, 5, |b| b.extend_from_slice(b"probe"))).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_frame_carries_header_and_packet() {
        let f = Frame::message(b"2[\"hi\"]");
        assert_eq!(f.payload(), b"42[\"hi\"]");
        assert_eq!(&f.ws_bytes()[..2], &[0x81, 8]);
        assert!(!f.is_binary());
    }

    #[test]
    fn long_frames_use_extended_length() {
        let body = vec![b'a'; 300];
        let f = Frame::message(&body);
        assert_eq!(&f.ws_bytes()[..4], &[0x81, 126, 0x01, 0x2d]);
        assert_eq!(f.payload().len(), 301);
    }

    #[test]
    fn binary_frame_is_raw() {
        let f = Frame::binary(&[1, 2, 3]);
        assert_eq!(f.payload(), &[1, 2, 3]);
        assert_eq!(&f.ws_bytes()[..2], &[0x82, 3]);
        assert!(f.is_binary());
    }
}
