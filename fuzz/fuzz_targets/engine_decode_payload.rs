//! A polling POST body: decoding never panics, and a decoded payload survives re-encoding.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use switchyard_protocol::engine::{decode_payload, encode_payload, PacketData};

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = decode_payload(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert!(!packets.is_empty());
    assert_eq!(
        packets.len(),
        data.iter().filter(|&&b| b == 0x1e).count() + 1
    );

    let mut body = BytesMut::new();
    encode_payload(&packets, &mut body);
    if packets
        .iter()
        .all(|p| !matches!(p.data, PacketData::Binary(_)))
    {
        assert_eq!(&body[..], data, "a text-only payload re-encodes to itself");
    }
    assert_eq!(
        decode_payload(body.freeze()),
        Ok(packets),
        "payload round trip"
    );
});
