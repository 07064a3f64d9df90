//! Membership on a node: the configuration in force follows the log (appended, truncated,
//! compacted, replaced by a snapshot), the leader's changes one at a time, leadership transfer,
//! and a removed leader's hand-over.

use plus_core::Timestamp;

use super::leader::{Peer, Transfer};
use super::{Node, Role};
use crate::client_error::ClientError;
use crate::ids::{LogIndex, NodeId, RequestId, Term};
use crate::log::{Entry, Payload};
use crate::membership::{ClusterChange, ClusterChanged, Membership, MembershipError};
use crate::message::Message;
use crate::ops::{ClientOutput, Response};

impl Node {
    /// The configuration in force on this node: the latest in its log, committed or not.
    #[must_use]
    pub fn membership(&self) -> &Membership {
        self.configs.current()
    }

    /// A counter that moves whenever [`Node::membership`] may have changed (and sometimes
    /// when it did not): a driver compares the configuration only when this moved, instead of
    /// comparing its sets every turn.
    #[must_use]
    pub fn membership_changes(&self) -> u64 {
        self.configs.changes()
    }

    /// The configuration of the latest committed entry this node knows of (what the cluster
    /// has agreed on; [`Node::membership`] may be one change ahead).
    #[must_use]
    pub fn committed_membership(&self) -> &Membership {
        self.configs.at(self.commit)
    }

    /// Whether this node votes in the configuration it knows.
    pub(super) fn is_voter(&self) -> bool {
        self.configs.current().is_voter(self.config.id)
    }

    /// Whether this node may start an election: a voter of its latest configuration, or of
    /// the committed one that an uncommitted change is removing it from. Such a node is still
    /// needed until the change commits (Ongaro's thesis, 4.2.2): with another voter down, the
    /// others may be unable to elect anyone whose log is as up to date as its own.
    pub(super) fn may_campaign(&self) -> bool {
        self.is_voter() || self.committed_membership().is_voter(self.config.id)
    }

    /// Whether `id` votes in the configuration this node knows.
    pub(super) fn votes_here(&self, id: NodeId) -> bool {
        self.configs.current().is_voter(id)
    }

    /// Asks for a membership change or a leadership transfer. Its result comes from
    /// [`Node::poll_output`] as [`Response::Cluster`]: a change once its entry is committed, a
    /// transfer once the target leads.
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] when this node does not lead; [`ClientError::Membership`]
    /// when the change breaks a rule (one change at a time, a lagging learner, ...). Nothing
    /// was done in either case.
    pub fn change_cluster(
        &mut self,
        id: RequestId,
        change: &ClusterChange,
    ) -> Result<(), ClientError> {
        if self.role != Role::Leader || self.halted.is_some() {
            return Err(ClientError::NotLeader {
                leader: self.leader.filter(|&l| l != self.config.id),
            });
        }
        if let Some(transfer) = &self.lead.transfer {
            return Err(MembershipError::Transferring { to: transfer.to }.into());
        }
        if let ClusterChange::TransferLeadership { to } = *change {
            return self.start_transfer(id, to);
        }
        if !self.committed_in_term() {
            return Err(MembershipError::LeaderNotReady.into());
        }
        if let Some(index) = self.configs.latest_index().filter(|&i| i > self.commit) {
            #[cfg(plus_planted_bugs)]
            let refuse = !self.config.bugs.two_changes_in_flight;
            #[cfg(not(plus_planted_bugs))]
            let refuse = true;
            if refuse {
                return Err(MembershipError::ChangeInFlight { index }.into());
            }
        }
        if let ClusterChange::Promote { id: learner } = *change
            && let Some(peer) = self.lead.progress.get(&learner)
        {
            let lag = self.log.last_index().saturating_sub(peer.matched);
            // A learner never heard from is behind by definition, however short the log.
            if lag > self.config.max_promote_lag || peer.last_contact.is_none() || peer.recovering {
                return Err(MembershipError::LearnerBehind {
                    id: learner,
                    lag,
                    max_lag: self.config.max_promote_lag,
                }
                .into());
            }
        }
        let next = self.configs.current().after(change)?;
        let healthy = self.healthy_voters(&next);
        if healthy < next.quorum() {
            return Err(MembershipError::WouldLoseQuorum { healthy, quorum: next.quorum() }.into());
        }
        tracing::info!(node = self.config.id, term = self.term, %next, "membership change proposed");
        if let Some(index) = self.append_local(Payload::Membership(next)) {
            self.lead.pending_writes.insert(index, (id, self.term));
            self.maybe_commit();
        }
        Ok(())
    }

    /// The voters of `membership` this leader has heard from within an election timeout (and
    /// that have not lost their memory), itself included.
    fn healthy_voters(&self, membership: &Membership) -> usize {
        let horizon = self.clock.since_origin().saturating_sub(self.config.election_timeout);
        let me = usize::from(membership.is_voter(self.config.id));
        me + self
            .lead
            .progress
            .iter()
            .filter(|(id, p)| {
                membership.is_voter(**id)
                    && !p.recovering
                    && p.last_contact.is_some_and(|t| t.since_origin() >= horizon)
            })
            .count()
    }

    fn start_transfer(&mut self, id: RequestId, to: NodeId) -> Result<(), ClientError> {
        if to == self.config.id || !self.votes_here(to) {
            return Err(MembershipError::NotAVoter { id: to }.into());
        }
        tracing::info!(node = self.config.id, term = self.term, to, "leadership transfer started");
        self.lead.transfer = Some(Transfer {
            to,
            request: id,
            deadline: self.clock + self.config.election_timeout,
            told: false,
        });
        self.lead.mark_all_dirty();
        self.maybe_hand_over();
        Ok(())
    }

    /// During a transfer: once the target holds the whole log, tell it to campaign now.
    pub(super) fn maybe_hand_over(&mut self) {
        let last = self.log.last_index();
        let Some(transfer) = self.lead.transfer.as_mut() else { return };
        let caught_up = self.lead.progress.get(&transfer.to).is_some_and(|p| p.matched >= last);
        if transfer.told || !caught_up {
            return;
        }
        transfer.told = true;
        let to = transfer.to;
        self.send(to, Message::TimeoutNow { term: self.term });
    }

    /// The leader's transfer ran out of time: it takes writes again.
    pub(super) fn expire_transfer(&mut self, now: Timestamp) {
        if let Some(transfer) = self.lead.transfer.take_if(|t| now >= t.deadline) {
            tracing::warn!(
                node = self.config.id,
                to = transfer.to,
                "leadership transfer timed out"
            );
            self.outputs.push_back(ClientOutput {
                id: transfer.request,
                result: Err(MembershipError::TransferTimedOut { to: transfer.to }.into()),
            });
        }
    }

    /// A deposed leader whose transfer was under way learns how it ended: the target leads
    /// (success), or someone else does, or nobody within the deadline (unknown).
    pub(super) fn settle_transfer(&mut self, leader: Option<NodeId>, now: Timestamp) {
        let Some(transfer) = self.handed_over.as_ref() else { return };
        let result = match leader {
            Some(l) if l == transfer.to => {
                Ok(Response::Cluster(ClusterChanged::LeadershipTransferred { to: l }))
            }
            Some(_) => Err(ClientError::Unknown),
            None if now >= transfer.deadline => Err(ClientError::Unknown),
            None => return,
        };
        let request = transfer.request;
        self.handed_over = None;
        self.outputs.push_back(ClientOutput { id: request, result });
    }

    /// `TimeoutNow` from our leader: campaign at once, without a pre-vote (the leader has
    /// stopped, so nobody else is about to).
    pub(super) fn on_timeout_now(&mut self, from: NodeId, term: Term, now: Timestamp) {
        if term == self.term
            && self.leader == Some(from)
            && self.is_voter()
            && !self.recovering
            && self.role != Role::Leader
        {
            tracing::info!(node = self.config.id, term, from, "told to campaign by the leader");
            self.campaign(now);
        }
    }

    /// Records what an entry just added to the log does to the membership.
    pub(super) fn track_appended(&mut self, entry: &Entry) {
        if let Payload::Membership(m) = &entry.payload {
            self.configs.push(entry.index, m.clone());
            self.refresh_members();
        }
    }

    /// Entries from `index` on left the log: so did their configurations.
    pub(super) fn track_truncated(&mut self, index: LogIndex) {
        if self.configs.latest_index().is_some_and(|i| i >= index) {
            self.configs.truncate_from(index);
            self.refresh_members();
        }
    }

    /// The configuration a node starts with when neither its snapshot nor its log holds one:
    /// the members it was started with, or none for a node joining a running cluster.
    pub(super) fn bootstrap_membership(config: &super::Config) -> Membership {
        #[cfg(plus_planted_bugs)]
        if config.bugs.joiner_uses_start_members {
            return Membership::with_voters(config.members.iter().copied());
        }
        match config.start {
            super::Start::Join => Membership::default(),
            _ => Membership::with_voters(config.members.iter().copied()),
        }
    }

    /// Peers and the leader's progress follow the configuration in force.
    pub(super) fn refresh_members(&mut self) {
        let membership = self.configs.current();
        let me = self.config.id;
        self.peers = membership.members().filter(|&id| id != me).collect();
        self.lead.progress.retain(|id, _| membership.contains(*id) && *id != me);
        let next = self.log.last_index() + 1;
        for &id in &self.peers {
            self.lead.progress.entry(id).or_insert_with(|| Peer::probing(next));
        }
        for (id, peer) in &mut self.lead.progress {
            peer.voter = membership.is_voter(*id);
            #[cfg(plus_planted_bugs)]
            if self.config.bugs.learner_ack_counts {
                peer.voter = true;
            }
        }
        self.votes.retain(|id| *id == me || membership.is_voter(*id));
    }

    /// A committed configuration that leaves the leader out: it hands over to the most
    /// caught-up voter (who campaigns at once) and steps down.
    pub(super) fn step_down_if_removed(&mut self, now: Timestamp) {
        // Until its removal commits, the leader leads a cluster it is not part of, without
        // counting itself (Ongaro's thesis, 4.2.2).
        if self.role != Role::Leader || self.may_campaign() {
            return;
        }
        let successor = self
            .lead
            .progress
            .iter()
            .filter(|(_, p)| p.voter)
            .max_by_key(|(_, p)| p.matched)
            .map(|(&id, _)| id);
        tracing::info!(
            node = self.config.id,
            term = self.term,
            successor,
            "removed from the cluster: stepping down"
        );
        if let Some(to) = successor {
            self.replicate_to(to);
            self.send(to, Message::TimeoutNow { term: self.term });
        }
        self.become_follower(self.term, None, now);
    }
}
