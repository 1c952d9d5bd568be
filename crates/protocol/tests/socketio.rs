//! Socket.IO v5 packet codec and binary reassembly.

use bytes::{Bytes, BytesMut};
use serde_json::{json, Value};
use switchyard_protocol::socketio::{
    count_placeholders, decode_packet, encode, encode_header, is_placeholder, placeholder, placeholder_num,
    DecodeError, Decoder, Packet, PacketType, DEFAULT_MAX_ATTACHMENTS, MAX_ACK_ID, RESERVED_EVENTS,
};

fn packet(kind: PacketType, nsp: &str, id: Option<u64>, data: Option<Value>) -> Packet {
    Packet { kind, nsp: nsp.to_owned(), id, data, attachments: Vec::new() }
}

fn decode_one(text: &str) -> Result<Option<Packet>, DecodeError> {
    Decoder::default().decode_text(text)
}

fn encoded(packet: &Packet) -> String {
    let mut out = BytesMut::new();
    encode(packet, &mut out);
    String::from_utf8(out.to_vec()).unwrap()
}

#[test]
fn decodes_the_spec_examples() {
    assert_eq!(decode_one(r#"2["foo"]"#), Ok(Some(packet(PacketType::Event, "/", None, Some(json!(["foo"]))))));
    assert_eq!(
        decode_one(r#"2/admin,["bar"]"#),
        Ok(Some(packet(PacketType::Event, "/admin", None, Some(json!(["bar"])))))
    );
    assert_eq!(decode_one(r#"212["foo"]"#), Ok(Some(packet(PacketType::Event, "/", Some(12), Some(json!(["foo"]))))));
    assert_eq!(
        decode_one(r#"3/admin,13["bar"]"#),
        Ok(Some(packet(PacketType::Ack, "/admin", Some(13), Some(json!(["bar"])))))
    );
    assert_eq!(decode_one("1/admin,"), Ok(Some(packet(PacketType::Disconnect, "/admin", None, None))));
    assert_eq!(decode_one("1"), Ok(Some(packet(PacketType::Disconnect, "/", None, None))));
    // The `40/custom` of the conformance suite, without its Engine.IO `4`: no trailing comma needed.
    assert_eq!(decode_one("0/custom"), Ok(Some(packet(PacketType::Connect, "/custom", None, None))));
    assert_eq!(decode_one("0/custom,"), Ok(Some(packet(PacketType::Connect, "/custom", None, None))));
    assert_eq!(decode_one("0"), Ok(Some(packet(PacketType::Connect, "/", None, None))));
    assert_eq!(
        decode_one(r#"0/custom,{"token":"abc"}"#),
        Ok(Some(packet(PacketType::Connect, "/custom", None, Some(json!({"token": "abc"})))))
    );
    assert_eq!(
        decode_one(r#"4/random,{"message":"Invalid namespace"}"#),
        Ok(Some(packet(PacketType::ConnectError, "/random", None, Some(json!({"message": "Invalid namespace"})))))
    );
    assert_eq!(
        decode_one(r#"4"not authorized""#),
        Ok(Some(packet(PacketType::ConnectError, "/", None, Some(json!("not authorized")))))
    );
    assert_eq!(
        decode_one(r#"2456["message-with-ack",1,"2",{"3":[false]}]"#),
        Ok(Some(packet(PacketType::Event, "/", Some(456), Some(json!(["message-with-ack", 1, "2", {"3": [false]}])))))
    );
    assert_eq!(decode_one("2[42]"), Ok(Some(packet(PacketType::Event, "/", None, Some(json!([42]))))));
    assert_eq!(decode_one("3/a,0[]"), Ok(Some(packet(PacketType::Ack, "/a", Some(0), Some(json!([]))))));
}

#[test]
fn a_namespace_without_comma_runs_to_the_end() {
    // As in the official parser: everything after `/` up to `,` or the end is the namespace.
    assert_eq!(decode_one(r#"1/a["x"]"#), Ok(Some(packet(PacketType::Disconnect, r#"/a["x"]"#, None, None))));
}

#[test]
fn reassembles_a_binary_event() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode_text(r#"51-["baz",{"_placeholder":true,"num":0}]"#), Ok(None));
    assert!(decoder.is_reconstructing());
    let attachment = Bytes::from_static(&[1, 2, 3]);
    let done = decoder.decode_binary(attachment.clone()).unwrap().unwrap();
    assert!(!decoder.is_reconstructing());
    assert_eq!(
        done,
        Packet {
            kind: PacketType::BinaryEvent,
            nsp: "/".to_owned(),
            id: None,
            data: Some(json!(["baz", {"_placeholder": true, "num": 0}])),
            attachments: vec![attachment],
        }
    );
}

#[test]
fn reassembles_a_binary_ack_with_two_attachments() {
    let mut decoder = Decoder::default();
    let header = r#"62-/admin,456[{"_placeholder":true,"num":1},{"a":[{"_placeholder":true,"num":0}]}]"#;
    assert_eq!(decoder.decode_text(header), Ok(None));
    assert_eq!(decoder.decode_binary(Bytes::from_static(b"first")), Ok(None));
    assert!(decoder.is_reconstructing());
    let done = decoder.decode_binary(Bytes::from_static(b"second")).unwrap().unwrap();
    assert_eq!(done.kind, PacketType::BinaryAck);
    assert_eq!(done.nsp, "/admin");
    assert_eq!(done.id, Some(456));
    assert_eq!(done.attachments, vec![Bytes::from_static(b"first"), Bytes::from_static(b"second")]);
    assert_eq!(count_placeholders(done.data.as_ref().unwrap()), 2);

    // The decoder is ready for the next packet.
    assert_eq!(
        decoder.decode_text(r#"2["next"]"#),
        Ok(Some(packet(PacketType::Event, "/", None, Some(json!(["next"])))))
    );
}

#[test]
fn a_binary_packet_without_attachments_completes_at_once() {
    let mut decoder = Decoder::default();
    assert_eq!(
        decoder.decode_text(r#"50-["x"]"#),
        Ok(Some(packet(PacketType::BinaryEvent, "/", None, Some(json!(["x"])))))
    );
    assert!(!decoder.is_reconstructing());
    // An empty count reads as 0, as in the official parser.
    assert_eq!(decoder.decode_text(r#"6-[]"#), Ok(Some(packet(PacketType::BinaryAck, "/", None, Some(json!([]))))));
    assert_eq!(decoder.decode_text(r#"50-["x",{"_placeholder":true,"num":0}]"#), Err(DecodeError::IllegalAttachments));
}

#[test]
fn rejects_bad_headers() {
    assert_eq!(decode_one(""), Err(DecodeError::UnknownType));
    assert_eq!(decode_one("7"), Err(DecodeError::UnknownType));
    assert_eq!(decode_one("x[]"), Err(DecodeError::UnknownType));
    assert_eq!(decode_one(r#"51["a"]"#), Err(DecodeError::InvalidAttachments));
    assert_eq!(decode_one("5"), Err(DecodeError::InvalidAttachments));
    assert_eq!(decode_one(r#"5a-["a"]"#), Err(DecodeError::InvalidAttachments));
    assert_eq!(decode_one(r#"5 1-["a"]"#), Err(DecodeError::InvalidAttachments));
    assert_eq!(decode_one(r#"5+1-["a"]"#), Err(DecodeError::InvalidAttachments));
    assert_eq!(decode_one(r#"611-[]"#), Err(DecodeError::TooManyAttachments));
    assert_eq!(decode_one(r#"5184467440737095516150-["a"]"#), Err(DecodeError::TooManyAttachments));
    assert_eq!(decode_one(r#"29007199254740992["a"]"#), Err(DecodeError::InvalidAckId));
    assert_eq!(decode_one(r#"2123456789012345678901234567890["a"]"#), Err(DecodeError::InvalidAckId));
    assert_eq!(
        decode_one(r#"29007199254740991["a"]"#),
        Ok(Some(packet(PacketType::Event, "/", Some(MAX_ACK_ID), Some(json!(["a"])))))
    );
    // The conformance suite's "invalid ack id": not digits, so it reads as (invalid) JSON.
    assert_eq!(decode_one(r#"2abc["message-with-ack",1]"#), Err(DecodeError::InvalidPayload));
}

#[test]
fn attachment_limit_is_configurable() {
    assert_eq!(Decoder::new(2).decode_text("53-[1]"), Err(DecodeError::TooManyAttachments));
    assert_eq!(Decoder::new(3).decode_text("53-[1]"), Ok(None));
    assert_eq!(decode_packet("5010-[1]", DEFAULT_MAX_ATTACHMENTS).map(|(_, n)| n), Ok(10));
}

#[test]
fn rejects_invalid_payloads() {
    let invalid = [
        "0[]",
        r#"0"x""#,
        r#"1{}"#,
        r#"1"bye""#,
        "4",
        "4[]",
        "4 1",
        "2",
        "2{}",
        "2[]",
        "2[null]",
        "2[true]",
        r#"2[["a"]]"#,
        r#"2"a""#,
        "3",
        "3{}",
        "3/a,1",
        r#"2["a""#,
        r#"2["a"] x"#,
        "2[1]]",
        r#"50-{"a":1}"#,
        "60-{}",
        "2\u{0}",
    ];
    for text in invalid {
        assert_eq!(decode_one(text), Err(DecodeError::InvalidPayload), "{text:?}");
    }
    for name in RESERVED_EVENTS {
        assert_eq!(decode_one(&format!(r#"2["{name}"]"#)), Err(DecodeError::InvalidPayload), "{name}");
        assert_eq!(decode_one(&format!(r#"51-["{name}"]"#)), Err(DecodeError::InvalidPayload), "{name}");
    }
    // The conformance suite's "invalid payload format".
    assert_eq!(decode_one("2{}"), Err(DecodeError::InvalidPayload));
}

#[test]
fn text_while_reconstructing_is_an_error_and_resets() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode_text(r#"51-["a",{"_placeholder":true,"num":0}]"#), Ok(None));
    assert_eq!(decoder.decode_text(r#"2["b"]"#), Err(DecodeError::UnexpectedText));
    assert!(!decoder.is_reconstructing());
    assert_eq!(decoder.decode_binary(Bytes::from_static(b"x")), Err(DecodeError::UnexpectedBinary));
}

#[test]
fn binary_outside_reconstruction_is_an_error() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode_binary(Bytes::from_static(b"x")), Err(DecodeError::UnexpectedBinary));
    assert_eq!(decoder.decode_text(r#"2["a"]"#), Ok(Some(packet(PacketType::Event, "/", None, Some(json!(["a"]))))));
}

#[test]
fn rejects_placeholders_pointing_nowhere() {
    let cases = [
        r#"51-["a",{"_placeholder":true,"num":1}]"#,
        r#"51-["a",{"_placeholder":true,"num":-1}]"#,
        r#"51-["a",{"_placeholder":true,"num":0.5}]"#,
        r#"51-["a",{"_placeholder":true,"num":"0"}]"#,
        r#"51-["a",{"_placeholder":true}]"#,
        r#"51-["a",{"x":[{"_placeholder":true,"num":7}]}]"#,
    ];
    for text in cases {
        let mut decoder = Decoder::default();
        assert_eq!(decoder.decode_text(text), Ok(None), "{text}");
        assert_eq!(decoder.decode_binary(Bytes::from_static(b"x")), Err(DecodeError::IllegalAttachments), "{text}");
        assert!(!decoder.is_reconstructing());
    }
    // `1.0` is the same number as `1` to a JavaScript peer.
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode_text(r#"52-["a",{"_placeholder":true,"num":1.0}]"#), Ok(None));
    assert_eq!(decoder.decode_binary(Bytes::from_static(b"x")), Ok(None));
    assert!(decoder.decode_binary(Bytes::from_static(b"y")).unwrap().is_some());
}

#[test]
fn the_decoder_recovers_after_an_error() {
    let mut decoder = Decoder::default();
    assert_eq!(decoder.decode_text("9"), Err(DecodeError::UnknownType));
    assert_eq!(decoder.decode_text("0"), Ok(Some(packet(PacketType::Connect, "/", None, None))));
}

#[test]
fn encodes_the_spec_examples() {
    assert_eq!(encoded(&packet(PacketType::Event, "/", None, Some(json!(["foo"])))), r#"2["foo"]"#);
    assert_eq!(encoded(&packet(PacketType::Event, "/admin", None, Some(json!(["bar"])))), r#"2/admin,["bar"]"#);
    assert_eq!(encoded(&packet(PacketType::Event, "/", Some(12), Some(json!(["foo"])))), r#"212["foo"]"#);
    assert_eq!(encoded(&packet(PacketType::Ack, "/admin", Some(13), Some(json!(["bar"])))), r#"3/admin,13["bar"]"#);
    assert_eq!(encoded(&packet(PacketType::Disconnect, "/admin", None, None)), "1/admin,");
    assert_eq!(encoded(&packet(PacketType::Connect, "/", None, Some(json!({"sid": "x"})))), r#"0{"sid":"x"}"#);
    assert_eq!(
        encoded(&packet(PacketType::ConnectError, "/random", None, Some(json!({"message": "Invalid namespace"})))),
        r#"4/random,{"message":"Invalid namespace"}"#
    );
    let binary = Packet {
        kind: PacketType::BinaryEvent,
        nsp: "/".to_owned(),
        id: None,
        data: Some(json!(["baz", placeholder(0)])),
        attachments: vec![Bytes::from_static(&[1, 2])],
    };
    assert_eq!(encoded(&binary), r#"51-["baz",{"_placeholder":true,"num":0}]"#);
}

#[test]
fn encodes_headers() {
    let header = |kind, attachments, nsp, id| {
        let mut out = BytesMut::new();
        encode_header(kind, attachments, nsp, id, &mut out);
        String::from_utf8(out.to_vec()).unwrap()
    };
    assert_eq!(header(PacketType::Event, 0, "/", None), "2");
    assert_eq!(header(PacketType::Event, 3, "/", None), "2");
    assert_eq!(header(PacketType::Event, 0, "", Some(7)), "27");
    assert_eq!(header(PacketType::BinaryAck, 2, "/chat", Some(u64::MAX)), "62-/chat,18446744073709551615");
    assert_eq!(header(PacketType::BinaryEvent, 0, "/", None), "50-");
}

#[test]
fn every_type_round_trips() {
    let packets = [
        packet(PacketType::Connect, "/", None, None),
        packet(PacketType::Connect, "/nsp", None, Some(json!({"token": "t", "n": 1.5}))),
        packet(PacketType::Disconnect, "/", None, None),
        packet(PacketType::Disconnect, "/nsp", None, None),
        packet(PacketType::Event, "/", Some(1), Some(json!(["ev", null, {"k": [1, "two"]}]))),
        packet(PacketType::Event, "/nsp", None, Some(json!([3]))),
        packet(PacketType::Ack, "/", Some(9), Some(json!([]))),
        packet(PacketType::Ack, "/nsp", Some(0), Some(json!(["ok", "é€😀\n\"\\"]))),
        packet(PacketType::ConnectError, "/", None, Some(json!("nope"))),
        packet(PacketType::ConnectError, "/nsp", None, Some(json!({"message": "m", "data": {"x": 1}}))),
    ];
    for original in packets {
        let wire = encoded(&original);
        assert_eq!(decode_one(&wire), Ok(Some(original.clone())), "{wire}");
    }

    for kind in [PacketType::BinaryEvent, PacketType::BinaryAck] {
        let original = Packet {
            kind,
            nsp: "/nsp".to_owned(),
            id: Some(4),
            data: Some(json!(["ev", placeholder(0), {"nested": [placeholder(1)]}])),
            attachments: vec![Bytes::from_static(b"a"), Bytes::from_static(b"")],
        };
        let wire = encoded(&original);
        let mut decoder = Decoder::default();
        assert_eq!(decoder.decode_text(&wire), Ok(None));
        assert_eq!(decoder.decode_binary(original.attachments[0].clone()), Ok(None));
        assert_eq!(decoder.decode_binary(original.attachments[1].clone()), Ok(Some(original.clone())));
    }
}

#[test]
fn placeholder_helpers() {
    assert_eq!(placeholder(3), json!({"_placeholder": true, "num": 3}));
    assert_eq!(placeholder_num(&placeholder(3)), Some(3));
    assert_eq!(placeholder_num(&json!({"_placeholder": true, "num": 2.0})), Some(2));
    assert_eq!(placeholder_num(&json!({"_placeholder": false, "num": 2})), None);
    assert_eq!(placeholder_num(&json!({"_placeholder": "true", "num": 2})), None);
    assert_eq!(placeholder_num(&json!({"_placeholder": true, "num": -1})), None);
    assert_eq!(placeholder_num(&json!({"_placeholder": true})), None);
    assert_eq!(placeholder_num(&json!([placeholder(0)])), None);
    assert_eq!(placeholder_num(&json!(0)), None);
    assert!(is_placeholder(&json!({"_placeholder": true})));
    assert!(!is_placeholder(&json!({"num": 0})));

    assert_eq!(count_placeholders(&json!("x")), 0);
    assert_eq!(count_placeholders(&placeholder(0)), 1);
    assert_eq!(
        count_placeholders(
            &json!(["ev", placeholder(0), {"a": [placeholder(1), {"b": placeholder(2)}]}, [[placeholder(3)]]])
        ),
        4
    );
}

// ---- lone UTF-16 surrogates ---------------------------------------------------------------------

use switchyard_protocol::socketio::replace_lone_surrogates;

#[test]
fn lone_surrogate_escapes_decode_as_replacement_characters() {
    let decoded = decode_one(r#"2["e","\ud800","\udfff","x\udbffy","\ud800\ud800\udc00"]"#).unwrap().unwrap();
    assert_eq!(decoded.data, Some(json!(["e", "\u{fffd}", "\u{fffd}", "x\u{fffd}y", "\u{fffd}\u{10000}"])));
    // Keys too, and upper-case hex.
    let decoded = decode_one(r#"2["e",{"\uD83D":"\uDE00\uD83D\uDE00"}]"#).unwrap().unwrap();
    assert_eq!(decoded.data, Some(json!(["e", {"\u{fffd}": "\u{fffd}😀"}])));
    // A surrogate at the very end of the input is still lone.
    assert_eq!(replace_lone_surrogates(r#""\ud800"#).as_deref(), Some(r#""\ufffd"#));
}

#[test]
fn lone_surrogate_repair_leaves_everything_else_alone() {
    assert_eq!(
        replace_lone_surrogates(r#"["\ud83d\ude00","\u0041","\\ud800","\\\ud800"]"#).as_deref(),
        Some(r#"["\ud83d\ude00","\u0041","\\ud800","\\\ufffd"]"#)
    );
    assert_eq!(replace_lone_surrogates(r#"["\ud83d\ude00","\\ud800","\u12"]"#), None);
    // Invalid JSON stays invalid.
    assert_eq!(decode_one(r#"2["e","\ud800"#), Err(DecodeError::InvalidPayload));
    assert_eq!(decode_one(r#"2["e",\ud800]"#), Err(DecodeError::InvalidPayload));
    assert_eq!(decode_one(r#"2["e","\ud800\x"]"#), Err(DecodeError::InvalidPayload));
}

/// Every string of up to five tokens from an alphabet of escapes and JSON punctuation: the repair keeps
/// the length, is idempotent, is never needed by valid JSON, and changes only escape digits.
#[test]
fn lone_surrogate_repair_invariants_exhaustively() {
    const TOKENS: &[&str] = &["\\ud800", "\\udc00", "\\u0041", "\\\\", "\\", "\"", "a", "\\uD8", "é"];
    let mut stack = vec![(String::new(), 0)];
    let mut checked = 0;
    while let Some((text, depth)) = stack.pop() {
        checked += 1;
        for candidate in [text.clone(), format!("[\"{text}\"]")] {
            let Some(repaired) = replace_lone_surrogates(&candidate) else { continue };
            assert!(serde_json::from_str::<Value>(&candidate).is_err(), "{candidate:?} parses");
            assert_eq!(repaired.len(), candidate.len(), "{candidate:?}");
            assert_eq!(replace_lone_surrogates(&repaired), None, "{candidate:?} -> {repaired:?}");
            // Only the four digits after a `\u` change, into `fffd`.
            let mut i = 0;
            while i < candidate.len() {
                if candidate.as_bytes()[i] == repaired.as_bytes()[i] {
                    i += 1;
                    continue;
                }
                assert!(repaired[..i].ends_with("\\u"), "{candidate:?} changed at {i}");
                assert_eq!(&repaired[i..i + 4], "fffd", "{candidate:?}");
                i += 4;
            }
        }
        if depth < 5 {
            stack.extend(TOKENS.iter().map(|t| (format!("{text}{t}"), depth + 1)));
        }
    }
    assert!(checked > 50_000);
}
