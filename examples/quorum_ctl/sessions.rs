//! `quorum_ctl`'s lease, lock, election and endpoint commands.

use std::time::Duration;

use plus_quorum::{Cluster, NodeApi, RemoteNode};
use serde_json::json;

use crate::Output;

/// `lease ...`.
#[derive(Debug, clap::Subcommand)]
pub(crate) enum LeaseOp {
    /// Grants a lease of TTL seconds; prints its id.
    Grant {
        /// Its TTL, in seconds.
        ttl: u64,
    },
    /// Ends a lease now, and its keys with it.
    Revoke {
        /// The lease.
        id: u64,
    },
    /// Keeps a lease alive until interrupted (a keep-alive every third of its TTL).
    KeepAlive {
        /// The lease.
        id: u64,
    },
    /// Prints a lease's TTL, the time it has left and its keys.
    Timetolive {
        /// The lease.
        id: u64,
    },
    /// Prints every live lease.
    List,
}

pub(crate) async fn lease(
    cluster: &Cluster<RemoteNode>,
    op: LeaseOp,
    out: Output,
) -> Result<bool, String> {
    match op {
        LeaseOp::Grant { ttl } => {
            let info =
                cluster.grant_lease(Duration::from_secs(ttl)).await.map_err(|e| e.to_string())?;
            match out {
                Output::Json => println!("{}", json!({"id": info.id, "ttl_ms": info.ttl_ms})),
                Output::Simple | Output::Table => println!("{}", info.id),
            }
        }
        LeaseOp::Revoke { id } => {
            cluster.revoke_lease(id).await.map_err(|e| e.to_string())?;
            if out == Output::Json {
                println!("{}", json!({"revoked": id}));
            }
        }
        LeaseOp::KeepAlive { id } => {
            let stop = crate::interrupted();
            tokio::pin!(stop);
            loop {
                let info = cluster.keep_alive(id).await.map_err(|e| e.to_string())?;
                match out {
                    Output::Json => println!("{}", json!({"id": id, "ttl_ms": info.ttl_ms})),
                    Output::Simple | Output::Table => {
                        println!("lease {id} kept alive, TTL {} ms", info.ttl_ms);
                    }
                }
                tokio::select! {
                    () = &mut stop => return Ok(true),
                    () = tokio::time::sleep(Duration::from_millis(info.ttl_ms / 3)) => {}
                }
            }
        }
        LeaseOp::Timetolive { id } => {
            let info = cluster.time_to_live(id).await.map_err(|e| e.to_string())?;
            match out {
                Output::Json => println!(
                    "{}",
                    json!({"id": id, "ttl_ms": info.ttl_ms, "remaining_ms": info.remaining_ms, "keys": info.keys})
                ),
                Output::Simple | Output::Table => println!(
                    "lease {id}: TTL {} ms, {} ms left, keys {:?}",
                    info.ttl_ms, info.remaining_ms, info.keys
                ),
            }
        }
        LeaseOp::List => {
            let leases = cluster.leases().await.map_err(|e| e.to_string())?;
            match out {
                Output::Json => println!("{}", json!({"leases": leases})),
                Output::Simple | Output::Table => {
                    super::table::print(
                        &["lease"],
                        leases.iter().map(|l| vec![l.to_string()]),
                        out,
                    );
                }
            }
        }
    }
    Ok(true)
}

/// How long a lock's or a candidate's session lives without keep-alives (it is kept alive
/// while the command runs).
const SESSION_TTL: Duration = Duration::from_secs(10);

/// `lock NAME [-- COMMAND...]`: takes the lock on a session; runs the command while holding it
/// and exits with its status, or holds it until interrupted. The lock is released when the
/// command ends, and when this program dies its session's lease ends within its TTL.
pub(crate) async fn lock(
    cluster: &Cluster<RemoteNode>,
    name: &str,
    command: Vec<String>,
    out: Output,
) -> Result<bool, String> {
    let session = cluster.session(SESSION_TTL).await.map_err(|e| e.to_string())?;
    let guard = session.lock(name).await.map_err(|e| e.to_string())?;
    match out {
        Output::Json => println!("{}", json!({"key": guard.key, "token": guard.token})),
        Output::Simple | Output::Table => println!("{}", guard.key),
    }
    let ok = if let Some((program, args)) = command.split_first() {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env("PLUS_LOCK_KEY", &guard.key)
            .env("PLUS_LOCK_TOKEN", guard.token.to_string())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run {program}: {e}"))?;
        let status = tokio::select! {
            status = child.wait() => status.map_err(|e| e.to_string())?,
            lost = session.lost() => {
                let _ = child.kill().await;
                return Err(format!("the lock's session was lost while {program} ran: {lost}"));
            }
        };
        status.success()
    } else {
        tokio::select! {
            () = crate::interrupted() => true,
            lost = session.lost() => return Err(format!("the lock's session was lost: {lost}")),
        }
    };
    session.close().await.map_err(|e| e.to_string())?;
    Ok(ok)
}

/// `elect NAME PROPOSAL`: campaigns, prints when elected, holds leadership until interrupted
/// (then resigns).
pub(crate) async fn elect(
    cluster: &Cluster<RemoteNode>,
    name: &str,
    proposal: String,
    out: Output,
) -> Result<bool, String> {
    let session = cluster.session(SESSION_TTL).await.map_err(|e| e.to_string())?;
    let leadership = session.campaign(name, proposal.clone()).await.map_err(|e| e.to_string())?;
    match out {
        Output::Json => println!(
            "{}",
            json!({"name": name, "key": leadership.key, "revision": leadership.revision, "proposal": proposal})
        ),
        Output::Simple | Output::Table => println!("{}\n{proposal}", leadership.key),
    }
    tokio::select! {
        () = crate::interrupted() => {}
        lost = session.lost() => return Err(format!("leadership lost with the session: {lost}")),
    }
    let _ = cluster.resign(leadership).await;
    session.close().await.map_err(|e| e.to_string())?;
    Ok(true)
}

/// `endpoint status|health`.
#[derive(Debug, Clone, Copy, clap::Subcommand)]
pub(crate) enum EndpointOp {
    /// Every endpoint's role, term, leader, commit and applied index.
    Status,
    /// Whether every endpoint answers, knows a leader and is not recovering; exits 1 if any
    /// is not healthy.
    Health,
}

pub(crate) async fn endpoint(
    cluster: &Cluster<RemoteNode>,
    op: EndpointOp,
    out: Output,
) -> Result<bool, String> {
    let mut healthy_all = true;
    let mut answered = 0;
    let mut rows = Vec::new();
    for node in cluster.handles() {
        let status = node.status().await;
        let (healthy, why) = match &status {
            Ok(s) if s.recovering => (false, "recovering after a wipe".to_owned()),
            Ok(s) if s.leader.is_none() => (false, "no leader known".to_owned()),
            Ok(_) => (true, String::new()),
            Err(e) => (false, e.to_string()),
        };
        answered += usize::from(status.is_ok());
        healthy_all &= healthy;
        match (op, out, &status) {
            (EndpointOp::Status, Output::Json, Ok(s)) => println!(
                "{}",
                json!({"id": s.id, "role": format!("{:?}", s.role), "term": s.term, "leader": s.leader, "commit": s.commit, "applied": s.applied, "recovering": s.recovering, "keys": s.keys, "state_bytes": s.state_bytes})
            ),
            (EndpointOp::Status, Output::Simple, Ok(s)) => println!(
                "node {} {:?} term={} leader={} commit={} applied={} keys={} state_bytes={}{}",
                s.id,
                s.role,
                s.term,
                s.leader.map_or("-".to_owned(), |l| l.to_string()),
                s.commit,
                s.applied,
                s.keys,
                s.state_bytes,
                if s.recovering { " recovering" } else { "" }
            ),
            (EndpointOp::Status, Output::Table, Ok(s)) => rows.push(vec![
                s.id.to_string(),
                format!("{:?}", s.role),
                s.term.to_string(),
                s.leader.map_or("-".to_owned(), |l| l.to_string()),
                s.commit.to_string(),
                s.applied.to_string(),
                s.keys.to_string(),
                s.state_bytes.to_string(),
                if s.recovering { "recovering" } else { "-" }.to_owned(),
            ]),
            (EndpointOp::Status, _, Err(e)) => println!("node {} unreachable: {e}", node.id()),
            (EndpointOp::Health, Output::Json, _) => {
                println!("{}", json!({"id": node.id(), "healthy": healthy, "error": why}));
            }
            (EndpointOp::Health, Output::Table, _) => rows.push(vec![
                node.id().to_string(),
                healthy.to_string(),
                if why.is_empty() { "-".to_owned() } else { why },
            ]),
            (EndpointOp::Health, Output::Simple, _) if healthy => {
                println!("node {} is healthy", node.id());
            }
            (EndpointOp::Health, Output::Simple, _) => {
                println!("node {} is unhealthy: {why}", node.id());
            }
        }
    }
    match op {
        EndpointOp::Status => super::table::print(
            &[
                "id",
                "role",
                "term",
                "leader",
                "commit",
                "applied",
                "keys",
                "state bytes",
                "recovering",
            ],
            rows,
            out,
        ),
        EndpointOp::Health => super::table::print(&["id", "healthy", "error"], rows, out),
    }
    if answered == 0 {
        eprintln!("error: no node answered");
    }
    Ok(match op {
        EndpointOp::Status => answered > 0,
        EndpointOp::Health => healthy_all,
    })
}

/// `alarm list|disarm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub(crate) enum AlarmOp {
    /// Every raised alarm, one per line (`NOSPACE`: past the quota; `STORAGE`: the node
    /// halted on a storage failure); nothing when none is.
    List,
    /// etcd's disarm. Here alarms clear by themselves once their cause is gone: prints, for
    /// each raised one, what ends it, and exits 1 while any is raised.
    Disarm,
}

pub(crate) async fn alarm(
    cluster: &Cluster<RemoteNode>,
    op: AlarmOp,
    out: Output,
) -> Result<bool, String> {
    let mut raised = Vec::new();
    let mut answered = 0;
    for node in cluster.handles() {
        match node.status().await {
            Ok(status) => {
                answered += 1;
                if status.no_space {
                    raised.push((node.id(), "NOSPACE"));
                }
                if status.halted {
                    raised.push((node.id(), "STORAGE"));
                }
            }
            Err(e) => eprintln!("node {} unreachable: {e}", node.id()),
        }
    }
    if answered == 0 {
        return Err("no node answered".to_owned());
    }
    let what_ends_it = |alarm: &str| match alarm {
        "NOSPACE" => {
            "clears by itself once deletes bring the state under the quota (or the node \
                      restarts with a larger --quota-bytes)"
        }
        _ => {
            "clears when the node is restarted on a storage that works (replace its disk: \
              `member replace`)"
        }
    };
    match (op, out) {
        (_, Output::Json) => println!(
            "{}",
            json!({"alarms": raised.iter().map(|(id, alarm)| json!({"node": id, "alarm": alarm})).collect::<Vec<_>>()})
        ),
        (AlarmOp::List, _) => super::table::print(
            &["node", "alarm"],
            raised.iter().map(|(id, alarm)| vec![id.to_string(), (*alarm).to_owned()]),
            out,
        ),
        (AlarmOp::Disarm, _) => {
            for (id, alarm) in &raised {
                println!("node {id} {alarm}: {}", what_ends_it(alarm));
            }
        }
    }
    Ok(op == AlarmOp::List || raised.is_empty())
}
