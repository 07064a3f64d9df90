//! Release scenarios, step by step, in simulated time.
#![allow(clippy::needless_pass_by_value)] // test helpers take configs by value for terser call sites

use std::sync::Arc;
use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};
use plus_rollout::{
    Action, AvailabilityFloor, BatchLabel, Command, GroupHost, HostState, JobId, Mode, Outcome,
    Phase, PlanConfig, Release, ReleaseConfig, ReleaseJob, Step, StepJob, StepOutcome, plan,
};

type Script = Box<dyn FnMut(&str, Step) -> StepOutcome>;

struct Harness {
    release: Release,
    now: Timestamp,
    script: Script,
    /// Every step started, in order.
    started: Vec<(String, Step)>,
    cancelled: usize,
    /// Steps held back (not answered) to test cancellation and timeouts.
    hold: Option<Step>,
    held: Vec<(u32, u64)>,
}

impl Harness {
    fn new(hosts: usize, plan_config: PlanConfig, config: ReleaseConfig, script: Script) -> Self {
        let group: Vec<GroupHost> = (0..hosts)
            .map(|i| GroupHost::in_service(HostId::new(format!("host-{i:02}")).unwrap()))
            .collect();
        let plan = plan(&group, &plan_config).unwrap();
        Self {
            release: Release::new(plan, config, Timestamp::ZERO).unwrap(),
            now: Timestamp::ZERO,
            script,
            started: Vec::new(),
            cancelled: 0,
            hold: None,
            held: Vec::new(),
        }
    }

    /// Answers every started step at once with the script, until nothing more starts.
    fn settle(&mut self) {
        while let Some(action) = self.release.poll_action() {
            match action {
                Action::Start {
                    id: JobId { slot: host, token },
                    job: ReleaseJob::Step(StepJob { host: id, step, .. }),
                } => {
                    self.started.push((id.to_string(), step));
                    if self.hold == Some(step) {
                        self.held.push((host, token));
                        continue;
                    }
                    let outcome = (self.script)(id.as_str(), step);
                    self.release.handle_step_result(host, token, outcome, self.now);
                }
                Action::Cancel(_) => self.cancelled += 1,
                _ => panic!("an action this test does not know"),
            }
        }
        while self.release.poll_event().is_some() {}
    }

    fn command(&mut self, command: Command) {
        self.release.handle_command(command, self.now).unwrap_or_else(|e| panic!("{e}"));
        self.settle();
    }

    /// Advances to the next deadline and settles.
    fn tick(&mut self) {
        if let Some(at) = self.release.poll_timeout() {
            self.now = at;
            self.release.handle_timeout(self.now);
            self.settle();
        }
    }

    fn state(&self, host: &str) -> HostState {
        self.release.report().hosts.into_iter().find(|(h, _)| h.as_str() == host).unwrap().1
    }
}

fn ok() -> Script {
    Box::new(|_, _| StepOutcome::Done)
}

fn config() -> ReleaseConfig {
    let mut c = ReleaseConfig::new(Version::new("2.0").unwrap());
    c.mode =
        Mode::Automatic { wait: Duration::from_secs(10), later_wait: Some(Duration::from_secs(2)) };
    c
}

#[test]
fn bastion_waits_for_bake_then_batches_run_with_waits() {
    let mut h = Harness::new(20, PlanConfig::default(), config(), ok());
    h.settle();
    assert_eq!(h.release.phase(), Phase::AwaitingBake);
    assert_eq!(h.state("host-00"), HostState::AwaitingBake);
    assert!(!h.started.iter().any(|(_, s)| *s == Step::Markup), "no markup before bake");
    assert!(h.release.handle_command(Command::Continue, h.now).is_err());
    h.command(Command::Bake);
    assert_eq!(h.state("host-00"), HostState::Succeeded);
    // Batch 1 started at once after bake; then waits of 10 s, 2 s, 2 s.
    assert_eq!(
        h.release.phase(),
        Phase::Waiting { next: 2, until: Timestamp::from_millis(10_000) }
    );
    h.tick();
    assert_eq!(
        h.release.phase(),
        Phase::Waiting { next: 3, until: Timestamp::from_millis(12_000) }
    );
    h.tick();
    h.tick();
    assert_eq!(h.release.phase(), Phase::Finished(Outcome::Succeeded));
    assert_eq!(h.now, Timestamp::from_millis(14_000));
    let report = h.release.report();
    let labels: Vec<BatchLabel> = report.batches.iter().map(|b| b.batch).collect();
    assert_eq!(
        labels,
        [
            BatchLabel::Bastion,
            BatchLabel::Bake,
            BatchLabel::Batch(1),
            BatchLabel::Batch(2),
            BatchLabel::Batch(3),
            BatchLabel::Batch(4)
        ]
    );
    assert_eq!(report.count(HostState::is_success), 20);
    assert_eq!(h.started.len(), 20 * 6, "six steps per host");
}

#[test]
fn manual_mode_needs_continue_for_every_batch() {
    let c = ReleaseConfig { mode: Mode::Manual, ..config() };
    let mut h = Harness::new(
        4,
        PlanConfig {
            bastion: plus_rollout::Bastion::Count(0),
            max_ratio: Ratio::new(0.5).unwrap(),
            ..PlanConfig::default()
        },
        c,
        ok(),
    );
    h.settle();
    assert_eq!(h.release.phase(), Phase::AwaitingContinue { next: 1 });
    h.command(Command::Continue);
    assert_eq!(h.release.phase(), Phase::AwaitingContinue { next: 2 });
    h.command(Command::Continue);
    assert_eq!(h.release.phase(), Phase::Finished(Outcome::Succeeded));
}

#[test]
fn failure_rate_brakes_and_retry_reruns_only_failed_hosts() {
    let mut fail_once = std::collections::HashSet::new();
    let script: Script = Box::new(move |host, step| {
        if step == Step::Install
            && ["host-01", "host-02"].contains(&host)
            && fail_once.insert(host.to_owned())
        {
            StepOutcome::Failed("disk full".into())
        } else {
            StepOutcome::Done
        }
    });
    // 8 hosts, no bastion, 25%: batches of 2; two failures = 25% = brake.
    let plan_config =
        PlanConfig { bastion: plus_rollout::Bastion::Count(0), ..PlanConfig::default() };
    let mut h = Harness::new(8, plan_config, config(), script);
    h.settle();
    for _ in 0..5 {
        if matches!(h.release.phase(), Phase::Braked { .. }) {
            break;
        }
        h.tick();
    }
    assert_eq!(h.release.report().batches.len(), 2, "braked before batch 3");
    let Phase::Braked { reason } = h.release.phase() else { panic!("{:?}", h.release.phase()) };
    assert_eq!(reason, "2 of 8 hosts failed (25.0%), at or above the 25% threshold");
    assert!(matches!(h.state("host-01"), HostState::Failed { step: Step::Install, .. }));
    let before = h.started.len();
    h.command(Command::Retry);
    let retried: std::collections::BTreeSet<&str> =
        h.started[before..].iter().map(|(host, _)| host.as_str()).collect();
    assert_eq!(retried.into_iter().collect::<Vec<_>>(), ["host-01", "host-02"]);
    while !h.release.is_finished() {
        h.tick();
    }
    assert_eq!(h.release.phase(), Phase::Finished(Outcome::Succeeded));
}

#[test]
fn continue_anyway_passes_the_brake_once() {
    let script: Script = Box::new(|host, step| {
        if host == "host-00" && step == Step::Verify {
            StepOutcome::Failed("unhealthy".into())
        } else {
            StepOutcome::Done
        }
    });
    let plan_config = PlanConfig {
        bastion: plus_rollout::Bastion::Count(0),
        max_ratio: Ratio::new(0.5).unwrap(),
        ..PlanConfig::default()
    };
    let c = ReleaseConfig { brake: Arc::new(AvailabilityFloor), ..config() };
    let mut h = Harness::new(4, plan_config, c, script);
    h.settle();
    h.tick();
    assert!(matches!(h.release.phase(), Phase::Braked { .. }), "{:?}", h.release.phase());
    h.command(Command::Continue);
    assert_eq!(h.release.phase(), Phase::Finished(Outcome::Failed("1 of 4 hosts failed".into())));
}

#[test]
fn stop_on_failure_cancels_hosts_not_started() {
    let script: Script = Box::new(|host, step| {
        if host == "host-00" && step == Step::Download {
            StepOutcome::Failed("404".into())
        } else {
            StepOutcome::Done
        }
    });
    let c = ReleaseConfig { stop_on_failure: true, parallelism: 1, ..config() };
    let plan_config = PlanConfig {
        bastion: plus_rollout::Bastion::Count(0),
        max_ratio: Ratio::ONE,
        ..PlanConfig::default()
    };
    let mut h = Harness::new(5, plan_config, c, script);
    h.settle();
    assert_eq!(h.state("host-01"), HostState::NotStarted);
    assert_eq!(h.state("host-04"), HostState::NotStarted);
    assert!(!h.started.iter().any(|(host, _)| host != "host-00"));
}

#[test]
fn abort_cancels_running_steps_and_reports_every_host() {
    let mut h = Harness::new(
        8,
        PlanConfig { bastion: plus_rollout::Bastion::Count(0), ..PlanConfig::default() },
        config(),
        ok(),
    );
    h.hold = Some(Step::Install);
    h.settle();
    assert_eq!(h.held.len(), 2);
    h.command(Command::Abort);
    assert_eq!(h.cancelled, 2);
    assert_eq!(h.release.phase(), Phase::Finished(Outcome::Aborted));
    assert_eq!(h.state("host-00"), HostState::Cancelled { step: Step::Install });
    assert_eq!(h.state("host-07"), HostState::NotStarted);
    // Late results of cancelled steps are ignored, and abort is idempotent.
    let (host, token) = h.held[0];
    h.release.handle_step_result(host, token, StepOutcome::Done, h.now);
    assert_eq!(h.state("host-00"), HostState::Cancelled { step: Step::Install });
    h.command(Command::Abort);
    assert!(h.release.report().hosts.iter().all(|(_, s)| s.is_final()));
}

#[test]
fn step_deadline_fails_the_host() {
    let c = ReleaseConfig { verify_timeout: Duration::from_secs(60), ..config() };
    let mut h = Harness::new(
        1,
        PlanConfig { bastion: plus_rollout::Bastion::Count(0), ..PlanConfig::default() },
        c,
        ok(),
    );
    h.hold = Some(Step::Verify);
    h.settle();
    assert_eq!(h.release.poll_timeout(), Some(Timestamp::from_millis(60_000)));
    h.tick();
    assert_eq!(h.cancelled, 1);
    assert_eq!(
        h.state("host-00"),
        HostState::Failed { step: Step::Verify, reason: "Verify timed out after 60s".into() }
    );
}

#[test]
fn already_on_target_is_skipped_and_ignore_verify_passes_a_failed_verify() {
    let script: Script = Box::new(|host, step| match (host, step) {
        ("host-00", Step::Precheck) => StepOutcome::AlreadyOnTarget,
        ("host-01", Step::Verify) => StepOutcome::Failed("health check 500".into()),
        _ => StepOutcome::Done,
    });
    let c = ReleaseConfig { ignore_verify: true, ..config() };
    let plan_config = PlanConfig {
        bastion: plus_rollout::Bastion::Count(0),
        max_ratio: Ratio::ONE,
        ..PlanConfig::default()
    };
    let mut h = Harness::new(2, plan_config, c, script);
    h.settle();
    assert_eq!(h.state("host-00"), HostState::AlreadyOnTarget);
    assert_eq!(h.state("host-01"), HostState::Succeeded);
    assert_eq!(h.started.iter().filter(|(host, _)| host == "host-00").count(), 1);
}

#[test]
fn operator_fail_cannot_be_retried_and_pause_holds_batches() {
    let plan_config =
        PlanConfig { bastion: plus_rollout::Bastion::Count(0), ..PlanConfig::default() };
    let mut h = Harness::new(8, plan_config, config(), ok());
    h.command(Command::Pause);
    h.settle();
    assert!(h.release.is_paused());
    // Batch 1 started before the pause took effect; no wait timer runs while paused.
    h.tick();
    assert_eq!(h.release.poll_timeout(), None);
    assert!(matches!(h.release.phase(), Phase::Waiting { next: 2, .. }));
    h.command(Command::Resume);
    assert!(matches!(h.release.phase(), Phase::Waiting { next: 2, .. }));
    h.command(Command::Fail);
    assert_eq!(
        h.release.phase(),
        Phase::Finished(Outcome::Failed("marked failed by an operator".into()))
    );
    assert!(h.release.handle_command(Command::Retry, h.now).is_err());
}

/// A configuration that cannot work is refused, not quietly repaired (parallelism 0 was once
/// raised to 1).
#[test]
fn zero_parallelism_or_timeouts_are_refused() {
    use plus_rollout::ConfigError;
    let group: Vec<GroupHost> =
        (0..4).map(|i| GroupHost::in_service(HostId::new(format!("h{i}")).unwrap())).collect();
    let plan = plan(&group, &PlanConfig::default()).unwrap();
    let zero = ReleaseConfig { parallelism: 0, ..config() };
    assert_eq!(
        Release::new(plan.clone(), zero, Timestamp::ZERO).unwrap_err(),
        ConfigError::Zero("parallelism")
    );
    let instant = ReleaseConfig { step_timeout: Duration::ZERO, ..config() };
    assert_eq!(
        Release::new(plan, instant, Timestamp::ZERO).unwrap_err().to_string(),
        "`step_timeout` must be greater than zero"
    );
    let deploy = plus_rollout::DeployConfig { concurrency: 0, ..Default::default() };
    assert_eq!(deploy.validate(), Err(ConfigError::Zero("concurrency")));
}
