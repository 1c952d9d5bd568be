//! Graceful shutdown: the signal that starts it, and the order it runs in.
//!
//! On SIGTERM or Ctrl-C: readiness turns false (a load balancer stops sending new clients), the
//! listener stops accepting, every client's connection is closed, and open HTTP requests get a
//! bounded time to finish before the process exits 0.

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
