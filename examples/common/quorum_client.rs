//! A client of `plus-quorum` nodes over plus-mux, as the store's example programs make it, and
//! the TLS arguments they share.

#![allow(dead_code)] // each example uses the part it needs

use std::path::PathBuf;
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
    let mut cluster = Cluster::new(nodes);
    cluster.deadline = deadline;
    cluster
}

/// Mutual TLS for nodes and clients: all three files, or none.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TlsArgs {
    /// This program's certificate (PEM, leaf first), signed by the cluster's CA.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub(crate) tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub(crate) tls_key: Option<PathBuf>,
    /// The cluster's CA certificate (PEM): only peers it signed are accepted.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub(crate) tls_ca: Option<PathBuf>,
}

impl TlsArgs {
    /// Whether TLS was asked for.
    pub(crate) fn enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The security these arguments ask for.
    pub(crate) fn security(&self) -> Result<Security, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => plus_mux::Tls::from_pem_files(cert, key, ca)
                .map(Security::MutualTls)
                .map_err(|e| e.to_string()),
            _ => Ok(Security::Plain),
        }
    }
}
