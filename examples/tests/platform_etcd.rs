//! The platform on etcd (`--store etcd`): a real three-member etcd cluster on loopback (Debian's
//! etcd-server, started here), the controllers' election, locks and saved rollouts on it, and
//! the active controller killed mid-deployment at several times: another takes over and
//! finishes, with the cap held. And the rollout state store's contract on the same etcd.
//!
//! Built only with the `etcd` feature (`cargo test -p examples --features etcd --test
//! platform_etcd`, as CI runs it). Without an `etcd` binary it says it was skipped, unless
//! PLUS_REQUIRE_ETCD is set (as in CI).
#![cfg(all(unix, feature = "etcd"))]

mod common;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plus_quorum::{EtcdClient, KvClient};
use plus_rollout::{QuorumStore, StateStore, StoreError};

/// Three etcd members on loopback, killed and their data removed when dropped (also when the
/// test fails).
struct EtcdCluster {
    members: Vec<Child>,
    data: PathBuf,
    endpoints: Vec<String>,
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for member in &mut self.members {
            let _ = member.kill();
            let _ = member.wait();
        }
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
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|dir| dir.join("etcd")).find(|path| path.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var_os("PLUS_REQUIRE_ETCD").is_none(),
            "PLUS_REQUIRE_ETCD is set but no etcd binary is on PATH (or in PLUS_ETCD)"
        );
        eprintln!("SKIPPED: no `etcd` on PATH (install Debian's etcd-server, or set PLUS_ETCD)");
    }
    found
}

/// Starts three members and waits until the cluster answers a write (at most 30 s).
fn start(test: &str) -> Option<EtcdCluster> {
    let binary = etcd_binary()?;
    let data = std::env::temp_dir().join(format!("plus-etcd3-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
    let initial: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, (_, peer))| format!("m{i}=http://127.0.0.1:{peer}"))
        .collect();
    let mut cluster = EtcdCluster { members: Vec::new(), data, endpoints: Vec::new() };
    for (i, (client, peer)) in ports.iter().enumerate() {
        let endpoint = format!("127.0.0.1:{client}");
        let child = Command::new(&binary)
            .arg(format!("--name=m{i}"))
            .arg(format!("--data-dir={}", cluster.data.join(format!("m{i}")).display()))
            .arg(format!("--listen-client-urls=http://{endpoint}"))
            .arg(format!("--advertise-client-urls=http://{endpoint}"))
            .arg(format!("--listen-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-advertise-peer-urls=http://127.0.0.1:{peer}"))
            .arg(format!("--initial-cluster={}", initial.join(",")))
            .arg("--initial-cluster-state=new")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        cluster.members.push(child);
        cluster.endpoints.push(endpoint);
    }
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let started = Instant::now();
    runtime.block_on(async {
        loop {
            if let Ok(client) =
                EtcdClient::connect(&cluster.endpoints, Duration::from_secs(2)).await
                && client.set("probe", "up".into()).await.is_ok()
            {
                return;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "etcd did not start in 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    Some(cluster)
}

#[test]
fn the_platform_fails_over_on_etcd_and_finishes_with_the_cap_held() {
    let Some(etcd) = start("failover") else { return };
    for kill_after in ["200", "900"] {
        let mut command = Command::new(common::example("platform"));
        command
            .args(["--no-progress", "--store", "etcd", "--etcd-endpoints"])
            .arg(etcd.endpoints.join(","))
            .args(["--controllers", "3", "--kill-leader-after-ms", kill_after])
            .env_remove("RUST_LOG");
        let output = common::output_within(command, Duration::from_secs(120), "platform");
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
        let line = stdout.lines().last().unwrap_or_default();
        assert_eq!(common::field(line, "deployed"), 6, "{line}");
        assert_eq!(common::field(line, "failovers"), 1, "{line}");
        assert!(common::field(line, "max_out_of_traffic") <= common::field(line, "cap"), "{line}");
        assert!(line.contains("quorum=identical"), "etcd's members agree: {line}");
        assert!(stdout.contains("takes over"), "{stdout}");
    }
}

#[tokio::test]
async fn the_rollout_state_store_keeps_its_contract_on_etcd() {
    let Some(etcd) = tokio::task::spawn_blocking(|| start("state")).await.unwrap() else {
        return;
    };
    let client = EtcdClient::connect(&etcd.endpoints, Duration::from_secs(5)).await.unwrap();
    let store: QuorumStore<Vec<String>, EtcdClient> = QuorumStore::new(client.clone());
    assert!(store.load("release/api").await.unwrap().is_none());
    let first = store.save("release/api", &vec!["batch 1".to_owned()], None).await.unwrap();
    let (state, version) = store.load("release/api").await.unwrap().unwrap();
    assert_eq!((state, version), (vec!["batch 1".to_owned()], first));
    let second = store.save("release/api", &vec!["batch 2".to_owned()], Some(first)).await.unwrap();
    assert!(second > first);
    // A controller that saves from a stale version is refused, whoever wrote since.
    let stale = store.save("release/api", &vec!["late".to_owned()], Some(first)).await;
    assert!(
        matches!(stale, Err(StoreError::Stale { found: Some(f), .. }) if f == second),
        "{stale:?}"
    );
    let again = store.save("release/api", &vec!["new".to_owned()], None).await;
    assert!(matches!(again, Err(StoreError::Stale { .. })), "{again:?}");
    // It is JSON at the key, for any client to read.
    let raw = client.get("release/api").await.unwrap().unwrap();
    assert_eq!(&raw.value[..], br#"["batch 2"]"#);
    drop(etcd);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_ctl_copies_a_platforms_keys_to_etcd_leaving_out_those_on_leases() {
    let Some(etcd) = tokio::task::spawn_blocking(|| start("copy")).await.unwrap() else {
        return;
    };
    let mut nodes = common::Processes::new("store-copy");
    let addrs = plus_quorum::testing::loopback_addrs(&[1]).await.unwrap();
    nodes.start(1, &addrs, &[]);
    let endpoints = common::peers(&addrs);
    let ctl = |op: &[&str]| {
        let out = common::quorum_ctl(&endpoints, 10, &[] as &[&str], op);
        assert!(out.status.success(), "{op:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    // More keys than one page, one outside the prefix, one on a lease (a lock's).
    for n in 0..250 {
        ctl(&["put", &format!("platform/release/app-{n:03}"), &format!("v{n}")]);
    }
    ctl(&["put", "other/team", "theirs"]);
    let lease = ctl(&["lease", "grant", "60"]);
    let lease = lease.trim().to_owned();
    ctl(&["put", "platform/lock/api/1", "", "--lease", &lease]);
    let said = ctl(&["copy", "platform/", "--to-etcd", &etcd.endpoints.join(",")]);
    assert_eq!(said.trim(), "copied 250 keys under \"platform/\" to etcd; 1 on leases left out");
    let client = EtcdClient::connect(&etcd.endpoints, Duration::from_secs(5)).await.unwrap();
    let copied = client.range(plus_quorum::Range::prefix("platform/")).await.unwrap();
    assert_eq!(copied.count, 250);
    let one = client.get("platform/release/app-137").await.unwrap().unwrap();
    assert_eq!(&one.value[..], b"v137");
    assert!(client.get("other/team").await.unwrap().is_none());
    drop(etcd);
}
