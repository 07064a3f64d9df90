//! The backup file (feature `backup`): the whole state at one committed revision, checksummed
//! and versioned, as `quorum_ctl snapshot save` writes it and `snapshot restore` reads it.
//!
//! ```text
//! "PLUSQBAK"            8 bytes
//! format version        u32, little-endian (BACKUP_FORMAT_VERSION)
//! header length         u32, little-endian
//! header                msgpack of BackupHeader
//! payload               msgpack of Snapshot, header.payload_bytes long
//! sha256                32 bytes, of everything before it
//! ```
//!
//! The checksum comes last so that a writer can stream the file; a reader finds a file cut
//! anywhere short (the header names the payload's length) and a flipped bit anywhere
//! (the checksum covers the header too). A file of another format version is refused by name,
//! never guessed at.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{LogIndex, NodeId, Term};
use crate::log::Snapshot;

const MAGIC: &[u8; 8] = b"PLUSQBAK";
/// The format this build writes, and the only one it reads.
pub const BACKUP_FORMAT_VERSION: u32 = 1;
/// A header longer than this is not one of ours (it holds a few numbers and the members).
const MAX_HEADER_BYTES: u32 = 1 << 20;
const CHECKSUM_BYTES: usize = 32;

/// What a backup says about itself, readable without decoding the state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupHeader {
    /// The revision it holds the state at (the last applied log index): every write
    /// acknowledged at or before it is in the backup.
    pub revision: LogIndex,
    /// The term of that log entry.
    pub term: Term,
    /// Keys in the state.
    pub keys: u64,
    /// Live leases in the state.
    pub leases: u64,
    /// The voters of the cluster it was taken from.
    pub voters: Vec<NodeId>,
    /// The node that answered (the leader at the time).
    pub taken_from: NodeId,
    /// When, in milliseconds since the Unix epoch, by that node's clock.
    pub taken_at_unix_ms: u64,
    /// The state's digest ([`KvState::digest`](crate::KvState::digest)), hex: a restored
    /// replica whose digest matches holds exactly this state.
    pub state_digest: String,
    /// The payload's length in bytes.
    pub payload_bytes: u64,
}

/// Why a file is not a usable backup. Each names what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// It does not start as a backup does.
    #[error("not a plus-quorum backup: it does not start with PLUSQBAK")]
    NotABackup,
    /// Written in a format this build does not read.
    #[error("backup format version {found}, this build reads version {supported} only")]
    UnsupportedVersion {
        /// The file's.
        found: u32,
        /// This build's.
        supported: u32,
    },
    /// It ends before the header says it should (a copy cut short, a disk that filled up).
    #[error("the backup is truncated: {what}")]
    Truncated {
        /// What is missing.
        what: String,
    },
    /// Its bytes are not the ones written.
    #[error("the backup's checksum does not match: expected {expected}, computed {computed}")]
    ChecksumMismatch {
        /// The checksum stored in the file.
        expected: String,
        /// The checksum of what was read.
        computed: String,
    },
    /// The checksum matches but the content does not decode (written by a faulty writer).
    #[error("the backup's {part} does not decode: {reason}")]
    Malformed {
        /// `header` or `state`.
        part: &'static str,
        /// The decoder's words.
        reason: String,
    },
    /// The file could not be read.
    #[error("cannot read the backup: {0}")]
    Io(String),
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Encodes `snapshot`, taken from node `taken_from` at `taken_at_unix_ms`, as a backup file;
/// with the header it holds.
#[must_use]
pub fn encode_backup(
    snapshot: &Snapshot,
    taken_from: NodeId,
    taken_at_unix_ms: u64,
) -> (BackupHeader, Vec<u8>) {
    let payload = rmp_serde::to_vec(snapshot).expect("snapshots serialize");
    let header = BackupHeader {
        revision: snapshot.last_index,
        term: snapshot.last_term,
        keys: snapshot.state.len() as u64,
        leases: snapshot.state.leases().count() as u64,
        voters: snapshot
            .membership
            .as_ref()
            .map(|m| m.voters().iter().copied().collect())
            .unwrap_or_default(),
        taken_from,
        taken_at_unix_ms,
        state_digest: hex(&snapshot.state.digest()),
        payload_bytes: payload.len() as u64,
    };
    let encoded = rmp_serde::to_vec(&header).expect("headers serialize");
    let header_len = u32::try_from(encoded.len()).expect("a header of a few numbers");
    let mut file = Vec::with_capacity(16 + encoded.len() + payload.len() + CHECKSUM_BYTES);
    file.extend_from_slice(MAGIC);
    file.extend_from_slice(&BACKUP_FORMAT_VERSION.to_le_bytes());
    file.extend_from_slice(&header_len.to_le_bytes());
    file.extend_from_slice(&encoded);
    file.extend_from_slice(&payload);
    let checksum = Sha256::digest(&file);
    file.extend_from_slice(&checksum);
    (header, file)
}

/// Reads exactly `buf.len()` bytes, hashing them; a short read is [`BackupError::Truncated`].
fn read_hashed(
    reader: &mut impl Read,
    hasher: &mut Sha256,
    buf: &mut [u8],
    what: &str,
) -> Result<(), BackupError> {
    reader.read_exact(buf).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated { what: format!("{what} is cut short") }
        }
        _ => BackupError::Io(e.to_string()),
    })?;
    hasher.update(&*buf);
    Ok(())
}

/// Reads a backup from `reader`, checking its version, length and checksum before anything is
/// decoded; `keep_state` false checks the whole file but keeps only its header (`snapshot
/// status` on a file larger than memory would like).
fn read_from(
    reader: &mut impl Read,
    keep_state: bool,
) -> Result<(BackupHeader, Option<Snapshot>), BackupError> {
    let mut hasher = Sha256::new();
    let mut magic = [0u8; 8];
    read_hashed(reader, &mut hasher, &mut magic, "the file").map_err(|e| match e {
        BackupError::Truncated { .. } => BackupError::NotABackup,
        other => other,
    })?;
    if &magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let mut word = [0u8; 4];
    read_hashed(reader, &mut hasher, &mut word, "the format version")?;
    let version = u32::from_le_bytes(word);
    if version != BACKUP_FORMAT_VERSION {
        return Err(BackupError::UnsupportedVersion {
            found: version,
            supported: BACKUP_FORMAT_VERSION,
        });
    }
    read_hashed(reader, &mut hasher, &mut word, "the header's length")?;
    let header_len = u32::from_le_bytes(word);
    if header_len > MAX_HEADER_BYTES {
        return Err(BackupError::Malformed {
            part: "header",
            reason: format!("a header of {header_len} bytes (at most {MAX_HEADER_BYTES})"),
        });
    }
    let mut header_bytes = vec![0u8; header_len as usize];
    read_hashed(reader, &mut hasher, &mut header_bytes, "the header")?;
    // Decoded before the checksum is checked only to learn the payload's length; nothing
    // it says is acted on until the checksum matches.
    let header: BackupHeader = rmp_serde::from_slice(&header_bytes)
        .map_err(|e| BackupError::Malformed { part: "header", reason: e.to_string() })?;
    let mut payload = Vec::new();
    let mut remaining = header.payload_bytes;
    let mut piece = vec![0u8; 1 << 20];
    while remaining > 0 {
        let n = usize::try_from(remaining.min(piece.len() as u64)).expect("at most 1 MiB");
        read_hashed(reader, &mut hasher, &mut piece[..n], "the state")?;
        if keep_state {
            payload.extend_from_slice(&piece[..n]);
        }
        remaining -= n as u64;
    }
    let mut stored = [0u8; CHECKSUM_BYTES];
    reader.read_exact(&mut stored).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => {
            BackupError::Truncated { what: "the checksum at its end is missing".to_owned() }
        }
        _ => BackupError::Io(e.to_string()),
    })?;
    let computed = hasher.finalize();
    if computed.as_slice() != stored {
        return Err(BackupError::ChecksumMismatch {
            expected: hex(&stored),
            computed: hex(&computed),
        });
    }
    let mut rest = [0u8; 1];
    if reader.read(&mut rest).map_err(|e| BackupError::Io(e.to_string()))? != 0 {
        return Err(BackupError::Malformed {
            part: "state",
            reason: "bytes after the checksum".to_owned(),
        });
    }
    if !keep_state {
        return Ok((header, None));
    }
    let snapshot: Snapshot = rmp_serde::from_slice(&payload)
        .map_err(|e| BackupError::Malformed { part: "state", reason: e.to_string() })?;
    if snapshot.last_index != header.revision {
        return Err(BackupError::Malformed {
            part: "state",
            reason: format!(
                "the state is at revision {}, the header says {}",
                snapshot.last_index, header.revision
            ),
        });
    }
    Ok((header, Some(snapshot)))
}

/// Decodes a whole backup held in memory.
///
/// # Errors
/// [`BackupError`]: not a backup, another format version, cut short, a checksum that does not
/// match, or content that does not decode.
pub fn decode_backup(bytes: &[u8]) -> Result<(BackupHeader, Snapshot), BackupError> {
    let (header, snapshot) = read_from(&mut &bytes[..], true)?;
    Ok((header, snapshot.expect("kept")))
}

/// Reads and checks the backup file at `path`.
///
/// # Errors
/// As [`decode_backup`], and [`BackupError::Io`] when the file cannot be read.
pub fn read_backup_file(path: &Path) -> Result<(BackupHeader, Snapshot), BackupError> {
    let file = std::fs::File::open(path)
        .map_err(|e| BackupError::Io(format!("{}: {e}", path.display())))?;
    let (header, snapshot) = read_from(&mut std::io::BufReader::new(file), true)?;
    Ok((header, snapshot.expect("kept")))
}

/// Checks the backup file at `path` whole (version, length, checksum) and returns its header,
/// holding at most a megabyte of it in memory at a time.
///
/// # Errors
/// As [`read_backup_file`].
pub fn verify_backup_file(path: &Path) -> Result<BackupHeader, BackupError> {
    let file = std::fs::File::open(path)
        .map_err(|e| BackupError::Io(format!("{}: {e}", path.display())))?;
    read_from(&mut std::io::BufReader::new(file), false).map(|(header, _)| header)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kv::KvState;
    use crate::membership::Membership;
    use crate::ops::WriteOp;

    fn snapshot() -> Snapshot {
        let mut state = KvState::default();
        for i in 0..50u64 {
            state.apply(
                &WriteOp::Set { key: format!("k{i:02}"), value: format!("v{i}").into() },
                i + 1,
            );
        }
        state.take_changes();
        Snapshot {
            last_index: 50,
            last_term: 3,
            state,
            membership: Some(Membership::with_voters([1, 2, 3])),
        }
    }

    #[test]
    fn a_backup_reads_back_as_written() {
        let snapshot = snapshot();
        let (written, file) = encode_backup(&snapshot, 2, 1_700_000_000_000);
        let (header, read) = decode_backup(&file).unwrap();
        assert_eq!(read, snapshot);
        assert_eq!(header, written);
        assert_eq!((header.revision, header.term, header.keys, header.taken_from), (50, 3, 50, 2));
        assert_eq!(header.voters, vec![1, 2, 3]);
        assert_eq!(header.state_digest, hex(&snapshot.state.digest()));
    }

    #[test]
    fn every_cut_and_every_flipped_byte_is_refused() {
        let (_, file) = encode_backup(&snapshot(), 1, 0);
        for cut in 0..file.len() {
            let err = decode_backup(&file[..cut]).unwrap_err();
            assert!(
                matches!(err, BackupError::NotABackup | BackupError::Truncated { .. }),
                "cut at {cut}: {err}"
            );
        }
        for at in 0..file.len() {
            let mut bad = file.clone();
            bad[at] ^= 0x10;
            assert!(decode_backup(&bad).is_err(), "flipped byte {at} went unnoticed");
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(matches!(decode_backup(&longer), Err(BackupError::Malformed { .. })));
    }

    #[test]
    fn another_format_version_is_refused_by_number() {
        let (_, mut file) = encode_backup(&snapshot(), 1, 0);
        file[8..12].copy_from_slice(&7u32.to_le_bytes());
        assert_eq!(
            decode_backup(&file),
            Err(BackupError::UnsupportedVersion { found: 7, supported: BACKUP_FORMAT_VERSION })
        );
        assert_eq!(decode_backup(b"not a backup at all"), Err(BackupError::NotABackup));
    }
}
