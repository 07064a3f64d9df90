//! Sessions: a lease kept alive for its holder, who is told at once when it is lost.
#![cfg(feature = "driver")]

use std::sync::Arc;
use std::time::Duration;

use plus_quorum::{
    Cluster, Config, InProcessNetwork, MemStorage, ReadOp, ReadResult, SessionLost, Start,
    StoreError,
};
use tokio::time::Instant;

fn start() -> (Arc<InProcessNetwork>, Cluster) {
    let net = InProcessNetwork::new();
    let handles = (1..=3u64)
        .map(|id| {
            let config = {
                let mut config = Config::new(id, vec![1, 2, 3]);
                config.start = Start::Bootstrap;
                config
            };
            net.spawn(config, MemStorage::new()).unwrap().handle
        })
        .collect();
    (net, Cluster::new(handles))
}

async fn exists(cluster: &Cluster, key: &str) -> bool {
    matches!(cluster.read(ReadOp::Get(key.into())).await.unwrap(), ReadResult::Value(Some(_)))
}

#[tokio::test(start_paused = true)]
async fn a_session_outlives_its_ttl_while_open_and_close_releases_its_lock_at_once() {
    let (_net, cluster) = start();
    let session = cluster.session(Duration::from_secs(2)).await.unwrap();
    let guard = session.lock("deploy/api").await.unwrap();
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(session.lost_reason(), None);
    assert!(exists(&cluster, &guard.key).await, "held five TTLs later");
    session.close().await.unwrap();
    assert!(!exists(&cluster, &guard.key).await, "released by the revoke, not the TTL");
}

#[tokio::test(start_paused = true)]
async fn a_revoked_session_is_lost_within_a_third_of_its_ttl() {
    let (_net, cluster) = start();
    let session = cluster.session(Duration::from_secs(3)).await.unwrap();
    cluster.revoke_lease(session.lease()).await.unwrap();
    let revoked = Instant::now();
    assert_eq!(session.lost().await, SessionLost::Ended(session.lease()));
    assert!(revoked.elapsed() <= Duration::from_secs(1) + Duration::from_millis(100));
    // A lock asked of a lost session fails instead of waiting.
    assert!(matches!(
        session.lock("x").await,
        Err(StoreError::SessionLost(_) | StoreError::NoSuchLease(_))
    ));
}

#[tokio::test(start_paused = true)]
async fn a_session_that_cannot_reach_a_quorum_is_lost_when_its_time_runs_out() {
    let (net, cluster) = start();
    let ttl = Duration::from_secs(2);
    let session = cluster.session(ttl).await.unwrap();
    let holder = session.lock("deploy/web").await.unwrap();
    // A second session waits behind the first for the same lock.
    let other = cluster.session(ttl).await.unwrap();
    let leader = cluster.leader().await.unwrap();
    let cut_at = Instant::now();
    for id in (1..=3).filter(|&id| id != leader) {
        net.isolate(id);
    }
    let (lost, waiting) = tokio::join!(session.lost(), other.lock("deploy/web"));
    assert!(matches!(lost, SessionLost::Unrenewed { .. }), "{lost:?}");
    assert!(cut_at.elapsed() <= ttl + Duration::from_millis(100), "told within the TTL");
    // The waiter is not left waiting: its lock fails (its own session lost, or the store
    // unable to answer).
    assert!(waiting.is_err(), "{waiting:?}");
    assert!(cut_at.elapsed() <= ttl * 6, "{:?}", cut_at.elapsed());
    drop(holder);
}

#[tokio::test(start_paused = true)]
async fn a_dropped_session_revokes_its_lease_and_the_next_candidate_leads() {
    let (_net, cluster) = start();
    let first = cluster.session(Duration::from_secs(30)).await.unwrap();
    let won = first.campaign("controllers", "a").await.unwrap();
    let second = cluster.session(Duration::from_secs(30)).await.unwrap();
    let waiting = tokio::spawn({
        let cluster = cluster.clone();
        async move {
            let second = second;
            let leadership = second.campaign("controllers", "b").await;
            drop(cluster);
            leadership.map(|l| l.key)
        }
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    drop(first);
    let started = Instant::now();
    let key = waiting.await.unwrap().unwrap();
    assert_ne!(key, won.key);
    assert!(started.elapsed() < Duration::from_secs(5), "not the 30 s TTL");
}
