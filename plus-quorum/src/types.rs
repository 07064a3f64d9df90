//! The store's vocabulary: keys, values, versions, operations and their results.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

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
}

/// A write, applied atomically when committed.
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
}

/// The longest key accepted, in bytes: keys name releases, locks and hosts, and a key a client
/// sends by mistake (a whole file) must be refused at once, not replicated.
pub const MAX_KEY_LEN: usize = 4096;

fn check_key(key: &str) -> Result<(), ClientError> {
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
}

impl fmt::Display for Expect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Version(v) => write!(f, "version {v}"),
            Self::Value(v) => write!(f, "value {v:?}"),
            Self::Absent => f.write_str("absent"),
        }
    }
}
