//! HTTP long-polling: the handshake GET, pending GETs that wait for queued packets, POSTs that carry
//! client packets, and the session task that drives heartbeats while a session polls.

use crate::connection::{CloseReason, Connection, Farewell, HeartbeatAction, Protocol, TransportKind};
use crate::frame::Frame;
use crate::http_util::{self, Body, EngineError};
use crate::service::{Engine, Session};
use crate::Handler;
use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

use crate::eio3::TEXT_PLAIN;

/// What a poll answers with.
enum PollReply {
    Frames(Vec<Frame>),
    Noop,
}

/// Marks the session's poll slot busy; closes the session if the poll is dropped before it answers
/// (the client aborted it), as Node does.
struct PollGuard<'a> {
    conn: &'a Arc<Connection>,
    answered: bool,
}

impl Drop for PollGuard<'_> {
    fn drop(&mut self) {
        self.conn.with_state(|s| s.poll_active = false);
        if !self.answered {
            tracing::debug!(sid = %self.conn.sid(), "poll request aborted by the client");
            self.conn.close_with(CloseReason::TransportError, None);
        }
    }
}

/// Clears the POST slot however the request ends.
struct PostGuard<'a>(&'a Arc<Connection>);

impl Drop for PostGuard<'_> {
    fn drop(&mut self) {
        self.0.with_state(|s| s.post_active = false);
    }
}

impl<H: Handler> Engine<H> {
    pub(crate) async fn polling_handshake<B>(self: Arc<Self>, req: Request<B>, cors: Option<&str>) -> Response<Body> {
        let open_req = Self::open_request(&req, TransportKind::Polling);
        let (conn, client) = self.open(TransportKind::Polling, open_req);
        let session = Arc::new(Session { conn: conn.clone(), client: client.clone() });
        self.sessions.write().insert(conn.sid(), session);
        self.count_polling(1);
        let frames = conn.take_queue();
        let response = payload_response(&conn, frames.iter(), cors);
        let engine = self.clone();
        tokio::spawn(async move { engine.run_polling_session(conn, client).await });
        response
    }

    /// A GET on an existing session: answers at once with queued packets, or waits for some.
    pub(crate) async fn poll(&self, session: Arc<Session<H::Client>>, cors: Option<&str>) -> Response<Body> {
        let conn = &session.conn;
        let overlap = conn.with_state(|s| {
            if s.transport == TransportKind::WebSocket {
                return Some(false);
            }
            if s.poll_active {
                return Some(true);
            }
            s.poll_active = true;
            None
        });
        match overlap {
            Some(true) => {
                tracing::debug!(sid = %conn.sid(), "overlapping poll requests: closing session");
                conn.close(CloseReason::TransportError);
                self.forget_if_over(conn);
                return http_util::error_response(EngineError::BadRequest, cors);
            }
            Some(false) => return http_util::error_response(EngineError::BadRequest, cors),
            None => {}
        }
        let mut guard = PollGuard { conn, answered: false };
        let reply = loop {
            let woken = conn.writer_wake.notified();
            let reply = conn.with_state(|s| {
                if s.transport == TransportKind::WebSocket {
                    Some(PollReply::Noop)
                } else if !Connection::queue_is_empty(s) {
                    Some(PollReply::Frames(Connection::take_queue_locked(s)))
                } else if s.closed.is_some() {
                    s.farewell_sent = true;
                    Some(PollReply::Frames(vec![s.farewell.take().map_or_else(Frame::close, Farewell::frame)]))
                } else if s.upgrading {
                    Some(PollReply::Noop)
                } else {
                    None
                }
            });
            if let Some(reply) = reply {
                break reply;
            }
            woken.await;
        };
        guard.answered = true;
        drop(guard);
        if conn.is_closed() {
            // The session is gone before the response that ends it is sent.
            self.forget_if_over(conn);
            conn.owner_wake.notify_one();
        }
        match reply {
            PollReply::Noop => payload_response(conn, &[Frame::noop()], cors),
            PollReply::Frames(frames) if frames.is_empty() => payload_response(conn, &[Frame::close()], cors),
            PollReply::Frames(frames) => payload_response(conn, frames.iter(), cors),
        }
    }

    /// A POST on an existing session: a payload of client packets.
    pub(crate) async fn post<B>(
        &self,
        session: Arc<Session<H::Client>>,
        req: Request<B>,
        cors: Option<&str>,
    ) -> Response<Body>
    where
        B: http_body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let conn = &session.conn;
        let is_binary = req
            .headers()
            .get(header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/octet-stream"));
        if is_binary && conn.protocol() == Protocol::V4 {
            // Only Engine.IO v3 has a binary payload format.
            return http_util::error_response(EngineError::BadRequest, cors);
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|len| len > self.config.max_payload) {
            return http_util::status_response(StatusCode::PAYLOAD_TOO_LARGE, cors);
        }
        if conn.transport() == TransportKind::WebSocket {
            // Upgraded sessions take no more polling requests (Node's transport mismatch check).
            return http_util::error_response(EngineError::BadRequest, cors);
        }
        let overlap = conn.with_state(|s| std::mem::replace(&mut s.post_active, true));
        if overlap {
            tracing::debug!(sid = %conn.sid(), "overlapping POST requests: closing session");
            conn.close(CloseReason::TransportError);
            self.forget_if_over(conn);
            return http_util::error_response(EngineError::BadRequest, cors);
        }
        let _post = PostGuard(conn);
        let limited = http_body_util::Limited::new(req.into_body(), self.config.max_payload);
        let body = match limited.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => {
                return http_util::status_response(StatusCode::PAYLOAD_TOO_LARGE, cors);
            }
            Err(e) => {
                tracing::debug!(sid = %conn.sid(), error = %e, "failed to read POST body");
                conn.close(CloseReason::TransportError);
                self.forget_if_over(conn);
                return http_util::error_response(EngineError::BadRequest, cors);
            }
        };
        let packets = match crate::eio3::decode_post(body, is_binary, conn.protocol()) {
            Ok(packets) => packets,
            Err(e) => {
                tracing::debug!(sid = %conn.sid(), error = %e, "invalid polling payload: closing session");
                crate::stats::EngineStats::add(&self.stats.protocol_errors, 1);
                conn.close(CloseReason::ParseError);
                // Gone before the 400 is sent: the next request with this sid must not find it.
                self.forget_if_over(conn);
                return http_util::error_response(EngineError::BadRequest, cors);
            }
        };
        for packet in packets {
            if !self.on_packet(conn, &session.client, packet) {
                break;
            }
        }
        self.forget_if_over(conn);
        http_util::text_response(Bytes::from_static(b"ok"), "text/html", cors)
    }

    /// Owns a polling session: pings on schedule and ends the session on close. Hands over to the
    /// WebSocket task (and returns) once the session upgrades.
    pub(crate) async fn run_polling_session(self: Arc<Self>, conn: Arc<Connection>, client: Arc<H::Client>) {
        loop {
            let deadline = conn.heartbeat_deadline();
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {}
                _ = conn.owner_wake.notified() => {}
            }
            if conn.transport() == TransportKind::WebSocket {
                self.count_polling(-1);
                return;
            }
            if let Some(reason) = conn.closed_reason() {
                // Packets queued before the close (a DISCONNECT, the close packet) wait for the next
                // poll, for at most a heartbeat window, as in Node; then the session is forgotten.
                // Only a close the server chose waits; a client that closed or failed is gone already.
                let linger = if reason.lingers() {
                    self.config.ping_interval + self.config.ping_timeout
                } else {
                    Duration::ZERO
                };
                let _ = tokio::time::timeout(linger, async {
                    while !conn.with_state(|s| s.farewell_sent && !s.poll_active) {
                        conn.owner_wake.notified().await;
                    }
                })
                .await;
                self.count_polling(-1);
                self.finish(&conn, &client, reason);
                return;
            }
            match conn.heartbeat(Instant::now()) {
                HeartbeatAction::SendPing => {
                    let _ = conn.send(Frame::ping());
                }
                HeartbeatAction::TimedOut => conn.close(CloseReason::PingTimeout),
                HeartbeatAction::WaitUntil(_) => {}
            }
        }
    }
}

/// A poll's answer: `frames` as the connection's protocol encodes a polling payload.
fn payload_response<'a, I>(conn: &Connection, frames: I, cors: Option<&str>) -> Response<Body>
where
    I: IntoIterator<Item = &'a Frame>,
    I::IntoIter: ExactSizeIterator + Clone,
{
    match conn.protocol() {
        Protocol::V4 => http_util::text_response(encode_polling_payload(frames), TEXT_PLAIN, cors),
        protocol => {
            let (body, content_type) = crate::eio3::polling_body(frames, protocol);
            http_util::text_response(body, content_type, cors)
        }
    }
}

/// Joins frames as a polling payload: text as is, binary as `b` + base64, separated by `\x1e`.
fn encode_polling_payload<'a, I>(frames: I) -> Bytes
where
    I: IntoIterator<Item = &'a Frame>,
    I::IntoIter: ExactSizeIterator,
{
    let mut frames = frames.into_iter();
    if frames.len() == 1 {
        let frame = frames.next().expect("one frame");
        if !frame.is_binary() {
            // Zero-copy: the packet bytes after the WebSocket header.
            let start = frame.ws_bytes().len() - frame.payload().len();
            return frame.ws_bytes().slice(start..);
        }
        return join_polling_frames(std::iter::once(frame));
    }
    join_polling_frames(frames)
}

fn join_polling_frames<'a>(frames: impl Iterator<Item = &'a Frame>) -> Bytes {
    let mut out = BytesMut::new();
    for (i, frame) in frames.enumerate() {
        if i > 0 {
            out.put_u8(0x1e);
        }
        if frame.is_binary() {
            out.put_u8(b'b');
            let encoded = base64::engine::general_purpose::STANDARD.encode(frame.payload());
            out.extend_from_slice(encoded.as_bytes());
        } else {
            out.extend_from_slice(frame.payload());
        }
    }
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_joins_text_and_base64_binary() {
        let frames = [Frame::message(b"hello"), Frame::binary(&[1, 2, 3, 4])];
        assert_eq!(&encode_polling_payload(frames.iter())[..], b"4hello\x1ebAQIDBA==");
        assert_eq!(&encode_polling_payload(&[Frame::ping()])[..], b"2");
        assert_eq!(&encode_polling_payload(&[Frame::binary(&[1])])[..], b"bAQ==");
    }
}
