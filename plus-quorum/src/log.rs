//! Log entries, snapshots, and the in-memory log with a compacted prefix.

use serde::{Deserialize, Serialize};

use crate::ids::{LogIndex, Term};
use crate::kv::KvState;
use crate::membership::Membership;
use crate::ops::WriteOp;

/// What an entry carries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Payload {
    /// A new leader's first entry: committing it commits everything before it.
    Noop,
    /// A client write.
    Write(WriteOp),
    /// The leader ends these leases (their time ran out), deleting their keys.
    ExpireLeases(Vec<crate::lease::LeaseId>),
    /// A new configuration: in force on each node as soon as it is in that node's log.
    Membership(Membership),
}

impl Payload {
    /// Its size as the byte bounds on appends count it (keys and values, and a small fixed
    /// cost for the rest).
    #[must_use]
    pub fn bytes(&self) -> usize {
        match self {
            Self::Noop => 16,
            Self::Write(op) => op.request_bytes(),
            Self::ExpireLeases(leases) => 16 + 8 * leases.len(),
            Self::Membership(membership) => 64 + 64 * membership.members().count(),
        }
    }
}

/// One log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The term it was created in.
    pub term: Term,
    /// Its position.
    pub index: LogIndex,
    /// What it does.
    pub payload: Payload,
}

/// The state machine as of a log position: the log up to there collapsed into the map (talk
/// 002's "keep only the latest update of each key").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The last entry it includes.
    pub last_index: LogIndex,
    /// That entry's term.
    pub last_term: Term,
    /// The map.
    pub state: KvState,
    /// The configuration in force at `last_index`; `None` in a snapshot written before
    /// membership changes existed, whose cluster still has the members it started with.
    #[serde(default)]
    pub membership: Option<Membership>,
}

/// The log after its base: the last snapshot, or on a leader a little before it (entries kept
/// for followers catching up).
#[derive(Debug, Clone, Default)]
pub(crate) struct RaftLog {
    base_index: LogIndex,
    base_term: Term,
    entries: Vec<Entry>,
    /// The entries' [`Payload::bytes`], summed.
    bytes: usize,
}

impl RaftLog {
    pub(crate) fn new(base_index: LogIndex, base_term: Term, entries: Vec<Entry>) -> Self {
        let entries: Vec<Entry> = entries.into_iter().filter(|e| e.index > base_index).collect();
        let bytes = entries.iter().map(|e| e.payload.bytes()).sum();
        Self { base_index, base_term, entries, bytes }
    }

    /// The entries' sizes as appends count them, summed.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// The lowest index at or past the base, and at most `at_most`, such that the entries
    /// after it hold no more than `max_bytes`: how far a cut must go to keep the log that small.
    pub(crate) fn cut_to_fit(&self, max_bytes: usize, at_most: LogIndex) -> LogIndex {
        let mut bytes = self.bytes;
        let mut cut = self.base_index;
        for entry in &self.entries {
            if bytes <= max_bytes || cut >= at_most {
                break;
            }
            bytes -= entry.payload.bytes();
            cut = entry.index;
        }
        cut.min(at_most)
    }

    pub(crate) fn base_index(&self) -> LogIndex {
        self.base_index
    }

    pub(crate) fn last_index(&self) -> LogIndex {
        self.base_index + self.entries.len() as u64
    }

    pub(crate) fn last_term(&self) -> Term {
        self.entries.last().map_or(self.base_term, |e| e.term)
    }

    /// The term of the entry at `index`, if known (the base counts).
    pub(crate) fn term_at(&self, index: LogIndex) -> Option<Term> {
        if index == self.base_index {
            return Some(self.base_term);
        }
        if index < self.base_index {
            return None;
        }
        self.entries.get((index - self.base_index - 1) as usize).map(|e| e.term)
    }

    pub(crate) fn get(&self, index: LogIndex) -> Option<&Entry> {
        if index <= self.base_index {
            return None;
        }
        self.entries.get((index - self.base_index - 1) as usize)
    }

    /// Up to `max` entries from `from` (which must be past the base).
    pub(crate) fn slice(&self, from: LogIndex, max: usize) -> Vec<Entry> {
        if from <= self.base_index {
            return Vec::new();
        }
        let start = (from - self.base_index - 1) as usize;
        self.entries.iter().skip(start).take(max).cloned().collect()
    }

    pub(crate) fn push(&mut self, entry: Entry) {
        debug_assert_eq!(entry.index, self.last_index() + 1);
        self.bytes += entry.payload.bytes();
        self.entries.push(entry);
    }

    /// Drops entries from `index` on.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        let keep =
            if index <= self.base_index { 0 } else { (index - self.base_index - 1) as usize };
        if keep < self.entries.len() {
            self.bytes -= self.entries[keep..].iter().map(|e| e.payload.bytes()).sum::<usize>();
            self.entries.truncate(keep);
        }
    }

    /// Forgets entries up to `index` (now covered by a snapshot).
    pub(crate) fn compact_to(&mut self, index: LogIndex, term: Term) {
        if index <= self.base_index {
            return;
        }
        let drop = ((index - self.base_index) as usize).min(self.entries.len());
        self.bytes -= self.entries.drain(..drop).map(|e| e.payload.bytes()).sum::<usize>();
        self.base_index = index;
        self.base_term = term;
    }

    /// Replaces everything with an empty log after a snapshot.
    pub(crate) fn reset(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.bytes = 0;
        self.base_index = index;
        self.base_term = term;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: LogIndex, value_len: usize) -> Entry {
        let op = WriteOp::Set { key: "k".into(), value: vec![0u8; value_len].into() };
        Entry { term: 1, index, payload: Payload::Write(op) }
    }

    #[test]
    fn bytes_follow_every_change_and_a_cut_keeps_what_fits() {
        let sizes = [100, 10, 10, 50, 10];
        let mut log = RaftLog::new(0, 0, vec![]);
        for (i, len) in sizes.iter().enumerate() {
            log.push(entry(i as u64 + 1, *len));
        }
        let each: Vec<usize> = (1..=5).map(|i| log.get(i).unwrap().payload.bytes()).collect();
        assert_eq!(log.bytes(), each.iter().sum::<usize>());
        // Keeping the last three entries fits; keeping the last four does not.
        let last_three: usize = each[2..].iter().sum();
        assert_eq!(log.cut_to_fit(last_three, 5), 2);
        assert_eq!(log.cut_to_fit(last_three - 1, 5), 3);
        assert_eq!(log.cut_to_fit(usize::MAX, 5), 0, "everything fits: nothing to cut");
        assert_eq!(log.cut_to_fit(0, 4), 4, "never past the limit given");
        log.compact_to(2, 1);
        assert_eq!(log.bytes(), last_three);
        log.truncate_from(5);
        assert_eq!(log.bytes(), each[2] + each[3]);
        log.truncate_from(1);
        assert_eq!((log.bytes(), log.last_index()), (0, 2));
        log.push(entry(3, 7));
        log.reset(9, 1);
        assert_eq!(log.bytes(), 0);
        let rebuilt =
            RaftLog::new(2, 1, (1..=5).map(|i| entry(i, sizes[i as usize - 1])).collect());
        assert_eq!(rebuilt.bytes(), last_three);
    }
}
