//! The in-process transport.

#[allow(clippy::wildcard_imports)]
use super::*;

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
        self.cut.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&handle.id());
        self.nodes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(handle.id(), handle);
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
