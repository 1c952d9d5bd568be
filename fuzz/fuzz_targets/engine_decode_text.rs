//! One Engine.IO text packet: decoding never panics, and a decoded packet survives re-encoding.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchyard_protocol::engine::{decode_text, encode_polling_packet, encode_text, PacketData};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = decode_text(Bytes::copy_from_slice(data)) else {
        return;
    };

    let mut polling = BytesMut::new();
    encode_polling_packet(&packet, &mut polling);
    assert_eq!(
        decode_text(polling.freeze()).as_ref(),
        Ok(&packet),
        "polling form round trip"
    );

    match &packet.data {
        PacketData::Binary(_) => {}
        PacketData::Empty | PacketData::Text(_) => {
            // Text packets are encoded byte for byte as they came.
            let mut text = BytesMut::new();
            encode_text(&packet, &mut text);
            assert_eq!(&text[..], data, "text form is the input");
        }
    }
});
