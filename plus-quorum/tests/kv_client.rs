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
    Range, StoreError, Txn, TxnOp, TxnOpResult, WriteResult, recipes,
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

/// Whether `future` is still waiting after `wait`.
async fn still_waiting<F: std::future::Future + Unpin>(future: &mut F, wait: Duration) -> bool {
    tokio::time::timeout(wait, future).await.is_err()
}

/// Locks: one holder at a time in the order of arrival, etcd's key, fencing tokens that grow,
/// and a holder's lease ending releases its lock.
async fn locks(store: &dyn KvClient, p: &str) {
    let name = format!("{p}/lock");
    let a = store.grant_lease(Duration::from_secs(30)).await.unwrap().id;
    let b = store.grant_lease(Duration::from_secs(30)).await.unwrap().id;
    let first = recipes::lock(store, &name, a).await.unwrap();
    assert_eq!(first.key, format!("{name}/{a:x}"), "etcd's concurrency key");
    let mut second = Box::pin(recipes::lock(store, &name, b));
    assert!(still_waiting(&mut second, Duration::from_millis(300)).await, "two holders");
    recipes::unlock(store, first.clone()).await.unwrap();
    let second = tokio::time::timeout(Duration::from_secs(5), second).await.unwrap().unwrap();
    assert!(second.token > first.token, "fencing tokens grow");
    let mut third = Box::pin(recipes::lock(store, &name, a));
    assert!(still_waiting(&mut third, Duration::from_millis(300)).await);
    // The holder's lease ends (a crash): its key goes, and the next holder has the lock.
    store.revoke_lease(b).await.unwrap();
    let third = tokio::time::timeout(Duration::from_secs(5), third).await.unwrap().unwrap();
    assert!(third.token > second.token);
    recipes::unlock(store, third).await.unwrap();
    store.revoke_lease(a).await.unwrap();
}

/// Elections: the oldest candidate leads, proclaims, is observed, and resigns to the next.
async fn elections(store: &dyn KvClient, p: &str) {
    let name = format!("{p}/election");
    let a = store.grant_lease(Duration::from_secs(30)).await.unwrap().id;
    let b = store.grant_lease(Duration::from_secs(30)).await.unwrap().id;
    let lead = recipes::campaign(store, &name, a, bytes("a")).await.unwrap();
    recipes::proclaim(store, &lead, bytes("a2")).await.unwrap();
    let known = recipes::election_leader(store, &name).await.unwrap().unwrap();
    assert_eq!((known.0.as_str(), known.1.value.clone()), (lead.key.as_str(), bytes("a2")));
    let mut next = Box::pin(recipes::campaign(store, &name, b, bytes("b")));
    assert!(still_waiting(&mut next, Duration::from_millis(300)).await, "two leaders");
    let mut observed = Box::pin(recipes::observe_election(store, &name, Some(&known)));
    assert!(still_waiting(&mut observed, Duration::from_millis(100)).await, "nothing changed yet");
    recipes::resign(store, lead.clone()).await.unwrap();
    let won = tokio::time::timeout(Duration::from_secs(5), next).await.unwrap().unwrap();
    assert!(won.revision > lead.revision);
    let seen = tokio::time::timeout(Duration::from_secs(5), observed).await.unwrap().unwrap();
    assert_eq!(seen.map(|(key, _)| key), Some(won.key.clone()), "the observer sees the new leader");
    assert!(matches!(
        recipes::proclaim(store, &lead, bytes("late")).await,
        Err(StoreError::NotElected(_))
    ));
    recipes::resign(store, won).await.unwrap();
    assert_eq!(recipes::election_leader(store, &name).await.unwrap(), None);
    store.revoke_lease(a).await.unwrap();
    store.revoke_lease(b).await.unwrap();
}

/// A session keeps its lease alive past its TTL, holds a lock on it, and tells its holder at
/// once when the lease is ended behind its back.
async fn sessions<K: KvClient + Clone + 'static>(store: K, p: &str) {
    let session = plus_quorum::Session::new(store.clone(), Duration::from_secs(2)).await.unwrap();
    let guard = session.lock(&format!("{p}/session-lock")).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    assert!(session.lost_reason().is_none(), "kept alive past its TTL");
    assert!(store.get(&guard.key).await.unwrap().is_some(), "the lock's key lives on");
    store.revoke_lease(session.lease()).await.unwrap();
    let lost = tokio::time::timeout(Duration::from_secs(3), session.lost()).await.unwrap();
    assert_eq!(lost, plus_quorum::SessionLost::Ended(session.lease()));
    assert!(store.get(&guard.key).await.unwrap().is_none(), "the lock went with the lease");
}

/// A namespace keeps the whole contract (run on it below), and its keys apart: they are under
/// its prefix in the store, and it sees nothing outside it.
async fn namespaces<K: KvClient + Clone>(store: K, p: &str) {
    let outside = format!("{p}/outside");
    store.set(&outside, bytes("theirs")).await.unwrap();
    let team = plus_quorum::Namespaced::new(store.clone(), format!("{p}/team/"));
    let version = team.set("mine", bytes("ours")).await.unwrap();
    let raw = store.get(&format!("{p}/team/mine")).await.unwrap().unwrap();
    assert_eq!((raw.value, raw.version), (bytes("ours"), version));
    let everything = team.range(Range::prefix("")).await.unwrap();
    let keys: Vec<&str> = everything.kvs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["mine"], "a namespace sees its own keys only, without the prefix");
    match team.compare_and_set("mine", Expect::Absent, bytes("x")).await.unwrap() {
        WriteResult::CompareFailed { key, .. } => assert_eq!(key, "mine"),
        other => panic!("{other:?}"),
    }
    let mut watch = team.watch(KeyRange::Prefix(String::new()), version).await.unwrap();
    let batch = watch.next().await.unwrap();
    assert_eq!(batch.events[0].key, "mine");
    contract(&team, "contract").await;
}

async fn contract(store: &dyn KvClient, prefix: &str) {
    versions_and_compare_and_set(store, prefix).await;
    ranges(store, prefix).await;
    transactions(store, prefix).await;
    leases(store, prefix).await;
    watches(store, prefix).await;
    locks(store, prefix).await;
    elections(store, prefix).await;
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
    sessions(cluster.clone(), "contract").await;
    namespaces(cluster.clone(), "ns").await;
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

    use plus_quorum::{EtcdClient, KvClient, StoreError};

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

    /// The program `name`, from the environment variable `variable` or from PATH; `None` (the
    /// test skipped, saying so) when it is missing, unless PLUS_REQUIRE_ETCD is set (as in CI).
    fn program(name: &str, variable: &str, package: &str) -> Option<PathBuf> {
        if let Some(path) = std::env::var_os(variable) {
            return Some(PathBuf::from(path));
        }
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|dir| dir.join(name)).find(|path| path.is_file())
        });
        if found.is_none() {
            assert!(
                std::env::var_os("PLUS_REQUIRE_ETCD").is_none(),
                "PLUS_REQUIRE_ETCD is set but no {name} is on PATH (or in {variable})"
            );
            eprintln!(
                "SKIPPED: no `{name}` on PATH (install Debian's {package}, or set {variable})"
            );
        }
        found
    }

    fn start(test: &str) -> Option<Etcd> {
        let binary = program("etcd", "PLUS_ETCD", "etcd-server")?;
        let data = std::env::temp_dir().join(format!("plus-etcd-{test}-{}", std::process::id()));
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

    /// A client of `etcd` once it answers (at most 30 s).
    async fn connect(etcd: &Etcd) -> EtcdClient {
        let started = Instant::now();
        loop {
            let attempt = EtcdClient::connect(&[&etcd.endpoint], Duration::from_secs(2)).await;
            if let Ok(client) = attempt
                && client.get("probe").await.is_ok()
            {
                return client;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "etcd did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    #[tokio::test]
    async fn etcd_keeps_the_contract() {
        let Some(etcd) = start("contract") else { return };
        let client = connect(&etcd).await;
        let store: &dyn KvClient = &client;
        super::contract(store, "contract").await;
        super::sessions(client.clone(), "contract").await;
        super::namespaces(client.clone(), "ns").await;

        // Renewals after the first go over the lease's one keep-alive stream (its answers
        // carry the TTL, not the keys), and an ended lease is still told apart.
        let lease = client.grant_lease(Duration::from_secs(10)).await.unwrap().id;
        client.set_with_lease("streamed/key", "v".into(), lease).await.unwrap();
        let first = client.keep_alive(lease).await.unwrap();
        assert_eq!(first.keys, ["streamed/key"]);
        for _ in 0..3 {
            let again = client.keep_alive(lease).await.unwrap();
            assert!(again.remaining_ms >= 9_000 && again.keys.is_empty(), "{again:?}");
        }
        // Revoked by another client: this one's open stream is told the lease ended.
        let other = connect(&etcd).await;
        other.revoke_lease(lease).await.unwrap();
        assert_eq!(client.keep_alive(lease).await, Err(StoreError::NoSuchLease(lease)));
        assert_eq!(client.keep_alive(lease).await, Err(StoreError::NoSuchLease(lease)));
    }

    #[tokio::test]
    async fn an_etcd_that_is_gone_reads_as_an_unavailable_cluster_not_an_opaque_error() {
        let Some(etcd) = start("gone") else { return };
        let client = connect(&etcd).await;
        drop(etcd); // killed
        let started = Instant::now();
        let err = client.get("anything").await.unwrap_err();
        assert!(
            matches!(err, StoreError::NoLeader(_) | StoreError::Timeout(_)),
            "an etcd that is gone must read as unavailable: {err:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(10), "bounded by the client's deadline");
    }

    /// An `etcdctl` child, interrupted (so it closes its session) or killed when dropped.
    struct Etcdctl(Child);

    impl Drop for Etcdctl {
        fn drop(&mut self) {
            let _ = Command::new("kill").args(["-INT", &self.0.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(5);
            while matches!(self.0.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    /// `etcdctl --endpoints E lock NAME ARGS...`, its output piped; its lines as they come.
    fn etcdctl_lock(
        etcdctl: &PathBuf,
        etcd: &Etcd,
        name: &str,
        args: &[&str],
    ) -> (Etcdctl, std::sync::mpsc::Receiver<String>) {
        use std::io::BufRead;
        let mut child = Command::new(etcdctl)
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints=http://{}", etcd.endpoint))
            .args(["lock", name])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (lines, read) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    return;
                }
            }
        });
        (Etcdctl(child), read)
    }

    #[tokio::test]
    async fn a_lock_taken_with_etcdctl_excludes_a_plus_lock_and_the_other_way_round() {
        let Some(etcdctl) = program("etcdctl", "PLUS_ETCDCTL", "etcd-client") else { return };
        let Some(etcd) = start("interop") else { return };
        let client = connect(&etcd).await;
        let lease = client.grant_lease(Duration::from_secs(30)).await.unwrap().id;

        // etcdctl holds the lock (it prints its key once it has it, and holds it until
        // interrupted): a plus lock of the same name waits.
        let (held, lines) = etcdctl_lock(&etcdctl, &etcd, "interop", &[]);
        let key = lines.recv_timeout(Duration::from_secs(10)).expect("etcdctl took the lock");
        assert!(key.starts_with("interop/"), "etcdctl's key: {key}");
        let mut ours = Box::pin(plus_quorum::recipes::lock(&client, "interop", lease));
        assert!(
            tokio::time::timeout(Duration::from_secs(1), &mut ours).await.is_err(),
            "a plus lock was taken while etcdctl held it"
        );
        drop(held); // interrupted: it closes its session, and its key goes
        let guard = tokio::time::timeout(Duration::from_secs(10), ours).await.unwrap().unwrap();
        assert_eq!(guard.key, format!("interop/{lease:x}"));

        // Now plus holds it: `etcdctl lock NAME echo ...` runs its command only once it is
        // released.
        let (waiting, lines) =
            etcdctl_lock(&etcdctl, &etcd, "interop", &["echo", "etcdctl-has-it"]);
        assert!(
            lines.recv_timeout(Duration::from_secs(1)).is_err(),
            "etcdctl ran its command while plus held the lock"
        );
        plus_quorum::recipes::unlock(&client, guard).await.unwrap();
        let said = lines.recv_timeout(Duration::from_secs(10)).expect("etcdctl got the lock");
        assert_eq!(said, "etcdctl-has-it");
        drop(waiting);
        client.revoke_lease(lease).await.unwrap();
    }
}
