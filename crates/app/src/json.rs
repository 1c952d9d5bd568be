//! JSON written by hand where the server encodes the same shape many times: the same bytes as
//! serde_json, but a string that needs no escaping (the common case) is copied whole instead of byte
//! by byte (callgrind: serde_json's `serialize_str` was most of a record's cost; BENCHMARKS.md,
//! "Kafka out").

use serde_json::Value;

/// Appends `s` as a JSON string, as serde_json writes it: copied whole when nothing in it needs
/// escaping (checked without branching per byte, so the compiler vectorises it), else through
/// serde_json's escaping.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    if !needs_escape(s.as_bytes()) {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    } else {
        serde_json::to_writer(&mut *out, s).expect("writing to a Vec cannot fail");
    }
}

/// Whether JSON needs any byte of `bytes` escaped (a control character, `"` or `\\`). Checked 16
/// bytes at a time with no branch inside a block, which compiles to vector compares.
pub fn needs_escape(bytes: &[u8]) -> bool {
    let escape = |b: u8| (b < 0x20) | (b == b'"') | (b == b'\\');
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if block.iter().fold(0u8, |any, &b| any | u8::from(escape(b))) != 0 {
            return true;
        }
    }
    blocks.remainder().iter().any(|&b| escape(b))
}

/// Appends `value` as compact JSON, as serde_json writes it (object keys in the map's order), with
/// [`write_str`] for every string. Recursion is bounded by the depth the value was parsed with
/// (serde_json's limit of 128).
pub fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => serde_json::to_writer(&mut *out, n).expect("writing to a Vec cannot fail"),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => {
            out.push(b'{');
            for (i, (key, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_str(out, key);
                out.push(b':');
                write_value(out, item);
            }
            out.push(b'}');
        }
    }
}

/// A built-in `message` as its room receives it: `{"id","room","user","data","ts"}`, the fields in
/// that order (the same bytes as serde_json writes [`crate::pipeline::AcceptedMessage`]). Encoded
/// once per message: the broadcast, the Kafka record and the history entry are made from it.
pub fn message_envelope(id: &str, room: &str, user: &str, data: &Value, ts: u64) -> Vec<u8> {
    // Sized for the whole envelope when `data` is a string (the common chat message), so the
    // buffer is not grown while it is written.
    let data_hint = match data {
        Value::String(text) => text.len() + 2,
        _ => 128,
    };
    let mut out = Vec::with_capacity(64 + id.len() + room.len() + user.len() + data_hint);
    out.extend_from_slice(b"{\"id\":");
    write_str(&mut out, id);
    out.extend_from_slice(b",\"room\":");
    write_str(&mut out, room);
    out.extend_from_slice(b",\"user\":");
    write_str(&mut out, user);
    out.extend_from_slice(b",\"data\":");
    write_value(&mut out, data);
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    out.push(b'}');
    out
}

/// A `message`'s ack: `{"ok":true,"id":...,"ts":...}`.
pub fn message_ack(id: &str, ts: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(40 + id.len());
    out.extend_from_slice(b"{\"ok\":true,\"id\":");
    write_str(&mut out, id);
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(itoa::Buffer::new().format(ts).as_bytes());
    out.push(b'}');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Data of every shape, strings that need escaping at block boundaries, numbers serde_json
    /// writes in its own way.
    fn datas() -> Vec<Value> {
        vec![
            json!("00000042|xxxxxxxx"),
            json!({"text": "hi \"there\"\n\u{1}\\", "n": [1, -2, 3.5, 1e300, null, true, false], "emoji": "héllo ✓"}),
            json!([]),
            json!({}),
            json!({"nested": {"a": [{"b": "c"}], "_placeholder": true, "num": 0}}),
            json!(null),
            json!(u64::MAX),
            json!(-0.0),
        ]
    }

    #[test]
    fn values_are_written_byte_for_byte_as_serde_json_writes_them() {
        for data in datas() {
            let mut out = Vec::new();
            write_value(&mut out, &data);
            assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&data).unwrap());
        }
    }

    #[test]
    fn a_message_envelope_is_what_serde_json_writes_for_the_accepted_message() {
        #[derive(serde::Serialize)]
        struct Envelope<'a> {
            id: &'a str,
            room: &'a str,
            user: &'a str,
            data: &'a Value,
            ts: u64,
        }
        for data in datas() {
            for (room, user) in [("lobby", "ada"), ("lobby \"quoted\" \t", "adà\\")] {
                let id = "0190-abc";
                let ts = 1_700_000_000_000;
                let expected = serde_json::to_string(&Envelope { id, room, user, data: &data, ts }).unwrap();
                let got = message_envelope(id, room, user, &data, ts);
                assert_eq!(String::from_utf8(got).unwrap(), expected);
            }
        }
        assert_eq!(message_ack("a\"b", 7), br#"{"ok":true,"id":"a\"b","ts":7}"#);
    }

    #[test]
    fn escaping_is_found_at_every_position_of_a_block() {
        for len in 0..40 {
            assert!(!needs_escape("x".repeat(len).as_bytes()));
            for at in 0..len {
                for bad in [b'"', b'\\', b'\n', 0u8, 0x1f] {
                    let mut bytes = vec![b'x'; len];
                    bytes[at] = bad;
                    assert!(needs_escape(&bytes), "len {len}, byte {bad} at {at}");
                }
                let mut bytes = vec![b'x'; len];
                bytes[at] = 0x20;
                assert!(!needs_escape(&bytes));
            }
        }
    }
}
