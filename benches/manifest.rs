//! plus-manifest parse + validate beside serde_yaml parsing the same text into an untyped value.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

/// Talk 000's manifest (the same file plus-manifest's tests read).
const REFERENCE: &str = include_str!("../plus-manifest/tests/data/reference.yaml");

fn manifest(c: &mut Criterion) {
    let mut group = c.benchmark_group("manifest/reference");
    group.bench_function("serde_yaml_untyped_value", |b| {
        b.iter(|| serde_yaml::from_str::<serde_yaml::Value>(black_box(REFERENCE)).unwrap());
    });
    group.bench_function("plus_manifest_parse_validate", |b| {
        b.iter(|| plus_manifest::parse_str("manifest.yaml", black_box(REFERENCE)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, manifest);
criterion_main!(benches);
