//! Connection state recovery across nodes: a client whose node died (or whose transport dropped)
//! comes back on any node of the cluster with the same socket id, rooms and data and every packet it
//! missed. Everything lives in Redis, per namespace, under one hash tag (so a Redis Cluster keeps a
//! namespace's keys on one shard and the scripts below touch one slot):
//!
//! - `{<prefix>:recovery:<nsp>}:packets`: a stream of every stored broadcast of the namespace (the
//!   classic wire encoding `[uid, packet, opts]` in field `m`); a packet's offset, the last argument
//!   every client gets, is its stream id. Trimmed by `MINID` to `max_disconnection_duration` and by
//!   `MAXLEN ~ max_stored_packets`.
//! - `{..}:live:<node uid>`: a hash pid -> session JSON of this node's connected sockets, refreshed
//!   (`PEXPIRE`) while the node lives, so the sessions of a node killed without warning stay
//!   restorable for `max_disconnection_duration` after its last refresh.
//! - `{..}:session:<pid>`: a session persisted at a network disconnect, expiring after
//!   `max_disconnection_duration`.
//! - `{..}:taken:<pid>`: the uid of the node that restored the session last, so its old node does
//!   not persist it again.
//!
//! A stored broadcast is one script call: `XADD`, then the ordinary publish with the stream id added
//! where Node's adapters ignore it (a 4th array element in classic mode, an `offset` field in sharded
//! mode), so Node peers keep working and Switchyard peers deliver it with the same offset. The local
//! delivery waits for the stream id (as Node's cluster adapters do); when Redis cannot be reached the
//! packet is delivered at once without an offset (connected clients never wait for Redis and lose
//! nothing), counted and logged, and kept (bounded) to be stored and published again once Redis
//! answers, so the other nodes' clients get it too (see [`run_republisher`]).

use crate::connection::{Outgoing, Publisher, RedisTarget};
use crate::convert;
use crate::error::Error;
use crate::stats::Stats;
use parking_lot::{Mutex, RwLock};
use serde_json::{json, Value};
use sha1::{Digest, Sha1};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};
use switchyard_protocol::cluster::{msgpack, wire};
use switchyard_socketio::{
    should_include, BroadcastOptions, Namespace, Payload, RecoveryConfig, RestoredSession, SessionToPersist, Sid,
    Socket,
};
use tokio::sync::Notify;

/// Stores a broadcast and publishes it with its stream id. KEYS[1] the stream. ARGV: 1 the stored
/// entry (classic `[uid, packet, opts]`), 2 the window in ms, 3 the most packets kept, 4 `PUBLISH` or
/// `SPUBLISH`, 5 the channel, 6 the message without its offset, 7 how to add the offset: `c` classic
/// (the entry as a 4-element array), `m` a msgpack string after ARGV[6], `j` a JSON field closing
/// ARGV[6], `a` none; 8 the record's number on its node (field `n`: the node knows the entry again
/// when Redis stored it but the answer was lost); 9 empty, or for a record published again after an
/// attempt whose answer was lost, how many ms back that attempt was sent: the stream's entries since
/// then are searched for this one (same `n` and `m`), and when found its id is returned, without
/// storing or publishing it again (that attempt did both). Returns the stream id.
const RECORD: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if ARGV[9] ~= '' then
  local floor = now - tonumber(ARGV[9])
  local from = '+'
  local left = tonumber(ARGV[3])
  while left > 0 do
    local entries = redis.call('XREVRANGE', KEYS[1], from, '-', 'COUNT', math.min(left, 256))
    if #entries == 0 then break end
    for _, e in ipairs(entries) do
      if tonumber(string.match(e[1], '^%d+')) < floor then
        left = 0
        break
      end
      local f, n, m = e[2], nil, nil
      for i = 1, #f, 2 do
        if f[i] == 'n' then n = f[i + 1] elseif f[i] == 'm' then m = f[i + 1] end
      end
      if n == ARGV[8] and m == ARGV[1] then return e[1] end
    end
    left = left - #entries
    from = '(' .. entries[#entries][1]
  end
end
local id = redis.call('XADD', KEYS[1], 'MINID', '~', now - tonumber(ARGV[2]), '*', 'm', ARGV[1], 'n', ARGV[8])
redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', ARGV[3])
local msg
if ARGV[7] == 'c' then
  msg = string.char(0x94) .. string.sub(ARGV[1], 2) .. string.char(0xd9, #id) .. id
elseif ARGV[7] == 'm' then
  msg = ARGV[6] .. string.char(0xd9, #id) .. id
elseif ARGV[7] == 'j' then
  msg = ARGV[6] .. ',"offset":"' .. id .. '"}'
else
  msg = ARGV[6]
end
redis.call(ARGV[4], ARGV[5], msg)
return id
"#;

/// Takes a session (persisted, or live in its node's hash) and reads what follows `offset`. KEYS: 1
/// session, 2 the owner node's live hash, 3 taken marker, 4 stream. ARGV: 1 pid, 2 offset, 3 marker
/// lifetime (ms), 4 most entries, 5 this node's uid (the marker's value). Returns nil (no session), `{session}` (no stream), or `{session,
/// max-deleted-entry-id, last-generated-id, entries}`.
const RESTORE: &str = r#"
local s = redis.call('GET', KEYS[1])
if s then
  redis.call('DEL', KEYS[1])
else
  s = redis.call('HGET', KEYS[2], ARGV[1])
  if not s then return false end
  redis.call('HDEL', KEYS[2], ARGV[1])
end
redis.call('SET', KEYS[3], ARGV[5], 'PX', ARGV[3])
if redis.call('EXISTS', KEYS[4]) == 0 then return {s} end
local info = redis.call('XINFO', 'STREAM', KEYS[4])
local deleted, last = '0-0', '0-0'
for i = 1, #info, 2 do
  if info[i] == 'max-deleted-entry-id' then deleted = info[i + 1] end
  if info[i] == 'last-generated-id' then last = info[i + 1] end
end
return {s, deleted, last, redis.call('XRANGE', KEYS[4], '(' .. ARGV[2], '+', 'COUNT', ARGV[4])}
"#;

/// Persists a dropped session unless another node restored it since (its old node's socket may
/// notice the drop late). KEYS: 1 live hash, 2 taken marker, 3 session. ARGV: 1 pid, 2 session JSON,
/// 3 lifetime (ms), 4 this node's uid.
const PERSIST: &str = r#"
redis.call('HDEL', KEYS[1], ARGV[1])
local taken = redis.call('GET', KEYS[2])
if (not taken) or taken == ARGV[4] then
  redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
end
return 1
"#;

/// How often the live sessions of this node are written and their hash's lifetime refreshed.
const FLUSH_EVERY: Duration = Duration::from_millis(50);
const REFRESH_EVERY: Duration = Duration::from_secs(1);
/// A live hash outlives its node's last refresh by the recovery window plus this.
const LIVE_GRACE: Duration = Duration::from_secs(15);
/// A restore whose socket never completed (refused by middleware, connection gone) is forgotten.
const RESTORING_TTL: Duration = Duration::from_secs(30);

struct Script {
    text: &'static str,
    sha: String,
}

impl Script {
    fn new(text: &'static str) -> Self {
        let sha = Sha1::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
        Script { text, sha }
    }

    /// `EVALSHA` (or `EVAL` with the text when Redis lost its script cache) with `keys`.
    fn command(&self, loaded: bool, keys: &[&str]) -> redis::Cmd {
        let mut cmd = if loaded {
            let mut cmd = redis::cmd("EVALSHA");
            cmd.arg(&self.sha);
            cmd
        } else {
            let mut cmd = redis::cmd("EVAL");
            cmd.arg(self.text);
            cmd
        };
        cmd.arg(keys.len());
        for key in keys {
            cmd.arg(*key);
        }
        cmd
    }
}

/// The texts of the recovery scripts, loaded by the publisher on every (re)connect.
pub(crate) fn script_texts() -> [&'static str; 3] {
    [RECORD, RESTORE, PERSIST]
}

fn scripts() -> &'static [Script; 3] {
    static SCRIPTS: OnceLock<[Script; 3]> = OnceLock::new();
    SCRIPTS.get_or_init(|| [Script::new(RECORD), Script::new(RESTORE), Script::new(PERSIST)])
}

/// How the stream id completes a published message.
#[derive(Debug, Clone, Copy)]
pub(crate) enum OffsetSlot {
    /// Classic: the stored entry itself, as a 4-element array.
    Classic,
    /// Sharded, msgpack: the message ends with the key `offset`; the id follows as a string.
    MsgpackValue,
    /// Sharded, JSON: the message lacks its closing brace; `,"offset":"<id>"}` follows.
    JsonField,
    /// The message is published as it is.
    Absent,
}

/// Called once with what became of a record; on a failure, with the record and its message parts
/// (to be kept and published again).
type OnDone = Box<dyn FnOnce(Outcome, Option<Kept>) + Send>;

/// The recording half of a stored broadcast: what goes in the stream, and who waits for its id.
pub(crate) struct Record {
    stream: String,
    entry: Vec<u8>,
    window_ms: u64,
    max_len: usize,
    slot: OffsetSlot,
    /// This record's number on its node (stream field `n`).
    number: u64,
    /// When its command was handed to a connection: from then on a failure leaves its outcome
    /// unknown.
    sent_at: Option<Instant>,
    /// When the first attempt whose outcome is unknown was sent: Redis may hold the entry since then,
    /// so the next attempt looks for it first ([`RECORD`]'s ARGV 9). `None` on the hot path.
    maybe_stored_since: Option<Instant>,
    /// When it first failed (its age in the republish queue).
    failed_at: Option<Instant>,
    on_done: Option<OnDone>,
}

/// A failed record with its message: everything needed to run its script again.
pub(crate) struct Kept {
    record: Box<Record>,
    sharded: bool,
    channel: String,
    payload: Vec<u8>,
}

/// What became of a record.
enum Outcome {
    /// Stored, with this stream id.
    Stored(String),
    /// Sent, but its answer never came (or was an error): Redis may have stored it.
    Unknown,
    /// Never sent (queue full, Redis unreachable): not stored.
    NotStored,
}

impl std::fmt::Debug for Record {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Record").field("stream", &self.stream).finish_non_exhaustive()
    }
}

impl Record {
    pub(crate) fn command(&self, message: &Outgoing, loaded: bool) -> redis::Cmd {
        let mut cmd = scripts()[0].command(loaded, &[&self.stream]);
        let slot = match self.slot {
            OffsetSlot::Classic => "c",
            OffsetSlot::MsgpackValue => "m",
            OffsetSlot::JsonField => "j",
            OffsetSlot::Absent => "a",
        };
        cmd.arg(&self.entry)
            .arg(self.window_ms)
            .arg(self.max_len)
            .arg(if message.sharded { "SPUBLISH" } else { "PUBLISH" })
            .arg(&message.channel)
            .arg(&message.payload)
            .arg(slot)
            .arg(self.number);
        match self.maybe_stored_since {
            Some(since) => cmd.arg((since.elapsed() + LOOK_BACK_MARGIN).as_millis() as u64),
            None => cmd.arg(""),
        };
        cmd
    }

    /// Marks the record's command as handed to a connection at `at`.
    pub(crate) fn sent(&mut self, at: Instant) {
        self.sent_at = Some(at);
    }

    /// Tells the waiter the record's stream id.
    pub(crate) fn done(&mut self, id: String) {
        if let Some(on_done) = self.on_done.take() {
            on_done(Outcome::Stored(id), None);
        }
    }

    /// Tells the waiter the record failed (its outcome unknown when it was sent), handing it the
    /// record and its message parts (see [`Outgoing`]'s `Drop`).
    pub(crate) fn failed(mut self: Box<Self>, sharded: bool, channel: String, payload: Vec<u8>) {
        let Some(on_done) = self.on_done.take() else { return };
        let outcome = match self.sent_at.take() {
            Some(at) => {
                self.maybe_stored_since.get_or_insert(at);
                Outcome::Unknown
            }
            None => Outcome::NotStored,
        };
        self.failed_at.get_or_insert_with(Instant::now);
        on_done(outcome, Some(Kept { record: self, sharded, channel, payload }));
    }
}

impl Drop for Record {
    /// A record dropped outside its message (not expected: [`Outgoing`]'s `Drop` takes it to
    /// [`Record::failed`]) still tells its waiter, so the broadcast is delivered locally.
    fn drop(&mut self) {
        if let Some(on_done) = self.on_done.take() {
            on_done(if self.sent_at.is_some() { Outcome::Unknown } else { Outcome::NotStored }, None);
        }
    }
}

/// The stream id in a [`RECORD`] reply.
pub(crate) fn stream_id_reply(reply: &redis::Value) -> Option<String> {
    match reply {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

impl Kept {
    /// The message again, its record flagged to look for itself first when an attempt may have
    /// stored it, and `on_done` told what became of it.
    fn into_outgoing(mut self, on_done: OnDone) -> Outgoing {
        self.record.on_done = Some(on_done);
        Outgoing {
            sharded: self.sharded,
            channel: std::mem::take(&mut self.channel),
            payload: std::mem::take(&mut self.payload),
            record: Some(self.record),
        }
    }
}

/// Unrecorded broadcasts kept to be published again, in record order (the order they were
/// broadcast), bounded (see [`RepublishQueue::keep`] and [`RepublishQueue::expire`]).
#[derive(Default)]
struct RepublishQueue {
    kept: BTreeMap<u64, Kept>,
}

/// The most unrecorded broadcasts kept; beyond, the oldest is given up.
const REPUBLISH_MAX: usize = 10_000;
/// Why one was given up for [`REPUBLISH_MAX`] (the log's reason; a test keeps the two in step).
const REPUBLISH_FULL: &str = "more than 10000 kept";
/// Kept broadcasts queued to the publisher at once (one round; the next after their outcomes).
const REPUBLISH_ROUND: usize = 256;
/// Rounds while Redis keeps failing, or is not connected, are at least this far apart.
const REPUBLISH_RETRY: Duration = Duration::from_millis(100);
/// A round whose outcomes did not all come by then (not expected) is left to finish on its own.
const REPUBLISH_ROUND_TIMEOUT: Duration = Duration::from_secs(10);
/// A record whose number is this far behind the next one is given up: its claim slot (see
/// [`Recovery::claims`]) could be reused before this node's stream reader reads it, and the reader
/// would deliver it here a second time. Half the ring leaves room for records created between the
/// republish and the read.
const REPUBLISH_MAX_BEHIND: u64 = CLAIMS as u64 / 2;
/// Added to how long ago an attempt was sent when the stream is searched for it (Redis's clock and
/// this node's measure the time between apart).
const LOOK_BACK_MARGIN: Duration = Duration::from_secs(2);

/// Why kept broadcasts were given up.
#[derive(Debug, Default, PartialEq, Eq)]
struct GivenUp {
    too_old: usize,
    too_far_behind: usize,
}

impl RepublishQueue {
    /// Keeps `kept` in record order; returns the oldest one kept when there are more than
    /// [`REPUBLISH_MAX`] (given up).
    fn keep(&mut self, kept: Kept) -> Option<Kept> {
        self.kept.insert(kept.record.number, kept);
        if self.kept.len() > REPUBLISH_MAX {
            return self.kept.pop_first().map(|(_, oldest)| oldest);
        }
        None
    }

    /// Gives up those that must not be published any more: kept longer than their namespace's
    /// recovery window (a late live packet), or [`REPUBLISH_MAX_BEHIND`] or more behind
    /// `next_number` (it could be delivered twice here).
    fn expire(&mut self, now: Instant, next_number: u64) -> GivenUp {
        let mut given_up = GivenUp::default();
        self.kept.retain(|&number, kept| {
            let failed_at = kept.record.failed_at.unwrap_or(now);
            if now.saturating_duration_since(failed_at) >= Duration::from_millis(kept.record.window_ms) {
                given_up.too_old += 1;
                return false;
            }
            if next_number.saturating_sub(number) >= REPUBLISH_MAX_BEHIND {
                given_up.too_far_behind += 1;
                return false;
            }
            true
        });
        given_up
    }

    /// The `n` oldest, taken out.
    fn take(&mut self, n: usize) -> Vec<Kept> {
        let mut round = Vec::with_capacity(n.min(self.kept.len()));
        while round.len() < n {
            let Some((_, kept)) = self.kept.pop_first() else { break };
            round.push(kept);
        }
        round
    }

    fn len(&self) -> usize {
        self.kept.len()
    }
}

/// The outcomes of one republish round of [`run_republisher`].
struct Round {
    pending: AtomicUsize,
    failed: AtomicBool,
    done: Notify,
}

impl Round {
    fn finished_one(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }
}

/// Publishes the unrecorded broadcasts kept by node `recovery` again while its publisher is
/// connected, oldest first, in rounds of [`REPUBLISH_ROUND`], each through the ordinary publish
/// queue (so later broadcasts may be stored before them). Those kept when the publisher connects
/// again go first on the new connection instead (the publisher's backlog), before any broadcast
/// queued since, so they keep their order. Their records look for themselves in the
/// stream first when an earlier attempt may have stored them ([`RECORD`]). Stored: counted, never
/// delivered locally again (this node's stream reader skips its number, claimed at the first
/// failure), while the other nodes deliver it with its new offset. Failed again: kept again, in
/// order, and retried [`REPUBLISH_RETRY`] later at the soonest. Ends with the node.
async fn run_republisher(recovery: Weak<Recovery>) {
    let mut delay: Option<Duration> = None;
    loop {
        match delay.take() {
            Some(delay) => tokio::time::sleep(delay).await,
            None => {
                // Waits holding only the notify, not the node: the node's drop notifies it, and the
                // upgrade below ends the task. Nothing kept means no wake at all.
                let Some(wake) = recovery.upgrade().map(|this| this.republish_wake.clone()) else { return };
                wake.notified().await;
            }
        }
        let round = {
            let Some(this) = recovery.upgrade() else { return };
            let (taken, left) = this.take_kept(REPUBLISH_ROUND, true);
            if taken.is_empty() {
                if left > 0 {
                    // Kept, but the publisher is not connected: look again soon.
                    delay = Some(REPUBLISH_RETRY);
                }
                continue;
            }
            let round = Arc::new(Round {
                pending: AtomicUsize::new(taken.len()),
                failed: AtomicBool::new(false),
                done: Notify::new(),
            });
            for kept in taken {
                this.publisher.publish(this.again(kept, Some(round.clone())));
            }
            round
        };
        let _ = tokio::time::timeout(REPUBLISH_ROUND_TIMEOUT, round.done.notified()).await;
        delay = Some(if round.failed.load(Ordering::Relaxed) { REPUBLISH_RETRY } else { Duration::ZERO });
    }
}

/// A stream id, ordered as Redis orders them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct StreamId(u64, u64);

impl StreamId {
    pub(crate) fn parse(s: &str) -> Option<Self> {
        let (ms, seq) = s.split_once('-')?;
        if ms.is_empty() || seq.is_empty() || !ms.bytes().chain(seq.bytes()).all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(StreamId(ms.parse().ok()?, seq.parse().ok()?))
    }
}

/// What happens to one session at the next flush (the last change wins).
enum SessionWrite {
    Live(String),
    Persist(String),
    Discard,
}

/// A packet delivered on this node while a session was being restored here.
struct Buffered {
    offset: StreamId,
    event: String,
    payload: Payload,
    opts: BroadcastOptions,
    /// The restored socket was already indexed (so a packet for its own id reached it directly).
    indexed: bool,
}

struct Restoring {
    nsp: String,
    sid: Option<Sid>,
    /// The room channels subscribed for this restore (sharded, dynamic subscriptions), released when
    /// the entry goes.
    hold: Option<Box<dyn Send>>,
    /// The stream's last id when the session's packets were read: later ones come from the buffer.
    read_up_to: Option<StreamId>,
    started: Instant,
    buffer: Vec<Buffered>,
}

/// A socket restored here whose replay read the stream up to `up_to`: this node's subscriber may
/// still deliver packets up to there (stored before the read, published to this node after the
/// socket joined its rooms), which the socket already got from the replay.
struct Replayed {
    nsp: String,
    sid: Sid,
    up_to: StreamId,
    started: Instant,
}

/// The node's recovery state (one per node, every namespace).
pub(crate) struct Recovery {
    prefix: String,
    uid: String,
    publisher: Arc<Publisher>,
    stats: Arc<Stats>,
    timeout: Duration,
    /// nsp -> pid -> pending write, taken whole by the flusher.
    writes: Mutex<HashMap<String, HashMap<String, SessionWrite>>>,
    /// Namespaces with recovery and their windows, for the live hashes' refresh.
    windows: Mutex<HashMap<String, Duration>>,
    wake: Notify,
    /// Sessions being restored on this node, by pid. Held while delivering a stored packet locally,
    /// so a restore's last step (joining its rooms) and deliveries are ordered.
    restoring: Mutex<HashMap<String, Restoring>>,
    restoring_count: AtomicUsize,
    /// Restored sockets not yet past their replay's end (locked after `restoring` when both are).
    replayed: Mutex<Vec<Replayed>>,
    replayed_count: AtomicUsize,
    /// Where the stream readers connect.
    target: RedisTarget,
    /// Each namespace's stream reader, by namespace.
    readers: RwLock<HashMap<String, Arc<StreamReader>>>,
    /// The next record's number.
    next_number: AtomicU64,
    /// Who delivers this node's records: slot `n % CLAIMS` holds `n + 1` once record `n` was
    /// delivered. A record sent whose answer was lost may be in the stream all the same, and this
    /// node's stream reader may read it before or after the failure is known (Redis answers the
    /// reader's XREAD while the publisher's answer is lost): the reader and the failure path each
    /// claim the number, and only the first delivers. One atomic swap per own entry read, no lock.
    claims: Box<[AtomicU64]>,
    /// Unrecorded broadcasts waiting to be published again (see [`run_republisher`]).
    republish: Mutex<RepublishQueue>,
    /// Wakes the republisher: something was kept, or the node is gone.
    republish_wake: Arc<Notify>,
}

impl Drop for Recovery {
    fn drop(&mut self) {
        self.republish_wake.notify_one();
        let left = self.republish.get_mut().len();
        if left > 0 {
            self.stats.republish_dropped("node stopped", left as u64);
        }
    }
}

/// Record numbers whose claims are remembered. Between a number's two claims come only the other
/// records of the batches in flight around one connection loss (records never sent claim nothing).
const CLAIMS: usize = 65_536;

/// Which path delivers a namespace's stored packets on this node. Its stream reader delivers every
/// packet after `start`, in stream order (XREAD); the script's reply (this node's own packets) and
/// pub/sub (other nodes') only what is at or before it. Two connections (the reply's and pub/sub's)
/// keep no order between them, and a client resumes from the offset of the last packet it got, so
/// every stored packet must reach a client in stream order: a packet delivered ahead of an older one
/// makes the older one's replay come twice, or be skipped.
pub(crate) struct StreamReader {
    /// Set once, when the reader first read the stream's end.
    start: OnceLock<StreamId>,
    /// Until then, the highest id the direct paths delivered (the reader starts after it).
    direct_max: Mutex<Option<StreamId>>,
}

impl StreamReader {
    fn new() -> Self {
        StreamReader { start: OnceLock::new(), direct_max: Mutex::new(None) }
    }

    /// Whether stored packet `id`, reaching this node by reply or pub/sub, is delivered from there
    /// (else the reader delivers it).
    fn direct(&self, id: StreamId) -> bool {
        if let Some(start) = self.start.get() {
            return id <= *start;
        }
        let mut max = self.direct_max.lock();
        if let Some(start) = self.start.get() {
            return id <= *start;
        }
        *max = Some(max.map_or(id, |m| m.max(id)));
        true
    }

    /// Starts the reader after `end` (the stream's last id when it looked), or after the last
    /// packet the direct paths delivered meanwhile. Returns where it starts.
    fn position(&self, end: StreamId) -> StreamId {
        let max = self.direct_max.lock();
        let _ = self.start.set(max.map_or(end, |m| m.max(end)));
        *self.start.get().expect("just set")
    }
}

impl Recovery {
    pub(crate) fn start(
        prefix: &str,
        uid: &str,
        publisher: Arc<Publisher>,
        stats: Arc<Stats>,
        timeout: Duration,
        target: RedisTarget,
    ) -> Arc<Self> {
        let recovery = Arc::new(Recovery {
            prefix: prefix.to_string(),
            uid: uid.to_string(),
            publisher,
            stats,
            timeout,
            writes: Mutex::default(),
            windows: Mutex::default(),
            wake: Notify::new(),
            restoring: Mutex::default(),
            restoring_count: AtomicUsize::new(0),
            replayed: Mutex::default(),
            replayed_count: AtomicUsize::new(0),
            target,
            readers: RwLock::default(),
            next_number: AtomicU64::new(0),
            claims: (0..CLAIMS).map(|_| AtomicU64::new(0)).collect(),
            republish: Mutex::default(),
            republish_wake: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&recovery);
        recovery.publisher.set_backlog(Box::new(move |n| {
            let Some(this) = weak.upgrade() else { return Vec::new() };
            this.take_kept(n, false).0.into_iter().map(|kept| this.again(kept, None)).collect()
        }));
        tokio::spawn(run_republisher(Arc::downgrade(&recovery)));
        recovery
    }

    /// A kept broadcast as a message to publish again: stored, it is counted (never delivered here
    /// again); failed, it is kept again (retried by [`run_republisher`]).
    fn again(self: &Arc<Self>, kept: Kept, round: Option<Arc<Round>>) -> Outgoing {
        let this = self.clone();
        kept.into_outgoing(Box::new(move |outcome, kept| {
            match outcome {
                Outcome::Stored(_) => {
                    this.stats.recorded.fetch_add(1, Ordering::Relaxed);
                    this.stats.republished(1);
                }
                Outcome::Unknown | Outcome::NotStored => {
                    if let Some(round) = &round {
                        round.failed.store(true, Ordering::Relaxed);
                    }
                    if let Some(kept) = kept {
                        this.keep(kept, false);
                    }
                }
            }
            if let Some(round) = round {
                round.finished_one();
            }
        }))
    }

    /// Keeps an unrecorded broadcast to be published again (`wake`: tell the republisher now).
    fn keep(&self, kept: Kept, wake: bool) {
        let given_up = self.republish.lock().keep(kept);
        if given_up.is_some() {
            self.stats.republish_dropped(REPUBLISH_FULL, 1);
        }
        // Dropped outside the lock.
        drop(given_up);
        if wake {
            self.republish_wake.notify_one();
        }
    }

    /// Gives up the kept broadcasts past their bounds, and takes the `n` oldest (none when
    /// `when_connected` and the publisher is not). Returns them and how many are left kept.
    fn take_kept(&self, n: usize, when_connected: bool) -> (Vec<Kept>, usize) {
        let next_number = self.next_number.load(Ordering::Relaxed);
        let mut queue = self.republish.lock();
        if queue.len() == 0 {
            return (Vec::new(), 0);
        }
        let given_up = queue.expire(Instant::now(), next_number);
        let taken = if !when_connected || self.publisher.is_connected() { queue.take(n) } else { Vec::new() };
        let left = queue.len();
        drop(queue);
        if given_up.too_old > 0 {
            self.stats.republish_dropped("older than the recovery window", given_up.too_old as u64);
        }
        if given_up.too_far_behind > 0 {
            self.stats.republish_dropped("too many broadcasts since", given_up.too_far_behind as u64);
        }
        (taken, left)
    }

    /// True for the first claim of this node's record `number` (see [`Recovery::claims`]).
    fn claim(&self, number: u64) -> bool {
        let token = number.wrapping_add(1);
        self.claims[(number % CLAIMS as u64) as usize].swap(token, Ordering::AcqRel) != token
    }

    /// False when stream entry `entry` is one of this node's records already delivered (without an
    /// offset, its answer lost); else this reader delivers it.
    fn reader_claims(&self, entry: &redis::Value) -> bool {
        if !is_from(entry, &self.uid) {
            return true;
        }
        match entry_number(entry) {
            Some(number) => self.claim(number),
            None => true,
        }
    }

    /// Starts reading namespace `ns`'s stream (once per namespace): from then on its stored packets
    /// reach this node's sockets in stream order.
    pub(crate) fn start_reader(self: &Arc<Self>, ns: &Arc<Namespace>) {
        let reader = Arc::new(StreamReader::new());
        {
            let mut readers = self.readers.write();
            if readers.contains_key(ns.name()) {
                return;
            }
            readers.insert(ns.name().to_string(), reader.clone());
        }
        tokio::spawn(run_reader(Arc::downgrade(self), Arc::downgrade(ns), reader));
    }

    fn reader(&self, nsp: &str) -> Option<Arc<StreamReader>> {
        self.readers.read().get(nsp).cloned()
    }

    /// Whether namespace `nsp`'s stream reader delivers stored packet `id` (so its pub/sub copy is
    /// dropped before it is decoded).
    pub(crate) fn read_from_stream(&self, nsp: &str, id: StreamId) -> bool {
        self.readers.read().get(nsp).is_some_and(|reader| !reader.direct(id))
    }

    /// A stored packet from another node, by pub/sub: delivered unless the stream reader does it.
    pub(crate) fn deliver_published(
        &self,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
        offset: Option<&str>,
    ) {
        if let Some(id) = offset.and_then(StreamId::parse) {
            if self.reader(ns.name()).is_some_and(|reader| !reader.direct(id)) {
                return;
            }
        }
        self.deliver(ns, event, payload, opts, offset);
    }

    fn key(&self, nsp: &str, suffix: &str) -> String {
        format!("{{{}:recovery:{}}}:{}", self.prefix, nsp, suffix)
    }

    pub(crate) fn stream_key(&self, nsp: &str) -> String {
        self.key(nsp, "packets")
    }

    /// A pid names the node that holds its live session: `<random>.<node uid>`.
    pub(crate) fn new_pid(&self) -> String {
        format!("{}.{}", Sid::random().as_str(), self.uid)
    }

    fn owner(pid: &str) -> Option<&str> {
        pid.rsplit_once('.').map(|(_, uid)| uid).filter(|uid| !uid.is_empty() && uid.len() <= 64)
    }

    /// The stream record of a broadcast whose local delivery waits for its stream id.
    pub(crate) fn record(
        self: &Arc<Self>,
        ns: &Arc<Namespace>,
        entry: Vec<u8>,
        slot: OffsetSlot,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
    ) -> Box<Record> {
        let config = ns.recovery().map(|r| r.config().clone()).unwrap_or_default();
        let this = self.clone();
        let reader = self.reader(ns.name());
        let number = self.next_number.fetch_add(1, Ordering::Relaxed);
        let ns_weak: Weak<Namespace> = Arc::downgrade(ns);
        let (event, payload, opts) = (event.to_string(), payload.clone(), opts.clone());
        Box::new(Record {
            stream: self.stream_key(ns.name()),
            entry,
            window_ms: config.max_disconnection_duration.as_millis() as u64,
            max_len: config.max_stored_packets,
            slot,
            number,
            sent_at: None,
            maybe_stored_since: None,
            failed_at: None,
            on_done: Some(Box::new(move |outcome, kept| {
                let id = match outcome {
                    Outcome::Stored(id) => {
                        this.stats.recorded.fetch_add(1, Ordering::Relaxed);
                        // The stream reader delivers it (in stream order), unless it started after it.
                        let parsed = StreamId::parse(&id);
                        if let (Some(reader), Some(parsed)) = (&reader, parsed) {
                            if !reader.direct(parsed) {
                                return;
                            }
                        }
                        Some(id)
                    }
                    Outcome::Unknown | Outcome::NotStored => {
                        // Redis may have stored it before the connection failed, and this node's
                        // reader delivered it (with its offset) already: then it is not sent again.
                        // Else the claim makes the reader skip the entry published again later.
                        if !this.claim(number) && matches!(outcome, Outcome::Unknown) {
                            this.stats.recorded.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                        this.stats.unrecorded("Redis unreachable; kept to publish again");
                        if let Some(kept) = kept {
                            this.keep(kept, true);
                        }
                        None
                    }
                };
                let Some(ns) = ns_weak.upgrade() else { return };
                this.deliver(&ns, &event, &payload, &opts, id.as_deref());
            })),
        })
    }

    /// Delivers a packet to the local sockets `opts` selects, with its stream id as the last
    /// argument when it has one.
    pub(crate) fn deliver(
        &self,
        ns: &Arc<Namespace>,
        event: &str,
        payload: &Payload,
        opts: &BroadcastOptions,
        offset: Option<&str>,
    ) {
        let with_offset;
        let payload = match offset {
            Some(offset) => {
                let mut p = payload.clone();
                p.args.push(Value::String(offset.to_string()));
                with_offset = p;
                &with_offset
            }
            None => payload,
        };
        let frames = ns.parser().encode_packet(ns.name(), Some(event), payload, None);
        let Some(parsed) = offset.and_then(StreamId::parse) else {
            ns.local_broadcast(&frames, opts);
            return;
        };
        // Both zero outside the few milliseconds around a restore: one load each per delivery.
        if self.restoring_count.load(Ordering::SeqCst) == 0 && self.replayed_count.load(Ordering::SeqCst) == 0 {
            ns.local_broadcast(&frames, opts);
            return;
        }
        let mut restoring = self.restoring.lock();
        for entry in restoring.values_mut().filter(|r| r.nsp == ns.name()) {
            entry.buffer.push(Buffered {
                offset: parsed,
                event: event.to_string(),
                payload: payload.clone(),
                opts: opts.clone(),
                indexed: entry.sid.is_some_and(|sid| ns.get_socket(&sid).is_some()),
            });
        }
        // Restored sockets that got this packet in their replay skip it; a packet past a socket's
        // replay means this node's subscriber caught up with it (pub/sub keeps the stream's order).
        let mut replayed = self.replayed.lock();
        let mut skip: Vec<Sid> = Vec::new();
        replayed.retain(|r| {
            if r.nsp != ns.name() {
                return r.started.elapsed() < RESTORING_TTL;
            }
            if parsed <= r.up_to {
                skip.push(r.sid);
            }
            parsed < r.up_to && r.started.elapsed() < RESTORING_TTL
        });
        self.replayed_count.store(replayed.len(), Ordering::SeqCst);
        drop(replayed);
        if skip.is_empty() {
            ns.local_broadcast(&frames, opts);
        } else {
            let mut opts = opts.clone();
            opts.except.extend(skip.iter().map(|sid| sid.as_str().into()));
            ns.local_broadcast(&frames, &opts);
        }
    }

    // ---- sessions ------------------------------------------------------------------------------

    fn queue_write(&self, ns: &Namespace, pid: &str, write: SessionWrite) {
        if let Some(config) = ns.recovery().map(|r| r.config()) {
            self.windows.lock().entry(ns.name().to_string()).or_insert(config.max_disconnection_duration);
        }
        self.writes.lock().entry(ns.name().to_string()).or_default().insert(pid.to_string(), write);
        self.wake.notify_one();
    }

    pub(crate) fn session_changed(&self, ns: &Namespace, socket: &Socket) {
        if let Some(session) = socket.session() {
            let pid = session.pid.clone();
            self.queue_write(ns, &pid, SessionWrite::Live(session_json(&session)));
        }
    }

    pub(crate) fn persist(&self, ns: &Namespace, session: SessionToPersist) {
        let pid = session.pid.clone();
        self.queue_write(ns, &pid, SessionWrite::Persist(session_json(&session)));
    }

    pub(crate) fn discard(&self, ns: &Namespace, pid: &str) {
        self.queue_write(ns, pid, SessionWrite::Discard);
    }

    /// Writes what changed since the last flush; refreshes the live hashes' lifetime when `refresh`.
    async fn flush(&self, refresh: bool) {
        let writes = std::mem::take(&mut *self.writes.lock());
        let windows = self.windows.lock().clone();
        let mut pipe = redis::pipe();
        let mut commands = 0usize;
        for (nsp, sessions) in &writes {
            let window = windows.get(nsp).copied().unwrap_or(Duration::from_secs(120));
            let live = self.key(nsp, &format!("live:{}", self.uid));
            for (pid, write) in sessions {
                match write {
                    SessionWrite::Live(json) => {
                        pipe.cmd("HSET").arg(&live).arg(pid).arg(json);
                    }
                    SessionWrite::Discard => {
                        pipe.cmd("HDEL").arg(&live).arg(pid);
                    }
                    SessionWrite::Persist(json) => {
                        let (taken, session) =
                            (self.key(nsp, &format!("taken:{pid}")), self.key(nsp, &format!("session:{pid}")));
                        pipe.add_command(scripts()[2].command(false, &[&live, &taken, &session]))
                            .arg(pid)
                            .arg(json)
                            .arg(window.as_millis() as u64)
                            .arg(&self.uid);
                    }
                }
                pipe.ignore();
                commands += 1;
            }
        }
        if refresh || !writes.is_empty() {
            for (nsp, window) in &windows {
                let live = self.key(nsp, &format!("live:{}", self.uid));
                pipe.cmd("PEXPIRE").arg(&live).arg((*window + LIVE_GRACE).as_millis() as u64).ignore();
                commands += 1;
            }
        }
        if commands == 0 {
            return;
        }
        if let Err(err) = self.publisher.query_pipeline(&pipe, self.timeout).await {
            let sessions: usize = writes.values().map(HashMap::len).sum();
            self.stats.session_write_failures.fetch_add(sessions as u64, Ordering::Relaxed);
            tracing::warn!(error = %err, sessions, "redis adapter: recovery sessions not written");
        }
    }

    // ---- restoring -----------------------------------------------------------------------------

    /// Takes session `pid` from Redis with every packet after `offset` it should get. `None` when the
    /// session is unknown or expired, the offset is not a stream id, or packets after it were trimmed.
    ///
    /// `hold` subscribes to the channels the session's packets come on, when the format gives rooms
    /// their own channels (sharded, dynamic subscriptions: this node may not listen to them yet),
    /// and tells when Redis confirmed it. The stream is then read again past the first read, so a
    /// packet stored between the first read and the subscription comes from the stream, and every
    /// later one reaches this node (the restore's buffer until the socket joined its rooms).
    pub(crate) async fn restore(
        self: Arc<Self>,
        ns: Arc<Namespace>,
        pid: String,
        offset: String,
        hold: impl FnOnce(&SessionToPersist) -> Option<(Box<dyn Send>, tokio::sync::oneshot::Receiver<()>)>,
    ) -> Option<RestoredSession> {
        let config = ns.recovery()?.config().clone();
        let from = StreamId::parse(&offset)?;
        let owner = Self::owner(&pid)?;
        let nsp = ns.name().to_string();
        self.begin_restoring(&nsp, &pid);
        let mut result = self.read_session(&ns, &config, &pid, owner, &offset, from).await;
        if let Ok(Some((restored, last))) = &mut result {
            if let Some((guard, synced)) = hold(&restored.session) {
                if let Some(entry) = self.restoring.lock().get_mut(&pid) {
                    entry.hold = Some(guard);
                }
                let caught_up = match tokio::time::timeout(self.timeout, synced).await {
                    Ok(Ok(())) => self.read_after(&ns, &config, &restored.session, *last).await,
                    Ok(Err(_)) => Err(Error::Unreachable),
                    Err(_) => Err(Error::Timeout(self.timeout)),
                };
                match caught_up {
                    Ok((more, end)) => {
                        restored.missed.extend(more);
                        *last = end;
                    }
                    Err(err) => result = Err(err),
                }
            }
        }
        match result {
            Ok(Some((restored, last))) => {
                self.stats.restored.fetch_add(1, Ordering::Relaxed);
                if let Some(entry) = self.restoring.lock().get_mut(&pid) {
                    entry.sid = Sid::parse(&restored.session.sid);
                    entry.read_up_to = Some(last);
                }
                Some(restored)
            }
            Ok(None) => {
                self.stats.restore_refused.fetch_add(1, Ordering::Relaxed);
                self.end_restoring(&pid);
                None
            }
            Err(err) => {
                self.stats.restore_refused.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %err, "redis adapter: session not restored (Redis)");
                self.end_restoring(&pid);
                None
            }
        }
    }

    async fn read_session(
        &self,
        ns: &Namespace,
        config: &RecoveryConfig,
        pid: &str,
        owner: &str,
        offset: &str,
        from: StreamId,
    ) -> Result<Option<(RestoredSession, StreamId)>, Error> {
        let nsp = ns.name();
        let keys = [
            self.key(nsp, &format!("session:{pid}")),
            self.key(nsp, &format!("live:{owner}")),
            self.key(nsp, &format!("taken:{pid}")),
            self.stream_key(nsp),
        ];
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        let args = |loaded| {
            let mut cmd = scripts()[1].command(loaded, &keys);
            cmd.arg(pid)
                .arg(offset)
                .arg(config.max_disconnection_duration.as_millis() as u64)
                .arg(config.max_stored_packets)
                .arg(&self.uid);
            cmd
        };
        let reply = match self.publisher.query(&args(true), self.timeout).await {
            Err(Error::Redis(err)) if err.code() == Some("NOSCRIPT") => {
                self.publisher.query(&args(false), self.timeout).await?
            }
            other => other?,
        };
        let redis::Value::Array(parts) = reply else { return Ok(None) };
        // `{session}` alone: the stream is gone (Redis restarted), so the offset cannot be checked.
        let Ok([session, deleted, last, entries]) = <[redis::Value; 4]>::try_from(parts) else { return Ok(None) };
        let (Some(session), Some(deleted), Some(last)) = (text(&session), text(&deleted), text(&last)) else {
            return Err(unexpected("session or stream ids"));
        };
        let (Some(deleted), Some(last)) = (StreamId::parse(&deleted), StreamId::parse(&last)) else {
            return Err(unexpected("stream ids"));
        };
        // Packets after `offset` were trimmed (too old), or the offset was never handed out.
        if deleted > from || from > last {
            return Ok(None);
        }
        let Some(session) = parse_session(&session) else { return Err(unexpected("session")) };
        let redis::Value::Array(entries) = entries else { return Err(unexpected("stream entries")) };
        let mut missed = Vec::new();
        for entry in entries {
            let Some((id, (event, mut payload, opts))) = stream_entry(&entry) else {
                self.stats.malformed("recovery stream entry", &"undecodable");
                continue;
            };
            if should_include(&session.rooms, &session.sid, &opts) {
                payload.args.push(Value::String(id));
                missed.push((event, payload));
            }
        }
        Ok(Some((RestoredSession { session, missed }, last)))
    }

    /// The packets for `session` stored after `after`, and the last id read (`after` when none).
    async fn read_after(
        &self,
        ns: &Namespace,
        config: &RecoveryConfig,
        session: &SessionToPersist,
        after: StreamId,
    ) -> Result<(Vec<(String, Payload)>, StreamId), Error> {
        let mut cmd = redis::cmd("XRANGE");
        cmd.arg(self.stream_key(ns.name()))
            .arg(format!("({}-{}", after.0, after.1))
            .arg("+")
            .arg("COUNT")
            .arg(config.max_stored_packets);
        let redis::Value::Array(entries) = self.publisher.query(&cmd, self.timeout).await? else {
            return Err(unexpected("stream entries"));
        };
        let (mut missed, mut last) = (Vec::new(), after);
        for entry in entries {
            let Some((id, (event, mut payload, opts))) = stream_entry(&entry) else {
                self.stats.malformed("recovery stream entry", &"undecodable");
                continue;
            };
            if let Some(parsed) = StreamId::parse(&id) {
                last = last.max(parsed);
            }
            if should_include(&session.rooms, &session.sid, &opts) {
                payload.args.push(Value::String(id));
                missed.push((event, payload));
            }
        }
        Ok((missed, last))
    }

    /// True while a session is being restored on this node (between its read and its completion).
    pub(crate) fn is_restoring(&self) -> bool {
        self.restoring_count.load(Ordering::SeqCst) > 0
    }

    fn begin_restoring(&self, nsp: &str, pid: &str) {
        let mut restoring = self.restoring.lock();
        let mut expired = Vec::new();
        restoring.retain(|_, r| {
            let keep = r.started.elapsed() < RESTORING_TTL;
            if !keep {
                expired.extend(r.hold.take());
            }
            keep
        });
        let entry = Restoring {
            nsp: nsp.to_string(),
            sid: None,
            hold: None,
            read_up_to: None,
            started: Instant::now(),
            buffer: Vec::new(),
        };
        restoring.insert(pid.to_string(), entry);
        self.restoring_count.store(restoring.len(), Ordering::SeqCst);
        // Channels of abandoned restores are released outside the lock.
        drop(restoring);
        drop(expired);
    }

    fn end_restoring(&self, pid: &str) -> Option<Restoring> {
        let mut restoring = self.restoring.lock();
        let entry = restoring.remove(pid);
        self.restoring_count.store(restoring.len(), Ordering::SeqCst);
        entry
    }

    /// Joins the restored socket's rooms, sends what it missed, then what was delivered on this node
    /// since its packets were read and before it joined, each packet once.
    pub(crate) fn complete(&self, ns: &Arc<Namespace>, socket: &Arc<Socket>, restored: RestoredSession) {
        let pid = restored.session.pid.clone();
        // The last packet read from the stream (or the client's own offset) marks where the buffer
        // starts to matter.
        let mut restoring = self.restoring.lock();
        let entry = restoring.remove(&pid);
        // The count drops only once the replay is queued (below, still under the lock): a delivery
        // that saw it at zero would reach the socket (in its rooms by then) ahead of the replay.
        let read_up_to = entry.as_ref().and_then(|e| e.read_up_to);
        let rooms = restored.session.rooms.clone();
        let sid = socket.id();
        switchyard_socketio::Adapter::complete_restore(&switchyard_socketio::MemoryAdapter, ns, socket, restored);
        if let Some(up_to) = read_up_to {
            let mut replayed = self.replayed.lock();
            replayed.push(Replayed { nsp: ns.name().to_string(), sid, up_to, started: Instant::now() });
            self.replayed_count.store(replayed.len(), Ordering::SeqCst);
        }
        // Released after the lock (the joined socket holds its rooms' channels by now).
        let mut hold = None;
        if let Some(mut entry) = entry {
            hold = entry.hold.take();
            for b in entry.buffer {
                if read_up_to.is_some_and(|up_to| b.offset <= up_to) {
                    continue;
                }
                let reaches = should_include(&rooms, sid.as_str(), &b.opts);
                let reached_directly = b.indexed && should_include(&[], sid.as_str(), &b.opts);
                if reaches && !reached_directly {
                    let _ = socket.send_replay(&ns.parser().encode_packet(ns.name(), Some(&b.event), &b.payload, None));
                }
            }
        }
        self.restoring_count.store(restoring.len(), Ordering::SeqCst);
        drop(restoring);
        drop(hold);
    }
}

fn unexpected(what: &'static str) -> Error {
    Error::UnexpectedReply { command: "recovery restore", reply: what.to_string() }
}

fn text(value: &redis::Value) -> Option<String> {
    match value {
        redis::Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        redis::Value::SimpleString(s) => Some(s.clone()),
        redis::Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

fn parse_session(json: &str) -> Option<SessionToPersist> {
    let value: Value = serde_json::from_str(json).ok()?;
    Some(SessionToPersist {
        sid: value.get("sid")?.as_str()?.to_string(),
        pid: value.get("pid")?.as_str()?.to_string(),
        rooms: value.get("rooms")?.as_array()?.iter().filter_map(Value::as_str).map(Into::into).collect(),
        data: value.get("data").cloned().unwrap_or(Value::Null),
    })
}

/// A stream entry `[id, [field, value, ...]]`: its id and the stored broadcast.
fn stream_entry(entry: &redis::Value) -> Option<(String, (String, Payload, BroadcastOptions))> {
    let redis::Value::Array(parts) = entry else { return None };
    let [id, fields] = parts.as_slice() else { return None };
    let id = text(id)?;
    let fields = match fields {
        redis::Value::Array(fields) => fields.as_slice(),
        _ => return None,
    };
    let value = fields.chunks(2).find(|kv| kv.len() == 2 && text(&kv[0]).as_deref() == Some("m"))?;
    let redis::Value::BulkString(bytes) = &value[1] else { return None };
    Some((id, decode_entry(bytes)?))
}

/// The classic encoding `[uid, packet, opts]` of a stored broadcast, decoded.
pub(crate) fn decode_entry(bytes: &[u8]) -> Option<(String, Payload, BroadcastOptions)> {
    let decoded = msgpack::decode(bytes).ok()?;
    let Value::Array(mut parts) = decoded.value else { return None };
    if parts.len() < 3 {
        return None;
    }
    let opts = convert::parse_options(parts.get(2));
    let packet = wire::parse_packet(parts.swap_remove(1), &decoded.binary)?;
    let (event, payload) = convert::event(packet);
    Some((event, payload, opts))
}

fn session_json(session: &SessionToPersist) -> String {
    json!({"sid": session.sid, "pid": session.pid, "rooms": session.rooms.iter().map(|r| r.as_ref()).collect::<Vec<&str>>(), "data": session.data})
        .to_string()
}

/// Writes session changes every [`FLUSH_EVERY`] at most, refreshes the live hashes every
/// [`REFRESH_EVERY`], and after the publisher reconnects (a restarted Redis lost everything) writes
/// every live session again through `resync`.
pub(crate) async fn run_flusher(recovery: Weak<Recovery>, resync: impl Fn() + Send + 'static) {
    let mut last_refresh = Instant::now();
    let mut generation = None;
    loop {
        let Some(this) = recovery.upgrade() else { return };
        let _ = tokio::time::timeout(REFRESH_EVERY, this.wake.notified()).await;
        drop(this);
        tokio::time::sleep(FLUSH_EVERY).await;
        let Some(this) = recovery.upgrade() else { return };
        let current = this.publisher.generation();
        if current.is_some() && current != generation {
            if generation.is_some() {
                tracing::info!("redis adapter: Redis reconnected; writing the live recovery sessions again");
            }
            generation = current;
            resync();
        }
        let refresh = last_refresh.elapsed() >= REFRESH_EVERY;
        if refresh {
            last_refresh = Instant::now();
        }
        this.flush(refresh).await;
    }
}

/// Entries read from the stream per XREAD, and how long one XREAD waits for new ones.
const READ_COUNT: usize = 1000;
const READ_BLOCK: Duration = Duration::from_millis(1000);

/// Reads namespace `ns`'s stream on a connection of its own (XREAD blocks it) and delivers every
/// stored packet after the reader's start, in stream order. After a lost connection it resumes after
/// the last entry it delivered, so packets stored while it was away still reach connected sockets.
/// Ends with the namespace or the node.
async fn run_reader(recovery: Weak<Recovery>, ns: Weak<Namespace>, reader: Arc<StreamReader>) {
    let mut backoff = Duration::from_millis(100);
    let mut warned = false;
    let mut last = reader.start.get().copied();
    loop {
        let (target, key) = {
            let (Some(this), Some(ns)) = (recovery.upgrade(), ns.upgrade()) else { return };
            (this.target.clone(), this.stream_key(ns.name()))
        };
        let mut conn = match tokio::time::timeout(Duration::from_secs(4), target.connect(None)).await {
            Ok(Ok(conn)) => conn,
            other => {
                if !warned {
                    let error = match other {
                        Ok(Err(err)) => err.to_string(),
                        _ => "connect timed out".to_string(),
                    };
                    tracing::warn!(error, "redis adapter: recovery stream reader cannot connect; retrying");
                    warned = true;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
                continue;
            }
        };
        if last.is_none() {
            let mut cmd = redis::cmd("XREVRANGE");
            cmd.arg(&key).arg("+").arg("-").arg("COUNT").arg(1);
            match conn.query(&cmd).await {
                Ok(redis::Value::Array(entries)) => {
                    let end = entries
                        .first()
                        .and_then(|e| match e {
                            redis::Value::Array(parts) => parts.first().and_then(text),
                            _ => None,
                        })
                        .and_then(|id| StreamId::parse(&id))
                        .unwrap_or(StreamId(0, 0));
                    last = Some(reader.position(end));
                }
                _ => {
                    tokio::time::sleep(backoff).await;
                    continue;
                }
            }
        }
        backoff = Duration::from_millis(100);
        if warned {
            tracing::info!("redis adapter: recovery stream reader connected");
        }
        loop {
            let from = last.expect("positioned");
            let mut cmd = redis::cmd("XREAD");
            cmd.arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(READ_BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(format!("{}-{}", from.0, from.1));
            let reply = conn.query(&cmd).await;
            let (Some(this), Some(ns)) = (recovery.upgrade(), ns.upgrade()) else { return };
            let entries = match reply {
                Ok(value) => xread_entries(value),
                Err(err) => {
                    tracing::warn!(error = %err, "redis adapter: recovery stream reader lost its connection");
                    warned = true;
                    break;
                }
            };
            for entry in entries {
                let Some((id, (event, payload, opts))) = stream_entry(&entry) else {
                    this.stats.malformed("recovery stream entry", &"undecodable");
                    // Past it all the same (its id, when it has one).
                    if let Some(id) = stream_entry_id(&entry) {
                        last = Some(id);
                    }
                    continue;
                };
                let Some(parsed) = StreamId::parse(&id) else { continue };
                last = Some(parsed);
                if !this.reader_claims(&entry) {
                    continue;
                }
                if !is_from(&entry, &this.uid) {
                    this.stats.received.fetch_add(1, Ordering::Relaxed);
                }
                this.deliver(&ns, &event, &payload, &opts, Some(&id));
            }
        }
        tokio::time::sleep(backoff).await;
    }
}

/// The entries of an XREAD reply for one stream (RESP3 map or RESP2 array; nil when none came).
fn xread_entries(value: redis::Value) -> Vec<redis::Value> {
    let streams: Vec<redis::Value> = match value {
        redis::Value::Map(pairs) => pairs.into_iter().map(|(_, entries)| entries).collect(),
        redis::Value::Array(streams) => streams
            .into_iter()
            .filter_map(|s| match s {
                redis::Value::Array(mut parts) if parts.len() == 2 => parts.pop(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    streams
        .into_iter()
        .flat_map(|entries| match entries {
            redis::Value::Array(entries) => entries,
            _ => Vec::new(),
        })
        .collect()
}

/// Whether stream entry `entry` was stored by node `uid` (its stored message starts with the uid).
fn is_from(entry: &redis::Value, uid: &str) -> bool {
    let redis::Value::Array(parts) = entry else { return false };
    let Some(redis::Value::Array(fields)) = parts.get(1) else { return false };
    let Some(redis::Value::BulkString(bytes)) = fields.get(1) else { return false };
    // `[uid, packet, opts]`: 0x93, then the uid as a fixstr (0xa0 | len) or str8 (0xd9, len).
    match bytes.as_slice() {
        [0x93, 0xd9, len, rest @ ..] => usize::from(*len) == uid.len() && rest.starts_with(uid.as_bytes()),
        [0x93, head, rest @ ..] if head & 0xe0 == 0xa0 => {
            usize::from(head & 0x1f) == uid.len() && rest.starts_with(uid.as_bytes())
        }
        _ => false,
    }
}

/// The stream id at the end of a stored broadcast's pub/sub message (see [`RECORD`]), read without
/// decoding it: classic `0x94 ... 0xd9 <len> <id>` (the id as a 4th array element); sharded JSON
/// `...,"offset":"<id>"}`; sharded msgpack `... 0xa6 "offset" 0xd9 <len> <id>`. `None` for anything
/// else (Node peers' and unstored broadcasts, requests).
pub(crate) fn recorded_offset(payload: &[u8], sharded: bool) -> Option<StreamId> {
    let is_id_byte = |b: &u8| b.is_ascii_digit() || *b == b'-';
    if sharded && payload.last() == Some(&b'}') {
        let body = payload.strip_suffix(b"\"}")?;
        let start = body.iter().rposition(|b| !is_id_byte(b))? + 1;
        let (head, id) = body.split_at(start);
        if !head.ends_with(b",\"offset\":\"") {
            return None;
        }
        return StreamId::parse(std::str::from_utf8(id).ok()?);
    }
    if !sharded && payload.first() != Some(&0x94) {
        return None;
    }
    let start = payload.iter().rposition(|b| !is_id_byte(b))? + 1;
    let (head, id) = payload.split_at(start);
    let [rest @ .., 0xd9, len] = head else { return None };
    if usize::from(*len) != id.len() || (sharded && !rest.ends_with(b"\xa6offset")) {
        return None;
    }
    StreamId::parse(std::str::from_utf8(id).ok()?)
}

/// Field `n` of a stream entry: its record's number on the node that stored it (read in place).
fn entry_number(entry: &redis::Value) -> Option<u64> {
    let redis::Value::Array(parts) = entry else { return None };
    let redis::Value::Array(fields) = parts.get(1)? else { return None };
    fn bytes(v: &redis::Value) -> Option<&[u8]> {
        match v {
            redis::Value::BulkString(b) => Some(b.as_slice()),
            redis::Value::SimpleString(s) => Some(s.as_bytes()),
            _ => None,
        }
    }
    let value = fields.chunks(2).find(|kv| kv.len() == 2 && bytes(&kv[0]) == Some(b"n"))?;
    std::str::from_utf8(bytes(&value[1])?).ok()?.parse().ok()
}

fn stream_entry_id(entry: &redis::Value) -> Option<StreamId> {
    let redis::Value::Array(parts) = entry else { return None };
    StreamId::parse(&text(parts.first()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_ids_parse_and_order_as_redis_orders_them() {
        let a = StreamId::parse("1700000000000-9").unwrap();
        let b = StreamId::parse("1700000000000-10").unwrap();
        let c = StreamId::parse("1700000000001-0").unwrap();
        assert!(a < b && b < c);
        for bad in ["", "-", "1-", "-1", "a-1", "1-b", "1", "0x1-2", "1-2-3", " 1-2", "99999999999999999999999-1"] {
            assert_eq!(StreamId::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_offset_of_a_stored_broadcast_is_read_from_its_end() {
        let id = StreamId::parse("1700000000000-12").unwrap();
        let mut classic = vec![0x94, 0xa2, b'u', b'1'];
        classic.extend_from_slice(&[0xd9, 16]);
        classic.extend_from_slice(b"1700000000000-12");
        assert_eq!(recorded_offset(&classic, false), Some(id));
        // A Node peer's broadcast (three elements), a wrong length, the sharded reading: none.
        classic[0] = 0x93;
        assert_eq!(recorded_offset(&classic, false), None);
        classic[0] = 0x94;
        let at = classic.len() - 17;
        classic[at] = 15;
        assert_eq!(recorded_offset(&classic, false), None);
        let json = br#"{"uid":"u","nsp":"/","type":3,"data":{},"offset":"1700000000000-12"}"#;
        assert_eq!(recorded_offset(json, true), Some(id));
        assert_eq!(recorded_offset(br#"{"uid":"u","type":3,"data":{"x":"1-2"}}"#, true), None);
        let mut packed = b"\x84\xa3uid\xa1u\xa6offset".to_vec();
        packed.extend_from_slice(&[0xd9, 16]);
        packed.extend_from_slice(b"1700000000000-12");
        assert_eq!(recorded_offset(&packed, true), Some(id));
        assert_eq!(recorded_offset(&packed, false), None);
    }

    #[test]
    fn a_pid_names_its_node() {
        assert_eq!(Recovery::owner("abc.NODE01"), Some("NODE01"));
        assert_eq!(Recovery::owner("abc"), None);
        assert_eq!(Recovery::owner("abc."), None);
    }

    #[test]
    fn sessions_round_trip_through_json() {
        let session = SessionToPersist {
            sid: "s".into(),
            pid: "p.n".into(),
            rooms: vec!["a".into(), "b".into()],
            data: json!({"user": 1}),
        };
        assert_eq!(parse_session(&session_json(&session)), Some(session));
        assert_eq!(parse_session("{}"), None);
        assert_eq!(parse_session("not json"), None);
    }

    fn kept(number: u64, window_ms: u64, failed_at: Instant) -> Kept {
        let record = Record {
            stream: "s".into(),
            entry: Vec::new(),
            window_ms,
            max_len: 10,
            slot: OffsetSlot::Absent,
            number,
            sent_at: None,
            maybe_stored_since: None,
            failed_at: Some(failed_at),
            on_done: None,
        };
        Kept { record: Box::new(record), sharded: false, channel: String::new(), payload: Vec::new() }
    }

    fn numbers(kept: &[Kept]) -> Vec<u64> {
        kept.iter().map(|k| k.record.number).collect()
    }

    #[test]
    fn the_republish_queue_gives_them_back_in_record_order() {
        let now = Instant::now();
        let mut queue = RepublishQueue::default();
        for n in [5, 3, 4, 9] {
            assert!(queue.keep(kept(n, 60_000, now)).is_none());
        }
        assert_eq!(numbers(&queue.take(3)), [3, 4, 5]);
        // One failed again goes back before the later ones.
        assert!(queue.keep(kept(4, 60_000, now)).is_none());
        assert_eq!(numbers(&queue.take(10)), [4, 9]);
        assert_eq!(queue.len(), 0);
    }

    #[test]
    fn the_republish_queue_gives_up_the_oldest_beyond_its_cap() {
        let now = Instant::now();
        let mut queue = RepublishQueue::default();
        for n in 0..REPUBLISH_MAX as u64 {
            assert!(queue.keep(kept(n, 60_000, now)).is_none(), "{n} fits");
        }
        let given_up = queue.keep(kept(REPUBLISH_MAX as u64, 60_000, now)).expect("one over the cap");
        assert_eq!(REPUBLISH_FULL, format!("more than {REPUBLISH_MAX} kept"));
        assert_eq!(given_up.record.number, 0, "the oldest goes");
        assert_eq!(queue.len(), REPUBLISH_MAX);
        assert_eq!(numbers(&queue.take(1)), [1]);
    }

    #[test]
    fn the_republish_queue_gives_up_those_too_old_or_too_far_behind() {
        let now = Instant::now();
        let mut queue = RepublishQueue::default();
        // Windows of one second: failed at `now` (too old 1.5 s later) and 1 s later (not yet).
        queue.keep(kept(1, 1000, now));
        queue.keep(kept(2, 1000, now + Duration::from_secs(1)));
        assert_eq!(queue.expire(now + Duration::from_millis(1500), 3), GivenUp { too_old: 1, too_far_behind: 0 });
        assert_eq!(queue.len(), 1);
        // Record 2 is REPUBLISH_MAX_BEHIND behind the next number: its claim slot may be reused.
        queue.keep(kept(3, 60_000, now));
        assert_eq!(queue.expire(now, 2 + REPUBLISH_MAX_BEHIND), GivenUp { too_old: 0, too_far_behind: 1 });
        assert_eq!(numbers(&queue.take(10)), [3]);
    }

    #[test]
    fn a_failed_record_reaches_its_waiter_with_its_message() {
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let message = |sent: Option<Instant>| {
            let mut record = kept(7, 1000, Instant::now()).record;
            record.failed_at = None;
            record.sent_at = sent;
            let outcomes = outcomes.clone();
            record.on_done = Some(Box::new(move |outcome, kept: Option<Kept>| {
                let kept = kept.expect("the record and its message");
                let what = match outcome {
                    Outcome::Stored(_) => "stored",
                    Outcome::Unknown => "unknown",
                    Outcome::NotStored => "not stored",
                };
                outcomes.lock().push((
                    what,
                    kept.channel.clone(),
                    kept.payload.clone(),
                    kept.record.maybe_stored_since.is_some(),
                    kept.record.failed_at.is_some(),
                ));
            }));
            Outgoing { sharded: true, channel: "ch".into(), payload: b"p".to_vec(), record: Some(record) }
        };
        drop(message(None));
        drop(message(Some(Instant::now())));
        let outcomes = outcomes.lock();
        assert_eq!(
            *outcomes,
            [
                ("not stored", "ch".to_string(), b"p".to_vec(), false, true),
                ("unknown", "ch".to_string(), b"p".to_vec(), true, true)
            ]
        );
    }

    #[test]
    fn the_scripts_have_their_sha1() {
        // EVALSHA names a script by the SHA-1 of its text, as Redis computes it.
        assert_eq!(Script::new("return 1").sha, "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
