//! A peer that is not a member, speaking to honest nodes with any sender id outside the
//! cluster, any term and any state: no acknowledged write is lost, and once it stops the
//! honest members elect a leader and commit again.
//!
//! What the core alone cannot refuse is named here too: a well-formed append or snapshot in a
//! plausible term from a node that claims to lead it is how Raft replicates, and a core has no
//! way to tell it from a forgery. Keeping those out is the transport's job (roles bound to
//! credentials, `tests/roles.rs`); this test gives the adversary every other message, and
//! appends and snapshots only in terms no honest leader can have or with contents that
//! contradict themselves, which the core must drop.

use std::collections::BTreeMap;

use bytes::Bytes;
use plus_core::Timestamp;
use plus_quorum::{
    Config, Entry, KvState, MemStorage, Message, Node, NodeId, Payload, Snapshot, WriteOp,
};
use proptest::prelude::*;

const MEMBERS: [NodeId; 3] = [1, 2, 3];
const STEP_MS: u64 = 10;

struct Cluster {
    nodes: Vec<(Node, MemStorage)>,
    now: u64,
    next_request: u64,
    /// Acknowledged writes: key -> value.
    acknowledged: BTreeMap<String, String>,
    /// Writes waiting for their answer: request id -> (leader index, key, value).
    waiting: BTreeMap<u64, (usize, String, String)>,
}

impl Cluster {
    fn new() -> Self {
        let nodes = MEMBERS
            .iter()
            .map(|&id| {
                let mut disk = MemStorage::new();
                let node = Node::new(Config::new(id, MEMBERS.to_vec()), &mut disk, Timestamp::ZERO)
                    .unwrap();
                (node, disk)
            })
            .collect();
        Self {
            nodes,
            now: 0,
            next_request: 1,
            acknowledged: BTreeMap::new(),
            waiting: BTreeMap::new(),
        }
    }

    fn at(&self) -> Timestamp {
        Timestamp::from_millis(self.now)
    }

    /// One round: every node's writes made durable, its messages delivered, its answers read,
    /// then time moves on.
    fn round(&mut self) {
        let now = self.at();
        let mut mail = Vec::new();
        for (node, disk) in &mut self.nodes {
            while let Some(batch) = node.poll_persist() {
                batch.write_to(disk).unwrap();
                node.persisted(batch.seq, now);
            }
            while let Some((to, msg)) = node.poll_message() {
                mail.push((node.id(), to, msg));
            }
        }
        for (from, to, msg) in mail {
            if let Some((node, _)) = self.nodes.iter_mut().find(|(n, _)| n.id() == to) {
                node.step(from, msg, now);
            }
        }
        for (node, _) in &mut self.nodes {
            while let Some(output) = node.poll_output() {
                if let Some((_, key, value)) = self.waiting.remove(&output.id)
                    && output.result.is_ok()
                {
                    self.acknowledged.insert(key, value);
                }
            }
            node.tick(now);
        }
        self.now += STEP_MS;
    }

    fn leader(&self) -> Option<usize> {
        self.nodes.iter().position(|(n, _)| n.is_leader())
    }

    fn write(&mut self, key: &str, value: &str) {
        let Some(at) = self.leader() else { return };
        let id = self.next_request;
        self.next_request += 1;
        let op = WriteOp::Set { key: key.to_owned(), value: Bytes::from(value.to_owned()) };
        if self.nodes[at].0.write(id, op).is_ok() {
            self.waiting.insert(id, (at, key.to_owned(), value.to_owned()));
        }
    }

    /// Rounds until a leader is elected and has committed in its term, at most `ms`.
    fn settle(&mut self, ms: u64) -> bool {
        let until = self.now + ms;
        while self.now < until {
            self.round();
            if self.leader().is_some() && self.waiting.is_empty() {
                let probe = format!("probe-{}", self.now);
                self.write(&probe, "p");
                for _ in 0..50 {
                    self.round();
                }
                if self.acknowledged.contains_key(&probe) {
                    return true;
                }
            }
        }
        false
    }
}

/// What the adversary sends: any sender outside the cluster, any message the core must not be
/// hurt by.
fn attack() -> impl Strategy<Value = (usize, NodeId, Message)> {
    let outsider = prop_oneof![4..100u64, any::<u64>().prop_filter("not a member", |id| *id > 3)];
    let term = prop_oneof![0..20u64, any::<u64>(), Just(u64::MAX), Just(u64::MAX - 1)];
    let far = prop_oneof![1_000_001..u64::MAX, Just(u64::MAX)];
    let message = prop_oneof![
        (term.clone(), any::<u64>(), any::<u64>()).prop_map(|(term, last_index, last_term)| {
            Message::Vote { term, last_index, last_term }
        }),
        (term.clone(), any::<u64>(), any::<u64>()).prop_map(|(term, last_index, last_term)| {
            Message::PreVote { term, last_index, last_term }
        }),
        (term.clone(), any::<bool>())
            .prop_map(|(term, granted)| Message::VoteReply { term, granted }),
        (term.clone(), any::<bool>())
            .prop_map(|(term, granted)| Message::PreVoteReply { term, granted }),
        (term.clone(), any::<bool>(), any::<u64>(), any::<u64>(), any::<bool>()).prop_map(
            |(term, success, match_index, read_seq, recovering)| Message::AppendReply {
                term,
                success,
                match_index,
                read_seq,
                recovering,
            }
        ),
        term.clone().prop_map(|term| Message::TimeoutNow { term }),
        // Appends and snapshots a core must refuse alone: from a term no honest leader has...
        (far.clone(), 0..5u64, 0..5u64).prop_map(|(term, prev_index, commit)| Message::Append {
            term,
            prev_index,
            prev_term: 0,
            entries: vec![Entry { term: 1, index: prev_index + 1, payload: Payload::Noop }],
            commit,
            read_seq: 0,
        }),
        far.prop_map(|term| snapshot(term, term)),
        // ... or contradicting themselves in a plausible term.
        (1..20u64, 0..5u64, 2..5u64).prop_map(|(term, prev_index, gap)| Message::Append {
            term,
            prev_index,
            prev_term: 0,
            entries: vec![Entry { term, index: prev_index + gap, payload: Payload::Noop }],
            commit: prev_index + gap,
            read_seq: 0,
        }),
        (1..20u64).prop_map(|term| snapshot(term, term + 1)),
    ];
    (0..MEMBERS.len(), outsider, message)
}

fn snapshot(term: u64, last_term: u64) -> Message {
    Message::Snapshot {
        term,
        snapshot: Box::new(Snapshot {
            last_index: 1 << 30,
            last_term,
            state: KvState::default(),
            membership: None,
        }),
        commit: 1 << 30,
        read_seq: 0,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn an_outsider_loses_no_acknowledged_write_and_cannot_stop_elections(
        attacks in prop::collection::vec(attack(), 1..40),
        writes_between in 0..3usize,
    ) {
        let mut cluster = Cluster::new();
        prop_assert!(cluster.settle(5_000), "no leader before the attack");
        for i in 0..5 {
            cluster.write(&format!("before-{i}"), "acknowledged");
        }
        for _ in 0..50 {
            cluster.round();
        }
        let before = cluster.acknowledged.len();
        prop_assert!(before >= 5);
        for (i, (to, from, msg)) in attacks.into_iter().enumerate() {
            let now = cluster.at();
            cluster.nodes[to].0.step(from, msg, now);
            for _ in 0..writes_between {
                cluster.write(&format!("during-{i}"), "maybe");
                cluster.round();
            }
        }
        prop_assert!(cluster.settle(30_000), "no leader committed within 30 s after the attack");
        let (leader, _) = &cluster.nodes[cluster.leader().expect("settled")];
        for (key, value) in &cluster.acknowledged {
            let stored = leader.local_get(key).map(|v| v.value.clone());
            prop_assert_eq!(stored, Some(Bytes::from(value.clone())), "{} lost", key);
        }
        for (node, _) in &cluster.nodes {
            prop_assert!(node.term() < u64::MAX, "a term reached its end");
        }
    }
}
