//! `quorum_node` processes with mutual TLS on 127.0.0.1, certificates made at run time: a
//! client with a certificate of the cluster's CA reads and writes (through `quorum_ctl` and
//! through the library); a client without TLS, or with a certificate of another CA, gets
//! nothing and writes nothing.
#![cfg(unix)]

mod common;

use common::{example, quorum_ctl};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use plus_mux::certs::Ca;
use plus_quorum::testing::loopback_addrs;
use plus_quorum::{Cluster, NodeId, RemoteNode, Security, node_uri};

/// Children killed when the test ends, also when it fails; the directory goes with them.
struct Cluster3 {
    children: Vec<Child>,
    dir: PathBuf,
}

impl Drop for Cluster3 {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Writes `name.pem` and `name.key` for a leaf of `ca` named by the role URI `role`; returns
/// the TLS arguments for them.
fn identity(dir: &Path, ca: &Ca, ca_file: &Path, name: &str, role: &str) -> Vec<String> {
    let leaf = ca.leaf(name, &[role]).unwrap();
    let (cert, key) = (dir.join(format!("{name}.pem")), dir.join(format!("{name}.key")));
    std::fs::write(&cert, leaf.cert).unwrap();
    std::fs::write(&key, leaf.key).unwrap();
    vec![
        "--tls-cert".into(),
        cert.display().to_string(),
        "--tls-key".into(),
        key.display().to_string(),
        "--tls-ca".into(),
        ca_file.display().to_string(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_cluster_serves_its_own_clients_and_refuses_everyone_else() {
    let dir = std::env::temp_dir().join(format!("plus-quorum-tls-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut cluster = Cluster3 { children: Vec::new(), dir: dir.clone() };

    let ca = Ca::new("plus cluster CA").unwrap();
    let ca_file = dir.join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let addrs: HashMap<NodeId, String> = loopback_addrs(&[1, 2, 3]).await.unwrap();
    let peers = [1, 2, 3].map(|id| format!("{id}={}", addrs[&id])).join(",");
    for id in [1u64, 2, 3] {
        let tls = identity(&dir, &ca, &ca_file, &format!("node{id}"), &node_uri(id));
        let child = Command::new(example("quorum_node"))
            .args(["--id", &id.to_string(), "--listen", &addrs[&id], "--peers", &peers, "--memory"])
            .args(&tls)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        cluster.children.push(child);
    }

    // A client of the cluster's CA: writes and reads, once the nodes have elected a leader
    // among themselves (over TLS too).
    let client = identity(&dir, &ca, &ca_file, "client", "plus-quorum://client/test");
    let put = quorum_ctl(&peers, 30, &client, &["put", "greeting", "hello"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let get = quorum_ctl(&peers, 10, &client, &["get", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello");

    // The library's client, with the same files.
    let tls =
        plus_mux::Tls::from_pem_files(&dir.join("client.pem"), &dir.join("client.key"), &ca_file)
            .unwrap();
    let security = Security::MutualTls(tls);
    let nodes = addrs
        .iter()
        .map(|(&id, addr)| {
            RemoteNode::connect_secured(id, addr, &plus_mux::Config::default(), &security).unwrap()
        })
        .collect();
    let mut library = Cluster::new(nodes);
    library.deadline = Duration::from_secs(10);
    library.set("from-library", "yes").await.unwrap();
    assert_eq!(library.get("greeting").await.unwrap().unwrap().value, "hello");

    // No TLS at all, or a certificate of another CA: no answer, and nothing written.
    let plain = quorum_ctl(&peers, 3, &[] as &[String], &["put", "greeting", "plain"]);
    assert!(!plain.status.success(), "a plain client was answered");
    let rogue_ca = Ca::new("rogue CA").unwrap();
    let rogue_ca_file = dir.join("rogue-ca.pem");
    std::fs::write(&rogue_ca_file, rogue_ca.pem()).unwrap();
    let mut rogue = identity(&dir, &rogue_ca, &rogue_ca_file, "rogue", "plus-quorum://admin/x");
    // It trusts the real CA, so only the nodes' check of its certificate can stop it.
    rogue[5] = ca_file.display().to_string();
    let forged = quorum_ctl(&peers, 3, &rogue, &["put", "greeting", "rogue"]);
    assert!(!forged.status.success(), "a client of another CA was answered");
    let get = quorum_ctl(&peers, 10, &client, &["get", "greeting"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "hello", "nothing was overwritten");
    for node in library.handles() {
        node.close();
    }
}
