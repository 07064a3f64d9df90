//! The replicated state machine: a sorted map of versioned values, and the leases keys are
//! attached to.

use std::collections::BTreeMap;
use std::iter::{empty, once};

/// The keys and their values, in key order. Persistent: a clone shares every node with the
/// original and costs nothing until one of them changes, so a snapshot, a backup or an
/// inspection takes a copy of a million keys on the node's loop in nanoseconds (a `BTreeMap`
/// copy took 230 ms at a million keys, 370 ms at two: past an election timeout).
pub(crate) type KeyMap = imbl::OrdMap<String, Versioned>;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::glob::glob_match;
use crate::lease::{LeaseId, LeaseState, Leases};
use crate::ops::{ReadOp, ReadResult, WriteOp, WriteResult};
use crate::txn::{KeyRange, Range, RangeResult, Txn, TxnOp, TxnOpResult};
use crate::types::{Expect, Versioned};
use crate::watch::{Change, Changed};

/// The entries of `map` in `keys`, in key order.
fn entries_in<'a>(
    map: &'a KeyMap,
    keys: &'a KeyRange,
) -> Box<dyn Iterator<Item = (&'a String, &'a Versioned)> + 'a> {
    use std::ops::Bound::{Excluded, Included, Unbounded};
    match keys {
        KeyRange::Prefix(prefix) => Box::new(
            map.range::<_, str>((Included(prefix.as_str()), Unbounded))
                .take_while(move |(k, _)| k.starts_with(prefix.as_str())),
        ),
        KeyRange::Between { start, end } => {
            Box::new(map.range::<_, str>((Included(start.as_str()), Excluded(end.as_str()))))
        }
    }
}

/// Answers `range` (its keys, limit and counting) from `map`: the present state, or a past
/// one rebuilt from the watch history.
pub(crate) fn range_of(map: &KeyMap, range: &Range) -> RangeResult {
    collect_range(entries_in(map, &range.keys), range)
}

/// `range`'s answer from `entries` (the range's keys, in order): its limit's worth of them
/// copied, all of them counted.
fn collect_range<'a>(
    entries: impl Iterator<Item = (&'a String, &'a Versioned)>,
    range: &Range,
) -> RangeResult {
    let limit = if range.count_only { 0 } else { range.limit.unwrap_or(usize::MAX) };
    let mut result = RangeResult::default();
    for (key, value) in entries {
        if result.kvs.len() < limit {
            result.kvs.push((key.clone(), value.clone()));
        }
        result.count += 1;
    }
    result.more = !range.count_only && result.count > result.kvs.len();
    result
}

/// How much a transaction's reads may answer with, all together: a range at most `keys` keys
/// (`more` set when some were left out: a range in a transaction is answered on every replica's
/// loop, and one copying a million keys held up its heartbeats), and every read of the branch
/// at most `bytes` of keys and values, in order: a range stops short with `more` set, a get that
/// does not fit is answered [`TxnOpResult::Omitted`]. The answer must fit in one frame; a
/// transaction's writes apply whatever its reads answer, so it cannot be refused after the fact.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadBounds {
    /// The most keys one range answers with.
    pub(crate) keys: usize,
    /// The most bytes of keys and values all the reads answer with.
    pub(crate) bytes: usize,
}

/// The key-value map every replica applies the log to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KvState {
    map: KeyMap,
    #[serde(default)]
    leases: Leases,
    /// The changes of the entry being applied, each with the key's value before it, for
    /// watchers and past-revision reads; the node takes them after each entry.
    #[serde(skip)]
    changes: Vec<Changed>,
    /// The planted "else applies part of then" fault (test builds only).
    #[cfg(plus_planted_bugs)]
    #[serde(skip)]
    pub(crate) planted_txn_bug: bool,
}

fn matches(current: Option<&Versioned>, expect: &Expect) -> bool {
    match (expect, current) {
        (Expect::Absent, None) => true,
        (Expect::Version(v), Some(c)) => c.version == *v,
        (Expect::Value(v), Some(c)) => c.value == *v,
        (Expect::Exists, Some(_)) => true,
        (Expect::Lease(lease), Some(c)) => c.lease == *lease,
        _ => false,
    }
}

impl KvState {
    /// Applies a committed write at log index `index` (the version of what it writes).
    #[cfg(test)]
    pub(crate) fn apply(&mut self, op: &WriteOp, index: u64) -> WriteResult {
        self.apply_bounded(op, index, ReadBounds { keys: usize::MAX, bytes: usize::MAX })
    }

    /// Applies `op` as entry `index`; a transaction's reads answer within `bounds` (see
    /// [`ReadBounds`]).
    pub(crate) fn apply_bounded(
        &mut self,
        op: &WriteOp,
        index: u64,
        bounds: ReadBounds,
    ) -> WriteResult {
        // The key writes, multi-key ones included, are transactions with a simpler answer:
        // their compares, then their writes, nothing otherwise. They are applied from the op
        // itself, borrowed: building the transaction cloned every key and value, and with its
        // results cost three allocations per write on every replica.
        match op {
            WriteOp::Set { key, value } => {
                self.write_keys(empty(), once((key, Some(value))), index)
            }
            WriteOp::Delete { key } => self.write_keys(empty(), once((key, None)), index),
            WriteOp::CompareAndSet { key, expect, value } => {
                self.write_keys(once((key, expect)), once((key, Some(value))), index)
            }
            WriteOp::CompareAndDelete { key, expect } => {
                self.write_keys(once((key, expect)), once((key, None)), index)
            }
            WriteOp::MultiSet(pairs) => {
                self.write_keys(empty(), pairs.iter().map(|(k, v)| (k, Some(v))), index)
            }
            WriteOp::MultiDelete(keys) => {
                self.write_keys(empty(), keys.iter().map(|k| (k, None)), index)
            }
            WriteOp::MultiCompareAndSet(items) => {
                let compares = items.iter().map(|(k, e, _)| (k, e));
                self.write_keys(compares, items.iter().map(|(k, _, v)| (k, Some(v))), index)
            }
            WriteOp::MultiCompareAndDelete(items) => {
                let compares = items.iter().map(|(k, e)| (k, e));
                self.write_keys(compares, items.iter().map(|(k, _)| (k, None)), index)
            }
            WriteOp::SetWithLease { key, value, lease } => {
                if !self.leases.map.contains_key(lease) {
                    return WriteResult::NoSuchLease { lease: *lease };
                }
                self.set(key, value, Some(*lease), index);
                WriteResult::Applied { version: index }
            }
            WriteOp::GrantLease { ttl_ms } => {
                let state = LeaseState { ttl_ms: *ttl_ms, keys: Default::default() };
                self.leases.map.insert(index, state);
                WriteResult::LeaseGranted { lease: index, ttl_ms: *ttl_ms }
            }
            WriteOp::RevokeLease { lease } => {
                if !self.end_lease(*lease) {
                    return WriteResult::NoSuchLease { lease: *lease };
                }
                WriteResult::Applied { version: index }
            }
            WriteOp::Txn(txn) => self.txn(txn, index, bounds),
            // The history is the node's, compacted as the entry applies (`apply_committed`).
            WriteOp::Compact { .. } => WriteResult::Applied { version: index },
        }
    }

    /// A key write: when every compare holds, sets (`Some`) and deletes (`None`) each key in
    /// order; otherwise the first compare that failed, and nothing written.
    fn write_keys<'a>(
        &mut self,
        compares: impl IntoIterator<Item = (&'a String, &'a Expect)>,
        writes: impl IntoIterator<Item = (&'a String, Option<&'a Bytes>)>,
        index: u64,
    ) -> WriteResult {
        if let Some(failed) = self.first_failed(compares) {
            return failed;
        }
        for (key, value) in writes {
            match value {
                Some(value) => self.set(key, value, None, index),
                None => {
                    self.remove(key);
                }
            }
        }
        WriteResult::Applied { version: index }
    }

    /// The result for the first comparison that fails, if any.
    fn first_failed<'a>(
        &self,
        checks: impl IntoIterator<Item = (&'a String, &'a Expect)>,
    ) -> Option<WriteResult> {
        checks.into_iter().find(|(key, expect)| !matches(self.map.get(*key), expect)).map(
            |(key, _)| WriteResult::CompareFailed {
                key: key.clone(),
                current: self.map.get(key).cloned(),
            },
        )
    }

    fn set(&mut self, key: &str, value: &Bytes, lease: Option<LeaseId>, index: u64) {
        // One walk down the tree for a key that exists (the common case: a key set again),
        // two for a new one.
        let (versioned, before) = match self.map.get_mut(key) {
            Some(current) => {
                let created = current.created;
                let versioned = Versioned { value: value.clone(), version: index, created, lease };
                (versioned.clone(), Some(std::mem::replace(current, versioned)))
            }
            None => {
                let versioned =
                    Versioned { value: value.clone(), version: index, created: index, lease };
                self.map.insert(key.to_owned(), versioned.clone());
                (versioned, None)
            }
        };
        if let Some(old) = before.as_ref().and_then(|b| b.lease)
            && let Some(state) = self.leases.map.get_mut(&old)
        {
            state.keys.remove(key);
        }
        if let Some(lease) = lease
            && let Some(state) = self.leases.map.get_mut(&lease)
        {
            state.keys.insert(key.to_owned());
        }
        self.changes.push(Changed { key: key.to_owned(), change: Change::Put(versioned), before });
    }

    /// The changes applied since the last call, in order.
    pub(crate) fn take_changes(&mut self) -> Vec<Changed> {
        std::mem::take(&mut self.changes)
    }

    /// Deletes `key`; whether it existed.
    fn remove(&mut self, key: &str) -> bool {
        self.detach(key);
        let before = self.map.remove(key);
        let existed = before.is_some();
        if existed {
            self.changes.push(Changed { key: key.to_owned(), change: Change::Delete, before });
        }
        existed
    }

    /// Takes `key` off the lease it is attached to, if any.
    fn detach(&mut self, key: &str) {
        let Some(lease) = self.map.get(key).and_then(|v| v.lease) else { return };
        if let Some(state) = self.leases.map.get_mut(&lease) {
            state.keys.remove(key);
        }
    }

    /// Ends `lease` and deletes its keys; false when there is no such lease.
    pub(crate) fn end_lease(&mut self, lease: LeaseId) -> bool {
        let Some(state) = self.leases.map.remove(&lease) else { return false };
        for key in state.keys {
            if let Some(before) = self.map.remove(&key) {
                self.changes.push(Changed { key, change: Change::Delete, before: Some(before) });
            }
        }
        true
    }

    fn txn(&mut self, txn: &Txn, index: u64, bounds: ReadBounds) -> WriteResult {
        let succeeded = txn.when.iter().all(|c| matches(self.map.get(&c.key), &c.expect));
        let branch = if succeeded { &txn.then } else { &txn.otherwise };
        // A branch that names a lease that does not exist applies nothing, as any write would.
        let missing = branch.iter().find_map(|op| match op {
            TxnOp::Set { lease: Some(lease), .. } if !self.leases.map.contains_key(lease) => {
                Some(*lease)
            }
            _ => None,
        });
        if let Some(lease) = missing {
            return WriteResult::NoSuchLease { lease };
        }
        #[cfg(plus_planted_bugs)]
        if self.planted_txn_bug && !succeeded {
            if let Some(TxnOp::Set { key, value, lease: None }) = txn.then.first() {
                self.set(key, value, None, index);
            }
        }
        // What the answer's reads may still hold, in bytes of keys and values.
        let mut bytes_left = bounds.bytes;
        let results = branch
            .iter()
            .map(|op| match op {
                TxnOp::Set { key, value, lease } => {
                    self.set(key, value, *lease, index);
                    TxnOpResult::Set { version: index }
                }
                TxnOp::Delete { key } => TxnOpResult::Delete { existed: self.remove(key) },
                TxnOp::Get(key) => {
                    let found = self.map.get(key);
                    let bytes = found.map_or(0, |v| key.len() + v.value.len());
                    if bytes > bytes_left {
                        return TxnOpResult::Omitted { bytes: bytes as u64 };
                    }
                    bytes_left -= bytes;
                    TxnOpResult::Get(found.cloned())
                }
                TxnOp::Range(range) => {
                    let limit = range.limit.map_or(bounds.keys, |l| l.min(bounds.keys));
                    let bounded = Range { limit: Some(limit), ..range.clone() };
                    let mut result = self.range(&bounded);
                    let fits = result
                        .kvs
                        .iter()
                        .scan(0usize, |sum, (k, v)| {
                            *sum += k.len() + v.value.len();
                            Some(*sum)
                        })
                        .take_while(|&sum| sum <= bytes_left)
                        .count();
                    if fits < result.kvs.len() {
                        result.kvs.truncate(fits);
                        result.more = true;
                    }
                    bytes_left -=
                        result.kvs.iter().map(|(k, v)| k.len() + v.value.len()).sum::<usize>();
                    TxnOpResult::Range(result)
                }
            })
            .collect();
        WriteResult::Txn { succeeded, version: index, results }
    }

    /// Answers `range` from the present state.
    pub(crate) fn range(&self, range: &Range) -> RangeResult {
        range_of(&self.map, range)
    }

    /// `range` as it was at a past revision, given `then`: the value at that revision
    /// (`None`: absent) of every key in the range changed since. Only the keys answered are
    /// copied: the present ones merged in key order with `then`, which wins where both hold a
    /// key.
    pub(crate) fn range_as_of(
        &self,
        range: &Range,
        then: &BTreeMap<String, Option<Versioned>>,
    ) -> RangeResult {
        use std::cmp::Ordering;
        let mut now = entries_in(&self.map, &range.keys).peekable();
        let mut past = then.iter().peekable();
        let merged = std::iter::from_fn(move || {
            loop {
                let from_past = match (now.peek(), past.peek()) {
                    (None, None) => return None,
                    (Some(_), None) => false,
                    (None, Some(_)) => true,
                    (Some((a, _)), Some((b, _))) => match a.as_str().cmp(b.as_str()) {
                        Ordering::Less => false,
                        Ordering::Greater => true,
                        Ordering::Equal => {
                            now.next();
                            true
                        }
                    },
                };
                if !from_past {
                    return now.next();
                }
                if let Some((key, Some(value))) = past.next() {
                    return Some((key, value));
                }
            }
        });
        collect_range(merged, range)
    }

    /// Answers a read from this state (lease reads need the leader's deadlines, and are answered
    /// by the node).
    pub(crate) fn read(&self, op: &ReadOp) -> ReadResult {
        match op {
            ReadOp::Get(key) => ReadResult::Value(self.map.get(key).cloned()),
            ReadOp::MultiGet(keys) => {
                ReadResult::Values(keys.iter().map(|k| self.map.get(k).cloned()).collect())
            }
            ReadOp::Keys(pattern) => ReadResult::Keys(self.keys_matching(pattern, usize::MAX)),
            ReadOp::Len => ReadResult::Len(self.map.len()),
            ReadOp::Range(range) => ReadResult::Range(self.range(range)),
            ReadOp::Leases => ReadResult::Leases(self.leases.map.keys().copied().collect()),
            ReadOp::LeaseKeepAlive(_) | ReadOp::LeaseTimeToLive(_) => {
                unreachable!("the node answers lease reads itself")
            }
        }
    }

    /// The keys matching `pattern`, sorted, at most `at_most` of them.
    pub(crate) fn keys_matching(&self, pattern: &str, at_most: usize) -> Vec<String> {
        self.map.keys().filter(|k| glob_match(pattern, k)).take(at_most).cloned().collect()
    }

    /// A live lease's TTL and keys.
    pub(crate) fn lease(&self, lease: LeaseId) -> Option<(u64, Vec<String>)> {
        self.leases.map.get(&lease).map(|s| (s.ttl_ms, s.keys.iter().cloned().collect()))
    }

    /// Bytes of keys and values held: what the storage quota counts.
    pub(crate) fn bytes(&self) -> usize {
        self.map.iter().map(|(k, v)| k.len() + v.value.len()).sum()
    }

    /// How many leases live.
    pub(crate) fn lease_count(&self) -> usize {
        self.leases.map.len()
    }

    /// Every live lease with its TTL, in milliseconds.
    pub(crate) fn lease_ttls(&self) -> impl Iterator<Item = (LeaseId, u64)> + '_ {
        self.leases.map.iter().map(|(&id, s)| (id, s.ttl_ms))
    }

    /// Every live lease with its TTL, as this replica has applied them.
    pub fn leases(&self) -> impl Iterator<Item = (LeaseId, std::time::Duration)> + '_ {
        self.lease_ttls().map(|(id, ms)| (id, std::time::Duration::from_millis(ms)))
    }

    /// One key, as this replica has it.
    #[must_use]
    pub fn get(&self, key: &str) -> Option<&Versioned> {
        self.map.get(key)
    }

    /// Number of keys.
    #[must_use]
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the map is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Every key with its value, sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &Versioned)> {
        self.map.iter()
    }

    /// SHA-256 over every key, version, lease and value in key order (each length-prefixed),
    /// then every lease with its TTL: equal states have equal digests on every machine.
    #[must_use]
    pub fn digest(&self) -> [u8; 32] {
        let mut h = Sha256::new();
        for (key, v) in &self.map {
            h.update((key.len() as u64).to_be_bytes());
            h.update(key.as_bytes());
            h.update(v.version.to_be_bytes());
            h.update(v.lease.unwrap_or(0).to_be_bytes());
            h.update((v.value.len() as u64).to_be_bytes());
            h.update(&v.value);
        }
        for (lease, state) in &self.leases.map {
            h.update(lease.to_be_bytes());
            h.update(state.ttl_ms.to_be_bytes());
        }
        h.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    /// A transaction's reads share one byte budget, in order: a range stops short with `more`
    /// set, a get that does not fit is omitted, and the branch's writes apply regardless.
    #[test]
    fn a_transactions_reads_answer_within_one_byte_budget() {
        use crate::txn::{Range, Txn, TxnOp, TxnOpResult};
        let mut kv = KvState::default();
        for k in ["a", "b", "c", "d"] {
            kv.apply(&WriteOp::Set { key: k.into(), value: Bytes::from(vec![b'x'; 99]) }, 1);
        }
        let txn = Txn {
            when: vec![],
            then: vec![
                TxnOp::Get("a".into()),
                TxnOp::Range(Range::prefix("")),
                TxnOp::Get("d".into()),
                TxnOp::Get("missing".into()),
                TxnOp::Set { key: "e".into(), value: b("new"), lease: None },
            ],
            otherwise: vec![],
        };
        // 250 bytes: "a" (100), then the range has 150 left: one key of the four, then "d"
        // (100) no longer fits.
        let bounds = ReadBounds { keys: 10, bytes: 250 };
        let WriteResult::Txn { succeeded: true, results, .. } =
            kv.apply_bounded(&WriteOp::Txn(txn), 2, bounds)
        else {
            panic!("not a transaction's answer")
        };
        assert!(matches!(&results[0], TxnOpResult::Get(Some(v)) if v.value.len() == 99));
        let TxnOpResult::Range(range) = &results[1] else { panic!("not a range") };
        assert_eq!((range.kvs.len(), range.count, range.more), (1, 4, true));
        assert_eq!(results[2], TxnOpResult::Omitted { bytes: 100 });
        assert_eq!(results[3], TxnOpResult::Get(None), "an absent key costs nothing");
        assert_eq!(results[4], TxnOpResult::Set { version: 2 });
        assert!(kv.map.contains_key("e"), "the writes applied");
    }

    #[test]
    fn multi_cas_is_all_or_nothing_and_names_the_key() {
        let mut kv = KvState::default();
        kv.apply(&WriteOp::MultiSet(vec![("a".into(), b("1")), ("b".into(), b("2"))]), 1);
        let result = kv.apply(
            &WriteOp::MultiCompareAndSet(vec![
                ("a".into(), Expect::Version(1), b("10")),
                ("b".into(), Expect::Value(b("nope")), b("20")),
            ]),
            2,
        );
        assert_eq!(
            result,
            WriteResult::CompareFailed {
                key: "b".into(),
                current: Some(Versioned { value: b("2"), version: 1, created: 1, lease: None })
            }
        );
        assert_eq!(kv.get("a").unwrap().value, b("1"), "nothing applied");
        let ok = kv.apply(
            &WriteOp::MultiCompareAndDelete(vec![
                ("a".into(), Expect::Version(1)),
                ("c".into(), Expect::Absent),
            ]),
            3,
        );
        assert_eq!(ok, WriteResult::Applied { version: 3 });
        assert!(kv.get("a").is_none());
        kv.apply(&WriteOp::Set { key: "a".into(), value: b("again") }, 4);
        assert_eq!(kv.get("a").unwrap().version, 4, "versions keep growing across a delete");
        assert_eq!(
            kv.read(&ReadOp::Keys("?".into())),
            ReadResult::Keys(vec!["a".into(), "b".into()])
        );
    }

    #[test]
    fn a_leases_end_deletes_exactly_its_keys_and_a_plain_write_detaches_one() {
        let mut kv = KvState::default();
        assert_eq!(
            kv.apply(&WriteOp::GrantLease { ttl_ms: 500 }, 1),
            WriteResult::LeaseGranted { lease: 1, ttl_ms: 500 }
        );
        for (index, key) in [(2, "lock/a"), (3, "lock/b"), (4, "lock/c")] {
            let op = WriteOp::SetWithLease { key: key.into(), value: b("x"), lease: 1 };
            assert_eq!(kv.apply(&op, index), WriteResult::Applied { version: index });
        }
        assert_eq!(kv.get("lock/a").unwrap().lease, Some(1));
        // A plain write takes the key off its lease.
        kv.apply(&WriteOp::Set { key: "lock/c".into(), value: b("kept") }, 5);
        assert_eq!(kv.lease(1), Some((500, vec!["lock/a".into(), "lock/b".into()])));
        let unknown = WriteOp::SetWithLease { key: "k".into(), value: b("x"), lease: 99 };
        assert_eq!(kv.apply(&unknown, 6), WriteResult::NoSuchLease { lease: 99 });
        assert!(kv.get("k").is_none(), "nothing applied");
        assert_eq!(
            kv.apply(&WriteOp::RevokeLease { lease: 1 }, 7),
            WriteResult::Applied { version: 7 }
        );
        assert!(kv.get("lock/a").is_none() && kv.get("lock/b").is_none());
        assert_eq!(kv.get("lock/c").unwrap().value, b("kept"));
        assert_eq!(
            kv.apply(&WriteOp::RevokeLease { lease: 1 }, 8),
            WriteResult::NoSuchLease { lease: 1 }
        );
        assert_eq!(kv.leases().count(), 0);
    }

    #[test]
    fn a_transaction_runs_one_branch_whole_and_reads_its_own_writes() {
        use crate::txn::{Compare, Range, Txn, TxnOp, TxnOpResult};
        let mut kv = KvState::default();
        kv.apply(&WriteOp::MultiSet(vec![("cfg/a".into(), b("1")), ("cfg/b".into(), b("2"))]), 1);
        let txn = |expect: Expect| Txn {
            when: vec![Compare::new("cfg/a", expect), Compare::new("cfg/b", Expect::Exists)],
            then: vec![
                TxnOp::Set { key: "cfg/c".into(), value: b("3"), lease: None },
                TxnOp::Delete { key: "cfg/a".into() },
                TxnOp::Range(Range::prefix("cfg/")),
            ],
            otherwise: vec![TxnOp::Get("cfg/a".into())],
        };
        let failed = kv.apply(&WriteOp::Txn(txn(Expect::Value(b("nope")))), 2);
        assert_eq!(
            failed,
            WriteResult::Txn {
                succeeded: false,
                version: 2,
                results: vec![TxnOpResult::Get(kv.get("cfg/a").cloned())]
            }
        );
        assert!(kv.get("cfg/c").is_none(), "the then-branch did not run");
        let WriteResult::Txn { succeeded: true, results, .. } =
            kv.apply(&WriteOp::Txn(txn(Expect::Version(1))), 3)
        else {
            panic!("the comparisons hold")
        };
        assert_eq!(results[0], TxnOpResult::Set { version: 3 });
        assert_eq!(results[1], TxnOpResult::Delete { existed: true });
        let TxnOpResult::Range(range) = &results[2] else { panic!("{results:?}") };
        let keys: Vec<&str> = range.kvs.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, ["cfg/b", "cfg/c"], "the range sees the branch's own writes");
        // A branch naming an ended lease applies nothing.
        let leased = Txn {
            when: vec![],
            then: vec![
                TxnOp::Delete { key: "cfg/b".into() },
                TxnOp::Set { key: "cfg/d".into(), value: b("4"), lease: Some(42) },
            ],
            otherwise: vec![],
        };
        assert_eq!(kv.apply(&WriteOp::Txn(leased), 4), WriteResult::NoSuchLease { lease: 42 });
        assert!(kv.get("cfg/b").is_some());
    }

    #[test]
    fn ranges_by_prefix_and_interval_with_limits_and_counts() {
        use crate::txn::Range;
        let mut kv = KvState::default();
        let keys = ["app/a", "app/b", "app/c", "apq", "b"];
        kv.apply(&WriteOp::MultiSet(keys.iter().map(|k| ((*k).into(), b(k))).collect()), 1);
        let read = |range: Range| match kv.read(&ReadOp::Range(range)) {
            ReadResult::Range(r) => r,
            other => panic!("{other:?}"),
        };
        let names = |r: &RangeResult| r.kvs.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
        let all = read(Range::prefix("app/"));
        assert_eq!(names(&all), ["app/a", "app/b", "app/c"]);
        assert_eq!((all.count, all.more), (3, false));
        let limited = read(Range::prefix("app/").limit(2));
        assert_eq!(names(&limited), ["app/a", "app/b"]);
        assert_eq!((limited.count, limited.more), (3, true));
        let counted = read(Range::between("app/b", "b").count_only());
        assert_eq!((counted.kvs.len(), counted.count, counted.more), (0, 3, false));
        assert_eq!(read(Range::prefix("")).count, 5);
        assert!(Range::prefix("x").limit(0).validate().is_err(), "limit 0 is refused");
        assert!(Range::between("b", "a").validate().is_err(), "an empty interval is refused");
    }

    /// The transaction a key write is a convenience for, built the long way (clones): the
    /// reference the borrowed path in [`KvState::apply`] must agree with.
    fn as_txn(op: &WriteOp) -> Txn {
        let set =
            |k: &String, v: &Bytes| TxnOp::Set { key: k.clone(), value: v.clone(), lease: None };
        let delete = |k: &String| TxnOp::Delete { key: k.clone() };
        let compare = |k: &String, e: &Expect| crate::txn::Compare::new(k.clone(), e.clone());
        let (when, then) = match op {
            WriteOp::Set { key, value } => (vec![], vec![set(key, value)]),
            WriteOp::Delete { key } => (vec![], vec![delete(key)]),
            WriteOp::CompareAndSet { key, expect, value } => {
                (vec![compare(key, expect)], vec![set(key, value)])
            }
            WriteOp::CompareAndDelete { key, expect } => {
                (vec![compare(key, expect)], vec![delete(key)])
            }
            WriteOp::MultiSet(pairs) => (vec![], pairs.iter().map(|(k, v)| set(k, v)).collect()),
            WriteOp::MultiDelete(keys) => (vec![], keys.iter().map(delete).collect()),
            WriteOp::MultiCompareAndSet(items) => (
                items.iter().map(|(k, e, _)| compare(k, e)).collect(),
                items.iter().map(|(k, _, v)| set(k, v)).collect(),
            ),
            WriteOp::MultiCompareAndDelete(items) => (
                items.iter().map(|(k, e)| compare(k, e)).collect(),
                items.iter().map(|(k, _)| delete(k)).collect(),
            ),
            other => unreachable!("not a key write: {other:?}"),
        };
        Txn { when, then, otherwise: Vec::new() }
    }

    fn key_write() -> impl proptest::strategy::Strategy<Value = WriteOp> {
        use proptest::prelude::*;
        let key = prop::sample::select(vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]);
        let value = (0u8..3).prop_map(|v| Bytes::from(vec![v]));
        let expect = prop_oneof![
            (1u64..6).prop_map(Expect::Version),
            (0u8..3).prop_map(|v| Expect::Value(Bytes::from(vec![v]))),
            Just(Expect::Absent),
            Just(Expect::Exists),
            Just(Expect::Lease(None)),
        ];
        prop_oneof![
            (key.clone(), value.clone()).prop_map(|(key, value)| WriteOp::Set { key, value }),
            key.clone().prop_map(|key| WriteOp::Delete { key }),
            (key.clone(), expect.clone(), value.clone())
                .prop_map(|(key, expect, value)| WriteOp::CompareAndSet { key, expect, value }),
            (key.clone(), expect.clone())
                .prop_map(|(key, expect)| WriteOp::CompareAndDelete { key, expect }),
            prop::collection::vec((key.clone(), value.clone()), 0..3).prop_map(WriteOp::MultiSet),
            prop::collection::vec(key.clone(), 0..3).prop_map(WriteOp::MultiDelete),
            prop::collection::vec((key.clone(), expect.clone(), value), 0..3)
                .prop_map(WriteOp::MultiCompareAndSet),
            prop::collection::vec((key, expect), 0..3).prop_map(WriteOp::MultiCompareAndDelete),
        ]
    }

    proptest::proptest! {
        /// Every key write leaves the state (watch changes included) its transaction leaves,
        /// and answers `Applied` where the transaction succeeds and names the first failed
        /// compare, with its key's state, where it does not.
        #[test]
        fn key_writes_apply_as_their_transactions(ops in proptest::collection::vec(key_write(), 1..40)) {
            let (mut direct, mut via_txn) = (KvState::default(), KvState::default());
            for (index, op) in (1u64..).zip(&ops) {
                let txn = as_txn(op);
                let first_failed = txn
                    .when
                    .iter()
                    .find(|c| !matches(via_txn.get(&c.key), &c.expect))
                    .map(|c| WriteResult::CompareFailed {
                        key: c.key.clone(),
                        current: via_txn.get(&c.key).cloned(),
                    });
                let answer = direct.apply(op, index);
                match via_txn.apply(&WriteOp::Txn(txn), index) {
                    WriteResult::Txn { succeeded: true, version, .. } => {
                        proptest::prop_assert_eq!(answer, WriteResult::Applied { version });
                    }
                    WriteResult::Txn { succeeded: false, .. } => {
                        proptest::prop_assert_eq!(Some(answer), first_failed);
                    }
                    other => proptest::prop_assert!(false, "a key write's txn answered {other:?}"),
                }
                proptest::prop_assert_eq!(&direct, &via_txn, "after {:?}", op);
            }
        }
    }
}

#[cfg(test)]
mod past_ranges {
    use proptest::prelude::*;

    use super::*;
    use crate::watch::History;

    proptest! {
        /// A past range answered from the keys it needs equals the whole range rewound and
        /// then cut, for every revision, limit and key range.
        #[test]
        fn a_past_range_equals_the_whole_range_rewound(
            writes in proptest::collection::vec((0u8..6, proptest::option::of(0u8..4)), 1..40),
            limit in proptest::option::of(0usize..5),
            count_only in any::<bool>(),
            prefix in prop_oneof![Just(""), Just("k1"), Just("k")],
        ) {
            let mut kv = KvState::default();
            let mut history = History::new(1_000, usize::MAX, 1);
            for (index, (key, value)) in (1..).zip(&writes) {
                let key = format!("k{key}");
                let op = match value {
                    Some(v) => WriteOp::Set { key, value: Bytes::from(vec![*v]) },
                    None => WriteOp::Delete { key },
                };
                kv.apply(&op, index);
                history.record(index, kv.take_changes());
            }
            let range = Range { limit, count_only, ..Range::prefix(prefix) };
            for at in 0..=writes.len() as u64 {
                let mut view = kv.map.clone();
                history.rewind(&mut view, &range.keys, at).unwrap();
                let whole = range_of(&view, &range);
                let then = history.values_at(&range.keys, at).unwrap();
                prop_assert_eq!(kv.range_as_of(&range, &then), whole, "at {}", at);
            }
        }
    }
}
