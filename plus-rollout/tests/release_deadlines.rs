//! Deadlines: for the whole release (counted across a takeover) and for each wait for a
//! person, with the outcome the release chose: pause, or fail.

use std::time::Duration;

use plus_core::{HostId, Timestamp, Version};
use plus_rollout::{
    Action, Command, EventKind, GroupHost, JobId, OnDeadline, Outcome, Phase, PlanConfig, Release,
    ReleaseConfig, ReleaseDeadlines, ReleaseJob, StepOutcome, plan,
};

fn release(deadlines: ReleaseDeadlines) -> Release {
    let group: Vec<GroupHost> =
        (0..8).map(|i| GroupHost::in_service(HostId::new(format!("host-{i}")).unwrap())).collect();
    let plan = plan(&group, &PlanConfig::default()).unwrap();
    let config = ReleaseConfig { deadlines, ..ReleaseConfig::new(Version::new("2.0").unwrap()) };
    Release::new(plan, config, Timestamp::ZERO).unwrap()
}

/// Answers every step at once (`Done`), keeps the events.
fn answer(release: &mut Release, now: Timestamp, events: &mut Vec<EventKind>) {
    while let Some(action) = release.poll_action() {
        if let Action::Start { id: JobId { slot, token }, job: ReleaseJob::Step(_) } = action {
            release.handle_step_result(slot, token, StepOutcome::Done, now);
        }
    }
    while let Some(event) = release.poll_event() {
        events.push(event.kind);
    }
}

fn at(secs: u64) -> Timestamp {
    Timestamp::from_millis(secs * 1_000)
}

#[test]
fn a_bake_nobody_gives_pauses_the_release_at_its_deadline_and_says_why() {
    let deadlines = ReleaseDeadlines {
        waiting: Some(Duration::from_secs(60)),
        on_expiry: OnDeadline::Pause,
        ..ReleaseDeadlines::default()
    };
    let mut r = release(deadlines);
    let mut events = Vec::new();
    answer(&mut r, at(0), &mut events);
    assert_eq!(r.phase(), Phase::AwaitingBake);
    assert_eq!(r.poll_timeout(), Some(at(60)), "the wait's deadline is the next timeout");
    r.handle_timeout(at(60));
    answer(&mut r, at(60), &mut events);
    assert!(r.is_paused());
    assert!(
        events.iter().any(|e| matches!(e, EventKind::DeadlinePassed { reason }
            if reason.contains("nobody acted for 60s") && reason.ends_with("paused"))),
        "{events:?}"
    );
    // A person bakes and resumes: the release goes on, the deadline does not act again.
    r.handle_command(Command::Bake, at(61)).unwrap();
    r.handle_command(Command::Resume, at(61)).unwrap();
    for t in 61..400 {
        r.handle_timeout(at(t));
        answer(&mut r, at(t), &mut events);
    }
    assert_eq!(r.phase(), Phase::Finished(Outcome::Succeeded));
}

#[test]
fn a_release_past_its_deadline_fails_and_a_takeover_does_not_restart_the_clock() {
    let deadlines = ReleaseDeadlines {
        release: Some(Duration::from_secs(100)),
        on_expiry: OnDeadline::Fail,
        ..ReleaseDeadlines::default()
    };
    let mut r = release(deadlines);
    let mut events = Vec::new();
    answer(&mut r, at(0), &mut events);
    assert_eq!(r.phase(), Phase::AwaitingBake);
    // Saved 40 s in (time reaches the core through a timeout), restored by another
    // controller whose clock says 1,000 s.
    r.handle_timeout(at(40));
    let saved = r.save();
    let mut r = Release::restore(saved, r.config().clone(), at(1_000)).unwrap();
    answer(&mut r, at(1_000), &mut events);
    assert_eq!(r.poll_timeout(), Some(at(1_060)), "60 s of the 100 s are left");
    r.handle_timeout(at(1_060));
    answer(&mut r, at(1_060), &mut events);
    let Phase::Finished(Outcome::Failed(reason)) = r.phase() else { panic!("{:?}", r.phase()) };
    assert!(reason.contains("the release's deadline of 100s passed"), "{reason}");
}
