//! The embedded history store: one redb file, `<store.dir>/history.redb`, kept across restarts with
//! no external service (docs/HISTORY.md says why redb, with the measurements).
//!
//! Tables:
//! - `messages`: (room, seq) -> `ts` (8 bytes, big-endian), id (16 bytes), then the message's JSON.
//!   `seq` counts up per room, so a room's messages are one contiguous key range in append order.
//! - `ids`: (room, message id) -> seq: where `since` starts.
//! - `rooms`: room -> the next seq (kept when every message of the room is trimmed, so a seq is
//!   never reused).
//!
//! One writer thread takes appends from a bounded queue in the order the connection tasks called
//! [`HistoryStore::append`] and writes everything waiting in one transaction (group commit: one
//! fsync for the batch); retention is applied to each room as it is written, and every minute to
//! every room (so an idle room's old messages go too). Reads run on tokio's blocking pool on a
//! snapshot (redb is MVCC: readers never wait for the writer).

use super::{encode_record, now_ms, HistoryError, HistoryFuture, HistoryStore, Page, Retention};
use super::{MAX_BATCH, QUEUE_CAPACITY};
use crate::pipeline::AcceptedMessage;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;

const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
const IDS: TableDefinition<(&str, u128), u64> = TableDefinition::new("ids");
const ROOMS: TableDefinition<&str, u64> = TableDefinition::new("rooms");

/// The file's name under `store.dir`.
pub const FILE_NAME: &str = "history.redb";
/// How often every room is trimmed by age when no message arrives.
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Bytes in front of a record's JSON: ts and id.
const HEADER: usize = 24;

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the directory {path}: {source}")]
    Dir { path: PathBuf, source: std::io::Error },
    #[error("{path} is open in another process (one server per store.dir)")]
    InUse { path: PathBuf },
    #[error("cannot open {path}: {reason}")]
    Open { path: PathBuf, reason: String },
}

struct Append {
    room: String,
    id: u128,
    record: Vec<u8>,
    done: oneshot::Sender<Result<(), HistoryError>>,
}

/// History in a redb file.
pub struct EmbeddedHistory {
    db: Arc<Database>,
    queue: SyncSender<Append>,
    retention: Retention,
}

impl EmbeddedHistory {
    /// Opens (or creates) `<dir>/history.redb` and starts its writer thread.
    pub fn open(dir: &Path, retention: Retention) -> Result<Arc<EmbeddedHistory>, OpenError> {
        std::fs::create_dir_all(dir).map_err(|source| OpenError::Dir { path: dir.to_path_buf(), source })?;
        let path = dir.join(FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => OpenError::InUse { path: path.clone() },
            other => OpenError::Open { path: path.clone(), reason: other.to_string() },
        })?;
        // The tables exist from the start, so a read never finds them missing.
        let create = || -> Result<(), redb::Error> {
            let txn = db.begin_write()?;
            txn.open_table(MESSAGES)?;
            txn.open_table(IDS)?;
            txn.open_table(ROOMS)?;
            txn.commit()?;
            Ok(())
        };
        create().map_err(|e| OpenError::Open { path: path.clone(), reason: e.to_string() })?;
        let db = Arc::new(db);
        let (queue, appends) = sync_channel(QUEUE_CAPACITY);
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || writer(writer_db, appends, retention))
            .map_err(|e| OpenError::Open { path, reason: format!("cannot start the writer thread: {e}") })?;
        Ok(Arc::new(EmbeddedHistory { db, queue, retention }))
    }
}

impl HistoryStore for EmbeddedHistory {
    fn append(&self, message: &AcceptedMessage) -> HistoryFuture<()> {
        let (id, record) = match encode_record(message) {
            Ok(encoded) => encoded,
            Err(e) => return Box::pin(std::future::ready(Err(e))),
        };
        let (done, stored) = oneshot::channel();
        let append = Append { room: message.room.clone(), id, record, done };
        match self.queue.try_send(append) {
            Ok(()) => Box::pin(async move {
                stored.await.unwrap_or_else(|_| Err(HistoryError::Unavailable("the history writer stopped".into())))
            }),
            Err(TrySendError::Full(_)) => Box::pin(std::future::ready(Err(HistoryError::QueueFull))),
            Err(TrySendError::Disconnected(_)) => {
                Box::pin(std::future::ready(Err(HistoryError::Unavailable("the history writer stopped".into()))))
            }
        }
    }

    fn read(&self, room: &str, since: Option<uuid::Uuid>, limit: usize) -> HistoryFuture<Page> {
        let db = self.db.clone();
        let room = room.to_string();
        let retention = self.retention;
        Box::pin(async move {
            tokio::task::spawn_blocking(move || read(&db, &room, since.map(|id| id.as_u128()), limit, retention))
                .await
                .map_err(|e| HistoryError::Unavailable(format!("history read task: {e}")))?
        })
    }

    fn kind(&self) -> &'static str {
        "embedded"
    }
}

fn unavailable(e: impl std::fmt::Display) -> HistoryError {
    HistoryError::Unavailable(e.to_string())
}

fn ts_of(record: &[u8]) -> u64 {
    record.get(..8).and_then(|b| b.try_into().ok()).map_or(0, u64::from_be_bytes)
}

fn id_of(record: &[u8]) -> u128 {
    record.get(8..HEADER).and_then(|b| b.try_into().ok()).map_or(0, u128::from_be_bytes)
}

fn read(
    db: &Database,
    room: &str,
    since: Option<u128>,
    limit: usize,
    retention: Retention,
) -> Result<Page, HistoryError> {
    let txn = db.begin_read().map_err(unavailable)?;
    let messages = txn.open_table(MESSAGES).map_err(unavailable)?;
    let start = match since {
        Some(id) => {
            let ids = txn.open_table(IDS).map_err(unavailable)?;
            ids.get((room, id)).map_err(unavailable)?.map_or(0, |seq| seq.value() + 1)
        }
        None => 0,
    };
    let cutoff = retention.cutoff_ms(now_ms());
    let mut page = Page::default();
    for entry in messages.range((room, start)..=(room, u64::MAX)).map_err(unavailable)? {
        let (_, record) = entry.map_err(unavailable)?;
        let record = record.value();
        // Past its age but not yet swept: as good as gone.
        if ts_of(record) < cutoff {
            continue;
        }
        if page.messages.len() == limit {
            page.more = true;
            break;
        }
        let message = serde_json::from_slice(record.get(HEADER..).unwrap_or_default())
            .map_err(|e| HistoryError::Backend(format!("a stored message is not JSON: {e}")))?;
        page.messages.push(message);
    }
    Ok(page)
}

/// The writer thread: batches appends into transactions until every sender is gone.
fn writer(db: Arc<Database>, appends: Receiver<Append>, retention: Retention) {
    let mut last_sweep = std::time::Instant::now();
    loop {
        let first = match appends.recv_timeout(SWEEP_EVERY) {
            Ok(append) => append,
            Err(RecvTimeoutError::Timeout) => {
                sweep(&db, retention);
                last_sweep = std::time::Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match appends.try_recv() {
                Ok(append) => batch.push(append),
                Err(_) => break,
            }
        }
        let result = write(&db, &batch, retention).map_err(unavailable);
        if let Err(e) = &result {
            tracing::error!(error = %e, messages = batch.len(), "history: writing to the embedded store failed");
        }
        for append in batch {
            let _ = append.done.send(result.clone());
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            sweep(&db, retention);
            last_sweep = std::time::Instant::now();
        }
    }
}

fn write(db: &Database, batch: &[Append], retention: Retention) -> Result<(), redb::Error> {
    let txn = db.begin_write()?;
    {
        let mut messages = txn.open_table(MESSAGES)?;
        let mut ids = txn.open_table(IDS)?;
        let mut rooms = txn.open_table(ROOMS)?;
        let cutoff = retention.cutoff_ms(now_ms());
        for append in batch {
            let room = append.room.as_str();
            let seq = rooms.get(room)?.map_or(0, |next| next.value());
            messages.insert((room, seq), append.record.as_slice())?;
            ids.insert((room, append.id), seq)?;
            rooms.insert(room, seq + 1)?;
            trim(&mut messages, &mut ids, room, seq + 1, retention.max_messages, cutoff)?;
        }
    }
    txn.commit()?;
    Ok(())
}

/// Drops `room`'s oldest messages while there are more than `max` or they are older than `cutoff`.
/// `next` is the room's next seq: its messages are the keys just below it.
fn trim(
    messages: &mut redb::Table<(&str, u64), &[u8]>,
    ids: &mut redb::Table<(&str, u128), u64>,
    room: &str,
    next: u64,
    max: u64,
    cutoff: u64,
) -> Result<(), redb::Error> {
    loop {
        let oldest = messages
            .range((room, 0)..(room, next))?
            .next()
            .transpose()?
            .map(|(key, record)| (key.value().1, ts_of(record.value()), id_of(record.value())));
        let Some((seq, ts, id)) = oldest else { return Ok(()) };
        if next - seq <= max && ts >= cutoff {
            return Ok(());
        }
        messages.remove((room, seq))?;
        ids.remove((room, id))?;
    }
}

/// Trims every room by age (rooms nobody writes to keep nothing past `max_age`).
fn sweep(db: &Database, retention: Retention) {
    if retention.max_age.is_none() {
        return;
    }
    let result = (|| -> Result<(), redb::Error> {
        let txn = db.begin_write()?;
        {
            let rooms: Vec<(String, u64)> = {
                let table = txn.open_table(ROOMS)?;
                let mut rooms = Vec::new();
                for entry in table.range::<&str>(..)? {
                    let (room, next) = entry?;
                    rooms.push((room.value().to_string(), next.value()));
                }
                rooms
            };
            let mut messages = txn.open_table(MESSAGES)?;
            let mut ids = txn.open_table(IDS)?;
            let cutoff = retention.cutoff_ms(now_ms());
            for (room, next) in rooms {
                trim(&mut messages, &mut ids, &room, next, retention.max_messages, cutoff)?;
            }
        }
        txn.commit()?;
        Ok(())
    })();
    if let Err(e) = result {
        tracing::warn!(error = %e, "history: sweeping old messages failed");
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{message, texts};
    use super::*;
    use redb::ReadableTableMetadata;

    fn store(dir: &Path, max_messages: u64, max_age: Option<Duration>) -> Arc<EmbeddedHistory> {
        EmbeddedHistory::open(dir, Retention { max_messages, max_age }).expect("open")
    }

    async fn append_all(store: &EmbeddedHistory, messages: &[AcceptedMessage]) {
        // Every append is queued before any is awaited: one batch, in call order.
        let pending: Vec<_> = messages.iter().map(|m| store.append(m)).collect();
        for stored in futures_util::future::join_all(pending).await {
            stored.expect("stored");
        }
    }

    #[tokio::test]
    async fn keeps_order_and_pages_with_since_and_limit() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), 100, None);
        let now = now_ms();
        let sent: Vec<_> = (0..7).map(|i| message("lobby", &format!("m{i}"), now)).collect();
        append_all(&store, &sent).await;
        append_all(&store, &[message("other", "x", now)]).await;

        let page = store.read("lobby", None, 3).await.unwrap();
        assert_eq!(texts(&page), ["m0", "m1", "m2"]);
        assert!(page.more);
        assert_eq!(page.messages[0]["id"], sent[0].id.as_str());
        assert_eq!(page.messages[0]["user"], "alice");
        assert_eq!(page.messages[0]["room"], "lobby");

        let since = uuid::Uuid::parse_str(&sent[2].id).unwrap();
        let page = store.read("lobby", Some(since), 3).await.unwrap();
        assert_eq!(texts(&page), ["m3", "m4", "m5"]);
        assert!(page.more);
        let since = uuid::Uuid::parse_str(&sent[5].id).unwrap();
        let page = store.read("lobby", Some(since), 3).await.unwrap();
        assert_eq!(texts(&page), ["m6"]);
        assert!(!page.more);
        let last = uuid::Uuid::parse_str(&sent[6].id).unwrap();
        assert_eq!(store.read("lobby", Some(last), 3).await.unwrap(), Page::default());
        // An id the room does not hold: from the oldest kept.
        let page = store.read("lobby", Some(uuid::Uuid::now_v7()), 2).await.unwrap();
        assert_eq!(texts(&page), ["m0", "m1"]);
        assert_eq!(texts(&store.read("other", None, 10).await.unwrap()), ["x"]);
        assert_eq!(store.read("nobody", None, 10).await.unwrap(), Page::default());
    }

    #[tokio::test]
    async fn retention_by_count_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), 3, None);
        let now = now_ms();
        let sent: Vec<_> = (0..5).map(|i| message("r", &format!("m{i}"), now)).collect();
        append_all(&store, &sent[..2]).await;
        append_all(&store, &sent[2..]).await;
        let page = store.read("r", None, 10).await.unwrap();
        assert_eq!(texts(&page), ["m2", "m3", "m4"]);
        // A trimmed `since`: from the oldest kept.
        let trimmed = uuid::Uuid::parse_str(&sent[0].id).unwrap();
        assert_eq!(texts(&store.read("r", Some(trimmed), 10).await.unwrap()), ["m2", "m3", "m4"]);
        // The trimmed ids are gone from the index too.
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(IDS).unwrap().len().unwrap(), 3);
    }

    #[tokio::test]
    async fn retention_by_age_hides_and_drops_old_messages() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path(), 100, Some(Duration::from_secs(60)));
        let now = now_ms();
        append_all(&store, &[message("r", "old", now - 120_000), message("r", "new", now)]).await;
        // Dropped when the room was written to.
        assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["new"]);
        let txn = store.db.begin_read().unwrap();
        assert_eq!(txn.open_table(MESSAGES).unwrap().len().unwrap(), 1);
    }

    #[tokio::test]
    async fn the_sweep_trims_idle_rooms() {
        let dir = tempfile::tempdir().unwrap();
        let retention = Retention { max_messages: 100, max_age: Some(Duration::from_secs(60)) };
        let store = EmbeddedHistory::open(dir.path(), retention).unwrap();
        let now = now_ms();
        // Written with no age limit applied (as if it had been fresh then).
        write(
            &store.db,
            &[{
                let (id, record) = encode_record(&message("idle", "old", now - 120_000)).unwrap();
                Append { room: "idle".into(), id, record, done: oneshot::channel().0 }
            }],
            Retention { max_messages: 100, max_age: None },
        )
        .unwrap();
        assert_eq!(store.db.begin_read().unwrap().open_table(MESSAGES).unwrap().len().unwrap(), 1);
        sweep(&store.db, retention);
        assert_eq!(store.db.begin_read().unwrap().open_table(MESSAGES).unwrap().len().unwrap(), 0);
    }

    #[tokio::test]
    async fn history_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let sent = message("r", "kept", now_ms());
        {
            let store = store(dir.path(), 10, None);
            append_all(&store, std::slice::from_ref(&sent)).await;
        }
        // The writer thread lets go of the file once its queue's sender is dropped.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        let store = loop {
            match EmbeddedHistory::open(dir.path(), Retention { max_messages: 10, max_age: None }) {
                Ok(store) => break store,
                Err(OpenError::InUse { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("reopen: {e}"),
            }
        };
        assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["kept"]);
        // Sequences continue after the stored ones.
        append_all(&store, &[message("r", "after", now_ms())]).await;
        assert_eq!(texts(&store.read("r", None, 10).await.unwrap()), ["kept", "after"]);
    }

    #[tokio::test]
    async fn a_second_process_cannot_open_the_same_file() {
        let dir = tempfile::tempdir().unwrap();
        let _first = store(dir.path(), 10, None);
        match EmbeddedHistory::open(dir.path(), Retention { max_messages: 10, max_age: None }) {
            Err(OpenError::InUse { .. }) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("opened twice"),
        }
    }
}
