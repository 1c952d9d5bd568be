//! Compares embedded history stores on this machine through the same `HistoryStore` trait and the
//! same design (one writer thread, group commit, fsync on every commit, reads on a snapshot):
//! redb (the store Switchyard ships, `switchyard::history::embedded`) and SQLite (rusqlite, bundled
//! SQLite, WAL, `synchronous = FULL`), written here only for this comparison.
//!
//! ```text
//! cargo run --release -p switchyard --example history_stores -- [messages] [senders]
//! ```
//!
//! Prints, per store: appends per second with 1 sender (each waits for its ack: one commit per
//! message) and with `senders` concurrent senders (commits batch what is waiting), and range reads
//! (50 messages after a random id) per second from 4 readers. docs/HISTORY.md has the figures.

use rusqlite::{params, Connection, OptionalExtension};
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard::history::embedded::EmbeddedHistory;
use switchyard::history::{HistoryError, HistoryFuture, HistoryStore, Page, Retention, MAX_BATCH};
use switchyard::pipeline::AcceptedMessage;
use tokio::sync::oneshot;

const ROOMS: usize = 16;
const READERS: usize = 4;
const READ_LIMIT: usize = 50;

// ---- SQLite, the same design as the redb store --------------------------------------------------

struct SqliteAppend {
    room: String,
    id: Vec<u8>,
    ts: u64,
    body: Vec<u8>,
    done: oneshot::Sender<Result<(), HistoryError>>,
}

struct SqliteHistory {
    queue: SyncSender<SqliteAppend>,
    readers: Arc<Vec<parking_lot::Mutex<Connection>>>,
    next_reader: std::sync::atomic::AtomicUsize,
}

fn open_sqlite(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: the WAL is fsynced at every commit, as redb's default durability does.
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

impl SqliteHistory {
    fn open(dir: &Path, retention: Retention) -> Arc<SqliteHistory> {
        let path = dir.join("history.sqlite");
        let conn = open_sqlite(&path).expect("open sqlite");
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS messages (room TEXT, seq INTEGER, ts INTEGER, id BLOB, body BLOB,
                 PRIMARY KEY (room, seq)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS ids (room TEXT, id BLOB, seq INTEGER, PRIMARY KEY (room, id)) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS rooms (room TEXT PRIMARY KEY, next INTEGER) WITHOUT ROWID;",
        )
        .expect("schema");
        let (queue, appends) = sync_channel(16_384);
        std::thread::spawn(move || sqlite_writer(conn, appends, retention));
        let readers =
            Arc::new((0..READERS).map(|_| parking_lot::Mutex::new(open_sqlite(&path).expect("reader"))).collect());
        Arc::new(SqliteHistory { queue, readers, next_reader: Default::default() })
    }
}

fn sqlite_writer(mut conn: Connection, appends: Receiver<SqliteAppend>, retention: Retention) {
    while let Ok(first) = appends.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match appends.try_recv() {
                Ok(a) => batch.push(a),
                Err(_) => break,
            }
        }
        let result = (|| -> rusqlite::Result<()> {
            let txn = conn.transaction()?;
            for a in &batch {
                // SQLite integers are i64.
                let seq: i64 = txn
                    .query_row("SELECT next FROM rooms WHERE room = ?1", [&a.room], |r| r.get(0))
                    .optional()?
                    .unwrap_or(0);
                txn.execute(
                    "INSERT INTO messages (room, seq, ts, id, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![a.room, seq, a.ts as i64, a.id, a.body],
                )?;
                txn.execute("INSERT INTO ids (room, id, seq) VALUES (?1, ?2, ?3)", params![a.room, a.id, seq])?;
                txn.execute("INSERT OR REPLACE INTO rooms (room, next) VALUES (?1, ?2)", params![a.room, seq + 1])?;
                let keep_from = (seq + 1).saturating_sub(retention.max_messages as i64);
                txn.execute("DELETE FROM messages WHERE room = ?1 AND seq < ?2", params![a.room, keep_from])?;
                txn.execute("DELETE FROM ids WHERE room = ?1 AND seq < ?2", params![a.room, keep_from])?;
            }
            txn.commit()
        })()
        .map_err(|e| HistoryError::Unavailable(e.to_string()));
        for a in batch {
            let _ = a.done.send(result.clone());
        }
    }
}

impl HistoryStore for SqliteHistory {
    fn append(&self, m: &AcceptedMessage) -> HistoryFuture<()> {
        let (done, stored) = oneshot::channel();
        let id = uuid::Uuid::parse_str(&m.id).expect("uuid").as_bytes().to_vec();
        let body = serde_json::to_vec(m).expect("json");
        let append = SqliteAppend { room: m.room.clone(), id, ts: m.ts, body, done };
        if self.queue.try_send(append).is_err() {
            return Box::pin(std::future::ready(Err(HistoryError::QueueFull)));
        }
        Box::pin(async move { stored.await.unwrap_or(Err(HistoryError::Unavailable("writer gone".into()))) })
    }

    fn read(&self, room: &str, since: Option<uuid::Uuid>, limit: usize) -> HistoryFuture<Page> {
        let n = self.next_reader.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % self.readers.len();
        let room = room.to_string();
        let readers = self.readers.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || {
                let conn = readers[n].lock();
                let start: i64 = match since {
                    Some(id) => conn
                        .query_row(
                            "SELECT seq FROM ids WHERE room = ?1 AND id = ?2",
                            params![room, &id.as_bytes()[..]],
                            |r| r.get::<_, i64>(0),
                        )
                        .optional()
                        .map_err(|e| HistoryError::Unavailable(e.to_string()))?
                        .map_or(0, |s| s + 1),
                    None => 0,
                };
                let mut stmt = conn
                    .prepare_cached("SELECT body FROM messages WHERE room = ?1 AND seq >= ?2 ORDER BY seq LIMIT ?3")
                    .map_err(|e| HistoryError::Unavailable(e.to_string()))?;
                let mut page = Page::default();
                let rows = stmt
                    .query_map(params![room, start, limit as i64 + 1], |r| r.get::<_, Vec<u8>>(0))
                    .map_err(|e| HistoryError::Unavailable(e.to_string()))?;
                for body in rows {
                    let body = body.map_err(|e| HistoryError::Unavailable(e.to_string()))?;
                    if page.messages.len() == limit {
                        page.more = true;
                        break;
                    }
                    page.messages
                        .push(serde_json::from_slice(&body).map_err(|e| HistoryError::Backend(e.to_string()))?);
                }
                Ok(page)
            })
            .await
            .map_err(|e| HistoryError::Unavailable(e.to_string()))?
        })
    }

    fn kind(&self) -> &'static str {
        "sqlite"
    }
}

// ---- the driver ---------------------------------------------------------------------------------

fn message(room: usize, i: usize) -> AcceptedMessage {
    let id = uuid::Uuid::now_v7();
    AcceptedMessage::new(
        id.to_string(),
        format!("room-{room}"),
        format!("user-{}", i % 100),
        serde_json::json!({"text": format!("message number {i} with some text in it, about 80 bytes long.")}),
        switchyard::history::now_ms(),
    )
}

async fn appends(store: Arc<dyn HistoryStore>, total: usize, senders: usize) -> (f64, Vec<Vec<String>>) {
    let started = Instant::now();
    let per_sender = total / senders;
    let tasks: Vec<_> = (0..senders)
        .map(|s| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut ids = Vec::with_capacity(per_sender);
                for i in 0..per_sender {
                    let m = message(s % ROOMS, i);
                    store.append(&m).await.expect("append");
                    ids.push(m.id);
                }
                ids
            })
        })
        .collect();
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.expect("sender"));
    }
    ((per_sender * senders) as f64 / started.elapsed().as_secs_f64(), ids)
}

async fn reads(store: Arc<dyn HistoryStore>, ids: &[Vec<String>], duration: Duration) -> f64 {
    let started = Instant::now();
    let tasks: Vec<_> = (0..READERS)
        .map(|r| {
            let store = store.clone();
            let ids: Vec<Vec<String>> = ids.to_vec();
            tokio::spawn(async move {
                let mut n = 0u64;
                let mut x = r as u64 * 7919 + 1;
                while started.elapsed() < duration {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    let sender = (x >> 33) as usize % ids.len();
                    let list = &ids[sender];
                    let since = &list[(x >> 17) as usize % list.len()];
                    let page = store
                        .read(
                            &format!("room-{}", sender % ROOMS),
                            Some(uuid::Uuid::parse_str(since).unwrap()),
                            READ_LIMIT,
                        )
                        .await
                        .expect("read");
                    assert!(!page.messages.is_empty() || !page.more);
                    n += 1;
                }
                n
            })
        })
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("reader");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let total: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50_000);
    let senders: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(64);
    let retention = Retention { max_messages: 1_000_000, max_age: None };
    println!(
        "{total} messages, {ROOMS} rooms, {senders} concurrent senders; reads: {READERS} readers, limit {READ_LIMIT}"
    );
    println!(
        "{:<8} {:>16} {:>22} {:>14} {:>10}",
        "store",
        "append/s 1 sender",
        format!("append/s {senders} senders"),
        "reads/s",
        "disk MB"
    );
    for kind in ["redb", "sqlite"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let store: Arc<dyn HistoryStore> = match kind {
            "redb" => EmbeddedHistory::open(dir.path(), retention).expect("redb"),
            _ => SqliteHistory::open(dir.path(), retention),
        };
        let (single, _) = appends(store.clone(), 500.min(total), 1).await;
        let (many, ids) = appends(store.clone(), total, senders).await;
        let read_rate = reads(store.clone(), &ids, Duration::from_secs(3)).await;
        let bytes: u64 = std::fs::read_dir(dir.path())
            .map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum())
            .unwrap_or(0);
        println!("{:<8} {:>16.0} {:>22.0} {:>14.0} {:>10.1}", kind, single, many, read_rate, bytes as f64 / 1e6);
    }
}
