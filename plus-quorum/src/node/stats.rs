//! What an operator watches: counters since the node started, the requests it owes, and, on the
//! leader, how far each follower is behind. Leadership changes and elections are also logged
//! here, through `tracing`, at the one place each is decided.

use std::collections::BTreeMap;

use super::Node;
use crate::ids::{NodeId, Term};

/// A node's numbers at one moment ([`Node::stats`]). Counters count since the node started.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct NodeStats {
    /// Elections this node started as a candidate (after winning a pre-vote).
    pub elections_started: u64,
    /// Terms in which this node became leader.
    pub terms_led: u64,
    /// Times this node learned of a new leadership: another leader, or the same one re-elected
    /// in a later term.
    pub leader_changes: u64,
    /// Writes this node accepted into its log as leader.
    pub proposals: u64,
    /// Snapshots this node took of its own state to compact its log.
    pub snapshots_taken: u64,
    /// Snapshots this node sent, as leader, to followers too far behind for its log.
    pub snapshots_sent: u64,
    /// Snapshots from a leader this node installed.
    pub snapshots_installed: u64,
    /// Reads waiting for their confirmation round or for their index to apply (leader only).
    pub pending_reads: usize,
    /// Writes waiting to commit (leader only).
    pub pending_writes: usize,
    /// Leader only: for each follower, how many entries of the leader's log it has not
    /// acknowledged.
    pub follower_lag: BTreeMap<NodeId, u64>,
    /// Entries committed but not yet applied here.
    pub apply_lag: u64,
    /// Messages not heard: a term at its maximum or further ahead than
    /// [`Config::max_term_lead`](crate::Config::max_term_lead), or an append or snapshot
    /// that contradicts itself. Only a forged, corrupted or buggy peer sends one.
    #[serde(default)]
    pub dropped_messages: u64,
    /// Bytes of keys and values this replica holds: what
    /// [`Config::quota_bytes`](crate::Config::quota_bytes) is compared with.
    #[serde(default)]
    pub state_bytes: u64,
}

/// The counters a node keeps; the rest of [`NodeStats`] is read off its state.
#[derive(Debug, Default)]
pub(super) struct Counters {
    pub(super) elections_started: u64,
    pub(super) terms_led: u64,
    pub(super) leader_changes: u64,
    pub(super) proposals: u64,
    pub(super) snapshots_taken: u64,
    pub(super) snapshots_sent: u64,
    pub(super) snapshots_installed: u64,
    pub(super) dropped_messages: u64,
    /// The last leadership counted as a change, so that re-learning it is not one.
    last_leadership: Option<(Term, NodeId)>,
}

impl Node {
    /// Records who leads now (`None` while nobody is known to), counting and logging a new
    /// leadership once.
    pub(super) fn set_leader(&mut self, leader: Option<NodeId>) {
        self.leader = leader;
        let Some(leader) = leader else { return };
        let leadership = (self.term, leader);
        if self.counters.last_leadership != Some(leadership) {
            self.counters.last_leadership = Some(leadership);
            self.counters.leader_changes += 1;
            tracing::info!(node = self.config.id, term = self.term, leader, "new leader");
        }
    }

    /// The node's numbers now.
    #[must_use]
    pub fn stats(&self) -> NodeStats {
        let c = &self.counters;
        let leading = self.is_leader();
        let last = self.log.last_index();
        NodeStats {
            elections_started: c.elections_started,
            terms_led: c.terms_led,
            leader_changes: c.leader_changes,
            proposals: c.proposals,
            snapshots_taken: c.snapshots_taken,
            snapshots_sent: c.snapshots_sent,
            snapshots_installed: c.snapshots_installed,
            pending_reads: if leading {
                self.lead.pending_reads.len() + self.lead.reads_waiting_for_term_commit.len()
            } else {
                0
            },
            pending_writes: if leading { self.lead.pending_writes.len() } else { 0 },
            follower_lag: if leading {
                self.lead
                    .progress
                    .iter()
                    .map(|(&id, peer)| (id, last.saturating_sub(peer.matched)))
                    .collect()
            } else {
                BTreeMap::new()
            },
            apply_lag: self.commit.saturating_sub(self.applied),
            dropped_messages: c.dropped_messages,
            state_bytes: self.state_bytes as u64,
        }
    }
}
