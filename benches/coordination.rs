//! The coordination features of plus-quorum, in process (3 nodes, tokio driver), each beside
//! the plain operation it builds on: keep-alives beside linearizable reads (both take a quorum
//! round), transactions of 3 compares + 3 writes beside single writes, and writes watched by 1,
//! 100, 1,000 and 10,000 watchers beside the same writes unwatched.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::hint::black_box;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use plus_quorum::{
    Cluster, Compare, Config, Expect, InProcessNetwork, KeyRange, MemStorage, ReadOp, Txn, TxnOp,
    WatchRequest, spawn_node,
};
use tokio::runtime::Runtime;

#[path = "common/fan_out.rs"]
mod fan_out;
use fan_out::fan_out;

async fn cluster() -> Cluster {
    let net = InProcessNetwork::new();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let config = {
            let mut config = Config::new(id, vec![1, 2, 3]);
            config.watch_history = 100_000;
            config
        };
        let node = spawn_node(config, MemStorage::new(), net.clone()).unwrap();
        net.register(node.handle.clone());
        handles.push(node.handle);
    }
    let cluster = Cluster::new(handles);
    cluster.set("warm", "up").await.unwrap();
    cluster
}

fn keep_alives_and_transactions(c: &mut Criterion, rt: &Runtime, store: &Cluster) {
    let (clients, total) = (64, 4_000);
    let leases: Vec<u64> = rt.block_on(async {
        let mut leases = Vec::new();
        for _ in 0..clients {
            leases.push(store.grant_lease(Duration::from_secs(3_600)).await.unwrap().id);
        }
        leases
    });
    let mut group = c.benchmark_group("coordination/keep_alive_c64");
    group.throughput(Throughput::Elements(total as u64));
    group.sample_size(10);
    group.bench_function("linearizable_read", |b| {
        b.iter(|| {
            rt.block_on(fan_out(clients, total, |_, _| {
                let store = store.clone();
                async move {
                    black_box(store.read(ReadOp::Get("warm".into())).await.unwrap());
                }
            }));
        });
    });
    group.bench_function("plus_quorum_keep_alive", |b| {
        b.iter(|| {
            rt.block_on(fan_out(clients, total, |client, _| {
                let (store, lease) = (store.clone(), leases[client]);
                async move {
                    black_box(store.keep_alive(lease).await.unwrap());
                }
            }));
        });
    });
    group.finish();

    let mut group = c.benchmark_group("coordination/txn_c64");
    group.throughput(Throughput::Elements(total as u64));
    group.sample_size(10);
    group.bench_function("single_write", |b| {
        b.iter(|| {
            rt.block_on(fan_out(clients, total, |client, n| {
                let store = store.clone();
                async move {
                    store.set(&format!("w/{client}/{}", n % 8), "v").await.unwrap();
                }
            }));
        });
    });
    group.bench_function("plus_quorum_txn_3_compares_3_writes", |b| {
        b.iter(|| {
            rt.block_on(fan_out(clients, total, |client, n| {
                let store = store.clone();
                async move {
                    let keys: Vec<String> =
                        (0..3).map(|k| format!("t/{client}/{}/{k}", n % 8)).collect();
                    let txn = Txn {
                        when: keys
                            .iter()
                            .map(|k| Compare::new(k.clone(), Expect::Exists))
                            .collect(),
                        then: keys
                            .iter()
                            .map(|k| TxnOp::Set {
                                key: k.clone(),
                                value: Bytes::from_static(b"v"),
                                lease: None,
                            })
                            .collect(),
                        otherwise: keys
                            .iter()
                            .map(|k| TxnOp::Set {
                                key: k.clone(),
                                value: Bytes::from_static(b"first"),
                                lease: None,
                            })
                            .collect(),
                    };
                    black_box(store.txn(txn).await.unwrap());
                }
            }));
        });
    });
    group.finish();
}

/// `writes` writes under `watched/`, each delivered to every one of `watchers` watchers; the
/// iteration ends when the last watcher has seen the last write.
async fn watched_writes(store: &Cluster, watchers: usize, writes: usize) {
    let from = store.set("watched/start", "x").await.unwrap() + 1;
    let leader = store.leader().await.unwrap();
    let node = store.handles().into_iter().find(|h| h.id() == leader).unwrap();
    let mut tasks = Vec::new();
    for _ in 0..watchers {
        let node = node.clone();
        tasks.push(tokio::spawn(async move {
            let mut next = from;
            let mut seen = 0;
            while seen < writes {
                let request = WatchRequest {
                    range: KeyRange::Prefix("watched/".into()),
                    from: next,
                    max_events: 1_000,
                };
                let batch = node.watch(request, Duration::from_secs(5)).await.unwrap();
                seen += batch.events.len();
                next = batch.progress + 1;
            }
        }));
    }
    fan_out(16, writes, |client, n| {
        let store = store.clone();
        async move {
            store.set(&format!("watched/{client}/{n}"), "v").await.unwrap();
        }
    })
    .await;
    for t in tasks {
        t.await.unwrap();
    }
}

fn watch_fan_out(c: &mut Criterion, rt: &Runtime, store: &Cluster) {
    let writes = 500;
    for watchers in [1usize, 100, 1_000, 10_000] {
        let mut group = c.benchmark_group(format!("coordination/watch_{watchers}_watchers"));
        group.throughput(Throughput::Elements((writes * watchers) as u64));
        group.sample_size(10);
        group.bench_function("writes_unwatched", |b| {
            b.iter(|| rt.block_on(watched_writes(store, 0, writes)));
        });
        group.bench_function("plus_quorum_writes_watched", |b| {
            b.iter(|| rt.block_on(watched_writes(store, watchers, writes)));
        });
        group.finish();
    }
}

fn benches(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let store = rt.block_on(cluster());
    keep_alives_and_transactions(c, &rt, &store);
    watch_fan_out(c, &rt, &store);
}

criterion_group!(coordination, benches);
criterion_main!(coordination);
