//! `quorum_node` as real processes on 127.0.0.1: a three-process cluster with file storage
//! that keeps every acknowledged write through a SIGKILL and a restart, stops cleanly on
//! SIGTERM, and refuses a port in use, another node's directory, and a directory in use.
#![cfg(unix)]

mod common;

use common::{example, quorum_ctl};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use plus_quorum::testing::loopback_addrs;
use plus_quorum::{Cluster, NodeApi, NodeId, RemoteNode, Security};

fn program() -> PathBuf {
    example("quorum_node")
}

/// Children that are killed when the test ends, also when it fails.
#[derive(Default)]
struct Nodes(HashMap<NodeId, Child>);

impl Drop for Nodes {
    fn drop(&mut self) {
        for child in self.0.values_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn peers(addrs: &HashMap<NodeId, String>) -> String {
    let mut ids: Vec<_> = addrs.keys().copied().collect();
    ids.sort_unstable();
    ids.iter().map(|id| format!("{id}={}", addrs[id])).collect::<Vec<_>>().join(",")
}

fn command(id: NodeId, addrs: &HashMap<NodeId, String>, data: &Path) -> Command {
    command_in(id, addrs, &data.join(format!("node{id}")))
}

fn command_in(id: NodeId, addrs: &HashMap<NodeId, String>, dir: &Path) -> Command {
    let mut command = Command::new(program());
    command
        .args(["--id", &id.to_string(), "--listen", &addrs[&id], "--peers", &peers(addrs)])
        .arg("--data")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    command
}

/// A client with a deadline long enough for an election after a kill.
fn client(addrs: &HashMap<NodeId, String>) -> Cluster<RemoteNode> {
    let mut cluster = Cluster::new(
        addrs
            .iter()
            .map(|(&id, addr)| RemoteNode::connect(id, addr, &plus_mux::Config::default()).unwrap())
            .collect(),
    );
    cluster.deadline = Duration::from_secs(20);
    cluster
}

/// Sets `key` to `value`, sending it again when a kill left the outcome unknown (setting the
/// same value twice is harmless); the cluster must take it within a few tries.
async fn set_surely(store: &Cluster<RemoteNode>, key: &str, value: &str) {
    for _ in 0..10 {
        match store.set(key, value.to_owned()).await {
            Ok(_) => return,
            Err(err) => eprintln!("{key}: {err}; again"),
        }
    }
    panic!("{key} was never acknowledged");
}

/// Runs `command` to its end (bounded), for the refusals.
fn refused(command: Command) -> Output {
    common::output_within(command, Duration::from_secs(10), "the node's refusal")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_keep_acknowledged_writes_through_sigkill_and_stop_on_sigterm() {
    let data = std::env::temp_dir().join(format!("plus-quorum-node-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let addrs = loopback_addrs(&[1, 2, 3]).await.unwrap();
    let mut nodes = Nodes::default();
    for id in [1, 2, 3] {
        nodes.0.insert(id, command(id, &addrs, &data).spawn().unwrap());
    }
    let store = client(&addrs);
    for i in 0..50 {
        set_surely(&store, &format!("key-{i}"), &format!("value-{i}")).await;
    }

    // A port in use, another node's directory, a directory in use: clear errors, non-zero.
    let busy = refused(command_in(2, &addrs, &data.join("elsewhere")));
    assert!(!busy.status.success());
    assert!(stderr(&busy).contains("cannot listen"), "{}", stderr(&busy));
    // That failed first start stamped nothing: its next start is a first start again, not a
    // rejoin (a fresh cluster whose nodes all met a busy port never elected).
    assert!(
        !data.join("elsewhere/identity").exists(),
        "a failed first start stamped the directory"
    );
    // A directory that holds a log but no identity is not taken as this node's.
    let orphan = data.join("orphan");
    std::fs::create_dir_all(orphan.join("wal")).unwrap();
    std::fs::copy(data.join("node1/hardstate"), orphan.join("hardstate")).unwrap();
    let mut spare = addrs.clone();
    spare.insert(5, loopback_addrs(&[5]).await.unwrap()[&5].clone());
    let unknown = refused(command_in(5, &spare, &orphan));
    assert!(!unknown.status.success());
    assert!(stderr(&unknown).contains("holds a log but no identity"), "{}", stderr(&unknown));
    let mut elsewhere = addrs.clone();
    elsewhere.insert(4, loopback_addrs(&[4]).await.unwrap()[&4].clone());
    let wrong = refused(command_in(4, &elsewhere, &data.join("node1")));
    assert!(!wrong.status.success());
    assert!(stderr(&wrong).contains("belongs to another node"), "{}", stderr(&wrong));
    let mut moved = addrs.clone();
    moved.insert(1, loopback_addrs(&[1]).await.unwrap()[&1].clone());
    let in_use = refused(command(1, &moved, &data));
    assert!(!in_use.status.success());
    assert!(stderr(&in_use).contains("in use"), "{}", stderr(&in_use));

    // SIGKILL one node, keep writing, bring it back from its directory.
    let mut victim = nodes.0.remove(&2).unwrap();
    victim.kill().unwrap();
    victim.wait().unwrap();
    for i in 50..100 {
        set_surely(&store, &format!("key-{i}"), &format!("value-{i}")).await;
    }
    nodes.0.insert(2, command(2, &addrs, &data).spawn().unwrap());
    // Then the other two, one after the other: the cluster goes on with the restarted one.
    for id in [1, 3] {
        let mut child = nodes.0.remove(&id).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        nodes.0.insert(id, command(id, &addrs, &data).spawn().unwrap());
        set_surely(&store, &format!("after-restart-{id}"), "x").await;
    }
    for i in 0..100 {
        let value = store.get(&format!("key-{i}")).await.unwrap().expect("acknowledged write");
        assert_eq!(value.value, format!("value-{i}").as_bytes());
    }

    // SIGTERM: each stops cleanly, exit 0.
    for (id, child) in std::mem::take(&mut nodes.0) {
        let pid = child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let output = tokio::task::spawn_blocking(move || child.wait_with_output()).await.unwrap();
        let output = output.unwrap();
        assert!(output.status.success(), "node {id}: {:?} {}", output.status, stderr(&output));
    }
    std::fs::remove_dir_all(&data).unwrap();
}

/// Past a file-size limit (`ulimit -f`) a node does not die of SIGXFSZ without a word: its
/// storage fails with EFBIG, and the node halts saying so, still running.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_size_limit_halts_the_node_with_a_message() {
    let data = std::env::temp_dir().join(format!("plus-quorum-xfsz-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let addrs = loopback_addrs(&[1]).await.unwrap();
    let node = format!(
        "ulimit -f 200; exec {} --id 1 --listen {} --peers 1={} --data {}",
        program().display(),
        addrs[&1],
        addrs[&1],
        data.join("node1").display()
    );
    let mut nodes = Nodes::default();
    let child = Command::new("sh").args(["-c", &node]).stderr(Stdio::piped()).spawn().unwrap();
    nodes.0.insert(1, child);
    let mut store = client(&addrs);
    store.deadline = Duration::from_secs(3);
    let value = "x".repeat(20_000);
    let mut failed = false;
    for i in 0..40 {
        if store.set(&format!("k{i}"), value.clone()).await.is_err() {
            failed = true;
            break;
        }
    }
    assert!(failed, "100 KiB of file-size limit took 800 KB of writes");
    let mut child = nodes.0.remove(&1).unwrap();
    assert!(child.try_wait().unwrap().is_none(), "the node died (SIGXFSZ)");
    child.kill().unwrap();
    let output = child.wait_with_output().unwrap();
    let log = stderr(&output);
    assert!(log.contains("storage failed") && log.contains("File too large"), "{log}");
    let _ = std::fs::remove_dir_all(&data);
}

/// `quorum_load` records every acknowledged put while a node is SIGKILLed and restarted
/// twice; `quorum_load --op check` then finds every one of them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_put_is_lost_while_nodes_are_killed() {
    let data = std::env::temp_dir().join(format!("plus-quorum-load-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let addrs = loopback_addrs(&[1, 2, 3]).await.unwrap();
    let mut nodes = Nodes::default();
    for id in [1, 2, 3] {
        nodes.0.insert(id, command(id, &addrs, &data).spawn().unwrap());
    }
    let record = data.join("record");
    let load = |op: &str| {
        let mut command = Command::new(example("quorum_load"));
        command
            .args(["--endpoints", &peers(&addrs), "--op", op, "--clients", "8", "--seconds", "4"])
            .arg("--record")
            .arg(&record)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        command
    };
    let mut writer = load("put").spawn().unwrap();
    for victim in [1, 2] {
        tokio::time::sleep(Duration::from_millis(1_000)).await;
        let mut child = nodes.0.remove(&victim).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        nodes.0.insert(victim, command(victim, &addrs, &data).spawn().unwrap());
    }
    let written = tokio::task::spawn_blocking(move || {
        // Bounded: the load runs 4 s; a hang fails here instead of stalling the suite.
        for _ in 0..600 {
            if writer.try_wait().unwrap().is_some() {
                return writer.wait_with_output().unwrap();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = writer.kill();
        panic!("quorum_load did not end");
    })
    .await
    .unwrap();
    let summary = String::from_utf8_lossy(&written.stdout).into_owned();
    assert!(written.status.success(), "{summary} {}", stderr(&written));
    assert!(summary.contains("op=put clients=8"), "{summary}");
    let checked = load("check").output().unwrap();
    let verdict = String::from_utf8_lossy(&checked.stdout).into_owned();
    assert!(checked.status.success(), "{verdict} {}", stderr(&checked));
    assert!(verdict.contains("missing=0 wrong=0"), "{verdict}");
    let count: usize = verdict
        .split_whitespace()
        .find_map(|w| w.strip_prefix("checked="))
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!(count > 100, "only {count} puts were acknowledged: {summary}");
    println!("{summary}{verdict}");
    drop(nodes);
    std::fs::remove_dir_all(&data).unwrap();
}

/// A node whose disk is gone for good is replaced by an operator with the two programs: a new
/// `quorum_node --new-member`, then `quorum_ctl member replace`; every write survives, the new
/// node votes, and a client that knew only the old nodes reaches the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_replaces_a_lost_node_with_a_new_member() {
    let data = std::env::temp_dir().join(format!("plus-quorum-replace-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let addrs = loopback_addrs(&[1, 2, 3, 4]).await.unwrap();
    let first: HashMap<NodeId, String> =
        addrs.iter().filter(|(id, _)| **id != 4).map(|(id, a)| (*id, a.clone())).collect();
    let mut nodes = Nodes::default();
    for id in [1, 2, 3] {
        nodes.0.insert(id, command(id, &first, &data).spawn().unwrap());
    }
    let connector = RemoteNode::connector(plus_mux::Config::default(), Security::Plain);
    let store = client(&first).with_connector(connector);
    for i in 0..20 {
        set_surely(&store, &format!("key-{i}"), &format!("value-{i}")).await;
    }
    // Node 1 is lost with its disk.
    let mut lost = nodes.0.remove(&1).unwrap();
    lost.kill().unwrap();
    lost.wait().unwrap();
    std::fs::remove_dir_all(data.join("node1")).unwrap();
    let mut new = command(4, &addrs, &data);
    new.arg("--new-member").stdout(Stdio::piped());
    nodes.0.insert(4, new.spawn().unwrap());
    let survivors: HashMap<NodeId, String> =
        first.iter().filter(|(id, _)| **id != 1).map(|(id, a)| (*id, a.clone())).collect();
    let endpoints = peers(&survivors);
    let replace_with = endpoints.clone();
    let replaced = tokio::task::spawn_blocking(move || {
        let op = ["member", "replace", "1", "4", addrs[&4].as_str()];
        quorum_ctl(&replace_with, 30, &[] as &[&str], &op)
    })
    .await
    .unwrap();
    let said = String::from_utf8_lossy(&replaced.stdout).into_owned();
    assert!(replaced.status.success(), "{said} {}", stderr(&replaced));
    for step in ["LearnerAdded { id: 4 }", "Promoted { id: 4 }", "Removed { id: 1 }"] {
        assert!(said.contains(step), "no {step} in: {said}");
    }
    assert!(said.contains("voters {2, 3, 4}"), "{said}");
    // The old client (it knew 1, 2, 3) goes on, and reads every write; node 4 holds them too.
    set_surely(&store, "after", "replace").await;
    for i in 0..20 {
        let value = store.get(&format!("key-{i}")).await.unwrap().expect("acknowledged write");
        assert_eq!(value.value, format!("value-{i}").as_bytes());
    }
    // Leadership moves to node 4: the client follows the leader's name to a node it was never
    // given, learning its address from the cluster.
    let to_new = tokio::task::spawn_blocking(move || {
        quorum_ctl(&endpoints, 30, &[] as &[&str], &["transfer-leadership", "4"])
    });
    let moved = to_new.await.unwrap();
    assert!(moved.status.success(), "{}", stderr(&moved));
    set_surely(&store, "on-the-new-leader", "x").await;
    assert!(store.handles().iter().any(|h| h.id() == 4), "the client never reached node 4");
    let members = store.membership().await.unwrap();
    assert_eq!(members.voters().iter().copied().collect::<Vec<_>>(), vec![2, 3, 4]);
    // A graceful stop of the leader (node 4 now) hands leadership over before it exits.
    let leader = nodes.0.remove(&4).unwrap();
    Command::new("kill").args(["-TERM", &leader.id().to_string()]).status().unwrap();
    let output = tokio::task::spawn_blocking(move || leader.wait_with_output()).await.unwrap();
    let output = output.unwrap();
    let said = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{said} {}", stderr(&output));
    assert!(said.contains("node 4 handed leadership to node"), "{said}");
    set_surely(&store, "after-handover", "x").await;
    drop(nodes);
    std::fs::remove_dir_all(&data).unwrap();
}

/// Against addresses where nothing listens, a load and a status fail with exit status 1
/// instead of reporting success, and the load does not spin.
#[test]
fn load_and_status_against_no_store_fail() {
    let endpoints = "1=127.0.0.1:1,2=127.0.0.1:2";
    let load = Command::new(example("quorum_load"))
        .args(["--endpoints", endpoints, "--op", "put", "--clients", "4", "--seconds", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&load.stderr);
    assert_eq!(load.status.code(), Some(1), "{err}");
    assert!(err.contains("every operation failed"), "{err}");
    let out = String::from_utf8_lossy(&load.stdout);
    let errors: u64 = out
        .split_whitespace()
        .find_map(|f| f.strip_prefix("errors="))
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX);
    assert!(errors < 1_000, "4 clients for 1 s tried {errors} times: spinning ({out})");
    let status = quorum_ctl(endpoints, 1, &[] as &[String], &["status"]);
    assert_eq!(status.status.code(), Some(1), "{}", String::from_utf8_lossy(&status.stderr));
}

/// A one-node cluster in a fresh directory named `name` and this process's id: the node (killed
/// when dropped), the directory, and the endpoints to give clients.
async fn one_node(name: &str) -> (Nodes, PathBuf, String) {
    let data = std::env::temp_dir().join(format!("{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).unwrap();
    let addrs = loopback_addrs(&[1]).await.unwrap();
    let mut nodes = Nodes::default();
    nodes.0.insert(1, command(1, &addrs, &data).spawn().unwrap());
    (nodes, data, peers(&addrs))
}

/// One second of `quorum_load --op get --keys KEYS` against `endpoints` (the keys written
/// first unless there): what it printed, once it has exited successfully.
fn load_gets(endpoints: &str, keys: &str, clients: &str, value_size: &str) -> String {
    let out = Command::new(example("quorum_load"))
        .args(["--endpoints", endpoints, "--op", "get", "--keys", keys])
        .args(["--clients", clients, "--seconds", "1", "--value-size", value_size])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{said} {}", stderr(&out));
    said
}

/// How many of the keys of `quorum_load --keys KEYS` the store holds, as `quorum_ctl` says.
fn load_keys_stored(endpoints: &str, keys: &str) -> String {
    let prefix = format!("load/keys-{keys}/");
    let out =
        quorum_ctl(endpoints, 20, &[] as &[String], &["get", &prefix, "--prefix", "--count-only"]);
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Keys whose transactions of 100 would be past the cluster's 1.5 MiB a request are written
/// in smaller ones: the fill does not stop at the cluster's limits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_fills_in_transactions_the_cluster_takes() {
    let (nodes, data, endpoints) = one_node("plus-quorum-load-limits").await;
    let said = load_gets(&endpoints, "300", "2", "20000");
    assert!(said.contains(" errors=0 "), "a get missed a key: {said}");
    assert_eq!(load_keys_stored(&endpoints, "300"), "300");
    drop(nodes);
    let _ = std::fs::remove_dir_all(&data);
}

/// `quorum_load --op get --keys N` writes the N keys its gets read before the clock starts
/// (every one of them, in transactions), and a second run reads the same keys without
/// writing them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_gets_read_keys_written_once() {
    let (nodes, data, endpoints) = one_node("plus-quorum-load-keys").await;
    // Each key's version and revision of creation: a second fill would change both.
    let written = || {
        let out = quorum_ctl(
            &endpoints,
            20,
            &["--write-out".to_owned(), "json".to_owned()],
            &["get", "load/keys-1234/0"],
        );
        let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        (json["version"].as_u64(), json["created"].as_u64())
    };
    let count = || load_keys_stored(&endpoints, "1234");
    let load = || {
        let said = load_gets(&endpoints, "1234", "4", "16");
        let field = |name: &str| -> u64 {
            said.split_whitespace()
                .find_map(|f| f.strip_prefix(name))
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in {said}"))
        };
        assert_eq!(field("errors="), 0, "a get missed a key: {said}");
        assert!(field("ops=") > 0, "{said}");
    };
    load();
    assert_eq!(count(), "1234");
    let first = written();
    assert!(first.0.is_some(), "no key load/keys-1234/0");
    load();
    assert_eq!(count(), "1234");
    assert_eq!(written(), first, "the second run wrote the keys again");
    drop(nodes);
    std::fs::remove_dir_all(&data).unwrap();
}

/// `quorum_ctl` as an operator uses it against a real node: keys with a lease, a range as
/// JSON, counting, deleting a prefix, a transaction whose compare fails (exit 3), leases, a
/// lock held while a command runs (its fencing token in the command's environment), and the
/// endpoints' health.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quorum_ctl_covers_what_operators_do() {
    let (_nodes, data, endpoints) = one_node("plus-quorum-ctl").await;
    let ctl = |args: &[&str]| {
        let out = quorum_ctl(&endpoints, 20, &[] as &[String], args);
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.code(), text, String::from_utf8_lossy(&out.stderr).into_owned())
    };
    // The node elects itself; the first call waits for it.
    let (code, lease, err) = ctl(&["lease", "grant", "60"]);
    assert_eq!(code, Some(0), "{err}");
    let lease = lease.trim().to_owned();
    for (key, value) in [("app/a", "1"), ("app/b", "2"), ("other", "3")] {
        assert_eq!(ctl(&["put", key, value, "--lease", &lease]).0, Some(0));
    }
    let (code, json, _) = ctl(&["--write-out", "json", "get", "app/", "--prefix"]);
    assert_eq!(code, Some(0));
    let range: serde_json::Value = serde_json::from_str(json.trim()).unwrap();
    assert_eq!(range["count"], 2, "{json}");
    assert_eq!(range["kvs"][1]["key"], "app/b");
    assert_eq!(range["kvs"][1]["lease"].as_u64().map(|l| l.to_string()), Some(lease.clone()));
    assert_eq!(ctl(&["get", "app/", "--prefix", "--count-only"]).1.trim(), "2");
    assert_eq!(ctl(&["get", "app/", "--prefix", "--keys-only"]).1, "app/a\napp/b\n");
    let (_, ttl, _) = ctl(&["lease", "timetolive", &lease]);
    assert!(ttl.contains("app/a") && ttl.contains("other"), "{ttl}");
    assert_eq!(ctl(&["lease", "list"]).1.trim(), lease);
    // A transaction whose compare fails: its `otherwise` runs, exit 3.
    let txn = data.join("txn.json");
    std::fs::write(
        &txn,
        r#"{"when": [{"key": "other", "expect": {"Version": 999999}}],
            "then": [{"Delete": {"key": "other"}}],
            "otherwise": [{"Get": "other"}]}"#,
    )
    .unwrap();
    let (code, said, err) = ctl(&["txn", "--file", txn.to_str().unwrap()]);
    assert_eq!(code, Some(3), "{said}{err}");
    assert!(said.starts_with("FAILURE"), "{said}");
    // The same in etcdctl's text, whose compares hold this time.
    std::fs::write(
        &txn,
        "version(\"other\") > \"0\"\nvalue(\"other\") = \"3\"\n\nput swapped \"yes it is\"\n\nget other\n",
    )
    .unwrap();
    let (code, said, err) = ctl(&["txn", "--file", txn.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{said}{err}");
    assert!(said.starts_with("SUCCESS"), "{said}");
    assert_eq!(ctl(&["get", "swapped"]).1, "yes it is\n");
    std::fs::write(&txn, "mod(\"other\") < \"3\"\n").unwrap();
    let (code, _, err) = ctl(&["txn", "--file", txn.to_str().unwrap()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("line 1") && err.contains("with = only"), "{err}");
    let (_, table, _) = ctl(&["--write-out", "table", "get", "app/", "--prefix"]);
    assert!(table.contains("| KEY ") && table.contains("| app/b "), "{table}");
    let (_, table, _) = ctl(&["--write-out", "table", "endpoint", "status"]);
    assert!(table.contains("| ID ") && table.contains("| Leader "), "{table}");
    assert_eq!(ctl(&["del", "app/", "--prefix"]).1.trim(), "2");
    assert_eq!(ctl(&["get", "app/a"]).0, Some(1), "deleted: not found");
    // A lock held while a command runs, which sees its fencing token.
    let (code, said, err) =
        ctl(&["lock", "deploy", "--", "sh", "-c", "echo token=$PLUS_LOCK_TOKEN"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(said.contains("deploy/") && said.contains("token="), "{said}");
    let failing = ctl(&["lock", "deploy", "--", "false"]);
    assert_eq!(failing.0, Some(1), "the command's failure is the lock's exit status");
    assert_eq!(ctl(&["lease", "revoke", &lease]).0, Some(0));
    assert_eq!(ctl(&["get", "other"]).0, Some(1), "the lease took its keys");
    let (code, health, _) = ctl(&["endpoint", "health"]);
    assert_eq!(code, Some(0), "{health}");
    assert!(health.contains("node 1 is healthy"), "{health}");
    let (code, help, _) = ctl(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(help.contains("Examples") && help.contains("snapshot restore"), "{help}");
    let _ = std::fs::remove_dir_all(&data);
}

/// `GET path` on `addr` over plain HTTP: the status code and the body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n").ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    let code = answer.split_whitespace().nth(1)?.parse().ok()?;
    let body = answer.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

/// `--http-listen`: every node answers /health (200 with a leader, 503 once a majority is
/// gone), /metrics in Prometheus's text format with the store's and the connections' series,
/// and /version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_serve_health_metrics_and_version_over_http() {
    let data = std::env::temp_dir().join(format!("plus-quorum-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    // Six distinct ports in one call: the nodes' and their HTTP endpoints'.
    let mut ports = loopback_addrs(&[1, 2, 3, 4, 5, 6]).await.unwrap();
    let http: HashMap<NodeId, String> =
        [1, 2, 3].into_iter().map(|id| (id, ports.remove(&(id + 3)).unwrap())).collect();
    let addrs = ports;
    let mut nodes = Nodes::default();
    for id in [1, 2, 3] {
        let mut node = command(id, &addrs, &data);
        node.args(["--http-listen", &http[&id]]);
        nodes.0.insert(id, node.spawn().unwrap());
    }
    let store = client(&addrs);
    set_surely(&store, "k", "v").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    for id in [1, 2, 3] {
        loop {
            match http_get(&http[&id], "/health") {
                Some((200, body)) => {
                    assert!(body.contains("\"healthy\":true"), "{body}");
                    break;
                }
                other => {
                    assert!(std::time::Instant::now() < deadline, "node {id}: {other:?}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }
    let (code, metrics) = http_get(&http[&1], "/metrics").unwrap();
    assert_eq!(code, 200);
    assert!(metrics.contains("plus_quorum_term{node=\"1\"}"), "{metrics}");
    assert!(metrics.contains("plus_mux_"), "the connections' series too: {metrics}");
    let (code, version) = http_get(&http[&2], "/version").unwrap();
    assert_eq!((code, version.contains("plus-quorum")), (200, true), "{version}");
    // A majority gone: the survivor knows no leader for long, and says so.
    for id in [2, 3] {
        if let Some(mut child) = nodes.0.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((503, body)) = http_get(&http[&1], "/health") {
            assert!(body.contains("\"healthy\":false"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "node 1 still healthy without a majority");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(nodes);
    let _ = std::fs::remove_dir_all(&data);
}

/// The HTTP endpoints do not authenticate, so a node refuses to serve them off loopback
/// unless the operator says the network is trusted: another machine cannot read them by
/// accident of a flag.
#[test]
fn unauthenticated_http_off_loopback_is_refused() {
    let data = std::env::temp_dir().join(format!("plus-quorum-http-off-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&data);
    let addrs: HashMap<NodeId, String> = [(1, "127.0.0.1:1".to_owned())].into();
    let mut node = command(1, &addrs, &data);
    node.args(["--http-listen", "0.0.0.0:0"]);
    let output = refused(node);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("refusing to serve unauthenticated HTTP"),
        "{}",
        stderr(&output)
    );
    assert!(!data.join("node1").exists(), "refused before it touched its data directory");
    let _ = std::fs::remove_dir_all(&data);
}
