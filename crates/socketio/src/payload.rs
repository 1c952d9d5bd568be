//! Event arguments, with binary attachments kept beside the JSON, and their encoding into frames.

use bytes::{BufMut, Bytes, BytesMut};
use serde_json::Value;
use smallvec::SmallVec;
use switchyard_engine::protocol::engine::PacketType as EioType;
use switchyard_engine::protocol::socketio::{self as sio, PacketType};
use switchyard_engine::Frame;

/// Arguments of an event or an ack. Binary data sits in `binary`; the JSON holds
/// `{"_placeholder":true,"num":N}` where each buffer goes, as on the wire.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payload {
    pub args: Vec<Value>,
    pub binary: Vec<Bytes>,
}

impl Payload {
    pub fn new(args: Vec<Value>) -> Self {
        Payload { args, binary: Vec::new() }
    }

    pub fn empty() -> Self {
        Payload::default()
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

/// Encodes an EVENT (with `event`) or an ACK (without) for namespace `nsp`, once, into frames that
/// can be sent to any number of connections.
pub fn encode_packet(nsp: &str, event: Option<&str>, payload: &Payload, id: Option<u64>) -> Frames {
    let binary = !payload.binary.is_empty();
    let kind = match (event.is_some(), binary) {
        (true, false) => PacketType::Event,
        (true, true) => PacketType::BinaryEvent,
        (false, false) => PacketType::Ack,
        (false, true) => PacketType::BinaryAck,
    };
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

/// A CONNECT, CONNECT_ERROR or DISCONNECT packet.
pub(crate) fn encode_control(kind: PacketType, nsp: &str, data: Option<&Value>) -> Frame {
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
    fn encodes_control_packets() {
        let f = encode_control(PacketType::ConnectError, "/x", Some(&json!({"message": "Invalid namespace"})));
        assert_eq!(f.payload(), br#"44/x,{"message":"Invalid namespace"}"#);
        assert_eq!(encode_control(PacketType::Disconnect, "/", None).payload(), b"41");
    }
}
