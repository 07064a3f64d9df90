//! Prints one table of every side-by-side ratio from the latest criterion run.
//!
//! ```text
//! cargo bench -p benches && cargo run --release --example bench_report [-- --markdown]
//! ```
//!
//! Reads `target/criterion/<group>/<function>/new/estimates.json` (the mean time per
//! iteration; CPU time of the process for the `mux_cpu` groups) for each pair of contender and
//! baseline measured in the same group, and prints the contender's time, the baseline's time
//! and their ratio (below 1 means faster than the baseline). Groups that were not run are
//! listed as missing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

/// `(criterion group directory, contender, baseline, what the ratio means)`.
const PAIRS: &[(&str, &str, &str, &str)] = &[
    (
        "coordination_keep_alive_c64",
        "plus_quorum_keep_alive",
        "linearizable_read",
        "lease keep-alive / linearizable read, 64 clients",
    ),
    (
        "coordination_txn_c64",
        "plus_quorum_txn_3_compares_3_writes",
        "single_write",
        "transaction (3 compares + 3 writes) / single write, 64 clients",
    ),
    (
        "coordination_watch_1_watchers",
        "plus_quorum_writes_watched",
        "writes_unwatched",
        "500 writes watched by 1 watcher / unwatched",
    ),
    (
        "coordination_watch_100_watchers",
        "plus_quorum_writes_watched",
        "writes_unwatched",
        "500 writes watched by 100 watchers / unwatched",
    ),
    (
        "coordination_watch_1000_watchers",
        "plus_quorum_writes_watched",
        "writes_unwatched",
        "500 writes watched by 1,000 watchers / unwatched",
    ),
    (
        "coordination_watch_10000_watchers",
        "plus_quorum_writes_watched",
        "writes_unwatched",
        "500 writes watched by 10,000 watchers / unwatched",
    ),
    (
        "scheduler_fleet_heartbeats_1000",
        "plus_scheduler_fleet",
        "hash_map_update_floor",
        "fleet: 1,000 heartbeats / hash map updates, 10,000 workers",
    ),
    (
        "scheduler_fleet_assign_10000",
        "plus_scheduler_fleet",
        "decide_same_candidates",
        "fleet: assign + finish / decide, 10,000 workers",
    ),
    (
        "quorum_file_storage_64_entries",
        "group_commit",
        "one_fsync_per_entry",
        "FileStorage: 64 entries in one append / one append each",
    ),
    (
        "manifest_reference",
        "plus_manifest_parse_validate",
        "serde_yaml_untyped_value",
        "manifest parse+validate / serde_yaml untyped",
    ),
    (
        "scheduler_decide_10",
        "plus_scheduler",
        "plain_pass_floor",
        "scheduler decision / single pass floor, 10 workers",
    ),
    (
        "scheduler_decide_10",
        "plus_scheduler_pick",
        "plain_pass_floor",
        "scheduler pick (no explanation) / single pass floor, 10 workers",
    ),
    (
        "scheduler_decide_1000",
        "plus_scheduler",
        "plain_pass_floor",
        "scheduler decision / single pass floor, 1,000 workers",
    ),
    (
        "scheduler_decide_10000",
        "plus_scheduler",
        "plain_pass_floor",
        "scheduler decision / single pass floor, 10,000 workers",
    ),
    (
        "rollout_100000_hosts_parallelism_1000",
        "plus_rollout_noop_executor",
        "baseline_spawn_noop_tasks",
        "rollout engine / no-op tasks, 100k hosts",
    ),
    (
        "rollout_100000_hosts_parallelism_1000",
        "plus_rollout_noop_executor_reading_events",
        "baseline_spawn_noop_tasks",
        "same, with the event stream read",
    ),
    (
        "rollout_100000_hosts_parallelism_1000",
        "plus_rollout_yielding_executor",
        "baseline_spawn_yielding_tasks",
        "yielding steps (6 per host) / yielding tasks (1 per host)",
    ),
    (
        "deps_order_100000_apps",
        "plus_rollout_order",
        "petgraph_toposort",
        "dependency order / petgraph toposort, 100k apps",
    ),
    (
        "deps_order_100000_apps",
        "plus_rollout_waves",
        "petgraph_toposort",
        "waves / petgraph toposort, 100k apps",
    ),
    ("mux_64B_c1", "plus_mux", "yamux_stream_per_request", "mux / yamux, 64 B, concurrency 1"),
    ("mux_64B_c64", "plus_mux", "yamux_stream_per_request", "mux / yamux, 64 B, concurrency 64"),
    (
        "mux_64B_c1024",
        "plus_mux",
        "yamux_stream_per_request",
        "mux / yamux, 64 B, concurrency 1024",
    ),
    ("mux_1024B_c64", "plus_mux", "yamux_stream_per_request", "mux / yamux, 1 KiB, concurrency 64"),
    (
        "mux_64B_c1",
        "plus_mux",
        "plain_tcp_pipelined",
        "mux / plain TCP ping-pong, 64 B, concurrency 1",
    ),
    (
        "mux_64B_c64",
        "plus_mux",
        "plain_tcp_pipelined",
        "mux / plain TCP pipelined, 64 B, concurrency 64",
    ),
    (
        "mux_1024B_c64",
        "plus_mux",
        "plain_tcp_pipelined",
        "mux / plain TCP pipelined, 1 KiB, concurrency 64",
    ),
    ("mux_1048576B_c1", "plus_mux", "plain_tcp_pipelined", "mux / plain TCP ping-pong, 1 MiB body"),
    (
        "mux_cpu_64B_c64",
        "plus_mux",
        "plain_tcp_pipelined",
        "mux / plain TCP pipelined, CPU time, 64 B, concurrency 64",
    ),
    (
        "mux_cpu_1024B_c64",
        "plus_mux",
        "plain_tcp_pipelined",
        "mux / plain TCP pipelined, CPU time, 1 KiB, concurrency 64",
    ),
    (
        "quorum_driver_writes_c1",
        "plus_quorum",
        "openraft_memstore",
        "quorum writes / openraft, 1 client",
    ),
    (
        "quorum_driver_writes_c64",
        "plus_quorum",
        "openraft_memstore",
        "quorum writes / openraft, 64 clients",
    ),
    (
        "quorum_driver_writes_c256",
        "plus_quorum",
        "openraft_memstore",
        "quorum writes / openraft, 256 clients",
    ),
    (
        "quorum_driver_reads_c1",
        "plus_quorum",
        "openraft_memstore",
        "quorum linearizable reads / openraft, 1 client",
    ),
    (
        "quorum_driver_reads_c64",
        "plus_quorum",
        "openraft_memstore",
        "quorum linearizable reads / openraft, 64 clients",
    ),
    (
        "quorum_driver_reads_c256",
        "plus_quorum",
        "openraft_memstore",
        "quorum linearizable reads / openraft, 256 clients",
    ),
    (
        "mux_tls_64B_c64",
        "plus_mux_mutual_tls",
        "plus_mux_plain_tcp",
        "mux over mutual TLS / over plain TCP, 64 B, concurrency 64",
    ),
    (
        "mux_tls_1024B_c64",
        "plus_mux_mutual_tls",
        "plus_mux_plain_tcp",
        "mux over mutual TLS / over plain TCP, 1 KiB, concurrency 64",
    ),
    (
        "quorum_mux_writes_c64",
        "plus_quorum_over_mux",
        "plus_quorum_in_process",
        "quorum writes over plus-mux TCP / in-process, 64 clients",
    ),
];

/// Absolute figures with no in-process baseline.
const SINGLES: &[(&str, &str, &str)] = &[
    (
        "scheduler_simulate_50000_jobs",
        "plus_scheduler",
        "50,000-job simulation (talk 000's Go harness: 40.2 s)",
    ),
    ("quorum_3_nodes_in_process", "write_unbatched", "quorum write, 3 nodes in one thread"),
    ("quorum_3_nodes_in_process", "write_batched_1000", "quorum 1,000 batched writes"),
    ("quorum_3_nodes_in_process", "linearizable_read", "quorum linearizable read"),
    ("quorum_3_nodes_in_process", "local_get", "quorum local_get"),
];

fn mean_ns(root: &Path, group: &str, function: &str) -> Option<f64> {
    let path = root.join(group).join(function).join("new/estimates.json");
    let text = std::fs::read_to_string(path).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn human(ns: f64) -> String {
    match ns {
        n if n >= 1e9 => format!("{:.2} s", n / 1e9),
        n if n >= 1e6 => format!("{:.2} ms", n / 1e6),
        n if n >= 1e3 => format!("{:.2} µs", n / 1e3),
        n => format!("{n:.1} ns"),
    }
}

/// Prints the ratio of every comparison the benches measured (run `cargo bench -p benches`
/// first).
#[derive(Debug, Parser)]
#[command(name = "bench_report")]
struct Args {
    /// A Markdown table, as in BENCHMARKS.md.
    #[arg(long)]
    markdown: bool,
    /// Criterion's results (default: `criterion` in the target directory).
    #[arg(long, value_name = "DIR")]
    criterion: Option<PathBuf>,
}

fn main() -> ExitCode {
    let Args { markdown, criterion } = Args::parse();
    let root = criterion.unwrap_or_else(|| {
        std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"), PathBuf::from)
            .join("criterion")
    });
    if !root.is_dir() {
        eprintln!(
            "error: no criterion results in {}; run `cargo bench -p benches` first",
            root.display()
        );
        return ExitCode::FAILURE;
    }
    let mut missing = Vec::new();
    if markdown {
        println!("| comparison | ours | baseline | ratio |\n|---|---:|---:|---:|");
    } else {
        println!("{:<62} {:>11} {:>11} {:>7}", "comparison", "ours", "baseline", "ratio");
    }
    for (group, ours, base, what) in PAIRS {
        match (mean_ns(&root, group, ours), mean_ns(&root, group, base)) {
            (Some(o), Some(b)) => {
                if markdown {
                    println!("| {what} | {} | {} | {:.2}x |", human(o), human(b), o / b);
                } else {
                    println!("{what:<62} {:>11} {:>11} {:>6.2}x", human(o), human(b), o / b);
                }
            }
            _ => missing.push(format!("{group}/{ours} vs {base}")),
        }
    }
    for (group, ours, what) in SINGLES {
        match mean_ns(&root, group, ours) {
            Some(o) if markdown => println!("| {what} | {} | - | - |", human(o)),
            Some(o) => println!("{what:<62} {:>11} {:>11} {:>7}", human(o), "-", "-"),
            None => missing.push(format!("{group}/{ours}")),
        }
    }
    for m in &missing {
        eprintln!("missing: {m}");
    }
    ExitCode::SUCCESS
}
