//! `platform --analysis`: every release judges itself before each batch after the bastion; the
//! `api` group's error rate jumps after its second batch, so its release brakes before the
//! third, naming the check, rolls back the hosts it changed, and its dependents are skipped.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::example;

#[test]
fn a_failing_check_brakes_the_release_before_its_next_batch_and_rolls_it_back() {
    let output =
        Command::new(example("platform")).args(["--analysis", "--no-progress"]).output().unwrap();
    let out = String::from_utf8_lossy(&output.stdout);
    assert!(!output.status.success(), "not every application deployed: {out}");
    let api = out.lines().find(|l| l.starts_with("api ")).unwrap_or_default();
    assert!(api.contains("FAILED: release braked: analysis before batch 3"), "{out}");
    assert!(api.contains("11/20"), "the bastion and two batches deployed: {api}");
    assert!(out.contains("skipped (requires api)"), "{out}");
    // What the release changed goes back: the bastion and two batches, half at a time.
    assert!(out.contains("rollback  api: 11 hosts back on 2026.10.0"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains("braked=1") && last.contains("quorum=identical"), "{last}");
}
