//! The four scenarios. Each returns one JSON object (printed as one line by the caller).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Map, Value};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::client::{decode_ack_with, decode_packet, EioEvent, SioClient, WireParser};
use crate::error::{BenchError, Result};
use crate::net::Target;
use crate::polling;
use crate::procfs::{clock_ticks_per_second, rss_bytes, CpuSample, SchedSample};
use crate::stats::{latency_histogram, latency_summary, per_second, record_micros, round3};

/// Bound for one connection's handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);

/// Counters shared by the tasks of one scenario, plus the first error seen (errors are never hidden:
/// they are counted and the first one is reported).
#[derive(Default)]
pub(crate) struct Shared {
    pub(crate) connected: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) dropped: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Shared {
    pub(crate) fn record_error(&self, context: &str, err: &BenchError) {
        let mut first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        if first.is_none() {
            *first = Some(format!("{context}: {err}"));
        }
    }

    /// A connection that could not be made: counted in `failed`, its error kept if first.
    pub(crate) fn count_failure(&self, context: &str, err: &BenchError) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.record_error(context, err);
    }

    /// A connection lost after it was made: counted in `dropped`, its error kept if first.
    pub(crate) fn count_drop(&self, context: &str, err: &BenchError) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.record_error(context, err);
    }

    pub(crate) fn first_error(&self) -> Value {
        let first = self.first_error.lock().unwrap_or_else(|p| p.into_inner());
        first.clone().map_or(Value::Null, Value::String)
    }
}

pub(crate) fn progress_bar(len: u64, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    let style =
        ProgressStyle::with_template("{msg:>18} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} (eta {eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(label.to_owned());
    bar
}

pub(crate) async fn connect_with_timeout(target: &Target) -> Result<SioClient> {
    tokio::time::timeout(HANDSHAKE_TIMEOUT, SioClient::connect(target)).await?
}

/// Connects a receiver and joins `room`; returns once the server has processed the join.
pub(crate) async fn connect_and_join(target: &Target, room: &str) -> Result<SioClient> {
    let mut client = connect_with_timeout(target).await?;
    client.emit(&json!(["join", room]), None).await?;
    // Handlers of one socket run in order, so this ack means the join is done.
    client.emit(&json!(["echo", "joined"]), Some(1)).await?;
    tokio::time::timeout(HANDSHAKE_TIMEOUT, client.wait_ack(1)).await??;
    Ok(client)
}

/// Waits until `done()` or `deadline`, updating `bar` from `position()`.
pub(crate) async fn wait_until(
    deadline: Instant,
    bar: &ProgressBar,
    position: impl Fn() -> u64,
    done: impl Fn() -> bool,
) -> bool {
    loop {
        bar.set_position(position());
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Joins a receiver through `gate` (which bounds the handshakes in flight); `None`, counted as a
/// failure, when it could not.
pub(crate) async fn gated_join<C>(
    gate: Arc<Semaphore>,
    shared: &Shared,
    join: impl std::future::Future<Output = Result<C>>,
) -> Option<C> {
    let permit = gate.acquire_owned().await;
    let joined = join.await;
    drop(permit);
    joined.map_err(|err| shared.count_failure("receiver join", &err)).ok()
}

/// Waits until each of `receivers` has joined (`ready`) or failed, for at most a minute and a second
/// per 50 receivers; whether they all had.
pub(crate) async fn wait_for_receivers(ready: &AtomicU64, shared: &Shared, receivers: u64, bar: &ProgressBar) -> bool {
    let deadline = Instant::now() + Duration::from_secs(60 + receivers / 50);
    let settled = wait_until(
        deadline,
        bar,
        || ready.load(Ordering::Relaxed),
        || ready.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= receivers,
    )
    .await;
    bar.finish_and_clear();
    settled
}

/// Waits until `deliveries` reaches `expected`, or gives up once none arrived for `straggler_wait` or
/// `max_wait` has passed since `started`; `bar` shows the count. Returns whether all arrived and
/// when the count last grew (the end of the deliveries, for their rate).
pub(crate) async fn wait_for_deliveries(
    deliveries: &AtomicU64,
    expected: u64,
    started: Instant,
    straggler_wait: Duration,
    max_wait: Duration,
    bar: &ProgressBar,
) -> (bool, Instant) {
    let (mut last_count, mut last_progress) = (0u64, started);
    loop {
        let count = deliveries.load(Ordering::Relaxed);
        let now = Instant::now();
        if count != last_count {
            last_count = count;
            last_progress = now;
        }
        bar.set_position(count);
        if count >= expected {
            return (true, last_progress);
        }
        if now.duration_since(last_progress) >= straggler_wait || now.duration_since(started) >= max_wait {
            return (false, last_progress);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Stops every task of `tasks` through `stop` and waits (bounded) for them to finish.
pub(crate) async fn shut_down<T: 'static>(stop: &watch::Sender<bool>, tasks: &mut JoinSet<T>) -> Vec<T> {
    let _ = stop.send(true);
    let mut results = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(value) = joined {
            results.push(value);
        }
    }
    tasks.abort_all();
    results
}

// ---------------------------------------------------------------------------------------------------
// idle

/// Connections opened and closed before the idle baseline is read.
const IDLE_WARMUP: usize = 100;

#[derive(Debug, Clone)]
pub struct IdleOptions {
    pub connections: usize,
    pub concurrency: usize,
    /// Time to let the server settle before reading its memory.
    pub settle: Duration,
    pub server_pid: Option<u32>,
}

/// N WebSocket connections that only answer pings; server memory before and after, and connect rate.
pub async fn idle(target: &Target, options: &IdleOptions) -> Value {
    // Warm up first, so code loaded or compiled on the first connections is not billed to each one.
    let mut warmup = JoinSet::new();
    for _ in 0..IDLE_WARMUP.min(options.connections) {
        let target = target.clone();
        warmup.spawn(async move { connect_with_timeout(&target).await.is_ok() });
    }
    let warmed = warmup.join_all().await.into_iter().filter(|ok| *ok).count();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = options.server_pid.and_then(rss_bytes);
    let shared = Arc::new(Shared::default());
    let (stop, stopped) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let bar = progress_bar(options.connections as u64, "idle connect");
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..options.connections {
        let (target, shared, gate, mut stopped) = (target.clone(), shared.clone(), gate.clone(), stopped.clone());
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let mut client = match connect_with_timeout(&target).await {
                Ok(client) => client,
                Err(err) => {
                    shared.count_failure("connect", &err);
                    return;
                }
            };
            drop(permit);
            client.ws.shrink_if_empty();
            shared.connected.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = stopped.changed() => return,
                    event = client.next_eio() => if let Err(err) = event {
                        shared.count_drop("idle connection", &err);
                        return;
                    }
                }
            }
        });
    }
    let total = options.connections as u64;
    let deadline = started + Duration::from_secs(60 + total / 100);
    let all_done = wait_until(
        deadline,
        &bar,
        || shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed),
        || shared.connected.load(Ordering::Relaxed) + shared.failed.load(Ordering::Relaxed) >= total,
    )
    .await;
    let connect_secs = started.elapsed().as_secs_f64();
    bar.finish_and_clear();
    tokio::time::sleep(options.settle).await;
    let rss_after = options.server_pid.and_then(rss_bytes);
    let connected = shared.connected.load(Ordering::Relaxed);
    let dropped = shared.dropped.load(Ordering::Relaxed);
    shut_down(&stop, &mut tasks).await;
    let bytes_per_connection = match (rss_before, rss_after) {
        (Some(before), Some(after)) if connected > 0 => {
            Value::from(round3((after as f64 - before as f64) / connected as f64))
        }
        _ => Value::Null,
    };
    json!({
        "scenario": "idle",
        "connections": options.connections,
        "warmup_connections": warmed,
        "connected": connected,
        "failed": shared.failed.load(Ordering::Relaxed),
        "timed_out": !all_done,
        "dropped_while_idle": dropped,
        "connect_secs": round3(connect_secs),
        "connect_rate": per_second(connected, connect_secs),
        "rss_before": rss_before,
        "rss_after": rss_after,
        "bytes_per_connection": bytes_per_connection,
        "first_error": shared.first_error(),
    })
}

// ---------------------------------------------------------------------------------------------------
// fanout

#[derive(Debug, Clone)]
pub struct FanoutOptions {
    pub receivers: usize,
    pub messages: usize,
    pub payload_bytes: usize,
    /// Send the payload as binary (a buffer of `payload_bytes` after a short sequence string) instead
    /// of a string.
    pub binary: bool,
    /// Payloads of pseudo-random words (compressible like text) instead of one repeated letter.
    pub words: bool,
    pub concurrency: usize,
    /// Give up waiting once no delivery arrived for this long.
    pub straggler_wait: Duration,
    /// Absolute bound on the delivery phase.
    pub max_wait: Duration,
    pub server_pid: Option<u32>,
    /// What the sender emits: a plain broadcast or the built-in `message` event.
    pub event: FanoutEvent,
    /// The sender asks for an ack of every message (WebSocket only) and the run (and its CPU window)
    /// lasts until every ack came too: what a sender waiting for `kafka.ack = "persisted"` costs.
    pub ack: bool,
    /// How the receivers and the sender connect: WebSocket, or HTTP long-polling without upgrade.
    pub transport: ClientTransport,
}

/// The transport of a scenario's clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ClientTransport {
    /// A direct WebSocket (`transport=websocket`), as every scenario used so far.
    #[default]
    Websocket,
    /// HTTP long-polling that never upgrades: a GET connection and a POST connection per client, as a
    /// browser behind a proxy that blocks WebSocket has (JSON parser only).
    Polling,
}

impl ClientTransport {
    /// The name in the JSON lines.
    pub fn name(self) -> &'static str {
        match self {
            ClientTransport::Websocket => "websocket",
            ClientTransport::Polling => "polling",
        }
    }
}

/// Connects a polling receiver and joins `room`; returns once the server has processed the join.
async fn polling_join(target: &Target, room: &str) -> Result<polling::PollingClient> {
    let joined = async {
        let mut client = polling::PollingClient::connect(target).await?;
        let join = polling::event_packet(&json!(["join", room]), None);
        let echo = polling::event_packet(&json!(["echo", "joined"]), Some(1));
        // Handlers of one socket run in order, so this ack means the join is done.
        client.post.send(&[&join, &echo]).await?;
        client.wait_ack(1).await?;
        Ok(client)
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, joined).await?
}

/// A fanout receiver over long-polling: counts deliveries (and their order) poll by poll, answers
/// pings, until `stopped`.
async fn polling_receiver(
    target: Target,
    gate: Arc<Semaphore>,
    shared: Arc<Shared>,
    ready: Arc<AtomicU64>,
    deliveries: Arc<AtomicU64>,
    mut stopped: watch::Receiver<bool>,
    fanout_event: FanoutEvent,
) -> ReceiverTally {
    let mut tally = ReceiverTally::default();
    let Some(mut client) = gated_join(gate, &shared, polling_join(&target, FANOUT_ROOM)).await else { return tally };
    ready.fetch_add(1, Ordering::Relaxed);
    let bytes_before = client.get.bytes_read;
    let mut expected_seq = 0u64;
    loop {
        let polled = tokio::select! {
            biased;
            _ = stopped.changed() => break,
            polled = client.get.poll() => polled,
        };
        let step: Result<()> = async {
            let mut batch = 0u64;
            for polled in polled? {
                match polled {
                    polling::Polled::Message(text) => batch += tally.count(fanout_event.seq(&text), &mut expected_seq),
                    polling::Polled::Ping => client.post.send(&[b"3"]).await?,
                    polling::Polled::Other => {}
                }
            }
            tally.received += batch;
            deliveries.fetch_add(batch, Ordering::Relaxed);
            Ok(())
        }
        .await;
        if let Err(err) = step {
            shared.count_drop("receiver", &err);
            break;
        }
    }
    tally.wire_bytes = client.get.bytes_read - bytes_before;
    tally
}

/// The fanout's sender: over WebSocket its messages are framed up front and written back to back;
/// over polling they go in POSTs of at most [`POLLING_POST_BYTES`], one after the other (as
/// socket.io-client sends whatever is queued when the previous POST completes).
enum FanoutSender {
    Websocket(SioClient, BytesMut),
    Polling(polling::PollingClient, Vec<Vec<u8>>),
}

/// The largest POST body the polling sender builds (socketioxide's default payload limit is 100 KB).
const POLLING_POST_BYTES: usize = 32 << 10;

/// Packets in order, grouped into POST bodies of at most `limit` bytes (with their separators); a
/// packet larger than `limit` goes alone.
fn post_batches(packets: &[Vec<u8>], limit: usize) -> Vec<Vec<&[u8]>> {
    let mut batches: Vec<Vec<&[u8]>> = Vec::new();
    let mut bytes = 0;
    for packet in packets {
        match batches.last_mut() {
            Some(batch) if bytes + 1 + packet.len() <= limit => {
                batch.push(packet);
                bytes += 1 + packet.len();
            }
            _ => {
                batches.push(vec![packet]);
                bytes = packet.len();
            }
        }
    }
    batches
}

impl FanoutSender {
    async fn send(&mut self) -> Result<()> {
        match self {
            FanoutSender::Websocket(sender, frames) => sender.ws.write_raw(frames).await,
            FanoutSender::Polling(sender, packets) => {
                for batch in post_batches(packets, POLLING_POST_BYTES) {
                    sender.post.send(&batch).await?;
                }
                Ok(())
            }
        }
    }
}

/// The event a fanout's sender emits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FanoutEvent {
    /// `msg`(room, payload): the bench server's handler broadcasts `msg`(payload) to the room.
    #[default]
    Msg,
    /// The built-in `message`(room, payload) (docs/EVENTS.md): the room gets
    /// `message`{id, room, user, data: payload, ts}; needs a server with the built-in events
    /// (`bench-server` with `BENCH_EVENTS=1`, or `switchyard`).
    Message,
}

impl std::str::FromStr for FanoutEvent {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "msg" => Ok(FanoutEvent::Msg),
            "message" => Ok(FanoutEvent::Message),
            other => Err(format!("unknown fanout event {other:?} (msg or message)")),
        }
    }
}

impl FanoutEvent {
    fn name(self) -> &'static str {
        match self {
            FanoutEvent::Msg => "msg",
            FanoutEvent::Message => "message",
        }
    }

    fn seq(self, text: &[u8]) -> Option<u64> {
        match self {
            FanoutEvent::Msg => fanout_seq(text),
            FanoutEvent::Message => message_seq(text),
        }
    }
}

pub const FANOUT_ROOM: &str = "fanout";

/// The fanout payload for message `seq`: its sequence number, padded to `bytes` with `x`.
pub fn fanout_payload(seq: usize, bytes: usize) -> String {
    pad_with_x(format!("{seq:08}|"), bytes)
}

/// `head` followed by as many `x` as make it `bytes` long (`head` whole when it is longer).
pub(crate) fn pad_with_x(mut head: String, bytes: usize) -> String {
    let padding = bytes.saturating_sub(head.len());
    head.extend(std::iter::repeat_n('x', padding));
    head
}

/// A fanout payload of pseudo-random words from a small vocabulary: compresses about as well as chat
/// text (a repeated letter compresses a thousandfold, which would flatter compression).
pub fn fanout_words(seq: usize, bytes: usize) -> String {
    const WORDS: [&str; 32] = [
        "the", "room", "message", "user", "hello", "world", "socket", "event", "server", "client", "quick", "brown",
        "fox", "jumps", "over", "lazy", "dog", "alpha", "beta", "gamma", "delta", "data", "value", "status", "online",
        "offline", "typing", "seen", "reply", "thread", "emoji", "link",
    ];
    let mut payload = format!("{seq:08}|");
    let mut x = (seq as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    while payload.len() < bytes {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        payload.push_str(WORDS[(x % 32) as usize]);
        payload.push(if (x >> 5) & 7 == 0 { '.' } else { ' ' });
    }
    payload.truncate(bytes.max(9));
    payload
}

/// The sequence number of a fanout delivery: `text` is the Socket.IO packet after the Engine.IO `4`,
/// `2["msg","00000042|xxx"]`. `None` when it is not a `msg` event.
pub fn fanout_seq(text: &[u8]) -> Option<u64> {
    // `2["msg","<seq>|..."]`, or with a binary payload `51-["msg","<seq>|",{"_placeholder":...}]`.
    let rest = text.strip_prefix(b"2[\"msg\",\"").or_else(|| text.strip_prefix(b"51-[\"msg\",\""))?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b'|') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// The sequence number of a built-in `message` delivery:
/// `2["message",{"id":"..","room":"fanout","user":"..","data":"00000042|xxx","ts":..}]`.
pub fn message_seq(text: &[u8]) -> Option<u64> {
    let rest = text.strip_prefix(b"2[\"message\",{")?;
    const KEY: &[u8] = b"\"data\":\"";
    let at = rest.windows(KEY.len()).position(|w| w == KEY)?;
    let rest = &rest[at + KEY.len()..];
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || rest.get(digits) != Some(&b'|') {
        return None;
    }
    std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()
}

/// `fanout_seq` for either parser. A msgpack delivery `{type: 2, data: ["msg", "<seq>|xxx"], nsp: "/"}`
/// is read by its fixed prefix (the layout Switchyard and Node both write), anything else by a full
/// decode.
pub fn fanout_seq_with(parser: WireParser, data: &[u8]) -> Option<u64> {
    if parser == WireParser::Json {
        return fanout_seq(data);
    }
    const PREFIX: &[u8] = b"\x83\xa4type\x02\xa4data";
    // `data` is `["msg", "<seq>|..."]` or, with a binary payload, `["msg", "<seq>|", <bin>]`.
    let after_data = data.strip_prefix(PREFIX).and_then(|rest| match rest {
        [0x92 | 0x93, rest @ ..] => rest.strip_prefix(b"\xa3msg"),
        _ => None,
    });
    let payload: std::borrow::Cow<'_, [u8]> = match after_data {
        Some(rest) => match rest.first()? {
            0xa0..=0xbf => rest.get(1..)?.into(),
            0xd9 => rest.get(2..)?.into(),
            0xda => rest.get(3..)?.into(),
            0xdb => rest.get(5..)?.into(),
            _ => return None,
        },
        None => {
            let packet = decode_packet(parser, data).ok()?;
            let serde_json::Value::Array(items) = packet.data? else { return None };
            match items.as_slice() {
                [Value::String(name), Value::String(payload), ..] if name == "msg" => {
                    payload.clone().into_bytes().into()
                }
                _ => return None,
            }
        }
    };
    let digits = payload.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || payload.get(digits) != Some(&b'|') {
        return None;
    }
    std::str::from_utf8(&payload[..digits]).ok()?.parse().ok()
}

#[derive(Default)]
struct ReceiverTally {
    received: u64,
    out_of_order: u64,
    other_events: u64,
    /// Bytes read off the socket after the join (the deliveries as they were on the wire).
    wire_bytes: u64,
    /// Messages that arrived compressed (permessage-deflate).
    compressed: u64,
}

impl ReceiverTally {
    /// Counts one message of a receiver: a delivery with sequence number `seq` (checked against
    /// `expected_seq`, the one due next; returns 1), or another event (`None`; returns 0).
    fn count(&mut self, seq: Option<u64>, expected_seq: &mut u64) -> u64 {
        let Some(seq) = seq else {
            self.other_events += 1;
            return 0;
        };
        if seq != *expected_seq {
            self.out_of_order += 1;
        }
        *expected_seq = seq + 1;
        1
    }
}

/// R receivers in one room; one sender emits M messages of B bytes as fast as it can.
pub async fn fanout(target: &Target, options: &FanoutOptions) -> Value {
    let shared = Arc::new(Shared::default());
    let ready = Arc::new(AtomicU64::new(0));
    let deliveries = Arc::new(AtomicU64::new(0));
    let (stop, stopped) = watch::channel(false);
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let bar = progress_bar(options.receivers as u64, "fanout join");
    let mut tasks = JoinSet::new();
    let polling = options.transport == ClientTransport::Polling;
    if polling && (target.parser != WireParser::Json || options.binary || options.event != FanoutEvent::Msg) {
        return json!({"scenario": "fanout", "transport": "polling",
            "error": "the polling fanout speaks the JSON parser, string payloads and --event msg only"});
    }
    if options.ack && (polling || options.event != FanoutEvent::Message) {
        return json!({"scenario": "fanout", "error": "--ack needs --event message over WebSocket (the built-in event acks)"});
    }
    for _ in 0..options.receivers {
        let (target, shared, gate, ready, deliveries, mut stopped) =
            (target.clone(), shared.clone(), gate.clone(), ready.clone(), deliveries.clone(), stopped.clone());
        let fanout_event = options.event;
        if polling {
            tasks.spawn(polling_receiver(target, gate, shared, ready, deliveries, stopped, fanout_event));
            continue;
        }
        tasks.spawn(async move {
            let mut tally = ReceiverTally::default();
            let Some(mut client) = gated_join(gate, &shared, connect_and_join(&target, FANOUT_ROOM)).await else {
                return tally;
            };
            client.ws.set_read_chunk(16 << 10);
            ready.fetch_add(1, Ordering::Relaxed);
            let mut expected_seq = 0u64;
            let (bytes_before, compressed_before) = (client.ws.bytes_read, client.ws.compressed_messages);
            let tally_wire = |tally: &mut ReceiverTally, client: &crate::client::SioClient| {
                tally.wire_bytes = client.ws.bytes_read - bytes_before;
                tally.compressed = client.ws.compressed_messages - compressed_before;
            };
            loop {
                let mut batch = 0u64;
                let step: Result<()> = async {
                    while let Some(event) = client.try_next_eio().await? {
                        if let EioEvent::Message(text) = event {
                            let seq = if client.parser == WireParser::Json {
                                fanout_event.seq(&text)
                            } else {
                                fanout_seq_with(client.parser, &text)
                            };
                            batch += tally.count(seq, &mut expected_seq);
                        }
                    }
                    Ok(())
                }
                .await;
                tally.received += batch;
                deliveries.fetch_add(batch, Ordering::Relaxed);
                if let Err(err) = step {
                    shared.count_drop("receiver", &err);
                    tally_wire(&mut tally, &client);
                    return tally;
                }
                tokio::select! {
                    biased;
                    _ = stopped.changed() => {
                        tally_wire(&mut tally, &client);
                        return tally;
                    }
                    read = client.ws.fill() => if let Err(err) = read {
                        shared.count_drop("receiver", &err);
                        tally_wire(&mut tally, &client);
                        return tally;
                    }
                }
            }
        });
    }
    let all_joined = wait_for_receivers(&ready, &shared, options.receivers as u64, &bar).await;

    let mut result = Map::new();
    result.insert("scenario".into(), json!("fanout"));
    result.insert("transport".into(), json!(options.transport.name()));
    result.insert("event".into(), json!(options.event.name()));
    result.insert("receivers".into(), json!(options.receivers));
    result.insert("messages".into(), json!(options.messages));
    result.insert("payload_bytes".into(), json!(options.payload_bytes));
    let joined = ready.load(Ordering::Relaxed);
    result.insert("receivers_joined".into(), json!(joined));

    // The built-in `message` is refused to a socket outside the room: that sender joins first (and
    // so also gets each message back, one delivery per message that the receivers do not count).
    let sender = match (options.event, polling) {
        (_, true) => tokio::time::timeout(HANDSHAKE_TIMEOUT, polling::PollingClient::connect(target))
            .await
            .map_err(BenchError::from)
            .and_then(|connected| connected)
            .map(|sender| FanoutSender::Polling(sender, Vec::new())),
        (FanoutEvent::Msg, false) => {
            connect_with_timeout(target).await.map(|sender| FanoutSender::Websocket(sender, BytesMut::new()))
        }
        (FanoutEvent::Message, false) => {
            connect_and_join(target, FANOUT_ROOM).await.map(|sender| FanoutSender::Websocket(sender, BytesMut::new()))
        }
    };
    let mut sender = match sender {
        Ok(sender) => sender,
        Err(err) => {
            shared.record_error("sender connect", &err);
            shut_down(&stop, &mut tasks).await;
            result.insert("error".into(), json!(format!("sender could not connect: {err}")));
            return Value::Object(result);
        }
    };
    // Every message is framed (or, for polling, encoded) before the clock starts, then written back to back.
    let blob = Bytes::from(vec![0xa5u8; options.payload_bytes]);
    match &mut sender {
        FanoutSender::Polling(_, packets) => {
            for seq in 0..options.messages {
                let args = json!([options.event.name(), FANOUT_ROOM, fanout_payload(seq, options.payload_bytes)]);
                packets.push(polling::event_packet(&args, None));
            }
        }
        FanoutSender::Websocket(sender, frames) => {
            let ack_id = |seq: usize| options.ack.then_some(seq as u64 + ACK_ID_BASE);
            frames.reserve(options.messages * (options.payload_bytes + 40));
            for seq in 0..options.messages {
                if options.binary {
                    let args = json!([
                        options.event.name(),
                        FANOUT_ROOM,
                        fanout_payload(seq, 0),
                        switchyard_protocol::socketio::placeholder(0)
                    ]);
                    sender.frame_event_into(&args, std::slice::from_ref(&blob), ack_id(seq), frames);
                } else {
                    sender.frame_event_into(
                        &json!([
                            options.event.name(),
                            FANOUT_ROOM,
                            if options.words {
                                fanout_words(seq, options.payload_bytes)
                            } else {
                                fanout_payload(seq, options.payload_bytes)
                            }
                        ]),
                        &[],
                        ack_id(seq),
                        frames,
                    );
                }
            }
        }
    }
    let expected = joined * options.messages as u64;
    let bar = progress_bar(expected, "fanout deliveries");
    let cpu_before = options.server_pid.map(CpuSample::take);
    let started = Instant::now();
    let send_result = sender.send().await;
    let send_secs = started.elapsed().as_secs_f64();
    if let Err(err) = &send_result {
        shared.record_error("sender", err);
    }
    let acks = match (&mut sender, options.ack && send_result.is_ok()) {
        (FanoutSender::Websocket(client, _), true) => {
            Some(wait_for_acks(client, options.messages as u64, started, options.max_wait).await)
        }
        _ => None,
    };
    let (completed, last_progress) =
        wait_for_deliveries(&deliveries, expected, started, options.straggler_wait, options.max_wait, &bar).await;
    let cpu_after = options.server_pid.map(CpuSample::take);
    bar.finish_and_clear();
    let delivery_secs = last_progress.duration_since(started).as_secs_f64();
    let tallies = shut_down(&stop, &mut tasks).await;
    drop(sender);

    let delivered: u64 = tallies.iter().map(|t| t.received).sum();
    let out_of_order: u64 = tallies.iter().map(|t| t.out_of_order).sum();
    let other_events: u64 = tallies.iter().map(|t| t.other_events).sum();
    let lost = expected.saturating_sub(delivered);
    result.insert("parser".into(), json!(format!("{:?}", target.parser).to_lowercase()));
    result.insert("binary".into(), json!(options.binary));
    result.insert("all_joined".into(), json!(all_joined));
    result.insert("expected".into(), json!(expected));
    result.insert("delivered".into(), json!(delivered));
    result.insert("lost".into(), json!(lost));
    result.insert(
        "loss_pct".into(),
        json!(if expected > 0 { round3(lost as f64 * 100.0 / expected as f64) } else { 0.0 }),
    );
    result.insert("completed".into(), json!(completed));
    result.insert("out_of_order".into(), json!(out_of_order));
    result.insert("unexpected_events".into(), json!(other_events));
    let wire_bytes: u64 = tallies.iter().map(|t| t.wire_bytes).sum();
    let compressed: u64 = tallies.iter().map(|t| t.compressed).sum();
    result.insert("wire_bytes".into(), json!(wire_bytes));
    result.insert(
        "wire_bytes_per_delivery".into(),
        json!(if delivered > 0 { round3(wire_bytes as f64 / delivered as f64) } else { 0.0 }),
    );
    result.insert("compressed_deliveries".into(), json!(compressed));
    result.insert("receivers_dropped".into(), json!(shared.dropped.load(Ordering::Relaxed)));
    result.insert("send_secs".into(), json!(round3(send_secs)));
    result.insert("delivery_secs".into(), json!(round3(delivery_secs)));
    result.insert("deliveries_per_sec".into(), json!(per_second(delivered, delivery_secs)));
    insert_cpu(&mut result, cpu_before, cpu_after, delivered, "delivery");
    // With loss, the cost per attempted delivery tells more about the send path than per delivered one.
    let per_expected = result
        .get("server_cpu_ms")
        .and_then(Value::as_f64)
        .filter(|_| expected > 0)
        .map(|ms| round3(ms * 1e6 / expected as f64));
    result.insert("server_cpu_ns_per_expected_delivery".into(), json!(per_expected));
    if let Some(acks) = acks {
        result.insert("acks_ok".into(), json!(acks.ok));
        result.insert("acks_refused".into(), json!(acks.refused));
        result.insert("acks_missing".into(), json!((options.messages as u64).saturating_sub(acks.ok + acks.refused)));
        result.insert("ack_secs".into(), json!(round3(acks.last.duration_since(started).as_secs_f64())));
        if let Some(err) = acks.error {
            result.insert("ack_error".into(), json!(err));
        }
    }
    result.insert("first_error".into(), shared.first_error());
    Value::Object(result)
}

/// The fanout's first ack id (ids start above the join's).
const ACK_ID_BASE: u64 = 1000;

/// What came back to a fanout sender that asked for acks.
struct AckTally {
    ok: u64,
    refused: u64,
    /// When the last ack came (or the wait ended).
    last: Instant,
    error: Option<String>,
}

/// Reads the sender's packets until `messages` acks came (the room's copies of its own messages are
/// skipped) or `max_wait` since `started` passed.
async fn wait_for_acks(client: &mut SioClient, messages: u64, started: Instant, max_wait: Duration) -> AckTally {
    let mut tally = AckTally { ok: 0, refused: 0, last: Instant::now(), error: None };
    let deadline = tokio::time::Instant::from_std(started + max_wait);
    while tally.ok + tally.refused < messages {
        let event = match tokio::time::timeout_at(deadline, client.next_eio()).await {
            Ok(Ok(event)) => event,
            Ok(Err(err)) => {
                tally.error = Some(err.to_string());
                break;
            }
            Err(_) => {
                tally.error = Some(format!("timed out with {} of {messages} acks", tally.ok + tally.refused));
                break;
            }
        };
        let EioEvent::Message(text) = event else { continue };
        match decode_ack_with(client.parser, &text) {
            Ok(Some((id, args))) if id >= ACK_ID_BASE => {
                if args.get(0).and_then(|ack| ack.get("ok")) == Some(&Value::Bool(true)) {
                    tally.ok += 1;
                } else {
                    tally.refused += 1;
                }
                tally.last = Instant::now();
            }
            Ok(_) => {}
            Err(err) => {
                tally.error = Some(err.to_string());
                break;
            }
        }
    }
    tally
}

/// Adds `server_cpu_ms`, `server_cpu_stat_ms` and `server_cpu_ns_per_<unit>`.
fn insert_cpu(
    result: &mut Map<String, Value>,
    before: Option<CpuSample>,
    after: Option<CpuSample>,
    units: u64,
    unit: &str,
) {
    let (Some(before), Some(after)) = (before, after) else {
        result.insert(format!("server_cpu_ns_per_{unit}"), Value::Null);
        return;
    };
    let delta = after.since(&before);
    let best = delta.best_ns(clock_ticks_per_second());
    result.insert("server_cpu_ms".into(), json!(best.map(|ns| round3(ns as f64 / 1e6))));
    result.insert("server_cpu_stat_ms".into(), json!(delta.stat.map(|ns| round3(ns as f64 / 1e6))));
    let per_unit = match best {
        Some(ns) if units > 0 => json!(round3(ns as f64 / units as f64)),
        _ => Value::Null,
    };
    result.insert(format!("server_cpu_ns_per_{unit}"), per_unit);
}

// ---------------------------------------------------------------------------------------------------
// echo

#[derive(Debug, Clone)]
pub struct EchoOptions {
    pub clients: usize,
    pub rate_per_client: f64,
    pub seconds: f64,
    pub payload_bytes: usize,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
    /// How the clients connect: WebSocket, or HTTP long-polling without upgrade.
    pub transport: ClientTransport,
}

struct EchoTally {
    histogram: Histogram<u64>,
    /// How late each send was against its schedule: the load generator's own delay (it shares the
    /// cores with the server), which a round trip does not include but which shows how busy it was.
    late: Histogram<u64>,
    sent: u64,
    acked: u64,
    mismatched: u64,
}

/// One echo client over long-polling: a GET loop that matches acks, beside a send loop that POSTs one
/// acked `echo` per tick (each POST waits for the server's `ok`, as socket.io-client's would). The
/// round trip runs from the start of the POST to the poll that brings the ack back.
async fn echo_polling_client(
    client: polling::PollingClient,
    payload: String,
    first: tokio::time::Instant,
    period: Duration,
    end: tokio::time::Instant,
) -> (EchoTally, Result<()>) {
    let polling::PollingClient { mut get, post } = client;
    let post = tokio::sync::Mutex::new(post);
    let pending: Mutex<VecDeque<(u64, Instant)>> = Mutex::new(VecDeque::new());
    let sent = AtomicU64::new(0);
    let sending_done = tokio::sync::Notify::new();
    let expected = json!([payload.clone()]);
    let args = json!(["echo", payload]);
    let drain_until = end + Duration::from_secs(5);
    let lock = |pending: &Mutex<VecDeque<(u64, Instant)>>| pending.lock().unwrap_or_else(|p| p.into_inner()).len();
    let send_loop = async {
        let mut ticks = tokio::time::interval_at(first, period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_id = 0u64;
        let outcome: Result<()> = async {
            loop {
                ticks.tick().await;
                if tokio::time::Instant::now() >= end {
                    return Ok(());
                }
                next_id += 1;
                let packet = polling::event_packet(&args, Some(next_id));
                let mut post = post.lock().await;
                pending.lock().unwrap_or_else(|p| p.into_inner()).push_back((next_id, Instant::now()));
                post.send(&[&packet]).await?;
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }
        .await;
        sending_done.notify_one();
        outcome
    };
    let mut tally =
        EchoTally { histogram: latency_histogram(), late: latency_histogram(), sent: 0, acked: 0, mismatched: 0 };
    let poll_loop = async {
        let mut done = false;
        loop {
            if done && lock(&pending) == 0 {
                return Ok(());
            }
            let polled = tokio::select! {
                biased;
                polled = get.poll() => polled?,
                _ = sending_done.notified(), if !done => {
                    done = true;
                    continue;
                }
                _ = tokio::time::sleep_until(drain_until) => return Ok(()),
            };
            for polled in polled {
                match polled {
                    polling::Polled::Message(text) => {
                        let Some((id, data)) = decode_ack_with(WireParser::Json, &text)? else { continue };
                        let mut pending = pending.lock().unwrap_or_else(|p| p.into_inner());
                        if let Some(at) = pending.iter().position(|(pid, _)| *pid == id) {
                            let (_, sent_at) = pending.remove(at).unwrap_or((id, Instant::now()));
                            record_micros(&mut tally.histogram, sent_at.elapsed().as_micros() as u64);
                            tally.acked += 1;
                            if data != expected {
                                tally.mismatched += 1;
                            }
                        }
                    }
                    polling::Polled::Ping => post.lock().await.send(&[b"3"]).await?,
                    polling::Polled::Other => {}
                }
            }
        }
    };
    let (sending, polling) = tokio::join!(send_loop, poll_loop);
    tally.sent = sent.load(Ordering::Relaxed);
    (tally, sending.and(polling))
}

/// C clients each sending an acked `echo` at H per second for S seconds; round-trip times.
pub async fn echo(target: &Target, options: &EchoOptions) -> Value {
    let shared = Arc::new(Shared::default());
    if options.transport == ClientTransport::Polling && target.parser != WireParser::Json {
        return json!({"scenario": "echo", "transport": "polling", "error": "the polling echo speaks the JSON parser only"});
    }
    let bar = progress_bar(options.clients as u64, "echo connect");
    let gate = Arc::new(Semaphore::new(options.concurrency.max(1)));
    let mut connecting = JoinSet::new();
    for _ in 0..options.clients {
        let (target, gate) = (target.clone(), gate.clone());
        let transport = options.transport;
        connecting.spawn(async move {
            let _permit = gate.acquire_owned().await;
            match transport {
                ClientTransport::Websocket => connect_with_timeout(&target).await.map(EchoClient::Websocket),
                ClientTransport::Polling => {
                    tokio::time::timeout(HANDSHAKE_TIMEOUT, polling::PollingClient::connect(&target))
                        .await
                        .map_err(BenchError::from)
                        .and_then(|connected| connected)
                        .map(EchoClient::Polling)
                }
            }
        });
    }
    let mut clients = Vec::with_capacity(options.clients);
    while let Some(joined) = connecting.join_next().await {
        match joined {
            Ok(Ok(client)) => clients.push(client),
            Ok(Err(err)) => {
                shared.count_failure("connect", &err);
            }
            Err(err) => {
                shared.count_failure("connect task", &BenchError::new(err.to_string()));
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();

    let payload = "e".repeat(options.payload_bytes);
    let period = Duration::from_secs_f64(1.0 / options.rate_per_client.max(0.001));
    let run_for = Duration::from_secs_f64(options.seconds.max(0.0));
    let start = tokio::time::Instant::now() + Duration::from_millis(200);
    let end = start + run_for;
    let client_count = clients.len().max(1);
    let cpu_before = options.server_pid.map(CpuSample::take);
    let sched_before = (options.server_pid.and_then(SchedSample::take), SchedSample::take(std::process::id()));
    let mut tasks = JoinSet::new();
    for (index, client) in clients.into_iter().enumerate() {
        let shared = shared.clone();
        let payload = payload.clone();
        // Spread the clients' send instants evenly over one period.
        let first = start + period.mul_f64(index as f64 / client_count as f64);
        let mut client = match client {
            EchoClient::Websocket(client) => client,
            EchoClient::Polling(client) => {
                tasks.spawn(async move {
                    let (tally, outcome) = echo_polling_client(client, payload, first, period, end).await;
                    if let Err(err) = outcome {
                        shared.count_drop("echo client", &err);
                    }
                    tally
                });
                continue;
            }
        };
        tasks.spawn(async move {
            let mut tally = EchoTally {
                histogram: latency_histogram(),
                late: latency_histogram(),
                sent: 0,
                acked: 0,
                mismatched: 0,
            };
            let expected = json!([payload.clone()]);
            let args = json!(["echo", payload]);
            let mut pending: VecDeque<(u64, Instant)> = VecDeque::new();
            let mut next_id = 0u64;
            let mut ticks = tokio::time::interval_at(first, period);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let drain_until = end + Duration::from_secs(5);
            let outcome: Result<()> = async {
                loop {
                    let sending = tokio::time::Instant::now() < end;
                    if !sending && pending.is_empty() {
                        return Ok(());
                    }
                    tokio::select! {
                        biased;
                        scheduled = ticks.tick(), if sending => {
                            if tokio::time::Instant::now() < end {
                                record_micros(&mut tally.late, scheduled.elapsed().as_micros() as u64);
                                next_id += 1;
                                pending.push_back((next_id, Instant::now()));
                                client.emit(&args, Some(next_id)).await?;
                                tally.sent += 1;
                            }
                        }
                        read = client.ws.fill() => {
                            read?;
                            while let Some(event) = client.try_next_eio().await? {
                                let EioEvent::Message(text) = event else { continue };
                                let Some((id, data)) = decode_ack_with(client.parser, &text)? else { continue };
                                if let Some(at) = pending.iter().position(|(pid, _)| *pid == id) {
                                    let (_, sent_at) = pending.remove(at).unwrap_or((id, Instant::now()));
                                    record_micros(&mut tally.histogram, sent_at.elapsed().as_micros() as u64);
                                    tally.acked += 1;
                                    if data != expected {
                                        tally.mismatched += 1;
                                    }
                                }
                            }
                        }
                        _ = tokio::time::sleep_until(drain_until) => return Ok(()),
                    }
                }
            }
            .await;
            if let Err(err) = outcome {
                shared.count_drop("echo client", &err);
            }
            tally
        });
    }
    let bar = progress_bar(run_for.as_secs().max(1), "echo seconds");
    let ticker = bar.clone();
    let progress = tokio::spawn(async move {
        let begun = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            ticker.set_position(begun.elapsed().as_secs());
        }
    });
    let mut histogram = latency_histogram();
    let mut late = latency_histogram();
    let (mut sent, mut acked, mut mismatched) = (0u64, 0u64, 0u64);
    let deadline = end + Duration::from_secs(30);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, tasks.join_next()).await {
        if let Ok(tally) = joined {
            let _ = histogram.add(&tally.histogram);
            let _ = late.add(&tally.late);
            sent += tally.sent;
            acked += tally.acked;
            mismatched += tally.mismatched;
        }
    }
    tasks.abort_all();
    progress.abort();
    bar.finish_and_clear();
    let cpu_after = options.server_pid.map(CpuSample::take);
    let sched_after = (options.server_pid.and_then(SchedSample::take), SchedSample::take(std::process::id()));

    let mut result = Map::new();
    result.insert("scenario".into(), json!("echo"));
    result.insert("transport".into(), json!(options.transport.name()));
    result.insert("clients".into(), json!(options.clients));
    result.insert("connected".into(), json!(client_count_connected(&shared, options.clients)));
    result.insert("rate_per_client".into(), json!(options.rate_per_client));
    result.insert("seconds".into(), json!(options.seconds));
    result.insert("payload_bytes".into(), json!(options.payload_bytes));
    // Fewer sends than planned means the load generator itself fell behind (shared cores).
    let planned =
        (client_count_connected(&shared, options.clients) as f64 * options.rate_per_client * options.seconds).round();
    result.insert("planned_sends".into(), json!(planned as u64));
    result.insert("sent".into(), json!(sent));
    result.insert("acked".into(), json!(acked));
    result.insert("missing".into(), json!(sent.saturating_sub(acked)));
    result.insert("mismatched".into(), json!(mismatched));
    result.insert("clients_dropped".into(), json!(shared.dropped.load(Ordering::Relaxed)));
    result.extend(latency_summary(&histogram, "rtt_"));
    insert_cpu(&mut result, cpu_before, cpu_after, acked, "echo");
    result.extend(latency_summary(&late, "send_late_"));
    insert_sched(&mut result, "server_", sched_before.0, sched_after.0, acked);
    insert_sched(&mut result, "loadgen_", sched_before.1, sched_after.1, acked);
    result.insert("first_error".into(), shared.first_error());
    Value::Object(result)
}

/// Where an echo's time goes besides work: per acknowledged echo, the run-queue delay of the process's
/// threads (runnable, waiting for a core), the times they were put on a core and their context
/// switches (voluntary: blocked and woken again; nonvoluntary: preempted).
fn insert_sched(
    result: &mut Map<String, Value>,
    prefix: &str,
    before: Option<SchedSample>,
    after: Option<SchedSample>,
    acked: u64,
) {
    let delta = before.zip(after).map(|(before, after)| after.since(&before));
    let per = |value: Option<f64>| -> Value {
        match value {
            Some(value) if acked > 0 => json!(round3(value / acked as f64)),
            _ => Value::Null,
        }
    };
    result.insert(format!("{prefix}runq_wait_us_per_echo"), per(delta.map(|d| d.wait_ns as f64 / 1000.0)));
    result.insert(format!("{prefix}slices_per_echo"), per(delta.map(|d| d.slices as f64)));
    result.insert(format!("{prefix}voluntary_switches_per_echo"), per(delta.map(|d| d.voluntary as f64)));
    result.insert(format!("{prefix}nonvoluntary_switches_per_echo"), per(delta.map(|d| d.nonvoluntary as f64)));
}

/// An echo client on either transport.
enum EchoClient {
    Websocket(SioClient),
    Polling(polling::PollingClient),
}

fn client_count_connected(shared: &Shared, clients: usize) -> u64 {
    (clients as u64).saturating_sub(shared.failed.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------------------------------
// connect

#[derive(Debug, Clone)]
pub struct ConnectOptions {
    pub count: usize,
    pub concurrency: usize,
    pub server_pid: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    WebSocket,
    PollingUpgrade,
}

impl Transport {
    fn prefix(self) -> &'static str {
        match self {
            Transport::WebSocket => "ws_",
            Transport::PollingUpgrade => "polling_",
        }
    }
}

/// Full Engine.IO + Socket.IO handshakes, `count` of them, `concurrency` at a time, over WebSocket and
/// over polling with upgrade.
pub async fn connect(target: &Target, options: &ConnectOptions) -> Value {
    let mut result = Map::new();
    result.insert("scenario".into(), json!("connect"));
    result.insert("count".into(), json!(options.count));
    result.insert("concurrency".into(), json!(options.concurrency));
    for transport in [Transport::WebSocket, Transport::PollingUpgrade] {
        let part = connect_burst(target, options, transport).await;
        result.extend(part);
        // Let the server finish closing the previous burst's sessions.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Value::Object(result)
}

async fn connect_burst(target: &Target, options: &ConnectOptions, transport: Transport) -> Map<String, Value> {
    let shared = Arc::new(Shared::default());
    let next = Arc::new(AtomicU64::new(0));
    let total = options.count as u64;
    let bar = progress_bar(
        total,
        match transport {
            Transport::WebSocket => "connect websocket",
            Transport::PollingUpgrade => "connect polling",
        },
    );
    let cpu_before = options.server_pid.map(CpuSample::take);
    let started = Instant::now();
    let mut workers = JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let (target, shared, next, bar) = (target.clone(), shared.clone(), next.clone(), bar.clone());
        workers.spawn(async move {
            let mut histogram = latency_histogram();
            while next.fetch_add(1, Ordering::Relaxed) < total {
                let begun = Instant::now();
                let attempt = async {
                    match transport {
                        Transport::WebSocket => SioClient::connect(&target).await,
                        Transport::PollingUpgrade => polling::connect_with_upgrade(&target).await,
                    }
                };
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, attempt).await {
                    Ok(Ok(client)) => {
                        record_micros(&mut histogram, begun.elapsed().as_micros() as u64);
                        shared.connected.fetch_add(1, Ordering::Relaxed);
                        drop(client);
                    }
                    Ok(Err(err)) => {
                        shared.count_failure("handshake", &err);
                    }
                    Err(elapsed) => {
                        shared.count_failure("handshake", &elapsed.into());
                    }
                }
                bar.inc(1);
            }
            histogram
        });
    }
    let mut histogram = latency_histogram();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60 + total / 20);
    while let Ok(Some(joined)) = tokio::time::timeout_at(deadline, workers.join_next()).await {
        if let Ok(part) = joined {
            let _ = histogram.add(&part);
        }
    }
    workers.abort_all();
    let secs = started.elapsed().as_secs_f64();
    let cpu_after = options.server_pid.map(CpuSample::take);
    bar.finish_and_clear();
    let connected = shared.connected.load(Ordering::Relaxed);
    let prefix = transport.prefix();
    let mut part = Map::new();
    part.insert(format!("{prefix}ok"), json!(connected));
    part.insert(format!("{prefix}failed"), json!(shared.failed.load(Ordering::Relaxed)));
    part.insert(format!("{prefix}secs"), json!(round3(secs)));
    part.insert(format!("{prefix}handshakes_per_sec"), json!(per_second(connected, secs)));
    for (key, value) in latency_summary(&histogram, prefix) {
        part.insert(key, value);
    }
    let mut cpu = Map::new();
    insert_cpu(&mut cpu, cpu_before, cpu_after, connected, "handshake");
    if let Some(value) = cpu.remove("server_cpu_ns_per_handshake") {
        part.insert(
            format!("{prefix}server_cpu_us_per_handshake"),
            json!(value.as_f64().map(|ns| round3(ns / 1000.0))),
        );
    }
    part.insert(format!("{prefix}first_error"), shared.first_error());
    part
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_deliveries_out_of_order_and_other_events() {
        let mut tally = ReceiverTally::default();
        let mut next = 0;
        let counted: u64 = [Some(0), Some(1), Some(3), None, Some(4), Some(2)]
            .into_iter()
            .map(|seq| tally.count(seq, &mut next))
            .sum();
        assert_eq!(counted, 5);
        // 3 came when 2 was due, 2 when 5 was.
        assert_eq!((tally.out_of_order, tally.other_events, next), (2, 1, 3));
    }

    #[test]
    fn polling_posts_keep_the_order_and_the_size_limit() {
        let packets: Vec<Vec<u8>> = (0..10u8).map(|i| vec![b'0' + i; 10]).collect();
        let batches = post_batches(&packets, 32);
        // 10 + 1 + 10 + 1 + 10 = 32 bytes: three packets per body.
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![3, 3, 3, 1]);
        let flat: Vec<&[u8]> = batches.into_iter().flatten().collect();
        assert_eq!(flat, packets.iter().map(Vec::as_slice).collect::<Vec<_>>());
        // A packet above the limit is sent alone, not dropped.
        let big = vec![vec![b'x'; 5], vec![b'y'; 100], vec![b'z'; 5]];
        assert_eq!(post_batches(&big, 32).iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
        assert!(post_batches(&[], 32).is_empty());
    }

    #[test]
    fn message_deliveries_carry_their_sequence_in_data() {
        let text = br#"2["message",{"id":"0193-7","room":"fanout","user":"u","data":"00000042|xx","ts":1}]"#;
        assert_eq!(message_seq(text), Some(42));
        assert_eq!(FanoutEvent::Message.seq(text), Some(42));
        assert_eq!(message_seq(br#"2["msg","00000042|xx"]"#), None);
        assert_eq!(message_seq(br#"2["message",{"data":"x"}]"#), None);
        assert_eq!("message".parse::<FanoutEvent>(), Ok(FanoutEvent::Message));
        assert!("other".parse::<FanoutEvent>().is_err());
    }

    #[test]
    fn fanout_payload_has_the_requested_size_and_sequence() {
        let payload = fanout_payload(42, 100);
        assert_eq!(payload.len(), 100);
        assert!(payload.starts_with("00000042|x"));
        // A payload smaller than the sequence prefix keeps the prefix.
        assert_eq!(fanout_payload(7, 3), "00000007|");
    }

    #[test]
    fn word_payloads_have_the_requested_size_and_sequence() {
        let payload = fanout_words(42, 2000);
        assert_eq!(payload.len(), 2000);
        assert_eq!(fanout_seq(format!("2[\"msg\",\"{payload}\"]").as_bytes()), Some(42));
        assert_ne!(fanout_words(43, 2000)[9..], payload[9..], "each message has its own words");
        assert!(payload[9..].split(' ').count() > 200);
    }

    #[test]
    fn reads_the_sequence_of_a_delivery() {
        let text = format!("2[\"msg\",\"{}\"]", fanout_payload(123, 50));
        assert_eq!(fanout_seq(text.as_bytes()), Some(123));
        assert_eq!(fanout_seq(b"2[\"other\",\"00000001|x\"]"), None);
        assert_eq!(fanout_seq(b"2[\"msg\",\"|x\"]"), None);
        assert_eq!(fanout_seq(b"2[\"msg\",\"12x\"]"), None);
        assert_eq!(fanout_seq(b"3[\"msg\"]"), None);
    }

    #[test]
    fn reads_the_sequence_of_a_msgpack_delivery() {
        use switchyard_protocol::socketio_msgpack::encode_message;
        for bytes in [20, 100, 300, 70_000] {
            let mut packet = Vec::new();
            encode_message("/", Some("msg"), &[json!(fanout_payload(123, bytes))], &[], None, &mut packet);
            assert_eq!(fanout_seq_with(WireParser::Msgpack, &packet), Some(123), "{bytes} bytes");
        }
        // Another key order takes the slow path.
        let other = switchyard_protocol::cluster::msgpack::encode(
            &json!({"data": ["msg", "00000009|x"], "nsp": "/", "type": 2}),
            &[],
        );
        assert_eq!(fanout_seq_with(WireParser::Msgpack, &other), Some(9));
        let mut not_msg = Vec::new();
        encode_message("/", Some("other"), &[json!("00000001|x")], &[], None, &mut not_msg);
        assert_eq!(fanout_seq_with(WireParser::Msgpack, &not_msg), None);
        assert_eq!(fanout_seq_with(WireParser::Msgpack, b"junk"), None);
        // A binary payload: ["msg", "<seq>|", <bin>].
        let mut binary = Vec::new();
        let args = [json!(fanout_payload(77, 0)), switchyard_protocol::socketio::placeholder(0)];
        encode_message("/", Some("msg"), &args, &[Bytes::from_static(&[1; 100])], None, &mut binary);
        assert_eq!(fanout_seq_with(WireParser::Msgpack, &binary), Some(77));
        assert_eq!(fanout_seq(br#"51-["msg","00000077|",{"_placeholder":true,"num":0}]"#), Some(77));
    }
}
