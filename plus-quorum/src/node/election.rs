//! Elections: pre-vote, campaigns, votes, and becoming leader or follower.

use std::collections::HashSet;

use plus_core::Timestamp;

use super::{Node, Role};
use crate::ids::{LogIndex, NodeId, Term};
use crate::log::Payload;
use crate::message::Message;

impl Node {
    pub(super) fn become_follower(&mut self, term: Term, leader: Option<NodeId>, now: Timestamp) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            if !self.persist_hard_state() {
                return;
            }
        }
        self.role = Role::Follower;
        self.set_leader(leader);
        if was_leader {
            tracing::info!(node = self.config.id, term = self.term, "stepped down as leader");
            self.handed_over = self.lead.transfer.take();
            self.fail_pending();
        }
        self.reset_election_timer(now);
    }

    /// Asks, without changing anyone's term, whether a majority would vote for us.
    pub(super) fn pre_vote(&mut self, now: Timestamp) {
        self.role = Role::PreCandidate;
        self.set_leader(None);
        tracing::debug!(
            node = self.config.id,
            term = self.term,
            "pre-vote: would a majority elect us?"
        );
        if self.start_round(now) {
            self.campaign(now);
        } else {
            self.resend_vote_requests(now);
        }
    }

    /// Starts a (pre-)vote round with our own vote; true when that alone is a majority.
    pub(super) fn start_round(&mut self, now: Timestamp) -> bool {
        self.votes = HashSet::new();
        if self.is_voter() {
            self.votes.insert(self.config.id);
        }
        self.reset_election_timer(now);
        self.votes.len() >= self.quorum()
    }

    /// Raft's election restriction: a candidate's log (`last_term`, `last_index`) is at least
    /// as up to date as ours.
    pub(super) fn candidate_log_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.log.last_term(), self.log.last_index())
    }

    /// Whether this node may grant a vote at all (not while recovering from a wipe).
    pub(super) fn may_vote(&self) -> bool {
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.wiped_node_votes {
            return true;
        }
        !self.recovering
    }

    pub(super) fn resend_vote_requests(&mut self, now: Timestamp) {
        self.heartbeat_deadline = now + self.config.heartbeat_interval;
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let pre = self.role == Role::PreCandidate;
        let missing: Vec<NodeId> = self
            .peers
            .iter()
            .copied()
            .filter(|&p| !self.votes.contains(&p) && self.votes_here(p))
            .collect();
        for p in missing {
            let msg = if pre {
                Message::PreVote { term: self.term.saturating_add(1), last_index, last_term }
            } else {
                Message::Vote { term: self.term, last_index, last_term }
            };
            self.send(p, msg);
        }
    }

    pub(super) fn on_pre_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        now: Timestamp,
    ) {
        let up_to_date = self.candidate_log_up_to_date(last_term, last_index);
        // Leader stickiness: while we hear from a leader, nobody needs a new one.
        let leader_alive = self.role == Role::Leader
            || self.leader_contact.is_some_and(|t| now < t + self.config.election_timeout);
        let granted = self.may_vote() && term > self.term && up_to_date && !leader_alive;
        let reply_term = if granted { term } else { self.term };
        self.send(from, Message::PreVoteReply { term: reply_term, granted });
    }

    /// A pre-vote answer: with a majority for us, campaign for real.
    pub(super) fn on_pre_vote_reply(&mut self, from: NodeId, term: Term, now: Timestamp) {
        if self.role == Role::PreCandidate
            && Some(term) == self.term.checked_add(1)
            && self.votes_here(from)
        {
            self.votes.insert(from);
            if self.votes.len() >= self.quorum() {
                self.campaign(now);
            }
        }
    }

    /// A vote: with a majority, lead.
    pub(super) fn on_vote_reply(&mut self, from: NodeId, term: Term, now: Timestamp) {
        if self.role == Role::Candidate && term == self.term && self.votes_here(from) {
            self.votes.insert(from);
            if self.votes.len() >= self.quorum() {
                self.become_leader(now);
            }
        }
    }

    pub(super) fn campaign(&mut self, now: Timestamp) {
        // Unreachable through messages (admission refuses `Term::MAX`), but a term is never
        // wrapped: a node at the last term stays where it is rather than vote twice in one.
        let Some(next) = self.term.checked_add(1) else {
            tracing::error!(node = self.config.id, "term at its maximum: cannot campaign");
            return;
        };
        self.role = Role::Candidate;
        self.term = next;
        self.voted_for = Some(self.config.id);
        self.set_leader(None);
        if !self.persist_hard_state() {
            return;
        }
        self.counters.elections_started += 1;
        tracing::info!(node = self.config.id, term = self.term, "election started");
        if self.start_round(now) {
            self.become_leader(now);
        } else {
            self.resend_vote_requests(now);
        }
    }

    pub(super) fn become_leader(&mut self, now: Timestamp) {
        self.role = Role::Leader;
        self.counters.terms_led += 1;
        tracing::info!(
            node = self.config.id,
            term = self.term,
            last_index = self.log.last_index(),
            "became leader"
        );
        self.set_leader(Some(self.config.id));
        self.lead.start(self.log.last_index() + 1, now);
        self.restart_lease_clocks(now);
        // Committing an entry of its own term commits everything before it and lets reads go.
        self.append_local(Payload::Noop);
        self.heartbeat_deadline = now + self.config.heartbeat_interval;
        self.election_deadline = now + self.config.election_timeout;
        self.maybe_commit();
    }

    pub(super) fn on_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        now: Timestamp,
    ) {
        let may_vote = self.may_vote();
        let up_to_date = self.candidate_log_up_to_date(last_term, last_index);
        let granted = term == self.term
            && may_vote
            && self.role != Role::Leader
            && self.voted_for.is_none_or(|v| v == from)
            && up_to_date;
        if granted {
            self.voted_for = Some(from);
            if !self.persist_hard_state() {
                return;
            }
            self.reset_election_timer(now);
        }
        self.send(from, Message::VoteReply { term: self.term, granted });
    }
}
