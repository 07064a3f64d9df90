//! Locks and elections on leases, in the shape of etcd's concurrency package, over any
//! [`KvClient`]: plus-quorum's [`Cluster`] or, with feature `etcd`, an
//! [`EtcdClient`](crate::EtcdClient).
//!
//! The keys are etcd's: a contender's key is `NAME/` and its lease in lowercase hex, and the
//! order is the keys' creation revisions, so a lock taken with `etcdctl lock NAME` excludes a
//! [`lock`] of the same name on the same etcd, and the other way round.
//!
//! Both work the same way: each contender creates a key under `name/` attached to its lease,
//! and contenders take turns in the order their keys were created. A waiter watches only the
//! key just before its own, so a release wakes one waiter, not all of them. When a holder's
//! lease ends (it crashed, or stopped keeping it alive), its key goes with it and the next one
//! takes over: nobody has to delete a stale lock by hand.
//!
//! # Fencing
//!
//! A lock does not stop a holder that paused (a long GC, a stopped VM) from waking up and
//! writing after its lease expired and someone else took the lock. So every lock comes with a
//! fencing token, the revision at which its key was created, which only grows from one holder
//! to the next: pass it with every write to the protected resource, and have the resource
//! refuse a token lower than the highest it has seen (with this store, a transaction comparing
//! a token key does exactly that).

use bytes::Bytes;

use crate::client_error::ClientError;
use crate::driver::{Cluster, NodeApi, StoreError};
use crate::kv_client::KvClient;
use crate::lease::LeaseId;
use crate::txn::{Compare, KeyRange, Range, Txn, TxnOp, TxnOpResult};
use crate::types::{Expect, Versioned};
use crate::watch::Change;

/// A held lock ([`lock`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockGuard {
    /// The holder's key (`name/` and the lease in hex).
    pub key: String,
    /// The fencing token: the revision at which the key was created. Later holders have
    /// larger tokens.
    pub token: u64,
    /// The lease the lock lives on: keep it alive while holding the lock.
    pub lease: LeaseId,
}

/// A won election ([`campaign`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leadership {
    /// The election.
    pub name: String,
    /// The leader's key.
    pub key: String,
    /// The revision at which the key was created: later leaders have larger ones.
    pub revision: u64,
    /// The lease the leadership lives on: it ends with it.
    pub lease: LeaseId,
}

/// The current leader of an election: its key and what it proclaimed.
pub type ElectionLeader = (String, Versioned);

/// etcd's contender key: `NAME/` and the lease in lowercase hex, unpadded (`%x` in Go).
fn contender_key(name: &str, lease: LeaseId) -> String {
    format!("{name}/{lease:x}")
}

/// Takes the lock `name` on `store`, waiting for every earlier contender to release it (or
/// lose its lease). The lock lives on `lease`: keep it alive while holding it.
///
/// # Errors
/// [`StoreError::NoSuchLease`] when the lease ends before or while waiting; other
/// [`StoreError`]s.
pub async fn lock<K: KvClient + ?Sized>(
    store: &K,
    name: &str,
    lease: LeaseId,
) -> Result<LockGuard, StoreError> {
    let key = contender_key(name, lease);
    let token = create_contender(store, &key, Bytes::new(), lease).await?;
    wait_for_turn(store, name, &key, token, lease).await?;
    Ok(LockGuard { key, token, lease })
}

/// Releases a lock (its lease stays).
///
/// # Errors
/// [`StoreError`].
pub async fn unlock<K: KvClient + ?Sized>(store: &K, guard: LockGuard) -> Result<(), StoreError> {
    store.delete(&guard.key).await
}

/// Campaigns in election `name` with `value` (the candidate's address, say), waiting until
/// every earlier candidate has resigned or lost its lease. Leadership lasts as long as
/// `lease`: when it ends, the next candidate leads, and [`proclaim`] fails.
///
/// # Errors
/// [`StoreError::NoSuchLease`] when the lease ends before leadership is won; other
/// [`StoreError`]s.
pub async fn campaign<K: KvClient + ?Sized>(
    store: &K,
    name: &str,
    lease: LeaseId,
    value: Bytes,
) -> Result<Leadership, StoreError> {
    let key = contender_key(name, lease);
    let revision = create_contender(store, &key, value, lease).await?;
    wait_for_turn(store, name, &key, revision, lease).await?;
    Ok(Leadership { name: name.to_owned(), key, revision, lease })
}

/// Sets the value the leader announces, if it still leads.
///
/// # Errors
/// [`StoreError::NotElected`] when it resigned or its lease ended; other [`StoreError`]s.
pub async fn proclaim<K: KvClient + ?Sized>(
    store: &K,
    leadership: &Leadership,
    value: Bytes,
) -> Result<(), StoreError> {
    let txn = Txn {
        when: vec![Compare::new(leadership.key.clone(), Expect::Lease(Some(leadership.lease)))],
        then: vec![TxnOp::Set {
            key: leadership.key.clone(),
            value,
            lease: Some(leadership.lease),
        }],
        otherwise: vec![],
    };
    match store.txn(txn).await {
        Ok(outcome) if outcome.succeeded => Ok(()),
        Ok(_) | Err(StoreError::NoSuchLease(_)) => {
            Err(StoreError::NotElected(leadership.name.clone()))
        }
        Err(err) => Err(err),
    }
}

/// Gives leadership up: the next candidate leads.
///
/// # Errors
/// [`StoreError`].
pub async fn resign<K: KvClient + ?Sized>(
    store: &K,
    leadership: Leadership,
) -> Result<(), StoreError> {
    store.delete(&leadership.key).await
}

/// Election `name`'s leader now, if any: the candidate whose key is oldest.
///
/// # Errors
/// [`StoreError`].
pub async fn election_leader<K: KvClient + ?Sized>(
    store: &K,
    name: &str,
) -> Result<Option<ElectionLeader>, StoreError> {
    let candidates = store.range(Range::prefix(format!("{name}/"))).await?;
    Ok(candidates.kvs.into_iter().min_by_key(|(_, v)| v.created))
}

/// Waits until election `name`'s leader differs from `known` (a new leader, a new proclaimed
/// value, or no leader), and returns it: call it in a loop to follow the election.
///
/// # Errors
/// [`StoreError`].
pub async fn observe_election<K: KvClient + ?Sized>(
    store: &K,
    name: &str,
    known: Option<&ElectionLeader>,
) -> Result<Option<ElectionLeader>, StoreError> {
    loop {
        let candidates = store.range(Range::prefix(format!("{name}/"))).await?;
        let newest = candidates.kvs.iter().map(|(_, v)| v.version).max().unwrap_or(0);
        let current = candidates.kvs.into_iter().min_by_key(|(_, v)| v.created);
        if current.as_ref() != known {
            return Ok(current);
        }
        // Anything that changes the leader changes a key under the prefix.
        let mut watcher = store.watch(KeyRange::Prefix(format!("{name}/")), newest + 1).await?;
        loop {
            match watcher.next().await {
                Ok(batch) if batch.events.is_empty() => {}
                Ok(_) | Err(StoreError::Client(ClientError::Compacted { .. })) => break,
                Err(err) => return Err(err),
            }
        }
    }
}

/// Creates `key` under `lease` unless it exists; its creation revision.
async fn create_contender<K: KvClient + ?Sized>(
    store: &K,
    key: &str,
    value: Bytes,
    lease: LeaseId,
) -> Result<u64, StoreError> {
    let txn = Txn {
        when: vec![Compare::new(key, Expect::Absent)],
        then: vec![
            TxnOp::Set { key: key.to_owned(), value, lease: Some(lease) },
            TxnOp::Get(key.to_owned()),
        ],
        otherwise: vec![TxnOp::Get(key.to_owned())],
    };
    let outcome = store.txn(txn).await?;
    match outcome.results.last() {
        Some(TxnOpResult::Get(Some(v))) => Ok(v.created),
        _ => Err(StoreError::unexpected("the contender's key", &outcome)),
    }
}

/// Waits until no key under `name/` was created before ours, watching only the one just
/// before it.
async fn wait_for_turn<K: KvClient + ?Sized>(
    store: &K,
    name: &str,
    key: &str,
    created: u64,
    lease: LeaseId,
) -> Result<(), StoreError> {
    loop {
        let contenders = store.range(Range::prefix(format!("{name}/"))).await?;
        if !contenders.kvs.iter().any(|(k, _)| k == key) {
            // Our key went with our lease.
            return Err(StoreError::NoSuchLease(lease));
        }
        let before = contenders
            .kvs
            .into_iter()
            .filter(|(_, v)| v.created < created)
            .max_by_key(|(_, v)| v.created);
        let Some((predecessor, seen)) = before else { return Ok(()) };
        wait_deleted(store, &predecessor, seen.version + 1).await?;
    }
}

/// Waits for `key` to be deleted at or after revision `from`.
async fn wait_deleted<K: KvClient + ?Sized>(
    store: &K,
    key: &str,
    from: u64,
) -> Result<(), StoreError> {
    let only = KeyRange::Between { start: key.to_owned(), end: format!("{key}\0") };
    let mut watcher = store.watch(only, from).await?;
    loop {
        match watcher.next().await {
            Ok(batch) if batch.events.iter().any(|e| e.change == Change::Delete) => {
                return Ok(());
            }
            Ok(_) => {}
            // Too far behind to tell: look again.
            Err(StoreError::Client(ClientError::Compacted { .. })) => return Ok(()),
            Err(err) => return Err(err),
        }
    }
}

/// The recipes as methods of plus-quorum's own client.
impl<N: NodeApi> Cluster<N> {
    /// [`lock`] on this cluster.
    ///
    /// # Errors
    /// As [`lock`].
    pub async fn lock(&self, name: &str, lease: LeaseId) -> Result<LockGuard, StoreError> {
        lock(self, name, lease).await
    }

    /// [`unlock`] on this cluster.
    ///
    /// # Errors
    /// As [`unlock`].
    pub async fn unlock(&self, guard: LockGuard) -> Result<(), StoreError> {
        unlock(self, guard).await
    }

    /// [`campaign`] on this cluster.
    ///
    /// # Errors
    /// As [`campaign`].
    pub async fn campaign(
        &self,
        name: &str,
        lease: LeaseId,
        value: impl Into<Bytes>,
    ) -> Result<Leadership, StoreError> {
        campaign(self, name, lease, value.into()).await
    }

    /// [`proclaim`] on this cluster.
    ///
    /// # Errors
    /// As [`proclaim`].
    pub async fn proclaim(
        &self,
        leadership: &Leadership,
        value: impl Into<Bytes>,
    ) -> Result<(), StoreError> {
        proclaim(self, leadership, value.into()).await
    }

    /// [`resign`] on this cluster.
    ///
    /// # Errors
    /// As [`resign`].
    pub async fn resign(&self, leadership: Leadership) -> Result<(), StoreError> {
        resign(self, leadership).await
    }

    /// [`election_leader`] on this cluster.
    ///
    /// # Errors
    /// As [`election_leader`].
    pub async fn election_leader(&self, name: &str) -> Result<Option<ElectionLeader>, StoreError> {
        election_leader(self, name).await
    }

    /// [`observe_election`] on this cluster.
    ///
    /// # Errors
    /// As [`observe_election`].
    pub async fn observe_election(
        &self,
        name: &str,
        known: Option<&ElectionLeader>,
    ) -> Result<Option<ElectionLeader>, StoreError> {
        observe_election(self, name, known).await
    }
}
