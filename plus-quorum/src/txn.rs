//! Transactions in the shape of etcd's (compare, then, else) and range reads.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client_error::ClientError;
use crate::ids::LogIndex;
use crate::lease::LeaseId;
use crate::types::{Expect, Versioned, check_key};

/// Keys by prefix or by a half-open interval, in key order.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyRange {
    /// Every key that starts with this (every key, for the empty prefix).
    Prefix(String),
    /// Every key `k` with `start <= k < end`.
    Between {
        /// The first key included.
        start: String,
        /// The first key past the range.
        end: String,
    },
}

impl KeyRange {
    /// Whether the range's keys are valid keys and its start comes before its end.
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        match self {
            KeyRange::Prefix(prefix) if !prefix.is_empty() => check_key(prefix),
            KeyRange::Prefix(_) => Ok(()),
            KeyRange::Between { start, end } => {
                check_key(start)?;
                check_key(end)?;
                if start >= end {
                    return Err(ClientError::Invalid(format!(
                        "a range's start `{start}` must come before its end `{end}`"
                    )));
                }
                Ok(())
            }
        }
    }

    /// Whether `key` is in the range.
    #[must_use]
    pub fn contains(&self, key: &str) -> bool {
        match self {
            Self::Prefix(prefix) => key.starts_with(prefix.as_str()),
            Self::Between { start, end } => start.as_str() <= key && key < end.as_str(),
        }
    }
}

/// A range read: the keys of a [`KeyRange`] with their values (or only their count), at most
/// `limit` of them, now or as they were at a past revision.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Range {
    /// Which keys.
    pub keys: KeyRange,
    /// At most this many keys in the answer (`None`: all); must not be 0.
    pub limit: Option<usize>,
    /// Only count the keys.
    pub count_only: bool,
    /// Read the keys as they were just after the entry at this revision (log index) was
    /// applied: one consistent view, as of that moment, of every key in the range. `None`
    /// reads the present.
    ///
    /// History reaches back as far as the node's watch history does
    /// ([`Config::watch_history`](crate::Config::watch_history), the last 10,000 changes by
    /// default, and no further back than the snapshot a restarted node started from); older
    /// revisions get [`ClientError::Compacted`], future ones [`ClientError::Invalid`]. Not
    /// allowed inside a transaction, which reads the state it writes.
    #[serde(default)]
    pub revision: Option<LogIndex>,
}

impl Range {
    /// Every key with `prefix`, with values, no limit.
    #[must_use]
    pub fn prefix(prefix: impl Into<String>) -> Self {
        Self {
            keys: KeyRange::Prefix(prefix.into()),
            limit: None,
            count_only: false,
            revision: None,
        }
    }

    /// Every key in `[start, end)`, with values, no limit.
    #[must_use]
    pub fn between(start: impl Into<String>, end: impl Into<String>) -> Self {
        Self {
            keys: KeyRange::Between { start: start.into(), end: end.into() },
            limit: None,
            count_only: false,
            revision: None,
        }
    }

    /// The same range with at most `limit` keys in the answer.
    #[must_use]
    pub fn limit(self, limit: usize) -> Self {
        Self { limit: Some(limit), ..self }
    }

    /// The same range, counted only.
    #[must_use]
    pub fn count_only(self) -> Self {
        Self { count_only: true, ..self }
    }

    /// The same range as it was at `revision` (see [`Range::revision`]).
    #[must_use]
    pub fn at_revision(self, revision: LogIndex) -> Self {
        Self { revision: Some(revision), ..self }
    }

    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        if self.limit == Some(0) {
            return Err(ClientError::Invalid("a range limit must be at least 1".to_owned()));
        }
        if self.revision == Some(0) {
            return Err(ClientError::Invalid(
                "revisions start at 1 (the first log entry); 0 names none".to_owned(),
            ));
        }
        self.keys.validate()
    }
}

/// What a range read found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RangeResult {
    /// The keys with their values, in key order (empty when counting only).
    pub kvs: Vec<(String, Versioned)>,
    /// How many keys the range holds in all (beyond the limit too).
    pub count: usize,
    /// Whether the limit left keys out.
    pub more: bool,
}

/// One comparison of a transaction: `key` must be as `expect` says.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Compare {
    /// The key.
    pub key: String,
    /// What it must be.
    pub expect: Expect,
}

impl Compare {
    /// `key` must be as `expect` says.
    #[must_use]
    pub fn new(key: impl Into<String>, expect: Expect) -> Self {
        Self { key: key.into(), expect }
    }
}

/// One operation of a transaction's branch.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TxnOp {
    /// Set a key, attached to a lease or to none (which detaches it from any).
    Set {
        /// The key.
        key: String,
        /// The value.
        value: Bytes,
        /// The lease whose end deletes the key.
        lease: Option<LeaseId>,
    },
    /// Delete a key (nothing if absent).
    Delete {
        /// The key.
        key: String,
    },
    /// Read a key, as the transaction sees it at this point.
    Get(String),
    /// Read a range, as the transaction sees it at this point: at most
    /// [`Config::max_read_keys`](crate::Config::max_read_keys) keys, and no more bytes than the
    /// transaction's reads have left of [`Config::max_read_bytes`](crate::Config::max_read_bytes),
    /// with `more` set when some were left out.
    Range(Range),
}

/// What one [`TxnOp`] did, in the order of the branch that ran.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum TxnOpResult {
    /// [`TxnOp::Set`]: the key's new version.
    Set {
        /// The version (the transaction's log index).
        version: u64,
    },
    /// [`TxnOp::Delete`]: whether the key existed.
    Delete {
        /// Whether there was a key to delete.
        existed: bool,
    },
    /// [`TxnOp::Get`].
    Get(Option<Versioned>),
    /// [`TxnOp::Range`].
    Range(RangeResult),
    /// A [`TxnOp::Get`] left out of the answer: with its key and value (`bytes` of them) the
    /// transaction's reads would have answered with more than
    /// [`Config::max_read_bytes`](crate::Config::max_read_bytes) (the answer must fit in one
    /// frame). The branch's writes applied; read the key on its own.
    Omitted {
        /// The bytes of the key and value left out.
        bytes: u64,
    },
}

/// What a transaction did (`Cluster::txn`, feature `driver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnOutcome {
    /// Whether every comparison held (`then` ran) or not (`otherwise` ran).
    pub succeeded: bool,
    /// The version of every key the branch wrote.
    pub version: u64,
    /// One result per operation of the branch that ran.
    pub results: Vec<TxnOpResult>,
}

/// A transaction: if every comparison holds, `then` runs, otherwise `otherwise`; either way
/// all at once, in one log entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Txn {
    /// The comparisons, all of which must hold for `then` to run.
    pub when: Vec<Compare>,
    /// What runs when every comparison holds.
    pub then: Vec<TxnOp>,
    /// What runs otherwise.
    pub otherwise: Vec<TxnOp>,
}

impl Txn {
    pub(crate) fn validate(&self) -> Result<(), ClientError> {
        for compare in &self.when {
            check_key(&compare.key)?;
        }
        for op in self.then.iter().chain(&self.otherwise) {
            match op {
                TxnOp::Set { key, .. } | TxnOp::Delete { key } | TxnOp::Get(key) => {
                    check_key(key)?;
                }
                TxnOp::Range(range) if range.revision.is_some() => {
                    return Err(ClientError::Invalid(
                        "a transaction reads the state it writes: no range at a past revision in it"
                            .to_owned(),
                    ));
                }
                TxnOp::Range(range) => range.validate()?,
            }
        }
        Ok(())
    }
}
