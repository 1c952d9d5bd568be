use crate::frame::Frame;
use crate::sid::Sid;
use crate::stats::EngineStats;
use parking_lot::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// The transport a connection currently uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    Polling,
    WebSocket,
}

impl TransportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            TransportKind::Polling => "polling",
            TransportKind::WebSocket => "websocket",
        }
    }
}

/// The Engine.IO protocol revision a connection speaks, chosen by the client's handshake (`EIO=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Engine.IO v4 (Socket.IO v3 and later clients).
    V4,
    /// Engine.IO v3 (Socket.IO v2 clients, with [`crate::EngineConfig::allow_eio3`]). `base64`: the
    /// handshake asked for binary as base64 over polling (`b64=1`, a client without XHR2).
    V3 { base64: bool },
}

impl Protocol {
    pub fn is_v3(self) -> bool {
        matches!(self, Protocol::V3 { .. })
    }
}

/// Why a connection closed. The names are those of the Node implementation, which the Socket.IO layer
/// passes on as disconnect reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// The client closed the transport (close packet, WebSocket close, TCP close).
    TransportClose,
    /// The transport failed (I/O error, aborted poll, request overlap).
    TransportError,
    /// The client did not answer a ping in time.
    PingTimeout,
    /// The client sent something the protocol does not allow.
    ParseError,
    /// The server closed the connection.
    ForcedClose,
    /// The server is shutting down.
    ServerShutdown,
    /// The client did not read fast enough and its outgoing queue overflowed.
    SlowClient,
}

impl CloseReason {
    /// Every reason, in the order of [`CloseReason::index`].
    pub const ALL: [CloseReason; 7] = [
        CloseReason::TransportClose,
        CloseReason::TransportError,
        CloseReason::PingTimeout,
        CloseReason::ParseError,
        CloseReason::ForcedClose,
        CloseReason::ServerShutdown,
        CloseReason::SlowClient,
    ];

    /// The reason's position in [`CloseReason::ALL`] (and in [`EngineStats::closed_by_reason`](crate::EngineStats)).
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::TransportClose => "transport close",
            CloseReason::TransportError => "transport error",
            CloseReason::PingTimeout => "ping timeout",
            CloseReason::ParseError => "parse error",
            CloseReason::ForcedClose => "forced close",
            CloseReason::ServerShutdown => "server shutting down",
            // Reported as a transport error so that connection state recovery replays what was missed.
            CloseReason::SlowClient => "transport error",
        }
    }

    /// A close the server chose: over polling, the session stays findable until its last packets
    /// (and the close packet) have been polled, for at most a heartbeat window, as in Node. Any other
    /// close (the client's close packet included) ends the session at once.
    pub(crate) fn lingers(self) -> bool {
        matches!(self, CloseReason::ForcedClose | CloseReason::ServerShutdown)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    #[error("connection closed")]
    Closed,
    #[error("outgoing queue full: client disconnected as too slow")]
    QueueFull,
}

/// What the heartbeat owner should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum HeartbeatAction {
    SendPing,
    TimedOut,
    WaitUntil(Instant),
}

/// Frames at most this long (header included) are copied into a WebSocket connection's contiguous
/// write buffer when queued; longer ones are queued as shared frames. A copy of a small frame costs
/// less than touching its shared reference count from every core (twice per delivery), and the
/// writer then sends a burst with one `write` instead of a `writev` of dozens of small iovecs.
pub(crate) const COALESCE_MAX: usize = 512;

/// The capacity of a write buffer, allocated once and never grown: a full one is set aside for the
/// writer and a new one starts. Growing one buffer to a burst's size (100 KiB and more while a writer
/// lags) cost ~100 instructions per delivery in reallocations under callgrind. 7 KiB, not 8: jemalloc
/// (the binaries' allocator) carves 7 KiB buffers four to a slab but gives each 8 KiB one a slab of
/// its own, so a buffer allocated by a sender's thread and freed by the writer's cost ~2,600
/// instructions at 8 KiB and ~1,650 at 7 KiB (callgrind, two threads handing buffers over).
const COALESCE_CHUNK: usize = 7168;

/// Emptied write buffers a connection keeps for reuse while its writer lags, at most. The writer hands
/// the buffers it has written back to the senders (see [`Chunks`]); more than this are freed.
const SPARE_CHUNKS: usize = 4;

/// Full write buffers waiting to be written, and emptied ones handed back by the writer for reuse.
/// Without them, each buffer a lagging writer took was allocated by a sender's thread and freed by
/// the writer's (see `COALESCE_CHUNK` for what such a pair costs). Boxed: only a connection
/// whose writer lags by more than one buffer has it, and it is freed with the buffers when a flush
/// finds nothing to write.
#[derive(Default)]
pub(crate) struct Chunks {
    /// Written after `State::queue` and before `State::coalesced`, in order.
    full: Vec<Vec<u8>>,
    /// Empty, with `COALESCE_CHUNK` bytes of capacity.
    spare: Vec<Vec<u8>>,
}

pub(crate) struct State {
    /// Shared frames waiting to be written, in order; they all precede `coalesced`. A `Vec`, not a
    /// `VecDeque`: the writer always takes the queue whole.
    queue: Vec<Frame>,
    /// Small frames already framed for the WebSocket, copied end to end (only with `coalesce`).
    coalesced: Vec<u8>,
    /// Full write buffers between `queue` and `coalesced`, and spare ones (only with `coalesce`).
    chunks: Option<Box<Chunks>>,
    /// Frames pending in `queue` and `coalesced` together (the `frames_sent` counter).
    pending_frames: u32,
    /// Small frames are copied into `coalesced`: set by the WebSocket task that owns the connection
    /// when it writes frames as they are (no permessage-deflate); never for polling.
    pub(crate) coalesce: bool,
    queued_bytes: usize,
    pub(crate) transport: TransportKind,
    /// A WebSocket answered the probe: polls get a `noop` so the client can finish the upgrade.
    pub(crate) upgrading: bool,
    /// A WebSocket for this session is open and probing.
    pub(crate) upgrade_attempt: bool,
    pub(crate) closed: Option<CloseReason>,
    /// The last packet a polling client gets after a close; taken when sent. A tag, not a `Frame`
    /// (48 bytes in every connection): the frame is made when it is sent.
    pub(crate) farewell: Option<Farewell>,
    pub(crate) farewell_sent: bool,
    awaiting_pong: bool,
    heartbeat_deadline: Instant,
    pub(crate) poll_active: bool,
    pub(crate) post_active: bool,
    /// Woken (`notify_waiters`) on close, for tasks that must learn of it at once (a probing
    /// WebSocket whose polling session ends). Created by the first waiter, so a connection nobody
    /// waits on holds no `Notify` for it.
    close_waiters: Option<Arc<Notify>>,
}

/// The packet that answers a polling client's last poll after a close.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Farewell {
    /// `1`: the server closed the session.
    Close,
    /// `6`: the client asked to close; its poll ends with a noop.
    Noop,
}

impl Farewell {
    pub(crate) fn frame(self) -> Frame {
        match self {
            Farewell::Close => Frame::close(),
            Farewell::Noop => Frame::noop(),
        }
    }
}

/// What a WebSocket writer takes from the queue in one go: the shared frames, then the full write
/// buffers, then the small frames' bytes that follow them.
#[derive(Default)]
pub(crate) struct Outgoing {
    pub(crate) frames: Vec<Frame>,
    /// Full write buffers; handed back to the connection for reuse by the next take.
    pub(crate) full: Vec<Vec<u8>>,
    pub(crate) bytes: Vec<u8>,
    /// Frames in `frames` and `bytes` together.
    pub(crate) count: u32,
}

impl Outgoing {
    /// Bytes to write.
    pub(crate) fn len(&self) -> usize {
        self.frames.iter().map(Frame::queued_len).sum::<usize>()
            + self.full.iter().map(Vec::len).sum::<usize>()
            + self.bytes.len()
    }
}

/// What every connection of one engine shares (its limits and counters), held once by the engine so
/// that a connection pays one pointer for it instead of a copy of each setting.
#[derive(Debug)]
pub(crate) struct ConnShared {
    max_queue_bytes: usize,
    ping_interval: Duration,
    ping_timeout: Duration,
    stats: Arc<EngineStats>,
}

impl ConnShared {
    pub(crate) fn new(config: &crate::EngineConfig, stats: Arc<EngineStats>) -> Arc<Self> {
        Arc::new(ConnShared {
            max_queue_bytes: config.max_queue_bytes,
            ping_interval: config.ping_interval,
            ping_timeout: config.ping_timeout,
            stats,
        })
    }
}

/// One Engine.IO connection, shared between the task that owns it and everyone who sends to it.
/// Every idle connection holds one, so its size counts: settings shared by all connections are behind
/// one pointer ([`ConnShared`]).
pub struct Connection {
    sid: Sid,
    state: Mutex<State>,
    /// Wakes the writer: the WebSocket task, or the pending poll.
    pub(crate) writer_wake: Notify,
    /// Wakes the polling session task (close, upgrade).
    pub(crate) owner_wake: Notify,
    /// Fixed at the handshake; a v4 connection never looks at it on the send path.
    protocol: Protocol,
    /// This connection's slot in the engine's table of open connections.
    live_slot: AtomicU32,
    /// Its heartbeat is driven by the engine's heartbeat task (a WebSocket that owns the connection),
    /// not by a timer of its own.
    engine_heartbeat: AtomicBool,
    shared: Arc<ConnShared>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").field("sid", &self.sid).finish()
    }
}

impl Connection {
    pub(crate) fn new(sid: Sid, transport: TransportKind, protocol: Protocol, shared: Arc<ConnShared>) -> Arc<Self> {
        // v3: the client pings; its first ping is due within ping_interval + ping_timeout.
        let first_deadline = match protocol {
            Protocol::V4 => shared.ping_interval,
            Protocol::V3 { .. } => shared.ping_interval + shared.ping_timeout,
        };
        Arc::new(Connection {
            sid,
            state: Mutex::new(State {
                queue: Vec::new(),
                coalesced: Vec::new(),
                chunks: None,
                pending_frames: 0,
                coalesce: false,
                queued_bytes: 0,
                transport,
                upgrading: false,
                upgrade_attempt: false,
                closed: None,
                farewell: None,
                farewell_sent: false,
                awaiting_pong: false,
                heartbeat_deadline: Instant::now() + first_deadline,
                poll_active: false,
                post_active: false,
                close_waiters: None,
            }),
            writer_wake: Notify::new(),
            owner_wake: Notify::new(),
            protocol,
            live_slot: AtomicU32::new(u32::MAX),
            engine_heartbeat: AtomicBool::new(false),
            shared,
        })
    }

    pub(crate) fn live_slot(&self) -> u32 {
        self.live_slot.load(Ordering::Relaxed)
    }

    pub(crate) fn set_live_slot(&self, slot: u32) {
        self.live_slot.store(slot, Ordering::Relaxed);
    }

    pub fn sid(&self) -> Sid {
        self.sid
    }

    /// The Engine.IO protocol revision of this connection.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    pub fn transport(&self) -> TransportKind {
        self.state.lock().transport
    }

    /// True when frames are still waiting to be written (volatile emits skip such clients).
    pub fn has_backlog(&self) -> bool {
        let state = self.state.lock();
        state.closed.is_some() || !Self::queue_is_empty(&state)
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().closed.is_some()
    }

    /// Queues one frame. A full queue closes the connection (counted and logged), never skips the frame.
    pub fn send(&self, frame: Frame) -> Result<(), SendError> {
        self.send_all(std::slice::from_ref(&frame))
    }

    /// Queues frames that must stay together (a binary packet and its attachments).
    ///
    /// One frame for an Engine.IO v4 client (nearly every delivery of a broadcast) takes
    /// [`Connection::send_one`]; anything else the general path.
    #[inline]
    pub fn send_all(&self, frames: &[Frame]) -> Result<(), SendError> {
        match frames {
            [frame] if self.protocol == Protocol::V4 => self.send_one(frame),
            _ => self.send_all_general(frames),
        }
    }

    /// The common delivery: one small frame copied into a write buffer with room for it, under the
    /// queue limit. Only the checks that case needs run under the lock; every other case (closed, over
    /// the limit, a large frame, a full or absent buffer, polling) goes on to the general path with
    /// the lock still held, so the outcome is the same as [`Connection::send_all_general`]'s.
    fn send_one(&self, frame: &Frame) -> Result<(), SendError> {
        let bytes = frame.ws_bytes();
        let size = bytes.len();
        let mut state = self.state.lock();
        let fits = state.coalesce
            && size <= COALESCE_MAX
            && state.closed.is_none()
            && state.queued_bytes + size <= self.shared.max_queue_bytes
            && state.coalesced.capacity() - state.coalesced.len() >= size;
        if !fits {
            return self.send_locked(state, std::slice::from_ref(frame), size);
        }
        let was_empty = Self::queue_is_empty(&state);
        state.coalesced.extend_from_slice(bytes);
        state.queued_bytes += size;
        state.pending_frames = state.pending_frames.saturating_add(1);
        drop(state);
        if was_empty {
            self.writer_wake.notify_one();
        }
        Ok(())
    }

    /// Any number of frames, any protocol: converts a v4 binary frame for a v3 client, then queues.
    #[inline(never)]
    fn send_all_general(&self, frames: &[Frame]) -> Result<(), SendError> {
        if self.protocol != Protocol::V4 && frames.iter().any(|f| f.is_binary() && !f.is_eio3()) {
            // A v4 binary frame for a v3 client: converted here, once per such recipient. The
            // Socket.IO layer's broadcasts hand v3 clients frames already in v3 form.
            let frames: Vec<Frame> = frames.iter().map(Frame::to_eio3).collect();
            return self.send_all_general(&frames);
        }
        let size: usize = frames.iter().map(Frame::queued_len).sum();
        self.send_locked(self.state.lock(), frames, size)
    }

    /// Queues `frames` (`size` bytes) with the lock held: refused when closed, the connection closed
    /// as a slow client when the queue limit would be passed, else appended.
    #[inline(never)]
    fn send_locked(
        &self,
        mut state: parking_lot::MutexGuard<'_, State>,
        frames: &[Frame],
        size: usize,
    ) -> Result<(), SendError> {
        if state.closed.is_some() {
            return Err(SendError::Closed);
        }
        if state.queued_bytes + size > self.shared.max_queue_bytes {
            drop(state);
            tracing::warn!(sid = %self.sid, queued_limit = self.shared.max_queue_bytes, "outgoing queue full: disconnecting slow client");
            EngineStats::add(&self.shared.stats.slow_client_disconnects, 1);
            self.close(CloseReason::SlowClient);
            return Err(SendError::QueueFull);
        }
        let was_empty = Self::queue_is_empty(&state);
        Self::push_locked(&mut state, frames);
        state.queued_bytes += size;
        drop(state);
        if was_empty {
            self.writer_wake.notify_one();
        }
        Ok(())
    }

    /// Appends `frames` to the queue: small ones copied into the write buffer when the connection
    /// coalesces, the others shared. Kept inline in `send_all` (a delivery is one or two frames).
    #[inline(always)]
    fn push_locked(state: &mut State, frames: &[Frame]) {
        // A plain loop, not `extend`: it stays inlined, where `extend` became an out-of-line generic
        // call costing ~20 instructions per delivery.
        for frame in frames {
            let bytes = frame.ws_bytes();
            if state.coalesce && bytes.len() <= COALESCE_MAX {
                if state.coalesced.capacity() - state.coalesced.len() < bytes.len() {
                    Self::next_buffer(state);
                }
                state.coalesced.extend_from_slice(bytes);
            } else {
                if !state.coalesced.is_empty() {
                    // The copied frames go before this one: the full buffers and the current one
                    // become chunks of the queue (rare: a large frame among small ones).
                    if let Some(chunks) = &mut state.chunks {
                        for chunk in std::mem::take(&mut chunks.full) {
                            Self::push_shared(&mut state.queue, Frame::coalesced(chunk.into()));
                        }
                    }
                    let chunk = std::mem::take(&mut state.coalesced);
                    Self::push_shared(&mut state.queue, Frame::coalesced(chunk.into()));
                }
                Self::push_shared(&mut state.queue, frame.clone());
            }
        }
        state.pending_frames = state.pending_frames.saturating_add(frames.len() as u32);
    }

    #[inline(always)]
    fn push_shared(queue: &mut Vec<Frame>, frame: Frame) {
        if queue.capacity() == 0 {
            // One allocation for a typical batch instead of growing 4, 8, 16...
            queue.reserve(16);
        }
        queue.push(frame);
    }

    /// Makes room in the write buffer for a small frame: a full buffer goes to the list of full
    /// ones, and the next is a spare the writer handed back, else a new one.
    #[inline(never)]
    fn next_buffer(state: &mut State) {
        if state.coalesced.is_empty() {
            // The first frame after a flush that found nothing: no buffer yet (its capacity is
            // either none or a whole chunk), and no `Chunks` needed for one buffer.
            let spare = state.chunks.as_mut().and_then(|c| c.spare.pop());
            state.coalesced = spare.unwrap_or_else(|| Vec::with_capacity(COALESCE_CHUNK));
            return;
        }
        let chunks = state.chunks.get_or_insert_with(Default::default);
        let next = chunks.spare.pop().unwrap_or_else(|| Vec::with_capacity(COALESCE_CHUNK));
        chunks.full.push(std::mem::replace(&mut state.coalesced, next));
    }

    /// Queues frames outside the queue limit: the missed packets a recovered session gets back. They
    /// are bounded by what the recovery store keeps, and counting them would drop a client that was
    /// disconnected for a full queue again at once, for its own replay. Live sends after them are
    /// still limited by `max_queue_bytes`.
    pub fn send_all_uncounted(&self, frames: &[Frame]) -> Result<(), SendError> {
        if self.protocol != Protocol::V4 && frames.iter().any(|f| f.is_binary() && !f.is_eio3()) {
            let frames: Vec<Frame> = frames.iter().map(Frame::to_eio3).collect();
            return self.send_all_uncounted(&frames);
        }
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return Err(SendError::Closed);
        }
        let was_empty = Self::queue_is_empty(&state);
        Self::push_locked(&mut state, frames);
        drop(state);
        if was_empty {
            self.writer_wake.notify_one();
        }
        Ok(())
    }

    /// Closes the connection from the server side: queued frames are still flushed, then the transport
    /// closes. Idempotent.
    pub fn close(&self, reason: CloseReason) {
        self.close_with(reason, Some(Farewell::Close));
    }

    /// Closes; over polling, `farewell` (a `close`, or a `noop` when the client itself asked to close)
    /// answers the first poll that finds the queue empty, so queued data arrives before the close, in
    /// its own response, as Node does.
    pub(crate) fn close_with(&self, reason: CloseReason, farewell: Option<Farewell>) {
        let mut state = self.state.lock();
        if state.closed.is_some() {
            return;
        }
        state.closed = Some(reason);
        state.farewell = farewell;
        let close_waiters = state.close_waiters.take();
        drop(state);
        tracing::debug!(sid = %self.sid, reason = reason.as_str(), "closing connection");
        self.writer_wake.notify_one();
        self.owner_wake.notify_one();
        if let Some(waiters) = close_waiters {
            waiters.notify_waiters();
        }
    }

    /// Resolves once the connection is closed. Any number of tasks may wait at once.
    pub(crate) async fn wait_closed(&self) {
        let waiters = {
            let mut state = self.state.lock();
            if state.closed.is_some() {
                return;
            }
            state.close_waiters.get_or_insert_with(Default::default).clone()
        };
        let notified = waiters.notified();
        tokio::pin!(notified);
        // Registered before the check, so a close between the check and the await is not missed
        // (`close_with` sets `closed` before it wakes the waiters it took).
        notified.as_mut().enable();
        if self.is_closed() {
            return;
        }
        notified.await;
    }

    /// True once the session is over for anyone looking it up by sid: closed, and either not a
    /// lingering close or its close packet already polled.
    pub(crate) fn session_over(state: &State) -> bool {
        state.closed.is_some_and(|reason| !reason.lingers() || state.farewell_sent)
    }

    pub(crate) fn closed_reason(&self) -> Option<CloseReason> {
        self.state.lock().closed
    }

    /// Takes every queued frame (the polling writer sends them in one go). Releases the queue's memory.
    pub(crate) fn take_queue(&self) -> Vec<Frame> {
        Self::take_queue_locked(&mut self.state.lock())
    }

    /// Swaps what is queued with the writer's `out` (emptied first, so the two buffers alternate and
    /// a burst allocates nothing per flush). Returns false when nothing was queued: both sides then
    /// give up their memory, so an idle connection holds no buffer.
    pub(crate) fn take_outgoing(&self, out: &mut Outgoing) -> bool {
        out.frames.clear();
        out.bytes.clear();
        // The buffers just written are emptied here, outside the lock, and handed back below.
        out.full.truncate(SPARE_CHUNKS);
        out.full.iter_mut().for_each(Vec::clear);
        let mut state = self.state.lock();
        if Self::queue_is_empty(&state) {
            let spare = (std::mem::take(&mut state.queue), std::mem::take(&mut state.coalesced), state.chunks.take());
            drop(state);
            drop(spare);
            *out = Outgoing::default();
            return false;
        }
        state.queued_bytes = 0;
        out.count = std::mem::take(&mut state.pending_frames);
        std::mem::swap(&mut state.queue, &mut out.frames);
        std::mem::swap(&mut state.coalesced, &mut out.bytes);
        match &mut state.chunks {
            Some(chunks) => {
                let room = SPARE_CHUNKS.saturating_sub(chunks.spare.len());
                chunks.spare.extend(out.full.drain(..).take(room));
                std::mem::swap(&mut chunks.full, &mut out.full);
            }
            // Only after a take that found nothing (which dropped the chunks and emptied `out`).
            None => out.full.clear(),
        }
        true
    }

    pub(crate) fn with_state<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock())
    }

    /// No frame waits. Full write buffers never wait alone: one is set aside only to make room for
    /// a frame copied into the next one.
    pub(crate) fn queue_is_empty(state: &State) -> bool {
        debug_assert!(
            !state.coalesced.is_empty() || state.chunks.iter().all(|c| c.full.is_empty()),
            "full write buffers always precede a non-empty current one"
        );
        state.queue.is_empty() && state.coalesced.is_empty()
    }

    /// The polling transport's take: a polling connection never coalesces (its packets are joined
    /// into a payload, not written as WebSocket frames).
    pub(crate) fn take_queue_locked(state: &mut State) -> Vec<Frame> {
        debug_assert!(state.coalesced.is_empty() && state.chunks.is_none(), "a polling connection never coalesces");
        state.queued_bytes = 0;
        state.pending_frames = 0;
        std::mem::take(&mut state.queue)
    }

    /// A v3 client's ping: the next one is due within `ping_interval + ping_timeout`.
    pub(crate) fn on_client_ping(&self) {
        let mut state = self.state.lock();
        state.heartbeat_deadline = Instant::now() + self.shared.ping_interval + self.shared.ping_timeout;
    }

    pub(crate) fn on_pong(&self) {
        let mut state = self.state.lock();
        state.awaiting_pong = false;
        state.heartbeat_deadline = Instant::now() + self.shared.ping_interval;
    }

    /// Advances the heartbeat: the server pings every `ping_interval` and expects a pong within
    /// `ping_timeout` (Engine.IO v4: the server pings, never the client).
    ///
    /// The pong deadline counts from when the ping was due, not from when the timer task got to run:
    /// `ping_interval + ping_timeout` after the handshake (or the last pong), as in Node, however late
    /// this task is scheduled on a busy machine.
    ///
    /// Engine.IO v3 the other way round: the server never pings; the deadline is the client's next
    /// ping, `ping_interval + ping_timeout` after its last one (or the handshake).
    pub(crate) fn heartbeat(&self, now: Instant) -> HeartbeatAction {
        let mut state = self.state.lock();
        if now < state.heartbeat_deadline {
            return HeartbeatAction::WaitUntil(state.heartbeat_deadline);
        }
        if self.protocol.is_v3() {
            return HeartbeatAction::TimedOut;
        }
        if state.awaiting_pong {
            return HeartbeatAction::TimedOut;
        }
        state.awaiting_pong = true;
        state.heartbeat_deadline += self.shared.ping_timeout;
        HeartbeatAction::SendPing
    }

    /// True when the pong deadline has passed, whether or not the timer task has run yet: the
    /// deadline is the due time of the ping plus `ping_timeout`. Requests check this so that their
    /// answer never depends on how promptly the heartbeat task was scheduled.
    pub(crate) fn heartbeat_expired(&self, now: Instant) -> bool {
        let state = self.state.lock();
        let deadline = if state.awaiting_pong || self.protocol.is_v3() {
            state.heartbeat_deadline
        } else {
            state.heartbeat_deadline + self.shared.ping_timeout
        };
        now >= deadline
    }

    pub(crate) fn heartbeat_deadline(&self) -> Instant {
        self.state.lock().heartbeat_deadline
    }

    /// Hands this connection's heartbeat to the engine's heartbeat task (see `Engine::heartbeat_scan`).
    pub(crate) fn set_engine_heartbeat(&self) {
        self.engine_heartbeat.store(true, Ordering::Relaxed);
    }

    /// One step of the engine-driven heartbeat, at `now`: sends the ping that is due or closes the
    /// connection whose pong (v3: whose client's ping) is overdue. Returns when to look again; `None`
    /// when the engine does not drive this connection or it is closed.
    pub(crate) fn engine_heartbeat_step(&self, now: Instant) -> Option<Instant> {
        if !self.engine_heartbeat.load(Ordering::Relaxed) {
            return None;
        }
        if self.state.lock().closed.is_some() {
            return None;
        }
        match self.heartbeat(now) {
            HeartbeatAction::SendPing => {
                // A full queue closes the connection (counted and logged by `send_all`).
                let _ = self.send(Frame::ping());
                Some(self.heartbeat_deadline())
            }
            HeartbeatAction::TimedOut => {
                self.close_with(CloseReason::PingTimeout, None);
                None
            }
            HeartbeatAction::WaitUntil(deadline) => Some(deadline),
        }
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> &EngineStats {
        &self.shared.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EngineConfig;

    #[test]
    fn replayed_frames_do_not_count_against_the_queue_limit() {
        let c = conn(10);
        let big = Frame::message(&[b'x'; 100]);
        c.send_all_uncounted(&[big.clone(), big]).unwrap();
        // A small live frame still fits: the replay is not counted.
        c.send(Frame::message(b"ok")).unwrap();
        assert_eq!(c.closed_reason(), None);
        assert_eq!(c.take_queue().len(), 3);
    }

    fn conn(max_queue_bytes: usize) -> Arc<Connection> {
        let config = EngineConfig { max_queue_bytes, ..EngineConfig::default() };
        Connection::new(Sid::random(), TransportKind::WebSocket, Protocol::V4, ConnShared::new(&config, Arc::default()))
    }

    #[test]
    fn overflow_closes_instead_of_skipping() {
        let c = conn(100);
        let frame = Frame::message(&[b'x'; 40]);
        assert!(c.send(frame.clone()).is_ok());
        assert!(c.send(frame.clone()).is_ok());
        assert_eq!(c.send(frame.clone()), Err(SendError::QueueFull));
        assert_eq!(c.closed_reason(), Some(CloseReason::SlowClient));
        assert_eq!(c.stats().slow_client_disconnects.load(std::sync::atomic::Ordering::Relaxed), 1);
        // Nothing already queued was lost.
        assert_eq!(c.take_queue().len(), 2);
        assert_eq!(c.send(frame), Err(SendError::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn heartbeat_pings_then_times_out_without_pong() {
        let c = conn(1000);
        let start = Instant::now();
        assert!(matches!(c.heartbeat(start), HeartbeatAction::WaitUntil(_)));
        let at = start + Duration::from_millis(25_000);
        assert_eq!(c.heartbeat(at), HeartbeatAction::SendPing);
        assert!(matches!(c.heartbeat(at + Duration::from_millis(10)), HeartbeatAction::WaitUntil(_)));
        assert_eq!(c.heartbeat(at + Duration::from_millis(20_000)), HeartbeatAction::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn pong_deadline_counts_from_when_the_ping_was_due() {
        let c = conn(1000);
        let start = Instant::now();
        let interval = Duration::from_millis(25_000);
        let timeout = Duration::from_millis(20_000);
        assert!(!c.heartbeat_expired(start + interval + timeout - Duration::from_millis(1)));
        // Not even pinged yet (the timer task is late), but the deadline has passed.
        assert!(c.heartbeat_expired(start + interval + timeout));
        // The ping goes out 5 s late; the client still has only until interval + timeout.
        assert_eq!(c.heartbeat(start + interval + Duration::from_secs(5)), HeartbeatAction::SendPing);
        assert!(!c.heartbeat_expired(start + interval + timeout - Duration::from_millis(1)));
        assert_eq!(c.heartbeat(start + interval + timeout), HeartbeatAction::TimedOut);
    }

    #[tokio::test(start_paused = true)]
    async fn v3_never_pings_and_times_out_without_client_pings() {
        let config = EngineConfig::default();
        let c = Connection::new(
            Sid::random(),
            TransportKind::Polling,
            Protocol::V3 { base64: false },
            ConnShared::new(&config, Arc::default()),
        );
        let start = Instant::now();
        let window = Duration::from_millis(45_000);
        assert_eq!(c.heartbeat(start + window - Duration::from_millis(1)), HeartbeatAction::WaitUntil(start + window));
        assert!(!c.heartbeat_expired(start + window - Duration::from_millis(1)));
        tokio::time::advance(Duration::from_millis(30_000)).await;
        c.on_client_ping();
        let renewed = Instant::now() + window;
        assert_eq!(c.heartbeat(start + window), HeartbeatAction::WaitUntil(renewed));
        assert!(c.heartbeat_expired(renewed));
        assert_eq!(c.heartbeat(renewed), HeartbeatAction::TimedOut);
    }

    #[test]
    fn v3_connections_get_binary_frames_in_v3_form() {
        let config = EngineConfig::default();
        let c = Connection::new(
            Sid::random(),
            TransportKind::WebSocket,
            Protocol::V3 { base64: false },
            ConnShared::new(&config, Arc::default()),
        );
        c.send_all(&[Frame::message(b"51-[]"), Frame::binary(&[9, 8])]).unwrap();
        c.send(Frame::binary_eio3(&[7])).unwrap();
        let queued: Vec<Vec<u8>> = c.take_queue().iter().map(|f| f.payload().to_vec()).collect();
        assert_eq!(queued, vec![b"451-[]".to_vec(), vec![4, 9, 8], vec![4, 7]]);
    }

    /// The bytes a WebSocket writer would send for what is queued, and the frame count it reports.
    fn written(c: &Connection) -> (Vec<u8>, u32) {
        let mut out = Outgoing::default();
        assert!(c.take_outgoing(&mut out));
        let mut bytes: Vec<u8> = out.frames.iter().flat_map(|f| f.ws_bytes().to_vec()).collect();
        out.full.iter().for_each(|chunk| bytes.extend_from_slice(chunk));
        bytes.extend_from_slice(&out.bytes);
        (bytes, out.count)
    }

    #[test]
    fn coalesced_small_frames_keep_their_order_around_shared_large_ones() {
        let c = conn(1 << 20);
        c.with_state(|s| s.coalesce = true);
        let small = |i: u8| Frame::message(&[b'a' + i; 10]);
        let large = Frame::message(&[b'L'; COALESCE_MAX + 1]);
        let frames = [small(0), small(1), large.clone(), small(2)];
        c.send(frames[0].clone()).unwrap();
        c.send_all(&frames[1..3]).unwrap();
        c.send(frames[3].clone()).unwrap();
        c.with_state(|s| {
            // The large frame is shared (not copied); the small ones before it became one chunk.
            assert_eq!(s.queue.len(), 2);
            assert!(s.queue[1].ws_bytes().as_ptr() == large.ws_bytes().as_ptr());
            assert_eq!(s.coalesced, small(2).ws_bytes().to_vec());
        });
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.ws_bytes().to_vec()).collect();
        assert_eq!(written(&c), (expected, 4));
        // Nothing left: the writer and the connection both give their buffers up.
        let mut out = Outgoing::default();
        assert!(!c.take_outgoing(&mut out));
        assert_eq!((out.frames.capacity(), out.bytes.capacity()), (0, 0));
        c.with_state(|s| assert_eq!((s.queue.capacity(), s.coalesced.capacity()), (0, 0)));
    }

    #[test]
    fn a_full_write_buffer_becomes_a_chunk_without_growing() {
        let c = conn(1 << 20);
        c.with_state(|s| s.coalesce = true);
        let frames: Vec<Frame> = (0..200u8).map(|i| Frame::message(&[i; 100])).collect();
        for frame in &frames {
            c.send(frame.clone()).unwrap();
        }
        c.with_state(|s| {
            let full = &s.chunks.as_ref().expect("full buffers").full;
            assert!(full.len() >= 2, "200 x 102 bytes fill more than two {COALESCE_CHUNK}-byte buffers");
            assert!(full.iter().all(|chunk| chunk.capacity() == COALESCE_CHUNK));
            assert!(s.queue.is_empty());
            assert_eq!(s.coalesced.capacity(), COALESCE_CHUNK);
        });
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.ws_bytes().to_vec()).collect();
        assert_eq!(written(&c), (expected, 200));
    }

    #[test]
    fn written_buffers_are_reused_by_the_senders_and_freed_once_idle() {
        let c = conn(1 << 20);
        c.with_state(|s| s.coalesce = true);
        let burst = |first: u8| -> Vec<Frame> { (0..200u8).map(|i| Frame::message(&[first ^ i; 100])).collect() };
        let mut out = Outgoing::default();
        let first = burst(0);
        first.iter().for_each(|f| c.send(f.clone()).unwrap());
        assert!(c.take_outgoing(&mut out));
        let written_ptrs: Vec<*const u8> = out.full.iter().map(|chunk| chunk.as_ptr()).collect();
        assert!(written_ptrs.len() >= 2);
        // The writer has written them; the next take hands them back, and the burst after that is
        // copied into the same buffers, in order.
        burst(0x33).iter().for_each(|f| c.send(f.clone()).unwrap());
        assert!(c.take_outgoing(&mut out));
        c.with_state(|s| assert_eq!(s.chunks.as_ref().unwrap().spare.len(), written_ptrs.len().min(SPARE_CHUNKS)));
        let second = burst(0x55);
        second.iter().for_each(|f| c.send(f.clone()).unwrap());
        assert!(c.take_outgoing(&mut out));
        let reused = out.full.iter().filter(|chunk| written_ptrs.contains(&chunk.as_ptr())).count();
        assert!(reused >= 1, "a written buffer was reused");
        let mut bytes: Vec<u8> = out.full.concat();
        bytes.extend_from_slice(&out.bytes);
        assert_eq!(bytes, second.iter().flat_map(|f| f.ws_bytes().to_vec()).collect::<Vec<u8>>());
        assert_eq!(out.count, 200);
        // Caught up: nothing is kept, neither buffers nor spares.
        assert!(!c.take_outgoing(&mut out));
        assert_eq!((out.full.capacity(), out.bytes.capacity()), (0, 0));
        c.with_state(|s| assert!(s.chunks.is_none() && s.coalesced.capacity() == 0));
    }

    #[test]
    fn a_large_frame_after_full_buffers_keeps_the_order() {
        let c = conn(1 << 20);
        c.with_state(|s| s.coalesce = true);
        let mut frames: Vec<Frame> = (0..150u8).map(|i| Frame::message(&[i; 100])).collect();
        frames.push(Frame::message(&[b'L'; COALESCE_MAX + 1]));
        frames.push(Frame::message(b"after"));
        for frame in &frames {
            c.send(frame.clone()).unwrap();
        }
        let expected: Vec<u8> = frames.iter().flat_map(|f| f.ws_bytes().to_vec()).collect();
        assert_eq!(written(&c), (expected, 152));
    }

    #[test]
    fn coalesced_bytes_count_against_the_queue_limit() {
        let c = conn(250);
        c.with_state(|s| s.coalesce = true);
        let frame = Frame::message(&[b'x'; 100]);
        c.send(frame.clone()).unwrap();
        c.send(frame.clone()).unwrap();
        assert_eq!(c.send(frame), Err(SendError::QueueFull));
        assert_eq!(c.closed_reason(), Some(CloseReason::SlowClient));
        // What was queued before the overflow is still written.
        assert_eq!(written(&c).1, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pong_rearms_the_interval() {
        let c = conn(1000);
        let at = Instant::now() + Duration::from_millis(25_000);
        assert_eq!(c.heartbeat(at), HeartbeatAction::SendPing);
        tokio::time::advance(Duration::from_millis(25_000)).await;
        c.on_pong();
        assert!(matches!(c.heartbeat(Instant::now()), HeartbeatAction::WaitUntil(_)));
    }
}
