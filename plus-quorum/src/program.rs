//! What a node program does around the node (feature `program`): its data directory's
//! identity, the start mode that follows from it, graceful stop with leadership hand-over, and
//! the signals a long-running process answers. `quorum_node` is a thin argument parser over
//! [`run_node`]; a host's own binary can be too.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::driver::NodeHandle;
use crate::file_storage::FileStorage;
use crate::ids::NodeId;
use crate::log::Snapshot;
use crate::membership::{ClusterChange, Membership};
use crate::mux::{MuxNode, Security, StartError};
use crate::node::{Config, Role, Start};
use crate::storage::{HardState, MemStorage, Storage, StorageError};

/// The file in a data directory that says whose it is.
const IDENTITY: &str = "identity";

/// Why a data directory cannot be used by this node.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    /// It is stamped for another node or cluster.
    #[error("{} belongs to another node: it says `{found}`, this is `{expected}`", dir.display())]
    OtherNode {
        /// The directory.
        dir: PathBuf,
        /// Its stamp.
        found: String,
        /// This node's.
        expected: String,
    },
    /// It holds a log but no identity: another node's data, or a stamp lost by hand. Starting
    /// there would reuse that log, term and vote under this node's name.
    #[error(
        "{} holds a log but no identity file: it is not known to be node {id}'s; restore its identity file, or give this node an empty directory",
        dir.display()
    )]
    LogWithoutIdentity {
        /// The directory.
        dir: PathBuf,
        /// This node.
        id: NodeId,
    },
    /// A file could not be read or written.
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        /// What was being done (`read`, `write`, `create`).
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The storage in it could not be opened (locked by a running node, damaged).
    #[error(transparent)]
    Storage(#[from] StorageError),
}

/// A node's data directory, checked: whether this node has started from it before, and the
/// stamp to write once it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataDir {
    dir: PathBuf,
    stamp: String,
    /// Whether the node has started from this directory before.
    pub existed: bool,
}

impl DataDir {
    /// Opens `dir` for node `id` of cluster `cluster`, creating it when missing, with its
    /// storage (locked for this process while it is held): refused when stamped for another
    /// node or cluster, or when it holds a log without a stamp.
    ///
    /// # Errors
    /// [`DataDirError`].
    pub fn open(
        dir: &Path,
        cluster: &str,
        id: NodeId,
    ) -> Result<(Self, FileStorage), DataDirError> {
        let stamp = format!("cluster={cluster}\nnode={id}\n");
        let path = dir.join(IDENTITY);
        let existed = match std::fs::read_to_string(&path) {
            Ok(found) if found == stamp => true,
            Ok(found) => {
                return Err(DataDirError::OtherNode {
                    dir: dir.to_owned(),
                    found: found.trim().replace('\n', " "),
                    expected: stamp.trim().replace('\n', " "),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let has_log = std::fs::read_dir(dir.join("wal"))
                    .map(|mut entries| entries.next().is_some())
                    .unwrap_or(false);
                if has_log || ["log", "snapshot", "hardstate"].iter().any(|f| dir.join(f).exists())
                {
                    return Err(DataDirError::LogWithoutIdentity { dir: dir.to_owned(), id });
                }
                false
            }
            Err(e) => {
                return Err(DataDirError::Io { what: "read", path, source: Arc::new(e) });
            }
        };
        std::fs::create_dir_all(dir).map_err(|e| DataDirError::Io {
            what: "create",
            path: dir.to_owned(),
            source: Arc::new(e),
        })?;
        let storage = FileStorage::open(dir)?;
        Ok((Self { dir: dir.to_owned(), stamp, existed }, storage))
    }

    /// Stamps the directory as this node's, once the node has started from it: a first start
    /// that failed (a port in use) leaves no stamp, so the next start is a first start again
    /// and not a rejoin. Written whole, then renamed: a crash never leaves half a stamp.
    ///
    /// # Errors
    /// [`DataDirError::Io`].
    pub fn stamp(&self) -> Result<(), DataDirError> {
        let path = self.dir.join(IDENTITY);
        let tmp = self.dir.join("identity.tmp");
        std::fs::write(&tmp, &self.stamp)
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| DataDirError::Io { what: "write", path, source: Arc::new(e) })
    }
}

/// Why a backup could not be restored into a data directory.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// The directory already holds something: a restore never writes over data.
    #[error("{} is not empty: restore into a new or empty directory", dir.display())]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
    },
    /// The node is not among the new cluster's voters.
    #[error("node {id} is not among the new cluster's voters {voters:?}")]
    NotAVoter {
        /// The node.
        id: NodeId,
        /// The voters given.
        voters: Vec<NodeId>,
    },
    /// The directory could not be made or written.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
}

/// Builds node `id`'s data directory for a new cluster named `cluster`, whose voters are
/// `voters`, from `snapshot` (a backup's state: [`read_backup_file`](crate::read_backup_file)),
/// as etcdutl's `snapshot restore` does. Run it once per member, each into its own empty
/// directory, then start every member on its directory as an ordinary restart: they hold the
/// same state at the backup's revision, elect a leader, and go on from there (revisions go on
/// from the backup's, so a client's revisions stay comparable). The directories are stamped
/// with the new cluster's name, so a node of the lost cluster cannot start on one by mistake.
///
/// Leases in the backup live on: the new leader gives each a full TTL, as after any leader
/// change, and a holder that is gone lets it expire then.
///
/// # Errors
/// [`RestoreError`]: a directory that is not empty, a node that is not a voter, or a file
/// that cannot be written.
pub fn restore_data_dir(
    snapshot: &Snapshot,
    dir: &Path,
    cluster: &str,
    id: NodeId,
    voters: &[NodeId],
) -> Result<(), RestoreError> {
    if !voters.contains(&id) {
        return Err(RestoreError::NotAVoter { id, voters: voters.to_vec() });
    }
    let not_empty = std::fs::read_dir(dir).is_ok_and(|mut entries| entries.next().is_some());
    if not_empty {
        return Err(RestoreError::NotEmpty { dir: dir.to_owned() });
    }
    let (opened, mut storage) = DataDir::open(dir, cluster, id)?;
    let restored = Snapshot {
        membership: Some(Membership::with_voters(voters.iter().copied())),
        ..snapshot.clone()
    };
    // A term of the backup's: no vote was cast in it here, and the first election moves past it.
    let hard_state = HardState { term: restored.last_term, voted_for: None, recovering: false };
    storage.save_hard_state(&hard_state).map_err(DataDirError::Storage)?;
    storage.save_snapshot(&restored).map_err(DataDirError::Storage)?;
    drop(storage);
    opened.stamp()?;
    Ok(())
}

/// How a node program was asked to start; with what its data directory holds, this decides
/// the node's [`Start`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartMode {
    /// A member of a new cluster (or, once it has started before, coming back).
    #[default]
    New,
    /// A member coming back, its directory possibly wiped (recovering until caught up).
    Rejoin,
    /// A node added to a running cluster (the first time; later starts are rejoins).
    Join,
    /// The survivor a new cluster is forced from (etcd's `--force-new-cluster`): see
    /// [`Start::ForceNewCluster`] for what it may lose.
    ForceNewCluster,
}

impl StartMode {
    /// The node's start: `existed` says whether it has started from its data before (always
    /// false without a data directory).
    #[must_use]
    pub fn start(self, existed: bool) -> Start {
        match self {
            Self::ForceNewCluster => Start::ForceNewCluster,
            Self::Join if !existed => Start::Join,
            _ if existed => Start::Rejoin,
            Self::Rejoin | Self::Join => Start::Rejoin,
            Self::New => Start::Bootstrap,
        }
    }
}

/// Everything a node program needs to run one node.
#[derive(Debug, Clone)]
pub struct NodeProgram {
    /// The node's settings (its `start` is decided by [`NodeProgram::mode`] and the data).
    pub config: Config,
    /// Every member's address, this node's included (where it binds).
    pub addrs: HashMap<NodeId, String>,
    /// How connections are secured.
    pub security: Security,
    /// plus-mux's settings.
    pub mux: plus_mux::Config,
    /// The data directory; `None` keeps everything in memory (lost when the process ends).
    pub data: Option<PathBuf>,
    /// The cluster's name, stamped in the data directory.
    pub cluster: String,
    /// How it was asked to start.
    pub mode: StartMode,
}

/// Why a node program stopped with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ProgramError {
    /// Its data directory.
    #[error(transparent)]
    DataDir(#[from] DataDirError),
    /// The node could not start.
    #[error(transparent)]
    Start(#[from] StartError),
    /// A signal handler could not be installed.
    #[error("cannot catch {signal}: {source}")]
    Signal {
        /// The signal.
        signal: &'static str,
        /// What the OS said.
        #[source]
        source: Arc<std::io::Error>,
    },
}

/// How a node program's node stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stopped {
    /// The voter it handed leadership to, when it led.
    pub handed_to: Option<NodeId>,
}

/// A node program's life: opens the data directory, starts the node (the stamp written only
/// once it has started), calls `started` with its handle, runs until `stop` resolves, hands
/// leadership over if it leads, and stops the node. Past a file-size limit the node halts with
/// a message instead of dying of SIGXFSZ.
///
/// # Errors
/// [`ProgramError`].
pub async fn run_node(
    program: NodeProgram,
    started: impl FnOnce(&NodeHandle, Start),
    stop: impl Future<Output = ()>,
) -> Result<Stopped, ProgramError> {
    // Past a file-size limit (ulimit -f) a write raises SIGXFSZ, whose default is to kill the
    // process without a word. Caught, the write fails with EFBIG instead, and the storage
    // halts the node with a message saying so.
    #[cfg(unix)]
    let _file_size_limit =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::from_raw(25))
            .map_err(|e| ProgramError::Signal { signal: "SIGXFSZ", source: Arc::new(e) })?;
    let NodeProgram { config, addrs, security, mux, data, cluster, mode } = program;
    let id = config.id;
    let node = match &data {
        Some(dir) => {
            let (opened, storage) = DataDir::open(dir, &cluster, id)?;
            let start = mode.start(opened.existed);
            let config = Config { start, ..config };
            let node = MuxNode::start_secured(config, storage, &addrs, mux, &security).await?;
            if !opened.existed {
                opened.stamp()?;
            }
            started(&node.handle, start);
            node
        }
        None => {
            let start = mode.start(false);
            let config = Config { start, ..config };
            let node =
                MuxNode::start_secured(config, MemStorage::new(), &addrs, mux, &security).await?;
            started(&node.handle, start);
            node
        }
    };
    stop.await;
    tracing::info!(node = id, "stopping");
    let handed_to = hand_over_leadership(&node.handle).await;
    if let Some(to) = handed_to {
        tracing::info!(node = id, to, "handed leadership over before stopping");
    }
    node.stop().await;
    Ok(Stopped { handed_to })
}

/// A leader about to stop hands leadership to another voter first, so that the cluster does
/// not wait an election timeout to find a new one (a graceful restart or upgrade). Best
/// effort: each voter is tried for at most a second. The voter that took over, if any.
pub async fn hand_over_leadership(node: &NodeHandle) -> Option<NodeId> {
    let status = node.status().await.ok()?;
    if status.role != Role::Leader {
        return None;
    }
    let membership = node.membership().await.ok()?;
    for to in membership.voters().iter().copied().filter(|&v| v != status.id) {
        let change = ClusterChange::TransferLeadership { to };
        if node.change_cluster(change, Duration::from_secs(1)).await.is_ok() {
            return Some(to);
        }
    }
    None
}

/// Resolves at SIGTERM or Ctrl-C (SIGINT): what a node program stops on.
///
/// # Errors
/// [`ProgramError::Signal`] when a handler cannot be installed.
pub async fn shutdown_signal() -> Result<(), ProgramError> {
    let failed = |signal| move |e| ProgramError::Signal { signal, source: Arc::new(e) };
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).map_err(failed("SIGTERM"))?;
        tokio::select! {
            _ = term.recv() => Ok(()),
            ctrl_c = tokio::signal::ctrl_c() => ctrl_c.map_err(failed("SIGINT")),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(failed("Ctrl-C"))
    }
}
