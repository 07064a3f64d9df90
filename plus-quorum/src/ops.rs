//! Operations and their results: the writes and reads a client asks for, and what it gets.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client_error::ClientError;
use crate::ids::RequestId;
use crate::lease::{LeaseId, LeaseInfo};
use crate::txn::{Range, RangeResult, Txn, TxnOpResult};
use crate::types::{Expect, MAX_KEY_LEN, Versioned, check_key, check_keys};

/// A write, applied atomically when committed.
///
/// The key writes, from [`WriteOp::Set`] to [`WriteOp::MultiCompareAndDelete`], are
/// conveniences over [`WriteOp::Txn`]: each is applied as the transaction of its compares then
/// its writes, and answers [`WriteResult::Applied`] or [`WriteResult::CompareFailed`] instead of
/// a transaction's result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WriteOp {
    /// Set a key.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
    },
    /// Delete a key (a no-op if absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Set a key if it matches.
    CompareAndSet {
        /// The key.
        key: String,
        /// What it must be now.
        expect: Expect,
        /// The new value.
        value: Bytes,
    },
    /// Delete a key if it matches.
    CompareAndDelete {
        /// The key.
        key: String,
        /// What it must be now.
        expect: Expect,
    },
    /// Set several keys, all or nothing.
    MultiSet(Vec<(String, Bytes)>),
    /// Delete several keys, all or nothing.
    MultiDelete(Vec<String>),
    /// Set several keys if every one matches; otherwise nothing is applied.
    MultiCompareAndSet(Vec<(String, Expect, Bytes)>),
    /// Delete several keys if every one matches; otherwise nothing is applied.
    MultiCompareAndDelete(Vec<(String, Expect)>),
    /// Set a key attached to a lease: the lease's end deletes it.
    SetWithLease {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// The lease.
        lease: LeaseId,
    },
    /// Grant a lease of `ttl_ms` milliseconds (at least 1, at most the cluster's
    /// [`Config::max_lease_ttl`](crate::Config::max_lease_ttl)).
    GrantLease {
        /// Its time to live without a keep-alive, in milliseconds.
        ttl_ms: u64,
    },
    /// End a lease now, deleting its keys.
    RevokeLease {
        /// The lease.
        lease: LeaseId,
    },
    /// A transaction: compare, then one branch or the other, all at once.
    Txn(Txn),
    /// Forget every change before `revision` on every replica (etcd's compaction): watches
    /// from `revision` on, and reads at `revision - 1` on, still work; older ones get
    /// [`ClientError::Compacted`]. The state is untouched. The history is bounded anyway
    /// ([`Config::watch_history`](crate::Config::watch_history)); this frees it sooner. Admins
    /// and nodes only on a secured endpoint.
    Compact {
        /// The oldest revision whose changes are kept; at most the latest revision.
        revision: u64,
    },
}

impl WriteOp {
    /// Checks the request before anything is done with it.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an empty multi-key operation, or a key that is empty or
    /// longer than [`MAX_KEY_LEN`].
    pub fn validate(&self) -> Result<(), ClientError> {
        match self {
            Self::Set { key, .. }
            | Self::Delete { key }
            | Self::CompareAndSet { key, .. }
            | Self::CompareAndDelete { key, .. } => check_key(key),
            Self::MultiSet(v) => check_keys(v.iter().map(|(k, _)| k)),
            Self::MultiDelete(v) => check_keys(v.iter()),
            Self::MultiCompareAndSet(v) => check_keys(v.iter().map(|(k, ..)| k)),
            Self::MultiCompareAndDelete(v) => check_keys(v.iter().map(|(k, _)| k)),
            Self::SetWithLease { key, .. } => check_key(key),
            Self::GrantLease { ttl_ms: 0 } => {
                Err(ClientError::Invalid("a lease's TTL must be at least 1 ms".to_owned()))
            }
            Self::GrantLease { .. } | Self::RevokeLease { .. } => Ok(()),
            Self::Txn(txn) => txn.validate(),
            Self::Compact { revision: 0 } => {
                Err(ClientError::Invalid("revisions start at 1: nothing to compact".to_owned()))
            }
            Self::Compact { .. } => Ok(()),
        }
    }
}

impl ReadOp {
    /// Checks the request before anything is done with it.
    ///
    /// # Errors
    /// [`ClientError::Invalid`] for an empty multi-get, or a key or pattern longer than
    /// [`MAX_KEY_LEN`] (a `Get` of an empty key too).
    pub fn validate(&self) -> Result<(), ClientError> {
        match self {
            Self::Get(key) => check_key(key),
            Self::MultiGet(keys) => check_keys(keys.iter()),
            Self::Keys(pattern) if pattern.len() > MAX_KEY_LEN => check_key(pattern),
            Self::Keys(_) | Self::Len => Ok(()),
            Self::Range(range) => range.validate(),
            Self::LeaseKeepAlive(_) | Self::LeaseTimeToLive(_) | Self::Leases => Ok(()),
        }
    }
}

/// A linearizable read.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReadOp {
    /// One key.
    Get(String),
    /// Several keys, from one consistent state.
    MultiGet(Vec<String>),
    /// Keys matching a glob (`*` any run, `?` one character), sorted.
    Keys(String),
    /// Number of keys.
    Len,
    /// Keys of a prefix or an interval, with their values or counted.
    Range(Range),
    /// Keep a lease alive: its TTL starts again once the leader has confirmed, with a quorum,
    /// that it still leads. Answers [`ReadResult::Lease`] (`None`: the lease has ended).
    LeaseKeepAlive(LeaseId),
    /// A lease's TTL, the time it has left and its keys ([`ReadResult::Lease`]).
    LeaseTimeToLive(LeaseId),
    /// Every live lease ([`ReadResult::Leases`]).
    Leases,
}

/// What a committed write did.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WriteResult {
    /// Applied; written keys now have this version (the entry's log index).
    Applied {
        /// The new version of every key written.
        version: u64,
    },
    /// A comparison failed; nothing was applied.
    CompareFailed {
        /// The first key whose comparison failed.
        key: String,
        /// Its current state.
        current: Option<Versioned>,
    },
    /// [`WriteOp::GrantLease`]: the new lease.
    LeaseGranted {
        /// The lease (the grant's log index).
        lease: LeaseId,
        /// Its TTL, in milliseconds.
        ttl_ms: u64,
    },
    /// The write named a lease that does not exist (never granted, revoked or expired);
    /// nothing was applied.
    NoSuchLease {
        /// The lease.
        lease: LeaseId,
    },
    /// [`WriteOp::Txn`]: which branch ran and what each of its operations did.
    Txn {
        /// Whether every comparison held (`then` ran) or not (`otherwise` ran).
        succeeded: bool,
        /// The version of every key the branch wrote (the entry's log index).
        version: u64,
        /// One result per operation of the branch that ran, in order.
        results: Vec<TxnOpResult>,
    },
}

/// What a read found.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ReadResult {
    /// [`ReadOp::Get`].
    Value(Option<Versioned>),
    /// [`ReadOp::MultiGet`], in request order.
    Values(Vec<Option<Versioned>>),
    /// [`ReadOp::Keys`].
    Keys(Vec<String>),
    /// [`ReadOp::Len`].
    Len(usize),
    /// [`ReadOp::Range`].
    Range(RangeResult),
    /// [`ReadOp::LeaseKeepAlive`] and [`ReadOp::LeaseTimeToLive`]: the lease, or `None` when it
    /// does not exist (any more).
    Lease(Option<LeaseInfo>),
    /// [`ReadOp::Leases`], sorted.
    Leases(Vec<LeaseId>),
}

/// A request's result, delivered by [`Node::poll_output`](crate::Node::poll_output).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientOutput {
    /// The request.
    pub id: RequestId,
    /// Its result.
    pub result: Result<Response, ClientError>,
}

/// A successful request's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// A write's result.
    Write(WriteResult),
    /// A read's result.
    Read(ReadResult),
    /// A membership change or leadership transfer, done.
    Cluster(crate::membership::ClusterChanged),
    /// [`Node::backup`](crate::Node::backup): the whole state at one committed revision.
    Backup(Box<crate::log::Snapshot>),
}
