//! Durable storage in a directory (feature `file-storage`), for hosts that must survive a
//! whole-cluster restart.
//!
//! - `hardstate`: term and vote, replaced atomically (write a temporary file, fsync, rename,
//!   fsync the directory).
//! - `snapshot`: the latest snapshot, replaced the same way.
//! - `log`: append-only records `[u32 length][u32 CRC-32 of the payload][u32 CRC-32 of the first
//!   eight bytes][payload]` (little-endian; payload is the msgpack entry), fsynced on every
//!   append.
//! - `lock`: held locked (an advisory lock of the operating system) for as long as the
//!   storage is open, so a second process opening the directory is refused with
//!   [`StorageErrorKind::Locked`] instead of interleaving its writes; the lock goes with the
//!   process, also when it is killed.
//!
//! # What recovery cuts, and what it refuses
//!
//! A crash can only damage the end of the log: the append it interrupted was never
//! acknowledged. So recovery cuts a damaged record only when it is the last one: a header cut
//! short, a record whose (checksummed) length runs past the end of the file, or a record whose
//! payload fails its checksum with nothing but zeros (blocks the file system allocated but never
//! wrote) after it. Damage anywhere else is [`StorageErrorKind::Corrupt`], naming the file and
//! byte offset, and nothing is truncated: cutting there would drop acknowledged writes. (One
//! crash can still be refused: a multi-record append whose middle page never reached the disk
//! while a later page did. The node then stops rather than guess; the data of that append was
//! never acknowledged, and an operator may cut the log at the named offset.)
//!
//! # Failed writes
//!
//! A failed append (a full disk, say) truncates the file back to its last good record, so a
//! retry appends after it and nothing torn stays in the middle of the log. When that is not
//! possible, or an fsync failed (after which the kernel's page cache cannot be trusted), every
//! later call fails with [`StorageErrorKind::Unusable`] until the storage is reopened.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log::{Entry, Snapshot};
use crate::storage::{HardState, Recovered, Storage, StorageError, StorageErrorKind};
use crate::types::LogIndex;

const HEADER: usize = 12;
const LOG: &str = "log";
const LOCK: &str = "lock";

fn io(what: &str, path: &Path, err: std::io::Error) -> StorageError {
    StorageError::io(format!("{what} {}", path.display()), err)
}

fn corrupt(path: &Path, offset: usize, reason: &str) -> StorageError {
    StorageError::new(
        StorageErrorKind::Corrupt,
        format!(
            "{} is corrupt at byte offset {offset}: {reason}; nothing was truncated (only a \
             damaged last record may be cut)",
            path.display()
        ),
    )
}

/// Fsyncs a directory, so that the entries created in it survive a power cut.
/// Takes the directory's lock, or says who cannot have it.
fn lock_dir(dir: &Path) -> Result<File, StorageError> {
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io("cannot open", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(StorageError::new(
            StorageErrorKind::Locked,
            format!(
                "{} is in use: another process holds {} (two processes must never write one \
                 node's storage)",
                dir.display(),
                path.display()
            ),
        )),
        Err(fs::TryLockError::Error(e)) => Err(io("cannot lock", &path, e)),
    }
}

fn sync_dir(dir: &Path) -> Result<(), StorageError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io("cannot sync", dir, e))
}

/// Storage in a directory; see the module docs for the layout.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    log: File,
    /// Locked while open; released when dropped (or the process ends).
    _lock: File,
    /// The stored snapshot's last index, once recovered or saved.
    snapshot_index: Option<LogIndex>,
    /// `(index, byte offset)` of every record in the log file.
    offsets: Vec<(LogIndex, u64)>,
    /// Bytes of whole, good records in the log file.
    len: u64,
    /// Set when a failure could not be undone: every later call fails until reopened.
    unusable: Option<String>,
    /// Directories fsynced by `open`, so a test can see that new entries were made durable.
    #[cfg(test)]
    synced_dirs: Vec<PathBuf>,
    /// Test-only fault: the next log write stops after this many bytes and fails as a full disk.
    #[cfg(test)]
    fail_next_write_after: Option<usize>,
}

impl FileStorage {
    /// Opens (creating if needed) storage in `dir`. Every directory it creates, and the log
    /// file, are made durable (their parents fsynced) before it returns.
    ///
    /// # Errors
    /// When the directory or log file cannot be created, opened or synced.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let dir = dir.into();
        let mut created = Vec::new();
        let mut missing = Some(dir.as_path());
        while let Some(d) = missing.filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
            created.push(d.to_path_buf());
            missing = d.parent();
        }
        fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
        let lock = lock_dir(&dir)?;
        let path = dir.join(LOG);
        let log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, e))?;
        // The log file's entry lives in `dir`; each created directory's entry in its parent.
        let mut to_sync = vec![dir.clone()];
        to_sync.extend(created.iter().filter_map(|d| d.parent()).map(Path::to_path_buf));
        to_sync.retain(|d| !d.as_os_str().is_empty());
        to_sync.dedup();
        for d in &to_sync {
            sync_dir(d)?;
        }
        Ok(Self {
            dir,
            log,
            _lock: lock,
            snapshot_index: None,
            offsets: Vec::new(),
            len: 0,
            unusable: None,
            #[cfg(test)]
            synced_dirs: to_sync,
            #[cfg(test)]
            fail_next_write_after: None,
        })
    }

    fn usable(&self) -> Result<(), StorageError> {
        match &self.unusable {
            None => Ok(()),
            Some(why) => Err(StorageError::new(
                StorageErrorKind::Unusable,
                format!("{} refuses every call until reopened, after: {why}", self.dir.display()),
            )),
        }
    }

    /// Runs a mutation; a failure it cannot undo leaves the storage refusing every later call.
    fn guarded<T>(
        &mut self,
        op: impl FnOnce(&mut Self) -> Result<T, StorageError>,
    ) -> Result<T, StorageError> {
        self.usable()?;
        op(self).inspect_err(|e| {
            if self.unusable.is_none() {
                self.unusable = Some(e.to_string());
            }
        })
    }

    fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| io("cannot create", &tmp, e))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("cannot write", &tmp, e))?;
        fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &tmp, e))?;
        sync_dir(&self.dir)
    }

    fn read_checked<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StorageError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, e)),
        };
        let (payload, crc) = bytes.split_at(bytes.len().saturating_sub(4));
        let expected = crc
            .try_into()
            .map(u32::from_le_bytes)
            .map_err(|_| corrupt(&path, 0, "the file is truncated"))?;
        if crc32fast::hash(payload) != expected {
            return Err(corrupt(&path, 0, "checksum mismatch"));
        }
        rmp_serde::from_slice(payload)
            .map(Some)
            .map_err(|e| corrupt(&path, 0, &format!("does not decode: {e}")))
    }

    fn checked_bytes<T: Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = rmp_serde::to_vec(value).expect("storage types serialize");
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads every log record, cutting a damaged last record (see the module docs) and refusing
    /// damage anywhere else.
    fn scan_log(&mut self) -> Result<Vec<Entry>, StorageError> {
        let path = self.dir.join(LOG);
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("cannot read", &path, e))?;
        let mut entries: Vec<Entry> = Vec::new();
        let mut offsets = Vec::new();
        let mut at = 0usize;
        while at < bytes.len() {
            match read_record(&bytes[at..]) {
                Record::Good(entry, size) => {
                    if let Some(prev) = entries.last()
                        && entry.index != prev.index + 1
                    {
                        let reason = format!("entry {} follows entry {}", entry.index, prev.index);
                        return Err(corrupt(&path, at, &reason));
                    }
                    offsets.push((entry.index, at as u64));
                    entries.push(entry);
                    at += size;
                }
                Record::TornTail => break,
                Record::Damaged(reason) => return Err(corrupt(&path, at, &reason)),
            }
        }
        if at < bytes.len() {
            // A torn tail: the write the crash interrupted, never acknowledged.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io("cannot open", &path, e))?;
            f.set_len(at as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| io("cannot truncate", &path, e))?;
        }
        self.offsets = offsets;
        self.len = at as u64;
        Ok(entries)
    }

    fn rewrite_log(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        for e in entries {
            push_record(&mut bytes, e);
        }
        self.replace_file(LOG, &bytes)?;
        let path = self.dir.join(LOG);
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, e))?;
        self.scan_log().map(|_| ())
    }

    fn write_log(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        #[cfg(test)]
        if let Some(n) = self.fail_next_write_after.take() {
            self.log.write_all(&bytes[..n.min(bytes.len())])?;
            return Err(std::io::Error::from(std::io::ErrorKind::StorageFull));
        }
        self.log.write_all(bytes)
    }
}

enum Record {
    /// A whole record and its size in bytes.
    Good(Entry, usize),
    /// The damaged last record a crash can leave: cut it.
    TornTail,
    /// Damage a crash cannot explain.
    Damaged(String),
}

/// Reads the record at the start of `rest` (the log from some offset to its end).
fn read_record(rest: &[u8]) -> Record {
    let blank = |b: &[u8]| b.iter().all(|&x| x == 0);
    let Some(header) = rest.get(..HEADER) else { return Record::TornTail };
    let word =
        |i: usize| u32::from_le_bytes([header[i], header[i + 1], header[i + 2], header[i + 3]]);
    if crc32fast::hash(&header[..8]) != word(8) {
        return if blank(rest) {
            Record::TornTail
        } else {
            Record::Damaged("record header checksum mismatch".to_owned())
        };
    }
    let len = word(0) as usize;
    let Some(payload) = rest.get(HEADER..HEADER + len) else { return Record::TornTail };
    if crc32fast::hash(payload) != word(4) {
        return if blank(&rest[HEADER + len..]) {
            Record::TornTail
        } else {
            Record::Damaged("record payload checksum mismatch".to_owned())
        };
    }
    match rmp_serde::from_slice::<Entry>(payload) {
        Ok(entry) => Record::Good(entry, HEADER + len),
        Err(e) => Record::Damaged(format!("record does not decode: {e}")),
    }
}

fn push_record(out: &mut Vec<u8>, entry: &Entry) {
    let payload = rmp_serde::to_vec(entry).expect("entries serialize");
    let start = out.len();
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    let header_crc = crc32fast::hash(&out[start..]);
    out.extend_from_slice(&header_crc.to_le_bytes());
    out.extend_from_slice(&payload);
}

impl Storage for FileStorage {
    fn recover(&mut self) -> Result<Option<Recovered>, StorageError> {
        self.usable()?;
        let hard_state: Option<HardState> = self.read_checked("hardstate")?;
        let snapshot: Option<Snapshot> = self.read_checked("snapshot")?;
        self.snapshot_index = snapshot.as_ref().map(|s| s.last_index);
        let entries = self.scan_log()?;
        if hard_state.is_none() && snapshot.is_none() && entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(Recovered { hard_state: hard_state.unwrap_or_default(), snapshot, entries }))
    }

    fn save_hard_state(&mut self, state: &HardState) -> Result<(), StorageError> {
        self.guarded(|s| s.replace_file("hardstate", &Self::checked_bytes(state)))
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.usable()?;
        let mut bytes = Vec::new();
        let mut offsets = Vec::with_capacity(entries.len());
        for e in entries {
            offsets.push((e.index, self.len + bytes.len() as u64));
            push_record(&mut bytes, e);
        }
        let path = self.dir.join(LOG);
        if let Err(e) = self.write_log(&bytes) {
            let err = io("cannot append to", &path, e);
            // Put the file back as it was, so a retry appends after the last good record.
            let undone = self.log.set_len(self.len).and_then(|()| self.log.sync_all());
            if let Err(undo) = undone {
                self.unusable = Some(format!("{err}; truncating back failed too: {undo}"));
            }
            return Err(err);
        }
        if let Err(e) = self.log.sync_data() {
            let err = io("cannot fsync", &path, e);
            self.unusable = Some(err.to_string());
            return Err(err);
        }
        self.offsets.extend(offsets);
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn truncate_from(&mut self, index: LogIndex) -> Result<(), StorageError> {
        self.guarded(|s| {
            let Some(pos) = s.offsets.iter().position(|(i, _)| *i >= index) else { return Ok(()) };
            let at = s.offsets[pos].1;
            let path = s.dir.join(LOG);
            s.log
                .set_len(at)
                .and_then(|()| s.log.sync_all())
                .map_err(|e| io("cannot truncate", &path, e))?;
            s.offsets.truncate(pos);
            s.len = at;
            Ok(())
        })
    }

    fn writes_block(&self) -> bool {
        true
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        if self.snapshot_index.is_some_and(|stored| snapshot.last_index < stored) {
            // Replacing a snapshot with an older one would leave a gap between it and the
            // log already compacted past it. A node never asks for it; keep the newer one.
            tracing::warn!(
                offered = snapshot.last_index,
                stored = ?self.snapshot_index,
                "ignoring a snapshot older than the stored one"
            );
            return Ok(());
        }
        self.guarded(|s| {
            s.replace_file("snapshot", &Self::checked_bytes(snapshot))?;
            s.snapshot_index = Some(snapshot.last_index);
            let entries = s.scan_log()?;
            let kept: Vec<Entry> =
                entries.into_iter().filter(|e| e.index > snapshot.last_index).collect();
            s.rewrite_log(&kept)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Payload;
    use crate::types::WriteOp;

    fn entry(index: u64) -> Entry {
        Entry {
            term: 1,
            index,
            payload: Payload::Write(WriteOp::Set {
                key: format!("k{index}"),
                value: bytes::Bytes::from(vec![index as u8; 40]),
            }),
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("plus-quorum-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        dir
    }

    #[test]
    fn an_older_snapshot_never_replaces_a_newer_one() {
        let dir = temp_dir("older-snapshot");
        let mut s = FileStorage::open(&dir).unwrap();
        s.append(&(1..=12).map(entry).collect::<Vec<_>>()).unwrap();
        let snap = |last_index| Snapshot {
            last_index,
            last_term: 1,
            state: crate::kv::KvState::default(),
        };
        s.save_snapshot(&snap(10)).unwrap();
        s.save_snapshot(&snap(5)).unwrap();
        drop(s);
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(r.snapshot.map(|s| s.last_index), Some(10));
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [11, 12]);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_directory_opens_once_at_a_time() {
        let dir = temp_dir("locked");
        let first = FileStorage::open(&dir).unwrap();
        let err = FileStorage::open(&dir).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Locked);
        assert!(err.to_string().contains("in use"), "{err}");
        drop(first);
        FileStorage::open(&dir).unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn round_trip_and_truncate() {
        let dir = temp_dir("round-trip");
        let mut s = FileStorage::open(&dir).unwrap();
        assert_eq!(s.recover().unwrap(), None);
        s.save_hard_state(&HardState { term: 3, voted_for: Some(2), recovering: false }).unwrap();
        s.append(&(1..=5).map(entry).collect::<Vec<_>>()).unwrap();
        s.truncate_from(4).unwrap();
        s.append(&[entry(4)]).unwrap();
        drop(s);
        let mut again = FileStorage::open(&dir).unwrap();
        let r = again.recover().unwrap().unwrap();
        assert_eq!(r.hard_state, HardState { term: 3, voted_for: Some(2), recovering: false });
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let snap = Snapshot { last_index: 2, last_term: 1, state: crate::kv::KvState::default() };
        again.save_snapshot(&snap).unwrap();
        drop(again);
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(r.snapshot, Some(snap));
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [3, 4]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A crash may cut the last record anywhere: every cut recovers every earlier record.
    #[test]
    fn torn_tail_at_every_byte_offset_of_the_last_record() {
        let dir = temp_dir("torn");
        let mut s = FileStorage::open(&dir).unwrap();
        s.append(&(1..=3).map(entry).collect::<Vec<_>>()).unwrap();
        let last_start = s.offsets[2].1;
        drop(s);
        let full = fs::read(dir.join("log")).unwrap();
        for cut in last_start..full.len() as u64 {
            fs::write(dir.join("log"), &full[..cut as usize]).unwrap();
            let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
            assert_eq!(
                r.entries.iter().map(|e| e.index).collect::<Vec<_>>(),
                [1, 2],
                "cut at {cut}"
            );
            assert_eq!(
                fs::metadata(dir.join("log")).unwrap().len(),
                last_start,
                "tail cut off at {cut}"
            );
        }
        // A garbled byte in the last record is caught by its checksum.
        let mut garbled = full.clone();
        *garbled.last_mut().unwrap() ^= 0xff;
        fs::write(dir.join("log"), &garbled).unwrap();
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(r.entries.len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }

    fn indices(r: &Recovered) -> Vec<u64> {
        r.entries.iter().map(|e| e.index).collect()
    }

    /// Damage before the last record is refused, naming the file and offset, whichever byte of
    /// the record is hit (length, checksums or payload), and the file keeps every byte.
    #[test]
    fn damage_before_the_last_record_is_an_error_and_nothing_is_truncated() {
        let dir = temp_dir("mid-corrupt");
        let mut s = FileStorage::open(&dir).unwrap();
        s.append(&(1..=30).map(entry).collect::<Vec<_>>()).unwrap();
        let (start, end) = (s.offsets[10].1 as usize, s.offsets[11].1 as usize);
        drop(s);
        let full = fs::read(dir.join(LOG)).unwrap();
        for byte in [start, start + 5, start + 9, start + HEADER + 3, end - 1] {
            let mut damaged = full.clone();
            damaged[byte] ^= 0x10;
            fs::write(dir.join(LOG), &damaged).unwrap();
            let err = FileStorage::open(&dir).unwrap().recover().unwrap_err();
            assert_eq!(err.kind(), StorageErrorKind::Corrupt, "byte {byte}: {err}");
            let msg = err.to_string();
            assert!(msg.contains(&format!("offset {start}")), "byte {byte}: {msg}");
            assert!(msg.contains(&dir.join(LOG).display().to_string()), "{msg}");
            assert_eq!(fs::read(dir.join(LOG)).unwrap(), damaged, "byte {byte}: file changed");
        }
        fs::remove_dir_all(&dir).unwrap();
    }

    /// Blocks a file system allocated but never wrote read as zeros after the last good record.
    #[test]
    fn a_zeroed_tail_is_cut() {
        let dir = temp_dir("zero-tail");
        let mut s = FileStorage::open(&dir).unwrap();
        s.append(&(1..=3).map(entry).collect::<Vec<_>>()).unwrap();
        let last_start = s.offsets[2].1 as usize;
        drop(s);
        let mut bytes = fs::read(dir.join(LOG)).unwrap();
        bytes.extend_from_slice(&[0; 4096]);
        fs::write(dir.join(LOG), &bytes).unwrap();
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(indices(&r), [1, 2, 3]);
        // The last record's payload zeroed out (its header written, its data block not).
        bytes.truncate(bytes.len() - 4096);
        bytes[last_start + HEADER..].fill(0);
        fs::write(dir.join(LOG), &bytes).unwrap();
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(indices(&r), [1, 2]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A write that fails half way (a full disk) leaves the file as before it, so later appends
    /// that succeed are all there after reopening.
    #[test]
    fn a_failed_append_leaves_the_log_as_it_was() {
        let dir = temp_dir("failed-append");
        let mut s = FileStorage::open(&dir).unwrap();
        s.append(&(1..=10).map(entry).collect::<Vec<_>>()).unwrap();
        let before = fs::read(dir.join(LOG)).unwrap();
        s.fail_next_write_after = Some(HEADER + 30);
        let err = s.append(&(11..=12).map(entry).collect::<Vec<_>>()).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Full, "{err}");
        assert!(std::error::Error::source(&err).is_some(), "the io::Error is kept");
        assert_eq!(fs::read(dir.join(LOG)).unwrap(), before);
        s.append(&[entry(11)]).unwrap();
        s.append(&(12..=16).map(entry).collect::<Vec<_>>()).unwrap();
        drop(s);
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(indices(&r), (1..=16).collect::<Vec<_>>());
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A storage that could not undo a failure refuses every call until reopened.
    #[test]
    fn an_unusable_storage_refuses_until_reopened() {
        let dir = temp_dir("unusable");
        let mut s = FileStorage::open(&dir).unwrap();
        s.append(&[entry(1)]).unwrap();
        s.unusable = Some("fsync failed".to_owned());
        let err = s.append(&[entry(2)]).unwrap_err();
        assert_eq!(err.kind(), StorageErrorKind::Unusable, "{err}");
        assert!(s.save_hard_state(&HardState::default()).is_err());
        assert!(s.truncate_from(1).is_err());
        drop(s);
        let r = FileStorage::open(&dir).unwrap().recover().unwrap().unwrap();
        assert_eq!(indices(&r), [1]);
        fs::remove_dir_all(&dir).unwrap();
    }

    /// The directories `open` creates, and the log file's entry, are fsynced in their parents.
    #[test]
    fn open_syncs_every_directory_it_creates_in() {
        let root = temp_dir("dir-sync");
        fs::create_dir_all(&root).unwrap();
        let dir = root.join("a").join("b");
        let s = FileStorage::open(&dir).unwrap();
        for d in [dir.clone(), root.join("a"), root.clone()] {
            assert!(s.synced_dirs.contains(&d), "{} not synced: {:?}", d.display(), s.synced_dirs);
        }
        drop(s);
        // Reopening an existing directory still syncs it (the log file may have been created).
        let s = FileStorage::open(&dir).unwrap();
        assert_eq!(s.synced_dirs, [dir]);
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_corrupt_hard_state_is_an_error_not_a_silent_reset() {
        let dir = temp_dir("corrupt");
        let mut s = FileStorage::open(&dir).unwrap();
        s.save_hard_state(&HardState { term: 9, voted_for: None, recovering: false }).unwrap();
        let mut bytes = fs::read(dir.join("hardstate")).unwrap();
        bytes[0] ^= 0xff;
        fs::write(dir.join("hardstate"), bytes).unwrap();
        drop(s);
        let err = FileStorage::open(&dir).unwrap().recover().unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
