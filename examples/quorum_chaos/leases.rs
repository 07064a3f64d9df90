//! Leases through every fault: clients grant a lease, put a key on it, keep it alive while
//! reading the key back, then revoke it or leave it to expire; what must hold is checked as
//! it happens.
//!
//! - A key on a lease whose grant or last keep-alive was *sent* less than the TTL ago (less a
//!   margin for the read's own trip) is there: a leader extends a lease to its own now plus
//!   the TTL, and a new leader gives every lease a whole TTL from its election, so no node
//!   ends a lease earlier.
//! - Once a revoke is acknowledged, the key is gone and the lease takes no more keys.
//! - A lease nobody keeps alive ends, with its key, once the faults are over.
//!
//! Operations whose outcome is unknown (no answer in time) are counted, not judged.

use std::time::{Duration, Instant};

use plus_quorum::{Cluster, LeaseId, RemoteNode, StoreError, WriteOp, WriteResult};
use rand::Rng;

/// The leases' time to live.
pub(crate) const TTL: Duration = Duration::from_secs(3);
/// How much earlier than the TTL a read must return to be judged: the read's own way from the
/// leader back to the client.
const MARGIN: Duration = Duration::from_millis(500);

/// What one lease client did and found.
#[derive(Debug, Default)]
pub(crate) struct Tally {
    pub ops: u64,
    pub ok: u64,
    pub unknown: u64,
    pub granted: u64,
    pub kept_alive: u64,
    pub revoked: u64,
    /// Leases left to expire, with their key.
    pub abandoned: Vec<(String, LeaseId)>,
    /// Leases left to expire whose key was gone after the faults.
    pub abandoned_ended: u64,
    /// What should have held and did not.
    pub violations: Vec<String>,
}

impl Tally {
    fn answered<T>(&mut self, result: &Result<T, StoreError>) {
        self.ops += 1;
        if result.is_ok() {
            self.ok += 1;
        } else {
            self.unknown += 1;
        }
    }

    /// Adds another client's tally to this one.
    pub(crate) fn merge(&mut self, other: Tally) {
        self.ops += other.ops;
        self.ok += other.ok;
        self.unknown += other.unknown;
        self.granted += other.granted;
        self.kept_alive += other.kept_alive;
        self.revoked += other.revoked;
        self.abandoned.extend(other.abandoned);
        self.abandoned_ended += other.abandoned_ended;
        self.violations.extend(other.violations);
    }
}

/// One lease client until `deadline`.
pub(crate) async fn client(
    store: Cluster<RemoteNode>,
    client: usize,
    seed: u64,
    deadline: Instant,
) -> Tally {
    let mut rng = plus_core::seeded_rng(seed);
    let mut tally = Tally::default();
    let mut n = 0u64;
    while Instant::now() < deadline {
        n += 1;
        let (key, value) = (format!("lease/{client}/{n}"), format!("v{n}"));
        let sent = Instant::now();
        let granted = store.grant_lease(TTL).await;
        tally.answered(&granted);
        let Ok(lease) = granted.map(|info| info.id) else { continue };
        tally.granted += 1;
        let mut alive_until = sent + TTL;
        let put = store
            .write(WriteOp::SetWithLease { key: key.clone(), value: value.clone().into(), lease })
            .await;
        tally.answered(&put);
        match put {
            Ok(WriteResult::Applied { .. }) => {}
            Ok(other) if Instant::now() + MARGIN < alive_until => tally
                .violations
                .push(format!("{key}: a put on lease {lease} granted just now answered {other:?}")),
            // Expired before the put (it took longer than the TTL), or unknown: left to end.
            _ => {
                tally.abandoned.push((key, lease));
                continue;
            }
        }
        for _ in 0..rng.random_range(1..5) {
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..600))).await;
            let sent = Instant::now();
            let kept = store.keep_alive(lease).await;
            tally.answered(&kept);
            if kept.is_ok() {
                tally.kept_alive += 1;
                alive_until = sent + TTL;
            }
            let read = store.get(&key).await;
            tally.answered(&read);
            if let Ok(found) = read
                && Instant::now() + MARGIN < alive_until
                && found.as_ref().map(|v| v.value.as_ref()) != Some(value.as_bytes())
            {
                tally.violations.push(format!(
                    "{key}: read {found:?} while lease {lease} had {} ms to live",
                    alive_until.saturating_duration_since(Instant::now()).as_millis()
                ));
            }
        }
        if rng.random_bool(0.3) {
            tally.abandoned.push((key, lease));
            continue;
        }
        let revoked = store.revoke_lease(lease).await;
        tally.answered(&revoked);
        if revoked.is_err() {
            tally.abandoned.push((key, lease));
            continue;
        }
        tally.revoked += 1;
        let read = store.get(&key).await;
        tally.answered(&read);
        if let Ok(Some(found)) = read {
            tally
                .violations
                .push(format!("{key}: still {found:?} after lease {lease} was revoked"));
        }
        let late = store
            .write(WriteOp::SetWithLease { key: key.clone(), value: value.into(), lease })
            .await;
        tally.answered(&late);
        if let Ok(answer @ WriteResult::Applied { .. }) = late {
            tally
                .violations
                .push(format!("{key}: a put on revoked lease {lease} answered {answer:?}"));
        }
    }
    tally
}

/// Once the faults are over: every abandoned lease's key must be gone within the TTL plus
/// `patience` (a leader elected late gives each lease a whole TTL from its election).
pub(crate) async fn expired(store: &Cluster<RemoteNode>, tally: &mut Tally, patience: Duration) {
    let deadline = Instant::now() + TTL + patience;
    let mut waiting = std::mem::take(&mut tally.abandoned);
    while !waiting.is_empty() && Instant::now() < deadline {
        let mut still = Vec::new();
        for (key, lease) in waiting {
            match store.get(&key).await {
                Ok(None) => tally.abandoned_ended += 1,
                _ => still.push((key, lease)),
            }
        }
        waiting = still;
        if !waiting.is_empty() {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    for (key, lease) in waiting {
        tally.violations.push(format!(
            "{key}: lease {lease} was left to expire, and its key is still there {} s after the faults",
            (TTL + patience).as_secs()
        ));
    }
}
