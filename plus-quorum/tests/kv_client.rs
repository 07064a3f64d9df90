//! One contract for the `KvClient` trait, run against plus-quorum (an in-process cluster) and,
//! with feature `etcd`, against a real etcd server started by the test: the same calls must
//! mean the same on both stores.
//!
//! The etcd half needs the `etcd` binary (Debian's `etcd-server`; `PLUS_ETCD` names another).
//! Without it the test says it was skipped, unless `PLUS_REQUIRE_ETCD=1` (as in CI) makes a
//! missing etcd a failure.
#![cfg(feature = "driver")]

use std::time::Duration;

use plus_quorum::{
    Bytes, Change, ClientError, Compare, Expect, InProcessNetwork, KeyRange, KvClient, MemStorage,
    Range, StoreError, Txn, TxnOp, TxnOpResult, WriteResult,
};

fn bytes(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

/// Versions: new keys, overwrites, compare-and-set on every kind of expectation.
async fn versions_and_compare_and_set(store: &dyn KvClient, p: &str) {
    let key = format!("{p}/cas");
    assert_eq!(store.get(&key).await.unwrap(), None);
    let v1 = store.set(&key, bytes("one")).await.unwrap();
    let found = store.get(&key).await.unwrap().unwrap();
    assert_eq!(
        (found.value, found.version, found.created, found.lease),
        (bytes("one"), v1, v1, None)
    );
    let v2 = store.set(&key, bytes("two")).await.unwrap();
    assert!(v2 > v1);
    assert_eq!(store.get(&key).await.unwrap().unwrap().created, v1, "creation stays");

    let v3 = match store.compare_and_set(&key, Expect::Version(v2), bytes("three")).await.unwrap() {
        WriteResult::Applied { version } => version,
        other => panic!("a compare on the current version must apply: {other:?}"),
    };
    assert!(v3 > v2);
    match store.compare_and_set(&key, Expect::Version(v2), bytes("stale")).await.unwrap() {
        WriteResult::CompareFailed { key: failed, current } => {
            assert_eq!(failed, key);
            let current = current.unwrap();
            assert_eq!((current.value, current.version), (bytes("three"), v3));
        }
        other => panic!("a stale version must fail: {other:?}"),
    }
    for (expect, applies) in [
        (Expect::Absent, false),
        (Expect::Exists, true),
        (Expect::Value(bytes("three")), true),
        (Expect::Value(bytes("four")), false),
        (Expect::Lease(None), true),
        (Expect::Lease(Some(12345)), false),
    ] {
        let before = store.get(&key).await.unwrap().unwrap();
        let result = store.compare_and_set(&key, expect.clone(), before.value.clone()).await;
        let applied = matches!(result.unwrap(), WriteResult::Applied { .. });
        assert_eq!(applied, applies, "{expect:?} on an existing key with no lease");
    }
    let fresh = format!("{p}/fresh");
    assert!(matches!(
        store.compare_and_set(&fresh, Expect::Value(bytes("x")), bytes("y")).await.unwrap(),
        WriteResult::CompareFailed { current: None, .. }
    ));
    assert!(matches!(
        store.compare_and_set(&fresh, Expect::Absent, bytes("y")).await.unwrap(),
        WriteResult::Applied { .. }
    ));
    store.delete(&fresh).await.unwrap();
    store.delete(&fresh).await.unwrap(); // deleting an absent key is not an error
    assert_eq!(store.get(&fresh).await.unwrap(), None);
}

/// Ranges: prefixes, intervals, limits, counts, and a read at a past revision.
async fn ranges(store: &dyn KvClient, p: &str) {
    let base = format!("{p}/range/");
    let mut first = 0;
    for name in ["a", "b", "c"] {
        let version = store.set(&format!("{base}{name}"), bytes(name)).await.unwrap();
        if first == 0 {
            first = version;
        }
    }
    store.set(&format!("{base}a"), bytes("a2")).await.unwrap();
    let all = store.range(Range::prefix(base.clone())).await.unwrap();
    let keys: Vec<&str> = all.kvs.iter().map(|(k, _)| k.strip_prefix(&base).unwrap()).collect();
    assert_eq!((keys, all.count, all.more), (vec!["a", "b", "c"], 3, false));
    assert_eq!(all.kvs[0].1.value, bytes("a2"));

    let limited = store.range(Range::prefix(base.clone()).limit(2)).await.unwrap();
    assert_eq!((limited.kvs.len(), limited.count, limited.more), (2, 3, true));
    let counted = store.range(Range::prefix(base.clone()).count_only()).await.unwrap();
    assert_eq!((counted.kvs.len(), counted.count), (0, 3));
    let between =
        store.range(Range::between(format!("{base}a"), format!("{base}c"))).await.unwrap();
    assert_eq!(between.kvs.len(), 2);

    let past = store.range(Range::prefix(base.clone()).at_revision(first)).await.unwrap();
    assert_eq!(past.kvs.len(), 1, "only `a` existed at its own revision");
    assert_eq!(past.kvs[0].1.value, bytes("a"));

    let refused = store.range(Range::prefix(base).limit(0)).await.unwrap_err();
    assert!(matches!(refused, StoreError::Client(ClientError::Invalid(_))), "{refused:?}");
}

/// Transactions: both branches, every kind of operation and its result.
async fn transactions(store: &dyn KvClient, p: &str) {
    let (x, y) = (format!("{p}/txn/x"), format!("{p}/txn/y"));
    let create = Txn {
        when: vec![Compare::new(x.clone(), Expect::Absent)],
        then: vec![
            TxnOp::Set { key: x.clone(), value: bytes("1"), lease: None },
            TxnOp::Set { key: y.clone(), value: bytes("2"), lease: None },
            TxnOp::Get(x.clone()),
            TxnOp::Range(Range::prefix(format!("{p}/txn/"))),
        ],
        otherwise: vec![TxnOp::Get(x.clone()), TxnOp::Delete { key: y.clone() }],
    };
    let outcome = store.txn(create.clone()).await.unwrap();
    assert!(outcome.succeeded);
    let v = outcome.version;
    match outcome.results.as_slice() {
        [
            TxnOpResult::Set { version: a },
            TxnOpResult::Set { version: b },
            TxnOpResult::Get(Some(got)),
            TxnOpResult::Range(range),
        ] => {
            assert_eq!((*a, *b, got.version), (v, v, v));
            assert_eq!(range.count, 2);
        }
        other => panic!("unexpected results {other:?}"),
    }
    assert_eq!(store.get(&y).await.unwrap().unwrap().version, v, "one revision for the branch");

    let again = store.txn(create).await.unwrap();
    assert!(!again.succeeded);
    match again.results.as_slice() {
        [TxnOpResult::Get(Some(got)), TxnOpResult::Delete { existed: true }] => {
            assert_eq!(got.value, bytes("1"));
        }
        other => panic!("unexpected results {other:?}"),
    }
    assert_eq!(store.get(&y).await.unwrap(), None);
}

/// Leases: keys attached, kept alive, revoked with their keys; an ended lease is typed.
async fn leases(store: &dyn KvClient, p: &str) {
    let key = format!("{p}/lease/holder");
    let lease = store.grant_lease(Duration::from_secs(30)).await.unwrap();
    assert!(lease.ttl_ms >= 30_000, "{lease:?}");
    store.set_with_lease(&key, bytes("me"), lease.id).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().lease, Some(lease.id));
    let kept = store.keep_alive(lease.id).await.unwrap();
    assert_eq!(kept.id, lease.id);
    assert!(kept.ttl_ms >= 30_000);
    let holder = Compare::new(key.clone(), Expect::Lease(Some(lease.id)));
    let txn = Txn { when: vec![holder], then: vec![TxnOp::Get(key.clone())], otherwise: vec![] };
    assert!(store.txn(txn).await.unwrap().succeeded, "a compare on the lease holds");

    store.revoke_lease(lease.id).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None, "revoking deletes the lease's keys");
    for result in [
        store.keep_alive(lease.id).await.map(drop),
        store.revoke_lease(lease.id).await,
        store.set_with_lease(&key, bytes("late"), lease.id).await.map(drop),
    ] {
        assert_eq!(result, Err(StoreError::NoSuchLease(lease.id)));
    }
}

/// A watch from a revision sees every later change once, in order.
async fn watches(store: &dyn KvClient, p: &str) {
    let prefix = format!("{p}/watch/");
    let before = store.set(&format!("{prefix}before"), bytes("0")).await.unwrap();
    let mut watch = store.watch(KeyRange::Prefix(prefix.clone()), before + 1).await.unwrap();
    let v1 = store.set(&format!("{prefix}a"), bytes("1")).await.unwrap();
    store.set(&format!("{p}/elsewhere"), bytes("x")).await.unwrap();
    store.delete(&format!("{prefix}a")).await.unwrap();
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen.len() < 2 {
        assert!(tokio::time::Instant::now() < deadline, "watch saw only {seen:?}");
        let batch = tokio::time::timeout(Duration::from_secs(10), watch.next()).await;
        for event in batch.expect("a watch answers").unwrap().events {
            seen.push(event);
        }
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(seen[0].key, format!("{prefix}a"));
    assert!(matches!(&seen[0].change, Change::Put(v) if v.version == v1 && v.value == bytes("1")));
    assert_eq!(seen[0].revision, v1);
    assert!(matches!(seen[1].change, Change::Delete));
    assert!(seen[1].revision > v1);
}

async fn contract(store: &dyn KvClient, prefix: &str) {
    versions_and_compare_and_set(store, prefix).await;
    ranges(store, prefix).await;
    transactions(store, prefix).await;
    leases(store, prefix).await;
    watches(store, prefix).await;
}

#[tokio::test]
async fn plus_quorum_keeps_the_contract() {
    let net = InProcessNetwork::new();
    let mut handles = Vec::new();
    let mut running = Vec::new();
    for id in 1..=3 {
        let node = net.spawn(plus_quorum::Config::new(id, vec![1, 2, 3]), MemStorage::new());
        let node = node.unwrap();
        handles.push(node.handle.clone());
        running.push(node);
    }
    let cluster = plus_quorum::Cluster::new(handles);
    contract(&cluster, "contract").await;
    for node in &running {
        node.handle.stop().await;
    }
}

#[cfg(feature = "etcd")]
mod etcd {
    use std::net::TcpListener;
    use std::path::PathBuf;
    use std::process::{Child, Command, Stdio};
    use std::time::{Duration, Instant};

    use plus_quorum::{EtcdClient, KvClient};

    /// A single-member etcd on loopback, killed and its data removed when dropped (also when
    /// the test fails).
    struct Etcd {
        child: Child,
        data: PathBuf,
        endpoint: String,
    }

    impl Drop for Etcd {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }

    fn free_port() -> u16 {
        TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
    }

    fn etcd_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("PLUS_ETCD") {
            return Some(PathBuf::from(path));
        }
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join("etcd")).find(|path| path.is_file())
        })
    }

    fn start() -> Option<Etcd> {
        let Some(binary) = etcd_binary() else {
            assert!(
                std::env::var_os("PLUS_REQUIRE_ETCD").is_none(),
                "PLUS_REQUIRE_ETCD is set but no etcd binary is on PATH (or in PLUS_ETCD)"
            );
            eprintln!(
                "SKIPPED: no `etcd` on PATH (install Debian's etcd-server, or set PLUS_ETCD)"
            );
            return None;
        };
        let data = std::env::temp_dir().join(format!("plus-etcd-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&data);
        let (client, peer) = (free_port(), free_port());
        let endpoint = format!("127.0.0.1:{client}");
        let child = Command::new(&binary)
            .arg("--name=plus-test")
            .arg(format!("--data-dir={}", data.display()))
            .arg(format!("--listen-client-urls=http://{endpoint}"))
            .arg(format!("--advertise-client-urls=http://{endpoint}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster=plus-test=http://127.0.0.1:{peer}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        Some(Etcd { child, data, endpoint })
    }

    #[tokio::test]
    async fn etcd_keeps_the_contract() {
        let Some(etcd) = start() else { return };
        let started = Instant::now();
        let client = loop {
            let attempt = EtcdClient::connect(&[&etcd.endpoint], Duration::from_secs(2)).await;
            if let Ok(client) = attempt
                && client.get("probe").await.is_ok()
            {
                break client;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "etcd did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let store: &dyn KvClient = &client;
        super::contract(store, "contract").await;
    }
}
