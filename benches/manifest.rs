//! plus-manifest parse + validate beside serde_yaml parsing the same text into an untyped value.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;

const SEED: &str = "\
version: v1
build:
  tools:
    oracle-jdk: 8
    maven: 3.3.3
  run:
    cmd:
      - mvn package
  target:
    distDir: target
    files:
      - ./
  cache:
    dirs:
      - /opt/gocache/go-build
autodeploy:
  targetDir: /opt/meituan/apptest/
  tools:
    oracle-jdk: 8
  run: java -jar dependency/jetty-runner.jar helloworld.war
  check: sh check.sh
  checkRetry: 2
  checkInterval: 30s
";

fn manifest(c: &mut Criterion) {
    let mut group = c.benchmark_group("manifest/seed");
    group.bench_function("serde_yaml_untyped_value", |b| {
        b.iter(|| serde_yaml::from_str::<serde_yaml::Value>(black_box(SEED)).unwrap());
    });
    group.bench_function("plus_manifest_parse_validate", |b| {
        b.iter(|| plus_manifest::parse_str("manifest.yaml", black_box(SEED)).unwrap());
    });
    group.finish();
}

criterion_group!(benches, manifest);
criterion_main!(benches);
