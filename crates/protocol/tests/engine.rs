//! Engine.IO v4 packet and polling payload codec.

use bytes::{Bytes, BytesMut};
use switchyard_protocol::engine::{
    decode_binary, decode_payload, decode_text, encode_open, encode_payload, encode_polling_packet, encode_text,
    DecodeError, Packet, PacketData, PacketType,
};

const ALL_TYPES: [PacketType; 7] = [
    PacketType::Open,
    PacketType::Close,
    PacketType::Ping,
    PacketType::Pong,
    PacketType::Message,
    PacketType::Upgrade,
    PacketType::Noop,
];

fn text(kind: PacketType, data: &'static str) -> Packet {
    Packet { kind, data: PacketData::Text(Bytes::from_static(data.as_bytes())) }
}

fn empty(kind: PacketType) -> Packet {
    Packet { kind, data: PacketData::Empty }
}

fn binary(data: &'static [u8]) -> Packet {
    Packet { kind: PacketType::Message, data: PacketData::Binary(Bytes::from_static(data)) }
}

fn decode(input: &'static [u8]) -> Result<Packet, DecodeError> {
    decode_text(Bytes::from_static(input))
}

fn encoded_text(packet: &Packet) -> BytesMut {
    let mut out = BytesMut::new();
    encode_text(packet, &mut out);
    out
}

#[test]
fn every_type_round_trips_with_and_without_data() {
    for (digit, kind) in (b'0'..).zip(ALL_TYPES) {
        assert_eq!(kind.digit(), digit);
        assert_eq!(PacketType::from_digit(digit), Some(kind));

        let with_data = text(kind, "probe");
        let wire = encoded_text(&with_data);
        assert_eq!(&wire[..], [&[digit][..], b"probe"].concat());
        assert_eq!(decode_text(wire.freeze()), Ok(with_data));

        // A message always carries text (possibly empty); the other types carry nothing.
        let bare = if kind == PacketType::Message { text(kind, "") } else { empty(kind) };
        let wire = encoded_text(&bare);
        assert_eq!(&wire[..], [digit]);
        assert_eq!(decode_text(wire.freeze()), Ok(bare));
    }
}

#[test]
fn decodes_the_spec_examples() {
    assert_eq!(decode(b"2probe"), Ok(text(PacketType::Ping, "probe")));
    assert_eq!(decode(b"3probe"), Ok(text(PacketType::Pong, "probe")));
    assert_eq!(decode(b"2"), Ok(empty(PacketType::Ping)));
    assert_eq!(decode(b"4hello"), Ok(text(PacketType::Message, "hello")));
    assert_eq!(decode(b"4"), Ok(text(PacketType::Message, "")));
    assert_eq!(decode(b"6"), Ok(empty(PacketType::Noop)));
    assert_eq!(decode(b"bAQIDBA=="), Ok(binary(&[1, 2, 3, 4])));
    assert_eq!(decode("4é€😀".as_bytes()), Ok(text(PacketType::Message, "é€😀")));
}

#[test]
fn decoded_text_shares_the_input_buffer() {
    let input = Bytes::from_static(b"4hello");
    let Ok(Packet { data: PacketData::Text(data), .. }) = decode_text(input.clone()) else {
        panic!("not a text message")
    };
    assert_eq!(data.as_ptr(), input[1..].as_ptr());
}

#[test]
fn base64_without_padding_and_empty_binary() {
    assert_eq!(decode(b"bAQIDBA"), Ok(binary(&[1, 2, 3, 4])));
    assert_eq!(decode(b"b"), Ok(binary(&[])));
}

#[test]
fn rejects_bad_text_packets() {
    assert_eq!(decode(b""), Err(DecodeError::Empty));
    assert_eq!(decode(b"7"), Err(DecodeError::UnknownType));
    assert_eq!(decode(b"a4"), Err(DecodeError::UnknownType));
    assert_eq!(decode(b"/hello"), Err(DecodeError::UnknownType));
    assert_eq!(decode(b"\x1e"), Err(DecodeError::UnknownType));
    assert_eq!(decode(b"4\xff\xfe"), Err(DecodeError::InvalidUtf8));
    assert_eq!(decode(b"4\xc3"), Err(DecodeError::InvalidUtf8));
    assert_eq!(decode(b"b!!!!"), Err(DecodeError::InvalidBase64));
    assert_eq!(decode(b"bAQID*A=="), Err(DecodeError::InvalidBase64));
    assert_eq!(decode(b"bA"), Err(DecodeError::InvalidBase64));
}

#[test]
fn a_websocket_binary_frame_is_a_binary_message() {
    assert_eq!(decode_binary(Bytes::from_static(&[0, 255])), binary(&[0, 255]));
}

#[test]
fn decodes_the_spec_payload() {
    let packets = decode_payload(Bytes::from_static(b"4hello\x1e2\x1e4world")).unwrap();
    assert_eq!(
        packets,
        vec![text(PacketType::Message, "hello"), empty(PacketType::Ping), text(PacketType::Message, "world")]
    );
}

#[test]
fn decodes_a_payload_mixing_text_and_binary() {
    let packets = decode_payload(Bytes::from_static(b"4hello\x1ebAQIDBA==")).unwrap();
    assert_eq!(packets, vec![text(PacketType::Message, "hello"), binary(&[1, 2, 3, 4])]);
    assert_eq!(decode_payload(Bytes::from_static(b"1")), Ok(vec![empty(PacketType::Close)]));
}

#[test]
fn rejects_bad_payloads() {
    assert_eq!(decode_payload(Bytes::new()), Err(DecodeError::Empty));
    assert_eq!(decode_payload(Bytes::from_static(b"4a\x1e")), Err(DecodeError::Empty));
    assert_eq!(decode_payload(Bytes::from_static(b"\x1e4a")), Err(DecodeError::Empty));
    assert_eq!(decode_payload(Bytes::from_static(b"4a\x1e\x1e4b")), Err(DecodeError::Empty));
    assert_eq!(decode_payload(Bytes::from_static(b"4a\x1e9")), Err(DecodeError::UnknownType));
    assert_eq!(decode_payload(Bytes::from_static(b"4a\x1eb%%")), Err(DecodeError::InvalidBase64));
    assert_eq!(decode_payload(Bytes::from_static(b"4\xff\x1e2")), Err(DecodeError::InvalidUtf8));
}

#[test]
fn encodes_polling_packets_and_payloads() {
    let mut out = BytesMut::new();
    encode_polling_packet(&binary(&[1, 2, 3, 4]), &mut out);
    assert_eq!(&out[..], b"bAQIDBA==");

    out.clear();
    encode_polling_packet(&text(PacketType::Message, "hi"), &mut out);
    assert_eq!(&out[..], b"4hi");

    out.clear();
    let packets = [text(PacketType::Message, "hello"), empty(PacketType::Ping), binary(&[1, 2, 3, 4]), binary(&[])];
    encode_payload(&packets, &mut out);
    assert_eq!(&out[..], b"4hello\x1e2\x1ebAQIDBA==\x1eb");
    assert_eq!(decode_payload(out.freeze()), Ok(packets.to_vec()));

    let mut out = BytesMut::new();
    encode_payload(&[], &mut out);
    assert!(out.is_empty());
}

#[test]
fn encode_payload_appends_to_existing_content() {
    let mut out = BytesMut::from(&b"prefix:"[..]);
    encode_payload(&[empty(PacketType::Noop)], &mut out);
    assert_eq!(&out[..], b"prefix:6");
}

#[test]
fn encodes_the_handshake() {
    let mut out = BytesMut::new();
    encode_open("lv_VI97HAXpY6yYWAAAC", &["websocket"], 25000, 20000, 1_000_000, &mut out);
    assert_eq!(
        &out[..],
        &br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#[..]
    );

    out.clear();
    encode_open("a\"b", &[], 300, 200, 0, &mut out);
    assert_eq!(&out[..], &br#"0{"sid":"a\"b","upgrades":[],"pingInterval":300,"pingTimeout":200,"maxPayload":0}"#[..]);

    out.clear();
    encode_open("s", &["websocket", "webtransport"], 1, 2, 3, &mut out);
    assert_eq!(
        &out[..],
        &br#"0{"sid":"s","upgrades":["websocket","webtransport"],"pingInterval":1,"pingTimeout":2,"maxPayload":3}"#[..]
    );
}

#[cfg(debug_assertions)]
#[test]
#[should_panic(expected = "binary packets are sent as WebSocket binary frames")]
fn encode_text_refuses_binary_in_debug_builds() {
    encoded_text(&binary(&[1]));
}
