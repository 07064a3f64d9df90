//! Backup and restore on real `quorum_node` processes with `quorum_ctl`: a backup saved while
//! writes go on; every node killed and every directory wiped; a new cluster restored from the
//! backup serves every write acknowledged at or before the backup's revision. A damaged backup
//! is refused by `status` and `restore` alike, and the lost cluster's name no longer opens the
//! restored directories.
#![cfg(unix)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Processes, example, peers, quorum_ctl};
use plus_quorum::testing::loopback_addrs;
use plus_quorum::{Cluster, NodeId, RemoteNode};

const IDS: [NodeId; 3] = [1, 2, 3];

fn client(addrs: &std::collections::HashMap<NodeId, String>) -> Cluster<RemoteNode> {
    let nodes = addrs
        .iter()
        .map(|(&id, addr)| RemoteNode::connect(id, addr, &plus_mux::Config::default()).unwrap())
        .collect();
    let mut cluster = Cluster::new(nodes);
    cluster.deadline = Duration::from_secs(20);
    cluster
}

fn ctl(endpoints: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = quorum_ctl(endpoints, 20, &[] as &[String], args);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_lost_whole_is_rebuilt_from_a_backup_taken_under_writes() {
    let mut nodes = Processes::new("quorum-backup");
    let addrs = loopback_addrs(&IDS).await.unwrap();
    let endpoints = peers(&addrs);
    let first = ["--cluster".to_owned(), "first".to_owned()];
    for id in IDS {
        nodes.start_durable(id, &addrs, &first);
    }
    let store = Arc::new(client(&addrs));
    for i in 0..300 {
        store.set(&format!("app/{i:03}"), format!("value {i}")).await.unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let writer = tokio::spawn({
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        async move {
            let mut acked = BTreeMap::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let key = format!("load/{i:06}");
                if let Ok(version) = store.set(&key, i.to_string()).await {
                    acked.insert(key, (version, i.to_string()));
                }
                i += 1;
            }
            acked
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let backup = nodes.dir.join("backup.db");
    let saved = {
        let (endpoints, backup) = (endpoints.clone(), backup.clone());
        tokio::task::spawn_blocking(move || ctl(&endpoints, &["snapshot", "save", path(&backup)]))
            .await
            .unwrap()
    };
    assert_eq!(saved.0, Some(0), "{}{}", saved.1, saved.2);
    assert!(saved.1.starts_with("saved revision "), "{}", saved.1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writer.await.unwrap();

    let (code, status, err) =
        ctl(&endpoints, &["--write-out", "json", "snapshot", "status", path(&backup)]);
    assert_eq!(code, Some(0), "{err}");
    let status: serde_json::Value = serde_json::from_str(status.trim()).unwrap();
    let revision = status["header"]["revision"].as_u64().unwrap();
    let keys = status["header"]["keys"].as_u64().unwrap();
    let before: Vec<_> = acked.iter().filter(|(_, (v, _))| *v <= revision).collect();
    assert!(
        !before.is_empty() && before.len() < acked.len(),
        "writes acknowledged on both sides of revision {revision}: {} of {}",
        before.len(),
        acked.len()
    );
    let (_, table, _) =
        ctl(&endpoints, &["--write-out", "table", "snapshot", "status", path(&backup)]);
    assert!(table.contains("| revision ") && table.contains(&format!("| {revision} ")), "{table}");

    // A damaged copy is refused by both, and restore leaves its directory alone.
    let damaged = nodes.dir.join("damaged.db");
    let mut bytes = std::fs::read(&backup).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, bytes).unwrap();
    let (code, _, err) = ctl(&endpoints, &["snapshot", "status", path(&damaged)]);
    assert_eq!(code, Some(1));
    assert!(err.contains("checksum does not match"), "{err}");
    let untouched = nodes.dir.join("untouched");
    let (code, _, err) = ctl(
        &endpoints,
        &[
            "snapshot",
            "restore",
            path(&damaged),
            "--data",
            path(&untouched),
            "--id",
            "1",
            "--peers",
            &endpoints,
        ],
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(!untouched.exists(), "a refused restore created its directory");

    // The whole cluster is lost: every node killed, every directory wiped.
    for id in IDS {
        nodes.kill(id);
        std::fs::remove_dir_all(nodes.dir.join(format!("node{id}"))).unwrap();
    }
    for id in IDS {
        let dir = nodes.dir.join(format!("node{id}"));
        let (code, said, err) = ctl(
            &endpoints,
            &[
                "snapshot",
                "restore",
                path(&backup),
                "--data",
                path(&dir),
                "--id",
                &id.to_string(),
                "--peers",
                &endpoints,
                "--cluster",
                "second",
            ],
        );
        assert_eq!(code, Some(0), "{err}");
        assert!(said.contains(&format!("restored revision {revision}")), "{said}");
    }
    // The lost cluster's name does not open a restored directory.
    let mut wrong = Command::new(example("quorum_node"));
    wrong
        .args(["--id", "1", "--listen", &addrs[&1], "--peers", &endpoints, "--cluster", "first"])
        .arg("--data")
        .arg(nodes.dir.join("node1"));
    let wrong = common::output_within(wrong, Duration::from_secs(10), "the refused node");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("belongs to another node"));

    let second = ["--cluster".to_owned(), "second".to_owned()];
    for id in IDS {
        nodes.start_durable(id, &addrs, &second);
    }
    let store = client(&addrs);
    for i in 0..300 {
        let found = store.get(&format!("app/{i:03}")).await.unwrap();
        assert_eq!(found.map(|v| v.value), Some(format!("value {i}").into()), "app/{i:03}");
    }
    for (key, (version, value)) in &before {
        let found = store.get(key).await.unwrap().unwrap_or_else(|| panic!("{key} was lost"));
        assert_eq!((found.version, &found.value[..]), (*version, value.as_bytes()), "{key}");
    }
    assert_eq!(store.len().await.unwrap() as u64, keys, "exactly the backup's keys");
    let next = store.set("after", "restore").await.unwrap();
    assert!(next > revision, "revisions go on from the backup's: {next} after {revision}");
    let (code, health, _) = ctl(&endpoints, &["endpoint", "health"]);
    assert_eq!(code, Some(0), "{health}");
}
