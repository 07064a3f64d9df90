//! The tokio driver over the in-process transport, in paused (simulated) time.
#![cfg(feature = "driver")]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use plus_quorum::{
    ClientError, Cluster, Config, InProcessNetwork, MemStorage, ReadOp, ReadResult, Start,
    StoreError, WriteOp, WriteResult, compare, spawn_node,
};

struct Harness {
    net: Arc<InProcessNetwork>,
    cluster: Cluster,
    storages: Vec<MemStorage>,
}

fn config(id: u64, start: Start) -> Config {
    {
        let mut config = Config::new(id, vec![1, 2, 3]);
        config.start = start;
        config
    }
}

fn start() -> Harness {
    let net = InProcessNetwork::new();
    let storages: Vec<MemStorage> = (0..3).map(|_| MemStorage::new()).collect();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let node =
            net.spawn(config(id, Start::Bootstrap), storages[(id - 1) as usize].clone()).unwrap();
        handles.push(node.handle);
    }
    Harness { net, cluster: Cluster::new(handles), storages }
}

fn set(key: &str, value: &str) -> WriteOp {
    WriteOp::Set { key: key.into(), value: Bytes::copy_from_slice(value.as_bytes()) }
}

async fn get(cluster: &Cluster, key: &str) -> Option<Bytes> {
    match cluster.read(ReadOp::Get(key.into())).await.unwrap() {
        ReadResult::Value(v) => v.map(|v| v.value),
        other => panic!("{other:?}"),
    }
}

#[tokio::test(start_paused = true)]
async fn writes_and_reads_route_to_the_leader() {
    let h = start();
    assert!(matches!(h.cluster.write(set("a", "1")).await.unwrap(), WriteResult::Applied { .. }));
    assert_eq!(get(&h.cluster, "a").await.as_deref(), Some(&b"1"[..]));
    // A follower answers with a hint rather than hanging.
    let leader = h.cluster.leader().await.unwrap();
    let follower = h.cluster.handles().into_iter().find(|n| n.id() != leader).unwrap();
    let err = follower.write(set("b", "2"), Duration::from_secs(1)).await.unwrap_err();
    assert_eq!(err, StoreError::Client(ClientError::NotLeader { leader: Some(leader) }));
}

#[tokio::test(start_paused = true)]
async fn leader_failover_keeps_acknowledged_writes() {
    let h = start();
    for i in 0..20 {
        h.cluster.write(set(&format!("k{i}"), "v")).await.unwrap();
    }
    let old = h.cluster.leader().await.unwrap();
    h.net.isolate(old);
    for handle in h.cluster.handles() {
        if handle.id() == old {
            handle.stop().await;
        }
    }
    // The next write re-routes to the new leader.
    h.cluster.write(set("after", "failover")).await.unwrap();
    let new = h.cluster.leader().await.unwrap();
    assert_ne!(new, old);
    for i in 0..20 {
        assert!(get(&h.cluster, &format!("k{i}")).await.is_some(), "k{i} lost");
    }
}

#[tokio::test(start_paused = true)]
async fn restarted_followers_catch_up_wiped_or_not() {
    let h = start();
    for i in 0..50 {
        h.cluster.write(set(&format!("k{i}"), "v")).await.unwrap();
    }
    let leader = h.cluster.leader().await.unwrap();
    let followers: Vec<u64> = (1..=3).filter(|&id| id != leader).collect();
    for (n, &id) in followers.iter().enumerate() {
        let handle = h.cluster.handles().into_iter().find(|x| x.id() == id).unwrap();
        handle.stop().await;
        h.net.isolate(id);
        h.cluster
            .write(set(&format!("while-down-{id}"), "v"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        // First follower comes back with its memory wiped, the second with it kept.
        let storage =
            if n == 0 { MemStorage::new() } else { h.storages[(id - 1) as usize].clone() };
        let mut config = config(id, Start::Rejoin);
        config.seed = id + 10;
        let node = spawn_node(config, storage, h.net.clone()).unwrap();
        h.net.register(node.handle.clone());
        h.cluster.replace(node.handle.clone());
        // Caught up: same applied index and digest as the leader.
        let mut same = false;
        for _ in 0..200 {
            tokio::time::sleep(Duration::from_millis(50)).await;
            let mut reports = Vec::new();
            for x in h.cluster.handles() {
                reports.push(x.inspect().await.unwrap());
            }
            if compare(&reports).identical() && reports.iter().all(|r| !r.recovering) {
                same = true;
                break;
            }
        }
        assert!(same, "node {id} did not catch up");
        let key = format!("while-down-{id}");
        assert!(node.handle.local_get(&key).await.unwrap().is_some(), "{key} missing on node {id}");
    }
}

#[tokio::test(start_paused = true)]
async fn every_call_has_a_deadline() {
    let h = start();
    h.cluster.write(set("a", "1")).await.unwrap();
    // Cut everyone off: no majority anywhere.
    for id in 1..=3 {
        h.net.isolate(id);
    }
    let mut cluster = h.cluster.clone();
    cluster.deadline = Duration::from_secs(2);
    let started = tokio::time::Instant::now();
    let result = cluster.write(set("b", "2")).await;
    assert!(result.is_err(), "{result:?}");
    assert!(started.elapsed() <= Duration::from_secs(3));
}

/// With durable storage, acknowledged writes survive a whole-cluster restart.
#[cfg(feature = "file-storage")]
#[tokio::test(start_paused = true)]
async fn whole_cluster_restart_with_file_storage() {
    use plus_quorum::FileStorage;
    let base = std::env::temp_dir().join(format!("plus-quorum-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    let boot = |start: Start| {
        let net = InProcessNetwork::new();
        let mut handles = Vec::new();
        for id in 1..=3u64 {
            let storage = FileStorage::open(base.join(format!("node{id}"))).unwrap();
            let node = spawn_node(config(id, start), storage, net.clone()).unwrap();
            net.register(node.handle.clone());
            handles.push(node.handle);
        }
        Cluster::new(handles)
    };
    let cluster = boot(Start::Bootstrap);
    for i in 0..30 {
        cluster.write(set(&format!("k{i}"), &format!("v{i}"))).await.unwrap();
    }
    for h in cluster.handles() {
        h.stop().await;
    }
    let cluster = boot(Start::Rejoin);
    for i in 0..30 {
        assert_eq!(get(&cluster, &format!("k{i}")).await, Some(Bytes::from(format!("v{i}"))));
    }
    for h in cluster.handles() {
        h.stop().await;
    }
    std::fs::remove_dir_all(&base).unwrap();
}

/// The source talk's Quorumer-style calls on the client.
#[tokio::test(start_paused = true)]
async fn convenience_calls() {
    use plus_quorum::Expect;
    let h = start();
    let c = &h.cluster;
    let v1 = c.set("release/1", "running").await.unwrap();
    c.set("release/2", "done").await.unwrap();
    c.set("lock/api", "me").await.unwrap();
    assert_eq!(c.get("release/1").await.unwrap().unwrap().version, v1);
    assert_eq!(c.keys("release/*").await.unwrap(), ["release/1", "release/2"]);
    assert_eq!(c.len().await.unwrap(), 3);
    let stale = c.compare_and_set("release/1", Expect::Version(v1 - 1), "x").await.unwrap();
    assert!(matches!(stale, WriteResult::CompareFailed { ref key, .. } if key == "release/1"));
    assert!(matches!(
        c.compare_and_set("release/1", Expect::Version(v1), "done").await.unwrap(),
        WriteResult::Applied { .. }
    ));
    assert!(matches!(
        c.compare_and_delete("lock/api", Expect::Value(Bytes::from("me"))).await.unwrap(),
        WriteResult::Applied { .. }
    ));
    c.delete("release/2").await.unwrap();
    let both = c.multi_get(vec!["release/1".into(), "release/2".into()]).await.unwrap();
    assert_eq!(both[0].as_ref().unwrap().value, "done");
    assert!(both[1].is_none());
}

/// Bad input fails at once with a typed error: no wait for a leader, no round trip.
#[tokio::test(start_paused = true)]
async fn an_empty_cluster_or_a_bad_key_fails_at_once() {
    let empty: Cluster = Cluster::new(Vec::new());
    let started = tokio::time::Instant::now();
    assert!(matches!(empty.get("k").await, Err(StoreError::EmptyCluster)));
    assert!(matches!(empty.set("k", "v").await, Err(StoreError::EmptyCluster)));
    assert_eq!(started.elapsed(), Duration::ZERO, "no waiting for a leader that cannot exist");
    let h = start();
    let huge = "k".repeat(plus_quorum::MAX_KEY_LEN + 1);
    for result in [
        h.cluster.set(&huge, "v").await.map(|_| ()),
        h.cluster.set("", "v").await.map(|_| ()),
        h.cluster.get(&huge).await.map(|_| ()),
        h.cluster.multi_get(Vec::new()).await.map(|_| ()),
    ] {
        assert!(matches!(result, Err(StoreError::Client(ClientError::Invalid(_)))), "{result:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn a_lease_holds_its_keys_while_kept_alive_and_drops_them_when_not() {
    let h = start();
    let lease = h.cluster.grant_lease(Duration::from_secs(2)).await.unwrap();
    h.cluster.set_with_lease("lock/api", "holder-1", lease.id).await.unwrap();
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(700)).await;
        let info = h.cluster.keep_alive(lease.id).await.unwrap();
        assert_eq!(info.keys, ["lock/api"]);
    }
    assert!(get(&h.cluster, "lock/api").await.is_some(), "kept alive for 3.5 s of a 2 s TTL");
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert_eq!(get(&h.cluster, "lock/api").await, None, "gone once not kept alive");
    assert_eq!(
        h.cluster.keep_alive(lease.id).await.unwrap_err(),
        StoreError::NoSuchLease(lease.id)
    );
    assert_eq!(
        h.cluster.set_with_lease("k", "v", lease.id).await.unwrap_err(),
        StoreError::NoSuchLease(lease.id)
    );
    let zero = h.cluster.grant_lease(Duration::ZERO).await.unwrap_err();
    assert!(matches!(zero, StoreError::Client(ClientError::Invalid(_))), "{zero}");
}

#[tokio::test(start_paused = true)]
async fn a_leader_failover_gives_leases_a_full_ttl_and_revoke_ends_them_at_once() {
    let h = start();
    let lease = h.cluster.grant_lease(Duration::from_secs(3)).await.unwrap();
    h.cluster.set_with_lease("election/controller", "replica-a", lease.id).await.unwrap();
    let kept = tokio::time::Instant::now();
    h.cluster.keep_alive(lease.id).await.unwrap();
    let leader = h.cluster.leader().await.unwrap();
    h.net.isolate(leader);
    // A new leader takes over; the lease lives at least its TTL after the last keep-alive.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(kept.elapsed() < Duration::from_secs(3));
    assert!(get(&h.cluster, "election/controller").await.is_some());
    let info = h.cluster.time_to_live(lease.id).await.unwrap();
    assert!(info.remaining_ms > 1_000, "the new leader restarted the TTL: {info:?}");
    h.cluster.revoke_lease(lease.id).await.unwrap();
    assert_eq!(get(&h.cluster, "election/controller").await, None);
    assert_eq!(h.cluster.leases().await.unwrap(), Vec::<u64>::new());
}

#[tokio::test(start_paused = true)]
async fn transactions_and_ranges_through_the_client() {
    use plus_quorum::{Compare, Expect, Range, Txn, TxnOp, TxnOpResult};
    let h = start();
    let claim = |owner: &str| Txn {
        when: vec![Compare::new("release/api/owner", Expect::Absent)],
        then: vec![TxnOp::Set {
            key: "release/api/owner".into(),
            value: Bytes::copy_from_slice(owner.as_bytes()),
            lease: None,
        }],
        otherwise: vec![TxnOp::Get("release/api/owner".into())],
    };
    let first = h.cluster.txn(claim("controller-a")).await.unwrap();
    assert!(first.succeeded);
    let second = h.cluster.txn(claim("controller-b")).await.unwrap();
    assert!(!second.succeeded, "one owner at a time");
    let TxnOpResult::Get(Some(owner)) = &second.results[0] else { panic!("{second:?}") };
    assert_eq!(owner.value, Bytes::from("controller-a"));
    for i in 0..5 {
        h.cluster.set(&format!("release/api/host-{i}"), "done").await.unwrap();
    }
    let page = h.cluster.range(Range::prefix("release/api/host-").limit(2)).await.unwrap();
    assert_eq!(page.kvs.len(), 2);
    assert_eq!((page.count, page.more), (5, true));
    let bad = h.cluster.range(Range::prefix("x").limit(0)).await.unwrap_err();
    assert!(matches!(bad, StoreError::Client(ClientError::Invalid(_))), "{bad}");
}

#[tokio::test(start_paused = true)]
async fn a_watch_sees_every_change_in_order_across_a_leader_failover() {
    use plus_quorum::{Change, KeyRange, Range};
    let h = start();
    let start_revision = h.cluster.range(Range::prefix("cfg/")).await.map(|_| 1).unwrap();
    let mut watcher = h.cluster.watch(KeyRange::Prefix("cfg/".into()), start_revision);
    let mut expected = Vec::new();
    for i in 0..4 {
        let version = h.cluster.set(&format!("cfg/{i}"), "on").await.unwrap();
        expected.push((version, format!("cfg/{i}"), true));
    }
    h.cluster.set("elsewhere", "x").await.unwrap();
    let leader = h.cluster.leader().await.unwrap();
    h.net.isolate(leader);
    // Past an election, and past the old leader stepping down for want of a quorum.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let version = h.cluster.set("cfg/9", "after failover").await.unwrap();
    expected.push((version, "cfg/9".into(), true));
    let lease = h.cluster.grant_lease(Duration::from_millis(500)).await.unwrap();
    let version = h.cluster.set_with_lease("cfg/leased", "v", lease.id).await.unwrap();
    expected.push((version, "cfg/leased".into(), true));
    let mut seen = Vec::new();
    while seen.len() < expected.len() + 1 {
        let batch = watcher.next().await.unwrap();
        for event in batch.events {
            seen.push((event.revision, event.key, matches!(event.change, Change::Put(_))));
        }
    }
    // The lease ended by itself: its key's deletion is the last change.
    let expiry = seen.pop().unwrap();
    assert_eq!((expiry.1.as_str(), expiry.2), ("cfg/leased", false));
    assert_eq!(seen, expected, "every change, in order, no gap, no duplicate");
}

/// A watcher's batches stay within its limit, and together hold every change once.
#[tokio::test(start_paused = true)]
async fn a_watch_batch_never_exceeds_its_limit() {
    use plus_quorum::KeyRange;
    let h = start();
    for i in 0..25 {
        h.cluster.set(&format!("w/{i:02}"), "v").await.unwrap();
    }
    let limit = std::num::NonZeroUsize::new(4).unwrap();
    let mut watcher = h.cluster.watch(KeyRange::Prefix("w/".into()), 1).max_events(limit);
    let mut keys = Vec::new();
    while keys.len() < 25 {
        let batch = watcher.next().await.unwrap();
        assert!(batch.events.len() <= 4, "{} events", batch.events.len());
        keys.extend(batch.events.into_iter().map(|e| e.key));
    }
    let expected: Vec<String> = (0..25).map(|i| format!("w/{i:02}")).collect();
    assert_eq!(keys, expected);
}

#[tokio::test(start_paused = true)]
async fn a_watch_behind_the_history_fails_with_the_oldest_revision() {
    use plus_quorum::{ClientError, KeyRange, StoreError};
    let net = InProcessNetwork::new();
    let handles: Vec<_> = (1..=3u64)
        .map(|id| {
            let mut config = config(id, Start::Bootstrap);
            config.watch_history = 4;
            net.spawn(config, MemStorage::new()).unwrap().handle
        })
        .collect();
    let cluster = Cluster::new(handles);
    for i in 0..10 {
        cluster.set(&format!("k{i}"), "v").await.unwrap();
    }
    let err = cluster.watch(KeyRange::Prefix(String::new()), 1).next().await.unwrap_err();
    assert!(
        matches!(err, StoreError::Client(ClientError::Compacted { requested: 1, oldest }) if oldest > 1),
        "{err}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_lock_has_one_holder_at_a_time_wakes_the_next_and_outlives_no_lease() {
    let h = start();
    let ttl = Duration::from_secs(2);
    let first = h.cluster.grant_lease(ttl).await.unwrap();
    let second = h.cluster.grant_lease(ttl).await.unwrap();
    let third = h.cluster.grant_lease(ttl).await.unwrap();
    let held = h.cluster.lock("lock/release/api", first.id).await.unwrap();
    // Two waiters queue behind it.
    let waiter = |lease: u64| {
        let cluster = h.cluster.clone();
        tokio::spawn(async move {
            let keep = cluster.clone();
            let keeper = tokio::spawn(async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    if keep.keep_alive(lease).await.is_err() {
                        return;
                    }
                }
            });
            let guard = cluster.lock("lock/release/api", lease).await.unwrap();
            let at = tokio::time::Instant::now();
            (guard, at, keeper)
        })
    };
    let second_waits = waiter(second.id);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let third_waits = waiter(third.id);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!second_waits.is_finished() && !third_waits.is_finished(), "the lock is held");
    h.cluster.keep_alive(first.id).await.unwrap();
    h.cluster.unlock(held.clone()).await.unwrap();
    let (second_guard, _, second_keeper) = second_waits.await.unwrap();
    assert!(second_guard.token > held.token, "fencing tokens grow: {second_guard:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!third_waits.is_finished(), "one release wakes one waiter");
    // The second holder dies: its lease is not kept alive, and the lock passes on by itself.
    second_keeper.abort();
    let died = tokio::time::Instant::now();
    let (third_guard, got_it, third_keeper) = third_waits.await.unwrap();
    assert!(got_it - died >= Duration::from_millis(1_000), "not before the dead holder's TTL");
    assert!(third_guard.token > second_guard.token);
    third_keeper.abort();
}

#[tokio::test(start_paused = true)]
async fn an_election_has_one_leader_which_observers_follow() {
    let h = start();
    let a = h.cluster.grant_lease(Duration::from_secs(5)).await.unwrap();
    let b = h.cluster.grant_lease(Duration::from_secs(5)).await.unwrap();
    let leader = h.cluster.campaign("controller", a.id, "replica-a:7000").await.unwrap();
    let seen = h.cluster.election_leader("controller").await.unwrap().unwrap();
    assert_eq!(seen.1.value, Bytes::from("replica-a:7000"));
    let cluster = h.cluster.clone();
    let standby =
        tokio::spawn(async move { cluster.campaign("controller", b.id, "replica-b").await });
    h.cluster.proclaim(&leader, "replica-a:7001").await.unwrap();
    let changed = h.cluster.observe_election("controller", Some(&seen)).await.unwrap().unwrap();
    assert_eq!(changed.1.value, Bytes::from("replica-a:7001"), "an observer sees the new value");
    assert!(!standby.is_finished());
    h.cluster.resign(leader.clone()).await.unwrap();
    let next = standby.await.unwrap().unwrap();
    assert!(next.revision > leader.revision);
    assert_eq!(
        h.cluster.proclaim(&leader, "too late").await.unwrap_err(),
        StoreError::NotElected("controller".into()),
        "a resigned leader cannot proclaim"
    );
    let now = h.cluster.election_leader("controller").await.unwrap().unwrap();
    assert_eq!(now.1.value, Bytes::from("replica-b"));
}

/// A range at a past revision is one consistent view of the keys as they were then; bad
/// revisions are typed errors.
#[tokio::test(start_paused = true)]
async fn ranges_read_the_past_within_the_history_kept() {
    use plus_quorum::{Range, Txn, TxnOp};
    let h = start();
    let c = &h.cluster;
    let revision = |r: WriteResult| match r {
        WriteResult::Applied { version } => version,
        other => panic!("{other:?}"),
    };
    let first = revision(c.write(set("app/a", "1")).await.unwrap());
    let second = revision(c.write(set("app/b", "1")).await.unwrap());
    c.write(set("app/a", "2")).await.unwrap();
    c.write(WriteOp::Delete { key: "app/b".into() }).await.unwrap();
    c.write(set("app/c", "1")).await.unwrap();
    let view = |r: plus_quorum::RangeResult| {
        r.kvs
            .into_iter()
            .map(|(k, v)| format!("{k}={}", String::from_utf8_lossy(&v.value)))
            .collect::<Vec<_>>()
    };
    let at = |revision: u64| Range::prefix("app/").at_revision(revision);
    assert_eq!(view(c.range(at(first)).await.unwrap()), ["app/a=1"]);
    assert_eq!(view(c.range(at(second)).await.unwrap()), ["app/a=1", "app/b=1"]);
    assert_eq!(view(c.range(Range::prefix("app/")).await.unwrap()), ["app/a=2", "app/c=1"]);
    let counted = c.range(at(second).count_only()).await.unwrap();
    assert_eq!((counted.count, counted.kvs.len()), (2, 0));
    let limited = c.range(at(second).limit(1)).await.unwrap();
    assert_eq!((view(limited.clone()), limited.more), (vec!["app/a=1".to_owned()], true));
    // The future, revision 0 and a past range inside a transaction are refused.
    for bad in [at(1_000_000), at(0)] {
        let e = c.range(bad).await.unwrap_err();
        assert!(matches!(e, StoreError::Client(ClientError::Invalid(_))), "{e:?}");
    }
    let txn = Txn { when: vec![], then: vec![TxnOp::Range(at(first))], otherwise: vec![] };
    let e = c.write(WriteOp::Txn(txn)).await.unwrap_err();
    assert!(matches!(e, StoreError::Client(ClientError::Invalid(_))), "{e:?}");
}

/// Beyond the watch history, a past read is compacted, and says how far back it can go.
#[tokio::test(start_paused = true)]
async fn a_past_range_beyond_the_history_is_compacted() {
    let net = InProcessNetwork::new();
    let handle = net
        .spawn(
            {
                let mut config = Config::new(1, vec![1]);
                config.watch_history = 3;
                config
            },
            MemStorage::new(),
        )
        .unwrap()
        .handle;
    let c = Cluster::new(vec![handle]);
    for i in 0..10 {
        c.write(set(&format!("k{i}"), "v")).await.unwrap();
    }
    let e = c.range(plus_quorum::Range::prefix("k").at_revision(2)).await.unwrap_err();
    let StoreError::Client(ClientError::Compacted { requested: 2, oldest }) = e else {
        panic!("{e:?}")
    };
    let back = c.range(plus_quorum::Range::prefix("k").at_revision(oldest)).await.unwrap();
    assert!(back.count > 0 && back.count < 10, "{back:?}");
}

/// A node that counts the calls it is sent.
#[derive(Clone)]
struct Counted {
    node: plus_quorum::NodeHandle,
    calls: Arc<std::sync::atomic::AtomicUsize>,
}

#[plus_quorum::async_trait]
impl plus_quorum::NodeApi for Counted {
    fn id(&self) -> plus_quorum::NodeId {
        self.node.id()
    }
    async fn write(&self, op: WriteOp, deadline: Duration) -> Result<WriteResult, StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.node.write(op, deadline).await
    }
    async fn read(&self, op: ReadOp, deadline: Duration) -> Result<ReadResult, StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.node.read(op, deadline).await
    }
    async fn status(&self) -> Result<plus_quorum::Status, StoreError> {
        self.node.status().await
    }
    async fn watch(
        &self,
        request: plus_quorum::WatchRequest,
        wait: Duration,
    ) -> Result<plus_quorum::WatchBatch, StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.node.watch(request, wait).await
    }
    async fn change_cluster(
        &self,
        change: plus_quorum::ClusterChange,
        deadline: Duration,
    ) -> Result<plus_quorum::ClusterChanged, StoreError> {
        self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.node.change_cluster(change, deadline).await
    }
    async fn membership(&self) -> Result<plus_quorum::Membership, StoreError> {
        self.node.membership().await
    }
}

/// A client that found the leader past a stopped node starts at the leader from then on,
/// instead of trying the stopped node first on every call (over a network, each such try
/// waits for a reconnect that cannot come).
#[tokio::test(start_paused = true)]
async fn the_client_remembers_the_leader_that_answered() {
    let h = start();
    h.cluster.set("warm", "up").await.unwrap();
    let leader = h.cluster.leader().await.unwrap();
    let mut handles = h.cluster.handles();
    let follower = handles.iter().position(|n| n.id() != leader).unwrap();
    let stopped = handles.remove(follower);
    stopped.stop().await;
    let leading = handles.iter().position(|n| n.id() == leader).unwrap();
    let leader_handle = handles.remove(leading);
    // The stopped follower first, the leader second: a fresh client meets them in that order.
    let order = [stopped, leader_handle, handles.remove(0)];
    let counted: Vec<Counted> =
        order.into_iter().map(|node| Counted { node, calls: Arc::default() }).collect();
    let client = Cluster::new(counted.clone());
    client.set("a", "1").await.unwrap();
    let before = counted[0].calls.load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(before, 1, "the first call tries the stopped node once");
    for i in 0..10 {
        client.set("a", format!("{i}")).await.unwrap();
        client.get("a").await.unwrap();
    }
    assert_eq!(counted[0].calls.load(std::sync::atomic::Ordering::SeqCst), before);
    assert_eq!(counted[1].calls.load(std::sync::atomic::Ordering::SeqCst), 21);
}

/// Storage whose every write takes a while (an fsync, say), counting the appends it gets.
struct SlowDisk {
    inner: MemStorage,
    appends: Arc<std::sync::atomic::AtomicUsize>,
    /// Appends past this many fail as a full disk would.
    fail_after: usize,
}

/// The methods a test disk leaves to its `inner` `MemStorage`, and its writes blocking (so the
/// driver writes on a blocking thread, as for a real disk).
macro_rules! passed_to_inner {
    () => {
        fn recover(&mut self) -> Result<Option<plus_quorum::Recovered>, plus_quorum::StorageError> {
            self.inner.recover()
        }
        fn save_hard_state(
            &mut self,
            state: &plus_quorum::HardState,
        ) -> Result<(), plus_quorum::StorageError> {
            self.inner.save_hard_state(state)
        }
        fn truncate_from(&mut self, index: u64) -> Result<(), plus_quorum::StorageError> {
            self.inner.truncate_from(index)
        }
        fn writes_block(&self) -> bool {
            true
        }
    };
}

impl plus_quorum::Storage for SlowDisk {
    passed_to_inner!();
    fn append(&mut self, entries: &[plus_quorum::Entry]) -> Result<(), plus_quorum::StorageError> {
        let done = self.appends.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(5));
        if done >= self.fail_after {
            return Err(plus_quorum::StorageError::new(
                plus_quorum::StorageErrorKind::Full,
                "no space left on the simulated device",
            ));
        }
        self.inner.append(entries)
    }
    fn save_snapshot(
        &mut self,
        snapshot: &plus_quorum::Snapshot,
    ) -> Result<(), plus_quorum::StorageError> {
        self.inner.save_snapshot(snapshot)
    }
}

/// Group commit: while one write is on its way to the disk, the node goes on taking requests,
/// and writes all they added in the next write. 200 concurrent writes to nodes whose every
/// append takes 5 ms need far fewer appends than writes.
#[tokio::test]
async fn writes_that_arrive_during_a_slow_append_share_the_next_one() {
    let net = InProcessNetwork::new();
    let appends: Vec<Arc<std::sync::atomic::AtomicUsize>> =
        (0..3).map(|_| Arc::default()).collect();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let disk = SlowDisk {
            inner: MemStorage::new(),
            appends: Arc::clone(&appends[id as usize - 1]),
            fail_after: usize::MAX,
        };
        handles.push(net.spawn(config(id, Start::Bootstrap), disk).unwrap().handle);
    }
    let cluster = Cluster::new(handles.clone());
    cluster.set("warm", "up").await.unwrap();
    let before: usize = appends.iter().map(|a| a.load(std::sync::atomic::Ordering::SeqCst)).sum();
    let writes: Vec<_> = (0..200)
        .map(|i| {
            let cluster = cluster.clone();
            tokio::spawn(async move { cluster.set(&format!("k{i}"), "v").await })
        })
        .collect();
    for write in writes {
        write.await.unwrap().unwrap();
    }
    let after: usize = appends.iter().map(|a| a.load(std::sync::atomic::Ordering::SeqCst)).sum();
    let per_node = (after - before) as f64 / 3.0;
    assert!(per_node < 100.0, "{per_node} appends per node for 200 writes");
    println!("200 writes took {per_node:.1} appends per node");
    for h in handles {
        h.stop().await;
    }
}

/// A write that fails on the disk, on a blocking thread, halts the node and is never
/// acknowledged: once every node's disk is full, no write succeeds, and the ones before stay.
#[tokio::test]
async fn a_failed_blocking_write_halts_the_node_and_acknowledges_nothing() {
    let net = InProcessNetwork::new();
    let mut handles = Vec::new();
    let mut storages = Vec::new();
    for id in 1..=3u64 {
        let inner = MemStorage::new();
        storages.push(inner.clone());
        let disk = SlowDisk { inner, appends: Arc::default(), fail_after: 6 };
        handles.push(net.spawn(config(id, Start::Bootstrap), disk).unwrap().handle);
    }
    let mut cluster = Cluster::new(handles.clone());
    cluster.deadline = Duration::from_secs(3);
    let mut acknowledged = Vec::new();
    for i in 0..20 {
        match cluster.set(&format!("k{i}"), "v").await {
            Ok(_) => acknowledged.push(i),
            Err(_) => break,
        }
    }
    assert!(acknowledged.len() < 20, "writes went on after every disk was full");
    assert!(!acknowledged.is_empty(), "the first writes had room");
    for i in &acknowledged {
        // Every acknowledged write is in a majority of the stores.
        let holding = storages
            .iter()
            .filter(|s| {
                plus_quorum::Storage::recover(&mut MemStorage::clone(s)).ok().flatten().is_some_and(
                    |r| {
                        r.entries
                            .iter()
                            .any(|e| format!("{:?}", e.payload).contains(&format!("\"k{i}\"")))
                    },
                )
            })
            .count();
        assert!(holding >= 2, "k{i} was acknowledged but is in {holding} stores");
    }
    let halted = {
        let mut halted = 0;
        for h in &handles {
            if h.write(set("after", "x"), Duration::from_millis(500)).await.is_err() {
                halted += 1;
            }
        }
        halted
    };
    assert_eq!(halted, 3, "no node takes writes with a full disk");
    for h in handles {
        h.stop().await;
    }
}

/// A disk whose snapshot writes take as long as a gate stays shut (a large state on a busy
/// disk), with a snapshot writer that works beside the appends; it counts what it is asked.
#[derive(Clone, Default)]
struct SlowSnapshots {
    inner: MemStorage,
    gate_open: Arc<std::sync::atomic::AtomicBool>,
    /// Snapshots the writer (or `save_snapshot`) began, and `snapshot_written` calls.
    begun: Arc<std::sync::atomic::AtomicUsize>,
    compactions: Arc<std::sync::atomic::AtomicUsize>,
    written: Arc<std::sync::Mutex<Option<plus_quorum::Snapshot>>>,
}

impl SlowSnapshots {
    fn wait_for_the_gate(&self) {
        self.begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while !self.gate_open.load(std::sync::atomic::Ordering::SeqCst)
            && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl plus_quorum::SnapshotWriter for SlowSnapshots {
    fn write(&mut self, snapshot: &plus_quorum::Snapshot) -> Result<(), plus_quorum::StorageError> {
        self.wait_for_the_gate();
        *self.written.lock().unwrap() = Some(snapshot.clone());
        Ok(())
    }
}

impl plus_quorum::Storage for SlowSnapshots {
    passed_to_inner!();
    fn append(&mut self, entries: &[plus_quorum::Entry]) -> Result<(), plus_quorum::StorageError> {
        self.inner.append(entries)
    }
    fn save_snapshot(
        &mut self,
        snapshot: &plus_quorum::Snapshot,
    ) -> Result<(), plus_quorum::StorageError> {
        self.wait_for_the_gate();
        self.inner.save_snapshot(snapshot)
    }
    fn snapshot_writer(&self) -> Option<Box<dyn plus_quorum::SnapshotWriter>> {
        Some(Box::new(self.clone()))
    }
    fn snapshot_written(&mut self, last_index: u64) -> Result<(), plus_quorum::StorageError> {
        self.compactions.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let written = self.written.lock().unwrap().clone();
        match written {
            Some(snapshot) if snapshot.last_index == last_index => {
                self.inner.save_snapshot(&snapshot)
            }
            _ => Ok(()),
        }
    }
}

/// A snapshot of a large state takes seconds to write; the writes go on meanwhile (it is
/// written beside the appends), and the log drops what it covers only once it is durable.
#[tokio::test]
async fn writes_go_on_while_a_snapshot_is_being_written() {
    use std::sync::atomic::Ordering::SeqCst;
    let net = InProcessNetwork::new();
    let disks: Vec<SlowSnapshots> = (0..3).map(|_| SlowSnapshots::default()).collect();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let mut config = config(id, Start::Bootstrap);
        config.snapshot_threshold = 20;
        handles.push(net.spawn(config, disks[id as usize - 1].clone()).unwrap().handle);
    }
    let mut cluster = Cluster::new(handles.clone());
    cluster.deadline = Duration::from_secs(3);
    for i in 0..120 {
        cluster.set(&format!("k{i}"), "v").await.unwrap();
    }
    let begun: usize = disks.iter().map(|d| d.begun.load(SeqCst)).sum();
    assert!(begun >= 3, "every node took a snapshot ({begun} begun)");
    assert_eq!(disks.iter().map(|d| d.compactions.load(SeqCst)).sum::<usize>(), 0);
    for disk in &disks {
        disk.gate_open.store(true, SeqCst);
    }
    // Once durable, each node's log drops what its snapshot covers, with its next write.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while disks.iter().any(|d| d.compactions.load(SeqCst) == 0) {
        assert!(std::time::Instant::now() < deadline, "no compaction after the snapshots");
        cluster.set("more", "v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for disk in &disks {
        let kept = plus_quorum::Storage::recover(&mut disk.inner.clone()).unwrap().unwrap();
        let snapshot = kept.snapshot.expect("a snapshot kept");
        assert!(kept.entries.first().is_none_or(|e| e.index <= snapshot.last_index + 1));
    }
    for h in handles {
        h.stop().await;
    }
}

/// A client flooding the leader with calls, so that its queue is never empty, holds back
/// neither the peers' messages (they get a turn every so many calls) nor the leader's timer
/// (its heartbeats): the leader keeps its term and every write commits while the flood lasts.
#[tokio::test]
async fn a_flood_of_calls_holds_back_neither_peers_nor_heartbeats() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    let mut h = start();
    h.cluster.deadline = Duration::from_secs(3);
    h.cluster.set("warm", "up").await.unwrap();
    let leader_id = h.cluster.leader().await.unwrap();
    let leader = h.cluster.handles().into_iter().find(|n| n.id() == leader_id).unwrap();
    let term = leader.status().await.unwrap().term;
    let flooding = Arc::new(AtomicBool::new(true));
    // Two thousand callers, each calling again as soon as it is answered.
    let flooders: Vec<_> = (0..2_000)
        .map(|_| {
            let (leader, flooding) = (leader.clone(), Arc::clone(&flooding));
            tokio::spawn(async move {
                while flooding.load(SeqCst) {
                    let _ = leader.status().await;
                }
            })
        })
        .collect();
    // Writes, whose appends and acknowledgements cross the flood.
    for i in 0..10 {
        h.cluster.set(&format!("during-{i}"), "v").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Then nothing but the flood for several election timeouts (300 ms): only heartbeats keep
    // the followers from electing another leader.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let after = leader.status().await.unwrap();
    flooding.store(false, SeqCst);
    for flooder in flooders {
        flooder.await.unwrap();
    }
    assert_eq!((after.term, after.leader), (term, Some(leader_id)), "leadership changed");
}
