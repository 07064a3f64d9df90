//! A plus-quorum cluster over TCP on 127.0.0.1 through plus-mux, with a leader failure.
//!
//! ```text
//! quorum_cluster [--nodes N] [--clients C] [--seconds S] [--replace [--state-mb M]]
//! ```
//!
//! Starts N nodes (default 3) in this process, runs C concurrent clients (default 16) doing
//! writes, compare-and-sets and reads for S seconds (default 10), stops the leader half-way,
//! waits for a new one, restarts the stopped node with its memory wiped and lets it catch up,
//! then checks that every acknowledged write is present and that all replicas are identical.
//! Independent observers check the coordination features meanwhile: a watcher over every client
//! key (compared with the writes the clients saw acknowledged), 20 leases left to expire, and
//! three contenders taking one lock in turn (holders checked for overlap and fencing-token
//! order). It prints
//! `watch_events=N watch_gaps=0 leases_expired=20 lock_violations=0`, then ends with one line:
//! `nodes=3 clients=16 writes=120000 acked=119950 lost=0 leader_changes=1 caught_up=true replicas=identical elapsed_ms=10021`
//! and exits non-zero if anything was lost or the replicas differ.
//!
//! With `--replace`, the stopped leader is gone for good (its memory with it): a new node joins
//! as a learner, is promoted once caught up, and the dead one is removed, all while the clients
//! write; the client learns the new member from the cluster. It prints the time each step took
//! from the loss, and appends ` replaced=1 members=...` (the final voters) to the last line.
//! `--state-mb M` first fills the store with M MiB (1 MiB values no compressor shrinks) and
//! snapshots every 1,000 entries, so the new node is brought up by a snapshot of at least that
//! size, sent in pieces, under the clients' writes.

#[path = "common/cli.rs"]
mod cli;
#[path = "quorum_cluster/observers.rs"]
mod observers;

use std::collections::HashMap;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use plus_mux::Config as MuxConfig;
use plus_quorum::testing::loopback_addrs;
use plus_quorum::{
    Bytes, Cluster, Config, Expect, MemStorage, MuxNode, NodeApi, ReadOp, ReadResult, RemoteNode,
    Role, Security, Start, WriteOp, WriteResult, compare,
};
use tokio::sync::Mutex;

/// A plus-quorum cluster over TCP on 127.0.0.1 through plus-mux, with a leader failure.
#[derive(Debug, Parser)]
#[command(name = "quorum_cluster")]
struct Args {
    /// Nodes (3 to 9): the run stops its leader half-way, which fewer than 3 cannot survive.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(3..=9))]
    nodes: u8,
    /// Concurrent clients (1 to 10000).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u16).range(1..=10_000))]
    clients: u16,
    /// How long the clients run, in seconds (1 to 86400).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Replace the stopped leader by a new node (learner, promoted, the dead one removed)
    /// instead of restarting it.
    #[arg(long)]
    replace: bool,
    /// With --replace: fill the store with this many MiB before the clients start (0 to 4000),
    /// so the replacement installs a snapshot at least that large.
    #[arg(long, default_value_t = 0, requires = "replace", value_parser = clap::value_parser!(u64).range(0..=4_000))]
    state_mb: u64,
}

async fn start_member(
    id: u64,
    members: &[u64],
    addrs: &HashMap<u64, String>,
    start: Start,
    snapshot_threshold: u64,
) -> Result<MuxNode, String> {
    let storage = MemStorage::new();
    let config = {
        let mut config = Config::new(id, members.to_vec());
        config.start = start;
        config.seed = id * 7919;
        config.snapshot_threshold = snapshot_threshold;
        config
    };
    MuxNode::start(config, storage, addrs, MuxConfig::default()).await.map_err(|e| e.to_string())
}

#[derive(Default)]
struct Tally {
    writes: AtomicU64,
    acked: AtomicU64,
}

/// With a state to fill, snapshots come often, so that a new node needs one.
fn snapshot_threshold(args: &Args) -> u64 {
    if args.state_mb > 0 { 1_000 } else { Config::new(1, vec![1]).snapshot_threshold }
}

/// Writes `mb` values of 1 MiB that no compressor shrinks; returns the revision of the last.
async fn fill(cluster: &Cluster<RemoteNode>, mb: u64) -> Result<u64, String> {
    if mb == 0 {
        return Ok(0);
    }
    let started = Instant::now();
    let mut revision = 0;
    for i in 0..mb {
        let value = plus_quorum::testing::incompressible(1 << 20, i + 1);
        revision = cluster
            .set(&format!("bulk/{i:05}"), value)
            .await
            .map_err(|e| format!("filling: {e}"))?;
    }
    println!("state: {mb} MiB written in {} ms", started.elapsed().as_millis());
    Ok(revision)
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    cli::run_async(run(args))
}

async fn run(args: Args) -> Result<bool, String> {
    let started = Instant::now();
    let members: Vec<u64> = (1..=u64::from(args.nodes)).collect();
    let addrs = loopback_addrs(&members).await.map_err(|e| e.to_string())?;
    let mut running = HashMap::new();
    for &id in &members {
        running.insert(
            id,
            start_member(id, &members, &addrs, Start::Bootstrap, snapshot_threshold(&args)).await?,
        );
    }
    let mux = MuxConfig::default();
    let remotes: Vec<RemoteNode> = members
        .iter()
        .map(|&id| RemoteNode::connect(id, &addrs[&id], &mux))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let cluster = Cluster::new(remotes.clone())
        .with_connector(RemoteNode::connector(mux.clone(), Security::Plain));

    let filled = fill(&cluster, args.state_mb).await?;

    // Leader changes, as seen by a monitor.
    let leader_log: Arc<Mutex<Vec<u64>>> = Arc::default();
    let monitor = {
        let (cluster, log) = (cluster.clone(), leader_log.clone());
        tokio::spawn(async move {
            loop {
                for node in cluster.handles() {
                    if let Ok(s) = node.status().await
                        && s.role == Role::Leader
                    {
                        let mut log = log.lock().await;
                        if log.last() != Some(&s.id) {
                            log.push(s.id);
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };

    // Independent observers: a watcher over every client key, and contenders for one lock. The
    // watcher starts after the fill: the store keeps a bounded history, and hundreds of 1 MiB
    // changes push revision 1 out of it (a watch from there is refused as compacted).
    let mut watch_log = observers::watch_all(&cluster, "c", filled + 1);
    let run_until = Instant::now() + Duration::from_secs(args.seconds);
    let lock_trial =
        observers::contend_for_a_lock(&cluster, 3, tokio::time::Instant::from_std(run_until));

    // Clients: each owns its keys, so the last acknowledged value of each key is known.
    let tally = Arc::new(Tally::default());
    let acked: Arc<Mutex<HashMap<String, (u64, Bytes)>>> = Arc::default();
    let every_ack: Arc<Mutex<Vec<(String, u64)>>> = Arc::default();
    let mut workers = Vec::new();
    for c in 0..usize::from(args.clients) {
        let (cluster, tally, acked) = (cluster.clone(), tally.clone(), acked.clone());
        let every_ack = every_ack.clone();
        workers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while Instant::now() < run_until {
                n += 1;
                let key = format!("c{c}/k{}", n % 64);
                let value = Bytes::from(format!("c{c}-{n}"));
                let op = if n.is_multiple_of(5) {
                    let expect = acked
                        .lock()
                        .await
                        .get(&key)
                        .map_or(Expect::Absent, |(_, v)| Expect::Value(v.clone()));
                    WriteOp::CompareAndSet { key: key.clone(), expect, value: value.clone() }
                } else {
                    WriteOp::Set { key: key.clone(), value: value.clone() }
                };
                tally.writes.fetch_add(1, Ordering::Relaxed);
                if let Ok(WriteResult::Applied { version }) = cluster.write(op).await {
                    tally.acked.fetch_add(1, Ordering::Relaxed);
                    every_ack.lock().await.push((key.clone(), version));
                    let mut map = acked.lock().await;
                    if map.get(&key).is_none_or(|(v, _)| *v < version) {
                        map.insert(key.clone(), (version, value));
                    }
                }
                if n.is_multiple_of(4) {
                    let _ = cluster.read(ReadOp::Get(key)).await;
                }
            }
        }));
    }

    // Half-way: stop the leader, wait for a new one, bring it back wiped.
    tokio::time::sleep(Duration::from_secs(args.seconds) / 2).await;
    let mut caught_up = true;
    let mut replaced = None;
    if args.replace {
        let old = wait_for_leader(&cluster, None, Duration::from_secs(10))
            .await
            .ok_or("no leader before the failure")?;
        let (new_id, node) = replace(&cluster, &mut running, old, &addrs).await?;
        running.insert(new_id, node);
        replaced = Some(new_id);
    } else if args.nodes > 1 {
        let old = wait_for_leader(&cluster, None, Duration::from_secs(10))
            .await
            .ok_or("no leader before the failure")?;
        running[&old].stop().await;
        wait_for_leader(&cluster, Some(old), Duration::from_secs(10))
            .await
            .ok_or("no new leader after the failure")?;
        let member =
            start_member(old, &members, &addrs, Start::Rejoin, snapshot_threshold(&args)).await?;
        running.insert(old, member);
        caught_up = false;
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(s) = running[&old].handle.status().await
                && !s.recovering
                && s.leader.is_some()
            {
                caught_up = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for w in workers {
        let _ = w.await;
    }
    monitor.abort();
    let (lock_holds, lock_violations, lock_retries) = lock_trial.finish().await;
    let (leases_expired, leases_early) =
        observers::leases_left_to_expire(&cluster, 20).await.map_err(|e| format!("leases: {e}"))?;
    // Let the watcher catch up with the last acknowledged write, then compare.
    let every_ack = every_ack.lock().await.clone();
    let last = every_ack.iter().map(|(_, v)| *v).max().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline
        && watch_log.seen.lock().await.iter().map(|(r, _)| *r).max().unwrap_or(0) < last
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    if watch_log.task.is_finished() {
        match (&mut watch_log.task).await {
            Ok(Err(e)) => eprintln!("the watcher stopped: {e}"),
            Ok(Ok(())) => eprintln!("the watcher stopped"),
            Err(e) => eprintln!("the watcher failed: {e}"),
        }
    }
    watch_log.task.abort();
    let watch_events = watch_log.seen.lock().await.len();
    let watch_gaps = observers::watch_gaps(&watch_log, &every_ack).await;

    // Every acknowledged write is there (or was replaced by a newer one).
    let mut lost = 0;
    for (key, (version, value)) in acked.lock().await.iter() {
        match cluster.read(ReadOp::Get(key.clone())).await {
            Ok(ReadResult::Value(Some(v)))
                if v.version > *version || (v.version == *version && v.value == *value) => {}
            _ => lost += 1,
        }
    }
    // All replicas identical once quiet.
    let mut identical = false;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let mut reports = Vec::new();
        for m in running.values() {
            if let Ok(r) = m.handle.inspect().await {
                reports.push(r);
            }
        }
        if reports.len() == usize::from(args.nodes) && compare(&reports).identical() {
            identical = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    if std::env::var_os("QUORUM_DEBUG").is_some() {
        for m in running.values() {
            eprintln!(
                "{:?} {:?}",
                m.handle.status().await,
                m.handle.inspect().await.map(|i| i.applied)
            );
        }
    }
    let leader_changes = leader_log.lock().await.len().saturating_sub(1);
    println!(
        "watch_events={watch_events} watch_gaps={watch_gaps} leases_expired={leases_expired} lock_violations={lock_violations}"
    );
    if leases_early > 0 || lock_holds == 0 {
        eprintln!(
            "leases deleted before their TTL: {leases_early}; lock holds: {lock_holds} ({lock_retries} retries)"
        );
    }
    let replacement = match replaced {
        Some(_) => {
            let membership = cluster.membership().await.map_err(|e| format!("membership: {e}"))?;
            let voters: Vec<String> = membership.voters().iter().map(u64::to_string).collect();
            format!(" replaced=1 members={}", voters.join(","))
        }
        None => String::new(),
    };
    println!(
        "nodes={} clients={} writes={} acked={} lost={lost} leader_changes={leader_changes} caught_up={caught_up} replicas={} elapsed_ms={}{replacement}",
        args.nodes,
        args.clients,
        tally.writes.load(Ordering::Relaxed),
        tally.acked.load(Ordering::Relaxed),
        if identical { "identical" } else { "different" },
        started.elapsed().as_millis()
    );
    for m in running.values() {
        m.stop().await;
    }
    for r in &remotes {
        r.close();
    }
    Ok(lost == 0
        && identical
        && caught_up
        && watch_gaps == 0
        && leases_expired == 20
        && leases_early == 0
        && lock_holds > 0
        && lock_violations == 0)
}

/// Replaces node `old` (stopped here for good, its memory gone) by a new node: learner,
/// promoted once caught up, then `old` removed. Prints how long each step took from the loss.
async fn replace(
    cluster: &Cluster<RemoteNode>,
    running: &mut HashMap<u64, MuxNode>,
    old: u64,
    addrs: &HashMap<u64, String>,
) -> Result<(u64, MuxNode), String> {
    running.remove(&old).ok_or("the node to replace is not running")?.stop().await;
    let lost_at = Instant::now();
    let new_id = addrs.keys().max().copied().unwrap_or(0) + 1;
    let mine = loopback_addrs(&[new_id]).await.map_err(|e| e.to_string())?;
    let address = mine[&new_id].clone();
    // It knows where the others are, and nothing of the configuration: it learns that from the
    // leader (its own members list is empty).
    let mut known = addrs.clone();
    known.remove(&old);
    known.insert(new_id, address.clone());
    let config = {
        let mut config = Config::new(new_id, vec![]);
        config.start = Start::Join;
        config.seed = new_id * 7919;
        config
    };
    let node = MuxNode::start(config, MemStorage::new(), &known, MuxConfig::default())
        .await
        .map_err(|e| e.to_string())?;
    let replace_started = Instant::now();
    let mut report = Vec::new();
    cluster
        .replace_member(old, new_id, Some(address), Duration::from_secs(30), |step, at| {
            report.push((step, at));
        })
        .await
        .map_err(|e| format!("replacing node {old} by node {new_id}: {e}"))?;
    let ms = |i: usize| report.get(i).map_or(0, |(_, at)| at.as_millis());
    let since_loss = replace_started.saturating_duration_since(lost_at).as_millis();
    println!(
        "replacement: node {old} gone; node {new_id} a learner after {} ms, voting after {} ms; node {old} removed after {} ms",
        since_loss + ms(0),
        since_loss + ms(1),
        since_loss + ms(2)
    );
    Ok((new_id, node))
}

async fn wait_for_leader(
    cluster: &Cluster<RemoteNode>,
    not: Option<u64>,
    within: Duration,
) -> Option<u64> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        for node in cluster.handles() {
            if Some(node.id()) == not {
                continue;
            }
            if let Ok(s) = node.status().await
                && s.role == Role::Leader
            {
                return Some(s.id);
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}
