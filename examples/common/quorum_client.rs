//! A client of `plus-quorum` nodes over plus-mux, as the store's example programs make it.

#![allow(dead_code)] // each example uses the part it needs

use std::time::Duration;

use plus_quorum::{Cluster, NodeId, RemoteNode};

/// A client of the nodes `members` (`(id, host:port)`), each call bounded by `deadline`.
/// Call it on a tokio runtime: each node's connection task starts at once.
pub(crate) fn connect<'a>(
    members: impl IntoIterator<Item = (NodeId, &'a str)>,
    deadline: Duration,
) -> Cluster<RemoteNode> {
    let mut members: Vec<(NodeId, &str)> = members.into_iter().collect();
    members.sort_unstable();
    let nodes = members
        .into_iter()
        .map(|(id, addr)| {
            RemoteNode::connect(id, addr, &plus_mux::Config::default())
                .expect("the default mux config is valid")
        })
        .collect();
    let mut cluster = Cluster::new(nodes);
    cluster.deadline = deadline;
    cluster
}
