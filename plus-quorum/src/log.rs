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

/// The log after the last snapshot.
#[derive(Debug, Clone, Default)]
pub(crate) struct RaftLog {
    base_index: LogIndex,
    base_term: Term,
    entries: Vec<Entry>,
}

impl RaftLog {
    pub(crate) fn new(base_index: LogIndex, base_term: Term, entries: Vec<Entry>) -> Self {
        let entries = entries.into_iter().filter(|e| e.index > base_index).collect();
        Self { base_index, base_term, entries }
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
        self.entries.push(entry);
    }

    /// Drops entries from `index` on.
    pub(crate) fn truncate_from(&mut self, index: LogIndex) {
        if index <= self.base_index {
            self.entries.clear();
        } else {
            self.entries.truncate((index - self.base_index - 1) as usize);
        }
    }

    /// Forgets entries up to `index` (now covered by a snapshot).
    pub(crate) fn compact_to(&mut self, index: LogIndex, term: Term) {
        if index <= self.base_index {
            return;
        }
        let drop = ((index - self.base_index) as usize).min(self.entries.len());
        self.entries.drain(..drop);
        self.base_index = index;
        self.base_term = term;
    }

    /// Replaces everything with an empty log after a snapshot.
    pub(crate) fn reset(&mut self, index: LogIndex, term: Term) {
        self.entries.clear();
        self.base_index = index;
        self.base_term = term;
    }
}
