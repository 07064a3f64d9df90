//! A 3-node plus-quorum cluster driven in one thread with no I/O: messages are handed over
//! directly. Writes one at a time and batched, linearizable reads, and local reads.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plus_core::Timestamp;
use plus_quorum::{Config, MemStorage, Node, ReadOp, WriteOp};

struct Cluster {
    nodes: Vec<Node>,
    disks: Vec<MemStorage>,
    now: Timestamp,
    leader: usize,
}

impl Cluster {
    fn new() -> Self {
        let members = vec![1, 2, 3];
        let mut disks: Vec<MemStorage> = members.iter().map(|_| MemStorage::new()).collect();
        let nodes = members
            .iter()
            .zip(&mut disks)
            .map(|(&id, disk)| {
                let config = {
                    let mut config = Config::new(id, members.clone());
                    config.snapshot_threshold = 100_000;
                    config
                };
                Node::new(config, disk, Timestamp::ZERO).unwrap()
            })
            .collect();
        let mut c = Self { nodes, disks, now: Timestamp::ZERO, leader: 0 };
        while !c.nodes.iter().any(Node::is_leader) {
            c.now += Duration::from_millis(10);
            for n in &mut c.nodes {
                n.tick(c.now);
            }
            c.settle();
        }
        c.leader = c.nodes.iter().position(Node::is_leader).unwrap();
        c
    }

    fn settle(&mut self) {
        let mut sent = Vec::new();
        loop {
            for (n, disk) in self.nodes.iter_mut().zip(&mut self.disks) {
                // Writes become durable (in memory) at once, then the messages they hold leave.
                while let Some(batch) = n.poll_persist() {
                    batch.write_to(disk).unwrap();
                    n.persisted(batch.seq, self.now);
                }
                while let Some((to, msg)) = n.poll_message() {
                    sent.push((n.id(), to, msg));
                }
            }
            if sent.is_empty() {
                return;
            }
            for (from, to, msg) in sent.drain(..) {
                self.nodes[(to - 1) as usize].step(from, msg, self.now);
            }
        }
    }

    fn drain_outputs(&mut self) -> usize {
        let mut n = 0;
        while self.nodes[self.leader].poll_output().is_some() {
            n += 1;
        }
        n
    }
}

fn bench(c: &mut Criterion) {
    let mut cluster = Cluster::new();
    let value = Bytes::from_static(b"0123456789abcdef0123456789abcdef");
    let mut id = 0u64;
    let mut group = c.benchmark_group("quorum/3_nodes_in_process");

    group.throughput(Throughput::Elements(1));
    group.bench_function("write_unbatched", |b| {
        b.iter(|| {
            id += 1;
            let leader = cluster.leader;
            cluster.nodes[leader]
                .write(id, WriteOp::Set { key: format!("k{}", id % 1000), value: value.clone() })
                .unwrap();
            cluster.settle();
            assert_eq!(cluster.drain_outputs(), 1);
        });
    });

    group.throughput(Throughput::Elements(1000));
    group.bench_function("write_batched_1000", |b| {
        b.iter(|| {
            let leader = cluster.leader;
            for _ in 0..1000 {
                id += 1;
                cluster.nodes[leader]
                    .write(
                        id,
                        WriteOp::Set { key: format!("k{}", id % 1000), value: value.clone() },
                    )
                    .unwrap();
            }
            cluster.settle();
            assert_eq!(cluster.drain_outputs(), 1000);
        });
    });

    group.throughput(Throughput::Elements(1));
    group.bench_function("linearizable_read", |b| {
        b.iter(|| {
            id += 1;
            let leader = cluster.leader;
            cluster.nodes[leader].read(id, ReadOp::Get("k7".into())).unwrap();
            cluster.settle();
            assert_eq!(cluster.drain_outputs(), 1);
        });
    });

    group.bench_function("local_get", |b| {
        b.iter(|| black_box(cluster.nodes[1].local_get(black_box("k7")).is_some()));
    });
    group.finish();
}

/// Writes and a turn of the leader's loop with no lease beside 100,000 live ones: the lease
/// deadlines are a queue, so the two should cost the same (before, each committed write and
/// each tick walked every lease).
fn leases(c: &mut Criterion) {
    let value = Bytes::from_static(b"0123456789abcdef0123456789abcdef");
    let mut group = c.benchmark_group("quorum/writes_beside_leases");
    group.throughput(Throughput::Elements(1000));
    for live in [0u64, 100_000] {
        let mut cluster = Cluster::new();
        let mut id = 0u64;
        let leader = cluster.leader;
        for _ in 0..live / 1000 {
            for _ in 0..1000 {
                id += 1;
                let grant = WriteOp::GrantLease { ttl_ms: 3_600_000 };
                cluster.nodes[leader].write(id, grant).unwrap();
            }
            cluster.settle();
            cluster.drain_outputs();
        }
        group.bench_function(format!("{live}_leases"), |b| {
            b.iter(|| {
                for _ in 0..1000 {
                    id += 1;
                    let op = WriteOp::Set { key: format!("k{}", id % 1000), value: value.clone() };
                    cluster.nodes[leader].write(id, op).unwrap();
                }
                cluster.settle();
                cluster.now += Duration::from_millis(1);
                let now = cluster.now;
                cluster.nodes[leader].tick(now);
                black_box(cluster.nodes[leader].poll_timeout());
                assert_eq!(cluster.drain_outputs(), 1000);
            });
        });
    }
    group.finish();
}

/// What a snapshot, a backup or an inspection costs the node's loop at a million keys: the copy
/// of the state it takes there, beside a copy of the same keys in a `BTreeMap` (the state's map
/// before it was persistent), in the same process.
fn state_copy(c: &mut Criterion) {
    const KEYS: usize = 1_000_000;
    let value =
        Bytes::from_static(b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    let key = |i: usize| format!("app/key/{i:08}");
    let mut disk = MemStorage::new();
    let mut config = Config::new(1, vec![1]);
    config.snapshot_threshold = 10_000_000;
    let mut node = Node::new(config, &mut disk, Timestamp::ZERO).unwrap();
    let mut now = Timestamp::ZERO;
    while !node.is_leader() {
        now += Duration::from_millis(10);
        node.tick(now);
    }
    for (id, first) in (0..KEYS).step_by(128).enumerate() {
        let pairs = (first..(first + 128).min(KEYS)).map(|i| (key(i), value.clone())).collect();
        node.write(id as u64, WriteOp::MultiSet(pairs)).unwrap();
        while let Some(batch) = node.poll_persist() {
            batch.write_to(&mut disk).unwrap();
            node.persisted(batch.seq, now);
        }
        while node.poll_output().is_some() {}
    }
    let baseline: std::collections::BTreeMap<String, plus_quorum::Versioned> = (0..KEYS)
        .map(|i| {
            let versioned = plus_quorum::Versioned {
                value: value.clone(),
                version: 1,
                created: 1,
                lease: None,
            };
            (key(i), versioned)
        })
        .collect();
    let mut group = c.benchmark_group("quorum/state_copy_1M_keys");
    group.sample_size(10);
    group.bench_function("btree_map_clone", |b| b.iter(|| black_box(baseline.clone())));
    group.bench_function("node_state_copy", |b| b.iter(|| black_box(node.begin_inspection())));
    group.finish();
}

criterion_group!(benches, bench, leases, state_copy);
criterion_main!(benches);
