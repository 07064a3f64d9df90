//! A release that rolls itself back (`OnFailure::RollBack`): after a failing analysis, a brake
//! on failures or a deadline that fails it, it puts back every host it changed and no other,
//! half of them at a time and never more than its largest batch, with steps that deploy the
//! previous version; an inconclusive analysis still waits for a person; the rollback survives
//! save and restore at any point.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};
use plus_rollout::analysis::{Check, Condition, Measurement};
use plus_rollout::{
    Action, Bastion, EventKind, FailureRate, GroupHost, HostState, JobId, Mode, OnFailure, Outcome,
    Phase, PlanConfig, Release, ReleaseConfig, ReleaseDeadlines, ReleaseJob, Step, StepOutcome,
    plan,
};
use proptest::prelude::*;

const PREVIOUS: &str = "1.0";

/// What the check measures, from what is deployed: `Some(n)` fails once batch `n` is.
#[derive(Clone, Copy)]
enum Metric {
    FailsAfterBatch(usize),
    NoData,
}

/// Answers every job at once, in the order asked.
struct Sim {
    release: Release,
    now: Timestamp,
    /// Forward hosts whose Verify fails (after Install: the host was changed).
    fail_verify: HashSet<String>,
    /// Forward hosts whose Markdown fails (before Install: not changed).
    fail_markdown: HashSet<String>,
    /// Forward hosts whose Precheck fails (never touched).
    fail_precheck: HashSet<String>,
    metric: Metric,
    forward: Vec<(String, Step)>,
    back: Vec<(String, Step)>,
    /// Rollback hosts out of traffic now (marked down, not yet marked up), and the most at once.
    out: BTreeSet<String>,
    most_out: usize,
    /// Hosts out of traffic at any moment, as the hosts see it: marked down by the release or
    /// its rollback and not yet back. How many were out when the rollback began, and the most
    /// at once from then on.
    down: BTreeSet<String>,
    down_when_rollback_began: Option<usize>,
    most_down_in_rollback: usize,
    events: Vec<EventKind>,
    answered: usize,
}

fn group(bastion: usize, batches: usize, per_batch: usize) -> Vec<GroupHost> {
    let bastion = (0..bastion).map(|n| format!("b0-{n}"));
    let rest = (1..=batches).flat_map(|b| (0..per_batch).map(move |n| format!("b{b}-{n}")));
    bastion.chain(rest).map(|name| GroupHost::in_service(HostId::new(name).unwrap())).collect()
}

fn error_rate() -> Check {
    Check {
        failure: Some(Condition::Above(0.1)),
        success: Some(Condition::AtMost(0.1)),
        count: 2,
        interval: Duration::from_secs(5),
        ..Check::new("error-rate", "errors")
    }
}

fn config(analysis: Vec<Check>) -> ReleaseConfig {
    ReleaseConfig {
        mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
        analysis,
        on_failure: OnFailure::RollBack { to: Version::new(PREVIOUS).unwrap() },
        ..ReleaseConfig::new(Version::new("2.0").unwrap())
    }
}

impl Sim {
    /// Three batches of four (no bastion), cap 4.
    fn new(config: ReleaseConfig, metric: Metric) -> Self {
        let plan_config = PlanConfig {
            bastion: Bastion::Count(0),
            max_ratio: Ratio::from_percent(34.0).unwrap(),
            ..PlanConfig::default()
        };
        let plan = plan(&group(0, 3, 4), &plan_config).unwrap();
        Self::of(Release::new(plan, config, Timestamp::ZERO).unwrap(), metric)
    }

    fn of(release: Release, metric: Metric) -> Self {
        Self {
            release,
            now: Timestamp::ZERO,
            fail_verify: HashSet::new(),
            fail_markdown: HashSet::new(),
            fail_precheck: HashSet::new(),
            metric,
            forward: Vec::new(),
            back: Vec::new(),
            out: BTreeSet::new(),
            most_out: 0,
            down: BTreeSet::new(),
            down_when_rollback_began: None,
            most_down_in_rollback: 0,
            events: Vec::new(),
            answered: 0,
        }
    }

    /// Answers at most `budget` jobs (all with `usize::MAX`); `false` when it ran out.
    fn answer(&mut self, budget: &mut usize) -> bool {
        while let Some(action) = self.release.poll_action() {
            let Action::Start { id: JobId { slot, token }, job } = action else { continue };
            if *budget == 0 {
                return false;
            }
            *budget -= 1;
            self.answered += 1;
            let outcome = match job {
                ReleaseJob::Step(job) => {
                    let host = job.host.to_string();
                    if job.version.as_str() == PREVIOUS {
                        self.down_when_rollback_began.get_or_insert(self.down.len());
                        self.back.push((host.clone(), job.step));
                        // A host never installed still runs the previous version.
                        let installed =
                            self.forward.iter().any(|(h, s)| *h == host && *s == Step::Install);
                        if job.step == Step::Precheck && !installed {
                            self.release.handle_step_result(
                                slot,
                                token,
                                StepOutcome::AlreadyOnTarget,
                                self.now,
                            );
                            continue;
                        }
                        match job.step {
                            Step::Markdown => {
                                self.out.insert(host.clone());
                                self.most_out = self.most_out.max(self.out.len());
                                self.down.insert(host);
                                self.most_down_in_rollback =
                                    self.most_down_in_rollback.max(self.down.len());
                            }
                            Step::Markup => {
                                self.out.remove(&host);
                                self.down.remove(&host);
                            }
                            _ => {}
                        }
                        StepOutcome::Done
                    } else {
                        self.forward.push((host.clone(), job.step));
                        let fails = match job.step {
                            Step::Verify => self.fail_verify.contains(&host),
                            Step::Markdown => self.fail_markdown.contains(&host),
                            Step::Precheck => self.fail_precheck.contains(&host),
                            _ => false,
                        };
                        if fails {
                            // A Markdown that failed may have taken the host out all the same.
                            if job.step == Step::Markdown {
                                self.down.insert(host);
                            }
                            StepOutcome::Failed("boom".into())
                        } else {
                            match job.step {
                                Step::Markdown => {
                                    self.down.insert(host);
                                }
                                Step::Markup => {
                                    self.down.remove(&host);
                                }
                                _ => {}
                            }
                            StepOutcome::Done
                        }
                    }
                }
                ReleaseJob::Measure(_) => StepOutcome::Measured(self.measure()),
            };
            self.release.handle_step_result(slot, token, outcome, self.now);
        }
        while let Some(event) = self.release.poll_event() {
            self.events.push(event.kind);
        }
        true
    }

    /// Runs until the release finishes, brakes, or has nothing left to wait for; at most
    /// `budget` jobs answered. `false` when the budget ran out first.
    fn settle_within(&mut self, mut budget: usize) -> bool {
        loop {
            if !self.answer(&mut budget) {
                return false;
            }
            if self.release.is_finished() || matches!(self.release.phase(), Phase::Braked { .. }) {
                return true;
            }
            let Some(at) = self.release.poll_timeout() else { return true };
            self.now = self.now.max(at);
            self.release.handle_timeout(self.now);
        }
    }

    /// The error rate: bad once the batch it names has put a host back into traffic.
    fn measure(&self) -> Measurement {
        match self.metric {
            Metric::NoData => Ok(None),
            Metric::FailsAfterBatch(batch) => {
                let prefix = format!("b{batch}-");
                let deployed = self
                    .forward
                    .iter()
                    .any(|(h, step)| h.starts_with(&prefix) && *step == Step::Markup);
                Ok(Some(if deployed { 0.5 } else { 0.01 }))
            }
        }
    }

    fn settle(&mut self) {
        assert!(self.settle_within(usize::MAX));
    }

    fn hosts(steps: &[(String, Step)]) -> BTreeSet<String> {
        steps.iter().map(|(h, _)| h.clone()).collect()
    }
}

/// Fine before batch 2, failing before batch 3.
const FAILS_BEFORE_BATCH_THREE: Metric = Metric::FailsAfterBatch(2);

/// A brake at 10% failed hosts (2 of 12 trip it).
fn braking(mut config: ReleaseConfig) -> ReleaseConfig {
    config.brake = Arc::new(FailureRate { threshold: Some(Ratio::from_percent(10.0).unwrap()) });
    config
}

fn outcome(sim: &Sim) -> Outcome {
    let Phase::Finished(outcome) = sim.release.phase() else {
        panic!("not finished: {:?}", sim.release.phase())
    };
    outcome
}

#[test]
fn a_failing_analysis_rolls_back_what_was_deployed_and_nothing_else() {
    let mut sim = Sim::new(config(vec![error_rate()]), FAILS_BEFORE_BATCH_THREE);
    sim.settle();
    let Outcome::RolledBack { reason, hosts, failed } = outcome(&sim) else {
        panic!("{:?}", outcome(&sim))
    };
    assert!(reason.contains("analysis before batch 3: check error-rate failed"), "{reason}");
    assert_eq!((hosts, failed), (8, 0));
    assert!(!Sim::hosts(&sim.forward).iter().any(|h| h.starts_with("b3")), "batch 3 never ran");
    let expected: BTreeSet<String> =
        (1..=2).flat_map(|b| (0..4).map(move |n| format!("b{b}-{n}"))).collect();
    assert_eq!(Sim::hosts(&sim.back), expected, "batches 1 and 2 went back, nothing else");
    // Every step of every rolled-back host deployed the previous version, in order.
    for host in &expected {
        let steps: Vec<Step> =
            sim.back.iter().filter(|(h, _)| h == host).map(|(_, s)| *s).collect();
        assert_eq!(steps, Step::ALL, "{host}");
    }
    assert!(sim.most_out <= 4, "{} out of traffic at once, over the cap of 4", sim.most_out);
    let report = sim.release.report();
    let rollback = report.rollback.expect("the report says what rolled back");
    assert!(rollback.batches.iter().all(|b| b.hosts <= 4), "{:?}", rollback.batches);
    assert_eq!(rollback.count(HostState::is_success), 8);
    assert!(sim.events.iter().any(|e| matches!(e, EventKind::RollbackStarted { hosts: 8, .. })));
    assert!(sim.events.iter().any(|e| matches!(e, EventKind::Rollback(_))));
}

#[test]
fn an_inconclusive_analysis_still_waits_for_a_person() {
    let mut sim = Sim::new(config(vec![error_rate()]), Metric::NoData);
    sim.settle();
    let Phase::Braked { reason } = sim.release.phase() else { panic!("{:?}", sim.release.phase()) };
    assert!(reason.contains("inconclusive"), "{reason}");
    assert!(sim.back.is_empty(), "nothing rolled back on no data");
}

#[test]
fn a_brake_on_failures_rolls_back_the_changed_hosts_the_failed_ones_included() {
    let mut sim = Sim::new(braking(config(Vec::new())), Metric::NoData);
    sim.fail_verify = ["b1-0", "b1-1"].map(String::from).into();
    sim.settle();
    let Outcome::RolledBack { hosts, .. } = outcome(&sim) else { panic!("{:?}", outcome(&sim)) };
    // The two that failed at Verify had been installed: they go back too.
    assert_eq!(hosts, 4);
    assert_eq!(Sim::hosts(&sim.back), (0..4).map(|n| format!("b1-{n}")).collect());
}

#[test]
fn hosts_marked_down_and_never_installed_are_only_put_back_into_traffic() {
    let mut sim = Sim::new(braking(config(Vec::new())), Metric::NoData);
    sim.fail_markdown = (0..4).map(|n| format!("b1-{n}")).collect();
    sim.settle();
    let Outcome::RolledBack { hosts, .. } = outcome(&sim) else { panic!("{:?}", outcome(&sim)) };
    assert_eq!(hosts, 4);
    for n in 0..4 {
        let host = format!("b1-{n}");
        let steps: Vec<Step> =
            sim.back.iter().filter(|(h, _)| *h == host).map(|(_, s)| *s).collect();
        assert_eq!(
            steps,
            [Step::Precheck, Step::Markup],
            "{host}: found on the previous version, marked up"
        );
    }
}

#[test]
fn a_brake_before_any_host_was_marked_down_has_nothing_to_roll_back() {
    let mut config = braking(config(Vec::new()));
    config.stop_on_failure = true;
    let mut sim = Sim::new(config, Metric::NoData);
    sim.fail_precheck = (0..4).map(|n| format!("b1-{n}")).collect();
    sim.settle();
    let Outcome::Failed(reason) = outcome(&sim) else { panic!("{:?}", outcome(&sim)) };
    assert!(reason.contains("nothing to roll back"), "{reason}");
    assert!(sim.back.is_empty());
}

#[test]
fn a_deadline_that_fails_the_release_rolls_it_back() {
    let config = ReleaseConfig {
        mode: Mode::Manual,
        deadlines: ReleaseDeadlines {
            release: Some(Duration::from_secs(60)),
            on_expiry: plus_rollout::OnDeadline::Fail,
            ..ReleaseDeadlines::default()
        },
        ..config(Vec::new())
    };
    let mut sim = Sim::new(config, Metric::NoData);
    // Manual: batch 1 runs on a continue, then batch 2 waits for one nobody gives, until the
    // release's deadline fails it.
    sim.release.handle_command(plus_rollout::Command::Continue, sim.now).unwrap();
    sim.settle();
    assert!(sim.now >= Timestamp::from_millis(60_000), "{:?}", sim.now);
    assert!(sim.events.iter().any(|e| matches!(e, EventKind::DeadlinePassed { .. })));
    let Outcome::RolledBack { reason, hosts, .. } = outcome(&sim) else {
        panic!("{:?}", outcome(&sim))
    };
    assert!(reason.contains("deadline"), "{reason}");
    assert_eq!(hosts, 4);
}

/// The run of the first test, cut after `cut` answered jobs, saved, restored in a new
/// controller with the same settings, and run to its end.
fn cut_and_restored(cut: usize) -> Sim {
    let mut sim = Sim::new(config(vec![error_rate()]), FAILS_BEFORE_BATCH_THREE);
    let finished = sim.settle_within(cut);
    let saved = sim.release.save();
    let release = Release::restore(saved, config(vec![error_rate()]), sim.now).unwrap();
    let mut restored = Sim::of(release, FAILS_BEFORE_BATCH_THREE);
    restored.now = sim.now;
    restored.forward = sim.forward;
    restored.back = sim.back;
    if !finished {
        restored.settle();
    }
    restored
}

#[test]
fn a_rollback_cut_anywhere_by_a_takeover_ends_the_same() {
    let mut whole = Sim::new(config(vec![error_rate()]), FAILS_BEFORE_BATCH_THREE);
    whole.settle();
    let expected = outcome(&whole);
    let rolled_back = |sim: &Sim| {
        let report = sim.release.report().rollback.expect("a rollback");
        report
            .hosts
            .iter()
            .filter(|(_, s)| s.is_success())
            .map(|(h, _)| h.to_string())
            .collect::<BTreeSet<_>>()
    };
    for cut in 0..=whole.answered {
        let restored = cut_and_restored(cut);
        assert_eq!(outcome(&restored), expected, "cut after {cut} jobs");
        assert_eq!(rolled_back(&restored), rolled_back(&whole), "cut after {cut} jobs");
        assert!(
            !Sim::hosts(&restored.forward).iter().any(|h| h.starts_with("b3")),
            "cut after {cut}: batch 3 never ran"
        );
    }
}

proptest! {
    /// Whatever fails where: the rollback puts back exactly the hosts the release changed
    /// (ran Install or later), each once, never more than the cap out of traffic at once.
    #[test]
    fn a_rollback_touches_only_changed_hosts_and_holds_the_cap(
        fail_verify in proptest::collection::btree_set(0usize..12, 0..6),
        fail_markdown in proptest::collection::btree_set(0usize..12, 0..6),
    ) {
        let name = |i: usize| format!("b{}-{}", i / 4 + 1, i % 4);
        let mut sim = Sim::new(braking(config(Vec::new())), Metric::NoData);
        sim.fail_verify = fail_verify.iter().map(|&i| name(i)).collect();
        sim.fail_markdown = fail_markdown.iter().map(|&i| name(i)).collect();
        sim.settle();
        // Installed, or at least marked down.
        let installed: BTreeSet<String> = sim
            .forward
            .iter()
            .filter(|(_, step)| *step == Step::Markdown)
            .map(|(h, _)| h.clone())
            .collect();
        let rolled_back = matches!(sim.release.phase(), Phase::Finished(Outcome::RolledBack { .. }));
        if rolled_back {
            prop_assert_eq!(Sim::hosts(&sim.back), installed.clone());
            let prechecks = sim.back.iter().filter(|(_, s)| *s == Step::Precheck).count();
            prop_assert_eq!(prechecks, installed.len(), "each host once");
        } else {
            prop_assert!(sim.back.is_empty(), "{:?}", sim.release.phase());
        }
        // The rollback adds no more than the cap to what the release had left out of
        // traffic (with a failure-rate brake the release itself may leave more out than the
        // cap: failed hosts stay out while the next batch starts; the availability floor is
        // the brake that prevents that).
        if let Some(began) = sim.down_when_rollback_began {
            prop_assert!(
                sim.most_down_in_rollback <= began.max(4),
                "{} out at once in the rollback, {} out when it began",
                sim.most_down_in_rollback,
                began
            );
        }
    }
}
