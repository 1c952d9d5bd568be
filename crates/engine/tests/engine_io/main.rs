//! Engine.IO v4 conformance, written from `docs/engine.io-protocol/v4-current.md`: every packet type,
//! both transports, the upgrade between them, heartbeats, limits and every documented error, checked
//! at the wire level against an in-process echo server.

/// The fixtures, and the steps many of these tests share.
mod common {
    use switchyard_engine::{CloseReason, EngineConfig};
    pub use switchyard_fixtures::*;

    /// An echo server started with `config` and one polling session opened on it: how most tests begin.
    pub async fn polling_session(config: EngineConfig) -> (EchoServer, Polling) {
        let server = EchoServer::start(config).await;
        let (session, _) = Polling::open(server.addr, EIO_PATH).await;
        (server, session)
    }

    /// The server reports `session` closed for `reason`, and the session's id is unknown afterwards.
    pub async fn assert_session_closed(server: &mut EchoServer, session: &Polling, reason: CloseReason) {
        assert_eq!(server.closed(&session.sid).await, reason, "session {}", session.sid);
        session.get().await.assert_engine_error(1, "Session ID unknown");
    }

    /// The head of a POST to `session` that announces a 10-byte body (tests send fewer bytes to hold the
    /// request open).
    pub fn post_head_of_10_bytes(server: &EchoServer, session: &Polling) -> String {
        format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: text/plain;charset=UTF-8\r\nContent-Length: 10\r\n\r\n",
            session.url(),
            server.addr
        )
    }
}

mod deflate;
mod edge_cases;
mod eio3;
mod handshake;
mod heartbeat;
mod polling;
mod upgrade;
mod websocket;
