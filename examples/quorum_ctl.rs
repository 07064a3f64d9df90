//! A command-line client of a plus-quorum cluster started with `quorum_node`, for operators
//! used to `etcdctl`.
//!
//! ```text
//! quorum_ctl --endpoints 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 put greeting hello
//! quorum_ctl --endpoints ... get greeting
//! quorum_ctl --endpoints ... get app/ --prefix [--limit N] [--rev R] [--keys-only|--count-only]
//! quorum_ctl --endpoints ... --write-out json get app/ --prefix
//! quorum_ctl --endpoints ... put session/web up --lease 42
//! quorum_ctl --endpoints ... del app/ --prefix
//! quorum_ctl --endpoints ... txn --file swap.txn       # exit 3 when the compares failed
//! quorum_ctl --endpoints ... watch app/ --prefix [--rev R]
//! quorum_ctl --endpoints ... lease grant 30 | revoke ID | keep-alive ID | timetolive ID | list
//! quorum_ctl --endpoints ... lock deploy -- ./deploy.sh  # holds the lock while it runs
//! quorum_ctl --endpoints ... elect controllers replica-a
//! quorum_ctl --endpoints ... endpoint status | endpoint health
//! quorum_ctl --endpoints ... alarm list | alarm disarm
//! quorum_ctl --endpoints ... compact 1200
//! quorum_ctl --endpoints ... keys 'greet*'
//! quorum_ctl --endpoints ... status
//! quorum_ctl --endpoints ... member list
//! quorum_ctl --endpoints ... member add 4 127.0.0.1:7104      # as a learner
//! quorum_ctl --endpoints ... member promote 4
//! quorum_ctl --endpoints ... member remove 1
//! quorum_ctl --endpoints ... member replace 1 4 127.0.0.1:7104  # add, promote, remove
//! quorum_ctl --endpoints ... move-leader 2
//! quorum_ctl --endpoints ... --write-out table endpoint status
//! quorum_ctl --endpoints ... snapshot save backup.db   # online, needs an admin's credential
//! quorum_ctl snapshot status backup.db
//! quorum_ctl snapshot restore backup.db --data /var/lib/q1 --id 1 --peers 1=...,2=...,3=... --cluster restored
//! ```
//!
//! A node to add is started first with `quorum_node --new-member`.
//!
//! Reads and writes go to the leader wherever it is, and are linearizable. Exit status: 0 on
//! success, 1 on an error or when `get` finds nothing (or `endpoint health` finds a node
//! unhealthy, or a locked command fails), 2 on a usage error, 3 when a transaction's compares
//! failed. `--write-out json` prints one JSON object per answer. `watch`, `lock` (without a
//! command), `elect` and `lease keep-alive` run until SIGTERM or Ctrl-C; a lock or a
//! leadership lives on a session lease of 10 s, kept alive meanwhile and revoked at the end.

#[path = "common/cli.rs"]
mod cli;
#[path = "quorum_ctl/copy.rs"]
mod copy;
#[path = "quorum_ctl/keys.rs"]
mod keys;
#[path = "common/quorum_client.rs"]
mod quorum_client;
#[path = "quorum_ctl/sessions.rs"]
mod sessions;
#[path = "quorum_ctl/snapshot.rs"]
mod snapshot;
#[path = "quorum_ctl/table.rs"]
mod table;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plus_quorum::{Cluster, ClusterChange, ClusterChanged, RemoteNode};

/// A command-line client of a plus-quorum cluster.
#[derive(Debug, Parser)]
#[command(name = "quorum_ctl", after_help = EXAMPLES)]
struct Args {
    /// The nodes: `ID=HOST:PORT,...` (the same list as the nodes' --peers). Every command but
    /// `snapshot status` and `snapshot restore` needs it.
    #[arg(long)]
    endpoints: Option<String>,
    /// How long a call may take, in seconds (an election included).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    timeout: u64,
    /// How answers are printed: `simple` (values, one per line), `json` (one object per line)
    /// or `table` (lists in a box).
    #[arg(long, value_enum, default_value_t = Output::Simple)]
    write_out: Output,
    #[command(flatten)]
    auth: cli::ClientAuthArgs,
    #[command(subcommand)]
    command: Op,
}

/// How answers are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    /// Values as they are, one per line.
    Simple,
    /// One JSON object per line.
    Json,
    /// Lists (ranges, endpoints, members, leases, a backup's status) in a box, as etcdctl's
    /// table; single answers as `simple`.
    Table,
}

const EXAMPLES: &str = "Examples (E=1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103):
  quorum_ctl --endpoints $E put greeting hello
  quorum_ctl --endpoints $E get app/ --prefix --write-out table
  quorum_ctl --endpoints $E txn --file swap.txn        # exit 3 when the compares failed
  quorum_ctl --endpoints $E watch app/ --prefix --rev 1
  quorum_ctl --endpoints $E lock deploy -- ./deploy.sh
  quorum_ctl --endpoints $E endpoint status --write-out table
  quorum_ctl --endpoints $E snapshot save backup.db
  quorum_ctl snapshot status backup.db
  quorum_ctl snapshot restore backup.db --data /var/lib/q1 --id 1 --peers $E --cluster restored

Exit status: 0 success, 1 error (or nothing found, or unhealthy), 2 usage, 3 failed compares.";

/// Resolves at SIGTERM or Ctrl-C: what the commands that hold something (a watch, a lock, a
/// leadership) stop on.
async fn interrupted() {
    if let Err(e) = plus_quorum::shutdown_signal().await {
        eprintln!("error: {e}");
    }
}

#[derive(Debug, Subcommand)]
enum Op {
    /// Sets a key; prints its new version.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Attach it to this lease: it goes when the lease ends.
        #[arg(long)]
        lease: Option<u64>,
    },
    /// Prints a key's value, or a range's keys and values (`--prefix`, `--from-key`,
    /// `--limit`, `--rev`, `--keys-only`, `--count-only`); exits 1 when nothing is found.
    Get(keys::GetArgs),
    /// Deletes a key, or every key with a prefix; prints how many were deleted.
    #[command(alias = "delete")]
    Del {
        /// The key (with --prefix, the prefix).
        key: String,
        /// Every key starting with KEY.
        #[arg(long)]
        prefix: bool,
    },
    /// Runs a transaction written as JSON in FILE (`{"when": [...], "then": [...],
    /// "otherwise": [...]}`); exits 3 when its compares failed and `otherwise` ran.
    Txn {
        /// The transaction: etcdctl's text (compares, a blank line, then-operations, a blank
        /// line, else-operations) or JSON; standard input when not given.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
    },
    /// Prints every change of a key (or a prefix) as it happens, until interrupted.
    Watch {
        /// The key (with --prefix, the prefix).
        key: String,
        /// Every key starting with KEY.
        #[arg(long)]
        prefix: bool,
        /// From this revision on (default: the next change).
        #[arg(long)]
        rev: Option<u64>,
    },
    /// Leases: grant, revoke, keep-alive, timetolive, list.
    Lease {
        #[command(subcommand)]
        op: sessions::LeaseOp,
    },
    /// Takes a lock; runs COMMAND while holding it (with PLUS_LOCK_KEY and PLUS_LOCK_TOKEN, its
    /// fencing token, in its environment) and exits with its status, or holds it until
    /// interrupted.
    Lock {
        /// The lock.
        name: String,
        /// The command to run while holding it.
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// Campaigns in an election; prints the leader key once elected and leads until
    /// interrupted.
    Elect {
        /// The election.
        name: String,
        /// The value this candidate proclaims.
        proposal: String,
    },
    /// Every endpoint's status, or its health (exit 1 when any is unhealthy).
    Endpoint {
        #[command(subcommand)]
        op: sessions::EndpointOp,
    },
    /// Forgets every change before REV on every replica: watches from REV and reads at REV - 1
    /// still work, older ones are refused as compacted. Admins only when TLS is on.
    Compact {
        /// The oldest revision whose changes are kept.
        revision: u64,
    },
    /// The alarms raised on any node (`list`), or what clears them (`disarm`).
    Alarm {
        #[command(subcommand)]
        op: sessions::AlarmOp,
    },
    /// Copies every key under PREFIX (not those on a lease: locks, elections) to an etcd, to
    /// move a platform onto it: stop its controllers, copy, start them with `--store etcd`.
    /// Needs quorum_ctl built with `--features etcd`.
    Copy {
        /// The keys to copy (`platform/`; the empty prefix copies every key).
        prefix: String,
        /// The etcd members to copy to (`127.0.0.1:2379,...`).
        #[arg(long, value_delimiter = ',', required = true)]
        to_etcd: Vec<String>,
    },
    /// Lists the keys matching a glob (`*`, `?`).
    Keys {
        /// The pattern.
        pattern: String,
    },
    /// Prints every node's role, term and indexes.
    Status,
    /// Membership: list, add a learner, promote, remove, replace.
    Member {
        #[command(subcommand)]
        op: MemberOp,
    },
    /// Hands leadership to a voter (before restarting the leader, say).
    #[command(name = "move-leader", alias = "transfer-leadership")]
    MoveLeader {
        /// The voter to lead next.
        to: u64,
    },
    /// Backups: `save FILE` from the running cluster, `status FILE`, `restore FILE --data DIR
    /// --id N --peers ...` into a new cluster's data directory.
    Snapshot {
        #[command(subcommand)]
        op: snapshot::SnapshotOp,
    },
}

#[derive(Debug, Subcommand)]
enum MemberOp {
    /// Prints the voters and learners.
    List,
    /// Adds a node (started with `quorum_node --new-member`) as a learner.
    Add {
        /// Its id, never used in this cluster before.
        id: u64,
        /// Where the members reach it: HOST:PORT.
        address: String,
    },
    /// Makes a caught-up learner a voter.
    Promote {
        /// The learner.
        id: u64,
    },
    /// Removes a member.
    Remove {
        /// The member.
        id: u64,
    },
    /// Replaces a member: the new node added as a learner, promoted once caught up, the old one
    /// removed; prints each step as it completes.
    Replace {
        /// The member to replace.
        old: u64,
        /// The new node's id.
        new: u64,
        /// Where the members reach the new node: HOST:PORT.
        address: String,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    // The offline commands read and write local files only.
    match &args.command {
        Op::Snapshot { op: snapshot::SnapshotOp::Status { file } } => {
            return cli::run_async(async { snapshot::status(file, args.write_out) });
        }
        Op::Snapshot { op: snapshot::SnapshotOp::Restore { file, data, id, peers, cluster } } => {
            return cli::run_async(async {
                snapshot::restore(file, data, *id, peers, cluster, args.write_out)
            });
        }
        _ => {}
    }
    let Some(endpoints) = &args.endpoints else {
        cli::usage_error::<Args>(
            "--endpoints is needed by every command but `snapshot status` and `snapshot restore`",
        )
    };
    let endpoints = cli::members(endpoints).unwrap_or_else(|e| cli::usage_error::<Args>(e));
    if let Err(e) = args.auth.check_plain_text(endpoints.iter().map(|(_, addr)| addr.as_str())) {
        cli::usage_error::<Args>(e);
    }
    cli::init_logging();
    cli::run_async(async move {
        // The connections live on the runtime.
        let members = endpoints.iter().map(|(id, addr)| (*id, addr.as_str()));
        let security = quorum_client::security(&args.auth)?;
        let deadline = Duration::from_secs(args.timeout);
        let cluster = quorum_client::connect_secured(members, deadline, &security);
        run(cluster, args.command, args.write_out).await
    })
}

async fn run(cluster: Cluster<RemoteNode>, op: Op, out: Output) -> Result<bool, String> {
    match op {
        Op::Put { key, value, lease } => return keys::put(&cluster, &key, value, lease, out).await,
        Op::Get(get) => return keys::get(&cluster, get, out).await,
        Op::Del { key, prefix } => return keys::del(&cluster, &key, prefix, out).await,
        Op::Txn { file } => return keys::txn(&cluster, file.as_deref(), out).await,
        Op::Watch { key, prefix, rev } => {
            return keys::watch(&cluster, &key, prefix, rev, out).await;
        }
        Op::Lease { op } => return sessions::lease(&cluster, op, out).await,
        Op::Lock { name, command } => return sessions::lock(&cluster, &name, command, out).await,
        Op::Elect { name, proposal } => {
            return sessions::elect(&cluster, &name, proposal, out).await;
        }
        Op::Endpoint { op } => return sessions::endpoint(&cluster, op, out).await,
        Op::Alarm { op } => return sessions::alarm(&cluster, op, out).await,
        Op::Compact { revision } => {
            cluster.compact(revision).await.map_err(|e| e.to_string())?;
            match out {
                Output::Json => println!("{}", serde_json::json!({ "compacted": revision })),
                Output::Simple | Output::Table => println!("compacted revision {revision}"),
            }
        }
        #[cfg(feature = "etcd")]
        Op::Copy { prefix, to_etcd } => {
            return copy::to_etcd(&cluster, &prefix, &to_etcd, out).await;
        }
        #[cfg(not(feature = "etcd"))]
        Op::Copy { .. } => {
            return Err("copy --to-etcd needs quorum_ctl built with `--features etcd`: cargo run --release --features etcd --example quorum_ctl -- ...".to_owned());
        }
        Op::Keys { pattern } => {
            for key in cluster.keys(&pattern).await.map_err(|e| e.to_string())? {
                println!("{key}");
            }
        }
        Op::Member { op } => return member(&cluster, op, out).await,
        Op::Snapshot { op: snapshot::SnapshotOp::Save { file } } => {
            return snapshot::save(&cluster, &file, out).await;
        }
        Op::Snapshot { .. } => unreachable!("the offline snapshot commands ran before connecting"),
        Op::MoveLeader { to } => {
            let change = ClusterChange::TransferLeadership { to };
            cluster.change_cluster(change).await.map_err(|e| e.to_string())?;
            println!("node {to} leads");
        }
        Op::Status => {
            return sessions::endpoint(&cluster, sessions::EndpointOp::Status, out).await;
        }
    }
    Ok(true)
}

async fn member(cluster: &Cluster<RemoteNode>, op: MemberOp, out: Output) -> Result<bool, String> {
    let change = match op {
        MemberOp::List if out == Output::Simple => {
            let membership = cluster.membership().await.map_err(|e| e.to_string())?;
            println!("{membership}");
            return Ok(true);
        }
        MemberOp::List => {
            let membership = cluster.membership().await.map_err(|e| e.to_string())?;
            let rows: Vec<Vec<String>> = membership
                .members()
                .map(|id| {
                    let role = if membership.is_voter(id) { "voter" } else { "learner" };
                    let address = membership.address(id).unwrap_or("-");
                    vec![id.to_string(), role.to_owned(), address.to_owned()]
                })
                .collect();
            if out == Output::Json {
                let members: Vec<_> = rows
                    .iter()
                    .map(|r| serde_json::json!({"id": r[0], "role": r[1], "address": r[2]}))
                    .collect();
                println!("{}", serde_json::json!({ "members": members }));
            } else {
                table::print(&["id", "role", "address"], rows, out);
            }
            return Ok(true);
        }
        MemberOp::Replace { old, new, address } => {
            let within = cluster.deadline.max(Duration::from_secs(60));
            let membership = cluster
                .replace_member(old, new, Some(address), within, |step, at| {
                    println!("{step:?} after {} ms", at.as_millis());
                })
                .await
                .map_err(|e| e.to_string())?;
            println!("{membership}");
            return Ok(true);
        }
        MemberOp::Add { id, address } => ClusterChange::AddLearner { id, address: Some(address) },
        MemberOp::Promote { id } => ClusterChange::Promote { id },
        MemberOp::Remove { id } => ClusterChange::Remove { id },
    };
    match cluster.change_cluster(change).await.map_err(|e| e.to_string())? {
        ClusterChanged::Membership { membership, index } => {
            println!("{membership} (committed at {index})");
        }
        other => println!("{other:?}"),
    }
    Ok(true)
}
