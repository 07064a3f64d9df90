//! The node's task and its local handle.

#[allow(clippy::wildcard_imports)]
use super::*;

type Reply = oneshot::Sender<Result<Response, ClientError>>;
type WatchReply = oneshot::Sender<Result<WatchBatch, ClientError>>;

enum Command {
    Write(WriteOp, Reply),
    ChangeCluster(ClusterChange, Reply),
    Membership(oneshot::Sender<Membership>),
    Read(ReadOp, Reply),
    Backup(Reply),
    LocalGet(String, oneshot::Sender<Option<Versioned>>),
    Status(oneshot::Sender<Status>),
    Stats(oneshot::Sender<NodeStats>),
    Watch(WatchRequest, Duration, WatchReply),
    Inspect(oneshot::Sender<Inspection>),
    Stop(oneshot::Sender<()>),
}

/// Starts a request on the node: its reply waits for the node's answer, or gets the refusal at
/// once.
fn ask(
    waiting: &mut HashMap<RequestId, Reply>,
    next_id: &mut RequestId,
    reply: Reply,
    start: impl FnOnce(RequestId) -> Result<(), ClientError>,
) {
    let rid = *next_id;
    *next_id += 1;
    match start(rid) {
        Ok(()) => {
            waiting.insert(rid, reply);
        }
        Err(e) => {
            let _ = reply.send(Err(e));
        }
    }
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

/// Watch polls waiting for a change (or their deadline), answered in rounds.
///
/// Every answer wakes a watcher, which polls again: with a thousand watchers, answering each of
/// them after every write cost 1.2 µs per event and made 500 watched writes 84 times slower than
/// the same writes unwatched. So answers with events go out in rounds: after a round that
/// answered `n` polls, the next waits [`ROUND_GAP_PER_ANSWER`] per answer (at most
/// [`MAX_ROUND_GAP`]), and each answer then carries every revision since. A watcher or two are
/// answered at once, a thousand get several revisions per answer; a poll whose answer is full
/// (a watcher behind, catching up), an error or a deadline is never held.
#[derive(Default)]
struct ParkedWatches {
    waiting: Vec<(WatchRequest, Instant, WatchReply)>,
    /// The applied index the waiting polls were last looked at with: nothing new to tell them
    /// until it moves (or a deadline passes).
    looked_at: u64,
    /// A poll parked with events to tell, waiting for the next round.
    held: bool,
    /// When the next round may answer polls with events.
    next_round: Option<Instant>,
    /// The earliest deadline among `waiting`, kept as polls come and go: looked at every turn,
    /// where a scan of a thousand parked polls took a quarter of the driver's time.
    earliest: Option<Instant>,
}

/// How many clients' calls the driver takes in a row while a peer's message waits.
const CALLS_BEFORE_PEERS: usize = 256;

/// How long the next round of watch answers waits, per answer the last round sent.
/// About what one answer and the poll that follows it cost in process (the coordination
/// bench): with 2 µs, a thousand watchers' polls of one round were still arriving when the next
/// was due, and the rounds took the time the writes needed.
const ROUND_GAP_PER_ANSWER: Duration = Duration::from_micros(5);
/// The longest a round of watch answers waits after the last.
const MAX_ROUND_GAP: Duration = Duration::from_millis(5);

impl ParkedWatches {
    /// Answers a new poll at once if it can be; parks it otherwise. (Looking at it alone keeps
    /// a thousand watchers that poll again after each answer from costing a thousand looks
    /// each.)
    fn park(&mut self, node: &Node, request: WatchRequest, until: Instant, reply: WatchReply) {
        let now = Instant::now();
        if !self.round_due(now) && now < until && node.is_leader() {
            // The answer waits for the round anyway: only whether there is one is wanted
            // now (making it, events cloned, for each of a thousand watchers polling again
            // was most of their cost).
            match node.watch_backlog(&request) {
                Some(0) => return self.wait(request, until, reply),
                Some(_) => {
                    self.held = true;
                    return self.wait(request, until, reply);
                }
                None => {}
            }
        }
        match Self::look(node, &request, now, until) {
            Some(result) if self.round_due(now) || Self::urgent(&request, &result) => {
                let _ = reply.send(result);
            }
            Some(_) => {
                self.held = true;
                self.wait(request, until, reply);
            }
            None => self.wait(request, until, reply),
        }
    }

    fn wait(&mut self, request: WatchRequest, until: Instant, reply: WatchReply) {
        self.earliest = Some(self.earliest.map_or(until, |at| at.min(until)));
        self.waiting.push((request, until, reply));
    }

    fn round_due(&self, now: Instant) -> bool {
        self.next_round.is_none_or(|at| now >= at)
    }

    /// An answer that does not wait for a round: an error, or a full batch (its watcher is
    /// behind; holding it would slow its catching up by a round per batch).
    fn urgent(request: &WatchRequest, result: &Result<WatchBatch, ClientError>) -> bool {
        match result {
            Ok(batch) => batch.events.len() >= request.max_events,
            Err(_) => true,
        }
    }

    /// The answer to a poll, if it has one now: events, an error, or no time left.
    fn look(
        node: &Node,
        request: &WatchRequest,
        now: Instant,
        until: Instant,
    ) -> Option<Result<WatchBatch, ClientError>> {
        Self::ready(Self::ask(node, request), now, until)
    }

    fn ask(node: &Node, request: &WatchRequest) -> Result<WatchBatch, ClientError> {
        // Only the leader answers: a replica cut off from the others would answer with
        // progress marks only, and its watcher would never learn it is behind.
        if node.is_leader() {
            node.watch(request)
        } else {
            Err(ClientError::NotLeader { leader: node.leader() })
        }
    }

    fn ready(
        result: Result<WatchBatch, ClientError>,
        now: Instant,
        until: Instant,
    ) -> Option<Result<WatchBatch, ClientError>> {
        let ready = match &result {
            Ok(batch) => !batch.events.is_empty() || now >= until,
            Err(_) => true,
        };
        ready.then_some(result)
    }

    /// Answers every poll that has events (once a round is due), an error, or no time left;
    /// keeps the rest.
    fn answer(&mut self, node: &Node, now: Instant) {
        let news = (node.applied_index() != self.looked_at || self.held) && self.round_due(now);
        let due = self.earliest_deadline().is_some_and(|at| at <= now);
        // Leadership lost: the waiting polls must move to the new leader.
        let deposed = !node.is_leader() && !self.waiting.is_empty();
        if !news && !due && !deposed {
            return;
        }
        let round = news || deposed;
        if round {
            self.looked_at = node.applied_index();
            self.held = false;
        }
        let mut answered = 0u32;
        let mut still = Vec::with_capacity(self.waiting.len());
        // Watchers of the same keys from the same revision (most of them, after a round has
        // answered them all) share one answer: looked up once, its events shared.
        let mut answers: HashMap<WatchRequest, Result<WatchBatch, ClientError>> = HashMap::new();
        for (request, until, reply) in self.waiting.drain(..) {
            if reply.is_closed() {
                continue;
            }
            let result = match answers.get(&request) {
                Some(result) => result.clone(),
                None => {
                    let result = Self::ask(node, &request);
                    answers.insert(request.clone(), result.clone());
                    result
                }
            };
            match Self::ready(result, now, until) {
                Some(result) if round || now >= until || Self::urgent(&request, &result) => {
                    answered += 1;
                    let _ = reply.send(result);
                }
                Some(_) => {
                    self.held = true;
                    still.push((request, until, reply));
                }
                None => still.push((request, until, reply)),
            }
        }
        self.earliest = still.iter().map(|(_, until, _)| *until).min();
        self.waiting = still;
        if round {
            self.next_round = Some(now + (ROUND_GAP_PER_ANSWER * answered).min(MAX_ROUND_GAP));
        }
    }

    fn earliest_deadline(&self) -> Option<Instant> {
        self.earliest
    }

    /// When the driver must look again: the earliest deadline, or the next round if some poll
    /// has something to be told.
    fn wake_at(&self, node: &Node) -> Option<Instant> {
        let news =
            !self.waiting.is_empty() && (node.applied_index() != self.looked_at || self.held);
        let round = self.next_round.filter(|_| news);
        match (self.earliest_deadline(), round) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

/// What a finished snapshot write gives back: the writer, and the snapshot's last index once
/// it is durable.
type SnapshotDone = (Box<dyn crate::SnapshotWriter>, Result<crate::LogIndex, crate::StorageError>);

/// The node's storage as the driver writes it: inline when writes are quick, or on a blocking
/// thread with one write in flight at a time, the node's next batch gathering everything that
/// happens meanwhile (group commit).
struct Disk<S> {
    /// `None` while a write is in flight (or after a write task panicked).
    storage: Option<S>,
    in_flight: Option<tokio::task::JoinHandle<Written<S>>>,
    blocking: bool,
    /// Batches taken from the node and not yet written: they wait for a snapshot write in
    /// flight when one of them holds a snapshot installed from a leader.
    queued: Vec<crate::PersistBatch>,
    /// The node's own snapshots, written beside the appends when the storage can.
    snapshots: Option<SnapshotSide>,
}

/// Snapshots of the node's applied entries, written on a thread of their own so appends do not
/// wait the seconds a large state takes; one at a time, the newest waiting.
struct SnapshotSide {
    /// `None` while a write is in flight.
    writer: Option<Box<dyn crate::SnapshotWriter>>,
    in_flight: Option<tokio::task::JoinHandle<SnapshotDone>>,
    /// The newest snapshot taken while one was being written.
    next: Option<crate::Snapshot>,
    /// A snapshot made durable whose entries the log may drop: done with the next write.
    compact_past: Option<crate::LogIndex>,
}

impl SnapshotSide {
    fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Writes `snapshot` now, or after the one in flight (replacing any older one waiting).
    fn offer(&mut self, snapshot: crate::Snapshot) {
        match self.writer.take() {
            Some(mut writer) => {
                self.in_flight = Some(tokio::task::spawn_blocking(move || {
                    let result = writer.write(&snapshot).map(|()| snapshot.last_index);
                    (writer, result)
                }));
            }
            None => self.next = Some(snapshot),
        }
    }
}

impl<S: Storage + 'static> Disk<S> {
    fn new(storage: S) -> Self {
        let blocking = storage.writes_block();
        let snapshots = blocking.then(|| storage.snapshot_writer()).flatten().map(|writer| {
            SnapshotSide { writer: Some(writer), in_flight: None, next: None, compact_past: None }
        });
        Self { storage: Some(storage), in_flight: None, blocking, queued: Vec::new(), snapshots }
    }

    fn is_writing(&self) -> bool {
        self.in_flight.is_some()
    }

    fn is_writing_snapshot(&self) -> bool {
        self.snapshots.as_ref().is_some_and(SnapshotSide::is_writing)
    }

    /// Writes what the node has to make durable, unless a write is in flight (then it waits
    /// in the node, growing, for the next one). A snapshot the node took of its own entries
    /// goes to the snapshot writer instead, when there is one: the entries it covers stay in
    /// the log until it is durable.
    fn write(&mut self, node: &mut Node, now: Timestamp) {
        if self.in_flight.is_some() {
            return;
        }
        while let Some(batch) = node.poll_persist() {
            self.queued.push(batch);
        }
        if let Some(side) = &mut self.snapshots {
            for batch in &mut self.queued {
                // Others (installed from a leader, or covering entries left out of their
                // batch) are written in order with the log.
                if batch.snapshot_separable
                    && let Some(snapshot) = batch.snapshot.take()
                {
                    batch.snapshot_separable = false;
                    side.offer(snapshot);
                }
            }
            if side.is_writing() && self.queued.iter().any(|batch| batch.snapshot.is_some()) {
                return; // the older snapshot's write must not land after this one
            }
        }
        let compact_past = self.snapshots.as_mut().and_then(|side| side.compact_past.take());
        if self.queued.is_empty() && compact_past.is_none() {
            return;
        }
        let Some(storage) = self.storage.take() else { return };
        let batches = std::mem::take(&mut self.queued);
        if self.blocking {
            self.in_flight = Some(tokio::task::spawn_blocking(move || {
                write_batches(storage, compact_past, &batches)
            }));
        } else {
            let written = write_batches(storage, compact_past, &batches);
            self.finish(node, Ok(written), now);
        }
    }

    /// The snapshot write in flight, if any.
    fn snapshot_task(&mut self) -> Option<&mut tokio::task::JoinHandle<SnapshotDone>> {
        self.snapshots.as_mut().and_then(|side| side.in_flight.as_mut())
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

    /// A snapshot write ended: once durable, the log drops what it covers with the next write,
    /// and the newest snapshot taken meanwhile is written next. A failure halts the node, as
    /// any storage error does.
    fn finish_snapshot(
        &mut self,
        node: &mut Node,
        written: Result<SnapshotDone, tokio::task::JoinError>,
    ) {
        let Some(side) = self.snapshots.as_mut() else { return };
        side.in_flight = None;
        match written {
            Ok((writer, result)) => {
                side.writer = Some(writer);
                match result {
                    Ok(last_index) => {
                        side.compact_past = side.compact_past.max(Some(last_index));
                        if let Some(next) = side.next.take() {
                            side.offer(next);
                        }
                    }
                    Err(err) => node.persist_failed(err),
                }
            }
            Err(panicked) => node.persist_failed(crate::StorageError::new(
                crate::StorageErrorKind::Io,
                format!("the snapshot write panicked: {panicked}"),
            )),
        }
    }
}

/// The outcome of a task in flight (never, when there is none).
async fn joined<T>(
    task: Option<&mut tokio::task::JoinHandle<T>>,
) -> Result<T, tokio::task::JoinError> {
    match task {
        Some(task) => task.await,
        None => std::future::pending().await,
    }
}

fn write_batches<S: Storage>(
    mut storage: S,
    compact_past: Option<crate::LogIndex>,
    batches: &[crate::PersistBatch],
) -> Written<S> {
    if let Some(last_index) = compact_past
        && let Err(err) = storage.snapshot_written(last_index)
    {
        return (storage, Vec::new(), Err(err));
    }
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
    let mut calls_in_a_row = 0usize;
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
        let turn = Instant::now();
        watches.answer(&node, turn);
        if node.membership_changes() != membership_changes {
            membership_changes = node.membership_changes();
            if *node.membership() != membership {
                membership = node.membership().clone();
                tracing::info!(node = id, %membership, "membership in force changed");
                transport.members_changed(&membership);
            }
        }
        // The node's timer (heartbeats, elections) is looked at here as well as in the select
        // below: a flood of calls keeps that select from ever reaching its timer arm, and a
        // leader that sent no heartbeats while it answered calls was replaced.
        if turn >= origin + node.poll_timeout().since_origin() {
            node.tick(now());
        }
        let deadline =
            watches.wake_at(&node).map_or(origin + node.poll_timeout().since_origin(), |w| {
                w.min(origin + node.poll_timeout().since_origin())
            });
        tokio::select! {
            biased;
            written = joined(disk.in_flight.as_mut()), if disk.is_writing() => disk.finish(&mut node, written, now()),
            written = joined(disk.snapshots.as_mut().and_then(|side| side.in_flight.as_mut())), if disk.is_writing_snapshot() => {
                disk.finish_snapshot(&mut node, written);
            }
            // Clients' calls first, so the writes queued meanwhile go out in one batch; but
            // only so many while a peer's message waits: ten thousand watchers polling again
            // after a round held up the acknowledgements that commit the writes they waited
            // for, a few writes per round. (Peers first throughout cost a quarter of the
            // writes/s at 256 clients: every acknowledgement sent a batch of its own.)
            command = commands.recv(), if calls_in_a_row < CALLS_BEFORE_PEERS || inbox.is_empty() => {
                calls_in_a_row += 1;
                let Some(command) = command else { return };
                match command {
                    Command::Write(op, reply) => {
                        ask(&mut waiting, &mut next_id, reply, |rid| node.write(rid, op));
                    }
                    Command::Read(op, reply) => {
                        ask(&mut waiting, &mut next_id, reply, |rid| node.read(rid, op));
                    }
                    Command::Backup(reply) => {
                        ask(&mut waiting, &mut next_id, reply, |rid| node.backup(rid));
                    }
                    Command::ChangeCluster(change, reply) => {
                        ask(&mut waiting, &mut next_id, reply, |rid| node.change_cluster(rid, &change));
                    }
                    Command::Membership(reply) => { let _ = reply.send(node.membership().clone()); }
                    Command::LocalGet(key, reply) => { let _ = reply.send(node.local_get(&key).cloned()); }
                    Command::Status(reply) => { let _ = reply.send(Status::of(&node)); }
                    Command::Stats(reply) => { let _ = reply.send(node.stats()); }
                    Command::Watch(request, wait, reply) => {
                        watches.park(&node, request, Instant::now() + wait, reply);
                    }
                    Command::Inspect(reply) => {
                        // The digest reads every value: off the loop, so heartbeats go on.
                        let pending = node.begin_inspection();
                        tokio::task::spawn_blocking(move || reply.send(pending.finish()));
                    }
                    Command::Stop(reply) => {
                        // A write in flight ends first: the storage (and its lock) is free
                        // once the node has stopped.
                        if disk.is_writing() {
                            let written = joined(disk.in_flight.as_mut()).await;
                            disk.finish(&mut node, written, now());
                        }
                        if disk.is_writing_snapshot() {
                            let written = joined(disk.snapshot_task()).await;
                            disk.finish_snapshot(&mut node, written);
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
                            | Command::Backup(r)
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
                calls_in_a_row = 0;
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

    /// The whole state at one committed revision, for a backup, on this node (the leader):
    /// see [`Node::backup`]. Writes go on meanwhile.
    ///
    /// # Errors
    /// [`StoreError`]; [`ClientError::NotLeader`] on a follower.
    pub async fn backup(&self, deadline: Duration) -> Result<crate::Snapshot, StoreError> {
        match self.call(Command::Backup, deadline).await?? {
            Response::Backup(snapshot) => Ok(*snapshot),
            other => Err(StoreError::unexpected("a backup", &other)),
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
