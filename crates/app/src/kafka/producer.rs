//! Kafka out: the route every produced record takes and the pump that delivers them, in order.
//!
//! A record is taken on the sender's task ([`KafkaOut::enqueue`]): while Kafka keeps up it goes to
//! the pump through memory (at most `kafka.queue_max` records held); while Kafka is down or behind it
//! is appended to the spool on disk (a full spool refuses it: error `spool_full`). One pump task
//! sends records to Kafka in the order they were taken: first what memory holds, then the spool.
//!
//! When a delivery fails (Kafka down past `kafka.delivery_timeout_ms`), or librdkafka reports every
//! broker down (a producer id must not outlive a broker that may forget it), the pump marks Kafka
//! down, drops the producer, moves every undelivered record it holds to the spool (in order, ahead
//! of the records spooled since, which only happens while the spool was empty; otherwise they stay
//! at the head of its memory), and probes the brokers with backoff. Once they answer, a new producer
//! delivers the spool from its cursor and the route returns to memory when the spool is drained.
//!
//! The Kafka client sits behind [`Transport`] so that this logic is tested without a broker.

use super::spool::{Position, Spool, SpoolError};
use super::Stats;
use crate::pipeline::{Confirm, Refused};
use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Notify};

/// The error of an ack refused because the spool is full (docs/EVENTS.md, docs/KAFKA.md).
pub const SPOOL_FULL: &str = "spool_full";
/// The error of an ack refused because the spool cannot be written (disk error) or the server is
/// stopping.
pub const UNAVAILABLE: &str = crate::events::errors::UNAVAILABLE;
/// The error of an ack refused because its record is larger than [`MAX_RECORD_BYTES`].
pub const TOO_LARGE: &str = "too_large";
/// The largest record (key and value) taken: librdkafka refuses records over its `message.max.bytes`
/// (1,000,000 by default, with a few dozen bytes of framing counted in), and a record it refuses
/// would be retried forever, holding up every record behind it. Only reachable with
/// `engine.max_payload` raised past about 1 MB.
pub const MAX_RECORD_BYTES: usize = 1_000_000 - 1_024;

/// The delivery reports of one [`Transport`]: `(sequence number given to send, outcome)`, pushed by
/// the client's delivery callback (any thread) and taken by the pump in batches. One queue and one
/// wake for a batch of reports, instead of a channel and a wake per record: the pump then releases
/// every acknowledged record of the batch in one go, so their broadcasts reach each receiver's
/// connection together (one write for many frames).
#[derive(Debug, Default)]
pub struct Reports {
    queue: Mutex<Vec<(u64, Result<(), String>)>>,
    ready: Notify,
    /// Set when the client saw every broker go down: see [`Reports::brokers_down`].
    brokers_lost: AtomicBool,
}

impl Reports {
    /// Records the outcome of the record sent with `seq` and wakes the pump.
    pub fn push(&self, seq: u64, outcome: Result<(), String>) {
        self.queue.lock().push((seq, outcome));
        // Without a waiting pump this only stores a permit (an atomic operation).
        self.ready.notify_one();
    }

    /// The client saw every broker go down: marks this transport's producer as done with and wakes
    /// the pump, which takes back what it has in flight (as after a failed delivery) and replaces it
    /// with a new producer (a new producer id) once the brokers answer. Why: a broker that comes back
    /// without its state (in-memory, or a cluster recreated at the same address) hands the old
    /// producer's id to another producer; the old producer's records (new ones, or retries of those
    /// in flight) then meet that producer's sequence numbers, and the broker answers them as
    /// duplicates, which librdkafka reports as delivered: acked, and not in Kafka.
    pub fn brokers_down(&self) {
        self.brokers_lost.store(true, Ordering::Relaxed);
        self.ready.notify_one();
    }

    /// Whether the client saw every broker go down since this transport's brokers last answered.
    fn lost(&self) -> bool {
        self.brokers_lost.load(Ordering::Relaxed)
    }

    /// Moves every report received so far into `into`.
    fn take(&self, into: &mut Vec<(u64, Result<(), String>)>) {
        let mut queue = self.queue.lock();
        if into.is_empty() {
            std::mem::swap(&mut *queue, into);
        } else {
            into.append(&mut queue);
        }
    }
}

/// A connection to Kafka for one topic: the producer behind the pump.
pub trait Transport: Send + Sync + 'static {
    /// Queues one record; its outcome arrives in [`Transport::reports`] under `seq`.
    fn send(&self, seq: u64, key: &[u8], value: &[u8]) -> Result<(), String>;
    /// Queues `records` (key, value) in order, numbered from `first_seq`; each outcome arrives in
    /// [`Transport::reports`]. A record refused at once is added to `refused` (its index and why).
    /// This one stops at the first refusal and refuses the rest with it, as librdkafka does for a
    /// full queue or a failed producer; librdkafka's batch call goes on past a record refused for
    /// its own sake (its size: [`KafkaOut::enqueue`] refuses those before they get here).
    fn send_batch(&self, first_seq: u64, records: &[(&[u8], &[u8])], refused: &mut Vec<(usize, String)>) {
        for (i, (key, value)) in records.iter().enumerate() {
            if let Err(error) = self.send(first_seq + i as u64, key, value) {
                refused.extend((i..records.len()).map(|j| (j, error.clone())));
                return;
            }
        }
    }
    /// Where the outcomes of the records sent through this transport arrive.
    fn reports(&self) -> &Reports;
    /// Whether the brokers answer a metadata request for the topic within `timeout`.
    fn probe(&self, timeout: Duration) -> BoxFuture<'static, bool>;
}

/// Records sent and not yet reported, in the order they were sent, with the outcomes received so
/// far: reports of different partitions may come in any order, records are released in order.
struct InFlight<T> {
    /// The sequence number of the first item.
    base: u64,
    items: VecDeque<(T, Option<Result<(), String>>)>,
}

impl<T> InFlight<T> {
    fn new() -> Self {
        InFlight { base: 0, items: VecDeque::new() }
    }

    /// Adds the item sent with `seq` (one more than the last one's).
    fn push(&mut self, seq: u64, item: T) {
        if self.items.is_empty() {
            self.base = seq;
        }
        debug_assert_eq!(seq, self.base + self.items.len() as u64);
        self.items.push_back((item, None));
    }

    /// Notes the outcome of `seq`; a report of an earlier phase (not in flight here) is ignored.
    fn report(&mut self, seq: u64, outcome: Result<(), String>) {
        if let Some(slot) = seq.checked_sub(self.base).and_then(|i| self.items.get_mut(i as usize)) {
            slot.1 = Some(outcome);
        }
    }

    /// The oldest item, once its outcome is known.
    fn pop_ready(&mut self) -> Option<(T, Result<(), String>)> {
        self.items.front()?.1.as_ref()?;
        let (item, outcome) = self.items.pop_front().expect("checked above");
        self.base += 1;
        Some((item, outcome.expect("checked above")))
    }

    fn len(&self) -> usize {
        self.items.len()
    }

    fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The items from the `start`-th on, oldest first.
    fn items_from(&self, start: usize) -> impl Iterator<Item = &T> {
        self.items.range(start..).map(|(item, _)| item)
    }

    /// The items still in flight, oldest first.
    fn into_items(self) -> impl DoubleEndedIterator<Item = T> {
        self.items.into_iter().map(|(item, _)| item)
    }
}

/// Makes a new [`Transport`] (a new producer: new producer id) after a failure.
pub type Connect = Box<dyn Fn() -> Result<Arc<dyn Transport>, String> + Send + Sync>;

/// Records the pump keeps in flight while it delivers the spool.
const SPOOL_WINDOW: usize = 1000;
/// Commit the spool's cursor at least every this many delivered records.
const COMMIT_EVERY: u64 = 500;
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The failure noted when librdkafka reports every broker down.
const BROKERS_LOST: &str = "every broker went down";

/// One record held in memory on its way to Kafka.
struct Entry {
    key: Vec<u8>,
    value: Vec<u8>,
    /// With `kafka.ack = "persisted"`: answered once Kafka or the spool's fsync has the record.
    done: Option<oneshot::Sender<Result<(), Refused>>>,
}

pub(super) struct Shared {
    /// True while new records go to the spool. Appends to the spool happen under this lock, so the
    /// pump can tell "drained" from "something new came in" without a race.
    spooling: Mutex<bool>,
    queue_max: usize,
    persisted: bool,
    spool: Arc<Spool>,
    /// Wakes the pump: a record was spooled.
    wake: Notify,
    /// Wakes the pump: the server is stopping.
    stop: Notify,
    pub(super) stats: Arc<Stats>,
}

impl Shared {
    fn refresh_spool_gauges(&self) {
        self.stats.spool_records.store(self.spool.records(), Ordering::Relaxed);
        self.stats.spool_bytes.store(self.spool.bytes(), Ordering::Relaxed);
    }
}

/// The producing side: takes records and hands them to the pump.
pub struct KafkaOut {
    shared: Arc<Shared>,
    tx: mpsc::UnboundedSender<Entry>,
    pump: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl KafkaOut {
    /// Starts the pump on the current runtime, producing through the transports `connect` makes.
    /// `persisted`: see `kafka.ack`. Public so that other transports (and tests) can drive it.
    pub fn start(
        connect: Connect,
        spool: Arc<Spool>,
        queue_max: usize,
        persisted: bool,
        stats: Arc<Stats>,
    ) -> KafkaOut {
        let shared = Arc::new(Shared {
            // Records left from a previous run go out first.
            spooling: Mutex::new(!spool.is_empty()),
            queue_max,
            persisted,
            spool,
            wake: Notify::new(),
            stop: Notify::new(),
            stats,
        });
        shared.refresh_spool_gauges();
        let (tx, rx) = mpsc::unbounded_channel();
        let pump = tokio::spawn(
            Pump {
                shared: shared.clone(),
                rx,
                connect,
                head: VecDeque::new(),
                seq: 0,
                got: Vec::new(),
                refused: Vec::new(),
            }
            .run(),
        );
        KafkaOut { shared, tx, pump: Mutex::new(Some(pump)) }
    }

    /// Takes one record, in the caller's order: refused at once (`spool_full`, `unavailable`), or
    /// queued in memory or written to the spool, and then, with `kafka.ack = "persisted"`, a
    /// [`Confirm`] that resolves once Kafka acknowledged it or the spool's fsync covers it.
    pub fn enqueue(&self, key: Vec<u8>, value: Vec<u8>) -> Result<Option<Confirm>, Refused> {
        self.enqueue_with(key, value, self.shared.persisted)
    }

    /// [`KafkaOut::enqueue`] with no confirm, whatever `kafka.ack` says (`kafka.produce_events`:
    /// their own handlers answer their acks).
    pub fn enqueue_unconfirmed(&self, key: Vec<u8>, value: Vec<u8>) -> Result<(), Refused> {
        self.enqueue_with(key, value, false).map(drop)
    }

    fn enqueue_with(&self, key: Vec<u8>, value: Vec<u8>, confirm: bool) -> Result<Option<Confirm>, Refused> {
        let shared = &self.shared;
        let bytes = key.len() + value.len();
        if bytes > MAX_RECORD_BYTES {
            return Err(refuse(
                shared,
                TOO_LARGE,
                &format!("the record has {bytes} bytes, more than {MAX_RECORD_BYTES}"),
            ));
        }
        let mut spooling = shared.spooling.lock();
        if !*spooling {
            if shared.stats.queued.load(Ordering::Relaxed) < shared.queue_max as u64 {
                shared.stats.queued.fetch_add(1, Ordering::Relaxed);
                let (done, wait) = match confirm {
                    true => {
                        let (tx, rx) = oneshot::channel();
                        (Some(tx), Some(rx))
                    }
                    false => (None, None),
                };
                if self.tx.send(Entry { key, value, done }).is_err() {
                    shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    return Err(refuse(shared, UNAVAILABLE, "the Kafka pump has stopped"));
                }
                drop(spooling);
                return Ok(wait.map(|rx| -> Confirm {
                    Box::pin(async move { rx.await.unwrap_or(Err(Refused { error: UNAVAILABLE })) })
                }));
            }
            tracing::warn!(queue_max = shared.queue_max, "kafka: producer queue full; spooling new messages to disk");
            *spooling = true;
        }
        let appended = shared.spool.append(&key, &value, false);
        drop(spooling);
        match appended {
            Ok(number) => {
                shared.stats.spooled.fetch_add(1, Ordering::Relaxed);
                shared.stats.spool_full.store(false, Ordering::Relaxed);
                shared.refresh_spool_gauges();
                shared.wake.notify_one();
                if !confirm {
                    return Ok(None);
                }
                let shared = shared.clone();
                Ok(Some(Box::pin(async move {
                    shared.spool.sync(number).await.map_err(|e| {
                        tracing::error!(error = %e, "kafka spool: fsync failed");
                        Refused { error: UNAVAILABLE }
                    })
                })))
            }
            Err(SpoolError::Full { bytes, limit }) => {
                shared.stats.spool_full.store(true, Ordering::Relaxed);
                Err(refuse(shared, SPOOL_FULL, &format!("the spool is full ({bytes} of {limit} bytes)")))
            }
            Err(e) => Err(refuse(shared, UNAVAILABLE, &e.to_string())),
        }
    }

    /// Whether new records currently go to the spool.
    pub fn spooling(&self) -> bool {
        *self.shared.spooling.lock()
    }

    /// Stops taking records and waits up to `timeout` for the pump to deliver what memory holds;
    /// what is left then is written to the spool (produced at the next start).
    pub async fn close(&self, timeout: Duration) {
        let Some(pump) = self.pump.lock().take() else { return };
        // Route everything new to the spool; the pump finishes what it holds.
        *self.shared.spooling.lock() = true;
        self.shared.stats.closing.store(true, Ordering::Relaxed);
        self.shared.stop.notify_waiters();
        let _ = tokio::time::timeout(timeout, pump).await;
    }
}

/// Counts and logs a refusal; returns it.
fn refuse(shared: &Shared, error: &'static str, why: &str) -> Refused {
    let total = shared.stats.refused.fetch_add(1, Ordering::Relaxed) + 1;
    // One line per refusal would flood the log when the spool fills under load: the first and
    // every thousandth, with the running count (all of them are in the metrics).
    if total == 1 || total.is_multiple_of(1000) {
        tracing::warn!(error, reason = why, refused_total = total, "kafka: message refused");
    } else {
        tracing::debug!(error, reason = why, "kafka: message refused");
    }
    Refused { error }
}

/// Waits `delay`, then asks whether the brokers answer (the idle pump's probe while Kafka is down;
/// dropped unfinished when a record arrives first).
async fn probe_after(t: &Arc<dyn Transport>, delay: Duration) -> bool {
    tokio::time::sleep(delay).await;
    t.probe(PROBE_TIMEOUT).await
}

/// What the pump owns: the receiving end, the records it took back after a failure, the producer.
struct Pump {
    shared: Arc<Shared>,
    rx: mpsc::UnboundedReceiver<Entry>,
    connect: Connect,
    /// Records older than the channel's and the spool's, taken back after a failed delivery.
    head: VecDeque<Entry>,
    /// The sequence number of the next record sent (reports name records by it).
    seq: u64,
    /// Reports taken from the transport, reused between batches.
    got: Vec<(u64, Result<(), String>)>,
    /// Records of a batch the transport refused at once, reused between batches.
    refused: Vec<(usize, String)>,
}

/// Why a phase of the pump ended.
enum PhaseEnd {
    /// Go on with the other phase.
    Switch,
    /// A delivery failed, or the producer lost every broker: Kafka is down.
    Failed(String),
    /// The server is stopping and everything held is delivered or spooled.
    Closed,
}

impl Pump {
    async fn run(mut self) {
        let mut transport: Option<Arc<dyn Transport>> = None;
        let mut backoff = BACKOFF_MIN;
        loop {
            let t = match &transport {
                Some(t) => t.clone(),
                None => match self.reconnect(&mut backoff).await {
                    Some(t) => {
                        transport = Some(t.clone());
                        t
                    }
                    None => return self.spill_on_close(),
                },
            };
            let spooling = *self.shared.spooling.lock();
            let end = if !self.head.is_empty() || !spooling || !self.rx.is_empty() {
                self.direct(&t).await
            } else {
                self.drain_spool(&t).await
            };
            match end {
                PhaseEnd::Switch => backoff = BACKOFF_MIN,
                PhaseEnd::Closed => {
                    // Dropping a producer joins its polling thread: not on the runtime's threads.
                    tokio::task::spawn_blocking(move || drop(transport));
                    return self.spill_on_close();
                }
                PhaseEnd::Failed(error) => {
                    let was_up = self.shared.stats.up.swap(false, Ordering::Relaxed);
                    if was_up {
                        tracing::warn!(%error, "kafka: delivery failed; spooling until the brokers answer again");
                    }
                    self.take_back();
                    // Dropping a producer waits for its polling thread and purges its queue.
                    if let Some(old) = transport.take() {
                        tokio::task::spawn_blocking(move || drop(old));
                    }
                }
            }
        }
    }

    /// A new producer once the brokers answer, with exponential backoff. `None`: closing.
    async fn reconnect(&mut self, backoff: &mut Duration) -> Option<Arc<dyn Transport>> {
        let mut first = true;
        loop {
            if self.closing() && self.head.is_empty() && self.rx.is_empty() {
                return None;
            }
            if !first {
                tokio::select! {
                    _ = tokio::time::sleep(*backoff) => {}
                    _ = self.shared.stop.notified() => {}
                }
                *backoff = (*backoff * 2).min(BACKOFF_MAX);
                if self.closing() {
                    return None;
                }
            }
            first = false;
            match (self.connect)() {
                Ok(t) => {
                    if t.probe(PROBE_TIMEOUT).await {
                        // A "brokers down" from before they answered (while it connected) is no
                        // reason to replace it.
                        t.reports().brokers_lost.store(false, Ordering::Relaxed);
                        if !self.shared.stats.up.swap(true, Ordering::Relaxed) {
                            tracing::info!("kafka: brokers answer");
                        }
                        return Some(t);
                    }
                    tokio::task::spawn_blocking(move || drop(t));
                    if self.shared.stats.up.swap(false, Ordering::Relaxed) {
                        tracing::warn!("kafka: brokers do not answer; spooling");
                    }
                    // Nothing waits in memory while the brokers are away: to the spool.
                    self.take_back();
                }
                Err(e) => tracing::warn!(error = %e, "kafka: cannot create a producer"),
            }
        }
    }

    fn closing(&self) -> bool {
        self.shared.stats.closing.load(Ordering::Relaxed)
    }

    /// Sends the head, then the channel, keeping order; ends when the route is on the spool and
    /// memory holds nothing more.
    async fn direct(&mut self, t: &Arc<dyn Transport>) -> PhaseEnd {
        let mut inflight: InFlight<Entry> = InFlight::new();
        let window = self.shared.queue_max.max(1);
        let mut senders_gone = false;
        // While Kafka is marked down and nothing is to be delivered, the brokers are probed with
        // this backoff, so an idle node turns `up` again without waiting for its next message.
        let mut idle_backoff = BACKOFF_MIN;
        loop {
            // Fill: head first (older), then whatever the channel holds now, handed to the
            // producer in one call (one topic lock and clock read per batch in librdkafka).
            let sent = inflight.len();
            let first_seq = self.seq;
            while inflight.len() < window && !senders_gone {
                let entry = match self.head.pop_front() {
                    Some(entry) => entry,
                    None => match self.rx.try_recv() {
                        Ok(entry) => entry,
                        Err(_) => break,
                    },
                };
                let seq = self.next_seq();
                inflight.push(seq, entry);
            }
            if inflight.len() > sent {
                let records: Vec<(&[u8], &[u8])> =
                    inflight.items_from(sent).map(|entry| (&entry.key[..], &entry.value[..])).collect();
                t.send_batch(first_seq, &records, &mut self.refused);
                if let Some((_, error)) = self.refused.first() {
                    // Produced again, all of them in order, by the next producer.
                    let error = error.clone();
                    self.refused.clear();
                    self.requeue(None, inflight);
                    return PhaseEnd::Failed(error);
                }
            }
            // Release every record whose report came, in order: one batch per wake.
            if self.take_reports(t, &mut inflight) {
                // No report of this producer is trusted from here (see `Reports::brokers_down`):
                // what is in flight is produced again by the next producer.
                self.requeue(None, inflight);
                return PhaseEnd::Failed(BROKERS_LOST.to_string());
            }
            while let Some((entry, outcome)) = inflight.pop_ready() {
                match outcome {
                    Ok(()) => self.delivered(entry),
                    Err(error) => {
                        self.requeue(Some(entry), inflight);
                        return PhaseEnd::Failed(error);
                    }
                }
            }
            if inflight.is_empty() {
                if senders_gone {
                    return PhaseEnd::Closed;
                }
                // Checked under the route lock: nothing can be added to the channel meanwhile.
                let done = {
                    let spooling = self.shared.spooling.lock();
                    *spooling && self.rx.is_empty() && self.head.is_empty()
                };
                if done {
                    return if self.closing() { PhaseEnd::Closed } else { PhaseEnd::Switch };
                }
                let down = !self.shared.stats.up.load(Ordering::Relaxed);
                tokio::select! {
                    entry = self.rx.recv() => match entry {
                        Some(entry) => self.head.push_back(entry),
                        None => return PhaseEnd::Closed,
                    },
                    _ = self.shared.wake.notified() => {}
                    _ = self.shared.stop.notified() => {}
                    // The client marked Kafka down (all brokers down): start probing.
                    _ = t.reports().ready.notified(), if !down => {}
                    answered = probe_after(t, idle_backoff), if down => {
                        if answered {
                            idle_backoff = BACKOFF_MIN;
                            if !self.shared.stats.up.swap(true, Ordering::Relaxed) {
                                tracing::info!("kafka: brokers answer again");
                            }
                        } else {
                            idle_backoff = (idle_backoff * 2).min(BACKOFF_MAX);
                        }
                    }
                }
                continue;
            }
            tokio::select! {
                biased;
                _ = t.reports().ready.notified() => {}
                entry = self.rx.recv(), if inflight.len() < window && !senders_gone => match entry {
                    Some(entry) => self.head.push_back(entry),
                    // Every sender is gone: deliver what is in flight, then stop.
                    None => senders_gone = true,
                },
            }
        }
    }

    fn next_seq(&mut self) -> u64 {
        let seq = self.seq;
        self.seq += 1;
        seq
    }

    /// Notes in `inflight` every report `t` received so far. Returns whether `t` lost every broker
    /// (see [`Reports::brokers_down`]): then none of these reports may release a record. Read after
    /// the reports, so that a report pushed after the loss is never taken with `false`.
    fn take_reports<T>(&mut self, t: &Arc<dyn Transport>, inflight: &mut InFlight<T>) -> bool {
        t.reports().take(&mut self.got);
        for (seq, outcome) in self.got.drain(..) {
            inflight.report(seq, outcome);
        }
        t.reports().lost()
    }

    /// Puts records that were in flight back at the front of the head in their order, behind
    /// `first` (the oldest: the one whose delivery failed) when given.
    fn requeue(&mut self, first: Option<Entry>, inflight: InFlight<Entry>) {
        for entry in inflight.into_items().rev() {
            self.head.push_front(entry);
        }
        if let Some(first) = first {
            self.head.push_front(first);
        }
    }

    fn delivered(&mut self, entry: Entry) {
        self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
        self.shared.stats.produced.fetch_add(1, Ordering::Relaxed);
        self.shared.stats.up.store(true, Ordering::Relaxed);
        if let Some(done) = entry.done {
            let _ = done.send(Ok(()));
        }
    }

    /// After a failure: new records go to the spool; what memory holds (head, then the channel) goes
    /// there too when the spool is empty (so order holds), else stays in memory ahead of it.
    fn take_back(&mut self) {
        let shared = self.shared.clone();
        let mut spooling = shared.spooling.lock();
        *spooling = true;
        while let Ok(entry) = self.rx.try_recv() {
            self.head.push_back(entry);
        }
        self.shared.stats.failed.fetch_add(self.head.len() as u64, Ordering::Relaxed);
        if !self.shared.spool.is_empty() {
            return;
        }
        self.spill(&mut spooling);
    }

    /// Writes the head to the (empty) spool, in order. Called with the route lock held.
    fn spill(&mut self, _route: &mut bool) {
        let mut last = None;
        let mut waiting = Vec::new();
        while let Some(entry) = self.head.pop_front() {
            match self.shared.spool.append(&entry.key, &entry.value, true) {
                Ok(number) => {
                    last = Some(number);
                    self.shared.stats.queued.fetch_sub(1, Ordering::Relaxed);
                    self.shared.stats.spooled.fetch_add(1, Ordering::Relaxed);
                    waiting.extend(entry.done);
                }
                Err(e) => {
                    // Disk trouble: keep this and the rest in memory; they are produced from there.
                    tracing::error!(error = %e, "kafka spool: cannot write; keeping undelivered messages in memory");
                    self.head.push_front(entry);
                    break;
                }
            }
        }
        self.shared.refresh_spool_gauges();
        if let Some(number) = last {
            let spool = self.shared.spool.clone();
            tokio::spawn(async move {
                let result = spool.sync(number).await.map_err(|_| Refused { error: UNAVAILABLE });
                for done in waiting {
                    let _ = done.send(result.clone());
                }
            });
        }
    }

    /// At shutdown: whatever memory still holds goes to the spool, produced at the next start.
    fn spill_on_close(mut self) {
        let shared = self.shared.clone();
        let mut spooling = shared.spooling.lock();
        *spooling = true;
        while let Ok(entry) = self.rx.try_recv() {
            self.head.push_back(entry);
        }
        if !self.head.is_empty() {
            tracing::info!(records = self.head.len(), "kafka: spooling undelivered messages for the next start");
            // Forced appends after what the spool holds: these are older only if the spool was
            // empty, which is the case when the route never left memory.
            self.spill(&mut spooling);
        }
    }

    /// Delivers the spool from its cursor; ends when it is drained (route back to memory).
    async fn drain_spool(&mut self, t: &Arc<dyn Transport>) -> PhaseEnd {
        let spool = self.shared.spool.clone();
        let mut read_at = spool.cursor();
        let mut delivered_to: Position = read_at;
        let mut uncommitted = 0u64;
        let mut inflight: InFlight<Position> = InFlight::new();
        let shared = self.shared.clone();
        let commit = |to: Position, count: &mut u64| {
            if *count == 0 {
                return;
            }
            if let Err(e) = spool.commit(to, *count) {
                tracing::error!(error = %e, "kafka spool: cannot save the cursor (records may be produced twice)");
            }
            *count = 0;
            shared.refresh_spool_gauges();
        };
        loop {
            if inflight.len() < SPOOL_WINDOW {
                match spool.read(read_at, SPOOL_WINDOW - inflight.len()) {
                    Ok(records) => {
                        for record in records {
                            let seq = self.next_seq();
                            match t.send(seq, &record.key, &record.value) {
                                Ok(()) => {
                                    inflight.push(seq, record.next);
                                    read_at = record.next;
                                }
                                Err(error) => {
                                    commit(delivered_to, &mut uncommitted);
                                    return PhaseEnd::Failed(error);
                                }
                            }
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "kafka spool: cannot read; retrying");
                        commit(delivered_to, &mut uncommitted);
                        tokio::time::sleep(BACKOFF_MAX).await;
                        return PhaseEnd::Switch;
                    }
                }
            }
            if inflight.is_empty() {
                commit(delivered_to, &mut uncommitted);
                // Checked under the route lock: appends to the spool happen under it too.
                let drained = {
                    let mut spooling = self.shared.spooling.lock();
                    let drained = spool.is_empty() && !self.closing();
                    if drained {
                        *spooling = false;
                        self.shared.stats.spool_full.store(false, Ordering::Relaxed);
                    }
                    drained
                };
                if drained {
                    tracing::info!("kafka: spool drained; messages go straight to Kafka again");
                    return PhaseEnd::Switch;
                }
                if self.closing() {
                    return PhaseEnd::Closed;
                }
                tokio::select! {
                    _ = self.shared.wake.notified() => {}
                    _ = self.shared.stop.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                }
                continue;
            }
            if self.take_reports(t, &mut inflight) {
                // As in `direct`: the records in flight are read again from the cursor.
                self.shared.stats.failed.fetch_add(inflight.len() as u64, Ordering::Relaxed);
                commit(delivered_to, &mut uncommitted);
                return PhaseEnd::Failed(BROKERS_LOST.to_string());
            }
            let mut released = false;
            while let Some((next, outcome)) = inflight.pop_ready() {
                released = true;
                match outcome {
                    Ok(()) => {
                        delivered_to = next;
                        uncommitted += 1;
                        self.shared.stats.produced.fetch_add(1, Ordering::Relaxed);
                        self.shared.stats.up.store(true, Ordering::Relaxed);
                        if uncommitted >= COMMIT_EVERY {
                            commit(delivered_to, &mut uncommitted);
                        }
                    }
                    Err(error) => {
                        self.shared.stats.failed.fetch_add(1 + inflight.len() as u64, Ordering::Relaxed);
                        commit(delivered_to, &mut uncommitted);
                        return PhaseEnd::Failed(error);
                    }
                }
            }
            if released {
                // Room in the window again, or the spool drained: check before waiting.
                continue;
            }
            tokio::select! {
                _ = t.reports().ready.notified() => {}
                _ = self.shared.wake.notified(), if inflight.len() < SPOOL_WINDOW => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::FutureExt;
    use std::sync::atomic::AtomicBool;

    /// A broker that takes records while up and fails them (after a short delay) while down.
    #[derive(Default)]
    struct FakeBroker {
        down: AtomicBool,
        log: Mutex<Vec<Vec<u8>>>,
        producers: std::sync::atomic::AtomicUsize,
        probes: std::sync::atomic::AtomicUsize,
        /// The reports of the newest transport (a test wakes the pump through it, as the client's
        /// "all brokers down" callback does).
        reports: Mutex<Option<Arc<Reports>>>,
        /// Restarts without state so far. A producer made before the last one has an id the
        /// restarted broker gave to another producer: its records are answered as duplicates
        /// (acknowledged, not written), as tansu with in-memory storage and librdkafka do.
        restarts: std::sync::atomic::AtomicUsize,
        /// While set, records are taken and get no report (in flight); they wait in `held`.
        hold: AtomicBool,
        held: Mutex<Vec<(u64, Arc<Reports>)>>,
        /// Sends still to refuse at once (as librdkafka refuses a record it cannot queue).
        refuse: std::sync::atomic::AtomicUsize,
    }

    /// A producer of the fake broker, with the broker's restart count when it was made.
    struct FakeTransport(Arc<FakeBroker>, Arc<Reports>, usize);

    impl Transport for FakeTransport {
        fn send(&self, seq: u64, _key: &[u8], value: &[u8]) -> Result<(), String> {
            if self.0.refuse.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok() {
                return Err("refused at once".to_string());
            }
            if self.0.hold.load(Ordering::SeqCst) {
                self.0.held.lock().push((seq, self.1.clone()));
                return Ok(());
            }
            if self.2 < self.0.restarts.load(Ordering::SeqCst) && !self.0.down.load(Ordering::SeqCst) {
                self.1.push(seq, Ok(()));
                return Ok(());
            }
            if self.0.down.load(Ordering::SeqCst) {
                let reports = self.1.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    reports.push(seq, Err("broker down".to_string()));
                });
                return Ok(());
            }
            self.0.log.lock().push(value.to_vec());
            self.1.push(seq, Ok(()));
            Ok(())
        }

        fn reports(&self) -> &Reports {
            &self.1
        }

        fn probe(&self, _timeout: Duration) -> BoxFuture<'static, bool> {
            self.0.probes.fetch_add(1, Ordering::SeqCst);
            futures_util::future::ready(!self.0.down.load(Ordering::SeqCst)).boxed()
        }
    }

    fn start(
        broker: &Arc<FakeBroker>,
        dir: &std::path::Path,
        max_bytes: u64,
        persisted: bool,
    ) -> (KafkaOut, Arc<Stats>) {
        let (spool, _) = Spool::open(dir, max_bytes).unwrap();
        let stats = Arc::new(Stats::default());
        let b = broker.clone();
        let connect: Connect = Box::new(move || {
            b.producers.fetch_add(1, Ordering::SeqCst);
            let reports = Arc::new(Reports::default());
            *b.reports.lock() = Some(reports.clone());
            let restarts = b.restarts.load(Ordering::SeqCst);
            Ok(Arc::new(FakeTransport(b.clone(), reports, restarts)) as Arc<dyn Transport>)
        });
        (KafkaOut::start(connect, Arc::new(spool), 64, persisted, stats.clone()), stats)
    }

    /// Enqueues now; the future resolves as the sender's ack would (after the confirm, if any).
    fn sent(out: &KafkaOut, key: Vec<u8>, value: Vec<u8>) -> BoxFuture<'static, Result<(), Refused>> {
        match out.enqueue(key, value) {
            Ok(Some(confirm)) => confirm,
            held => futures_util::future::ready(held.map(drop)).boxed(),
        }
    }

    async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    fn values(broker: &FakeBroker) -> Vec<u32> {
        broker.log.lock().iter().map(|v| String::from_utf8_lossy(v).parse().unwrap()).collect()
    }

    #[test]
    fn in_flight_records_are_released_in_send_order_whatever_order_reports_come_in() {
        let mut inflight = InFlight::new();
        for seq in 10..14u64 {
            inflight.push(seq, seq);
        }
        // Reports of other partitions may overtake: 12 and 11 before 10.
        inflight.report(12, Ok(()));
        inflight.report(11, Err("late".to_string()));
        assert!(inflight.pop_ready().is_none(), "10 has no report yet");
        // A report of an earlier phase (not in flight) is ignored.
        inflight.report(3, Err("stale".to_string()));
        inflight.report(10, Ok(()));
        assert_eq!(inflight.pop_ready(), Some((10, Ok(()))));
        assert_eq!(inflight.pop_ready(), Some((11, Err("late".to_string()))));
        assert_eq!(inflight.pop_ready(), Some((12, Ok(()))));
        assert!(inflight.pop_ready().is_none());
        assert_eq!(inflight.len(), 1);
        assert_eq!(inflight.into_items().collect::<Vec<_>>(), vec![13]);
    }

    #[tokio::test]
    async fn records_reach_kafka_in_order_and_persisted_acks_wait_for_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (out, stats) = start(&broker, dir.path(), 1 << 20, true);
        // 200 at once with a queue of 64: the rest overflows to the spool, and order still holds.
        let acks: Vec<_> = (0..200u32).map(|i| sent(&out, b"room".to_vec(), i.to_string().into_bytes())).collect();
        for (i, ack) in acks.into_iter().enumerate() {
            ack.await.unwrap();
            // A persisted ack means Kafka (or the spool's fsync) has it.
            assert!(broker.log.lock().len() > i || stats.spooled.load(Ordering::SeqCst) > 0);
        }
        wait_for("every record", || broker.log.lock().len() == 200).await;
        assert_eq!(values(&broker), (0..200).collect::<Vec<_>>());
        assert_eq!(stats.produced.load(Ordering::SeqCst), 200);
        assert_eq!(stats.spooled.load(Ordering::SeqCst), 200 - 64);
        wait_for("the route back in memory", || !out.spooling()).await;
        // Once caught up, one at a time goes straight through.
        for i in 200..210u32 {
            sent(&out, b"room".to_vec(), i.to_string().into_bytes()).await.unwrap();
            assert_eq!(broker.log.lock().len(), i as usize + 1);
        }
        assert_eq!(stats.spooled.load(Ordering::SeqCst), 200 - 64);
    }

    #[tokio::test]
    async fn while_kafka_is_down_records_are_spooled_then_produced_in_order_and_once() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (out, stats) = start(&broker, dir.path(), 1 << 20, false);
        for i in 0..50u32 {
            sent(&out, b"r".to_vec(), i.to_string().into_bytes()).await.unwrap();
        }
        wait_for("the first 50", || broker.log.lock().len() == 50).await;
        broker.down.store(true, Ordering::SeqCst);
        for i in 50..300u32 {
            sent(&out, b"r".to_vec(), i.to_string().into_bytes()).await.unwrap();
            if i % 50 == 0 {
                tokio::time::sleep(Duration::from_millis(30)).await;
            }
        }
        wait_for("spooling", || out.spooling() && stats.spool_records.load(Ordering::SeqCst) > 0).await;
        assert!(!stats.up.load(Ordering::SeqCst));
        broker.down.store(false, Ordering::SeqCst);
        wait_for("every record", || broker.log.lock().len() >= 300).await;
        wait_for("the route back in memory", || !out.spooling()).await;
        assert_eq!(values(&broker), (0..300).collect::<Vec<_>>());
        assert!(stats.spooled.load(Ordering::SeqCst) > 0);
        assert!(stats.failed.load(Ordering::SeqCst) > 0);
        assert_eq!(stats.spool_records.load(Ordering::SeqCst), 0);
        assert!(broker.producers.load(Ordering::SeqCst) >= 2, "a new producer after the failure");
        // And straight through again.
        sent(&out, b"r".to_vec(), b"300".to_vec()).await.unwrap();
        wait_for("one more", || broker.log.lock().len() == 301).await;
    }

    #[tokio::test]
    async fn a_full_spool_refuses_with_spool_full_and_counts_it() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        broker.down.store(true, Ordering::SeqCst);
        let (out, stats) = start(&broker, dir.path(), 64 * 1024, false);
        let value = vec![b'7'; 1000];
        let mut refused = None;
        for _ in 0..500 {
            match sent(&out, b"r".to_vec(), value.clone()).await {
                Ok(()) => tokio::time::sleep(Duration::from_millis(1)).await,
                Err(e) => {
                    refused = Some(e);
                    break;
                }
            }
        }
        assert_eq!(refused, Some(Refused { error: SPOOL_FULL }));
        assert_eq!(stats.refused.load(Ordering::SeqCst), 1);
        // What was accepted is all produced once Kafka is back, and the spool takes messages again.
        let accepted = stats.spooled.load(Ordering::SeqCst) as usize;
        broker.down.store(false, Ordering::SeqCst);
        wait_for("the spool drained", || !out.spooling()).await;
        assert_eq!(broker.log.lock().len(), accepted);
        sent(&out, b"r".to_vec(), value).await.unwrap();
    }

    #[tokio::test]
    async fn records_spooled_by_a_previous_run_go_first() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (spool, _) = Spool::open(dir.path(), 1 << 20).unwrap();
            for i in 0..10u32 {
                spool.append(b"r", i.to_string().as_bytes(), false).unwrap();
            }
        }
        let broker = Arc::new(FakeBroker::default());
        let (out, _) = start(&broker, dir.path(), 1 << 20, false);
        assert!(out.spooling());
        for i in 10..20u32 {
            sent(&out, b"r".to_vec(), i.to_string().into_bytes()).await.unwrap();
        }
        wait_for("all 20", || broker.log.lock().len() == 20).await;
        assert_eq!(values(&broker), (0..20).collect::<Vec<_>>());
    }

    #[tokio::test]
    async fn an_idle_pump_probes_while_kafka_is_down_and_turns_up_when_it_answers() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (out, stats) = start(&broker, dir.path(), 1 << 20, false);
        sent(&out, b"room".to_vec(), b"1".to_vec()).await.unwrap();
        wait_for("the first delivery", || stats.produced.load(Ordering::SeqCst) == 1).await;
        assert!(stats.up.load(Ordering::SeqCst));
        // The client reports every broker down (client.rs: the error callback) while nothing is sent.
        broker.down.store(true, Ordering::SeqCst);
        stats.up.store(false, Ordering::SeqCst);
        broker.reports.lock().as_ref().expect("a transport").brokers_down();
        let probes_before = broker.probes.load(Ordering::SeqCst);
        // The probe answers "no" while the brokers are away: still down, and probing goes on.
        wait_for("two probes while down", || broker.probes.load(Ordering::SeqCst) >= probes_before + 2).await;
        assert!(!stats.up.load(Ordering::SeqCst));
        broker.down.store(false, Ordering::SeqCst);
        wait_for("up again without a message", || stats.up.load(Ordering::SeqCst)).await;
        assert_eq!(stats.produced.load(Ordering::SeqCst), 1, "nothing was produced to find it out");
        // Once up, the idle pump stops probing.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let settled = broker.probes.load(Ordering::SeqCst);
        tokio::time::sleep(BACKOFF_MIN * 3).await;
        assert_eq!(broker.probes.load(Ordering::SeqCst), settled, "no probe while Kafka is up");
        sent(&out, b"room".to_vec(), b"2".to_vec()).await.unwrap();
        wait_for("the second delivery", || stats.produced.load(Ordering::SeqCst) == 2).await;
        assert_eq!(values(&broker), vec![1, 2]);
    }

    #[tokio::test]
    async fn a_record_too_large_for_librdkafka_is_refused_and_holds_up_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (out, stats) = start(&broker, dir.path(), 1 << 20, false);
        let value = |bytes: usize| format!("7{}", " ".repeat(bytes - 1)).into_bytes();
        let refused = out.enqueue(b"r".to_vec(), value(MAX_RECORD_BYTES));
        assert_eq!(refused.err(), Some(Refused { error: TOO_LARGE }), "key and value count");
        assert_eq!(stats.refused.load(Ordering::SeqCst), 1);
        // The largest that fits goes through, and so does what follows it.
        sent(&out, b"r".to_vec(), value(MAX_RECORD_BYTES - 1)).await.unwrap();
        sent(&out, b"r".to_vec(), b"8".to_vec()).await.unwrap();
        wait_for("both in Kafka", || broker.log.lock().len() == 2).await;
        assert_eq!(broker.log.lock()[1], b"8".to_vec());
    }

    #[tokio::test]
    async fn records_the_producer_refuses_at_once_reach_kafka_in_order_through_a_new_producer() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        broker.refuse.store(3, Ordering::SeqCst);
        let (out, stats) = start(&broker, dir.path(), 1 << 20, true);
        let acks: Vec<_> = (1..=5u32).map(|i| sent(&out, b"room".to_vec(), i.to_string().into_bytes())).collect();
        for ack in acks {
            ack.await.unwrap();
        }
        wait_for("all five in Kafka", || values(&broker).len() >= 5 && !out.spooling()).await;
        assert_eq!(values(&broker), vec![1, 2, 3, 4, 5], "in order, each once");
        assert!(broker.producers.load(Ordering::SeqCst) >= 2, "a refusing producer is replaced");
        assert_eq!(stats.produced.load(Ordering::SeqCst), 5);
    }

    #[tokio::test]
    async fn a_producer_that_lost_every_broker_is_replaced_before_it_sends_again() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (out, stats) = start(&broker, dir.path(), 1 << 20, true);
        sent(&out, b"room".to_vec(), b"1".to_vec()).await.unwrap();
        assert_eq!(broker.producers.load(Ordering::SeqCst), 1);
        // The broker dies with nothing in flight and comes back without its state; the client
        // reported every broker down in between.
        broker.down.store(true, Ordering::SeqCst);
        broker.restarts.fetch_add(1, Ordering::SeqCst);
        stats.up.store(false, Ordering::SeqCst);
        broker.reports.lock().as_ref().expect("a transport").brokers_down();
        let probes = broker.probes.load(Ordering::SeqCst);
        wait_for("a probe while down", || broker.probes.load(Ordering::SeqCst) > probes).await;
        broker.down.store(false, Ordering::SeqCst);
        wait_for("up again", || stats.up.load(Ordering::SeqCst) && !out.spooling()).await;
        // Acked only once the broker holds it: through a producer made after the restart.
        sent(&out, b"room".to_vec(), b"2".to_vec()).await.unwrap();
        assert_eq!(values(&broker), vec![1, 2], "a record acked but answered as a duplicate");
        assert!(broker.producers.load(Ordering::SeqCst) >= 2, "a new producer after the restart");
        // A record taken while the new producer still has every broker: straight through it.
        let producers = broker.producers.load(Ordering::SeqCst);
        sent(&out, b"room".to_vec(), b"3".to_vec()).await.unwrap();
        assert_eq!(values(&broker), vec![1, 2, 3]);
        assert_eq!(broker.producers.load(Ordering::SeqCst), producers);
    }

    #[tokio::test]
    async fn records_in_flight_when_every_broker_went_down_are_produced_again_by_a_new_producer() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        let (out, stats) = start(&broker, dir.path(), 1 << 20, true);
        sent(&out, b"room".to_vec(), b"1".to_vec()).await.unwrap();
        // Four records go out and get no answer: the broker dies with them in flight.
        broker.hold.store(true, Ordering::SeqCst);
        let acks: Vec<_> = (2..6u32).map(|i| sent(&out, b"room".to_vec(), i.to_string().into_bytes())).collect();
        wait_for("four records in flight", || broker.held.lock().len() == 4).await;
        // It comes back without its state within their delivery timeout; the client reported every
        // broker down in between, and the retries of the old producer are answered as duplicates.
        broker.restarts.fetch_add(1, Ordering::SeqCst);
        broker.reports.lock().as_ref().expect("a transport").brokers_down();
        broker.hold.store(false, Ordering::SeqCst);
        for (seq, reports) in broker.held.lock().drain(..) {
            reports.push(seq, Ok(()));
        }
        for ack in acks {
            ack.await.unwrap();
        }
        wait_for("the spool drained", || !out.spooling() && stats.spool_records.load(Ordering::SeqCst) == 0).await;
        assert_eq!(values(&broker), (1..6).collect::<Vec<_>>(), "records acked but answered as duplicates");
        assert!(stats.failed.load(Ordering::SeqCst) >= 4, "taken back and produced again: counted");
        assert!(broker.producers.load(Ordering::SeqCst) >= 2);
    }

    #[tokio::test]
    async fn close_spools_what_kafka_did_not_take() {
        let dir = tempfile::tempdir().unwrap();
        let broker = Arc::new(FakeBroker::default());
        broker.down.store(true, Ordering::SeqCst);
        let (out, _) = start(&broker, dir.path(), 1 << 20, false);
        for i in 0..20u32 {
            sent(&out, b"r".to_vec(), i.to_string().into_bytes()).await.unwrap();
        }
        out.close(Duration::from_secs(5)).await;
        let (spool, opened) = Spool::open(dir.path(), 1 << 20).unwrap();
        assert_eq!(opened.records, 20);
        let back: Vec<u32> = spool
            .read(spool.cursor(), 100)
            .unwrap()
            .iter()
            .map(|r| String::from_utf8_lossy(&r.value).parse().unwrap())
            .collect();
        assert_eq!(back, (0..20).collect::<Vec<_>>());
    }
}
