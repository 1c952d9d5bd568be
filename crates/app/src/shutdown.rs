//! Graceful shutdown: the signal that starts it, and the order it runs in.
//!
//! On SIGTERM or Ctrl-C ([`serve_until`]):
//! 1. readiness turns false (`/readyz` answers 503), so a load balancer stops sending new clients;
//! 2. the listener is closed: new connections are refused, so a load balancer (nginx's
//!    `proxy_next_upstream error`) sends reconnecting clients to another node;
//! 3. every client connection is closed after its queued frames are flushed: a WebSocket gets the
//!    queue, then a close frame 1001 (going away); a polling client gets the queue, then the
//!    Engine.IO close packet (or its next poll is refused). No Socket.IO DISCONNECT packet is sent:
//!    after one, socket.io-client would stay away (`io server disconnect`); after a transport close it
//!    reconnects by itself. Server-side sockets disconnect with "server shutting down", a reason after
//!    which connection state recovery keeps their sessions;
//! 4. every connection task is awaited, and open HTTP requests are let finish, both bounded by
//!    `server.drain_timeout_ms` (once the HTTP requests are done no poll can arrive, so polling
//!    sessions still waiting for their close packet to be polled end then); then `serve` returns and
//!    the process exits 0.

use crate::health::Health;
use axum::Router;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_engine::serve::Serve;
use switchyard_engine::CloseReason;
use switchyard_socketio::SocketIo;
use tokio::time::Instant;

/// Runs `serve` (the router on its listener, configured) until `signal` completes, then shuts down in the order above, within
/// `drain` for the connections (plus at most `drain` for the HTTP requests still open then).
pub async fn serve_until(
    serve: Serve<Router>,
    io: SocketIo,
    health: Arc<Health>,
    drain: Duration,
    signal: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (started, start) = tokio::sync::oneshot::channel::<()>();
    let serve = serve.with_graceful_shutdown(async move {
        signal.await;
        tracing::info!("shutdown 1/4: not ready (/readyz answers 503)");
        health.set_shutting_down();
        let _ = started.send(());
        // Returning stops the accept loop: the listener is closed right after.
    });
    let http_done = AtomicBool::new(false);
    let http = async {
        let served = serve.await;
        http_done.store(true, Ordering::Release);
        served
    };
    let close = async {
        if start.await.is_err() {
            return;
        }
        tracing::info!("shutdown 2/4: stopped accepting connections");
        let open = io.engine().close_all(CloseReason::ServerShutdown);
        tracing::info!(connections = open, timeout = ?drain, "shutdown 3/4: flushing queues, then closing transports");
        close_connections(&io, drain, &http_done).await;
    };
    let (served, ()) = tokio::join!(http, close);
    tracing::info!("shutdown complete");
    served
}

/// Closes every client connection after its queue is flushed and waits (at most `drain`) until
/// every connection task has ended. Connections whose handshake was already under way when the
/// listener closed are closed as they appear. Once `http_done` (no HTTP request open, none can
/// come), polling sessions waiting for their close packet to be polled end at once.
async fn close_connections(io: &SocketIo, drain: Duration, http_done: &AtomicBool) {
    let engine = io.engine();
    let deadline = Instant::now() + drain;
    loop {
        engine.close_all(CloseReason::ServerShutdown);
        if http_done.load(Ordering::Acquire) {
            engine.end_lingering_sessions();
        }
        tokio::select! {
            _ = engine.wait_idle() => {
                tracing::info!("shutdown 4/4: every connection closed");
                return;
            }
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                still_open = engine.live_connections(),
                timeout = ?drain,
                "shutdown 4/4: connections still open at the drain timeout; exiting anyway"
            );
            engine.end_lingering_sessions();
            return;
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}
