//! A sequence of text and binary messages fed to one Socket.IO decoder, as a connection would.
//!
//! Input: records of `[tag][len][len bytes]`; an even tag is a text message (non-UTF-8 bytes replaced),
//! an odd tag a binary attachment. Checks that completed packets are consistent and re-encode.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchyard_protocol::socketio::{count_placeholders, encode, Decoder, Packet};

fuzz_target!(|data: &[u8]| {
    let max_attachments = usize::from(data.first().copied().unwrap_or(0) % 12);
    let mut decoder = Decoder::new(max_attachments);
    let mut rest = data.get(1..).unwrap_or_default();
    while let [tag, len, tail @ ..] = rest {
        let len = usize::from(*len).min(tail.len());
        let (message, tail) = tail.split_at(len);
        rest = tail;
        let was_reconstructing = decoder.is_reconstructing();
        let result = if tag % 2 == 0 {
            decoder.decode_text(&String::from_utf8_lossy(message))
        } else {
            decoder.decode_binary(Bytes::copy_from_slice(message))
        };
        match &result {
            Ok(Some(packet)) => check_packet(packet, max_attachments),
            Ok(None) => assert!(decoder.is_reconstructing()),
            Err(_) => assert!(!decoder.is_reconstructing(), "an error resets the decoder"),
        }
        if tag % 2 == 0 && was_reconstructing {
            assert!(result.is_err(), "text while reconstructing is an error");
        }
    }
});

fn check_packet(packet: &Packet, max_attachments: usize) {
    assert!(packet.attachments.len() <= max_attachments);
    if !packet.kind.is_binary() {
        assert!(packet.attachments.is_empty());
    }
    assert!(packet.nsp.starts_with('/'));

    // What we decoded, we can encode, and decoding that again gives the same packet.
    let mut wire = BytesMut::new();
    encode(packet, &mut wire);
    let text = std::str::from_utf8(&wire).expect("encoder writes UTF-8");
    let mut decoder = Decoder::new(max_attachments);
    let mut decoded = decoder
        .decode_text(text)
        .expect("re-encoded packet decodes");
    for attachment in &packet.attachments {
        assert!(decoded.is_none());
        decoded = decoder
            .decode_binary(attachment.clone())
            .expect("attachment accepted");
    }
    let decoded = decoded.expect("complete after all attachments");
    assert_eq!(decoded.kind, packet.kind);
    assert_eq!(decoded.nsp, packet.nsp);
    assert_eq!(decoded.id, packet.id);
    assert_eq!(decoded.attachments, packet.attachments);
    // serde_json may round floats differently on the way back, so compare structure through placeholders.
    assert_eq!(decoded.data.is_some(), packet.data.is_some());
    if let (Some(a), Some(b)) = (&decoded.data, &packet.data) {
        assert_eq!(count_placeholders(a), count_placeholders(b));
    }
}
