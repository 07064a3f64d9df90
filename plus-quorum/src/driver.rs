//! The tokio driver: runs a [`Node`] as a task, with timers, a [`Transport`] and a client API.
//! It makes no consensus decisions.

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use plus_core::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::lease::{LeaseId, LeaseInfo};
use crate::membership::{ClusterChange, ClusterChanged, Membership, MembershipError};
use crate::message::Message;
use crate::node::{Config, Inspection, Node, NodeError, NodeStats, Role};
use crate::storage::Storage;
use crate::txn::{KeyRange, Range, RangeResult, Txn, TxnOutcome};
use crate::types::{
    ClientError, NodeId, ReadOp, ReadResult, RequestId, Response, Versioned, WriteOp, WriteResult,
};
use crate::watch::{WatchBatch, WatchRequest};

/// Carries messages between nodes.
///
/// # Contract
/// `send` must not block: queue the message and return (drop it if the peer is unreachable;
/// the protocol resends). Delivery may be lost, duplicated, delayed or reordered.
pub trait Transport: Send + Sync + 'static {
    /// Sends `msg` from `from` to `to`, best effort.
    fn send(&self, from: NodeId, to: NodeId, msg: Message);

    /// The configuration in force on the sending node changed (a member added or removed):
    /// a transport that connects by address reaches new members here. The default does
    /// nothing (a transport that reaches every node by id already).
    fn members_changed(&self, membership: &Membership) {
        let _ = membership;
    }
}

/// The longest a client waits between two nodes it could not reach.
const MAX_ROUTE_PAUSE: Duration = Duration::from_millis(200);

/// Why a call through the driver failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum StoreError {
    /// The node (or cluster) answered with an error.
    #[error(transparent)]
    Client(#[from] ClientError),
    /// No answer before the call's deadline; for a write, it may or may not have applied.
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// The node is stopped.
    #[error("node {0} is stopped")]
    Stopped(NodeId),
    /// No leader could be found before the deadline.
    #[error("no leader found within {0:?}")]
    NoLeader(Duration),
    /// The client was made with no node to talk to.
    #[error("the cluster client has no nodes")]
    EmptyCluster,
    /// No longer the leader of this election: it resigned, or its lease ended.
    #[error("no longer the leader of election `{0}` (resigned, or its lease ended)")]
    NotElected(String),
    /// The lease does not exist: never granted, revoked, or expired.
    #[error("lease {0} does not exist (never granted, revoked or expired)")]
    NoSuchLease(LeaseId),
    /// The [`Session`](crate::Session) a lock or election was waiting on was lost first.
    #[error("the session was lost: {0}")]
    SessionLost(String),
    /// A store reached through another client library (etcd, feature `etcd`) failed, or
    /// answered with something this crate cannot represent (a key that is not UTF-8); for a
    /// write, it may or may not have applied.
    #[error("the store failed: {0}")]
    Backend(String),
    /// The node refused the request: the role bound to this connection's credential may not
    /// make it (a reader writing, a client changing membership, anyone but node N speaking as
    /// N). Nothing was done.
    #[error("{role} may not make {request}")]
    Forbidden {
        /// The role the node saw.
        role: String,
        /// What was refused.
        request: String,
    },
    /// The node could not be reached, and the last attempt says why (a refused certificate
    /// or key, a refused connection, no route); the request was never sent.
    #[error("node {node} is unreachable: {cause}")]
    Unreachable {
        /// The node.
        node: NodeId,
        /// Why the last attempt to connect failed.
        cause: String,
    },
    /// A node answered with a reply of the wrong kind (a node of another version, or a hostile
    /// peer on a network transport); nothing can be concluded about the request.
    #[error("unexpected reply: expected {expected}, got {got}")]
    UnexpectedReply {
        /// What the request is answered with.
        expected: String,
        /// What came back.
        got: String,
    },
}

impl StoreError {
    pub(crate) fn unexpected(expected: &str, got: &impl fmt::Debug) -> Self {
        let mut got = format!("{got:?}");
        if got.len() > 200 {
            let mut end = 200;
            while !got.is_char_boundary(end) {
                end -= 1;
            }
            got.truncate(end);
            got.push_str("...");
        }
        Self::UnexpectedReply { expected: expected.to_owned(), got }
    }
}

/// A node's state as the driver sees it ([`NodeHandle::status`], or every change through
/// [`NodeHandle::subscribe`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Status {
    /// The node.
    pub id: NodeId,
    /// Its role.
    pub role: Role,
    /// The leader it knows of.
    pub leader: Option<NodeId>,
    /// Its term.
    pub term: u64,
    /// Its commit index.
    pub commit: u64,
    /// Its applied index.
    pub applied: u64,
    /// Whether it is recovering after a wipe.
    pub recovering: bool,
}

impl Status {
    fn of(node: &Node) -> Self {
        Status {
            id: node.id(),
            role: node.role(),
            leader: node.leader(),
            term: node.term(),
            commit: node.commit_index(),
            applied: node.applied_index(),
            recovering: node.is_recovering(),
        }
    }
}

type Reply = oneshot::Sender<Result<Response, ClientError>>;
type WatchReply = oneshot::Sender<Result<WatchBatch, ClientError>>;

enum Command {
    Write(WriteOp, Reply),
    ChangeCluster(ClusterChange, Reply),
    Membership(oneshot::Sender<Membership>),
    Read(ReadOp, Reply),
    LocalGet(String, oneshot::Sender<Option<Versioned>>),
    Status(oneshot::Sender<Status>),
    Stats(oneshot::Sender<NodeStats>),
    Watch(WatchRequest, Duration, WatchReply),
    Inspect(oneshot::Sender<Inspection>),
    Stop(oneshot::Sender<()>),
}

/// A handle to a running node: the client API of one node. Cheap to clone.
///
/// Calls on a follower fail fast with [`ClientError::NotLeader`] and a hint; [`Cluster`] routes
/// to the leader for you.
#[derive(Clone)]
pub struct NodeHandle {
    id: NodeId,
    commands: mpsc::UnboundedSender<Command>,
    inbox: mpsc::UnboundedSender<(NodeId, Message)>,
    status: watch::Receiver<Status>,
}

impl fmt::Debug for NodeHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NodeHandle").field("id", &self.id).finish_non_exhaustive()
    }
}

/// A running node: its handle and its task.
#[derive(Debug)]
pub struct RunningNode {
    /// The handle.
    pub handle: NodeHandle,
    /// The driver task; resolves when the node stops.
    pub task: JoinHandle<()>,
}

/// Starts `node` on the current tokio runtime, sending through `transport`.
///
/// # Errors
/// [`NodeError`] when the node cannot start (bad config, unreadable storage).
pub fn spawn_node<S: Storage + 'static>(
    config: Config,
    mut storage: S,
    transport: Arc<dyn Transport>,
) -> Result<RunningNode, NodeError> {
    let origin = Instant::now();
    let node = Node::new(config, &mut storage, Timestamp::ZERO)?;
    let id = node.id();
    let (commands, command_rx) = mpsc::unbounded_channel();
    let (inbox, inbox_rx) = mpsc::unbounded_channel();
    let (status_tx, status) = watch::channel(Status::of(&node));
    tracing::info!(node = id, term = node.term(), commit = node.commit_index(), "node started");
    let channels = Channels { commands: command_rx, inbox: inbox_rx, status: status_tx };
    let task = tokio::spawn(drive(node, storage, transport, channels, origin));
    Ok(RunningNode { handle: NodeHandle { id, commands, inbox, status }, task })
}

/// Watch polls waiting for a change (or their deadline), answered after every turn.
#[derive(Default)]
struct ParkedWatches {
    waiting: Vec<(WatchRequest, Instant, WatchReply)>,
    /// The applied index the waiting polls were last looked at with: nothing new to tell them
    /// until it moves (or a deadline passes).
    looked_at: u64,
}

impl ParkedWatches {
    /// Answers a new poll at once if it can be; parks it otherwise. (Looking at it alone keeps
    /// a thousand watchers that poll again after each answer from costing a thousand looks
    /// each.)
    fn park(&mut self, node: &Node, request: WatchRequest, until: Instant, reply: WatchReply) {
        match Self::look(node, &request, Instant::now(), until) {
            Some(result) => {
                let _ = reply.send(result);
            }
            None => self.waiting.push((request, until, reply)),
        }
    }

    /// The answer to a poll, if it has one now: events, an error, or no time left.
    fn look(
        node: &Node,
        request: &WatchRequest,
        now: Instant,
        until: Instant,
    ) -> Option<Result<WatchBatch, ClientError>> {
        // Only the leader answers: a replica cut off from the others would answer with
        // progress marks only, and its watcher would never learn it is behind.
        let result = if node.is_leader() {
            node.watch(request)
        } else {
            Err(ClientError::NotLeader { leader: node.leader() })
        };
        let ready = match &result {
            Ok(batch) => !batch.events.is_empty() || now >= until,
            Err(_) => true,
        };
        ready.then_some(result)
    }

    /// Answers every poll that has events, an error, or no time left; keeps the rest.
    fn answer(&mut self, node: &Node, now: Instant) {
        let moved = node.applied_index() != self.looked_at;
        let due = self.earliest().is_some_and(|at| at <= now);
        // Leadership lost: the waiting polls must move to the new leader.
        let deposed = !node.is_leader() && !self.waiting.is_empty();
        if !moved && !due && !deposed {
            return;
        }
        self.looked_at = node.applied_index();
        let mut still = Vec::with_capacity(self.waiting.len());
        for (request, until, reply) in self.waiting.drain(..) {
            if reply.is_closed() {
                continue;
            }
            match Self::look(node, &request, now, until) {
                Some(result) => {
                    let _ = reply.send(result);
                }
                None => still.push((request, until, reply)),
            }
        }
        self.waiting = still;
    }

    fn earliest(&self) -> Option<Instant> {
        self.waiting.iter().map(|(_, until, _)| *until).min()
    }
}

/// The driver task's ends of its channels.
struct Channels {
    commands: mpsc::UnboundedReceiver<Command>,
    inbox: mpsc::UnboundedReceiver<(NodeId, Message)>,
    status: watch::Sender<Status>,
}

/// What a finished write gives back: the storage, the batches made durable, and the error
/// that stopped the rest.
type Written<S> = (S, Vec<u64>, Result<(), crate::StorageError>);

/// The node's storage as the driver writes it: inline when writes are quick, or on a blocking
/// thread with one write in flight at a time, the node's next batch gathering everything that
/// happens meanwhile (group commit).
struct Disk<S> {
    /// `None` while a write is in flight (or after a write task panicked).
    storage: Option<S>,
    in_flight: Option<tokio::task::JoinHandle<Written<S>>>,
    blocking: bool,
}

impl<S: Storage + 'static> Disk<S> {
    fn new(storage: S) -> Self {
        let blocking = storage.writes_block();
        Self { storage: Some(storage), in_flight: None, blocking }
    }

    fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Writes what the node has to make durable, unless a write is in flight (then it waits
    /// in the node, growing, for the next one).
    fn write(&mut self, node: &mut Node, now: Timestamp) {
        if self.in_flight.is_some() {
            return;
        }
        let Some(storage) = self.storage.take() else { return };
        let mut batches = Vec::new();
        while let Some(batch) = node.poll_persist() {
            batches.push(batch);
        }
        if batches.is_empty() {
            self.storage = Some(storage);
            return;
        }
        if self.blocking {
            self.in_flight =
                Some(tokio::task::spawn_blocking(move || write_batches(storage, &batches)));
        } else {
            let written = write_batches(storage, &batches);
            self.finish(node, Ok(written), now);
        }
    }

    /// The write in flight's outcome (only while [`Disk::is_writing`]).
    async fn written(&mut self) -> Result<Written<S>, tokio::task::JoinError> {
        match self.in_flight.as_mut() {
            Some(task) => task.await,
            None => std::future::pending().await,
        }
    }

    fn finish(
        &mut self,
        node: &mut Node,
        written: Result<Written<S>, tokio::task::JoinError>,
        now: Timestamp,
    ) {
        self.in_flight = None;
        match written {
            Ok((storage, durable, result)) => {
                self.storage = Some(storage);
                for seq in durable {
                    node.persisted(seq, now);
                }
                if let Err(err) = result {
                    node.persist_failed(err);
                }
            }
            Err(panicked) => node.persist_failed(crate::StorageError::new(
                crate::StorageErrorKind::Io,
                format!("the storage write panicked: {panicked}"),
            )),
        }
    }
}

fn write_batches<S: Storage>(mut storage: S, batches: &[crate::PersistBatch]) -> Written<S> {
    let mut durable = Vec::with_capacity(batches.len());
    for batch in batches {
        if let Err(err) = batch.write_to(&mut storage) {
            return (storage, durable, Err(err));
        }
        durable.push(batch.seq);
    }
    (storage, durable, Ok(()))
}

async fn drive<S: Storage + 'static>(
    mut node: Node,
    storage: S,
    transport: Arc<dyn Transport>,
    channels: Channels,
    origin: Instant,
) {
    let Channels { mut commands, mut inbox, status } = channels;
    let mut disk = Disk::new(storage);
    let now = || Timestamp::from_duration(origin.elapsed());
    let mut waiting: HashMap<RequestId, Reply> = HashMap::new();
    let mut next_id: RequestId = 1;
    let id = node.id();
    let mut watches = ParkedWatches::default();
    #[cfg(feature = "metrics")]
    let mut metrics = crate::metrics::NodeMetrics::new(id);
    let mut membership = node.membership().clone();
    let mut membership_changes = node.membership_changes();
    transport.members_changed(&membership);
    loop {
        // The leader's replication leaves before its own write is durable; then everything
        // the last turn wrote is made durable in one batch (one fsync per turn, however many
        // messages and requests it handled), which releases the messages that waited for it.
        while let Some((to, msg)) = node.poll_message() {
            transport.send(id, to, msg);
        }
        disk.write(&mut node, now());
        while let Some((to, msg)) = node.poll_message() {
            transport.send(id, to, msg);
        }
        while let Some(out) = node.poll_output() {
            if let Some(reply) = waiting.remove(&out.id) {
                let _ = reply.send(out.result);
            }
        }
        let current = Status::of(&node);
        status.send_if_modified(|published| {
            let changed = *published != current;
            *published = current;
            changed
        });
        #[cfg(feature = "metrics")]
        metrics.maybe_record(&node);
        watches.answer(&node, Instant::now());
        if node.membership_changes() != membership_changes {
            membership_changes = node.membership_changes();
            if *node.membership() != membership {
                membership = node.membership().clone();
                tracing::info!(node = id, %membership, "membership in force changed");
                transport.members_changed(&membership);
            }
        }
        let deadline =
            watches.earliest().map_or(origin + node.poll_timeout().since_origin(), |w| {
                w.min(origin + node.poll_timeout().since_origin())
            });
        tokio::select! {
            biased;
            written = disk.written(), if disk.is_writing() => disk.finish(&mut node, written, now()),
            command = commands.recv() => {
                let Some(command) = command else { return };
                match command {
                    Command::Write(op, reply) => {
                        let rid = next_id;
                        next_id += 1;
                        match node.write(rid, op) {
                            Ok(()) => { waiting.insert(rid, reply); }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Command::Read(op, reply) => {
                        let rid = next_id;
                        next_id += 1;
                        match node.read(rid, op) {
                            Ok(()) => { waiting.insert(rid, reply); }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Command::ChangeCluster(change, reply) => {
                        let rid = next_id;
                        next_id += 1;
                        match node.change_cluster(rid, &change) {
                            Ok(()) => { waiting.insert(rid, reply); }
                            Err(e) => { let _ = reply.send(Err(e)); }
                        }
                    }
                    Command::Membership(reply) => { let _ = reply.send(node.membership().clone()); }
                    Command::LocalGet(key, reply) => { let _ = reply.send(node.local_get(&key).cloned()); }
                    Command::Status(reply) => { let _ = reply.send(Status::of(&node)); }
                    Command::Stats(reply) => { let _ = reply.send(node.stats()); }
                    Command::Watch(request, wait, reply) => {
                        watches.park(&node, request, Instant::now() + wait, reply);
                    }
                    Command::Inspect(reply) => { let _ = reply.send(node.inspect()); }
                    Command::Stop(reply) => {
                        // A write in flight ends first: the storage (and its lock) is free
                        // once the node has stopped.
                        if disk.is_writing() {
                            let written = disk.written().await;
                            disk.finish(&mut node, written, now());
                        }
                        // Pending callers learn their outcome is unknown (writes) or retryable.
                        for (_, r) in waiting.drain() {
                            let _ = r.send(Err(ClientError::Unknown));
                        }
                        // Calls queued behind the stop never ran: safe to send elsewhere.
                        commands.close();
                        while let Ok(queued) = commands.try_recv() {
                            if let Command::Write(_, r)
                            | Command::Read(_, r)
                            | Command::ChangeCluster(_, r) = queued
                            {
                                let _ = r.send(Err(ClientError::NotLeader { leader: None }));
                            }
                        }
                        tracing::info!(node = id, "node stopped");
                        let _ = reply.send(());
                        return;
                    }
                }
            }
            message = inbox.recv() => {
                let Some((from, msg)) = message else { return };
                node.step(from, msg, now());
            }
            () = tokio::time::sleep_until(deadline) => node.tick(now()),
        }
    }
}

impl NodeHandle {
    /// The node's id.
    #[must_use]
    pub fn id(&self) -> NodeId {
        self.id
    }

    /// Delivers a message from a peer (what a [`Transport`] calls on receipt).
    pub fn deliver(&self, from: NodeId, msg: Message) {
        let _ = self.inbox.send((from, msg));
    }

    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
        deadline: Duration,
    ) -> Result<T, StoreError> {
        self.call_or(make, deadline, StoreError::Stopped(self.id)).await
    }

    /// As `call`, with `dropped` as the error when the node took the call and ended without
    /// answering it (a node task that panicked): for a write, its outcome is unknown.
    async fn call_or<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Command,
        deadline: Duration,
        dropped: StoreError,
    ) -> Result<T, StoreError> {
        let (tx, rx) = oneshot::channel();
        self.commands.send(make(tx)).map_err(|_| StoreError::Stopped(self.id))?;
        match tokio::time::timeout(deadline, rx).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(_)) => Err(dropped),
            Err(_) => Err(StoreError::Timeout(deadline)),
        }
    }

    /// A write on this node, with a deadline.
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::NotLeader`] on a follower.
    pub async fn write(&self, op: WriteOp, deadline: Duration) -> Result<WriteResult, StoreError> {
        let unknown = StoreError::Client(ClientError::Unknown);
        match self.call_or(|r| Command::Write(op, r), deadline, unknown).await?? {
            Response::Write(w) => Ok(w),
            other => Err(StoreError::unexpected("a write result", &other)),
        }
    }

    /// A membership change or leadership transfer on this node (the leader), with a deadline:
    /// answered once the change is committed, or once the target leads.
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::NotLeader`] on a follower; [`ClientError::Membership`]
    /// when the change breaks a rule.
    pub async fn change_cluster(
        &self,
        change: ClusterChange,
        deadline: Duration,
    ) -> Result<ClusterChanged, StoreError> {
        let unknown = StoreError::Client(ClientError::Unknown);
        match self.call_or(|r| Command::ChangeCluster(change, r), deadline, unknown).await?? {
            Response::Cluster(c) => Ok(c),
            other => Err(StoreError::unexpected("a membership change", &other)),
        }
    }

    /// The configuration in force on this node (the latest in its log, committed or not).
    ///
    /// # Errors
    /// [`StoreError::Stopped`] or a timeout.
    pub async fn membership(&self) -> Result<Membership, StoreError> {
        self.call(Command::Membership, Duration::from_secs(5)).await
    }

    /// A linearizable read on this node, with a deadline.
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::NotLeader`] on a follower.
    pub async fn read(&self, op: ReadOp, deadline: Duration) -> Result<ReadResult, StoreError> {
        match self.call(|r| Command::Read(op, r), deadline).await?? {
            Response::Read(r) => Ok(r),
            other => Err(StoreError::unexpected("a read result", &other)),
        }
    }

    /// This replica's value of `key`, possibly stale.
    ///
    /// # Errors
    /// [`StoreError::Stopped`] or a timeout.
    pub async fn local_get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        self.call(|r| Command::LocalGet(key.to_owned(), r), Duration::from_secs(5)).await
    }

    /// The node's status.
    ///
    /// # Errors
    /// [`StoreError::Stopped`] or a timeout.
    pub async fn status(&self) -> Result<Status, StoreError> {
        self.call(Command::Status, Duration::from_secs(5)).await
    }

    /// Every change of the node's status, as it happens (role, term, leader, commit and
    /// applied index); the receiver holds the latest. Once the node stops, `changed()` fails.
    #[must_use]
    pub fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.clone()
    }

    /// The changes to a range from a revision on, from this node's history; waits up to
    /// `wait` for one when there is none yet (a long poll), then answers with a progress mark.
    /// Only the leader answers, so that a watcher on a replica cut off from the others hears
    /// that it must move instead of hearing "nothing new" for ever.
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] on a follower; [`ClientError::Compacted`] for a revision older
    /// than the history; [`StoreError::Stopped`].
    pub async fn watch(
        &self,
        request: WatchRequest,
        wait: Duration,
    ) -> Result<WatchBatch, StoreError> {
        // The node answers by `wait` at the latest; the margin covers a busy node.
        let deadline = wait + Duration::from_secs(5);
        Ok(self.call(|r| Command::Watch(request, wait, r), deadline).await??)
    }

    /// The node's counters and the leader's view of its followers.
    ///
    /// # Errors
    /// [`StoreError::Stopped`] or a timeout.
    pub async fn stats(&self) -> Result<NodeStats, StoreError> {
        self.call(Command::Stats, Duration::from_secs(5)).await
    }

    /// The node's inspection report.
    ///
    /// # Errors
    /// [`StoreError::Stopped`] or a timeout.
    pub async fn inspect(&self) -> Result<Inspection, StoreError> {
        self.call(Command::Inspect, Duration::from_secs(5)).await
    }

    /// Stops the node; pending calls fail with [`ClientError::Unknown`].
    pub async fn stop(&self) {
        let _ = self.call(Command::Stop, Duration::from_secs(5)).await;
    }
}

/// One node's client API, local ([`NodeHandle`]) or remote (over plus-mux with the `mux`
/// feature), so that [`Cluster`] can route over either.
#[async_trait::async_trait]
pub trait NodeApi: Clone + Send + Sync + 'static {
    /// The node.
    fn id(&self) -> NodeId;
    /// A write with a deadline.
    async fn write(&self, op: WriteOp, deadline: Duration) -> Result<WriteResult, StoreError>;
    /// A linearizable read with a deadline.
    async fn read(&self, op: ReadOp, deadline: Duration) -> Result<ReadResult, StoreError>;
    /// The node's status.
    async fn status(&self) -> Result<Status, StoreError>;
    /// A watch poll on this node: the changes from a revision on, waiting up to `wait` for one.
    async fn watch(&self, request: WatchRequest, wait: Duration) -> Result<WatchBatch, StoreError>;
    /// A membership change or leadership transfer with a deadline (the leader answers).
    async fn change_cluster(
        &self,
        change: ClusterChange,
        deadline: Duration,
    ) -> Result<ClusterChanged, StoreError>;
    /// The configuration in force on this node.
    async fn membership(&self) -> Result<Membership, StoreError>;
}

#[async_trait::async_trait]
impl NodeApi for NodeHandle {
    fn id(&self) -> NodeId {
        self.id
    }
    async fn write(&self, op: WriteOp, deadline: Duration) -> Result<WriteResult, StoreError> {
        NodeHandle::write(self, op, deadline).await
    }
    async fn read(&self, op: ReadOp, deadline: Duration) -> Result<ReadResult, StoreError> {
        NodeHandle::read(self, op, deadline).await
    }
    async fn status(&self) -> Result<Status, StoreError> {
        NodeHandle::status(self).await
    }
    async fn watch(&self, request: WatchRequest, wait: Duration) -> Result<WatchBatch, StoreError> {
        NodeHandle::watch(self, request, wait).await
    }
    async fn change_cluster(
        &self,
        change: ClusterChange,
        deadline: Duration,
    ) -> Result<ClusterChanged, StoreError> {
        NodeHandle::change_cluster(self, change, deadline).await
    }
    async fn membership(&self) -> Result<Membership, StoreError> {
        NodeHandle::membership(self).await
    }
}

/// The client view of a cluster: routes every call to the leader, following hints and
/// re-routing after a leader change, within the call's deadline (Xiaomi's MAE container platform talk: "R/W is transparent
/// to the user").
#[derive(Debug, Clone)]
pub struct Cluster<N: NodeApi = NodeHandle> {
    nodes: Arc<std::sync::RwLock<Vec<N>>>,
    leader: Arc<std::sync::Mutex<Option<NodeId>>>,
    connector: Option<Connector<N>>,
    /// Deadline of every call. Default 5 s.
    pub deadline: Duration,
}

/// One completed step of [`Cluster::replace_member`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReplaceStep {
    /// The new node is a learner: it receives the log.
    LearnerAdded {
        /// The new node.
        id: NodeId,
    },
    /// The new node caught up and votes.
    Promoted {
        /// The new node.
        id: NodeId,
    },
    /// The old member is out of the configuration.
    Removed {
        /// The old member.
        id: NodeId,
    },
}

/// How a [`Cluster`] reaches a member it learns of later: from its id and the address it was
/// added with.
type Connect<N> = dyn Fn(NodeId, &str) -> Option<N> + Send + Sync;

#[derive(Clone)]
struct Connector<N>(Arc<Connect<N>>);

impl<N> fmt::Debug for Connector<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Connector")
    }
}

impl<N: NodeApi> Cluster<N> {
    /// A client over `nodes`.
    #[must_use]
    pub fn new(nodes: Vec<N>) -> Self {
        Self {
            nodes: Arc::new(std::sync::RwLock::new(nodes)),
            leader: Arc::new(std::sync::Mutex::new(None)),
            connector: None,
            deadline: Duration::from_secs(5),
        }
    }

    /// Lets the client reach members added after it was created: when a node names a leader
    /// it does not know, or a membership change commits, it reads the membership and connects
    /// to each new member at the address it was added with; removed members are dropped.
    #[must_use]
    pub fn with_connector(
        mut self,
        connect: impl Fn(NodeId, &str) -> Option<N> + Send + Sync + 'static,
    ) -> Self {
        self.connector = Some(Connector(Arc::new(connect)));
        self
    }

    /// Adopts a configuration the cluster holds: handles for new members (through the
    /// connector, when it has an address), none for removed ones.
    pub fn learn(&self, membership: &Membership) {
        if membership.voters().is_empty() {
            return;
        }
        let mut nodes = self.nodes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        nodes.retain(|n| membership.contains(n.id()));
        let Some(Connector(connect)) = &self.connector else { return };
        for id in membership.members() {
            if nodes.iter().any(|n| n.id() == id) {
                continue;
            }
            if let Some(handle) = membership.address(id).and_then(|addr| connect(id, addr)) {
                tracing::info!(node = id, "client reaches a new member");
                nodes.push(handle);
            }
        }
    }

    /// Reads the membership from `node` and adopts it (see [`Cluster::learn`]).
    async fn learn_from(&self, node: &N) {
        if let Ok(membership) = node.membership().await {
            self.learn(&membership);
        }
    }

    /// A membership change or leadership transfer, on the leader wherever it is; the client
    /// adopts the new configuration (see [`Cluster::with_connector`]).
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::Membership`] when the change breaks a rule (a change in
    /// flight, a lagging learner, ...). An outcome-unknown change reports
    /// [`ClientError::Unknown`] or a timeout: read [`Cluster::membership`] to see.
    pub async fn change_cluster(
        &self,
        change: ClusterChange,
    ) -> Result<ClusterChanged, StoreError> {
        let changed = self
            .route(|node, left| {
                let change = change.clone();
                async move { node.change_cluster(change, left).await }
            })
            .await?;
        if let ClusterChanged::Membership { membership, .. } = &changed {
            self.learn(membership);
        }
        Ok(changed)
    }

    /// Replaces member `old` by the node `new` (started empty with
    /// [`Start::Join`](crate::Start::Join), reachable at `address` for transports that need it)
    /// in three single changes: `new` added as a learner, promoted once caught up, `old`
    /// removed. Each step is reported to `on_step` with the time since the call, as it
    /// completes. Steps the cluster is not ready for yet (no leader, the learner still catching
    /// up, the previous change committing) are retried until `within` has passed; a step whose
    /// answer was lost and that did take effect counts as done.
    ///
    /// # Errors
    /// The first error that retrying cannot mend (a rule broken: `new` already a member, `old`
    /// not one), or the last one when `within` runs out. The steps done stay done: call again
    /// to finish (each completed step then counts as done).
    pub async fn replace_member(
        &self,
        old: NodeId,
        new: NodeId,
        address: Option<String>,
        within: Duration,
        mut on_step: impl FnMut(ReplaceStep, Duration),
    ) -> Result<Membership, StoreError> {
        let started = Instant::now();
        let until = started + within;
        let steps = [
            (ClusterChange::AddLearner { id: new, address }, ReplaceStep::LearnerAdded { id: new }),
            (ClusterChange::Promote { id: new }, ReplaceStep::Promoted { id: new }),
            (ClusterChange::Remove { id: old }, ReplaceStep::Removed { id: old }),
        ];
        for (change, step) in steps {
            self.change_until(&change, until).await?;
            tracing::info!(
                ?step,
                elapsed_ms = started.elapsed().as_millis(),
                "replacement step done"
            );
            on_step(step, started.elapsed());
        }
        self.membership().await
    }

    /// `change`, retried while the cluster is not ready for it, until `until`.
    async fn change_until(&self, change: &ClusterChange, until: Instant) -> Result<(), StoreError> {
        loop {
            let Err(error) = self.change_cluster(change.clone()).await else { return Ok(()) };
            let refused = match &error {
                StoreError::Client(ClientError::Membership(refused)) => Some(refused),
                _ => None,
            };
            // A retried change whose first try did take effect (its answer was lost) is done.
            let done = match (change, refused) {
                (ClusterChange::AddLearner { .. }, Some(MembershipError::AlreadyMember { .. }))
                | (ClusterChange::Remove { .. }, Some(MembershipError::NotAMember { .. })) => true,
                (ClusterChange::Promote { id }, Some(MembershipError::NotALearner { .. })) => {
                    self.membership().await.is_ok_and(|m| m.is_voter(*id))
                }
                _ => false,
            };
            if done {
                return Ok(());
            }
            let not_ready = matches!(
                error,
                StoreError::NoLeader(_)
                    | StoreError::Timeout(_)
                    | StoreError::Stopped(_)
                    | StoreError::Unreachable { .. }
                    | StoreError::Client(
                        ClientError::Unknown
                            | ClientError::Membership(
                                MembershipError::LearnerBehind { .. }
                                    | MembershipError::LeaderNotReady
                                    | MembershipError::ChangeInFlight { .. }
                                    | MembershipError::Transferring { .. }
                                    | MembershipError::WouldLoseQuorum { .. }
                            )
                    )
            );
            if !not_ready || Instant::now() >= until {
                return Err(error);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The configuration in force on the leader (or, without one, on the first node that
    /// answers).
    ///
    /// # Errors
    /// [`StoreError::EmptyCluster`], or the last node's error when none answers.
    pub async fn membership(&self) -> Result<Membership, StoreError> {
        let mut last = StoreError::EmptyCluster;
        for attempt in 0..self.handles().len() {
            let Some(node) = self.candidate(attempt) else { break };
            match node.membership().await {
                Ok(m) => return Ok(m),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// Replaces the handle of a node (after a restart).
    pub fn replace(&self, handle: N) {
        let mut nodes = self.nodes.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        match nodes.iter_mut().find(|h| h.id() == handle.id()) {
            Some(slot) => *slot = handle,
            None => nodes.push(handle),
        }
    }

    /// The handles.
    #[must_use]
    pub fn handles(&self) -> Vec<N> {
        self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn candidate(&self, attempt: usize) -> Option<N> {
        let nodes = self.handles();
        let leader = *self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        leader
            .and_then(|l| nodes.iter().find(|h| h.id() == l).cloned())
            .or_else(|| (!nodes.is_empty()).then(|| nodes[attempt % nodes.len()].clone()))
    }

    fn note_leader(&self, leader: Option<NodeId>) {
        *self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = leader;
    }

    async fn route<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
    where
        F: Fn(N, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        if self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner).is_empty() {
            return Err(StoreError::EmptyCluster);
        }
        let started = Instant::now();
        let mut attempt = 0;
        // Pauses between nodes that cannot be reached grow, so a client whose nodes are all
        // down (or refuse its credential) waits instead of spinning, and says why at the end.
        let mut pause = Duration::from_millis(5);
        let mut unreachable = None;
        loop {
            let left = self.deadline.saturating_sub(started.elapsed());
            let Some(node) = self.candidate(attempt).filter(|_| !left.is_zero()) else {
                return Err(unreachable.unwrap_or(StoreError::NoLeader(self.deadline)));
            };
            attempt += 1;
            let id = node.id();
            match call(node.clone(), left).await {
                Err(StoreError::Client(ClientError::NotLeader { leader })) => {
                    let unknown =
                        leader.is_some_and(|l| !self.handles().iter().any(|h| h.id() == l));
                    if unknown && self.connector.is_some() {
                        // A leader this client has never heard of: a member added since.
                        self.learn_from(&node).await;
                    }
                    self.note_leader(leader);
                    let reachable =
                        leader.is_some_and(|l| self.handles().iter().any(|h| h.id() == l));
                    if let Some(l) = leader.filter(|_| !reachable) {
                        // A leader this client cannot reach: asking the same nodes again at
                        // once would spin until the deadline.
                        unreachable = Some(StoreError::Unreachable {
                            node: l,
                            cause: "the leader is not among this client's nodes (give its \
                                    address, or make the client with a connector)"
                                .to_owned(),
                        });
                        tokio::time::sleep(pause.min(left)).await;
                        pause = (pause * 2).min(MAX_ROUTE_PAUSE);
                    } else if leader.is_none() {
                        // An election is on: give it a moment.
                        tokio::time::sleep(Duration::from_millis(20).min(left)).await;
                    }
                }
                Err(error @ (StoreError::Stopped(_) | StoreError::Unreachable { .. })) => {
                    self.note_leader(None);
                    if let StoreError::Unreachable { .. } = error {
                        unreachable = Some(error);
                    }
                    tokio::time::sleep(pause.min(left)).await;
                    pause = (pause * 2).min(MAX_ROUTE_PAUSE);
                }
                Ok(answer) => {
                    // Only the leader answers: start there next time instead of going round
                    // the nodes again (past a dead one, which costs a reconnect wait per call).
                    self.note_leader(Some(id));
                    return Ok(answer);
                }
                other => return other,
            }
        }
    }

    /// A linearizable write, on the leader wherever it is.
    ///
    /// # Errors
    /// [`StoreError`]: an outcome-unknown write reports [`ClientError::Unknown`] or a timeout.
    pub async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        // Bad input fails here, at once, not after a round trip (or a timeout).
        op.validate()?;
        self.route(|node, left| {
            let op = op.clone();
            async move { node.write(op, left).await }
        })
        .await
    }

    /// A linearizable read, on the leader wherever it is.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn read(&self, op: ReadOp) -> Result<ReadResult, StoreError> {
        op.validate()?;
        self.route(|node, left| {
            let op = op.clone();
            async move {
                match node.read(op, left).await {
                    // A read that lost its leader had no effect: safe to send again.
                    Err(StoreError::Client(ClientError::Unknown)) => {
                        Err(StoreError::Stopped(node.id()))
                    }
                    other => other,
                }
            }
        })
        .await
    }

    /// The value of `key` (linearizable).
    ///
    /// # Errors
    /// As [`Cluster::read`].
    pub async fn get(&self, key: &str) -> Result<Option<Versioned>, StoreError> {
        match self.read(ReadOp::Get(key.to_owned())).await? {
            ReadResult::Value(v) => Ok(v),
            other => Err(StoreError::unexpected("a value", &other)),
        }
    }

    /// Several keys from one consistent state, in request order.
    ///
    /// # Errors
    /// As [`Cluster::read`].
    pub async fn multi_get(&self, keys: Vec<String>) -> Result<Vec<Option<Versioned>>, StoreError> {
        match self.read(ReadOp::MultiGet(keys)).await? {
            ReadResult::Values(v) => Ok(v),
            other => Err(StoreError::unexpected("values", &other)),
        }
    }

    /// Keys matching `glob` (`*`, `?`), sorted.
    ///
    /// # Errors
    /// As [`Cluster::read`].
    pub async fn keys(&self, glob: &str) -> Result<Vec<String>, StoreError> {
        match self.read(ReadOp::Keys(glob.to_owned())).await? {
            ReadResult::Keys(k) => Ok(k),
            other => Err(StoreError::unexpected("keys", &other)),
        }
    }

    /// Number of keys.
    ///
    /// # Errors
    /// As [`Cluster::read`].
    pub async fn len(&self) -> Result<usize, StoreError> {
        match self.read(ReadOp::Len).await? {
            ReadResult::Len(n) => Ok(n),
            other => Err(StoreError::unexpected("a count", &other)),
        }
    }

    /// Whether the store holds no key.
    ///
    /// # Errors
    /// As [`Cluster::read`].
    pub async fn is_empty(&self) -> Result<bool, StoreError> {
        Ok(self.len().await? == 0)
    }

    /// Sets `key`; returns the new version.
    ///
    /// # Errors
    /// As [`Cluster::write`].
    pub async fn set(&self, key: &str, value: impl Into<bytes::Bytes>) -> Result<u64, StoreError> {
        applied(self.write(WriteOp::Set { key: key.to_owned(), value: value.into() }).await?)
    }

    /// Deletes `key` (nothing happens if it is absent).
    ///
    /// # Errors
    /// As [`Cluster::write`].
    pub async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.write(WriteOp::Delete { key: key.to_owned() }).await.map(|_| ())
    }

    /// Sets `key` if it matches `expect`; [`WriteResult::CompareFailed`] says what it was.
    ///
    /// # Errors
    /// As [`Cluster::write`].
    pub async fn compare_and_set(
        &self,
        key: &str,
        expect: crate::types::Expect,
        value: impl Into<bytes::Bytes>,
    ) -> Result<WriteResult, StoreError> {
        self.write(WriteOp::CompareAndSet { key: key.to_owned(), expect, value: value.into() })
            .await
    }

    /// Deletes `key` if it matches `expect`.
    ///
    /// # Errors
    /// As [`Cluster::write`].
    pub async fn compare_and_delete(
        &self,
        key: &str,
        expect: crate::types::Expect,
    ) -> Result<WriteResult, StoreError> {
        self.write(WriteOp::CompareAndDelete { key: key.to_owned(), expect }).await
    }

    /// Grants a lease of `ttl` (whole milliseconds, at least 1). Keys attached to it
    /// ([`Cluster::set_with_lease`], or a transaction) are deleted when it ends.
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::Invalid`] for a TTL of 0 or above the cluster's maximum.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<LeaseInfo, StoreError> {
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX);
        match self.write(WriteOp::GrantLease { ttl_ms }).await? {
            WriteResult::LeaseGranted { lease, ttl_ms } => {
                Ok(LeaseInfo { id: lease, ttl_ms, remaining_ms: ttl_ms, keys: Vec::new() })
            }
            other => Err(StoreError::unexpected("a granted lease", &other)),
        }
    }

    /// Keeps `lease` alive: its TTL starts again, once the leader has confirmed with a quorum
    /// that it still leads. Call it well within the TTL (a third of it is usual).
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] once the lease has ended; other [`StoreError`]s.
    pub async fn keep_alive(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        self.lease_read(ReadOp::LeaseKeepAlive(lease), lease).await
    }

    /// `lease`'s TTL, the time it has left (the leader's estimate) and its keys.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when it has ended; other [`StoreError`]s.
    pub async fn time_to_live(&self, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        self.lease_read(ReadOp::LeaseTimeToLive(lease), lease).await
    }

    async fn lease_read(&self, op: ReadOp, lease: LeaseId) -> Result<LeaseInfo, StoreError> {
        match self.read(op).await? {
            ReadResult::Lease(Some(info)) => Ok(info),
            ReadResult::Lease(None) => Err(StoreError::NoSuchLease(lease)),
            other => Err(StoreError::unexpected("a lease", &other)),
        }
    }

    /// Ends `lease` now, deleting its keys in one step.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when it has already ended; other [`StoreError`]s.
    pub async fn revoke_lease(&self, lease: LeaseId) -> Result<(), StoreError> {
        applied(self.write(WriteOp::RevokeLease { lease }).await?).map(drop)
    }

    /// Every live lease.
    ///
    /// # Errors
    /// [`StoreError`].
    pub async fn leases(&self) -> Result<Vec<LeaseId>, StoreError> {
        match self.read(ReadOp::Leases).await? {
            ReadResult::Leases(leases) => Ok(leases),
            other => Err(StoreError::unexpected("a list of leases", &other)),
        }
    }

    /// Sets `key` attached to `lease`; returns its new version.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when the lease has ended; other [`StoreError`]s.
    pub async fn set_with_lease(
        &self,
        key: &str,
        value: impl Into<bytes::Bytes>,
        lease: LeaseId,
    ) -> Result<u64, StoreError> {
        let op = WriteOp::SetWithLease { key: key.to_owned(), value: value.into(), lease };
        applied(self.write(op).await?)
    }

    /// Runs a transaction: if every comparison of `txn.when` holds, `txn.then`, otherwise
    /// `txn.otherwise`, all in one step.
    ///
    /// # Errors
    /// [`StoreError::NoSuchLease`] when the branch that would run names an ended lease (nothing
    /// is applied); other [`StoreError`]s.
    pub async fn txn(&self, txn: Txn) -> Result<TxnOutcome, StoreError> {
        match self.write(WriteOp::Txn(txn)).await? {
            WriteResult::Txn { succeeded, version, results } => {
                Ok(TxnOutcome { succeeded, version, results })
            }
            WriteResult::NoSuchLease { lease } => Err(StoreError::NoSuchLease(lease)),
            other => Err(StoreError::unexpected("a transaction's result", &other)),
        }
    }

    /// The keys of a range with their values (or counted), linearizable.
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::Invalid`] for a limit of 0 or an empty interval.
    pub async fn range(&self, range: Range) -> Result<RangeResult, StoreError> {
        match self.read(ReadOp::Range(range)).await? {
            ReadResult::Range(result) => Ok(result),
            other => Err(StoreError::unexpected("a range", &other)),
        }
    }

    /// Watches `range` from revision `from` on (the revision of a read plus one, say): every
    /// change, in order, with no gap and no duplicate, resuming on another node when one fails.
    #[must_use]
    pub fn watch(&self, range: KeyRange, from: u64) -> Watcher<N> {
        Watcher {
            cluster: self.clone(),
            range,
            next: from.max(1),
            attempt: 0,
            max_events: Watcher::<N>::DEFAULT_MAX_EVENTS,
        }
    }

    /// The leader, if some node knows one.
    pub async fn leader(&self) -> Option<NodeId> {
        for node in self.handles() {
            if let Ok(status) = node.status().await
                && status.role == Role::Leader
            {
                return Some(status.id);
            }
        }
        None
    }
}

fn applied(result: WriteResult) -> Result<u64, StoreError> {
    match result {
        WriteResult::Applied { version } => Ok(version),
        WriteResult::NoSuchLease { lease } => Err(StoreError::NoSuchLease(lease)),
        // An unconditional write cannot fail a comparison or answer as another kind of write:
        // only a confused or hostile peer says so.
        other => Err(StoreError::unexpected("an applied unconditional write", &other)),
    }
}

/// A watch on a range ([`Cluster::watch`]): call [`Watcher::next`] for each batch of changes.
#[derive(Debug)]
pub struct Watcher<N: NodeApi = NodeHandle> {
    cluster: Cluster<N>,
    range: KeyRange,
    next: u64,
    attempt: usize,
    max_events: NonZeroUsize,
}

impl<N: NodeApi> Watcher<N> {
    /// How long one poll waits for a change before answering with a progress mark.
    const WAIT: Duration = Duration::from_secs(1);

    /// The default of [`Watcher::max_events`].
    pub const DEFAULT_MAX_EVENTS: NonZeroUsize = NonZeroUsize::new(1_000).expect("not zero");

    /// At most about this many events per batch (whole revisions are never split). A watch
    /// holds no other buffer anywhere: nodes keep one shared history and answer each poll
    /// from it, so a watcher that does not keep up costs nothing until it falls behind that
    /// history, when [`Watcher::next`] fails with [`ClientError::Compacted`]; it never slows
    /// writes or other watchers.
    #[must_use]
    pub fn max_events(mut self, max_events: NonZeroUsize) -> Self {
        self.max_events = max_events;
        self
    }

    /// The revision the next batch starts at.
    #[must_use]
    pub fn next_revision(&self) -> u64 {
        self.next
    }

    /// The next changes, or, when nothing changed for a while, an empty batch whose `progress`
    /// says how far the watch is known to be current. Tries the nodes in turn when one fails,
    /// resuming where the last batch ended.
    ///
    /// # Errors
    /// [`ClientError::Compacted`] when the watch fell behind the history the nodes keep;
    /// [`StoreError::NoLeader`] when no node answered within the cluster's deadline.
    pub async fn next(&mut self) -> Result<WatchBatch, StoreError> {
        let started = Instant::now();
        loop {
            if self.cluster.handles().is_empty() {
                return Err(StoreError::EmptyCluster);
            }
            let Some(node) = self.cluster.candidate(self.attempt) else {
                return Err(StoreError::NoLeader(self.cluster.deadline));
            };
            let request = WatchRequest {
                range: self.range.clone(),
                from: self.next,
                max_events: self.max_events.get(),
            };
            match node.watch(request, Self::WAIT).await {
                Ok(batch) => {
                    self.cluster.note_leader(Some(node.id()));
                    self.next = batch.progress + 1;
                    return Ok(batch);
                }
                Err(err @ StoreError::Client(ClientError::Compacted { .. })) => return Err(err),
                Err(StoreError::Client(ClientError::NotLeader { leader })) => {
                    self.cluster.note_leader(leader);
                    self.attempt += 1;
                }
                // A stopped node, or one that did not answer: forget it as leader, try another.
                Err(_) => {
                    self.cluster.note_leader(None);
                    self.attempt += 1;
                }
            }
            if started.elapsed() >= self.cluster.deadline {
                return Err(StoreError::NoLeader(self.cluster.deadline));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// An in-process transport over channels, for tests, benches and single-process clusters.
/// Links can be cut to simulate a stopped node or a partition.
#[derive(Debug, Default)]
pub struct InProcessNetwork {
    nodes: std::sync::RwLock<HashMap<NodeId, NodeHandle>>,
    cut: std::sync::RwLock<std::collections::HashSet<NodeId>>,
}

impl InProcessNetwork {
    /// An empty network.
    #[must_use]
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Starts a node on the current tokio runtime and connects it to this network, in one call
    /// ([`spawn_node`] then [`InProcessNetwork::register`]).
    ///
    /// # Errors
    /// As [`spawn_node`].
    pub fn spawn<S: Storage + 'static>(
        self: &Arc<Self>,
        config: Config,
        storage: S,
    ) -> Result<RunningNode, NodeError> {
        let node = spawn_node(config, storage, Arc::clone(self) as Arc<dyn Transport>)?;
        self.register(node.handle.clone());
        Ok(node)
    }

    /// Connects (or reconnects) a node.
    pub fn register(&self, handle: NodeHandle) {
        self.cut.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&handle.id);
        self.nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(handle.id, handle);
    }

    /// Cuts a node off: nothing reaches it or leaves it.
    pub fn isolate(&self, id: NodeId) {
        self.cut.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(id);
    }
}

impl Transport for InProcessNetwork {
    fn send(&self, from: NodeId, to: NodeId, msg: Message) {
        let cut = self.cut.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if cut.contains(&from) || cut.contains(&to) {
            return;
        }
        drop(cut);
        if let Some(node) =
            self.nodes.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(&to)
        {
            node.deliver(from, msg);
        }
    }
}
