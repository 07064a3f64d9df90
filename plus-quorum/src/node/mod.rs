//! The consensus core: Raft-style elections, replication, commit, ReadIndex reads, snapshots, and
//! the wiped-node rule. Sans-IO: no clock, no sockets, no threads; time and randomness come in.

use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::time::Duration;

use plus_core::{SeededRng, Timestamp, seeded_rng};
use rand::Rng;

mod admission;
mod election;
mod leader;
mod lease_clock;
mod leases;
mod membership;

use leader::Leadership;
mod reads;
mod replication;
mod snapshots;
mod stats;

use stats::Counters;
pub use stats::NodeStats;

use crate::client_error::ClientError;
use crate::ids::{LogIndex, NodeId, Term};
use crate::kv::KvState;
use crate::log::{Entry, Payload, RaftLog};
use crate::membership::{Configurations, Membership};
use crate::message::Message;
use crate::ops::ClientOutput;
use crate::persist::{PersistBatch, Persistence};
use crate::storage::{HardState, Storage, StorageError};
use crate::types::Versioned;
use crate::watch::{History, WatchBatch, WatchRequest};

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
    /// A node added to a running cluster (after [`ClusterChange::AddLearner`](crate::ClusterChange::AddLearner)): it starts with
    /// no configuration and learns it, with the log or a snapshot, from the leader; `members`
    /// need not include it. Only for an id the cluster has never used: a member that lost its
    /// disk comes back with [`Start::Rejoin`].
    Join,
    /// Recovery when a majority is gone for good (etcd's `--force-new-cluster`): this node
    /// makes itself the only voter of a new configuration, appended to whatever log it holds,
    /// and leads alone; the cluster then grows again by adding learners. **It may lose
    /// acknowledged writes**: any write this replica had not received is gone, and entries it
    /// holds uncommitted become committed. Start every other old member only after wiping it
    /// and adding it back as a new node.
    ForceNewCluster,
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
    /// Every replica ends a lease by itself, TTL after it applied the grant, ignoring
    /// keep-alives (the "expire on your own clock" mistake).
    pub replica_expires_leases: bool,
    /// A new leader leaves out of its watch history the changes of the entries from earlier
    /// terms that it applies after its election.
    pub watch_drops_predecessor_entries: bool,
    /// A transaction whose comparisons fail applies the first `set` of its `then` branch
    /// before its `otherwise` branch.
    pub txn_else_applies_part_of_then: bool,
    /// The leader proposes a membership change while the previous one is uncommitted.
    pub two_changes_in_flight: bool,
    /// A learner's acknowledgement counts toward commit (and read) quorums.
    pub learner_ack_counts: bool,
    /// A joining node uses the members it was started with as its configuration before any
    /// configuration is in its log.
    pub joiner_uses_start_members: bool,
}

/// Node settings: [`Config::new`], then any field changed in place. New settings may come in
/// a minor release (the struct is `#[non_exhaustive]`), so it is not built by a struct
/// literal:
///
/// ```
/// let mut config = plus_quorum::Config::new(1, vec![1, 2, 3]);
/// config.snapshot_threshold = 100_000;
/// config.start = plus_quorum::Start::Rejoin;
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Config {
    /// This node.
    pub id: NodeId,
    /// The voters a new cluster starts with, this node included. Once the log or a snapshot
    /// holds a configuration (any change made since), that one is in force instead.
    pub members: Vec<NodeId>,
    /// Base election timeout; each wait is random in `[t, 2t)`. Default 300 ms.
    pub election_timeout: Duration,
    /// Leader heartbeat interval. Default 50 ms.
    pub heartbeat_interval: Duration,
    /// Most entries in one append message. Default 512.
    pub max_entries_per_message: usize,
    /// Snapshot (and drop the log before it) once this many entries, plus a jitter of up to
    /// half as many drawn anew each time (so replicas do not all snapshot at once), are applied
    /// past the last snapshot. Default 100,000, etcd's `--snapshot-count`. A snapshot copies the
    /// whole state and writes it: with a blocking storage that has a
    /// [`Storage::snapshot_writer`](crate::Storage::snapshot_writer) (`FileStorage`) beside the
    /// appends, else in order with them, which then wait behind it. A small figure writes it
    /// often (at 10,000, before snapshots were written beside the appends, a 256-writer load's
    /// p99 was about 11x its 100,000 figure; BENCHMARKS.md), a large one keeps a longer log.
    pub snapshot_threshold: u64,
    /// How this node starts. Default [`Start::Bootstrap`].
    pub start: Start,
    /// Seeds the node's RNG (its election timer's jitter). Default: mixed from `id`, so that the
    /// nodes of one cluster differ; set it for a reproducible run.
    pub seed: u64,
    /// The longest TTL a lease may be granted with. Default one day.
    pub max_lease_ttl: Duration,
    /// How many recent changes the node keeps for watchers; a watcher further behind gets
    /// [`ClientError::Compacted`]. Default 10,000.
    pub watch_history: usize,
    /// About the most bytes of keys and values (new and replaced) that history may hold: past
    /// it the oldest revisions go, whatever `watch_history` says, so large values cannot make
    /// it hold gigabytes. Default 256 MiB.
    pub watch_history_bytes: usize,
    /// The most entries a learner may be behind the leader and still be promoted. Default
    /// 1,000.
    pub max_promote_lag: u64,
    /// The largest write accepted, in bytes of keys and values
    /// ([`WriteOp::request_bytes`](crate::WriteOp::request_bytes)): a larger one is refused
    /// with [`ClientError::TooLarge`] before it reaches the log. Default 1.5 MiB, etcd's
    /// `--max-request-bytes`: an entry must fit in one message to every follower.
    pub max_request_bytes: usize,
    /// The most operations in one transaction (compares and both branches) or multi-key
    /// write. Default 128, etcd's `--max-txn-ops`: a transaction applies on the node's loop,
    /// and one of 300,000 sets stalled heartbeats past an election timeout.
    pub max_txn_ops: usize,
    /// The most bytes of keys and values the store may hold (etcd's `--quota-backend-bytes`):
    /// past it, writes that add data are refused with [`ClientError::NoSpace`] until deletes
    /// bring it back under; deletes, revokes and reads go on. A runaway client cannot fill the
    /// disk or the memory of every replica. Default 2 GiB.
    pub quota_bytes: usize,
    /// The most keys one read may answer with (`Keys`, a `Range` without a smaller `limit`,
    /// `MultiGet`): past it the read is refused with [`ClientError::TooLarge`], and a client
    /// pages through with [`Range`](crate::Range)'s `limit`. Reads are answered on the node's
    /// loop, and one that copies a million keys holds up its heartbeats. A range inside a
    /// transaction (whose writes apply regardless) answers with at most this many keys instead,
    /// with [`RangeResult::more`](crate::RangeResult::more) set. Default 100,000.
    pub max_read_keys: usize,
    /// The most bytes of keys and values one read may answer with (`MultiGet`, a `Range`,
    /// `Keys`): past it the read is refused with [`ClientError::TooLarge`] before anything is
    /// sent, and a client asks for fewer keys or pages through with a range's `limit`. The
    /// answer must fit in one plus-mux frame (16 MiB by default, with its encoding): 256 values
    /// of 64 KiB in one multi-get were sent whole and cut the client's connection, again at every
    /// retry. Default 8 MiB.
    pub max_read_bytes: usize,
    /// The most leases that may live at once; a grant past it is refused with
    /// [`ClientError::TooLarge`] (a client that leaks leases finds out, instead of filling the
    /// store). Default 1,000,000.
    pub max_leases: usize,
    /// The most bytes of entries in one append to a follower (at least one entry is always
    /// sent). Default 4 MiB: with [`max_request_bytes`](Self::max_request_bytes) this keeps
    /// every append well below a transport's frame limit (plus-mux: 16 MiB).
    pub max_bytes_per_message: usize,
    /// The most appends carrying entries that a leader sends a follower ahead of its answers.
    /// A follower that falls behind (a slow disk, a slow link) gets the rest once it answers,
    /// so the leader holds at most this many appends for it in flight, at most
    /// `max_inflight_appends` x [`max_bytes_per_message`](Self::max_bytes_per_message) of
    /// memory per follower; without the bound a follower behind a busy leader grew the leader
    /// to 10 GB. Default 32.
    pub max_inflight_appends: usize,
    /// How far ahead of this node's term a message's term may be and still be heard. A term
    /// beyond it can only come from a forged or corrupted message (a million elections that
    /// this node slept through): it is dropped and counted in
    /// [`NodeStats::dropped_messages`], so one message cannot push every term to `u64::MAX`
    /// and leave the cluster unable to elect. Default 1,000,000.
    pub max_term_lead: u64,
    /// The most bytes of entries (as appends count them) a leader keeps in memory before its
    /// last snapshot, for followers a little behind or installing a snapshot: they go on from
    /// the log instead of being sent the whole state again. A large state takes longer to send
    /// than steady writes take to pass [`snapshot_threshold`](Self::snapshot_threshold), and a
    /// leader that cut its log at every snapshot sent such a follower a snapshot each time it
    /// answered, forever (a 512 MiB replacement under writes never caught up, and a voter in
    /// that loop kept a new leader from committing). etcd keeps 5,000 entries for this
    /// (`SnapshotCatchUpEntries`); counted in bytes, the bound holds whatever the entries'
    /// sizes. Only entries a follower heard from lately (or sent a snapshot) still needs are
    /// kept. 0 cuts the log at every snapshot. Default 64 MiB.
    pub catch_up_log_bytes: usize,
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
            snapshot_threshold: 100_000,
            start: Start::Bootstrap,
            seed: id.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5eed,
            max_lease_ttl: Duration::from_secs(24 * 60 * 60),
            watch_history: 10_000,
            watch_history_bytes: 256 << 20,
            max_promote_lag: 1_000,
            max_term_lead: 1_000_000,
            max_request_bytes: 1536 * 1024,
            max_txn_ops: 128,
            max_leases: 1_000_000,
            max_read_keys: 100_000,
            max_read_bytes: 8 << 20,
            quota_bytes: 2 << 30,
            max_bytes_per_message: 4 << 20,
            max_inflight_appends: 32,
            catch_up_log_bytes: 64 << 20,
            #[cfg(plus_planted_bugs)]
            bugs: PlantedBugs::default(),
        }
    }

    /// Checks the settings.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        // Only a new cluster's members must list the node: any other start finds the
        // configuration in storage (a node added later restarts with the members the cluster
        // began with, or none).
        if self.start == Start::Bootstrap && !self.members.contains(&self.id) {
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
        if self.max_inflight_appends == 0 {
            return Err(ConfigError::Zero("max_inflight_appends"));
        }
        if self.max_entries_per_message == 0 {
            return Err(ConfigError::Zero("max_entries_per_message"));
        }
        if self.snapshot_threshold == 0 {
            return Err(ConfigError::Zero("snapshot_threshold"));
        }
        if self.max_lease_ttl.is_zero() {
            return Err(ConfigError::Zero("max_lease_ttl"));
        }
        if self.watch_history == 0 {
            return Err(ConfigError::Zero("watch_history"));
        }
        if self.watch_history_bytes == 0 {
            return Err(ConfigError::Zero("watch_history_bytes"));
        }
        if self.max_term_lead == 0 {
            return Err(ConfigError::Zero("max_term_lead"));
        }
        if self.max_request_bytes == 0 {
            return Err(ConfigError::Zero("max_request_bytes"));
        }
        if self.quota_bytes == 0 {
            return Err(ConfigError::Zero("quota_bytes"));
        }
        if self.max_read_bytes == 0 {
            return Err(ConfigError::Zero("max_read_bytes"));
        }
        if self.max_read_keys == 0 {
            return Err(ConfigError::Zero("max_read_keys"));
        }
        if self.max_leases == 0 {
            return Err(ConfigError::Zero("max_leases"));
        }
        if self.max_txn_ops == 0 {
            return Err(ConfigError::Zero("max_txn_ops"));
        }
        if self.max_bytes_per_message == 0 {
            return Err(ConfigError::Zero("max_bytes_per_message"));
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

/// What a node reports for inspection (Meituan's code-hosting platform talk).
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

/// An [`Inspection`] whose digest is still to compute ([`Node::begin_inspection`]).
#[derive(Debug, Clone)]
pub struct PendingInspection {
    node: NodeId,
    term: Term,
    applied: LogIndex,
    recovering: bool,
    state: KvState,
}

impl PendingInspection {
    /// Computes the digest: reads every key and value.
    #[must_use]
    pub fn finish(self) -> Inspection {
        Inspection {
            node: self.node,
            term: self.term,
            applied: self.applied,
            digest: self.state.digest(),
            recovering: self.recovering,
        }
    }
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
    /// Entries applied past the last snapshot before the next one: the threshold plus a
    /// jitter drawn for each snapshot (from its own stream, so elections' draws are unchanged).
    snapshot_due: u64,
    snapshot_rng: SeededRng,
    /// The last entry the latest snapshot holds (a leader's log may begin before it).
    snapshot_index: LogIndex,
    role: Role,
    term: Term,
    voted_for: Option<NodeId>,
    leader: Option<NodeId>,
    log: RaftLog,
    commit: LogIndex,
    applied: LogIndex,
    state: KvState,
    /// Bytes of keys and values in `state`, kept as entries apply: what the quota counts.
    state_bytes: usize,
    votes: HashSet<NodeId>,
    /// The other members, voters and learners, of the configuration in force.
    peers: Vec<NodeId>,
    /// The configurations in the snapshot and the log; the last is in force.
    configs: Configurations,
    /// A transfer this node started as leader and stepped down for, until it learns the outcome.
    handed_over: Option<leader::Transfer>,
    /// Meaningful only while leading.
    lead: Leadership,
    election_deadline: Timestamp,
    heartbeat_deadline: Timestamp,
    /// When we last heard from a leader of our term.
    leader_contact: Option<Timestamp>,
    recovering: bool,
    /// While recovering: the leader term and commit index first heard after the restart.
    recover_floor: Option<(Term, LogIndex)>,
    outbox: VecDeque<(NodeId, Message)>,
    outputs: VecDeque<ClientOutput>,
    halted: Option<StorageError>,
    counters: Counters,
    /// The latest time the host passed in: lease deadlines are set from it.
    clock: Timestamp,
    /// Recent changes, for watchers.
    history: History,
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
        // A wiped node stays recovering across restarts until it has caught up.
        let recovering = (config.start == Start::Rejoin && recovered.is_none())
            || recovered.as_ref().is_some_and(|r| r.hard_state.recovering);
        let recovered = recovered.unwrap_or_default();
        let (base_index, base_term, state, base_membership) = match recovered.snapshot {
            Some(s) => (s.last_index, s.last_term, s.state, s.membership),
            None => (0, 0, KvState::default(), None),
        };
        let mut configs = Configurations::new(
            base_membership.unwrap_or_else(|| Self::bootstrap_membership(&config)),
        );
        for entry in recovered.entries.iter().filter(|e| e.index > base_index) {
            if let Payload::Membership(m) = &entry.payload {
                configs.push(entry.index, m.clone());
            }
        }
        let log = RaftLog::new(base_index, base_term, recovered.entries);
        let mut snapshot_rng = seeded_rng(config.seed ^ SNAPSHOT_STREAM);
        let snapshot_due = snapshot_interval(config.snapshot_threshold, &mut snapshot_rng);
        let mut node = Self {
            rng: seeded_rng(config.seed),
            snapshot_due,
            snapshot_rng,
            snapshot_index: base_index,
            persist: Persistence::new(log.last_index()),
            role: Role::Follower,
            term: recovered.hard_state.term,
            voted_for: recovered.hard_state.voted_for,
            leader: None,
            log,
            commit: base_index,
            applied: base_index,
            state_bytes: state.bytes(),
            state,
            votes: HashSet::new(),
            lead: Leadership::new(),
            peers: Vec::new(),
            configs,
            handed_over: None,
            election_deadline: now,
            heartbeat_deadline: now,
            leader_contact: None,
            recovering,
            recover_floor: None,
            outbox: VecDeque::new(),
            outputs: VecDeque::new(),
            halted: None,
            counters: Counters::default(),
            clock: now,
            history: History::new(config.watch_history, config.watch_history_bytes, base_index + 1),
            config,
        };
        node.refresh_members();
        node.reset_election_timer(now);
        if node.config.start == Start::ForceNewCluster {
            node.force_new_cluster();
        }
        if node.recovering {
            // Durable before anything else this node writes (the host polls this batch first),
            // so a crash during recovery cannot bring it back as a voter with a partial log.
            node.persist_hard_state();
        }
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

    /// Keys in its applied state.
    #[must_use]
    pub fn key_count(&self) -> u64 {
        self.state.len() as u64
    }

    /// Bytes of keys and values in its applied state, as the quota counts them.
    #[must_use]
    pub fn state_bytes(&self) -> u64 {
        self.state_bytes as u64
    }

    /// Whether its state is past [`Config::quota_bytes`]: writes that add data are refused.
    #[must_use]
    pub fn over_quota(&self) -> bool {
        self.state_bytes > self.config.quota_bytes
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

    /// The changes to a range from a revision on, from this replica's history (any replica
    /// answers: every one applies the same committed entries). Empty with a progress mark when
    /// nothing has changed since.
    ///
    /// # Errors
    /// [`ClientError::Compacted`] when `request.from` is older than the history kept;
    /// [`ClientError::Invalid`] for a revision past the commit index, a `max_events` of 0 or a
    /// bad range.
    pub fn watch(&self, request: &WatchRequest) -> Result<WatchBatch, ClientError> {
        self.check_watch(request)?;
        self.history.poll(request, self.applied)
    }

    fn check_watch(&self, request: &WatchRequest) -> Result<(), ClientError> {
        request.range.validate()?;
        let latest = self.commit.max(self.applied);
        if request.from > latest + 1 {
            return Err(ClientError::Invalid(format!(
                "watch from revision {}, past the latest committed revision {latest}",
                request.from
            )));
        }
        Ok(())
    }

    /// What [`Node::watch`] would answer `request` with, told without making the answer: how
    /// many changes (to any key) the history holds from `request.from` on, when the poll is
    /// valid and its answer could not be full; `None` when it would be an error or might be
    /// full (then only [`Node::watch`] says). A driver holding polls for a round of answers
    /// uses it to leave the answer until the round.
    #[cfg(feature = "driver")]
    pub(crate) fn watch_backlog(&self, request: &WatchRequest) -> Option<usize> {
        self.check_watch(request).ok()?;
        self.history.backlog(request)
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
        self.clock = self.clock.max(now);
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

    /// Applied position, term and digest, for [`compare`](crate::compare). The digest reads
    /// every value: a host with a large state uses [`Node::begin_inspection`] and computes it
    /// away from the node's loop.
    #[must_use]
    pub fn inspect(&self) -> Inspection {
        self.begin_inspection().finish()
    }

    /// [`Node::inspect`] with the digest left to compute: a copy of the map (its values are
    /// shared, not copied) whose [`PendingInspection::finish`] may run on another thread.
    /// Hashing 512 MiB on the loop held up heartbeats past an election timeout.
    #[must_use]
    pub fn begin_inspection(&self) -> PendingInspection {
        PendingInspection {
            node: self.config.id,
            term: self.term,
            applied: self.applied,
            recovering: self.recovering,
            state: self.state.clone(),
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
        match self.role {
            Role::Leader => {
                let timers = self.heartbeat_deadline.min(self.election_deadline);
                self.next_lease_deadline().map_or(timers, |lease| timers.min(lease))
            }
            // A (pre-)candidate asks again, each heartbeat interval, those who have not
            // answered: under message loss a round that asked each voter once rarely wins when
            // it needs every reachable voter.
            Role::PreCandidate | Role::Candidate => {
                self.heartbeat_deadline.max(self.clock).min(self.election_deadline)
            }
            Role::Follower => self.election_deadline,
        }
    }

    // ---- helpers ---------------------------------------------------------------------------

    fn quorum(&self) -> usize {
        self.configs.current().quorum()
    }

    /// [`Start::ForceNewCluster`]: this node alone, as an entry at the end of its log.
    fn force_new_cluster(&mut self) {
        let me = self.config.id;
        let old = self.configs.current().clone();
        let mut alone = Membership::with_voters([me]);
        if let Some(address) = old.address(me) {
            alone = alone.with_address(me, address);
        }
        tracing::warn!(
            node = me,
            old = %old,
            last_index = self.log.last_index(),
            "forcing a new one-node cluster from this replica: writes it lacks are lost"
        );
        self.recovering = false;
        self.term = self.term.max(self.log.last_term());
        self.persist_hard_state();
        let entry = Entry {
            term: self.term,
            index: self.log.last_index() + 1,
            payload: Payload::Membership(alone),
        };
        self.persist.append([entry.clone()]);
        self.log.push(entry.clone());
        self.track_appended(&entry);
    }

    fn reset_election_timer(&mut self, now: Timestamp) {
        let base = self.config.election_timeout;
        let jitter = self.rng.random_range(0..base.as_millis().max(1) as u64);
        self.election_deadline = now + base + Duration::from_millis(jitter);
    }

    fn halt(&mut self, err: StorageError) {
        if self.halted.is_none() {
            tracing::error!(
                node = self.config.id,
                error = %err,
                "storage failed: this node stops taking part until it is restarted"
            );
            self.halted = Some(err);
            self.role = Role::Follower;
            self.fail_pending();
            self.outbox.clear();
            self.persist.clear();
        }
    }

    fn persist_hard_state(&mut self) -> bool {
        self.persist.hard_state(HardState {
            term: self.term,
            voted_for: self.voted_for,
            recovering: self.recovering,
        });
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
        for (_, (id, _)) in std::mem::take(&mut self.lead.pending_writes) {
            self.outputs.push_back(ClientOutput { id, result: Err(ClientError::Unknown) });
        }
        let leader = self.leader.filter(|&l| l != self.config.id);
        for read in self.lead.pending_reads.drain(..) {
            self.outputs.push_back(ClientOutput {
                id: read.id,
                result: Err(ClientError::NotLeader { leader }),
            });
        }
        for (id, _) in self.lead.reads_waiting_for_term_commit.drain(..) {
            self.outputs
                .push_back(ClientOutput { id, result: Err(ClientError::NotLeader { leader }) });
        }
    }

    /// Lets time pass: elections, heartbeats, and the leader's check that a quorum still hears it.
    pub fn tick(&mut self, now: Timestamp) {
        self.clock = self.clock.max(now);
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
                    let heard = usize::from(self.is_voter())
                        + self
                            .lead
                            .progress
                            .values()
                            .filter(|p| {
                                p.counted()
                                    && p.last_contact.is_some_and(|t| t.since_origin() >= horizon)
                            })
                            .count();
                    if heard < self.quorum() {
                        self.become_follower(self.term, None, now);
                        return;
                    }
                    self.election_deadline = now + self.config.election_timeout;
                }
                self.expire_transfer(now);
                if now >= self.heartbeat_deadline {
                    self.lead.heartbeat_all();
                    self.heartbeat_deadline = now + self.config.heartbeat_interval;
                }
                self.expire_leases(now);
            }
            Role::Follower | Role::PreCandidate | Role::Candidate => {
                #[cfg(plus_planted_bugs)]
                if self.config.bugs.replica_expires_leases {
                    self.planted_local_expiry(now);
                }
                if self.role != Role::Follower
                    && now >= self.heartbeat_deadline
                    && now < self.election_deadline
                {
                    // Ask again those who have not answered: a lost request must not cost a
                    // whole election round.
                    self.resend_vote_requests(now);
                }
                self.settle_transfer(None, now);
                if now >= self.election_deadline {
                    if self.recovering || !self.may_campaign() {
                        // A wiped node must not disturb the cluster: it waits to be caught up.
                        // A learner or a removed node never campaigns.
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
        self.clock = self.clock.max(now);
        // Messages are heard whatever this node's configuration says (Ongaro's thesis, 4.2.1):
        // a joining node knows no members yet, and a node whose log lags a change must still
        // vote for a candidate that the change made a voter. Votes are counted only from the
        // voters of our own configuration; a removed node that keeps running cannot disturb
        // the cluster because pre-votes are refused while a leader is heard (and its log, which
        // lacks its removal, loses to any majority's).
        if self.halted.is_some() || from == self.config.id {
            return;
        }
        if let Err(reason) = self.admissible(&msg) {
            self.drop_message(from, &msg, reason);
            return;
        }
        // Pre-votes change nobody's term or state, whatever the role.
        match msg {
            Message::PreVote { term, last_index, last_term } => {
                return self.on_pre_vote(from, term, last_index, last_term, now);
            }
            Message::PreVoteReply { term, granted: true } => {
                return self.on_pre_vote_reply(from, term, now);
            }
            // A refusal carries the voter's term: a stale pre-candidate learns it below.
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
        match self.role {
            Role::Leader => self.step_leader(from, &msg, now),
            Role::PreCandidate | Role::Candidate => self.step_candidate(from, msg, now),
            Role::Follower => self.step_follower(from, msg, now),
        }
    }

    /// The leader hears its followers' acknowledgements, and refuses votes in its own term.
    fn step_leader(&mut self, from: NodeId, msg: &Message, now: Timestamp) {
        match *msg {
            Message::AppendReply { term, success, match_index, read_seq, recovering } => {
                self.on_append_reply(from, term, success, match_index, read_seq, recovering, now);
            }
            Message::Vote { term, last_index, last_term } => {
                self.on_vote(from, term, last_index, last_term, now);
            }
            // Another leader's appends in our term cannot exist (one leader per term); replies
            // to votes are stale.
            _ => {}
        }
    }

    /// A candidate counts votes, and follows a leader of its term as soon as one speaks.
    fn step_candidate(&mut self, from: NodeId, msg: Message, now: Timestamp) {
        match msg {
            Message::VoteReply { term, granted: true } => self.on_vote_reply(from, term, now),
            other => self.step_follower(from, other, now),
        }
    }

    /// A follower answers votes, appends and snapshots.
    fn step_follower(&mut self, from: NodeId, msg: Message, now: Timestamp) {
        match msg {
            Message::Vote { term, last_index, last_term } => {
                self.on_vote(from, term, last_index, last_term, now);
            }
            Message::Append { term, prev_index, prev_term, entries, commit, read_seq } => {
                self.on_append(from, term, prev_index, prev_term, entries, commit, read_seq, now);
            }
            Message::Snapshot { term, snapshot, commit, read_seq } => {
                self.on_snapshot(from, term, *snapshot, commit, read_seq, now);
            }
            Message::TimeoutNow { term } => self.on_timeout_now(from, term, now),
            // Replies to a role it no longer holds.
            _ => {}
        }
    }
}

/// The highest value a quorum of `values` has reached: the `quorum`-th largest, or 0 when there
/// are fewer values than that. The one rule behind commit (match indices) and reads
/// (acknowledged read rounds).
fn quorum_value(mut values: Vec<u64>, quorum: usize) -> u64 {
    values.sort_unstable_by(|a, b| b.cmp(a));
    quorum.checked_sub(1).and_then(|i| values.get(i).copied()).unwrap_or(0)
}

/// Mixed into [`Config::seed`] for the snapshot jitter's own random stream.
const SNAPSHOT_STREAM: u64 = 0x05ee_d5a9_0000_0001;

/// The entries to apply before the next snapshot: `threshold` plus up to half of it more, drawn
/// anew for each snapshot. Replicas apply at the same pace, so with one threshold for all they
/// would snapshot at the same moment, and while a snapshot's write holds up a follower's
/// appends (and so its acknowledgements), two followers doing it at once could cost a 3-node
/// leader its quorum; apart, the leader still hears from a majority.
fn snapshot_interval(threshold: u64, rng: &mut SeededRng) -> u64 {
    threshold.saturating_add(rng.random_range(0..=threshold / 2))
}
