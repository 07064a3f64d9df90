//! The quorum store through its tokio driver, beside openraft (with openraft-memstore) set up the
//! same way: 3 nodes in one process, in-memory, an in-process network; 1, 64 and 256 concurrent
//! clients.
#![allow(missing_docs)] // criterion_group! generates an undocumented public function

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft_memstore::{ClientRequest, MemStore, TypeConfig};
use plus_quorum::{Cluster, Config, InProcessNetwork, MemStorage, ReadOp, WriteOp, spawn_node};
use tokio::runtime::Runtime;

#[path = "common/fan_out.rs"]
mod fan_out;
use fan_out::fan_out;

type ORaft = openraft::Raft<TypeConfig>;

/// openraft's in-process network: direct calls into the target node.
#[derive(Clone, Default)]
struct Router(Arc<RwLock<BTreeMap<u64, ORaft>>>);

struct Net {
    router: Router,
    target: u64,
}

impl Net {
    fn raft(&self) -> Result<ORaft, NetworkError> {
        self.router
            .0
            .read()
            .unwrap()
            .get(&self.target)
            .cloned()
            .ok_or_else(|| NetworkError::new(&std::io::Error::other("no such node")))
    }
}

impl RaftNetworkFactory<TypeConfig> for Router {
    type Network = Net;
    async fn new_client(&mut self, target: u64, _node: &()) -> Net {
        Net { router: self.clone(), target }
    }
}

impl RaftNetwork<TypeConfig> for Net {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, (), RaftError<u64>>> {
        let raft = self.raft().map_err(RPCError::Network)?;
        raft.append_entries(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<u64>, RPCError<u64, (), RaftError<u64, InstallSnapshotError>>>
    {
        let raft = self.raft().map_err(RPCError::Network)?;
        raft.install_snapshot(rpc)
            .await
            .map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        _option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, (), RaftError<u64>>> {
        let raft = self.raft().map_err(RPCError::Network)?;
        raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

async fn openraft_leader() -> ORaft {
    let config = Arc::new(
        openraft::Config {
            heartbeat_interval: 50,
            election_timeout_min: 300,
            election_timeout_max: 600,
            ..Default::default()
        }
        .validate()
        .unwrap(),
    );
    let router = Router::default();
    for id in 1..=3u64 {
        let store = MemStore::new_async().await;
        let (log, sm) = openraft::storage::Adaptor::new(store);
        let raft = ORaft::new(id, config.clone(), router.clone(), log, sm).await.unwrap();
        router.0.write().unwrap().insert(id, raft);
    }
    let first = router.0.read().unwrap()[&1].clone();
    first.initialize(BTreeSet::from([1u64, 2, 3])).await.unwrap();
    loop {
        if let Some(leader) = first.metrics().borrow().current_leader {
            return router.0.read().unwrap()[&leader].clone();
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn plus_cluster() -> Cluster {
    let net = InProcessNetwork::new();
    let mut handles = Vec::new();
    for id in 1..=3u64 {
        let node =
            spawn_node(Config::new(id, vec![1, 2, 3]), MemStorage::new(), net.clone()).unwrap();
        net.register(node.handle.clone());
        handles.push(node.handle);
    }
    let cluster = Cluster::new(handles);
    cluster
        .write(WriteOp::Set { key: "warm".into(), value: Bytes::from_static(b"up") })
        .await
        .unwrap();
    cluster
}

fn benches(c: &mut Criterion) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (openraft, plus) = rt.block_on(async { (openraft_leader().await, plus_cluster().await) });
    for clients in [1usize, 64, 256] {
        let total = if clients == 1 { 500 } else { 4_000 };
        let load = Load { rt: &rt, clients, total };
        load.side_by_side(
            c,
            &format!("quorum_driver/writes_c{clients}"),
            |client, n| {
                let raft = openraft.clone();
                async move {
                    let status = "deployed".to_owned();
                    let request =
                        ClientRequest { client: format!("c{client}"), serial: n as u64, status };
                    raft.client_write(request).await.unwrap();
                }
            },
            |client, n| {
                let cluster = plus.clone();
                async move {
                    let key = format!("c{client}/{}", n % 64);
                    cluster
                        .write(WriteOp::Set { key, value: Bytes::from_static(b"deployed") })
                        .await
                        .unwrap();
                }
            },
        );
        load.side_by_side(
            c,
            &format!("quorum_driver/reads_c{clients}"),
            |_, _| {
                let raft = openraft.clone();
                async move {
                    raft.ensure_linearizable().await.unwrap();
                }
            },
            |_, _| {
                let cluster = plus.clone();
                async move {
                    cluster.read(ReadOp::Get("warm".into())).await.unwrap();
                }
            },
        );
    }
    over_mux(c, &rt, &plus);
}

/// `total` calls over `clients` concurrent tasks, per iteration.
struct Load<'a> {
    rt: &'a Runtime,
    clients: usize,
    total: usize,
}

impl Load<'_> {
    /// One group: openraft's call beside ours, the same load for both.
    fn side_by_side<F1, Fut1, F2, Fut2>(
        &self,
        c: &mut Criterion,
        name: &str,
        openraft: F1,
        plus: F2,
    ) where
        F1: Fn(usize, usize) -> Fut1,
        Fut1: std::future::Future<Output = ()> + Send + 'static,
        F2: Fn(usize, usize) -> Fut2,
        Fut2: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut group = c.benchmark_group(name);
        group.throughput(Throughput::Elements(self.total as u64));
        group.sample_size(10);
        group.bench_function("openraft_memstore", |b| {
            b.iter(|| self.rt.block_on(fan_out(self.clients, self.total, &openraft)));
        });
        group.bench_function("plus_quorum", |b| {
            b.iter(|| self.rt.block_on(fan_out(self.clients, self.total, &plus)));
        });
        group.finish();
    }
}

async fn mux_write<N: plus_quorum::NodeApi>(cluster: Cluster<N>, client: usize, n: usize) {
    let op = WriteOp::Set { key: format!("c{client}/{}", n % 64), value: Bytes::from_static(b"x") };
    cluster.write(op).await.unwrap();
}

/// The same store with its nodes and clients talking over plus-mux on loopback TCP.
fn over_mux(c: &mut Criterion, rt: &Runtime, in_process: &Cluster) {
    use plus_quorum::testing::loopback_addrs;
    use plus_quorum::{MuxNode, RemoteNode};
    let (_nodes, remote) = rt.block_on(async {
        let members = vec![1u64, 2, 3];
        let addrs = loopback_addrs(&members).await.unwrap();
        let mut nodes = Vec::new();
        for &id in &members {
            let config = Config::new(id, members.clone());
            let mux = plus_mux::Config::default();
            nodes.push(MuxNode::start(config, MemStorage::new(), &addrs, mux).await.unwrap());
        }
        let remotes: Vec<RemoteNode> = members
            .iter()
            .map(|&id| {
                RemoteNode::connect(id, &addrs[&id], &plus_mux::Config::default())
                    .expect("the default mux config is valid")
            })
            .collect();
        let remote = Cluster::new(remotes);
        remote
            .write(WriteOp::Set { key: "warm".into(), value: Bytes::from_static(b"up") })
            .await
            .unwrap();
        (nodes, remote)
    });
    let (clients, total) = (64, 4_000);
    let mut group = c.benchmark_group("quorum_mux/writes_c64");
    group.throughput(Throughput::Elements(total as u64));
    group.sample_size(10);
    group.bench_function("plus_quorum_in_process", |b| {
        b.iter(|| {
            rt.block_on(fan_out(clients, total, |client, n| {
                mux_write(in_process.clone(), client, n)
            }));
        });
    });
    group.bench_function("plus_quorum_over_mux", |b| {
        b.iter(|| {
            rt.block_on(fan_out(clients, total, |client, n| mux_write(remote.clone(), client, n)));
        });
    });
    group.finish();
}

criterion_group!(quorum_driver, benches);
criterion_main!(quorum_driver);
