//! Engine.IO over HTTP long-polling: the connect scenario's handshake, Socket.IO CONNECT and upgrade to
//! WebSocket (`2probe` / `3probe` / `5`), and [`PollingClient`], a client that stays on long-polling
//! (the `fanout-polling` and `echo-polling` scenarios: users behind proxies that block WebSocket).

use bytes::{Buf, Bytes, BytesMut};
use switchyard_protocol::engine::{self, PacketData, PacketType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::{find_head_end, parse_open_sid, SioClient, WsConn};
use crate::error::{BenchError, Result};
use crate::net::Target;

const MAX_BODY: usize = 1 << 20;

/// One keep-alive HTTP/1.1 connection.
pub struct HttpConn {
    stream: TcpStream,
    buf: BytesMut,
    host: String,
}

impl HttpConn {
    pub async fn connect(target: &Target) -> Result<HttpConn> {
        Ok(HttpConn { stream: target.connect().await?, buf: BytesMut::with_capacity(1024), host: target.host_header() })
    }

    /// Sends a request and returns the status and the body.
    pub async fn request(&mut self, method: &str, path: &str, body: Option<&[u8]>) -> Result<(u16, Bytes)> {
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.host);
        if let Some(body) = body {
            request.push_str(&format!("Content-Type: text/plain;charset=UTF-8\r\nContent-Length: {}\r\n", body.len()));
        }
        request.push_str("\r\n");
        let mut bytes = request.into_bytes();
        if let Some(body) = body {
            bytes.extend_from_slice(body);
        }
        self.stream.write_all(&bytes).await?;
        self.read_response().await
    }

    async fn fill(&mut self) -> Result<()> {
        self.buf.reserve(4096);
        if self.stream.read_buf(&mut self.buf).await? == 0 {
            return Err(BenchError::closed("server closed the HTTP connection"));
        }
        Ok(())
    }

    async fn read_response(&mut self) -> Result<(u16, Bytes)> {
        let head_len = loop {
            if let Some(len) = find_head_end(&self.buf) {
                break len;
            }
            if self.buf.len() > 16 << 10 {
                return Err(BenchError::new("HTTP response head too large"));
            }
            self.fill().await?;
        };
        let head = self.buf.split_to(head_len);
        let framing = parse_response_head(&head)?;
        let body = match framing.body {
            BodyFraming::Length(len) => {
                if len > MAX_BODY {
                    return Err(BenchError::new("HTTP body too large"));
                }
                while self.buf.len() < len {
                    self.fill().await?;
                }
                self.buf.split_to(len).freeze()
            }
            BodyFraming::Chunked => {
                let mut body = BytesMut::new();
                loop {
                    match decode_chunk(&mut self.buf, &mut body)? {
                        ChunkStep::NeedMore => self.fill().await?,
                        ChunkStep::Progress => {}
                        ChunkStep::Done => break,
                    }
                    if body.len() > MAX_BODY {
                        return Err(BenchError::new("HTTP body too large"));
                    }
                }
                body.freeze()
            }
        };
        Ok((framing.status, body))
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum BodyFraming {
    Length(usize),
    Chunked,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub body: BodyFraming,
}

/// Status and body framing of a response head (no body means a zero length).
pub fn parse_response_head(head: &[u8]) -> Result<ResponseHead> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    match response.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        _ => return Err(BenchError::new("malformed HTTP response head")),
    }
    let status = response.code.unwrap_or(0);
    let mut body = BodyFraming::Length(0);
    for header in response.headers.iter() {
        if header.name.eq_ignore_ascii_case("content-length") {
            let len = std::str::from_utf8(header.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| BenchError::new("bad Content-Length"))?;
            body = BodyFraming::Length(len);
        } else if header.name.eq_ignore_ascii_case("transfer-encoding") && header.value.eq_ignore_ascii_case(b"chunked")
        {
            body = BodyFraming::Chunked;
            break;
        }
    }
    Ok(ResponseHead { status, body })
}

#[derive(Debug, PartialEq, Eq)]
pub enum ChunkStep {
    NeedMore,
    Progress,
    Done,
}

/// Moves one chunk of a chunked body from `buf` into `body`.
pub fn decode_chunk(buf: &mut BytesMut, body: &mut BytesMut) -> Result<ChunkStep> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(ChunkStep::NeedMore);
    };
    let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| BenchError::new("bad chunk size"))?;
    let size_text = size_text.split(';').next().unwrap_or("").trim();
    let size = usize::from_str_radix(size_text, 16).map_err(|_| BenchError::new("bad chunk size"))?;
    if size > MAX_BODY {
        return Err(BenchError::new("chunk too large"));
    }
    let needed = line_end + 2 + size + 2;
    if buf.len() < needed {
        return Ok(ChunkStep::NeedMore);
    }
    buf.advance(line_end + 2);
    body.extend_from_slice(&buf[..size]);
    buf.advance(size + 2);
    Ok(if size == 0 { ChunkStep::Done } else { ChunkStep::Progress })
}

/// The full handshake a browser client does by default: Engine.IO open over polling, Socket.IO CONNECT
/// over polling, then the upgrade to WebSocket. Returns the upgraded Socket.IO client.
pub async fn connect_with_upgrade(target: &Target) -> Result<SioClient> {
    let mut http = HttpConn::connect(target).await?;
    let (status, body) = http.request("GET", "/socket.io/?EIO=4&transport=polling", None).await?;
    expect_ok(status, &body)?;
    let open = engine::decode_payload(body).map_err(|err| BenchError::new(format!("bad polling payload: {err}")))?;
    let sid = match open.first() {
        Some(engine::Packet { kind: PacketType::Open, data: PacketData::Text(text) }) => parse_open_sid(text)?,
        other => return Err(BenchError::new(format!("expected an open packet, got {other:?}"))),
    };
    let session_path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
    let (status, body) = http.request("POST", &session_path, Some(target.connect_packet())).await?;
    expect_ok(status, &body)?;
    // The CONNECT reply arrives on the next poll.
    loop {
        let (status, body) = http.request("GET", &session_path, None).await?;
        expect_ok(status, &body)?;
        let packets =
            engine::decode_payload(body).map_err(|err| BenchError::new(format!("bad polling payload: {err}")))?;
        let mut connected = false;
        for packet in packets {
            match (packet.kind, &packet.data) {
                (PacketType::Message, PacketData::Text(text)) if text.starts_with(b"0") => {
                    connected = true;
                }
                (PacketType::Message, PacketData::Text(text)) if text.starts_with(b"4") => {
                    return Err(BenchError::new("connect refused over polling"));
                }
                (PacketType::Close, _) => return Err(BenchError::closed("session closed during polling handshake")),
                _ => {}
            }
        }
        if connected {
            break;
        }
    }
    let ws = WsConn::connect(target, &format!("/socket.io/?EIO=4&transport=websocket&sid={sid}")).await?;
    let mut client = SioClient { ws, parser: crate::client::WireParser::Json };
    client.ws.send_text(b"2probe").await?;
    loop {
        match client.next_eio().await? {
            crate::client::EioEvent::Other(engine::Packet { kind: PacketType::Pong, data: PacketData::Text(text) })
                if &text[..] == b"probe" =>
            {
                break
            }
            crate::client::EioEvent::Other(engine::Packet { kind: PacketType::Noop, .. }) => {}
            other => return Err(BenchError::new(format!("expected 3probe during upgrade, got {other:?}"))),
        }
    }
    client.ws.send_text(b"5").await?;
    drop(http);
    Ok(client)
}

/// What one poll brought, packet by packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Polled {
    /// A `4` message: the Socket.IO packet text after the `4`.
    Message(Bytes),
    /// A ping: the caller answers it with a pong (`3`) through [`PollPost`].
    Ping,
    /// Anything else (`6` noop ...).
    Other,
}

/// The GET side of a polling session: one keep-alive connection that long-polls.
pub struct PollGet {
    http: HttpConn,
    path: String,
    /// Bytes of response bodies read so far.
    pub bytes_read: u64,
}

impl PollGet {
    /// One long poll: every packet the server had queued (or sends within its poll window). A close
    /// packet is an error, as the session is over.
    pub async fn poll(&mut self) -> Result<Vec<Polled>> {
        let (status, body) = self.http.request("GET", &self.path, None).await?;
        expect_ok(status, &body)?;
        self.bytes_read += body.len() as u64;
        decode_polled(body)
    }
}

/// The POST side of a polling session: a second keep-alive connection, as a browser's pending GET
/// occupies the first.
pub struct PollPost {
    http: HttpConn,
    path: String,
}

impl PollPost {
    /// Sends Engine.IO packets (each with its type digit, e.g. `42[...]` or `3`) in one POST, joined
    /// by the record separator as the polling payload format wants, and waits for the server's `ok`.
    pub async fn send(&mut self, packets: &[&[u8]]) -> Result<()> {
        let body = packets.join(&RECORD_SEPARATOR[..]);
        let (status, answer) = self.http.request("POST", &self.path, Some(&body)).await?;
        expect_ok(status, &answer)
    }
}

const RECORD_SEPARATOR: [u8; 1] = [0x1e];

/// The packets of a polling payload, sorted for the scenarios; a close packet is an error.
pub fn decode_polled(body: Bytes) -> Result<Vec<Polled>> {
    let packets = engine::decode_payload(body).map_err(|err| BenchError::new(format!("bad polling payload: {err}")))?;
    packets
        .into_iter()
        .map(|packet| match (packet.kind, packet.data) {
            (PacketType::Message, PacketData::Text(text)) => Ok(Polled::Message(text)),
            (PacketType::Ping, _) => Ok(Polled::Ping),
            (PacketType::Close, _) => Err(BenchError::closed("server sent an Engine.IO close")),
            _ => Ok(Polled::Other),
        })
        .collect()
}

/// A Socket.IO client on `/` that never upgrades: long-polling GETs on one connection, POSTs on
/// another. JSON parser only (the scenarios that use it refuse `--parser msgpack`).
pub struct PollingClient {
    pub get: PollGet,
    pub post: PollPost,
}

impl PollingClient {
    /// Engine.IO open over polling, Socket.IO CONNECT to `/`, and its reply.
    pub async fn connect(target: &Target) -> Result<PollingClient> {
        let mut http = HttpConn::connect(target).await?;
        let (status, body) = http.request("GET", "/socket.io/?EIO=4&transport=polling", None).await?;
        expect_ok(status, &body)?;
        let open =
            engine::decode_payload(body).map_err(|err| BenchError::new(format!("bad polling payload: {err}")))?;
        let sid = match open.first() {
            Some(engine::Packet { kind: PacketType::Open, data: PacketData::Text(text) }) => parse_open_sid(text)?,
            other => return Err(BenchError::new(format!("expected an open packet, got {other:?}"))),
        };
        let path = format!("/socket.io/?EIO=4&transport=polling&sid={sid}");
        let mut post = PollPost { http: HttpConn::connect(target).await?, path: path.clone() };
        let mut get = PollGet { http, path, bytes_read: 0 };
        post.send(&[target.connect_packet()]).await?;
        loop {
            for polled in get.poll().await? {
                match polled {
                    Polled::Message(text) if text.starts_with(b"0") => {
                        return Ok(PollingClient { get, post });
                    }
                    Polled::Message(text) if text.starts_with(b"4") => {
                        return Err(BenchError::new(format!(
                            "connect refused over polling: {}",
                            String::from_utf8_lossy(&text)
                        )));
                    }
                    Polled::Ping => post.send(&[b"3"]).await?,
                    _ => {}
                }
            }
        }
    }

    /// Waits (polling) for the ack `ack_id`, answering pings; other packets are dropped, so only for
    /// set-up, before anything else is expected.
    pub async fn wait_ack(&mut self, ack_id: u64) -> Result<()> {
        loop {
            for polled in self.get.poll().await? {
                match polled {
                    Polled::Message(text) => {
                        if crate::client::decode_ack(&text)?.is_some_and(|(id, _)| id == ack_id) {
                            return Ok(());
                        }
                    }
                    Polled::Ping => self.post.send(&[b"3"]).await?,
                    Polled::Other => {}
                }
            }
        }
    }
}

/// `42[<args>]` (or `42<id>[<args>]`): an event on `/` as an Engine.IO message, for a polling POST.
pub fn event_packet(args: &serde_json::Value, ack_id: Option<u64>) -> Vec<u8> {
    let mut text = BytesMut::with_capacity(64);
    crate::client::encode_event(args, ack_id, &mut text);
    text.to_vec()
}

fn expect_ok(status: u16, body: &[u8]) -> Result<()> {
    if status == 200 {
        Ok(())
    } else {
        Err(BenchError::new(format!("HTTP {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)]))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorts_the_packets_of_a_poll_and_refuses_a_close() {
        let polled = decode_polled(Bytes::from_static(b"42[\"msg\",\"a\"]\x1e2\x1e6\x1e40")).unwrap();
        assert_eq!(
            polled,
            vec![
                Polled::Message(Bytes::from_static(b"2[\"msg\",\"a\"]")),
                Polled::Ping,
                Polled::Other,
                Polled::Message(Bytes::from_static(b"0")),
            ]
        );
        assert!(decode_polled(Bytes::from_static(b"4x\x1e1")).is_err());
    }

    #[test]
    fn event_packets_are_engine_io_messages() {
        assert_eq!(event_packet(&serde_json::json!(["echo", "x"]), Some(7)), b"427[\"echo\",\"x\"]".to_vec());
        assert_eq!(event_packet(&serde_json::json!(["join", "r"]), None), b"42[\"join\",\"r\"]".to_vec());
    }

    #[test]
    fn reads_content_length_and_chunked_framing() {
        let head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(parse_response_head(head).unwrap(), ResponseHead { status: 200, body: BodyFraming::Length(42) });
        let head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_response_head(head).unwrap().body, BodyFraming::Chunked);
        let head = b"HTTP/1.1 400 Bad Request\r\n\r\n";
        assert_eq!(parse_response_head(head).unwrap().status, 400);
        assert!(parse_response_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n").is_err());
        assert!(parse_response_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn decodes_chunked_bodies_incrementally() {
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n1;ext=1\r\n!\r\n0\r\n\r\n"[..]);
        let mut body = BytesMut::new();
        assert_eq!(decode_chunk(&mut buf, &mut body).unwrap(), ChunkStep::Progress);
        assert_eq!(decode_chunk(&mut buf, &mut body).unwrap(), ChunkStep::Progress);
        assert_eq!(decode_chunk(&mut buf, &mut body).unwrap(), ChunkStep::Done);
        assert_eq!(&body[..], b"hello!");
        assert!(buf.is_empty());

        let mut partial = BytesMut::from(&b"a\r\n01234"[..]);
        assert_eq!(decode_chunk(&mut partial, &mut body).unwrap(), ChunkStep::NeedMore);
        assert_eq!(partial.len(), 8, "nothing consumed until the chunk is whole");
        let mut bad = BytesMut::from(&b"zz\r\n"[..]);
        assert!(decode_chunk(&mut bad, &mut body).is_err());
    }
}
