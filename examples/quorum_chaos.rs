//! Faults on real processes: `quorum_node` children with file storage, clients writing through
//! them, and for S seconds SIGKILLs with restarts, SIGSTOP pauses longer than an election
//! timeout, network partitions (a node isolated both ways, the leader isolated, a node whose
//! every outgoing link is cut) through a fault-injecting TCP proxy on every peer link,
//! leadership transfers to a random voter, disks replaced (a node killed, its directory
//! wiped, started again empty to rejoin; only while no other node is recovering), and once,
//! past the first third of the run, a member replaced by a new node (`replace_member`: the new
//! one added as a learner, promoted, the old one removed and stopped) while the rest goes on.
//! What the new node sends goes through proxies like the others'; what is sent to it does not
//! (a membership change carries one address for every sender).
//!
//! ```text
//! quorum_chaos [--nodes 3|5] [--seconds 20] [--seed 1] [--history FILE]
//! quorum_chaos --check FILE     # check a history written by --history, start nothing
//! ```
//!
//! Four kinds of clients run meanwhile, so every operation kind the store has meets the faults:
//! - writers put keys nobody else writes (`chaos/W/N` = `wW-N`); every acknowledged one is read
//!   back after the faults (`lost` counts those missing), and both the puts and the read-back
//!   are in the history as registers (but the 64 KiB values, which the file would hold as text);
//! - a counter asks for the number of keys (`len`) every 200 ms: never fewer than the writers'
//!   keys acknowledged before it asked (`counts ...`, checked from below only: the other
//!   clients' keys come and go);
//! - contending clients get, range-read, put, compare-and-set, delete and run one-key
//!   transactions on a few shared keys, and multi-key sets, compare-and-sets, transactions,
//!   deletes, multi-gets and range reads on a pair of keys written only together; every call
//!   and return is recorded and each object's history is checked for linearizability with the
//!   checker of plus-quorum's `testkit` feature (the simulation's), in the simulation's
//!   JSON-lines format with `--history FILE` (`quorum_chaos/registers.rs`); the lease clients
//!   and the watcher are not in the file (a register cannot model a lease or a stream: they
//!   check themselves as they go);
//! - a watcher follows the writers' keys from the first revision and must receive every
//!   acknowledged put once, at its revision, in order (`quorum_chaos/watches.rs`);
//! - lease clients grant, put on, keep alive, read back, revoke, or abandon leases; a kept-alive
//!   lease's key must be there, a revoked one's gone, and an abandoned one must end after the
//!   faults (`quorum_chaos/leases.rs`);
//! - loads beside them (`quorum_chaos/loads.rs`): one writer's every tenth put is 64 KiB
//!   (`wW-N:` and hex digits no compressor shrinks), a
//!   client leaks a lease every 20 ms, and a watcher pipelines polls from the first revision
//!   without reading the answers (a node must cut it off). Their line (`loads ...`) comes
//!   before the last.
//!
//! The watch and lease checks print a line each before the last. It needs `quorum_node` built
//! beside it (`cargo build --example quorum_node`). The last line is `nodes=3 seconds=20 ops=N
//! ok=N failed=N indeterminate=N kills=K pauses=P partitions=Q transfers=T wipes=W replaced=R
//! linearizable=true lost=0`; it exits 1 on a lost write or a history that is not linearizable (or not decided
//! in time).

#[path = "common/cli.rs"]
mod cli;
#[path = "quorum_chaos/leases.rs"]
mod leases;
#[path = "quorum_chaos/loads.rs"]
mod loads;
#[path = "quorum_chaos/proxy.rs"]
mod proxy;
#[path = "common/quorum_client.rs"]
mod quorum_client;
#[path = "quorum_chaos/registers.rs"]
mod registers;
#[path = "quorum_chaos/watches.rs"]
mod watches;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use plus_core::seeded_rng;
use plus_quorum::testing::loopback_addrs;
use plus_quorum::{ClientError, Cluster, ClusterChange, NodeApi, NodeId, RemoteNode, StoreError};
use rand::Rng;

/// Faults on real `quorum_node` processes.
#[derive(Debug, Parser)]
#[command(name = "quorum_chaos")]
struct Args {
    /// Nodes: 3 or 5.
    #[arg(long, default_value_t = 3, value_parser = nodes_count)]
    nodes: u64,
    /// How long faults are injected, in seconds (1 to 86400).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Seed of the faults' order and timing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the history of the contending clients, the writers and the read-back here (JSON
    /// lines, the simulation's format).
    #[arg(long)]
    history: Option<PathBuf>,
    /// Start nothing: check the history in this file (written by --history) and print
    /// `operations=N linearizable=true|false`.
    #[arg(long, conflicts_with = "history")]
    check: Option<PathBuf>,
    /// The nodes' `--snapshot-entries`: a small figure puts snapshots (written beside the
    /// appends, compacting the log, installed on nodes that fell behind) among the faults.
    /// Default: the node's own.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    snapshot_entries: Option<u64>,
}

/// The node processes; every one is killed when this is dropped, also on failure.
struct Nodes {
    program: PathBuf,
    /// Given to every node it starts.
    common: Vec<String>,
    addrs: HashMap<NodeId, String>,
    proxies: proxy::Proxies,
    dir: PathBuf,
    children: HashMap<NodeId, Child>,
}

impl Nodes {
    fn start(&mut self, id: NodeId) -> Result<(), String> {
        self.start_with(id, &[])
    }

    fn start_with(&mut self, id: NodeId, extra: &[&str]) -> Result<(), String> {
        // Each node reaches its peers through the proxies of its own links.
        let peers = self.proxies.peers_of(id, &self.addrs);
        let child = Command::new(&self.program)
            .args(["--id", &id.to_string(), "--listen", &self.addrs[&id], "--peers", &peers])
            .arg("--data")
            .arg(self.data(id))
            .args(&self.common)
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", self.program.display()))?;
        self.children.insert(id, child);
        Ok(())
    }

    fn data(&self, id: NodeId) -> PathBuf {
        self.dir.join(format!("node{id}"))
    }

    /// Starts node `new`, not yet a member, on a free loopback port, to be added while the
    /// faults run; its address.
    async fn start_new_member(&mut self, new: NodeId) -> Result<String, String> {
        let addr = loopback_addrs(&[new]).await.map_err(|e| e.to_string())?.remove(&new);
        let addr = addr.ok_or("no address for the new member")?;
        self.addrs.insert(new, addr.clone());
        let targets = self.addrs.clone();
        self.proxies.add_sender(new, &targets).await.map_err(|e| format!("proxies: {e}"))?;
        self.start_with(new, &["--new-member"])?;
        Ok(addr)
    }

    /// Node `old`, removed from the cluster: stopped, and forgotten.
    fn forget(&mut self, old: NodeId) {
        self.kill(old);
        self.addrs.remove(&old);
    }

    /// A disk replaced: the node killed, its directory gone, and started again empty to
    /// rejoin (it must not vote or count until the leader has caught it up).
    fn wipe(&mut self, id: NodeId) -> Result<(), String> {
        self.kill(id);
        std::fs::remove_dir_all(self.data(id))
            .map_err(|e| format!("cannot wipe node {id}'s directory: {e}"))?;
        self.start_with(id, &["--join"])
    }

    fn kill(&mut self, id: NodeId) {
        if let Some(mut child) = self.children.remove(&id) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn signal(&self, id: NodeId, signal: &str) {
        if let Some(child) = self.children.get(&id) {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        let ids: Vec<NodeId> = self.children.keys().copied().collect();
        for id in ids {
            self.kill(id);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Whether every node answers and none is recovering from a wipe (each within a second).
async fn all_hold_their_data(cluster: &Cluster<RemoteNode>) -> bool {
    for node in cluster.handles() {
        let status = tokio::time::timeout(Duration::from_secs(1), node.status()).await;
        if !matches!(status, Ok(Ok(s)) if !s.recovering) {
            return false;
        }
    }
    true
}

/// `--nodes`: 3 or 5.
fn nodes_count(text: &str) -> Result<u64, String> {
    match text.trim() {
        "3" => Ok(3),
        "5" => Ok(5),
        other => Err(format!("`{other}` nodes: 3 or 5")),
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    cli::init_logging();
    match &args.check {
        Some(path) => cli::run_async(check_file(path.clone())),
        None => cli::run_async(run(args)),
    }
}

async fn check_file(path: PathBuf) -> Result<bool, String> {
    let recorder = registers::Recorder::read(&path)?;
    let verdict = recorder.check(Duration::from_secs(60));
    if let Err(why) = &verdict {
        eprintln!("{why}");
    }
    println!("operations={} linearizable={}", recorder.operations(), verdict.is_ok());
    Ok(verdict.is_ok())
}

#[derive(Default)]
struct Counts {
    ops: AtomicU64,
    ok: AtomicU64,
    failed: AtomicU64,
    indeterminate: AtomicU64,
}

async fn run(args: Args) -> Result<bool, String> {
    let mut ids: Vec<NodeId> = (1..=args.nodes).collect();
    let dir = std::env::temp_dir().join(format!("plus-quorum-chaos-{}", std::process::id()));
    let addrs = loopback_addrs(&ids).await.map_err(|e| e.to_string())?;
    let proxies = proxy::Proxies::start(&addrs).await.map_err(|e| format!("proxies: {e}"))?;
    let mut nodes = Nodes {
        program: cli::sibling_example("quorum_node")?,
        common: args
            .snapshot_entries
            .map(|n| vec!["--snapshot-entries".to_owned(), n.to_string()])
            .unwrap_or_default(),
        addrs,
        proxies,
        dir,
        children: HashMap::new(),
    };
    for &id in &ids {
        nodes.start(id)?;
    }
    let addrs = nodes.addrs.clone();
    let client = || {
        quorum_client::connect(
            addrs.iter().map(|(&id, addr)| (id, addr.as_str())),
            Duration::from_secs(5),
        )
    };
    let counts = Arc::new(Counts::default());
    let acked: Arc<std::sync::Mutex<Vec<(String, String, u64)>>> = Arc::default();
    let (stop_watching, stop) = tokio::sync::watch::channel(None);
    let watching = tokio::spawn(watches::watch(client(), "chaos/", stop));
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let recorder = registers::Recorder::new();
    let mut writers = Vec::new();
    for w in 0..8_u64 {
        let (cluster, counts, acked) = (client(), Arc::clone(&counts), Arc::clone(&acked));
        let recorder = Arc::clone(&recorder);
        writers.push(tokio::spawn(async move {
            let mut n = 0_u64;
            while Instant::now() < deadline {
                n += 1;
                let key = format!("chaos/{w}/{n}");
                counts.ops.fetch_add(1, Ordering::Relaxed);
                // Unique values: the history checks every value read was written, once.
                let value = watches::writer_value(w, n);
                let put = if w == 0 && n.is_multiple_of(10) {
                    // Large values beside small ones, which no compressor shrinks (not in the
                    // history file, which would hold each one as text).
                    let value = loads::large_value(&value, n);
                    cluster.set(&key, value.clone()).await.map(|revision| (value, revision))
                } else {
                    let thread = WRITERS << 32 | w << 24 | n;
                    let client = usize::try_from(WRITERS).unwrap_or(usize::MAX);
                    let put = recorder.put(&cluster, (client, thread), &key, value.clone()).await;
                    put.map(|revision| (value, revision))
                };
                match put {
                    Ok((value, revision)) => {
                        counts.ok.fetch_add(1, Ordering::Relaxed);
                        acked.lock().expect("acked lock").push((key, value, revision));
                    }
                    Err(StoreError::Client(ClientError::Unknown) | StoreError::Timeout(_)) => {
                        counts.indeterminate.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        counts.failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let counting = tokio::spawn(count_keys(client(), Arc::clone(&acked), deadline));
    let contenders: Vec<_> = (0..4)
        .map(|c| {
            let seed = args.seed.wrapping_mul(31).wrapping_add(c as u64);
            tokio::spawn(registers::client(client(), Arc::clone(&recorder), c, seed, deadline))
        })
        .collect();
    let loaded = Arc::new(loads::Loads::default());
    let leaking = tokio::spawn(loads::leak_leases(client(), Arc::clone(&loaded), deadline));
    let slow_watching = tokio::spawn(loads::slow_watcher(
        client(),
        addrs.clone(),
        2_000,
        Arc::clone(&loaded),
        deadline,
    ));
    let lease_clients: Vec<_> = (0..2)
        .map(|c| {
            let seed = args.seed.wrapping_mul(37).wrapping_add(c as u64);
            tokio::spawn(leases::client(client(), c, seed, deadline))
        })
        .collect();
    // The faults: one at a time, a quiet spell between two.
    let mut rng = seeded_rng(args.seed);
    let watcher = client();
    let (mut kills, mut pauses, mut partitions, mut transfers, mut wipes) = (0, 0, 0, 0, 0);
    let (mut replaced, mut replace_tried) = (0, false);
    // Once, past the first third of the run: a member replaced by a new node while the load
    // and the other faults go on.
    let replace_after = Instant::now() + Duration::from_secs(args.seconds) / 3;
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(rng.random_range(300..1_500))).await;
        let victim = ids[rng.random_range(0..ids.len())];
        let kind = if !replace_tried && Instant::now() >= replace_after {
            6
        } else {
            rng.random_range(0..6)
        };
        match kind {
            6 => {
                if !all_hold_their_data(&watcher).await {
                    continue;
                }
                replace_tried = true;
                let new = ids.iter().max().copied().unwrap_or(0).max(args.nodes) + 1;
                let address = nodes.start_new_member(new).await?;
                let within = Duration::from_secs(20);
                match watcher.replace_member(victim, new, Some(address), within, |_, _| {}).await {
                    Ok(_) => {
                        nodes.forget(victim);
                        ids.retain(|&id| id != victim);
                        ids.push(new);
                        replaced += 1;
                    }
                    // Not done in time: both stay (the new one may be a member by now), and
                    // the run goes on with them.
                    Err(e) => {
                        eprintln!("replace {victim} by {new}: {e}");
                        ids.push(new);
                    }
                }
            }
            5 => {
                // Only while every node holds its data: two wiped at once in three would
                // leave one copy, and that is beyond what Raft tolerates, not a fault of ours.
                if !all_hold_their_data(&watcher).await {
                    continue;
                }
                nodes.wipe(victim)?;
                wipes += 1;
            }
            0 => {
                nodes.kill(victim);
                kills += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(200..2_000))).await;
                nodes.start(victim)?;
            }
            1 => {
                // Longer than an election timeout: the rest elect a leader without it.
                nodes.signal(victim, "-STOP");
                pauses += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..2_500))).await;
                nodes.signal(victim, "-CONT");
            }
            4 => {
                // Leadership handed over under load: the old leader stops taking writes, the
                // new one campaigns at once; writes in flight must neither be lost nor doubled.
                let Some(leader) = watcher.leader().await else { continue };
                let others: Vec<NodeId> = ids.iter().copied().filter(|&id| id != leader).collect();
                let to = others[rng.random_range(0..others.len())];
                // A transfer may be refused (a change in flight, a target behind) or time out:
                // that is an answer, not a fault of the store; only its effects are checked.
                if watcher.change_cluster(ClusterChange::TransferLeadership { to }).await.is_ok() {
                    transfers += 1;
                }
            }
            kind => {
                let victim = match kind {
                    // The leader, when one is known: the partition that matters most.
                    2 => watcher.leader().await.unwrap_or(victim),
                    _ => victim,
                };
                if rng.random_bool(0.5) {
                    nodes.proxies.isolate(victim);
                } else {
                    // One way: it hears its peers but nothing it sends reaches them.
                    for &peer in ids.iter().filter(|&&p| p != victim) {
                        nodes.proxies.cut(victim, peer);
                    }
                }
                partitions += 1;
                tokio::time::sleep(Duration::from_millis(rng.random_range(1_000..2_500))).await;
                nodes.proxies.heal();
            }
        }
    }
    for contender in contenders {
        let _ = contender.await;
    }
    for writer in writers {
        let _ = writer.await;
    }
    let mut leased = leases::Tally::default();
    for lease_client in lease_clients {
        leased.merge(lease_client.await.map_err(|e| e.to_string())?);
    }
    // Every acknowledged write, read back linearizably once the faults are over.
    // Once the faults end, the cluster has a while to settle (under load an election and a
    // restarted node catching up can take longer than one call's deadline).
    // The members as they are now (a replaced one gone, its replacement in).
    let reader = quorum_client::connect(
        nodes.addrs.iter().map(|(&id, addr)| (id, addr.as_str())),
        Duration::from_secs(30),
    );
    let mut settled = reader.set("settled", "1").await;
    for _ in 0..3 {
        if settled.is_ok() {
            break;
        }
        settled = reader.set("settled", "1").await;
    }
    settled.map_err(|e| format!("the cluster did not settle within 2 minutes: {e}"))?;
    let acked = acked.lock().expect("acked lock").clone();
    let mut lost = 0;
    let large = |value: &str| value.len() >= loads::LARGE_VALUE / 2;
    let (large_puts, small_puts): (Vec<_>, Vec<_>) = acked.iter().partition(|(_, v, _)| large(v));
    let mut thread = READ_BACK << 32;
    // Each read's answer stays well under the node's byte limit (`Config::max_read_bytes`).
    for chunk in small_puts.chunks(256).chain(large_puts.chunks(32)) {
        let keys: Vec<String> = chunk.iter().map(|(k, ..)| k.clone()).collect();
        let found = if large(&chunk[0].1) {
            reader.multi_get(keys).await
        } else {
            // Read back in the history too: each key's put, then this get of it.
            let client = usize::try_from(READ_BACK).unwrap_or(usize::MAX);
            let first = thread;
            thread += keys.len() as u64;
            recorder.get_all(&reader, client, first, &keys).await
        };
        let found = found.map_err(|e| e.to_string())?;
        for ((key, value, _), found) in chunk.iter().zip(found) {
            if found.is_none_or(|v| v.value != value.as_bytes()) {
                lost += 1;
                eprintln!("lost: {key}");
            }
        }
    }
    registers::final_reads(&reader, &recorder, 99).await;
    leases::expired(&reader, &mut leased, Duration::from_secs(10)).await;
    for violation in &leased.violations {
        eprintln!("lease: {violation}");
    }
    println!(
        "leases    granted={} kept_alive={} revoked={} left_to_expire_and_ended={} violations={}",
        leased.granted,
        leased.kept_alive,
        leased.revoked,
        leased.abandoned_ended,
        leased.violations.len()
    );
    // The watch must have delivered every acknowledged put, once, in order.
    let last_acked = acked.iter().map(|&(.., revision)| revision).max().unwrap_or(0);
    watches::settle(&stop_watching, last_acked, Duration::from_secs(30)).await;
    drop(stop_watching);
    let received = watching.await.map_err(|e| e.to_string())?;
    let watched = watches::check(&received, &acked);
    println!(
        "watch     events={} progress={} poll_errors={} {}",
        received.events.len(),
        received.progress,
        received.errors.len(),
        match &watched {
            Ok(()) => "every acknowledged put arrived once, in order".to_owned(),
            Err(why) => format!("FAILED: {why}"),
        }
    );
    if let Some(path) = &args.history {
        recorder.write(path)?;
    }
    let _ = leaking.await;
    let _ = slow_watching.await;
    println!(
        "loads     large_values={} leaked_leases={} slow_watchers={} slow_watchers_ended={}",
        acked.iter().filter(|(_, v, _)| v.len() >= loads::LARGE_VALUE / 2).count(),
        loaded.leaked.load(Ordering::Relaxed),
        loaded.slow_watchers.load(Ordering::Relaxed),
        loaded.slow_watchers_ended.load(Ordering::Relaxed),
    );
    let counted = counting.await.map_err(|e| e.to_string())?;
    for violation in &counted.violations {
        eprintln!("len: {violation}");
    }
    println!("counts    len_reads={} violations={}", counted.reads, counted.violations.len());
    let verdict = recorder.check(Duration::from_secs(60));
    if let Err(why) = &verdict {
        eprintln!("history of {} operations: {why}", recorder.operations());
    }
    // A failed compare is an answer (the key was not as expected): it counts as ok.
    let (contended_ok, contended_failed, contended_unknown) = recorder.outcomes();
    println!(
        "nodes={} seconds={} ops={} ok={} failed={} indeterminate={} kills={kills} pauses={pauses} partitions={partitions} transfers={transfers} wipes={wipes} replaced={} linearizable={} lost={lost}",
        args.nodes,
        args.seconds,
        counts.ops.load(Ordering::Relaxed) + recorder.operations() as u64 + leased.ops,
        counts.ok.load(Ordering::Relaxed) + contended_ok + contended_failed + leased.ok,
        counts.failed.load(Ordering::Relaxed),
        counts.indeterminate.load(Ordering::Relaxed) + contended_unknown + leased.unknown,
        replaced,
        verdict.is_ok(),
    );
    drop(nodes);
    Ok(lost == 0
        && verdict.is_ok()
        && watched.is_ok()
        && leased.violations.is_empty()
        && counted.violations.is_empty())
}

/// The history's client number of the writers (each writer's threads below it) and of the
/// final read-back: apart from the contending clients' small numbers.
const WRITERS: u64 = 200;
const READ_BACK: u64 = 300;

/// What the key counter saw.
struct Counted {
    reads: usize,
    violations: Vec<String>,
}

/// Counts the store's keys (`len`) every 200 ms until `deadline`: never fewer than the writers'
/// keys acknowledged before the count was asked for, which no one deletes. (What the other
/// clients hold adds to it: the count is checked from below only.)
async fn count_keys(
    cluster: Cluster<RemoteNode>,
    acked: Arc<std::sync::Mutex<Vec<(String, String, u64)>>>,
    deadline: Instant,
) -> Counted {
    let mut counted = Counted { reads: 0, violations: Vec::new() };
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let at_least = acked.lock().expect("acked lock").len();
        if let Ok(plus_quorum::ReadResult::Len(count)) =
            cluster.read(plus_quorum::ReadOp::Len).await
        {
            counted.reads += 1;
            if count < at_least {
                counted.violations.push(format!(
                    "the store counted {count} keys after {at_least} of the writers' were acknowledged"
                ));
            }
        }
    }
    counted
}
