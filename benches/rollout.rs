//! The release engine driving 100,000 hosts at parallelism 1,000, beside spawning the same number
//! of tokio tasks at the same parallelism.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use criterion::{Criterion, criterion_group, criterion_main};
use plus_core::{HostId, Ratio, Timestamp, Version};
use plus_rollout::{
    Bastion, GroupHost, Mode, NoopExecutor, Outcome, PlanConfig, Release, ReleaseConfig, Step,
    StepExecutor, StepOutcome, plan, spawn_release,
};
use tokio::task::JoinSet;

const HOSTS: usize = 100_000;
const PARALLELISM: usize = 1_000;

/// A step that yields once, so the driver must spawn it and be woken: the engine's full path.
#[derive(Debug)]
struct YieldOnce;

#[async_trait]
impl StepExecutor for YieldOnce {
    async fn run(&self, _: &HostId, _: Step, _: &Version) -> StepOutcome {
        tokio::task::yield_now().await;
        StepOutcome::Done
    }
}

fn release() -> Release {
    let group: Vec<GroupHost> = (0..HOSTS)
        .map(|i| GroupHost::in_service(HostId::new(format!("host-{i:06}")).unwrap()))
        .collect();
    let plan = plan(
        &group,
        &PlanConfig { bastion: Bastion::Count(0), max_ratio: Ratio::ONE, ..PlanConfig::default() },
    )
    .unwrap();
    let config = ReleaseConfig {
        parallelism: PARALLELISM,
        mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
        ..ReleaseConfig::new(Version::new("2.0").unwrap())
    };
    Release::new(plan, config, Timestamp::ZERO).expect("a valid config")
}

/// The baseline: `n` tasks doing `work`, at most `PARALLELISM` at once.
async fn spawn_tasks<F, Fut>(n: usize, work: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let mut set = JoinSet::new();
    for _ in 0..n {
        if set.len() >= PARALLELISM {
            set.join_next().await.unwrap().unwrap();
        }
        set.spawn(work());
    }
    while set.join_next().await.is_some() {}
}

fn engine(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut group = c.benchmark_group("rollout/100000_hosts_parallelism_1000");
    group.sample_size(10);
    group.bench_function("baseline_spawn_noop_tasks", |b| {
        b.iter(|| rt.block_on(spawn_tasks(HOSTS, || async {})));
    });
    group.bench_function("plus_rollout_noop_executor", |b| {
        b.iter_batched(
            release,
            |release| {
                let report = rt.block_on(async {
                    // Dropped at once, as a host that does not read progress does: the
                    // driver then stops recording events (the next row reads them).
                    let (_handle, events, task) = spawn_release(release, Arc::new(NoopExecutor));
                    drop(events);
                    task.await.unwrap()
                });
                assert_eq!(report.outcome, Some(Outcome::Succeeded));
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.bench_function("plus_rollout_noop_executor_reading_events", |b| {
        b.iter_batched(
            release,
            |release| {
                let events = rt.block_on(async {
                    let (_handle, events, task) = spawn_release(release, Arc::new(NoopExecutor));
                    let count = futures::StreamExt::count(events).await;
                    task.await.unwrap();
                    count
                });
                assert!(events >= HOSTS * 7);
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.bench_function("baseline_spawn_yielding_tasks", |b| {
        b.iter(|| rt.block_on(spawn_tasks(HOSTS, tokio::task::yield_now)));
    });
    group.bench_function("plus_rollout_yielding_executor", |b| {
        b.iter_batched(
            release,
            |release| {
                let report = rt.block_on(async {
                    let (_handle, events, task) = spawn_release(release, Arc::new(YieldOnce));
                    drop(events);
                    task.await.unwrap()
                });
                assert_eq!(report.outcome, Some(Outcome::Succeeded));
            },
            criterion::BatchSize::PerIteration,
        );
    });
    group.finish();
}

criterion_group!(benches, engine);
criterion_main!(benches);
