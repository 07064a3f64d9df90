//! One scheduling decision beside the floor: a plain pass that reads every metric once.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use plus_core::{WorkerId, seeded_rng};
use plus_scheduler::{
    Candidate, Job, REFERENCE_WEIGHTS, Scheduler, SimConfig, WorkerKind, simulate,
};
use rand::Rng;

fn fleet(n: usize) -> Vec<Candidate> {
    let mut rng = seeded_rng(42);
    (0..n)
        .map(|i| Candidate {
            load: f64::from(rng.random_range(0..20_u32)) / 20.0,
            has_project_cache: rng.random_bool(0.1),
            total_caches: rng.random_range(0..5_000),
            ..Candidate::new(WorkerId::new(format!("worker-{i}")).unwrap(), WorkerKind::Build)
        })
        .collect()
}

/// The floor: every metric of every candidate read once and folded into one number.
fn plain_pass(candidates: &[Candidate]) -> f64 {
    candidates
        .iter()
        .map(|c| c.load + f64::from(u8::from(c.has_project_cache)) + c.total_caches as f64)
        .sum()
}

fn decision(c: &mut Criterion) {
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let job = Job { kind: WorkerKind::Build, project: "release-5331" };
    for n in [10, 1_000, 10_000] {
        let candidates = fleet(n);
        let mut group = c.benchmark_group(format!("scheduler/decide/{n}"));
        group.bench_function(BenchmarkId::from_parameter("plain_pass_floor"), |b| {
            b.iter(|| plain_pass(black_box(&candidates)));
        });
        let mut rng = seeded_rng(7);
        group.bench_function(BenchmarkId::from_parameter("plus_scheduler"), |b| {
            b.iter(|| {
                scheduler.decide(&job, black_box(&candidates), &mut rng).unwrap().chosen_index()
            });
        });
        group.finish();
    }
}

fn simulation(c: &mut Criterion) {
    let mut group = c.benchmark_group("scheduler/simulate_50000_jobs");
    group.sample_size(10);
    group.bench_function("plus_scheduler", |b| {
        b.iter(|| simulate(&SimConfig::default()).unwrap().hit_rate);
    });
    group.finish();
}

criterion_group!(benches, decision, simulation);
criterion_main!(benches);
