//! A replicated in-memory key-value store for a platform's own state (talks 001 and 002):
//! leader election, majority writes, linearizable reads, compare-and-set and all-or-nothing
//! multi-key operations, and the coordination a platform builds on: leases with keys attached
//! ([`WriteOp::GrantLease`]), etcd-shaped transactions ([`Txn`]), range reads ([`Range`]),
//! watches ([`WatchRequest`]), and, with the driver, locks with fencing tokens and elections.
//!
//! This crate is the sans-IO core: [`Node`] takes messages ([`Node::step`]), time
//! ([`Node::tick`]), client requests ([`Node::write`], [`Node::read`]) and news that its writes
//! are durable ([`Node::persisted`]), and gives back what to make durable
//! ([`Node::poll_persist`]), messages to send, client results and its next deadline. It never
//! reads a clock, sleeps, spawns, or touches a socket or a file; the host owns transport,
//! timers and [`Storage`], and may batch many nodes' steps into one fsync.
//!
//! # Guarantees
//!
//! - Every write and every [`Node::read`] is linearizable. Reads go through a quorum round
//!   (ReadIndex): the leader never answers from its memory alone. [`Node::local_get`] is the
//!   exception, and says so: it answers from this replica, possibly stale.
//! - A cluster of N serves while a majority is up (3 tolerates 1 failure, 5 tolerates 2).
//! - Every key's version only grows (it is the log index of the key's last write).
//! - An acknowledged write survives any failure of a minority with memory-only storage
//!   ([`MemStorage`]), and a whole-cluster restart with durable storage.
//! - At most one leader per term, as long as term and vote survive restarts (see [`Storage`]).
//!   A node whose memory was wiped starts with [`Start::Rejoin`]: it does not vote, campaign, or
//!   count toward any quorum until it has caught up from a leader that committed since its
//!   return, so a wipe can neither elect a leader that lacks acknowledged writes nor produce a
//!   second leader in a term. That state is itself durable ([`HardState::recovering`]): a
//!   wiped node that restarts again before catching up is still recovering.
//! - Leases end only by the leader's decision, replicated as an entry; a new leader restarts
//!   every TTL. A lease's keys are never deleted earlier than its TTL after the holder sent the
//!   last keep-alive it saw acknowledged (keep-alives are acknowledged after a quorum round).
//! - A watch delivers every change of its range in commit order, each with its revision, with
//!   no gap and no duplicate, across leader changes; history is bounded
//!   ([`Config::watch_history`]), and a watcher behind it gets [`ClientError::Compacted`].
//! - A range read at a past revision ([`Range::at_revision`]) is one consistent view of its
//!   keys just after that entry applied, rebuilt from the same recent history (each change
//!   keeps the value it replaced): it reaches back as far as the watch history does, and no
//!   further back than the snapshot a restarted node started from; an older revision gets
//!   [`ClientError::Compacted`] naming the oldest one still readable.
//! - If a majority of the nodes lose their memory at once, the store stops rather than risk
//!   serving without acknowledged writes: the wiped nodes wait for a leader that can no longer be
//!   elected. Bringing it back is an operator's decision (durable storage avoids the case):
//!   [`Start::ForceNewCluster`] rebuilds a one-node cluster from a surviving replica, and says
//!   in its name and docs that it may lose acknowledged writes.
//!
//! # Membership
//!
//! The configuration (voters and learners, [`Membership`]) lives in the log and in snapshots;
//! a restarted node takes it from there, and [`Config::members`] only seeds a new cluster.
//! [`Node::change_cluster`] (or `Cluster::change_cluster` with the driver) adds a learner
//! ([`ClusterChange::AddLearner`], the node started with [`Start::Join`]), promotes a caught-up
//! learner, removes a member (the leader included: it hands over and steps down once the change
//! commits), or transfers leadership to a named voter. Changes go **one server at a time**
//! (Ongaro's thesis, section 4.1, with the 2015 fix: a leader proposes a change only after it has
//! committed an entry of its term, and only once the previous change is committed), each taking
//! effect on a node as soon as it is in that node's log. We chose it over joint consensus
//! because replacing a node, the operation a platform needs, is three single steps, and every
//! quorum count then stays one count against one configuration; the module docs of
//! `membership.rs` say why each rule is needed. A change that would leave the voters the leader
//! hears from short of the new quorum is refused ([`MembershipError::WouldLoseQuorum`], etcd's
//! strict reconfiguration check). The driver's docs show a node replaced, as a snippet.
//!
//! # Who may speak, and how much
//!
//! Raft trusts its members: a forged append or snapshot from someone who is not one could erase
//! acknowledged writes, and no core can tell it from a real one. So over plus-mux (feature
//! `mux`) every connection has the role its credential names (`Principal`: node N, admin,
//! client, reader; see the `roles` docs for the certificate names `plus-quorum://node/N` and
//! the key names), and a node refuses what the role may not do before it reaches the core:
//! only node N's connection delivers messages from N, clients never send consensus traffic,
//! only admins and nodes change membership, readers only read and watch. The core adds a
//! last line that holds whoever sends: a message whose term is at `Term::MAX` or further ahead
//! than [`Config::max_term_lead`], or that contradicts itself, is dropped and counted
//! ([`NodeStats::dropped_messages`]), so no single message can push every term to its end.
//!
//! Requests are bounded like etcd's, before they reach the log: bytes per write
//! ([`Config::max_request_bytes`], 1.5 MiB), operations per transaction
//! ([`Config::max_txn_ops`], 128), live leases ([`Config::max_leases`]), and the bytes the
//! store holds ([`Config::quota_bytes`], past which writes that add data are refused with
//! [`ClientError::NoSpace`]); appends to followers are bounded in bytes
//! ([`Config::max_bytes_per_message`]) and a watch poll's answer in events and bytes
//! ([`MAX_WATCH_EVENTS`], [`MAX_WATCH_BATCH_BYTES`]).
//!
//! # Features
//!
//! - `driver`: a tokio task per node (`spawn_node`), an in-process transport
//!   (`InProcessNetwork`) and `Cluster`, a client that routes every call to the leader and
//!   re-routes after a leader change, with a deadline on every call.
//! - `mux`: `MuxTransport`, `serve` and `RemoteNode`: nodes and clients over plus-mux
//!   connections, bodies msgpack + lz4 as in the source talk.
//! - `tls`: `Security::MutualTls`: nodes and clients over plus-mux authenticate each other with
//!   certificates of the cluster's CA (plus-mux's `Tls`, rustls); others are refused in the
//!   handshake.
//! - `file-storage`: `FileStorage`, durable storage with checksummed records in a segmented
//!   log (compaction deletes whole segments); a torn or garbled tail left by a crash is cut
//!   off at recovery, damage anywhere else is an error naming the file and offset.
//! - `etcd`: `EtcdClient`, the `KvClient` trait (feature `driver`, implemented by `Cluster`)
//!   over an etcd cluster through the `etcd-client` crate, so one program runs on either store.
//!   Building it needs `protoc` (Debian's `protobuf-compiler`).
//! - `metrics`: each running node's figures (term, leadership, commit and apply lag, elections,
//!   proposals, snapshots, pending requests, per-follower lag) through the `metrics` facade, for
//!   any exporter. The same numbers are [`NodeStats`] (`NodeHandle::stats`), and every status
//!   change can be watched (`NodeHandle::subscribe`).
//! - `backup` (on with `mux`): the backup file (`encode_backup`, `read_backup_file`); over
//!   plus-mux an admin saves one from a running cluster (`Cluster::save_backup`), and
//!   `restore_data_dir` (feature `program`) builds a new cluster's directories from it.
//! - `program`: what a node program does around the node (`run_node`, `DataDir`).
//! - `http`: a node program's HTTP endpoints (`serve_http`): `/health`, `/metrics`, `/version`
//!   and a JSON gateway for services not written in Rust, HTTPS with the same roles when the
//!   node has TLS.
//!
//! Every leadership change, election, snapshot and storage failure is logged through
//! `tracing` (the crate never prints).
//!
//! Test-only protocol faults, which show that the simulation catches them, are compiled in only
//! with `RUSTFLAGS="--cfg plus_planted_bugs"` (a `--cfg`, not a feature: a feature is unified
//! across a build, so one crate enabling it would change `Config` for every other).
//!
//! # Testing
//!
//! `tests/simulation.rs` runs 3- and 5-node clusters in a seeded single-threaded simulator:
//! message loss (0-30%), duplication, reordering and delay, symmetric, asymmetric and
//! leader-isolating partitions, crashes and restarts (memory wiped or kept), and frozen
//! leaders, with clients behind the same faulty network issuing every kind of operation
//! (leases, transactions, ranges now and in the past, the lease-backed lock) and watchers
//! that reconnect, resume and cancel. Every history, leases included, is checked for
//! linearizability by a memoized Wing-Gong-Lowe search bounded in time (an undecided history
//! counts as a failure), plus: one leader per term, versions never decreasing on a replica,
//! one version per write, no acknowledged write lost, no lease ended before its TTL after an
//! acknowledged keep-alive, no two lock holders at once and fencing tokens in order, every
//! watcher's events equal to the committed history, every past read equal to that history
//! replayed, replicas identical and a leader after healing. `PLUS_SIM_SEEDS=N` runs N seeds,
//! `PLUS_SIM_SEED=S` replays one, `PLUS_SIM_HISTORY_DIR=DIR` writes every history as JSON
//! lines (format in `tests/sim/mod.rs`).
//!
//! # A 3-node cluster driven by hand
//!
//! ```
//! use bytes::Bytes;
//! use plus_core::Timestamp;
//! use plus_quorum::{Config, MemStorage, Node, ReadOp, ReadResult, Response, WriteOp};
//! use std::time::Duration;
//!
//! let members = vec![1, 2, 3];
//! let mut now = Timestamp::ZERO;
//! let mut disks: Vec<MemStorage> = members.iter().map(|_| MemStorage::new()).collect();
//! let mut nodes: Vec<Node> = members
//!     .iter()
//!     .zip(&mut disks)
//!     .map(|(&id, disk)| Node::new(Config::new(id, members.clone()), disk, now).unwrap())
//!     .collect();
//!
//! // Make every node's writes durable, then deliver every message at once, until quiet.
//! fn settle(nodes: &mut [Node], disks: &mut [MemStorage], now: Timestamp) {
//!     loop {
//!         let mut sent = Vec::new();
//!         for (n, disk) in nodes.iter_mut().zip(disks.iter_mut()) {
//!             while let Some(batch) = n.poll_persist() {
//!                 batch.write_to(disk).unwrap();
//!                 n.persisted(batch.seq, now);
//!             }
//!             while let Some((to, msg)) = n.poll_message() {
//!                 sent.push((n.id(), to, msg));
//!             }
//!         }
//!         if sent.is_empty() { return; }
//!         for (from, to, msg) in sent {
//!             nodes[(to - 1) as usize].step(from, msg, now);
//!         }
//!     }
//! }
//!
//! // Let time pass until someone is elected.
//! while !nodes.iter().any(|n| n.is_leader()) {
//!     now += Duration::from_millis(10);
//!     for n in nodes.iter_mut() { n.tick(now); }
//!     settle(&mut nodes, &mut disks, now);
//! }
//! let leader = nodes.iter().position(|n| n.is_leader()).unwrap();
//! nodes[leader].write(1, WriteOp::Set { key: "release/42".into(), value: Bytes::from("done") }).unwrap();
//! nodes[leader].read(2, ReadOp::Get("release/42".into())).unwrap();
//! settle(&mut nodes, &mut disks, now);
//! let outputs: Vec<_> = std::iter::from_fn(|| nodes[leader].poll_output()).collect();
//! assert!(matches!(&outputs[1].result, Ok(Response::Read(ReadResult::Value(Some(v)))) if v.value == "done"));
//! assert!(nodes.iter().all(|n| n.local_get("release/42").is_some()));
//! ```
#![cfg_attr(feature = "driver", doc = include_str!("../docs/driver.md"))]
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "backup")]
mod backup;
#[cfg(feature = "mux")]
mod backup_transfer;
mod client_error;
#[cfg(feature = "driver")]
mod driver;
#[cfg(feature = "etcd")]
mod etcd;
#[cfg(feature = "file-storage")]
mod file_storage;
mod glob;
#[cfg(feature = "http")]
mod http;
mod ids;
mod inspect;
mod kv;
#[cfg(feature = "driver")]
mod kv_client;
mod lease;
mod limits;
mod log;
mod membership;
mod message;
#[cfg(feature = "metrics")]
mod metrics;
#[cfg(feature = "mux")]
mod mux;
#[cfg(feature = "mux")]
mod mux_transfer;
#[cfg(feature = "driver")]
mod namespace;
mod node;
mod ops;
mod persist;
#[cfg(feature = "program")]
mod program;
#[cfg(feature = "driver")]
pub mod recipes;
#[cfg(feature = "mux")]
mod roles;
#[cfg(feature = "driver")]
mod session;
mod storage;
#[cfg(feature = "testkit")]
pub mod testkit;
mod txn;
mod txn_text;
mod types;
mod watch;

/// Implement [`NodeApi`] with `#[plus_quorum::async_trait]`, without a dependency of your own.
#[cfg(feature = "driver")]
pub use async_trait::async_trait;
/// The byte buffer values are stored as.
#[cfg(feature = "backup")]
pub use backup::{
    BACKUP_FORMAT_VERSION, BackupError, BackupHeader, decode_backup, encode_backup,
    read_backup_file, verify_backup_file,
};
pub use bytes::{self, Bytes};
pub use client_error::ClientError;
#[cfg(feature = "driver")]
pub use driver::{
    Cluster, Failure, InProcessNetwork, NodeApi, NodeHandle, ReplaceStep, RunningNode, Status,
    StoreError, Transport, Watcher, spawn_node,
};
#[cfg(feature = "etcd")]
pub use etcd::EtcdClient;
#[cfg(feature = "file-storage")]
pub use file_storage::FileStorage;
#[cfg(feature = "http")]
pub use http::{HttpEndpoints, HttpError, install_prometheus, serve_http};
pub use ids::{LogIndex, NodeId, RequestId, Term};
pub use inspect::{InspectionReport, compare};
pub use kv::KvState;
#[cfg(feature = "driver")]
pub use kv_client::{KvClient, KvWatch};
pub use lease::{LeaseId, LeaseInfo};
pub use log::{Entry, Payload, Snapshot};
pub use membership::{ClusterChange, ClusterChanged, Membership, MembershipError};
pub use message::Message;
#[cfg(feature = "mux")]
pub use mux::{
    MuxNode, MuxTransport, RemoteNode, Security, Server, StartError, node_uri, serve, serve_secured,
};
#[cfg(feature = "driver")]
pub use namespace::Namespaced;
#[cfg(plus_planted_bugs)]
pub use node::PlantedBugs;
pub use node::{
    Config, ConfigError, Inspection, Node, NodeError, NodeStats, PendingInspection, Role, Start,
};
pub use ops::{ClientOutput, ReadOp, ReadResult, Response, WriteOp, WriteResult};
pub use persist::PersistBatch;
/// plus-mux's connection settings and their error, which [`RemoteNode::connect`],
/// [`MuxNode::start`] and [`MuxTransport::new`] take: re-exported so that an embedder needs no
/// direct dependency on plus-mux to call them.
#[cfg(feature = "mux")]
pub use plus_mux::{Config as MuxConfig, ConfigError as MuxConfigError};
#[cfg(feature = "program")]
pub use program::{
    DataDir, DataDirError, NodeProgram, ProgramError, RestoreError, StartMode, Stopped,
    hand_over_leadership, restore_data_dir, run_node, shutdown_signal,
};
#[cfg(feature = "driver")]
pub use recipes::{ElectionLeader, Leadership, LockGuard};
#[cfg(feature = "mux")]
pub use roles::{Principal, ROLE_URI_SCHEME, Request};
#[cfg(feature = "driver")]
pub use session::{Session, SessionLost};
pub use storage::{
    HardState, MemStorage, Recovered, SnapshotWriter, Storage, StorageError, StorageErrorKind,
};
pub use txn::{Compare, KeyRange, Range, RangeResult, Txn, TxnOp, TxnOpResult, TxnOutcome};
pub use txn_text::TxnSyntaxError;
pub use types::{Expect, MAX_KEY_LEN, Versioned};
pub use watch::{
    Change, MAX_WATCH_BATCH_BYTES, MAX_WATCH_EVENTS, WatchBatch, WatchEvent, WatchEvents,
    WatchRequest,
};

/// Helpers for tests, simulations and examples (feature `testing`): not part of the store's API.
#[cfg(feature = "testing")]
pub mod testing {
    /// Whether `text` matches the glob `pattern` (`*`, `?`): the semantics of
    /// [`ReadOp::Keys`](crate::ReadOp::Keys), for models that check it.
    #[must_use]
    pub fn glob_match(pattern: &str, text: &str) -> bool {
        crate::glob::glob_match(pattern, text)
    }

    /// The body of a plus-mux request that delivers `msgs` to a node's endpoint as if from
    /// node `from`: what a peer speaking the wire by hand sends, for tests that it is refused
    /// unless the connection is node `from`'s.
    #[cfg(feature = "mux")]
    #[must_use]
    pub fn raft_request(from: crate::NodeId, msgs: Vec<crate::Message>) -> bytes::Bytes {
        crate::mux::raft_body(from, msgs)
    }

    /// The body of a plus-mux request that polls a watch: for tests of a watcher that sends
    /// polls and never reads the answers.
    #[cfg(feature = "mux")]
    #[must_use]
    pub fn watch_request(request: crate::WatchRequest, wait_ms: u64) -> bytes::Bytes {
        crate::mux::watch_body(request, wait_ms)
    }

    /// The error an endpoint's reply carries (`None` for a success).
    ///
    /// # Errors
    /// When `body` is not a reply of the store's wire.
    #[cfg(feature = "mux")]
    pub fn reply_error(body: &[u8]) -> Result<Option<crate::StoreError>, String> {
        crate::mux::reply_error(body)
    }

    /// `len` bytes no compressor shrinks (xorshift from `seed`): values for tests of sizes,
    /// since the store compresses bodies and a repeated byte would fit any frame.
    #[must_use]
    pub fn incompressible(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state.to_le_bytes()[0]
            })
            .collect()
    }

    /// Free loopback addresses for node ids (bound once, then released: racy, for tests and
    /// demos only).
    ///
    /// # Errors
    /// When no port can be had.
    #[cfg(feature = "mux")]
    pub async fn loopback_addrs(
        ids: &[crate::NodeId],
    ) -> std::io::Result<std::collections::HashMap<crate::NodeId, String>> {
        let mut addrs = std::collections::HashMap::new();
        // Every probe stays bound until all are chosen: released one by one, the system could
        // hand the same port out twice.
        let mut probes = Vec::with_capacity(ids.len());
        for &id in ids {
            let probe = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            addrs.insert(id, probe.local_addr()?.to_string());
            probes.push(probe);
        }
        Ok(addrs)
    }
}
