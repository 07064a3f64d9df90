//! The tokio driver: runs a [`Node`] as a task, with timers, a [`Transport`] and a client API.
//! It makes no consensus decisions.
//!
//! - `runtime.rs`: the node's task (its loop, its disk writer, parked watches) and
//!   [`NodeHandle`], the local client of one node;
//! - `api.rs`: [`NodeApi`], one node's client API, local or remote;
//! - `cluster.rs`: [`Cluster`], the routing client over many nodes, and [`Watcher`];
//! - `network.rs`: [`InProcessNetwork`], the in-process transport.

mod api;
mod cluster;
mod network;
mod runtime;

pub use api::NodeApi;
pub use cluster::{Cluster, ReplaceStep, Watcher};
pub use network::InProcessNetwork;
pub use plus_core::Failure;
pub use runtime::{NodeHandle, RunningNode, spawn_node};

use std::collections::HashMap;
use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;
use std::time::Duration;

use plus_core::Timestamp;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::client_error::ClientError;
use crate::ids::{NodeId, RequestId};
use crate::lease::{LeaseId, LeaseInfo};
use crate::membership::{ClusterChange, ClusterChanged, Membership, MembershipError};
use crate::message::Message;
use crate::node::{Config, Inspection, Node, NodeError, NodeStats, Role};
use crate::ops::{ReadOp, ReadResult, Response, WriteOp, WriteResult};
use crate::storage::Storage;
use crate::txn::{KeyRange, Range, RangeResult, Txn, TxnOutcome};
use crate::types::Versioned;
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
    Backend(#[source] Failure),
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
    /// The node is doing one such thing already and does only one at a time (a backup being
    /// fetched by another admin); nothing was done, and the message says when to try again.
    #[error("busy: {0}")]
    Busy(String),
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
    /// Keys in its state (0 from a node of an earlier version).
    #[serde(default)]
    pub keys: u64,
    /// Bytes of keys and values in its state, as the quota counts them (etcd's database
    /// size; 0 from a node of an earlier version).
    #[serde(default)]
    pub state_bytes: u64,
    /// Its state is past [`Config::quota_bytes`](crate::Config::quota_bytes): writes that add
    /// data are refused until deletes bring it under (etcd's NOSPACE alarm, which clears by
    /// itself here).
    #[serde(default)]
    pub no_space: bool,
    /// Its storage failed and it halted (see [`Node::halted`](crate::Node::halted)): it takes
    /// part in nothing until restarted.
    #[serde(default)]
    pub halted: bool,
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
            keys: node.key_count(),
            state_bytes: node.state_bytes(),
            no_space: node.over_quota(),
            halted: node.halted().is_some(),
        }
    }
}
