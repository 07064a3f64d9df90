//! A lease kept alive for its holder, in the shape of etcd's `concurrency.Session`: the locks
//! and elections it holds live as long as it does, and its holder is told at once when it is
//! lost instead of finding out from a write that fails.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::driver::{Cluster, NodeApi, StoreError};
use crate::kv_client::KvClient;
use crate::lease::LeaseId;
use crate::recipes::{self, Leadership, LockGuard};

/// Why a [`Session`] ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionLost {
    /// The store says the lease is gone (it expired, or someone revoked it).
    #[error("lease {0} ended (expired or revoked)")]
    Ended(LeaseId),
    /// No keep-alive got through before the lease's time ran out: it must be taken as
    /// expired, whatever the store says later.
    #[error("lease {lease} was not kept alive before its time ran out: {last_error}")]
    Unrenewed {
        /// The lease.
        lease: LeaseId,
        /// The last keep-alive's error.
        last_error: String,
    },
    /// The holder closed the session.
    #[error("the session was closed")]
    Closed,
}

/// A lease granted with a TTL and kept alive in the background until the session is closed
/// or dropped (which revokes it), or lost ([`Session::lost`] resolves at once), on any
/// [`KvClient`]: [`Cluster::session`] for plus-quorum, [`Session::new`] for another store
/// (an [`EtcdClient`](crate::EtcdClient), say).
///
/// The holder judges the lease lost by its own clock: each keep-alive answer says how long the
/// lease has left, counted from when the keep-alive was sent, and once that time passes
/// without a renewal the session is lost even if the store was only unreachable. A lock or an
/// election won on the session is held as long as it is not lost.
#[derive(Debug)]
pub struct Session<K: KvClient + Clone + 'static> {
    store: K,
    lease: LeaseId,
    ttl: Duration,
    lost: watch::Receiver<Option<SessionLost>>,
    keeper: tokio::task::JoinHandle<()>,
    /// Whether dropping it revokes the lease (closing always does).
    revoke_on_drop: bool,
}

impl<N: NodeApi> Cluster<N> {
    /// [`Session::new`] on this cluster.
    ///
    /// # Errors
    /// [`StoreError`] when the lease cannot be granted.
    pub async fn session(&self, ttl: Duration) -> Result<Session<Self>, StoreError> {
        Session::new(self.clone(), ttl).await
    }
}

/// Renews `lease` until it is lost, then says why.
async fn keep_alive<K: KvClient>(
    cluster: K,
    lease: LeaseId,
    ttl: Duration,
    mut expires: Instant,
    tell: watch::Sender<Option<SessionLost>>,
) {
    let period = ttl / 3;
    let retry = (ttl / 10).max(Duration::from_millis(10));
    let mut next = Instant::now() + period;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(next) => {}
            () = tell.closed() => return,
        }
        let sent = Instant::now();
        let outcome = tokio::time::timeout_at(expires.max(sent), cluster.keep_alive(lease)).await;
        let last_error = match outcome {
            Ok(Ok(info)) => {
                expires = sent + Duration::from_millis(info.remaining_ms);
                next = (sent + period).min(expires);
                continue;
            }
            Ok(Err(StoreError::NoSuchLease(_))) => {
                let _ = tell.send(Some(SessionLost::Ended(lease)));
                return;
            }
            Ok(Err(err)) => err.to_string(),
            Err(_) => "no answer before the lease's time ran out".to_owned(),
        };
        if Instant::now() >= expires {
            tracing::warn!(lease, error = %last_error, "session lost: its lease was not kept alive in time");
            let _ = tell.send(Some(SessionLost::Unrenewed { lease, last_error }));
            return;
        }
        tracing::debug!(lease, error = %last_error, "keep-alive failed; trying again");
        next = (Instant::now() + retry).min(expires);
    }
}

impl<K: KvClient + Clone + 'static> Session<K> {
    /// Grants a lease of `ttl` on `store` and keeps it alive (a keep-alive every third of the
    /// TTL, and again soon after one fails) until the session is closed, dropped or lost.
    ///
    /// # Errors
    /// [`StoreError`] when the lease cannot be granted.
    pub async fn new(store: K, ttl: Duration) -> Result<Self, StoreError> {
        let granted_at = Instant::now();
        let lease = store.grant_lease(ttl).await?.id;
        let (tell, lost) = watch::channel(None);
        let keeper = tokio::spawn(keep_alive(store.clone(), lease, ttl, granted_at + ttl, tell));
        Ok(Self { store, lease, ttl, lost, keeper, revoke_on_drop: true })
    }

    /// The store the session's lease is on.
    #[must_use]
    pub fn store(&self) -> &K {
        &self.store
    }

    /// The session's lease.
    #[must_use]
    pub fn lease(&self) -> LeaseId {
        self.lease
    }

    /// The lease's TTL.
    #[must_use]
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Why the session was lost, if it was.
    #[must_use]
    pub fn lost_reason(&self) -> Option<SessionLost> {
        self.lost.borrow().clone()
    }

    /// Resolves when the session is lost, with why: `select!` it against the work the session
    /// protects.
    pub async fn lost(&self) -> SessionLost {
        let mut lost = self.lost.clone();
        match lost.wait_for(Option::is_some).await {
            Ok(reason) => reason.clone().unwrap_or(SessionLost::Closed),
            // The keeper is gone without a word only when the session is being closed.
            Err(_) => SessionLost::Closed,
        }
    }

    /// A receiver that changes once, to `Some(reason)`, when the session is lost: for holders
    /// that poll, or hand the news to another task.
    #[must_use]
    pub fn watch_lost(&self) -> watch::Receiver<Option<SessionLost>> {
        self.lost.clone()
    }

    /// Takes the lock `name` on the session's lease, waiting for earlier holders; gives up with
    /// [`StoreError::SessionLost`] if the session is lost first. The lock is held while the
    /// session lives: [`Session::lost`] tells when it no longer is.
    ///
    /// # Errors
    /// [`StoreError::SessionLost`]; other [`StoreError`]s.
    pub async fn lock(&self, name: &str) -> Result<LockGuard, StoreError> {
        tokio::select! {
            guard = recipes::lock(&self.store, name, self.lease) => guard,
            lost = self.lost() => Err(StoreError::SessionLost(lost.to_string())),
        }
    }

    /// Campaigns in election `name` with `value` on the session's lease, waiting for earlier
    /// candidates; gives up with [`StoreError::SessionLost`] if the session is lost first.
    ///
    /// # Errors
    /// [`StoreError::SessionLost`]; other [`StoreError`]s.
    pub async fn campaign(
        &self,
        name: &str,
        value: impl Into<Bytes>,
    ) -> Result<Leadership, StoreError> {
        tokio::select! {
            won = recipes::campaign(&self.store, name, self.lease, value.into()) => won,
            lost = self.lost() => Err(StoreError::SessionLost(lost.to_string())),
        }
    }

    /// Whether dropping the session revokes its lease (the default). A holder that stands for
    /// a process which may die without a word (a crash test, say) turns it off: its lease then
    /// ends with its TTL, as a crashed holder's would.
    pub fn set_revoke_on_drop(&mut self, revoke: bool) {
        self.revoke_on_drop = revoke;
    }

    /// Ends the session: stops keeping the lease alive and revokes it, so its locks and
    /// elections are released at once rather than when the TTL runs out.
    ///
    /// # Errors
    /// [`StoreError`] from the revoke (the lease then ends with its TTL); a lease already gone
    /// is not an error.
    pub async fn close(mut self) -> Result<(), StoreError> {
        self.keeper.abort();
        self.revoke_on_drop = false;
        match self.store.revoke_lease(self.lease).await {
            Ok(()) | Err(StoreError::NoSuchLease(_)) => Ok(()),
            Err(err) => Err(err),
        }
    }
}

impl<K: KvClient + Clone + 'static> Drop for Session<K> {
    fn drop(&mut self) {
        self.keeper.abort();
        if !self.revoke_on_drop {
            return;
        }
        // Revoked in the background when a runtime is there to do it; otherwise the lease ends
        // with its TTL.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let (cluster, lease) = (self.store.clone(), self.lease);
            runtime.spawn(async move {
                if let Err(err) = cluster.revoke_lease(lease).await {
                    tracing::debug!(lease, error = %err, "a dropped session's lease was not revoked; it ends with its TTL");
                }
            });
        }
    }
}
