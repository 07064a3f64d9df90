//! The store's vocabulary: values with their versions, what a compare expects, and the rules
//! for keys.

use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::client_error::ClientError;
use crate::lease::LeaseId;

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

pub(crate) fn check_keys<'k>(
    keys: impl ExactSizeIterator<Item = &'k String>,
) -> Result<(), ClientError> {
    if keys.len() == 0 {
        return Err(ClientError::Invalid("a multi-key operation needs at least one key".into()));
    }
    keys.into_iter().try_for_each(|k| check_key(k))
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
