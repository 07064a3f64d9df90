//! A command-line client of a plus-quorum cluster started with `quorum_node`.
//!
//! ```text
//! quorum_ctl --endpoints 1=127.0.0.1:7101,2=127.0.0.1:7102,3=127.0.0.1:7103 put greeting hello
//! quorum_ctl --endpoints ... get greeting
//! quorum_ctl --endpoints ... delete greeting
//! quorum_ctl --endpoints ... keys 'greet*'
//! quorum_ctl --endpoints ... status
//! quorum_ctl --endpoints ... member list
//! quorum_ctl --endpoints ... member add 4 127.0.0.1:7104      # as a learner
//! quorum_ctl --endpoints ... member promote 4
//! quorum_ctl --endpoints ... member remove 1
//! quorum_ctl --endpoints ... member replace 1 4 127.0.0.1:7104  # add, promote, remove
//! quorum_ctl --endpoints ... transfer-leadership 2
//! ```
//!
//! A node to add is started first with `quorum_node --new-member`.
//!
//! Reads and writes go to the leader wherever it is, and are linearizable. `get` of a missing
//! key prints nothing and exits 1.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/quorum_client.rs"]
mod quorum_client;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use plus_quorum::{Cluster, ClusterChange, ClusterChanged, NodeApi, RemoteNode};

/// A command-line client of a plus-quorum cluster.
#[derive(Debug, Parser)]
#[command(name = "quorum_ctl")]
struct Args {
    /// The nodes: `ID=HOST:PORT,...` (the same list as the nodes' --peers).
    #[arg(long)]
    endpoints: String,
    /// How long a call may take, in seconds (an election included).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3_600))]
    timeout: u64,
    #[command(flatten)]
    auth: cli::ClientAuthArgs,
    #[command(subcommand)]
    command: Op,
}

#[derive(Debug, Subcommand)]
enum Op {
    /// Sets a key; prints its new version.
    Put {
        /// The key.
        key: String,
        /// The value.
        value: String,
    },
    /// Prints a key's value.
    Get {
        /// The key.
        key: String,
    },
    /// Deletes a key.
    Delete {
        /// The key.
        key: String,
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
    TransferLeadership {
        /// The voter to lead next.
        to: u64,
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
    let endpoints = cli::members(&args.endpoints).unwrap_or_else(|e| cli::usage_error::<Args>(e));
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
        run(cluster, args.command).await
    })
}

async fn run(cluster: Cluster<RemoteNode>, op: Op) -> Result<bool, String> {
    match op {
        Op::Put { key, value } => {
            let version = cluster.set(&key, value).await.map_err(|e| e.to_string())?;
            println!("{version}");
        }
        Op::Get { key } => match cluster.get(&key).await.map_err(|e| e.to_string())? {
            Some(found) => println!("{}", String::from_utf8_lossy(&found.value)),
            None => return Ok(false),
        },
        Op::Delete { key } => cluster.delete(&key).await.map_err(|e| e.to_string())?,
        Op::Keys { pattern } => {
            for key in cluster.keys(&pattern).await.map_err(|e| e.to_string())? {
                println!("{key}");
            }
        }
        Op::Member { op } => return member(&cluster, op).await,
        Op::TransferLeadership { to } => {
            let change = ClusterChange::TransferLeadership { to };
            cluster.change_cluster(change).await.map_err(|e| e.to_string())?;
            println!("node {to} leads");
        }
        Op::Status => {
            let mut answered = 0;
            for node in cluster.handles() {
                match node.status().await {
                    Ok(s) => {
                        answered += 1;
                        println!(
                            "node {} {:?} term={} leader={} commit={} applied={}{}",
                            s.id,
                            s.role,
                            s.term,
                            s.leader.map_or("-".to_owned(), |l| l.to_string()),
                            s.commit,
                            s.applied,
                            if s.recovering { " recovering" } else { "" }
                        );
                    }
                    Err(e) => println!("node {} unreachable: {e}", node.id()),
                }
            }
            if answered == 0 {
                eprintln!("error: no node answered");
                return Ok(false);
            }
        }
    }
    Ok(true)
}

async fn member(cluster: &Cluster<RemoteNode>, op: MemberOp) -> Result<bool, String> {
    let change = match op {
        MemberOp::List => {
            let membership = cluster.membership().await.map_err(|e| e.to_string())?;
            println!("{membership}");
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
