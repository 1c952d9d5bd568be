use bytes::{BufMut, Bytes, BytesMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use switchyard_protocol::deflate;
use switchyard_protocol::engine::PacketType;
use switchyard_protocol::websocket::{self, OpCode, MAX_HEADER_LEN};

/// One outgoing Engine.IO packet, encoded once and shared by every recipient.
///
/// `bytes` holds the complete unmasked WebSocket frame: the header followed by the Engine.IO packet
/// (`4...` for text, raw bytes for binary). The polling transport sends the part after the header.
/// Cloning is a reference-count increment.
///
/// With permessage-deflate on, a frame large enough to be compressed also carries a slot for its
/// compressed variant, filled by the first WebSocket writer that needs it and shared by every other
/// recipient: a broadcast is compressed once. With compression off the slot is never allocated.
#[derive(Clone, Debug)]
pub struct Frame {
    bytes: Bytes,
    header_len: u8,
    binary: bool,
    deflated: Option<Arc<OnceLock<Option<Bytes>>>>,
    /// A binary message in Engine.IO v3 form: the payload starts with the type byte (see `eio3.rs`).
    pub(crate) eio3: bool,
}

/// The smallest `per_message_deflate_threshold` of any engine in this process with compression on
/// (`usize::MAX`: none). Frames at least this long get a slot for a shared compressed variant. Only
/// a hint: a frame without a slot is compressed by each writer that sends it compressed.
static SHARED_DEFLATE_FROM: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Called by an engine with permessage-deflate on.
pub(crate) fn enable_shared_deflate(threshold: usize) {
    SHARED_DEFLATE_FROM.fetch_min(threshold, Ordering::Relaxed);
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

    /// A binary `message` packet whose bytes `write_body` appends to a vector (the msgpack writer's
    /// buffer), framed in place like [`Frame::text`].
    pub fn binary_with(capacity_hint: usize, write_body: impl FnOnce(&mut Vec<u8>)) -> Frame {
        let mut buf = Vec::with_capacity(MAX_HEADER_LEN + capacity_hint);
        buf.resize(MAX_HEADER_LEN, 0);
        write_body(&mut buf);
        // Vec -> Bytes -> BytesMut reuses the allocation (the buffer is unique).
        Self::finish(BytesMut::from(Bytes::from(buf)), OpCode::Binary)
    }

    pub(crate) fn finish(mut buf: BytesMut, opcode: OpCode) -> Frame {
        let payload_len = buf.len() - MAX_HEADER_LEN;
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = websocket::encode_header(opcode, payload_len, &mut header);
        let start = MAX_HEADER_LEN - header_len;
        buf[start..MAX_HEADER_LEN].copy_from_slice(&header[..header_len]);
        // The one branch compression adds to encoding; nothing per recipient.
        let deflated = (payload_len >= SHARED_DEFLATE_FROM.load(Ordering::Relaxed)).then(Default::default);
        Frame {
            bytes: buf.freeze().slice(start..),
            header_len: header_len as u8,
            binary: opcode == OpCode::Binary,
            deflated,
            eio3: false,
        }
    }

    /// This frame as written to a WebSocket that negotiated permessage-deflate: compressed (RSV1 set)
    /// when its packet is at least `threshold` bytes and compression makes it smaller, else itself.
    /// The compressed variant is computed once per frame and shared by every clone that has its slot
    /// (the recipients of one broadcast). `compressions` counts actual compressions.
    pub(crate) fn for_deflate(&self, threshold: usize, compressions: &std::sync::atomic::AtomicU64) -> Frame {
        if self.payload().len() < threshold {
            return self.clone();
        }
        let compress = || {
            compressions.fetch_add(1, Ordering::Relaxed);
            self.compress()
        };
        let compressed = match &self.deflated {
            Some(slot) => slot.get_or_init(compress).clone(),
            None => compress(),
        };
        match compressed {
            Some(bytes) => {
                // The header is 2, 4 or 10 bytes: the payload length says which.
                let header_len = match bytes.get(1).map(|b| b & 0x7f) {
                    Some(127) => 10,
                    Some(126) => 4,
                    _ => 2,
                };
                Frame { bytes, header_len, binary: self.binary, deflated: None, eio3: self.eio3 }
            }
            None => self.clone(),
        }
    }

    /// Several whole WebSocket frames copied end to end (a connection's coalesced small frames, see
    /// `Connection::send_all`): only a WebSocket writer without compression ever sees one.
    pub(crate) fn coalesced(bytes: Bytes) -> Frame {
        Frame { bytes, header_len: 0, binary: false, deflated: None, eio3: false }
    }

    /// Whether this frame is a compressed variant (RSV1 set).
    pub fn is_deflated(&self) -> bool {
        self.bytes.first().is_some_and(|b| b & 0x40 != 0)
    }

    /// The whole compressed frame, or `None` when compression would not make it smaller.
    fn compress(&self) -> Option<Bytes> {
        let payload = self.payload();
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len() / 2 + 64);
        buf.put_bytes(0, MAX_HEADER_LEN);
        if !deflate::compress(payload, &mut buf) {
            return None;
        }
        let compressed_len = buf.len() - MAX_HEADER_LEN;
        if compressed_len >= payload.len() {
            return None;
        }
        let opcode = if self.binary { OpCode::Binary } else { OpCode::Text };
        let mut header = [0u8; MAX_HEADER_LEN];
        let header_len = websocket::encode_header_rsv1(opcode, compressed_len, true, &mut header);
        let start = MAX_HEADER_LEN - header_len;
        buf[start..MAX_HEADER_LEN].copy_from_slice(&header[..header_len]);
        Some(buf.freeze().slice(start..))
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

    #[test]
    fn binary_frame_written_in_place() {
        let f = Frame::binary_with(4, |out| out.extend_from_slice(&[0x81, 0xa1, b'a', 1]));
        assert_eq!(f.payload(), &[0x81, 0xa1, b'a', 1]);
        assert_eq!(&f.ws_bytes()[..], &[0x82, 4, 0x81, 0xa1, b'a', 1]);
        assert!(f.is_binary());
        let long = Frame::binary_with(0, |out| out.resize(out.len() + 300, 7));
        assert_eq!(&long.ws_bytes()[..4], &[0x82, 126, 0x01, 0x2c]);
        assert_eq!(long.payload(), &[7; 300][..]);
    }
}
