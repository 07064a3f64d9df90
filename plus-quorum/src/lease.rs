//! Leases: time-limited grants that keys can be attached to. When a lease ends (revoked, or not
//! kept alive within its TTL) all its keys are deleted in one log entry.
//!
//! Only the leader decides expiry, from the time its host passes in, and replicates the decision
//! as an entry; no replica expires anything on its own clock. A new leader gives every lease a
//! full TTL again, as etcd does, so a failover can delay an expiry but never bring it forward.
//! The guarantee: a lease's keys are never deleted earlier than its TTL after the holder sent
//! the last keep-alive it saw acknowledged (or the grant, if it never kept it alive). A
//! keep-alive is acknowledged only after a quorum confirms the leader still leads, so a deposed
//! leader cannot acknowledge one that its successor does not honour.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// A lease: the log index of the grant that created it.
pub type LeaseId = u64;

/// A lease as a client sees it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease.
    pub id: LeaseId,
    /// Its TTL, in milliseconds.
    pub ttl_ms: u64,
    /// The leader's estimate of the time left before it ends, in milliseconds.
    pub remaining_ms: u64,
    /// The keys attached to it, sorted.
    pub keys: Vec<String>,
}

/// One lease in the replicated state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LeaseState {
    pub(crate) ttl_ms: u64,
    pub(crate) keys: BTreeSet<String>,
}

/// Every live lease, replicated: which exist, their TTLs and their keys. Deadlines are not
/// here: only the leader keeps them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Leases {
    pub(crate) map: BTreeMap<LeaseId, LeaseState>,
}
