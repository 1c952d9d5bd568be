use std::sync::atomic::{AtomicU64, Ordering};

/// Engine-wide counters, read by the metrics endpoint.
#[derive(Debug, Default)]
pub struct EngineStats {
    pub connections_opened: AtomicU64,
    pub connections_closed: AtomicU64,
    pub polling_connections: AtomicU64,
    pub upgrades: AtomicU64,
    /// Connections closed because their outgoing queue overflowed.
    pub slow_client_disconnects: AtomicU64,
    pub frames_sent: AtomicU64,
    pub bytes_sent: AtomicU64,
    pub messages_received: AtomicU64,
    /// Bytes of the data of the messages counted in `messages_received` (the Engine.IO packet's data,
    /// as the admin UI's `bytesIn` counts it). Counted on the receiving path only.
    pub bytes_received: AtomicU64,
    /// Closed connections by reason, indexed by [`CloseReason::index`](crate::CloseReason::index);
    /// they add up to `connections_closed`.
    pub closed_by_reason: [AtomicU64; 7],
    pub protocol_errors: AtomicU64,
    /// Handshakes refused because their `Origin` is not allowed (403).
    pub refused_origin: AtomicU64,
    /// Handshakes refused by the per-IP handshake rate (429).
    pub refused_handshake_rate: AtomicU64,
    /// WebSockets that negotiated permessage-deflate.
    pub deflate_connections: AtomicU64,
    /// Frames written compressed (permessage-deflate); `bytes_sent` counts their compressed size.
    pub frames_deflated: AtomicU64,
    /// Messages compressed: a broadcast is compressed once, however many recipients get it.
    pub deflate_compressions: AtomicU64,
}

impl EngineStats {
    pub fn open_connections(&self) -> u64 {
        self.connections_opened.load(Ordering::Relaxed).saturating_sub(self.connections_closed.load(Ordering::Relaxed))
    }

    /// Connections closed so far for `reason`.
    pub fn closed_by(&self, reason: crate::CloseReason) -> u64 {
        self.closed_by_reason[reason.index()].load(Ordering::Relaxed)
    }

    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}
