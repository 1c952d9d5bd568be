//! The Kafka spool: an append-only, bounded queue of records on disk (`<store.dir>/kafka-spool/`),
//! where accepted messages wait while Kafka is down or slow, and from which they are produced in
//! order once it is back. docs/KAFKA.md describes the guarantees.
//!
//! Layout: segment files `<first segment number, 20 digits>.spool`, each a run of records
//! `[payload length u32 LE][CRC-32 of the payload u32 LE][key length u32 LE][key][value]`, and a file
//! `cursor` with the position (`<segment> <offset>`) before which everything was delivered. A
//! segment is deleted once the cursor moved past it; the whole spool once it is drained.
//!
//! Opening checks every record after the cursor: a torn record at the end (the process died while
//! writing it) is cut off; a record whose checksum fails inside a segment ends that segment (the
//! framing cannot be trusted past it). Both are logged and counted ([`Opened`]), never hidden.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Bytes of a record besides its key and value.
pub const RECORD_OVERHEAD: u64 = 12;
/// A segment is closed and a new one started past this size.
pub const SEGMENT_BYTES: u64 = 16 * 1024 * 1024;
/// The largest key or value a record may hold (a Kafka record beyond this is refused anyway).
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;
const CURSOR_FILE: &str = "cursor";
const SEGMENT_SUFFIX: &str = ".spool";

/// A place in the spool: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// One record read back, with the position right after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolRecord {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    /// Where the next record starts: commit this once the record is delivered.
    pub next: Position,
}

/// Why a record could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    /// The spool holds `kafka.spool_max_bytes` already.
    #[error("the spool is full ({bytes} bytes, limit {limit})")]
    Full { bytes: u64, limit: u64 },
    #[error("record too large ({0} bytes)")]
    TooLarge(u64),
    #[error("spool I/O: {0}")]
    Io(#[from] io::Error),
}

/// What opening found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Opened {
    /// Records waiting to be produced.
    pub records: u64,
    /// Bytes cut off: a torn record at the end, or the rest of a segment after a bad checksum.
    pub discarded_bytes: u64,
}

/// The spool (see the module docs). All methods are safe to call from several threads.
pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    inner: Mutex<Inner>,
    /// Serializes fsyncs so that one covers every caller waiting at the time (group commit).
    sync_lock: tokio::sync::Mutex<()>,
}

struct Inner {
    file: File,
    write: Position,
    /// Sizes of the segments on disk (the one being written included).
    segments: BTreeMap<u64, u64>,
    cursor: Position,
    records: u64,
    bytes: u64,
    /// Records appended since open, and the count the last fsync covered.
    appended: u64,
    synced: u64,
}

fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:020}{SEGMENT_SUFFIX}"))
}

/// A record's key, value and length on disk.
type RawRecord = (Vec<u8>, Vec<u8>, u64);

/// Reads the records of `segment` from offset `start` up to `end`, handing each (key, value, offset
/// after it) to `each` until it returns false. Returns the offset after the last record read and
/// whether reading stopped at a record that fails its checks. The one read loop of opening and
/// reading.
fn scan_segment(
    dir: &Path,
    segment: u64,
    start: u64,
    end: u64,
    mut each: impl FnMut(Vec<u8>, Vec<u8>, u64) -> bool,
) -> io::Result<(u64, bool)> {
    let mut reader = BufReader::new(File::open(segment_path(dir, segment))?);
    reader.seek(SeekFrom::Start(start))?;
    let mut at = start;
    let mut bad = false;
    while let Some((key, value, len)) = read_record(&mut reader, end.saturating_sub(at), &mut bad)? {
        at += len;
        if !each(key, value, at) {
            break;
        }
    }
    Ok((at, bad))
}

/// Reads one record at the reader's position. `Ok(None)`: a clean end, a torn tail or a bad
/// checksum (`bad` tells which of the latter two happened).
fn read_record(reader: &mut impl Read, left: u64, bad: &mut bool) -> io::Result<Option<RawRecord>> {
    if left == 0 {
        return Ok(None);
    }
    let mut head = [0u8; 8];
    if left < RECORD_OVERHEAD {
        *bad = true;
        return Ok(None);
    }
    reader.read_exact(&mut head)?;
    let len = u64::from(u32::from_le_bytes(head[0..4].try_into().expect("4 bytes")));
    let crc = u32::from_le_bytes(head[4..8].try_into().expect("4 bytes"));
    if len < 4 || len + 8 > left {
        *bad = true;
        return Ok(None);
    }
    let mut payload = vec![0u8; len as usize];
    reader.read_exact(&mut payload)?;
    if crc32fast::hash(&payload) != crc {
        *bad = true;
        return Ok(None);
    }
    let key_len = u32::from_le_bytes(payload[0..4].try_into().expect("4 bytes")) as usize;
    if key_len > payload.len() - 4 {
        *bad = true;
        return Ok(None);
    }
    let value = payload.split_off(4 + key_len);
    let key = payload[4..].to_vec();
    Ok(Some((key, value, len + 8)))
}

impl Spool {
    /// Opens (or creates) the spool in `dir`; new records are refused past `max_bytes`.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<(Spool, Opened)> {
        Spool::open_with(dir, max_bytes, SEGMENT_BYTES)
    }

    /// As [`Spool::open`] with another segment size (tests).
    pub fn open_with(dir: &Path, max_bytes: u64, segment_bytes: u64) -> io::Result<(Spool, Opened)> {
        fs::create_dir_all(dir)?;
        let mut cursor = match fs::read_to_string(dir.join(CURSOR_FILE)) {
            Ok(text) => {
                let mut parts = text.split_whitespace().map(str::parse::<u64>);
                match (parts.next(), parts.next()) {
                    (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset },
                    _ => return Err(io::Error::new(io::ErrorKind::InvalidData, "unreadable spool cursor file")),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Position::default(),
            Err(e) => return Err(e),
        };
        let mut segments = BTreeMap::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let name = entry.file_name();
            let Some(number) = name.to_str().and_then(|n| n.strip_suffix(SEGMENT_SUFFIX)) else { continue };
            let Ok(number) = number.parse::<u64>() else { continue };
            if number < cursor.segment {
                fs::remove_file(entry.path())?;
            } else {
                segments.insert(number, entry.metadata()?.len());
            }
        }
        if segments.first_key_value().is_some_and(|(&first, _)| first > cursor.segment) {
            // The cursor's segment is gone (drained and removed): start at the next one.
            cursor = Position { segment: *segments.keys().next().expect("non-empty"), offset: 0 };
        }
        let mut opened = Opened::default();
        let last = segments.keys().next_back().copied();
        for (&segment, size) in segments.iter_mut() {
            let start = if segment == cursor.segment { cursor.offset } else { 0 };
            let (at, _) = scan_segment(dir, segment, start, *size, |_, _, _| {
                opened.records += 1;
                true
            })?;
            if at < *size {
                opened.discarded_bytes += *size - at;
                tracing::error!(
                    segment,
                    offset = at,
                    bytes = *size - at,
                    torn_tail = Some(segment) == last,
                    "kafka spool: cutting off records that fail their checksum"
                );
                OpenOptions::new().write(true).open(segment_path(dir, segment))?.set_len(at)?;
                *size = at;
            }
        }
        let write_segment = last.unwrap_or(cursor.segment.max(1));
        if segments.is_empty() {
            cursor = Position { segment: write_segment, offset: 0 };
            segments.insert(write_segment, 0);
        }
        let write_offset = segments[&write_segment];
        let file = OpenOptions::new().create(true).append(true).open(segment_path(dir, write_segment))?;
        let bytes = segments.values().sum();
        let inner = Inner {
            file,
            write: Position { segment: write_segment, offset: write_offset },
            segments,
            cursor,
            records: opened.records,
            bytes,
            appended: 0,
            synced: 0,
        };
        let spool = Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            inner: Mutex::new(inner),
            sync_lock: tokio::sync::Mutex::new(()),
        };
        Ok((spool, opened))
    }

    /// Appends a record; refused past the size limit unless `force` (records already accepted
    /// that must not be lost). Returns the record's append number for [`Spool::sync`].
    pub fn append(&self, key: &[u8], value: &[u8], force: bool) -> Result<u64, SpoolError> {
        let payload_len = 4 + key.len() as u64 + value.len() as u64;
        if payload_len > MAX_RECORD_BYTES {
            return Err(SpoolError::TooLarge(payload_len));
        }
        let len = payload_len + 8;
        let mut inner = self.inner.lock();
        if !force && inner.bytes + len > self.max_bytes {
            return Err(SpoolError::Full { bytes: inner.bytes, limit: self.max_bytes });
        }
        if inner.write.offset > 0 && inner.write.offset + len > self.segment_bytes {
            // Rotate: what the old segment holds is synced before it is left behind.
            inner.file.sync_data()?;
            let next = inner.write.segment + 1;
            let file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, next))?;
            inner.file = file;
            inner.write = Position { segment: next, offset: 0 };
            inner.segments.insert(next, 0);
        }
        let mut buf = Vec::with_capacity(len as usize);
        buf.extend_from_slice(&(payload_len as u32).to_le_bytes());
        buf.extend_from_slice(&[0; 4]);
        buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
        buf.extend_from_slice(key);
        buf.extend_from_slice(value);
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        if let Err(e) = inner.file.write_all(&buf) {
            // A partial write would corrupt what follows: cut the segment back to its last record.
            let offset = inner.write.offset;
            let _ = inner.file.set_len(offset);
            return Err(e.into());
        }
        let segment = inner.write.segment;
        inner.write.offset += len;
        *inner.segments.get_mut(&segment).expect("the written segment is listed") += len;
        inner.bytes += len;
        inner.records += 1;
        inner.appended += 1;
        Ok(inner.appended)
    }

    /// Waits until record number `appended` (from [`Spool::append`]) is on disk (fsync).
    pub async fn sync(&self, appended: u64) -> io::Result<()> {
        let _turn = self.sync_lock.lock().await;
        let (file, target) = {
            let inner = self.inner.lock();
            if inner.synced >= appended {
                return Ok(());
            }
            (inner.file.try_clone()?, inner.appended)
        };
        tokio::task::spawn_blocking(move || file.sync_data()).await.map_err(io::Error::other)??;
        let mut inner = self.inner.lock();
        inner.synced = inner.synced.max(target);
        Ok(())
    }

    /// The delivered-up-to position: reading starts here.
    pub fn cursor(&self) -> Position {
        self.inner.lock().cursor
    }

    /// Records waiting (appended and not committed).
    pub fn records(&self) -> u64 {
        self.inner.lock().records
    }

    /// Bytes on disk.
    pub fn bytes(&self) -> u64 {
        self.inner.lock().bytes
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.inner.lock().records == 0
    }

    /// Reads up to `max` records from `from` (a position from [`Spool::cursor`] or a record's
    /// `next`). Fewer, or none, at the end of what was appended.
    pub fn read(&self, mut from: Position, max: usize) -> io::Result<Vec<SpoolRecord>> {
        let mut out = Vec::new();
        while out.len() < max {
            let end = {
                let inner = self.inner.lock();
                match inner.segments.get(&from.segment) {
                    Some(&size) => size,
                    None => match inner.segments.range(from.segment..).next() {
                        Some((&next, _)) => {
                            from = Position { segment: next, offset: 0 };
                            continue;
                        }
                        None => break,
                    },
                }
            };
            if from.offset >= end {
                let next = self.inner.lock().segments.range(from.segment + 1..).next().map(|(&s, _)| s);
                match next {
                    Some(segment) => {
                        from = Position { segment, offset: 0 };
                        continue;
                    }
                    None => break,
                }
            }
            let segment = from.segment;
            let (at, bad) = scan_segment(&self.dir, segment, from.offset, end, |key, value, at| {
                out.push(SpoolRecord { key, value, next: Position { segment, offset: at } });
                out.len() < max
            })?;
            from.offset = at;
            if bad {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "a spool record changed on disk"));
            }
        }
        Ok(out)
    }

    /// Marks everything before `to` delivered (`records` of them since the cursor): persists the
    /// cursor, deletes segments left behind, and empties the spool once everything is delivered.
    pub fn commit(&self, to: Position, records: u64) -> io::Result<()> {
        let mut inner = self.inner.lock();
        inner.cursor = to;
        inner.records = inner.records.saturating_sub(records);
        let behind: Vec<u64> = inner.segments.range(..to.segment).map(|(&s, _)| s).collect();
        for segment in behind {
            fs::remove_file(segment_path(&self.dir, segment))?;
            let size = inner.segments.remove(&segment).unwrap_or(0);
            inner.bytes -= size;
        }
        if to == inner.write && inner.records == 0 {
            // Drained: start over in a fresh, empty segment.
            let next = inner.write.segment + 1;
            let file = OpenOptions::new().create(true).append(true).open(segment_path(&self.dir, next))?;
            let old = std::mem::replace(&mut inner.file, file);
            drop(old);
            fs::remove_file(segment_path(&self.dir, inner.write.segment))?;
            inner.segments.clear();
            inner.segments.insert(next, 0);
            inner.write = Position { segment: next, offset: 0 };
            inner.cursor = inner.write;
            inner.bytes = 0;
        }
        let cursor = inner.cursor;
        let tmp = self.dir.join("cursor.tmp");
        let mut file = File::create(&tmp)?;
        writeln!(file, "{} {}", cursor.segment, cursor.offset)?;
        file.sync_data()?;
        fs::rename(&tmp, self.dir.join(CURSOR_FILE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(spool: &Spool) -> Vec<(Vec<u8>, Vec<u8>)> {
        let records = spool.read(spool.cursor(), usize::MAX).unwrap();
        if let Some(last) = records.last() {
            spool.commit(last.next, records.len() as u64).unwrap();
        }
        records.into_iter().map(|r| (r.key, r.value)).collect()
    }

    #[test]
    fn records_come_back_in_order_across_segments_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, opened) = Spool::open_with(dir.path(), 1 << 20, 256).unwrap();
        assert_eq!(opened, Opened::default());
        for i in 0..50u32 {
            spool.append(format!("k{}", i % 3).as_bytes(), format!("value {i}").as_bytes(), false).unwrap();
        }
        assert_eq!(spool.records(), 50);
        // Read part, commit part, reopen: the rest comes back, in order.
        let first = spool.read(spool.cursor(), 20).unwrap();
        assert_eq!(first.len(), 20);
        spool.commit(first[19].next, 20).unwrap();
        drop(spool);
        let (spool, opened) = Spool::open_with(dir.path(), 1 << 20, 256).unwrap();
        assert_eq!(opened, Opened { records: 30, discarded_bytes: 0 });
        let rest = drain(&spool);
        let values: Vec<String> = rest.iter().map(|(_, v)| String::from_utf8(v.clone()).unwrap()).collect();
        assert_eq!(values, (20..50).map(|i| format!("value {i}")).collect::<Vec<_>>());
        assert_eq!(rest[0].0, b"k2");
        // Drained: one empty segment and nothing waiting.
        assert!(spool.is_empty());
        assert_eq!(spool.bytes(), 0);
        let files = fs::read_dir(dir.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension().is_some_and(|x| x == "spool"))
            .count();
        assert_eq!(files, 1);
        // And it keeps working after being drained.
        spool.append(b"k", b"again", false).unwrap();
        assert_eq!(drain(&spool), vec![(b"k".to_vec(), b"again".to_vec())]);
    }

    #[test]
    fn a_full_spool_refuses_new_records_but_takes_forced_ones() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open_with(dir.path(), 100, 1 << 20).unwrap();
        spool.append(b"k", &[1; 60], false).unwrap();
        assert!(matches!(spool.append(b"k", &[2; 60], false), Err(SpoolError::Full { limit: 100, .. })));
        spool.append(b"k", &[3; 60], true).unwrap();
        assert_eq!(spool.records(), 2);
        let values: Vec<u8> = drain(&spool).iter().map(|(_, v)| v[0]).collect();
        assert_eq!(values, vec![1, 3]);
        // Room again once drained.
        spool.append(b"k", &[4; 60], false).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open_with(dir.path(), 1 << 20, 1 << 20).unwrap();
        spool.append(b"a", b"one", false).unwrap();
        spool.append(b"b", b"two", false).unwrap();
        let segment = spool.inner.lock().write.segment;
        drop(spool);
        // A crash in the middle of a third record: half of it on disk.
        let path = segment_path(dir.path(), segment);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&[20, 0, 0, 0, 1, 2, 3, 4, 5]).unwrap();
        drop(file);
        let (spool, opened) = Spool::open_with(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(opened, Opened { records: 2, discarded_bytes: 9 });
        spool.append(b"c", b"three", false).unwrap();
        let values: Vec<Vec<u8>> = drain(&spool).into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]);
    }

    #[test]
    fn a_flipped_bit_fails_the_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open_with(dir.path(), 1 << 20, 1 << 20).unwrap();
        spool.append(b"a", b"one", false).unwrap();
        spool.append(b"b", b"two", false).unwrap();
        let segment = spool.inner.lock().write.segment;
        drop(spool);
        let path = segment_path(dir.path(), segment);
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, bytes).unwrap();
        let (spool, opened) = Spool::open_with(dir.path(), 1 << 20, 1 << 20).unwrap();
        assert_eq!(opened.records, 1);
        assert_eq!(opened.discarded_bytes, RECORD_OVERHEAD + 4);
        assert_eq!(drain(&spool), vec![(b"a".to_vec(), b"one".to_vec())]);
    }

    #[tokio::test]
    async fn sync_covers_every_record_appended_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (spool, _) = Spool::open_with(dir.path(), 1 << 20, 1 << 20).unwrap();
        let first = spool.append(b"a", b"1", false).unwrap();
        let second = spool.append(b"a", b"2", false).unwrap();
        spool.sync(second).await.unwrap();
        assert!(spool.inner.lock().synced >= first);
        spool.sync(first).await.unwrap();
    }

    #[test]
    fn an_unreadable_cursor_is_an_error_not_a_guess() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CURSOR_FILE), "garbage").unwrap();
        assert!(Spool::open(dir.path(), 1 << 20).is_err());
    }
}
