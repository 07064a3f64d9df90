//! Saving a release and restoring it in another controller: what continues where, step by step.

use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};
use plus_rollout::{
    Action, Command, EventKind, GroupHost, HostState, JobId, Mode, Phase, PlanConfig, Release,
    ReleaseConfig, ReleaseJob, RestoreError, SavedRelease, Step, StepJob, StepOutcome, plan,
};

fn release(hosts: usize, bastion: usize, mode: Mode) -> Release {
    let group: Vec<GroupHost> =
        (0..hosts).map(|i| GroupHost::in_service(HostId::new(format!("h{i}")).unwrap())).collect();
    let plan_config = PlanConfig {
        bastion: plus_rollout::Bastion::Count(bastion),
        max_ratio: Ratio::from_percent(50.0).unwrap(),
        ..PlanConfig::default()
    };
    let plan = plan(&group, &plan_config).unwrap();
    Release::new(plan, config(mode), Timestamp::ZERO).unwrap()
}

fn config(mode: Mode) -> ReleaseConfig {
    ReleaseConfig { mode, parallelism: 2, ..ReleaseConfig::new(Version::new("2.0").unwrap()) }
}

/// The steps the release asks to start now: `(slot, token, host, step)`.
fn starts(release: &mut Release) -> Vec<(u32, u64, String, Step)> {
    std::iter::from_fn(|| release.poll_action())
        .filter_map(|action| match action {
            Action::Start {
                id: JobId { slot, token },
                job: ReleaseJob::Step(StepJob { host, step, .. }),
            } => Some((slot, token, host.to_string(), step)),
            _ => None,
        })
        .collect()
}

/// Through JSON, as a store would keep it.
fn round_trip(saved: &SavedRelease) -> SavedRelease {
    serde_json::from_str(&serde_json::to_string(saved).unwrap()).unwrap()
}

#[test]
fn a_host_in_doubt_is_examined_first_and_one_on_target_only_goes_back_into_traffic() {
    let mut r = release(4, 0, Mode::Automatic { wait: Duration::ZERO, later_wait: None });
    let now = Timestamp::ZERO;
    // Two hosts run: one is at Install when the controller dies, the other has not answered
    // its Precheck.
    let first = starts(&mut r);
    assert_eq!(first.len(), 2);
    let (slot, token, ref host, _) = first[0];
    r.handle_step_result(slot, token, StepOutcome::Done, now);
    let next = starts(&mut r);
    assert_eq!(next[0].3, Step::Markdown);
    r.handle_step_result(next[0].0, next[0].1, StepOutcome::Done, now);
    assert_eq!(starts(&mut r)[0].3, Step::Download);
    let saved = round_trip(&r.save());
    drop(r);

    let later = Timestamp::from_millis(60_000);
    let mut r = Release::restore(saved, config(Mode::Manual), later).unwrap();
    let events: Vec<EventKind> = std::iter::from_fn(|| r.poll_event()).map(|e| e.kind).collect();
    assert!(events.contains(&EventKind::Restored { in_doubt: 2 }), "{events:?}");
    // Both hosts in doubt start again from Precheck, and nothing else starts (parallelism 2).
    let again = starts(&mut r);
    let hosts: Vec<(&str, Step)> = again.iter().map(|(_, _, h, s)| (h.as_str(), *s)).collect();
    assert_eq!(hosts, [(host.as_str(), Step::Precheck), (first[1].2.as_str(), Step::Precheck)]);
    // The first already runs the new version: it is only put back into traffic.
    r.handle_step_result(again[0].0, again[0].1, StepOutcome::AlreadyOnTarget, later);
    let after = starts(&mut r);
    assert_eq!((after[0].2.as_str(), after[0].3), (host.as_str(), Step::Markup));
    r.handle_step_result(after[0].0, after[0].1, StepOutcome::Done, later);
    let report = r.report();
    assert_eq!(report.hosts[again[0].0 as usize].1, HostState::Succeeded);
    // The second does not: its deployment starts again from Markdown.
    r.handle_step_result(again[1].0, again[1].1, StepOutcome::Done, later);
    let steps: Vec<Step> = starts(&mut r).into_iter().map(|(.., s)| s).collect();
    assert!(steps.contains(&Step::Markdown), "{steps:?}");
}

#[test]
fn waits_pauses_brakes_and_an_unbaked_bastion_survive_a_restore() {
    // A wait resumes with the time it had left.
    let mut r = release(4, 0, Mode::Automatic { wait: Duration::from_secs(30), later_wait: None });
    let mut now = Timestamp::ZERO;
    while !matches!(r.phase(), Phase::Waiting { .. }) {
        for (slot, token, ..) in starts(&mut r) {
            r.handle_step_result(slot, token, StepOutcome::Done, now);
        }
        now += Duration::from_secs(1);
    }
    let Phase::Waiting { until, .. } = r.phase() else { unreachable!() };
    let left = until.saturating_duration_since(r.report().batches[0].finished.unwrap());
    let saved = round_trip(&r.save());
    let restored_at = Timestamp::from_millis(500_000);
    let r = Release::restore(saved, config(Mode::Manual), restored_at).unwrap();
    let Phase::Waiting { until, .. } = r.phase() else { panic!("{:?}", r.phase()) };
    assert_eq!(until, restored_at + left);

    // A paused release stays paused; an unbaked bastion stays unbaked.
    let mut r = release(4, 1, Mode::Manual);
    for (slot, token, ..) in starts(&mut r) {
        r.handle_step_result(slot, token, StepOutcome::Done, Timestamp::ZERO);
    }
    while r.phase() != Phase::AwaitingBake {
        for (slot, token, ..) in starts(&mut r) {
            r.handle_step_result(slot, token, StepOutcome::Done, Timestamp::ZERO);
        }
    }
    r.handle_command(Command::Pause, Timestamp::ZERO).unwrap();
    let r = Release::restore(round_trip(&r.save()), config(Mode::Manual), now).unwrap();
    assert_eq!(r.phase(), Phase::AwaitingBake);
    assert!(r.is_paused());
    assert_eq!(r.report().hosts[0].1, HostState::AwaitingBake);

    // A braked release stays braked, with its reason.
    let mut r = release(4, 1, Mode::Manual);
    for (slot, token, ..) in starts(&mut r) {
        r.handle_step_result(slot, token, StepOutcome::Failed("no".into()), Timestamp::ZERO);
    }
    let braked = r.phase();
    assert!(matches!(braked, Phase::Braked { .. }), "{braked:?}");
    let r = Release::restore(round_trip(&r.save()), config(Mode::Manual), now).unwrap();
    assert_eq!(r.phase(), braked);
}

#[test]
fn a_saved_release_that_cannot_be_continued_is_a_typed_error() {
    let r = release(3, 0, Mode::Manual);
    let saved = r.save();
    let other = ReleaseConfig::new(Version::new("3.0").unwrap());
    assert!(matches!(
        Release::restore(saved.clone(), other, Timestamp::ZERO),
        Err(RestoreError::Target { .. })
    ));
    let mut json: serde_json::Value = serde_json::to_value(&saved).unwrap();
    json["format"] = 99.into();
    let future: SavedRelease = serde_json::from_value(json).unwrap();
    let err = Release::restore(future, config(Mode::Manual), Timestamp::ZERO).unwrap_err();
    assert_eq!(err, RestoreError::Format { found: 99, supported: SavedRelease::FORMAT });
    let mut json: serde_json::Value = serde_json::to_value(&saved).unwrap();
    json["batches"] = serde_json::json!([[0, 1, 77]]);
    let damaged: SavedRelease = serde_json::from_value(json).unwrap();
    let err = Release::restore(damaged, config(Mode::Manual), Timestamp::ZERO).unwrap_err();
    assert!(matches!(err, RestoreError::Inconsistent(_)), "{err}");
}
