//! The lone-surrogate repair of the Socket.IO decoder's JSON parsing, on arbitrary text.
//!
//! Checks: the repair keeps the length and touches only lone surrogate escapes, it is idempotent,
//! valid JSON never needs it, and whatever decodes after it re-encodes and decodes again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchyard_protocol::socketio::{decode_packet, replace_lone_surrogates};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let parsed = serde_json::from_str::<serde_json::Value>(&text);
    match replace_lone_surrogates(&text) {
        None => {}
        Some(repaired) => {
            assert!(parsed.is_err(), "valid JSON has no lone surrogate escape to repair");
            assert_eq!(repaired.len(), text.len());
            assert!(replace_lone_surrogates(&repaired).is_none(), "the repair is idempotent");
            // Only 4-hex-digit runs after `\u` change, each into `fffd`.
            let (a, b) = (text.as_bytes(), repaired.as_bytes());
            let mut i = 0;
            while i < a.len() {
                if a[i] != b[i] {
                    assert!(i >= 2 && &b[i - 2..i] == b"\\u", "change outside an escape at {i}");
                    assert_eq!(&b[i..i + 4], b"fffd");
                    i += 4;
                } else {
                    i += 1;
                }
            }
        }
    }
    // Through the decoder: an EVENT holding this text as its JSON.
    let packet = format!("2{text}");
    if let Ok((decoded, _)) = decode_packet(&packet, 10) {
        let data = decoded.data.expect("an EVENT has data");
        let again = format!("2{data}");
        // Floats may round differently on the way back, so only decoding is checked.
        decode_packet(&again, 10).expect("re-encoded EVENT decodes");
    }
});
