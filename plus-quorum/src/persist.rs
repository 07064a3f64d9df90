//! Storage as outputs: what a node hands its host to make durable, and the messages that must
//! wait until it is.
//!
//! The core never writes storage itself. Each step adds to a pending [`PersistBatch`]; the host
//! takes it with [`Node::poll_persist`](crate::Node::poll_persist), writes it (batching as many
//! as it likes into one fsync) and says so with [`Node::persisted`](crate::Node::persisted).
//! Until then every message that depends on it (a vote, an append acknowledgement) is held
//! back; the leader's own replication messages leave at once, and the leader counts its own log
//! toward commit only up to what is durable.

use std::collections::VecDeque;

use crate::ids::{LogIndex, NodeId};
use crate::log::{Entry, Snapshot};
use crate::message::Message;
use crate::storage::{HardState, Storage, StorageError};

/// Writes a node needs durable before the messages that depend on them may leave.
///
/// Apply batches in the order they were polled, each in the order [`PersistBatch::write_to`]
/// uses: snapshot, truncation, entries, hard state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct PersistBatch {
    /// Identifies the batch; report it with [`Node::persisted`](crate::Node::persisted).
    pub seq: u64,
    /// A snapshot to keep (entries it covers may be dropped).
    pub snapshot: Option<Snapshot>,
    /// Drop stored entries from this index on, before appending `entries`.
    pub truncate_from: Option<LogIndex>,
    /// Entries to append, in order.
    pub entries: Vec<Entry>,
    /// Term and vote to keep.
    pub hard_state: Option<HardState>,
    /// Whether `snapshot` may be made durable apart from the rest of the batch, later: the
    /// node took it of its own applied entries, and every entry it covers is in an earlier
    /// batch (none was left out of this one for it). A host may then write it beside later
    /// appends (the tokio driver does, through [`Storage::snapshot_writer`]), as long as the
    /// log drops nothing it covers before it is durable ([`Storage::snapshot_written`]).
    pub snapshot_separable: bool,
}

impl PersistBatch {
    /// Whether there is nothing to write.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.snapshot.is_none()
            && self.truncate_from.is_none()
            && self.entries.is_empty()
            && self.hard_state.is_none()
    }

    /// Writes the batch to `storage`, in the order that keeps it consistent after a crash at
    /// any point: snapshot, truncation, entries, then term and vote.
    ///
    /// # Errors
    /// The first [`StorageError`]; the batch then did not become durable (tell the node with
    /// [`Node::persist_failed`](crate::Node::persist_failed)).
    pub fn write_to<S: Storage + ?Sized>(&self, storage: &mut S) -> Result<(), StorageError> {
        if let Some(snapshot) = &self.snapshot {
            storage.save_snapshot(snapshot)?;
        }
        if let Some(index) = self.truncate_from {
            storage.truncate_from(index)?;
        }
        if !self.entries.is_empty() {
            storage.append(&self.entries)?;
        }
        if let Some(state) = &self.hard_state {
            storage.save_hard_state(state)?;
        }
        Ok(())
    }
}

/// The node's side of the bargain: the pending batch, the batches handed out, and the messages
/// waiting for them.
#[derive(Debug)]
pub(crate) struct Persistence {
    pending: PersistBatch,
    next_seq: u64,
    /// The last batch handed to the host.
    polled: u64,
    /// The last batch the host made durable.
    durable: u64,
    /// `(batch, last log index when it was handed out)` for batches not yet durable.
    in_flight: VecDeque<(u64, LogIndex)>,
    /// The last log index known durable.
    durable_last: LogIndex,
    /// Messages that leave once the batch they name is durable.
    held: VecDeque<(u64, NodeId, Message)>,
}

impl Persistence {
    pub(crate) fn new(durable_last: LogIndex) -> Self {
        Self {
            pending: PersistBatch::default(),
            next_seq: 1,
            polled: 0,
            durable: 0,
            in_flight: VecDeque::new(),
            durable_last,
            held: VecDeque::new(),
        }
    }

    /// The last log index known durable.
    pub(crate) fn durable_last(&self) -> LogIndex {
        self.durable_last
    }

    pub(crate) fn hard_state(&mut self, state: HardState) {
        self.pending.hard_state = Some(state);
    }

    pub(crate) fn append(&mut self, entries: impl IntoIterator<Item = Entry>) {
        self.pending.entries.extend(entries);
    }

    /// Entries from `index` on are gone.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        self.pending.entries.retain(|e| e.index < index);
        let from = self.pending.truncate_from.map_or(index, |t| t.min(index));
        self.pending.truncate_from = Some(from);
        let kept = index.saturating_sub(1);
        for (_, last) in &mut self.in_flight {
            *last = (*last).min(kept);
        }
        self.durable_last = self.durable_last.min(kept);
    }

    /// A snapshot replaces the entries it covers; `local` when the node took it of its own
    /// applied entries (not installed from a leader).
    pub(crate) fn snapshot(&mut self, snapshot: Snapshot, local: bool) {
        let last = snapshot.last_index;
        let pending = self.pending.entries.len();
        self.pending.entries.retain(|e| e.index > last);
        // Entries left out for it exist only in it until it is durable: it must be written
        // with this batch, before the batch is reported durable.
        let left_out = self.pending.entries.len() != pending;
        let separable_so_far = self.pending.snapshot.is_none() || self.pending.snapshot_separable;
        self.pending.snapshot_separable = local && !left_out && separable_so_far;
        self.pending.snapshot = Some(snapshot);
    }

    /// Whether everything written so far is durable.
    fn settled(&self) -> bool {
        self.pending.is_empty() && self.polled == self.durable
    }

    /// `msg` to `to` if it may leave now; otherwise it is held until what was written before
    /// it is durable.
    pub(crate) fn hold_unless_settled(
        &mut self,
        to: NodeId,
        msg: Message,
    ) -> Option<(NodeId, Message)> {
        if self.settled() {
            return Some((to, msg));
        }
        let after = if self.pending.is_empty() { self.polled } else { self.next_seq };
        self.held.push_back((after, to, msg));
        None
    }

    /// The pending batch, handed out; `last_index` is the log's last index now.
    pub(crate) fn poll(&mut self, last_index: LogIndex) -> Option<PersistBatch> {
        if self.pending.is_empty() {
            return None;
        }
        let mut batch = std::mem::take(&mut self.pending);
        batch.seq = self.next_seq;
        self.next_seq += 1;
        self.polled = batch.seq;
        self.in_flight.push_back((batch.seq, last_index));
        Some(batch)
    }

    /// Batches up to `seq` are durable: returns the messages that may leave now, in order.
    pub(crate) fn persisted(&mut self, seq: u64) -> Vec<(NodeId, Message)> {
        if seq <= self.durable || seq > self.polled {
            return Vec::new();
        }
        self.durable = seq;
        while let Some(&(s, last)) = self.in_flight.front() {
            if s > seq {
                break;
            }
            self.durable_last = last;
            self.in_flight.pop_front();
        }
        let mut released = Vec::new();
        while self.held.front().is_some_and(|(after, ..)| *after <= seq) {
            let (_, to, msg) = self.held.pop_front().expect("front exists");
            released.push((to, msg));
        }
        released
    }

    /// Drops what is held (the node halted: nothing may leave).
    pub(crate) fn clear(&mut self) {
        self.held.clear();
        self.pending = PersistBatch::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::Payload;

    fn entry(index: LogIndex) -> Entry {
        Entry { term: 1, index, payload: Payload::Noop }
    }

    fn vote() -> Message {
        Message::VoteReply { term: 1, granted: true }
    }

    #[test]
    fn messages_wait_for_what_was_written_before_them() {
        let mut p = Persistence::new(0);
        assert!(p.hold_unless_settled(2, vote()).is_some(), "nothing pending: goes at once");
        p.hard_state(HardState { term: 1, voted_for: Some(2), recovering: false });
        assert!(p.hold_unless_settled(2, vote()).is_none());
        let first = p.poll(0).unwrap();
        p.append([entry(1), entry(2)]);
        assert!(p.hold_unless_settled(3, vote()).is_none());
        let second = p.poll(2).unwrap();
        assert_eq!((first.seq, second.seq), (1, 2));
        assert_eq!(p.persisted(1).len(), 1, "only the vote behind the first batch");
        assert_eq!(p.durable_last(), 0);
        assert_eq!(p.persisted(2).len(), 1);
        assert_eq!(p.durable_last(), 2);
        assert!(p.hold_unless_settled(2, vote()).is_some(), "settled again");
    }

    #[test]
    fn truncation_and_snapshots_coalesce_in_the_pending_batch() {
        let mut p = Persistence::new(10);
        p.append((11..=15).map(entry));
        p.truncate_from(13);
        p.append([entry(13)]);
        let batch = p.poll(13).unwrap();
        assert_eq!(batch.truncate_from, Some(13));
        assert_eq!(batch.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [11, 12, 13]);
        p.truncate_from(8);
        assert_eq!(p.durable_last(), 7, "a truncation lowers what is known durable");
        p.append((8..=12).map(entry));
        let snapshot =
            Snapshot { last_index: 10, last_term: 1, state: Default::default(), membership: None };
        p.snapshot(snapshot, false);
        let batch = p.poll(12).unwrap();
        assert_eq!(batch.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [11, 12]);
        assert!(!batch.snapshot_separable, "installed from a leader");
        p.persisted(batch.seq);
        assert_eq!(p.durable_last(), 12);
    }

    fn snapshot_at(last_index: LogIndex) -> Snapshot {
        Snapshot { last_index, last_term: 1, state: Default::default(), membership: None }
    }

    /// A snapshot of the node's own entries may be written apart from its batch only when no
    /// entry it covers was left out of the batch for it: such an entry would otherwise be in
    /// neither the log nor a durable snapshot when the batch is reported durable.
    #[test]
    fn a_local_snapshot_is_separable_only_when_it_left_no_entry_out() {
        let mut p = Persistence::new(10);
        p.append((11..=15).map(entry));
        let handed_out = p.poll(15).unwrap();
        p.snapshot(snapshot_at(14), true);
        p.append([entry(16)]);
        let batch = p.poll(16).unwrap();
        assert!(batch.snapshot_separable, "entries 11-14 went out in the batch before");
        assert_eq!(batch.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [16]);
        p.persisted(handed_out.seq);

        p.append((17..=20).map(entry));
        p.snapshot(snapshot_at(18), true);
        let batch = p.poll(20).unwrap();
        assert!(!batch.snapshot_separable, "17 and 18 were left out for it");
        assert_eq!(batch.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [19, 20]);

        // A later snapshot in the same batch that leaves nothing out itself does not make the
        // earlier one's left-out entry come back.
        p.append((21..=22).map(entry));
        p.snapshot(snapshot_at(21), true);
        p.append([entry(23)]);
        p.snapshot(snapshot_at(21), true);
        let batch = p.poll(23).unwrap();
        assert!(!batch.snapshot_separable);
        assert_eq!(batch.entries.iter().map(|e| e.index).collect::<Vec<_>>(), [22, 23]);
    }
}
