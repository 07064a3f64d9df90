//! The simulation's workload and checks, run through the tokio driver (real tasks, paused
//! time) with the in-process transport: partitions, stops and restarts (memory wiped or kept),
//! concurrent clients through `Cluster`, every history checked for linearizability.
#![cfg(feature = "driver")]

mod sim;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plus_core::seeded_rng;
use plus_quorum::{
    Cluster, Config, Expect, InProcessNetwork, MemStorage, NodeHandle, ReadOp, Response, Start,
    WriteOp, compare,
};
use rand::Rng;
use sim::{
    History, LINEARIZABILITY_BUDGET, MapSpec, ModelOp, ModelRet, Request, Verdict, group_of,
};

type Testers = Arc<Mutex<BTreeMap<String, History<MapSpec>>>>;

fn start_node(
    id: u64,
    start: Start,
    storage: MemStorage,
    net: &Arc<InProcessNetwork>,
) -> NodeHandle {
    let config = {
        let mut config = Config::new(id, vec![1, 2, 3]);
        config.start = start;
        config.seed = id * 31;
        config
    };
    net.spawn(config, storage).unwrap().handle
}

fn random_op(rng: &mut impl Rng, client: usize, n: usize) -> Request {
    let value = bytes::Bytes::from(format!("c{client}-{n}"));
    let key = ["a", "b"][rng.random_range(0..2)].to_owned();
    match rng.random_range(0..6) {
        0 | 1 => Request::Write(WriteOp::Set { key, value }),
        2 => Request::Read(ReadOp::Get(key)),
        3 => Request::Write(WriteOp::CompareAndSet { key, expect: Expect::Absent, value }),
        4 => Request::Write(WriteOp::MultiSet(vec![
            ("m0".into(), value.clone()),
            ("m1".into(), value),
        ])),
        _ => Request::Read(ReadOp::MultiGet(vec!["m0".into(), "m1".into()])),
    }
}

async fn client(
    id: usize,
    cluster: Cluster,
    testers: Testers,
    seed: u64,
    until: tokio::time::Instant,
) {
    let mut rng = seeded_rng(seed ^ (id as u64 * 7919));
    let mut thread = id as u64 * 1_000_000;
    let mut n = 0;
    while tokio::time::Instant::now() < until {
        n += 1;
        let op = random_op(&mut rng, id, n);
        let group = group_of(&op).expect("the driver workload has no lease operations");
        testers
            .lock()
            .unwrap()
            .entry(group.clone())
            .or_default()
            .invoke(thread, ModelOp::Client(op.clone()))
            .unwrap();
        let response = match op {
            Request::Write(w) => cluster.write(w).await.map(Response::Write),
            Request::Read(r) => cluster.read(r).await.map(Response::Read),
        };
        let ret = response.ok().map(|response| ModelRet::observed(&response));
        match ret {
            Some(ret) => {
                testers.lock().unwrap().get_mut(&group).unwrap().ret(thread, ret).unwrap();
            }
            // Unknown outcome (timeout, leadership lost, node stopped): this thread retires.
            None => thread += 1,
        }
        tokio::time::sleep(Duration::from_millis(rng.random_range(1..20))).await;
    }
}

async fn run(seed: u64) {
    let mut rng = seeded_rng(seed);
    let net = InProcessNetwork::new();
    let storages: Vec<MemStorage> = (0..3).map(|_| MemStorage::new()).collect();
    let handles: Vec<NodeHandle> = (1..=3)
        .map(|id| start_node(id, Start::Bootstrap, storages[id as usize - 1].clone(), &net))
        .collect();
    let mut cluster = Cluster::new(handles);
    cluster.deadline = Duration::from_secs(1);
    let testers: Testers = Arc::default();
    let until = tokio::time::Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..3)
        .map(|c| tokio::spawn(client(c, cluster.clone(), testers.clone(), seed, until)))
        .collect();
    // Faults, one node at a time: isolate, or stop and restart (wiped or kept).
    let mut storages = storages;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(rng.random_range(200..800))).await;
        // At most one node unavailable at a time, and a wiped node counts until it has caught
        // up: with two of three wiped the store (rightly) refuses to go on.
        let mut recovering = true;
        while recovering && tokio::time::Instant::now() < until {
            recovering = false;
            for h in cluster.handles() {
                recovering |= h.status().await.is_ok_and(|s| s.recovering);
            }
            if recovering {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        let victim = rng.random_range(1..=3u64);
        if rng.random_bool(0.5) {
            net.isolate(victim);
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..700))).await;
            let handle = cluster.handles().into_iter().find(|h| h.id() == victim).unwrap();
            net.register(handle);
        } else {
            let handle = cluster.handles().into_iter().find(|h| h.id() == victim).unwrap();
            handle.stop().await;
            net.isolate(victim);
            tokio::time::sleep(Duration::from_millis(rng.random_range(100..700))).await;
            if rng.random_bool(0.5) {
                storages[victim as usize - 1] = MemStorage::new();
            }
            let restarted =
                start_node(victim, Start::Rejoin, storages[victim as usize - 1].clone(), &net);
            cluster.replace(restarted);
        }
    }
    for c in clients {
        c.await.unwrap();
    }
    // Healed: a leader, and every replica identical.
    let mut identical = false;
    for _ in 0..200 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let mut reports = Vec::new();
        for h in cluster.handles() {
            reports.push(h.inspect().await.unwrap());
        }
        if compare(&reports).identical()
            && reports.iter().all(|r| !r.recovering)
            && cluster.leader().await.is_some()
        {
            identical = true;
            break;
        }
    }
    assert!(identical, "seed {seed}: replicas did not converge after healing");
    for (group, tester) in testers.lock().unwrap().iter() {
        let verdict = tester.check(&MapSpec::default(), LINEARIZABILITY_BUDGET);
        assert_eq!(
            verdict,
            Verdict::Linearizable,
            "seed {seed}: history of `{group}` ({} ops)",
            tester.len()
        );
    }
}

#[test]
fn driver_simulation_under_faults_stays_linearizable() {
    for seed in sim::seeds(4) {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(run(seed));
    }
}
