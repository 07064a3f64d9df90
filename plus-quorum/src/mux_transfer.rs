//! Bodies too large for one plus-mux frame (a snapshot of a large state), sent in pieces and
//! put back together on the receiving node; a transfer cut half-way resumes where it stopped.
//!
//! The receiver keeps one transfer per sending node, across that node's connections, so that a
//! sender whose connection was cut asks what is already there ([`Assemblies::held`]) and sends
//! only the rest. That needs the same bytes: the leader resends the very snapshot message it sent
//! before (see the node's replication), which encodes to the same body.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::ids::NodeId;

/// An encoded batch larger than this travels in pieces of this size, each its own frame.
pub(crate) const CHUNK_BYTES: usize = 4 << 20;

/// The largest body a transfer in pieces may carry: a node holds the pieces until the last one
/// arrives (and lz4's size prefix, 32 bits, bounds it anyway).
pub(crate) const MAX_TRANSFER_BYTES: u64 = u32::MAX as u64;

/// How long a transfer may go without a piece before a transfer its sender numbered lower may
/// replace it: a sender that restarted numbers its transfers anew.
const STALE_AFTER: Duration = Duration::from_secs(10);

/// How long the pieces of a transfer outlive the connection that brought them without another
/// piece: long enough for the sender to reconnect and resume, short enough that a sender that
/// is gone does not leave a state's worth of memory behind.
pub(crate) const RESUME_WINDOW: Duration = Duration::from_secs(60);

/// Why a piece was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct PieceError(pub(crate) String);

/// `body` cut into pieces of [`CHUNK_BYTES`]: each piece's offset and bytes.
pub(crate) fn pieces(body: &Bytes) -> impl Iterator<Item = (u64, Bytes)> + '_ {
    (0..body.len())
        .step_by(CHUNK_BYTES)
        .map(|start| (start as u64, body.slice(start..(start + CHUNK_BYTES).min(body.len()))))
}

/// A first transfer number for a sender starting now: above any a previous run of it used (the
/// wall clock in nanoseconds), so a receiver still holding that run's transfer takes the new
/// one as newer.
pub(crate) fn first_transfer_number() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX / 2))
}

/// One transfer being put back together. Pieces may be handled out of order (large bodies are
/// decoded on blocking threads, and a resumed transfer's pieces come on another connection), so
/// they are kept by offset until every byte is there.
#[derive(Debug, Default)]
pub(crate) struct Assembly {
    transfer: u64,
    total: u64,
    received: u64,
    pieces: BTreeMap<u64, Bytes>,
    last_piece: Option<Instant>,
}

impl Assembly {
    /// Adds a piece; the whole body once every piece is in. A piece of a newer transfer starts
    /// over (the protocol resends what was lost); one of an older transfer is refused, unless
    /// the one held has had no piece for a while (its sender restarted); a piece already held
    /// is ignored (a resumed transfer may send it again).
    fn add(
        &mut self,
        transfer: u64,
        offset: u64,
        total: u64,
        bytes: Bytes,
        now: Instant,
    ) -> Result<Option<Vec<u8>>, PieceError> {
        if total > MAX_TRANSFER_BYTES {
            return Err(PieceError(format!(
                "a transfer of {total} bytes, above {MAX_TRANSFER_BYTES}"
            )));
        }
        if offset.checked_add(bytes.len() as u64).is_none_or(|end| end > total) {
            return Err(PieceError("a piece past its transfer's end".into()));
        }
        if transfer != self.transfer || self.pieces.is_empty() && self.received == 0 {
            let stale = self.last_piece.is_none_or(|at| now.duration_since(at) >= STALE_AFTER);
            if transfer < self.transfer && !stale {
                return Err(PieceError(format!(
                    "a piece of transfer {transfer}, replaced by {}",
                    self.transfer
                )));
            }
            *self = Self { transfer, total, ..Self::default() };
        }
        if total != self.total {
            *self = Self::default();
            return Err(PieceError("pieces of one transfer disagree on its size".into()));
        }
        self.last_piece = Some(now);
        if let Some(held) = self.pieces.get(&offset) {
            if held.len() == bytes.len() {
                return Ok(None);
            }
            return Err(PieceError(format!(
                "piece at {offset} of transfer {transfer} twice, with another length"
            )));
        }
        self.received += bytes.len() as u64;
        self.pieces.insert(offset, bytes);
        if self.received < self.total {
            return Ok(None);
        }
        let pieces = std::mem::take(&mut self.pieces);
        // Only its number is kept: older transfers' late pieces are still refused.
        *self = Self { transfer, last_piece: Some(now), ..Self::default() };
        let mut whole = Vec::with_capacity(usize::try_from(total).unwrap_or(0));
        for (offset, piece) in pieces {
            if offset != whole.len() as u64 {
                return Err(PieceError(format!("transfer {transfer} has overlapping pieces")));
            }
            whole.extend_from_slice(&piece);
        }
        Ok(Some(whole))
    }

    /// How many bytes from the start of `transfer` (of `total` bytes) are held, in one run.
    fn held(&self, transfer: u64, total: u64) -> u64 {
        if (transfer, total) != (self.transfer, self.total) {
            return 0;
        }
        let mut end = 0;
        for (&offset, piece) in &self.pieces {
            if offset != end {
                break;
            }
            end += piece.len() as u64;
        }
        end
    }
}

/// The transfer in pieces arriving from each sending node, whatever connection brings it.
#[derive(Debug, Default)]
pub(crate) struct Assemblies {
    by_sender: HashMap<NodeId, Assembly>,
}

impl Assemblies {
    /// [`Assembly::add`] for `from`'s transfer.
    pub(crate) fn add(
        &mut self,
        from: NodeId,
        transfer: u64,
        offset: u64,
        total: u64,
        bytes: Bytes,
    ) -> Result<Option<Vec<u8>>, PieceError> {
        self.by_sender.entry(from).or_default().add(transfer, offset, total, bytes, Instant::now())
    }

    /// Lets go of `from`'s pieces if none came for `idle` (its connection ended and it did not
    /// come back to resume); the transfer's number is kept, so its late pieces are still
    /// refused.
    pub(crate) fn forget_idle(&mut self, from: NodeId, idle: Duration, now: Instant) {
        if let Some(assembly) = self.by_sender.get_mut(&from)
            && assembly.last_piece.is_none_or(|at| now.duration_since(at) >= idle)
        {
            assembly.pieces.clear();
            assembly.received = 0;
        }
    }

    /// How many bytes from its start `from`'s `transfer` of `total` bytes has here, in one run:
    /// where a resumed transfer starts again.
    pub(crate) fn held(&self, from: NodeId, transfer: u64, total: u64) -> u64 {
        self.by_sender.get(&from).map_or(0, |a| a.held(transfer, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(len: usize) -> Bytes {
        Bytes::from(vec![0u8; len])
    }

    #[test]
    fn pieces_come_back_whole_in_any_order_and_bad_ones_are_refused() {
        let body = Bytes::from((0..(CHUNK_BYTES * 2 + 5)).map(|i| i as u8).collect::<Vec<_>>());
        let cut: Vec<(u64, Bytes)> = pieces(&body).collect();
        assert_eq!(cut.len(), 3);
        let total = body.len() as u64;
        let mut assemblies = Assemblies::default();
        let mut whole = None;
        for (offset, bytes) in cut.into_iter().rev() {
            whole = assemblies.add(2, 9, offset, total, bytes).unwrap();
        }
        assert_eq!(whole.expect("the last piece completes it"), body.to_vec());

        let now = Instant::now();
        let mut assembly = Assembly::default();
        assert_eq!(assembly.add(1, 0, 8, piece(4), now).unwrap(), None);
        assert_eq!(assembly.add(1, 0, 8, piece(4), now).unwrap(), None, "again: ignored");
        assert!(assembly.add(1, 0, 8, piece(3), now).is_err(), "again, another length");
        assert_eq!(assembly.add(2, 4, 8, piece(4), now).unwrap(), None, "transfer 2 replaces 1");
        assert!(assembly.add(1, 0, 8, piece(4), now).is_err(), "transfer 1 is gone");
        assert_eq!(assembly.add(2, 0, 8, piece(4), now).unwrap(), Some(vec![0; 8]));
        assert!(assembly.add(3, 6, 8, piece(4), now).is_err(), "past the end");
        assert!(assembly.add(3, 0, u64::MAX, piece(1), now).is_err());
        assert!(assembly.add(3, 0, 8, piece(4), now).is_ok());
        assert!(assembly.add(3, 4, 9, piece(4), now).is_err(), "another size");
    }

    #[test]
    fn a_cut_transfer_resumes_from_what_is_held() {
        let mut assemblies = Assemblies::default();
        assert_eq!(assemblies.held(2, 5, 12), 0, "nothing yet");
        assemblies.add(2, 5, 0, 12, piece(4)).unwrap();
        assemblies.add(2, 5, 8, 12, piece(4)).unwrap();
        assert_eq!(assemblies.held(2, 5, 12), 4, "one run from the start: the gap stops it");
        assert_eq!(assemblies.held(2, 6, 12), 0, "another transfer");
        assert_eq!(assemblies.held(3, 5, 12), 0, "another sender");
        assemblies.add(2, 5, 4, 12, piece(4)).unwrap().expect("complete");
        assert_eq!(assemblies.held(2, 5, 12), 0, "complete: delivered, nothing held");
        assert!(assemblies.add(2, 4, 0, 12, piece(4)).is_err(), "an older transfer");
    }

    #[test]
    fn pieces_left_behind_are_let_go_after_the_resume_window() {
        let mut assemblies = Assemblies::default();
        assemblies.add(2, 5, 0, 12, piece(4)).unwrap();
        let now = Instant::now();
        assemblies.forget_idle(2, RESUME_WINDOW, now);
        assert_eq!(assemblies.held(2, 5, 12), 4, "a piece just now: kept");
        assemblies.forget_idle(2, RESUME_WINDOW, now + RESUME_WINDOW);
        assert_eq!(assemblies.held(2, 5, 12), 0, "idle for the window: let go");
        assert!(assemblies.add(2, 4, 0, 12, piece(4)).is_err(), "older transfers still refused");
        assert_eq!(assemblies.add(2, 5, 4, 12, piece(4)).unwrap(), None, "it may start again");
    }

    #[test]
    fn a_sender_that_restarted_replaces_its_stale_transfer() {
        let start = Instant::now();
        let mut assembly = Assembly::default();
        assembly.add(100, 0, 8, piece(4), start).unwrap();
        assert!(assembly.add(7, 0, 8, piece(4), start + Duration::from_secs(1)).is_err());
        let later = start + STALE_AFTER + Duration::from_secs(1);
        assert_eq!(assembly.add(7, 0, 8, piece(4), later).unwrap(), None, "stale: replaced");
        assert_eq!(assembly.held(7, 8), 4);
        assert!(first_transfer_number() > 1_700_000_000_000_000_000, "nanoseconds since 1970");
    }
}
