//! Independent observers of the cluster: a watcher checked against the writes the clients saw
//! acknowledged, leases left to expire, and lock holders checked for overlap and token order.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use plus_quorum::{Change, Cluster, KeyRange, RemoteNode, StoreError};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Every change the watcher saw under the clients' prefix: (revision, key), in arrival order.
pub(crate) struct WatchLog {
    pub(crate) seen: Arc<Mutex<Vec<(u64, String)>>>,
    pub(crate) task: JoinHandle<Result<(), StoreError>>,
}

/// Watches every key the clients write, from revision `from`, until aborted.
pub(crate) fn watch_all(cluster: &Cluster<RemoteNode>, prefix: &str, from: u64) -> WatchLog {
    let seen: Arc<Mutex<Vec<(u64, String)>>> = Arc::default();
    let mut watcher = cluster.watch(KeyRange::Prefix(prefix.to_owned()), from);
    let log = seen.clone();
    let task = tokio::spawn(async move {
        loop {
            let batch = watcher.next().await?;
            let mut log = log.lock().await;
            for event in batch.events {
                if matches!(event.change, Change::Put(_)) {
                    log.push((event.revision, event.key));
                }
            }
        }
    });
    WatchLog { seen, task }
}

/// Watch gaps: acknowledged writes the watcher never saw, plus events out of revision order or
/// seen twice.
pub(crate) async fn watch_gaps(log: &WatchLog, acknowledged: &[(String, u64)]) -> usize {
    let seen = log.seen.lock().await;
    let disorder = seen.windows(2).filter(|w| (w[0].0, &w[0].1) >= (w[1].0, &w[1].1)).count();
    let set: BTreeSet<(u64, &str)> = seen.iter().map(|(r, k)| (*r, k.as_str())).collect();
    let missing = acknowledged
        .iter()
        .filter(|(key, version)| !set.contains(&(*version, key.as_str())))
        .count();
    disorder + missing
}

/// Grants short leases with a key each and never keeps them alive; counts the keys deleted
/// by expiry, and the ones deleted before their TTL had passed since the grant was sent.
pub(crate) async fn leases_left_to_expire(
    cluster: &Cluster<RemoteNode>,
    count: usize,
) -> Result<(usize, usize), StoreError> {
    let ttl = Duration::from_millis(300);
    let mut granted = Vec::new();
    for i in 0..count {
        let sent = Instant::now();
        let lease = cluster.grant_lease(ttl).await?;
        cluster.set_with_lease(&format!("lease-demo/{i}"), "x", lease.id).await?;
        granted.push((format!("lease-demo/{i}"), sent));
    }
    let (mut expired, mut early) = (0, 0);
    for (key, sent) in granted {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if cluster.get(&key).await?.is_none() {
                expired += 1;
                if sent.elapsed() < ttl {
                    early += 1;
                }
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok((expired, early))
}

/// Contenders taking one lock in turn until `until`; each holds it briefly.
pub(crate) struct LockTrial {
    holds: Arc<Mutex<Vec<(u64, Instant, Instant)>>>,
    errors: Arc<AtomicU64>,
    tasks: Vec<JoinHandle<()>>,
}

pub(crate) fn contend_for_a_lock(
    cluster: &Cluster<RemoteNode>,
    contenders: usize,
    until: Instant,
) -> LockTrial {
    let holds: Arc<Mutex<Vec<(u64, Instant, Instant)>>> = Arc::default();
    let errors = Arc::new(AtomicU64::new(0));
    let tasks = (0..contenders)
        .map(|_| {
            let (cluster, holds, errors) = (cluster.clone(), holds.clone(), errors.clone());
            tokio::spawn(async move {
                while Instant::now() < until {
                    if hold_once(&cluster, &holds).await.is_err() {
                        // A failover in the middle: try again.
                        errors.fetch_add(1, Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            })
        })
        .collect();
    LockTrial { holds, errors, tasks }
}

async fn hold_once(
    cluster: &Cluster<RemoteNode>,
    holds: &Mutex<Vec<(u64, Instant, Instant)>>,
) -> Result<(), StoreError> {
    let lease = cluster.grant_lease(Duration::from_secs(3)).await?;
    let keeper = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            while cluster.keep_alive(lease.id).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    let result = async {
        let guard = cluster.lock("lock/demo", lease.id).await?;
        let from = Instant::now();
        tokio::time::sleep(Duration::from_millis(15)).await;
        holds.lock().await.push((guard.token, from, Instant::now()));
        cluster.unlock(guard).await
    }
    .await;
    keeper.abort();
    let _ = cluster.revoke_lease(lease.id).await;
    result
}

impl LockTrial {
    /// Waits for the contenders; returns (holds, violations): two holders at once, or a later
    /// holder with a smaller fencing token.
    pub(crate) async fn finish(self) -> (usize, usize, u64) {
        for task in self.tasks {
            let _ = task.await;
        }
        let mut holds = self.holds.lock().await.clone();
        holds.sort_by_key(|(_, from, _)| *from);
        let violations = holds.windows(2).filter(|w| w[1].1 < w[0].2 || w[1].0 <= w[0].0).count();
        (holds.len(), violations, self.errors.load(Ordering::Relaxed))
    }
}
