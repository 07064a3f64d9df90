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
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use cli::TlsArgs;
use plus_quorum::{
    Config, HttpEndpoints, MuxConfig, NodeHandle, NodeId, NodeProgram, Security, StartMode,
    run_node, shutdown_signal,
};

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
    /// snapshot copies and writes the whole state (beside the appends, which go on, slowed by
    /// the disk it shares): a longer interval writes it less often, at the cost of a longer log
    /// in memory and on disk.
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    snapshot_entries: u64,
    /// Serve /health, /metrics (Prometheus's text format), /version and the JSON gateway
    /// (/v3/kv/*, /v3/lease/*, /v3/watch) on this address: HTTPS with client certificates and
    /// their roles when --tls-* is given; else plain HTTP, loopback only unless --insecure (and
    /// with --psk-dir the gateway refuses every request: keys are not an HTTP credential).
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<SocketAddr>,
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
    if let Some(http) = args.http_listen
        && !http.ip().is_loopback()
        && !args.insecure
        && !args.tls.enabled()
    {
        cli::usage_error::<Args>(format!(
            "refusing to serve unauthenticated HTTP on {http}; give --tls-* (HTTPS with client \
             certificates), or pass --insecure if the network is trusted"
        ));
    }
    cli::init_logging();
    cli::run_async(run(args))
}

async fn run(args: Args) -> Result<bool, String> {
    let security = node_security(&args)?;
    let mut members: Vec<NodeId> = args.peers.0.keys().copied().collect();
    members.sort_unstable();
    let mut addrs = args.peers.0.clone();
    // Bind where asked (0.0.0.0, say) even when peers know the node by another address.
    addrs.insert(args.id, args.listen.to_string());
    let mode = match (args.new_member, args.force_new_cluster, args.join) {
        (true, _, _) => StartMode::Join,
        (_, true, _) => StartMode::ForceNewCluster,
        (_, _, true) => StartMode::Rejoin,
        _ => StartMode::New,
    };
    let gateway_peers = addrs.clone();
    let http_security = security.clone();
    let program = NodeProgram {
        config: node_config(&args, members.clone()),
        addrs,
        security,
        mux: MuxConfig::default(),
        data: args.data.clone(),
        cluster: args.cluster.clone(),
        mode,
    };
    let tls = match (&args.tls.tls_cert, &args.psk_dir) {
        (Some(_), _) => " with mutual TLS",
        (None, Some(_)) => " with pre-shared keys",
        _ => "",
    };
    let (id, listen) = (args.id, args.listen);
    // Bound before the node starts, so that a port in use fails at once; the recorder too, so
    // that the node's series are recorded from the first.
    let http = match args.http_listen {
        Some(addr) => {
            let metrics = plus_quorum::install_prometheus().map_err(|e| e.to_string())?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot listen for HTTP on {addr}: {e}"))?;
            Some((listener, metrics))
        }
        None => None,
    };
    let started = |node: &NodeHandle, start| {
        if let Some((listener, metrics)) = http {
            let scheme = if args.tls.enabled() { "https" } else { "http" };
            let endpoints =
                HttpEndpoints::new(node.clone(), metrics, gateway_peers).secured(http_security);
            match plus_quorum::serve_http(listener, endpoints) {
                Ok(task) => {
                    drop(task);
                    println!(
                        "node {id} serving /health, /metrics, /version and the JSON gateway on \
                         {scheme}://{}",
                        args.http_listen.map_or(String::new(), |a| a.to_string())
                    );
                }
                Err(e) => eprintln!("error: no HTTP endpoints: {e}"),
            }
        }
        tracing::info!(node = id, %listen, ?members, ?start, "quorum node serving");
        println!("node {id} serving on {listen}{tls} (members {members:?})");
    };
    let stop = async {
        if let Err(e) = shutdown_signal().await {
            eprintln!("error: {e}; stopping");
        }
    };
    let stopped = run_node(program, started, stop).await.map_err(|e| e.to_string())?;
    if let Some(to) = stopped.handed_to {
        println!("node {id} handed leadership to node {to}");
    }
    println!("node {id} stopped");
    Ok(true)
}

/// The node's settings from the arguments (its start follows from the mode and the data).
fn node_config(args: &Args, members: Vec<NodeId>) -> Config {
    let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    let mut config = Config::new(args.id, members);
    config.snapshot_threshold = args.snapshot_entries;
    config.max_request_bytes = as_usize(args.max_request_bytes);
    config.max_txn_ops = as_usize(args.max_txn_ops);
    config.quota_bytes = as_usize(args.quota_bytes);
    config
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
