//! Prometheus text exposition of the engine's counters and the Socket.IO namespaces.

use std::fmt::Write;
use std::sync::atomic::Ordering;
use switchyard_socketio::SocketIo;

pub fn render(io: &SocketIo) -> String {
    let stats = io.engine().stats();
    let mut out = String::with_capacity(2048);
    let counters = [
        ("switchyard_connections_opened_total", "Engine.IO connections opened.", &stats.connections_opened),
        ("switchyard_connections_closed_total", "Engine.IO connections closed.", &stats.connections_closed),
        ("switchyard_upgrades_total", "Polling sessions upgraded to WebSocket.", &stats.upgrades),
        (
            "switchyard_slow_client_disconnects_total",
            "Connections closed because their outgoing queue overflowed.",
            &stats.slow_client_disconnects,
        ),
        ("switchyard_frames_sent_total", "WebSocket frames written.", &stats.frames_sent),
        ("switchyard_bytes_sent_total", "WebSocket bytes written.", &stats.bytes_sent),
        ("switchyard_messages_received_total", "Engine.IO messages received.", &stats.messages_received),
        ("switchyard_protocol_errors_total", "Connections closed for invalid input.", &stats.protocol_errors),
    ];
    for (name, help, counter) in counters {
        let _ =
            writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}", counter.load(Ordering::Relaxed));
    }
    let _ = writeln!(
        out,
        "# HELP switchyard_connections Open Engine.IO connections.\n# TYPE switchyard_connections gauge\nswitchyard_connections {}",
        stats.open_connections()
    );
    let _ = writeln!(
        out,
        "# HELP switchyard_polling_connections Connections on HTTP long-polling.\n# TYPE switchyard_polling_connections gauge\nswitchyard_polling_connections {}",
        stats.polling_connections.load(Ordering::Relaxed)
    );
    let _ =
        writeln!(out, "# HELP switchyard_sockets Connected sockets per namespace.\n# TYPE switchyard_sockets gauge");
    let mut namespaces = io.namespaces();
    namespaces.sort_by(|a, b| a.name().cmp(b.name()));
    for ns in namespaces {
        let _ = writeln!(
            out,
            "switchyard_sockets{{namespace=\"{}\"}} {}",
            ns.name().replace('"', "\\\""),
            ns.local_socket_count()
        );
    }
    out
}
