//! The node's numbers through the `metrics` facade (feature `metrics`), so any exporter
//! (Prometheus and others) can publish them. Every series carries a `node` label.
//!
//! | name | kind | what |
//! |---|---|---|
//! | `plus_quorum_term` | gauge | the node's term |
//! | `plus_quorum_is_leader` | gauge | 1 while it leads |
//! | `plus_quorum_commit_index`, `plus_quorum_applied_index` | gauge | log positions |
//! | `plus_quorum_apply_lag` | gauge | committed entries not applied yet |
//! | `plus_quorum_elections_started_total` | counter | elections this node started |
//! | `plus_quorum_leader_changes_total` | counter | new leaderships it learned of |
//! | `plus_quorum_proposals_total` | counter | writes it accepted as leader |
//! | `plus_quorum_snapshots_sent_total`, `..._installed_total`, `..._taken_total` | counter | snapshots |
//! | `plus_quorum_pending_reads`, `plus_quorum_pending_writes` | gauge | requests it owes (leader) |
//! | `plus_quorum_follower_lag` | gauge, label `peer` | entries a follower has not acknowledged (leader) |

use std::collections::BTreeMap;
use std::time::Duration;

use metrics::{Counter, Gauge, counter, gauge};
// Tokio's clock, so that paused time in tests and simulations moves it too.
use tokio::time::Instant;

use crate::ids::NodeId;
use crate::node::{Node, Role};

/// How often the driver refreshes the figures: often enough for any scrape interval, rarely
/// enough that building them costs nothing on the write path.
const INTERVAL: Duration = Duration::from_millis(500);

/// One node's registered series, looked up once.
pub(crate) struct NodeMetrics {
    node: NodeId,
    last: Option<Instant>,
    term: Gauge,
    is_leader: Gauge,
    commit: Gauge,
    applied: Gauge,
    apply_lag: Gauge,
    elections: Counter,
    leader_changes: Counter,
    proposals: Counter,
    snapshots_sent: Counter,
    snapshots_installed: Counter,
    snapshots_taken: Counter,
    pending_reads: Gauge,
    pending_writes: Gauge,
    follower_lag: BTreeMap<NodeId, Gauge>,
}

impl NodeMetrics {
    pub(crate) fn new(node: NodeId) -> Self {
        let label = node.to_string();
        let g = |name: &'static str| gauge!(name, "node" => label.clone());
        let c = |name: &'static str| counter!(name, "node" => label.clone());
        Self {
            node,
            last: None,
            term: g("plus_quorum_term"),
            is_leader: g("plus_quorum_is_leader"),
            commit: g("plus_quorum_commit_index"),
            applied: g("plus_quorum_applied_index"),
            apply_lag: g("plus_quorum_apply_lag"),
            elections: c("plus_quorum_elections_started_total"),
            leader_changes: c("plus_quorum_leader_changes_total"),
            proposals: c("plus_quorum_proposals_total"),
            snapshots_sent: c("plus_quorum_snapshots_sent_total"),
            snapshots_installed: c("plus_quorum_snapshots_installed_total"),
            snapshots_taken: c("plus_quorum_snapshots_taken_total"),
            pending_reads: g("plus_quorum_pending_reads"),
            pending_writes: g("plus_quorum_pending_writes"),
            follower_lag: BTreeMap::new(),
        }
    }

    /// Records the node's figures if the last recording is older than [`INTERVAL`].
    pub(crate) fn maybe_record(&mut self, node: &Node) {
        let now = Instant::now();
        if self.last.is_some_and(|last| now.duration_since(last) < INTERVAL) {
            return;
        }
        self.last = Some(now);
        let stats = node.stats();
        self.term.set(node.term() as f64);
        self.is_leader.set(if node.role() == Role::Leader { 1.0 } else { 0.0 });
        self.commit.set(node.commit_index() as f64);
        self.applied.set(node.applied_index() as f64);
        self.apply_lag.set(stats.apply_lag as f64);
        self.elections.absolute(stats.elections_started);
        self.leader_changes.absolute(stats.leader_changes);
        self.proposals.absolute(stats.proposals);
        self.snapshots_sent.absolute(stats.snapshots_sent);
        self.snapshots_installed.absolute(stats.snapshots_installed);
        self.snapshots_taken.absolute(stats.snapshots_taken);
        self.pending_reads.set(stats.pending_reads as f64);
        self.pending_writes.set(stats.pending_writes as f64);
        // A follower no longer reported (this node stopped leading) reads 0, not a stale lag.
        for (peer, gauge) in &self.follower_lag {
            if !stats.follower_lag.contains_key(peer) {
                gauge.set(0.0);
            }
        }
        for (&peer, &lag) in &stats.follower_lag {
            let node = self.node;
            self.follower_lag
                .entry(peer)
                .or_insert_with(|| {
                    gauge!("plus_quorum_follower_lag", "node" => node.to_string(), "peer" => peer.to_string())
                })
                .set(lag as f64);
        }
    }
}
