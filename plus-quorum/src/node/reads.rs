//! Linearizable reads (ReadIndex): a quorum round confirms leadership, then the read waits for
//! the commit index of its start to be applied.

use super::leader::PendingRead;
use super::{Node, Role, quorum_value};
use crate::types::{ClientError, ClientOutput, ReadOp, RequestId, Response};

impl Node {
    pub(super) fn start_read(&mut self, id: RequestId, op: ReadOp) {
        self.lead.read_seq += 1;
        self.lead.pending_reads.push_back(PendingRead {
            seq: self.lead.read_seq,
            read_index: self.commit,
            id,
            op,
        });
        self.lead.mark_all_dirty();
        self.serve_reads();
    }

    /// Answers reads whose round a quorum confirmed and whose index is applied.
    pub(super) fn serve_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut acked: Vec<u64> =
            self.lead.progress.values().filter(|p| p.counted()).map(|p| p.acked_seq).collect();
        acked.push(self.lead.read_seq);
        #[allow(unused_mut)]
        let mut confirmed = quorum_value(acked, self.quorum());
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.read_without_quorum {
            confirmed = self.lead.read_seq;
        }
        while let Some(read) = self.lead.pending_reads.front() {
            if read.seq > confirmed || read.read_index > self.applied {
                break;
            }
            let read = self.lead.pending_reads.pop_front().expect("front exists");
            let result = self.answer_read(&read.op);
            self.outputs
                .push_back(ClientOutput { id: read.id, result: Ok(Response::Read(result)) });
        }
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
        if self.committed_in_term() {
            self.start_read(id, op);
        } else {
            self.lead.reads_waiting_for_term_commit.push_back((id, op));
        }
        Ok(())
    }
}
