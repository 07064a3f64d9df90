//! The release core driven in simulated time with random executor outcomes, delays and operator
//! commands, checking the engine's invariants on every step; some runs crash once (the release
//! saved, put through JSON, every running step dropped) and go on from the restored state under
//! the same invariants. Some releases roll themselves back when they brake: their rollback's
//! steps deploy the previous version, only on hosts the release installed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version, seeded_rng};
use plus_rollout::analysis::{Check, Condition, Verdict};
use plus_rollout::{
    Action, AvailabilityFloor, BatchLabel, BrakePolicy, BrakeView, Command, ConsecutiveFailures,
    EventKind, FailureRate, GroupHost, HostState, JobId, Mode, OnFailure, Outcome, Phase,
    PlanConfig, Release, ReleaseConfig, ReleaseJob, SavedRelease, Step, StepJob, StepOutcome, plan,
};
use proptest::prelude::*;
use rand::Rng;

/// Which of the crate's brake policies a scenario runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Policy {
    FailureRate,
    AvailabilityFloor,
    ConsecutiveFailures,
}

impl Policy {
    const ALL: [Policy; 3] =
        [Policy::FailureRate, Policy::AvailabilityFloor, Policy::ConsecutiveFailures];

    fn build(self) -> Arc<dyn BrakePolicy> {
        match self {
            Policy::FailureRate => Arc::new(FailureRate::default()),
            Policy::AvailabilityFloor => Arc::new(AvailabilityFloor),
            Policy::ConsecutiveFailures => {
                Arc::new(ConsecutiveFailures { limit: NonZeroUsize::new(3).unwrap() })
            }
        }
    }
}

/// The scenario's real policy, watched: the simulation checks every verdict the release got
/// against what it did next, and which policies ever braked.
#[derive(Debug)]
struct Watched {
    policy: Arc<dyn BrakePolicy>,
    /// The verdict of the latest check not yet matched with a batch start or a brake.
    last: Mutex<Option<Option<String>>>,
    braked: Mutex<usize>,
}

impl BrakePolicy for Watched {
    fn check(&self, view: &BrakeView<'_>) -> Option<String> {
        let verdict = self.policy.check(view);
        if verdict.is_some() {
            *self.braked.lock().unwrap() += 1;
        }
        *self.last.lock().unwrap() = Some(verdict.clone());
        verdict
    }
}

/// How a scenario ended, and whether its brake ever held.
struct Ending {
    outcome: Outcome,
    braked: bool,
    /// Rounds of the simulation loop it took (where a crash can be put).
    rounds: u32,
    crashed: bool,
    /// Analysis verdicts, and how many of them were not passes.
    verdicts: usize,
    not_passed: usize,
}

#[derive(Debug, Clone)]
struct Scenario {
    hosts: usize,
    bastion: usize,
    ratio: u32,
    parallelism: usize,
    stop_on_failure: bool,
    fail_percent: u32,
    manual: bool,
    policy: Policy,
    /// Random pauses and aborts from a person.
    chaos: bool,
    /// The release rolls back by itself when it brakes ([`OnFailure::RollBack`]).
    roll_back: bool,
    /// The release runs an analysis check before every batch after the first deployed, whose
    /// samples are random: mostly fine, now and then failing, missing or erring.
    analysis: bool,
    seed: u64,
    /// The round of the simulation at which the controller crashes, if it does.
    crash_at: Option<u32>,
}

impl Scenario {
    /// The scenario with its crash put `permille` of the way through its uninterrupted run.
    fn crashing_at(mut self, permille: u32) -> Self {
        self.crash_at = None;
        let rounds = run(&self).map_or(0, |ending| ending.rounds);
        self.crash_at = Some(rounds * permille / 1000);
        self
    }
}

fn scenario() -> impl Strategy<Value = Scenario> {
    (
        (1usize..60, 0usize..2, 10u32..=60, 1usize..8),
        (
            any::<bool>(),
            0u32..30,
            any::<bool>(),
            proptest::sample::select(Policy::ALL.to_vec()),
            any::<bool>(),
            any::<u64>(),
            proptest::option::of(0u32..1000),
            any::<bool>(),
            any::<bool>(),
        ),
    )
        .prop_map(
            |(
                (hosts, bastion, ratio, parallelism),
                (
                    stop_on_failure,
                    fail_percent,
                    manual,
                    policy,
                    chaos,
                    seed,
                    crash_at,
                    roll_back,
                    analysis,
                ),
            )| {
                let s = Scenario {
                    hosts,
                    bastion,
                    ratio,
                    parallelism,
                    stop_on_failure,
                    fail_percent,
                    manual,
                    policy,
                    chaos,
                    roll_back,
                    analysis,
                    seed,
                    crash_at: None,
                };
                match crash_at {
                    Some(permille) => s.crashing_at(permille),
                    None => s,
                }
            },
        )
}

/// Runs a scenario to the end and checks every invariant.
fn run(s: &Scenario) -> Result<Ending, TestCaseError> {
    let group: Vec<GroupHost> = (0..s.hosts)
        .map(|i| GroupHost::in_service(HostId::new(format!("h{i:03}")).unwrap()))
        .collect();
    let max_ratio = Ratio::from_percent(f64::from(s.ratio)).unwrap();
    let plan_config = PlanConfig {
        bastion: plus_rollout::Bastion::Count(s.bastion),
        max_ratio,
        ..PlanConfig::default()
    };
    let Ok(plan) = plan(&group, &plan_config) else {
        return Ok(Ending {
            outcome: Outcome::Aborted,
            braked: false,
            rounds: 0,
            crashed: false,
            verdicts: 0,
            not_passed: 0,
        });
    };
    let bastion: HashSet<HostId> = plan.bastion.iter().cloned().collect();
    let bastion_planned = !bastion.is_empty();
    let brake = Arc::new(Watched {
        policy: s.policy.build(),
        last: Mutex::new(None),
        braked: Mutex::new(0),
    });
    let config = || {
        let mut config = ReleaseConfig::new(Version::new("2.0").unwrap());
        config.parallelism = s.parallelism;
        config.stop_on_failure = s.stop_on_failure;
        config.mode = if s.manual {
            Mode::Manual
        } else {
            Mode::Automatic {
                wait: Duration::from_secs(5),
                later_wait: Some(Duration::from_secs(1)),
            }
        };
        config.step_timeout = Duration::from_secs(3);
        config.brake = Arc::clone(&brake) as Arc<dyn BrakePolicy>;
        if s.roll_back {
            config.on_failure = OnFailure::RollBack { to: Version::new(PREVIOUS).unwrap() };
        }
        if s.analysis {
            config.analysis = vec![Check {
                failure: Some(Condition::Above(0.1)),
                success: Some(Condition::AtMost(0.1)),
                count: 2,
                interval: Duration::from_millis(500),
                ..Check::new("error-rate", "errors")
            }];
        }
        config
    };
    let planned = plan.host_count();
    let mut rng = seeded_rng(s.seed);
    let mut now = Timestamp::ZERO;
    let mut release = Release::new(plan, config(), now).unwrap();
    // Hosts whose step was in flight at the crash: out of traffic as far as anyone knows,
    // until the restored release starts them again or they finish.
    let mut in_doubt: HashSet<u32> = HashSet::new();
    let mut crashed = false;
    let mut rounds = 0;

    // token -> (completion time, host, step, outcome); completions in time order.
    let mut inflight: BTreeMap<(Timestamp, u64), (u32, Step, StepOutcome)> = BTreeMap::new();
    let mut host_of_token: HashMap<u64, (Timestamp, u32)> = HashMap::new();
    let mut succeeded: HashSet<u32> = HashSet::new();
    let mut degraded_answers = 0usize;
    // The latest analysis verdict before each batch: passed or not.
    let mut verdicts: HashMap<usize, bool> = HashMap::new();
    let (mut verdict_count, mut not_passed) = (0, 0);
    // Hosts the release started installing: the only ones a rollback may touch.
    let mut installed: HashSet<HostId> = HashSet::new();
    let mut baked = false;
    let mut tripped = false;
    let mut commands = 0;
    for round in 0..100_000 {
        rounds = round;
        // Events first: they say which batch the following starts belong to.
        while let Some(event) = release.poll_event() {
            match event.kind {
                EventKind::BatchStarted { batch: BatchLabel::Batch(n), .. } => {
                    tripped = false;
                    // With analysis, a batch after the first thing deployed starts only on a
                    // pass (this simulation never continues past a brake).
                    if s.analysis && (n > 1 || bastion_planned) {
                        prop_assert_eq!(
                            verdicts.get(&n),
                            Some(&true),
                            "batch {} started without a pass",
                            n
                        );
                    }
                    // Every batch asked the brake first, and it said go (this simulation never
                    // continues past a brake).
                    let verdict = brake.last.lock().unwrap().take();
                    prop_assert_eq!(verdict, Some(None), "batch {} started unchecked or braked", n);
                }
                EventKind::Phase(Phase::Braked { reason }) => {
                    let verdict = brake.last.lock().unwrap().take();
                    // A bastion failure brakes without asking the policy; an analysis brakes
                    // after the policy said go.
                    if let Some(verdict) = verdict
                        && !reason.starts_with("analysis")
                    {
                        prop_assert_eq!(verdict, Some(reason));
                    }
                }
                EventKind::Analysis(record) => {
                    verdict_count += 1;
                    not_passed += usize::from(record.verdict != Verdict::Passed);
                    verdicts.insert(record.before_batch, record.verdict == Verdict::Passed);
                }
                EventKind::BatchStarted { .. } => tripped = false,
                EventKind::HostFinished { host, state } => {
                    let index = release_index(&host);
                    in_doubt.remove(&index);
                    match state {
                        HostState::Succeeded | HostState::AlreadyOnTarget => {
                            succeeded.insert(index);
                        }
                        HostState::Failed { .. } if s.stop_on_failure => tripped = true,
                        _ => {}
                    }
                }
                _ => {}
            }
        }
        if s.crash_at == Some(round) && !release.is_finished() {
            // The controller dies: its steps are gone, and so are the actions it had not yet
            // handed out; its saved state survives (in JSON).
            let saved = serde_json::to_string(&release.save()).unwrap();
            let saved: SavedRelease = serde_json::from_str(&saved).unwrap();
            prop_assert_eq!(&saved, &release.save(), "JSON round trip");
            // In doubt: what the saved state says was running. Events and actions not yet taken
            // from the old release are lost with it, so what it knew of finished hosts is
            // taken from its report.
            for (id, state) in release.report().hosts {
                match state {
                    HostState::Running(_) => drop(in_doubt.insert(release_index(&id))),
                    s if s.is_success() => drop(succeeded.insert(release_index(&id))),
                    _ => {}
                }
            }
            inflight.clear();
            host_of_token.clear();
            // Another controller picks it up later, on its own clock.
            now += Duration::from_millis(rng.random_range(0..5_000));
            release = Release::restore(saved, config(), now).unwrap();
            crashed = true;
        }
        while let Some(action) = release.poll_action() {
            match action {
                Action::Start {
                    id: JobId { slot: host, token },
                    job: ReleaseJob::Step(StepJob { host: id, step, version, .. }),
                } => {
                    let rolling_back = version.as_str() == PREVIOUS;
                    if rolling_back {
                        prop_assert!(s.roll_back, "a rollback nobody asked for");
                        // Only a host the release changed: one it installed, or whose state
                        // says it passed Install (after a takeover, a host in doubt found
                        // already on the target goes on as verified).
                        let state = release.report().hosts.into_iter().find(|(h, _)| h == &*id);
                        // Or one it marked down without installing (put back into traffic).
                        let past_install = |step: &Step| *step != Step::Precheck;
                        let changed = match &state {
                            Some((_, HostState::Succeeded | HostState::AwaitingBake)) => true,
                            Some((
                                _,
                                HostState::Failed { step, .. } | HostState::Cancelled { step },
                            )) => past_install(step),
                            _ => false,
                        };
                        prop_assert!(
                            installed.contains(&*id) || changed,
                            "the rollback touched {id}, which the release never changed: {state:?}"
                        );
                    } else if step == Step::Markdown {
                        installed.insert((*id).clone());
                    }
                    prop_assert!(
                        rolling_back || !succeeded.contains(&host),
                        "succeeded host {id} started {step} again"
                    );
                    // A host in doubt after a crash is examined even past a tripped stop.
                    let was_in_doubt = in_doubt.remove(&host);
                    if step == Step::Markup && bastion.contains(&*id) && !rolling_back {
                        prop_assert!(baked, "bastion {id} marked up before bake");
                    }
                    if step == Step::Precheck && !was_in_doubt && !rolling_back {
                        prop_assert!(!tripped, "host {id} started after stop_on_failure tripped");
                    }
                    // Past the 3 s step deadline some steps hang, unless this run has no faults.
                    let slowest = if s.fail_percent == 0 { 2_000 } else { 4_000 };
                    let delay = Duration::from_millis(rng.random_range(0..slowest));
                    let traffic = matches!(step, Step::Markdown | Step::Markup);
                    let outcome = if rng.random_range(0..100) < s.fail_percent {
                        StepOutcome::Failed("boom".into())
                    } else if traffic && s.chaos && rng.random_range(0..10) == 0 {
                        // The load balancer is degraded now and then: the step goes on
                        // without calling it.
                        degraded_answers += 1;
                        StepOutcome::Degraded("lb degraded".into())
                    } else if step == Step::Precheck && rng.random_range(0..10) == 0 {
                        StepOutcome::AlreadyOnTarget
                    } else {
                        StepOutcome::Done
                    };
                    inflight.insert((now + delay, token), (host, step, outcome));
                    host_of_token.insert(token, (now + delay, host));
                    // Hosts, not analysis samples (in a slot of their own).
                    let mut out: HashSet<u32> =
                        inflight.values().map(|(h, _, _)| *h).filter(|&h| h != u32::MAX).collect();
                    out.extend(&in_doubt);
                    prop_assert!(
                        out.len() <= s.parallelism,
                        "{} hosts running or in doubt, parallelism {}",
                        out.len(),
                        s.parallelism
                    );
                }
                Action::Start { id: JobId { slot, token }, job: ReleaseJob::Measure(_) } => {
                    prop_assert!(s.analysis, "a sample nobody asked for");
                    let value = match rng.random_range(0..20) {
                        0 => Ok(None),
                        1 => Err("provider down".to_owned()),
                        2 => Ok(Some(0.5)),
                        _ => Ok(Some(0.01)),
                    };
                    let delay = Duration::from_millis(rng.random_range(0..200));
                    inflight.insert(
                        (now + delay, token),
                        (slot, Step::Precheck, StepOutcome::Measured(value)),
                    );
                    host_of_token.insert(token, (now + delay, slot));
                }
                Action::Cancel(JobId { token, .. }) => {
                    if let Some((at, _)) = host_of_token.remove(&token) {
                        inflight.remove(&(at, token));
                    }
                }
                _ => prop_assert!(false, "an action this test does not know"),
            }
        }
        if release.is_finished() {
            break;
        }
        // A person acts now and then.
        let act = rng.random_range(0..100);
        // While it rolls back, a person acts on where the rollback is.
        let phase = release.rollback_phase().unwrap_or_else(|| release.phase());
        let command = match phase {
            Phase::AwaitingBake if act < 50 => Some(Command::Bake),
            Phase::AwaitingContinue { .. } if act < 50 => Some(Command::Continue),
            Phase::Braked { .. } if act < 30 && commands < 20 => Some(Command::Retry),
            Phase::Braked { .. } if act < 60 => Some(Command::Abort),
            _ if s.chaos && act == 99 => Some(Command::Pause),
            _ if act >= 95 && release.is_paused() => Some(Command::Resume),
            _ if s.chaos && act == 98 && rng.random_range(0..20) == 0 => Some(Command::Abort),
            _ => None,
        };
        if let Some(command) = command {
            commands += 1;
            if command == Command::Bake {
                baked = true;
            }
            let _ = release.handle_command(command, now);
            continue;
        }
        // Nothing to do but wait: for the next completion, deadline or wait's end.
        let next_completion = inflight.keys().next().map(|(at, _)| *at);
        let next_timeout = release.poll_timeout();
        let next = match (next_completion, next_timeout) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(t) => t,
                None => {
                    // Paused with nothing running, or waiting for a person: act.
                    if release.is_paused() {
                        let _ = release.handle_command(Command::Resume, now);
                    } else {
                        match release.rollback_phase().unwrap_or_else(|| release.phase()) {
                            Phase::AwaitingBake => {
                                baked = true;
                                let _ = release.handle_command(Command::Bake, now);
                            }
                            Phase::AwaitingContinue { .. } => {
                                let _ = release.handle_command(Command::Continue, now);
                            }
                            _ => {
                                let _ = release.handle_command(Command::Abort, now);
                            }
                        }
                    }
                    continue;
                }
            },
        };
        now = next.max(now);
        if next_completion == Some(next) {
            let (&(at, token), _) = inflight.iter().next().unwrap();
            let (host, _step, outcome) = inflight.remove(&(at, token)).unwrap();
            host_of_token.remove(&token);
            release.handle_step_result(host, token, outcome, now);
        } else {
            release.handle_timeout(now);
        }
    }
    prop_assert!(
        release.is_finished(),
        "release did not finish: {:?}, its rollback {:?}",
        release.phase(),
        release.report().rollback.map(|r| (r.phase, r.hosts))
    );
    // Drain the actions of the last step: an abort cancels what runs.
    while let Some(action) = release.poll_action() {
        if let Action::Cancel(JobId { token, .. }) = action
            && let Some((at, _)) = host_of_token.remove(&token)
        {
            inflight.remove(&(at, token));
        }
    }
    prop_assert!(inflight.is_empty(), "steps still running after the end: {}", inflight.len());
    let report = release.report();
    prop_assert_eq!(report.hosts.len(), planned);
    for (host, state) in report.hosts.iter().chain(report.rollback.iter().flat_map(|r| &r.hosts)) {
        prop_assert!(state.is_final(), "host {host} ended in {state:?}");
    }
    // Every call not made that the release took is recorded, and only traffic steps.
    let recorded = report.degraded.iter().chain(report.rollback.iter().flat_map(|r| &r.degraded));
    let recorded: Vec<_> = recorded.collect();
    prop_assert!(
        recorded.len() <= degraded_answers,
        "{} recorded, {} answered",
        recorded.len(),
        degraded_answers
    );
    prop_assert!(recorded.iter().all(|c| matches!(c.step, Step::Markdown | Step::Markup)));
    if let Outcome::RolledBack { hosts, failed, .. } = report.outcome.as_ref().unwrap() {
        let rollback = report.rollback.as_ref().expect("a rollback's report");
        prop_assert_eq!(hosts + failed, rollback.hosts.len());
    }
    prop_assert!(in_doubt.is_empty(), "hosts still in doubt at the end: {in_doubt:?}");
    let braked = *brake.braked.lock().unwrap() > 0;
    Ok(Ending {
        outcome: report.outcome.unwrap(),
        braked,
        rounds,
        crashed,
        verdicts: verdict_count,
        not_passed,
    })
}

/// Host ids are `hNNN`, and the release indexes hosts in plan order, which for these groups
/// (bastion first, then batches in group order) is the group order.
/// The version a rollback goes back to.
const PREVIOUS: &str = "1.0";

fn release_index(host: &HostId) -> u32 {
    host.as_str()[1..].parse().unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn invariants_hold_under_random_outcomes_and_commands(s in scenario()) {
        run(&s)?;
    }
}

#[test]
fn a_clean_release_succeeds() {
    let s = Scenario {
        hosts: 20,
        bastion: 1,
        ratio: 25,
        parallelism: 6,
        stop_on_failure: false,
        fail_percent: 0,
        manual: false,
        policy: Policy::FailureRate,
        chaos: false,
        roll_back: false,
        analysis: false,
        seed: 1,
        crash_at: None,
    };
    assert_eq!(run(&s).unwrap().outcome, Outcome::Succeeded);
}

/// A few fixed scenarios crash at every round of their run in turn, and still keep every
/// invariant.
#[test]
fn a_crash_at_any_point_of_fixed_scenarios_keeps_the_invariants() {
    let fixed = [
        (20, 1, 25, 6, false, 0, false),
        (12, 1, 50, 3, true, 15, true),
        (30, 0, 20, 4, false, 10, false),
    ];
    let mut cases = 0;
    for (hosts, bastion, ratio, parallelism, stop_on_failure, fail_percent, manual) in fixed {
        let mut s = Scenario {
            hosts,
            bastion,
            ratio,
            parallelism,
            stop_on_failure,
            fail_percent,
            manual,
            policy: Policy::FailureRate,
            chaos: false,
            roll_back: stop_on_failure,
            analysis: manual,
            seed: 5,
            crash_at: None,
        };
        let rounds = run(&s).unwrap().rounds;
        for crash_at in 0..=rounds {
            s.crash_at = Some(crash_at);
            run(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
            cases += 1;
        }
    }
    println!("{cases} crash points in {} fixed scenarios", fixed.len());
    assert!(cases > 100, "only {cases} crash points");
}

/// The simulation reaches every kind of ending, and every brake policy braked in it, so the
/// invariants above are checked on aborted, braked-then-failed and successful releases alike.
#[test]
fn simulation_reaches_every_outcome_and_every_policy_brakes() {
    let mut rng = seeded_rng(99);
    let mut seen = HashSet::new();
    let mut braked = HashSet::new();
    let mut crashes = 0;
    let (mut verdicts, mut not_passed) = (0, 0);
    for seed in 0..300 {
        let s = Scenario {
            hosts: rng.random_range(1..60),
            bastion: rng.random_range(0..2),
            ratio: rng.random_range(10..=60),
            parallelism: rng.random_range(1..8),
            stop_on_failure: rng.random(),
            fail_percent: rng.random_range(0..30),
            manual: rng.random(),
            policy: Policy::ALL[rng.random_range(0..Policy::ALL.len())],
            chaos: rng.random(),
            roll_back: rng.random(),
            analysis: rng.random(),
            seed,
            crash_at: None,
        };
        let s = if rng.random_bool(0.5) { s.crashing_at(rng.random_range(0..1000)) } else { s };
        let ending = run(&s).unwrap_or_else(|e| panic!("{s:?}: {e}"));
        crashes += usize::from(ending.crashed);
        verdicts += ending.verdicts;
        not_passed += ending.not_passed;
        seen.insert(std::mem::discriminant(&ending.outcome));
        if ending.braked {
            braked.insert(s.policy);
        }
    }
    assert_eq!(seen.len(), 4, "expected succeeded, failed, aborted and rolled-back releases");
    for policy in Policy::ALL {
        assert!(braked.contains(&policy), "{policy:?} never braked in the simulation");
    }
    assert!(crashes > 50, "only {crashes} runs crashed and were restored");
    println!("{verdicts} analysis verdicts, {not_passed} of them not passes");
    assert!(verdicts > 50 && not_passed > 5, "{verdicts} verdicts, {not_passed} not passed");
}
