//! A [`KvClient`] whose keys all live under a prefix, as etcd's `clientv3/namespace`: several
//! platforms (or teams, or test runs) share one store without seeing each other's keys.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

use crate::driver::StoreError;
use crate::kv_client::{KvClient, KvWatch};
use crate::lease::{LeaseId, LeaseInfo};
use crate::ops::WriteResult;
use crate::txn::{Compare, KeyRange, Range, RangeResult, Txn, TxnOp, TxnOpResult, TxnOutcome};
use crate::types::{Expect, Versioned};
use crate::watch::WatchBatch;

/// `inner` with every key under `prefix`: a key `k` is `prefix + k` in the store, ranges and
/// watches cover only the prefix's keys, and every key that comes back has the prefix taken
/// off. Leases are the store's own (not namespaced), as in etcd.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), plus_quorum::StoreError> {
/// # let network = plus_quorum::InProcessNetwork::new();
/// # let config = plus_quorum::Config::new(1, vec![1]);
/// # let node = network.spawn(config, plus_quorum::MemStorage::new()).unwrap();
/// # let cluster = plus_quorum::Cluster::new(vec![node.handle.clone()]);
/// use plus_quorum::{KvClient, Namespaced, Range};
///
/// let team = Namespaced::new(cluster.clone(), "teams/payments/");
/// team.set("release/api", "v2".into()).await?;
/// // In the store, under the prefix; through the namespace, without it.
/// assert!(KvClient::get(&cluster, "teams/payments/release/api").await?.is_some());
/// let mine = team.range(Range::prefix("")).await?;
/// assert_eq!(mine.kvs[0].0, "release/api");
/// # node.handle.stop().await;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct Namespaced<K> {
    inner: K,
    prefix: String,
}

impl<K: KvClient> Namespaced<K> {
    /// `inner`, its keys under `prefix` (end it with a separator, `team/`, so that `team`
    /// and `team2` do not share keys).
    pub fn new(inner: K, prefix: impl Into<String>) -> Self {
        Self { inner, prefix: prefix.into() }
    }

    /// The prefix.
    #[must_use]
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn keys(&self, keys: &KeyRange) -> KeyRange {
        match keys {
            KeyRange::Prefix(prefix) => KeyRange::Prefix(self.key(prefix)),
            KeyRange::Between { start, end } => {
                KeyRange::Between { start: self.key(start), end: self.key(end) }
            }
        }
    }

    fn range_in(&self, range: &Range) -> Range {
        Range { keys: self.keys(&range.keys), ..range.clone() }
    }

    fn strip(&self, key: String) -> String {
        match key.strip_prefix(&self.prefix) {
            Some(own) => own.to_owned(),
            None => key,
        }
    }

    fn range_out(&self, result: RangeResult) -> RangeResult {
        let kvs = result.kvs.into_iter().map(|(k, v)| (self.strip(k), v)).collect();
        RangeResult { kvs, ..result }
    }

    fn written(&self, result: WriteResult) -> WriteResult {
        match result {
            WriteResult::CompareFailed { key, current } => {
                WriteResult::CompareFailed { key: self.strip(key), current }
            }
            other => other,
        }
    }

    fn op(&self, op: TxnOp) -> TxnOp {
        match op {
            TxnOp::Set { key, value, lease } => TxnOp::Set { key: self.key(&key), value, lease },
            TxnOp::Delete { key } => TxnOp::Delete { key: self.key(&key) },
            TxnOp::Get(key) => TxnOp::Get(self.key(&key)),
            TxnOp::Range(range) => TxnOp::Range(self.range_in(&range)),
        }
    }
}

#[async_trait]
impl<K: KvClient> KvClient for Namespaced<K> {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.inner.get(&self.key(key)).await
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        self.inner.set(&self.key(key), value).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(&self.key(key)).await
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expect: Expect,
        value: Bytes,
    ) -> Result<WriteResult, StoreError> {
        let result = self.inner.compare_and_set(&self.key(key), expect, value).await?;
        Ok(self.written(result))
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        let txn = Txn {
            when: txn
                .when
                .into_iter()
                .map(|c| Compare { key: self.key(&c.key), expect: c.expect })
                .collect(),
            then: txn.then.into_iter().map(|op| self.op(op)).collect(),
            otherwise: txn.otherwise.into_iter().map(|op| self.op(op)).collect(),
        };
        let outcome = self.inner.txn(txn).await?;
        let results = outcome
            .results
            .into_iter()
            .map(|result| match result {
                TxnOpResult::Range(range) => TxnOpResult::Range(self.range_out(range)),
                other => other,
            })
            .collect();
        Ok(TxnOutcome { results, ..outcome })
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        Ok(self.range_out(self.inner.range(self.range_in(&range)).await?))
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseInfo, StoreError> {
        self.inner.grant_lease(ttl).await
    }

    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        self.inner.keep_alive(lease).await
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        self.inner.revoke_lease(lease).await
    }

    async fn set_with_lease(
        &self,
        key: &str,
        value: Bytes,
        lease: LeaseId,
    ) -> Result<u64, StoreError> {
        self.inner.set_with_lease(&self.key(key), value, lease).await
    }

    async fn watch(&self, range: KeyRange, from: u64) -> Result<Box<dyn KvWatch>, StoreError> {
        let inner = self.inner.watch(self.keys(&range), from).await?;
        Ok(Box::new(NamespacedWatch { inner, prefix: self.prefix.clone() }))
    }
}

/// A watch whose events' keys have the namespace's prefix taken off.
struct NamespacedWatch {
    inner: Box<dyn KvWatch>,
    prefix: String,
}

#[async_trait]
impl KvWatch for NamespacedWatch {
    async fn next(&mut self) -> Result<WatchBatch, StoreError> {
        let mut batch = self.inner.next().await?;
        for event in batch.events.to_mut() {
            if let Some(own) = event.key.strip_prefix(&self.prefix) {
                event.key = own.to_owned();
            }
        }
        Ok(batch)
    }
}
