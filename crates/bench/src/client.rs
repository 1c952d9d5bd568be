//! A lean Engine.IO v4 / Socket.IO v5 client over WebSocket: one TCP stream and one small read buffer
//! per connection, no extra task, no write buffer kept between sends.

use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use std::sync::atomic::{AtomicBool, Ordering};
use switchyard_protocol::engine::{self, PacketData, PacketType};
use switchyard_protocol::socketio;
use switchyard_protocol::socketio_msgpack;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::error::{BenchError, Result};
use crate::net::Target;
use crate::wsframe::{self, Frame, MaskSource};

/// Largest server message accepted (the servers' default maxPayload is 1 MB).
const MAX_MESSAGE: usize = 4 << 20;
/// Largest HTTP response head accepted.
const MAX_HEAD: usize = 16 << 10;

/// Offer permessage-deflate in every WebSocket handshake (`--deflate`): a server that accepts it sends
/// large messages compressed, which the client inflates.
static OFFER_DEFLATE: AtomicBool = AtomicBool::new(false);

/// Makes every connection of this process offer permessage-deflate.
pub fn offer_deflate(on: bool) {
    OFFER_DEFLATE.store(on, Ordering::Relaxed);
}

/// A WebSocket message from the server, after control frames are handled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WsMessage {
    Text(Bytes),
    Binary(Bytes),
}

/// One client WebSocket.
pub struct WsConn {
    stream: TcpStream,
    buf: BytesMut,
    masks: MaskSource,
    /// Bytes reserved before each read: small for idle connections, larger for busy receivers.
    read_chunk: usize,
    fragments: Option<(u8, BytesMut)>,
    scratch: BytesMut,
    /// permessage-deflate negotiated: compressed (RSV1) frames are inflated.
    deflate: bool,
    /// Bytes read off the socket after the handshake (what the server put on the wire).
    pub bytes_read: u64,
    /// Messages that arrived compressed.
    pub compressed_messages: u64,
}

impl WsConn {
    /// Opens a TCP connection and performs the WebSocket upgrade on `path_and_query`.
    pub async fn connect(target: &Target, path_and_query: &str) -> Result<WsConn> {
        let stream = target.connect().await?;
        let mut masks = MaskSource::new(seed_from(&stream));
        let mut key_bytes = [0u8; 16];
        for chunk in key_bytes.chunks_mut(4) {
            chunk.copy_from_slice(&masks.next_mask());
        }
        let key = base64::engine::general_purpose::STANDARD.encode(key_bytes);
        let offer = if OFFER_DEFLATE.load(Ordering::Relaxed) {
            // What browsers and Node's `ws` offer.
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET {path_and_query} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n{offer}\r\n",
            target.host_header()
        );
        let mut conn = WsConn {
            stream,
            buf: BytesMut::with_capacity(512),
            masks,
            read_chunk: 512,
            fragments: None,
            scratch: BytesMut::new(),
            deflate: false,
            bytes_read: 0,
            compressed_messages: 0,
        };
        conn.stream.write_all(request.as_bytes()).await?;
        let head_len = loop {
            if let Some(len) = find_head_end(&conn.buf) {
                break len;
            }
            if conn.buf.len() > MAX_HEAD {
                return Err(BenchError::new("websocket upgrade response head too large"));
            }
            conn.fill().await?;
        };
        let head = conn.buf.split_to(head_len);
        conn.deflate = check_upgrade_response(&head, &key)?;
        conn.bytes_read = conn.buf.len() as u64;
        Ok(conn)
    }

    /// Reserve this much before each read (bigger means fewer syscalls for busy connections).
    pub fn set_read_chunk(&mut self, bytes: usize) {
        self.read_chunk = bytes.max(64);
    }

    /// Releases the read buffer's spare memory when it holds nothing (keeps idle connections small).
    pub fn shrink_if_empty(&mut self) {
        if self.buf.is_empty() {
            self.buf = BytesMut::new();
        }
        self.scratch = BytesMut::new();
    }

    /// Reads more bytes from the socket; an error on EOF.
    pub async fn fill(&mut self) -> Result<usize> {
        if self.buf.capacity() - self.buf.len() < self.read_chunk / 2 {
            self.buf.reserve(self.read_chunk);
        }
        let read = self.stream.read_buf(&mut self.buf).await?;
        if read == 0 {
            return Err(BenchError::closed("server closed the connection"));
        }
        self.bytes_read += read as u64;
        Ok(read)
    }

    /// Sends one text message.
    pub async fn send_text(&mut self, payload: &[u8]) -> Result<()> {
        self.send_frame(wsframe::OP_TEXT, payload).await
    }

    /// Sends one binary message.
    pub async fn send_binary(&mut self, payload: &[u8]) -> Result<()> {
        self.send_frame(wsframe::OP_BINARY, payload).await
    }

    async fn send_frame(&mut self, opcode: u8, payload: &[u8]) -> Result<()> {
        self.scratch.clear();
        let mask = self.masks.next_mask();
        wsframe::encode_client_frame(opcode, payload, mask, &mut self.scratch);
        self.stream.write_all(&self.scratch).await?;
        Ok(())
    }

    /// Appends one masked binary frame to `out`.
    pub fn frame_binary_into(&mut self, payload: &[u8], out: &mut BytesMut) {
        let mask = self.masks.next_mask();
        wsframe::encode_client_frame(wsframe::OP_BINARY, payload, mask, out);
    }

    /// Appends one masked text frame to `out` (for callers batching many messages into one write).
    pub fn frame_text_into(&mut self, payload: &[u8], out: &mut BytesMut) {
        let mask = self.masks.next_mask();
        wsframe::encode_client_frame(wsframe::OP_TEXT, payload, mask, out);
    }

    /// Writes raw, already framed bytes.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// The next complete message already in the buffer, without reading. Answers WebSocket pings.
    pub async fn try_next(&mut self) -> Result<Option<WsMessage>> {
        loop {
            let Some(frame) = wsframe::parse_server_frame(&mut self.buf, MAX_MESSAGE, self.deflate)? else {
                return Ok(None);
            };
            if let Some(message) = self.on_frame(frame).await? {
                return Ok(Some(message));
            }
        }
    }

    /// The next message, reading as needed.
    pub async fn next_message(&mut self) -> Result<WsMessage> {
        loop {
            if let Some(message) = self.try_next().await? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    async fn on_frame(&mut self, mut frame: Frame) -> Result<Option<WsMessage>> {
        if frame.compressed {
            // The server keeps no context between messages (server_no_context_takeover), so each one
            // inflates on its own. Servers here never fragment a compressed message.
            if !frame.fin || frame.opcode == wsframe::OP_CONTINUATION || frame.opcode >= wsframe::OP_CLOSE {
                return Err(BenchError::new("compressed frame that is not a whole data message"));
            }
            let inflated = switchyard_protocol::deflate::inflate_message(&[&frame.payload], MAX_MESSAGE)
                .map_err(|e| BenchError::new(format!("compressed message does not inflate: {e:?}")))?;
            frame.payload = inflated.freeze();
            self.compressed_messages += 1;
        }
        match frame.opcode {
            wsframe::OP_PING => {
                self.scratch.clear();
                let mask = self.masks.next_mask();
                wsframe::encode_client_frame(wsframe::OP_PONG, &frame.payload, mask, &mut self.scratch);
                self.stream.write_all(&self.scratch).await?;
                Ok(None)
            }
            wsframe::OP_PONG => Ok(None),
            wsframe::OP_CLOSE => {
                let code = (frame.payload.len() >= 2).then(|| u16::from_be_bytes([frame.payload[0], frame.payload[1]]));
                Err(BenchError::closed(format!(
                    "server sent a close frame (code {})",
                    code.map_or("none".to_string(), |c| c.to_string())
                )))
            }
            wsframe::OP_CONTINUATION => {
                let Some((opcode, mut data)) = self.fragments.take() else {
                    return Err(BenchError::new("continuation frame without a start"));
                };
                data.extend_from_slice(&frame.payload);
                if data.len() > MAX_MESSAGE {
                    return Err(BenchError::new("fragmented message too large"));
                }
                if frame.fin {
                    Ok(Some(make_message(opcode, data.freeze())))
                } else {
                    self.fragments = Some((opcode, data));
                    Ok(None)
                }
            }
            opcode => {
                if self.fragments.is_some() {
                    return Err(BenchError::new("new data frame inside a fragmented message"));
                }
                if frame.fin {
                    Ok(Some(make_message(opcode, frame.payload)))
                } else {
                    self.fragments = Some((opcode, BytesMut::from(&frame.payload[..])));
                    Ok(None)
                }
            }
        }
    }
}

fn make_message(opcode: u8, payload: Bytes) -> WsMessage {
    if opcode == wsframe::OP_BINARY {
        WsMessage::Binary(payload)
    } else {
        WsMessage::Text(payload)
    }
}

fn seed_from(stream: &TcpStream) -> u32 {
    let port = stream.local_addr().map(|a| a.port()).unwrap_or(1);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(7);
    nanos ^ (u32::from(port) << 16) ^ u32::from(port)
}

/// Length of the HTTP head (through the blank line), when complete.
pub fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// Checks a `101 Switching Protocols` answer with the right `Sec-WebSocket-Accept`; returns whether it
/// accepted permessage-deflate.
pub fn check_upgrade_response(head: &[u8], key: &str) -> Result<bool> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(BenchError::new("malformed websocket upgrade response")),
    }
    let code = response.code.unwrap_or(0);
    if code != 101 {
        return Err(BenchError::new(format!("websocket upgrade refused with HTTP {code}")));
    }
    let expected = switchyard_protocol::websocket::accept_key(key.as_bytes());
    let accept = response.headers.iter().find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept")).map(|h| h.value);
    if accept != Some(expected.as_bytes()) {
        return Err(BenchError::new("wrong Sec-WebSocket-Accept"));
    }
    let deflate = response.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && std::str::from_utf8(h.value).is_ok_and(|v| v.trim_start().starts_with("permessage-deflate"))
    });
    Ok(deflate)
}

/// The Socket.IO parser a client speaks: JSON text packets (`42[...]`) or `socket.io-msgpack-parser`
/// binary packets (the server must be started with the same, e.g. `SWITCHYARD_SOCKETIO_PARSER=msgpack`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum WireParser {
    #[default]
    Json,
    Msgpack,
}

/// An Engine.IO message seen by a Socket.IO client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EioEvent {
    /// A `4` message: the Socket.IO packet text after the `4`; with the msgpack parser, a binary
    /// message (the whole msgpack packet).
    Message(Bytes),
    /// Anything else the caller may care about (`0` open, `3probe`, `6` noop ...).
    Other(engine::Packet),
    /// A binary attachment of a JSON BINARY_EVENT, by its length (the benchmark only counts it).
    Attachment(usize),
}

/// A Socket.IO client connected to namespace `/` over WebSocket.
pub struct SioClient {
    pub ws: WsConn,
    pub parser: WireParser,
}

impl SioClient {
    /// Engine.IO handshake over a direct WebSocket, then the Socket.IO CONNECT to `/`.
    pub async fn connect(target: &Target) -> Result<SioClient> {
        let ws = WsConn::connect(target, "/socket.io/?EIO=4&transport=websocket").await?;
        let mut client = SioClient { ws, parser: target.parser };
        match client.next_eio().await? {
            EioEvent::Other(packet) if packet.kind == PacketType::Open => {
                let PacketData::Text(text) = &packet.data else {
                    return Err(BenchError::new("open packet without a body"));
                };
                parse_open_sid(text)?;
            }
            other => return Err(BenchError::new(format!("expected an Engine.IO open packet, got {other:?}"))),
        }
        match client.parser {
            WireParser::Json => client.ws.send_text(target.connect_packet()).await?,
            WireParser::Msgpack => {
                let mut connect = Vec::new();
                let auth = target.connect_auth();
                socketio_msgpack::encode_control(socketio::PacketType::Connect, "/", auth.as_ref(), &mut connect);
                client.ws.send_binary(&connect).await?;
            }
        }
        client.wait_connect_reply().await?;
        Ok(client)
    }

    /// Waits for the Socket.IO CONNECT reply on `/` (skipping anything else the server sends first).
    pub async fn wait_connect_reply(&mut self) -> Result<()> {
        loop {
            if let EioEvent::Message(text) = self.next_eio().await? {
                match decode_packet(self.parser, &text) {
                    Ok(packet) if packet.nsp == "/" => match packet.kind {
                        socketio::PacketType::Connect => return Ok(()),
                        socketio::PacketType::ConnectError => {
                            return Err(BenchError::new(format!(
                                "connect refused: {}",
                                packet.data.unwrap_or(Value::Null)
                            )))
                        }
                        _ => {}
                    },
                    Ok(_) => {}
                    Err(err) => return Err(err),
                }
            }
        }
    }

    /// The next Engine.IO packet other than a ping (pings are answered with a pong here).
    pub async fn next_eio(&mut self) -> Result<EioEvent> {
        loop {
            let message = self.ws.next_message().await?;
            if let Some(event) = self.on_message(message).await? {
                return Ok(event);
            }
        }
    }

    /// Like `next_eio` but only from bytes already read; `None` when more must be read.
    pub async fn try_next_eio(&mut self) -> Result<Option<EioEvent>> {
        while let Some(message) = self.ws.try_next().await? {
            if let Some(event) = self.on_message(message).await? {
                return Ok(Some(event));
            }
        }
        Ok(None)
    }

    async fn on_message(&mut self, message: WsMessage) -> Result<Option<EioEvent>> {
        match message {
            WsMessage::Text(text) => {
                // Fast path for the hot case: a Socket.IO packet inside an Engine.IO message.
                if text.first() == Some(&b'4') {
                    return Ok(Some(EioEvent::Message(text.slice(1..))));
                }
                let packet =
                    engine::decode_text(text).map_err(|err| BenchError::new(format!("bad Engine.IO packet: {err}")))?;
                match packet.kind {
                    PacketType::Ping => {
                        self.ws.send_text(b"3").await?;
                        Ok(None)
                    }
                    PacketType::Close => Err(BenchError::closed("server sent an Engine.IO close")),
                    _ => Ok(Some(EioEvent::Other(packet))),
                }
            }
            // Each msgpack packet is one binary message; a JSON binary attachment follows its text packet.
            WsMessage::Binary(data) => Ok(Some(match self.parser {
                WireParser::Msgpack => EioEvent::Message(data),
                WireParser::Json => EioEvent::Attachment(data.len()),
            })),
        }
    }

    /// Sends a Socket.IO event on `/`: `42[<args>]`, or `42<id>[<args>]` when an ack is wanted.
    pub async fn emit(&mut self, args: &Value, ack_id: Option<u64>) -> Result<()> {
        match self.parser {
            WireParser::Json => {
                let mut text = BytesMut::with_capacity(64);
                encode_event(args, ack_id, &mut text);
                self.ws.send_text(&text).await
            }
            WireParser::Msgpack => self.ws.send_binary(&encode_event_msgpack(args, ack_id)).await,
        }
    }

    /// Appends the masked frames of an event on `/` to `out` (for senders batching many messages),
    /// asking for an ack with `ack_id`; placeholders in `args` stand for `binary` (JSON: a
    /// BINARY_EVENT and one frame per attachment; msgpack: one frame, binary inline).
    pub fn frame_event_into(&mut self, args: &Value, binary: &[Bytes], ack_id: Option<u64>, out: &mut BytesMut) {
        match self.parser {
            WireParser::Json => {
                let mut text = BytesMut::with_capacity(64);
                text.extend_from_slice(b"4");
                let kind =
                    if binary.is_empty() { socketio::PacketType::Event } else { socketio::PacketType::BinaryEvent };
                let packet = socketio::Packet {
                    kind,
                    nsp: "/".to_owned(),
                    id: ack_id,
                    data: Some(args.clone()),
                    attachments: binary.to_vec(),
                };
                socketio::encode(&packet, &mut text);
                self.ws.frame_text_into(&text, out);
                for attachment in binary {
                    self.ws.frame_binary_into(attachment, out);
                }
            }
            WireParser::Msgpack => {
                let packet = socketio::Packet {
                    kind: socketio::PacketType::Event,
                    nsp: "/".to_owned(),
                    id: ack_id,
                    data: Some(args.clone()),
                    attachments: binary.to_vec(),
                };
                let mut data = Vec::with_capacity(64);
                socketio_msgpack::encode(&packet, &mut data);
                self.ws.frame_binary_into(&data, out);
            }
        }
    }

    /// Reads until the ack `ack_id` arrives (other packets are ignored) and returns its data.
    pub async fn wait_ack(&mut self, ack_id: u64) -> Result<Value> {
        loop {
            if let EioEvent::Message(text) = self.next_eio().await? {
                if let Some((id, data)) = decode_ack_with(self.parser, &text)? {
                    if id == ack_id {
                        return Ok(data);
                    }
                }
            }
        }
    }
}

/// The sid of an Engine.IO open packet body.
pub fn parse_open_sid(body: &[u8]) -> Result<String> {
    let open: Value = serde_json::from_slice(body).map_err(|err| BenchError::new(format!("bad open packet: {err}")))?;
    open.get("sid").and_then(Value::as_str).map(str::to_owned).ok_or_else(|| BenchError::new("open packet without sid"))
}

/// Writes the Engine.IO message for a Socket.IO EVENT on `/`: `42[..]` or `42<id>[..]`.
pub fn encode_event(args: &Value, ack_id: Option<u64>, out: &mut BytesMut) {
    out.extend_from_slice(b"4");
    let packet = socketio::Packet {
        kind: socketio::PacketType::Event,
        nsp: "/".to_owned(),
        id: ack_id,
        data: Some(args.clone()),
        attachments: Vec::new(),
    };
    socketio::encode(&packet, out);
}

/// A msgpack EVENT on `/` with `args` (`[event, ...]`) as data.
pub fn encode_event_msgpack(args: &Value, ack_id: Option<u64>) -> Vec<u8> {
    let packet = socketio::Packet {
        kind: socketio::PacketType::Event,
        nsp: "/".to_owned(),
        id: ack_id,
        data: Some(args.clone()),
        attachments: Vec::new(),
    };
    let mut out = Vec::with_capacity(64);
    socketio_msgpack::encode(&packet, &mut out);
    out
}

/// Decodes one Socket.IO packet (the text after the Engine.IO `4`, or a msgpack binary message).
pub fn decode_packet(parser: WireParser, data: &[u8]) -> Result<socketio::Packet> {
    match parser {
        WireParser::Json => {
            let text = std::str::from_utf8(data).map_err(|_| BenchError::new("non UTF-8 Socket.IO packet"))?;
            let mut decoder = socketio::Decoder::default();
            match decoder.decode_text(text) {
                Ok(Some(packet)) => Ok(packet),
                Ok(None) => Err(BenchError::new("binary packets are not used by the benchmark")),
                Err(err) => Err(BenchError::new(format!("bad Socket.IO packet: {err}"))),
            }
        }
        WireParser::Msgpack => socketio_msgpack::decode(data, socketio::DEFAULT_MAX_ATTACHMENTS)
            .map_err(|err| BenchError::new(format!("bad msgpack Socket.IO packet: {err}"))),
    }
}

/// `decode_ack` for either parser.
pub fn decode_ack_with(parser: WireParser, data: &[u8]) -> Result<Option<(u64, Value)>> {
    match parser {
        WireParser::Json => decode_ack(data),
        WireParser::Msgpack => {
            let packet = decode_packet(parser, data)?;
            if packet.kind != socketio::PacketType::Ack || packet.nsp != "/" {
                return Ok(None);
            }
            let id = packet.id.ok_or_else(|| BenchError::new("ack without an id"))?;
            Ok(Some((id, packet.data.unwrap_or(Value::Null))))
        }
    }
}

/// `Some((id, data))` when `text` (a Socket.IO packet, after the Engine.IO `4`) is an ACK on `/`.
pub fn decode_ack(text: &[u8]) -> Result<Option<(u64, Value)>> {
    if text.first() != Some(&b'3') {
        return Ok(None);
    }
    let text = std::str::from_utf8(text).map_err(|_| BenchError::new("non UTF-8 ack"))?;
    let mut decoder = socketio::Decoder::default();
    match decoder.decode_text(text) {
        Ok(Some(packet)) if packet.kind == socketio::PacketType::Ack && packet.nsp == "/" => {
            let id = packet.id.ok_or_else(|| BenchError::new("ack without an id"))?;
            Ok(Some((id, packet.data.unwrap_or(Value::Null))))
        }
        Ok(_) => Ok(None),
        Err(err) => Err(BenchError::new(format!("bad ack packet: {err}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn encodes_events_with_and_without_ack_ids() {
        let mut out = BytesMut::new();
        encode_event(&json!(["join", "room"]), None, &mut out);
        assert_eq!(&out[..], b"42[\"join\",\"room\"]");
        out.clear();
        encode_event(&json!(["echo", "x"]), Some(17), &mut out);
        assert_eq!(&out[..], b"4217[\"echo\",\"x\"]");
    }

    #[test]
    fn decodes_acks_and_ignores_other_packets() {
        assert_eq!(decode_ack(b"317[\"x\"]").unwrap(), Some((17, json!(["x"]))));
        assert_eq!(decode_ack(b"2[\"msg\",\"x\"]").unwrap(), None);
        assert_eq!(decode_ack(b"3/admin,1[1]").unwrap(), None);
        assert!(decode_ack(b"3[\"no id\"]").is_err());
        assert!(decode_ack(b"31[oops").is_err());
    }

    #[test]
    fn msgpack_events_and_acks() {
        let event = encode_event_msgpack(&json!(["echo", "x"]), Some(17));
        let packet = decode_packet(WireParser::Msgpack, &event).unwrap();
        assert_eq!(
            (packet.kind, packet.id, packet.data),
            (socketio::PacketType::Event, Some(17), Some(json!(["echo", "x"])))
        );
        let mut ack = Vec::new();
        socketio_msgpack::encode_message("/", None, &[json!("x")], &[], Some(17), &mut ack);
        assert_eq!(decode_ack_with(WireParser::Msgpack, &ack).unwrap(), Some((17, json!(["x"]))));
        assert_eq!(decode_ack_with(WireParser::Msgpack, &event).unwrap(), None);
        assert!(decode_ack_with(WireParser::Msgpack, b"31[\"x\"]").is_err());
        assert_eq!(decode_ack_with(WireParser::Json, b"317[\"x\"]").unwrap(), Some((17, json!(["x"]))));
    }

    #[test]
    fn reads_the_open_packet_sid() {
        assert_eq!(parse_open_sid(br#"{"sid":"abc","upgrades":[],"pingInterval":25000}"#).unwrap(), "abc");
        assert!(parse_open_sid(br#"{"upgrades":[]}"#).is_err());
        assert!(parse_open_sid(b"nope").is_err());
    }

    #[test]
    fn checks_the_upgrade_answer() {
        // The RFC 6455 example key and accept value.
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let good = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert_eq!(check_upgrade_response(good, key).ok(), Some(false));
        let deflate = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\
                        Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n\r\n";
        assert_eq!(check_upgrade_response(deflate, key).ok(), Some(true));
        let wrong = b"HTTP/1.1 101 Switching Protocols\r\nSec-WebSocket-Accept: nope\r\n\r\n";
        assert!(check_upgrade_response(wrong, key).is_err());
        let refused = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert!(check_upgrade_response(refused, key).is_err());
    }

    #[test]
    fn finds_the_end_of_an_http_head() {
        assert_eq!(find_head_end(b"HTTP/1.1 101 OK\r\n\r\n\x81\x01x"), Some(19));
        assert_eq!(find_head_end(b"HTTP/1.1 101 OK\r\n"), None);
    }
}
