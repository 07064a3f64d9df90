//! A client of `plus-quorum` nodes over plus-mux, as the store's example programs make it.

#![allow(dead_code)] // each example uses the part it needs

use std::time::Duration;

use plus_quorum::{Cluster, NodeId, RemoteNode, Security};

/// A client of the nodes `members` (`(id, host:port)`) over plain TCP, each call bounded by
/// `deadline`. Call it on a tokio runtime: each node's connection task starts at once.
pub(crate) fn connect<'a>(
    members: impl IntoIterator<Item = (NodeId, &'a str)>,
    deadline: Duration,
) -> Cluster<RemoteNode> {
    connect_secured(members, deadline, &Security::Plain)
}

/// [`connect`], with the connections secured as `security` says.
pub(crate) fn connect_secured<'a>(
    members: impl IntoIterator<Item = (NodeId, &'a str)>,
    deadline: Duration,
    security: &Security,
) -> Cluster<RemoteNode> {
    let mut members: Vec<(NodeId, &str)> = members.into_iter().collect();
    members.sort_unstable();
    let nodes = members
        .into_iter()
        .map(|(id, addr)| {
            RemoteNode::connect_secured(id, addr, &plus_mux::Config::default(), security)
                .expect("the default mux config is valid")
        })
        .collect();
    // Members added later are reached at the address they were added with.
    let connector = RemoteNode::connector(plus_mux::Config::default(), security.clone());
    let mut cluster = Cluster::new(nodes).with_connector(connector);
    cluster.deadline = deadline;
    cluster
}

/// The security a client's arguments ask for: mutual TLS with its files, its pre-shared key,
/// or plain TCP.
pub(crate) fn security(auth: &crate::cli::ClientAuthArgs) -> Result<Security, String> {
    if let Some(tls) = auth.tls.load()? {
        return Ok(Security::MutualTls(tls));
    }
    match &auth.psk_file {
        Some(path) => {
            Ok(Security::Psk { own: crate::cli::read_psk(path, "client")?, accept: Vec::new() })
        }
        None => Ok(Security::Plain),
    }
}
