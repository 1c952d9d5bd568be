//! Presence: which users are in which room, across the cluster.
//!
//! # Layout
//! - [`PresenceStore`]: the backend interface (after centrifuge's `PresenceManager`): per room, each
//!   user present with one expiry per node that holds them. [`MemoryPresence`] serves one process
//!   (and, sharing one map between handles, the logic tests of several nodes); [`RedisPresence`]
//!   serves a cluster: one Redis hash per room, `user -> {node: expiry_ms}`, changed only by Lua
//!   scripts so that each change is atomic and uses Redis's clock.
//! - [`Presence`]: this node's tracker. An [`Observer`] counts each local socket's rooms per
//!   (namespace, room, user); only a user's first socket in a room and their last one leaving touch
//!   the store. One worker task applies those changes in order, announces `user-connected` and
//!   `user-disconnected` to the room through the adapter (so every node's clients get them), and
//!   every `ttl / 3` refreshes this node's entries and sweeps expired ones.
//!
//! # Semantics (docs/EVENTS.md)
//! - `user-connected` is announced by the node whose store change made the user present in the room
//!   (no node had them there before); `user-disconnected` by the node whose change made them absent:
//!   their last socket left or disconnected there, or its sweep removed the last entry, which had
//!   expired because the node holding it died. The store change is atomic, so two nodes never both
//!   announce the same change. The announcement is a broadcast sent after the change: if that node
//!   dies between the two, or Redis is unreachable, it is lost. Announcements are at most once.
//! - A dead node's entries expire `ttl` after its last refresh, and a surviving node that has
//!   members in the room sweeps every `ttl / 3`: its users are announced gone within `4/3 ttl`.
//!   A room where no live node has members is not swept (nobody would hear it); `presence` never
//!   lists expired entries, and the whole Redis key expires `3 ttl` after the last write.
//! - Rooms named `user:<name>` (each user's own room) are tracked but never announced: the store
//!   answers whether a user has a socket anywhere (`signal`'s `offline`).

use futures_util::future::BoxFuture;
use parking_lot::Mutex;
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use switchyard_redis::{LinkConn, LinkError, LinkTimeouts, RedisLink};
use switchyard_socketio::{Observer, Room, Socket, SocketIo};
use tokio::sync::{mpsc, oneshot};

/// Why the presence store could not answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PresenceError {
    #[error("presence store unavailable: {0}")]
    Unavailable(String),
    #[error("presence store error: {0}")]
    Backend(String),
}

impl From<LinkError> for PresenceError {
    fn from(e: LinkError) -> PresenceError {
        match e {
            LinkError::Unavailable(e) => PresenceError::Unavailable(e),
            LinkError::Backend(e) => PresenceError::Backend(e),
        }
    }
}

/// What a store call returns.
pub type PresenceFuture<T> = BoxFuture<'static, Result<T, PresenceError>>;

/// One room's users held by this node, for [`PresenceStore::refresh`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRoom {
    pub nsp: Arc<str>,
    pub room: Room,
    pub users: Vec<Arc<str>>,
}

/// A user gone from a room because the entries that kept them there expired.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expired {
    pub nsp: Arc<str>,
    pub room: Room,
    pub user: String,
}

/// The presence backend. Each handle speaks for one node (its id is part of every entry it writes).
pub trait PresenceStore: Send + Sync + 'static {
    /// This node has `user` in `room`. `Ok(true)` when no node had them there before.
    fn add(&self, nsp: &str, room: &str, user: &str) -> PresenceFuture<bool>;

    /// This node no longer has `user` in `room`. `Ok(true)` when no node has them there now.
    fn remove(&self, nsp: &str, room: &str, user: &str) -> PresenceFuture<bool>;

    /// The users in `room` on any live node, sorted, each once.
    fn users(&self, nsp: &str, room: &str) -> PresenceFuture<Vec<String>>;

    /// Extends this node's entries for `held` by the TTL (creating missing ones), then removes the
    /// expired entries of other nodes in those rooms. Returns the users it found present only through
    /// expired entries (gone with a dead node): the caller announces them.
    fn refresh(&self, held: Vec<HeldRoom>) -> PresenceFuture<Vec<Expired>>;
}

// ---- memory -----------------------------------------------------------------------------------

type RoomKey = (Arc<str>, Room);
/// Per room: user -> node -> expiry.
type MemoryMap = HashMap<RoomKey, HashMap<String, HashMap<Arc<str>, tokio::time::Instant>>>;

/// The in-memory store: one process. Handles made with [`MemoryPresence::node`] share the map under
/// another node id, which is how the tests play several nodes (with a short TTL).
#[derive(Clone)]
pub struct MemoryPresence {
    node: Arc<str>,
    ttl: Duration,
    map: Arc<Mutex<MemoryMap>>,
}

impl MemoryPresence {
    pub fn new(ttl: Duration) -> Self {
        MemoryPresence { node: "local".into(), ttl, map: Arc::default() }
    }

    /// Another node's handle on the same map.
    pub fn node(&self, id: &str) -> Self {
        MemoryPresence { node: id.into(), ttl: self.ttl, map: self.map.clone() }
    }

    fn key(nsp: &str, room: &str) -> RoomKey {
        (nsp.into(), room.into())
    }
}

/// Drops expired entries of one user; returns whether any live entry remains.
fn prune(nodes: &mut HashMap<Arc<str>, tokio::time::Instant>, now: tokio::time::Instant) -> bool {
    nodes.retain(|_, expiry| *expiry > now);
    !nodes.is_empty()
}

impl PresenceStore for MemoryPresence {
    fn add(&self, nsp: &str, room: &str, user: &str) -> PresenceFuture<bool> {
        let now = tokio::time::Instant::now();
        let mut map = self.map.lock();
        let nodes = map.entry(Self::key(nsp, room)).or_default().entry(user.to_string()).or_default();
        let was_present = prune(nodes, now);
        nodes.insert(self.node.clone(), now + self.ttl);
        Box::pin(std::future::ready(Ok(!was_present)))
    }

    fn remove(&self, nsp: &str, room: &str, user: &str) -> PresenceFuture<bool> {
        let now = tokio::time::Instant::now();
        let mut map = self.map.lock();
        let key = Self::key(nsp, room);
        let mut gone = true;
        if let Some(users) = map.get_mut(&key) {
            if let Some(nodes) = users.get_mut(user) {
                nodes.remove(&self.node);
                gone = !prune(nodes, now);
                if gone {
                    users.remove(user);
                }
            }
            if users.is_empty() {
                map.remove(&key);
            }
        }
        Box::pin(std::future::ready(Ok(gone)))
    }

    fn users(&self, nsp: &str, room: &str) -> PresenceFuture<Vec<String>> {
        let now = tokio::time::Instant::now();
        let map = self.map.lock();
        let mut users: Vec<String> = map
            .get(&Self::key(nsp, room))
            .map(|users| {
                users.iter().filter(|(_, nodes)| nodes.values().any(|e| *e > now)).map(|(u, _)| u.clone()).collect()
            })
            .unwrap_or_default();
        users.sort();
        Box::pin(std::future::ready(Ok(users)))
    }

    fn refresh(&self, held: Vec<HeldRoom>) -> PresenceFuture<Vec<Expired>> {
        let now = tokio::time::Instant::now();
        let mut map = self.map.lock();
        let mut expired = Vec::new();
        for HeldRoom { nsp, room, users: mine } in held {
            let key = (nsp.clone(), room.clone());
            let users = map.entry(key.clone()).or_default();
            for user in &mine {
                users.entry(user.to_string()).or_default().insert(self.node.clone(), now + self.ttl);
            }
            users.retain(|user, nodes| {
                let live = prune(nodes, now);
                if !live {
                    expired.push(Expired { nsp: nsp.clone(), room: room.clone(), user: user.clone() });
                }
                live
            });
            if users.is_empty() {
                map.remove(&key);
            }
        }
        expired.sort();
        Box::pin(std::future::ready(Ok(expired)))
    }
}

// ---- Redis ------------------------------------------------------------------------------------

/// The Redis store: per room one hash `<prefix>:presence:<nsp>:<room>`, field = user, value = a JSON
/// object `{node id: expiry in ms}` (Redis's clock, `TIME`). Every change is one Lua script on one
/// key, so it is atomic and works on a Redis Cluster too.
pub struct RedisPresence {
    node: Arc<str>,
    key_prefix: String,
    ttl_ms: u64,
    /// Fails calls at once for [`RETRY_AFTER`] after a failed connect rather than letting each wait
    /// for a connect timeout while Redis is away.
    link: RedisLink,
}

const LUA_NOW: &str =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

/// KEYS[1] room; ARGV node, user, ttl. Returns 1 when no live entry of the user was there before.
const LUA_ADD: &str = "
local raw = redis.call('HGET', KEYS[1], ARGV[2])
local nodes = {}
local present = false
if raw then
  nodes = cjson.decode(raw)
  for n, e in pairs(nodes) do
    if e <= now then nodes[n] = nil else present = true end
  end
end
nodes[ARGV[1]] = now + tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(nodes))
redis.call('PEXPIRE', KEYS[1], 3 * tonumber(ARGV[3]))
if present then return 0 else return 1 end";

/// KEYS[1] room; ARGV node, user. Returns 1 when no live entry of the user is left.
const LUA_REMOVE: &str = "
local raw = redis.call('HGET', KEYS[1], ARGV[2])
if not raw then return 1 end
local nodes = cjson.decode(raw)
nodes[ARGV[1]] = nil
local present = false
for n, e in pairs(nodes) do
  if e <= now then nodes[n] = nil else present = true end
end
if present then
  redis.call('HSET', KEYS[1], ARGV[2], cjson.encode(nodes))
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[2])
return 1";

/// KEYS[1] room. Returns the users with a live entry.
const LUA_USERS: &str = "
local all = redis.call('HGETALL', KEYS[1])
local out = {}
for i = 1, #all, 2 do
  local nodes = cjson.decode(all[i + 1])
  for n, e in pairs(nodes) do
    if e > now then table.insert(out, all[i]) break end
  end
end
return out";

/// KEYS the rooms; ARGV node, ttl, then per room the number of users and the users. Refreshes the
/// node's users in each room, then sweeps it; returns per room the users whose last entries expired.
/// An entry that is not a JSON object (written by something else) counts as holding no live node.
const LUA_REFRESH: &str = "
local ttl = tonumber(ARGV[2])
local function decode(raw)
  local ok, nodes = pcall(cjson.decode, raw)
  if ok and type(nodes) == 'table' then return nodes end
  return {}
end
local out = {}
local a = 3
for k = 1, #KEYS do
  local key = KEYS[k]
  local n = tonumber(ARGV[a])
  for i = a + 1, a + n do
    local raw = redis.call('HGET', key, ARGV[i])
    local nodes = {}
    if raw then nodes = decode(raw) end
    nodes[ARGV[1]] = now + ttl
    redis.call('HSET', key, ARGV[i], cjson.encode(nodes))
  end
  a = a + n + 1
  local gone = {}
  local all = redis.call('HGETALL', key)
  for i = 1, #all, 2 do
    local nodes = decode(all[i + 1])
    local present, changed = false, false
    for node, e in pairs(nodes) do
      if type(e) ~= 'number' or e <= now then nodes[node] = nil changed = true else present = true end
    end
    if not present then
      redis.call('HDEL', key, all[i])
      table.insert(gone, all[i])
    elseif changed then
      redis.call('HSET', key, all[i], cjson.encode(nodes))
    end
  end
  if #all > 0 then redis.call('PEXPIRE', key, 3 * ttl) end
  out[k] = gone
end
return out";

/// Rooms one refresh script handles: bounds how long one script holds Redis (scripts run alone).
/// Every script of a refresh goes in one pipeline, so a refresh is one round trip on a single Redis.
pub const REFRESH_ROOMS_PER_SCRIPT: usize = 256;

/// One room's refresh: its namespace, name and the users whose entries expired.
type RoomRefresh = (Arc<str>, Room, Result<Vec<String>, PresenceError>);

/// After a failed connect, how long calls fail at once before the next attempt.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Rooms refreshed at once on a Redis Cluster (one script per room: a script's keys must share a slot).
const REFRESH_IN_FLIGHT: usize = 32;

impl RedisPresence {
    /// A store on `target` for node `node` (the cluster node's uid: unique per process). Connects on
    /// first use and again after a connection error.
    pub fn new(target: switchyard_redis::RedisTarget, key_prefix: &str, node: &str, ttl: Duration) -> Arc<Self> {
        Arc::new(RedisPresence {
            node: node.into(),
            key_prefix: key_prefix.to_string(),
            ttl_ms: ttl.as_millis().max(1) as u64,
            link: RedisLink::new(target, LinkTimeouts { retry_after: RETRY_AFTER, ..LinkTimeouts::default() }),
        })
    }

    /// The hash of one room.
    pub fn key(&self, nsp: &str, room: &str) -> String {
        format!("{}:presence:{}:{}", self.key_prefix, nsp, room)
    }

    /// Runs one script on one key. A connection error drops the connection (the next call reconnects).
    async fn eval(&self, script: &'static str, key: String, args: Vec<String>) -> Result<redis::Value, PresenceError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{LUA_NOW}{script}")).arg(1).arg(key);
        for arg in args {
            cmd.arg(arg);
        }
        Ok(self.link.query(&cmd).await?)
    }

    /// The error of a failed call (a connection error also drops the connection).
    fn error(&self, e: redis::RedisError) -> PresenceError {
        self.link.failed(&e).into()
    }

    /// The refresh script over `rooms` (namespace, room, users).
    fn refresh_command(&self, rooms: &[HeldRoom]) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{LUA_NOW}{LUA_REFRESH}")).arg(rooms.len());
        for room in rooms {
            cmd.arg(self.key(&room.nsp, &room.room));
        }
        cmd.arg(&*self.node).arg(self.ttl_ms);
        for room in rooms {
            cmd.arg(room.users.len());
            for user in &room.users {
                cmd.arg(&**user);
            }
        }
        cmd
    }

    /// Refreshes `held`: on a single Redis one pipeline of scripts of up to
    /// [`REFRESH_ROOMS_PER_SCRIPT`] rooms (one round trip); on a cluster one script per room, up to
    /// [`REFRESH_IN_FLIGHT`] at once. Gives each room's result.
    async fn refresh_rooms(&self, held: Vec<HeldRoom>) -> Result<Vec<RoomRefresh>, PresenceError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        match self.link.connection().await? {
            LinkConn::Single(mut c) => {
                let chunks: Vec<&[HeldRoom]> = held.chunks(REFRESH_ROOMS_PER_SCRIPT).collect();
                let mut pipe = redis::pipe();
                for chunk in &chunks {
                    pipe.add_command(self.refresh_command(chunk));
                }
                // One script failing must not keep the others' results from being read.
                let replies: Vec<redis::RedisResult<redis::Value>> =
                    pipe.ignore_errors().query_async(&mut c).await.map_err(|e| self.error(e))?;
                let mut out = Vec::with_capacity(held.len());
                for (chunk, reply) in chunks.iter().zip(replies) {
                    match reply.map_err(|e| self.error(e)).and_then(|v| per_room(v, chunk.len())) {
                        Ok(lists) => out.extend(chunk.iter().zip(lists).map(|(r, gone)| room_result(r, Ok(gone)))),
                        Err(e) => out.extend(chunk.iter().map(|r| room_result(r, Err(e.clone())))),
                    }
                }
                Ok(out)
            }
            LinkConn::Cluster(c) => {
                use futures_util::stream::{self, StreamExt};
                Ok(stream::iter(held)
                    .map(|room| {
                        let mut c = c.clone();
                        let cmd = self.refresh_command(std::slice::from_ref(&room));
                        async move {
                            let reply = cmd.query_async::<redis::Value>(&mut c).await.map_err(|e| self.error(e));
                            let gone = reply.and_then(|v| per_room(v, 1)).map(|mut lists| lists.remove(0));
                            (room.nsp, room.room, gone)
                        }
                    })
                    .buffer_unordered(REFRESH_IN_FLIGHT)
                    .collect()
                    .await)
            }
        }
    }

    async fn eval_flag(&self, script: &'static str, key: String, args: Vec<String>) -> Result<bool, PresenceError> {
        match self.eval(script, key, args).await? {
            redis::Value::Int(n) => Ok(n == 1),
            other => Err(PresenceError::Backend(format!("unexpected reply {other:?}"))),
        }
    }

    async fn eval_list(
        &self,
        script: &'static str,
        key: String,
        args: Vec<String>,
    ) -> Result<Vec<String>, PresenceError> {
        string_list(self.eval(script, key, args).await?)
    }
}

impl PresenceStore for Arc<RedisPresence> {
    fn add(&self, nsp: &str, room: &str, user: &str) -> PresenceFuture<bool> {
        let this = self.clone();
        let key = self.key(nsp, room);
        let args = vec![self.node.to_string(), user.to_string(), self.ttl_ms.to_string()];
        Box::pin(async move { this.eval_flag(LUA_ADD, key, args).await })
    }

    fn remove(&self, nsp: &str, room: &str, user: &str) -> PresenceFuture<bool> {
        let this = self.clone();
        let key = self.key(nsp, room);
        let args = vec![self.node.to_string(), user.to_string()];
        Box::pin(async move { this.eval_flag(LUA_REMOVE, key, args).await })
    }

    fn users(&self, nsp: &str, room: &str) -> PresenceFuture<Vec<String>> {
        let this = self.clone();
        let key = self.key(nsp, room);
        Box::pin(async move {
            let mut users = this.eval_list(LUA_USERS, key, Vec::new()).await?;
            users.sort();
            users.dedup();
            Ok(users)
        })
    }

    fn refresh(&self, held: Vec<HeldRoom>) -> PresenceFuture<Vec<Expired>> {
        let this = self.clone();
        Box::pin(async move {
            let results = this.refresh_rooms(held).await?;
            let mut expired = Vec::new();
            let mut first_error = None;
            for (nsp, room, gone) in results {
                // One room failing must not keep the others from being refreshed and reported.
                match gone {
                    Ok(gone) => expired.extend(gone.into_iter().map(|user| Expired {
                        nsp: nsp.clone(),
                        room: room.clone(),
                        user,
                    })),
                    Err(e) => {
                        first_error.get_or_insert(e);
                    }
                }
            }
            expired.sort();
            match first_error {
                Some(e) if expired.is_empty() => Err(e),
                Some(e) => {
                    tracing::warn!(error = %e, "presence: refreshing some rooms failed");
                    Ok(expired)
                }
                None => Ok(expired),
            }
        })
    }
}

fn room_result(room: &HeldRoom, gone: Result<Vec<String>, PresenceError>) -> RoomRefresh {
    (room.nsp.clone(), room.room.clone(), gone)
}

/// The refresh script's reply: one list of users per room, `rooms` of them.
fn per_room(reply: redis::Value, rooms: usize) -> Result<Vec<Vec<String>>, PresenceError> {
    let lists = match reply {
        redis::Value::Array(lists) if lists.len() == rooms => lists,
        // Lua turns an empty table into an empty array: no rooms, or none with users.
        redis::Value::Array(lists) if lists.is_empty() || rooms == 0 => vec![redis::Value::Array(Vec::new()); rooms],
        other => return Err(PresenceError::Backend(format!("unexpected refresh reply {other:?}"))),
    };
    lists.into_iter().map(string_list).collect()
}

/// A reply that is a list of strings (users).
fn string_list(reply: redis::Value) -> Result<Vec<String>, PresenceError> {
    match reply {
        redis::Value::Array(items) | redis::Value::Set(items) => items
            .into_iter()
            .map(|item| match item {
                redis::Value::BulkString(bytes) => {
                    String::from_utf8(bytes).map_err(|_| PresenceError::Backend("user is not UTF-8".into()))
                }
                redis::Value::SimpleString(s) => Ok(s),
                other => Err(PresenceError::Backend(format!("unexpected item {other:?}"))),
            })
            .collect(),
        redis::Value::Nil => Ok(Vec::new()),
        other => Err(PresenceError::Backend(format!("unexpected reply {other:?}"))),
    }
}

// ---- the tracker ------------------------------------------------------------------------------

/// The event announcing a user's first socket in a room (`{"room", "user"}`).
pub const USER_CONNECTED: &str = "user-connected";
/// The event announcing that a user's last socket left a room (`{"room", "user"}`).
pub const USER_DISCONNECTED: &str = "user-disconnected";

/// (namespace, room, user).
type Member = (Arc<str>, Room, Arc<str>);

enum Op {
    Add(Member),
    Remove(Member),
    /// Answered once every change queued before it was applied.
    Settled(oneshot::Sender<()>),
}

/// Counters of the tracker's work, for tests and logs.
#[derive(Debug, Default)]
pub struct PresenceStats {
    /// Store calls that failed (each logged at warn).
    pub store_errors: AtomicU64,
    /// `user-connected` and `user-disconnected` broadcasts sent by this node.
    pub announced: AtomicU64,
    /// Users this node announced gone after their entries expired (a dead node's).
    pub expired: AtomicU64,
    /// Refreshes of this node's entries that reached the store (each one round trip to Redis per
    /// [`REFRESH_ROOMS_PER_SCRIPT`] rooms, pipelined).
    pub refreshes: AtomicU64,
}

/// This node's presence tracker; see the module docs. Register it as an observer
/// ([`Presence::start`] does).
pub struct Presence {
    store: Arc<dyn PresenceStore>,
    /// Local sockets per (namespace, room, user).
    counts: Mutex<HashMap<Member, u32>>,
    ops: mpsc::UnboundedSender<Op>,
    /// The worker's end, until the worker is spawned (on first use inside a Tokio runtime).
    pending: Mutex<Option<(mpsc::UnboundedReceiver<Op>, SocketIo)>>,
    started: AtomicBool,
    refresh_every: Duration,
    stats: Arc<PresenceStats>,
}

impl Presence {
    /// Tracks `io`'s rooms in `store`, refreshing this node's entries every `ttl / 3`.
    pub fn start(io: &SocketIo, store: Arc<dyn PresenceStore>, ttl: Duration) -> Arc<Presence> {
        let (ops, rx) = mpsc::unbounded_channel();
        let presence = Arc::new(Presence {
            store,
            counts: Mutex::default(),
            ops,
            pending: Mutex::new(Some((rx, io.clone()))),
            started: AtomicBool::new(false),
            refresh_every: (ttl / 3).max(Duration::from_millis(100)),
            stats: Arc::default(),
        });
        io.observe(presence.clone());
        presence.ensure_worker();
        presence
    }

    pub fn store(&self) -> &Arc<dyn PresenceStore> {
        &self.store
    }

    pub fn stats(&self) -> &Arc<PresenceStats> {
        &self.stats
    }

    /// Resolves once every change queued so far reached the store (and was announced).
    pub async fn settled(self: &Arc<Self>) {
        self.ensure_worker();
        let (tx, rx) = oneshot::channel();
        if self.ops.send(Op::Settled(tx)).is_ok() {
            let _ = rx.await;
        }
    }

    /// The users in `room` across the cluster.
    pub async fn users(&self, nsp: &str, room: &str) -> Result<Vec<String>, PresenceError> {
        self.store.users(nsp, room).await
    }

    /// (namespace, room, user) entries this node holds (each one live entry in the store).
    pub fn local_entries(&self) -> usize {
        self.counts.lock().len()
    }

    /// The number of local sockets `user` has in `room`.
    pub fn local_count(&self, nsp: &str, room: &str, user: &str) -> u32 {
        let key: Member = (nsp.into(), room.into(), user.into());
        self.counts.lock().get(&key).copied().unwrap_or(0)
    }

    /// Spawns the worker once a Tokio runtime is there (building the app needs none).
    fn ensure_worker(self: &Arc<Self>) {
        if self.started.load(Ordering::Acquire) || tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let Some((rx, io)) = self.pending.lock().take() else { return };
        self.started.store(true, Ordering::Release);
        let worker =
            Worker { store: self.store.clone(), io, stats: self.stats.clone(), presence: Arc::downgrade(self) };
        tokio::spawn(worker.run(rx, self.refresh_every));
    }

    fn enqueue(&self, op: Op) {
        // The receiver lives as long as the worker; after shutdown there is nobody to tell.
        let _ = self.ops.send(op);
    }

    /// The (namespace, room, user) of a join or leave (a socket's own id room is never reported).
    fn member(socket: &Socket, room: &Room) -> Member {
        (socket.ns().name().into(), room.clone(), crate::access::user_of(socket))
    }

    /// This node's (namespace, room) -> users, for the refresh.
    fn held(&self) -> Vec<HeldRoom> {
        let mut rooms: HashMap<(Arc<str>, Room), BTreeSet<Arc<str>>> = HashMap::new();
        for (nsp, room, user) in self.counts.lock().keys() {
            rooms.entry((nsp.clone(), room.clone())).or_default().insert(user.clone());
        }
        rooms
            .into_iter()
            .map(|((nsp, room), users)| HeldRoom { nsp, room, users: users.into_iter().collect() })
            .collect()
    }
}

impl Observer for Presence {
    fn on_join(&self, socket: &Socket, room: &Room) {
        let member = Self::member(socket, room);
        let mut counts = self.counts.lock();
        let count = counts.entry(member.clone()).or_insert(0);
        *count += 1;
        if *count == 1 {
            // Queued under the lock: the worker sees first-join and last-leave in their true order.
            self.enqueue(Op::Add(member));
        }
    }

    fn on_leave(&self, socket: &Socket, room: &Room) {
        let member = Self::member(socket, room);
        let mut counts = self.counts.lock();
        let Some(count) = counts.get_mut(&member) else { return };
        *count -= 1;
        if *count == 0 {
            counts.remove(&member);
            self.enqueue(Op::Remove(member));
        }
    }
}

/// Whether changes in `room` are announced (not a user's own room).
pub fn announced_room(room: &str) -> bool {
    !room.starts_with(crate::events::USER_ROOM_PREFIX)
}

struct Worker {
    store: Arc<dyn PresenceStore>,
    io: SocketIo,
    stats: Arc<PresenceStats>,
    presence: std::sync::Weak<Presence>,
}

impl Worker {
    async fn run(self, mut rx: mpsc::UnboundedReceiver<Op>, refresh_every: Duration) {
        let mut tick = tokio::time::interval(refresh_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                op = rx.recv() => match op {
                    Some(op) => self.apply(op).await,
                    None => return,
                },
                _ = tick.tick() => {
                    let Some(presence) = self.presence.upgrade() else { return };
                    let held = presence.held();
                    drop(presence);
                    self.refresh(held).await;
                }
            }
        }
    }

    async fn apply(&self, op: Op) {
        match op {
            Op::Add((nsp, room, user)) => match self.store.add(&nsp, &room, &user).await {
                Ok(true) => self.announce(&nsp, &room, &user, USER_CONNECTED),
                Ok(false) => {}
                Err(e) => self.failed("add", &e),
            },
            Op::Remove((nsp, room, user)) => match self.store.remove(&nsp, &room, &user).await {
                Ok(true) => self.announce(&nsp, &room, &user, USER_DISCONNECTED),
                Ok(false) => {}
                Err(e) => self.failed("remove", &e),
            },
            Op::Settled(tx) => {
                let _ = tx.send(());
            }
        }
    }

    async fn refresh(&self, held: Vec<HeldRoom>) {
        if held.is_empty() {
            return;
        }
        match self.store.refresh(held).await {
            Ok(expired) => {
                self.stats.refreshes.fetch_add(1, Ordering::Relaxed);
                for Expired { nsp, room, user } in expired {
                    self.stats.expired.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(nsp = %nsp, room = %room, user = %user, "presence: entries expired (node gone)");
                    self.announce(&nsp, &room, &user, USER_DISCONNECTED);
                }
            }
            Err(e) => self.failed("refresh", &e),
        }
    }

    fn failed(&self, what: &str, error: &PresenceError) {
        self.stats.store_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%error, operation = what, "presence store call failed; entries are rewritten at the next refresh");
    }

    fn announce(&self, nsp: &str, room: &str, user: &str, event: &str) {
        if !announced_room(room) {
            return;
        }
        let Some(ns) = self.io.namespaces().into_iter().find(|ns| ns.name() == nsp) else { return };
        self.stats.announced.fetch_add(1, Ordering::Relaxed);
        ns.to(room).emit(event, serde_json::json!({"room": room, "user": user}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(room: &str, users: &[&str]) -> HeldRoom {
        HeldRoom { nsp: "/".into(), room: room.into(), users: users.iter().map(|u| Arc::from(*u)).collect() }
    }

    #[tokio::test]
    async fn first_add_and_last_remove_across_nodes() {
        let a = MemoryPresence::new(Duration::from_secs(3));
        let b = a.node("b");
        assert!(a.add("/", "r", "alice").await.unwrap(), "first anywhere");
        assert!(!b.add("/", "r", "alice").await.unwrap(), "already present through node a");
        assert!(!a.add("/", "r", "alice").await.unwrap(), "adding twice is not a new arrival");
        assert!(a.add("/", "r", "bob").await.unwrap());
        assert!(a.add("/", "other", "alice").await.unwrap(), "rooms are separate");
        assert!(a.add("/nsp", "r", "alice").await.unwrap(), "namespaces are separate");
        assert_eq!(b.users("/", "r").await.unwrap(), vec!["alice", "bob"]);
        assert!(!a.remove("/", "r", "alice").await.unwrap(), "still present through node b");
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["alice", "bob"]);
        assert!(b.remove("/", "r", "alice").await.unwrap(), "gone everywhere");
        assert!(b.remove("/", "r", "alice").await.unwrap(), "removing an absent user: absent");
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["bob"]);
        assert!(a.users("/", "nowhere").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_dead_nodes_entries_expire_and_one_sweeper_reports_them() {
        // Real time, short TTL: entries live 300 ms; the live nodes refresh every 100 ms.
        let ttl = Duration::from_millis(300);
        let a = MemoryPresence::new(ttl);
        let b = a.node("b");
        let c = a.node("c");
        a.add("/", "r", "alice").await.unwrap();
        b.add("/", "r", "bob").await.unwrap();
        b.add("/", "r", "alice").await.unwrap();
        c.add("/", "r", "carol").await.unwrap();
        // b dies: it refreshes no more. a and c keep refreshing what they hold.
        for _ in 0..2 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert!(a.refresh(vec![held("r", &["alice"])]).await.unwrap().is_empty());
            assert!(c.refresh(vec![held("r", &["carol"])]).await.unwrap().is_empty());
        }
        // Just past the TTL, bob is no longer listed even before any sweep.
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["alice", "carol"]);
        let swept = a.refresh(vec![held("r", &["alice"])]).await.unwrap();
        assert_eq!(swept, vec![Expired { nsp: "/".into(), room: "r".into(), user: "bob".into() }]);
        // alice stays (a holds her), and the second sweeper finds nothing left to report.
        assert!(c.refresh(vec![held("r", &["carol"])]).await.unwrap().is_empty());
        assert_eq!(c.users("/", "r").await.unwrap(), vec!["alice", "carol"]);
        // bob comes back through a live node: a new arrival.
        assert!(c.add("/", "r", "bob").await.unwrap());
    }

    #[tokio::test]
    async fn refresh_recreates_entries_a_failed_add_missed() {
        let a = MemoryPresence::new(Duration::from_secs(3));
        assert!(a.refresh(vec![held("r", &["alice"])]).await.unwrap().is_empty());
        assert_eq!(a.users("/", "r").await.unwrap(), vec!["alice"]);
    }
}
