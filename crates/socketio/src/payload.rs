//! Event arguments, with binary attachments kept beside the JSON, and their encoding into frames.
//!
//! Arguments convert to and from Rust types through serde:
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use switchyard_socketio::Payload;
//!
//! #[derive(Serialize, Deserialize, PartialEq, Debug)]
//! struct Chat { room: String, text: String }
//!
//! let payload = Payload::from_args(&("lobby", Chat { room: "lobby".into(), text: "hi".into() })).unwrap();
//! assert_eq!(payload.arg::<String>(0).unwrap(), "lobby");
//! let (room, chat): (String, Chat) = payload.args_as().unwrap();
//! assert_eq!((room.as_str(), chat.text.as_str()), ("lobby", "hi"));
//! assert!(payload.arg::<u32>(0).is_err());
//! ```

use bytes::{BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use smallvec::SmallVec;
use switchyard_engine::protocol::engine::PacketType as EioType;
use switchyard_engine::protocol::socketio::{self as sio, PacketType};
use switchyard_engine::protocol::socketio_msgpack;
use switchyard_engine::Frame;

use crate::config::Parser;

/// Arguments of an event or an ack. Binary data sits in `binary`; the JSON holds
/// `{"_placeholder":true,"num":N}` where each buffer goes, as on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

/// Why arguments did not convert to or from a Rust type.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// The event has fewer arguments than the one asked for.
    #[error("argument {0} is missing")]
    Missing(usize),
    /// Argument `index` (or, without an index, the argument list) does not fit the type.
    #[error("{}: {source}", index.map_or("arguments".to_string(), |i| format!("argument {i}")))]
    Invalid {
        /// The argument, or `None` for the whole argument list.
        index: Option<usize>,
        /// What serde reported.
        source: serde_json::Error,
    },
    /// A value could not be serialized to JSON, or `from_args` got something that is not a sequence.
    #[error("cannot build the arguments: {0}")]
    Serialize(String),
}

impl Payload {
    /// Arguments `args`, without attachments.
    pub fn new(args: Vec<Value>) -> Self {
        Payload { args, binary: Vec::new() }
    }

    /// No arguments.
    pub fn empty() -> Self {
        Payload::default()
    }

    /// Argument `index` deserialized as `T` (without copying the JSON). Binary arguments stay
    /// placeholders: read those with [`Payload::binary_of`].
    pub fn arg<T: DeserializeOwned>(&self, index: usize) -> Result<T, PayloadError> {
        let value = self.args.get(index).ok_or(PayloadError::Missing(index))?;
        T::deserialize(value).map_err(|source| PayloadError::Invalid { index: Some(index), source })
    }

    /// The whole argument list deserialized as `T`, positionally: a tuple `(A, B)`, a `Vec<A>`, or a
    /// struct whose fields are the arguments in order. Extra arguments are an error for tuples and
    /// structs, as serde reports them.
    pub fn args_as<T: DeserializeOwned>(&self) -> Result<T, PayloadError> {
        let seq = serde::de::value::SeqDeserializer::<_, serde_json::Error>::new(self.args.iter());
        T::deserialize(seq).map_err(|source| PayloadError::Invalid { index: None, source })
    }

    /// One argument: `value` serialized to JSON.
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> Result<Self, PayloadError> {
        let value = serde_json::to_value(value).map_err(|e| PayloadError::Serialize(e.to_string()))?;
        Ok(Payload::new(vec![value]))
    }

    /// Several arguments: `args` must serialize to a sequence (a tuple, array or `Vec`), whose items
    /// become the arguments in order.
    pub fn from_args<T: Serialize + ?Sized>(args: &T) -> Result<Self, PayloadError> {
        match serde_json::to_value(args).map_err(|e| PayloadError::Serialize(e.to_string()))? {
            Value::Array(args) => Ok(Payload::new(args)),
            other => Err(PayloadError::Serialize(format!("a sequence of arguments expected, got {other}"))),
        }
    }

    /// Appends `value`, serialized to JSON, as an argument.
    pub fn push_serialize<T: Serialize + ?Sized>(mut self, value: &T) -> Result<Self, PayloadError> {
        let value = serde_json::to_value(value).map_err(|e| PayloadError::Serialize(e.to_string()))?;
        self.args.push(value);
        Ok(self)
    }

    /// Adds `data` as an attachment and returns the placeholder to put where it belongs in the JSON.
    pub fn attach(&mut self, data: impl Into<Bytes>) -> Value {
        self.binary.push(data.into());
        sio::placeholder(self.binary.len() - 1)
    }

    /// Appends a binary argument.
    pub fn push_binary(mut self, data: impl Into<Bytes>) -> Self {
        let placeholder = self.attach(data);
        self.args.push(placeholder);
        self
    }

    /// Appends a JSON argument.
    pub fn push(mut self, arg: Value) -> Self {
        self.args.push(arg);
        self
    }

    /// The attachment a placeholder argument points at.
    pub fn binary_of(&self, value: &Value) -> Option<&Bytes> {
        sio::placeholder_num(value).and_then(|n| self.binary.get(n))
    }
}

impl From<Value> for Payload {
    /// One argument.
    fn from(value: Value) -> Self {
        Payload::new(vec![value])
    }
}

impl From<Vec<Value>> for Payload {
    /// Several arguments.
    fn from(args: Vec<Value>) -> Self {
        Payload::new(args)
    }
}

impl From<()> for Payload {
    fn from(_: ()) -> Self {
        Payload::empty()
    }
}

impl From<&str> for Payload {
    fn from(value: &str) -> Self {
        Payload::new(vec![Value::String(value.to_string())])
    }
}

impl From<String> for Payload {
    fn from(value: String) -> Self {
        Payload::new(vec![Value::String(value)])
    }
}

/// Encoded frames of one packet: the text packet, then one frame per attachment.
pub type Frames = SmallVec<[Frame; 1]>;

/// EVENT or ACK (with or without an event name), binary when there are attachments.
fn packet_kind(event: bool, binary: bool) -> PacketType {
    match (event, binary) {
        (true, false) => PacketType::Event,
        (true, true) => PacketType::BinaryEvent,
        (false, false) => PacketType::Ack,
        (false, true) => PacketType::BinaryAck,
    }
}

/// Encodes an EVENT (with `event`) or an ACK (without) for namespace `nsp`, once, into frames that
/// can be sent to any number of connections.
pub fn encode_packet(nsp: &str, event: Option<&str>, payload: &Payload, id: Option<u64>) -> Frames {
    let kind = packet_kind(event.is_some(), !payload.binary.is_empty());
    let text = Frame::text(EioType::Message, 32 + nsp.len(), |out| {
        sio::encode_header(kind, payload.binary.len(), nsp, id, out);
        write_array(out, event, &payload.args);
    });
    let mut frames = Frames::new();
    frames.push(text);
    for attachment in &payload.binary {
        frames.push(Frame::binary(attachment));
    }
    frames
}

/// Encodes an EVENT (with `event`) or an ACK (without) whose single argument is `json_arg`, JSON
/// text already encoded (the caller's promise: one valid JSON value), with `binary` attachments
/// (their placeholders inside `json_arg`). The JSON parser's frames, as [`encode_packet`] writes them
/// for the same argument as a `Value`, but with no `Value` built or serialized.
pub fn encode_packet_json_arg(
    nsp: &str,
    event: Option<&str>,
    json_arg: &[u8],
    binary: &[Bytes],
    id: Option<u64>,
) -> Frames {
    let kind = packet_kind(event.is_some(), !binary.is_empty());
    let event_len = event.map_or(0, |e| e.len() + 3);
    let text = Frame::text(EioType::Message, 32 + nsp.len() + event_len + json_arg.len(), |out| {
        sio::encode_header(kind, binary.len(), nsp, id, out);
        out.put_u8(b'[');
        if let Some(event) = event {
            let _ = serde_json::to_writer(out.writer(), event);
            out.put_u8(b',');
        }
        out.extend_from_slice(json_arg);
        out.put_u8(b']');
    });
    let mut frames = Frames::new();
    frames.push(text);
    for attachment in binary {
        frames.push(Frame::binary(attachment));
    }
    frames
}

/// `json_arg` (encoded JSON text) as the single argument of a [`Payload`], for the paths that need
/// `Value`s (another parser, a cluster adapter, observers). `None` (logged) if it is not JSON,
/// which only a caller's bug can cause.
pub(crate) fn payload_of_json_arg(json_arg: &[u8], binary: Vec<Bytes>) -> Option<Payload> {
    match serde_json::from_slice::<Value>(json_arg) {
        Ok(value) => Some(Payload { args: vec![value], binary }),
        Err(error) => {
            tracing::error!(%error, "an encoded JSON argument is not JSON: not sent");
            debug_assert!(false, "an encoded JSON argument is not JSON: {error}");
            None
        }
    }
}

impl Parser {
    /// Encodes an EVENT (with `event`) or an ACK (without) for namespace `nsp` as this parser writes
    /// it, once, into frames that can be sent to any number of connections: for JSON the text packet
    /// and one binary frame per attachment ([`encode_packet`]), for MessagePack one binary frame
    /// holding the whole packet, attachments inline.
    pub fn encode_packet(self, nsp: &str, event: Option<&str>, payload: &Payload, id: Option<u64>) -> Frames {
        match self {
            Parser::Json => encode_packet(nsp, event, payload, id),
            Parser::Msgpack => {
                let binary_len: usize = payload.binary.iter().map(Bytes::len).sum();
                let frame = Frame::binary_with(48 + nsp.len() + binary_len, |out| {
                    socketio_msgpack::encode_message(nsp, event, &payload.args, &payload.binary, id, out)
                });
                let mut frames = Frames::new();
                frames.push(frame);
                frames
            }
        }
    }

    /// A CONNECT, CONNECT_ERROR or DISCONNECT packet.
    pub(crate) fn encode_control(self, kind: PacketType, nsp: &str, data: Option<&Value>) -> Frame {
        match self {
            Parser::Json => encode_control(kind, nsp, data),
            Parser::Msgpack => {
                Frame::binary_with(48 + nsp.len(), |out| socketio_msgpack::encode_control(kind, nsp, data, out))
            }
        }
    }
}

/// Writes `[event, ...args]` (or `[...args]`) as JSON.
fn write_array(out: &mut BytesMut, event: Option<&str>, args: &[Value]) {
    out.put_u8(b'[');
    let mut first = true;
    if let Some(event) = event {
        let _ = serde_json::to_writer(out.writer(), event);
        first = false;
    }
    for arg in args {
        if !first {
            out.put_u8(b',');
        }
        first = false;
        let _ = serde_json::to_writer(out.writer(), arg);
    }
    out.put_u8(b']');
}

/// A CONNECT, CONNECT_ERROR or DISCONNECT packet (JSON).
fn encode_control(kind: PacketType, nsp: &str, data: Option<&Value>) -> Frame {
    Frame::text(EioType::Message, 48 + nsp.len(), |out| {
        sio::encode_header(kind, 0, nsp, None, out);
        if let Some(data) = data {
            let _ = serde_json::to_writer(out.writer(), data);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_events_and_acks() {
        let p = Payload::new(vec![json!(1), json!({"a": "b"})]);
        let frames = encode_packet("/", Some("ev"), &p, None);
        assert_eq!(frames[0].payload(), br#"42["ev",1,{"a":"b"}]"#);
        let frames = encode_packet("/chat", None, &p, Some(7));
        assert_eq!(frames[0].payload(), br#"43/chat,7[1,{"a":"b"}]"#);
    }

    #[test]
    fn encodes_binary_with_attachments() {
        let p = Payload::empty().push(json!("x")).push_binary(vec![1u8, 2, 3]);
        let frames = encode_packet("/", Some("bin"), &p, Some(3));
        assert_eq!(frames[0].payload(), br#"451-3["bin","x",{"_placeholder":true,"num":0}]"#);
        assert_eq!(frames[1].payload(), &[1, 2, 3]);
        assert!(frames[1].is_binary());
        assert_eq!(p.binary_of(&p.args[1]).map(|b| &b[..]), Some(&[1u8, 2, 3][..]));
    }

    #[test]
    fn an_encoded_json_argument_gives_the_frames_of_the_same_value() {
        let arg = json!({"id": "x", "data": {"_placeholder": true, "num": 0}, "ts": 12});
        let text = serde_json::to_vec(&arg).unwrap();
        let binary = vec![Bytes::from_static(&[7, 8])];
        for (nsp, event, id) in [("/", Some("message"), None), ("/chat", None, Some(9)), ("/", None, Some(0))] {
            let value = Payload { args: vec![arg.clone()], binary: binary.clone() };
            let expected = encode_packet(nsp, event, &value, id);
            let got = encode_packet_json_arg(nsp, event, &text, &binary, id);
            assert_eq!(got.len(), 2);
            for (a, b) in got.iter().zip(expected.iter()) {
                assert_eq!(a.payload(), b.payload(), "{nsp} {event:?} {id:?}");
                assert_eq!(a.is_binary(), b.is_binary());
            }
            let plain = encode_packet_json_arg(nsp, event, &text, &[], id);
            let expected = encode_packet(nsp, event, &Payload::new(vec![arg.clone()]), id);
            assert_eq!(plain[0].payload(), expected[0].payload());
        }
        assert_eq!(payload_of_json_arg(&text, binary.clone()), Some(Payload { args: vec![arg], binary }));
    }

    #[test]
    fn typed_arguments() {
        #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
        struct Point {
            x: i32,
            y: i32,
        }
        let p = Payload::new(vec![json!("a"), json!({"x": 1, "y": 2}), json!(3)]);
        assert_eq!(p.arg::<String>(0).unwrap(), "a");
        assert_eq!(p.arg::<Point>(1).unwrap(), Point { x: 1, y: 2 });
        assert!(matches!(p.arg::<i32>(5), Err(PayloadError::Missing(5))));
        let err = p.arg::<i32>(0).unwrap_err();
        assert!(matches!(err, PayloadError::Invalid { index: Some(0), .. }), "{err}");
        assert!(err.to_string().starts_with("argument 0: "), "{err}");
        let (a, b, c): (String, Point, u8) = p.args_as().unwrap();
        assert_eq!((a.as_str(), b, c), ("a", Point { x: 1, y: 2 }, 3));
        assert!(matches!(p.args_as::<(String, Point)>(), Err(PayloadError::Invalid { index: None, .. })));
        let two = Payload::new(vec![json!(4), json!(5)]);
        assert_eq!(two.args_as::<Point>().unwrap(), Point { x: 4, y: 5 });
        assert_eq!(two.args_as::<Vec<u8>>().unwrap(), vec![4, 5]);

        let built = Payload::from_args(&("a", Point { x: 1, y: 2 })).unwrap().push_serialize(&3).unwrap();
        assert_eq!(built, p);
        assert_eq!(Payload::from_serialize(&[1, 2]).unwrap().args, vec![json!([1, 2])]);
        assert!(matches!(Payload::from_args(&7), Err(PayloadError::Serialize(_))));
    }

    #[test]
    fn encodes_control_packets() {
        let f = encode_control(PacketType::ConnectError, "/x", Some(&json!({"message": "Invalid namespace"})));
        assert_eq!(f.payload(), br#"44/x,{"message":"Invalid namespace"}"#);
        assert_eq!(encode_control(PacketType::Disconnect, "/", None).payload(), b"41");
    }

    #[test]
    fn msgpack_packets_are_one_binary_frame() {
        let p = Payload::empty().push(json!("x")).push_binary(vec![1u8, 2, 3]);
        let frames = Parser::Msgpack.encode_packet("/", Some("bin"), &p, Some(3));
        assert_eq!(frames.len(), 1);
        assert!(frames[0].is_binary());
        let mut expected = Vec::new();
        socketio_msgpack::encode_message("/", Some("bin"), &p.args, &p.binary, Some(3), &mut expected);
        assert_eq!(frames[0].payload(), &expected[..]);
        let decoded = socketio_msgpack::decode(frames[0].payload(), 10).unwrap();
        assert_eq!(decoded.kind, PacketType::Event);
        assert_eq!(decoded.data, Some(json!(["bin", "x", sio::placeholder(0)])));
        assert_eq!(decoded.attachments, p.binary);

        let f = Parser::Msgpack.encode_control(PacketType::Disconnect, "/chat", None);
        assert!(f.is_binary());
        let decoded = socketio_msgpack::decode(f.payload(), 10).unwrap();
        assert_eq!((decoded.kind, decoded.nsp.as_str(), decoded.data), (PacketType::Disconnect, "/chat", None));
        // JSON stays text with attachments.
        assert_eq!(Parser::Json.encode_packet("/", Some("bin"), &p, Some(3)).len(), 2);
    }
}
