//! A [`StateStore`] in plus-quorum or any other [`KvClient`] (feature `quorum`; etcd through
//! plus-quorum's `etcd` feature): rollout states replicated across the platform's own store, so
//! a controller on another machine can take a rollout over.

use std::marker::PhantomData;

use async_trait::async_trait;
use plus_quorum::{Cluster, Expect, KvClient, NodeHandle, WriteResult};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::store::{StateStore, StoreError};
use crate::{SavedDeployment, SavedRelease};

/// Rollout states in a plus-quorum cluster (or any [`KvClient`]: an
/// [`EtcdClient`](plus_quorum::EtcdClient), an `Arc<dyn KvClient>`), one key per rollout, as
/// JSON (an operator can read them with any client).
///
/// The version of a state is its key's version in the store (the log index of its last write):
/// every save is a compare-and-set on it, so the stale controller's write fails with
/// [`StoreError::Stale`], whoever wrote since. A write whose outcome the store could not tell
/// (the leader was lost mid-write) is [`StoreError::Unavailable`]: the driver stops, and the
/// controller loads the state again before it continues.
#[derive(Debug, Clone)]
pub struct QuorumStore<S, K: KvClient = Cluster<NodeHandle>> {
    cluster: K,
    state: PhantomData<fn() -> S>,
}

impl<S, K: KvClient> QuorumStore<S, K> {
    /// A store over `cluster` of states of the type the use site says
    /// (`QuorumStore::<SavedRelease>::new`, or a typed variable); [`QuorumStore::releases`] and
    /// [`QuorumStore::deployments`] name it themselves.
    #[must_use]
    pub fn new(cluster: K) -> Self {
        Self { cluster, state: PhantomData }
    }
}

impl<K: KvClient> QuorumStore<SavedRelease, K> {
    /// A store of saved releases over `cluster`: what is loaded is a [`SavedRelease`] without
    /// a type annotation.
    ///
    /// ```
    /// use plus_rollout::{QuorumStore, StateStore};
    ///
    /// # #[allow(dead_code)]
    /// async fn unfinished(cluster: plus_quorum::Cluster) -> bool {
    ///     let releases = QuorumStore::releases(cluster);
    ///     match releases.load("release/api").await {
    ///         Ok(Some((saved, _version))) => !saved.is_finished(),
    ///         _ => false,
    ///     }
    /// }
    /// ```
    ///
    /// With [`QuorumStore::new`] the same needs the type spelled out: the state's type is
    /// unknown where its method is called.
    ///
    /// ```compile_fail
    /// # use plus_rollout::{QuorumStore, StateStore};
    /// # #[allow(dead_code)]
    /// async fn unfinished(cluster: plus_quorum::Cluster) -> bool {
    ///     let releases = QuorumStore::new(cluster);
    ///     match releases.load("release/api").await {
    ///         Ok(Some((saved, _version))) => !saved.is_finished(),
    ///         _ => false,
    ///     }
    /// }
    /// ```
    #[must_use]
    pub fn releases(cluster: K) -> Self {
        Self::new(cluster)
    }
}

impl<K: KvClient> QuorumStore<SavedDeployment, K> {
    /// A store of saved deployments over `cluster` (see [`QuorumStore::releases`]).
    #[must_use]
    pub fn deployments(cluster: K) -> Self {
        Self::new(cluster)
    }
}

fn unavailable(key: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable { key: key.to_owned(), reason: reason.to_string() }
}

#[async_trait]
impl<S, K> StateStore<S> for QuorumStore<S, K>
where
    S: Serialize + DeserializeOwned + Send + Sync,
    K: KvClient,
{
    async fn load(&self, key: &str) -> Result<Option<(S, u64)>, StoreError> {
        let Some(found) = self.cluster.get(key).await.map_err(|e| unavailable(key, e))? else {
            return Ok(None);
        };
        let state = serde_json::from_slice(&found.value)
            .map_err(|e| StoreError::Unreadable { key: key.to_owned(), reason: e.to_string() })?;
        Ok(Some((state, found.version)))
    }

    async fn save(&self, key: &str, state: &S, expected: Option<u64>) -> Result<u64, StoreError> {
        let value = serde_json::to_vec(state).map_err(|e| StoreError::Unreadable {
            key: key.to_owned(),
            reason: format!("cannot be written as JSON: {e}"),
        })?;
        let expect = expected.map_or(Expect::Absent, Expect::Version);
        match self.cluster.compare_and_set(key, expect, value.into()).await {
            Ok(WriteResult::Applied { version }) => Ok(version),
            Ok(WriteResult::CompareFailed { current, .. }) => Err(StoreError::Stale {
                key: key.to_owned(),
                expected,
                found: current.map(|c| c.version),
            }),
            Ok(other) => Err(unavailable(key, format!("unexpected answer {other:?}"))),
            Err(err) => Err(unavailable(key, err)),
        }
    }
}
