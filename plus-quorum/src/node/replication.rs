//! Replication: the leader's appends and commit, the followers' log matching and acknowledgements,
//! and applying what is committed.

use plus_core::Timestamp;

use super::leader::MAX_SNAPSHOT_WAIT;
use super::{Node, Role, quorum_value};
use crate::client_error::ClientError;
use crate::ids::{LogIndex, NodeId, RequestId, Term};
use crate::log::{Entry, Payload, Snapshot};
use crate::membership::ClusterChanged;
use crate::message::Message;
use crate::ops::{ClientOutput, Response, WriteOp};

impl Node {
    pub(super) fn append_local(&mut self, payload: Payload) -> Option<LogIndex> {
        if self.halted.is_some() {
            return None;
        }
        let entry = Entry { term: self.term, index: self.log.last_index() + 1, payload };
        self.persist.append([entry.clone()]);
        let index = entry.index;
        self.log.push(entry.clone());
        self.track_appended(&entry);
        self.lead.mark_all_dirty();
        Some(index)
    }

    pub(super) fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.term)
    }

    /// Sends what each peer needs: entries, a snapshot, or a bare heartbeat.
    pub(super) fn replicate_to(&mut self, id: NodeId) {
        let max_inflight = self.config.max_inflight_appends;
        let Some(peer) = self.lead.progress.get_mut(&id) else { return };
        peer.dirty = false;
        let heartbeat_due = std::mem::take(&mut peer.heartbeat_due);
        let silent = peer.silent(self.clock, self.config.election_timeout);
        if let Some((at, at_term, resend_at)) = peer.snapshot {
            if self.clock < resend_at || silent {
                if !heartbeat_due {
                    return;
                }
                // Heartbeats only until it answers for the snapshot: it matches `at` once
                // the snapshot is installed, and refuses until then (refusals are ignored).
                let msg = Message::Append {
                    term: self.term,
                    prev_index: at,
                    prev_term: at_term,
                    entries: Vec::new(),
                    commit: self.commit.min(at),
                    read_seq: self.lead.read_seq,
                };
                self.send(id, msg);
                return;
            }
            peer.snapshot = None;
            peer.next = self.log.base_index();
            // The same snapshot again while the log still goes on from it: a transfer cut
            // half-way resumes where it stopped instead of starting over with a newer state.
            if at >= self.log.base_index()
                && let Some(msg) = peer.snapshot_sent.as_deref().cloned()
            {
                let first = peer.snapshot_wait.unwrap_or(MAX_SNAPSHOT_WAIT);
                peer.snapshot_going(at, at_term, self.clock, first);
                self.counters.snapshots_sent += 1;
                tracing::info!(
                    node = self.config.id,
                    to = id,
                    last_index = at,
                    "sending a snapshot again to a follower that has not answered for it"
                );
                self.send(id, msg);
                return;
            }
            peer.snapshot_sent = None;
        }
        let next = peer.next;
        if next <= self.log.base_index() && silent {
            // Gone, or not heard from yet: a heartbeat first; a whole state once it answers.
            if heartbeat_due {
                let msg = Message::Append {
                    term: self.term,
                    prev_index: self.log.base_index(),
                    prev_term: self.log.term_at(self.log.base_index()).unwrap_or(0),
                    entries: Vec::new(),
                    commit: self.commit.min(self.log.base_index()),
                    read_seq: self.lead.read_seq,
                };
                self.send(id, msg);
            }
            return;
        }
        if next <= self.log.base_index() {
            let last_index = self.applied.max(self.log.base_index());
            let snapshot = Snapshot {
                last_index,
                last_term: self.log.term_at(last_index).unwrap_or(0),
                state: self.state.clone(),
                membership: Some(self.configs.at(last_index).clone()),
            };
            // The state covers up to `applied`, which is at least the log base. Long enough for
            // it to travel at a modest 8 MiB/s before a copy is sent again (a gigabyte resent
            // every second would pile copies up in the leader).
            let travel =
                std::time::Duration::from_secs_f64(self.state_bytes as f64 / f64::from(8u32 << 20));
            let first = (self.config.election_timeout * 2).max(travel);
            peer.snapshot_going(snapshot.last_index, snapshot.last_term, self.clock, first);
            self.counters.snapshots_sent += 1;
            tracing::info!(
                node = self.config.id,
                to = id,
                last_index = snapshot.last_index,
                "sending a snapshot to a follower behind the log"
            );
            let msg = Message::Snapshot {
                term: self.term,
                snapshot: Box::new(snapshot),
                commit: self.commit,
                read_seq: self.lead.read_seq,
            };
            peer.snapshot_sent = Some(Box::new(msg.clone()));
            self.send(id, msg);
            return;
        }
        let prev_index = next - 1;
        let prev_term = self.log.term_at(prev_index).unwrap_or(0);
        if peer.paused(max_inflight) {
            // Its answers decide what goes next. A bare append still carries the commit and
            // the read round, and its answer finds a lost append (refused: probing again) or
            // frees the window (every append before it acknowledged at once).
            if heartbeat_due {
                let msg = Message::Append {
                    term: self.term,
                    prev_index,
                    prev_term,
                    entries: Vec::new(),
                    commit: self.commit,
                    read_seq: self.lead.read_seq,
                };
                self.send(id, msg);
            }
            return;
        }
        let mut entries = self.log.slice(next, self.config.max_entries_per_message);
        // Bounded in bytes too, so every append fits a transport's frame: at least one entry
        // (each is at most `max_request_bytes`), then as many as fit.
        let mut bytes = 0;
        let fit = entries
            .iter()
            .position(|e| {
                bytes += e.payload.bytes();
                bytes > self.config.max_bytes_per_message
            })
            .map_or(entries.len(), |at| at.max(1));
        entries.truncate(fit);
        if !peer.voter {
            // A learner gets committed entries only. Its log is then never more up to date
            // than a candidate holding everything committed: it does not vote in its own
            // configuration but may be asked to (by a node whose log promotes it), and a
            // learner holding a deposed leader's uncommitted entry would refuse every candidate
            // that could win, leaving a cluster with one voter down unable to elect anyone.
            entries.retain(|e| e.index <= self.commit);
        }
        if peer.probing {
            peer.probe_sent = true;
        } else if let Some(last) = entries.last() {
            peer.next = last.index + 1;
            peer.inflight.push_back(last.index);
        }
        let msg = Message::Append {
            term: self.term,
            prev_index,
            prev_term,
            entries,
            commit: self.commit,
            read_seq: self.lead.read_seq,
        };
        self.send(id, msg);
    }

    pub(super) fn flush_dirty(&mut self) {
        let dirty: Vec<NodeId> =
            self.lead.progress.iter().filter(|(_, p)| p.dirty).map(|(&id, _)| id).collect();
        for id in dirty {
            self.replicate_to(id);
        }
    }

    pub(super) fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut matches: Vec<LogIndex> =
            self.lead.progress.values().filter(|p| p.counted()).map(|p| p.matched).collect();
        // The leader counts itself only as far as its own log is durable, and only while it
        // votes (a leader removing itself leads until the change commits, uncounted).
        if self.is_voter() {
            matches.push(self.persist.durable_last().min(self.log.last_index()));
        }
        #[allow(unused_mut)]
        let mut candidate = quorum_value(matches, self.quorum());
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.commit_without_majority {
            candidate = self.log.last_index();
        }
        if candidate > self.commit && self.log.term_at(candidate) == Some(self.term) {
            self.commit = candidate;
            self.lead.mark_all_dirty();
            self.apply_committed();
        }
        if self.committed_in_term() {
            let waiting: Vec<_> = self.lead.reads_waiting_for_term_commit.drain(..).collect();
            for (id, asked) in waiting {
                self.start_read(id, asked);
            }
        }
    }

    pub(super) fn apply_committed(&mut self) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let Some(entry) = self.log.get(index).cloned() else { break };
            #[cfg(plus_planted_bugs)]
            {
                self.state.planted_txn_bug = self.config.bugs.txn_else_applies_part_of_then;
            }
            let result = match &entry.payload {
                Payload::Noop => None,
                Payload::Write(op) => Some(Response::Write(self.state.apply_bounded(
                    op,
                    index,
                    crate::kv::ReadBounds {
                        keys: self.config.max_read_keys,
                        bytes: self.config.max_read_bytes,
                    },
                ))),
                Payload::ExpireLeases(leases) => {
                    for &lease in leases {
                        self.state.end_lease(lease);
                    }
                    None
                }
                Payload::Membership(membership) => {
                    tracing::info!(node = self.config.id, index, %membership, "membership committed");
                    Some(Response::Cluster(ClusterChanged::Membership {
                        membership: membership.clone(),
                        index,
                    }))
                }
            };
            let write_result = match &result {
                Some(Response::Write(r)) => Some(r),
                _ => None,
            };
            self.track_leases(&entry.payload, write_result);
            #[allow(unused_mut)]
            let mut changes = self.state.take_changes();
            #[cfg(plus_planted_bugs)]
            if self.config.bugs.watch_drops_predecessor_entries
                && self.role == Role::Leader
                && entry.term < self.term
            {
                changes.clear();
            }
            self.count_bytes(&changes);
            self.history.record(index, changes);
            if let Payload::Write(WriteOp::Compact { revision }) = &entry.payload {
                self.history.compact_to(*revision, index);
            }
            self.applied = index;
            if let Some((id, term)) = self.lead.pending_writes.remove(&index) {
                let output = match result {
                    Some(r) if term == entry.term => Ok(r),
                    _ => Err(ClientError::Unknown),
                };
                self.outputs.push_back(ClientOutput { id, result: output });
            }
        }
        self.step_down_if_removed(self.clock);
        self.serve_reads();
        self.maybe_snapshot();
    }

    /// Proposes a write. Its result comes from [`Node::poll_output`] once committed and applied.
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] (with a hint) when this node does not lead; nothing was done.
    pub fn write(&mut self, id: RequestId, op: WriteOp) -> Result<(), ClientError> {
        if self.role != Role::Leader || self.halted.is_some() {
            return Err(ClientError::NotLeader {
                leader: self.leader.filter(|&l| l != self.config.id),
            });
        }
        if self.lead.transfer.is_some() {
            // Writes wait for the next leader, which the transfer is about to elect.
            return Err(ClientError::NotLeader { leader: None });
        }
        op.validate()?;
        self.check_limits(&op)?;
        if let WriteOp::GrantLease { ttl_ms } = op
            && u128::from(ttl_ms) > self.config.max_lease_ttl.as_millis()
        {
            return Err(ClientError::Invalid(format!(
                "a lease's TTL of {ttl_ms} ms is above the cluster's maximum of {} ms",
                self.config.max_lease_ttl.as_millis()
            )));
        }
        if let WriteOp::Compact { revision } = op
            && revision > self.log.last_index()
        {
            return Err(ClientError::Invalid(format!(
                "cannot compact to revision {revision}: the latest is {}",
                self.log.last_index()
            )));
        }
        if let Some(index) = self.append_local(Payload::Write(op)) {
            self.counters.proposals += 1;
            self.lead.pending_writes.insert(index, (id, self.term));
            self.maybe_commit();
        }
        Ok(())
    }

    /// Keeps [`Node::state_bytes`] as `changes` apply.
    fn count_bytes(&mut self, changes: &[crate::watch::Changed]) {
        for changed in changes {
            if let Some(before) = &changed.before {
                self.state_bytes =
                    self.state_bytes.saturating_sub(changed.key.len() + before.value.len());
            }
            if let crate::watch::Change::Put(now) = &changed.change {
                self.state_bytes += changed.key.len() + now.value.len();
            }
        }
    }

    /// Refuses a write past the cluster's limits, before it reaches the log.
    fn check_limits(&self, op: &WriteOp) -> Result<(), ClientError> {
        let too_large = |what: &str, size: usize, limit: usize| ClientError::TooLarge {
            what: what.to_owned(),
            size: size as u64,
            limit: limit as u64,
        };
        let ops = op.op_count();
        if ops > self.config.max_txn_ops {
            return Err(too_large("operations", ops, self.config.max_txn_ops));
        }
        let bytes = op.request_bytes();
        if bytes > self.config.max_request_bytes {
            return Err(too_large("request bytes", bytes, self.config.max_request_bytes));
        }
        if self.state_bytes > self.config.quota_bytes && op.adds_data() {
            return Err(ClientError::NoSpace {
                used: self.state_bytes as u64,
                quota: self.config.quota_bytes as u64,
            });
        }
        let leases = self.state.lease_count();
        if matches!(op, WriteOp::GrantLease { .. }) && leases >= self.config.max_leases {
            return Err(too_large("leases", leases + 1, self.config.max_leases));
        }
        Ok(())
    }

    pub(super) fn reply(
        &mut self,
        to: NodeId,
        success: bool,
        match_index: LogIndex,
        read_seq: u64,
    ) {
        let msg = Message::AppendReply {
            term: self.term,
            success,
            match_index,
            read_seq,
            recovering: self.recovering,
        };
        self.send(to, msg);
    }

    /// A message from the leader of `term`: refuse it if stale (answering so), else follow it.
    pub(super) fn follow(
        &mut self,
        from: NodeId,
        term: Term,
        read_seq: u64,
        now: Timestamp,
    ) -> bool {
        if term < self.term {
            self.reply(from, false, self.log.last_index(), read_seq);
            return false;
        }
        self.role = Role::Follower;
        self.set_leader(Some(from));
        self.settle_transfer(Some(from), now);
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        true
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append(
        &mut self,
        from: NodeId,
        term: Term,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
        read_seq: u64,
        now: Timestamp,
    ) {
        if !self.follow(from, term, read_seq, now) {
            return;
        }
        if prev_index < self.log.base_index() {
            // Already covered by our snapshot, which holds committed entries only (the leader's
            // too): our log matches the leader's up to our commit index. A refusal here would
            // leave a probing leader at its `next` for ever.
            self.reply(from, true, self.commit, read_seq);
            return;
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            let hint = prev_index.saturating_sub(1).min(self.log.last_index()).max(self.commit);
            self.reply(from, false, hint, read_seq);
            return;
        }
        let sent_last = prev_index + entries.len() as u64;
        let mut new_entries = Vec::new();
        for entry in entries {
            match self.log.term_at(entry.index) {
                Some(t) if t == entry.term => {}
                Some(_) => {
                    // A conflicting suffix: never a committed one (log matching), drop it.
                    self.persist.truncate_from(entry.index);
                    self.log.truncate_from(entry.index);
                    self.track_truncated(entry.index);
                    new_entries.push(entry);
                }
                None => new_entries.push(entry),
            }
        }
        if !new_entries.is_empty() {
            self.persist.append(new_entries.iter().cloned());
            for e in new_entries {
                self.track_appended(&e);
                self.log.push(e);
            }
        }
        // Everything up to the last entry the leader sent now matches its log.
        let matched = sent_last;
        let new_commit = commit.min(matched);
        if new_commit > self.commit {
            self.commit = new_commit;
            self.apply_committed();
        }
        self.check_recovered(term, commit, from);
        self.reply(from, true, matched, read_seq);
    }

    /// The wiped-node rule: leave recovering once the leader of `term` has committed something
    /// since we first heard from it after the restart, and we hold the log up to it.
    pub(super) fn check_recovered(&mut self, term: Term, leader_commit: LogIndex, leader: NodeId) {
        if !self.recovering {
            return;
        }
        match self.recover_floor {
            Some((t, floor)) if t == term => {
                if leader_commit > floor && self.commit >= leader_commit {
                    self.recovering = false;
                    self.recover_floor = None;
                    // Adopt the term's leader as our vote: it is the one leader of this term.
                    self.voted_for = Some(leader);
                    self.persist_hard_state();
                }
            }
            _ => self.recover_floor = Some((term, leader_commit)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn on_append_reply(
        &mut self,
        from: NodeId,
        term: Term,
        success: bool,
        match_index: LogIndex,
        read_seq: u64,
        recovering: bool,
        now: Timestamp,
    ) {
        if self.role != Role::Leader || term != self.term {
            return;
        }
        let last = self.log.last_index();
        let idle = self.commit == last;
        let Some(peer) = self.lead.progress.get_mut(&from) else { return };
        peer.last_contact = Some(now);
        peer.recovering = recovering;
        if read_seq > peer.acked_seq {
            peer.acked_seq = read_seq;
        }
        let awaiting_snapshot = match peer.snapshot {
            Some((at, ..)) if success && match_index >= at => {
                peer.snapshot = None;
                peer.snapshot_wait = None;
                peer.snapshot_sent = None;
                false
            }
            Some(_) => true,
            None => false,
        };
        if awaiting_snapshot {
            // An answer from before the snapshot arrived: it says nothing of where to go on.
        } else if success {
            peer.probing = false;
            peer.probe_sent = false;
            if match_index > peer.matched {
                peer.matched = match_index.min(last);
            }
            while peer.inflight.front().is_some_and(|&sent| sent <= match_index) {
                peer.inflight.pop_front();
            }
            if peer.next <= peer.matched {
                peer.next = peer.matched + 1;
            }
        } else {
            let hint = match_index.saturating_add(1).max(1);
            if hint < peer.next {
                peer.probe_from(hint);
            }
            // Otherwise it refused an append from further on than where we probe now: an
            // answer already acted on (each refusal of the append at `next` moves it back).
        }
        // More to send: entries past what it holds (committed ones only, to a learner).
        let sendable = if peer.voter { last } else { last.min(self.commit) };
        if peer.next <= sendable {
            peer.dirty = true;
        }
        // A recovering peer waits for a commit after its return; with nothing to commit, make
        // something (at most one in flight: the next one waits until this one commits).
        if recovering && idle {
            self.append_local(Payload::Noop);
        }
        self.maybe_hand_over();
        self.maybe_commit();
        self.serve_reads();
    }
}
