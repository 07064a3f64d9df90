//! One scheduling decision beside the floor: a plain pass that reads every metric once.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use plus_core::{Timestamp, WorkerId, seeded_rng};
use plus_scheduler::{
    Candidate, Fleet, FleetConfig, Heartbeat, Job, REFERENCE_WEIGHTS, Scheduler, SimConfig,
    WorkerKind, simulate,
};
use rand::Rng;

fn fleet(n: usize) -> Vec<Candidate> {
    let mut rng = seeded_rng(42);
    (0..n)
        .map(|i| {
            Candidate::new(WorkerId::new(format!("worker-{i}")).unwrap(), WorkerKind::Build)
                .with_load(f64::from(rng.random_range(0..20_u32)) / 20.0)
                .with_project_cache(rng.random_bool(0.1))
                .with_total_caches(rng.random_range(0..5_000))
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
        // The same choice without the decision's explanation, for loops that only place.
        group.bench_function(BenchmarkId::from_parameter("plus_scheduler_pick"), |b| {
            b.iter(|| scheduler.pick(&job, black_box(&candidates), &mut rng).unwrap());
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

/// A fleet of `n` build workers with random loads and caches (a tenth hold the job's).
fn registered_fleet(n: usize) -> (Fleet, Vec<WorkerId>) {
    let mut rng = seeded_rng(42);
    let mut fleet = Fleet::new(FleetConfig::default()).unwrap();
    let ids: Vec<WorkerId> =
        (0..n).map(|i| WorkerId::new(format!("worker-{i}")).unwrap()).collect();
    for id in &ids {
        fleet.register(id.clone(), WorkerKind::Build, Some(20), Timestamp::ZERO).unwrap();
        let caches = (0..rng.random_range(0..5))
            .map(|c| format!("project-{c}"))
            .chain(rng.random_bool(0.1).then(|| "release-5331".to_owned()))
            .collect();
        let load = f64::from(rng.random_range(0..20_u32)) / 20.0;
        fleet.heartbeat(id, Heartbeat { load, caches: Some(caches) }, Timestamp::ZERO).unwrap();
    }
    (fleet, ids)
}

fn fleet_at_10000(c: &mut Criterion) {
    let n = 10_000;
    let (mut fleet, ids) = registered_fleet(n);
    // Heartbeats: beside the floor of any registry, a hash map update per heartbeat.
    let mut group = c.benchmark_group("scheduler/fleet_heartbeats_1000");
    let mut floor: std::collections::HashMap<WorkerId, (f64, Timestamp)> =
        ids.iter().map(|id| (id.clone(), (0.0, Timestamp::ZERO))).collect();
    let mut tick = 0u64;
    group.bench_function("hash_map_update_floor", |b| {
        b.iter(|| {
            tick += 1;
            for (i, id) in ids.iter().enumerate().skip((tick as usize * 1_000) % n).take(1_000) {
                let entry = floor.get_mut(id).unwrap();
                *entry = (i as f64 / n as f64, Timestamp::from_millis(tick));
            }
        });
    });
    group.bench_function("plus_scheduler_fleet", |b| {
        b.iter(|| {
            tick += 1;
            for (i, id) in ids.iter().enumerate().skip((tick as usize * 1_000) % n).take(1_000) {
                let beat = Heartbeat { load: i as f64 / n as f64, caches: None };
                fleet.heartbeat(id, beat, Timestamp::from_millis(tick)).unwrap();
            }
        });
    });
    group.finish();

    // A decision through the fleet (cache flags, reservation, release) beside `decide` over
    // the same candidates.
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).unwrap();
    let job = Job { kind: WorkerKind::Build, project: "release-5331" };
    let mut group = c.benchmark_group(format!("scheduler/fleet_assign/{n}"));
    let candidates = fleet.candidates(WorkerKind::Build).to_vec();
    let mut rng = seeded_rng(7);
    group.bench_function("decide_same_candidates", |b| {
        b.iter(|| scheduler.decide(&job, black_box(&candidates), &mut rng).unwrap().chosen_index());
    });
    group.bench_function("plus_scheduler_fleet", |b| {
        b.iter(|| {
            let placed = fleet.assign(&scheduler, &job, &mut rng).unwrap();
            fleet.finish(placed.job).unwrap();
        });
    });
    group.finish();
}

criterion_group!(benches, decision, fleet_at_10000, simulation);
criterion_main!(benches);
