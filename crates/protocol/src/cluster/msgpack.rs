//! MessagePack as Node's notepack.io writes and reads it, mapped onto the JSON values Switchyard keeps.
//!
//! Binary data travels as msgpack `bin` where the JSON holds a `{"_placeholder":true,"num":N}` marker
//! (the form Socket.IO payloads keep, see [`crate::socketio::placeholder`]), so a Node peer sees a
//! `Buffer` in place.
//! Decoding does the reverse: every `bin` becomes a placeholder and its bytes go to a side list.
//! notepack's timestamps (ext -1, its encoding of `Date`; fixext 8 type 0 in notepack 2.x) decode to
//! the ISO string `JSON.stringify` would give; its `undefined` (fixext 1, type 0) decodes to null in arrays and drops from maps.

use bytes::Bytes;
use serde_json::{Map, Number, Value};

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("msgpack input ends early")]
    Truncated,
    #[error("msgpack type byte 0x{0:02x} is not valid")]
    InvalidType(u8),
    #[error("msgpack nesting is deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("{0} bytes left after the msgpack value")]
    TrailingBytes(usize),
    #[error("more than {0} msgpack bin values")]
    TooManyBinary(usize),
}

/// A decoded message: JSON with placeholders, and the binary blobs they point at.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decoded {
    pub value: Value,
    pub binary: Vec<Bytes>,
}

// ---- encoding ---------------------------------------------------------------------------------

/// Writes msgpack into a growing buffer.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Self {
        Writer { out: Vec::with_capacity(capacity) }
    }

    /// Appends to `out` (whatever it already holds stays in front).
    pub fn from_vec(out: Vec<u8>) -> Self {
        Writer { out }
    }

    pub fn finish(self) -> Vec<u8> {
        self.out
    }

    pub fn nil(&mut self) {
        self.out.push(0xc0);
    }

    pub fn bool(&mut self, value: bool) {
        self.out.push(if value { 0xc3 } else { 0xc2 });
    }

    pub fn array_len(&mut self, len: usize) {
        if len < 16 {
            self.out.push(0x90 | len as u8);
        } else if len <= 0xffff {
            self.out.push(0xdc);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0xdd);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub fn map_len(&mut self, len: usize) {
        if len < 16 {
            self.out.push(0x80 | len as u8);
        } else if len <= 0xffff {
            self.out.push(0xde);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0xdf);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
    }

    pub fn str(&mut self, s: &str) {
        let len = s.len();
        if len < 32 {
            self.out.push(0xa0 | len as u8);
        } else if len <= 0xff {
            self.out.push(0xd9);
            self.out.push(len as u8);
        } else if len <= 0xffff {
            self.out.push(0xda);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0xdb);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.out.extend_from_slice(s.as_bytes());
    }

    pub fn bin(&mut self, data: &[u8]) {
        let len = data.len();
        if len <= 0xff {
            self.out.push(0xc4);
            self.out.push(len as u8);
        } else if len <= 0xffff {
            self.out.push(0xc5);
            self.out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            self.out.push(0xc6);
            self.out.extend_from_slice(&(len as u32).to_be_bytes());
        }
        self.out.extend_from_slice(data);
    }

    /// An integer in the smallest form, as notepack picks it (unsigned forms for non-negatives).
    pub fn int(&mut self, value: i64) {
        if value >= 0 {
            self.uint(value as u64);
        } else if value >= -32 {
            self.out.push(value as i8 as u8);
        } else if value >= -0x80 {
            self.out.push(0xd0);
            self.out.push(value as i8 as u8);
        } else if value >= -0x8000 {
            self.out.push(0xd1);
            self.out.extend_from_slice(&(value as i16).to_be_bytes());
        } else if value >= -0x8000_0000 {
            self.out.push(0xd2);
            self.out.extend_from_slice(&(value as i32).to_be_bytes());
        } else {
            self.out.push(0xd3);
            self.out.extend_from_slice(&value.to_be_bytes());
        }
    }

    pub fn uint(&mut self, value: u64) {
        if value < 0x80 {
            self.out.push(value as u8);
        } else if value <= 0xff {
            self.out.push(0xcc);
            self.out.push(value as u8);
        } else if value <= 0xffff {
            self.out.push(0xcd);
            self.out.extend_from_slice(&(value as u16).to_be_bytes());
        } else if value <= 0xffff_ffff {
            self.out.push(0xce);
            self.out.extend_from_slice(&(value as u32).to_be_bytes());
        } else {
            self.out.push(0xcf);
            self.out.extend_from_slice(&value.to_be_bytes());
        }
    }

    pub fn float(&mut self, value: f64) {
        // JavaScript has one number type: notepack writes integral values as integers.
        if value.fract() == 0.0 && value.abs() < 9_007_199_254_740_992.0 {
            self.int(value as i64);
        } else {
            self.out.push(0xcb);
            self.out.extend_from_slice(&value.to_be_bytes());
        }
    }

    pub fn number(&mut self, n: &Number) {
        if let Some(i) = n.as_i64() {
            self.int(i);
        } else if let Some(u) = n.as_u64() {
            self.uint(u);
        } else {
            self.float(n.as_f64().unwrap_or(0.0));
        }
    }

    /// Writes `value`, putting `binary[N]` as `bin` where a placeholder for N stands.
    pub fn value(&mut self, value: &Value, binary: &[Bytes]) {
        match value {
            Value::Null => self.nil(),
            Value::Bool(b) => self.bool(*b),
            Value::Number(n) => self.number(n),
            Value::String(s) => self.str(s),
            Value::Array(items) => {
                self.array_len(items.len());
                for item in items {
                    self.value(item, binary);
                }
            }
            Value::Object(map) => {
                if let Some(data) = placeholder_target(map, binary) {
                    self.bin(data);
                    return;
                }
                self.map_len(map.len());
                for (key, item) in map {
                    self.str(key);
                    self.value(item, binary);
                }
            }
        }
    }

    /// Writes event arguments as msgpack array items (the caller wrote the array header), their
    /// placeholders resolved against `binary`.
    pub fn args(&mut self, args: &[Value], binary: &[Bytes]) {
        for arg in args {
            self.value(arg, binary);
        }
    }
}

/// The attachment a placeholder object stands for, as socket.io-parser recognises one.
fn placeholder_target<'a>(map: &Map<String, Value>, binary: &'a [Bytes]) -> Option<&'a Bytes> {
    if binary.is_empty() || map.get("_placeholder") != Some(&Value::Bool(true)) {
        return None;
    }
    let num = map.get("num")?.as_u64()?;
    binary.get(usize::try_from(num).ok()?)
}

/// Encodes `value` (placeholders resolved against `binary`) as one msgpack document.
pub fn encode(value: &Value, binary: &[Bytes]) -> Vec<u8> {
    let mut w = Writer::with_capacity(64);
    w.value(value, binary);
    w.finish()
}

// ---- decoding ---------------------------------------------------------------------------------

/// Decodes one msgpack document; `bin` values become placeholders.
pub fn decode(input: &[u8]) -> Result<Decoded, DecodeError> {
    decode_limited(input, usize::MAX)
}

/// Decodes one msgpack document holding at most `max_binary` `bin` values (each one costs a
/// placeholder object, far more memory than its two bytes of input).
pub fn decode_limited(input: &[u8], max_binary: usize) -> Result<Decoded, DecodeError> {
    let mut reader = Reader { input, pos: 0, binary: Vec::new(), max_binary };
    let value = reader.value(0)?.unwrap_or(Value::Null);
    if reader.pos != input.len() {
        return Err(DecodeError::TrailingBytes(input.len() - reader.pos));
    }
    Ok(Decoded { value, binary: reader.binary })
}

struct Reader<'a> {
    input: &'a [u8],
    pos: usize,
    binary: Vec<Bytes>,
    max_binary: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let slice = self.input.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(slice)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn be(&mut self, n: usize) -> Result<u64, DecodeError> {
        Ok(self.take(n)?.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b)))
    }

    fn remaining(&self) -> usize {
        self.input.len() - self.pos
    }

    /// One value; `None` for notepack's `undefined`.
    fn value(&mut self, depth: usize) -> Result<Option<Value>, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        let kind = self.byte()?;
        let value = match kind {
            0x00..=0x7f => Value::from(kind),
            0x80..=0x8f => self.map(usize::from(kind & 0x0f), depth)?,
            0x90..=0x9f => self.array(usize::from(kind & 0x0f), depth)?,
            0xa0..=0xbf => self.string(usize::from(kind & 0x1f))?,
            0xc0 => Value::Null,
            0xc2 => Value::Bool(false),
            0xc3 => Value::Bool(true),
            0xc4..=0xc6 => {
                if self.binary.len() >= self.max_binary {
                    return Err(DecodeError::TooManyBinary(self.max_binary));
                }
                let len = self.be(1 << (kind - 0xc4))? as usize;
                let data = Bytes::copy_from_slice(self.take(len)?);
                self.binary.push(data);
                crate::socketio::placeholder(self.binary.len() - 1)
            }
            0xc7..=0xc9 => {
                let len = self.be(1 << (kind - 0xc7))? as usize;
                return self.ext(len);
            }
            0xca => Number::from_f64(f64::from(f32::from_bits(self.be(4)? as u32))).map_or(Value::Null, Value::Number),
            0xcb => Number::from_f64(f64::from_bits(self.be(8)?)).map_or(Value::Null, Value::Number),
            0xcc..=0xcf => Value::from(self.be(1 << (kind - 0xcc))?),
            0xd0 => Value::from(self.be(1)? as u8 as i8),
            0xd1 => Value::from(self.be(2)? as u16 as i16),
            0xd2 => Value::from(self.be(4)? as u32 as i32),
            0xd3 => Value::from(self.be(8)? as i64),
            0xd4..=0xd8 => return self.ext(1 << (kind - 0xd4)),
            0xd9..=0xdb => {
                let len = self.be(1 << (kind - 0xd9))? as usize;
                self.string(len)?
            }
            0xdc | 0xdd => {
                let len = self.be(if kind == 0xdc { 2 } else { 4 })? as usize;
                self.array(len, depth)?
            }
            0xde | 0xdf => {
                let len = self.be(if kind == 0xde { 2 } else { 4 })? as usize;
                self.map(len, depth)?
            }
            0xe0..=0xff => Value::from(kind as i8),
            0xc1 => return Err(DecodeError::InvalidType(kind)),
        };
        Ok(Some(value))
    }

    fn string(&mut self, len: usize) -> Result<Value, DecodeError> {
        let bytes = self.take(len)?;
        Ok(Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }

    fn array(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        // Every item takes at least one byte: a length beyond the input is a lie.
        if len > self.remaining() {
            return Err(DecodeError::Truncated);
        }
        let mut items = Vec::with_capacity(len);
        for _ in 0..len {
            items.push(self.value(depth + 1)?.unwrap_or(Value::Null));
        }
        Ok(Value::Array(items))
    }

    fn map(&mut self, len: usize, depth: usize) -> Result<Value, DecodeError> {
        if len > self.remaining() / 2 {
            return Err(DecodeError::Truncated);
        }
        let mut map = Map::new();
        for _ in 0..len {
            let key = match self.value(depth + 1)?.unwrap_or(Value::Null) {
                Value::String(s) => s,
                other => js_key(&other),
            };
            if let Some(item) = self.value(depth + 1)? {
                map.insert(key, item);
            }
        }
        Ok(Value::Object(map))
    }

    /// An extension value: notepack's Date (type -1) and undefined (type 0); others become null.
    fn ext(&mut self, len: usize) -> Result<Option<Value>, DecodeError> {
        let kind = self.byte()? as i8;
        let data = self.take(len)?;
        match (kind, len) {
            (0, 1) => Ok(None),
            // notepack 2.x (socket.io-msgpack-parser's) writes a Date as fixext 8 type 0: milliseconds.
            (0, 8) => {
                let ms = i64::from_be_bytes(data.try_into().unwrap_or_default());
                let nanos = (ms.rem_euclid(1000) * 1_000_000) as u32;
                Ok(Some(Value::String(iso_time(ms.div_euclid(1000), nanos))))
            }
            (-1, 4) => {
                let secs = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                Ok(Some(Value::String(iso_time(i64::from(secs), 0))))
            }
            (-1, 8) => {
                let raw = u64::from_be_bytes(data.try_into().unwrap_or_default());
                let nanos = (raw >> 34) as u32;
                let secs = (raw & 0x3_ffff_ffff) as i64;
                Ok(Some(Value::String(iso_time(secs, nanos))))
            }
            (-1, 12) => {
                let nanos = u32::from_be_bytes([data[0], data[1], data[2], data[3]]);
                let secs = i64::from_be_bytes(data[4..12].try_into().unwrap_or_default());
                Ok(Some(Value::String(iso_time(secs, nanos))))
            }
            _ => Ok(Some(Value::Null)),
        }
    }
}

/// The property name JavaScript makes of a non-string map key (`String(key)`): numbers, booleans and
/// null as written, arrays joined with commas, objects `[object Object]`. Linear in the key's size:
/// JSON text would escape nested keys again at each level and grow exponentially with the nesting.
fn js_key(key: &Value) -> String {
    fn write(key: &Value, out: &mut String) {
        match key {
            Value::Null => {}
            Value::String(s) => out.push_str(s),
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
            }
            Value::Object(_) => out.push_str("[object Object]"),
            Value::Bool(_) | Value::Number(_) => out.push_str(&key.to_string()),
        }
    }
    match key {
        Value::Null => "null".to_string(),
        other => {
            let mut out = String::new();
            write(other, &mut out);
            out
        }
    }
}

/// `Date.prototype.toISOString` for a Unix time: `2024-05-01T12:00:00.000Z` (milliseconds; `nanos` is
/// the fraction of the second). Also the timestamp format of the Admin UI's live events.
pub fn iso_time(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        nanos / 1_000_000
    )
}

/// Decoded arguments with only the attachments they reference, numbered from 0 in order of
/// appearance (the form a Socket.IO payload keeps).
pub fn select_attachments(args: Vec<Value>, binary: &[Bytes]) -> (Vec<Value>, Vec<Bytes>) {
    if binary.is_empty() {
        return (args, Vec::new());
    }
    let mut kept = Vec::new();
    let args = args
        .into_iter()
        .map(|mut arg| {
            renumber(&mut arg, binary, &mut kept);
            arg
        })
        .collect();
    (args, kept)
}

fn renumber(value: &mut Value, from: &[Bytes], to: &mut Vec<Bytes>) {
    match value {
        Value::Array(items) => items.iter_mut().for_each(|item| renumber(item, from, to)),
        Value::Object(map) => {
            if let Some(data) = placeholder_target(map, from) {
                // A shared handle, not a copy: many placeholders may name one large attachment.
                to.push(data.clone());
                *value = crate::socketio::placeholder(to.len() - 1);
                return;
            }
            map.values_mut().for_each(|item| renumber(item, from, to));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_json_values() {
        let value = json!([
            "uid",
            {"type": 2, "data": ["ev", 1, -1, -200, 70000, 1.5, null, true, "x".repeat(40)], "nsp": "/"},
            {"rooms": ["a"], "except": [], "flags": {}}
        ]);
        let bytes = encode(&value, &[]);
        assert_eq!(decode(&bytes).unwrap(), Decoded { value, binary: vec![] });
    }

    #[test]
    fn writes_what_notepack_writes() {
        // notepack.encode(["abc", 1, -1, 300, 1.5, null, true, {a: 1}]) in Node.
        let bytes = encode(&json!(["abc", 1, -1, 300, 1.5, null, true, {"a": 1}]), &[]);
        assert_eq!(
            bytes,
            [
                0x98, 0xa3, b'a', b'b', b'c', 0x01, 0xff, 0xcd, 0x01, 0x2c, 0xcb, 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, 0xc0,
                0xc3, 0x81, 0xa1, b'a', 0x01
            ]
        );
        // Integral floats are integers in JavaScript.
        assert_eq!(encode(&json!(2.0), &[]), [0x02]);
    }

    #[test]
    fn placeholders_become_bin_and_back() {
        let args = [json!("x"), json!({"_placeholder": true, "num": 0})];
        let mut w = Writer::default();
        w.array_len(args.len());
        w.args(&args, &[Bytes::from_static(&[1, 2, 3])]);
        let bytes = w.finish();
        assert_eq!(bytes, [0x92, 0xa1, b'x', 0xc4, 3, 1, 2, 3]);
        let decoded = decode(&bytes).unwrap();
        assert_eq!(decoded.value, json!(["x", {"_placeholder": true, "num": 0}]));
        assert_eq!(decoded.binary, vec![Bytes::from_static(&[1, 2, 3])]);
    }

    #[test]
    fn payload_renumbers_attachments_it_uses() {
        let binary = vec![Bytes::from_static(b"skip"), Bytes::from_static(b"keep")];
        let args = vec![json!({"nested": [{"_placeholder": true, "num": 1}]})];
        let (args, kept) = select_attachments(args, &binary);
        assert_eq!(args, vec![json!({"nested": [{"_placeholder": true, "num": 0}]})]);
        assert_eq!(kept, vec![Bytes::from_static(b"keep")]);
        let plain = vec![json!(1)];
        assert_eq!(select_attachments(plain.clone(), &[]), (plain, vec![]));
    }

    #[test]
    fn dates_and_undefined() {
        // notepack: new Date(0) -> d6 ff 00000000; {a: undefined, b: 1} written by hand with fixext 1.
        assert_eq!(decode(&[0xd6, 0xff, 0, 0, 0, 0]).unwrap().value, json!("1970-01-01T00:00:00.000Z"));
        let ts = 1_700_000_000u32.to_be_bytes();
        assert_eq!(decode(&[0xd6, 0xff, ts[0], ts[1], ts[2], ts[3]]).unwrap().value, json!("2023-11-14T22:13:20.000Z"));
        // notepack 2.x: new Date(1700000000123) -> d7 00 <int64 milliseconds>.
        let ms = 1_700_000_000_123i64.to_be_bytes();
        let mut date2 = vec![0xd7, 0x00];
        date2.extend_from_slice(&ms);
        assert_eq!(decode(&date2).unwrap().value, json!("2023-11-14T22:13:20.123Z"));
        let undefined_in_map = [0x82, 0xa1, b'a', 0xd4, 0x00, 0x00, 0xa1, b'b', 0x01];
        assert_eq!(decode(&undefined_in_map).unwrap().value, json!({"b": 1}));
        assert_eq!(decode(&[0x91, 0xd4, 0x00, 0x00]).unwrap().value, json!([null]));
    }

    #[test]
    fn keys_that_are_not_strings_read_as_javascript_names_them() {
        // {1: "a", true: "b", null: "c", [1, [2, null]]: "d", {x: 1}: "e"} written with msgpack keys.
        let input = [
            0x85, 0x01, 0xa1, b'a', 0xc3, 0xa1, b'b', 0xc0, 0xa1, b'c', 0x92, 0x01, 0x92, 0x02, 0xc0, 0xa1, b'd', 0x81,
            0xa1, b'x', 0x01, 0xa1, b'e',
        ];
        let expected = json!({"1": "a", "true": "b", "null": "c", "1,2,": "d", "[object Object]": "e"});
        assert_eq!(decode(&input).unwrap().value, expected);
        // Maps nested as keys stay cheap: no escaping at each level.
        let mut nested = vec![0x81; 120];
        nested.extend_from_slice(&[0xa1, b'k', 0x01]);
        nested.extend(std::iter::repeat_n(0x01, 119));
        assert_eq!(decode(&nested).unwrap().value, json!({"[object Object]": 1}));
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        assert_eq!(decode(&[0xc1]), Err(DecodeError::InvalidType(0xc1)));
        assert_eq!(decode(&[0xdd, 0xff, 0xff, 0xff, 0xff]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0xc6, 0xff, 0xff, 0xff, 0xff, 1]), Err(DecodeError::Truncated));
        assert_eq!(decode(&[0x01, 0x02]), Err(DecodeError::TrailingBytes(1)));
        assert_eq!(decode(&vec![0x91; 1000]), Err(DecodeError::TooDeep));
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 11) as u8).collect();
            let _ = decode(&junk);
        }
    }
}
