//! Analysis between batches, in the release core: checks sampled through `ReleaseJob::Measure`
//! jobs, a batch started only after a passing verdict, a failing or inconclusive one braking
//! the release with the check's reason, dry-run checks never deciding, and verdicts kept across
//! save and restore.

use std::time::Duration;

use plus_core::{HostId, Timestamp, Version};
use plus_rollout::analysis::{Check, Condition, Measurement, Verdict};
use plus_rollout::{
    Action, Command, EventKind, GroupHost, JobId, Mode, Phase, PlanConfig, Release, ReleaseConfig,
    ReleaseJob, StepOutcome, plan,
};
use proptest::prelude::*;

/// A check's n-th sample, by the check's name and the sample's number (from 1).
type Samples = Box<dyn FnMut(&str, usize) -> Measurement>;

/// Answers every job at once: steps succeed, each check's samples come from `samples`.
struct Run {
    release: Release,
    now: Timestamp,
    /// The measurement for a check's n-th sample (by check name and sample number).
    samples: Samples,
    taken: std::collections::HashMap<String, usize>,
    /// The batch each started host belongs to (hosts are named `b<batch>-<n>`).
    started_batches: Vec<usize>,
    verdicts: Vec<(usize, Verdict)>,
}

fn hosts(batches: usize, per_batch: usize) -> Vec<GroupHost> {
    (1..=batches)
        .flat_map(|b| (0..per_batch).map(move |n| format!("b{b}-{n}")))
        .map(|name| GroupHost::in_service(HostId::new(name).unwrap()))
        .collect()
}

fn error_rate(dry_run: bool) -> Check {
    Check {
        failure: Some(Condition::Above(0.1)),
        success: Some(Condition::AtMost(0.1)),
        count: 2,
        interval: Duration::from_secs(5),
        dry_run,
        ..Check::new(if dry_run { "latency" } else { "error-rate" }, "errors")
    }
}

impl Run {
    fn new(checks: Vec<Check>, samples: Samples) -> Self {
        // Three batches of four, no bastion; no waits, so only the analysis holds a batch.
        let plan_config = PlanConfig {
            bastion: plus_rollout::Bastion::Count(0),
            max_ratio: plus_core::Ratio::from_percent(34.0).unwrap(),
            ..PlanConfig::default()
        };
        let plan = plan(&hosts(3, 4), &plan_config).unwrap();
        let config = ReleaseConfig {
            mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
            analysis: checks,
            ..ReleaseConfig::new(Version::new("2.0").unwrap())
        };
        Self {
            release: Release::new(plan, config, Timestamp::ZERO).unwrap(),
            now: Timestamp::ZERO,
            samples,
            taken: Default::default(),
            started_batches: Vec::new(),
            verdicts: Vec::new(),
        }
    }

    /// Answers every job asked so far, and takes the events.
    fn answer(&mut self) {
        while let Some(action) = self.release.poll_action() {
            let Action::Start { id: JobId { slot, token }, job } = action else { continue };
            let outcome = match job {
                ReleaseJob::Step(step) => {
                    let batch = step.host.as_str()[1..2].parse().unwrap();
                    if !self.started_batches.contains(&batch) {
                        self.started_batches.push(batch);
                    }
                    StepOutcome::Done
                }
                ReleaseJob::Measure(measure) => {
                    let n = self.taken.entry(measure.check.clone()).or_default();
                    *n += 1;
                    StepOutcome::Measured((self.samples)(&measure.check, *n))
                }
            };
            self.release.handle_step_result(slot, token, outcome, self.now);
        }
        while let Some(event) = self.release.poll_event() {
            if let EventKind::Analysis(record) = event.kind {
                self.verdicts.push((record.before_batch, record.verdict));
            }
        }
    }

    /// Answers, then moves to the next deadline; `false` once there is none.
    fn settle_once(&mut self) -> bool {
        self.answer();
        let Some(at) = self.release.poll_timeout() else { return false };
        self.now = self.now.max(at);
        self.release.handle_timeout(self.now);
        true
    }

    /// Runs until the release finishes, brakes, or has nothing left to wait for.
    fn settle(&mut self) {
        loop {
            self.answer();
            if self.release.is_finished() || matches!(self.release.phase(), Phase::Braked { .. }) {
                return;
            }
            if !self.settle_once() {
                return;
            }
        }
    }
}

#[test]
fn passing_checks_let_every_batch_start_after_them() {
    let mut run = Run::new(vec![error_rate(false)], Box::new(|_, _| Ok(Some(0.01))));
    run.settle();
    assert_eq!(run.release.phase(), Phase::Finished(plus_rollout::Outcome::Succeeded));
    assert_eq!(run.started_batches, [1, 2, 3]);
    assert_eq!(run.verdicts, [(2, Verdict::Passed), (3, Verdict::Passed)]);
    // Two samples five seconds apart before each of batches 2 and 3.
    assert!(run.now >= Timestamp::from_millis(10_000), "{:?}", run.now);
}

#[test]
fn a_failing_check_brakes_before_the_next_batch_and_names_itself() {
    let mut run = Run::new(
        vec![error_rate(false)],
        // Fine before batch 2; before batch 3, the second sample is bad.
        Box::new(|_, n| Ok(Some(if n == 4 { 0.5 } else { 0.01 }))),
    );
    run.settle();
    let Phase::Braked { reason } = run.release.phase() else { panic!("{:?}", run.release.phase()) };
    assert!(reason.contains("analysis before batch 3: check error-rate failed"), "{reason}");
    assert_eq!(run.started_batches, [1, 2], "batch 3 never started");
    // A person may still continue: the held batch starts, past the analysis.
    run.release.handle_command(Command::Continue, run.now).unwrap();
    run.settle();
    assert_eq!(run.started_batches, [1, 2, 3]);
}

#[test]
fn no_data_pauses_for_a_person_and_never_fails_the_release() {
    let mut run = Run::new(vec![error_rate(false)], Box::new(|_, _| Ok(None)));
    run.settle();
    let Phase::Braked { reason } = run.release.phase() else { panic!("{:?}", run.release.phase()) };
    assert!(reason.contains("inconclusive"), "{reason}");
    assert_eq!(run.started_batches, [1]);
}

#[test]
fn an_analysis_cut_by_a_takeover_runs_again_and_earlier_verdicts_are_kept() {
    let mut run = Run::new(vec![error_rate(false)], Box::new(|_, _| Ok(Some(0.01))));
    // Batch 1, batch 2's analysis and batch 2, then batch 3's analysis under way.
    for _ in 0..1_000 {
        if matches!(run.release.phase(), Phase::Analyzing { next: 3 }) || !run.settle_once() {
            break;
        }
    }
    assert_eq!(run.release.phase(), Phase::Analyzing { next: 3 });
    let saved = run.release.save();
    let restored = Release::restore(saved, run.release.config().clone(), run.now).unwrap();
    run.release = restored;
    run.settle();
    assert_eq!(run.release.phase(), Phase::Finished(plus_rollout::Outcome::Succeeded));
    let kept = run.release.report();
    assert_eq!(kept.outcome, Some(plus_rollout::Outcome::Succeeded));
    let before: Vec<usize> = kept.analyses.iter().map(|a| a.before_batch).collect();
    assert_eq!(before, [2, 3], "batch 2's verdict, from before the takeover, is kept");
    assert!(run.verdicts.contains(&(3, Verdict::Passed)), "{:?}", run.verdicts);
}

fn measurement() -> impl Strategy<Value = Measurement> {
    prop_oneof![
        4 => (0.0f64..0.2).prop_map(|v| Ok(Some(v))),
        1 => Just(Ok(None)),
        1 => Just(Err("provider down".to_owned())),
    ]
}

proptest! {
    /// Whatever the samples: a batch never starts after a verdict other than a pass (until a
    /// person continues), and a dry-run check beside the real one changes nothing.
    #[test]
    fn no_batch_after_a_failing_verdict_and_dry_run_never_decides(
        real in proptest::collection::vec(measurement(), 20),
        dry in proptest::collection::vec(measurement(), 20),
        dry_first in any::<bool>(),
    ) {
        let feed = |real: Vec<Measurement>, dry: Vec<Measurement>| -> Samples {
            Box::new(move |check, n| {
                let values = if check == "latency" { &dry } else { &real };
                values.get(n - 1).cloned().unwrap_or(Ok(Some(0.0)))
            })
        };
        let mut alone = Run::new(vec![error_rate(false)], feed(real.clone(), dry.clone()));
        alone.settle();
        let mut checks = vec![error_rate(false), error_rate(true)];
        if dry_first {
            checks.reverse();
        }
        let mut with_dry = Run::new(checks, feed(real, dry));
        with_dry.settle();
        for run in [&alone, &with_dry] {
            // Every batch that started after the first was preceded by a passing verdict.
            for &batch in run.started_batches.iter().skip(1) {
                let verdict = run.verdicts.iter().rev().find(|(b, _)| *b == batch).map(|(_, v)| v);
                prop_assert_eq!(verdict, Some(&Verdict::Passed), "batch {}", batch);
            }
        }
        prop_assert_eq!(&alone.started_batches, &with_dry.started_batches);
        prop_assert_eq!(&alone.verdicts, &with_dry.verdicts);
        prop_assert_eq!(alone.release.phase(), with_dry.release.phase());
    }
}
