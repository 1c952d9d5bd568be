//! Logs to stderr as text or JSON lines (`log.format`), filtered by `log.level` (`RUST_LOG` wins).

use crate::config::{LogConfig, LogFormat};
use switchyard_socketio::{DisconnectReason, Observer, Socket};
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber once; later calls do nothing.
pub fn init(config: &LogConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let _ = match config.format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text => builder.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr())).try_init(),
    };
}

/// Logs every connect and disconnect (info): socket id, namespace, transport, client address and,
/// on disconnect, the reason. With `log.format = "json"` these are JSON fields.
pub struct ConnectionLog;

impl Observer for ConnectionLog {
    fn on_connect(&self, socket: &Socket) {
        tracing::info!(
            socket_id = %socket.id(),
            namespace = socket.ns().name(),
            transport = socket.client().transport().as_str(),
            address = %socket.handshake().address(),
            "socket connected"
        );
    }

    fn on_disconnect(&self, socket: &Socket, reason: DisconnectReason) {
        tracing::info!(
            socket_id = %socket.id(),
            namespace = socket.ns().name(),
            transport = socket.client().transport().as_str(),
            address = %socket.handshake().address(),
            reason = reason.as_str(),
            "socket disconnected"
        );
    }
}
