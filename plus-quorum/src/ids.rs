//! The numbers the cluster is counted in: nodes, terms, log positions, requests.

/// A node of the cluster.
pub type NodeId = u64;
/// A Raft term.
pub type Term = u64;
/// A log position (from 1; 0 means "none").
pub type LogIndex = u64;

/// Identifies a client request so its result can be matched; chosen by the host.
pub type RequestId = u64;
