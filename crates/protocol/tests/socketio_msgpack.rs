//! The MessagePack Socket.IO codec against bytes written by npm `socket.io-msgpack-parser` 3.0.2
//! (notepack.io 2.2.0): `Buffer.from(new Encoder().encode(packet)[0]).toString("hex")` in Node.

use bytes::Bytes;
use serde_json::{json, Value};
use switchyard_protocol::cluster::msgpack::{self, DecodeError as MsgpackError};
use switchyard_protocol::socketio::{placeholder, Packet, PacketType, DEFAULT_MAX_ATTACHMENTS, MAX_ACK_ID};
use switchyard_protocol::socketio_msgpack::{decode, encode, encode_control, encode_message, DecodeError};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

fn packet(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>, attachments: Vec<Bytes>) -> Packet {
    Packet { kind, nsp: nsp.to_owned(), id, data, attachments }
}

fn dec(input: &[u8]) -> Result<Packet, DecodeError> {
    decode(input, DEFAULT_MAX_ATTACHMENTS)
}

fn enc(packet: &Packet) -> Vec<u8> {
    let mut out = Vec::new();
    encode(packet, &mut out);
    out
}

/// Encodes a JSON object as msgpack, keys in the order given.
fn map(value: Value) -> Vec<u8> {
    msgpack::encode(&value, &[])
}

#[test]
fn decodes_what_the_npm_parser_writes() {
    // {type: 0, nsp: "/"}: CONNECT without auth.
    assert_eq!(dec(&hex("82a47479706500a36e7370a12f")), Ok(packet(PacketType::Connect, "/", None, None, vec![])));
    // {type: 0, nsp: "/admin", data: {token: "abc"}}
    assert_eq!(
        dec(&hex("83a47479706500a36e7370a62f61646d696ea46461746181a5746f6b656ea3616263")),
        Ok(packet(PacketType::Connect, "/admin", None, Some(json!({"token": "abc"})), vec![]))
    );
    // {type: 1, nsp: "/chat"}
    assert_eq!(
        dec(&hex("82a47479706501a36e7370a52f63686174")),
        Ok(packet(PacketType::Disconnect, "/chat", None, None, vec![]))
    );
    // {type: 2, data: ["ev", 1, "x"], nsp: "/"}
    assert_eq!(
        dec(&hex("83a47479706502a46461746193a2657601a178a36e7370a12f")),
        Ok(packet(PacketType::Event, "/", None, Some(json!(["ev", 1, "x"])), vec![]))
    );
    // {type: 2, data: ["bin", Buffer [1,2,3], {nested: [Buffer [4]]}], id: 7, nsp: "/"}: binary is
    // an EVENT holding msgpack bin; the layer above sees placeholders and attachments.
    assert_eq!(
        dec(&hex("84a47479706502a46461746193a362696ec40301020381a66e657374656491c40104a2696407a36e7370a12f")),
        Ok(packet(
            PacketType::Event,
            "/",
            Some(7),
            Some(json!(["bin", placeholder(0), {"nested": [placeholder(1)]}])),
            vec![Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4])]
        ))
    );
    // {type: 3, data: [null, true, 1.5, -3], id: 12, nsp: "/chat"}
    assert_eq!(
        dec(&hex("84a47479706503a46461746194c0c3cb3ff8000000000000fda269640ca36e7370a52f63686174")),
        Ok(packet(PacketType::Ack, "/chat", Some(12), Some(json!([null, true, 1.5, -3])), vec![]))
    );
    // {type: 4, data: {message: "Invalid namespace"}, nsp: "/random"}
    assert_eq!(
        dec(&hex(
            "83a47479706504a46461746181a76d657373616765b1496e76616c6964206e616d657370616365a36e7370a72f72616e646f6d"
        )),
        Ok(packet(PacketType::ConnectError, "/random", None, Some(json!({"message": "Invalid namespace"})), vec![]))
    );
    // {type: 2, data: ["ev", new Date(0), undefined], nsp: "/"}: a Date reads as JSON.stringify
    // writes it, undefined in an array as null.
    assert_eq!(
        dec(&hex("83a47479706502a46461746193a26576d7000000000000000000d40000a36e7370a12f")),
        Ok(packet(PacketType::Event, "/", None, Some(json!(["ev", "1970-01-01T00:00:00.000Z", null])), vec![]))
    );
    // {type: 2, nsp: "/", data: ["e"], id: undefined}: an undefined id is no id.
    assert_eq!(
        dec(&hex("84a47479706502a36e7370a12fa46461746191a165a26964d40000")),
        Ok(packet(PacketType::Event, "/", None, Some(json!(["e"])), vec![]))
    );
}

#[test]
fn writes_what_the_npm_parser_writes() {
    // Node's server writes {type, data, id, nsp} in this order; these are its bytes.
    let mut out = Vec::new();
    encode_control(PacketType::Connect, "/", Some(&json!({"sid": "abc"})), &mut out);
    assert_eq!(out, hex("83a47479706500a46461746181a3736964a3616263a36e7370a12f"));
    let mut out = Vec::new();
    encode_message("/", Some("ev"), &[json!(1), json!("x")], &[], None, &mut out);
    assert_eq!(out, hex("83a47479706502a46461746193a2657601a178a36e7370a12f"));
    let mut out = Vec::new();
    let args = [placeholder(0), json!({"nested": [placeholder(1)]})];
    encode_message(
        "/",
        Some("bin"),
        &args,
        &[Bytes::from_static(&[1, 2, 3]), Bytes::from_static(&[4])],
        Some(7),
        &mut out,
    );
    assert_eq!(out, hex("84a47479706502a46461746193a362696ec40301020381a66e657374656491c40104a2696407a36e7370a12f"));
    let mut out = Vec::new();
    encode_message("/chat", None, &[json!(null), json!(true), json!(1.5), json!(-3)], &[], Some(12), &mut out);
    assert_eq!(out, hex("84a47479706503a46461746194c0c3cb3ff8000000000000fda269640ca36e7370a52f63686174"));
    let mut out = Vec::new();
    encode_control(PacketType::ConnectError, "/random", Some(&json!({"message": "Invalid namespace"})), &mut out);
    assert_eq!(
        out,
        hex("83a47479706504a46461746181a76d657373616765b1496e76616c6964206e616d657370616365a36e7370a72f72616e646f6d")
    );
    let mut out = Vec::new();
    encode_control(PacketType::Disconnect, "/chat", None, &mut out);
    assert_eq!(out, hex("82a47479706501a36e7370a52f63686174"));
}

#[test]
fn every_packet_type_round_trips() {
    let bin = vec![Bytes::from_static(b"\x00\xff"), Bytes::from(vec![7u8; 300]), Bytes::from(vec![9u8; 70_000])];
    let packets = [
        packet(PacketType::Connect, "/", None, None, vec![]),
        packet(PacketType::Connect, "/admin", None, Some(json!({"token": "t", "n": [1, 2]})), vec![]),
        packet(PacketType::Connect, "/", None, Some(json!({"sid": "x", "pid": "y"})), vec![]),
        packet(PacketType::Disconnect, "/admin", None, None, vec![]),
        packet(PacketType::Event, "/", None, Some(json!(["ev"])), vec![]),
        packet(PacketType::Event, "/x", Some(MAX_ACK_ID), Some(json!([42, "number names are allowed"])), vec![]),
        packet(
            PacketType::Event,
            "/",
            Some(0),
            Some(json!(["b", placeholder(0), [placeholder(1)], {"k": placeholder(2)}])),
            bin.clone(),
        ),
        packet(PacketType::Ack, "/", Some(3), Some(json!([])), vec![]),
        packet(
            PacketType::Ack,
            "/a",
            Some(4),
            Some(json!([{"deep": [[[["x"]]]]}, "é✓", -1_000_000_000_000i64, 0.25])),
            vec![],
        ),
        packet(PacketType::Ack, "/", Some(5), Some(json!([placeholder(0)])), bin[..1].to_vec()),
        packet(PacketType::ConnectError, "/p", None, Some(json!("a string")), vec![]),
        packet(PacketType::ConnectError, "/p", None, Some(json!({"message": "no", "data": {"code": 4}})), vec![]),
    ];
    for p in packets {
        assert_eq!(dec(&enc(&p)).as_ref(), Ok(&p), "{p:?}");
    }
    // BINARY_EVENT and BINARY_ACK do not exist for this parser: they are written as EVENT and ACK.
    let binary = packet(PacketType::BinaryEvent, "/", None, Some(json!(["b", placeholder(0)])), bin[..1].to_vec());
    assert_eq!(dec(&enc(&binary)).unwrap().kind, PacketType::Event);
    let binary_ack = packet(PacketType::BinaryAck, "/", Some(1), Some(json!([placeholder(0)])), bin[..1].to_vec());
    assert_eq!(dec(&enc(&binary_ack)).unwrap().kind, PacketType::Ack);
    // encode_message writes the same bytes as encode of the equivalent packet.
    let mut out = vec![0xee];
    encode_message("/n", Some("e"), &[placeholder(0)], &bin[..1], Some(9), &mut out);
    let same = packet(PacketType::Event, "/n", Some(9), Some(json!(["e", placeholder(0)])), bin[..1].to_vec());
    assert_eq!(out[0], 0xee, "appends to what the buffer holds");
    assert_eq!(out[1..], enc(&same));
}

#[test]
fn integral_floats_are_integers() {
    // JavaScript numbers: 2.0 is the integer 2, for the type and for the id.
    let input = map(json!({"type": 2.0, "nsp": "/", "data": ["e"], "id": 5.0}));
    // msgpack::encode writes integral floats as integers; write the floats by hand.
    assert_eq!(dec(&input).unwrap().id, Some(5));
    let mut raw = hex("84a474797065cb4000000000000000a36e7370a12fa46461746191a165a26964cb4014000000000000");
    assert_eq!(dec(&raw), Ok(packet(PacketType::Event, "/", Some(5), Some(json!(["e"])), vec![])));
    // 5.5 is not an integer.
    let len = raw.len();
    raw[len - 7] = 0x16;
    assert_eq!(dec(&raw), Err(DecodeError::InvalidAckId));
}

#[test]
fn malformed_packets_are_errors() {
    let cases: Vec<(Vec<u8>, DecodeError)> = vec![
        (vec![], DecodeError::Msgpack(MsgpackError::Truncated)),
        (vec![0xc1], DecodeError::Msgpack(MsgpackError::InvalidType(0xc1))),
        (hex("82a47479706500a36e7370a12f00"), DecodeError::Msgpack(MsgpackError::TrailingBytes(1))),
        (hex("82a47479706500a36e7370a1"), DecodeError::Msgpack(MsgpackError::Truncated)),
        (map(json!([0, "/"])), DecodeError::NotAMap),
        (map(json!("2[\"ev\"]")), DecodeError::NotAMap),
        (map(json!({"nsp": "/"})), DecodeError::UnknownType),
        (map(json!({"type": 5, "nsp": "/", "data": ["e"]})), DecodeError::UnknownType),
        (map(json!({"type": 6, "nsp": "/", "data": []})), DecodeError::UnknownType),
        (map(json!({"type": -1, "nsp": "/"})), DecodeError::UnknownType),
        (map(json!({"type": "2", "nsp": "/", "data": ["e"]})), DecodeError::UnknownType),
        (map(json!({"type": 2.5, "nsp": "/", "data": ["e"]})), DecodeError::UnknownType),
        (map(json!({"type": 0})), DecodeError::InvalidNamespace),
        (map(json!({"type": 0, "nsp": 1})), DecodeError::InvalidNamespace),
        (map(json!({"type": 0, "nsp": null})), DecodeError::InvalidNamespace),
        (map(json!({"type": 0, "nsp": "/", "data": "token"})), DecodeError::InvalidPayload),
        (map(json!({"type": 0, "nsp": "/", "data": null})), DecodeError::InvalidPayload),
        (map(json!({"type": 0, "nsp": "/", "data": []})), DecodeError::InvalidPayload),
        (map(json!({"type": 1, "nsp": "/", "data": {}})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/"})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": {}})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": []})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": [null]})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": [["e"]]})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": ["disconnect"]})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": ["connect"]})), DecodeError::InvalidPayload),
        (map(json!({"type": 3, "nsp": "/", "id": 1})), DecodeError::InvalidPayload),
        (map(json!({"type": 3, "nsp": "/", "id": 1, "data": "x"})), DecodeError::InvalidPayload),
        (map(json!({"type": 4, "nsp": "/"})), DecodeError::InvalidPayload),
        (map(json!({"type": 4, "nsp": "/", "data": 1})), DecodeError::InvalidPayload),
        (map(json!({"type": 2, "nsp": "/", "data": ["e"], "id": -1})), DecodeError::InvalidAckId),
        (map(json!({"type": 2, "nsp": "/", "data": ["e"], "id": "1"})), DecodeError::InvalidAckId),
        (map(json!({"type": 2, "nsp": "/", "data": ["e"], "id": null})), DecodeError::InvalidAckId),
        (map(json!({"type": 2, "nsp": "/", "data": ["e"], "id": MAX_ACK_ID + 1})), DecodeError::InvalidAckId),
        (map(json!({"type": 2, "nsp": "/", "data": ["e"], "id": u64::MAX})), DecodeError::InvalidAckId),
        // A literal placeholder object is not binary data.
        (
            map(json!({"type": 2, "nsp": "/", "data": ["e", {"_placeholder": true, "num": 0}]})),
            DecodeError::IllegalAttachments,
        ),
    ];
    for (input, error) in cases {
        assert_eq!(dec(&input), Err(error.clone()), "{input:02x?}");
        // The error has a message for the log.
        assert!(!error.to_string().is_empty());
    }
}

#[test]
fn binary_values_are_bounded_by_the_attachment_limit() {
    let bins: Vec<Bytes> = (0..3u8).map(|i| Bytes::from(vec![i])).collect();
    let mut out = Vec::new();
    encode_message("/", Some("e"), &[placeholder(0), placeholder(1), placeholder(2)], &bins, None, &mut out);
    assert_eq!(decode(&out, 3).unwrap().attachments, bins);
    assert_eq!(decode(&out, 2), Err(DecodeError::Msgpack(MsgpackError::TooManyBinary(2))));
}

#[test]
fn junk_never_panics() {
    let valid = hex("84a47479706502a46461746193a362696ec40301020381a66e657374656491c40104a2696407a36e7370a12f");
    // Every truncation and every single-byte change of a valid packet, and pseudo-random input.
    for len in 0..valid.len() {
        assert!(dec(&valid[..len]).is_err());
    }
    for i in 0..valid.len() {
        for b in [0x00, 0x7f, 0x80, 0x9f, 0xc1, 0xc4, 0xc6, 0xd4, 0xd7, 0xdc, 0xdd, 0xde, 0xdf, 0xff] {
            let mut input = valid.clone();
            input[i] = b;
            let _ = dec(&input);
        }
    }
    let mut state = 0x2545_f491_u32;
    for len in 0..2000 {
        let junk: Vec<u8> = (0..len % 97)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                state as u8
            })
            .collect();
        let _ = dec(&junk);
    }
    assert!(matches!(dec(&vec![0x91; 10_000]), Err(DecodeError::Msgpack(MsgpackError::TooDeep))));
}
