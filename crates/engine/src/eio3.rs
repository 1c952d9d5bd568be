//! Engine.IO v3, for Socket.IO v2 clients (behind [`EngineConfig::allow_eio3`](crate::EngineConfig)).
//!
//! A v3 connection is an ordinary [`Connection`] whose [`Protocol`] is `V3`; the differences stay at
//! the edges:
//!
//! - heartbeats run the other way: the client pings, the server answers `3` and expects the next ping
//!   within `ping_interval + ping_timeout` (it never pings itself; see `Connection::heartbeat`);
//! - a binary message carries its type byte (`4`) in the WebSocket frame. Such frames are built once
//!   ([`Frame::binary_eio3`]); a v4 binary frame queued on a v3 connection is converted as it is queued
//!   (`Connection::send_all`), so a broadcast can hand either form to a v3 client and the layer above
//!   can encode once per protocol version;
//! - polling payloads are length-prefixed, and binary as `b4<base64>`, or the whole response is a
//!   binary payload when the session's handshake did not ask for base64 (`b64=1`) and a binary message
//!   is queued ([`polling_body`]).
//!
//! A v4 connection pays one flag in its `Connection` for this, and no work.

use crate::connection::{Connection, Protocol};
use crate::frame::Frame;
use bytes::{BufMut, Bytes, BytesMut};
use std::sync::OnceLock;
use switchyard_protocol::engine::{self as eio, PacketType};
use switchyard_protocol::engine3::{self as v3, DecodeError, Item};
use switchyard_protocol::websocket::{OpCode, MAX_HEADER_LEN};

/// Content type of a text polling response.
pub(crate) const TEXT_PLAIN: &str = "text/plain; charset=UTF-8";
/// Content type of a v3 binary polling payload.
pub(crate) const OCTET_STREAM: &str = "application/octet-stream";

impl Frame {
    /// A binary message in Engine.IO v3 form: the WebSocket frame holds the type byte `4`, then `data`.
    pub fn binary_eio3(data: &[u8]) -> Frame {
        let mut buf = BytesMut::with_capacity(MAX_HEADER_LEN + 1 + data.len());
        buf.put_bytes(0, MAX_HEADER_LEN);
        buf.put_u8(PacketType::Message as u8);
        buf.extend_from_slice(data);
        let mut frame = Frame::finish(buf, OpCode::Binary);
        frame.eio3 = true;
        frame
    }

    /// True for a binary message in Engine.IO v3 form.
    pub fn is_eio3(&self) -> bool {
        self.eio3
    }

    /// The data of a binary message, without the v3 type byte (the payload of a text frame).
    pub fn binary_data(&self) -> &[u8] {
        let payload = self.payload();
        if self.eio3 {
            payload.get(1..).unwrap_or_default()
        } else {
            payload
        }
    }

    /// This frame as an Engine.IO v3 connection sends it: a new frame only for a v4 binary message,
    /// a reference-count increment otherwise.
    pub fn to_eio3(&self) -> Frame {
        if self.is_binary() && !self.eio3 {
            Frame::binary_eio3(self.payload())
        } else {
            self.clone()
        }
    }
}

/// The answer to a client ping: `3` with the ping's data.
pub(crate) fn pong(data: &[u8]) -> Frame {
    if data.is_empty() {
        static PONG: OnceLock<Frame> = OnceLock::new();
        return PONG.get_or_init(|| Frame::text(PacketType::Pong, 0, |_| {})).clone();
    }
    Frame::text(PacketType::Pong, data.len(), |b| b.extend_from_slice(data))
}

/// A polling response body for a v3 connection, and its content type.
pub(crate) fn polling_body<'a, I>(frames: I, protocol: Protocol) -> (Bytes, &'static str)
where
    I: IntoIterator<Item = &'a Frame>,
    I::IntoIter: Clone,
{
    let frames = frames.into_iter();
    let base64 = matches!(protocol, Protocol::V3 { base64: true });
    let binary = !base64 && frames.clone().any(Frame::is_binary);
    let mut out = BytesMut::new();
    for frame in frames {
        let item = if frame.is_binary() { Item::Binary(frame.binary_data()) } else { Item::Text(frame.payload()) };
        if binary {
            v3::encode_binary_payload_item(item, &mut out);
        } else {
            v3::encode_payload_item(item, &mut out);
        }
    }
    (out.freeze(), if binary { OCTET_STREAM } else { TEXT_PLAIN })
}

/// Decodes a polling POST body of a connection speaking `protocol` (`binary`: sent as
/// `application/octet-stream`, which only v3 allows).
pub(crate) fn decode_post(body: Bytes, binary: bool, protocol: Protocol) -> Result<Vec<eio::Packet>, DecodeError> {
    match (protocol, binary) {
        (Protocol::V4, _) => Ok(eio::decode_payload(body)?),
        (_, true) => v3::decode_binary_payload(body),
        (_, false) => v3::decode_payload(body),
    }
}

/// Decodes a WebSocket text frame.
pub(crate) fn decode_ws_text(conn: &Connection, text: Bytes) -> Result<eio::Packet, DecodeError> {
    if conn.protocol().is_v3() {
        v3::decode_text(text)
    } else {
        Ok(eio::decode_text(text)?)
    }
}

/// Decodes a WebSocket binary frame.
pub(crate) fn decode_ws_binary(conn: &Connection, data: Bytes) -> Result<eio::Packet, DecodeError> {
    if conn.protocol().is_v3() {
        v3::decode_binary(data)
    } else {
        Ok(eio::decode_binary(data))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binary_frames_in_v3_form() {
        let frame = Frame::binary_eio3(&[1, 2, 3]);
        assert_eq!(frame.payload(), &[4, 1, 2, 3]);
        assert_eq!(&frame.ws_bytes()[..2], &[0x82, 4]);
        assert_eq!(frame.binary_data(), &[1, 2, 3]);
        let v4 = Frame::binary(&[1, 2, 3]);
        assert_eq!(v4.to_eio3().ws_bytes(), frame.ws_bytes());
        assert!(frame.to_eio3().is_eio3());
        let text = Frame::message(b"hi");
        assert_eq!(text.to_eio3().ws_bytes(), text.ws_bytes());
    }

    #[test]
    fn polling_bodies() {
        let frames = [Frame::message(b"hello"), Frame::binary_eio3(&[1, 2, 3, 4])];
        let (body, kind) = polling_body(&frames, Protocol::V3 { base64: true });
        assert_eq!((&body[..], kind), (&b"6:4hello10:b4AQIDBA=="[..], TEXT_PLAIN));
        let (body, kind) = polling_body(&frames, Protocol::V3 { base64: false });
        assert_eq!(kind, OCTET_STREAM);
        assert_eq!(&body[..], &[0, 6, 255, b'4', b'h', b'e', b'l', b'l', b'o', 1, 5, 255, 4, 1, 2, 3, 4]);
        // Without binary, a binary-capable client still gets text.
        let (body, kind) = polling_body(&[Frame::message("€".as_bytes()), pong(b"")], Protocol::V3 { base64: false });
        assert_eq!((&body[..], kind), ("2:4€1:3".as_bytes(), TEXT_PLAIN));
        assert_eq!(pong(b"probe").payload(), b"3probe");
    }
}
