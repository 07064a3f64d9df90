//! A load generator for a plus-quorum cluster of `quorum_node` processes (or, with `--etcd`,
//! an etcd cluster, through the same `KvClient` trait), and a checker of what it wrote.
//!
//! ```text
//! quorum_load --endpoints 1=127.0.0.1:7101,... --op put|get|txn|lease --clients 64 --seconds 10 \
//!     --value-size 256 [--record FILE]
//! quorum_load --endpoints ... --op check --record FILE
//! quorum_load --etcd --endpoints 127.0.0.1:2379,... --op put ...   # built with --features etcd
//! ```
//!
//! Each client is one task with its own connections (to every node, or one gRPC connection to
//! etcd); each put writes a key nobody else writes.
//! The last line is `op=put clients=64 ops=N errors=E rps=R p50_us=X p99_us=Y`. With
//! `--record FILE`, every acknowledged put's key and value are appended to FILE as soon as the
//! put is acknowledged; `--op check` reads every recorded key back (linearizably) and prints
//! `checked=N missing=M wrong=W`, exiting 1 unless both are 0: no acknowledged write was lost.
//! A load in which every operation failed exits 1 (a client backs off after each failure, so a
//! store that is not there is not spun on).

#[path = "common/cli.rs"]
mod cli;
#[path = "common/quorum_client.rs"]
mod quorum_client;

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use plus_quorum::{
    Bytes, ClientError, Compare, Expect, KvClient, StoreError, Txn, TxnOp, TxnOpResult,
};
use rand::Rng;
use rand::distr::Alphanumeric;

/// A load generator for a plus-quorum cluster, and a checker of what it wrote.
#[derive(Debug, Parser)]
#[command(name = "quorum_load")]
struct Args {
    /// The nodes: `ID=HOST:PORT,...` (with --etcd: `HOST:PORT,...`).
    #[arg(long)]
    endpoints: String,
    /// The endpoints are etcd members (needs the example built with `--features etcd`).
    #[arg(long)]
    etcd: bool,
    /// What each client does.
    #[arg(long, value_enum)]
    op: Op,
    /// Concurrent clients (1 to 4096).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4_096))]
    clients: u16,
    /// How long, in seconds (1 to 86400).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    seconds: u64,
    /// Bytes per value (1 to 1048576).
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
    value_size: u32,
    /// Whether every client opens its own connections or all share one client (one
    /// connection per node; for etcd, one gRPC connection, as most etcd users run).
    #[arg(long, value_enum, default_value_t = Connections::PerClient)]
    connections: Connections,
    /// Stop after this many operations in all (or at --seconds, whichever comes first): to
    /// fill a store with a known number of keys.
    #[arg(long)]
    ops: Option<u64>,
    #[command(flatten)]
    auth: cli::ClientAuthArgs,
    /// Append every acknowledged put here (with --op put), or check what is here (--op check).
    #[arg(long)]
    record: Option<PathBuf>,
    /// With --op get: how many keys the gets pick from at random (1 to 10,000,000). They are
    /// named by their count, `load/keys-N/I`, and written before the clock starts unless an
    /// earlier run left them (their last key is written last), so runs after the first read
    /// a store that already holds them.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    keys: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Connections {
    /// Each client its own.
    PerClient,
    /// One client shared by all.
    Shared,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Op {
    /// Set a new key.
    Put,
    /// Read a key written before the run (linearizably).
    Get,
    /// A transaction: create a key if absent, with a second key beside it.
    Txn,
    /// Grant an hour-long lease and leave it (a client that leaks leases: they pile up).
    Lease,
    /// Read back every key of --record.
    Check,
}

/// Where the load goes.
#[derive(Debug, Clone)]
enum Target {
    Quorum(Vec<(u64, String)>, plus_quorum::Security),
    #[cfg(feature = "etcd")]
    Etcd(Vec<String>),
}

/// Each call's deadline.
const DEADLINE: Duration = Duration::from_secs(5);

impl Target {
    fn parse(args: &Args) -> Result<Self, String> {
        if !args.etcd {
            let members = cli::members(&args.endpoints)?;
            args.auth.check_plain_text(members.iter().map(|(_, addr)| addr.as_str()))?;
            return Ok(Self::Quorum(members, quorum_client::security(&args.auth)?));
        }
        if args.auth.authenticated() {
            return Err("--tls-* and --psk-file are for plus-quorum nodes; quorum_load speaks \
                        plain gRPC to etcd"
                .into());
        }
        let target = Self::etcd(&args.endpoints)?;
        if !args.auth.insecure {
            cli::plain_text_only_to_loopback(
                args.endpoints
                    .split(',')
                    .map(|e| e.trim().trim_start_matches("http://"))
                    .filter(|e| !e.is_empty()),
                "nothing (etcd is reached in plain gRPC)",
            )?;
        }
        Ok(target)
    }

    #[cfg(not(feature = "etcd"))]
    fn etcd(_: &str) -> Result<Self, String> {
        Err("--etcd needs the example built with `--features etcd` (and protoc)".into())
    }

    #[cfg(feature = "etcd")]
    fn etcd(endpoints: &str) -> Result<Self, String> {
        let endpoints: Vec<String> = endpoints
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_owned)
            .collect();
        if endpoints.is_empty() {
            return Err("no endpoints".into());
        }
        Ok(Self::Etcd(endpoints))
    }

    async fn connect(&self) -> Result<Arc<dyn KvClient>, String> {
        match self {
            Self::Quorum(members, security) => {
                let members = members.iter().map(|(id, addr)| (*id, addr.as_str()));
                Ok(Arc::new(quorum_client::connect_secured(members, DEADLINE, security)))
            }
            #[cfg(feature = "etcd")]
            Self::Etcd(endpoints) => plus_quorum::EtcdClient::connect(endpoints, DEADLINE)
                .await
                .map(|client| Arc::new(client) as Arc<dyn KvClient>)
                .map_err(|e| e.to_string()),
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let target = Target::parse(&args).unwrap_or_else(|e| cli::usage_error::<Args>(e));
    if args.op == Op::Check && args.record.is_none() {
        cli::usage_error::<Args>("--op check needs --record FILE");
    }
    cli::init_logging();
    cli::run_async(async move {
        match args.op {
            Op::Check => {
                let record = args.record.as_deref().expect("checked above");
                check(target.connect().await?.as_ref(), record).await
            }
            _ => load(&args, &target).await,
        }
    })
}

fn text(len: usize) -> String {
    rand::rng().sample_iter(&Alphanumeric).take(len).map(char::from).collect()
}

/// What one client saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    errors: usize,
    /// What the first failed operation was told, so a run with errors says why.
    first_error: Option<String>,
}

impl Tally {
    fn failed(&mut self, why: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(why.to_string());
        }
    }
}

/// The `i`th of the `keys` keys the gets read.
fn read_key(keys: u32, i: u32) -> String {
    format!("load/keys-{keys}/{i}")
}

/// Writes the `keys` keys the gets read, unless an earlier run did: transactions of 100 sets
/// (fewer when the cluster says that is past its limit of operations or bytes), 64 at a time,
/// and the last key alone at the end, so its presence means all are there.
async fn fill(store: &Arc<dyn KvClient>, keys: u32, value_size: usize) -> Result<(), String> {
    let last = read_key(keys, keys - 1);
    if store.get(&last).await.map_err(|e| e.to_string())?.is_some() {
        return Ok(());
    }
    use std::sync::atomic::{AtomicU32, Ordering};
    const PER_TXN: u32 = 100;
    let next = Arc::new(AtomicU32::new(0));
    // Halved, for every writer, each time the cluster refuses a transaction as too large.
    let per_txn = Arc::new(AtomicU32::new(PER_TXN));
    let mut writers = Vec::new();
    for _ in 0..64 {
        let (store, next, per_txn) = (Arc::clone(store), Arc::clone(&next), Arc::clone(&per_txn));
        writers.push(tokio::spawn(async move {
            loop {
                let start = next.fetch_add(PER_TXN, Ordering::Relaxed);
                let end = (start + PER_TXN).min(keys - 1);
                if start >= end {
                    return Ok::<(), String>(());
                }
                let mut from = start;
                while from < end {
                    let to = end.min(from + per_txn.load(Ordering::Relaxed));
                    let then = (from..to)
                        .map(|i| TxnOp::Set {
                            key: read_key(keys, i),
                            value: Bytes::from(text(value_size)),
                            lease: None,
                        })
                        .collect();
                    let txn = Txn { when: vec![], then, otherwise: vec![] };
                    match store.txn(txn).await {
                        Ok(_) => from = to,
                        Err(StoreError::Client(ClientError::TooLarge { .. })) if to - from > 1 => {
                            per_txn.fetch_min((to - from) / 2, Ordering::Relaxed);
                        }
                        Err(e) => return Err(format!("filling the keys: {e}")),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.map_err(|e| e.to_string())??;
    }
    store.set(&last, Bytes::from(text(value_size))).await.map_err(|e| e.to_string())?;
    Ok(())
}

async fn load(args: &Args, target: &Target) -> Result<bool, String> {
    let value_size = args.value_size as usize;
    let record = match &args.record {
        Some(path) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| format!("cannot open {}: {e}", path.display()))?,
        ))),
        None => None,
    };
    let run = text(8);
    let keys = args.keys;
    if args.op == Op::Get {
        fill(&target.connect().await?, keys, value_size).await?;
    }
    let shared = match args.connections {
        Connections::Shared => Some(target.connect().await?),
        Connections::PerClient => None,
    };
    let deadline = Instant::now() + Duration::from_secs(args.seconds);
    let started = Instant::now();
    let tickets = Arc::new(std::sync::atomic::AtomicU64::new(args.ops.unwrap_or(u64::MAX)));
    let mut clients = Vec::new();
    for client in 0..args.clients {
        let store = match &shared {
            Some(store) => Arc::clone(store),
            None => target.connect().await?,
        };
        let (record, run, op) = (record.clone(), run.clone(), args.op);
        let tickets = Arc::clone(&tickets);
        clients.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut n = 0u64;
            let mut pause = Duration::ZERO;
            while Instant::now() < deadline {
                let taken = tickets.fetch_update(
                    std::sync::atomic::Ordering::Relaxed,
                    std::sync::atomic::Ordering::Relaxed,
                    |left| left.checked_sub(1),
                );
                if taken.is_err() {
                    break;
                }
                n += 1;
                let key = format!("load/{run}/{client}/{n}");
                let began = Instant::now();
                let outcome: Result<(), String> = match op {
                    Op::Put => {
                        let value = text(value_size);
                        let written = store.set(&key, Bytes::from(value.clone())).await;
                        if let (Ok(_), Some(record)) = (&written, &record) {
                            let line = format!("{key} {value}\n");
                            let mut file = record.lock().expect("record lock");
                            if let Err(e) = file.write_all(line.as_bytes()) {
                                tally.failed(format!("recording {key}: {e}"));
                            }
                        }
                        written.map(|_| ()).map_err(|e| format!("put {key}: {e}"))
                    }
                    Op::Get => {
                        let key = read_key(keys, rand::rng().random_range(0..keys));
                        match store.get(&key).await {
                            Ok(Some(_)) => Ok(()),
                            Ok(None) => Err(format!("get {key}: not found")),
                            Err(e) => Err(format!("get {key}: {e}")),
                        }
                    }
                    Op::Txn => {
                        let txn = Txn {
                            when: vec![Compare::new(key.clone(), Expect::Absent)],
                            then: vec![
                                TxnOp::Set {
                                    key: key.clone(),
                                    value: Bytes::from(text(value_size)),
                                    lease: None,
                                },
                                TxnOp::Set {
                                    key: format!("{key}/meta"),
                                    value: Bytes::from_static(b"1"),
                                    lease: None,
                                },
                            ],
                            otherwise: vec![],
                        };
                        match store.txn(txn).await {
                            Ok(outcome) if outcome.succeeded => Ok(()),
                            Ok(_) => Err(format!("txn on {key}: its compare failed")),
                            Err(e) => Err(format!("txn on {key}: {e}")),
                        }
                    }
                    Op::Lease => store
                        .grant_lease(Duration::from_secs(3_600))
                        .await
                        .map(|_| ())
                        .map_err(|e| format!("lease grant: {e}")),
                    Op::Check => unreachable!("check does not load"),
                };
                if let Err(why) = outcome {
                    tally.failed(why);
                    // A store that refuses at once (nothing listening) must not be spun on.
                    pause = (pause * 2).clamp(Duration::from_millis(5), Duration::from_millis(200));
                    tokio::time::sleep(
                        pause.min(deadline.saturating_duration_since(Instant::now())),
                    )
                    .await;
                } else {
                    tally.latencies.push(began.elapsed());
                    pause = Duration::ZERO;
                }
            }
            tally
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    let mut first_error = None;
    for client in clients {
        let tally = client.await.map_err(|e| e.to_string())?;
        latencies.extend(tally.latencies);
        errors += tally.errors;
        first_error = first_error.or(tally.first_error);
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let op = format!("{:?}", args.op).to_lowercase();
    println!(
        "op={op} clients={} ops={} errors={errors} rps={:.0} p50_us={} p99_us={}",
        args.clients,
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        cli::quantile_us(&latencies, 0.50),
        cli::quantile_us(&latencies, 0.99),
    );
    if let Some(why) = &first_error {
        eprintln!("{errors} operations failed; one of them: {why}");
    }
    if latencies.is_empty() && errors > 0 {
        eprintln!("error: every operation failed ({errors}); is the store up at those endpoints?");
        return Ok(false);
    }
    Ok(true)
}

/// Keys read back per transaction (etcd allows 128 operations in one by default).
const CHECK_BATCH: usize = 100;

async fn check(store: &dyn KvClient, record: &std::path::Path) -> Result<bool, String> {
    let file = std::fs::File::open(record)
        .map_err(|e| format!("cannot open {}: {e}", record.display()))?;
    let mut expected = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("cannot read {}: {e}", record.display()))?;
        let (key, value) = line
            .split_once(' ')
            .ok_or_else(|| format!("{}:{}: not `KEY VALUE`", record.display(), number + 1))?;
        expected.push((key.to_owned(), value.to_owned()));
    }
    let (mut missing, mut wrong) = (0, 0);
    for chunk in expected.chunks(CHECK_BATCH) {
        // One linearizable read of the whole chunk, on either store: a transaction of gets.
        let reads = Txn {
            when: vec![],
            then: chunk.iter().map(|(key, _)| TxnOp::Get(key.clone())).collect(),
            otherwise: vec![],
        };
        let outcome = store.txn(reads).await.map_err(|e| e.to_string())?;
        if outcome.results.len() != chunk.len() {
            return Err(format!(
                "{} reads answered with {} results",
                chunk.len(),
                outcome.results.len()
            ));
        }
        for ((key, value), found) in chunk.iter().zip(outcome.results) {
            match found {
                TxnOpResult::Get(None) => {
                    missing += 1;
                    eprintln!("missing: {key}");
                }
                TxnOpResult::Get(Some(v)) if v.value != value.as_bytes() => {
                    wrong += 1;
                    eprintln!("wrong value: {key}");
                }
                TxnOpResult::Get(Some(_)) => {}
                other => return Err(format!("a read of {key} answered {other:?}")),
            }
        }
    }
    println!("checked={} missing={missing} wrong={wrong}", expected.len());
    Ok(missing == 0 && wrong == 0)
}
