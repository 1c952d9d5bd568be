//! The WebSocket transport: the HTTP upgrade, the probe/upgrade dance for a polling session, and the
//! one task per connection that reads frames, flushes the outgoing queue and drives heartbeats.
//!
//! No buffer is held while a connection is idle: reads go through a stack buffer and only a partial
//! frame is kept; the outgoing queue is taken whole and written with vectored writes.

use crate::connection::{CloseReason, Connection, Outgoing, TransportKind};
use crate::frame::Frame;
use crate::http_util::{self, Body, EngineError};
use crate::service::{Engine, Session};
use crate::stats::EngineStats;
use crate::Handler;
use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use switchyard_protocol::deflate::{self, Agreed, DeflatePolicy};
use switchyard_protocol::engine::{self as eio, PacketData, PacketType};
use switchyard_protocol::websocket::{self as ws, FrameDecoder, Message, OpCode};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// Frames written with one vectored write at most.
const MAX_IOVECS: usize = 64;
/// Stack buffer for one read.
const READ_CHUNK: usize = 8 * 1024;

fn header_has_token(req_headers: &http::HeaderMap, name: header::HeaderName, token: &str) -> bool {
    req_headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// A `Sec-WebSocket-Key` must be 16 bytes in base64 (RFC 6455 4.1): 22 base64 characters and `==`,
/// the test Node's `ws` applies; anything else is refused with 400.
fn is_valid_key(key: &HeaderValue) -> bool {
    let key = key.as_bytes();
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22].iter().all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
}

fn bad_upgrade(cors: Option<&str>) -> Response<Body> {
    http_util::error_response(EngineError::BadRequest, cors)
}

/// Answers a WebSocket upgrade request (a new connection, or the upgrade of polling session `session`).
pub(crate) fn upgrade<H: Handler, B>(
    engine: Arc<Engine<H>>,
    mut req: Request<B>,
    session: Option<Arc<Session<H::Client>>>,
    cors: Option<&str>,
) -> Response<Body> {
    let headers = req.headers();
    let key = match headers.get(header::SEC_WEBSOCKET_KEY) {
        Some(key)
            if header_has_token(headers, header::UPGRADE, "websocket")
                && header_has_token(headers, header::CONNECTION, "upgrade")
                && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13")
                && is_valid_key(key) =>
        {
            key.clone()
        }
        _ => return bad_upgrade(cors),
    };
    if let Some(session) = &session {
        // One upgrade attempt at a time, and only from polling.
        let allowed = session.conn.with_state(|s| {
            if s.transport != TransportKind::Polling || s.upgrade_attempt || s.closed.is_some() {
                false
            } else {
                s.upgrade_attempt = true;
                true
            }
        });
        if !allowed {
            // As Node does: accept the WebSocket, then close it at once.
            let on_upgrade = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                if let Ok(upgraded) = on_upgrade.await {
                    let mut io = TokioIo::new(upgraded);
                    let mut close = BytesMut::new();
                    ws::encode_close(1000, &mut close);
                    let _ = io.write_all(&close).await;
                    let _ = io.shutdown().await;
                }
            });
            return switching_protocols(&key, None);
        }
    }
    let deflate = negotiate_deflate(&engine.config, req.headers());
    let extensions = deflate.as_ref().map(|(_, answer)| answer.clone());
    let deflate = deflate.map(|(agreed, _)| agreed);
    let open_req = session.is_none().then(|| Engine::<H>::open_request(&req, TransportKind::WebSocket));
    let guard = req.extensions().get::<crate::limits::ConnectionGuard>().cloned();
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                tracing::debug!(error = %e, "WebSocket upgrade failed");
                if let Some(session) = session {
                    session.conn.with_state(|s| s.upgrade_attempt = false);
                }
                return;
            }
        };
        let (conn, client, upgrading) = match (session, open_req) {
            (Some(session), _) => (session.conn.clone(), session.client.clone(), true),
            (None, Some(open_req)) => {
                let (conn, client) = engine.open(TransportKind::WebSocket, open_req);
                (conn, client, false)
            }
            (None, None) => return,
        };
        if deflate.is_some() {
            EngineStats::add(&engine.stats.deflate_connections, 1);
        }
        let task = WsTask { engine, conn, client, upgrading, deflate, decoder: FrameDecoder::new(0), _guard: guard };
        match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(parts) => {
                // Copy what hyper had read ahead, then drop its read buffer: keeping a slice of it would
                // pin hyper's whole buffer for the life of the connection.
                let pending = BytesMut::from(&parts.read_buf[..]);
                drop(parts.read_buf);
                let tcp = parts.io.into_inner();
                let _ = tcp.set_nodelay(true);
                // A task of its own, so the long-lived future holds only the connection loop, not the
                // state of the upgrade that preceded it.
                tokio::spawn(task.serve_tcp(tcp, pending));
            }
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(parts) => {
                    // wss: the same, over the TLS stream (hyper read ahead decrypted bytes).
                    let pending = BytesMut::from(&parts.read_buf[..]);
                    drop(parts.read_buf);
                    let tls = parts.io.into_inner();
                    let (rd, wr) = tokio::io::split(tls);
                    tokio::spawn(task.serve(rd, wr, pending));
                }
                Err(upgraded) => {
                    // Any other stream: `Upgraded` itself replays what hyper had read ahead.
                    tracing::debug!("upgraded connection of an unknown type: using the generic path");
                    let (rd, wr) = tokio::io::split(TokioIo::new(upgraded));
                    tokio::spawn(task.serve(rd, wr, BytesMut::new()));
                }
            },
        }
    });
    switching_protocols(&key, extensions)
}

/// permessage-deflate for this upgrade, when it is on and the client offers something acceptable:
/// what was agreed and the `Sec-WebSocket-Extensions` answer.
fn negotiate_deflate(config: &crate::EngineConfig, headers: &http::HeaderMap) -> Option<(Agreed, String)> {
    if !config.per_message_deflate {
        return None;
    }
    let policy = DeflatePolicy { client_context_takeover: config.per_message_deflate_client_context_takeover };
    let offers = headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
    let agreed = deflate::negotiate(offers.iter().map(HeaderValue::as_bytes), policy);
    if agreed.is_none() && offers.iter().next().is_some() {
        tracing::debug!(offers = ?offers.iter().collect::<Vec<_>>(), "no acceptable permessage-deflate offer: uncompressed");
    }
    agreed
}

fn switching_protocols(key: &HeaderValue, extensions: Option<String>) -> Response<Body> {
    let mut res = Response::new(Body::default());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = res.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(accept) = HeaderValue::from_str(&ws::accept_key(key.as_bytes())) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    if let Some(extensions) = extensions.and_then(|e| HeaderValue::from_str(&e).ok()) {
        h.insert(header::SEC_WEBSOCKET_EXTENSIONS, extensions);
    }
    res
}

struct WsTask<H: Handler> {
    engine: Arc<Engine<H>>,
    conn: Arc<Connection>,
    client: Arc<H::Client>,
    /// True while this WebSocket is only a probe for a polling session.
    upgrading: bool,
    /// permessage-deflate, when negotiated.
    deflate: Option<Agreed>,
    decoder: FrameDecoder,
    /// Keeps the TCP connection counted by its per-IP limit for the life of the WebSocket.
    _guard: Option<crate::limits::ConnectionGuard>,
}

/// Why the read loop stopped.
enum Stop {
    Closed(CloseReason),
    /// Send a WebSocket close frame with this code, then close for `reason`.
    Fail(u16, CloseReason),
}

impl<H: Handler> WsTask<H> {
    // The long-lived future of a connection is the largest part of an idle connection, so its entry
    // points are plain functions returning an `async move` block over their arguments: an `async fn`
    // would keep each argument twice (as the argument and as the local it is moved into).

    /// The connection's life on a plain TCP stream, split in place (no `Arc` of the owned halves).
    #[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
    fn serve_tcp(mut self, mut tcp: TcpStream, mut rbuf: BytesMut) -> impl Future<Output = ()> + Send {
        async move {
            let (mut rd, mut wr) = tcp.split();
            self.run(&mut rd, &mut wr, &mut rbuf).await;
        }
    }

    /// The connection's life on any other stream, already split.
    #[allow(clippy::manual_async_fn)] // deliberately not an `async fn`: see above
    fn serve<R, W>(mut self, mut rd: R, mut wr: W, mut rbuf: BytesMut) -> impl Future<Output = ()> + Send
    where
        R: AsyncRead + Unpin + Send,
        W: AsyncWrite + Unpin + Send,
    {
        async move { self.run(&mut rd, &mut wr, &mut rbuf).await }
    }

    async fn run<R, W>(&mut self, rd: &mut R, wr: &mut W, rbuf: &mut BytesMut)
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        // The '4' prefix and a little slack on top of the Engine.IO payload limit.
        let max_message = self.engine.config.max_payload + 16;
        self.decoder = match self.deflate {
            // A compressed message may inflate to no more than an uncompressed one may be long.
            Some(agreed) => FrameDecoder::with_deflate(max_message, agreed.client_context_takeover),
            None => FrameDecoder::new(max_message),
        };
        // No timer lives in this (long-lived) future: the engine's heartbeat task drives the heartbeat
        // of an open connection, and a probe's upgrade deadline is a boxed `Sleep` that only a probe
        // has (see `Engine::drive_heartbeat`).
        let mut probe_timer = self.upgrading.then(|| Box::pin(tokio::time::sleep(self.engine.config.upgrade_timeout)));
        if !self.upgrading {
            self.engine.drive_heartbeat(&self.conn);
            self.start_coalescing();
        }
        let mut control: Vec<Bytes> = Vec::new();
        // Bytes that came with the upgrade request (e.g. the `2probe` frame in the same TCP segment)
        // are processed before the first read: nothing else would wake the loop for them.
        let mut pending_input = !rbuf.is_empty();
        let stop = loop {
            let upgrading = self.upgrading;
            let mut stop = None;
            if std::mem::take(&mut pending_input) {
                stop = self.process_input(rbuf, &mut control);
            } else {
                tokio::select! {
                    biased;
                    read = read_some(rd, rbuf) => match read {
                        Ok(0) => stop = Some(Stop::Closed(CloseReason::TransportClose)),
                        Ok(_) => stop = self.process_input(rbuf, &mut control),
                        Err(_) => stop = Some(Stop::Closed(CloseReason::TransportError)),
                    },
                    // Frames to write; or, for a probe, the end of its polling session (closed, timed
                    // out), which closes the probe at once, not at the upgrade timeout.
                    _ = wake_or_close(&self.conn, upgrading) => {}
                    // A probe that did not upgrade in time fails; the session goes on polling.
                    _ = expired(&mut probe_timer) => stop = Some(Stop::Closed(CloseReason::TransportError)),
                }
            }
            if !self.upgrading && probe_timer.is_some() {
                // The probe upgraded: this task now owns the connection and its heartbeat.
                probe_timer = None;
                self.engine.drive_heartbeat(&self.conn);
                self.start_coalescing();
            }
            if rbuf.is_empty() {
                // Idle connections keep no read buffer. Capacity alone does not tell: once the decoder
                // has split every message off, `rbuf` has no capacity left but still shares the read's
                // allocation (and its shared header), which it would keep for the life of the connection.
                *rbuf = BytesMut::new();
            }
            if !control.is_empty() {
                let frames: Vec<Bytes> = std::mem::take(&mut control);
                if write_all(wr, &frames).await.is_err() {
                    break Stop::Closed(CloseReason::TransportError);
                }
            }
            if let Some(stop) = stop {
                break stop;
            }
            if self.upgrading {
                if self.conn.is_closed() {
                    break Stop::Closed(CloseReason::ForcedClose);
                }
                continue;
            }
            let mut failed = None;
            // Declared here, not kept in the task: an idle connection holds no write buffer.
            let mut out = Outgoing::default();
            while self.conn.take_outgoing(&mut out) {
                if self.deflate.is_some() {
                    let threshold = self.engine.config.per_message_deflate_threshold;
                    let stats = &self.engine.stats;
                    for frame in out.frames.iter_mut() {
                        *frame = frame.for_deflate(threshold, &stats.deflate_compressions);
                    }
                    let deflated = out.frames.iter().filter(|f| f.is_deflated()).count();
                    EngineStats::add(&stats.frames_deflated, deflated as u64);
                }
                // Boxed (one allocation per flush, not per frame): kept inline, the writes' states
                // made the connection's future, and so every idle connection's task, a size class larger.
                let mut write = Box::pin(async {
                    write_frames(&mut *wr, &out.frames).await?;
                    // The small frames: the full write buffers in one vectored write, then the last.
                    write_frames(&mut *wr, &out.full).await?;
                    if !out.bytes.is_empty() {
                        wr.write_all(&out.bytes).await?;
                    }
                    Ok::<(), io::Error>(())
                });
                // A client that stops reading must not pin this task in a write: the close of a slow
                // client, a ping timeout (the heartbeat task keeps pinging meanwhile), or a write
                // stalled for a heartbeat window ends the connection. (A server close waits for the
                // write: a graceful shutdown bounds it with its drain timeout.) The stall timer is
                // made only once the write has to wait, which nearly none do, and is boxed so the
                // connection's idle future has no room for it.
                let stall_limit = self.engine.config.ping_interval + self.engine.config.ping_timeout;
                let mut stall: Option<Pin<Box<tokio::time::Sleep>>> = None;
                let written = tokio::select! {
                    biased;
                    written = &mut write => written,
                    _ = closed(&self.conn) => Err(io::Error::from(io::ErrorKind::BrokenPipe)),
                    _ = std::future::poll_fn(|cx| {
                        stall.get_or_insert_with(|| Box::pin(tokio::time::sleep(stall_limit))).as_mut().poll(cx)
                    }) => Err(io::ErrorKind::TimedOut.into()),
                };
                if let Err(e) = written {
                    let reason = match (self.conn.closed_reason(), e.kind()) {
                        (Some(reason), _) => reason,
                        (None, io::ErrorKind::TimedOut) => {
                            tracing::warn!(sid = %self.conn.sid(), "write stalled past the heartbeat window: closing");
                            CloseReason::SlowClient
                        }
                        (None, _) => CloseReason::TransportError,
                    };
                    failed = Some(Stop::Closed(reason));
                    break;
                }
                EngineStats::add(&self.engine.stats.frames_sent, u64::from(out.count));
                EngineStats::add(&self.engine.stats.bytes_sent, out.len() as u64);
            }
            if let Some(stop) = failed {
                break stop;
            }
            if let Some(reason) = self.conn.closed_reason() {
                // 1001 "going away" on shutdown: the client reconnects (to another node) by itself.
                let code = if reason == CloseReason::ServerShutdown { 1001 } else { 1000 };
                break Stop::Fail(code, reason);
            }
        };
        if self.upgrading {
            // The probe failed or timed out: the session goes on polling.
            self.conn.with_state(|s| {
                s.upgrading = false;
                s.upgrade_attempt = false;
            });
            self.conn.writer_wake.notify_one();
            let mut close = BytesMut::new();
            ws::encode_close(1000, &mut close);
            let _ = write_all(wr, &[close.freeze()]).await;
            let _ = wr.shutdown().await;
            return;
        }
        let reason = match stop {
            Stop::Closed(reason) => reason,
            Stop::Fail(code, reason) => {
                let mut close = BytesMut::new();
                ws::encode_close(code, &mut close);
                let _ = write_all(wr, &[close.freeze()]).await;
                reason
            }
        };
        let _ = wr.shutdown().await;
        self.engine.finish(&self.conn, &self.client, reason);
    }

    /// From now on small frames are copied into the connection's write buffer, unless this socket
    /// compresses (each frame is then compressed, or not, on its own when written).
    fn start_coalescing(&self) {
        if self.deflate.is_none() {
            self.conn.with_state(|s| s.coalesce = true);
        }
    }

    /// Decodes every complete WebSocket message in `rbuf`.
    fn process_input(&mut self, rbuf: &mut BytesMut, control: &mut Vec<Bytes>) -> Option<Stop> {
        loop {
            let message = match self.decoder.decode(rbuf) {
                Ok(Some(message)) => message,
                Ok(None) => return None,
                Err(e) => {
                    tracing::debug!(sid = %self.conn.sid(), error = %e, "invalid WebSocket frame");
                    EngineStats::add(&self.engine.stats.protocol_errors, 1);
                    let reason =
                        if e == ws::FrameError::TooBig { CloseReason::TransportError } else { CloseReason::ParseError };
                    return Some(Stop::Fail(e.close_code(), reason));
                }
            };
            let packet = match message {
                Message::Text(text) => match crate::eio3::decode_ws_text(&self.conn, text) {
                    Ok(packet) => packet,
                    Err(e) => {
                        tracing::debug!(sid = %self.conn.sid(), error = %e, "invalid Engine.IO packet");
                        EngineStats::add(&self.engine.stats.protocol_errors, 1);
                        return Some(Stop::Fail(1000, CloseReason::ParseError));
                    }
                },
                Message::Binary(data) => match crate::eio3::decode_ws_binary(&self.conn, data) {
                    Ok(packet) => packet,
                    Err(e) => {
                        tracing::debug!(sid = %self.conn.sid(), error = %e, "invalid Engine.IO binary packet");
                        EngineStats::add(&self.engine.stats.protocol_errors, 1);
                        return Some(Stop::Fail(1000, CloseReason::ParseError));
                    }
                },
                Message::Ping(data) => {
                    let mut pong = BytesMut::new();
                    ws::encode_frame(OpCode::Pong, &data, &mut pong);
                    control.push(pong.freeze());
                    continue;
                }
                Message::Pong(_) => continue,
                // Answer the close handshake (RFC 6455 5.5.1) before dropping the connection.
                Message::Close(code) => return Some(Stop::Fail(code.unwrap_or(1000), CloseReason::TransportClose)),
            };
            if self.upgrading {
                if let Some(stop) = self.on_probe_packet(packet, control) {
                    return Some(stop);
                }
                continue;
            }
            if !self.engine.on_packet(&self.conn, &self.client, packet) {
                // on_packet closed the connection; the queue is flushed before the socket closes.
                return None;
            }
        }
    }

    /// Packets on a WebSocket that is still a probe for a polling session.
    fn on_probe_packet(&mut self, packet: eio::Packet, control: &mut Vec<Bytes>) -> Option<Stop> {
        match (packet.kind, &packet.data) {
            (PacketType::Ping, PacketData::Text(t)) if &t[..] == b"probe" => {
                control.push(Frame::probe_pong().ws_bytes().clone());
                self.conn.with_state(|s| s.upgrading = true);
                // A pending poll answers with a noop so the client can send the upgrade packet.
                self.conn.writer_wake.notify_one();
                None
            }
            (PacketType::Upgrade, _) => {
                let probed = self.conn.with_state(|s| {
                    if !s.upgrading || s.closed.is_some() {
                        return false;
                    }
                    s.upgrading = false;
                    s.transport = TransportKind::WebSocket;
                    true
                });
                if !probed {
                    return Some(Stop::Fail(1002, CloseReason::ParseError));
                }
                self.upgrading = false;
                EngineStats::add(&self.engine.stats.upgrades, 1);
                self.engine.handler.on_upgrade(&self.client);
                // The pending poll (if any) ends with a noop; the session task hands over to us.
                self.conn.writer_wake.notify_one();
                self.conn.owner_wake.notify_one();
                None
            }
            _ => {
                tracing::debug!(sid = %self.conn.sid(), "unexpected packet before upgrade");
                None
            }
        }
    }
}

/// Wakes an open connection's writer when it has frames to send; a probe (`upgrading`), whose
/// `writer_wake` belongs to the pending poll, wakes when its polling session closes instead. One
/// future for both keeps the connection's idle future small.
async fn wake_or_close(conn: &Connection, upgrading: bool) {
    if upgrading {
        conn.wait_closed().await
    } else {
        conn.writer_wake.notified().await
    }
}

/// Resolves when `timer` (if any) expires; never without one.
async fn expired(timer: &mut Option<Pin<Box<tokio::time::Sleep>>>) {
    match timer {
        Some(timer) => timer.as_mut().await,
        None => std::future::pending().await,
    }
}

/// Resolves once the connection is closed for a reason that abandons its queue (woken through the
/// writer `Notify`). A close the server chose (forced, shutdown) lets the write in progress finish:
/// what was queued before it is still delivered, then the close frame.
async fn closed(conn: &Connection) {
    loop {
        if conn.closed_reason().is_some_and(|reason| !reason.lingers()) {
            return;
        }
        conn.writer_wake.notified().await;
    }
}

/// Reads once into a stack buffer and appends what arrived to `buf`: nothing is allocated until
/// bytes arrive, and nothing is kept once they are consumed.
fn read_some<'a, R: AsyncRead + Unpin>(rd: &'a mut R, buf: &'a mut BytesMut) -> ReadSome<'a, R> {
    ReadSome { rd, buf }
}

struct ReadSome<'a, R> {
    rd: &'a mut R,
    buf: &'a mut BytesMut,
}

impl<R: AsyncRead + Unpin> Future for ReadSome<'_, R> {
    type Output = io::Result<usize>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let mut stack = [MaybeUninit::<u8>::uninit(); READ_CHUNK];
        let mut read_buf = ReadBuf::uninit(&mut stack);
        ready!(Pin::new(&mut *this.rd).poll_read(cx, &mut read_buf))?;
        let filled = read_buf.filled();
        this.buf.extend_from_slice(filled);
        Poll::Ready(Ok(filled.len()))
    }
}

/// What [`write_frames`] writes: whole WebSocket frames, or write buffers of small frames.
trait WireBytes {
    fn wire_bytes(&self) -> &[u8];
}

impl WireBytes for Frame {
    fn wire_bytes(&self) -> &[u8] {
        self.ws_bytes()
    }
}

impl WireBytes for Vec<u8> {
    fn wire_bytes(&self) -> &[u8] {
        self
    }
}

/// Writes every frame with vectored writes. The iovec array is built on the stack in each `poll`, so
/// it never becomes part of the connection's (long-lived) future.
fn write_frames<'a, W: AsyncWrite + Unpin, F: WireBytes>(wr: &'a mut W, frames: &'a [F]) -> WriteFrames<'a, W, F> {
    WriteFrames { wr, frames, index: 0, offset: 0 }
}

struct WriteFrames<'a, W, F> {
    wr: &'a mut W,
    frames: &'a [F],
    index: usize,
    offset: usize,
}

impl<W: AsyncWrite + Unpin, F: WireBytes> Future for WriteFrames<'_, W, F> {
    type Output = io::Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        while this.index < this.frames.len() {
            let mut slices: [IoSlice<'_>; MAX_IOVECS] = [IoSlice::new(&[]); MAX_IOVECS];
            let mut count = 0;
            for (i, frame) in this.frames[this.index..].iter().take(MAX_IOVECS).enumerate() {
                let bytes = frame.wire_bytes();
                slices[i] = IoSlice::new(if i == 0 { &bytes[this.offset..] } else { bytes });
                count += 1;
            }
            let mut written = ready!(Pin::new(&mut *this.wr).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let remaining = this.frames[this.index].wire_bytes().len() - this.offset;
                if written >= remaining {
                    written -= remaining;
                    this.index += 1;
                    this.offset = 0;
                } else {
                    this.offset += written;
                    written = 0;
                }
            }
        }
        Poll::Ready(Ok(()))
    }
}

async fn write_all<W: AsyncWrite + Unpin>(wr: &mut W, chunks: &[Bytes]) -> io::Result<()> {
    for chunk in chunks {
        wr.write_all(chunk).await?;
    }
    Ok(())
}
