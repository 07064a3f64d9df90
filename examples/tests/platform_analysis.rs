//! `platform --analysis`: every release judges itself before each batch after the bastion; the
//! `api` group's error rate jumps after its second batch, so its release brakes before the
//! third, naming the check, rolls back the hosts it changed, and its dependents are skipped;
//! and `--degrade lb`: releases go on without a degraded load balancer, each call counted.
#![cfg(unix)]

mod common;

use std::process::Command;

use common::example;

/// Runs the platform with `args` to its end: whether it succeeded, its stdout, its stderr.
fn platform(args: &[&str]) -> (bool, String, String) {
    let output = Command::new(example("platform")).args(args).output().unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (output.status.success(), text(&output.stdout), text(&output.stderr))
}

#[test]
fn a_failing_check_brakes_the_release_before_its_next_batch_and_rolls_it_back() {
    let (ok, out, _) = platform(&["--analysis", "--no-progress"]);
    assert!(!ok, "not every application deployed: {out}");
    let api = out.lines().find(|l| l.starts_with("api ")).unwrap_or_default();
    assert!(api.contains("FAILED: release braked: analysis before batch 3"), "{out}");
    assert!(
        api.contains(" 0/20 "),
        "the bastion and two batches deployed, then rolled back: {api}"
    );
    assert!(out.contains("skipped (requires api)"), "{out}");
    // What the release changed goes back: the bastion and two batches, half at a time.
    assert!(out.contains("rollback  api: 11 hosts back on 2026.10.0"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains("braked=1") && last.contains("quorum=identical"), "{last}");
    assert!(last.contains(" hosts=80 "), "rolled-back hosts do not count as deployed: {last}");
}

/// `platform --degrade lb`: with the load balancer switched to degraded, every release goes on
/// without calling it, and each call not made (a Markdown and a Markup per host) is counted.
#[test]
fn a_degraded_load_balancer_is_not_called_and_every_call_not_made_is_counted() {
    let (ok, out, _) = platform(&["--degrade", "lb", "--no-progress"]);
    assert!(ok, "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("apps=6 deployed=6 failed=0"), "{last}");
    assert!(last.ends_with(" degraded_calls=240"), "two calls for each of 120 hosts: {last}");
}

/// `platform --degrade metadata`: the CMDB fails once every group was looked up; every release
/// plans from the cached servers (each lookup counted as stale), and all deploy.
#[test]
fn an_outage_of_the_cmdb_is_survived_from_the_cache() {
    let (ok, out, _) = platform(&["--degrade", "lb,metadata", "--no-progress"]);
    assert!(ok, "{out}");
    assert!(out.contains("degrade   metadata: the CMDB is down"), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.starts_with("apps=6 deployed=6 failed=0"), "{last}");
    assert!(last.contains(" hosts=120 "), "{last}");
    assert!(
        last.ends_with(" degraded_calls=240 metadata_stale=6"),
        "one stale lookup per release: {last}"
    );
}

/// `platform --release-deadline-ms`: releases that cannot end in time fail on their deadline
/// and, with --analysis, roll back what they changed and put back what they marked down, never
/// taking more hosts of a group out of traffic than its cap (the observer beside the hosts
/// says so on stderr otherwise).
#[test]
fn a_release_past_its_deadline_fails_and_rolls_back_within_the_cap() {
    for _ in 0..3 {
        let (ok, out, err) = platform(&[
            "--release-deadline-ms",
            "300",
            "--latency-ms",
            "30",
            "--analysis",
            "--no-progress",
        ]);
        assert!(!ok, "{out}");
        assert!(out.contains("FAILED: release failed: the release's deadline of 30"), "{out}");
        assert!(out.contains("rollback  "), "{out}");
        assert!(!err.contains("out of traffic at once"), "{err}");
    }
}
