//! The Switchyard application: serving an axum router (HTTP routes and the Socket.IO endpoint on one
//! port) with graceful shutdown, the chat page, and the configuration of the `switchyard` binary.

pub mod chat;
pub mod cluster;
pub mod metrics;

use axum::extract::ConnectInfo;
use axum::Router;
use std::net::SocketAddr;
use switchyard_engine::RemoteAddr;
use tokio::net::TcpListener;

/// Serves `router` on `listener` until `shutdown` completes, recording each client's address for
/// Socket.IO handshakes.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = router.layer(axum::middleware::map_request(
        |ConnectInfo(addr): ConnectInfo<SocketAddr>, mut req: axum::extract::Request| async move {
            req.extensions_mut().insert(RemoteAddr(addr));
            req
        },
    ));
    axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(shutdown)
        .await
}

/// The port from the `PORT` environment variable, or `default`.
pub fn port_from_env(default: u16) -> u16 {
    std::env::var("PORT").ok().and_then(|p| p.parse().ok()).unwrap_or(default)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
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
