//! An online backup over the mux endpoint: the leader encodes one revision's state as a backup
//! file and hands it out in pieces an admin asks for one at a time, so that neither side sends
//! or holds a frame the size of the state, and writes go on meanwhile.
//!
//! One endpoint holds at most one encoded backup: a second one asked for while the first is
//! still being fetched is refused as busy, and one nobody has fetched from for
//! [`IDLE_BACKUP`] is dropped for the next. So a client that starts backups and never reads
//! them costs one state's size, not one per request.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncWrite, AsyncWriteExt};

use crate::backup::{BackupHeader, encode_backup};
use crate::client_error::ClientError;
use crate::driver::{Failure, NodeHandle, StoreError};

/// A piece of a backup: as large as a snapshot's pieces between nodes.
pub(crate) const BACKUP_PIECE_BYTES: u64 = 4 << 20;
/// A held backup nobody has fetched a piece of for this long may be replaced.
pub(crate) const IDLE_BACKUP: Duration = Duration::from_secs(30);
/// The longest a node works on taking a backup, whatever the client asks.
pub(crate) const MAX_BACKUP_DEADLINE: Duration = Duration::from_secs(600);

/// What a node answers to a backup request: where to fetch it from.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BackupStarted {
    pub(crate) transfer: u64,
    pub(crate) header: BackupHeader,
    pub(crate) total_bytes: u64,
}

struct Held {
    transfer: u64,
    file: Bytes,
    last_used: Instant,
}

/// The backup an endpoint holds for the admin fetching it.
#[derive(Default)]
pub(crate) struct BackupSlot {
    held: tokio::sync::Mutex<Option<Held>>,
    next_transfer: AtomicU64,
}

impl BackupSlot {
    /// Takes a backup on `node` (the leader) and holds it encoded for fetching.
    pub(crate) async fn start(
        &self,
        node: &NodeHandle,
        deadline: Duration,
    ) -> Result<BackupStarted, StoreError> {
        // Held across the taking: a second request waits here, then finds this one's backup
        // being fetched and is refused, instead of encoding a second copy beside it.
        let mut held = self.held.lock().await;
        if let Some(other) = held.as_ref().filter(|h| h.last_used.elapsed() < IDLE_BACKUP) {
            return Err(StoreError::Busy(format!(
                "node {} is sending another backup ({} bytes); try again once it is fetched or \
                 after {}s without a fetch",
                node.id(),
                other.file.len(),
                IDLE_BACKUP.as_secs()
            )));
        }
        *held = None;
        let snapshot = node.backup(deadline.min(MAX_BACKUP_DEADLINE)).await?;
        let taken_from = node.id();
        let taken_at = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        // Encoding a large state takes a while: off the runtime's workers, which run the node.
        let (header, file) =
            tokio::task::spawn_blocking(move || encode_backup(&snapshot, taken_from, taken_at))
                .await
                .map_err(|e| {
                    StoreError::Backend(Failure::with_source("encoding the backup failed", e))
                })?;
        let transfer = self.next_transfer.fetch_add(1, Ordering::Relaxed) + 1;
        let total_bytes = file.len() as u64;
        tracing::info!(
            node = taken_from,
            revision = header.revision,
            keys = header.keys,
            bytes = total_bytes,
            "a backup was taken; holding it for the admin who asked"
        );
        *held = Some(Held { transfer, file: Bytes::from(file), last_used: Instant::now() });
        Ok(BackupStarted { transfer, header, total_bytes })
    }

    /// Lets `transfer` go if it is still held (its fetcher disconnected); skipped when the
    /// slot is busy, and then the idle rule lets it go.
    pub(crate) fn release(&self, transfer: u64) {
        if let Ok(mut held) = self.held.try_lock()
            && held.as_ref().is_some_and(|h| h.transfer == transfer)
        {
            *held = None;
        }
    }

    /// The piece of `transfer` from `offset`; the backup is let go once its last piece is out.
    pub(crate) async fn piece(&self, transfer: u64, offset: u64) -> Result<Bytes, StoreError> {
        let mut slot = self.held.lock().await;
        let Some(held) = slot.as_mut().filter(|h| h.transfer == transfer) else {
            return Err(StoreError::Client(ClientError::Invalid(format!(
                "no backup {transfer} is held here: it was fetched, replaced after {}s without \
                 a fetch, or asked of another node",
                IDLE_BACKUP.as_secs()
            ))));
        };
        let len = held.file.len() as u64;
        if offset >= len {
            return Err(StoreError::Client(ClientError::Invalid(format!(
                "offset {offset} is past the backup's {len} bytes"
            ))));
        }
        let end = (offset + BACKUP_PIECE_BYTES).min(len);
        let piece = held.file.slice(
            usize::try_from(offset).expect("below len")..usize::try_from(end).expect("at most len"),
        );
        held.last_used = Instant::now();
        if end == len {
            *slot = None;
        }
        Ok(piece)
    }
}

/// Checks a backup as it streams past: its length, and the checksum at its end over every
/// byte before it, so that a client finds a damaged transfer before it reports success.
pub(crate) struct StreamCheck {
    hasher: Sha256,
    total: u64,
    seen: u64,
    tail: Vec<u8>,
}

const CHECKSUM_BYTES: u64 = 32;

impl StreamCheck {
    pub(crate) fn new(total: u64) -> Self {
        Self { hasher: Sha256::new(), total, seen: 0, tail: Vec::new() }
    }

    /// Feeds a piece; the checksum's own bytes are kept aside.
    pub(crate) fn feed(&mut self, piece: &[u8]) {
        let body_end = self.total.saturating_sub(CHECKSUM_BYTES);
        let before = usize::try_from(body_end.saturating_sub(self.seen))
            .unwrap_or(usize::MAX)
            .min(piece.len());
        self.hasher.update(&piece[..before]);
        self.tail.extend_from_slice(&piece[before..]);
        self.seen += piece.len() as u64;
    }

    pub(crate) fn finish(self) -> Result<(), StoreError> {
        if self.seen != self.total || self.tail.len() as u64 != CHECKSUM_BYTES {
            return Err(StoreError::Backend(Failure::new(format!(
                "the backup arrived with {} of its {} bytes",
                self.seen, self.total
            ))));
        }
        if self.hasher.finalize().as_slice() != self.tail.as_slice() {
            return Err(StoreError::Backend(Failure::new(
                "the backup arrived damaged: its checksum does not match its bytes",
            )));
        }
        Ok(())
    }
}

/// Writes `piece` to `out`, mapping a failed write to the caller's error.
pub(crate) async fn write_piece(
    out: &mut (impl AsyncWrite + Unpin),
    piece: &[u8],
) -> Result<(), StoreError> {
    out.write_all(piece)
        .await
        .map_err(|e| StoreError::Backend(Failure::with_source("cannot write the backup", e)))
}
