//! Client-side WebSocket framing shared by the codec tests (`mod common;` in each test file).

use bytes::BytesMut;
use switchyard_protocol::websocket::{FrameDecoder, FrameError, Message};

/// The client's masking key (RFC 6455's example key).
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame: masked with `MASK`, with the shortest length form unless `force_len` picks 126 or 127.
pub fn client_frame(first_byte: u8, payload: &[u8], force_len: Option<u8>) -> Vec<u8> {
    let mut frame = vec![first_byte];
    match force_len.unwrap_or(match payload.len() {
        0..=125 => 0,
        126..=65535 => 126,
        _ => 127,
    }) {
        126 => {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        127 => {
            frame.push(0x80 | 127);
            frame.extend_from_slice(&(payload.len() as u64).to_be_bytes());
        }
        _ => frame.push(0x80 | payload.len() as u8),
    }
    frame.extend_from_slice(&MASK);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    frame
}

/// Every result `decoder` gives for `bytes`, up to and including the first that is not a message.
pub fn decode_all(decoder: &mut FrameDecoder, bytes: &[u8]) -> Vec<Result<Option<Message>, FrameError>> {
    let mut buf = BytesMut::from(bytes);
    let mut results = Vec::new();
    loop {
        let result = decoder.decode(&mut buf);
        let stop = !matches!(result, Ok(Some(_)));
        results.push(result);
        if stop {
            return results;
        }
    }
}
