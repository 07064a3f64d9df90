//! Dependency-ordered deployment on random graphs, in simulated time; some runs crash once
//! (the deployment saved through JSON, everything in flight dropped) and finish restored.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use plus_core::{AppCode, Timestamp, seeded_rng};
use plus_rollout::{
    Action, AppExecutor, AppGraph, AppJob, AppSpec, AppState, DependencyKind, DeployConfig,
    DeployEvent, Deployment, DeploymentReport, JobId, SavedDeployment, spawn_deployment,
};
use proptest::prelude::*;
use rand::Rng;

fn code(i: usize) -> AppCode {
    AppCode::new(format!("app{i:03}")).unwrap()
}

/// A random DAG: edges only from higher to lower index, so it is acyclic by construction.
fn dag() -> impl Strategy<Value = (Vec<AppSpec>, Vec<bool>, usize, u64)> {
    (1usize..40, any::<u64>(), 1usize..6).prop_flat_map(|(n, seed, concurrency)| {
        let mut rng = seeded_rng(seed);
        let apps: Vec<AppSpec> = (0..n)
            .map(|i| {
                let mut spec = AppSpec::new(code(i));
                for d in 0..i {
                    match rng.random_range(0..10) {
                        0 | 1 => spec.depends_on.push(code(d)),
                        2 => spec.optional_depends_on.push(code(d)),
                        _ => {}
                    }
                }
                spec
            })
            .collect();
        (
            Just(apps),
            prop::collection::vec(prop::bool::weighted(0.15), n),
            Just(concurrency),
            Just(seed),
        )
    })
}

/// Runs the core to the end: deploys and checks take 1-50 s; `fail[i]` makes app i's deploy fail; its
/// first health check fails once in three. Checks the invariants on the way.
fn simulate(
    apps: Vec<AppSpec>,
    fail: &[bool],
    concurrency: usize,
    seed: u64,
    crash_at: Option<u32>,
) -> Result<(DeploymentReport, bool), TestCaseError> {
    let graph = Arc::new(AppGraph::new(apps).unwrap());
    let config = DeployConfig {
        concurrency,
        check_retries: 1,
        check_interval: Duration::from_secs(5),
        ..DeployConfig::default()
    };
    let mut rng = seeded_rng(seed);
    let mut now = Timestamp::ZERO;
    let mut d = Deployment::new(Arc::clone(&graph), config, now).unwrap();
    let mut inflight: BTreeMap<(Timestamp, u64), (usize, Result<(), String>)> = BTreeMap::new();
    let mut healthy = std::collections::HashSet::new();
    let mut crashed = false;
    for round in 0.. {
        if crash_at == Some(round) && !d.is_finished() {
            // The controller dies with its work in flight and the actions it had not handed
            // out; another restores the saved state later.
            let saved = serde_json::to_string(&d.save()).unwrap();
            let saved: SavedDeployment = serde_json::from_str(&saved).unwrap();
            for (i, (_, state)) in d.report().apps.iter().enumerate() {
                if *state == AppState::Healthy {
                    healthy.insert(i);
                }
            }
            inflight.clear();
            now += Duration::from_secs(rng.random_range(0..100));
            d = Deployment::restore(saved, Arc::clone(&graph), config, now).unwrap();
            crashed = true;
        }
        while let Some(action) = d.poll_action() {
            // Under the 60 s check deadline: timeouts are tested on their own.
            let delay = Duration::from_secs(rng.random_range(1..50));
            match action {
                Action::Start { id: JobId { slot, token }, job: AppJob::Deploy(_) } => {
                    let app = slot as usize;
                    prop_assert!(!healthy.contains(&app), "a healthy application deployed again");
                    let i: usize = graph.code(app).as_str()[3..].parse().unwrap();
                    for (dep, kind) in graph.dependencies(app) {
                        match kind {
                            DependencyKind::Required => {
                                prop_assert_eq!(d.state(dep), &AppState::Healthy);
                            }
                            DependencyKind::Optional => prop_assert!(d.state(dep).is_final()),
                        }
                    }
                    let result = if fail[i] { Err("boom".to_owned()) } else { Ok(()) };
                    inflight.insert((now + delay, token), (app, result));
                }
                Action::Start { id: JobId { slot, token }, job: AppJob::Check { attempt, .. } } => {
                    let app = slot as usize;
                    let result = if attempt == 1 && rng.random_range(0..3) == 0 {
                        Err("not yet".to_owned())
                    } else {
                        Ok(())
                    };
                    inflight.insert((now + delay, token), (app, result));
                }
                Action::Cancel(_) => prop_assert!(false, "nothing should be cancelled"),
                _ => prop_assert!(false, "an action this test does not know"),
            }
        }
        while d.poll_event().is_some() {}
        let busy = (0..graph.len())
            .filter(|&i| matches!(d.state(i), AppState::Deploying | AppState::Checking { .. }))
            .count();
        prop_assert!(busy <= concurrency, "{busy} busy, limit {concurrency}");
        if d.is_finished() {
            break;
        }
        let next_result = inflight.keys().next().copied();
        let next_timer = d.poll_timeout();
        match (next_result, next_timer) {
            (Some((at, token)), timer) if timer.is_none_or(|t| at <= t) => {
                now = at;
                let (app, result) = inflight.remove(&(at, token)).unwrap();
                d.handle_result(app, token, result, now);
            }
            (_, Some(t)) => {
                now = t;
                d.handle_timeout(now);
            }
            (Some(_), None) => unreachable!("the first arm takes a result when there is no timer"),
            (None, None) => prop_assert!(false, "stuck: nothing in flight and no timer"),
        }
    }
    Ok((d.report(), crashed))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]
    #[test]
    fn failures_skip_exactly_their_required_dependents((apps, fail, concurrency, seed) in dag()) {
        let graph = AppGraph::new(apps.clone()).unwrap();
        let crash_at = (seed % 3 == 0).then_some((seed >> 8) as u32 % 60);
        let (report, _) = simulate(apps.clone(), &fail, concurrency, seed, crash_at)?;
        // Expected: in dependency order, skipped if any required dependency did not become
        // healthy, failed if scripted to fail, healthy otherwise.
        let mut expected: Vec<&str> = vec![""; graph.len()];
        for i in graph.order_indices() {
            let n: usize = graph.code(i).as_str()[3..].parse().unwrap();
            let blocked = graph.dependencies(i).any(|(d, k)| k == DependencyKind::Required && expected[d] != "healthy");
            expected[i] = if blocked { "skipped" } else if fail[n] { "failed" } else { "healthy" };
        }
        for (i, (app, state)) in report.apps.iter().enumerate() {
            let got = match state {
                AppState::Healthy => "healthy",
                AppState::Failed { .. } => "failed",
                AppState::Skipped { .. } => "skipped",
                other => return Err(TestCaseError::fail(format!("{app} ended in {other:?}"))),
            };
            prop_assert_eq!(got, expected[i], "{}", app);
        }
        // Same input, same run.
        prop_assert_eq!(simulate(apps, &fail, concurrency, seed, crash_at)?.0, report);
    }
}

#[test]
fn an_app_starts_before_its_whole_wave_is_done() {
    // a (slow) and b (fast) have no dependencies; c needs only b. c must start while a runs.
    let apps = vec![
        AppSpec::new(code(0)),
        AppSpec::new(code(1)),
        AppSpec { depends_on: vec![code(1)], ..AppSpec::new(code(2)) },
    ];
    let graph = Arc::new(AppGraph::new(apps).unwrap());
    let mut d =
        Deployment::new(Arc::clone(&graph), DeployConfig::default(), Timestamp::ZERO).unwrap();
    let mut tokens = BTreeMap::new();
    while let Some(action) = d.poll_action() {
        if let Action::Start { id, job: AppJob::Deploy(_) } = action {
            tokens.insert(id.slot as usize, id.token);
        }
    }
    assert_eq!(tokens.len(), 2);
    let t = Timestamp::from_millis(1_000);
    d.handle_result(1, tokens[&1], Ok(()), t);
    let Some(Action::Start { id: JobId { slot: 1, token }, job: AppJob::Check { .. } }) =
        d.poll_action()
    else {
        panic!()
    };
    d.handle_result(1, token, Ok(()), t);
    assert_eq!(
        d.poll_action(),
        Some(Action::Start {
            id: JobId { slot: 2, token: token + 1 },
            job: AppJob::Deploy(code(2))
        })
    );
    assert_eq!(d.state(0), &AppState::Deploying, "app000 is still deploying");
}

#[test]
fn health_checks_retry_on_the_interval_then_fail() {
    let graph = Arc::new(AppGraph::new(vec![AppSpec::new(code(0))]).unwrap());
    let config = DeployConfig {
        check_retries: 2,
        check_interval: Duration::from_secs(30),
        ..DeployConfig::default()
    };
    let mut d = Deployment::new(graph, config, Timestamp::ZERO).unwrap();
    let mut now = Timestamp::ZERO;
    let Some(Action::Start { id: JobId { token, .. }, job: AppJob::Deploy(_) }) = d.poll_action()
    else {
        panic!()
    };
    d.handle_result(0, token, Ok(()), now);
    let mut checks = Vec::new();
    while !d.is_finished() {
        match d.poll_action() {
            Some(Action::Start { id: JobId { token, .. }, job: AppJob::Check { attempt, .. } }) => {
                checks.push((now, attempt));
                d.handle_result(0, token, Err("503".into()), now);
            }
            _ => {
                now = d.poll_timeout().unwrap();
                d.handle_timeout(now);
            }
        }
    }
    assert_eq!(
        checks,
        [
            (Timestamp::ZERO, 1),
            (Timestamp::from_millis(30_000), 2),
            (Timestamp::from_millis(60_000), 3)
        ]
    );
    assert_eq!(
        d.state(0),
        &AppState::Failed { reason: "health check failed 3 time(s), last: 503".into() }
    );
}

fn deployment(graph: Arc<AppGraph>, config: DeployConfig) -> Deployment {
    Deployment::new(graph, config, Timestamp::ZERO).unwrap()
}

struct Scripted;

#[async_trait::async_trait]
impl AppExecutor for Scripted {
    async fn deploy(&self, app: &AppCode) -> Result<(), plus_rollout::Failure> {
        tokio::time::sleep(Duration::from_secs(10)).await;
        if app.as_str() == "db" { Err("disk full".into()) } else { Ok(()) }
    }
    async fn check(&self, _: &AppCode) -> Result<(), plus_rollout::Failure> {
        Ok(())
    }
}

fn issue_example() -> Vec<AppSpec> {
    let c = |s: &str| AppCode::new(s).unwrap();
    vec![
        AppSpec { depends_on: vec![c("api"), c("static")], ..AppSpec::new(c("web")) },
        AppSpec {
            depends_on: vec![c("db")],
            optional_depends_on: vec![c("cache")],
            ..AppSpec::new(c("api"))
        },
        AppSpec::new(c("db")),
        AppSpec::new(c("cache")),
        AppSpec::new(c("static")),
    ]
}

#[tokio::test(start_paused = true)]
async fn the_driver_runs_the_core_and_reports_in_completion_order() {
    let graph = Arc::new(AppGraph::new(issue_example()).unwrap());
    let (_handle, mut events, task) =
        spawn_deployment(deployment(graph, DeployConfig::default()), Arc::new(Scripted));
    let report = task.await.unwrap();
    let lines = report.lines();
    // All three deploys end at t = 10 s and the driver hands them to the core in one turn, in
    // spawn order (cache, db, static): db's failure is seen before the health checks their
    // success started, which answer on their first poll, in the next turn.
    assert_eq!(
        lines,
        [
            "failed db",
            "skipped api (requires db)",
            "skipped web (requires db)",
            "deployed cache",
            "deployed static"
        ]
    );
    let mut saw_finished = false;
    while let Some(event) = events.next().await {
        saw_finished |= event == DeployEvent::Finished;
    }
    assert!(saw_finished);
}

#[tokio::test(start_paused = true)]
async fn cancel_reports_every_app() {
    let graph = Arc::new(AppGraph::new(issue_example()).unwrap());
    let (handle, _events, task) = spawn_deployment(
        deployment(graph, DeployConfig { concurrency: 1, ..DeployConfig::default() }),
        Arc::new(Scripted),
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    handle.cancel().await;
    let report = task.await.unwrap();
    assert_eq!(report.apps.iter().filter(|(_, s)| *s == AppState::Cancelled).count(), 1);
    assert_eq!(report.apps.iter().filter(|(_, s)| *s == AppState::NotStarted).count(), 4);
    handle.cancel().await; // after the end: returns at once
}

/// A fixed deployment crashed at every point of its run finishes as the uninterrupted one does.
#[test]
fn a_crash_at_any_point_of_a_fixed_deployment_ends_the_same() {
    let apps: Vec<AppSpec> = (0..12)
        .map(|i| {
            let mut spec = AppSpec::new(code(i));
            if i > 0 {
                spec.depends_on.push(code(i / 2));
            }
            if i > 3 {
                spec.optional_depends_on.push(code(i - 3));
            }
            spec
        })
        .collect();
    let fail: Vec<bool> = (0..12).map(|i| i == 5).collect();
    let (clean, _) = simulate(apps.clone(), &fail, 3, 11, None).unwrap();
    let states = |r: &DeploymentReport| r.apps.iter().map(|(_, s)| s.clone()).collect::<Vec<_>>();
    let mut crashes = 0;
    for crash_at in 0.. {
        let (restored, crashed) = simulate(apps.clone(), &fail, 3, 11, Some(crash_at)).unwrap();
        if !crashed {
            break; // past the end of the run
        }
        assert_eq!(states(&restored), states(&clean), "crash at round {crash_at}");
        crashes += 1;
    }
    println!("{crashes} crash points");
    assert!(crashes > 10, "the run had only {crashes} rounds to crash in");
}
