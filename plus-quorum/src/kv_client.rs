//! One client interface over the store's operations, so that code written against it (a
//! platform's state, a load generator) runs on plus-quorum or on an etcd the platform already
//! has ([`EtcdClient`](crate::EtcdClient), feature `etcd`).

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::driver::{Cluster, NodeApi, StoreError, Watcher};
use crate::lease::{LeaseId, LeaseInfo};
use crate::ops::WriteResult;
use crate::txn::{KeyRange, Range, RangeResult, Txn, TxnOutcome};
use crate::types::{Expect, Versioned};
use crate::watch::WatchBatch;

/// The operations a platform uses on its key-value store, each linearizable, each bounded by
/// the client's own deadline.
///
/// Versions are the store's revisions: [`Versioned::version`] is the revision of the key's last
/// write (etcd's `mod_revision`) and [`Versioned::created`] the revision that created it
/// (`create_revision`), so a compare on a version means the same on either store.
///
/// Implemented by [`Cluster`] (plus-quorum's routing client) and, with feature `etcd`, by
/// [`EtcdClient`](crate::EtcdClient). It is object safe: `Box<dyn KvClient>` picks the store at
/// run time.
#[async_trait]
pub trait KvClient: Send + Sync {
    /// The key's value and versions, if it exists.
    ///
    /// # Errors
    /// [`StoreError`] when the store did not answer.
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError>;

    /// Sets `key`; returns its new version.
    ///
    /// # Errors
    /// [`StoreError`]; on a timeout the write may or may not have applied.
    async fn set(&self, key: &str, value: Bytes) -> Result<u64, StoreError>;

    /// Deletes `key` (nothing happens if it is absent).
    ///
    /// # Errors
    /// As [`KvClient::set`].
    async fn delete(&self, key: &str) -> Result<(), StoreError>;

    /// Sets `key` if it is as `expect` says: [`WriteResult::Applied`] with the new version, or
    /// [`WriteResult::CompareFailed`] with what the key is now.
    ///
    /// # Errors
    /// As [`KvClient::set`].
    async fn compare_and_set(
        &self,
        key: &str,
        expect: Expect,
        value: Bytes,
    ) -> Result<WriteResult, StoreError>;

    /// Runs a transaction: `txn.then` if every comparison holds, `txn.otherwise` if not, all
    /// at once.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when the branch names an ended lease; as [`KvClient::set`].
    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError>;

    /// The keys of a range with their values (or only counted), in key order.
    ///
    /// # Errors
    /// [`StoreError`]; an invalid range (a limit of 0, an empty interval) is refused.
    async fn range(&self, range: Range) -> Result<RangeResult, StoreError>;

    /// Grants a lease of about `ttl` (etcd counts whole seconds and rounds up); keys attached
    /// to it are deleted when it ends.
    ///
    /// # Errors
    /// [`StoreError`]; a TTL the store does not accept is refused.
    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseInfo, StoreError>;

    /// Keeps `lease` alive: its TTL starts again.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] once it has ended; other [`StoreError`]s.
    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError>;

    /// Ends `lease` now, deleting its keys.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when it has already ended; other [`StoreError`]s.
    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError>;

    /// Sets `key` attached to `lease`; returns its new version.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when the lease has ended; as [`KvClient::set`].
    async fn set_with_lease(
        &self,
        key: &str,
        value: Bytes,
        lease: LeaseId,
    ) -> Result<u64, StoreError>;

    /// Watches `range` from revision `from` on: every change, in order, with no gap and no
    /// duplicate.
    ///
    /// # Errors
    /// [`StoreError`] when the watch cannot be started.
    async fn watch(&self, range: KeyRange, from: u64) -> Result<Box<dyn KvWatch>, StoreError>;
}

/// A running watch ([`KvClient::watch`]).
#[async_trait]
pub trait KvWatch: Send {
    /// The next changes, or an empty batch whose `progress` says how far the watch is known to
    /// be current.
    ///
    /// # Errors
    /// [`ClientError::Compacted`](crate::ClientError::Compacted) when the watch fell behind the
    /// history the store keeps; other [`StoreError`]s.
    async fn next(&mut self) -> Result<WatchBatch, StoreError>;
}

#[async_trait]
impl<N: NodeApi> KvClient for Cluster<N> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        Cluster::get(self, key).await
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        Cluster::set(self, key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        Cluster::delete(self, key).await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expect: Expect,
        value: Bytes,
    ) -> Result<WriteResult, StoreError> {
        Cluster::compare_and_set(self, key, expect, value).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        Cluster::txn(self, txn).await
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        Cluster::range(self, range).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseInfo, StoreError> {
        Cluster::grant_lease(self, ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        Cluster::keep_alive(self, lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        Cluster::revoke_lease(self, lease).await
    }

    async fn set_with_lease(
        &self,
        key: &str,
        value: Bytes,
        lease: LeaseId,
    ) -> Result<u64, StoreError> {
        Cluster::set_with_lease(self, key, value, lease).await
    }

    async fn watch(&self, range: KeyRange, from: u64) -> Result<Box<dyn KvWatch>, StoreError> {
        Ok(Box::new(Cluster::watch(self, range, from)))
    }
}

#[async_trait]
impl<N: NodeApi> KvWatch for Watcher<N> {
    async fn next(&mut self) -> Result<WatchBatch, StoreError> {
        Watcher::next(self).await
    }
}

/// A shared client is a client: `Arc<dyn KvClient>` picks the store at run time and can be
/// cloned into the tasks (and [`Session`](crate::Session)s) that use it.
#[async_trait]
impl<T: KvClient + ?Sized> KvClient for std::sync::Arc<T> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        (**self).get(key).await
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        (**self).set(key, value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        (**self).delete(key).await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expect: Expect,
        value: Bytes,
    ) -> Result<WriteResult, StoreError> {
        (**self).compare_and_set(key, expect, value).await
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        (**self).txn(txn).await
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        (**self).range(range).await
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseInfo, StoreError> {
        (**self).grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        (**self).keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        (**self).revoke_lease(lease).await
    }

    async fn set_with_lease(
        &self,
        key: &str,
        value: Bytes,
        lease: LeaseId,
    ) -> Result<u64, StoreError> {
        (**self).set_with_lease(key, value, lease).await
    }

    async fn watch(&self, range: KeyRange, from: u64) -> Result<Box<dyn KvWatch>, StoreError> {
        (**self).watch(range, from).await
    }
}
