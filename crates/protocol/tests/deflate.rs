//! permessage-deflate (RFC 7692) in the frame codec: compressed client messages, RSV1 rules,
//! fragmentation, the inflated-size limit, and the server's compressed frames.

use bytes::{Bytes, BytesMut};
use switchyard_protocol::deflate;
use switchyard_protocol::websocket::{encode_deflated_frame, FrameDecoder, FrameError, Message, OpCode};

mod common;
use common::decode_all;

/// A masked client frame with `first_byte` (FIN, RSV and opcode bits) as given.
fn client_frame(first_byte: u8, payload: &[u8]) -> Vec<u8> {
    common::client_frame(first_byte, payload, None)
}

const FIN: u8 = 0x80;
const RSV1: u8 = 0x40;
const TEXT: u8 = OpCode::Text as u8;
const BINARY: u8 = OpCode::Binary as u8;

/// RFC 7692 7.2.3.1: "Hello" compressed.
const HELLO: [u8; 7] = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];

fn text(s: &str) -> Result<Option<Message>, FrameError> {
    Ok(Some(Message::Text(Bytes::copy_from_slice(s.as_bytes()))))
}

#[test]
fn rfc_examples_inflate() {
    for takeover in [false, true] {
        let mut d = FrameDecoder::with_deflate(1000, takeover);
        // 7.2.3.1, one frame and in two fragments (only the first carries RSV1).
        let mut bytes = client_frame(FIN | RSV1 | TEXT, &HELLO);
        bytes.extend(client_frame(RSV1 | TEXT, &HELLO[..3]));
        bytes.extend(client_frame(FIN, &HELLO[3..]));
        // 7.2.3.3: a stored (uncompressed) deflate block.
        bytes.extend(client_frame(
            FIN | RSV1 | TEXT,
            &[0x00, 0x05, 0x00, 0xfa, 0xff, b'H', b'e', b'l', b'l', b'o', 0x00],
        ));
        // An uncompressed message between compressed ones.
        bytes.extend(client_frame(FIN | TEXT, b"plain"));
        assert_eq!(
            decode_all(&mut d, &bytes),
            vec![text("Hello"), text("Hello"), text("Hello"), text("plain"), Ok(None)],
            "context takeover {takeover}"
        );
    }
}

#[test]
fn context_takeover_keeps_the_window_between_messages() {
    // 7.2.3.2: the second "Hello" refers back to the first.
    let second = [0xf2, 0x00, 0x11, 0x00, 0x00];
    let mut bytes = client_frame(FIN | RSV1 | TEXT, &HELLO);
    bytes.extend(client_frame(FIN | RSV1 | TEXT, &second));
    let mut d = FrameDecoder::with_deflate(1000, true);
    assert!(!d.holds_inflater(), "nothing allocated before the first compressed message");
    assert_eq!(decode_all(&mut d, &bytes), vec![text("Hello"), text("Hello"), Ok(None)]);
    assert!(d.holds_inflater());
    // Without context takeover the back reference points before the message: not "Hello" (the
    // pure-Rust inflater reads such a distance as zeros rather than failing; bounded either way).
    let mut d = FrameDecoder::with_deflate(1000, false);
    let results = decode_all(&mut d, &bytes);
    assert_eq!(results[0], text("Hello"));
    assert_ne!(results[1], text("Hello"));
    assert!(!d.holds_inflater());
}

#[test]
fn rsv_rules() {
    // RSV1 without the extension negotiated: protocol error (1002).
    let mut d = FrameDecoder::new(1000);
    let results = decode_all(&mut d, &client_frame(FIN | RSV1 | TEXT, &HELLO));
    assert_eq!(results, vec![Err(FrameError::Protocol("reserved bits set without a negotiated extension"))]);
    assert_eq!(FrameError::Protocol("x").close_code(), 1002);
    // RSV2 and RSV3 are never allowed.
    for rsv in [0x20, 0x10] {
        let mut d = FrameDecoder::with_deflate(1000, false);
        assert!(matches!(decode_all(&mut d, &client_frame(FIN | rsv | TEXT, b"x"))[0], Err(FrameError::Protocol(_))));
    }
    // Control frames are never compressed.
    for op in [OpCode::Ping, OpCode::Pong, OpCode::Close] {
        let mut d = FrameDecoder::with_deflate(1000, false);
        assert_eq!(
            decode_all(&mut d, &client_frame(FIN | RSV1 | op as u8, &[]))[0],
            Err(FrameError::Protocol("compressed control frame"))
        );
    }
    // RSV1 on a continuation frame.
    let mut d = FrameDecoder::with_deflate(1000, false);
    let mut bytes = client_frame(RSV1 | TEXT, &HELLO[..3]);
    bytes.extend(client_frame(FIN | RSV1, &HELLO[3..]));
    assert_eq!(decode_all(&mut d, &bytes), vec![Err(FrameError::Protocol("RSV1 set on a continuation frame"))]);
    // A ping between the fragments of a compressed message is answered as usual.
    let mut d = FrameDecoder::with_deflate(1000, false);
    let mut bytes = client_frame(RSV1 | BINARY, &HELLO[..2]);
    bytes.extend(client_frame(FIN | OpCode::Ping as u8, b"p"));
    bytes.extend(client_frame(FIN, &HELLO[2..]));
    assert_eq!(
        decode_all(&mut d, &bytes),
        vec![
            Ok(Some(Message::Ping(Bytes::from_static(b"p")))),
            Ok(Some(Message::Binary(Bytes::from_static(b"Hello")))),
            Ok(None)
        ]
    );
}

#[test]
fn compressed_frames_round_trip() {
    let body: Vec<u8> = (0..40)
        .flat_map(|i| {
            format!(r#"42["chat",{{"room":"lobby","n":{},"text":"message {}"}}]"#, i * 7919, i * i).into_bytes()
        })
        .collect();
    let mut frame = BytesMut::new();
    assert!(encode_deflated_frame(OpCode::Text, &body, &mut frame));
    // The server frame: FIN, RSV1, text, unmasked, a 16-bit length.
    assert_eq!(frame[0], FIN | RSV1 | TEXT);
    assert_eq!(frame[1], 126);
    let len = u16::from_be_bytes([frame[2], frame[3]]) as usize;
    assert_eq!(frame.len(), 4 + len);
    assert!(len < body.len() / 2, "{len} of {}", body.len());
    // A client sends the same compressed payload masked; the decoder gives the text back, in one
    // frame and split into many fragments.
    let compressed = &frame[4..];
    let mut d = FrameDecoder::with_deflate(body.len(), false);
    let whole = decode_all(&mut d, &client_frame(FIN | RSV1 | TEXT, compressed));
    assert_eq!(whole[0], Ok(Some(Message::Text(Bytes::copy_from_slice(&body)))));
    let mut bytes = Vec::new();
    let chunks: Vec<&[u8]> = compressed.chunks(7).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let first = if i == 0 { RSV1 | TEXT } else { 0 };
        let fin = if i == chunks.len() - 1 { FIN } else { 0 };
        bytes.extend(client_frame(first | fin, chunk));
    }
    // Fed a few bytes at a time, as they would arrive.
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    for piece in bytes.chunks(5) {
        buf.extend_from_slice(piece);
        while let Some(message) = d.decode(&mut buf).unwrap() {
            got.push(message);
        }
    }
    assert_eq!(got, vec![Message::Text(Bytes::copy_from_slice(&body))]);
    // Binary too.
    let data: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    let mut frame = BytesMut::new();
    assert!(encode_deflated_frame(OpCode::Binary, &data, &mut frame));
    assert_eq!(frame[0], FIN | RSV1 | BINARY);
    let payload = &frame[2..];
    assert_eq!(frame[1] as usize, payload.len());
    let mut d = FrameDecoder::with_deflate(data.len(), true);
    assert_eq!(
        decode_all(&mut d, &client_frame(FIN | RSV1 | BINARY, payload))[0],
        Ok(Some(Message::Binary(data.into())))
    );
}

#[test]
fn a_compression_bomb_stops_at_the_limit() {
    // 20 MB of zeros compress to about 20 KB; the limit is 1 MB.
    let mut packed = BytesMut::new();
    assert!(deflate::compress(&vec![0u8; 20_000_000], &mut packed));
    assert!(packed.len() < 50_000, "{}", packed.len());
    for takeover in [false, true] {
        let mut d = FrameDecoder::with_deflate(1_000_000, takeover);
        let result = decode_all(&mut d, &client_frame(FIN | RSV1 | BINARY, &packed));
        assert_eq!(result, vec![Err(FrameError::TooBig)]);
        assert_eq!(FrameError::TooBig.close_code(), 1009);
        assert!(!d.holds_inflater());
        // Fragmented, likewise.
        let mut d = FrameDecoder::with_deflate(1_000_000, takeover);
        let (a, b) = packed.split_at(packed.len() / 2);
        let mut bytes = client_frame(RSV1 | BINARY, a);
        bytes.extend(client_frame(FIN, b));
        assert_eq!(decode_all(&mut d, &bytes), vec![Err(FrameError::TooBig)]);
    }
    // Exactly at the limit is fine.
    let mut packed = BytesMut::new();
    assert!(deflate::compress(&[b'x'; 4096], &mut packed));
    let mut d = FrameDecoder::with_deflate(4096, false);
    assert!(matches!(decode_all(&mut d, &client_frame(FIN | RSV1 | TEXT, &packed))[0], Ok(Some(Message::Text(_)))));
    let mut d = FrameDecoder::with_deflate(4095, false);
    assert_eq!(decode_all(&mut d, &client_frame(FIN | RSV1 | TEXT, &packed))[0], Err(FrameError::TooBig));
}

#[test]
fn bad_compressed_data_and_invalid_utf8() {
    let mut d = FrameDecoder::with_deflate(1000, false);
    assert_eq!(
        decode_all(&mut d, &client_frame(FIN | RSV1 | TEXT, &[0xff, 0xfe, 0xfd]))[0],
        Err(FrameError::BadCompression)
    );
    assert_eq!(FrameError::BadCompression.close_code(), 1007);
    // Text that inflates to invalid UTF-8.
    let mut packed = BytesMut::new();
    assert!(deflate::compress(&[0xc3, 0x28], &mut packed));
    let mut d = FrameDecoder::with_deflate(1000, false);
    assert_eq!(decode_all(&mut d, &client_frame(FIN | RSV1 | TEXT, &packed))[0], Err(FrameError::InvalidUtf8));
}

#[test]
fn the_decoder_stays_small_without_compression() {
    // Every WebSocket keeps one decoder for its life: permessage-deflate adds one pointer to it.
    assert!(std::mem::size_of::<FrameDecoder>() <= 56, "{}", std::mem::size_of::<FrameDecoder>());
}
