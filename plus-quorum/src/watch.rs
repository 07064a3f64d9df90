//! Watches: every change to the keys of a range, in commit order, with its revision (the log
//! index of the entry that made it), with no gap and no duplicate.
//!
//! Every replica keeps the same recent history, because every replica applies the same entries:
//! a watcher can read it from any node and resume on another from the last revision it saw. A
//! watch is a long poll ([`WatchBatch`]: the events after a revision, or, when there are none
//! yet, a progress mark saying "nothing up to here"); a watcher that falls further behind than
//! the history keeps gets [`ClientError::Compacted`] naming the oldest revision still there,
//! and no node holds memory for a slow watcher.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use crate::txn::KeyRange;
use crate::types::{ClientError, LogIndex, Versioned};

/// What happened to a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Change {
    /// It was set (its new value, version and lease).
    Put(Versioned),
    /// It was deleted: by a client, a transaction, or the end of its lease.
    Delete,
}

/// One change, at the revision of the entry that made it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchEvent {
    /// The log index of the entry that made the change.
    pub revision: LogIndex,
    /// The key.
    pub key: String,
    /// What happened.
    pub change: Change,
}

/// A watch poll: the changes to `range` from revision `from` on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Which keys.
    pub range: KeyRange,
    /// The first revision wanted (the last one seen plus one).
    pub from: LogIndex,
    /// At most about this many events in one answer (whole revisions are never split, so a
    /// revision with more changes comes whole). At least 1.
    pub max_events: usize,
}

/// A watch poll's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchBatch {
    /// The changes, in revision order.
    pub events: Vec<WatchEvent>,
    /// Every change to the range up to this revision is in `events` or was before `from`:
    /// resume from `progress + 1`. With no events, this is a progress notification.
    pub progress: LogIndex,
}

/// The recent changes a replica keeps for watchers.
#[derive(Debug, Clone)]
pub(crate) struct History {
    events: VecDeque<WatchEvent>,
    capacity: usize,
    /// The first revision whose changes are all still here.
    oldest: LogIndex,
}

impl History {
    /// An empty history whose first complete revision is `oldest`.
    pub(crate) fn new(capacity: usize, oldest: LogIndex) -> Self {
        Self { events: VecDeque::new(), capacity, oldest }
    }

    /// Records the changes of the entry at `revision`.
    pub(crate) fn record(&mut self, revision: LogIndex, changes: Vec<(String, Change)>) {
        for (key, change) in changes {
            self.events.push_back(WatchEvent { revision, key, change });
        }
        while self.events.len() > self.capacity {
            // Drop whole revisions, so what stays is complete from `oldest` on.
            let dropped = self.events.pop_front().map_or(self.oldest, |e| e.revision);
            while self.events.front().is_some_and(|e| e.revision == dropped) {
                self.events.pop_front();
            }
            self.oldest = self.oldest.max(dropped + 1);
        }
    }

    /// Forgets everything: the state was replaced wholesale (a snapshot from the leader).
    pub(crate) fn reset(&mut self, oldest: LogIndex) {
        self.events.clear();
        self.oldest = oldest;
    }

    /// The changes to `request.range` from `request.from`, up to `applied`.
    pub(crate) fn poll(
        &self,
        request: &WatchRequest,
        applied: LogIndex,
    ) -> Result<WatchBatch, ClientError> {
        if request.max_events == 0 {
            return Err(ClientError::Invalid("a watch must allow at least 1 event".to_owned()));
        }
        if request.from < self.oldest {
            return Err(ClientError::Compacted { requested: request.from, oldest: self.oldest });
        }
        let mut batch = WatchBatch { events: Vec::new(), progress: applied };
        let start = self.events.partition_point(|e| e.revision < request.from);
        for event in self.events.iter().skip(start) {
            if batch.events.len() >= request.max_events
                && batch.events.last().is_some_and(|last| last.revision != event.revision)
            {
                // Everything before this revision has been looked at.
                batch.progress = event.revision - 1;
                break;
            }
            if request.range.contains(&event.key) {
                batch.events.push(event.clone());
            }
        }
        batch.progress = batch.progress.max(request.from.saturating_sub(1));
        Ok(batch)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn put(version: u64) -> Change {
        Change::Put(Versioned { value: Bytes::from("v"), version, created: version, lease: None })
    }

    fn request(prefix: &str, from: u64, max_events: usize) -> WatchRequest {
        WatchRequest { range: KeyRange::Prefix(prefix.into()), from, max_events }
    }

    #[test]
    fn polls_filter_by_range_keep_revisions_whole_and_mark_progress() {
        let mut history = History::new(100, 1);
        history.record(1, vec![("app/a".into(), put(1)), ("other".into(), put(1))]);
        history.record(2, vec![("app/b".into(), put(2)), ("app/c".into(), put(2))]);
        history.record(3, vec![]);
        history.record(4, vec![("app/a".into(), Change::Delete)]);
        let all = history.poll(&request("app/", 1, 100), 4).unwrap();
        let seen: Vec<(u64, &str)> =
            all.events.iter().map(|e| (e.revision, e.key.as_str())).collect();
        assert_eq!(seen, [(1, "app/a"), (2, "app/b"), (2, "app/c"), (4, "app/a")]);
        assert_eq!(all.progress, 4);
        // A limit of 2 stops at a revision boundary: revision 2 comes whole.
        let first = history.poll(&request("app/", 1, 2), 4).unwrap();
        assert_eq!(first.events.len(), 3);
        assert_eq!(first.progress, 3, "revision 4 is next");
        let rest = history.poll(&request("app/", first.progress + 1, 2), 4).unwrap();
        assert_eq!(rest.events.len(), 1);
        // Nothing new: a progress mark.
        let quiet = history.poll(&request("app/", 5, 10), 4).unwrap();
        assert_eq!((quiet.events.len(), quiet.progress), (0, 4));
        assert!(history.poll(&request("app/", 1, 0), 4).is_err(), "max_events 0 is refused");
    }

    #[test]
    fn a_watcher_behind_the_history_gets_a_typed_error() {
        let mut history = History::new(3, 1);
        for revision in 1..=5 {
            history.record(revision, vec![(format!("k{revision}"), put(revision))]);
        }
        assert_eq!(
            history.poll(&request("", 2, 10), 5),
            Err(ClientError::Compacted { requested: 2, oldest: 3 })
        );
        assert_eq!(history.poll(&request("", 3, 10), 5).unwrap().events.len(), 3);
    }
}
