//! History in Redis Streams, shared by every node of a cluster.
//!
//! Keys (the room in a hash tag, so both keys of a room are in one slot of a Redis Cluster):
//! - `<redis.key_prefix>:history:{<room>}`: a stream, one entry per message, fields `id` (the
//!   message id) and `m` (the message's JSON, as the `message` event carries it). Stream ids are
//!   Redis's, so every node's messages of a room are in one order.
//! - `<redis.key_prefix>:history:{<room>}:ids`: a hash, message id -> stream id (where `since` starts).
//!
//! Every append is one Lua script: `XADD`, the index entry, then trimming: the entries past
//! `history.max_messages` (`XTRIM MAXLEN`) and older than `history.max_age_seconds` by Redis's clock
//! (`XTRIM MINID`), with their index entries removed first; both keys expire `max_age` after the
//! last message. One writer task sends the appends in the order the connection tasks made them,
//! pipelined, so one node's messages keep their order.

use super::{HistoryError, HistoryFuture, HistoryStore, Page, Retention, MAX_BATCH, QUEUE_CAPACITY};
use crate::pipeline::AcceptedMessage;
use std::sync::Arc;
use switchyard_redis::{LinkConn, LinkError, LinkTimeouts, RedisLink, RedisTarget};
use tokio::sync::{mpsc, oneshot};

const LUA_NOW: &str =
    "local t = redis.call('TIME') local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) ";

/// KEYS stream, index; ARGV message id, JSON, max messages, max age in ms (0: none).
const LUA_APPEND: &str = "
local sid = redis.call('XADD', KEYS[1], '*', 'id', ARGV[1], 'm', ARGV[2])
redis.call('HSET', KEYS[2], ARGV[1], sid)
local max = tonumber(ARGV[3])
local over = redis.call('XLEN', KEYS[1]) - max
if over > 0 then
  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', over)) do
    redis.call('HDEL', KEYS[2], e[2][2])
  end
  redis.call('XTRIM', KEYS[1], 'MAXLEN', max)
end
local age = tonumber(ARGV[4])
if age > 0 then
  local min = (now - age) .. '-0'
  local old = redis.call('XRANGE', KEYS[1], '-', '(' .. min, 'COUNT', 1000)
  if #old > 0 then
    for _, e in ipairs(old) do redis.call('HDEL', KEYS[2], e[2][2]) end
    redis.call('XTRIM', KEYS[1], 'MINID', min)
  end
  redis.call('PEXPIRE', KEYS[1], age)
  redis.call('PEXPIRE', KEYS[2], age)
end
return sid";

/// KEYS stream, index; ARGV since (message id or ''), count, max age in ms (0: none).
const LUA_READ: &str = "
local start = '-'
if ARGV[1] ~= '' then
  local sid = redis.call('HGET', KEYS[2], ARGV[1])
  if sid then start = '(' .. sid end
end
local age = tonumber(ARGV[3])
if age > 0 then
  local min = now - age
  local from = 0
  if start ~= '-' then from = tonumber(string.match(start, '^%((%d+)')) end
  if from < min then start = min .. '-0' end
end
return redis.call('XRANGE', KEYS[1], start, '+', 'COUNT', tonumber(ARGV[2]))";

struct Append {
    stream: String,
    index: String,
    id: String,
    json: bytes::Bytes,
    done: oneshot::Sender<Result<(), HistoryError>>,
}

struct Inner {
    key_prefix: String,
    retention: Retention,
    link: RedisLink,
}

/// History in Redis Streams.
pub struct RedisHistory {
    inner: Arc<Inner>,
    queue: mpsc::Sender<Append>,
}

impl RedisHistory {
    /// A store on `target`; connects on first use and again after a connection error. Starts the
    /// writer task (needs a tokio runtime).
    pub fn start(target: RedisTarget, key_prefix: &str, retention: Retention) -> Arc<RedisHistory> {
        let inner = Arc::new(Inner {
            key_prefix: key_prefix.to_string(),
            retention,
            link: RedisLink::new(target, LinkTimeouts::default()),
        });
        let (queue, appends) = mpsc::channel(QUEUE_CAPACITY);
        tokio::spawn(writer(inner.clone(), appends));
        Arc::new(RedisHistory { inner, queue })
    }

    /// The stream of `room`.
    pub fn stream_key(&self, room: &str) -> String {
        self.inner.stream_key(room)
    }
}

impl Inner {
    fn stream_key(&self, room: &str) -> String {
        format!("{}:history:{{{}}}", self.key_prefix, room)
    }

    fn index_key(&self, room: &str) -> String {
        format!("{}:history:{{{}}}:ids", self.key_prefix, room)
    }

    fn max_age_ms(&self) -> u64 {
        self.retention.max_age.map_or(0, |a| a.as_millis() as u64)
    }

    fn append_cmd(&self, append: &Append) -> redis::Cmd {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{LUA_NOW}{LUA_APPEND}"))
            .arg(2)
            .arg(&append.stream)
            .arg(&append.index)
            .arg(&append.id)
            .arg(&append.json[..])
            .arg(self.retention.max_messages)
            .arg(self.max_age_ms());
        cmd
    }

    /// Writes one batch: pipelined on one Redis, one script after the other on a Redis Cluster (the
    /// rooms may be in different slots).
    async fn write(&self, batch: &[Append]) -> Result<(), HistoryError> {
        let mut conn = self.link.connection().await?;
        if let LinkConn::Cluster(_) = conn {
            for append in batch {
                self.link.query_on::<redis::Value>(&mut conn, &self.append_cmd(append)).await?;
            }
            return Ok(());
        }
        let mut pipe = redis::pipe();
        for append in batch {
            pipe.add_command(self.append_cmd(append)).ignore();
        }
        Ok(self.link.query_pipeline::<()>(&mut conn, &pipe).await?)
    }

    async fn read(&self, room: &str, since: Option<uuid::Uuid>, limit: usize) -> Result<Page, HistoryError> {
        let mut cmd = redis::cmd("EVAL");
        cmd.arg(format!("{LUA_NOW}{LUA_READ}"))
            .arg(2)
            .arg(self.stream_key(room))
            .arg(self.index_key(room))
            .arg(since.map(|id| id.hyphenated().to_string()).unwrap_or_default())
            .arg(limit + 1)
            .arg(self.max_age_ms());
        let reply = self.link.query::<redis::Value>(&cmd).await?;
        let entries = match reply {
            redis::Value::Array(entries) => entries,
            redis::Value::Nil => Vec::new(),
            other => return Err(HistoryError::Backend(format!("unexpected reply {other:?}"))),
        };
        let mut page = Page { more: entries.len() > limit, messages: Vec::with_capacity(entries.len().min(limit)) };
        for entry in entries.into_iter().take(limit) {
            page.messages.push(message_of(entry)?);
        }
        Ok(page)
    }
}

/// The message JSON (field `m`) of one stream entry `[stream id, [field, value, ...]]`.
fn message_of(entry: redis::Value) -> Result<serde_json::Value, HistoryError> {
    let bad = || HistoryError::Backend("a history stream entry without its message".into());
    let redis::Value::Array(parts) = entry else { return Err(bad()) };
    let Some(redis::Value::Array(fields)) = parts.into_iter().nth(1) else { return Err(bad()) };
    let mut fields = fields.into_iter();
    while let (Some(name), Some(value)) = (fields.next(), fields.next()) {
        if matches!(&name, redis::Value::BulkString(n) if n == b"m") {
            let redis::Value::BulkString(json) = value else { return Err(bad()) };
            return serde_json::from_slice(&json)
                .map_err(|e| HistoryError::Backend(format!("a stored message is not JSON: {e}")));
        }
    }
    Err(bad())
}

/// Sends the queued appends in order, a batch at a time.
async fn writer(inner: Arc<Inner>, mut appends: mpsc::Receiver<Append>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while appends.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let result = inner.write(&batch).await;
        for append in batch.drain(..) {
            let _ = append.done.send(result.clone());
        }
    }
}

impl HistoryStore for RedisHistory {
    fn append(&self, message: &AcceptedMessage) -> HistoryFuture<()> {
        let json = message.json.clone();
        let (done, stored) = oneshot::channel();
        let append = Append {
            stream: self.inner.stream_key(&message.room),
            index: self.inner.index_key(&message.room),
            id: message.id.clone(),
            json,
            done,
        };
        match self.queue.try_send(append) {
            Ok(()) => Box::pin(async move {
                stored.await.unwrap_or_else(|_| Err(HistoryError::Unavailable("the history writer stopped".into())))
            }),
            Err(mpsc::error::TrySendError::Full(_)) => Box::pin(std::future::ready(Err(HistoryError::QueueFull))),
            Err(mpsc::error::TrySendError::Closed(_)) => {
                Box::pin(std::future::ready(Err(HistoryError::Unavailable("the history writer stopped".into()))))
            }
        }
    }

    fn read(&self, room: &str, since: Option<uuid::Uuid>, limit: usize) -> HistoryFuture<Page> {
        let inner = self.inner.clone();
        let room = room.to_string();
        Box::pin(async move { inner.read(&room, since, limit).await })
    }

    fn kind(&self) -> &'static str {
        "redis"
    }
}

impl From<LinkError> for HistoryError {
    fn from(e: LinkError) -> HistoryError {
        match e {
            LinkError::Unavailable(e) => HistoryError::Unavailable(e),
            LinkError::Backend(e) => HistoryError::Backend(e),
        }
    }
}
