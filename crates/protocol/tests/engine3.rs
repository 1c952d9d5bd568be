//! Engine.IO v3 packets and polling payloads (text, length-prefixed in UTF-16 code units; binary, for
//! XHR2 clients), with the examples of `docs/engine.io-protocol/v3.md` and malformed input.

use bytes::{Bytes, BytesMut};
use switchyard_protocol::engine::{Packet, PacketData, PacketType};
use switchyard_protocol::engine3::{
    decode_binary, decode_binary_payload, decode_payload, decode_text, encode_binary_payload, encode_payload,
    utf16_len, DecodeError, Item,
};

fn text(kind: PacketType, data: &str) -> Packet {
    Packet { kind, data: PacketData::Text(Bytes::copy_from_slice(data.as_bytes())) }
}

fn binary(data: &[u8]) -> Packet {
    Packet { kind: PacketType::Message, data: PacketData::Binary(Bytes::copy_from_slice(data)) }
}

fn payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    decode_payload(Bytes::copy_from_slice(body))
}

fn binary_payload(body: &[u8]) -> Result<Vec<Packet>, DecodeError> {
    decode_binary_payload(Bytes::copy_from_slice(body))
}

fn encoded(items: &[Item<'_>]) -> String {
    let mut out = BytesMut::new();
    encode_payload(items.iter().copied(), &mut out);
    String::from_utf8(out.to_vec()).expect("a text payload is UTF-8")
}

fn encoded_binary(items: &[Item<'_>]) -> Vec<u8> {
    let mut out = BytesMut::new();
    encode_binary_payload(items.iter().copied(), &mut out);
    out.to_vec()
}

#[test]
fn lengths_count_utf16_code_units() {
    assert_eq!(utf16_len(""), 0);
    assert_eq!(utf16_len("4hello"), 6);
    assert_eq!(utf16_len("4€"), 2, "one BMP character, three bytes");
    assert_eq!(utf16_len("😀"), 2, "a surrogate pair in JavaScript");
    assert_eq!(utf16_len("é😀x"), 4);
}

#[test]
fn text_payload_examples_of_the_spec() {
    assert_eq!(payload(b"6:4hello").unwrap(), vec![text(PacketType::Message, "hello")]);
    assert_eq!(
        payload(b"6:4hello6:4world").unwrap(),
        vec![text(PacketType::Message, "hello"), text(PacketType::Message, "world")]
    );
    assert_eq!(payload("6:4hello2:4€".as_bytes()).unwrap()[1], text(PacketType::Message, "€"));
    assert_eq!(payload("2:4€10:b4AQIDBA==".as_bytes()).unwrap()[1], binary(&[1, 2, 3, 4]));
    assert_eq!(payload(b"1:2").unwrap(), vec![Packet { kind: PacketType::Ping, data: PacketData::Empty }]);
    assert_eq!(payload(b"6:2probe").unwrap(), vec![text(PacketType::Ping, "probe")]);
    // Characters outside the BMP count twice.
    assert_eq!(payload("3:4😀1:6".as_bytes()).unwrap()[0], text(PacketType::Message, "😀"));
    // Empty packets are skipped, as Node does.
    assert_eq!(payload(b"0:1:1").unwrap(), vec![Packet { kind: PacketType::Close, data: PacketData::Empty }]);
}

#[test]
fn text_payload_encoding() {
    assert_eq!(encoded(&[Item::Text(b"4hello")]), "6:4hello");
    assert_eq!(encoded(&[Item::Text("4€".as_bytes()), Item::Binary(&[1, 2, 3, 4])]), "2:4€10:b4AQIDBA==");
    assert_eq!(encoded(&[Item::Text("4😀".as_bytes()), Item::Text(b"3")]), "3:4😀1:3");
    assert_eq!(encoded(&[Item::Binary(&[])]), "2:b4");
}

#[test]
fn text_payload_round_trips() {
    let data: Vec<u8> = (0..=255).collect();
    let body =
        encoded(&[Item::Text("4ünï😀code".as_bytes()), Item::Binary(&data), Item::Text(b"4"), Item::Text(b"2probe")]);
    assert_eq!(
        payload(body.as_bytes()).unwrap(),
        vec![
            text(PacketType::Message, "ünï😀code"),
            binary(&data),
            text(PacketType::Message, ""),
            text(PacketType::Ping, "probe"),
        ]
    );
}

#[test]
fn malformed_text_payloads_are_errors() {
    assert_eq!(payload(b""), Err(DecodeError::Empty));
    assert_eq!(payload(b"abc"), Err(DecodeError::InvalidLength), "no length");
    assert_eq!(payload(b":4hi"), Err(DecodeError::InvalidLength), "empty length");
    assert_eq!(payload(b"x:4hi"), Err(DecodeError::InvalidLength));
    assert_eq!(payload(b"-1:4"), Err(DecodeError::InvalidLength));
    assert_eq!(payload(b"99999999999:4"), Err(DecodeError::InvalidLength), "too many digits");
    assert_eq!(payload(b"7:4hello"), Err(DecodeError::Truncated));
    assert_eq!(payload(b"6:4hello3"), Err(DecodeError::InvalidLength), "trailing length without colon");
    assert_eq!(payload(b"5:4hello"), Err(DecodeError::InvalidLength), "the rest is not a length");
    assert_eq!(payload("2:4😀".as_bytes()), Err(DecodeError::InvalidLength), "ends inside a surrogate pair");
    assert_eq!(payload(b"2:9x"), Err(DecodeError::UnknownType));
    assert_eq!(payload(b"3:b4!"), Err(DecodeError::InvalidBase64));
    assert_eq!(payload(b"4:b2AQ"), Err(DecodeError::UnknownType), "only messages are binary");
    assert_eq!(payload(b"2:4\xff"), Err(DecodeError::InvalidUtf8));
}

#[test]
fn packets_of_the_websocket_transport() {
    assert_eq!(decode_text(Bytes::from_static(b"4hello")).unwrap(), text(PacketType::Message, "hello"));
    assert_eq!(decode_text(Bytes::from_static(b"b4AQID")).unwrap(), binary(&[1, 2, 3]));
    assert_eq!(decode_text(Bytes::from_static(b"b")), Err(DecodeError::UnknownType));
    assert_eq!(decode_text(Bytes::new()), Err(DecodeError::Empty));
    // A binary frame starts with its type byte.
    assert_eq!(decode_binary(Bytes::from_static(&[4, 1, 2, 3, 4])).unwrap(), binary(&[1, 2, 3, 4]));
    assert_eq!(decode_binary(Bytes::from_static(&[4])).unwrap(), binary(&[]));
    assert_eq!(decode_binary(Bytes::new()), Err(DecodeError::Empty));
    assert_eq!(decode_binary(Bytes::from_static(&[2, 1])), Err(DecodeError::UnknownType));
}

#[test]
fn binary_payload_example_of_the_spec() {
    let body = [0, 4, 255, 52, 0xe2, 0x82, 0xac, 1, 5, 255, 4, 1, 2, 3, 4];
    assert_eq!(binary_payload(&body).unwrap(), vec![text(PacketType::Message, "€"), binary(&[1, 2, 3, 4])]);
    assert_eq!(encoded_binary(&[Item::Text("4€".as_bytes()), Item::Binary(&[1, 2, 3, 4])]), body);
    // The conformance suite's poll: "4hello" and a binary message.
    assert_eq!(
        encoded_binary(&[Item::Text(b"4hello"), Item::Binary(&[1, 2, 3, 4])]),
        [0, 6, 255, 52, 104, 101, 108, 108, 111, 1, 5, 255, 4, 1, 2, 3, 4]
    );
}

#[test]
fn binary_payload_lengths_of_several_digits() {
    let data = vec![7u8; 1234];
    let body = encoded_binary(&[Item::Binary(&data), Item::Text(b"1")]);
    assert_eq!(&body[..6], &[1, 1, 2, 3, 5, 255]);
    assert_eq!(
        binary_payload(&body).unwrap(),
        vec![binary(&data), Packet { kind: PacketType::Close, data: PacketData::Empty }]
    );
}

#[test]
fn malformed_binary_payloads_are_errors() {
    assert_eq!(binary_payload(&[]), Err(DecodeError::Empty));
    assert_eq!(binary_payload(&[2, 1, 255, 52]), Err(DecodeError::InvalidMarker));
    assert_eq!(binary_payload(&[0, 1, 52]), Err(DecodeError::InvalidLength), "no separator");
    assert_eq!(binary_payload(&[0, 255, 52]), Err(DecodeError::InvalidLength), "no digits");
    assert_eq!(binary_payload(&[0, 10, 255, 52]), Err(DecodeError::InvalidLength), "a digit byte over 9");
    assert_eq!(binary_payload(&[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 255]), Err(DecodeError::InvalidLength));
    assert_eq!(binary_payload(&[0, 5, 255, 52]), Err(DecodeError::Truncated));
    assert_eq!(binary_payload(&[0, 2, 255, 52, 0xff]), Err(DecodeError::InvalidUtf8));
    assert_eq!(binary_payload(&[1, 2, 255, 3, 0]), Err(DecodeError::UnknownType));
    assert_eq!(binary_payload(&[0]), Err(DecodeError::InvalidLength));
}

/// Arbitrary bytes never panic either decoder (the fuzz target goes further).
#[test]
fn arbitrary_bytes_never_panic() {
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    for len in 0..400 {
        let body: Vec<u8> = (0..len % 40)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Mostly the bytes that matter to the format.
                match seed % 6 {
                    0 => b':',
                    1 => b'0' + (seed >> 8) as u8 % 10,
                    2 => (seed >> 8) as u8 % 12,
                    3 => 255,
                    _ => (seed >> 16) as u8,
                }
            })
            .collect();
        let _ = payload(&body);
        let _ = binary_payload(&body);
        let _ = decode_text(Bytes::from(body.clone()));
        let _ = decode_binary(Bytes::from(body));
    }
}
