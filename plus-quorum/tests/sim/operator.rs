//! The operator: membership changes at random moments, sent to the leader as an operator's
//! tool would, with the nodes they need started in spare slots and the nodes they remove
//! stopped a while later (until then a removed node keeps running, and must not disturb).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use plus_core::Timestamp;
use plus_quorum::{
    ClientError, ClientOutput, ClusterChange, MemStorage, Membership, MembershipError, Node,
    NodeId, Start,
};
use rand::Rng;

use super::Sim;

/// Whether some majority of `a` and some majority of `b` can be disjoint: two leaders (or two
/// commits) could then be made, one by each.
pub(super) fn majorities_can_miss(a: &Membership, b: &Membership) -> bool {
    let (a, b) = (a.voters(), b.voters());
    if a.is_empty() || b.is_empty() {
        return false;
    }
    let shared = a.intersection(b).count();
    let need_a = (a.len() / 2 + 1).saturating_sub(a.len() - shared);
    let need_b = (b.len() / 2 + 1).saturating_sub(b.len() - shared);
    need_a + need_b <= shared
}

/// How long a node outside the committed configuration keeps running before it is stopped.
const OUTSIDE_GRACE: Duration = Duration::from_millis(1_500);

pub(super) struct Operator {
    next_id: NodeId,
    in_flight: Option<Pending>,
    /// The steps of a replacement still to do.
    plan: VecDeque<ClusterChange>,
    next_action: Timestamp,
    /// The next step of the plan goes without waiting for the answer to this one.
    rush: bool,
    /// Nodes running outside the leader's configuration, and since when.
    outside_since: HashMap<NodeId, Timestamp>,
}

struct Pending {
    request_id: u64,
    deadline: Timestamp,
}

impl Operator {
    pub(super) fn new(next_id: NodeId) -> Self {
        Self {
            next_id,
            in_flight: None,
            plan: VecDeque::new(),
            next_action: Timestamp::from_millis(1_000),
            rush: false,
            outside_since: HashMap::new(),
        }
    }
}

impl Sim {
    /// The leader, unfrozen, of the highest term any running node has reached (a deposed
    /// leader that has not heard of it yet is not asked, and its view of the members is not
    /// acted on).
    fn leader_slot(&self) -> Option<usize> {
        let newest = self.nodes.iter().flatten().map(Node::term).max()?;
        (0..self.slots())
            .filter(|&i| !self.is_paused(i))
            .find(|&i| self.nodes[i].as_ref().is_some_and(|n| n.is_leader() && n.term() == newest))
    }

    /// The fewest voters in any configuration a running node holds: the fault budget must
    /// hold for every configuration a leader could be elected in.
    pub(super) fn voter_count(&self) -> usize {
        self.nodes
            .iter()
            .flatten()
            .flat_map(|n| [n.membership(), n.committed_membership()])
            .map(|m| m.voters().len())
            .filter(|&v| v > 0)
            .min()
            .unwrap_or(self.cfg.nodes)
    }

    /// One operator step, now and then: a membership change or a leadership transfer.
    pub(super) fn operate(&mut self) {
        if !self.cfg.membership {
            return;
        }
        self.stop_outsiders(false);
        if self.operator.in_flight.as_ref().is_some_and(|p| self.now >= p.deadline) {
            self.operator.in_flight = None;
            self.count("membership_change_unanswered");
        }
        // Now and then the operator does not wait for the previous change (a second operator,
        // or an impatient one): the leader must refuse a second change in flight.
        let impatient = self.operator.in_flight.is_some() && self.operator.rush;
        if (self.operator.in_flight.is_some() && !impatient) || self.now < self.operator.next_action
        {
            return;
        }
        self.operator.next_action =
            self.now + Duration::from_millis(self.rng.random_range(100..600));
        let Some(l) = self.leader_slot() else { return };
        let leader = self.nodes[l].as_ref().expect("a leader runs");
        let (membership, leader_id) = (leader.membership().clone(), leader.id());
        // A careful operator changes the membership of a healthy cluster only: every member
        // running, none frozen or still recovering from a wipe.
        let healthy = membership.members().all(|id| {
            self.slot(id).is_some_and(|s| {
                !self.is_paused(s) && self.nodes[s].as_ref().is_some_and(|n| !n.is_recovering())
            })
        });
        if !healthy {
            return;
        }
        let planned = self.operator.plan.pop_front();
        let from_plan = planned.is_some();
        let Some(change) = planned.or_else(|| self.random_change(&membership, leader_id)) else {
            return;
        };
        if let ClusterChange::AddLearner { id, .. } = change
            && !self.start_joiner(id)
        {
            self.operator.plan.clear();
            return;
        }
        if impatient {
            self.count("membership_change_without_waiting");
        }
        let request_id = self.next_request;
        self.next_request += 1;
        self.trace(("membership", format!("{change:?}"), self.now.as_millis()));
        let node = self.nodes[l].as_mut().expect("a leader runs");
        if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
            eprintln!(
                "{} operator -> {} (term {} commit {} last {}): {change:?}",
                self.now.as_millis(),
                node.id(),
                node.term(),
                node.commit_index(),
                node.last_index()
            );
        }
        match node.change_cluster(request_id, &change) {
            Ok(()) => {
                self.count(kind(&change, leader_id));
                // Now and then the next change goes without waiting for this one's answer (a
                // replacement's steps in a hurry, or a second operator).
                self.operator.rush = self.rng.random_bool(0.3);
                if self.operator.rush || !self.operator.plan.is_empty() {
                    self.operator.next_action =
                        self.now + Duration::from_millis(self.rng.random_range(0..50));
                }
                self.operator.in_flight =
                    Some(Pending { request_id, deadline: self.now + Duration::from_secs(3) });
            }
            Err(refused) => {
                self.count("membership_change_refused");
                let transient = matches!(
                    refused,
                    ClientError::Membership(
                        MembershipError::LeaderNotReady
                            | MembershipError::ChangeInFlight { .. }
                            | MembershipError::LearnerBehind { .. }
                            | MembershipError::WouldLoseQuorum { .. }
                    )
                );
                if from_plan && transient {
                    self.operator.plan.push_front(change);
                } else {
                    self.operator.plan.clear();
                }
            }
        }
    }

    fn random_change(&mut self, m: &Membership, leader: NodeId) -> Option<ClusterChange> {
        let voters: Vec<NodeId> = m.voters().iter().copied().collect();
        let learners: Vec<NodeId> = m.learners().iter().copied().collect();
        let others: Vec<NodeId> = voters.iter().copied().filter(|&v| v != leader).collect();
        let min_voters = self.cfg.nodes.saturating_sub(1).max(3);
        let max_voters = self.cfg.nodes + 1;
        let vacant = self.ids.iter().any(Option::is_none);
        let pick =
            |rng: &mut plus_core::SeededRng, from: &[NodeId]| from[rng.random_range(0..from.len())];
        match self.rng.random_range(0..7) {
            0 if vacant && learners.len() < 2 => Some(self.new_learner()),
            1 if !learners.is_empty() && voters.len() < max_voters => {
                Some(ClusterChange::Promote { id: pick(&mut self.rng, &learners) })
            }
            2 | 3 if voters.len() > min_voters => {
                if others.is_empty() || self.rng.random_bool(0.5) {
                    Some(ClusterChange::Remove { id: leader })
                } else {
                    Some(ClusterChange::Remove { id: pick(&mut self.rng, &others) })
                }
            }
            4 if !others.is_empty() => {
                Some(ClusterChange::TransferLeadership { to: pick(&mut self.rng, &others) })
            }
            5 if vacant && learners.len() < 2 => {
                // Replace a voter, the leader included: add, promote, remove.
                let old =
                    if self.rng.random_bool(0.5) { leader } else { pick(&mut self.rng, &voters) };
                let add = self.new_learner();
                let ClusterChange::AddLearner { id, .. } = add else { unreachable!() };
                self.operator
                    .plan
                    .extend([ClusterChange::Promote { id }, ClusterChange::Remove { id: old }]);
                self.count("replacement_started");
                Some(add)
            }
            6 if !learners.is_empty() => {
                Some(ClusterChange::Remove { id: pick(&mut self.rng, &learners) })
            }
            _ => None,
        }
    }

    fn new_learner(&mut self) -> ClusterChange {
        let id = self.operator.next_id;
        self.operator.next_id += 1;
        ClusterChange::AddLearner { id, address: None }
    }

    /// Starts a new, empty node in a vacant slot, told only of itself (the members an operator
    /// passes a joining node are no configuration: only its log gives it one).
    fn start_joiner(&mut self, id: NodeId) -> bool {
        let Some(slot) = self.ids.iter().position(Option::is_none) else { return false };
        let config = Self::node_config(&self.cfg, id, &[id], Start::Join, self.rng.random());
        self.storages[slot] = MemStorage::new();
        let node = Node::new(config, &mut self.storages[slot].clone(), self.now)
            .expect("a joining node starts");
        self.ids[slot] = Some(id);
        self.slot_of.insert(id, slot);
        self.reset_slot(slot);
        self.nodes[slot] = Some(node);
        self.trace(("join", id, self.now.as_millis()));
        true
    }

    /// A slot's per-incarnation bookkeeping starts afresh.
    fn reset_slot(&mut self, slot: usize) {
        self.disk[slot].clear();
        self.versions_seen[slot].clear();
        self.leases_held[slot].clear();
        self.paused_until[slot] = None;
    }

    /// Stops the nodes that are outside the leader's committed configuration (and its latest
    /// one), once they have been for a while, or at once when `now` is set.
    pub(super) fn stop_outsiders(&mut self, at_once: bool) {
        // At the end, the leader the replicas converged on: a node outside the configuration
        // (removed before it heard so) may hold a higher term without leading anything.
        let leader = if at_once {
            (0..self.slots())
                .filter(|&i| self.nodes[i].as_ref().is_some_and(Node::is_leader))
                .max_by_key(|&i| self.nodes[i].as_ref().map_or(0, Node::term))
        } else {
            self.leader_slot()
        };
        let Some(l) = leader else { return };
        let leader = self.nodes[l].as_ref().expect("a leader runs");
        let (committed, latest) =
            (leader.committed_membership().clone(), leader.membership().clone());
        for slot in 0..self.slots() {
            let Some(id) = self.ids[slot] else { continue };
            if committed.contains(id) || latest.contains(id) {
                self.operator.outside_since.remove(&id);
                continue;
            }
            let since = *self.operator.outside_since.entry(id).or_insert(self.now);
            if at_once || self.now >= since + OUTSIDE_GRACE {
                self.operator.outside_since.remove(&id);
                self.nodes[slot] = None;
                self.ids[slot] = None;
                self.slot_of.remove(&id);
                self.storages[slot] = MemStorage::new();
                self.reset_slot(slot);
                self.trace(("stopped", id, self.now.as_millis()));
                self.count("node_stopped_outside_the_configuration");
            }
        }
    }

    /// An answer to the operator's request, if `output` is one.
    pub(super) fn operator_output(&mut self, output: &ClientOutput) -> bool {
        if self.operator.in_flight.as_ref().is_none_or(|p| p.request_id != output.id) {
            return false;
        }
        self.operator.in_flight = None;
        match &output.result {
            Ok(_) => self.count("membership_change_done"),
            Err(_) => {
                self.count("membership_change_failed");
                self.operator.plan.clear();
            }
        }
        true
    }
}

fn kind(change: &ClusterChange, leader: NodeId) -> &'static str {
    match change {
        ClusterChange::AddLearner { .. } => "membership_add_learner",
        ClusterChange::Promote { .. } => "membership_promote",
        ClusterChange::Remove { id } if *id == leader => "membership_remove_leader",
        ClusterChange::Remove { .. } => "membership_remove",
        ClusterChange::TransferLeadership { .. } => "membership_transfer_leadership",
        _ => "membership_other",
    }
}
