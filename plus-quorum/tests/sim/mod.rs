//! A seeded, single-threaded simulator: N nodes, a faulty network, crashes and restarts, and
//! clients whose histories are checked for linearizability with a memoized, time-bounded search
//! (`linearizability.rs`).
//!
//! History files (`PLUS_SIM_HISTORY_DIR=DIR`): `DIR/nodes{N}-seed{S}.jsonl`, one JSON object per
//! line, in time order:
//! `{"t_ms":1234,"client":2,"thread":7,"event":"invoke","op":{...}}` then, for the same thread,
//! one of `"ok"` (with `"result"`), `"fail"` (the operation certainly had no effect, e.g. a
//! failed compare), `"refused"` (the node it reached does not lead: no effect, and it leaves
//! the history) or `"unknown"` (timed out, lost on the way there or back, or leadership lost:
//! it may or may not have taken effect, and the thread issues nothing more).
//!
//! Clients reach nodes over the simulated network too: requests and answers are delayed and
//! lost (never duplicated: the transport is TCP, and the client does not resend a write whose
//! outcome it does not know). A thread has at most one operation in flight;
//! threads of a client run one after another. Ops and results use the serde forms of
//! `plus_quorum::WriteOp`/`ReadOp` and `WriteResult`/`ReadResult`.

#![allow(dead_code, unreachable_pub)] // shared by several test binaries, each using part of it

use std::cmp::Reverse;
use std::collections::VecDeque;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::time::Duration;

use bytes::Bytes;
use plus_core::{SeededRng, Timestamp, seeded_rng};
use plus_quorum::{
    Change, ClientError, Config, Expect, KeyRange, LeaseId, LogIndex, MemStorage, Membership,
    Message, Node, NodeId, PersistBatch, Range, RangeResult, ReadOp, ReadResult, Response, Start,
    Txn, TxnOp, TxnOpResult, WatchRequest, WriteOp, WriteResult, compare,
};
use rand::Rng;

mod incarnations;
pub mod locks;
mod operator;
pub mod watchers;
use locks::{Hold, LOCK_KEY, Phase, Purpose};
pub use plus_quorum::testkit::{History, Model, Verdict};
use watchers::{Committed, Session, StartAt};

/// Fault and workload settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub nodes: usize,
    pub seed: u64,
    pub clients: usize,
    /// Simulated run time before healing.
    pub duration: Duration,
    /// Message drop probability between nodes.
    pub drop: f64,
    /// Drop probability of a client request or answer.
    pub client_drop: f64,
    /// Operations every run completes at least (it runs on past `duration` until then, within
    /// a bound, and fails if it cannot).
    pub min_operations: usize,
    pub duplicate: f64,
    pub max_delay_ms: u64,
    pub crash_every_ms: u64,
    pub partition_every_ms: u64,
    /// Longest time a node's write takes to become durable; a crash loses what is not yet.
    pub max_fsync_ms: u64,
    /// An operator changes the membership now and then (adds and removes learners, promotes,
    /// removes and replaces voters, transfers leadership, removes the leader), with nodes
    /// started in spare slots.
    pub membership: bool,
    /// Slots for nodes beyond the initial members.
    pub spares: usize,
    #[cfg(plus_planted_bugs)]
    pub bugs: plus_quorum::PlantedBugs,
}

impl SimConfig {
    pub fn new(nodes: usize, seed: u64) -> Self {
        let mut rng = seeded_rng(seed ^ 0x5eed);
        Self {
            nodes,
            seed,
            clients: 3,
            duration: Duration::from_secs(8),
            drop: rng.random_range(0.0..0.3),
            client_drop: rng.random_range(0.0..0.05),
            min_operations: 60,
            duplicate: 0.05,
            max_delay_ms: 30,
            crash_every_ms: 700,
            partition_every_ms: 900,
            max_fsync_ms: rng.random_range(0..=10),
            membership: true,
            spares: 2,
            #[cfg(plus_planted_bugs)]
            bugs: plus_quorum::PlantedBugs::default(),
        }
    }
}

// ---- the model checked for linearizability ---------------------------------------------------

/// An operation as the clients send it: the crate's own request types, matched without a
/// catch-all below, so an operation kind added to the crate does not compile here until the
/// model, the coverage check and the workload know it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Request {
    Write(WriteOp),
    Read(ReadOp),
}

impl Request {
    /// The operation's kind, for the coverage check.
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Write(op) => match op {
                WriteOp::Set { .. } => "set",
                WriteOp::Delete { .. } => "delete",
                WriteOp::CompareAndSet { .. } => "compare_and_set",
                WriteOp::CompareAndDelete { .. } => "compare_and_delete",
                WriteOp::MultiSet(_) => "multi_set",
                WriteOp::MultiDelete(_) => "multi_delete",
                WriteOp::MultiCompareAndSet(_) => "multi_compare_and_set",
                WriteOp::MultiCompareAndDelete(_) => "multi_compare_and_delete",
                WriteOp::SetWithLease { .. } => "set_with_lease",
                WriteOp::GrantLease { .. } => "grant_lease",
                WriteOp::RevokeLease { .. } => "revoke_lease",
                WriteOp::Txn(_) => "txn",
                WriteOp::Compact { .. } => "compact",
                _ => "unknown",
            },
            Request::Read(op) => match op {
                ReadOp::Get(_) => "get",
                ReadOp::MultiGet(_) => "multi_get",
                ReadOp::Keys(_) => "keys",
                ReadOp::Len => "len",
                ReadOp::Range(_) => "range",
                ReadOp::LeaseKeepAlive(_) => "lease_keep_alive",
                ReadOp::LeaseTimeToLive(_) => "lease_time_to_live",
                ReadOp::Leases => "leases",
                _ => "unknown",
            },
        }
    }

    /// Whether the operation is about leases: lease-attached keys can vanish at a time only the
    /// leader chooses, so these are checked by the lease rule (no deletion before TTL), not by
    /// the linearizability model.
    fn is_lease_op(&self) -> bool {
        match self {
            Request::Write(op) => match op {
                WriteOp::SetWithLease { .. }
                | WriteOp::GrantLease { .. }
                | WriteOp::RevokeLease { .. } => true,
                WriteOp::Set { .. }
                | WriteOp::Delete { .. }
                | WriteOp::CompareAndSet { .. }
                | WriteOp::CompareAndDelete { .. }
                | WriteOp::MultiSet(_)
                | WriteOp::MultiDelete(_)
                | WriteOp::MultiCompareAndSet(_)
                | WriteOp::MultiCompareAndDelete(_)
                | WriteOp::Compact { .. } => false,
                // The lock protocol's transactions put a key on a lease.
                WriteOp::Txn(txn) => txn
                    .then
                    .iter()
                    .chain(&txn.otherwise)
                    .any(|op| matches!(op, TxnOp::Set { lease: Some(_), .. })),
                other => unreachable!("an operation the model does not know: {other:?}"),
            },
            Request::Read(op) => match op {
                ReadOp::LeaseKeepAlive(_) | ReadOp::LeaseTimeToLive(_) | ReadOp::Leases => true,
                ReadOp::Get(_)
                | ReadOp::MultiGet(_)
                | ReadOp::Keys(_)
                | ReadOp::Len
                | ReadOp::Range(_) => false,
                other => unreachable!("an operation the model does not know: {other:?}"),
            },
        }
    }

    /// The keys the operation touches; `None` for the whole store.
    fn keys(&self) -> Option<Vec<&str>> {
        Some(match self {
            Request::Write(op) => match op {
                WriteOp::Set { key, .. }
                | WriteOp::Delete { key }
                | WriteOp::CompareAndSet { key, .. }
                | WriteOp::CompareAndDelete { key, .. } => vec![key.as_str()],
                WriteOp::MultiSet(items) => items.iter().map(|(k, _)| k.as_str()).collect(),
                WriteOp::MultiDelete(keys) => keys.iter().map(String::as_str).collect(),
                WriteOp::MultiCompareAndSet(items) => {
                    items.iter().map(|(k, ..)| k.as_str()).collect()
                }
                WriteOp::MultiCompareAndDelete(items) => {
                    items.iter().map(|(k, _)| k.as_str()).collect()
                }
                WriteOp::SetWithLease { key, .. } => vec![key.as_str()],
                WriteOp::GrantLease { .. }
                | WriteOp::RevokeLease { .. }
                | WriteOp::Compact { .. } => return None,
                WriteOp::Txn(txn) => txn
                    .when
                    .iter()
                    .map(|c| c.key.as_str())
                    .chain(txn.then.iter().chain(&txn.otherwise).map(|op| match op {
                        TxnOp::Set { key, .. } | TxnOp::Delete { key } | TxnOp::Get(key) => {
                            key.as_str()
                        }
                        TxnOp::Range(range) => range_group_key(range),
                        other => unreachable!("an operation the model does not know: {other:?}"),
                    }))
                    .collect(),
                other => unreachable!("an operation the model does not know: {other:?}"),
            },
            Request::Read(op) => match op {
                ReadOp::Get(key) => vec![key.as_str()],
                ReadOp::MultiGet(keys) => keys.iter().map(String::as_str).collect(),
                // The workload's patterns stay within the multi-key group (see `group_of`).
                ReadOp::Keys(_) => vec!["m"],
                ReadOp::Range(range) => vec![range_group_key(range)],
                ReadOp::Len
                | ReadOp::LeaseKeepAlive(_)
                | ReadOp::LeaseTimeToLive(_)
                | ReadOp::Leases => return None,
                other => unreachable!("an operation the model does not know: {other:?}"),
            },
        })
    }
}

/// The key that stands for a range when grouping: the workload's ranges stay within the
/// multi-key group (prefix `m`).
fn range_group_key(range: &Range) -> &str {
    match &range.keys {
        KeyRange::Prefix(prefix) => prefix.as_str(),
        KeyRange::Between { start, .. } => start.as_str(),
    }
}

/// Every operation kind the simulations run, each of which must complete at least once over a
/// sweep of seeds.
pub const SIMULATED_KINDS: [&str; 21] = [
    "set",
    "delete",
    "compare_and_set",
    "compare_and_delete",
    "multi_set",
    "multi_delete",
    "multi_compare_and_set",
    "multi_compare_and_delete",
    "get",
    "multi_get",
    "keys",
    "txn",
    "range",
    "set_with_lease",
    "grant_lease",
    "revoke_lease",
    "lease_keep_alive",
    "lease_time_to_live",
    "leases",
    "compact",
    "len",
];

/// Kinds left out, and why.
pub const NOT_SIMULATED: [(&str, &str); 0] = [];

/// A result as the model can predict it: values without their versions (versions are log
/// positions, which a sequential model cannot predict; version-based compares are covered by
/// unit tests).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelRet {
    Done,
    /// The first key whose comparison failed, and its value then.
    CompareFailed {
        key: String,
        current: Option<Bytes>,
    },
    Value(Option<Bytes>),
    Values(Vec<Option<Bytes>>),
    Keys(Vec<String>),
    Len(usize),
    Range(ModelRange),
    Txn {
        succeeded: bool,
        results: Vec<ModelTxnResult>,
    },
    /// A lease was granted (its id, the store's choice, is the model's operation).
    Granted,
    /// Whether the lease a keep-alive or time-to-live asked about is alive.
    Alive(bool),
    NoSuchLease,
    /// The list of leases: not modelled.
    Listed,
}

/// A range without versions: keys with values, the count and the "more" flag.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ModelRange {
    pub kvs: Vec<(String, Bytes)>,
    pub count: usize,
    pub more: bool,
}

impl ModelRange {
    fn of(result: &RangeResult) -> Self {
        let kvs = result.kvs.iter().map(|(k, v)| (k.clone(), v.value.clone())).collect();
        Self { kvs, count: result.count, more: result.more }
    }
}

/// A transaction operation's result without versions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelTxnResult {
    Set,
    Delete { existed: bool },
    Get(Option<Bytes>),
    Range(ModelRange),
}

impl ModelRet {
    /// What the model compares of a real response.
    pub fn observed(response: &Response) -> Self {
        match response {
            Response::Cluster(other) => {
                unreachable!("clients do not change the cluster: {other:?}")
            }
            Response::Backup(_) => unreachable!("this workload takes no backups"),
            Response::Write(WriteResult::Applied { .. }) => ModelRet::Done,
            Response::Write(WriteResult::CompareFailed { key, current }) => {
                ModelRet::CompareFailed {
                    key: key.clone(),
                    current: current.as_ref().map(|v| v.value.clone()),
                }
            }
            Response::Read(ReadResult::Value(v)) => {
                ModelRet::Value(v.as_ref().map(|v| v.value.clone()))
            }
            Response::Read(ReadResult::Values(vs)) => {
                ModelRet::Values(vs.iter().map(|v| v.as_ref().map(|v| v.value.clone())).collect())
            }
            Response::Read(ReadResult::Keys(keys)) => ModelRet::Keys(keys.clone()),
            Response::Read(ReadResult::Len(n)) => ModelRet::Len(*n),
            Response::Read(ReadResult::Range(range)) => ModelRet::Range(ModelRange::of(range)),
            Response::Write(WriteResult::Txn { succeeded, results, .. }) => ModelRet::Txn {
                succeeded: *succeeded,
                results: results
                    .iter()
                    .map(|r| match r {
                        TxnOpResult::Set { .. } => ModelTxnResult::Set,
                        TxnOpResult::Delete { existed } => {
                            ModelTxnResult::Delete { existed: *existed }
                        }
                        TxnOpResult::Get(v) => {
                            ModelTxnResult::Get(v.as_ref().map(|v| v.value.clone()))
                        }
                        TxnOpResult::Range(range) => ModelTxnResult::Range(ModelRange::of(range)),
                        other => unreachable!("a result the model does not know: {other:?}"),
                    })
                    .collect(),
            },
            Response::Write(WriteResult::LeaseGranted { .. }) => ModelRet::Granted,
            Response::Write(WriteResult::NoSuchLease { .. }) => ModelRet::NoSuchLease,
            Response::Read(ReadResult::Lease(lease)) => ModelRet::Alive(lease.is_some()),
            Response::Read(ReadResult::Leases(_)) => ModelRet::Listed,
            other => unreachable!("a response the model does not know: {other:?}"),
        }
    }
}

/// What the model is asked to do: a client's operation, or what the system does on its own
/// or tells only in an answer (a grant's lease id is the store's choice; an expiry is the
/// leader's operation, linearized when its entry commits, somewhere between the grant's
/// acknowledgement and the first replica applying the lease's end).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ModelOp {
    Client(Request),
    Granted(LeaseId),
    Expired(LeaseId),
}

/// The whole map, with the leases alive and the lease each leased key is on.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MapSpec {
    map: BTreeMap<String, Bytes>,
    leases: BTreeSet<LeaseId>,
    lease_of: BTreeMap<String, LeaseId>,
}

impl MapSpec {
    fn holds(&self, key: &str, expect: &Expect) -> bool {
        match expect {
            Expect::Value(v) => self.map.get(key) == Some(v),
            Expect::Absent => !self.map.contains_key(key),
            Expect::Exists => self.map.contains_key(key),
            Expect::Lease(lease) => {
                self.map.contains_key(key) && self.lease_of.get(key).copied() == *lease
            }
            Expect::Version(_) => {
                unreachable!("versions are translated to the values they name before the model")
            }
        }
    }

    fn set(&mut self, key: &str, value: &Bytes, lease: Option<LeaseId>) {
        self.map.insert(key.to_owned(), value.clone());
        match lease {
            Some(lease) => self.lease_of.insert(key.to_owned(), lease),
            None => self.lease_of.remove(key),
        };
    }

    fn remove(&mut self, key: &str) -> bool {
        self.lease_of.remove(key);
        self.map.remove(key).is_some()
    }

    /// Ends `lease` with its keys; false if it was not alive.
    fn end_lease(&mut self, lease: LeaseId) -> bool {
        if !self.leases.remove(&lease) {
            return false;
        }
        let keys: Vec<String> =
            self.lease_of.iter().filter(|(_, l)| **l == lease).map(|(k, _)| k.clone()).collect();
        for key in keys {
            self.remove(&key);
        }
        true
    }
}

impl Model for MapSpec {
    type Op = ModelOp;
    type Ret = ModelRet;

    fn step(&mut self, op: &ModelOp) -> ModelRet {
        match op {
            ModelOp::Client(Request::Write(op)) => self.write(op),
            ModelOp::Client(Request::Read(op)) => self.read(op),
            ModelOp::Granted(lease) => {
                self.leases.insert(*lease);
                ModelRet::Granted
            }
            ModelOp::Expired(lease) => {
                self.end_lease(*lease);
                ModelRet::Done
            }
        }
    }
}

impl MapSpec {
    fn write(&mut self, op: &WriteOp) -> ModelRet {
        // The store reports the first comparison that fails, in the operation's order.
        let failed = match op {
            WriteOp::CompareAndSet { key, expect, .. }
            | WriteOp::CompareAndDelete { key, expect } => {
                (!self.holds(key, expect)).then_some(key)
            }
            WriteOp::MultiCompareAndSet(items) => {
                items.iter().find(|(k, e, _)| !self.holds(k, e)).map(|(k, ..)| k)
            }
            WriteOp::MultiCompareAndDelete(items) => {
                items.iter().find(|(k, e)| !self.holds(k, e)).map(|(k, _)| k)
            }
            WriteOp::Set { .. }
            | WriteOp::Delete { .. }
            | WriteOp::MultiSet(_)
            | WriteOp::MultiDelete(_) => None,
            WriteOp::Txn(txn) => return self.txn(txn),
            WriteOp::SetWithLease { key, value, lease } => {
                if !self.leases.contains(lease) {
                    return ModelRet::NoSuchLease;
                }
                self.set(key, value, Some(*lease));
                return ModelRet::Done;
            }
            WriteOp::RevokeLease { lease } => {
                return if self.end_lease(*lease) { ModelRet::Done } else { ModelRet::NoSuchLease };
            }
            WriteOp::GrantLease { .. } => {
                unreachable!("a grant reaches the model as the lease it granted")
            }
            WriteOp::Compact { .. } => unreachable!("a compaction changes no key: not modelled"),
            other => unreachable!("an operation the model does not know: {other:?}"),
        };
        if let Some(key) = failed {
            let current = self.map.get(key).cloned();
            return ModelRet::CompareFailed { key: key.clone(), current };
        }
        match op {
            WriteOp::Set { key, value } | WriteOp::CompareAndSet { key, value, .. } => {
                self.set(key, value, None);
            }
            WriteOp::Delete { key } | WriteOp::CompareAndDelete { key, .. } => {
                self.remove(key);
            }
            WriteOp::MultiSet(items) => items.iter().for_each(|(k, v)| self.set(k, v, None)),
            WriteOp::MultiCompareAndSet(items) => {
                items.iter().for_each(|(k, _, v)| self.set(k, v, None));
            }
            WriteOp::MultiDelete(keys) => {
                for key in keys {
                    self.remove(key);
                }
            }
            WriteOp::MultiCompareAndDelete(items) => {
                for (key, _) in items {
                    self.remove(key);
                }
            }
            WriteOp::Txn(_)
            | WriteOp::SetWithLease { .. }
            | WriteOp::GrantLease { .. }
            | WriteOp::RevokeLease { .. }
            | WriteOp::Compact { .. } => unreachable!("handled above"),
            other => unreachable!("an operation the model does not know: {other:?}"),
        }
        ModelRet::Done
    }

    fn txn(&mut self, txn: &Txn) -> ModelRet {
        let succeeded = txn.when.iter().all(|c| self.holds(&c.key, &c.expect));
        let branch = if succeeded { &txn.then } else { &txn.otherwise };
        // A branch naming a lease that is not alive applies nothing.
        let dead_lease = branch
            .iter()
            .any(|op| matches!(op, TxnOp::Set { lease: Some(l), .. } if !self.leases.contains(l)));
        if dead_lease {
            return ModelRet::NoSuchLease;
        }
        let results = branch
            .iter()
            .map(|op| match op {
                TxnOp::Set { key, value, lease } => {
                    self.set(key, value, *lease);
                    ModelTxnResult::Set
                }
                TxnOp::Delete { key } => ModelTxnResult::Delete { existed: self.remove(key) },
                TxnOp::Get(key) => ModelTxnResult::Get(self.map.get(key).cloned()),
                TxnOp::Range(range) => ModelTxnResult::Range(self.range(range)),
                other => unreachable!("an operation the model does not know: {other:?}"),
            })
            .collect();
        ModelRet::Txn { succeeded, results }
    }

    fn range(&self, range: &Range) -> ModelRange {
        let inside: Vec<(String, Bytes)> = self
            .map
            .iter()
            .filter(|(k, _)| range.keys.contains(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let count = inside.len();
        let limit = if range.count_only { 0 } else { range.limit.unwrap_or(usize::MAX) };
        let kvs: Vec<_> = inside.into_iter().take(limit).collect();
        let more = !range.count_only && count > kvs.len();
        ModelRange { kvs, count, more }
    }

    fn read(&self, op: &ReadOp) -> ModelRet {
        let m = &self.map;
        match op {
            ReadOp::Get(k) => ModelRet::Value(m.get(k).cloned()),
            ReadOp::MultiGet(keys) => {
                ModelRet::Values(keys.iter().map(|k| m.get(k).cloned()).collect())
            }
            ReadOp::Keys(pattern) => ModelRet::Keys(
                m.keys()
                    .filter(|k| plus_quorum::testing::glob_match(pattern, k))
                    .cloned()
                    .collect(),
            ),
            ReadOp::Len => ModelRet::Len(m.len()),
            ReadOp::Range(range) => ModelRet::Range(self.range(range)),
            ReadOp::LeaseKeepAlive(lease) | ReadOp::LeaseTimeToLive(lease) => {
                ModelRet::Alive(self.leases.contains(lease))
            }
            ReadOp::Leases => {
                unreachable!("the list of leases names ones only the store knows of: not modelled")
            }
            other => unreachable!("an operation the model does not know: {other:?}"),
        }
    }
}

// ---- history -------------------------------------------------------------------------------

use plus_quorum::testkit::HistoryLine;

/// The group of every lease operation and of the keys put on leases (`l...`, the lock's).
pub const LEASES: &str = "leases";

/// Which model an operation is checked against: one register per key for single-key keys, the
/// whole small map for the keys multi-key operations use (`m...`), and the leases with their
/// keys (`l...`).
///
/// `None` for what the model cannot check: a read of the past (checked against the committed
/// history, `check_past_reads`) and the list of leases (it names leases whose grant no client
/// heard of).
pub fn group_of(op: &Request) -> Option<String> {
    match op {
        // It changes no key: what it must not break (past reads, watches) is checked where
        // those are (`check_past_reads`, the watchers' own checks).
        Request::Write(WriteOp::Compact { .. }) => return None,
        Request::Read(ReadOp::Leases) => return None,
        // It counts every key: checked against the committed history (`check_len_reads`).
        Request::Read(ReadOp::Len) => return None,
        Request::Read(ReadOp::Range(r)) if r.revision.is_some() => return None,
        _ if op.is_lease_op() => return Some(LEASES.to_owned()),
        _ => {}
    }
    Some(match op.keys().as_deref() {
        Some(keys) if keys.iter().any(|k| k.starts_with('l')) => {
            assert!(keys.iter().all(|k| k.starts_with('l')), "{op:?} mixes the groups");
            LEASES.to_owned()
        }
        Some([key]) if !key.starts_with('m') => (*key).to_owned(),
        Some(keys) => {
            assert!(keys.iter().all(|k| k.starts_with('m')), "{op:?} mixes the groups");
            "multi".to_owned()
        }
        None => panic!("{op:?} spans every group; the checker cannot take it"),
    })
}

/// The `(key, value, version, created)` a response shows: acknowledged writes and every
/// versioned value read back.
fn versions_in(op: &Request, response: &Response) -> Vec<(String, Bytes, u64, Option<u64>)> {
    let read = |key: &str, v: &plus_quorum::Versioned| {
        (key.to_owned(), v.value.clone(), v.version, Some(v.created))
    };
    let ranged = |range: &RangeResult| range.kvs.iter().map(|(k, v)| read(k, v)).collect();
    match (op, response) {
        (Request::Write(w), Response::Write(WriteResult::Applied { version })) => match w {
            WriteOp::Set { key, value }
            | WriteOp::CompareAndSet { key, value, .. }
            | WriteOp::SetWithLease { key, value, .. } => {
                vec![(key.clone(), value.clone(), *version, None)]
            }
            WriteOp::MultiSet(items) => {
                items.iter().map(|(k, v)| (k.clone(), v.clone(), *version, None)).collect()
            }
            WriteOp::MultiCompareAndSet(items) => {
                items.iter().map(|(k, _, v)| (k.clone(), v.clone(), *version, None)).collect()
            }
            WriteOp::Delete { .. }
            | WriteOp::CompareAndDelete { .. }
            | WriteOp::MultiDelete(_)
            | WriteOp::MultiCompareAndDelete(_)
            | WriteOp::GrantLease { .. }
            | WriteOp::RevokeLease { .. }
            | WriteOp::Compact { .. }
            | WriteOp::Txn(_) => Vec::new(),
            other => unreachable!("an operation the model does not know: {other:?}"),
        },
        (_, Response::Write(WriteResult::CompareFailed { key, current: Some(v) })) => {
            vec![read(key, v)]
        }
        (
            Request::Write(WriteOp::Txn(txn)),
            Response::Write(WriteResult::Txn { succeeded, results, .. }),
        ) => {
            let branch = if *succeeded { &txn.then } else { &txn.otherwise };
            branch
                .iter()
                .zip(results)
                .flat_map(|(op, result)| match (op, result) {
                    (TxnOp::Set { key, value, .. }, TxnOpResult::Set { version }) => {
                        vec![(key.clone(), value.clone(), *version, None)]
                    }
                    (TxnOp::Get(key), TxnOpResult::Get(Some(v))) => vec![read(key, v)],
                    (TxnOp::Range(_), TxnOpResult::Range(range)) => ranged(range),
                    _ => Vec::new(),
                })
                .collect()
        }
        (Request::Read(ReadOp::Get(key)), Response::Read(ReadResult::Value(Some(v)))) => {
            vec![read(key, v)]
        }
        (Request::Read(ReadOp::MultiGet(keys)), Response::Read(ReadResult::Values(values))) => {
            keys.iter().zip(values).filter_map(|(k, v)| v.as_ref().map(|v| read(k, v))).collect()
        }
        (_, Response::Read(ReadResult::Range(range))) => ranged(range),
        _ => Vec::new(),
    }
}

// ---- clients -------------------------------------------------------------------------------

struct InFlight {
    thread: u64,
    request_id: u64,
    node: NodeId,
    op: Request,
    /// What it does for the lock protocol.
    purpose: Purpose,
    /// When the client sent it.
    sent: Timestamp,
    deadline: Timestamp,
}

/// A replica's watch history: the changes of each revision.
type ChangesByRevision = BTreeMap<u64, Vec<(String, Change)>>;

/// What the clients know of one lease, for the lease rule: its keys are never deleted earlier
/// than TTL after the send time of any grant or keep-alive the clients saw acknowledged.
#[derive(Debug, Default)]
struct LeaseTrack {
    ttl: Duration,
    /// Send times of the grant and of every acknowledged keep-alive.
    acked_sends: Vec<Timestamp>,
    /// When a client first asked to revoke it (from then on it may end at any time).
    revoke_sent: Option<Timestamp>,
    /// When the first replica applied its end.
    ended: Option<Timestamp>,
}

struct Client {
    id: usize,
    thread: u64,
    believed_leader: Option<NodeId>,
    in_flight: Option<InFlight>,
    next_action: Timestamp,
    ops_done: usize,
    lock: Phase,
}

/// What a run observed.
#[derive(Debug)]
pub struct Outcome {
    pub trace_hash: u64,
    pub history_lines: usize,
    pub acknowledged_writes: usize,
    /// The operation kinds that completed with an answer.
    pub completed_kinds: BTreeSet<&'static str>,
    /// Leases that ended by expiry (no client asked to revoke them).
    pub leases_expired: usize,
    /// Leases a client kept alive at least once (acknowledged).
    pub leases_kept_alive: usize,
    /// Operations that completed with an answer.
    pub operations: usize,
    /// Of which while faults were being injected.
    pub operations_under_faults: usize,
    /// Holds of the lock that believed they held it (checked for overlap and fencing order).
    pub lock_holds: usize,
    /// Watch sessions checked against the committed history, and the events they received.
    pub watch_sessions: usize,
    pub watch_events: usize,
    /// How often each fault, and each consequence a client saw, happened.
    pub faults: BTreeMap<&'static str, u64>,
    pub violations: Vec<String>,
    pub history_jsonl: String,
}

pub struct Sim {
    cfg: SimConfig,
    rng: SeededRng,
    now: Timestamp,
    nodes: Vec<Option<Node>>,
    /// What each node has made durable: a restart (memory kept) recovers exactly this.
    storages: Vec<MemStorage>,
    /// Each node's writes on their way to disk, with the time each becomes durable.
    disk: Vec<VecDeque<(Timestamp, PersistBatch)>>,
    /// Nodes restarted with their memory wiped, until they leave recovering.
    net: BinaryHeap<Reverse<InTransit>>,
    /// Client requests and answers on their way.
    client_net: BinaryHeap<Reverse<(Timestamp, u64, ClientBox)>>,
    /// How often each fault (and each client-visible consequence) happened.
    faults: BTreeMap<&'static str, u64>,
    /// Operations that completed with an answer.
    operations: usize,
    /// Watches open now, and those cancelled (each checked at the end).
    watches: Vec<Session>,
    watches_done: Vec<Session>,
    watch_events_checked: usize,
    /// Every lease a lock holder was granted, and its hold of the lock if any.
    holds: Vec<Hold>,
    /// Ranges read at a past revision, with their answers.
    past_reads: Vec<(Range, RangeResult)>,
    /// Every answered count of the keys: the newest version any client had seen when it was
    /// sent, the most any replica had applied when it was answered, and the count.
    len_reads: Vec<(u64, u64, usize)>,
    /// The newest version any client had seen, from each moment it grew.
    newest_seen: BTreeMap<Timestamp, u64>,
    seq: u64,
    blocked: HashSet<(NodeId, NodeId)>,
    clients: Vec<Client>,
    next_request: u64,
    next_thread: u64,
    testers: BTreeMap<String, History<MapSpec>>,
    thread_group: HashMap<u64, String>,
    history: Vec<HistoryLine>,
    hasher: std::collections::hash_map::DefaultHasher,
    leaders_by_term: HashMap<u64, NodeId>,
    versions_seen: Vec<HashMap<String, u64>>,
    acked: Vec<(String, Bytes, u64)>,
    /// Every lease a client saw granted.
    leases: BTreeMap<LeaseId, LeaseTrack>,
    /// The leases each replica's state holds, as last seen (per incarnation).
    leases_held: Vec<HashSet<LeaseId>>,
    completed: BTreeSet<&'static str>,
    /// Every version a client saw of a key, with the value it had: a version names one write.
    seen_versions: BTreeMap<(String, u64), Bytes>,
    /// The other way round: the version each written value was seen at.
    seen_values: HashMap<(String, Bytes), u64>,
    /// Every key's `created` versions as clients saw them.
    incarnations: incarnations::Incarnations,
    violations: Vec<String>,
    next_fault: Timestamp,
    next_partition: Timestamp,
    write_counter: u64,
    /// Nodes frozen (a long GC pause, a stopped VM) until the given time: they keep their state
    /// but run nothing, and messages to them are lost.
    paused_until: Vec<Option<Timestamp>>,
    /// The node id in each slot (running or crashed); `None` for a vacant slot.
    ids: Vec<Option<NodeId>>,
    /// The other way round.
    slot_of: HashMap<NodeId, usize>,
    /// The voters the cluster started with: a restarted node is given these, as an operator's
    /// static command line would (its log says what is in force).
    initial: Vec<NodeId>,
    operator: operator::Operator,
    debug_last: HashMap<NodeId, String>,
    /// Leases granted for the lock: other clients leave them alone.
    lock_leases: HashSet<LeaseId>,
    /// The highest commit index seen on any node, and the configuration in force there.
    committed_config: (LogIndex, Membership),
    /// Each node's commit index at the last observation.
    commits_seen: HashMap<NodeId, LogIndex>,
}

/// Traffic between clients and nodes, which the simulated network delays and loses too.
#[derive(Debug)]
enum ClientMsg {
    ToNode { client: usize, request_id: u64, node: NodeId, op: Request },
    ToClient { client: usize, request_id: u64, answer: Answer },
}

/// What a node says to a client.
#[derive(Debug)]
enum Answer {
    /// Refused on arrival (not the leader, bad input): it never took effect.
    Refused(ClientError),
    /// The operation's outcome; an error means it may or may not have taken effect.
    Result(Result<Response, ClientError>),
}

/// A client message with a total order (by the sequence number beside it in the queue).
#[derive(Debug)]
struct ClientBox(ClientMsg);

impl PartialEq for ClientBox {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for ClientBox {}

impl PartialOrd for ClientBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClientBox {
    // Queue entries are unique by sequence number before this is ever consulted.
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

/// A message on the wire: delivery time, sequence number (ties), sender, receiver.
type InTransit = (Timestamp, u64, NodeId, NodeId, MessageBox);

/// A message with a total order, so the network queue is deterministic.
#[derive(Debug, Clone, PartialEq, Eq)]
struct MessageBox(Message);

impl PartialOrd for MessageBox {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MessageBox {
    // Queue entries are unique by sequence number before this is ever consulted.
    fn cmp(&self, _: &Self) -> std::cmp::Ordering {
        std::cmp::Ordering::Equal
    }
}

const MEMBERS_BASE: NodeId = 1;

/// Threads of the system's own operations (lease ends), one per lease, above every client's.
const SYSTEM_THREADS: u64 = 1 << 48;

/// How long one group's history may be searched; an undecided one is a failure.
pub const LINEARIZABILITY_BUDGET: Duration = Duration::from_secs(20);

impl Sim {
    pub fn new(cfg: SimConfig) -> Self {
        let members: Vec<NodeId> = (0..cfg.nodes as u64).map(|i| i + MEMBERS_BASE).collect();
        let slots = cfg.nodes + if cfg.membership { cfg.spares } else { 0 };
        let cfg_voters = members.clone();
        let storages: Vec<MemStorage> = (0..slots).map(|_| MemStorage::new()).collect();
        let mut rng = seeded_rng(cfg.seed);
        let mut nodes: Vec<Option<Node>> = members
            .iter()
            .zip(&storages)
            .map(|(&id, s)| {
                Some(
                    Node::new(
                        Self::node_config(&cfg, id, &members, Start::Bootstrap, rng.random()),
                        &mut s.clone(),
                        Timestamp::ZERO,
                    )
                    .unwrap(),
                )
            })
            .collect();
        nodes.resize_with(slots, || None);
        let clients = (0..cfg.clients)
            .map(|id| Client {
                id,
                thread: id as u64,
                believed_leader: None,
                in_flight: None,
                next_action: Timestamp::from_millis(500),
                ops_done: 0,
                lock: Phase::Idle,
            })
            .collect();
        Self {
            rng,
            now: Timestamp::ZERO,
            nodes,
            storages,
            disk: vec![VecDeque::new(); slots],
            net: BinaryHeap::new(),
            client_net: BinaryHeap::new(),
            faults: BTreeMap::new(),
            operations: 0,
            watches: Vec::new(),
            watches_done: Vec::new(),
            watch_events_checked: 0,
            holds: Vec::new(),
            past_reads: Vec::new(),
            len_reads: Vec::new(),
            newest_seen: BTreeMap::new(),
            seq: 0,
            blocked: HashSet::new(),
            clients,
            next_request: 1,
            next_thread: cfg.clients as u64,
            testers: BTreeMap::new(),
            thread_group: HashMap::new(),
            history: Vec::new(),
            hasher: std::collections::hash_map::DefaultHasher::new(),
            leaders_by_term: HashMap::new(),
            versions_seen: vec![HashMap::new(); slots],
            acked: Vec::new(),
            leases: BTreeMap::new(),
            leases_held: vec![HashSet::new(); slots],
            completed: BTreeSet::new(),
            seen_versions: BTreeMap::new(),
            seen_values: HashMap::new(),
            incarnations: incarnations::Incarnations::default(),
            violations: Vec::new(),
            next_fault: Timestamp::from_millis(cfg.crash_every_ms),
            next_partition: Timestamp::from_millis(cfg.partition_every_ms),
            write_counter: 0,
            paused_until: vec![None; slots],
            ids: (0..slots).map(|i| members.get(i).copied()).collect(),
            slot_of: members.iter().enumerate().map(|(i, &id)| (id, i)).collect(),
            operator: operator::Operator::new(members.len() as u64 + MEMBERS_BASE),
            initial: members,
            debug_last: HashMap::new(),
            lock_leases: HashSet::new(),
            committed_config: (0, Membership::with_voters(cfg_voters.iter().copied())),
            commits_seen: HashMap::new(),
            cfg,
        }
    }

    fn node_config(
        cfg: &SimConfig,
        id: NodeId,
        members: &[NodeId],
        start: Start,
        seed: u64,
    ) -> Config {
        let mut c = Config::new(id, members.to_vec());
        c.seed = seed;
        c.election_timeout = Duration::from_millis(150);
        c.heartbeat_interval = Duration::from_millis(30);
        // 43 to 64 with the jitter = snapshots (and their compaction of watch history) as often as
        // the fixed 64 of before.
        c.snapshot_threshold = 43;
        c.max_promote_lag = 20;
        c.start = start;
        #[cfg(plus_planted_bugs)]
        {
            c.bugs = cfg.bugs;
        }
        let _ = cfg;
        c
    }

    /// Every node in a slot (running or crashed): members, joiners, and removed nodes not yet
    /// stopped.
    fn members(&self) -> Vec<NodeId> {
        self.ids.iter().flatten().copied().collect()
    }

    fn slots(&self) -> usize {
        self.ids.len()
    }

    fn slot(&self, id: NodeId) -> Option<usize> {
        self.slot_of.get(&id).copied()
    }

    fn trace(&mut self, what: impl Hash) {
        what.hash(&mut self.hasher);
    }

    /// Runs the whole scenario: faults and clients for the duration, then heal and check.
    pub fn run(mut self) -> Outcome {
        let end = Timestamp::from_duration(self.cfg.duration);
        // A run short of work goes on under faults for as long again; if that is not enough
        // (faults can leave a cluster rightly unavailable for long: two wiped nodes of five and
        // a partition among the other three), without new faults, still losing messages.
        let faults_until = end + self.cfg.duration;
        while self.now < end
            || (self.operations < self.cfg.min_operations && self.now < faults_until)
        {
            self.step_once(true, true);
        }
        let under_faults = self.operations;
        if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
            eprintln!("after faults at {} ms: {:#?}", self.now.as_millis(), self.node_summaries());
        }
        if self.operations < self.cfg.min_operations {
            self.count("overtime_without_new_faults");
            self.calm();
            let overtime = end + Duration::from_secs(30);
            while self.operations < self.cfg.min_operations && self.now < overtime {
                self.step_once(false, true);
            }
        }
        if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
            eprintln!(
                "after overtime at {} ms: {:#?}",
                self.now.as_millis(),
                self.node_summaries()
            );
        }
        if self.operations < self.cfg.min_operations {
            self.violations.push(format!(
                "only {} operations completed in {} ms",
                self.operations,
                self.now.as_millis()
            ));
        }
        self.heal();
        // Let clients finish what they have in flight (each answers or times out), then the
        // cluster converge: a leader, everyone caught up with every acknowledged write.
        let drain_until = self.now + Duration::from_secs(2);
        while self.now < drain_until && self.clients.iter().any(|c| c.in_flight.is_some()) {
            self.step_once(false, false);
        }
        let settle_until = self.now + Duration::from_secs(6);
        let mut converged = false;
        while self.now < settle_until {
            self.step_once(false, false);
            if self.converged() {
                converged = true;
                break;
            }
        }
        if !converged {
            self.violations.push(format!(
                "replicas did not converge within 6 s after healing: {:?}",
                self.node_summaries()
            ));
        }
        // Nodes outside the final configuration (removed, or never added) are not replicas.
        self.stop_outsiders(true);
        self.watches_done.append(&mut self.watches);
        self.check_final_state();
        self.check_leases();
        let lock_violations = locks::check(&self.holds);
        self.violations.extend(lock_violations);
        if let Some(committed) = self.check_watch_histories() {
            self.check_past_reads(&committed);
            self.check_len_reads(&committed);
        }
        self.check_linearizability();
        let history_jsonl = self
            .history
            .iter()
            .map(|l| serde_json::to_string(l).unwrap() + "\n")
            .collect::<String>();
        Outcome {
            trace_hash: self.hasher.finish(),
            history_lines: self.history.len(),
            acknowledged_writes: self.acked.len(),
            completed_kinds: self.completed,
            leases_expired: self
                .leases
                .values()
                .filter(|t| t.ended.is_some() && t.revoke_sent.is_none())
                .count(),
            leases_kept_alive: self.leases.values().filter(|t| t.acked_sends.len() > 1).count(),
            operations: self.operations,
            operations_under_faults: under_faults,
            lock_holds: locks::believed(&self.holds),
            watch_sessions: self.watches_done.len(),
            watch_events: self.watch_events_checked,
            faults: self.faults,
            violations: self.violations,
            history_jsonl,
        }
    }

    fn node_summaries(&self) -> Vec<String> {
        self.nodes
            .iter()
            .map(|n| match n {
                Some(n) => format!(
                    "{:?} last {} halted {:?} membership {} (committed {})",
                    n,
                    n.last_index(),
                    n.halted(),
                    n.membership(),
                    n.committed_membership()
                ),
                None => "down".to_owned(),
            })
            .collect()
    }

    fn converged(&self) -> bool {
        let Some(leader) = self.nodes.iter().flatten().find(|n| n.is_leader()) else {
            return false;
        };
        // The members in the leader's configuration must all run and agree; a node removed
        // (or never added) is left out.
        let membership = leader.membership();
        let live: Vec<&Node> =
            self.nodes.iter().flatten().filter(|n| membership.contains(n.id())).collect();
        // Every member in a slot runs (one whose node the operator stopped while a stale view
        // left it out holds no replica to compare).
        let placed = membership.members().filter(|&id| self.slot(id).is_some()).count();
        if live.len() != placed {
            return false;
        }
        let report = compare(&live.iter().map(|n| n.inspect()).collect::<Vec<_>>());
        report.identical()
            && live.iter().all(|n| !n.is_recovering() && n.applied_index() == n.commit_index())
            && live.iter().map(|n| n.commit_index()).min()
                == live.iter().map(|n| n.last_index()).max()
    }

    /// Heals the network (no partition, no loss) and restarts every crashed node.
    fn heal(&mut self) {
        self.calm();
        self.cfg.drop = 0.0;
        self.cfg.client_drop = 0.0;
        self.cfg.duplicate = 0.0;
    }

    /// Ends every partition and freeze and restarts every crashed node (memory kept); message
    /// loss and duplication go on.
    fn calm(&mut self) {
        self.blocked.clear();
        self.paused_until = vec![None; self.slots()];
        for i in 0..self.slots() {
            if self.nodes[i].is_none() && self.ids[i].is_some() {
                self.restart(i, false);
            }
        }
    }

    fn restart(&mut self, i: usize, wipe: bool) {
        if wipe {
            self.storages[i] = MemStorage::new();
        }
        // A restarted replica rebuilds its map from storage (snapshot, then log): versions are
        // checked per incarnation. Writes not yet durable died with the old process.
        self.versions_seen[i].clear();
        self.leases_held[i].clear();
        self.disk[i].clear();
        let id = self.ids[i].expect("a restarted slot holds a node");
        let mut members = self.initial.clone();
        if !members.contains(&id) {
            members.push(id);
        }
        let node = Node::new(
            Self::node_config(&self.cfg, id, &members, Start::Rejoin, self.rng.random()),
            &mut self.storages[i].clone(),
            self.now,
        )
        .unwrap();
        self.trace(("restart", i, wipe, self.now.as_millis()));
        if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
            eprintln!("{} restart slot {i} node {id} wiped {wipe}", self.now.as_millis());
        }
        self.count(if wipe { "restart_wiped" } else { "restart_kept" });
        self.nodes[i] = Some(node);
    }

    fn is_paused(&self, i: usize) -> bool {
        self.paused_until[i].is_some_and(|t| self.now < t)
    }

    fn unavailable(&self) -> usize {
        (0..self.slots())
            .filter(|&i| self.ids[i].is_some())
            .filter(|&i| {
                self.nodes[i].as_ref().is_none_or(plus_quorum::Node::is_recovering)
                    || self.is_paused(i)
            })
            .count()
    }

    fn inject_faults(&mut self) {
        self.operate();
        if self.now >= self.next_fault {
            self.next_fault = self.now
                + Duration::from_millis(
                    self.rng
                        .random_range(self.cfg.crash_every_ms / 2..self.cfg.crash_every_ms * 3 / 2),
                );
            let down: Vec<usize> = (0..self.slots())
                .filter(|&i| self.nodes[i].is_none() && self.ids[i].is_some())
                .collect();
            let max_out = (self.voter_count() - 1) / 2;
            if !down.is_empty() && self.rng.random_bool(0.6) {
                let i = down[self.rng.random_range(0..down.len())];
                let wipe = self.rng.random_bool(0.5);
                self.restart(i, wipe);
            } else if self.unavailable() < max_out && self.rng.random_bool(0.3) {
                // Freeze the leader for a while: when it wakes it still believes it leads.
                if let Some(l) = self
                    .nodes
                    .iter()
                    .position(|n| n.as_ref().is_some_and(plus_quorum::Node::is_leader))
                {
                    let until = self.now + Duration::from_millis(self.rng.random_range(300..1500));
                    self.paused_until[l] = Some(until);
                    self.trace(("pause", l, until.as_millis()));
                    self.count("freeze_leader");
                }
            } else if self.unavailable() < max_out {
                // Crash someone, the leader half of the time.
                let leader = self
                    .nodes
                    .iter()
                    .position(|n| n.as_ref().is_some_and(plus_quorum::Node::is_leader));
                let i = match leader {
                    Some(l) if self.rng.random_bool(0.5) => l,
                    _ => self.rng.random_range(0..self.slots()),
                };
                if self.nodes[i].is_some() {
                    let was_leader =
                        self.nodes[i].as_ref().is_some_and(plus_quorum::Node::is_leader);
                    self.nodes[i] = None;
                    self.disk[i].clear();
                    self.trace(("crash", i, self.now.as_millis()));
                    if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
                        eprintln!("{} crash slot {i}", self.now.as_millis());
                    }
                    self.count(if was_leader { "crash_leader" } else { "crash_follower" });
                }
            }
        }
        if self.now >= self.next_partition {
            self.next_partition = self.now
                + Duration::from_millis(self.rng.random_range(
                    self.cfg.partition_every_ms / 2..self.cfg.partition_every_ms * 3 / 2,
                ));
            self.blocked.clear();
            let members = self.members();
            match self.rng.random_range(0..4) {
                0 => self.count("partition_healed"),
                1 => {
                    self.count("partition_isolating_leader");
                    // Isolate the leader (or anyone).
                    let leader = self
                        .nodes
                        .iter()
                        .flatten()
                        .find(|n| n.is_leader())
                        .map(plus_quorum::Node::id)
                        .unwrap_or(members[0]);
                    for &m in &members {
                        if m != leader {
                            self.blocked.insert((leader, m));
                            self.blocked.insert((m, leader));
                        }
                    }
                }
                2 => {
                    // A symmetric split into a majority and a minority.
                    self.count("partition_split");
                    let mut shuffled = members.clone();
                    for i in (1..shuffled.len()).rev() {
                        let j = self.rng.random_range(0..=i);
                        shuffled.swap(i, j);
                    }
                    // Up to half of the nodes: with learners among them, a side can hold half
                    // the nodes and still a minority of the voters.
                    let size = self.rng.random_range(1..=(members.len() / 2).max(1));
                    let minority = &shuffled[..size];
                    for &a in minority {
                        for &b in &members {
                            if !minority.contains(&b) {
                                self.blocked.insert((a, b));
                                self.blocked.insert((b, a));
                            }
                        }
                    }
                }
                _ => {
                    // Asymmetric: one node cannot hear from one other.
                    let a = members[self.rng.random_range(0..members.len())];
                    let b = members[self.rng.random_range(0..members.len())];
                    if a != b {
                        self.count("partition_one_way");
                        self.blocked.insert((a, b));
                    }
                }
            }
            let mut blocked: Vec<_> = self.blocked.iter().copied().collect();
            blocked.sort_unstable();
            self.trace(("partition", blocked, self.now.as_millis()));
        }
    }

    /// Advances to the next event and handles it.
    fn step_once(&mut self, faults: bool, clients: bool) {
        if faults {
            self.inject_faults();
        }
        self.collect_messages();
        // Next event: a message, a node timeout, a client action, a fault.
        let mut next = self.now + Duration::from_millis(10);
        if let Some(Reverse((t, ..))) = self.net.peek() {
            next = next.min(*t);
        }
        if let Some(Reverse((t, ..))) = self.client_net.peek() {
            next = next.min(*t);
        }
        for (i, queue) in self.disk.iter().enumerate() {
            // A frozen node hears of its writes when it wakes (its wake-up is an event itself).
            if let (Some((due, _)), false) = (queue.front(), self.is_paused(i)) {
                next = next.min(*due);
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            match (n, self.paused_until[i]) {
                (Some(_), Some(until)) if self.now < until => next = next.min(until),
                (Some(n), _) => next = next.min(n.poll_timeout()),
                (None, _) => {}
            }
        }
        next = next.max(self.now);
        self.now = next;
        self.complete_writes();
        // Clients first: a request can reach a node that just woke up before its own timers run.
        self.drive_clients(clients);
        self.drive_watches(clients);
        self.deliver_client_messages();
        self.collect_messages();
        // Deliver everything due.
        while let Some(Reverse((t, ..))) = self.net.peek() {
            if *t > self.now {
                break;
            }
            let Reverse((_, _, from, to, MessageBox(msg))) = self.net.pop().unwrap();
            let Some(to_slot) = self.slot(to) else { continue };
            if self.is_paused(to_slot) {
                continue;
            }
            if let Some(node) = self.nodes[to_slot].as_mut() {
                node.step(from, msg, self.now);
            }
        }
        for i in 0..self.slots() {
            if self.is_paused(i) {
                continue;
            }
            if let Some(node) = self.nodes[i].as_mut()
                && node.poll_timeout() <= self.now
            {
                node.tick(self.now);
            }
        }
        self.observe();
        self.collect_outputs();
    }

    /// Makes durable the writes whose time has come, and tells their nodes.
    fn complete_writes(&mut self) {
        for i in 0..self.slots() {
            if self.is_paused(i) {
                continue;
            }
            let Some(node) = self.nodes[i].as_mut() else { continue };
            while self.disk[i].front().is_some_and(|(due, _)| *due <= self.now) {
                let (_, batch) = self.disk[i].pop_front().expect("front exists");
                batch.write_to(&mut self.storages[i]).expect("memory storage does not fail");
                node.persisted(batch.seq, self.now);
            }
        }
    }

    fn collect_messages(&mut self) {
        for i in 0..self.slots() {
            if self.is_paused(i) {
                continue;
            }
            let Some(node) = self.nodes[i].as_mut() else { continue };
            // Writes go to disk in order, each durable some time after it was issued.
            while let Some(batch) = node.poll_persist() {
                let delay = Duration::from_millis(self.rng.random_range(0..=self.cfg.max_fsync_ms));
                let after_previous = self.disk[i].back().map_or(self.now, |(due, _)| *due);
                self.disk[i].push_back(((self.now + delay).max(after_previous), batch));
            }
            let from = node.id();
            let mut out = Vec::new();
            while let Some((to, msg)) = node.poll_message() {
                out.push((to, msg));
            }
            for (to, msg) in out {
                if self.blocked.contains(&(from, to)) {
                    self.count("message_blocked");
                    continue;
                }
                if self.rng.random_bool(self.cfg.drop) {
                    self.count("message_dropped");
                    continue;
                }
                let copies = if self.rng.random_bool(self.cfg.duplicate) {
                    self.count("message_duplicated");
                    2
                } else {
                    1
                };
                for _ in 0..copies {
                    let delay =
                        Duration::from_millis(self.rng.random_range(1..=self.cfg.max_delay_ms));
                    self.seq += 1;
                    self.trace((self.now.as_millis(), from, to, self.seq, msg.term()));
                    self.net.push(Reverse((
                        self.now + delay,
                        self.seq,
                        from,
                        to,
                        MessageBox(msg.clone()),
                    )));
                }
            }
        }
    }

    /// Safety checks on every step: one leader per term, versions never go down, one
    /// membership change at a time.
    fn observe(&mut self) {
        self.check_one_change_at_a_time();
        self.check_commit_quorums();
        for i in 0..self.slots() {
            let Some(node) = self.nodes[i].as_ref() else { continue };
            if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
                let now = format!(
                    "{:?} t{} c{} l{} {} / {}",
                    node.role(),
                    node.term(),
                    node.commit_index(),
                    node.last_index(),
                    node.membership(),
                    node.committed_membership()
                );
                let last = self.debug_last.entry(node.id()).or_default();
                if *last != now {
                    eprintln!("{} node {}: {now}", self.now.as_millis(), node.id());
                    *last = now;
                }
            }
            if node.is_leader() {
                let (term, id) = (node.term(), node.id());
                match self.leaders_by_term.get(&term) {
                    Some(&other) if other != id => {
                        self.violations
                            .push(format!("two leaders in term {term}: {other} and {id}"));
                    }
                    _ => {
                        self.leaders_by_term.insert(term, id);
                    }
                }
            }
            let mut decreased = Vec::new();
            for (key, v) in node.local_state().iter() {
                let seen = self.versions_seen[i].entry(key.clone()).or_insert(0);
                if v.version < *seen {
                    decreased.push(format!(
                        "node {} key {key}: version {} after {}",
                        node.id(),
                        v.version,
                        *seen
                    ));
                }
                *seen = v.version;
            }
            self.violations.extend(decreased);
            // A lease this replica held and holds no more has ended here now.
            let now_held: HashSet<LeaseId> =
                node.local_state().leases().map(|(id, _)| id).collect();
            let mut ended = Vec::new();
            for lease in self.leases_held[i].difference(&now_held) {
                if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
                    eprintln!("{} lease {lease} ended on node {}", self.now.as_millis(), node.id());
                }
                if let Some(track) = self.leases.get_mut(lease)
                    && track.ended.is_none()
                {
                    track.ended = Some(self.now);
                    ended.push(*lease);
                }
            }
            self.leases_held[i] = now_held;
            for lease in ended {
                self.lease_ended(lease);
            }
        }
    }

    /// Each time a leader's commit index moves to `c`, a majority of the voters of the
    /// configuration in force on it (the latest in its log, which it counts with) hold entry
    /// `c` (their logs reach it: a follower acknowledges only what it has made durable). Checked
    /// when every one of those voters runs, unfrozen and not recovering: a node wiped after its
    /// acknowledgement left holds nothing.
    fn check_commit_quorums(&mut self) {
        let mut wrong = Vec::new();
        for node in self.nodes.iter().flatten() {
            let seen = self.commits_seen.insert(node.id(), node.commit_index());
            if !node.is_leader() || seen.is_none_or(|before| before >= node.commit_index()) {
                continue;
            }
            let commit = node.commit_index();
            let config = node.membership();
            let holding: Option<Vec<bool>> = config
                .voters()
                .iter()
                .map(|&v| {
                    let slot = self.slot(v)?;
                    let voter = self.nodes[slot].as_ref()?;
                    (!self.is_paused(slot) && !voter.is_recovering())
                        .then(|| voter.last_index() >= commit)
                })
                .collect();
            let Some(holding) = holding else { continue };
            let held = holding.iter().filter(|&&h| h).count();
            if held < config.quorum() {
                wrong.push(format!(
                    "leader {} committed index {commit} held by {held} of the voters of {config}, short of {}",
                    node.id(),
                    config.quorum()
                ));
            }
        }
        self.violations.extend(wrong);
    }

    /// The newest leader counts with the latest configuration in its log; the configuration
    /// committed in the cluster (at the highest commit index ever seen) must share a voter with
    /// it in any two majorities: one change at a time.
    fn check_one_change_at_a_time(&mut self) {
        // Commit indices are volatile (a restarted node starts again from its snapshot): the
        // committed configuration is the one at the highest commit index ever seen.
        for node in self.nodes.iter().flatten() {
            if node.commit_index() > self.committed_config.0 {
                self.committed_config = (node.commit_index(), node.committed_membership().clone());
            }
        }
        // Only a leader of the highest term any node has reached: a deposed leader that has
        // not heard of it yet (frozen, cut off) may lag further and can commit nothing.
        let live = || self.nodes.iter().flatten();
        let newest = live().map(Node::term).max().unwrap_or(0);
        let Some(leader) = live().find(|n| n.is_leader() && n.term() == newest) else {
            return;
        };
        let (committed, latest) = (&self.committed_config.1, leader.membership());
        if operator::majorities_can_miss(committed, latest) {
            let violation = format!(
                "leader {} counts with {latest} while {committed} is committed: majorities of the two can be disjoint",
                leader.id()
            );
            if !self.violations.contains(&violation) {
                self.violations.push(violation);
            }
        }
    }

    /// Checks a version a client saw against every other sighting: one version of a key is one
    /// write (one value), a value is written once (one version), and a key's creation comes no
    /// later than its current version.
    fn saw(&mut self, key: &str, value: &Bytes, version: u64, created: Option<u64>) {
        if let Some(created) = created {
            self.count("created_checked");
            if let Err(why) = self.incarnations.saw(key, version, created) {
                self.violations.push(format!("{why} (value {value:?})"));
            }
        }
        let by_version =
            self.seen_versions.entry((key.to_owned(), version)).or_insert(value.clone());
        if by_version != value {
            let msg = format!("{key} at version {version} seen as {by_version:?} and as {value:?}");
            self.violations.push(msg);
        }
        let by_value = *self.seen_values.entry((key.to_owned(), value.clone())).or_insert(version);
        if by_value != version {
            self.violations
                .push(format!("{key}={value:?} seen at versions {by_value} and {version}"));
        }
    }

    /// The newest version of `key` a client has seen.
    fn latest_seen_version(&self, key: &str) -> Option<u64> {
        self.seen_versions
            .range((key.to_owned(), 0)..=(key.to_owned(), u64::MAX))
            .next_back()
            .map(|((_, version), _)| *version)
    }

    /// What `key` is compared against: the value a client last saw acknowledged, absence,
    /// presence, or the newest version a client has seen.
    fn random_expect(&mut self, key: &str) -> Expect {
        match self.rng.random_range(0..5) {
            0 => self.expect_last_acked(key),
            1 => Expect::Absent,
            2 => Expect::Exists,
            _ => self.latest_seen_version(key).map_or(Expect::Absent, Expect::Version),
        }
    }

    /// The operation as the model checks it: a compare against a version becomes a compare
    /// against the value the clients saw at that version (one version is one write, which
    /// `saw` checks), since versions are log positions that a sequential model cannot predict.
    fn for_model(&self, op: &Request) -> Request {
        let translate = |key: &str, expect: &Expect| match expect {
            Expect::Version(v) => match self.seen_versions.get(&(key.to_owned(), *v)) {
                Some(value) => Expect::Value(value.clone()),
                None => panic!("the workload compared {key} against version {v}, never seen"),
            },
            other => other.clone(),
        };
        let op = match op {
            Request::Write(WriteOp::CompareAndSet { key, expect, value }) => {
                WriteOp::CompareAndSet {
                    key: key.clone(),
                    expect: translate(key, expect),
                    value: value.clone(),
                }
            }
            Request::Write(WriteOp::CompareAndDelete { key, expect }) => {
                WriteOp::CompareAndDelete { key: key.clone(), expect: translate(key, expect) }
            }
            Request::Write(WriteOp::MultiCompareAndSet(items)) => WriteOp::MultiCompareAndSet(
                items.iter().map(|(k, e, v)| (k.clone(), translate(k, e), v.clone())).collect(),
            ),
            Request::Write(WriteOp::MultiCompareAndDelete(items)) => {
                WriteOp::MultiCompareAndDelete(
                    items.iter().map(|(k, e)| (k.clone(), translate(k, e))).collect(),
                )
            }
            Request::Write(WriteOp::Txn(txn)) => WriteOp::Txn(Txn {
                when: txn
                    .when
                    .iter()
                    .map(|c| plus_quorum::Compare::new(&c.key, translate(&c.key, &c.expect)))
                    .collect(),
                ..txn.clone()
            }),
            other => return other.clone(),
        };
        Request::Write(op)
    }

    fn new_value(&mut self, client: usize) -> Bytes {
        self.write_counter += 1;
        Bytes::from(format!("c{client}-w{}", self.write_counter))
    }

    /// The value last acknowledged for `key`, if any (often still current).
    fn last_acked(&self, key: &str) -> Option<Bytes> {
        self.acked.iter().rev().find(|(k, _, _)| k == key).map(|(_, v, _)| v.clone())
    }

    fn expect_last_acked(&self, key: &str) -> Expect {
        self.last_acked(key).map_or(Expect::Absent, Expect::Value)
    }

    fn random_op(&mut self, client: usize) -> Request {
        let single = ["a", "b", "c", "d", "e", "f"];
        let multi = ["m0", "m1", "m2", "m3"];
        let key = single[self.rng.random_range(0..single.len())].to_owned();
        let mk = multi[self.rng.random_range(0..multi.len())].to_owned();
        // Two to four distinct multi-key keys, in a random order.
        let mut some_multi: Vec<String> = multi.iter().map(|k| (*k).to_owned()).collect();
        for i in (1..some_multi.len()).rev() {
            some_multi.swap(i, self.rng.random_range(0..=i));
        }
        some_multi.truncate(self.rng.random_range(1..=multi.len()));
        // A lease the clients saw granted (often one that has ended since), or a made-up one.
        let lease: LeaseId = {
            // Not a lock holder's lease: another client revoking it would end a hold that the
            // lock check (rightly) expects to last its TTL.
            let known: Vec<LeaseId> =
                self.leases.keys().copied().filter(|l| !self.lock_leases.contains(l)).collect();
            if known.is_empty() || self.rng.random_range(0..20) == 0 {
                self.rng.random_range(1_000_000..1_010_000)
            } else {
                known[known.len() - 1 - self.rng.random_range(0..known.len().min(4))]
            }
        };
        let write = match self.rng.random_range(0..32) {
            0..=2 => WriteOp::Set { value: self.new_value(client), key },
            3 => {
                // Now and then a compaction instead, chosen without a draw of its own so that
                // every other schedule stays what it was: past reads and watches then meet
                // history cut on purpose as well as by its bounds.
                let newest = self.seen_versions.keys().map(|(_, v)| *v).max().unwrap_or(0);
                if newest > 20 && newest % 8 == 0 {
                    WriteOp::Compact { revision: newest - 20 }
                } else {
                    WriteOp::Delete { key }
                }
            }
            4..=6 => return Request::Read(ReadOp::Get(key)),
            7 | 8 => {
                let expect = self.random_expect(&key);
                WriteOp::CompareAndSet { key, expect, value: self.new_value(client) }
            }
            9 | 10 => {
                let expect = self.random_expect(&key);
                WriteOp::CompareAndDelete { key, expect }
            }
            11 => {
                let items = some_multi.iter().map(|k| (k.clone(), self.new_value(client)));
                WriteOp::MultiSet(items.collect::<Vec<_>>())
            }
            12 => {
                let keys = multi.iter().map(|s| (*s).to_owned()).collect();
                return Request::Read(ReadOp::MultiGet(keys));
            }
            13 => WriteOp::MultiDelete(some_multi),
            14 | 15 => WriteOp::MultiCompareAndSet(
                some_multi
                    .into_iter()
                    .map(|k| {
                        let expect = self.random_expect(&k);
                        (k, expect, self.new_value(client))
                    })
                    .collect(),
            ),
            16 => WriteOp::MultiCompareAndDelete(
                some_multi
                    .into_iter()
                    .map(|k| {
                        let expect = self.random_expect(&k);
                        (k, expect)
                    })
                    .collect(),
            ),
            17 => return Request::Read(ReadOp::Get(mk)),
            18 => WriteOp::GrantLease { ttl_ms: self.rng.random_range(200..1_500) },
            19 | 20 => return Request::Read(ReadOp::LeaseKeepAlive(lease)),
            21 => {
                let key = format!("l{}", self.rng.random_range(0..3));
                WriteOp::SetWithLease { key, value: self.new_value(client), lease }
            }
            22 => return Request::Read(ReadOp::LeaseTimeToLive(lease)),
            23 if self.rng.random_range(0..4) == 0 => WriteOp::RevokeLease { lease },
            23 => return Request::Read(ReadOp::Leases),
            24..=26 => {
                // Compare one or two multi-keys, then write, read and range in either branch.
                let compared = &some_multi[..some_multi.len().min(2)];
                let when = compared
                    .iter()
                    .map(|k| plus_quorum::Compare::new(k, self.random_expect(k)))
                    .collect();
                let value = self.new_value(client);
                WriteOp::Txn(Txn {
                    when,
                    then: vec![
                        TxnOp::Set { key: mk.clone(), value, lease: None },
                        TxnOp::Get("m0".into()),
                        TxnOp::Range(Range::prefix("m").limit(2)),
                    ],
                    otherwise: vec![TxnOp::Get(mk.clone()), TxnOp::Delete { key: "m2".into() }],
                })
            }
            27 | 28 => {
                let mut range = match self.rng.random_range(0..4) {
                    0 => Range::prefix("m"),
                    1 => Range::prefix("m").limit(self.rng.random_range(1..4)),
                    2 => Range::between("m1", "m3"),
                    _ => Range::between("m0", "m2").count_only(),
                };
                // A third of them read the past: up to 30 revisions before the newest seen.
                let newest = self.seen_versions.keys().map(|(_, v)| *v).max().unwrap_or(0);
                if newest > 0 && self.rng.random_range(0..3) == 0 {
                    let back = self.rng.random_range(0..30);
                    range.keys = KeyRange::Prefix(String::new());
                    range = range.at_revision(newest.saturating_sub(back).max(1));
                }
                return Request::Read(ReadOp::Range(range));
            }
            29 if self.rng.random_range(0..3) == 0 => return Request::Read(ReadOp::Len),
            // Keys of the multi-key group only, so the group's model can check the answer.
            _ => {
                let pattern = ["m?", "m*", "m*1", "m?*"][self.rng.random_range(0..4)];
                return Request::Read(ReadOp::Keys(pattern.to_owned()));
            }
        };
        Request::Write(write)
    }

    fn record(
        &mut self,
        client: usize,
        thread: u64,
        event: &'static str,
        op: Option<&Request>,
        result: Option<serde_json::Value>,
    ) {
        let op_json = op.map(|op| match op {
            Request::Write(w) => serde_json::to_value(w).unwrap(),
            Request::Read(r) => serde_json::to_value(r).unwrap(),
        });
        let line =
            HistoryLine { t_ms: self.now.as_millis(), client, thread, event, op: op_json, result };
        self.trace((line.t_ms, client, thread, event));
        self.history.push(line);
    }

    fn drive_clients(&mut self, active: bool) {
        for c in 0..self.clients.len() {
            // Give up on requests past their deadline: unknown outcome, the thread retires.
            if let Some(f) = &self.clients[c].in_flight
                && self.now >= f.deadline
            {
                let f = self.clients[c].in_flight.take().unwrap();
                self.count("client_timeout");
                self.outcome_unknown(c, &f);
                continue;
            }
            let client = &self.clients[c];
            if !active
                || client.in_flight.is_some()
                || self.now < client.next_action
                || (client.ops_done >= 60 && self.operations >= self.cfg.min_operations)
            {
                continue;
            }
            // A client talks to the node it believes leads, else to any member: it cannot
            // know which are crashed or frozen (a request to a frozen one waits in its socket).
            let members = self.members();
            let target = client
                .believed_leader
                .unwrap_or_else(|| members[self.rng.random_range(0..members.len())]);
            let (op, purpose) = if self.rng.random_range(0..10) == 0 {
                self.lock_op(c)
            } else {
                (self.random_op(c), Purpose::Plain)
            };
            if purpose == Purpose::Release {
                // The holder stops relying on the lock the moment it lets go.
                if let Phase::Holding { index, .. } = self.clients[c].lock {
                    self.holds[index].released = Some(self.now);
                }
                self.clients[c].lock = Phase::Idle;
            }
            let request_id = self.next_request;
            self.next_request += 1;
            let pause = Duration::from_millis(self.rng.random_range(20..150));
            let client = &mut self.clients[c];
            client.next_action = self.now + pause;
            let thread = client.thread;
            client.in_flight = Some(InFlight {
                thread,
                request_id,
                node: target,
                op: op.clone(),
                purpose,
                sent: self.now,
                deadline: self.now + Duration::from_millis(800),
            });
            client.ops_done += 1;
            self.thread_group.insert(thread, String::new());
            if let Request::Write(WriteOp::RevokeLease { lease }) = &op
                && let Some(track) = self.leases.get_mut(lease)
            {
                track.revoke_sent.get_or_insert(self.now);
            }
            self.invoke(c, thread, &op);
            self.send_to_node(c, request_id, target, op);
        }
    }

    /// The client's next step in the lock protocol.
    fn lock_op(&mut self, c: usize) -> (Request, Purpose) {
        match self.clients[c].lock.clone() {
            Phase::Idle => {
                let ttl_ms = self.rng.random_range(300..1_200);
                (Request::Write(WriteOp::GrantLease { ttl_ms }), Purpose::Grant)
            }
            Phase::Leased { lease, .. } if self.rng.random_bool(0.6) => {
                let value = self.new_value(c);
                let txn = Txn {
                    when: vec![plus_quorum::Compare::new(LOCK_KEY, Expect::Absent)],
                    then: vec![TxnOp::Set { key: LOCK_KEY.to_owned(), value, lease: Some(lease) }],
                    otherwise: vec![TxnOp::Get(LOCK_KEY.to_owned())],
                };
                (Request::Write(WriteOp::Txn(txn)), Purpose::Acquire)
            }
            Phase::Holding { lease, .. } if self.rng.random_bool(0.25) => {
                (Request::Write(WriteOp::RevokeLease { lease }), Purpose::Release)
            }
            Phase::Leased { lease, .. } | Phase::Holding { lease, .. } => {
                (Request::Read(ReadOp::LeaseKeepAlive(lease)), Purpose::KeepAlive)
            }
        }
    }

    /// Moves the client's lock protocol on with an answer.
    fn lock_answered(&mut self, c: usize, f: &InFlight, response: &Response) {
        let acked = (f.sent, self.now);
        if std::env::var_os("PLUS_SIM_DEBUG").is_some() {
            eprintln!(
                "{} client {c} lock {:?} sent {} to node {}: {response:?}",
                self.now.as_millis(),
                f.purpose,
                f.sent.as_millis(),
                f.node
            );
        }
        let phase = std::mem::take(&mut self.clients[c].lock);
        self.clients[c].lock = match (f.purpose, phase, response) {
            (
                Purpose::Grant,
                Phase::Idle,
                Response::Write(WriteResult::LeaseGranted { lease, ttl_ms }),
            ) => {
                self.lock_leases.insert(*lease);
                let hold = Hold {
                    client: c,
                    ttl: Duration::from_millis(*ttl_ms),
                    acks: vec![acked],
                    ..Hold::default()
                };
                Phase::Leased { lease: *lease, hold }
            }
            (
                Purpose::KeepAlive,
                Phase::Leased { lease, mut hold },
                Response::Read(ReadResult::Lease(Some(_))),
            ) => {
                hold.acks.push(acked);
                Phase::Leased { lease, hold }
            }
            (
                Purpose::KeepAlive,
                Phase::Holding { lease, index },
                Response::Read(ReadResult::Lease(Some(_))),
            ) => {
                self.holds[index].acks.push(acked);
                Phase::Holding { lease, index }
            }
            (
                Purpose::Acquire,
                Phase::Leased { lease, mut hold },
                Response::Write(WriteResult::Txn { succeeded: true, results, .. }),
            ) => match results.first() {
                Some(TxnOpResult::Set { version }) => {
                    hold.acquired = Some((self.now, *version));
                    self.holds.push(hold);
                    self.count("lock_acquired");
                    Phase::Holding { lease, index: self.holds.len() - 1 }
                }
                other => {
                    self.violations.push(format!("lock acquisition answered {other:?}"));
                    Phase::Idle
                }
            },
            (
                Purpose::Acquire,
                Phase::Leased { lease, hold },
                Response::Write(WriteResult::Txn { succeeded: false, .. }),
            ) => {
                self.count("lock_busy");
                Phase::Leased { lease, hold }
            }
            // The lease is gone (expired or unknown): start again.
            (Purpose::KeepAlive | Purpose::Acquire, _, _) => Phase::Idle,
            (_, phase, _) => phase,
        };
    }

    /// A new watch: on everything, the multi-key group, the leased keys (deleted when their
    /// lease ends) or an interval; from the start, from now, or from a recent revision.
    fn random_watch(&mut self) -> Session {
        let range = match self.rng.random_range(0..4) {
            0 => KeyRange::Prefix(String::new()),
            1 => KeyRange::Prefix("m".into()),
            2 => KeyRange::Prefix("l".into()),
            _ => KeyRange::Between { start: "b".into(), end: "e".into() },
        };
        let newest = self.nodes.iter().flatten().map(Node::applied_index).max().unwrap_or(0);
        let start = match self.rng.random_range(0..3) {
            0 => StartAt::Revision(1),
            1 => StartAt::Now,
            _ => StartAt::Revision(newest.saturating_sub(self.rng.random_range(0..20)).max(1)),
        };
        let node = self.rng.random_range(0..self.slots());
        let ends = self.now + Duration::from_millis(self.rng.random_range(300..3_000));
        self.count("watch_opened");
        Session::new(range, start, node, self.now, ends)
    }

    /// Each watch polls the node it is connected to, now and then reconnects to another and
    /// resumes, and is cancelled for a new one when its time is up.
    fn drive_watches(&mut self, active: bool) {
        while active && self.watches.len() < 2 {
            let watch = self.random_watch();
            self.watches.push(watch);
        }
        for w in 0..self.watches.len() {
            if self.now < self.watches[w].next_poll {
                continue;
            }
            self.watches[w].next_poll =
                self.now + Duration::from_millis(self.rng.random_range(10..80));
            if active && self.now >= self.watches[w].ends {
                let fresh = self.random_watch();
                let done = std::mem::replace(&mut self.watches[w], fresh);
                self.count("watch_cancelled");
                self.watches_done.push(done);
                continue;
            }
            let node = self.watches[w].node;
            let reachable = self.nodes[node].is_some() && !self.is_paused(node);
            if !reachable || self.rng.random_bool(0.05) {
                self.watches[w].node = self.rng.random_range(0..self.slots());
                self.count("watch_reconnected");
                continue;
            }
            let target = self.nodes[node].as_ref().unwrap();
            let watch = &mut self.watches[w];
            if let StartAt::Now = watch.start
                && watch.from.is_none()
            {
                watch.next = target.applied_index() + 1;
            }
            let request = WatchRequest {
                range: watch.range.clone(),
                from: watch.next,
                max_events: self.rng.random_range(1..20),
            };
            match target.watch(&request) {
                Ok(batch) => {
                    let watch = &mut self.watches[w];
                    watch.from.get_or_insert(request.from);
                    for event in batch.events {
                        watch.events.push((event.revision, event.key, event.change));
                    }
                    watch.current_to = watch.current_to.max(batch.progress);
                    watch.next = watch.next.max(batch.progress + 1);
                }
                Err(ClientError::Compacted { .. }) => {
                    // Behind this node's history: the watch ends, as a client's would.
                    self.count("watch_compacted");
                    let fresh = self.random_watch();
                    let done = std::mem::replace(&mut self.watches[w], fresh);
                    self.watches_done.push(done);
                }
                // A node that has not yet heard of the revision asked for (it lags, or lost
                // its memory): try another.
                Err(ClientError::Invalid(_)) => {
                    self.count("watch_node_behind");
                    self.watches[w].node = self.rng.random_range(0..self.slots());
                }
                Err(e) => self.violations.push(format!("watch {request:?} failed: {e}")),
            }
        }
    }

    fn retire_thread(&mut self, c: usize) {
        self.clients[c].thread = self.next_thread;
        self.next_thread += 1;
    }

    fn invoke(&mut self, c: usize, thread: u64, op: &Request) {
        self.record(c, thread, "invoke", Some(op), None);
        let Some(group) = group_of(op) else { return };
        self.thread_group.insert(thread, group.clone());
        let for_model = ModelOp::Client(self.for_model(op));
        let tester = self.testers.entry(group).or_default();
        if let Err(e) = tester.invoke(thread, for_model) {
            self.violations.push(format!("history bookkeeping: {e}"));
        }
    }

    /// Node answers leave through the client network.
    fn collect_outputs(&mut self) {
        for i in 0..self.slots() {
            if self.is_paused(i) {
                continue;
            }
            let Some(node) = self.nodes[i].as_mut() else { continue };
            let mut outputs = Vec::new();
            while let Some(o) = node.poll_output() {
                outputs.push(o);
            }
            for output in outputs {
                if self.operator_output(&output) {
                    continue;
                }
                let Some(c) = self
                    .clients
                    .iter()
                    .position(|c| c.in_flight.as_ref().is_some_and(|f| f.request_id == output.id))
                else {
                    continue;
                };
                self.send_to_client(c, output.id, Answer::Result(output.result));
            }
        }
    }

    /// A request reaches its node: a crashed node never sees it, a frozen one when it wakes; one
    /// that refuses it at once (not the leader) answers so.
    fn deliver_request(&mut self, client: usize, request_id: u64, node: NodeId, op: Request) {
        let Some(i) = self.slot(node) else {
            self.count("client_request_to_stopped_node");
            return;
        };
        if let Some(until) = self.paused_until[i].filter(|&t| self.now < t) {
            // A frozen process's socket keeps the request: it runs it when it wakes, before its
            // own timers tell it the world moved on (where a stale leader is caught).
            self.count("client_request_to_frozen_node");
            self.seq += 1;
            let msg = ClientMsg::ToNode { client, request_id, node, op };
            self.client_net.push(Reverse((until, self.seq, ClientBox(msg))));
            return;
        }
        let Some(target) = self.nodes[i].as_mut() else {
            self.count("client_request_to_crashed_node");
            return;
        };
        let submitted = match op {
            Request::Write(w) => target.write(request_id, w),
            Request::Read(r) => target.read(request_id, r),
        };
        if let Err(refused) = submitted {
            self.send_to_client(client, request_id, Answer::Refused(refused));
        }
    }

    /// An answer reaches its client; one for a request it gave up on is dropped.
    fn on_answer(&mut self, c: usize, request_id: u64, answer: Answer) {
        if self.clients[c].in_flight.as_ref().is_none_or(|f| f.request_id != request_id) {
            self.count("client_late_answer");
            return;
        }
        let f = self.clients[c].in_flight.take().unwrap();
        let group = self.thread_group.get(&f.thread).cloned().unwrap_or_default();
        match answer {
            Answer::Refused(ClientError::NotLeader { leader }) => {
                // Refused before it could take effect: it leaves the history.
                self.record(c, f.thread, "refused", Some(&f.op), None);
                self.clients[c].ops_done -= 1;
                if let Some(tester) = self.testers.get_mut(&group)
                    && let Err(e) = tester.cancel(f.thread)
                {
                    self.violations.push(format!("history bookkeeping: {e}"));
                }
                self.clients[c].believed_leader = leader;
            }
            Answer::Refused(ClientError::Compacted { .. }) if matches!(&f.op, Request::Read(ReadOp::Range(r)) if r.revision.is_some()) =>
            {
                // This node's history does not reach that far back (it restarted from a
                // snapshot since): a typed refusal, and no effect.
                self.record(c, f.thread, "refused", Some(&f.op), None);
                self.count("past_read_compacted");
            }
            Answer::Refused(e) => {
                self.violations.push(format!("unexpected error submitting {:?}: {e}", f.op));
            }
            Answer::Result(Ok(response)) => self.on_response(c, &f, &group, &response),
            // Leadership lost: the operation may or may not have taken effect.
            Answer::Result(Err(_)) => self.outcome_unknown(c, &f),
        }
    }

    /// The client will never learn what became of `f`: a write stays in the history, free to
    /// take effect at any point after its invocation or never; a read, which changes nothing,
    /// leaves it (each pending operation doubles the orders the checker may have to try).
    /// A grant answered: the model learns the lease it made, and the lease's end (expiry or
    /// revocation, whichever) becomes a system operation open from now until the first replica
    /// applies it.
    fn lease_granted(&mut self, thread: u64, lease: LeaseId) {
        let tester = self.testers.entry(LEASES.to_owned()).or_default();
        let system = SYSTEM_THREADS + lease;
        let mut bookkeeping = tester.ret_as(thread, ModelOp::Granted(lease), ModelRet::Granted);
        bookkeeping = bookkeeping.and_then(|()| tester.invoke(system, ModelOp::Expired(lease)));
        if let Err(e) = bookkeeping {
            self.violations.push(format!("history bookkeeping: {e}"));
        }
        if self.leases.get(&lease).is_some_and(|t| t.ended.is_some()) {
            self.lease_ended(lease);
        }
    }

    /// The first replica applied the end of `lease`: its system operation returns.
    fn lease_ended(&mut self, lease: LeaseId) {
        let Some(tester) = self.testers.get_mut(LEASES) else { return };
        // Only leases whose grant was answered have one (a revoke of another is a no-op).
        let _ = tester.ret(SYSTEM_THREADS + lease, ModelRet::Done);
    }

    fn outcome_unknown(&mut self, c: usize, f: &InFlight) {
        self.record(c, f.thread, "unknown", Some(&f.op), None);
        if matches!(f.purpose, Purpose::Grant | Purpose::Acquire) {
            // It may hold a lease or the lock without knowing: it lets them expire.
            self.clients[c].lock = Phase::Idle;
        }
        // A read changes nothing; a grant's lease id no client will ever learn, so no modelled
        // operation names it.
        if matches!(f.op, Request::Read(_) | Request::Write(WriteOp::GrantLease { .. })) {
            let group = self.thread_group.get(&f.thread).cloned().unwrap_or_default();
            if let Some(tester) = self.testers.get_mut(&group)
                && let Err(e) = tester.cancel(f.thread)
            {
                self.violations.push(format!("history bookkeeping: {e}"));
            }
        }
        self.retire_thread(c);
        self.clients[c].believed_leader = None;
    }

    fn on_response(&mut self, c: usize, f: &InFlight, group: &str, response: &Response) {
        match response {
            Response::Write(WriteResult::LeaseGranted { lease, ttl_ms }) => {
                self.leases.entry(*lease).or_insert(LeaseTrack {
                    ttl: Duration::from_millis(*ttl_ms),
                    acked_sends: vec![f.sent],
                    ..LeaseTrack::default()
                });
            }
            Response::Read(ReadResult::Lease(Some(info)))
                if matches!(f.op, Request::Read(ReadOp::LeaseKeepAlive(_))) =>
            {
                if let Some(track) = self.leases.get_mut(&info.id) {
                    track.acked_sends.push(f.sent);
                }
            }
            // The list of leases is not modelled (it names leases whose grant no client heard
            // of), but one thing it must never do: list a lease whose end a replica had
            // applied (so committed) before the list was asked for.
            Response::Read(ReadResult::Leases(listed)) => {
                let ended_before =
                    self.leases.values().filter(|t| t.ended.is_some_and(|e| e < f.sent));
                if ended_before.count() > 0 {
                    self.count("lease_list_checked_against_ended");
                }
                for lease in listed {
                    if let Some(ended) = self.leases.get(lease).and_then(|t| t.ended)
                        && ended < f.sent
                    {
                        self.violations.push(format!(
                            "lease {lease} listed alive by a read sent at {} ms, after its end was applied at {} ms",
                            f.sent.as_millis(),
                            ended.as_millis()
                        ));
                    }
                }
            }
            _ => {}
        }
        self.completed.insert(f.op.kind());
        self.operations += 1;
        if f.purpose != Purpose::Plain {
            self.lock_answered(c, f, response);
        }
        if let (Request::Read(ReadOp::Range(range)), Response::Read(ReadResult::Range(result))) =
            (&f.op, response)
            && range.revision.is_some()
        {
            self.past_reads.push((range.clone(), result.clone()));
        }
        if let (Request::Read(ReadOp::Len), Response::Read(ReadResult::Len(count))) =
            (&f.op, response)
        {
            // Linearizable: at least what any client had seen before it was sent, at most what
            // a replica had applied when it was answered.
            let newest_before = self.newest_seen.range(..f.sent).next_back().map_or(0, |(_, v)| *v);
            let applied = self
                .nodes
                .iter()
                .flatten()
                .map(plus_quorum::Node::applied_index)
                .max()
                .unwrap_or(0);
            self.len_reads.push((newest_before, applied, *count));
        }
        // Leased keys may vanish with their lease; the lease rule checks them.
        let leased = f.op.is_lease_op();
        for (key, value, version, created) in versions_in(&f.op, response) {
            let newest = self.newest_seen.last_key_value().map_or(0, |(_, v)| *v);
            if version > newest {
                self.newest_seen.insert(self.now, version);
            }
            self.saw(&key, &value, version, created);
            if created.is_none() && !leased {
                // An acknowledged write (a transaction's included).
                self.acked.push((key, value, version));
            }
        }
        let json = match response {
            Response::Write(w) => serde_json::to_value(w).unwrap(),
            Response::Read(r) => serde_json::to_value(r).unwrap(),
            other => unreachable!("clients only read and write: {other:?}"),
        };
        let ret = ModelRet::observed(response);
        let event = if matches!(ret, ModelRet::CompareFailed { .. }) { "fail" } else { "ok" };
        self.record(c, f.thread, event, Some(&f.op), Some(json));
        if let Response::Write(WriteResult::LeaseGranted { lease, .. }) = response {
            self.lease_granted(f.thread, *lease);
            return;
        }
        if let Some(tester) = self.testers.get_mut(group)
            && let Err(e) = tester.ret(f.thread, ret)
        {
            self.violations.push(format!("history bookkeeping: {e}"));
        }
    }

    fn send_to_node(&mut self, client: usize, request_id: u64, node: NodeId, op: Request) {
        if self.rng.random_bool(self.cfg.client_drop) {
            self.count("client_request_lost");
            return;
        }
        let msg = ClientMsg::ToNode { client, request_id, node, op };
        self.send_client_msg(msg);
    }

    fn send_to_client(&mut self, client: usize, request_id: u64, answer: Answer) {
        if self.rng.random_bool(self.cfg.client_drop) {
            self.count("client_answer_lost");
            return;
        }
        self.send_client_msg(ClientMsg::ToClient { client, request_id, answer });
    }

    fn send_client_msg(&mut self, msg: ClientMsg) {
        let delay = Duration::from_millis(self.rng.random_range(1..=self.cfg.max_delay_ms));
        self.seq += 1;
        self.trace(("client", self.now.as_millis(), self.seq));
        self.client_net.push(Reverse((self.now + delay, self.seq, ClientBox(msg))));
    }

    /// Delivers the client traffic that is due.
    fn deliver_client_messages(&mut self) {
        while self.client_net.peek().is_some_and(|Reverse((t, ..))| *t <= self.now) {
            let Reverse((_, _, ClientBox(msg))) = self.client_net.pop().unwrap();
            match msg {
                ClientMsg::ToNode { client, request_id, node, op } => {
                    self.deliver_request(client, request_id, node, op);
                }
                ClientMsg::ToClient { client, request_id, answer } => {
                    self.on_answer(client, request_id, answer);
                }
            }
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.faults.entry(what).or_default() += 1;
    }

    /// Watches: every replica's history says the same about every revision it still holds,
    /// and shows every acknowledged write as a change at its version with its value.
    fn check_watch_histories(&mut self) -> Option<Committed> {
        let mut histories: Vec<(NodeId, LogIndex, ChangesByRevision, u64)> = Vec::new();
        for node in self.nodes.iter().flatten() {
            let mut request = WatchRequest {
                range: KeyRange::Prefix(String::new()),
                from: 1,
                max_events: 1 << 20,
            };
            let batch = match node.watch(&request) {
                Err(ClientError::Compacted { oldest, .. }) => {
                    request.from = oldest;
                    node.watch(&request)
                }
                other => other,
            };
            let batch = match batch {
                Ok(batch) => batch,
                Err(e) => {
                    self.violations.push(format!("node {} cannot be watched: {e}", node.id()));
                    continue;
                }
            };
            let mut by_revision: BTreeMap<u64, Vec<(String, Change)>> = BTreeMap::new();
            for event in batch.events {
                by_revision.entry(event.revision).or_default().push((event.key, event.change));
            }
            histories.push((node.id(), request.from, by_revision, batch.progress));
        }
        // Where both histories are complete (from the later oldest revision to the earlier
        // applied index), they must say the same about every revision, including "nothing".
        let none = Vec::new();
        for window in histories.windows(2) {
            let ((a, oldest_a, ha, applied_a), (b, oldest_b, hb, applied_b)) =
                (&window[0], &window[1]);
            let (from, to) = ((*oldest_a).max(*oldest_b), (*applied_a).min(*applied_b));
            for revision in from..=to {
                let (ca, cb) =
                    (ha.get(&revision).unwrap_or(&none), hb.get(&revision).unwrap_or(&none));
                if ca != cb {
                    self.violations.push(format!(
                        "watch histories differ at revision {revision}: node {a} {ca:?}, node {b} {cb:?}"
                    ));
                }
            }
        }
        for (node, oldest, history, _) in &histories {
            for (key, value, version) in &self.acked {
                if *version < *oldest {
                    continue;
                }
                let shown = history.get(version).is_some_and(|changes| {
                    changes.iter().any(|(k, c)| {
                        k == key && matches!(c, Change::Put(v) if v.value == *value && v.version == *version)
                    })
                });
                if !shown {
                    self.violations.push(format!(
                        "node {node}'s watch history lacks the acknowledged write {key}={value:?} at {version}"
                    ));
                }
            }
        }
        // The committed history, as the replicas agree on it, against every watch session.
        let oldest = histories.iter().map(|h| h.1).min()?;
        let newest = histories.iter().map(|h| h.3).max().unwrap_or(0);
        let mut changes = BTreeMap::new();
        for (_, _, history, _) in histories {
            for (revision, changed) in history {
                changes.entry(revision).or_insert(changed);
            }
        }
        let committed = Committed { oldest, newest, changes };
        for session in &self.watches_done {
            let (wrong, checked) = committed.check(session);
            self.watch_events_checked += checked;
            self.violations.extend(wrong);
        }
        Some(committed)
    }

    /// Every range read at a past revision must equal the committed history replayed up to
    /// that revision (checkable when some replica still holds the history from revision 1).
    fn check_past_reads(&mut self, committed: &Committed) {
        if committed.oldest > 1 {
            self.count("past_read_unverifiable");
            return;
        }
        for (range, result) in std::mem::take(&mut self.past_reads) {
            let at = range.revision.expect("only past reads are kept");
            let inside: Vec<(String, plus_quorum::Versioned)> = committed
                .state_at(at)
                .into_iter()
                .filter(|(key, _)| range.keys.contains(key))
                .collect();
            let limit = if range.count_only { 0 } else { range.limit.unwrap_or(usize::MAX) };
            let count = inside.len();
            let kvs: Vec<_> = inside.into_iter().take(limit).collect();
            let more = !range.count_only && count > kvs.len();
            let expected = RangeResult { kvs, count, more };
            if expected != result {
                self.violations.push(format!(
                    "range {range:?} answered {result:?}, but the committed history says {expected:?}"
                ));
            }
            self.count("past_read_checked");
        }
    }

    /// Every count of the keys is the number of keys of the committed state at a revision
    /// between the newest any client had seen before it was sent and the most any replica had
    /// applied when it was answered.
    fn check_len_reads(&mut self, committed: &Committed) {
        if committed.oldest > 1 {
            return;
        }
        for (from, to, count) in std::mem::take(&mut self.len_reads) {
            let counts: Vec<usize> =
                (from.max(1)..=to.max(from)).map(|at| committed.state_at(at).len()).collect();
            if !counts.contains(&count) {
                self.violations.push(format!(
                    "a count of the keys answered {count}, but between revisions {from} and {to} the committed history held {counts:?}"
                ));
            }
            self.count("len_checked");
        }
    }

    /// The lease rule: no lease ended (on any replica) earlier than its TTL after the send time
    /// of a grant or keep-alive the clients saw acknowledged, unless a client had asked to
    /// revoke it.
    fn check_leases(&mut self) {
        for (lease, track) in &self.leases {
            let Some(ended) = track.ended else { continue };
            if track.revoke_sent.is_some_and(|r| r <= ended) {
                continue;
            }
            if let Some(sent) =
                track.acked_sends.iter().copied().filter(|&s| ended < s + track.ttl).max()
            {
                self.violations.push(format!(
                    "lease {lease} (ttl {:?}) ended at {} ms, less than its TTL after a keep-alive sent at {} ms was acknowledged",
                    track.ttl,
                    ended.as_millis(),
                    sent.as_millis()
                ));
            }
        }
    }

    /// No acknowledged write lost: every replica has applied past it, and holds it or something
    /// newer for its key.
    fn check_final_state(&mut self) {
        for node in self.nodes.iter().flatten() {
            for (key, value, version) in &self.acked {
                if node.applied_index() < *version {
                    self.violations.push(format!(
                        "node {} applied {} < acknowledged write {key}={value:?} at {version}",
                        node.id(),
                        node.applied_index()
                    ));
                    continue;
                }
                if let Some(current) = node.local_get(key)
                    && current.version < *version
                {
                    self.violations.push(format!(
                        "node {}: {key} at version {} older than acknowledged {version}",
                        node.id(),
                        current.version
                    ));
                }
            }
        }
    }

    fn check_linearizability(&mut self) {
        // A write of values no client ever saw: one of unknown outcome may be left for last.
        let seen = &self.seen_values;
        let unseen = |op: &ModelOp| {
            let written: Vec<(&String, &Bytes)> = match op {
                ModelOp::Client(Request::Write(w)) => match w {
                    WriteOp::Set { key, value } | WriteOp::CompareAndSet { key, value, .. } => {
                        vec![(key, value)]
                    }
                    WriteOp::MultiSet(items) => items.iter().map(|(k, v)| (k, v)).collect(),
                    WriteOp::MultiCompareAndSet(items) => {
                        items.iter().map(|(k, _, v)| (k, v)).collect()
                    }
                    _ => return false,
                },
                _ => return false,
            };
            written.iter().all(|(k, v)| !seen.contains_key(&((*k).clone(), (*v).clone())))
        };
        for (group, history) in &self.testers {
            match history.check_lazily(&MapSpec::default(), LINEARIZABILITY_BUDGET, unseen) {
                Verdict::Linearizable => {}
                Verdict::NotLinearizable => self.violations.push(format!(
                    "history of `{group}` is not linearizable ({} operations)",
                    history.len()
                )),
                Verdict::Undecided { explored } => self.violations.push(format!(
                    "history of `{group}` undecided after {LINEARIZABILITY_BUDGET:?} ({} operations, {explored} steps): counted as a failure",
                    history.len()
                )),
            }
        }
    }
}

/// Seeds to run: `PLUS_SIM_SEED=S` replays one; `PLUS_SIM_SEEDS=N` runs N (default `default`).
pub fn seeds(default: u64) -> Vec<u64> {
    if let Ok(seed) = std::env::var("PLUS_SIM_SEED") {
        return vec![seed.parse().expect("PLUS_SIM_SEED must be a number")];
    }
    let n = std::env::var("PLUS_SIM_SEEDS").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    (0..n).collect()
}

/// Runs one seed; writes its history when `PLUS_SIM_HISTORY_DIR` is set.
pub fn run_seed(cfg: SimConfig) -> Outcome {
    let (nodes, seed) = (cfg.nodes, cfg.seed);
    let outcome = Sim::new(cfg).run();
    if let Ok(dir) = std::env::var("PLUS_SIM_HISTORY_DIR") {
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(format!("{dir}/nodes{nodes}-seed{seed}.jsonl"), &outcome.history_jsonl)
            .unwrap();
    }
    outcome
}
