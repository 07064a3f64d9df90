//! The store's vocabulary: keys, values, versions, operations and their results.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::lease::{LeaseId, LeaseInfo};
use crate::txn::{Range, RangeResult, Txn, TxnOpResult};

/// A node of the cluster.
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A log position (from 1; 0 means "none").
pub type LogIndex = u64;

/// Identifies a client request so its result can be matched; chosen by the host.
pub type RequestId = u64;

/// A value with the version of the write that produced it. Versions only grow: a key's version is
/// the log index of the last write to it, so a key deleted and set again gets a higher version.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Versioned {
    /// The value.
    pub value: Bytes,
    /// The version.
    pub version: u64,
    /// The version at which the key was created (it stays while the key is set again, and a
    /// key deleted and created again gets a new one): what locks and elections order by.
    #[serde(default)]
    pub created: u64,
    /// The lease whose end deletes the key, if any.
    #[serde(default)]
    pub lease: Option<LeaseId>,
}

/// What a compare-and-set or compare-and-delete expects of a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Expect {
    /// The key exists with exactly this version.
    Version(u64),
    /// The key exists with exactly this value.
    Value(Bytes),
    /// The key does not exist.
    Absent,
    /// The key exists, whatever its value.
    Exists,
    /// The key exists and is attached to this lease (`Some`), or exists attached to none.
    Lease(Option<LeaseId>),
}

/// A write, applied atomically when committed.
///
/// The key writes, from [`WriteOp::Set`] to [`WriteOp::MultiCompareAndDelete`], are
/// conveniences over [`WriteOp::Txn`]: each is applied as the transaction of its compares then
/// its writes, and answers [`WriteResult::Applied`] or [`WriteResult::CompareFailed`] instead of
/// a transaction's result.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

/// The longest key accepted, in bytes: keys name releases, locks and hosts, and a key a client
/// sends by mistake (a whole file) must be refused at once, not replicated.
pub const MAX_KEY_LEN: usize = 4096;

pub(crate) fn check_key(key: &str) -> Result<(), ClientError> {
    if key.is_empty() {
        return Err(ClientError::Invalid("a key must not be empty".to_owned()));
    }
    if key.len() > MAX_KEY_LEN {
        return Err(ClientError::Invalid(format!(
            "a key of {} bytes is longer than the limit of {MAX_KEY_LEN}",
            key.len()
        )));
    }
    Ok(())
}

fn check_keys<'k>(keys: impl ExactSizeIterator<Item = &'k String>) -> Result<(), ClientError> {
    if keys.len() == 0 {
        return Err(ClientError::Invalid("a multi-key operation needs at least one key".into()));
    }
    keys.into_iter().try_for_each(|k| check_key(k))
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

/// Why a client request failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum ClientError {
    /// This node is not the leader; retry on the hinted leader if any. Nothing was done.
    #[error("not the leader (leader: {leader:?})")]
    NotLeader {
        /// The leader this node knows of.
        leader: Option<NodeId>,
    },
    /// The leader lost leadership before the write committed: it may or may not apply later.
    #[error("leadership lost before commit: the write may or may not have applied")]
    Unknown,
    /// The request was malformed (an empty multi-operation, a key too long, ...).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// A watch or a range at a past revision asked for more history than this node keeps: a
    /// watcher starts again from a fresh read (a range) and watches from its revision, or from
    /// `oldest`.
    #[error("revision {requested} is compacted: the oldest still kept is {oldest}")]
    Compacted {
        /// The revision asked for.
        requested: LogIndex,
        /// The oldest revision still available: to watch from (its changes are all kept), or
        /// to read a range at.
        oldest: LogIndex,
    },
    /// A membership change or leadership transfer was refused; nothing was changed.
    #[error(transparent)]
    Membership(#[from] crate::membership::MembershipError),
    /// The store holds more than its quota of keys and values
    /// ([`Config::quota_bytes`](crate::Config::quota_bytes)): writes that add data are refused
    /// until deletes bring it under (etcd's NOSPACE alarm). Nothing was done.
    #[error("the store is over its quota ({used} bytes of {quota}): delete keys to write again")]
    NoSpace {
        /// Bytes of keys and values held.
        used: u64,
        /// The quota.
        quota: u64,
    },
    /// The request is past one of the cluster's limits
    /// ([`Config::max_request_bytes`](crate::Config::max_request_bytes),
    /// [`Config::max_txn_ops`](crate::Config::max_txn_ops)); nothing was done. Split it.
    #[error("{what} of {size} is above the cluster's limit of {limit}")]
    TooLarge {
        /// What was measured: `request bytes`, `operations`.
        what: String,
        /// The request's figure.
        size: u64,
        /// The limit.
        limit: u64,
    },
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
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(f, "version {v}"),
            Self::Value(v) => write!(f, "value {v:?}"),
            Self::Absent => f.write_str("absent"),
            Self::Exists => f.write_str("present"),
            Self::Lease(Some(lease)) => write!(f, "attached to lease {lease}"),
            Self::Lease(None) => f.write_str("present without a lease"),
        }
    }
}
