//! A watcher over plus-mux that knows only a follower finds the leader through it and gets its
//! events, as a client's writes do. Before, the watcher noted the leader it was told of, could
//! not reach it, and asked the nodes it knew again until its deadline: after a member was
//! replaced and the new one led, a watch made with the old addresses never moved again.
#![cfg(all(feature = "mux", feature = "testing"))]

use std::time::Duration;

use plus_quorum::testing::loopback_addrs;
use plus_quorum::{
    Cluster, Config, KeyRange, MemStorage, MuxConfig, MuxNode, RemoteNode, Role, Security,
};

#[tokio::test]
async fn a_watcher_that_knows_only_a_follower_finds_the_leader() {
    let ids = [1u64, 2, 3];
    let addrs = loopback_addrs(&ids).await.unwrap();
    let mut nodes = Vec::new();
    for id in ids {
        let config = Config::new(id, ids.to_vec());
        nodes.push(
            MuxNode::start(config, MemStorage::new(), &addrs, MuxConfig::default()).await.unwrap(),
        );
    }
    let everyone: Vec<RemoteNode> = ids
        .iter()
        .map(|id| RemoteNode::connect(*id, &addrs[id], &MuxConfig::default()).unwrap())
        .collect();
    let mut writer = Cluster::new(everyone);
    writer.deadline = Duration::from_secs(10);
    writer.set("w/first", "1").await.unwrap();
    let mut leader = None;
    for node in &nodes {
        if node.handle.status().await.unwrap().role == Role::Leader {
            leader = Some(node.handle.status().await.unwrap().id);
        }
    }
    let leader = leader.expect("a leader");
    let follower = ids.into_iter().find(|&id| id != leader).unwrap();

    let only = RemoteNode::connect(follower, &addrs[&follower], &MuxConfig::default()).unwrap();
    let mut one = Cluster::new(vec![only])
        .with_connector(RemoteNode::connector(MuxConfig::default(), Security::Plain));
    one.deadline = Duration::from_secs(5);
    let mut watcher = one.watch(KeyRange::Prefix("w/".into()), 1);
    let batch = tokio::time::timeout(Duration::from_secs(10), watcher.next()).await;
    for node in &nodes {
        node.stop().await;
    }
    let batch = batch.expect("no answer within 10 s").expect("the watch failed");
    let keys: Vec<&str> = batch.events.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["w/first"]);
}
