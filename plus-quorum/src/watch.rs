//! Watches: every change to the keys of a range, in commit order, with its revision (the log
//! index of the entry that made it), with no gap and no duplicate.
//!
//! Every replica keeps the same recent history, because every replica applies the same entries:
//! a watcher can read it from any node and resume on another from the last revision it saw. A
//! watch is a long poll ([`WatchBatch`]: the events after a revision, or, when there are none
//! yet, a progress mark saying "nothing up to here"); a watcher that falls further behind than
//! the history keeps gets [`ClientError::Compacted`] naming the oldest revision still there,
//! and no node holds memory for a slow watcher.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::client_error::ClientError;
use crate::ids::LogIndex;
use crate::txn::KeyRange;
use crate::types::Versioned;

/// One change of an applied entry, with the key's value just before it: what the state
/// machine reports and the history keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Changed {
    pub(crate) key: String,
    pub(crate) change: Change,
    pub(crate) before: Option<Versioned>,
}

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

/// The most events one watch poll answers with, whatever it asks for.
pub const MAX_WATCH_EVENTS: usize = 10_000;

/// About the most bytes of keys and values one watch poll answers with (a revision is never
/// split, so one larger revision comes whole).
pub const MAX_WATCH_BATCH_BYTES: usize = 4 << 20;

/// A watch poll: the changes to `range` from revision `from` on.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchRequest {
    /// Which keys.
    pub range: KeyRange,
    /// The first revision wanted (the last one seen plus one).
    pub from: LogIndex,
    /// At most about this many events in one answer (whole revisions are never split, so a
    /// revision with more changes comes whole). At least 1; the node answers with at most
    /// [`MAX_WATCH_EVENTS`] and about [`MAX_WATCH_BATCH_BYTES`] whatever this says.
    pub max_events: usize,
}

/// The events of one watch answer, shared: watchers of the same keys from the same revision
/// are given one list between them (a thousand watchers of a prefix cost one list per round,
/// not a thousand copies of every key), and a clone costs a reference count.
///
/// Read it as a slice (`events.len()`, `events[0]`, `for e in &events`); `for e in events`
/// takes the events, copying them only if another watcher still shares them. On the wire it
/// is a plain sequence, as `Vec<WatchEvent>` was.
///
/// ```
/// use plus_quorum::{Change, WatchEvent, WatchEvents};
///
/// let events = WatchEvents::from(vec![WatchEvent {
///     revision: 7,
///     key: "app/a".into(),
///     change: Change::Delete,
/// }]);
/// let shared = events.clone();
/// assert_eq!(shared[0].revision, 7);
/// let keys: Vec<String> = events.into_iter().map(|e| e.key).collect();
/// assert_eq!(keys, ["app/a"]);
/// ```
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct WatchEvents(Arc<Vec<WatchEvent>>);

/// Printed as the list it holds, as `Vec<WatchEvent>` was.
impl std::fmt::Debug for WatchEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

impl WatchEvents {
    /// The events to change in place (a copy of them first if another answer shares them).
    pub fn to_mut(&mut self) -> &mut Vec<WatchEvent> {
        Arc::make_mut(&mut self.0)
    }
}

impl std::ops::Deref for WatchEvents {
    type Target = [WatchEvent];

    fn deref(&self) -> &[WatchEvent] {
        &self.0
    }
}

impl From<Vec<WatchEvent>> for WatchEvents {
    fn from(events: Vec<WatchEvent>) -> Self {
        Self(Arc::new(events))
    }
}

impl FromIterator<WatchEvent> for WatchEvents {
    fn from_iter<I: IntoIterator<Item = WatchEvent>>(events: I) -> Self {
        Self(Arc::new(events.into_iter().collect()))
    }
}

impl IntoIterator for WatchEvents {
    type Item = WatchEvent;
    type IntoIter = std::vec::IntoIter<WatchEvent>;

    fn into_iter(self) -> Self::IntoIter {
        Arc::unwrap_or_clone(self.0).into_iter()
    }
}

impl<'a> IntoIterator for &'a WatchEvents {
    type Item = &'a WatchEvent;
    type IntoIter = std::slice::Iter<'a, WatchEvent>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl Serialize for WatchEvents {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.as_slice().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for WatchEvents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Vec::deserialize(deserializer).map(Self::from)
    }
}

/// A watch poll's answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct WatchBatch {
    /// The changes, in revision order (shared with other watchers' answers of the same keys).
    pub events: WatchEvents,
    /// Every change to the range up to this revision is in `events` or was before `from`:
    /// resume from `progress + 1`. With no events, this is a progress notification.
    pub progress: LogIndex,
}

/// The recent changes a replica keeps for watchers, each with the key's value before it (for
/// reads at a past revision).
#[derive(Debug, Clone)]
pub(crate) struct History {
    events: VecDeque<(WatchEvent, Option<Versioned>)>,
    capacity: usize,
    /// Bytes of keys and values (new and replaced) held, and the most it may hold.
    bytes: usize,
    max_bytes: usize,
    /// The first revision whose changes are all still here.
    oldest: LogIndex,
}

impl History {
    /// An empty history of at most `capacity` changes and about `max_bytes` of keys and
    /// values, whose first complete revision is `oldest`.
    pub(crate) fn new(capacity: usize, max_bytes: usize, oldest: LogIndex) -> Self {
        Self { events: VecDeque::new(), capacity, bytes: 0, max_bytes, oldest }
    }

    fn size_of(event: &WatchEvent, before: Option<&Versioned>) -> usize {
        let now = match &event.change {
            Change::Put(v) => v.value.len(),
            Change::Delete => 0,
        };
        event.key.len() + now + before.map_or(0, |b| b.value.len())
    }

    /// Records the changes of the entry at `revision`.
    pub(crate) fn record(&mut self, revision: LogIndex, changes: Vec<Changed>) {
        for Changed { key, change, before } in changes {
            let event = WatchEvent { revision, key, change };
            self.bytes += Self::size_of(&event, before.as_ref());
            self.events.push_back((event, before));
        }
        while self.events.len() > self.capacity || self.bytes > self.max_bytes {
            // Drop whole revisions, so what stays is complete from `oldest` on.
            let Some(dropped) = self.events.front().map(|(e, _)| e.revision) else { break };
            while self.events.front().is_some_and(|(e, _)| e.revision == dropped) {
                if let Some((event, before)) = self.events.pop_front() {
                    self.bytes -= Self::size_of(&event, before.as_ref());
                }
            }
            self.oldest = self.oldest.max(dropped + 1);
        }
    }

    /// What every key of `keys` changed after revision `at` was just after it (`None`:
    /// absent), found by undoing the later changes newest first: the earliest change's
    /// `before` is the value at `at`.
    ///
    /// # Errors
    /// [`ClientError::Compacted`] when changes after `at` are no longer kept.
    pub(crate) fn values_at(
        &self,
        keys: &KeyRange,
        at: LogIndex,
    ) -> Result<BTreeMap<String, Option<Versioned>>, ClientError> {
        if at + 1 < self.oldest {
            return Err(ClientError::Compacted { requested: at, oldest: self.oldest - 1 });
        }
        let mut then = BTreeMap::new();
        for (event, before) in self.events.iter().rev().take_while(|(e, _)| e.revision > at) {
            if keys.contains(&event.key) {
                then.insert(event.key.clone(), before.clone());
            }
        }
        Ok(then)
    }

    /// Turns `view` (the keys of `keys` now) into what they were just after revision `at`.
    #[cfg(test)]
    pub(crate) fn rewind(
        &self,
        view: &mut crate::kv::KeyMap,
        keys: &KeyRange,
        at: LogIndex,
    ) -> Result<(), ClientError> {
        for (key, value) in self.values_at(keys, at)? {
            match value {
                Some(value) => view.insert(key, value),
                None => view.remove(&key),
            };
        }
        Ok(())
    }

    /// The oldest revision a past read can name.
    pub(crate) fn oldest_readable(&self) -> LogIndex {
        self.oldest.saturating_sub(1)
    }

    /// Forgets every change before `revision` (a compaction), never past `latest`.
    pub(crate) fn compact_to(&mut self, revision: LogIndex, latest: LogIndex) {
        let revision = revision.min(latest + 1);
        while self.events.front().is_some_and(|(e, _)| e.revision < revision) {
            if let Some((event, before)) = self.events.pop_front() {
                self.bytes -= Self::size_of(&event, before.as_ref());
            }
        }
        self.oldest = self.oldest.max(revision);
    }

    /// Forgets everything: the state was replaced wholesale (a snapshot from the leader).
    pub(crate) fn reset(&mut self, oldest: LogIndex) {
        self.events.clear();
        self.bytes = 0;
        self.oldest = oldest;
    }

    /// How many changes (to any key) are kept from `request.from` on, when a poll would be
    /// answered with events of them and no error, and its answer could not be full; `None`
    /// otherwise (see [`History::poll`]).
    #[cfg(any(feature = "driver", test))]
    pub(crate) fn backlog(&self, request: &WatchRequest) -> Option<usize> {
        if request.max_events == 0 || request.from < self.oldest {
            return None;
        }
        let since =
            self.events.len() - self.events.partition_point(|(e, _)| e.revision < request.from);
        let could_fill = since >= request.max_events.min(MAX_WATCH_EVENTS)
            || self.bytes >= MAX_WATCH_BATCH_BYTES;
        (!could_fill).then_some(since)
    }

    /// The changes to `request.range` from `request.from`, up to `applied`: at most
    /// [`MAX_WATCH_EVENTS`] events and about [`MAX_WATCH_BATCH_BYTES`] whatever the request
    /// asks (a revision is never split), so one poll's answer stays well inside a frame.
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
        let mut events: Vec<WatchEvent> = Vec::new();
        let mut progress = applied;
        let max_events = request.max_events.min(MAX_WATCH_EVENTS);
        let mut bytes = 0usize;
        let start = self.events.partition_point(|(e, _)| e.revision < request.from);
        for (event, _) in self.events.iter().skip(start) {
            let full = events.len() >= max_events || bytes >= MAX_WATCH_BATCH_BYTES;
            if full && events.last().is_some_and(|last| last.revision != event.revision) {
                // Everything before this revision has been looked at.
                progress = event.revision - 1;
                break;
            }
            if request.range.contains(&event.key) {
                bytes += event.key.len()
                    + match &event.change {
                        Change::Put(v) => v.value.len(),
                        Change::Delete => 0,
                    };
                events.push(event.clone());
            }
        }
        Ok(WatchBatch {
            events: events.into(),
            progress: progress.max(request.from.saturating_sub(1)),
        })
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn put(version: u64) -> Change {
        Change::Put(Versioned { value: Bytes::from("v"), version, created: version, lease: None })
    }

    fn changed(key: &str, change: Change) -> Changed {
        Changed { key: key.to_owned(), change, before: None }
    }

    fn request(prefix: &str, from: u64, max_events: usize) -> WatchRequest {
        WatchRequest { range: KeyRange::Prefix(prefix.into()), from, max_events }
    }

    #[test]
    fn polls_filter_by_range_keep_revisions_whole_and_mark_progress() {
        let mut history = History::new(100, usize::MAX, 1);
        history.record(1, vec![changed("app/a", put(1)), changed("other", put(1))]);
        history.record(2, vec![changed("app/b", put(2)), changed("app/c", put(2))]);
        history.record(3, vec![]);
        history.record(4, vec![changed("app/a", Change::Delete)]);
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
    fn shared_events_cross_the_wire_as_the_plain_list_did() {
        #[derive(Serialize, Debug)]
        struct Before {
            events: Vec<WatchEvent>,
            progress: LogIndex,
        }
        let events = vec![
            WatchEvent { revision: 3, key: "app/a".into(), change: put(3) },
            WatchEvent { revision: 4, key: "app/b".into(), change: Change::Delete },
        ];
        let now = WatchBatch { events: events.clone().into(), progress: 9 };
        let before = Before { events, progress: 9 };
        let bytes = rmp_serde::to_vec(&now).unwrap();
        assert_eq!(bytes, rmp_serde::to_vec(&before).unwrap());
        assert_eq!(rmp_serde::from_slice::<WatchBatch>(&bytes).unwrap(), now);
        assert_eq!(serde_json::to_string(&now).unwrap(), serde_json::to_string(&before).unwrap());
        assert_eq!(format!("{:?}", now.events), format!("{:?}", before.events));
        // A shared list is changed in place only as a copy: the other holder keeps its own.
        let mut mine = now.events.clone();
        mine.to_mut()[0].key = "a".into();
        assert_eq!((mine[0].key.as_str(), now.events[0].key.as_str()), ("a", "app/a"));
    }

    #[test]
    fn a_backlog_counts_what_a_poll_would_look_at_without_answering_it() {
        let mut history = History::new(100, usize::MAX, 1);
        history.record(1, vec![changed("app/a", put(1)), changed("other", put(1))]);
        history.record(2, vec![changed("app/b", put(2))]);
        assert_eq!(history.backlog(&request("app/", 1, 10)), Some(3));
        assert_eq!(history.backlog(&request("app/", 2, 10)), Some(1));
        assert_eq!(history.backlog(&request("app/", 3, 10)), Some(0), "nothing yet");
        // An answer that could be full, or an error, is for `poll` to make.
        assert_eq!(history.backlog(&request("app/", 1, 3)), None);
        assert_eq!(history.backlog(&request("app/", 1, 0)), None);
        history.compact_to(2, 2);
        assert_eq!(history.backlog(&request("app/", 1, 10)), None, "compacted");
        let mut large = History::new(100, usize::MAX, 1);
        let value = Versioned {
            value: Bytes::from(vec![0; MAX_WATCH_BATCH_BYTES]),
            version: 1,
            created: 1,
            lease: None,
        };
        large.record(1, vec![changed("app/a", Change::Put(value))]);
        assert_eq!(large.backlog(&request("app/", 1, 10)), None, "might be full in bytes");
    }

    #[test]
    fn a_poll_is_bounded_by_the_server_whatever_it_asks() {
        let big = |revision: u64| Versioned {
            value: Bytes::from(vec![0; 1 << 20]),
            version: revision,
            created: revision,
            lease: None,
        };
        let mut history = History::new(20_000, usize::MAX, 1);
        for revision in 1..=10 {
            history.record(revision, vec![changed("app/big", Change::Put(big(revision)))]);
        }
        for revision in 11..=15_010 {
            history.record(revision, vec![changed("app/small", put(revision))]);
        }
        // 1 MiB values: about 4 MiB per answer, whole revisions.
        let first = history.poll(&request("app/", 1, usize::MAX), 15_010).unwrap();
        assert_eq!((first.events.len(), first.progress), (4, 4));
        // Small values: at most MAX_WATCH_EVENTS.
        let many = history.poll(&request("app/", 11, usize::MAX), 15_010).unwrap();
        assert_eq!(many.events.len(), MAX_WATCH_EVENTS);
        assert_eq!(many.progress, 10 + MAX_WATCH_EVENTS as u64);
    }

    #[test]
    fn history_is_bounded_in_bytes_and_drops_whole_revisions() {
        let sized = |revision: u64, len: usize| Versioned {
            value: Bytes::from(vec![0; len]),
            version: revision,
            created: revision,
            lease: None,
        };
        // 1 + 100 bytes per change, at most about 250 bytes kept.
        let mut history = History::new(1_000, 250, 1);
        for revision in 1..=3 {
            history.record(revision, vec![changed("k", Change::Put(sized(revision, 100)))]);
        }
        // Two revisions fit (202 bytes); the third pushed the first out.
        assert!(history.poll(&request("", 1, 10), 3).is_err(), "revision 1 is gone");
        let kept = history.poll(&request("", 2, 10), 3).unwrap();
        assert_eq!(kept.events.iter().map(|e| e.revision).collect::<Vec<_>>(), [2, 3]);
        // A revision larger than the whole bound leaves nothing but a mark of where to go on.
        history.record(4, vec![changed("k", Change::Put(sized(4, 1_000)))]);
        assert!(history.poll(&request("", 4, 10), 4).is_err());
        assert_eq!(history.oldest_readable(), 4);
    }

    #[test]
    fn rewinding_undoes_every_later_change_in_the_range() {
        let v = |value: &str, version: u64| Versioned {
            value: Bytes::from(value.to_owned()),
            version,
            created: version,
            lease: None,
        };
        let change = |key: &str, change: Change, before: Option<Versioned>| Changed {
            key: key.to_owned(),
            change,
            before,
        };
        let mut history = History::new(100, usize::MAX, 1);
        history.record(1, vec![change("a", Change::Put(v("1", 1)), None)]);
        history.record(2, vec![change("b", Change::Put(v("1", 2)), None)]);
        history.record(3, vec![change("a", Change::Put(v("2", 3)), Some(v("1", 1)))]);
        history.record(4, vec![change("b", Change::Delete, Some(v("1", 2)))]);
        history.record(5, vec![change("a", Change::Put(v("3", 5)), Some(v("2", 3)))]);
        let now: crate::kv::KeyMap = [("a".to_owned(), v("3", 5))].into_iter().collect();
        let at = |revision: u64| {
            let mut view = now.clone();
            history.rewind(&mut view, &KeyRange::Prefix(String::new()), revision).map(|()| view)
        };
        let pairs = |view: crate::kv::KeyMap| {
            view.into_iter().map(|(k, v)| (k, v.value)).collect::<Vec<_>>()
        };
        assert_eq!(pairs(at(5).unwrap()), [("a".to_owned(), Bytes::from("3"))]);
        assert_eq!(
            pairs(at(3).unwrap()),
            [("a".to_owned(), Bytes::from("2")), ("b".to_owned(), Bytes::from("1"))]
        );
        assert_eq!(pairs(at(1).unwrap()), [("a".to_owned(), Bytes::from("1"))]);
        assert_eq!(pairs(at(0).unwrap()), []);
        // Keys outside the range are left as they are.
        let mut view = now.clone();
        history.rewind(&mut view, &KeyRange::Prefix("b".into()), 1).unwrap();
        assert_eq!(pairs(view), [("a".to_owned(), Bytes::from("3"))]);
        // Once revision 2's changes are gone, revision 1 can no longer be rebuilt.
        let mut short = History::new(3, usize::MAX, 1);
        for revision in 1..=5 {
            short.record(revision, vec![changed(&format!("k{revision}"), put(revision))]);
        }
        assert_eq!(short.oldest_readable(), 2);
        let mut view = crate::kv::KeyMap::new();
        let all = KeyRange::Prefix(String::new());
        assert_eq!(
            short.rewind(&mut view, &all, 1),
            Err(ClientError::Compacted { requested: 1, oldest: 2 })
        );
        assert!(short.rewind(&mut view, &all, 2).is_ok());
    }

    #[test]
    fn a_compaction_forgets_the_changes_before_its_revision_and_no_later_ones() {
        let mut history = History::new(100, usize::MAX, 1);
        for revision in 1..=6 {
            history.record(revision, vec![changed(&format!("k{revision}"), put(revision))]);
        }
        history.compact_to(4, 6);
        assert_eq!(
            history.poll(&request("", 3, 10), 6),
            Err(ClientError::Compacted { requested: 3, oldest: 4 })
        );
        assert_eq!(history.poll(&request("", 4, 10), 6).unwrap().events.len(), 3);
        assert_eq!(history.oldest_readable(), 3, "a read at 3 needs the changes from 4 on");
        // An older compaction changes nothing; a future one stops at the latest.
        history.compact_to(2, 6);
        assert_eq!(history.oldest_readable(), 3);
        history.compact_to(100, 6);
        assert_eq!(history.poll(&request("", 7, 10), 6).unwrap().events.len(), 0);
        assert!(history.poll(&request("", 6, 10), 6).is_err());
    }

    #[test]
    fn a_watcher_behind_the_history_gets_a_typed_error() {
        let mut history = History::new(3, usize::MAX, 1);
        for revision in 1..=5 {
            history.record(revision, vec![changed(&format!("k{revision}"), put(revision))]);
        }
        assert_eq!(
            history.poll(&request("", 2, 10), 5),
            Err(ClientError::Compacted { requested: 2, oldest: 3 })
        );
        assert_eq!(history.poll(&request("", 3, 10), 5).unwrap().events.len(), 3);
    }
}
