//! Snapshots: compacting the log into the map, and installing the leader's.

use plus_core::Timestamp;

use super::Node;
use crate::ids::{LogIndex, NodeId, Term};
use crate::log::Snapshot;

impl Node {
    pub(super) fn maybe_snapshot(&mut self) {
        if self.applied - self.snapshot_index < self.snapshot_due {
            return;
        }
        self.snapshot_due =
            super::snapshot_interval(self.config.snapshot_threshold, &mut self.snapshot_rng);
        let Some(term) = self.log.term_at(self.applied) else { return };
        let snapshot = Snapshot {
            last_index: self.applied,
            last_term: term,
            state: self.state.clone(),
            membership: Some(self.configs.at(self.applied).clone()),
        };
        self.persist.snapshot(snapshot, true);
        self.snapshot_index = self.applied;
        let cut = self.log_cut();
        if let Some(cut_term) = self.log.term_at(cut) {
            self.log.compact_to(cut, cut_term);
        }
        self.configs.compact_to(self.applied);
        self.counters.snapshots_taken += 1;
        tracing::debug!(
            node = self.config.id,
            applied = self.applied,
            "log compacted into a snapshot"
        );
    }

    /// Where the log may be cut once the snapshot holds everything up to `applied`. A follower
    /// cuts it there. A leader keeps what its followers still need, as far as
    /// [`catch_up_log_bytes`](super::Config::catch_up_log_bytes) allows: the entries after a
    /// snapshot in flight (the follower goes on from there once it has installed it) and after
    /// what a follower heard from lately has acknowledged. A follower silent for longer (gone,
    /// or cut off) holds nothing back: it gets a snapshot when it returns.
    fn log_cut(&self) -> LogIndex {
        if !self.is_leader() {
            return self.applied;
        }
        let needed =
            self.lead
                .progress
                .values()
                .filter_map(|peer| match peer.snapshot {
                    Some((at, _, _)) => Some(at),
                    None => (!peer.silent(self.clock, self.config.election_timeout))
                        .then_some(peer.matched),
                })
                .min()
                .unwrap_or(self.applied);
        let fits = self.log.cut_to_fit(self.config.catch_up_log_bytes, self.applied);
        needed.clamp(fits, self.applied)
    }

    pub(super) fn on_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        snapshot: Snapshot,
        commit: LogIndex,
        read_seq: u64,
        now: Timestamp,
    ) {
        if !self.follow(from, term, read_seq, now) {
            return;
        }
        let holds_it = self.log.term_at(snapshot.last_index) == Some(snapshot.last_term);
        if snapshot.last_index > self.commit && holds_it {
            // A snapshot (late, or duplicated) of entries this log already holds: they are
            // committed, so apply them from the log. Resetting to it would drop the entries
            // after it, which this node may have acknowledged (the leader counted them).
            self.commit = snapshot.last_index;
            self.apply_committed();
        } else if snapshot.last_index > self.commit {
            self.persist.snapshot(snapshot.clone(), false);
            self.persist.truncate_from(snapshot.last_index + 1);
            self.log.reset(snapshot.last_index, snapshot.last_term);
            let membership = snapshot
                .membership
                .clone()
                .unwrap_or_else(|| Self::bootstrap_membership(&self.config));
            self.configs.reset(membership);
            self.refresh_members();
            self.commit = snapshot.last_index;
            self.applied = snapshot.last_index;
            self.snapshot_index = snapshot.last_index;
            self.state = snapshot.state;
            self.state_bytes = self.state.bytes();
            self.history.reset(self.applied + 1);
            self.counters.snapshots_installed += 1;
            tracing::info!(
                node = self.config.id,
                from,
                last_index = self.applied,
                "installed a snapshot from the leader"
            );
        }
        self.check_recovered(term, commit, from);
        // Our committed prefix is the leader's: that much is known to match.
        self.reply(from, true, self.commit, read_seq);
    }
}
