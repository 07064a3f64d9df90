//! What an operator sees of a release: its log lines (through `tracing`) and its numbers.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};
use plus_rollout::{
    Action, FailureRate, GroupHost, HostCounts, Mode, PlanConfig, Release, ReleaseConfig, Step,
    StepOutcome, plan,
};

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Ten hosts in batches of 20%, no bastion; host-03 fails Install after 2 s, every other step
/// takes 1 s; the brake holds at 10% failed.
fn run_release() -> (Release, Timestamp) {
    let group: Vec<GroupHost> = (0..10)
        .map(|i| GroupHost::in_service(HostId::new(format!("host-{i:02}")).unwrap()))
        .collect();
    let plan_config = PlanConfig {
        bastion: plus_rollout::Bastion::Count(0),
        max_ratio: Ratio::from_percent(20.0).unwrap(),
        ..PlanConfig::default()
    };
    let mut config = ReleaseConfig::new(Version::new("2.0").unwrap());
    config.mode = Mode::Automatic { wait: Duration::from_secs(5), later_wait: None };
    config.brake = Arc::new(FailureRate { threshold: Some(Ratio::from_percent(10.0).unwrap()) });
    let mut release =
        Release::new(plan(&group, &plan_config).unwrap(), config, Timestamp::ZERO).unwrap();
    let mut now = Timestamp::ZERO;
    let mut running = Vec::new();
    for _ in 0..1000 {
        while let Some(action) = release.poll_action() {
            if let Action::Start { id, job: plus_rollout::ReleaseJob::Step(job) } = action {
                let fails = job.host.as_str() == "host-03" && job.step == Step::Install;
                let took = Duration::from_secs(if fails { 2 } else { 1 });
                running.push((now + took, id, fails));
            }
        }
        while release.poll_event().is_some() {}
        running.sort_by_key(|(at, ..)| *at);
        let next_timeout = release.poll_timeout();
        match running.first().copied() {
            Some((at, id, fails)) if next_timeout.is_none_or(|t| at <= t) => {
                running.remove(0);
                now = at;
                let outcome =
                    if fails { StepOutcome::Failed("disk full".into()) } else { StepOutcome::Done };
                release.handle_step_result(id.slot, id.token, outcome, now);
            }
            _ => match next_timeout {
                Some(at) => {
                    now = at;
                    release.handle_timeout(now);
                }
                None => break,
            },
        }
    }
    (release, now)
}

#[test]
fn a_release_tells_its_story_in_the_log() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::DEBUG)
        .with_ansi(false)
        .without_time()
        .with_writer(move || sink.clone())
        .finish();
    let (release, _) = tracing::subscriber::with_default(subscriber, run_release);
    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let has = |needle: &str| log.lines().any(|line| line.contains(needle));
    assert!(has("release phase phase=running the batch 1"), "{log}");
    assert!(has("batch started batch=batch 1 hosts=2"), "{log}");
    assert!(
        has("step ended host=host-03 step=Install took=2s result=\"failed\""),
        "the failing step with its duration: {log}"
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("host finished host=host-03 state=failed at Install: disk full")),
        "a failed host is a warning: {log}"
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("brake: hold")
            && l.contains("planned=10 failed=1")
            && l.contains("max_ratio=20%")),
        "the brake's verdict with its numbers: {log}"
    );
    assert!(
        log.lines().any(|l| l.contains("WARN")
            && l.contains("release phase phase=braked: 1 of 10 hosts failed (10.0%)")),
        "{log}"
    );
    let counts: HostCounts = release.host_counts();
    let by_state = (counts.succeeded, counts.failed, counts.pending, counts.running);
    assert_eq!(by_state, (3, 1, 6, 0), "{counts:?} in {:?}", release.phase());
    assert_eq!(release.report().host_counts(), counts, "a report counts as its release does");
}
