//! Linearizable reads (ReadIndex): a quorum round confirms leadership, then the read waits for
//! the commit index of its start to be applied.

use super::leader::{Asked, PendingRead};
use super::{Node, Role, quorum_value};
use crate::client_error::ClientError;
use crate::ids::{LogIndex, RequestId};
use crate::log::Snapshot;
use crate::ops::{ClientOutput, ReadOp, Response};
use crate::txn::{Range, RangeResult};

impl Node {
    pub(super) fn start_read(&mut self, id: RequestId, op: Asked) {
        self.lead.read_seq += 1;
        self.lead.pending_reads.push_back(PendingRead {
            seq: self.lead.read_seq,
            read_index: self.commit,
            id,
            op,
        });
        self.lead.heartbeat_all();
        self.serve_reads();
    }

    /// Answers reads whose round a quorum confirmed and whose index is applied.
    pub(super) fn serve_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut acked: Vec<u64> =
            self.lead.progress.values().filter(|p| p.counted()).map(|p| p.acked_seq).collect();
        if self.is_voter() {
            acked.push(self.lead.read_seq);
        }
        #[allow(unused_mut)]
        let mut confirmed = quorum_value(acked, self.quorum());
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.read_without_quorum {
            confirmed = self.lead.read_seq;
        }
        while let Some(read) = self.lead.pending_reads.front() {
            if read.seq > confirmed
                || read.read_index > self.applied
                || self.awaits_expiry(&read.op)
            {
                break;
            }
            let read = self.lead.pending_reads.pop_front().expect("front exists");
            let result = match &read.op {
                Asked::Op(op) => self.answer_read(op).map(Response::Read),
                Asked::Backup => Ok(Response::Backup(Box::new(self.backup_snapshot()))),
            };
            self.outputs.push_back(ClientOutput { id: read.id, result });
        }
    }

    /// A lease read of a lease whose expiry this leader has proposed waits for that entry:
    /// answered now, "no such lease" would be a state no committed entry made (a deposed leader's
    /// expiry may never commit, and the lease lives on under the next leader), and a renewal
    /// would promise a TTL the committed expiry is about to take away.
    fn awaits_expiry(&self, op: &Asked) -> bool {
        matches!(op, Asked::Op(ReadOp::LeaseKeepAlive(lease) | ReadOp::LeaseTimeToLive(lease))
            if self.lead.leases.is_expiring(*lease))
    }

    /// A past revision this node can still read, checked at once so that one it no longer
    /// holds fails without a round. Whether the revision exists yet is known only once the
    /// read's own round confirms what is committed (`range_in_past`): a node's log alone does
    /// not say (a deposed leader's may be behind).
    fn check_past_revision(&self, at: LogIndex) -> Result<(), ClientError> {
        let oldest = self.history.oldest_readable();
        if at < oldest {
            return Err(ClientError::Compacted { requested: at, oldest });
        }
        Ok(())
    }

    /// `range` as it was at its revision: the keys now, with every later change undone.
    pub(super) fn range_in_past(&self, range: &Range) -> Result<RangeResult, ClientError> {
        let at = range.revision.unwrap_or(self.applied);
        if at > self.applied {
            return Err(ClientError::Invalid(format!(
                "a read at revision {at}, past the latest committed revision {}",
                self.applied
            )));
        }
        let then = self.history.values_at(&range.keys, at)?;
        Ok(self.state.range_as_of(range, &then))
    }

    /// Asks for a linearizable read (ReadIndex: the leader confirms it still leads with a quorum
    /// round, then answers once it has applied up to its commit index at the time of the read).
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] when this node does not lead.
    pub fn read(&mut self, id: RequestId, op: ReadOp) -> Result<(), ClientError> {
        if self.role != Role::Leader || self.halted.is_some() {
            return Err(ClientError::NotLeader {
                leader: self.leader.filter(|&l| l != self.config.id),
            });
        }
        op.validate()?;
        if let ReadOp::MultiGet(keys) = &op
            && keys.len() > self.config.max_read_keys
        {
            return Err(ClientError::TooLarge {
                what: "keys in one read".to_owned(),
                size: keys.len() as u64,
                limit: self.config.max_read_keys as u64,
            });
        }
        if let ReadOp::Range(Range { revision: Some(at), .. }) = &op {
            self.check_past_revision(*at)?;
        }
        self.start_or_hold_read(id, Asked::Op(op));
        Ok(())
    }

    /// Asks for the whole state at one committed revision, as linearizable as a read: the
    /// answer, [`Response::Backup`], is a [`Snapshot`] at the applied index once the read's
    /// quorum round has confirmed this node still leads. An online backup: writes go on while
    /// the host encodes and sends it. The copy is made on the node's loop, as for a snapshot
    /// of its own (O(keys)).
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] when this node does not lead.
    pub fn backup(&mut self, id: RequestId) -> Result<(), ClientError> {
        if self.role != Role::Leader || self.halted.is_some() {
            return Err(ClientError::NotLeader {
                leader: self.leader.filter(|&l| l != self.config.id),
            });
        }
        self.start_or_hold_read(id, Asked::Backup);
        Ok(())
    }

    /// A read starts its round once this leader has committed an entry of its own term (before
    /// that, its commit index may be behind what earlier leaders committed).
    fn start_or_hold_read(&mut self, id: RequestId, asked: Asked) {
        if self.committed_in_term() {
            self.start_read(id, asked);
        } else {
            self.lead.reads_waiting_for_term_commit.push_back((id, asked));
        }
    }

    fn backup_snapshot(&self) -> Snapshot {
        Snapshot {
            last_index: self.applied,
            last_term: self.log.term_at(self.applied).unwrap_or(self.term),
            state: self.state.clone(),
            membership: Some(self.configs.at(self.applied).clone()),
        }
    }
}
