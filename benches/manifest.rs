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

/// Talk 004's 42-application environments file, its `dev-alice` environment (41
/// applications, one template each) validated, resolved and rendered, beside parsing the file
/// into an untyped value.
fn environments(c: &mut Criterion) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/data/environments");
    let text = std::fs::read_to_string(dir.join("environments.yaml")).unwrap();
    let parsed = plus_manifest::parse_environments(
        plus_manifest::Source::new("environments.yaml", text.clone()),
        plus_manifest::Limits::default(),
    )
    .unwrap();
    let templates = plus_manifest::Templates::load(&dir, &parsed).unwrap();
    let parse = || {
        plus_manifest::parse_environments(
            plus_manifest::Source::new("environments.yaml", black_box(text.as_str())),
            plus_manifest::Limits::default(),
        )
        .unwrap()
    };
    let mut group = c.benchmark_group("manifest/environments_42_apps");
    group.bench_function("serde_yaml_untyped_value", |b| {
        b.iter(|| serde_yaml::from_str::<serde_yaml::Value>(black_box(&text)).unwrap());
    });
    group.bench_function("plus_manifest_parse_validate", |b| b.iter(parse));
    group.bench_function("parse_validate_resolve_render_dev_alice", |b| {
        b.iter(|| {
            let environments = parse();
            let resolved = environments.resolve("dev-alice").unwrap();
            let facts = plus_manifest::Facts::planned(&resolved, "env.internal");
            resolved.render(&templates, &facts).unwrap()
        });
    });
    group.finish();
}

criterion_group!(benches, manifest, environments);
criterion_main!(benches);
