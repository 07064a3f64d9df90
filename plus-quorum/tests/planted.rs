//! The simulation catches real bugs: each planted fault must make some seed fail.
//!
//! Run with `RUSTFLAGS="--cfg plus_planted_bugs" CARGO_TARGET_DIR=target/planted cargo test
//! -p plus-quorum --test planted -- --nocapture`
//! to see how many seeds each took.
#![cfg(plus_planted_bugs)]

mod sim;

use plus_quorum::PlantedBugs;
use sim::{SimConfig, run_seed};

/// Which check must report the bug: a consistency bug must be seen by the linearizability
/// check itself, not only by the cheaper checks that often notice it first.
#[derive(Clone, Copy)]
enum By {
    AnyCheck,
    Linearizability,
}

impl By {
    fn matches(self, violation: &str) -> bool {
        match self {
            By::AnyCheck => true,
            By::Linearizability => violation.contains("is not linearizable"),
        }
    }
}

/// Runs seeds until one fails as `by` requires; returns how many it took.
fn seeds_to_catch(bugs: PlantedBugs, by: By, nodes: usize, budget: u64) -> Option<(u64, String)> {
    for seed in 0..budget {
        let mut cfg = SimConfig::new(nodes, seed);
        cfg.bugs = bugs;
        let outcome = run_seed(cfg);
        if let Some(found) = outcome.violations.iter().find(|v| by.matches(v)) {
            return Some((seed + 1, found.clone()));
        }
    }
    None
}

fn check_by(name: &str, bugs: PlantedBugs, by: By) {
    let caught = seeds_to_catch(bugs, by, 3, 1000).or_else(|| seeds_to_catch(bugs, by, 5, 500));
    match caught {
        Some((seeds, violation)) => {
            println!("planted bug `{name}` caught after {seeds} seed(s): {violation}");
        }
        None => panic!("planted bug `{name}` was not caught in 1500 seeds"),
    }
}

fn check(name: &str, bugs: PlantedBugs) {
    check_by(name, bugs, By::AnyCheck);
}

#[test]
fn wiped_node_voting_at_once_is_caught() {
    check_by(
        "wiped node votes at once",
        PlantedBugs { wiped_node_votes: true, ..PlantedBugs::default() },
        By::Linearizability,
    );
}

#[test]
fn reads_without_quorum_are_caught() {
    check_by(
        "leader reads without quorum",
        PlantedBugs { read_without_quorum: true, ..PlantedBugs::default() },
        By::Linearizability,
    );
}

#[test]
fn commit_without_majority_is_caught() {
    check_by(
        "commit without majority",
        PlantedBugs { commit_without_majority: true, ..PlantedBugs::default() },
        By::Linearizability,
    );
}

#[test]
fn a_watch_history_missing_the_predecessors_entries_is_caught() {
    check(
        "watch drops the entries a new leader applies for its predecessor",
        PlantedBugs { watch_drops_predecessor_entries: true, ..PlantedBugs::default() },
    );
}

#[test]
fn an_else_branch_applying_part_of_then_is_caught() {
    check(
        "transaction else applies part of then",
        PlantedBugs { txn_else_applies_part_of_then: true, ..PlantedBugs::default() },
    );
}

#[test]
fn a_replica_expiring_leases_on_its_own_clock_is_caught() {
    check(
        "replica expires leases on its own clock",
        PlantedBugs { replica_expires_leases: true, ..PlantedBugs::default() },
    );
}

#[test]
fn two_membership_changes_in_flight_are_caught() {
    check(
        "two membership changes in flight",
        PlantedBugs { two_changes_in_flight: true, ..PlantedBugs::default() },
    );
}

#[test]
fn a_learner_counted_toward_commit_is_caught() {
    check(
        "a learner's acknowledgement counted toward commit",
        PlantedBugs { learner_ack_counts: true, ..PlantedBugs::default() },
    );
}

#[test]
fn a_configuration_used_before_it_is_in_the_log_is_caught() {
    check(
        "a joining node uses its start members as its configuration",
        PlantedBugs { joiner_uses_start_members: true, ..PlantedBugs::default() },
    );
}
