//! Degrade in the release core: a traffic step that did not call its (degraded) system counts
//! as done, and the call not made is always an event and in the report, also after a
//! takeover; a step that cannot go without its work fails instead.

use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};
use plus_rollout::{
    Action, Bastion, EventKind, GroupHost, JobId, Mode, Outcome, Phase, PlanConfig, Release,
    ReleaseConfig, ReleaseJob, Step, StepOutcome, plan,
};
use proptest::prelude::*;

fn release() -> Release {
    let group: Vec<GroupHost> =
        (0..8).map(|i| GroupHost::in_service(HostId::new(format!("h{i}")).unwrap())).collect();
    let plan_config = PlanConfig {
        bastion: Bastion::Count(0),
        max_ratio: Ratio::from_percent(50.0).unwrap(),
        ..PlanConfig::default()
    };
    let config = ReleaseConfig {
        mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
        ..ReleaseConfig::new(Version::new("2.0").unwrap())
    };
    Release::new(plan(&group, &plan_config).unwrap(), config, Timestamp::ZERO).unwrap()
}

/// Runs `release` to its end, answering each step with `answer(host, step)`; after `cut`
/// answers the release is saved and restored (a takeover). The events seen.
fn run(
    mut release: Release,
    answer: &dyn Fn(&str, Step) -> StepOutcome,
    cut: Option<usize>,
) -> (Release, Vec<EventKind>) {
    let mut events = Vec::new();
    let mut answered = 0;
    let config = release.config().clone();
    let mut now = Timestamp::ZERO;
    for _ in 0..10_000 {
        while let Some(event) = release.poll_event() {
            events.push(event.kind);
        }
        if release.is_finished() {
            break;
        }
        if cut == Some(answered) {
            release = Release::restore(release.save(), config.clone(), now).unwrap();
            answered += 1;
            continue;
        }
        match release.poll_action() {
            Some(Action::Start { id: JobId { slot, token }, job: ReleaseJob::Step(job) }) => {
                let outcome = answer(job.host.as_str(), job.step);
                answered += 1;
                release.handle_step_result(slot, token, outcome, now);
            }
            Some(_) => {}
            None => {
                let Some(at) = release.poll_timeout() else { break };
                now = now.max(at);
                release.handle_timeout(now);
            }
        }
    }
    (release, events)
}

fn lb_down(_: &str, step: Step) -> StepOutcome {
    match step {
        Step::Markdown | Step::Markup => StepOutcome::Degraded("load balancer degraded".into()),
        _ => StepOutcome::Done,
    }
}

#[test]
fn a_release_goes_on_without_a_degraded_load_balancer_and_records_every_call_not_made() {
    let (release, events) = run(release(), &lb_down, None);
    assert_eq!(release.phase(), Phase::Finished(Outcome::Succeeded));
    let report = release.report();
    assert_eq!(report.degraded.len(), 16, "a Markdown and a Markup for each of 8 hosts");
    assert!(report.degraded.iter().all(|c| c.reason == "load balancer degraded"));
    let degraded_events = events.iter().filter(|e| matches!(e, EventKind::Degraded(_))).count();
    assert_eq!(degraded_events, 16);
}

#[test]
fn a_step_that_cannot_go_without_its_work_fails_instead() {
    let answer = |_: &str, step: Step| match step {
        Step::Install => StepOutcome::Degraded("package store degraded".into()),
        _ => StepOutcome::Done,
    };
    let (release, _) = run(release(), &answer, None);
    let report = release.report();
    assert!(report.degraded.is_empty());
    let (_, state) = &report.hosts[0];
    assert!(
        matches!(state, plus_rollout::HostState::Failed { step: Step::Install, reason } if reason.contains("only Markdown and Markup")),
        "{state:?}"
    );
}

proptest! {
    /// Whichever traffic steps are degraded, and wherever a takeover cuts the run: every call
    /// not made is in the report once, and the release succeeds.
    #[test]
    fn a_degraded_call_is_always_recorded(
        degraded in proptest::collection::btree_set((0usize..8, any::<bool>()), 0..16),
        cut in proptest::option::of(0usize..60),
    ) {
        let answer = |host: &str, step: Step| {
            let index: usize = host[1..].parse().unwrap();
            let markup = step == Step::Markup;
            if matches!(step, Step::Markdown | Step::Markup) && degraded.contains(&(index, markup)) {
                StepOutcome::Degraded(format!("{host} {step}"))
            } else {
                StepOutcome::Done
            }
        };
        let (release, _) = run(release(), &answer, cut);
        prop_assert_eq!(release.phase(), Phase::Finished(Outcome::Succeeded));
        let mut recorded: Vec<String> = release.report().degraded.iter().map(|c| c.reason.clone()).collect();
        recorded.sort();
        recorded.dedup();
        let mut expected: Vec<String> = degraded
            .iter()
            .map(|(i, markup)| format!("h{i} {}", if *markup { Step::Markup } else { Step::Markdown }))
            .collect();
        expected.sort();
        // A takeover may repeat a traffic step of a host in doubt: each call appears at least
        // once, and nothing that was not degraded does.
        prop_assert_eq!(recorded, expected);
    }
}
