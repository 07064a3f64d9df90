//! Ordering a random DAG of 100,000 applications beside petgraph's bare toposort on the same
//! graph.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use plus_core::{AppCode, seeded_rng};
use plus_rollout::{AppGraph, AppSpec};
use rand::Rng;

const APPS: usize = 100_000;

fn random_dag() -> AppGraph {
    let mut rng = seeded_rng(11);
    let code = |i: usize| AppCode::new(format!("app-{i:06}")).unwrap();
    let apps = (0..APPS)
        .map(|i| {
            let mut spec = AppSpec::new(code(i));
            if i > 0 {
                // About three dependencies each, on earlier applications: acyclic by construction.
                let mut deps: Vec<usize> = (0..3).map(|_| rng.random_range(0..i)).collect();
                deps.sort_unstable();
                deps.dedup();
                spec.depends_on = deps.into_iter().map(code).collect();
            }
            spec
        })
        .collect();
    AppGraph::new(apps).unwrap()
}

fn ordering(c: &mut Criterion) {
    let graph = random_dag();
    let mut group = c.benchmark_group("deps/order_100000_apps");
    group.sample_size(20);
    group.bench_function("petgraph_toposort", |b| {
        b.iter(|| petgraph::algo::toposort(black_box(graph.petgraph()), None).unwrap().len());
    });
    group.bench_function("plus_rollout_order", |b| {
        b.iter(|| black_box(&graph).order_indices().len());
    });
    group.bench_function("plus_rollout_waves", |b| b.iter(|| black_box(&graph).waves().len()));
    group.finish();
}

criterion_group!(benches, ordering);
criterion_main!(benches);
