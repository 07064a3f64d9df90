//! What a node must keep, and the in-memory reference implementation.

use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::ids::{LogIndex, NodeId, Term};
use crate::log::{Entry, Snapshot};

/// The vote state that must survive a restart for "one leader per term" to hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct HardState {
    /// The latest term this node has seen.
    pub term: Term,
    /// Whom it voted for in that term.
    pub voted_for: Option<NodeId>,
    /// Whether the node came back wiped and has not caught up since (see
    /// [`Start::Rejoin`](crate::Start::Rejoin)). Kept so that a wiped node restarted again
    /// before catching up, with a term or some entries on disk by then, still does not vote.
    #[serde(default)]
    pub recovering: bool,
}

/// Everything a node finds in its storage at start.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recovered {
    /// Term and vote.
    pub hard_state: HardState,
    /// The latest snapshot, if any.
    pub snapshot: Option<Snapshot>,
    /// Entries after the snapshot, in order.
    pub entries: Vec<Entry>,
}

/// What kind of storage failure happened, for a host that reacts differently to each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// Reading or writing failed (a bad disk, a failed fsync, a permission problem).
    Io,
    /// The device is full; freeing space and reopening may let the node go on.
    Full,
    /// Stored data is damaged where a crash cannot have left it: nothing was truncated, and an
    /// operator must decide (restore the replica from another, or replace the node).
    Corrupt,
    /// An earlier failure left the storage in a state it could not undo; every call is refused
    /// until it is reopened (and recovery decides what survived).
    Unusable,
    /// Another process has the storage open.
    Locked,
}

/// A storage failure; the node halts (it must not go on without what it failed to keep).
///
/// It says what failed and where (file and byte offset where there is one) and keeps the
/// underlying error as its [`source`](std::error::Error::source).
#[derive(Debug, Clone, thiserror::Error)]
#[error("storage failed: {message}")]
pub struct StorageError {
    kind: StorageErrorKind,
    message: String,
    #[source]
    source: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl StorageError {
    /// A failure of `kind`, described by `message` (what failed and where).
    #[must_use]
    pub fn new(kind: StorageErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), source: None }
    }

    /// The same failure, caused by `source`.
    #[must_use]
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// An I/O failure while doing `what` (e.g. "cannot append to /data/log"); a full device
    /// gets [`StorageErrorKind::Full`].
    #[must_use]
    pub fn io(what: impl Into<String>, err: std::io::Error) -> Self {
        let kind = match err.kind() {
            std::io::ErrorKind::StorageFull | std::io::ErrorKind::FileTooLarge => {
                StorageErrorKind::Full
            }
            _ => StorageErrorKind::Io,
        };
        Self::new(kind, format!("{}: {err}", what.into())).with_source(err)
    }

    /// What kind of failure this is.
    #[must_use]
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }
}

/// Where a node keeps its hard state, log and snapshot.
///
/// # Contract
/// The node never calls these itself: it hands its writes out as a
/// [`PersistBatch`](crate::PersistBatch) ([`Node::poll_persist`](crate::Node::poll_persist)),
/// and the host writes each batch in order ([`PersistBatch::write_to`](crate::PersistBatch::write_to)
/// calls these) and reports it with [`Node::persisted`](crate::Node::persisted) once it is as
/// durable as the implementation promises. The rule the node keeps:
///
/// - a message that depends on a write (a vote after its term and vote, an append
///   acknowledgement after its entries) leaves only once that write is reported durable;
/// - the leader's own replication to followers leaves at once, before its own write is durable
///   (etcd does the same), and the leader counts its own log toward commit only up to what is
///   reported durable.
///
/// So a host may write many batches (of many steps) and fsync once for all of them (group
/// commit). What must be durable for which guarantee:
///
/// - `save_hard_state` (term and vote): for at most one leader per term across restarts. If it
///   can be lost, start the node with [`Start::Rejoin`](crate::Start::Rejoin): it then votes only
///   after catching up from a leader that has committed since the restart.
/// - `append` and `truncate_from`: for acknowledged writes to survive the loss of a majority at
///   once (a whole-cluster restart). With memory-only storage, acknowledged writes survive any
///   failure of a minority.
/// - `save_snapshot`: as `append`, for the entries it replaces.
///
/// An error halts the node.
pub trait Storage: Send {
    /// What is stored; `None` when nothing is (a new node, or one whose memory was wiped).
    ///
    /// # Errors
    /// When stored data cannot be read.
    fn recover(&mut self) -> Result<Option<Recovered>, StorageError>;
    /// Keeps term and vote.
    ///
    /// # Errors
    /// When it cannot be kept.
    fn save_hard_state(&mut self, state: &HardState) -> Result<(), StorageError>;
    /// Appends entries (their indices follow the last stored one).
    ///
    /// # Errors
    /// When they cannot be kept.
    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError>;
    /// Drops stored entries from `index` on.
    ///
    /// # Errors
    /// When it cannot be done.
    fn truncate_from(&mut self, index: LogIndex) -> Result<(), StorageError>;
    /// Keeps a snapshot; entries it covers may be dropped.
    ///
    /// # Errors
    /// When it cannot be kept.
    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;
    /// Whether a write waits for a device (an fsync). The tokio driver then writes on a
    /// blocking thread, goes on handling messages and requests meanwhile, and writes
    /// everything they added in one batch once the write in flight is done: group commit.
    /// Default false (the driver writes inline, as for memory).
    fn writes_block(&self) -> bool {
        false
    }

    /// A writer for the snapshots the node takes of its own applied entries that works while
    /// appends go on, for storages whose snapshot write is long (the whole state, fsynced: four
    /// seconds for 600 MB on a shared disk, every append waiting behind it). The tokio driver
    /// (for a storage whose writes block) then writes such a snapshot with it on a thread of
    /// its own, one at a time, and calls [`Storage::snapshot_written`] once it is durable.
    /// Snapshots installed from a leader are written in order with the log, by
    /// [`Storage::save_snapshot`], after any such write has finished. Default `None`: every
    /// snapshot is written in order with the log.
    fn snapshot_writer(&self) -> Option<Box<dyn SnapshotWriter>> {
        None
    }

    /// The [`Storage::snapshot_writer`] made a snapshot up to `last_index` durable: entries it
    /// covers may be dropped from the log now. A `last_index` below the snapshot kept changes
    /// nothing.
    ///
    /// # Errors
    /// When the log cannot be compacted.
    fn snapshot_written(&mut self, last_index: LogIndex) -> Result<(), StorageError> {
        let _ = last_index;
        Ok(())
    }
}

/// Writes snapshots beside the log's appends: see [`Storage::snapshot_writer`].
pub trait SnapshotWriter: Send + 'static {
    /// Makes `snapshot` durable, replacing the one kept, without touching the log. The driver
    /// calls it one snapshot at a time, each newer than the last.
    ///
    /// # Errors
    /// When it cannot be kept (the node then halts, as for any storage error).
    fn write(&mut self, snapshot: &Snapshot) -> Result<(), StorageError>;
}

/// Memory-only storage (the source talk's store is memory-only), the default.
///
/// Clones share the same data: a host (or a test) that keeps a clone and hands it to a restarted
/// node models "process restarted, memory kept"; a fresh `MemStorage` models "memory wiped".
#[derive(Debug, Clone, Default)]
pub struct MemStorage {
    data: Arc<Mutex<Option<Recovered>>>,
}

impl MemStorage {
    /// Empty storage.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut Recovered) -> T) -> T {
        let mut guard = self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(guard.get_or_insert_with(Recovered::default))
    }
}

impl Storage for MemStorage {
    fn recover(&mut self) -> Result<Option<Recovered>, StorageError> {
        Ok(self.data.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone())
    }

    fn save_hard_state(&mut self, state: &HardState) -> Result<(), StorageError> {
        self.with(|d| d.hard_state = *state);
        Ok(())
    }

    fn append(&mut self, entries: &[Entry]) -> Result<(), StorageError> {
        self.with(|d| d.entries.extend_from_slice(entries));
        Ok(())
    }

    fn truncate_from(&mut self, index: LogIndex) -> Result<(), StorageError> {
        self.with(|d| d.entries.retain(|e| e.index < index));
        Ok(())
    }

    fn save_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), StorageError> {
        self.with(|d| {
            d.entries.retain(|e| e.index > snapshot.last_index);
            d.snapshot = Some(snapshot.clone());
        });
        Ok(())
    }
}
