//! What an operator sees of running nodes: pushed status changes, counters, and the `metrics`
//! facade's series.
#![cfg(all(feature = "driver", feature = "metrics"))]

use std::time::Duration;

use bytes::Bytes;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use plus_quorum::{Cluster, Config, InProcessNetwork, MemStorage, NodeHandle, WriteOp};

fn start() -> (Cluster, Vec<NodeHandle>) {
    let net = InProcessNetwork::new();
    let handles: Vec<NodeHandle> = (1..=3u64)
        .map(|id| net.spawn(Config::new(id, vec![1, 2, 3]), MemStorage::new()).unwrap().handle)
        .collect();
    (Cluster::new(handles.clone()), handles)
}

fn set(key: &str) -> WriteOp {
    WriteOp::Set { key: key.into(), value: Bytes::from_static(b"v") }
}

#[tokio::test(start_paused = true)]
async fn status_changes_are_pushed_until_the_node_stops() {
    let (cluster, handles) = start();
    let mut status = handles[0].subscribe();
    let leader = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Some(leader) = status.borrow_and_update().leader {
                return leader;
            }
            status.changed().await.unwrap();
        }
    })
    .await
    .expect("node 1 learned of a leader");
    assert_eq!(Some(leader), cluster.leader().await);
    let before = status.borrow().commit;
    cluster.write(set("a")).await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), status.wait_for(|s| s.commit > before))
        .await
        .expect("the commit reached node 1")
        .unwrap();
    handles[0].stop().await;
    assert!(status.changed().await.is_err(), "a stopped node's status channel closes");
}

#[tokio::test(start_paused = true)]
async fn stats_count_elections_proposals_and_follower_lag() {
    let (cluster, handles) = start();
    for key in ["a", "b", "c"] {
        cluster.write(set(key)).await.unwrap();
    }
    let leader = cluster.leader().await.unwrap();
    let mut elections = 0;
    for handle in &handles {
        let stats = handle.stats().await.unwrap();
        elections += stats.elections_started;
        if handle.id() == leader {
            assert_eq!(stats.terms_led, 1);
            assert_eq!(stats.proposals, 3);
            let peers: Vec<u64> = stats.follower_lag.keys().copied().collect();
            assert_eq!(
                peers,
                handles.iter().map(NodeHandle::id).filter(|&id| id != leader).collect::<Vec<_>>()
            );
            assert_eq!(stats.pending_writes, 0);
        } else {
            assert_eq!(stats.proposals, 0);
            assert!(stats.follower_lag.is_empty(), "only a leader tracks followers");
            assert_eq!(stats.leader_changes, 1, "one leadership learned of");
        }
    }
    assert!(elections >= 1);
}

/// A series: its name, its labels and its value.
type Series = (String, Vec<(String, String)>, DebugValue);

#[test]
fn the_metrics_facade_carries_each_nodes_figures() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let leader = metrics::with_local_recorder(&recorder, || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (cluster, _handles) = start();
            for key in ["a", "b"] {
                cluster.write(set(key)).await.unwrap();
            }
            let leader = cluster.leader().await.unwrap();
            // Past the refresh interval, with a turn to record in.
            tokio::time::sleep(Duration::from_secs(2)).await;
            cluster.write(set("c")).await.unwrap();
            leader
        })
    });
    let series: Vec<Series> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let key = key.key();
            let labels = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            (key.name().to_owned(), labels, value)
        })
        .collect();
    let value = |name: &str, node: u64| {
        series
            .iter()
            .find(|(n, labels, _)| {
                n == name && labels.iter().any(|(k, v)| k == "node" && *v == node.to_string())
            })
            .map(|(_, _, value)| value)
            .unwrap_or_else(|| panic!("no {name} for node {node} in {series:?}"))
    };
    assert_eq!(value("plus_quorum_is_leader", leader), &DebugValue::Gauge(1.0.into()));
    assert!(
        matches!(value("plus_quorum_proposals_total", leader), DebugValue::Counter(n) if *n >= 2),
        "{series:?}"
    );
    assert!(series.iter().any(|(name, labels, _)| name == "plus_quorum_follower_lag"
        && labels.iter().any(|(k, _)| k == "peer")));
}
