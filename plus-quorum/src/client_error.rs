//! Why a client request failed.

use serde::{Deserialize, Serialize};

use crate::ids::{LogIndex, NodeId};

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
