//! RFC 6455 server-side framing.

use bytes::{Bytes, BytesMut};
use switchyard_protocol::websocket::{
    accept_key, encode_close, encode_frame, encode_header, is_valid_close_code, unmask, FrameDecoder, FrameError,
    Message, OpCode, MAX_HEADER_LEN,
};

mod common;
use common::{client_frame, decode_all};

fn fin(opcode: OpCode) -> u8 {
    0x80 | opcode as u8
}

fn decode_one(bytes: &[u8]) -> Result<Option<Message>, FrameError> {
    let mut buf = BytesMut::from(bytes);
    FrameDecoder::new(1 << 20).decode(&mut buf)
}

#[test]
fn decodes_the_rfc_masked_hello() {
    let mut buf = BytesMut::from(&[0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58][..]);
    let mut decoder = FrameDecoder::new(1024);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Text(Bytes::from_static(b"Hello")))));
    assert!(buf.is_empty());
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn decodes_every_message_kind() {
    assert_eq!(decode_one(&client_frame(fin(OpCode::Text), b"4hi", None)), Ok(Some(Message::Text("4hi".into()))));
    assert_eq!(
        decode_one(&client_frame(fin(OpCode::Binary), &[0, 1, 255], None)),
        Ok(Some(Message::Binary(Bytes::from_static(&[0, 1, 255]))))
    );
    assert_eq!(decode_one(&client_frame(fin(OpCode::Ping), b"p", None)), Ok(Some(Message::Ping("p".into()))));
    assert_eq!(decode_one(&client_frame(fin(OpCode::Pong), b"", None)), Ok(Some(Message::Pong(Bytes::new()))));
    assert_eq!(decode_one(&client_frame(fin(OpCode::Close), b"", None)), Ok(Some(Message::Close(None))));
    assert_eq!(
        decode_one(&client_frame(fin(OpCode::Close), &[0x03, 0xe8, b'b', b'y', b'e'], None)),
        Ok(Some(Message::Close(Some(1000))))
    );
    assert_eq!(
        decode_one(&client_frame(fin(OpCode::Close), &[0x0f, 0xa0], None)),
        Ok(Some(Message::Close(Some(4000))))
    );
    assert_eq!(decode_one(&client_frame(fin(OpCode::Text), b"", None)), Ok(Some(Message::Text(Bytes::new()))));
}

#[test]
fn decodes_16_and_64_bit_lengths() {
    let medium: Vec<u8> = (0..300u32).map(|i| (i % 251) as u8).collect();
    let frame = client_frame(fin(OpCode::Binary), &medium, None);
    assert_eq!(&frame[1..4], &[0x80 | 126, 0x01, 0x2c]);
    assert_eq!(decode_one(&frame), Ok(Some(Message::Binary(medium.clone().into()))));

    let large: Vec<u8> = (0..70_000u32).map(|i| (i % 253) as u8).collect();
    let frame = client_frame(fin(OpCode::Binary), &large, None);
    assert_eq!(&frame[1..10], &[0x80 | 127, 0, 0, 0, 0, 0, 0x01, 0x11, 0x70]);
    assert_eq!(decode_one(&frame), Ok(Some(Message::Binary(large.into()))));

    // Longer length forms than needed are accepted.
    let frame = client_frame(fin(OpCode::Text), b"abc", Some(127));
    assert_eq!(decode_one(&frame), Ok(Some(Message::Text("abc".into()))));
    let frame = client_frame(fin(OpCode::Text), b"abc", Some(126));
    assert_eq!(decode_one(&frame), Ok(Some(Message::Text("abc".into()))));
}

#[test]
fn waits_for_every_byte_of_a_frame() {
    let payload: Vec<u8> = (0..200u8).collect();
    let frame = client_frame(fin(OpCode::Binary), &payload, None);
    let mut decoder = FrameDecoder::new(1024);
    let mut buf = BytesMut::new();
    for (i, byte) in frame.iter().enumerate() {
        assert_eq!(decoder.decode(&mut buf), Ok(None), "after {i} bytes");
        assert_eq!(buf.len(), i, "a partial frame stays in the buffer");
        buf.extend_from_slice(&[*byte]);
    }
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Binary(payload.into()))));
    assert!(buf.is_empty());
}

#[test]
fn decodes_back_to_back_frames_one_at_a_time() {
    let mut bytes = client_frame(fin(OpCode::Text), b"one", None);
    bytes.extend(client_frame(fin(OpCode::Binary), b"two", None));
    bytes.extend(client_frame(fin(OpCode::Text), b"thr", None)[..5].iter());
    let mut decoder = FrameDecoder::new(1024);
    assert_eq!(
        decode_all(&mut decoder, &bytes),
        vec![Ok(Some(Message::Text("one".into()))), Ok(Some(Message::Binary("two".into()))), Ok(None)]
    );
}

#[test]
fn reassembles_fragmented_messages_with_interleaved_control_frames() {
    let mut bytes = client_frame(OpCode::Text as u8, "hé".as_bytes(), None);
    // A multi-byte character split across fragments is fine: UTF-8 is checked on the whole message.
    bytes.extend(client_frame(OpCode::Continuation as u8, &"llo €".as_bytes()[..5], None));
    bytes.extend(client_frame(fin(OpCode::Ping), b"mid", None));
    bytes.extend(client_frame(fin(OpCode::Continuation), &"llo €".as_bytes()[5..], None));
    bytes.extend(client_frame(OpCode::Binary as u8, &[1], None));
    bytes.extend(client_frame(OpCode::Continuation as u8, &[], None));
    bytes.extend(client_frame(fin(OpCode::Continuation), &[2, 3], None));

    let mut decoder = FrameDecoder::new(1024);
    let mut buf = BytesMut::from(&bytes[..]);
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Ping("mid".into()))));
    assert!(decoder.is_reassembling());
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Text("héllo €".into()))));
    assert!(!decoder.is_reassembling());
    assert_eq!(decoder.decode(&mut buf), Ok(Some(Message::Binary(Bytes::from_static(&[1, 2, 3])))));
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert!(buf.is_empty());
}

#[test]
fn rejects_protocol_violations() {
    let protocol = |bytes: &[u8]| match decode_one(bytes) {
        Err(FrameError::Protocol(_)) => {}
        other => panic!("{bytes:?}: expected a protocol error, got {other:?}"),
    };
    // Unmasked client frame.
    protocol(&[0x81, 0x02, b'h', b'i']);
    // RSV1, RSV2, RSV3.
    for rsv in [0x40, 0x20, 0x10] {
        protocol(&client_frame(fin(OpCode::Text) | rsv, b"x", None));
    }
    // Unknown opcodes.
    for opcode in [0x3, 0x4, 0x5, 0x6, 0x7, 0xb, 0xc, 0xd, 0xe, 0xf] {
        protocol(&client_frame(0x80 | opcode, b"x", None));
    }
    // Fragmented and oversized control frames.
    protocol(&client_frame(OpCode::Ping as u8, b"x", None));
    protocol(&client_frame(OpCode::Close as u8, b"", None));
    protocol(&client_frame(fin(OpCode::Ping), &[0; 126], None));
    protocol(&client_frame(fin(OpCode::Pong), b"x", Some(126)));
    // Continuation without a message.
    protocol(&client_frame(fin(OpCode::Continuation), b"x", None));
    protocol(&client_frame(OpCode::Continuation as u8, b"x", None));
    // A new data message while one is fragmented.
    let mut bytes = client_frame(OpCode::Text as u8, b"a", None);
    bytes.extend(client_frame(fin(OpCode::Text), b"b", None));
    protocol(&bytes);
    let mut bytes = client_frame(OpCode::Binary as u8, b"a", None);
    bytes.extend(client_frame(OpCode::Binary as u8, b"b", None));
    protocol(&bytes);
    // 64-bit length with the most significant bit set.
    protocol(&[0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    // Close payload of one byte, and codes a peer may not send.
    protocol(&client_frame(fin(OpCode::Close), &[0x03], None));
    for code in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535] {
        protocol(&client_frame(fin(OpCode::Close), &code.to_be_bytes(), None));
    }
}

#[test]
fn header_checks_happen_before_the_payload_arrives() {
    // Only two bytes of an unmasked frame: rejected at once, not after waiting for the rest.
    assert_eq!(decode_one(&[0x81, 0x05]), Err(FrameError::Protocol("client frame is not masked")));
    // Announced 16-bit and 64-bit sizes over the limit, with no payload buffered yet.
    let mut decoder = FrameDecoder::new(1000);
    let mut buf = BytesMut::from(&[0x82, 0x80 | 126, 0x03, 0xe9][..]);
    assert_eq!(decoder.decode(&mut buf), Err(FrameError::TooBig));
    let mut decoder = FrameDecoder::new(usize::MAX);
    let mut buf = BytesMut::from(&[0x82, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff][..]);
    let result = decoder.decode(&mut buf);
    if usize::BITS >= 64 {
        assert_eq!(result, Ok(None), "a legal length within the limit waits for the mask and payload");
    } else {
        assert_eq!(result, Err(FrameError::TooBig));
    }
}

#[test]
fn enforces_the_message_size_limit() {
    let mut decoder = FrameDecoder::new(10);
    assert_eq!(
        decode_all(&mut decoder, &client_frame(fin(OpCode::Binary), &[7; 10], None)),
        vec![Ok(Some(Message::Binary(Bytes::from_static(&[7; 10])))), Ok(None)]
    );
    assert_eq!(
        decode_all(&mut decoder, &client_frame(fin(OpCode::Binary), &[7; 11], None)),
        vec![Err(FrameError::TooBig)]
    );

    // Fragments that are small on their own but too big together.
    let mut decoder = FrameDecoder::new(10);
    let mut bytes = client_frame(OpCode::Text as u8, b"123456", None);
    bytes.extend(client_frame(fin(OpCode::Continuation), b"12345", None));
    assert_eq!(decode_all(&mut decoder, &bytes), vec![Err(FrameError::TooBig)]);
    assert!(!decoder.is_reassembling(), "an error drops the partial message");
}

#[test]
fn rejects_invalid_utf8() {
    assert_eq!(decode_one(&client_frame(fin(OpCode::Text), &[0xff], None)), Err(FrameError::InvalidUtf8));
    let mut bytes = client_frame(OpCode::Text as u8, &[0xe2, 0x82], None);
    bytes.extend(client_frame(fin(OpCode::Continuation), &[0x28], None));
    assert_eq!(decode_one(&bytes), Err(FrameError::InvalidUtf8));
    assert_eq!(decode_one(&client_frame(fin(OpCode::Close), &[0x03, 0xe8, 0xc3], None)), Err(FrameError::InvalidUtf8));
    // Binary messages may hold anything.
    assert_eq!(
        decode_one(&client_frame(fin(OpCode::Binary), &[0xff], None)),
        Ok(Some(Message::Binary(Bytes::from_static(&[0xff]))))
    );
}

#[test]
fn close_codes_for_errors() {
    assert_eq!(FrameError::Protocol("x").close_code(), 1002);
    assert_eq!(FrameError::TooBig.close_code(), 1009);
    assert_eq!(FrameError::InvalidUtf8.close_code(), 1007);
    assert!(is_valid_close_code(1000) && is_valid_close_code(1011) && is_valid_close_code(4999));
    assert!(!is_valid_close_code(1005) && !is_valid_close_code(2000));
}

#[test]
fn unmasks_every_length_and_alignment() {
    let mask = [0xa1, 0xb2, 0xc3, 0xd4];
    let original: Vec<u8> = (0..64u8).map(|b| b.wrapping_mul(37)).collect();
    for start in 0..4 {
        for len in 0..40 {
            let slice = &original[start..start + len];
            let mut data: Vec<u8> = slice.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]).collect();
            unmask(&mut data, mask);
            assert_eq!(data, slice, "start {start} len {len}");
        }
    }
}

#[test]
fn encodes_server_frames() {
    let mut header = [0u8; MAX_HEADER_LEN];
    assert_eq!(encode_header(OpCode::Text, 0, &mut header), 2);
    assert_eq!(&header[..2], &[0x81, 0]);
    assert_eq!(encode_header(OpCode::Binary, 125, &mut header), 2);
    assert_eq!(&header[..2], &[0x82, 125]);
    assert_eq!(encode_header(OpCode::Text, 126, &mut header), 4);
    assert_eq!(&header[..4], &[0x81, 126, 0, 126]);
    assert_eq!(encode_header(OpCode::Text, 65535, &mut header), 4);
    assert_eq!(&header[..4], &[0x81, 126, 0xff, 0xff]);
    assert_eq!(encode_header(OpCode::Binary, 65536, &mut header), 10);
    assert_eq!(header, [0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0]);
    assert_eq!(encode_header(OpCode::Ping, 3, &mut header), 2);
    assert_eq!(&header[..2], &[0x89, 3]);

    let mut out = BytesMut::new();
    encode_frame(OpCode::Text, b"4hello", &mut out);
    assert_eq!(&out[..], b"\x81\x064hello");
    out.clear();
    encode_frame(OpCode::Pong, b"", &mut out);
    assert_eq!(&out[..], &[0x8a, 0]);
    out.clear();
    encode_close(1000, &mut out);
    assert_eq!(&out[..], &[0x88, 2, 0x03, 0xe8]);
    out.clear();
    encode_close(1009, &mut out);
    assert_eq!(&out[..], &[0x88, 2, 0x03, 0xf1]);
    out.clear();
    let big = vec![9u8; 70_000];
    encode_frame(OpCode::Binary, &big, &mut out);
    assert_eq!(out.len(), 10 + 70_000);
    assert_eq!(&out[..10], &[0x82, 127, 0, 0, 0, 0, 0, 1, 0x11, 0x70]);
}

#[test]
fn computes_the_accept_key() {
    // RFC 6455 section 1.3.
    assert_eq!(accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    assert_eq!(accept_key(b"x3JJHMbDL1EzLkh9GBhXDw=="), "HSmrc0sMlYUkAGmm5OPpG2HaGWk=");
}

#[test]
fn unfragmented_payloads_are_not_copied() {
    let mut buf = BytesMut::from(&client_frame(fin(OpCode::Binary), b"payload", None)[..]);
    let payload_start = buf[6..].as_ptr();
    let Ok(Some(Message::Binary(payload))) = FrameDecoder::new(64).decode(&mut buf) else {
        panic!("no binary message")
    };
    assert_eq!(&payload[..], b"payload");
    assert_eq!(payload.as_ptr(), payload_start);
}
