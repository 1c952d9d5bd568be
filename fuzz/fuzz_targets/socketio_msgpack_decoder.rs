//! One binary message fed to the MessagePack Socket.IO decoder (`socket.io-msgpack-parser`'s format),
//! as a connection with `socketio.parser = "msgpack"` would.
//!
//! Input: the first byte picks the attachment limit, the rest is the message. Checks that decoded
//! packets are consistent and that encoding is stable: what was decoded encodes, decodes again, and
//! encodes to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol::socketio::{count_placeholders, PacketType};
use switchyard_protocol::socketio_msgpack::{decode, encode};

fn sorted(binary: &[bytes::Bytes]) -> Vec<&[u8]> {
    let mut all: Vec<&[u8]> = binary.iter().map(|b| &b[..]).collect();
    all.sort();
    all
}

fuzz_target!(|data: &[u8]| {
    let max_attachments = usize::from(data.first().copied().unwrap_or(0) % 12);
    let message = data.get(1..).unwrap_or_default();
    let Ok(packet) = decode(message, max_attachments) else { return };
    assert!(!packet.kind.is_binary(), "the msgpack parser has no BINARY_EVENT or BINARY_ACK");
    assert!(packet.attachments.len() <= max_attachments);
    assert_eq!(packet.data.as_ref().map_or(0, count_placeholders), packet.attachments.len());
    match packet.kind {
        PacketType::Disconnect => assert!(packet.data.is_none()),
        PacketType::Event | PacketType::Ack => assert!(packet.data.as_ref().is_some_and(|d| d.is_array())),
        _ => {}
    }

    let mut first = Vec::new();
    encode(&packet, &mut first);
    let again = decode(&first, max_attachments).expect("an encoded packet decodes");
    assert_eq!((again.kind, &again.nsp, again.id), (packet.kind, &packet.nsp, packet.id));
    // The same attachments; their order may change, as maps keep their keys sorted.
    assert_eq!(sorted(&again.attachments), sorted(&packet.attachments));
    // Integral floats come back as integers, so compare the second encoding with the first.
    let mut second = Vec::new();
    encode(&again, &mut second);
    assert_eq!(first, second, "encoding is stable");
});
