//! Deterministic simulation of 3- and 5-node clusters under faults, with every history checked
//! for linearizability. `PLUS_SIM_SEEDS=N` runs more seeds, `PLUS_SIM_SEED=S` replays one,
//! `PLUS_SIM_HISTORY_DIR=DIR` writes every history (format in `tests/sim/mod.rs`), and
//! `PLUS_SIM_DEBUG=1` prints each node's role, indexes and configuration as they change, with
//! every crash, restart, membership change and lock step, for replaying a failing seed.

mod sim;

use std::collections::{BTreeMap, BTreeSet};

use sim::{NOT_SIMULATED, SIMULATED_KINDS, SimConfig, run_seed, seeds};

/// Every fault a sweep must have injected at least once.
const FAULT_KINDS: [&str; 28] = [
    "restart_wiped",
    "restart_kept",
    "freeze_leader",
    "crash_leader",
    "crash_follower",
    "partition_healed",
    "partition_isolating_leader",
    "partition_split",
    "partition_one_way",
    "message_dropped",
    "message_duplicated",
    "client_request_lost",
    "client_answer_lost",
    "client_timeout",
    "watch_reconnected",
    "watch_cancelled",
    "watch_compacted",
    "watch_node_behind",
    "lock_acquired",
    "lock_busy",
    "past_read_checked",
    "membership_add_learner",
    "membership_promote",
    "membership_remove",
    "membership_remove_leader",
    "membership_transfer_leadership",
    "replacement_started",
    "membership_change_without_waiting",
];

fn run_all(nodes: usize, default_seeds: u64) {
    let mut failures = Vec::new();
    let mut writes = 0;
    let mut completed = BTreeSet::new();
    let (mut expired, mut kept_alive) = (0, 0);
    let mut faults: BTreeMap<&str, u64> = BTreeMap::new();
    let (mut operations, mut under_faults) = (Vec::new(), Vec::new());
    let (mut watch_sessions, mut watch_events, mut lock_holds) = (0, 0, 0);
    for seed in seeds(default_seeds) {
        let outcome = run_seed(SimConfig::new(nodes, seed));
        writes += outcome.acknowledged_writes;
        operations.push(outcome.operations);
        under_faults.push(outcome.operations_under_faults);
        watch_sessions += outcome.watch_sessions;
        lock_holds += outcome.lock_holds;
        watch_events += outcome.watch_events;
        for (kind, n) in &outcome.faults {
            *faults.entry(kind).or_default() += n;
        }
        completed.extend(outcome.completed_kinds);
        expired += outcome.leases_expired;
        kept_alive += outcome.leases_kept_alive;
        if !outcome.violations.is_empty() {
            failures.push(format!(
                "seed {seed}: {}\n  replay: PLUS_SIM_SEED={seed} cargo test -p plus-quorum --test simulation nodes_{nodes} -- --nocapture",
                outcome.violations.join("; ")
            ));
        }
    }
    let spread = |v: &mut Vec<usize>| {
        v.sort_unstable();
        format!("min {} median {} max {}", v[0], v[v.len() / 2], v[v.len() - 1])
    };
    println!(
        "{nodes} nodes, {} seeds: operations per seed {}, of which under faults {}; {watch_sessions} watch sessions received {watch_events} events, all checked; {lock_holds} holds of the lock; faults {faults:?}",
        operations.len(),
        spread(&mut operations),
        spread(&mut under_faults),
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(writes > 0, "the simulation acknowledged no write at all");
    // Coverage is a property of a sweep, not of one replayed seed.
    if seeds(default_seeds).len() < 10 {
        return;
    }
    assert!(expired > 0 && kept_alive > 0, "leases expired {expired}, kept alive {kept_alive}");
    assert!(watch_events > 0, "no watch session received an event");
    assert!(lock_holds > 0, "no client ever held the lock");
    let missing: Vec<&str> =
        FAULT_KINDS.iter().copied().filter(|k| !faults.contains_key(k)).collect();
    assert!(missing.is_empty(), "faults that never happened: {missing:?}");
    let never: Vec<&str> =
        SIMULATED_KINDS.iter().copied().filter(|k| !completed.contains(k)).collect();
    assert!(never.is_empty(), "operation kinds that never completed: {never:?}");
    let unplanned: Vec<&str> = completed
        .iter()
        .copied()
        .filter(|k| !SIMULATED_KINDS.contains(k) || NOT_SIMULATED.iter().any(|(n, _)| n == k))
        .collect();
    assert!(unplanned.is_empty(), "kinds ran that the lists do not name: {unplanned:?}");
}

#[test]
fn nodes_3() {
    run_all(3, 24);
}

#[test]
fn nodes_5() {
    run_all(5, 24);
}

#[test]
fn same_seed_same_run() {
    let a = run_seed(SimConfig::new(3, 7));
    let b = run_seed(SimConfig::new(3, 7));
    assert_eq!(a.trace_hash, b.trace_hash);
    assert_eq!(a.history_jsonl, b.history_jsonl);
    let c = run_seed(SimConfig::new(3, 8));
    assert_ne!(a.trace_hash, c.trace_hash);
}
