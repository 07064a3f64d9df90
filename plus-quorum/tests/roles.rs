//! Only a node speaks for a node: three nodes over mutual TLS on 127.0.0.1, each certificate
//! naming its role (`plus-quorum://node/N`, `.../client/NAME`, ...). A peer holding any
//! certificate the CA signed sends consensus messages by hand, as another node, with the worst
//! terms and states it can make: every one is refused with a typed error, the cluster keeps
//! its leader and its data. Readers cannot write, clients cannot change membership, a
//! certificate with no role gets no connection, and a client refuses a node that is not the
//! one it asked for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use plus_mux::certs::Ca;
use plus_mux::{Config as MuxConfig, Connection, Connector, NoHandler, Tls};
use plus_quorum::testing::{loopback_addrs, raft_request, reply_error};
use plus_quorum::{
    Cluster, ClusterChange, Config, KvState, MemStorage, Message, MuxNode, NodeId, RemoteNode,
    Security, Snapshot, StoreError,
};

fn tls(ca: &Ca, uris: &[&str]) -> Tls {
    let leaf = ca.leaf("peer", uris).unwrap();
    Tls::from_pem(leaf.cert.as_bytes(), leaf.key.as_bytes(), ca.pem().as_bytes()).unwrap()
}

/// In-process nodes: a failed test's runtime ends their tasks as it shuts down.
struct Nodes(Vec<MuxNode>);

impl Nodes {
    async fn stop(self) {
        for node in &self.0 {
            node.stop().await;
        }
    }

    /// The leader's id and term, as the leader reports them.
    async fn leadership(&self, via: &Cluster<RemoteNode>) -> (NodeId, u64) {
        let leader = via.leader().await.expect("a leader");
        let status = self.0[usize::try_from(leader - 1).unwrap()].handle.status().await.unwrap();
        (leader, status.term)
    }
}

async fn cluster(ca: &Ca) -> (Nodes, HashMap<NodeId, String>) {
    let addrs = loopback_addrs(&[1, 2, 3]).await.unwrap();
    let mut nodes = Nodes(Vec::new());
    for id in [1, 2, 3] {
        let uri = plus_quorum::node_uri(id);
        let security = Security::MutualTls(tls(ca, &[&uri]));
        let config = Config::new(id, vec![1, 2, 3]);
        let node = MuxNode::start_secured(
            config,
            MemStorage::new(),
            &addrs,
            MuxConfig::default(),
            &security,
        )
        .await
        .unwrap();
        nodes.0.push(node);
    }
    (nodes, addrs)
}

fn client(ca: &Ca, uri: &str, addrs: &HashMap<NodeId, String>) -> Cluster<RemoteNode> {
    let security = Security::MutualTls(tls(ca, &[uri]));
    let nodes = addrs
        .iter()
        .map(|(&id, addr)| {
            RemoteNode::connect_secured(id, addr, &MuxConfig::default(), &security).unwrap()
        })
        .collect();
    let mut cluster = Cluster::new(nodes);
    cluster.deadline = Duration::from_secs(10);
    cluster
}

/// Sends a hand-made request over a connection made with `tls`; the error its reply carries.
async fn by_hand(tls: &Tls, addr: &str, body: bytes::Bytes) -> Option<StoreError> {
    let stream = tls.connector(addr).connect().await.unwrap();
    let connection = Connection::new(stream, MuxConfig::default(), Arc::new(NoHandler)).unwrap();
    let reply = connection.request_with_timeout(body, Duration::from_secs(5)).await.unwrap();
    connection.close();
    reply_error(&reply).unwrap()
}

fn forged_snapshot(term: u64) -> Message {
    Message::Snapshot {
        term,
        snapshot: Box::new(Snapshot {
            last_index: 1_000_000,
            last_term: term,
            state: KvState::default(),
            membership: None,
        }),
        commit: 1_000_000,
        read_seq: 0,
    }
}

#[tokio::test]
async fn only_node_n_speaks_as_node_n_and_each_role_does_only_its_part() {
    let ca = Ca::new("cluster CA").unwrap();
    let (nodes, addrs) = cluster(&ca).await;
    let admin = client(&ca, "plus-quorum://admin/ops", &addrs);
    admin.set("acknowledged", "kept").await.unwrap();
    let (leader, term) = nodes.leadership(&admin).await;
    let follower = [1, 2, 3].into_iter().find(|&id| id != leader).unwrap();

    // A client's certificate, speaking as the leader and as the follower's peers: a vote in
    // the last term, a snapshot that empties the store.
    let ordinary = tls(&ca, &["plus-quorum://client/ci"]);
    let vote = Message::Vote { term: u64::MAX, last_index: u64::MAX - 1, last_term: u64::MAX - 1 };
    for from in [1, 2, 3, 99] {
        for msg in [vote.clone(), forged_snapshot(term + 1)] {
            let error = by_hand(&ordinary, &addrs[&follower], raft_request(from, vec![msg])).await;
            assert!(matches!(error, Some(StoreError::Forbidden { .. })), "{error:?}");
        }
    }
    // Node 2's own certificate, speaking as node 3.
    let node2 = tls(&ca, &[&plus_quorum::node_uri(2)]);
    let error = by_hand(&node2, &addrs[&1], raft_request(3, vec![vote.clone()])).await;
    let Some(StoreError::Forbidden { role, request }) = error else { panic!("{error:?}") };
    assert_eq!((role.as_str(), request.as_str()), ("node 2", "consensus messages as node 3"));

    // Nothing moved: same leader, same term, the acknowledged write still there.
    assert_eq!(nodes.leadership(&admin).await, (leader, term));
    assert_eq!(admin.get("acknowledged").await.unwrap().unwrap().value, "kept");
    let refused: u64 = nodes.0.iter().map(|n| n.server().refused_requests()).sum();
    assert_eq!(refused, 9);

    // A reader reads and cannot write; a client writes and cannot change membership; an
    // admin may (the change is refused by the cluster, not by the role).
    let reader = client(&ca, "plus-quorum://reader/dashboard", &addrs);
    assert_eq!(reader.get("acknowledged").await.unwrap().unwrap().value, "kept");
    let write = reader.set("acknowledged", "overwritten").await;
    assert!(matches!(write, Err(StoreError::Forbidden { .. })), "{write:?}");
    let writer = client(&ca, "plus-quorum://client/ci", &addrs);
    writer.set("by-client", "yes").await.unwrap();
    let remove = ClusterChange::Remove { id: 42 };
    let change = writer.change_cluster(remove.clone()).await;
    assert!(matches!(change, Err(StoreError::Forbidden { .. })), "{change:?}");
    let change = admin.change_cluster(remove).await;
    assert!(matches!(change, Err(StoreError::Client(_))), "{change:?}");
    assert_eq!(admin.get("acknowledged").await.unwrap().unwrap().value, "kept");
    nodes.stop().await;
}

#[tokio::test]
async fn a_certificate_without_a_role_gets_no_connection_and_a_client_checks_the_node() {
    let ca = Ca::new("cluster CA").unwrap();
    let (nodes, addrs) = cluster(&ca).await;
    let nameless = tls(&ca, &["spiffe://elsewhere/workload"]);
    let stream = nameless.connector(&addrs[&1]).connect().await.unwrap();
    let connection = Connection::new(stream, MuxConfig::default(), Arc::new(NoHandler)).unwrap();
    assert!(connection.request_with_timeout("x", Duration::from_secs(3)).await.is_err());
    assert_eq!(nodes.0[0].server().counters().refused, 1);

    // A client asking for node 1 at node 2's address: node 2's certificate is not node 1's.
    let security = Security::MutualTls(tls(&ca, &["plus-quorum://client/ci"]));
    let mut wrong = Cluster::new(vec![
        RemoteNode::connect_secured(1, &addrs[&2], &MuxConfig::default(), &security).unwrap(),
    ]);
    wrong.deadline = Duration::from_secs(2);
    let error = wrong.get("k").await.unwrap_err();
    assert!(error.to_string().contains("is not plus-quorum://node/1"), "{error}");
    nodes.stop().await;
}

/// A node that cannot start says why in a typed error: its address taken, or none given.
#[tokio::test]
async fn a_node_that_cannot_start_says_why() {
    use plus_quorum::{Config, MemStorage, MuxConfig, MuxNode, StartError};
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let addrs = std::collections::HashMap::from([(1, addr.clone())]);
    let err =
        MuxNode::start(Config::new(1, vec![1]), MemStorage::new(), &addrs, MuxConfig::default())
            .await
            .unwrap_err();
    assert!(matches!(&err, StartError::Listen { addr: a, .. } if *a == addr), "{err}");
    assert!(std::error::Error::source(&err).is_some(), "the OS error is its source");
    let none = std::collections::HashMap::from([(2, addr)]);
    let err =
        MuxNode::start(Config::new(1, vec![1]), MemStorage::new(), &none, MuxConfig::default())
            .await
            .unwrap_err();
    assert!(matches!(err, StartError::NoAddress(1)), "{err}");
}
