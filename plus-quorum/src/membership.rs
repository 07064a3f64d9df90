//! Who takes part in the cluster: voters and learners, the changes an operator asks for, and the
//! configurations a node's log holds.
//!
//! Changes go one server at a time (Ongaro's thesis, section 4.1): any two configurations one
//! change apart have overlapping majorities, so no two leaders can be elected and no two commits
//! can be made by disjoint quorums, even while nodes disagree about which of the two is in force.
//! That holds only with the two rules that come with it, both kept here:
//!
//! - a configuration takes effect on each node as soon as its entry is in that node's log
//!   (committed or not), and a truncated entry takes its configuration away with it;
//! - a leader proposes a change only once it has committed an entry of its own term (the fix
//!   published on raft-dev in 2015: without it, a new leader could propose a change while an
//!   uncommitted change of a deposed leader is still in some logs, and the two could skip a
//!   step) and once the previous change is committed (at most one change in flight).
//!
//! Joint consensus would allow arbitrary changes in one step, at the cost of a second kind of
//! configuration in every quorum count; replacing a node, the operation a platform needs, is
//! three single steps (add a learner, promote it, remove the old voter), so the simpler rule
//! serves.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::ids::{LogIndex, NodeId};

/// The members of a cluster: voters elect the leader and make up every quorum; learners receive
/// the log and apply it, but never vote and never count toward any quorum.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Membership {
    voters: BTreeSet<NodeId>,
    learners: BTreeSet<NodeId>,
    /// Where members can be reached, for transports that connect by address (set when a
    /// member is added with one).
    addresses: BTreeMap<NodeId, String>,
}

impl Membership {
    /// A configuration of `voters` and no learners.
    #[must_use]
    pub fn with_voters(voters: impl IntoIterator<Item = NodeId>) -> Self {
        Self { voters: voters.into_iter().collect(), ..Self::default() }
    }

    /// The voters.
    #[must_use]
    pub fn voters(&self) -> &BTreeSet<NodeId> {
        &self.voters
    }

    /// The learners.
    #[must_use]
    pub fn learners(&self) -> &BTreeSet<NodeId> {
        &self.learners
    }

    /// Every member, voters and learners.
    pub fn members(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.voters.iter().chain(&self.learners).copied()
    }

    /// Whether `id` votes.
    #[must_use]
    pub fn is_voter(&self, id: NodeId) -> bool {
        self.voters.contains(&id)
    }

    /// Whether `id` is a learner.
    #[must_use]
    pub fn is_learner(&self, id: NodeId) -> bool {
        self.learners.contains(&id)
    }

    /// Whether `id` is a member at all.
    #[must_use]
    pub fn contains(&self, id: NodeId) -> bool {
        self.is_voter(id) || self.is_learner(id)
    }

    /// The address a member was added with, if any.
    #[must_use]
    pub fn address(&self, id: NodeId) -> Option<&str> {
        self.addresses.get(&id).map(String::as_str)
    }

    /// Sets the address of a member (for the configuration a cluster starts with).
    #[must_use]
    pub fn with_address(mut self, id: NodeId, address: impl Into<String>) -> Self {
        self.addresses.insert(id, address.into());
        self
    }

    /// How many voters make a majority.
    #[must_use]
    pub fn quorum(&self) -> usize {
        self.voters.len() / 2 + 1
    }

    /// The configuration after `change`, or why it cannot be made. Leader transfer changes
    /// nobody's role and is refused here.
    ///
    /// # Errors
    /// A [`MembershipError`] naming the member and the rule.
    pub fn after(&self, change: &ClusterChange) -> Result<Self, MembershipError> {
        let mut next = self.clone();
        match change {
            ClusterChange::AddLearner { id, address } => {
                if self.contains(*id) {
                    return Err(MembershipError::AlreadyMember { id: *id });
                }
                next.learners.insert(*id);
                if let Some(address) = address {
                    next.addresses.insert(*id, address.clone());
                }
            }
            ClusterChange::Promote { id } => {
                if !self.is_learner(*id) {
                    return Err(MembershipError::NotALearner { id: *id });
                }
                next.learners.remove(id);
                next.voters.insert(*id);
            }
            ClusterChange::Remove { id } => {
                if !self.contains(*id) {
                    return Err(MembershipError::NotAMember { id: *id });
                }
                if self.voters.len() == 1 && self.is_voter(*id) {
                    return Err(MembershipError::LastVoter { id: *id });
                }
                next.voters.remove(id);
                next.learners.remove(id);
                next.addresses.remove(id);
            }
            ClusterChange::TransferLeadership { .. } => {
                return Err(MembershipError::NotAChange);
            }
        }
        Ok(next)
    }
}

impl fmt::Display for Membership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "voters {:?}", self.voters)?;
        if !self.learners.is_empty() {
            write!(f, ", learners {:?}", self.learners)?;
        }
        Ok(())
    }
}

/// What an operator asks of the cluster (see [`Node::change_cluster`](crate::Node::change_cluster)).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClusterChange {
    /// Add a node as a learner: it receives the log (or a snapshot) and applies it, without a
    /// vote. Start it with [`Start::Join`](crate::Start::Join).
    AddLearner {
        /// The new node; never an id the cluster has used before.
        id: NodeId,
        /// Where the other members reach it, for transports that connect by address.
        address: Option<String>,
    },
    /// Make a caught-up learner a voter; a learner more than
    /// [`Config::max_promote_lag`](crate::Config::max_promote_lag) entries behind the leader is
    /// refused with [`MembershipError::LearnerBehind`].
    Promote {
        /// The learner.
        id: NodeId,
    },
    /// Remove a voter or a learner. Removing the leader is allowed: it steps down once the
    /// change commits, and hands over to the most caught-up voter at once.
    Remove {
        /// The member.
        id: NodeId,
    },
    /// Hand leadership to a caught-up voter: the leader stops taking writes, brings the target
    /// up to date and tells it to campaign at once; given up after an election timeout.
    TransferLeadership {
        /// The voter to lead next.
        to: NodeId,
    },
}

/// A completed [`ClusterChange`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClusterChanged {
    /// The new configuration is committed.
    Membership {
        /// The configuration now in force.
        membership: Membership,
        /// The entry that holds it.
        index: LogIndex,
    },
    /// The target leads now.
    LeadershipTransferred {
        /// The new leader.
        to: NodeId,
    },
}

/// Why a [`ClusterChange`] was refused. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum MembershipError {
    /// The previous change is not committed yet: one change at a time.
    #[error("a membership change is still in flight (at index {index}): one change at a time")]
    ChangeInFlight {
        /// The entry of the change in flight.
        index: LogIndex,
    },
    /// The leader has not committed an entry of its own term yet; retry shortly.
    #[error("the leader has not committed an entry of its term yet")]
    LeaderNotReady,
    /// A leadership transfer is under way.
    #[error("a leadership transfer to {to} is under way")]
    Transferring {
        /// Its target.
        to: NodeId,
    },
    /// The node is already a member.
    #[error("node {id} is already a member")]
    AlreadyMember {
        /// The node.
        id: NodeId,
    },
    /// The node is not a member.
    #[error("node {id} is not a member")]
    NotAMember {
        /// The node.
        id: NodeId,
    },
    /// Only a learner can be promoted.
    #[error("node {id} is not a learner")]
    NotALearner {
        /// The node.
        id: NodeId,
    },
    /// Leadership goes only to another voter.
    #[error("node {id} is not another voter")]
    NotAVoter {
        /// The node.
        id: NodeId,
    },
    /// The learner is too far behind to be promoted.
    #[error("learner {id} is {lag} entries behind the leader, more than the {max_lag} allowed")]
    LearnerBehind {
        /// The learner.
        id: NodeId,
        /// How far behind it is.
        lag: u64,
        /// The most allowed ([`Config::max_promote_lag`](crate::Config::max_promote_lag)).
        max_lag: u64,
    },
    /// After the change, the voters the leader hears from would not make a quorum of the new
    /// configuration (etcd's strict reconfiguration check): the change would leave the cluster
    /// unable to commit until another node comes back.
    #[error(
        "the change would leave {healthy} reachable voters, short of the new quorum of {quorum}"
    )]
    WouldLoseQuorum {
        /// Voters of the new configuration the leader has heard from lately (itself included).
        healthy: usize,
        /// The new configuration's quorum.
        quorum: usize,
    },
    /// The last voter cannot be removed.
    #[error("node {id} is the last voter")]
    LastVoter {
        /// The node.
        id: NodeId,
    },
    /// The transfer's target did not catch up and win an election within an election timeout;
    /// the leader takes writes again.
    #[error("the leadership transfer to {to} timed out")]
    TransferTimedOut {
        /// The target.
        to: NodeId,
    },
    /// Leader transfer is not a configuration.
    #[error("a leadership transfer does not change the membership")]
    NotAChange,
}

/// The configurations a node knows: the one its snapshot (or bootstrap) holds, and one per
/// membership entry in its log after that. The last is in force.
#[derive(Debug, Clone, Default)]
pub(crate) struct Configurations {
    base: Membership,
    in_log: Vec<(LogIndex, Membership)>,
    /// Bumped by every change that may change the configuration in force, so a driver can
    /// tell "maybe changed" without comparing the sets every turn.
    changes: u64,
}

impl Configurations {
    pub(crate) fn new(base: Membership) -> Self {
        Self { base, in_log: Vec::new(), changes: 0 }
    }

    /// A counter that moves whenever [`Configurations::current`] may have changed (it may
    /// also move when it did not).
    pub(crate) fn changes(&self) -> u64 {
        self.changes
    }

    /// The configuration in force.
    pub(crate) fn current(&self) -> &Membership {
        self.in_log.last().map_or(&self.base, |(_, m)| m)
    }

    /// The configuration in force once `index` is applied (for a snapshot at `index`).
    pub(crate) fn at(&self, index: LogIndex) -> &Membership {
        self.in_log.iter().rev().find(|(i, _)| *i <= index).map_or(&self.base, |(_, m)| m)
    }

    /// The index of the latest membership entry in the log, if any.
    pub(crate) fn latest_index(&self) -> Option<LogIndex> {
        self.in_log.last().map(|(i, _)| *i)
    }

    pub(crate) fn push(&mut self, index: LogIndex, membership: Membership) {
        self.changes += 1;
        self.in_log.push((index, membership));
    }

    /// Entries from `index` on are gone from the log: so are their configurations.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        self.changes += 1;
        self.in_log.retain(|(i, _)| *i < index);
    }

    /// The log up to `index` is now a snapshot.
    pub(crate) fn compact_to(&mut self, index: LogIndex) {
        self.changes += 1;
        self.base = self.at(index).clone();
        self.in_log.retain(|(i, _)| *i > index);
    }

    /// Everything replaced by a snapshot holding `base`.
    pub(crate) fn reset(&mut self, base: Membership) {
        self.changes += 1;
        self.base = base;
        self.in_log.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_change_counter_moves_whenever_the_configuration_in_force_may_change() {
        let mut configs = Configurations::new(Membership::with_voters([1, 2, 3]));
        let mut seen = configs.changes();
        let mut moved = |configs: &Configurations| {
            let now = configs.changes();
            std::mem::replace(&mut seen, now) != now
        };
        configs.push(5, Membership::with_voters([1, 2, 3, 4]));
        assert!(moved(&configs) && configs.current().is_voter(4), "a pushed configuration");
        configs.truncate_from(5);
        assert!(moved(&configs) && !configs.current().is_voter(4), "a truncated one");
        configs.push(6, Membership::with_voters([1, 2]));
        configs.compact_to(6);
        assert!(moved(&configs), "a compaction");
        configs.reset(Membership::with_voters([7]));
        assert!(moved(&configs) && configs.current().is_voter(7), "a snapshot's");
        let _ = configs.at(6);
        assert!(!moved(&configs), "reading moves nothing");
    }

    #[test]
    fn a_change_is_checked_against_the_roles() {
        let m = Membership::with_voters([1, 2, 3]);
        let add = ClusterChange::AddLearner { id: 4, address: Some("127.0.0.1:1".into()) };
        let with_learner = m.after(&add).unwrap();
        assert!(with_learner.is_learner(4) && !with_learner.is_voter(4));
        assert_eq!(with_learner.address(4), Some("127.0.0.1:1"));
        assert_eq!(with_learner.quorum(), 2, "a learner never counts");
        assert_eq!(with_learner.after(&add), Err(MembershipError::AlreadyMember { id: 4 }));
        let promoted = with_learner.after(&ClusterChange::Promote { id: 4 }).unwrap();
        assert_eq!(promoted.quorum(), 3);
        assert_eq!(
            promoted.after(&ClusterChange::Promote { id: 4 }),
            Err(MembershipError::NotALearner { id: 4 })
        );
        let removed = promoted.after(&ClusterChange::Remove { id: 1 }).unwrap();
        assert_eq!(removed.voters().iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
        assert_eq!(
            removed.after(&ClusterChange::Remove { id: 1 }),
            Err(MembershipError::NotAMember { id: 1 })
        );
        let single = Membership::with_voters([7]);
        assert_eq!(
            single.after(&ClusterChange::Remove { id: 7 }),
            Err(MembershipError::LastVoter { id: 7 })
        );
    }

    #[test]
    fn configurations_follow_the_log() {
        let mut c = Configurations::new(Membership::with_voters([1, 2, 3]));
        c.push(5, Membership::with_voters([1, 2, 3, 4]));
        c.push(9, Membership::with_voters([2, 3, 4]));
        assert_eq!(c.current(), &Membership::with_voters([2, 3, 4]));
        assert_eq!(c.at(7), &Membership::with_voters([1, 2, 3, 4]));
        c.truncate_from(9);
        assert_eq!(c.current(), &Membership::with_voters([1, 2, 3, 4]), "truncated away");
        c.compact_to(6);
        assert_eq!(c.latest_index(), None);
        assert_eq!(c.current(), &Membership::with_voters([1, 2, 3, 4]), "kept by the snapshot");
    }
}
