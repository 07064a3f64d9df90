//! The store's endpoint under the audit's attacks, on real `quorum_node` processes on
//! 127.0.0.1: a holder of an ordinary client certificate, a node's certificate used as another
//! node, a local user speaking the wire by hand without TLS, a client whose credential the
//! nodes refuse, and plain text aimed beyond the machine. Every process is killed when its
//! test ends, also when it fails; the only addresses reached are loopback ones (a
//! non-loopback address appears only in arguments that must be refused before any connect).
#![cfg(unix)]

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use common::{Processes, example, leader, peers, quorum_ctl, tls_args};
use plus_mux::{Connection, Connector, NoHandler};
use plus_quorum::testing::{loopback_addrs, raft_request, reply_error};
use plus_quorum::{KvState, Message, NodeId, Snapshot, StoreError};

/// The reply's error to `msgs` sent as node `from` over a connection `connector` makes.
async fn forge<C: Connector>(
    connector: &C,
    from: NodeId,
    msgs: Vec<Message>,
) -> Option<StoreError> {
    let stream = connector.connect().await.unwrap();
    let config = plus_mux::Config { go_compatible: false, ..plus_mux::Config::default() };
    let connection = Connection::new(stream, config, Arc::new(NoHandler)).unwrap();
    let reply = connection.request_with_timeout(raft_request(from, msgs), Duration::from_secs(5));
    let reply = reply.await.unwrap();
    connection.close();
    reply_error(&reply).unwrap()
}

fn vote_at_the_last_term() -> Message {
    Message::Vote { term: u64::MAX, last_index: u64::MAX - 1, last_term: u64::MAX - 1 }
}

/// A snapshot that would replace the whole store with nothing.
fn empty_snapshot(term: u64) -> Message {
    let snapshot = Snapshot {
        last_index: 1 << 40,
        last_term: term,
        state: KvState::default(),
        membership: None,
    };
    Message::Snapshot { term, snapshot: Box::new(snapshot), commit: 1 << 40, read_seq: 0 }
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

fn tls_of(dir: &Path, name: &str) -> plus_mux::Tls {
    let file = |f: String| dir.join(f);
    plus_mux::Tls::from_pem_files(
        &file(format!("{name}.pem")),
        &file(format!("{name}.key")),
        &file("ca.pem".into()),
    )
    .unwrap()
}

/// Certificates made by `quorum_certs`, as an operator makes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_certificate_cannot_vote_install_a_snapshot_or_speak_as_a_node() {
    let mut nodes = Processes::new("quorum-attack-tls");
    let certs = nodes.dir.join("certs");
    let made = Command::new(example("quorum_certs"))
        .arg("--out")
        .arg(&certs)
        .args(["--nodes", "1,2,3", "--admin", "ops", "--client", "ci"])
        .output()
        .unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(certs.join("client-ci.key")).unwrap().permissions(),
    );
    assert_eq!(mode & 0o777, 0o600, "a private key only its owner reads");
    let addrs = loopback_addrs(&[1, 2, 3]).await.unwrap();
    for id in [1, 2, 3] {
        nodes.start(id, &addrs, &tls_args(&certs, &format!("node-{id}")));
    }
    let endpoints = peers(&addrs);
    let admin = tls_args(&certs, "admin-ops");
    let put = quorum_ctl(&endpoints, 30, &admin, &["put", "acknowledged", "kept"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let (leader_id, term) = leader(&endpoints, &admin).expect("a leader");

    // An ordinary client's certificate: the worst vote and an empty snapshot, as every node,
    // to every node.
    let client = tls_of(&certs, "client-ci");
    for (&to, addr) in &addrs {
        for from in [1, 2, 3] {
            let msgs = vec![vote_at_the_last_term(), empty_snapshot(term + 1)];
            let refused = forge(&client.connector(addr), from, msgs).await;
            assert!(matches!(refused, Some(StoreError::Forbidden { .. })), "to {to}: {refused:?}");
        }
    }
    // Node 2's own certificate, speaking for node 3 to node 1.
    let node2 = tls_of(&certs, "node-2");
    let refused = forge(&node2.connector(&addrs[&1]), 3, vec![vote_at_the_last_term()]).await;
    assert!(matches!(refused, Some(StoreError::Forbidden { .. })), "{refused:?}");

    // 900 idle connections to every node, from the address every client uses: more than all
    // the handshake slots. An operator is still served while they stay open.
    let mut idle = Vec::new();
    for addr in addrs.values() {
        for _ in 0..300 {
            idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        }
    }
    let during = quorum_ctl(&endpoints, 10, &admin, &["get", "acknowledged"]);
    assert_eq!(stdout(&during), "kept", "{}", String::from_utf8_lossy(&during.stderr));
    drop(idle);

    // A certificate of another CA: refused, said so, and retried with backoff, not in a loop.
    let rogue = nodes.dir.join("rogue");
    let made = Command::new(example("quorum_certs"))
        .arg("--out")
        .arg(&rogue)
        .args(["--nodes", "9", "--client", "ci"])
        .output()
        .unwrap();
    assert!(made.status.success());
    let mut rogue_args = tls_args(&rogue, "client-ci");
    rogue_args[5] = certs.join("ca.pem").display().to_string(); // it trusts the real CA
    let refused = quorum_ctl(&endpoints, 3, &rogue_args, &["get", "acknowledged"]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "a stranger's certificate was answered");
    assert!(
        stderr.contains("unreachable") && stderr.contains("refused the TLS handshake"),
        "the error names the cause: {stderr}"
    );
    for id in [1, 2, 3] {
        let lines = nodes.log(id).matches("handshake failed").count();
        assert!(lines <= 5, "node {id} logged {lines} refused handshakes in 3 s");
    }

    // The same term, and every acknowledged write: also after the leader is killed.
    assert_eq!(leader(&endpoints, &admin), Some((leader_id, term)));
    let get = quorum_ctl(&endpoints, 10, &admin, &["get", "acknowledged"]);
    assert_eq!(stdout(&get), "kept");
    nodes.kill(leader_id);
    let get = quorum_ctl(&endpoints, 30, &admin, &["get", "acknowledged"]);
    assert_eq!(stdout(&get), "kept", "{}", String::from_utf8_lossy(&get.stderr));
    // Each node logged its refusals once per connection, not once per message.
    let logged: usize =
        [1, 2, 3].iter().map(|&id| nodes.log(id).matches("refused a request").count()).sum();
    assert!((1..=13).contains(&logged), "{logged} refusal lines");
}

/// Without TLS a local user can speak the wire by hand (the README says loopback is no
/// authentication); still, one vote in the last term must not wedge the cluster: the nodes
/// drop it, and after the leader dies the others elect a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_in_the_last_term_does_not_wedge_a_plain_cluster() {
    let mut nodes = Processes::new("quorum-attack-plain");
    let addrs = loopback_addrs(&[1, 2, 3]).await.unwrap();
    for id in [1, 2, 3] {
        nodes.start(id, &addrs, &[]);
    }
    let endpoints = peers(&addrs);
    let none: [String; 0] = [];
    let put = quorum_ctl(&endpoints, 30, &none, &["put", "acknowledged", "kept"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    for addr in addrs.values() {
        let connector = plus_mux::TcpConnector::new(addr.clone());
        let delivered = forge(&connector, 99, vec![vote_at_the_last_term()]).await;
        assert_eq!(delivered, None, "plain TCP delivers: the node's core must drop it");
    }
    let (leader_id, term) = leader(&endpoints, &none).expect("still a leader");
    assert!(term < 1_000, "term {term}: the forged one was heard");
    nodes.kill(leader_id);
    let put = quorum_ctl(&endpoints, 30, &none, &["put", "after", "election"]);
    assert!(
        put.status.success(),
        "leaderless after a forged vote: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    assert_eq!(stdout(&quorum_ctl(&endpoints, 10, &none, &["get", "acknowledged"])), "kept");
    let dropped: usize =
        [1, 2, 3].iter().map(|&id| nodes.log(id).matches("dropped a message").count()).sum();
    assert!(dropped >= 1, "the drop was logged");
}

/// Pre-shared keys: clients and readers by their own keys, nodes by theirs; a reader cannot
/// write, a client cannot speak for a node, and a client with a key the nodes do not hold
/// fails within its timeout naming the cause, having reconnected with backoff.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_shared_keys_bind_roles_and_a_refused_key_is_named() {
    use std::os::unix::fs::PermissionsExt;
    let mut nodes = Processes::new("quorum-attack-psk");
    let keys = nodes.dir.join("keys");
    std::fs::create_dir_all(&keys).unwrap();
    let write_key = |name: &str, key: &str| {
        let path = keys.join(format!("{name}.key"));
        std::fs::write(&path, format!("{key}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        path
    };
    write_key("node", "nodes-only-key-0123456789abcdef");
    let client_key = write_key("client", "client-key-0123456789abcdef000");
    let reader_key = write_key("reader", "reader-key-0123456789abcdef000");
    let stranger_key = nodes.dir.join("stranger.key");
    std::fs::write(&stranger_key, "a-key-nobody-gave-the-nodes-000").unwrap();
    std::fs::set_permissions(&stranger_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    let addrs = loopback_addrs(&[1, 2, 3]).await.unwrap();
    let psk_dir = vec!["--psk-dir".to_owned(), keys.display().to_string()];
    for id in [1, 2, 3] {
        nodes.start(id, &addrs, &psk_dir);
    }
    let endpoints = peers(&addrs);
    let as_file = |path: &Path| vec!["--psk-file".to_owned(), path.display().to_string()];
    let put = quorum_ctl(&endpoints, 30, &as_file(&client_key), &["put", "k", "v"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let get = quorum_ctl(&endpoints, 10, &as_file(&reader_key), &["get", "k"]);
    assert_eq!(stdout(&get), "v");
    let write = quorum_ctl(&endpoints, 10, &as_file(&reader_key), &["put", "k", "w"]);
    let stderr = String::from_utf8_lossy(&write.stderr);
    assert!(!write.status.success() && stderr.contains("may not make a write"), "{stderr}");
    // A backup is all the data and a copy held on the leader: admins only.
    let backup = nodes.dir.join("taken.db");
    let op = ["snapshot", "save", backup.to_str().unwrap()];
    let save = quorum_ctl(&endpoints, 10, &as_file(&client_key), &op);
    let stderr = String::from_utf8_lossy(&save.stderr);
    assert!(!save.status.success() && stderr.contains("may not make a backup"), "{stderr}");
    assert!(!backup.exists() && !backup.with_extension("part").exists(), "nothing left behind");

    let client = plus_mux::Psk::new(b"client-key-0123456789abcdef000".to_vec()).unwrap();
    let refused = forge(&client.connector(&addrs[&1]), 2, vec![vote_at_the_last_term()]).await;
    assert!(matches!(refused, Some(StoreError::Forbidden { .. })), "{refused:?}");

    let stranger = quorum_ctl(&endpoints, 3, &as_file(&stranger_key), &["get", "k"]);
    let stderr = String::from_utf8_lossy(&stranger.stderr);
    assert!(!stranger.status.success(), "a stranger's key was answered");
    assert!(stderr.contains("unreachable") && stderr.contains("key"), "{stderr}");
    // The refusals are logged at most once a second per node, whatever the attempts.
    for id in [1, 2, 3] {
        let lines = nodes.log(id).matches("handshake failed").count();
        assert!(lines <= 5, "node {id} logged {lines} refused handshakes in 3 s");
    }
    assert_eq!(stdout(&quorum_ctl(&endpoints, 10, &as_file(&client_key), &["get", "k"])), "v");
}

/// Plain text never leaves the machine unless the operator says so: a node with a peer
/// beyond loopback, and a client with such an endpoint, are refused as usage errors before
/// they connect anywhere.
#[test]
fn plain_text_beyond_loopback_is_a_usage_error() {
    // 192.0.2.0/24 is reserved for documentation: nothing is there, and nothing is sent.
    let node = Command::new(example("quorum_node"))
        .args(["--id", "1", "--listen", "127.0.0.1:1", "--peers", "1=127.0.0.1:1,2=192.0.2.1:7102"])
        .arg("--memory")
        .output()
        .unwrap();
    assert_eq!(node.status.code(), Some(2), "{}", String::from_utf8_lossy(&node.stderr));
    assert!(String::from_utf8_lossy(&node.stderr).contains("192.0.2.1:7102"));
    let none: [String; 0] = [];
    let ctl = quorum_ctl("1=192.0.2.1:7101", 1, &none, &["get", "k"]);
    assert_eq!(ctl.status.code(), Some(2), "{}", String::from_utf8_lossy(&ctl.stderr));
}
