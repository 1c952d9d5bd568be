//! Any bytes from another node fed to the cluster's MessagePack decoder (notepack's format, as the
//! Redis adapter reads it), with and without a limit on `bin` values.
//!
//! Checks the limit, that a decoded document encodes and decodes again, that the encoding is stable
//! when every placeholder stands for a `bin` (a literal `{"_placeholder": true}` map may alias an
//! attachment: the JSON form's own ambiguity; maps keep their keys sorted, so attachments may come
//! back in another order), and that picking attachments keeps only referenced ones.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use switchyard_protocol::cluster::msgpack::{decode, decode_limited, encode, select_attachments, DecodeError};
use switchyard_protocol::socketio::count_placeholders;

fn sorted(binary: &[bytes::Bytes]) -> Vec<&[u8]> {
    let mut all: Vec<&[u8]> = binary.iter().map(|b| &b[..]).collect();
    all.sort();
    all
}

fuzz_target!(|data: &[u8]| {
    let limit = usize::from(data.first().copied().unwrap_or(0) % 8);
    match decode_limited(data, limit) {
        Ok(decoded) => assert!(decoded.binary.len() <= limit),
        Err(DecodeError::TooManyBinary(n)) => assert_eq!(n, limit),
        Err(_) => {}
    }
    let Ok(decoded) = decode(data) else { return };
    let first = encode(&decoded.value, &decoded.binary);
    let again = decode(&first).expect("an encoded document decodes");
    if count_placeholders(&decoded.value) == decoded.binary.len() {
        // The same attachments; their order may change, as maps keep their keys sorted.
        assert_eq!(sorted(&again.binary), sorted(&decoded.binary));
        assert_eq!(encode(&again.value, &again.binary), first, "encoding is stable");
    }

    if let Value::Array(items) = decoded.value {
        let (args, kept) = select_attachments(items, &decoded.binary);
        assert!(kept.len() <= args.iter().map(count_placeholders).sum::<usize>());
    }
});
