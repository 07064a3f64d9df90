//! One plus-quorum node as its own process: peers and clients over plus-mux on one address,
//! its log and state in a directory.
//!
//! ```text
//! quorum_node --id 1 --listen 127.0.0.1:7101 \
//!     --peers 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 --data /var/lib/plus/1
//! ```
//!
//! Start one per member, each with its own id, address and directory; clients connect to any
//! of them and are routed to the leader. The directory is stamped with the cluster's name and
//! the node's id when it is created, and a node refuses a directory stamped otherwise, or one
//! another process has open. `--memory` keeps nothing (a restarted node comes back empty and
//! catches up before it votes). SIGTERM or Ctrl-C stops it cleanly: the endpoint closes,
//! requests in flight fail for their clients to retry elsewhere, the driver stops; a leader
//! first hands leadership to another voter, so a graceful restart costs no election timeout.
//! After a SIGKILL it restarts from its directory.
//!
//! Replacing a node whose disk is gone: start the new one with a new id and `--new-member`
//! (`--peers` lists the running members and itself), then `quorum_ctl member replace OLD NEW
//! ADDR`. If a majority is gone for good, `--force-new-cluster` (once) makes a survivor the only
//! voter of a new cluster from what its directory holds, losing any write it lacked; the others
//! join it again as new members.
//!
//! With `--tls-cert`, `--tls-key` and `--tls-ca`, peers and clients authenticate each other
//! with mutual TLS: only holders of a certificate the CA signed get past the handshake, before
//! any frame is read, and each connection may do only what its certificate's role allows
//! (`plus-quorum://node/N` speaks as node N and no other, `.../admin/NAME` also changes
//! membership, `.../client/NAME` reads and writes, `.../reader/NAME` only reads; see
//! `plus_quorum::Principal`). `--psk-dir DIR` uses pre-shared keys instead: the node proves
//! `DIR/node.key` to its peers and accepts peers proving any of `node.key`, `admin.key`,
//! `client.key` and `reader.key` that are there, with those roles (authentication, not
//! encryption). With neither, the node listens on and connects to loopback addresses only,
//! unless `--insecure` says that the network is trusted; and loopback keeps other machines
//! out, not other users of this one.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/quorum_client.rs"]
mod quorum_client;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use cli::TlsArgs;
use plus_quorum::{Config, FileStorage, MemStorage, MuxNode, NodeId, Security, Start};

/// One plus-quorum node as its own process.
#[derive(Debug, Parser)]
#[command(name = "quorum_node")]
struct Args {
    /// This node's id: one of the ids in --peers.
    #[arg(long)]
    id: NodeId,
    /// The address to listen on, for peers and clients.
    #[arg(long)]
    listen: SocketAddr,
    /// Every member, this one included: `ID=HOST:PORT,...`.
    #[arg(long, value_parser = parse_peers)]
    peers: Peers,
    /// The directory for the log, the snapshot and the term (created if missing).
    #[arg(long, required_unless_present = "memory", conflicts_with = "memory")]
    data: Option<PathBuf>,
    /// Keep nothing on disk.
    #[arg(long)]
    memory: bool,
    /// The cluster's name, stamped into the data directory.
    #[arg(long, default_value = "plus")]
    cluster: String,
    /// This node comes back to a running cluster with nothing stored (its disk was replaced,
    /// or --memory): it catches up before it votes. Implied by a data directory that exists.
    #[arg(long, conflicts_with_all = ["new_member", "force_new_cluster"])]
    join: bool,
    /// This node is new to a running cluster (add it with `quorum_ctl member add`): it starts
    /// with no configuration and learns it from the leader; --peers gives the members'
    /// addresses and its own.
    #[arg(long, conflicts_with = "force_new_cluster")]
    new_member: bool,
    /// Recovery when a majority is gone for good: this node becomes the only voter of a new
    /// cluster, from what its data directory holds. MAY LOSE ACKNOWLEDGED WRITES (any this
    /// replica lacks). Add the others back as new members, wiped.
    #[arg(long)]
    force_new_cluster: bool,
    /// Listen on, or talk to peers at, non-loopback addresses without TLS or keys: only on a
    /// network you trust.
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    tls: TlsArgs,
    /// Instead of certificates: a directory of pre-shared keys named by role, each readable by
    /// its owner only: node.key (required: the node proves it, and peers proving it are
    /// nodes), and any of admin.key, client.key, reader.key (clients proving them get that
    /// role).
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
    psk_dir: Option<PathBuf>,
    /// The largest write accepted, in bytes of keys and values (etcd's --max-request-bytes;
    /// 1 to 12582912, 12 MiB, so that an entry always fits a 16 MiB frame). Default 1.5 MiB.
    #[arg(long, default_value_t = 1536 * 1024, value_parser = clap::value_parser!(u64).range(1..=12 << 20))]
    max_request_bytes: u64,
    /// The most bytes of keys and values the store may hold (etcd's --quota-backend-bytes):
    /// past it, writes that add data are refused until deletes bring it under. Default 2 GiB.
    #[arg(long, default_value_t = 2 << 30, value_parser = clap::value_parser!(u64).range(1..))]
    quota_bytes: u64,
    /// The most operations in one transaction or multi-key write (etcd's --max-txn-ops; 1 to
    /// 100000). Default 128.
    #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    max_txn_ops: u64,
    /// Applied entries between two snapshots (etcd's --snapshot-count; 1 to 10000000). A
    /// snapshot copies and writes the whole state, and appends wait behind its write: a longer
    /// interval keeps write latency's tail short, at the cost of a longer log in memory.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    snapshot_entries: u64,
}

/// `--peers`, parsed.
#[derive(Debug, Clone)]
struct Peers(HashMap<NodeId, String>);

fn parse_peers(text: &str) -> Result<Peers, String> {
    cli::members(text).map(|members| Peers(members.into_iter().collect()))
}

fn main() -> ExitCode {
    let args = Args::parse();
    if !args.peers.0.contains_key(&args.id) {
        cli::usage_error::<Args>(format!("--id {} is not one of --peers", args.id));
    }
    let secured = args.tls.enabled() || args.psk_dir.is_some();
    if !args.listen.ip().is_loopback() && !args.insecure && !secured {
        cli::usage_error::<Args>(format!(
            "refusing to listen on {} without TLS or keys; pass --insecure if the network is \
             trusted",
            args.listen
        ));
    }
    if !secured && !args.insecure {
        let peers = args.peers.0.values().map(String::as_str);
        if let Err(e) = cli::plain_text_only_to_loopback(peers, "--tls-* or --psk-dir") {
            cli::usage_error::<Args>(e);
        }
    }
    cli::init_logging();
    cli::run_async(run(args))
}

/// The stamp a data directory carries: which cluster and node it belongs to.
fn stamp(cluster: &str, id: NodeId) -> String {
    format!("cluster={cluster}\nnode={id}\n")
}

/// Checks the directory's stamp: whether it is there (the node has started from this
/// directory before). A directory stamped for another node or cluster is refused, and so is
/// one that holds a log but no stamp (another node's data, or a stamp lost by hand: starting
/// there as a new node would reuse that log, term and vote under this node's name).
fn check_stamp(dir: &Path, cluster: &str, id: NodeId) -> Result<bool, String> {
    let path = dir.join("identity");
    let expected = stamp(cluster, id);
    match std::fs::read_to_string(&path) {
        Ok(found) if found == expected => Ok(true),
        Ok(found) => Err(format!(
            "{} belongs to another node: it says `{}`, this is `{}`",
            dir.display(),
            found.trim().replace('\n', " "),
            expected.trim().replace('\n', " ")
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let has_log = std::fs::read_dir(dir.join("wal"))
                .map(|mut entries| entries.next().is_some())
                .unwrap_or(false);
            if has_log || ["log", "snapshot", "hardstate"].iter().any(|f| dir.join(f).exists()) {
                return Err(format!(
                    "{} holds a log but no identity file: it is not known to be node {id}'s; \
                     restore its identity file, or give this node an empty directory",
                    dir.display()
                ));
            }
            Ok(false)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Stamps `dir` as node `id`'s of `cluster`, once the node has started from it: a first start
/// that failed (a port in use) leaves no stamp, so the next start is a first start again and
/// not a rejoin.
fn write_stamp(dir: &Path, cluster: &str, id: NodeId) -> Result<(), String> {
    let path = dir.join("identity");
    // Written whole then renamed, so a crash never leaves half a stamp.
    let tmp = dir.join("identity.tmp");
    std::fs::write(&tmp, stamp(cluster, id))
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn run(args: Args) -> Result<bool, String> {
    // Past a file-size limit (ulimit -f) a write raises SIGXFSZ, whose default is to kill the
    // process without a word. Caught, the write fails with EFBIG instead, and the storage
    // halts the node with a message saying so.
    #[cfg(unix)]
    let _file_size_limit =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25))
            .map_err(|e| format!("cannot catch SIGXFSZ: {e}"))?;
    let security = node_security(&args)?;
    let mut members: Vec<NodeId> = args.peers.0.keys().copied().collect();
    members.sort_unstable();
    let mut addrs = args.peers.0.clone();
    // Bind where asked (0.0.0.0, say) even when peers know the node by another address.
    addrs.insert(args.id, args.listen.to_string());
    let node = match &args.data {
        Some(dir) => {
            let existed = check_stamp(dir, &args.cluster, args.id)?;
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
            let storage = FileStorage::open(dir).map_err(|e| e.to_string())?;
            let start = match (args.new_member, args.force_new_cluster) {
                (true, _) if !existed => Start::Join,
                (_, true) => Start::ForceNewCluster,
                _ if existed || args.join || args.new_member => Start::Rejoin,
                _ => Start::Bootstrap,
            };
            let config = node_config(&args, start, members.clone());
            let node = MuxNode::start_secured(
                config,
                storage,
                &addrs,
                plus_mux::Config::default(),
                &security,
            )
            .await
            .map_err(|e| e.to_string())?;
            if !existed {
                write_stamp(dir, &args.cluster, args.id)?;
            }
            node
        }
        None => {
            let start = match (args.new_member, args.force_new_cluster, args.join) {
                (true, _, _) => Start::Join,
                (_, true, _) => Start::ForceNewCluster,
                (_, _, true) => Start::Rejoin,
                _ => Start::Bootstrap,
            };
            let config = node_config(&args, start, members.clone());
            let storage = MemStorage::new();
            MuxNode::start_secured(config, storage, &addrs, plus_mux::Config::default(), &security)
                .await
                .map_err(|e| e.to_string())?
        }
    };
    tracing::info!(node = args.id, listen = %args.listen, ?members, "quorum node serving");
    let tls = match (&args.tls.tls_cert, &args.psk_dir) {
        (Some(_), _) => " with mutual TLS",
        (None, Some(_)) => " with pre-shared keys",
        _ => "",
    };
    println!("node {} serving on {}{tls} (members {members:?})", args.id, args.listen);
    stopped().await?;
    tracing::info!(node = args.id, "stopping");
    hand_over(&node.handle).await;
    node.stop().await;
    println!("node {} stopped", args.id);
    Ok(true)
}

/// The node's settings from the arguments.
fn node_config(args: &Args, start: Start, members: Vec<NodeId>) -> Config {
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    Config {
        start,
        snapshot_threshold: args.snapshot_entries,
        max_request_bytes: as_usize(args.max_request_bytes),
        max_txn_ops: as_usize(args.max_txn_ops),
        quota_bytes: as_usize(args.quota_bytes),
        ..Config::new(args.id, members)
    }
}

/// TLS from its files, pre-shared keys from `--psk-dir`, or plain TCP.
fn node_security(args: &Args) -> Result<Security, String> {
    if let Some(tls) = args.tls.load()? {
        return Ok(Security::MutualTls(tls));
    }
    let Some(dir) = &args.psk_dir else { return Ok(Security::Plain) };
    let own = cli::read_psk(&dir.join("node.key"), "node")?;
    let mut accept = vec![own.clone()];
    for role in ["admin", "client", "reader"] {
        let path = dir.join(format!("{role}.key"));
        if path.exists() {
            accept.push(cli::read_psk(&path, role)?);
        }
    }
    Ok(Security::Psk { own, accept })
}

/// A leader asked to stop hands leadership to another voter first, so that the cluster does
/// not wait an election timeout to find a new one (a graceful restart or upgrade). Best effort:
/// each voter is tried for at most a second, and the node stops anyway.
async fn hand_over(node: &plus_quorum::NodeHandle) {
    let Ok(status) = node.status().await else { return };
    if status.role != plus_quorum::Role::Leader {
        return;
    }
    let Ok(membership) = node.membership().await else { return };
    for to in membership.voters().iter().copied().filter(|&v| v != status.id) {
        let change = plus_quorum::ClusterChange::TransferLeadership { to };
        if node.change_cluster(change, Duration::from_secs(1)).await.is_ok() {
            println!("node {} handed leadership to node {to}", status.id);
            return;
        }
    }
}

/// Waits for SIGTERM or Ctrl-C.
async fn stopped() -> Result<(), String> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| format!("cannot catch SIGTERM: {e}"))?;
        tokio::select! {
            _ = term.recv() => Ok(()),
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.map_err(|e| e.to_string()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(|e| e.to_string())
    }
}
