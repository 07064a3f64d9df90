//! [`KvClient`] over an etcd cluster (v3 API, 3.4 or later), through the `etcd-client` crate:
//! a platform that already runs etcd uses the suite with it, and one load generator drives
//! both stores.
//!
//! The mapping keeps meanings, not only names: a key's version is etcd's `mod_revision` and its
//! creation `create_revision`, as in plus-quorum, so [`Expect::Version`] is a compare on
//! `mod_revision`; [`Expect::Absent`] and [`Expect::Exists`] compare the key's etcd version
//! with 0. Reads are linearizable (etcd's default, not `serializable`). Lease TTLs are whole
//! seconds in etcd: a TTL is rounded up, and etcd may raise one below its minimum.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use etcd_client as etcd;

use crate::client_error::ClientError;
use crate::driver::{Failure, StoreError};
use crate::kv_client::{KvClient, KvWatch};
use crate::lease::{LeaseId, LeaseInfo};
use crate::ops::WriteResult;
use crate::txn::{KeyRange, Range, RangeResult, Txn, TxnOp, TxnOpResult, TxnOutcome};
use crate::types::{Expect, Versioned};
use crate::watch::{Change, WatchBatch, WatchEvent};

/// A [`KvClient`] over an etcd cluster.
///
/// ```no_run
/// # #[allow(dead_code)]
/// # async fn demo() -> Result<(), plus_quorum::StoreError> {
/// use plus_quorum::{EtcdClient, KvClient};
/// use std::time::Duration;
///
/// let etcd = EtcdClient::connect(&["127.0.0.1:2379"], Duration::from_secs(5)).await?;
/// let version = etcd.set("release/42", "done".into()).await?;
/// assert_eq!(etcd.get("release/42").await?.map(|v| v.version), Some(version));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct EtcdClient {
    client: etcd::Client,
    deadline: Duration,
    /// One keep-alive stream per lease, reused by every renewal (as etcd's own clients keep
    /// one), shared by the clones.
    keepers: Arc<std::sync::Mutex<HashMap<i64, Keeper>>>,
}

/// A lease's keep-alive stream: its sender and its answers, opened on the first renewal.
type Keeper = Arc<tokio::sync::Mutex<Option<(etcd::LeaseKeeper, etcd::LeaseKeepAliveStream)>>>;

impl std::fmt::Debug for EtcdClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdClient").field("deadline", &self.deadline).finish_non_exhaustive()
    }
}

impl EtcdClient {
    /// Connects to the etcd members at `endpoints` (`host:port` or URLs); every call is
    /// bounded by `deadline`.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when no endpoint can be reached within `deadline`.
    pub async fn connect(
        endpoints: &[impl AsRef<str>],
        deadline: Duration,
    ) -> Result<Self, StoreError> {
        let options = etcd::ConnectOptions::new()
            .with_connect_timeout(deadline)
            .with_timeout(deadline)
            .with_keep_alive(Duration::from_secs(10), deadline);
        let endpoints: Vec<&str> = endpoints.iter().map(AsRef::as_ref).collect();
        let client = etcd::Client::connect(&endpoints, Some(options))
            .await
            .map_err(|e| backend("connecting", e))?;
        Ok(Self { client, deadline, keepers: Arc::default() })
    }

    /// The keep-alive stream slot of lease `id`.
    fn keeper(&self, id: i64) -> Keeper {
        let mut keepers = self.keepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(keepers.entry(id).or_default())
    }

    /// Drops lease `id`'s keep-alive stream (the lease ended or was revoked).
    fn forget(&self, id: i64) {
        let mut keepers = self.keepers.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        keepers.remove(&id);
    }

    /// The `etcd-client` client underneath, for what the trait does not cover.
    #[must_use]
    pub fn inner(&self) -> &etcd::Client {
        &self.client
    }

    async fn kv_txn(&self, txn: etcd::Txn) -> Result<etcd::TxnResponse, StoreError> {
        self.client.kv_client().txn(txn).await.map_err(|e| self.error("a transaction", e, None))
    }

    /// What an etcd error means for a caller of the trait.
    fn error(&self, doing: &str, err: etcd::Error, lease: Option<LeaseId>) -> StoreError {
        if let etcd::Error::GRpcStatus(status) = &err {
            match status.code() {
                tonic::Code::DeadlineExceeded => return StoreError::Timeout(self.deadline),
                // No member reachable, or the members have no leader: as plus-quorum's client
                // reports a cluster it cannot get an answer from.
                tonic::Code::Unavailable => return StoreError::NoLeader(self.deadline),
                // The connection broke under the call (the member went away).
                tonic::Code::Unknown
                    if std::error::Error::source(status)
                        .is_some_and(<dyn std::error::Error>::is::<tonic::transport::Error>) =>
                {
                    return StoreError::NoLeader(self.deadline);
                }
                tonic::Code::NotFound if lease.is_some() => {
                    return StoreError::NoSuchLease(lease.unwrap_or_default());
                }
                tonic::Code::InvalidArgument | tonic::Code::OutOfRange => {
                    return StoreError::Client(ClientError::Invalid(format!(
                        "{doing}: {}",
                        status.message()
                    )));
                }
                _ => {}
            }
        }
        if matches!(err, etcd::Error::TransportError(_)) {
            return StoreError::NoLeader(self.deadline);
        }
        backend(doing, err)
    }
}

fn backend(doing: &str, err: etcd::Error) -> StoreError {
    StoreError::Backend(Failure::with_source(format!("etcd, {doing}"), err))
}

/// A failure etcd reported in words rather than as an error.
fn backend_said(doing: &str, said: &str) -> StoreError {
    StoreError::Backend(Failure::new(format!("etcd, {doing}: {said}")))
}

fn key_text(key: &[u8]) -> Result<String, StoreError> {
    String::from_utf8(key.to_vec()).map_err(|_| {
        StoreError::Backend(Failure::new(format!(
            "etcd holds a key that is not UTF-8 (starts {:?})",
            String::from_utf8_lossy(&key[..key.len().min(64)])
        )))
    })
}

fn revision(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

fn etcd_revision(value: u64) -> Result<i64, StoreError> {
    i64::try_from(value).map_err(|_| {
        StoreError::Client(ClientError::Invalid(format!("revision {value} too large")))
    })
}

fn lease_id(lease: LeaseId) -> Result<i64, StoreError> {
    i64::try_from(lease).map_err(|_| StoreError::NoSuchLease(lease))
}

fn versioned(kv: &etcd::KeyValue) -> Versioned {
    Versioned {
        value: Bytes::copy_from_slice(kv.value()),
        version: revision(kv.mod_revision()),
        created: revision(kv.create_revision()),
        lease: u64::try_from(kv.lease()).ok().filter(|&lease| lease != 0),
    }
}

fn header_revision(header: Option<&etcd::ResponseHeader>) -> u64 {
    header.map_or(0, |h| revision(h.revision()))
}

/// The comparisons that say what `expect` says of `key` (etcd's version is 0 for an absent key).
fn compares(key: &str, expect: &Expect) -> Result<Vec<etcd::Compare>, StoreError> {
    use etcd::CompareOp::{Equal, Greater};
    let exists = || etcd::Compare::version(key, Greater, 0);
    Ok(match expect {
        Expect::Version(version) => {
            vec![etcd::Compare::mod_revision(key, Equal, etcd_revision(*version)?)]
        }
        Expect::Value(value) => vec![exists(), etcd::Compare::value(key, Equal, value.to_vec())],
        Expect::Absent => vec![etcd::Compare::version(key, Equal, 0)],
        Expect::Exists => vec![exists()],
        Expect::Lease(lease) => {
            let lease = match lease {
                Some(lease) => lease_id(*lease)?,
                None => 0,
            };
            vec![exists(), etcd::Compare::lease(key, Equal, lease)]
        }
    })
}

fn get_options(range: &Range) -> Result<etcd::GetOptions, StoreError> {
    range.validate()?;
    let mut options = etcd::GetOptions::new();
    options = match &range.keys {
        KeyRange::Prefix(prefix) if prefix.is_empty() => options.with_all_keys(),
        KeyRange::Prefix(_) => options.with_prefix(),
        KeyRange::Between { end, .. } => options.with_range(end.as_bytes()),
    };
    if let Some(limit) = range.limit {
        options = options.with_limit(i64::try_from(limit).unwrap_or(i64::MAX));
    }
    if range.count_only {
        options = options.with_count_only();
    }
    if let Some(revision) = range.revision {
        options = options.with_revision(etcd_revision(revision)?);
    }
    Ok(options)
}

fn range_start(range: &Range) -> Vec<u8> {
    match &range.keys {
        KeyRange::Prefix(prefix) if prefix.is_empty() => vec![0],
        KeyRange::Prefix(prefix) => prefix.as_bytes().to_vec(),
        KeyRange::Between { start, .. } => start.as_bytes().to_vec(),
    }
}

fn range_result(response: &etcd::GetResponse, count_only: bool) -> Result<RangeResult, StoreError> {
    let kvs = if count_only {
        Vec::new()
    } else {
        response
            .kvs()
            .iter()
            .map(|kv| Ok((key_text(kv.key())?, versioned(kv))))
            .collect::<Result<_, StoreError>>()?
    };
    Ok(RangeResult {
        kvs,
        count: usize::try_from(response.count()).unwrap_or(0),
        more: response.more(),
    })
}

fn etcd_op(op: &TxnOp) -> Result<etcd::TxnOp, StoreError> {
    Ok(match op {
        TxnOp::Set { key, value, lease } => {
            let options = match lease {
                Some(lease) => Some(etcd::PutOptions::new().with_lease(lease_id(*lease)?)),
                None => None,
            };
            etcd::TxnOp::put(key.as_str(), value.to_vec(), options)
        }
        TxnOp::Delete { key } => etcd::TxnOp::delete(key.as_str(), None),
        TxnOp::Get(key) => etcd::TxnOp::get(key.as_str(), None),
        TxnOp::Range(range) => etcd::TxnOp::get(range_start(range), Some(get_options(range)?)),
    })
}

fn op_result(
    op: &TxnOp,
    response: &etcd::TxnOpResponse,
    version: u64,
) -> Result<TxnOpResult, StoreError> {
    Ok(match (op, response) {
        (TxnOp::Set { .. }, etcd::TxnOpResponse::Put(_)) => TxnOpResult::Set { version },
        (TxnOp::Delete { .. }, etcd::TxnOpResponse::Delete(deleted)) => {
            TxnOpResult::Delete { existed: deleted.deleted() > 0 }
        }
        (TxnOp::Get(_), etcd::TxnOpResponse::Get(found)) => {
            TxnOpResult::Get(found.kvs().first().map(versioned))
        }
        (TxnOp::Range(range), etcd::TxnOpResponse::Get(found)) => {
            TxnOpResult::Range(range_result(found, range.count_only)?)
        }
        (op, response) => {
            return Err(StoreError::unexpected(&format!("the result of {op:?}"), response));
        }
    })
}

/// The lease a transaction's branch names, for an error that says which one ended.
fn first_lease(ops: &[TxnOp]) -> Option<LeaseId> {
    ops.iter().find_map(|op| match op {
        TxnOp::Set { lease, .. } => *lease,
        _ => None,
    })
}

#[async_trait]
impl KvClient for EtcdClient {
    async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        let response = self.client.kv_client().get(key, None).await;
        let response = response.map_err(|e| self.error("a get", e, None))?;
        Ok(response.kvs().first().map(versioned))
    }

    async fn set(&self, key: &str, value: Bytes) -> Result<u64, StoreError> {
        let response = self.client.kv_client().put(key, value.to_vec(), None).await;
        let response = response.map_err(|e| self.error("a put", e, None))?;
        Ok(header_revision(response.header()))
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let response = self.client.kv_client().delete(key, None).await;
        response.map(drop).map_err(|e| self.error("a delete", e, None))
    }

    async fn compare_and_set(
        &self,
        key: &str,
        expect: Expect,
        value: Bytes,
    ) -> Result<WriteResult, StoreError> {
        let txn = etcd::Txn::new()
            .when(compares(key, &expect)?)
            .and_then([etcd::TxnOp::put(key, value.to_vec(), None)])
            .or_else([etcd::TxnOp::get(key, None)]);
        let response = self.kv_txn(txn).await?;
        if response.succeeded() {
            return Ok(WriteResult::Applied { version: header_revision(response.header()) });
        }
        let current = match response.op_responses().first() {
            Some(etcd::TxnOpResponse::Get(found)) => found.kvs().first().map(versioned),
            other => return Err(StoreError::unexpected("the key's current value", &other)),
        };
        Ok(WriteResult::CompareFailed { key: key.to_owned(), current })
    }

    async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        txn.validate()?;
        let mut when = Vec::new();
        for compare in &txn.when {
            when.extend(compares(&compare.key, &compare.expect)?);
        }
        let then = txn.then.iter().map(etcd_op).collect::<Result<Vec<_>, _>>()?;
        let otherwise = txn.otherwise.iter().map(etcd_op).collect::<Result<Vec<_>, _>>()?;
        let request = etcd::Txn::new().when(when).and_then(then).or_else(otherwise);
        let response = self.client.kv_client().txn(request).await.map_err(|e| {
            let lease = first_lease(&txn.then).or_else(|| first_lease(&txn.otherwise));
            self.error("a transaction", e, lease)
        })?;
        let succeeded = response.succeeded();
        let version = header_revision(response.header());
        let branch = if succeeded { &txn.then } else { &txn.otherwise };
        let responses = response.op_responses();
        if responses.len() != branch.len() {
            return Err(StoreError::unexpected(
                &format!("{} results", branch.len()),
                &responses.len(),
            ));
        }
        let results = branch
            .iter()
            .zip(&responses)
            .map(|(op, response)| op_result(op, response, version))
            .collect::<Result<_, _>>()?;
        Ok(TxnOutcome { succeeded, version, results })
    }

    async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        let options = get_options(&range)?;
        let response = self.client.kv_client().get(range_start(&range), Some(options)).await;
        let response = response.map_err(|e| self.error("a range read", e, None))?;
        range_result(&response, range.count_only)
    }

    async fn grant_lease(&self, ttl: Duration) -> Result<LeaseInfo, StoreError> {
        if ttl.is_zero() {
            return Err(StoreError::Client(ClientError::Invalid(
                "a lease's TTL must be above 0".to_owned(),
            )));
        }
        let seconds = i64::try_from(ttl.as_millis().div_ceil(1_000)).unwrap_or(i64::MAX);
        let response = self.client.lease_client().grant(seconds, None).await;
        let response = response.map_err(|e| self.error("a lease grant", e, None))?;
        if !response.error().is_empty() {
            return Err(backend_said("a lease grant", response.error()));
        }
        let ttl_ms = revision(response.ttl()).saturating_mul(1_000);
        Ok(LeaseInfo { id: revision(response.id()), ttl_ms, remaining_ms: ttl_ms, keys: vec![] })
    }

    /// Renews over the lease's own keep-alive stream, opened on its first renewal (which also
    /// asks for the lease's keys); a later renewal answers with the TTL alone (`keys` empty). A
    /// stream that broke is opened again.
    async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        let id = lease_id(lease)?;
        let keeper = self.keeper(id);
        let mut slot = keeper.lock().await;
        if let Some((sender, answers)) = slot.as_mut() {
            let renewed = tokio::time::timeout(self.deadline, async {
                sender.keep_alive().await?;
                answers.message().await
            })
            .await;
            match renewed {
                Ok(Ok(Some(answer))) if answer.ttl() > 0 => {
                    let ttl_ms = revision(answer.ttl()).saturating_mul(1_000);
                    return Ok(LeaseInfo { id: lease, ttl_ms, remaining_ms: ttl_ms, keys: vec![] });
                }
                // etcd answers a renewal of an ended lease with a TTL of 0.
                Ok(Ok(Some(_))) => {
                    *slot = None;
                    drop(slot);
                    self.forget(id);
                    return Err(StoreError::NoSuchLease(lease));
                }
                // The stream ended, failed or did not answer in time: open a new one.
                Ok(Ok(None) | Err(_)) | Err(_) => *slot = None,
            }
        }
        let mut leases = self.client.lease_client();
        // The keep-alive stream's first answer renews the lease; etcd-client reads it and
        // reports an ended lease as this error.
        match leases.keep_alive(id).await {
            Ok(stream) => *slot = Some(stream),
            Err(etcd::Error::LeaseKeepAliveError(_)) => {
                drop(slot);
                self.forget(id);
                return Err(StoreError::NoSuchLease(lease));
            }
            Err(e) => return Err(self.error("a keep-alive", e, Some(lease))),
        }
        drop(slot);
        let options = etcd::LeaseTimeToLiveOptions::new().with_keys();
        let answer = leases.time_to_live(id, Some(options)).await;
        let answer = answer.map_err(|e| self.error("a lease's time to live", e, Some(lease)))?;
        // etcd answers for an ended lease with a TTL of -1.
        if answer.ttl() < 0 {
            return Err(StoreError::NoSuchLease(lease));
        }
        let keys = answer.keys().iter().map(|key| key_text(key)).collect::<Result<_, _>>()?;
        Ok(LeaseInfo {
            id: lease,
            ttl_ms: revision(answer.granted_ttl()).saturating_mul(1_000),
            remaining_ms: revision(answer.ttl()).saturating_mul(1_000),
            keys,
        })
    }

    async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        let id = lease_id(lease)?;
        self.forget(id);
        let response = self.client.lease_client().revoke(id).await;
        response.map(drop).map_err(|e| self.error("a lease revoke", e, Some(lease)))
    }

    async fn set_with_lease(
        &self,
        key: &str,
        value: Bytes,
        lease: LeaseId,
    ) -> Result<u64, StoreError> {
        let options = etcd::PutOptions::new().with_lease(lease_id(lease)?);
        let response = self.client.kv_client().put(key, value.to_vec(), Some(options)).await;
        let response = response.map_err(|e| self.error("a put", e, Some(lease)))?;
        Ok(header_revision(response.header()))
    }

    async fn watch(&self, range: KeyRange, from: u64) -> Result<Box<dyn KvWatch>, StoreError> {
        let whole = Range { keys: range, limit: None, count_only: false, revision: None };
        whole.validate()?;
        let from = from.max(1);
        let mut options = etcd::WatchOptions::new()
            .with_start_revision(etcd_revision(from)?)
            .with_progress_notify();
        options = match &whole.keys {
            KeyRange::Prefix(prefix) if prefix.is_empty() => options.with_all_keys(),
            KeyRange::Prefix(_) => options.with_prefix(),
            KeyRange::Between { end, .. } => options.with_range(end.as_bytes()),
        };
        let stream = self.client.watch_client().watch(range_start(&whole), Some(options)).await;
        let stream = stream.map_err(|e| self.error("starting a watch", e, None))?;
        Ok(Box::new(EtcdWatch { stream, next: from }))
    }
}

/// A watch on etcd: one gRPC watch stream.
struct EtcdWatch {
    stream: etcd::WatchStream,
    next: u64,
}

#[async_trait]
impl KvWatch for EtcdWatch {
    async fn next(&mut self) -> Result<WatchBatch, StoreError> {
        loop {
            let message = self.stream.message().await.map_err(|e| backend("a watch", e))?;
            let Some(response) = message else {
                return Err(backend_said("a watch", "the stream ended"));
            };
            if response.canceled() {
                if response.compact_revision() > 0 {
                    return Err(StoreError::Client(ClientError::Compacted {
                        requested: self.next,
                        oldest: revision(response.compact_revision()),
                    }));
                }
                return Err(backend_said(
                    "a watch",
                    &format!("cancelled: {}", response.cancel_reason()),
                ));
            }
            let progress = header_revision(response.header());
            if response.created() && response.events().is_empty() {
                continue;
            }
            let mut events = Vec::with_capacity(response.events().len());
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let change = match event.event_type() {
                    etcd::EventType::Put => Change::Put(versioned(kv)),
                    etcd::EventType::Delete => Change::Delete,
                };
                events.push(WatchEvent {
                    revision: revision(kv.mod_revision()),
                    key: key_text(kv.key())?,
                    change,
                });
            }
            // A batch of events says nothing of the revisions after its last one (a catching-up
            // watch may get the store's current revision in the header); only a progress
            // notification, with no events, vouches for its header.
            let progress = match events.last() {
                Some(last) => last.revision,
                None => progress,
            }
            .max(self.next.saturating_sub(1));
            self.next = progress + 1;
            return Ok(WatchBatch { events: events.into(), progress });
        }
    }
}
