//! The consensus core: Raft-style elections, replication, commit, ReadIndex reads, snapshots, and
//! the wiped-node rule. Sans-IO: no clock, no sockets, no threads; time and randomness come in.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use plus_core::{SeededRng, Timestamp, seeded_rng};
use rand::Rng;

use crate::kv::KvState;
use crate::log::{Entry, Payload, RaftLog, Snapshot};
use crate::message::Message;
use crate::persist::{PersistBatch, Persistence};
use crate::storage::{HardState, Storage, StorageError};
use crate::types::{
    ClientError, ClientOutput, LogIndex, NodeId, ReadOp, RequestId, Response, Term, Versioned,
    WriteOp,
};

/// How a node starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Start {
    /// Part of a new cluster whose members all start empty.
    #[default]
    Bootstrap,
    /// A member coming back. If its storage is empty (memory wiped), it is *recovering*: it does
    /// not vote, campaign or count toward any quorum until a leader has committed an entry since
    /// its return and it holds the log up to that entry.
    Rejoin,
}

/// Test-only faults that break the protocol on purpose, to show the simulation catches them.
#[cfg(plus_planted_bugs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlantedBugs {
    /// A wiped node votes at once (ignores the recovering rule).
    pub wiped_node_votes: bool,
    /// The leader answers reads from memory without quorum confirmation.
    pub read_without_quorum: bool,
    /// The leader commits on its own write alone.
    pub commit_without_majority: bool,
}

/// Node settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// Every member, this node included (static membership).
    pub members: Vec<NodeId>,
    /// Base election timeout; each wait is random in `[t, 2t)`. Default 300 ms.
    pub election_timeout: Duration,
    /// Leader heartbeat interval. Default 50 ms.
    pub heartbeat_interval: Duration,
    /// Most entries in one append message. Default 512.
    pub max_entries_per_message: usize,
    /// Snapshot (and drop the log before it) once this many entries are applied past the last
    /// snapshot. Default 10,000.
    pub snapshot_threshold: u64,
    /// How this node starts. Default [`Start::Bootstrap`].
    pub start: Start,
    /// Seeds the node's RNG (its election timer's jitter). Default: mixed from `id`, so that the
    /// nodes of one cluster differ; set it for a reproducible run.
    pub seed: u64,
    /// Planted faults (test builds only).
    #[cfg(plus_planted_bugs)]
    pub bugs: PlantedBugs,
}

impl Config {
    /// Defaults for node `id` of `members`.
    #[must_use]
    pub fn new(id: NodeId, members: Vec<NodeId>) -> Self {
        Self {
            id,
            members,
            election_timeout: Duration::from_millis(300),
            heartbeat_interval: Duration::from_millis(50),
            max_entries_per_message: 512,
            snapshot_threshold: 10_000,
            start: Start::Bootstrap,
            seed: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed,
            #[cfg(plus_planted_bugs)]
            bugs: PlantedBugs::default(),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.members.contains(&self.id) {
            return Err(ConfigError::NotAMember { id: self.id, members: self.members.clone() });
        }
        let unique: HashSet<_> = self.members.iter().collect();
        if unique.len() != self.members.len() {
            return Err(ConfigError::DuplicateMember);
        }
        if self.heartbeat_interval >= self.election_timeout {
            return Err(ConfigError::HeartbeatNotShorterThanElection {
                heartbeat: self.heartbeat_interval,
                election: self.election_timeout,
            });
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::Zero("max_entries_per_message"));
        }
        if self.snapshot_threshold == 0 {
            return Err(ConfigError::Zero("snapshot_threshold"));
        }
        Ok(())
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The node is not among the members.
    #[error("node {id} is not among the members {members:?}")]
    NotAMember {
        /// The node.
        id: NodeId,
        /// The members given.
        members: Vec<NodeId>,
    },
    /// A member is listed twice.
    #[error("members are listed twice")]
    DuplicateMember,
    /// Followers would call elections while the leader is alive.
    #[error(
        "heartbeat_interval ({heartbeat:?}) must be shorter than election_timeout ({election:?})"
    )]
    HeartbeatNotShorterThanElection {
        /// The heartbeat interval given.
        heartbeat: Duration,
        /// The election timeout given.
        election: Duration,
    },
    /// A setting that must be positive is zero.
    #[error("`{0}` must be positive")]
    Zero(&'static str),
}

/// A node's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum Role {
    /// Follows a leader (or waits for one).
    Follower,
    /// Asking whether it would get votes (pre-vote), before starting a new term.
    PreCandidate,
    /// Asking for votes.
    Candidate,
    /// Leads its term.
    Leader,
}

/// Why a node could not start.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Bad configuration.
    #[error("invalid config: {0}")]
    Config(#[from] ConfigError),
    /// Storage could not be read.
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// What a node reports for inspection (talk 002).
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Inspection {
    /// The node.
    pub node: NodeId,
    /// Its term.
    pub term: Term,
    /// Its applied index.
    pub applied: LogIndex,
    /// SHA-256 of its map.
    pub digest: [u8; 32],
    /// Whether it is still recovering after a wipe.
    pub recovering: bool,
}

struct PendingRead {
    seq: u64,
    read_index: LogIndex,
    id: RequestId,
    op: ReadOp,
}

struct Peer {
    next: LogIndex,
    matched: LogIndex,
    acked_seq: u64,
    recovering: bool,
    last_contact: Option<Timestamp>,
    /// New entries or a read round to send.
    dirty: bool,
}

/// One member of the replicated store (sans-IO).
///
/// Inputs: [`Node::step`] (a message from a peer), [`Node::tick`] (time passed), client
/// requests ([`Node::write`], [`Node::read`]) and [`Node::persisted`] (the host made a batch
/// durable). Outputs: [`Node::poll_persist`] (what to make durable), [`Node::poll_message`] (to
/// send), [`Node::poll_output`] (client results) and [`Node::poll_timeout`] (when to tick next).
///
/// The node never writes storage itself (see [`PersistBatch`]): the host writes each batch,
/// in order, and batches them into as few fsyncs as it likes.
pub struct Node {
    config: Config,
    persist: Persistence,
    rng: SeededRng,
    role: Role,
    term: Term,
    voted_for: Option<NodeId>,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: LogIndex,
    applied: LogIndex,
    state: KvState,
    votes: HashSet<NodeId>,
    peers: BTreeMap<NodeId, Peer>,
    election_deadline: Timestamp,
    heartbeat_deadline: Timestamp,
    /// When we last heard from a leader of our term.
    leader_contact: Option<Timestamp>,
    read_seq: u64,
    reads_waiting_for_term_commit: VecDeque<(RequestId, ReadOp)>,
    pending_reads: VecDeque<PendingRead>,
    pending_writes: BTreeMap<LogIndex, (RequestId, Term)>,
    recovering: bool,
    /// While recovering: the leader term and commit index first heard after the restart.
    recover_floor: Option<(Term, LogIndex)>,
    outbox: VecDeque<(NodeId, Message)>,
    outputs: VecDeque<ClientOutput>,
    halted: Option<StorageError>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node")
            .field("id", &self.config.id)
            .field("role", &self.role)
            .field("term", &self.term)
            .field("leader", &self.leader)
            .field("commit", &self.commit)
            .field("applied", &self.applied)
            .field("recovering", &self.recovering)
            .finish_non_exhaustive()
    }
}

impl Node {
    /// Starts a node at `now`, restoring what `storage` holds (it only reads it: writes come
    /// out of [`Node::poll_persist`]).
    ///
    /// # Errors
    /// [`NodeError`] for a bad config or unreadable storage.
    pub fn new<S: Storage + ?Sized>(
        config: Config,
        storage: &mut S,
        now: Timestamp,
    ) -> Result<Self, NodeError> {
        config.validate()?;
        let recovered = storage.recover()?;
        let recovering = config.start == Start::Rejoin && recovered.is_none();
        let recovered = recovered.unwrap_or_default();
        let (base_index, base_term, state) = match recovered.snapshot {
            Some(s) => (s.last_index, s.last_term, s.state),
            None => (0, 0, KvState::default()),
        };
        let peers = config
            .members
            .iter()
            .filter(|&&m| m != config.id)
            .map(|&m| {
                (
                    m,
                    Peer {
                        next: 1,
                        matched: 0,
                        acked_seq: 0,
                        recovering: false,
                        last_contact: None,
                        dirty: false,
                    },
                )
            })
            .collect();
        let log = RaftLog::new(base_index, base_term, recovered.entries);
        let mut node = Self {
            rng: seeded_rng(config.seed),
            persist: Persistence::new(log.last_index()),
            role: Role::Follower,
            term: recovered.hard_state.term,
            voted_for: recovered.hard_state.voted_for,
            leader: None,
            log,
            commit: base_index,
            applied: base_index,
            state,
            votes: HashSet::new(),
            peers,
            election_deadline: now,
            heartbeat_deadline: now,
            leader_contact: None,
            read_seq: 0,
            reads_waiting_for_term_commit: VecDeque::new(),
            pending_reads: VecDeque::new(),
            pending_writes: BTreeMap::new(),
            recovering,
            recover_floor: None,
            outbox: VecDeque::new(),
            outputs: VecDeque::new(),
            halted: None,
            config,
        };
        node.reset_election_timer(now);
        Ok(node)
    }

    // ---- accessors ---------------------------------------------------------------------------

    /// This node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.config.id
    }

    /// Its role.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role
    }

    /// Whether it leads.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        self.role == Role::Leader
    }

    /// Whether it knows of a leader (itself included).
    #[must_use]
    pub fn has_leader(&self) -> bool {
        self.leader.is_some()
    }

    /// The leader it knows of (itself when leading).
    #[must_use]
    pub fn leader(&self) -> Option<NodeId> {
        self.leader
    }

    /// Its current term.
    #[must_use]
    pub fn term(&self) -> Term {
        self.term
    }

    /// Its commit index.
    #[must_use]
    pub fn commit_index(&self) -> LogIndex {
        self.commit
    }

    /// Its applied index.
    #[must_use]
    pub fn applied_index(&self) -> LogIndex {
        self.applied
    }

    /// Its last log index.
    #[must_use]
    pub fn last_index(&self) -> LogIndex {
        self.log.last_index()
    }

    /// Whether it is still recovering after a wipe (see [`Start::Rejoin`]).
    #[must_use]
    pub fn is_recovering(&self) -> bool {
        self.recovering
    }

    /// The storage failure that halted it, if any.
    #[must_use]
    pub fn halted(&self) -> Option<&StorageError> {
        self.halted.as_ref()
    }

    /// This replica's value of `key`: possibly stale (not linearizable), answered locally.
    #[must_use]
    pub fn local_get(&self, key: &str) -> Option<&Versioned> {
        self.state.get(key)
    }

    /// This replica's whole map, as applied (possibly stale).
    #[must_use]
    pub fn local_state(&self) -> &KvState {
        &self.state
    }

    /// The writes to make durable next, if any. Write them in order (see
    /// [`PersistBatch::write_to`]), then report [`Node::persisted`]; messages that depend on
    /// them wait until then.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<PersistBatch> {
        if self.halted.is_some() {
            return None;
        }
        self.persist.poll(self.log.last_index())
    }

    /// The batch `seq` (and every one before it) is durable: releases the messages that waited
    /// for it, and lets the leader count its own log up to there toward commit.
    pub fn persisted(&mut self, seq: u64, now: Timestamp) {
        let _ = now;
        if self.halted.is_some() {
            return;
        }
        let released = self.persist.persisted(seq);
        self.outbox.extend(released);
        if self.role == Role::Leader {
            self.maybe_commit();
        }
    }

    /// The host could not make a batch durable: the node halts (it must not go on without
    /// what it failed to keep).
    pub fn persist_failed(&mut self, err: StorageError) {
        self.halt(err);
    }

    /// Applied position, term and digest, for [`compare`](crate::compare).
    #[must_use]
    pub fn inspect(&self) -> Inspection {
        Inspection {
            node: self.config.id,
            term: self.term,
            applied: self.applied,
            digest: self.state.digest(),
            recovering: self.recovering,
        }
    }

    /// The next message to send.
    #[must_use]
    pub fn poll_message(&mut self) -> Option<(NodeId, Message)> {
        if self.outbox.is_empty() && self.role == Role::Leader && self.halted.is_none() {
            self.flush_dirty();
        }
        self.outbox.pop_front()
    }

    /// The next client result.
    #[must_use]
    pub fn poll_output(&mut self) -> Option<ClientOutput> {
        self.outputs.pop_front()
    }

    /// When to call [`Node::tick`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Timestamp {
        if self.role == Role::Leader {
            self.heartbeat_deadline.min(self.election_deadline)
        } else {
            self.election_deadline
        }
    }

    // ---- helpers ---------------------------------------------------------------------------

    fn quorum(&self) -> usize {
        self.config.members.len() / 2 + 1
    }

    fn reset_election_timer(&mut self, now: Timestamp) {
        let base = self.config.election_timeout;
        let jitter = self.rng.random_range(0..base.as_millis().max(1) as u64);
        self.election_deadline = now + base + Duration::from_millis(jitter);
    }

    fn halt(&mut self, err: StorageError) {
        if self.halted.is_none() {
            self.halted = Some(err);
            self.role = Role::Follower;
            self.fail_pending();
            self.outbox.clear();
            self.persist.clear();
        }
    }

    fn persist_hard_state(&mut self) -> bool {
        self.persist.hard_state(HardState { term: self.term, voted_for: self.voted_for });
        self.halted.is_none()
    }

    /// Queues `msg`. The leader's replication leaves at once (etcd does the same: its own
    /// write need not be durable first); everything else waits for the writes before it.
    fn send(&mut self, to: NodeId, msg: Message) {
        let replication = self.role == Role::Leader
            && matches!(msg, Message::Append { .. } | Message::Snapshot { .. });
        if replication {
            self.outbox.push_back((to, msg));
        } else if let Some(ready) = self.persist.hold_unless_settled(to, msg) {
            self.outbox.push_back(ready);
        }
    }

    fn fail_pending(&mut self) {
        for (_, (id, _)) in std::mem::take(&mut self.pending_writes) {
            self.outputs.push_back(ClientOutput { id, result: Err(ClientError::Unknown) });
        }
        let leader = self.leader.filter(|&l| l != self.config.id);
        for read in self.pending_reads.drain(..) {
            self.outputs.push_back(ClientOutput {
                id: read.id,
                result: Err(ClientError::NotLeader { leader }),
            });
        }
        for (id, _) in self.reads_waiting_for_term_commit.drain(..) {
            self.outputs
                .push_back(ClientOutput { id, result: Err(ClientError::NotLeader { leader }) });
        }
    }

    fn become_follower(&mut self, term: Term, leader: Option<NodeId>, now: Timestamp) {
        let was_leader = self.role == Role::Leader;
        if term > self.term {
            self.term = term;
            self.voted_for = None;
            if !self.persist_hard_state() {
                return;
            }
        }
        self.role = Role::Follower;
        self.leader = leader;
        if was_leader {
            self.fail_pending();
        }
        self.reset_election_timer(now);
    }

    /// Asks, without changing anyone's term, whether a majority would vote for us.
    fn pre_vote(&mut self, now: Timestamp) {
        self.role = Role::PreCandidate;
        self.leader = None;
        if self.start_round(now) {
            self.campaign(now);
        } else {
            self.resend_vote_requests(now);
        }
    }

    /// Starts a (pre-)vote round with our own vote; true when that alone is a majority.
    fn start_round(&mut self, now: Timestamp) -> bool {
        self.votes = HashSet::from([self.config.id]);
        self.reset_election_timer(now);
        self.votes.len() >= self.quorum()
    }

    /// Raft's election restriction: a candidate's log (`last_term`, `last_index`) is at least
    /// as up to date as ours.
    fn candidate_log_up_to_date(&self, last_term: Term, last_index: LogIndex) -> bool {
        (last_term, last_index) >= (self.log.last_term(), self.log.last_index())
    }

    /// Whether this node may grant a vote at all (not while recovering from a wipe).
    fn may_vote(&self) -> bool {
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.wiped_node_votes {
            return true;
        }
        !self.recovering
    }

    fn resend_vote_requests(&mut self, now: Timestamp) {
        self.heartbeat_deadline = now + self.config.heartbeat_interval;
        let (last_index, last_term) = (self.log.last_index(), self.log.last_term());
        let (term, pre) = if self.role == Role::PreCandidate {
            (self.term + 1, true)
        } else {
            (self.term, false)
        };
        let missing: Vec<NodeId> =
            self.peers.keys().copied().filter(|p| !self.votes.contains(p)).collect();
        for p in missing {
            self.send(p, Message::Vote { term, pre, last_index, last_term });
        }
    }

    fn on_pre_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        now: Timestamp,
    ) {
        let up_to_date = self.candidate_log_up_to_date(last_term, last_index);
        // Leader stickiness: while we hear from a leader, nobody needs a new one.
        let leader_alive = self.role == Role::Leader
            || self.leader_contact.is_some_and(|t| now < t + self.config.election_timeout);
        let granted = self.may_vote() && term > self.term && up_to_date && !leader_alive;
        let reply_term = if granted { term } else { self.term };
        self.send(from, Message::VoteReply { term: reply_term, pre: true, granted });
    }

    fn campaign(&mut self, now: Timestamp) {
        self.role = Role::Candidate;
        self.term += 1;
        self.voted_for = Some(self.config.id);
        self.leader = None;
        if !self.persist_hard_state() {
            return;
        }
        if self.start_round(now) {
            self.become_leader(now);
        } else {
            self.resend_vote_requests(now);
        }
    }

    fn become_leader(&mut self, now: Timestamp) {
        self.role = Role::Leader;
        self.leader = Some(self.config.id);
        let next = self.log.last_index() + 1;
        for peer in self.peers.values_mut() {
            *peer = Peer {
                next,
                matched: 0,
                acked_seq: 0,
                recovering: peer.recovering,
                last_contact: Some(now),
                dirty: true,
            };
        }
        // Committing an entry of its own term commits everything before it and lets reads go.
        self.append_local(Payload::Noop);
        self.heartbeat_deadline = now + self.config.heartbeat_interval;
        self.election_deadline = now + self.config.election_timeout;
        self.maybe_commit();
    }

    fn append_local(&mut self, payload: Payload) -> Option<LogIndex> {
        if self.halted.is_some() {
            return None;
        }
        let entry = Entry { term: self.term, index: self.log.last_index() + 1, payload };
        self.persist.append([entry.clone()]);
        let index = entry.index;
        self.log.push(entry);
        for peer in self.peers.values_mut() {
            peer.dirty = true;
        }
        Some(index)
    }

    fn committed_in_term(&self) -> bool {
        self.log.term_at(self.commit) == Some(self.term)
    }

    /// Sends what each peer needs: entries, a snapshot, or a bare heartbeat.
    fn replicate_to(&mut self, id: NodeId) {
        let Some(peer) = self.peers.get_mut(&id) else { return };
        peer.dirty = false;
        let next = peer.next;
        if next <= self.log.base_index() {
            let snapshot = Snapshot {
                last_index: self.applied.max(self.log.base_index()),
                last_term: self.log.term_at(self.applied.max(self.log.base_index())).unwrap_or(0),
                state: self.state.clone(),
            };
            // The state covers up to `applied`, which is at least the log base.
            peer.next = snapshot.last_index + 1;
            let msg = Message::Snapshot {
                term: self.term,
                snapshot,
                commit: self.commit,
                read_seq: self.read_seq,
            };
            self.send(id, msg);
            return;
        }
        let prev_index = next - 1;
        let prev_term = self.log.term_at(prev_index).unwrap_or(0);
        let entries = self.log.slice(next, self.config.max_entries_per_message);
        if let Some(last) = entries.last() {
            peer.next = last.index + 1;
        }
        let msg = Message::Append {
            term: self.term,
            prev_index,
            prev_term,
            entries,
            commit: self.commit,
            read_seq: self.read_seq,
        };
        self.send(id, msg);
    }

    fn flush_dirty(&mut self) {
        let dirty: Vec<NodeId> =
            self.peers.iter().filter(|(_, p)| p.dirty).map(|(&id, _)| id).collect();
        for id in dirty {
            self.replicate_to(id);
        }
    }

    fn counted(&self, peer: &Peer) -> bool {
        !peer.recovering
    }

    fn maybe_commit(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut matches: Vec<LogIndex> =
            self.peers.values().filter(|p| self.counted(p)).map(|p| p.matched).collect();
        // The leader counts itself only as far as its own log is durable.
        matches.push(self.persist.durable_last().min(self.log.last_index()));
        matches.sort_unstable_by(|a, b| b.cmp(a));
        let quorum = self.quorum();
        #[allow(unused_mut)]
        let mut candidate = if matches.len() >= quorum { matches[quorum - 1] } else { 0 };
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.commit_without_majority {
            candidate = self.log.last_index();
        }
        if candidate > self.commit && self.log.term_at(candidate) == Some(self.term) {
            self.commit = candidate;
            for peer in self.peers.values_mut() {
                peer.dirty = true;
            }
            self.apply_committed();
        }
        if self.committed_in_term() {
            let waiting: Vec<(RequestId, ReadOp)> =
                self.reads_waiting_for_term_commit.drain(..).collect();
            for (id, op) in waiting {
                self.start_read(id, op);
            }
        }
    }

    fn apply_committed(&mut self) {
        while self.applied < self.commit {
            let index = self.applied + 1;
            let Some(entry) = self.log.get(index).cloned() else { break };
            let result = match &entry.payload {
                Payload::Noop => None,
                Payload::Write(op) => Some(self.state.apply(op, index)),
            };
            self.applied = index;
            if let Some((id, term)) = self.pending_writes.remove(&index) {
                let output = match result {
                    Some(r) if term == entry.term => Ok(Response::Write(r)),
                    _ => Err(ClientError::Unknown),
                };
                self.outputs.push_back(ClientOutput { id, result: output });
            }
        }
        self.serve_reads();
        self.maybe_snapshot();
    }

    fn maybe_snapshot(&mut self) {
        if self.applied - self.log.base_index() < self.config.snapshot_threshold {
            return;
        }
        let Some(term) = self.log.term_at(self.applied) else { return };
        let snapshot =
            Snapshot { last_index: self.applied, last_term: term, state: self.state.clone() };
        self.persist.snapshot(snapshot);
        self.log.compact_to(self.applied, term);
    }

    fn start_read(&mut self, id: RequestId, op: ReadOp) {
        self.read_seq += 1;
        self.pending_reads.push_back(PendingRead {
            seq: self.read_seq,
            read_index: self.commit,
            id,
            op,
        });
        for peer in self.peers.values_mut() {
            peer.dirty = true;
        }
        self.serve_reads();
    }

    /// Answers reads whose round a quorum confirmed and whose index is applied.
    fn serve_reads(&mut self) {
        if self.role != Role::Leader {
            return;
        }
        let mut acked: Vec<u64> =
            self.peers.values().filter(|p| self.counted(p)).map(|p| p.acked_seq).collect();
        acked.push(self.read_seq);
        acked.sort_unstable_by(|a, b| b.cmp(a));
        let quorum = self.quorum();
        #[allow(unused_mut)]
        let mut confirmed = if acked.len() >= quorum { acked[quorum - 1] } else { 0 };
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.read_without_quorum {
            confirmed = self.read_seq;
        }
        while let Some(read) = self.pending_reads.front() {
            if read.seq > confirmed || read.read_index > self.applied {
                break;
            }
            let read = self.pending_reads.pop_front().expect("front exists");
            let result = self.state.read(&read.op);
            self.outputs
                .push_back(ClientOutput { id: read.id, result: Ok(Response::Read(result)) });
        }
    }

    // ---- inputs ----------------------------------------------------------------------------

    /// Proposes a write. Its result comes from [`Node::poll_output`] once committed and applied.
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] (with a hint) when this node does not lead; nothing was done.
    pub fn write(&mut self, id: RequestId, op: WriteOp) -> Result<(), ClientError> {
        if self.role != Role::Leader || self.halted.is_some() {
            return Err(ClientError::NotLeader {
                leader: self.leader.filter(|&l| l != self.config.id),
            });
        }
        validate_write(&op)?;
        if let Some(index) = self.append_local(Payload::Write(op)) {
            self.pending_writes.insert(index, (id, self.term));
            self.maybe_commit();
        }
        Ok(())
    }

    /// Asks for a linearizable read (ReadIndex: the leader confirms it still leads with a quorum
    /// round, then answers once it has applied up to its commit index at the time of the read).
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] when this node does not lead.
    pub fn read(&mut self, id: RequestId, op: ReadOp) -> Result<(), ClientError> {
        if self.role != Role::Leader || self.halted.is_some() {
            return Err(ClientError::NotLeader {
                leader: self.leader.filter(|&l| l != self.config.id),
            });
        }
        if self.committed_in_term() {
            self.start_read(id, op);
        } else {
            self.reads_waiting_for_term_commit.push_back((id, op));
        }
        Ok(())
    }

    /// Lets time pass: elections, heartbeats, and the leader's check that a quorum still hears it.
    pub fn tick(&mut self, now: Timestamp) {
        if self.halted.is_some() {
            return;
        }
        match self.role {
            Role::Leader => {
                if now >= self.election_deadline {
                    // Check quorum: step down if a majority has not answered for a whole timeout.
                    let horizon = now
                        .saturating_duration_since(Timestamp::ZERO)
                        .saturating_sub(self.config.election_timeout);
                    let heard = 1 + self
                        .peers
                        .values()
                        .filter(|p| {
                            self.counted(p)
                                && p.last_contact.is_some_and(|t| t.since_origin() >= horizon)
                        })
                        .count();
                    if heard < self.quorum() {
                        self.become_follower(self.term, None, now);
                        return;
                    }
                    self.election_deadline = now + self.config.election_timeout;
                }
                if now >= self.heartbeat_deadline {
                    for peer in self.peers.values_mut() {
                        peer.dirty = true;
                    }
                    self.heartbeat_deadline = now + self.config.heartbeat_interval;
                }
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                if self.role != Role::Follower
                    && now >= self.heartbeat_deadline
                    && now < self.election_deadline
                {
                    // Ask again those who have not answered: a lost request must not cost a
                    // whole election round.
                    self.resend_vote_requests(now);
                }
                if now >= self.election_deadline {
                    if self.recovering {
                        // A wiped node must not disturb the cluster: it waits to be caught up.
                        self.reset_election_timer(now);
                    } else {
                        self.pre_vote(now);
                    }
                }
            }
        }
    }

    /// Handles a message from `from`.
    pub fn step(&mut self, from: NodeId, msg: Message, now: Timestamp) {
        if self.halted.is_some() || from == self.config.id || !self.peers.contains_key(&from) {
            return;
        }
        match msg {
            Message::Vote { term, pre: true, last_index, last_term } => {
                self.on_pre_vote(from, term, last_index, last_term, now);
                return;
            }
            Message::VoteReply { term, pre: true, granted: true } => {
                if self.role == Role::PreCandidate && term == self.term + 1 {
                    self.votes.insert(from);
                    if self.votes.len() >= self.quorum() {
                        self.campaign(now);
                    }
                }
                return;
            }
            _ => {}
        }
        let term = msg.term();
        if term > self.term {
            let leader =
                matches!(msg, Message::Append { .. } | Message::Snapshot { .. }).then_some(from);
            self.become_follower(term, leader, now);
            if self.halted.is_some() {
                return;
            }
        }
        match msg {
            Message::Vote { term, last_index, last_term, .. } => {
                self.on_vote(from, term, last_index, last_term, now);
            }
            Message::VoteReply { pre: true, .. } => {}
            Message::VoteReply { term, granted, .. } => {
                if self.role == Role::Candidate && term == self.term && granted {
                    self.votes.insert(from);
                    if self.votes.len() >= self.quorum() {
                        self.become_leader(now);
                    }
                }
            }
            Message::Append { term, prev_index, prev_term, entries, commit, read_seq } => {
                self.on_append(from, term, prev_index, prev_term, entries, commit, read_seq, now);
            }
            Message::Snapshot { term, snapshot, commit, read_seq } => {
                self.on_snapshot(from, term, snapshot, commit, read_seq, now);
            }
            Message::AppendReply { term, success, match_index, read_seq, recovering } => {
                self.on_append_reply(from, term, success, match_index, read_seq, recovering, now);
            }
        }
    }

    fn on_vote(
        &mut self,
        from: NodeId,
        term: Term,
        last_index: LogIndex,
        last_term: Term,
        now: Timestamp,
    ) {
        let may_vote = self.may_vote();
        let up_to_date = self.candidate_log_up_to_date(last_term, last_index);
        let granted = term == self.term
            && may_vote
            && self.role != Role::Leader
            && self.voted_for.is_none_or(|v| v == from)
            && up_to_date;
        if granted {
            self.voted_for = Some(from);
            if !self.persist_hard_state() {
                return;
            }
            self.reset_election_timer(now);
        }
        self.send(from, Message::VoteReply { term: self.term, pre: false, granted });
    }

    fn reply(&mut self, to: NodeId, success: bool, match_index: LogIndex, read_seq: u64) {
        let msg = Message::AppendReply {
            term: self.term,
            success,
            match_index,
            read_seq,
            recovering: self.recovering,
        };
        self.send(to, msg);
    }

    /// A message from the leader of `term`: refuse it if stale (answering so), else follow it.
    fn follow(&mut self, from: NodeId, term: Term, read_seq: u64, now: Timestamp) -> bool {
        if term < self.term {
            self.reply(from, false, self.log.last_index(), read_seq);
            return false;
        }
        self.role = Role::Follower;
        self.leader = Some(from);
        self.leader_contact = Some(now);
        self.reset_election_timer(now);
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append(
        &mut self,
        from: NodeId,
        term: Term,
        prev_index: LogIndex,
        prev_term: Term,
        entries: Vec<Entry>,
        commit: LogIndex,
        read_seq: u64,
        now: Timestamp,
    ) {
        if !self.follow(from, term, read_seq, now) {
            return;
        }
        if prev_index < self.log.base_index() {
            // Already covered by our snapshot: tell the leader where we are.
            self.reply(from, false, self.commit, read_seq);
            return;
        }
        if self.log.term_at(prev_index) != Some(prev_term) {
            let hint = prev_index.saturating_sub(1).min(self.log.last_index()).max(self.commit);
            self.reply(from, false, hint, read_seq);
            return;
        }
        let sent_last = prev_index + entries.len() as u64;
        let mut new_entries = Vec::new();
        for entry in entries {
            match self.log.term_at(entry.index) {
                Some(t) if t == entry.term => {}
                Some(_) => {
                    // A conflicting suffix: never a committed one (log matching), drop it.
                    self.persist.truncate_from(entry.index);
                    self.log.truncate_from(entry.index);
                    new_entries.push(entry);
                }
                None => new_entries.push(entry),
            }
        }
        if !new_entries.is_empty() {
            self.persist.append(new_entries.iter().cloned());
            for e in new_entries {
                self.log.push(e);
            }
        }
        // Everything up to the last entry the leader sent now matches its log.
        let matched = sent_last;
        let new_commit = commit.min(matched);
        if new_commit > self.commit {
            self.commit = new_commit;
            self.apply_committed();
        }
        self.check_recovered(term, commit, from);
        self.reply(from, true, matched, read_seq);
    }

    fn on_snapshot(
        &mut self,
        from: NodeId,
        term: Term,
        snapshot: Snapshot,
        commit: LogIndex,
        read_seq: u64,
        now: Timestamp,
    ) {
        if !self.follow(from, term, read_seq, now) {
            return;
        }
        if snapshot.last_index > self.commit {
            self.persist.snapshot(snapshot.clone());
            self.persist.truncate_from(snapshot.last_index + 1);
            self.log.reset(snapshot.last_index, snapshot.last_term);
            self.commit = snapshot.last_index;
            self.applied = snapshot.last_index;
            self.state = snapshot.state;
        }
        self.check_recovered(term, commit, from);
        // Our committed prefix is the leader's: that much is known to match.
        self.reply(from, true, self.commit, read_seq);
    }

    /// The wiped-node rule: leave recovering once the leader of `term` has committed something
    /// since we first heard from it after the restart, and we hold the log up to it.
    fn check_recovered(&mut self, term: Term, leader_commit: LogIndex, leader: NodeId) {
        if !self.recovering {
            return;
        }
        match self.recover_floor {
            Some((t, floor)) if t == term => {
                if leader_commit > floor && self.commit >= leader_commit {
                    self.recovering = false;
                    self.recover_floor = None;
                    // Adopt the term's leader as our vote: it is the one leader of this term.
                    self.voted_for = Some(leader);
                    self.persist_hard_state();
                }
            }
            _ => self.recover_floor = Some((term, leader_commit)),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_append_reply(
        &mut self,
        from: NodeId,
        term: Term,
        success: bool,
        match_index: LogIndex,
        read_seq: u64,
        recovering: bool,
        now: Timestamp,
    ) {
        if self.role != Role::Leader || term != self.term {
            return;
        }
        let last = self.log.last_index();
        let idle = self.commit == last;
        let Some(peer) = self.peers.get_mut(&from) else { return };
        peer.last_contact = Some(now);
        peer.recovering = recovering;
        if read_seq > peer.acked_seq {
            peer.acked_seq = read_seq;
        }
        if success {
            if match_index > peer.matched {
                peer.matched = match_index.min(last);
            }
            if peer.next <= peer.matched {
                peer.next = peer.matched + 1;
            }
        } else {
            peer.next = (match_index + 1).min(peer.next).max(1);
            peer.dirty = true;
        }
        if peer.next <= last {
            peer.dirty = true;
        }
        // A recovering peer waits for a commit after its return; with nothing to commit, make
        // something (at most one in flight: the next one waits until this one commits).
        if recovering && idle {
            self.append_local(Payload::Noop);
        }
        self.maybe_commit();
        self.serve_reads();
    }
}

fn validate_write(op: &WriteOp) -> Result<(), ClientError> {
    let empty = match op {
        WriteOp::MultiSet(v) => v.is_empty(),
        WriteOp::MultiDelete(v) => v.is_empty(),
        WriteOp::MultiCompareAndSet(v) => v.is_empty(),
        WriteOp::MultiCompareAndDelete(v) => v.is_empty(),
        _ => false,
    };
    if empty {
        return Err(ClientError::Invalid(
            "a multi-key operation needs at least one key".to_owned(),
        ));
    }
    Ok(())
}
