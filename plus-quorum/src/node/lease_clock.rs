//! The leader's lease deadlines as a queue ordered by deadline: granting, renewing or ending
//! a lease is O(log n), and a turn of the node's loop looks only at what is due, so a million
//! leases cost nothing while they live (before, every turn and every committed write walked
//! all of them: 100,000 leases slowed grants twentyfold and cost leaders their term).

use std::collections::{BTreeSet, HashMap};

use plus_core::Timestamp;

use crate::lease::LeaseId;

/// When each live lease ends, and which ones the leader has proposed to expire.
#[derive(Debug, Default)]
pub(super) struct LeaseClock {
    deadlines: HashMap<LeaseId, Timestamp>,
    /// `(deadline, lease)` of every lease not being expired, soonest first.
    queue: BTreeSet<(Timestamp, LeaseId)>,
    /// Leases whose expiry is proposed and not yet applied (out of the queue).
    expiring: BTreeSet<LeaseId>,
}

impl LeaseClock {
    /// A clock for `leases`, each ending at its deadline.
    pub(super) fn from_deadlines(leases: impl IntoIterator<Item = (LeaseId, Timestamp)>) -> Self {
        let mut clock = Self::default();
        for (lease, deadline) in leases {
            clock.set(lease, deadline);
        }
        clock
    }

    /// When `lease` ends, if it is tracked.
    pub(super) fn deadline(&self, lease: LeaseId) -> Option<Timestamp> {
        self.deadlines.get(&lease).copied()
    }

    /// `lease` ends at `deadline` (granted, renewed, or first seen).
    pub(super) fn set(&mut self, lease: LeaseId, deadline: Timestamp) {
        if let Some(old) = self.deadlines.insert(lease, deadline) {
            self.queue.remove(&(old, lease));
        }
        if !self.expiring.contains(&lease) {
            self.queue.insert((deadline, lease));
        }
    }

    /// `lease` is gone (revoked, or its expiry applied).
    pub(super) fn remove(&mut self, lease: LeaseId) {
        if let Some(old) = self.deadlines.remove(&lease) {
            self.queue.remove(&(old, lease));
        }
        self.expiring.remove(&lease);
    }

    /// Whether the leader has proposed `lease`'s expiry.
    pub(super) fn is_expiring(&self, lease: LeaseId) -> bool {
        self.expiring.contains(&lease)
    }

    /// The leases due at `now` that are not expiring yet, marked expiring: the work is what
    /// is due, not what lives.
    pub(super) fn take_due(&mut self, now: Timestamp) -> Vec<LeaseId> {
        let mut due = Vec::new();
        while let Some(&(deadline, lease)) = self.queue.first() {
            if deadline > now {
                break;
            }
            self.queue.pop_first();
            self.expiring.insert(lease);
            due.push(lease);
        }
        due
    }

    /// The soonest deadline of a lease not being expired.
    pub(super) fn next(&self) -> Option<Timestamp> {
        self.queue.first().map(|&(deadline, _)| deadline)
    }

    /// How many leases it tracks.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.deadlines.len()
    }

    /// Every tracked lease and its deadline (a planted fault walks them).
    #[cfg(plus_planted_bugs)]
    pub(super) fn iter(&self) -> impl Iterator<Item = (LeaseId, Timestamp)> + '_ {
        self.deadlines.iter().map(|(&lease, &deadline)| (lease, deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    #[test]
    fn due_leases_come_out_once_in_deadline_order() {
        let mut clock = LeaseClock::from_deadlines([(1, at(30)), (2, at(10)), (3, at(20))]);
        assert_eq!(clock.next(), Some(at(10)));
        clock.set(2, at(40)); // renewed
        assert_eq!(clock.take_due(at(25)), vec![3]);
        assert!(clock.is_expiring(3));
        assert_eq!(clock.take_due(at(25)), Vec::<LeaseId>::new(), "once");
        // A keep-alive of an expiring lease moves its deadline but not back into the queue.
        clock.set(3, at(100));
        assert_eq!(clock.next(), Some(at(30)));
        assert_eq!(clock.take_due(at(1_000)), vec![1, 2]);
        assert_eq!(clock.next(), None);
        clock.remove(3);
        assert!(!clock.is_expiring(3));
        assert_eq!(clock.len(), 2);
        clock.remove(1);
        clock.remove(2);
        assert_eq!((clock.len(), clock.next()), (0, None));
    }

    #[test]
    fn a_million_leases_cost_only_what_is_due() {
        let mut clock = LeaseClock::from_deadlines((0..1_000_000).map(|i| (i, at(1_000 + i))));
        assert_eq!(clock.take_due(at(1_004)), vec![0, 1, 2, 3, 4]);
        assert_eq!(clock.next(), Some(at(1_005)));
    }
}
