//! `server_stats`, every 2 s: this server's identity, connection counts, namespaces and the
//! aggregated events since the last one. The counts are differences of the engine's own counters
//! (connections opened and closed by reason, messages and bytes in, frames and bytes out), so the
//! delivery path counts nothing more for the admin UI.

use super::Inner;
use parking_lot::Mutex;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};
use switchyard_engine::{CloseReason, EngineStats};

/// The counters' values at the previous `server_stats`.
#[derive(Default)]
pub(crate) struct StatsState {
    last: Mutex<Option<Snapshot>>,
}

#[derive(Clone, Copy, Default)]
struct Snapshot {
    opened: u64,
    closed: [u64; 7],
    packets_in: u64,
    bytes_in: u64,
    packets_out: u64,
    bytes_out: u64,
}

impl Snapshot {
    fn read(stats: &EngineStats) -> Snapshot {
        let load = |c: &std::sync::atomic::AtomicU64| c.load(Ordering::Relaxed);
        Snapshot {
            opened: load(&stats.connections_opened),
            closed: std::array::from_fn(|i| load(&stats.closed_by_reason[i])),
            packets_in: load(&stats.messages_received),
            bytes_in: load(&stats.bytes_received),
            packets_out: load(&stats.frames_sent),
            bytes_out: load(&stats.bytes_sent),
        }
    }
}

impl StatsState {
    /// The aggregated events since the previous call (the first call counts from startup), stamped
    /// with `timestamp` (epoch ms cut to the second, as Node's event buffer does).
    fn aggregated(&self, stats: &EngineStats, timestamp: u64) -> Vec<Value> {
        let now = Snapshot::read(stats);
        let before = self.last.lock().replace(now).unwrap_or_default();
        let mut events = Vec::new();
        let mut push = |kind: &str, sub: Option<&str>, count: u64| {
            if count > 0 {
                let mut event = json!({"timestamp": timestamp, "type": kind, "count": count});
                if let Some(sub) = sub {
                    event["subType"] = Value::String(sub.to_string());
                }
                events.push(event);
            }
        };
        push("rawConnection", None, now.opened.saturating_sub(before.opened));
        // Reasons that read the same ("transport error" for a slow client too) are one row.
        let mut by_text: Vec<(&str, u64)> = Vec::new();
        for reason in CloseReason::ALL {
            let i = reason.index();
            let count = now.closed[i].saturating_sub(before.closed[i]);
            match by_text.iter_mut().find(|(text, _)| *text == reason.as_str()) {
                Some((_, n)) => *n += count,
                None => by_text.push((reason.as_str(), count)),
            }
        }
        for (text, count) in by_text {
            push("rawDisconnection", Some(text), count);
        }
        push("packetsIn", None, now.packets_in.saturating_sub(before.packets_in));
        push("bytesIn", None, now.bytes_in.saturating_sub(before.bytes_in));
        push("packetsOut", None, now.packets_out.saturating_sub(before.packets_out));
        push("bytesOut", None, now.bytes_out.saturating_sub(before.bytes_out));
        events
    }
}

impl Inner {
    /// The `server_stats` object (Node's field names and types).
    pub(crate) fn server_stats(&self) -> Value {
        let engine = self.io.engine().stats();
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default();
        let mut namespaces: Vec<_> = self
            .io
            .namespaces()
            .iter()
            .map(|ns| json!({"name": ns.name(), "socketsCount": ns.local_socket_count()}))
            .collect();
        namespaces.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
        json!({
            "serverId": self.server_id,
            "hostname": self.hostname,
            "pid": std::process::id(),
            "uptime": self.started.elapsed().as_secs_f64(),
            "clientsCount": engine.open_connections(),
            "pollingClientsCount": engine.polling_connections.load(Ordering::Relaxed),
            "aggregatedEvents": self.stats.aggregated(engine, now_ms - now_ms % 1000),
            "namespaces": namespaces,
        })
    }

    /// Sends `server_stats` to every admin socket of the cluster.
    pub(crate) fn emit_stats(&self) {
        self.broadcast("server_stats", vec![self.server_stats()]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_events_are_differences() {
        let stats = EngineStats::default();
        let state = StatsState::default();
        stats.connections_opened.store(3, Ordering::Relaxed);
        stats.closed_by_reason[CloseReason::TransportClose.index()].store(1, Ordering::Relaxed);
        stats.closed_by_reason[CloseReason::TransportError.index()].store(1, Ordering::Relaxed);
        stats.closed_by_reason[CloseReason::SlowClient.index()].store(2, Ordering::Relaxed);
        stats.messages_received.store(4, Ordering::Relaxed);
        stats.bytes_received.store(40, Ordering::Relaxed);
        let first = state.aggregated(&stats, 1000);
        let find = |events: &[Value], kind: &str, sub: Option<&str>| {
            events
                .iter()
                .find(|e| e["type"] == kind && e.get("subType").and_then(Value::as_str) == sub)
                .map(|e| e["count"].as_u64().unwrap())
        };
        assert_eq!(find(&first, "rawConnection", None), Some(3));
        assert_eq!(find(&first, "rawDisconnection", Some("transport close")), Some(1));
        assert_eq!(find(&first, "rawDisconnection", Some("transport error")), Some(3));
        assert_eq!(find(&first, "packetsIn", None), Some(4));
        assert_eq!(find(&first, "bytesIn", None), Some(40));
        assert_eq!(find(&first, "packetsOut", None), None, "zero counts are left out");
        assert!(first.iter().all(|e| e["timestamp"] == 1000));
        stats.connections_opened.store(5, Ordering::Relaxed);
        let second = state.aggregated(&stats, 3000);
        assert_eq!(second.len(), 1);
        assert_eq!(find(&second, "rawConnection", None), Some(2));
    }
}
