//! The tokio driver, in paused (simulated) time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use plus_core::{HostId, Timestamp, Version};
use plus_rollout::{
    Bastion, EventKind, GroupHost, HostState, MemoryStore, Mode, NoopExecutor, Outcome, Phase,
    PlanConfig, QuorumStore, Release, ReleaseConfig, SavedRelease, StateStore, Step, StepExecutor,
    StepOutcome, StoreError, plan, spawn_release, spawn_release_saved, spawn_saved,
};

fn release(hosts: usize, bastion: usize, config: ReleaseConfig) -> Release {
    release_at_ratio(hosts, bastion, PlanConfig::default().max_ratio, config)
}

fn release_at_ratio(
    hosts: usize,
    bastion: usize,
    max_ratio: plus_core::Ratio,
    config: ReleaseConfig,
) -> Release {
    let group: Vec<GroupHost> = (0..hosts)
        .map(|i| GroupHost::in_service(HostId::new(format!("host-{i:02}")).unwrap()))
        .collect();
    let plan_config =
        PlanConfig { bastion: Bastion::Count(bastion), max_ratio, ..PlanConfig::default() };
    Release::new(plan(&group, &plan_config).unwrap(), config, Timestamp::ZERO).unwrap()
}

fn config() -> ReleaseConfig {
    ReleaseConfig {
        mode: Mode::Automatic { wait: Duration::from_secs(30), later_wait: None },
        ..ReleaseConfig::new(Version::new("3.1.0").unwrap())
    }
}

#[tokio::test(start_paused = true)]
async fn drives_a_release_to_the_end_with_bake_from_the_handle() {
    let (handle, mut events, task) = spawn_release(release(8, 1, config()), Arc::new(NoopExecutor));
    // Wait for the bastion to be verified, then bake it.
    while let Some(event) = events.next().await {
        if event.kind == EventKind::Phase(Phase::AwaitingBake) {
            break;
        }
    }
    handle.bake().await.unwrap();
    let mut batches_started = 0;
    while let Some(event) = events.next().await {
        if matches!(event.kind, EventKind::BatchStarted { .. }) {
            batches_started += 1;
        }
    }
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Some(Outcome::Succeeded));
    assert_eq!(batches_started, 1 + 4, "bake and four batches");
    assert_eq!(report.count(HostState::is_success), 8);
    assert!(handle.bake().await.is_err(), "the release has ended");
}

/// Sleeps `delay` per step, except `slow_host`'s Install, which sleeps an hour.
#[derive(Debug)]
struct Sleepy {
    delay: Duration,
    slow_host: &'static str,
    started: AtomicUsize,
}

#[async_trait]
impl StepExecutor for Sleepy {
    async fn run(&self, host: &HostId, step: Step, _: &Version) -> StepOutcome {
        self.started.fetch_add(1, Ordering::SeqCst);
        let d = if host.as_str() == self.slow_host && step == Step::Install {
            Duration::from_secs(3600)
        } else {
            self.delay
        };
        tokio::time::sleep(d).await;
        StepOutcome::Done
    }
}

#[tokio::test(start_paused = true)]
async fn a_hung_step_times_out_and_the_rest_goes_on() {
    // One failure in four is 25%: raise the brake's threshold so the release goes on.
    let brake = plus_rollout::FailureRate { threshold: Some(plus_core::Ratio::new(0.5).unwrap()) };
    let config =
        ReleaseConfig { step_timeout: Duration::from_secs(60), brake: Arc::new(brake), ..config() };
    let executor = Arc::new(Sleepy {
        delay: Duration::from_secs(1),
        slow_host: "host-01",
        started: AtomicUsize::new(0),
    });
    let (_handle, _events, task) = spawn_release(release(4, 0, config), executor);
    let report = task.await.unwrap();
    let state = &report.hosts.iter().find(|(h, _)| h.as_str() == "host-01").unwrap().1;
    assert_eq!(
        state,
        &HostState::Failed { step: Step::Install, reason: "Install timed out after 60s".into() }
    );
    assert_eq!(report.outcome, Some(Outcome::Failed("1 of 4 hosts failed".into())));
}

#[tokio::test(start_paused = true)]
async fn abort_cancels_running_steps_at_once() {
    let executor = Arc::new(Sleepy {
        delay: Duration::from_secs(600),
        slow_host: "",
        started: AtomicUsize::new(0),
    });
    let (handle, _events, task) = spawn_release(release(8, 0, config()), Arc::clone(&executor));
    tokio::time::sleep(Duration::from_secs(5)).await;
    let started_at = tokio::time::Instant::now();
    handle.abort().await;
    let report = task.await.unwrap();
    assert!(started_at.elapsed() < Duration::from_secs(1), "abort does not wait for steps");
    assert_eq!(report.outcome, Some(Outcome::Aborted));
    assert_eq!(report.count(|s| matches!(s, HostState::Cancelled { step: Step::Precheck })), 2);
    assert_eq!(report.count(|s| *s == HostState::NotStarted), 6);
    handle.abort().await; // idempotent, even after the end
}

/// Panics on host-00's download, after yielding once or before its first await.
#[derive(Debug)]
struct Panicky {
    yield_first: bool,
}

#[async_trait]
impl StepExecutor for Panicky {
    async fn run(&self, host: &HostId, step: Step, _: &Version) -> StepOutcome {
        if self.yield_first {
            tokio::task::yield_now().await;
        }
        assert!(!(host.as_str() == "host-00" && step == Step::Download), "executor bug");
        StepOutcome::Done
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_executor_fails_the_step_not_the_release() {
    // Both ways: the driver polls a step once inline before it joins the running ones.
    for yield_first in [true, false] {
        let release = release_at_ratio(2, 0, plus_core::Ratio::ONE, config());
        let (_handle, _events, task) = spawn_release(release, Arc::new(Panicky { yield_first }));
        let report = task.await.expect("the driver survives the executor's panic");
        assert_eq!(
            report.hosts[0].1,
            HostState::Failed { step: Step::Download, reason: "executor panicked".into() },
            "yield_first: {yield_first}"
        );
        assert_eq!(report.hosts[1].1, HostState::Succeeded, "yield_first: {yield_first}");
    }
}

/// Never finishes a step.
struct Hang;

#[async_trait]
impl StepExecutor for Hang {
    async fn run(&self, _: &HostId, _: Step, _: &Version) -> StepOutcome {
        std::future::pending().await
    }
}

/// A release built at any time keeps its deadlines relative to that time once spawned: a step
/// with a 100 ms timeout in a release built an hour into its host's clock fails after 100 ms.
#[tokio::test(start_paused = true)]
async fn the_driver_continues_the_core_clock_from_its_construction_time() {
    let group = vec![GroupHost::in_service(HostId::new("host-00").unwrap())];
    let plan =
        plan(&group, &PlanConfig { bastion: Bastion::Count(0), ..PlanConfig::default() }).unwrap();
    let config = ReleaseConfig { step_timeout: Duration::from_millis(100), ..config() };
    let built_at = Timestamp::from_duration(Duration::from_secs(3_600));
    let (handle, mut events, _task) =
        spawn_release(Release::new(plan, config, built_at).unwrap(), Arc::new(Hang));
    let failed = tokio::time::timeout(Duration::from_secs(3), async {
        while let Some(event) = events.next().await {
            if let EventKind::HostFinished { state: HostState::Failed { reason, .. }, .. } =
                event.kind
            {
                return Some((event.at, reason));
            }
        }
        None
    })
    .await
    .expect("the hung step timed out within 3 s")
    .expect("a host failed");
    assert!(failed.1.contains("timed out"), "{}", failed.1);
    assert_eq!(
        failed.0,
        built_at + Duration::from_millis(100),
        "event times continue the core's clock"
    );
    handle.abort().await;
}

/// Runs every step for a second and logs it: `(host, step, started at)`.
#[derive(Default)]
struct Logged {
    log: std::sync::Mutex<Vec<(String, Step, tokio::time::Instant)>>,
}

#[async_trait]
impl StepExecutor for Logged {
    async fn run(&self, host: &HostId, step: Step, _: &Version) -> StepOutcome {
        self.log.lock().unwrap().push((host.to_string(), step, tokio::time::Instant::now()));
        tokio::time::sleep(Duration::from_secs(1)).await;
        StepOutcome::Done
    }
}

fn steps_of(
    executor: &Arc<Logged>,
) -> impl FnMut(plus_rollout::ReleaseJob) -> plus_rollout::JobFuture<StepOutcome> + Send + 'static {
    let executor = Arc::clone(executor);
    move |job| {
        let executor = Arc::clone(&executor);
        Box::pin(async move {
            let plus_rollout::ReleaseJob::Step(job) = job else {
                return StepOutcome::Measured(Err("no analysis here".into()));
            };
            executor.run(&job.host, job.step, &Version::new("3.1.0").unwrap()).await
        })
    }
}

/// The controller dies mid-release; another loads the saved state and finishes: every host
/// ends succeeded, and no host that had succeeded runs a step again.
async fn finished_by_another_controller_after_a_crash(store: Arc<dyn StateStore<SavedRelease>>) {
    let config = || ReleaseConfig {
        parallelism: 3,
        mode: Mode::Automatic { wait: Duration::from_secs(2), later_wait: None },
        ..config()
    };
    let executor = Arc::new(Logged::default());
    let half = plus_core::Ratio::from_percent(50.0).unwrap();
    let (_, _events, task) = spawn_saved(
        release_at_ratio(12, 0, half, config()),
        steps_of(&executor),
        store.clone(),
        "release/api".into(),
        None,
    );
    tokio::time::sleep(Duration::from_millis(9_500)).await;
    task.abort(); // the controller dies: its tasks and running steps with it
    let crash = tokio::time::Instant::now();
    let (saved, version) = store.load("release/api").await.unwrap().unwrap();
    assert!(!saved.is_finished(), "the crash came mid-release");
    let restored = Release::restore(saved, config(), Timestamp::ZERO).unwrap();
    let done_before: Vec<String> = restored
        .report()
        .hosts
        .into_iter()
        .filter(|(_, state)| state.is_success())
        .map(|(host, _)| host.to_string())
        .collect();
    assert!(!done_before.is_empty(), "some hosts had finished before the crash");
    let (_, _events, task) = spawn_saved(
        restored,
        steps_of(&executor),
        store.clone(),
        "release/api".into(),
        Some(version),
    );
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.outcome, Some(Outcome::Succeeded));
    assert_eq!(report.count(HostState::is_success), 12);
    {
        let log = executor.log.lock().unwrap();
        for (host, step, at) in log.iter() {
            assert!(
                *at < crash || !done_before.contains(host),
                "{host} had succeeded, yet ran {step} after the crash"
            );
        }
    }
    let (last, _) = store.load("release/api").await.unwrap().unwrap();
    assert!(last.is_finished(), "the final state is saved too");
}

/// Two controllers drive one release: the one whose state is older loses at its next write and
/// stops, with a typed error; the other finishes.
async fn a_stale_controller_stops(store: Arc<dyn StateStore<SavedRelease>>) {
    let executor = Arc::new(Logged::default());
    let (_, _events, first) =
        spawn_saved(release(8, 0, config()), steps_of(&executor), store.clone(), "r".into(), None);
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    // A second controller believes the first dead and takes over from the saved state.
    let (saved, version) = store.load("r").await.unwrap().unwrap();
    let restored = Release::restore(saved, config(), Timestamp::ZERO).unwrap();
    let (_, _events, second) =
        spawn_saved(restored, steps_of(&executor), store.clone(), "r".into(), Some(version));
    let err = first.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Stale { .. }), "{err}");
    let report = second.await.unwrap().unwrap();
    assert_eq!(report.count(HostState::is_success), 8);
    // A new release under the finished one's key is told so at once, not left blocked.
    let (_, _events, reused) =
        spawn_saved(release(8, 0, config()), steps_of(&executor), store.clone(), "r".into(), None);
    let err = reused.await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::KeyInUse { ref key, .. } if key == "r"), "{err}");
    assert!(err.to_string().contains("start the new rollout under a new key"), "{err}");
}

#[tokio::test(start_paused = true)]
async fn a_saved_release_is_finished_by_another_controller_after_a_crash() {
    finished_by_another_controller_after_a_crash(Arc::new(MemoryStore::new())).await;
}

#[tokio::test(start_paused = true)]
async fn a_stale_controller_stops_driving_with_a_typed_error() {
    a_stale_controller_stops(Arc::new(MemoryStore::new())).await;
}

/// A three-node plus-quorum cluster in this process, and its nodes to stop.
fn quorum() -> (plus_quorum::Cluster, Vec<plus_quorum::RunningNode>) {
    let net = plus_quorum::InProcessNetwork::new();
    let nodes: Vec<plus_quorum::RunningNode> = (1..=3)
        .map(|id| {
            net.spawn(plus_quorum::Config::new(id, vec![1, 2, 3]), plus_quorum::MemStorage::new())
                .unwrap()
        })
        .collect();
    (plus_quorum::Cluster::new(nodes.iter().map(|n| n.handle.clone()).collect()), nodes)
}

#[tokio::test(start_paused = true)]
async fn a_release_saved_in_plus_quorum_is_finished_by_another_controller_after_a_crash() {
    let (cluster, nodes) = quorum();
    finished_by_another_controller_after_a_crash(Arc::new(QuorumStore::new(cluster))).await;
    for node in nodes {
        node.handle.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_stale_controller_stops_on_a_plus_quorum_store_too() {
    let (cluster, nodes) = quorum();
    a_stale_controller_stops(Arc::new(QuorumStore::new(cluster))).await;
    for node in nodes {
        node.handle.stop().await;
    }
}

#[tokio::test(start_paused = true)]
async fn a_state_the_store_cannot_read_is_a_typed_error() {
    let (cluster, nodes) = quorum();
    cluster.set("release/api", "not a release").await.unwrap();
    let store: QuorumStore<SavedRelease> = QuorumStore::new(cluster);
    let err = store.load("release/api").await.unwrap_err();
    assert!(matches!(&err, StoreError::Unreadable { key, .. } if key == "release/api"), "{err}");
    for node in nodes {
        node.handle.stop().await;
    }
}

/// The handle tells where a running release is: its phase, and every host's state.
#[tokio::test(start_paused = true)]
async fn the_handle_reports_live_status() {
    let executor = Arc::new(Logged::default()); // every step takes a second
    let (handle, _events, task) = spawn_release_saved(
        release(8, 0, config()),
        Arc::clone(&executor),
        Arc::new(MemoryStore::new()),
        "r".into(),
        None,
    );
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let status = handle.status().await.expect("still running");
    assert_eq!(status.outcome, None);
    assert!(matches!(status.phase, Phase::Running(_)), "{}", status.phase);
    assert_eq!(status.hosts.len(), 8);
    let running = status.hosts.iter().filter(|(_, s)| matches!(s, HostState::Running(_))).count();
    let pending = status.hosts.iter().filter(|(_, s)| *s == HostState::Pending).count();
    assert_eq!((running, pending), (2, 6), "the first batch of two runs its third step: {status}");
    let report = task.await.unwrap().unwrap();
    assert_eq!(report.phase, Phase::Finished(Outcome::Succeeded));
    assert!(handle.status().await.is_none(), "the driver has stopped");
}

/// A release that counts how often its state is taken for saving.
struct Counted(Release, Arc<AtomicUsize>);

impl plus_rollout::Core for Counted {
    type Job = <Release as plus_rollout::Core>::Job;
    type Outcome = <Release as plus_rollout::Core>::Outcome;
    type Event = <Release as plus_rollout::Core>::Event;
    type Command = <Release as plus_rollout::Core>::Command;
    type Rejection = <Release as plus_rollout::Core>::Rejection;
    type Report = <Release as plus_rollout::Core>::Report;
    type Saved = <Release as plus_rollout::Core>::Saved;
    fn poll_action(&mut self) -> Option<plus_rollout::Action<Self::Job>> {
        self.0.poll_action()
    }
    fn poll_event(&mut self) -> Option<Self::Event> {
        self.0.poll_event()
    }
    fn poll_timeout(&mut self) -> Option<Timestamp> {
        self.0.poll_timeout()
    }
    fn handle_outcome(&mut self, id: plus_rollout::JobId, outcome: Self::Outcome, now: Timestamp) {
        self.0.handle_outcome(id, outcome, now);
    }
    fn handle_command(&mut self, c: Self::Command, now: Timestamp) -> Result<(), Self::Rejection> {
        self.0.handle_command(c, now)
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        self.0.handle_timeout(now);
    }
    fn now(&self) -> Timestamp {
        self.0.now()
    }
    fn is_finished(&self) -> bool {
        self.0.is_finished()
    }
    fn report(&self) -> Self::Report {
        self.0.report()
    }
    fn set_event_recording(&mut self, on: bool) {
        self.0.set_event_recording(on);
    }
    fn failed_outcome(reason: String) -> Self::Outcome {
        <Release as plus_rollout::Core>::failed_outcome(reason)
    }
    fn save(&self) -> Self::Saved {
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.save()
    }
}

fn automatic() -> ReleaseConfig {
    ReleaseConfig {
        mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
        ..ReleaseConfig::new(Version::new("2").unwrap())
    }
}

fn done(_: <Release as plus_rollout::Core>::Job) -> plus_rollout::JobFuture<StepOutcome> {
    Box::pin(async { StepOutcome::Done })
}

#[tokio::test(start_paused = true)]
async fn without_a_store_the_state_is_never_copied() {
    // A copy of the whole release per change made a 100,000-host release quadratic.
    let copies = Arc::new(AtomicUsize::new(0));
    let counted = Counted(release(20, 0, automatic()), Arc::clone(&copies));
    let report = plus_rollout::spawn(counted, done).2.await.unwrap();
    assert_eq!(report.count(HostState::is_success), 20);
    assert_eq!(copies.load(Ordering::SeqCst), 0);

    // With a store, every change is saved.
    let copies = Arc::new(AtomicUsize::new(0));
    let store: Arc<dyn StateStore<SavedRelease>> = Arc::new(MemoryStore::default());
    let counted = Counted(release(20, 0, automatic()), Arc::clone(&copies));
    let report = spawn_saved(counted, done, store, "r".into(), None).2.await.unwrap().unwrap();
    assert_eq!(report.count(HostState::is_success), 20);
    assert!(copies.load(Ordering::SeqCst) > 20);
}

/// 2,000 hosts, two at a time, no waits, every step ending on its first poll: a release the
/// driver could run in one streak of rounds.
fn instant_streak() -> plus_rollout::Spawned<Release> {
    let config = ReleaseConfig {
        parallelism: 2,
        mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
        ..config()
    };
    let release = release_at_ratio(2_000, 0, plus_core::Ratio::ONE, config);
    spawn_release(release, Arc::new(NoopExecutor))
}

/// Steps that all end on their first poll keep the driver in one loop for the whole release;
/// it still hands its events out as they come and gives its thread up between rounds, so a
/// reader on the same thread sees progress before the end.
#[tokio::test(start_paused = true)]
async fn steps_that_end_at_once_still_stream_events_and_share_the_thread() {
    let (_handle, mut events, task) = instant_streak();
    assert!(events.next().await.is_some());
    assert!(!task.is_finished(), "the first event came only after the release ended");
    let mut seen = 1;
    while events.next().await.is_some() {
        seen += 1;
    }
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Some(Outcome::Succeeded));
    assert!(seen > 2_000, "every host's progress was delivered: {seen} events");
}

/// In the same streak of steps that end at once, an abort sent from another task takes effect
/// before the release ends: the driver reads commands between rounds, not only when it waits.
#[tokio::test(start_paused = true)]
async fn an_abort_stops_a_streak_of_steps_that_end_at_once() {
    let (handle, mut events, task) = instant_streak();
    assert!(events.next().await.is_some());
    handle.abort().await;
    let report = task.await.unwrap();
    assert_eq!(report.outcome, Some(Outcome::Aborted));
    assert!(
        report.count(|s| *s == HostState::NotStarted) > 1_000,
        "most hosts were never started: {} succeeded",
        report.count(HostState::is_success)
    );
}
