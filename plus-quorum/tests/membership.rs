//! Membership changes, step by step, on a small deterministic network: learners, promotion,
//! removal, replacement, leadership transfer, removing the leader, restarts and
//! force-new-cluster. (The simulation runs the same changes at random among every fault.)

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::time::Duration;

use bytes::Bytes;
use plus_core::Timestamp;
use plus_quorum::{
    ClientError, ClientOutput, ClusterChange, ClusterChanged, Config, MemStorage, Membership,
    MembershipError, Node, NodeId, ReadOp, ReadResult, Response, Role, Start, WriteOp,
};

/// Nodes that deliver every message at once (unless cut off), ticking in 5 ms steps.
struct Net {
    now: Timestamp,
    nodes: BTreeMap<NodeId, (Node, MemStorage)>,
    cut: BTreeSet<NodeId>,
    outputs: Vec<ClientOutput>,
    next_request: u64,
}

fn config(id: NodeId, start: Start) -> Config {
    {
        let mut config = Config::new(id, vec![1, 2, 3]);
        config.start = start;
        config.snapshot_threshold = 20;
        config
    }
}

impl Net {
    fn new(voters: &[NodeId]) -> Self {
        let mut net = Self {
            now: Timestamp::ZERO,
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            outputs: Vec::new(),
            next_request: 1,
        };
        for &id in voters {
            let mut bootstrap = config(id, Start::Bootstrap);
            bootstrap.members = voters.to_vec();
            net.start(bootstrap);
        }
        net
    }

    fn start(&mut self, config: Config) {
        let id = config.id;
        let mut disk = self.nodes.remove(&id).map(|(_, d)| d).unwrap_or_default();
        let node = Node::new(config, &mut disk, self.now).unwrap();
        self.nodes.insert(id, (node, disk));
    }

    fn node(&self, id: NodeId) -> &Node {
        &self.nodes[&id].0
    }

    fn node_mut(&mut self, id: NodeId) -> &mut Node {
        &mut self.nodes.get_mut(&id).unwrap().0
    }

    fn leader(&self) -> Option<NodeId> {
        self.nodes
            .values()
            .filter(|(n, _)| n.is_leader() && !self.cut.contains(&n.id()))
            .max_by_key(|(n, _)| n.term())
            .map(|(n, _)| n.id())
    }

    /// Runs for `ms` of simulated time.
    fn run(&mut self, ms: u64) {
        let end = self.now + Duration::from_millis(ms);
        while self.now < end {
            self.now += Duration::from_millis(5);
            let mut queue = VecDeque::new();
            for (id, (node, disk)) in &mut self.nodes {
                node.tick(self.now);
                while let Some(batch) = node.poll_persist() {
                    batch.write_to(disk).unwrap();
                    node.persisted(batch.seq, self.now);
                }
                while let Some((to, msg)) = node.poll_message() {
                    queue.push_back((*id, to, msg));
                }
                self.outputs.extend(std::iter::from_fn(|| node.poll_output()));
            }
            while let Some((from, to, msg)) = queue.pop_front() {
                if self.cut.contains(&from) || self.cut.contains(&to) {
                    continue;
                }
                let Some((node, disk)) = self.nodes.get_mut(&to) else { continue };
                node.step(from, msg, self.now);
                while let Some(batch) = node.poll_persist() {
                    batch.write_to(disk).unwrap();
                    node.persisted(batch.seq, self.now);
                }
                while let Some((next, msg)) = node.poll_message() {
                    queue.push_back((to, next, msg));
                }
                self.outputs.extend(std::iter::from_fn(|| node.poll_output()));
            }
        }
    }

    fn until_leader(&mut self) -> NodeId {
        for _ in 0..400 {
            if let Some(l) = self.leader()
                && self.node(l).commit_index() == self.node(l).last_index()
            {
                return l;
            }
            self.run(5);
        }
        panic!("no leader: {:?}", self.nodes.values().map(|(n, _)| n).collect::<Vec<_>>());
    }

    fn request(&mut self) -> u64 {
        self.next_request += 1;
        self.next_request
    }

    /// Sends a change to the leader and runs until it is answered.
    fn change(&mut self, change: &ClusterChange) -> Result<Response, ClientError> {
        let leader = self.until_leader();
        let id = self.request();
        self.node_mut(leader).change_cluster(id, change)?;
        self.answer(id, 2_000).expect("the change is answered")
    }

    fn write(&mut self, key: &str, value: &str) -> Result<Response, ClientError> {
        let leader = self.until_leader();
        let id = self.request();
        let op = WriteOp::Set { key: key.into(), value: Bytes::from(value.to_owned()) };
        self.node_mut(leader).write(id, op)?;
        self.answer(id, 1_000).unwrap_or(Err(ClientError::Unknown))
    }

    fn answer(&mut self, id: u64, within_ms: u64) -> Option<Result<Response, ClientError>> {
        for _ in 0..within_ms / 5 {
            if let Some(at) = self.outputs.iter().position(|o| o.id == id) {
                return Some(self.outputs.remove(at).result);
            }
            self.run(5);
        }
        None
    }

    fn get(&mut self, key: &str) -> Option<Bytes> {
        let leader = self.until_leader();
        let id = self.request();
        self.node_mut(leader).read(id, ReadOp::Get(key.into())).unwrap();
        match self.answer(id, 1_000) {
            Some(Ok(Response::Read(ReadResult::Value(v)))) => v.map(|v| v.value),
            other => panic!("read answered {other:?}"),
        }
    }
}

fn membership(voters: &[NodeId], learners: &[NodeId]) -> Membership {
    let mut m = Membership::with_voters(voters.iter().copied());
    for &l in learners {
        m = m.after(&ClusterChange::AddLearner { id: l, address: None }).unwrap();
    }
    m
}

fn joiner(id: NodeId) -> Config {
    let mut config = config(id, Start::Join);
    config.members = vec![];
    config
}

#[test]
fn a_node_is_replaced_by_a_learner_promoted_while_writes_go_on() {
    let mut net = Net::new(&[1, 2, 3]);
    net.write("before", "1").unwrap();
    // The node that will replace 3 starts empty and knows nobody.
    net.start(joiner(4));
    assert_eq!(net.node(4).membership(), &Membership::default());
    let added = net.change(&ClusterChange::AddLearner { id: 4, address: None }).unwrap();
    assert!(matches!(
        added,
        Response::Cluster(ClusterChanged::Membership { membership: ref m, .. })
            if *m == membership(&[1, 2, 3], &[4])
    ));
    net.write("during", "2").unwrap();
    net.run(200);
    assert_eq!(net.node(4).local_get("before").map(|v| v.value.clone()), Some("1".into()));
    assert_eq!(net.node(4).membership(), &membership(&[1, 2, 3], &[4]), "learned from its log");
    net.change(&ClusterChange::Promote { id: 4 }).unwrap();
    net.change(&ClusterChange::Remove { id: 3 }).unwrap();
    net.run(100);
    for id in [1, 2, 4] {
        assert_eq!(net.node(id).membership(), &membership(&[1, 2, 4], &[]), "node {id}");
    }
    // 3 is gone for good: 1, 2 and 4 commit without it.
    net.nodes.remove(&3);
    net.write("after", "3").unwrap();
    assert_eq!(net.get("during"), Some("2".into()));
}

#[test]
fn a_learner_never_counts_toward_a_quorum() {
    let mut net = Net::new(&[1, 2, 3]);
    net.start(joiner(4));
    net.change(&ClusterChange::AddLearner { id: 4, address: None }).unwrap();
    let leader = net.until_leader();
    let others: Vec<NodeId> = [1, 2, 3].into_iter().filter(|&v| v != leader).collect();
    net.cut.extend(&others);
    let id = net.request();
    net.node_mut(leader)
        .write(id, WriteOp::Set { key: "k".into(), value: Bytes::from_static(b"v") })
        .unwrap();
    // The leader and the learner are not a majority of 3: nothing commits, and the learner
    // is sent committed entries only (so its log is never ahead of a candidate that could win).
    assert_eq!(net.answer(id, 400), None, "committed without a majority of the voters");
    assert!(net.node(leader).commit_index() < net.node(leader).last_index());
    assert!(net.node(4).last_index() <= net.node(leader).commit_index());
    // A learner never campaigns either, however long it hears nothing.
    net.cut.insert(leader);
    net.cut.remove(&4);
    net.run(3_000);
    assert_eq!(net.node(4).role(), Role::Follower);
}

#[test]
fn a_change_breaking_a_rule_is_refused_with_a_typed_error() {
    let mut net = Net::new(&[1, 2, 3]);
    let leader = net.until_leader();
    // A learner nobody has heard from cannot be promoted, however short the log.
    let id = net.request();
    net.node_mut(leader)
        .change_cluster(id, &ClusterChange::AddLearner { id: 9, address: None })
        .unwrap();
    net.run(50);
    let promote = net.request();
    let refused = net.node_mut(leader).change_cluster(promote, &ClusterChange::Promote { id: 9 });
    assert!(
        matches!(
            refused,
            Err(ClientError::Membership(MembershipError::LearnerBehind { id: 9, .. }))
        ),
        "{refused:?}"
    );
    // One change at a time: a second one while the first is uncommitted is refused.
    net.cut.extend([1, 2, 3].into_iter().filter(|&v| v != leader));
    let first = net.request();
    net.node_mut(leader).change_cluster(first, &ClusterChange::Remove { id: 9 }).unwrap();
    let second = net
        .node_mut(leader)
        .change_cluster(first + 1, &ClusterChange::AddLearner { id: 10, address: None });
    assert!(
        matches!(second, Err(ClientError::Membership(MembershipError::ChangeInFlight { .. }))),
        "{second:?}"
    );
    net.cut.clear();
    net.run(100);
    for (change, expected) in [
        (ClusterChange::Promote { id: 7 }, MembershipError::NotALearner { id: 7 }),
        (ClusterChange::Remove { id: 7 }, MembershipError::NotAMember { id: 7 }),
        (
            ClusterChange::AddLearner { id: 2, address: None },
            MembershipError::AlreadyMember { id: 2 },
        ),
        (ClusterChange::TransferLeadership { to: 7 }, MembershipError::NotAVoter { id: 7 }),
    ] {
        assert_eq!(net.change(&change), Err(ClientError::Membership(expected)));
    }
    // Followers refuse, with the leader's name.
    let follower = [1, 2, 3].into_iter().find(|&v| v != net.until_leader()).unwrap();
    let leader = net.until_leader();
    let refused = net.node_mut(follower).change_cluster(99, &ClusterChange::Remove { id: 1 });
    assert_eq!(refused, Err(ClientError::NotLeader { leader: Some(leader) }));
}

#[test]
fn leadership_moves_to_a_named_voter_and_a_transfer_to_an_unreachable_one_gives_up() {
    let mut net = Net::new(&[1, 2, 3]);
    let leader = net.until_leader();
    let target = [1, 2, 3].into_iter().find(|&v| v != leader).unwrap();
    let asked = net.now;
    let done = net.change(&ClusterChange::TransferLeadership { to: target }).unwrap();
    assert_eq!(done, Response::Cluster(ClusterChanged::LeadershipTransferred { to: target }));
    assert_eq!(net.leader(), Some(target));
    let took = net.now.saturating_duration_since(asked);
    assert!(took < Duration::from_millis(300), "took {took:?}, an election timeout or more");
    // To a voter cut off: writes are refused meanwhile, then the leader gives up and goes on.
    let other = [1, 2, 3].into_iter().find(|&v| v != target).unwrap();
    net.cut.insert(other);
    let id = net.request();
    net.node_mut(target)
        .change_cluster(id, &ClusterChange::TransferLeadership { to: other })
        .unwrap();
    let write = net.node_mut(target).write(id + 1, WriteOp::Delete { key: "k".into() });
    assert_eq!(write, Err(ClientError::NotLeader { leader: None }));
    let gave_up = net.answer(id, 1_000);
    assert_eq!(
        gave_up,
        Some(Err(ClientError::Membership(MembershipError::TransferTimedOut { to: other })))
    );
    assert_eq!(net.leader(), Some(target));
    net.write("k", "v").unwrap();
}

#[test]
fn a_removed_leader_steps_down_at_once_and_cannot_disturb_the_rest() {
    let mut net = Net::new(&[1, 2, 3]);
    let old = net.until_leader();
    net.write("k", "v").unwrap();
    let asked = net.now;
    net.change(&ClusterChange::Remove { id: old }).unwrap();
    // The others elect a leader without waiting for an election timeout: told to campaign.
    let new = net.until_leader();
    assert_ne!(new, old);
    let took = net.now.saturating_duration_since(asked);
    assert!(took < Duration::from_millis(300), "took {took:?}");
    assert_ne!(net.node(old).role(), Role::Leader);
    // The removed node keeps running, cut off from the leader's heartbeats: it neither
    // campaigns nor moves anyone's term.
    let term = net.node(new).term();
    net.run(5_000);
    assert_eq!(net.leader(), Some(new));
    assert_eq!(net.node(new).term(), term, "the removed node disturbed the cluster");
    assert_eq!(net.get("k"), Some("v".into()));
}

#[test]
fn a_node_removed_while_cut_off_cannot_disturb_the_cluster_when_it_comes_back() {
    let mut net = Net::new(&[1, 2, 3]);
    let leader = net.until_leader();
    let gone = [1, 2, 3].into_iter().find(|&v| v != leader).unwrap();
    // It never hears of its removal: it still believes it votes, and its timer runs out.
    net.cut.insert(gone);
    net.change(&ClusterChange::Remove { id: gone }).unwrap();
    net.write("k", "v").unwrap();
    net.run(2_000);
    net.cut.clear();
    let current = net.until_leader();
    let term = net.node(current).term();
    // Back on the network, its pre-votes are refused (the others hear their leader) and its
    // log lacks its removal: the cluster's term never moves.
    net.run(5_000);
    let leader = net.until_leader();
    assert_ne!(leader, gone);
    assert_eq!(net.node(leader).term(), term, "the removed node disturbed the cluster");
    assert_eq!(net.get("k"), Some("v".into()));
}

#[test]
fn a_restarted_node_knows_the_membership_from_its_log_and_snapshot() {
    let mut net = Net::new(&[1, 2, 3]);
    net.start(joiner(4));
    net.change(&ClusterChange::AddLearner { id: 4, address: None }).unwrap();
    net.change(&ClusterChange::Promote { id: 4 }).unwrap();
    // Enough writes for every node to snapshot past the changes (threshold 20).
    for i in 0..80 {
        net.write(&format!("k{i}"), "v").unwrap();
    }
    net.run(100);
    let expected = membership(&[1, 2, 3, 4], &[]);
    for id in [1, 4] {
        // Restarted with its storage, told only the members the cluster started with.
        net.start(config(id, Start::Rejoin));
        assert_eq!(net.node(id).membership(), &expected, "node {id} after a restart");
    }
    net.run(100);
    net.write("after", "restart").unwrap();
}

#[test]
fn force_new_cluster_rebuilds_one_node_from_a_survivor_that_grows_again() {
    let mut net = Net::new(&[1, 2, 3]);
    net.write("k", "kept").unwrap();
    let survivor = net.until_leader();
    // A majority is gone for good.
    for id in [1, 2, 3] {
        if id != survivor {
            net.nodes.remove(&id);
        }
    }
    net.start(config(survivor, Start::ForceNewCluster));
    assert_eq!(net.node(survivor).membership(), &membership(&[survivor], &[]));
    assert_eq!(net.until_leader(), survivor);
    assert_eq!(net.get("k"), Some("kept".into()));
    net.write("k2", "new").unwrap();
    net.start(joiner(7));
    net.change(&ClusterChange::AddLearner { id: 7, address: None }).unwrap();
    net.run(200);
    net.change(&ClusterChange::Promote { id: 7 }).unwrap();
    assert_eq!(net.node(7).local_get("k2").map(|v| v.value.clone()), Some("new".into()));
    // Restarted, the survivor still knows the new cluster.
    net.start(config(survivor, Start::Rejoin));
    assert_eq!(net.node(survivor).membership(), &membership(&[survivor, 7], &[]));
}
