//! An Engine.IO v3 polling POST body, text or binary (XHR2): decoding never panics, and what decodes
//! survives re-encoding in both formats.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchyard_protocol::engine::{Packet, PacketData};
use switchyard_protocol::engine3::{
    decode_binary_payload, decode_payload, encode_binary_payload, encode_payload, Item,
};

fn text_form(packet: &Packet) -> Vec<u8> {
    let mut out = vec![packet.kind.digit()];
    if let PacketData::Text(text) = &packet.data {
        out.extend_from_slice(text);
    }
    out
}

fn round_trip(packets: &[Packet]) {
    let texts: Vec<Vec<u8>> = packets.iter().map(text_form).collect();
    let items: Vec<Item<'_>> = packets
        .iter()
        .zip(&texts)
        .map(|(packet, text)| match &packet.data {
            PacketData::Binary(data) => Item::Binary(data),
            _ => Item::Text(text),
        })
        .collect();
    let mut body = BytesMut::new();
    encode_payload(items.iter().copied(), &mut body);
    assert_eq!(decode_payload(body.freeze()).as_deref(), Ok(packets), "text payload round trip");
    let mut body = BytesMut::new();
    encode_binary_payload(items.iter().copied(), &mut body);
    assert_eq!(decode_binary_payload(body.freeze()).as_deref(), Ok(packets), "binary payload round trip");
}

fuzz_target!(|data: &[u8]| {
    if let Ok(packets) = decode_payload(Bytes::copy_from_slice(data)) {
        if !packets.is_empty() {
            round_trip(&packets);
        }
    }
    if let Ok(packets) = decode_binary_payload(Bytes::copy_from_slice(data)) {
        if !packets.is_empty() {
            round_trip(&packets);
        }
    }
});
