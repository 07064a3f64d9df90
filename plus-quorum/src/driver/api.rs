//! One node's client API, local or remote.

#[allow(clippy::wildcard_imports)]
use super::*;

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
