//! Where a driver keeps a rollout's state (feature `tokio`), so that when its controller dies
//! another one can load the state and continue ([`Release::restore`](crate::Release::restore),
//! [`Deployment::restore`](crate::Deployment::restore)).
//!
//! Every write names the version it replaces, as a compare-and-set: two controllers can never
//! both advance one rollout. The one that lost the race gets [`StoreError::Stale`] on its next
//! write, and its driver stops driving that rollout.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

/// Why a state could not be loaded or saved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Someone else wrote the state since this controller last did: another controller drives
    /// this rollout now.
    #[error(
        "the state of `{key}` is at version {found:?}, not {expected:?}: another controller drives it"
    )]
    Stale {
        /// The rollout's key.
        key: String,
        /// The version this controller last wrote (`None`: it expected no state yet).
        expected: Option<u64>,
        /// The version found (`None`: there is none).
        found: Option<u64>,
    },
    /// A new rollout was started under a key that already holds a rollout's state (a
    /// finished one, or one still running): it would never write its own. Restore the saved
    /// state to go on with it, or start the new rollout under a new key (one per release:
    /// the application and the version, say).
    #[error(
        "a rollout's state is already saved under `{key}` (version {found}): restore it, or start the new rollout under a new key"
    )]
    KeyInUse {
        /// The key.
        key: String,
        /// The version of the state found there.
        found: u64,
    },
    /// The state in the store cannot be read as a state of this kind (another format or
    /// program wrote it), or a state could not be encoded.
    #[error("the state of `{key}` cannot be read: {reason}")]
    Unreadable {
        /// The rollout's key.
        key: String,
        /// Why.
        reason: String,
    },
    /// The store could not be reached or refused the write; the outcome of a write is unknown.
    #[error("the store failed on `{key}`: {reason}")]
    Unavailable {
        /// The rollout's key.
        key: String,
        /// Why.
        reason: String,
    },
}

/// A store of rollout states, one per key, each with a version that every write advances.
#[async_trait]
pub trait StateStore<S>: Send + Sync {
    /// The state under `key` and its version, if there is one.
    ///
    /// # Errors
    /// [`StoreError::Unavailable`].
    async fn load(&self, key: &str) -> Result<Option<(S, u64)>, StoreError>;

    /// Writes `state` under `key` if its version is still `expected` (`None`: no state yet),
    /// and returns the new version.
    ///
    /// # Errors
    /// [`StoreError::Stale`] when the version moved; [`StoreError::Unavailable`].
    async fn save(&self, key: &str, state: &S, expected: Option<u64>) -> Result<u64, StoreError>;
}

/// A [`StateStore`] in memory: for tests, and for a controller that only needs to survive the
/// loss of its rollout tasks, not of its process.
#[derive(Debug)]
pub struct MemoryStore<S> {
    states: Mutex<HashMap<String, (S, u64)>>,
}

impl<S> Default for MemoryStore<S> {
    fn default() -> Self {
        Self { states: Mutex::new(HashMap::new()) }
    }
}

impl<S> MemoryStore<S> {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl<S: Clone + Send + Sync> StateStore<S> for MemoryStore<S> {
    async fn load(&self, key: &str) -> Result<Option<(S, u64)>, StoreError> {
        let states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Ok(states.get(key).cloned())
    }

    async fn save(&self, key: &str, state: &S, expected: Option<u64>) -> Result<u64, StoreError> {
        let mut states = self.states.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = states.get(key).map(|(_, version)| *version);
        if found != expected {
            return Err(StoreError::Stale { key: key.to_owned(), expected, found });
        }
        let version = found.map_or(1, |v| v + 1);
        states.insert(key.to_owned(), (state.clone(), version));
        Ok(version)
    }
}
