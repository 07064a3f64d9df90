//! The routing client over a cluster's nodes, and its watches.

#[allow(clippy::wildcard_imports)]
use super::*;

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

    /// Takes `node`'s word for who leads; a leader this client has never heard of (a member
    /// added since, a replacement) is first learned through `node`'s membership, since asking
    /// the nodes it knows again would never reach it (a watcher that did not stopped for good
    /// once a replacement led).
    async fn follow_leader_hint(&self, node: &N, leader: Option<NodeId>) {
        let unknown = leader.is_some_and(|l| !self.handles().iter().any(|h| h.id() == l));
        if unknown && self.connector.is_some() {
            self.learn_from(node).await;
        }
        self.note_leader(leader);
    }

    fn note_leader(&self, leader: Option<NodeId>) {
        *self.leader.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = leader;
    }

    pub(crate) async fn route<T, F, Fut>(&self, call: F) -> Result<T, StoreError>
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
                    self.follow_leader_hint(&node, leader).await;
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

    /// Compacts every replica's history to `revision` ([`WriteOp::Compact`]).
    ///
    /// # Errors
    /// As [`Cluster::write`]; [`ClientError::Invalid`] for a revision past the latest.
    pub async fn compact(&self, revision: u64) -> Result<(), StoreError> {
        self.write(WriteOp::Compact { revision }).await.map(|_| ())
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
                    self.cluster.follow_leader_hint(&node, leader).await;
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
