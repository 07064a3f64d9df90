//! Simulated watchers: sessions that open a watch on a range from some revision, poll whichever
//! node they are connected to, reconnect elsewhere and resume from the last revision they saw,
//! and are cancelled for new ones. At the end every session's events must equal the committed
//! history (the replicas' agreed watch histories) filtered by its range, over every revision it
//! claims to be current up to: no gap, no duplicate, nothing out of order, nothing invented.

use std::collections::BTreeMap;

use plus_core::Timestamp;
use plus_quorum::{Change, KeyRange, LogIndex, Versioned};

/// Where a session starts.
#[derive(Debug, Clone, Copy)]
pub enum StartAt {
    /// A given revision (1 is the whole history, often compacted by then on some nodes).
    Revision(LogIndex),
    /// Just after what the first node it reaches has applied ("from now").
    Now,
}

/// One watch, from opening to cancellation.
#[derive(Debug, Clone)]
pub struct Session {
    pub range: KeyRange,
    pub start: StartAt,
    /// The revision the watch opened at, once a node accepted it.
    pub from: Option<LogIndex>,
    /// The next revision to ask for.
    pub next: LogIndex,
    /// Every event received, in order.
    pub events: Vec<(LogIndex, String, Change)>,
    /// The newest revision a node said this session is current up to.
    pub current_to: LogIndex,
    /// The node it polls now (an index into the simulator's nodes).
    pub node: usize,
    pub next_poll: Timestamp,
    pub ends: Timestamp,
}

impl Session {
    pub fn new(
        range: KeyRange,
        start: StartAt,
        node: usize,
        now: Timestamp,
        ends: Timestamp,
    ) -> Self {
        let next = match start {
            StartAt::Revision(r) => r,
            StartAt::Now => 0,
        };
        Self {
            range,
            start,
            from: None,
            next,
            events: Vec::new(),
            current_to: 0,
            node,
            next_poll: now,
            ends,
        }
    }
}

/// The committed history as the replicas agree on it: the changes of every revision from
/// `oldest` to `newest` (a revision absent from `changes` changed nothing).
pub struct Committed {
    pub oldest: LogIndex,
    pub newest: LogIndex,
    pub changes: BTreeMap<LogIndex, Vec<(String, Change)>>,
}

impl Committed {
    /// Every key as it was just after revision `at` (from a history that starts at 1).
    pub fn state_at(&self, at: LogIndex) -> BTreeMap<String, Versioned> {
        let mut state = BTreeMap::new();
        for changes in self.changes.range(..=at).map(|(_, c)| c) {
            for (key, change) in changes {
                match change {
                    Change::Put(value) => state.insert(key.clone(), value.clone()),
                    Change::Delete => state.remove(key),
                };
            }
        }
        state
    }

    /// Compares `session` with this history; returns what is wrong, and how many events were
    /// checked.
    pub fn check(&self, session: &Session) -> (Vec<String>, usize) {
        let Some(from) = session.from else { return (Vec::new(), 0) };
        let mut wrong = Vec::new();
        if session.current_to > self.newest {
            wrong.push(format!(
                "a watch was told it was current up to {}, past the committed {}",
                session.current_to, self.newest
            ));
        }
        let mut last = 0;
        for (revision, key, _) in &session.events {
            if *revision < last || *revision < from || *revision > session.current_to {
                wrong.push(format!(
                    "watch from {from} on {:?}: event {key}@{revision} out of order or outside [{from}, {}]",
                    session.range, session.current_to
                ));
            }
            last = *revision;
        }
        // Revisions older than every replica's history cannot be checked.
        let window = from.max(self.oldest)..=session.current_to.min(self.newest);
        if window.is_empty() {
            return (wrong, 0);
        }
        let expected: Vec<(LogIndex, &String, &Change)> = self
            .changes
            .range(window.clone())
            .flat_map(|(revision, changes)| {
                changes
                    .iter()
                    .filter(|(key, _)| session.range.contains(key))
                    .map(move |(key, change)| (*revision, key, change))
            })
            .collect();
        let received: Vec<(LogIndex, &String, &Change)> = session
            .events
            .iter()
            .filter(|(revision, ..)| window.contains(revision))
            .map(|(revision, key, change)| (*revision, key, change))
            .collect();
        if expected != received {
            let first_difference = expected
                .iter()
                .zip(&received)
                .position(|(e, r)| e != r)
                .unwrap_or(expected.len().min(received.len()));
            wrong.push(format!(
                "watch from {from} on {:?} over revisions {window:?}: {} events expected, {} received, first difference at #{first_difference}: expected {:?}, received {:?}",
                session.range,
                expected.len(),
                received.len(),
                expected.get(first_difference),
                received.get(first_difference),
            ));
        }
        (wrong, received.len())
    }
}
