//! Durable storage in a directory (feature `file-storage`), for hosts that must survive a
//! whole-cluster restart.
//!
//! - `hardstate`: term and vote, replaced atomically (write a temporary file, fsync, rename,
//!   fsync the directory).
//! - `snapshot`: the latest snapshot, replaced the same way.
//! - `log`: append-only records `[u32 length][u32 CRC-32 of the payload][payload]`
//!   (little-endian; payload is the msgpack entry), fsynced on every append. A crash can leave a
//!   torn or garbled last record; recovery keeps every record before it and cuts the file there.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::log::{Entry, Snapshot};
use crate::storage::{HardState, Recovered, Storage, StorageError};
use crate::types::LogIndex;

const HEADER: usize = 8;

fn io(what: &str, path: &Path, err: &std::io::Error) -> StorageError {
    StorageError(format!("{what} {}: {err}", path.display()))
}

/// Storage in a directory; see the module docs for the layout.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
    log: File,
    /// `(index, byte offset)` of every record in the log file.
    offsets: Vec<(LogIndex, u64)>,
    len: u64,
}

impl FileStorage {
    /// Opens (creating if needed) storage in `dir`.
    ///
    /// # Errors
    /// When the directory or log file cannot be opened.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, StorageError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, &e))?;
        let path = dir.join("log");
        let log = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, &e))?;
        Ok(Self { dir, log, offsets: Vec::new(), len: 0 })
    }

    fn replace_file(&self, name: &str, bytes: &[u8]) -> Result<(), StorageError> {
        let path = self.dir.join(name);
        let tmp = self.dir.join(format!("{name}.tmp"));
        let mut f = File::create(&tmp).map_err(|e| io("cannot create", &tmp, &e))?;
        f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("cannot write", &tmp, &e))?;
        fs::rename(&tmp, &path).map_err(|e| io("cannot rename", &tmp, &e))?;
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync", &self.dir, &e))
    }

    fn read_checked<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, StorageError> {
        let path = self.dir.join(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read", &path, &e)),
        };
        let (payload, crc) = bytes.split_at(bytes.len().saturating_sub(4));
        let expected = crc
            .try_into()
            .map(u32::from_le_bytes)
            .map_err(|_| StorageError(format!("{} is truncated", path.display())))?;
        if crc32fast::hash(payload) != expected {
            return Err(StorageError(format!("{} is corrupt (checksum mismatch)", path.display())));
        }
        rmp_serde::from_slice(payload)
            .map(Some)
            .map_err(|e| StorageError(format!("{} is corrupt: {e}", path.display())))
    }

    fn checked_bytes<T: Serialize>(value: &T) -> Vec<u8> {
        let mut bytes = rmp_serde::to_vec(value).expect("storage types serialize");
        let crc = crc32fast::hash(&bytes);
        bytes.extend_from_slice(&crc.to_le_bytes());
        bytes
    }

    /// Reads log records from the start, stopping at the first torn or corrupt one, and cuts
    /// the file there.
    fn scan_log(&mut self) -> Result<Vec<Entry>, StorageError> {
        let path = self.dir.join("log");
        let mut bytes = Vec::new();
        File::open(&path)
            .and_then(|mut f| f.read_to_end(&mut bytes))
            .map_err(|e| io("cannot read", &path, &e))?;
        let mut entries = Vec::new();
        self.offsets.clear();
        let mut at = 0usize;
        while at + HEADER <= bytes.len() {
            let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
            let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
            let Some(payload) = bytes.get(at + HEADER..at + HEADER + len) else { break };
            if crc32fast::hash(payload) != crc {
                break;
            }
            let Ok(entry) = rmp_serde::from_slice::<Entry>(payload) else { break };
            self.offsets.push((entry.index, at as u64));
            entries.push(entry);
            at += HEADER + len;
        }
        if at < bytes.len() {
            // A torn or garbled tail: a write the crash interrupted, never acknowledged.
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| io("cannot open", &path, &e))?;
            f.set_len(at as u64)
                .and_then(|()| f.sync_all())
                .map_err(|e| io("cannot truncate", &path, &e))?;
        }
        self.len = at as u64;
        Ok(entries)
    }

    fn rewrite_log(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        for e in entries {
            push_record(&mut bytes, e);
        }
        self.replace_file("log", &bytes)?;
        let path = self.dir.join("log");
        self.log = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io("cannot open", &path, &e))?;
        self.scan_log().map(|_| ())
    }
}

fn push_record(out: &mut Vec<u8>, entry: &Entry) {
    let payload = rmp_serde::to_vec(entry).expect("entries serialize");
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
    out.extend_from_slice(&payload);
}

impl Storage for FileStorage {
    fn recover(&mut self) -> Result<Option<Recovered>, StorageError> {
        let hard_state: Option<HardState> = self.read_checked("hardstate")?;
        let snapshot: Option<Snapshot> = self.read_checked("snapshot")?;
        let entries = self.scan_log()?;
        if hard_state.is_none() && snapshot.is_none() && entries.is_empty() {
            return Ok(None);
        }
        Ok(Some(Recovered { hard_state: hard_state.unwrap_or_default(), snapshot, entries }))
    }

    fn save_hard_state(&mut self, state: &HardState) -> Result<(), StorageError> {
        self.replace_file("hardstate", &Self::checked_bytes(state))
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        let mut bytes = Vec::new();
        for e in entries {
            let at = self.len + bytes.len() as u64;
            push_record(&mut bytes, e);
            self.offsets.push((e.index, at));
        }
        let path = self.dir.join("log");
        self.log
            .write_all(&bytes)
            .and_then(|()| self.log.sync_data())
            .map_err(|e| io("cannot append to", &path, &e))?;
        self.len += bytes.len() as u64;
        Ok(())
    }

    fn truncate_from(&mut self, index: LogIndex) -> Result<(), StorageError> {
        let Some(pos) = self.offsets.iter().position(|(i, _)| *i >= index) else { return Ok(()) };
        let at = self.offsets[pos].1;
        let path = self.dir.join("log");
        self.log
            .set_len(at)
            .and_then(|()| self.log.sync_all())
            .map_err(|e| io("cannot truncate", &path, &e))?;
        self.offsets.truncate(pos);
        self.len = at;
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.replace_file("snapshot", &Self::checked_bytes(snapshot))?;
        let entries = self.scan_log()?;
        let kept: Vec<Entry> =
            entries.into_iter().filter(|e| e.index > snapshot.last_index).collect();
        self.rewrite_log(&kept)
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
    fn round_trip_and_truncate() {
        let dir = temp_dir("round-trip");
        let mut s = FileStorage::open(&dir).unwrap();
        assert_eq!(s.recover().unwrap(), None);
        s.save_hard_state(&HardState { term: 3, voted_for: Some(2) }).unwrap();
        s.append(&(1..=5).map(entry).collect::<Vec<_>>()).unwrap();
        s.truncate_from(4).unwrap();
        s.append(&[entry(4)]).unwrap();
        drop(s);
        let mut again = FileStorage::open(&dir).unwrap();
        let r = again.recover().unwrap().unwrap();
        assert_eq!(r.hard_state, HardState { term: 3, voted_for: Some(2) });
        assert_eq!(r.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [1, 2, 3, 4]);
        let snap = Snapshot { last_index: 2, last_term: 1, state: crate::kv::KvState::default() };
        again.save_snapshot(&snap).unwrap();
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

    #[test]
    fn a_corrupt_hard_state_is_an_error_not_a_silent_reset() {
        let dir = temp_dir("corrupt");
        let mut s = FileStorage::open(&dir).unwrap();
        s.save_hard_state(&HardState { term: 9, voted_for: None }).unwrap();
        let mut bytes = fs::read(dir.join("hardstate")).unwrap();
        bytes[0] ^= 0xff;
        fs::write(dir.join("hardstate"), bytes).unwrap();
        let err = FileStorage::open(&dir).unwrap().recover().unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
