//! The store over plus-mux (feature `mux`): each node serves a plus-mux endpoint that carries
//! both Raft messages between nodes and client calls; bodies are msgpack (`rmp-serde`),
//! compressed with lz4 (`lz4_flex`) from [`COMPRESS_FROM`] bytes, as in the source talk's
//! protocol layer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plus_mux::{
    Config as MuxConfig, ConfigError, Handler, HandlerError, NoHandler, Peer, PeerIdentity,
    ReconnectConfig, ReconnectingClient, RequestError, ServerConfig, TcpConnector,
    WhileDisconnected,
};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::backup::BackupHeader;
use crate::backup_transfer::{BackupSlot, BackupStarted, StreamCheck, write_piece};
use crate::client_error::ClientError;
use crate::driver::{Failure, NodeApi, NodeHandle, Status, StoreError, Transport};
use crate::ids::{LogIndex, NodeId, Term};
use crate::membership::{ClusterChange, ClusterChanged, Membership};
use crate::message::Message;
use crate::mux_transfer::{
    Assemblies, CHUNK_BYTES, MAX_TRANSFER_BYTES, RESUME_WINDOW, first_transfer_number, pieces,
};
use crate::ops::{ReadOp, ReadResult, WriteOp, WriteResult};
use crate::roles::{Principal, Request};
use crate::watch::{WatchBatch, WatchRequest};

/// Largest decompressed body accepted: a hostile size prefix must not allocate gigabytes.
const MAX_DECOMPRESSED: usize = 256 << 20;

/// Bodies from this size are compressed. Below it lz4 saves a few bytes at best (most of the
/// store's messages are votes, acknowledgements and small appends of tens of bytes) for two
/// allocations and a pass over the bytes at each end.
const COMPRESS_FROM: usize = 1024;

/// Bodies from this size are decoded on a blocking thread rather than on the connection's task.
const DECODE_INLINE_BELOW: usize = 64 * 1024;

/// Set in the size prefix of a body sent uncompressed; the rest of the prefix is its length.
/// No compressed body sets it (those claim at most [`MAX_DECOMPRESSED`]), so bodies of earlier
/// versions, all compressed, still decode; an earlier version refuses a raw body as too big.
const RAW: u32 = 1 << 31;

/// How a node's connections, to peers and from clients alike, are secured, and so what each
/// connection may do ([`Principal`]).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub enum Security {
    /// Plain TCP: nothing is proved and every connection may do everything. Only for
    /// loopback, which keeps other machines out but not other users of this one, or a network
    /// that is trusted.
    #[default]
    Plain,
    /// Mutual TLS (feature `tls`): every node and every client presents a certificate signed
    /// by the cluster's CA and checks the other side's; anyone else is refused during the
    /// handshake, before a frame is read. The role of a connection is read from its
    /// certificate's URI names (`plus-quorum://node/N`, `.../admin/NAME`, `.../client/NAME`,
    /// `.../reader/NAME`); a certificate naming none is refused. A client checks that the
    /// node it reaches presents `plus-quorum://node/ID` for the id it asked for.
    #[cfg(feature = "tls")]
    MutualTls(plus_mux::Tls),
    /// Pre-shared keys (feature `psk`): `own` is the key this process proves when it
    /// connects; a node's endpoint accepts peers proving any key of `accept`, each with the
    /// role its name gives (`node`, `admin`, `client`, `reader`). Authenticates, does not
    /// encrypt.
    #[cfg(feature = "psk")]
    Psk {
        /// The key this process proves to the nodes it connects to.
        own: plus_mux::Psk,
        /// The keys a node's endpoint accepts (ignored by a client).
        accept: Vec<plus_mux::Psk>,
    },
}

impl Security {
    /// The role a peer that proved `identity` gets under this security, `None` to refuse it.
    pub(crate) fn principal(&self, identity: &PeerIdentity) -> Option<Principal> {
        // Without the `tls` and `psk` features, `Plain` is the only variant.
        #[allow(irrefutable_let_patterns)]
        if let Self::Plain = self {
            return Some(Principal::Unauthenticated);
        }
        // Only a secured listener gets here, and it hands out only peers that proved one.
        match identity {
            PeerIdentity::Certificate { uris } => Principal::from_uris(uris),
            PeerIdentity::Key(name) => Principal::from_key_name(name),
            _ => None,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
enum Wire {
    Raft {
        from: NodeId,
        msg: Message,
    },
    /// Every message queued for one peer since the last send, in order.
    RaftBatch {
        from: NodeId,
        msgs: Vec<Message>,
    },
    /// A piece of an encoded `RaftBatch` too large for one frame (a snapshot of a large
    /// state): the pieces of one transfer arrive in order on one connection, and the batch is
    /// delivered once all `total` bytes are there.
    Chunk {
        from: NodeId,
        transfer: u64,
        offset: u64,
        total: u64,
        bytes: Bytes,
    },
    Write {
        op: WriteOp,
        deadline_ms: u64,
    },
    Read {
        op: ReadOp,
        deadline_ms: u64,
    },
    Status,
    Watch {
        request: WatchRequest,
        wait_ms: u64,
    },
    ChangeCluster {
        change: ClusterChange,
        deadline_ms: u64,
    },
    Membership,
    /// Take a backup on this node (the leader) and hold it for fetching.
    BackupStart {
        deadline_ms: u64,
    },
    /// The piece of a held backup from `offset`.
    BackupPiece {
        transfer: u64,
        offset: u64,
    },
    /// How much of `from`'s transfer `transfer` of `total` bytes the receiver holds, from its
    /// start: where a cut transfer resumes. (Variants travel by name; a node that does not
    /// know this one answers with an error, and the sender sends everything.)
    ChunkHeld {
        from: NodeId,
        transfer: u64,
        total: u64,
    },
}

#[derive(Debug, Serialize, Deserialize)]
enum WireReply {
    Delivered,
    Write(Result<WriteResult, StoreError>),
    Read(Result<ReadResult, StoreError>),
    Status(Result<Status, StoreError>),
    Watch(Result<WatchBatch, StoreError>),
    ChangeCluster(Result<ClusterChanged, StoreError>),
    Membership(Result<Membership, StoreError>),
    BackupStarted(Result<BackupStarted, StoreError>),
    BackupPiece(Result<Bytes, StoreError>),
    ChunkHeld(u64),
}

/// Why a body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad quorum message: {0}")]
pub(crate) struct WireError(String);

/// msgpack behind a size prefix: as it is below [`COMPRESS_FROM`] bytes (the prefix marked
/// [`RAW`]), lz4-compressed from there.
///
/// # Panics
/// Never for the store's own types, which always serialize.
pub(crate) fn encode<T: Serialize>(value: &T) -> Bytes {
    let mut body = Vec::with_capacity(128);
    body.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write(&mut body, value).expect("quorum wire types serialize");
    let len = body.len() - 4;
    if len < COMPRESS_FROM {
        let prefix = RAW | u32::try_from(len).expect("below COMPRESS_FROM");
        body[..4].copy_from_slice(&prefix.to_le_bytes());
        return Bytes::from(body);
    }
    Bytes::from(lz4_flex::compress_prepend_size(&body[4..]))
}

/// The inverse of [`encode`], refusing bodies that claim more than 256 MiB.
///
/// # Errors
/// [`WireError`] for a bad size, bad compression or bad msgpack.
pub(crate) fn decode<T: DeserializeOwned>(body: &[u8]) -> Result<T, WireError> {
    decode_at_most(body, MAX_DECOMPRESSED)
}

/// [`decode`], refusing bodies that claim more than `max` bytes decompressed.
fn decode_at_most<T: DeserializeOwned>(body: &[u8], max: usize) -> Result<T, WireError> {
    let prefix = body
        .get(..4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| WireError("body shorter than its size prefix".into()))?;
    if prefix & RAW != 0 {
        let (claimed, raw) = ((prefix & !RAW) as usize, &body[4..]);
        if raw.len() != claimed {
            return Err(WireError(format!(
                "uncompressed body of {} bytes, its prefix says {claimed}",
                raw.len()
            )));
        }
        return rmp_serde::from_slice(raw).map_err(|e| WireError(e.to_string()));
    }
    let size = prefix as usize;
    if size > max {
        return Err(WireError(format!("claims {size} bytes decompressed, above {max}")));
    }
    let raw = lz4_flex::decompress_size_prepended(body).map_err(|e| WireError(e.to_string()))?;
    rmp_serde::from_slice(&raw).map_err(|e| WireError(e.to_string()))
}

impl Wire {
    fn request(&self) -> Request {
        match self {
            Self::Raft { from, .. }
            | Self::RaftBatch { from, .. }
            | Self::Chunk { from, .. }
            | Self::ChunkHeld { from, .. } => Request::Raft { from: *from },
            Self::Write { op: WriteOp::Compact { .. }, .. } => Request::Compact,
            Self::Write { .. } => Request::Write,
            Self::Read { .. } => Request::Read,
            Self::Status => Request::Status,
            Self::Watch { .. } => Request::Watch,
            Self::ChangeCluster { .. } => Request::ChangeCluster,
            Self::Membership => Request::Membership,
            Self::BackupStart { .. } | Self::BackupPiece { .. } => Request::Backup,
        }
    }

    /// The reply that refuses this request.
    fn refusal(&self, error: StoreError) -> WireReply {
        match self {
            Self::Raft { .. }
            | Self::RaftBatch { .. }
            | Self::Chunk { .. }
            | Self::ChunkHeld { .. }
            | Self::Write { .. } => WireReply::Write(Err(error)),
            Self::Read { .. } => WireReply::Read(Err(error)),
            Self::Status => WireReply::Status(Err(error)),
            Self::Watch { .. } => WireReply::Watch(Err(error)),
            Self::ChangeCluster { .. } => WireReply::ChangeCluster(Err(error)),
            Self::Membership => WireReply::Membership(Err(error)),
            Self::BackupStart { .. } => WireReply::BackupStarted(Err(error)),
            Self::BackupPiece { .. } => WireReply::BackupPiece(Err(error)),
        }
    }
}

/// One connection's service: the node, and the role the connection's credential gives it.
/// The body of a request delivering `msgs` as if from node `from`: what a peer speaking the
/// wire by hand sends (`testing`).
#[cfg(feature = "testing")]
pub(crate) fn raft_body(from: NodeId, msgs: Vec<Message>) -> Bytes {
    encode(&Wire::RaftBatch { from, msgs })
}

/// The body of a watch poll (`testing`).
#[cfg(feature = "testing")]
pub(crate) fn watch_body(request: WatchRequest, wait_ms: u64) -> Bytes {
    encode(&Wire::Watch { request, wait_ms })
}

/// The error a reply carries, `None` for a success (`testing`).
///
/// # Errors
/// When the body is not a reply.
#[cfg(feature = "testing")]
pub(crate) fn reply_error(body: &[u8]) -> Result<Option<StoreError>, String> {
    let error = match decode::<WireReply>(body).map_err(|e| e.to_string())? {
        WireReply::Delivered | WireReply::ChunkHeld(_) => None,
        WireReply::Write(r) => r.err(),
        WireReply::Read(r) => r.err(),
        WireReply::Status(r) => r.err(),
        WireReply::Watch(r) => r.err(),
        WireReply::ChangeCluster(r) => r.err(),
        WireReply::Membership(r) => r.err(),
        WireReply::BackupStarted(r) => r.err(),
        WireReply::BackupPiece(r) => r.err(),
    };
    Ok(error)
}

struct NodeService {
    node: NodeHandle,
    principal: Principal,
    peer: Option<std::net::SocketAddr>,
    /// Requests refused on this connection; the first is logged, the rest only counted.
    refused: std::sync::atomic::AtomicU64,
    /// Requests refused on every connection of the endpoint.
    refused_total: Arc<std::sync::atomic::AtomicU64>,
    /// The transfers in pieces arriving at this endpoint, one per sending node, on any of its
    /// connections.
    assemblies: Arc<std::sync::Mutex<Assemblies>>,
    /// The nodes that sent pieces on this connection.
    senders: std::sync::Mutex<std::collections::HashSet<NodeId>>,
    /// Where this endpoint reaches its peers: told to clients that ask for the membership,
    /// for members whose configuration carries no address (a cluster's first members).
    peer_addresses: Arc<HashMap<NodeId, String>>,
    /// The backup this endpoint holds for the admin fetching it (one per endpoint).
    backups: Arc<BackupSlot>,
    /// The last backup started on this connection: let go when the connection ends.
    started_backup: std::sync::atomic::AtomicU64,
}

impl Drop for NodeService {
    fn drop(&mut self) {
        let transfer = self.started_backup.load(std::sync::atomic::Ordering::Relaxed);
        if transfer != 0 {
            self.backups.release(transfer);
        }
        // Pieces this connection brought wait for their sender to come back and resume, for a
        // while; then they go (a leader that died half-way through a gigabyte left it behind).
        let senders = std::mem::take(
            &mut *self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        if let (false, Ok(runtime)) = (senders.is_empty(), tokio::runtime::Handle::try_current()) {
            let assemblies = Arc::clone(&self.assemblies);
            runtime.spawn(async move {
                tokio::time::sleep(RESUME_WINDOW).await;
                let mut assemblies =
                    assemblies.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                for from in senders {
                    assemblies.forget_idle(from, RESUME_WINDOW, std::time::Instant::now());
                }
            });
        }
    }
}

impl NodeService {
    /// A piece of a transfer: the batch it completes, delivered (decoded on a blocking thread:
    /// it may be a large state).
    async fn chunk(
        &self,
        from: NodeId,
        transfer: u64,
        offset: u64,
        total: u64,
        bytes: Bytes,
    ) -> Result<(), WireError> {
        self.senders.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(from);
        let whole = self
            .assemblies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(from, transfer, offset, total, bytes)
            .map_err(|e| WireError(e.to_string()))?;
        let Some(body) = whole else { return Ok(()) };
        let decoded = tokio::task::spawn_blocking(move || {
            decode_at_most::<Wire>(&body, MAX_TRANSFER_BYTES as usize)
        })
        .await
        .map_err(|e| WireError(e.to_string()))??;
        match decoded {
            // The pieces were checked as `from`'s; so must be what they carry.
            Wire::RaftBatch { from: inner, msgs } if inner == from => {
                for msg in msgs {
                    self.node.deliver(from, msg);
                }
                Ok(())
            }
            _ => Err(WireError("a transfer that is not its sender's batch".into())),
        }
    }

    fn refuse(&self, request: Request) -> StoreError {
        use std::sync::atomic::Ordering::Relaxed;
        self.refused_total.fetch_add(1, Relaxed);
        if self.refused.fetch_add(1, Relaxed) == 0 {
            tracing::warn!(
                peer = ?self.peer,
                role = %self.principal,
                %request,
                "refused a request its credential does not allow (further ones on this connection are only counted)"
            );
        }
        StoreError::Forbidden { role: self.principal.to_string(), request: request.to_string() }
    }
}

#[async_trait]
impl Handler for NodeService {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        let wire: Wire = if request.len() < DECODE_INLINE_BELOW {
            decode(&request)
        } else {
            // A large body (a transaction of many operations, a piece of a snapshot) takes a
            // while to decode: on a blocking thread, so that the runtime's workers, and the
            // node's loop among their tasks, keep running (a worker busy for a second held
            // the node's task in its slot, and the followers elected another leader).
            tokio::task::spawn_blocking(move || decode(&request))
                .await
                .map_err(|e| HandlerError::new(e.to_string()))?
        }
        .map_err(|e| HandlerError::new(e.to_string()))?;
        let asked = wire.request();
        if !self.principal.may(asked) {
            return Ok(encode(&wire.refusal(self.refuse(asked))));
        }
        let reply = match wire {
            Wire::RaftBatch { from, msgs } => {
                for msg in msgs {
                    self.node.deliver(from, msg);
                }
                WireReply::Delivered
            }
            Wire::Raft { from, msg } => {
                self.node.deliver(from, msg);
                WireReply::Delivered
            }
            Wire::Chunk { from, transfer, offset, total, bytes } => {
                self.chunk(from, transfer, offset, total, bytes)
                    .await
                    .map_err(|e| HandlerError::new(e.to_string()))?;
                WireReply::Delivered
            }
            Wire::Write { op, deadline_ms } => {
                WireReply::Write(self.node.write(op, Duration::from_millis(deadline_ms)).await)
            }
            Wire::Read { op, deadline_ms } => {
                WireReply::Read(self.node.read(op, Duration::from_millis(deadline_ms)).await)
            }
            Wire::Status => WireReply::Status(self.node.status().await),
            Wire::ChangeCluster { change, deadline_ms } => WireReply::ChangeCluster(
                self.node.change_cluster(change, Duration::from_millis(deadline_ms)).await,
            ),
            Wire::Membership => WireReply::Membership(self.node.membership().await.map(|m| {
                // A client that knows one node learns where the others are.
                let mut membership = m;
                let missing: Vec<NodeId> =
                    membership.members().filter(|&id| membership.address(id).is_none()).collect();
                for id in missing {
                    if let Some(addr) = self.peer_addresses.get(&id) {
                        membership = membership.with_address(id, addr.clone());
                    }
                }
                membership
            })),
            Wire::Watch { request, wait_ms } => WireReply::Watch(
                // A peer's number: bounded, like everything that comes from outside.
                self.node.watch(request, Duration::from_millis(wait_ms.min(60_000))).await,
            ),
            Wire::BackupStart { deadline_ms } => {
                let started =
                    self.backups.start(&self.node, Duration::from_millis(deadline_ms)).await;
                if let Ok(started) = &started {
                    self.started_backup
                        .store(started.transfer, std::sync::atomic::Ordering::Relaxed);
                }
                WireReply::BackupStarted(started)
            }
            Wire::BackupPiece { transfer, offset } => {
                WireReply::BackupPiece(self.backups.piece(transfer, offset).await)
            }
            Wire::ChunkHeld { from, transfer, total } => WireReply::ChunkHeld(
                self.assemblies
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .held(from, transfer, total),
            ),
        };
        Ok(encode(&reply))
    }
}

/// A node's plus-mux endpoint; [`Server::stop`] closes the listener and every connection.
/// Dropping it stops it too.
#[derive(Debug)]
pub struct Server {
    inner: plus_mux::Server,
    refused_requests: Arc<std::sync::atomic::AtomicU64>,
}

impl Server {
    /// Stops accepting and closes every connection, so peers notice at once.
    pub fn stop(&self) {
        self.inner.stop();
    }

    /// Requests refused because the connection's role may not make them (a client sending
    /// consensus traffic, node 2 speaking as node 1, a reader writing).
    #[must_use]
    pub fn refused_requests(&self) -> u64 {
        self.refused_requests.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The endpoint's connection counters (peers refused for a credential without a role
    /// among them).
    #[must_use]
    pub fn counters(&self) -> plus_mux::ServerCounters {
        self.inner.counters()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `node` on `listener`: Raft traffic from peers and client calls, through plus-mux's
/// accept loop (connection cap, backoff on accept errors).
///
/// # Errors
/// [`ConfigError`] when `config` fails [`MuxConfig::validate`].
pub fn serve(
    listener: TcpListener,
    node: NodeHandle,
    config: MuxConfig,
) -> Result<Server, ConfigError> {
    serve_secured(listener, node, config, &Security::Plain)
}

/// [`serve`], with the connections secured as `security` says.
///
/// # Errors
/// [`ConfigError`] when `config` fails [`MuxConfig::validate`].
pub fn serve_secured(
    listener: TcpListener,
    node: NodeHandle,
    config: MuxConfig,
    security: &Security,
) -> Result<Server, ConfigError> {
    serve_with_peers(listener, node, config, security, HashMap::new())
}

/// [`serve_secured`], telling clients that ask for the membership where `peers` (`id ->
/// host:port`) are, for members the configuration holds no address of.
fn serve_with_peers(
    listener: TcpListener,
    node: NodeHandle,
    config: MuxConfig,
    security: &Security,
    peers: HashMap<NodeId, String>,
) -> Result<Server, ConfigError> {
    let peer_addresses = Arc::new(peers);
    let backups = Arc::new(BackupSlot::default());
    let assemblies = Arc::new(std::sync::Mutex::new(Assemblies::default()));
    let mut server_config = ServerConfig::default();
    server_config.connection = plus_peers(config);
    let refused_requests = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let refused_total = Arc::clone(&refused_requests);
    let roles = security.clone();
    let handler_for = Arc::new(move |peer: &Peer| -> Option<Arc<dyn Handler>> {
        let principal = roles.principal(&peer.identity)?;
        Some(Arc::new(NodeService {
            node: node.clone(),
            principal,
            peer: peer.addr,
            refused: std::sync::atomic::AtomicU64::new(0),
            refused_total: Arc::clone(&refused_total),
            assemblies: Arc::clone(&assemblies),
            senders: std::sync::Mutex::default(),
            peer_addresses: Arc::clone(&peer_addresses),
            backups: Arc::clone(&backups),
            started_backup: std::sync::atomic::AtomicU64::new(0),
        }))
    });
    let inner = match security {
        Security::Plain => plus_mux::serve_by_peer(listener, server_config, handler_for),
        #[cfg(feature = "tls")]
        Security::MutualTls(tls) => {
            plus_mux::serve_by_peer(tls.listener(listener), server_config, handler_for)
        }
        #[cfg(feature = "psk")]
        Security::Psk { own, accept } => {
            let keys = if accept.is_empty() { std::slice::from_ref(own) } else { accept };
            plus_mux::serve_by_peer(
                plus_mux::Psk::listener_for(keys, listener),
                server_config,
                handler_for,
            )
        }
    }?;
    Ok(Server { inner, refused_requests })
}

/// Both ends of a store connection are plus-quorum: bodies are msgpack + lz4 and may hold any
/// bytes, so the Go-compatibility checks stay off.
fn plus_peers(config: MuxConfig) -> MuxConfig {
    MuxConfig { go_compatible: false, ..config }
}

/// A reconnecting client of node `id` at `addr`.
fn reconnecting(
    id: NodeId,
    addr: &str,
    config: &MuxConfig,
    wait: WhileDisconnected,
    security: &Security,
) -> Result<ReconnectingClient, ConfigError> {
    let seed = id;
    let reconnect = ReconnectConfig {
        initial_backoff: Duration::from_millis(20),
        max_backoff: Duration::from_secs(1),
        while_disconnected: wait,
        seed,
        ..ReconnectConfig::default()
    };
    let config = plus_peers(config.clone());
    match security {
        Security::Plain => {
            ReconnectingClient::new(TcpConnector::new(addr), config, reconnect, Arc::new(NoHandler))
        }
        #[cfg(feature = "tls")]
        Security::MutualTls(tls) => {
            let connector = tls.connector(addr).expect_peer_uri(node_uri(id));
            ReconnectingClient::new(connector, config, reconnect, Arc::new(NoHandler))
        }
        #[cfg(feature = "psk")]
        Security::Psk { own, .. } => {
            ReconnectingClient::new(own.connector(addr), config, reconnect, Arc::new(NoHandler))
        }
    }
}

/// The URI name node `id`'s certificate carries.
#[must_use]
pub fn node_uri(id: NodeId) -> String {
    format!("{}node/{id}", crate::roles::ROLE_URI_SCHEME)
}

/// Sends Raft messages to peers over plus-mux, one reconnecting connection and one queue per
/// peer. Lost connections are re-established with backoff; messages meanwhile are dropped (the
/// protocol resends).
#[derive(Debug)]
pub struct MuxTransport {
    peers: std::sync::RwLock<Peers>,
    config: MuxConfig,
    security: Security,
    failed_sends: Arc<std::sync::atomic::AtomicU64>,
    /// Bytes of snapshot transfers not sent again: a cut transfer resumed where the peer had it.
    resumed_bytes: Arc<std::sync::atomic::AtomicU64>,
}

/// The most bytes of messages (as [`Message::approx_bytes`] counts them) in one frame to a
/// peer: half plus-mux's default frame limit, so that the encoding's overhead never crosses it.
const MAX_BATCH_BYTES: usize = 8 << 20;
/// The most messages in one frame to a peer.
const MAX_BATCH_MESSAGES: usize = 1024;

/// The frames that carry `body`, an encoded batch from `from`: itself, or, past
/// [`CHUNK_BYTES`], its pieces as transfer `transfer` from byte `resume_at` on (the pieces
/// before it are already at the receiver).
fn frames_of(from: NodeId, transfer: u64, body: &Bytes, resume_at: u64) -> Vec<Bytes> {
    if body.len() <= CHUNK_BYTES {
        return vec![body.clone()];
    }
    let total = body.len() as u64;
    pieces(body)
        .filter(|(offset, _)| *offset >= resume_at)
        .map(|(offset, bytes)| encode(&Wire::Chunk { from, transfer, offset, total, bytes }))
        .collect()
}

/// What identifies a snapshot message: the same key, the same message, byte for byte (the
/// leader resends the very message it sent).
type SnapshotKey = (Term, LogIndex, LogIndex, u64);

/// The one message of `msgs` if it is a snapshot (the batcher sends a snapshot alone).
fn snapshot_key(msgs: &[Message]) -> Option<SnapshotKey> {
    match msgs {
        [Message::Snapshot { term, snapshot, commit, read_seq }] => {
            Some((*term, snapshot.last_index, *commit, *read_seq))
        }
        _ => None,
    }
}

/// Sends the batches queued for one peer, in frames, a large one in pieces.
struct PeerSender {
    id: NodeId,
    client: ReconnectingClient,
    failed: Arc<std::sync::atomic::AtomicU64>,
    resumed: Arc<std::sync::atomic::AtomicU64>,
    log: SendFailures,
    /// The last transfer in pieces' number.
    transfers: u64,
    /// The last snapshot sent, and its transfer's number: sent again, it resumes.
    last_snapshot: Option<(SnapshotKey, u64)>,
}

impl PeerSender {
    async fn send(&mut self, from: NodeId, msgs: Vec<Message>) {
        let key = snapshot_key(&msgs);
        let again = key.is_some() && self.last_snapshot.is_some_and(|(last, _)| Some(last) == key);
        let transfer = match self.last_snapshot {
            Some((_, transfer)) if again => transfer,
            _ => {
                self.transfers += 1;
                self.transfers
            }
        };
        if let Some(key) = key {
            self.last_snapshot = Some((key, transfer));
        }
        let body = if msgs.iter().any(|m| matches!(m, Message::Snapshot { .. })) {
            // A snapshot's state may take a second to encode: on a blocking thread, so that the
            // runtime's workers (the node's loop among their tasks) keep running.
            let encoded =
                tokio::task::spawn_blocking(move || encode(&Wire::RaftBatch { from, msgs })).await;
            let Ok(body) = encoded else { return };
            body
        } else {
            encode(&Wire::RaftBatch { from, msgs })
        };
        let resume_at = if again && body.len() > CHUNK_BYTES {
            self.held_by_peer(from, transfer, body.len() as u64).await
        } else {
            0
        };
        if resume_at > 0 {
            self.resumed.fetch_add(resume_at, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(
                peer = self.id,
                transfer,
                resume_at,
                total = body.len(),
                "resuming a snapshot transfer where the peer has it up to"
            );
        }
        for frame in frames_of(from, transfer, &body, resume_at) {
            if let Err(e) = self.client.send_async(frame).await {
                // The protocol resends; what must not happen is silence. The rest of a transfer
                // in pieces would be refused anyway: drop it.
                self.failed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.log.warn(self.id, &e);
                break;
            }
        }
    }

    /// How much of `transfer` the peer holds from its start; 0 when it cannot say (it is not
    /// reachable, or is a version without resumption).
    async fn held_by_peer(&self, from: NodeId, transfer: u64, total: u64) -> u64 {
        let ask = self.client.request(encode(&Wire::ChunkHeld { from, transfer, total }));
        match tokio::time::timeout(Duration::from_secs(5), ask).await {
            Ok(Ok(body)) => match decode::<WireReply>(&body) {
                Ok(WireReply::ChunkHeld(held)) => held.min(total),
                _ => 0,
            },
            _ => 0,
        }
    }
}

/// Cuts the messages queued for a peer into frames: at most [`MAX_BATCH_MESSAGES`] and
/// [`MAX_BATCH_BYTES`] each, a snapshot always alone.
#[derive(Debug, Default)]
struct Batcher {
    done: Vec<Vec<Message>>,
    current: Vec<Message>,
    bytes: usize,
}

impl Batcher {
    fn push(&mut self, msg: Message) {
        let size = msg.approx_bytes();
        let full = self.current.len() >= MAX_BATCH_MESSAGES
            || self.bytes.saturating_add(size) > MAX_BATCH_BYTES;
        if full && !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
            self.bytes = 0;
        }
        self.bytes = self.bytes.saturating_add(size);
        self.current.push(msg);
    }

    /// Whether more may join before the frames leave (bounded, so a steady stream still
    /// leaves).
    fn filling(&self) -> bool {
        self.done.len() < 4
    }

    fn take(&mut self) -> Vec<Vec<Message>> {
        if !self.current.is_empty() {
            self.done.push(std::mem::take(&mut self.current));
        }
        self.bytes = 0;
        std::mem::take(&mut self.done)
    }
}

/// A failed send to a peer, logged at most once a second per peer with how many were not.
#[derive(Debug, Default)]
struct SendFailures {
    last: Option<std::time::Instant>,
    suppressed: u64,
}

impl SendFailures {
    fn warn(&mut self, peer: NodeId, error: &RequestError) {
        if let RequestError::Closed(_) = error {
            // The peer is down or reconnecting: its connection says so when it closes.
            tracing::debug!(peer, %error, "cannot send to a peer while disconnected");
            return;
        }
        let now = std::time::Instant::now();
        if self.last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return;
        }
        tracing::warn!(peer, %error, suppressed = self.suppressed, "cannot send to a peer; the protocol will resend");
        self.last = Some(now);
        self.suppressed = 0;
    }
}

/// One queue and one connection per peer, by id (peers added as members join).
#[derive(Debug, Default)]
struct Peers {
    queues: HashMap<NodeId, mpsc::UnboundedSender<(NodeId, Message)>>,
    clients: Vec<ReconnectingClient>,
    closed: bool,
}

impl MuxTransport {
    /// A transport to `peers` (`id -> host:port`).
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`MuxConfig::validate`].
    pub fn new(
        peers: &HashMap<NodeId, String>,
        config: &MuxConfig,
    ) -> Result<Arc<Self>, ConfigError> {
        Self::secured(peers, config, &Security::Plain)
    }

    /// [`MuxTransport::new`], with the connections secured as `security` says.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`MuxConfig::validate`].
    pub fn secured(
        peers: &HashMap<NodeId, String>,
        config: &MuxConfig,
        security: &Security,
    ) -> Result<Arc<Self>, ConfigError> {
        config.validate()?;
        let transport = Self {
            peers: std::sync::RwLock::new(Peers::default()),
            config: config.clone(),
            security: security.clone(),
            failed_sends: Arc::default(),
            resumed_bytes: Arc::default(),
        };
        for (&id, addr) in peers {
            transport.add_peer(id, addr)?;
        }
        Ok(Arc::new(transport))
    }

    /// Connects to a peer (a no-op for one already known, or once closed).
    fn add_peer(&self, id: NodeId, addr: &str) -> Result<(), ConfigError> {
        let mut peers = self.peers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        if peers.closed || peers.queues.contains_key(&id) {
            return Ok(());
        }
        let client =
            reconnecting(id, addr, &self.config, WhileDisconnected::FailFast, &self.security)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<(NodeId, Message)>();
        let mut sender = PeerSender {
            id,
            client: client.clone(),
            failed: Arc::clone(&self.failed_sends),
            resumed: Arc::clone(&self.resumed_bytes),
            log: SendFailures::default(),
            transfers: first_transfer_number(),
            last_snapshot: None,
        };
        tokio::spawn(async move {
            let mut batches = Batcher::default();
            // Everything queued while the previous frame was going out leaves in as few
            // frames as fit the byte bound.
            while let Some((from, first)) = rx.recv().await {
                batches.push(first);
                while batches.filling() {
                    match rx.try_recv() {
                        Ok((_, msg)) => batches.push(msg),
                        Err(_) => break,
                    }
                }
                for msgs in batches.take() {
                    sender.send(from, msgs).await;
                }
            }
        });
        peers.queues.insert(id, tx);
        peers.clients.push(client);
        Ok(())
    }

    /// Sends to a peer that failed (the connection down, a frame refused); each is logged, at
    /// most once a second per peer.
    #[must_use]
    pub fn failed_sends(&self) -> u64 {
        self.failed_sends.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Bytes of snapshot transfers not sent again because the peer already had them: a
    /// transfer cut half-way (a connection lost) resumed where it stopped.
    #[must_use]
    pub fn resumed_transfer_bytes(&self) -> u64 {
        self.resumed_bytes.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Closes every connection.
    pub fn close(&self) {
        let mut peers = self.peers.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        peers.closed = true;
        for c in &peers.clients {
            c.close();
        }
    }
}

impl Transport for MuxTransport {
    fn send(&self, from: NodeId, to: NodeId, msg: Message) {
        let peers = self.peers.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(queue) = peers.queues.get(&to) {
            let _ = queue.send((from, msg));
        }
    }

    /// Connects to every member added with an address this transport does not reach yet.
    fn members_changed(&self, membership: &Membership) {
        for id in membership.members() {
            if let Some(addr) = membership.address(id)
                && let Err(e) = self.add_peer(id, addr)
            {
                tracing::warn!(peer = id, addr, error = %e, "cannot reach a new member");
            }
        }
    }
}

/// Why [`MuxNode::start`] could not start a node.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The addresses given have none for the node itself.
    #[error("no address for node {0} among the addresses given")]
    NoAddress(NodeId),
    /// Its address could not be bound (in use, not local, not permitted).
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: String,
        /// What the OS said.
        #[source]
        source: Arc<std::io::Error>,
    },
    /// The plus-mux settings are invalid.
    #[error(transparent)]
    Mux(#[from] ConfigError),
    /// The node itself could not start (its configuration, or what its storage holds).
    #[error(transparent)]
    Node(#[from] crate::NodeError),
}

/// A node running in this process and served over plus-mux: its driver, its endpoint and its
/// transport to the peers, started and stopped together.
#[derive(Debug)]
pub struct MuxNode {
    /// The node's local handle.
    pub handle: NodeHandle,
    server: Server,
    transport: Arc<MuxTransport>,
}

impl MuxNode {
    /// Starts node `config.id`, listening on `addrs[id]` and reaching its peers at the other
    /// addresses (`id -> host:port`).
    ///
    /// # Errors
    /// [`StartError`] when the address cannot be bound or the node cannot start.
    pub async fn start<S: crate::Storage + 'static>(
        config: crate::Config,
        storage: S,
        addrs: &HashMap<NodeId, String>,
        mux: MuxConfig,
    ) -> Result<Self, StartError> {
        Self::start_secured(config, storage, addrs, mux, &Security::Plain).await
    }

    /// [`MuxNode::start`], with every connection secured as `security` says.
    ///
    /// # Errors
    /// [`StartError`] when the address cannot be bound or the node cannot start.
    pub async fn start_secured<S: crate::Storage + 'static>(
        config: crate::Config,
        storage: S,
        addrs: &HashMap<NodeId, String>,
        mux: MuxConfig,
        security: &Security,
    ) -> Result<Self, StartError> {
        let id = config.id;
        let addr = addrs.get(&id).ok_or(StartError::NoAddress(id))?;
        let listener = TcpListener::bind(addr).await.map_err(|source| StartError::Listen {
            addr: addr.clone(),
            source: Arc::new(source),
        })?;
        let peers: HashMap<NodeId, String> =
            addrs.iter().filter(|(p, _)| **p != id).map(|(p, a)| (*p, a.clone())).collect();
        let transport = MuxTransport::secured(&peers, &mux, security)?;
        let node = crate::spawn_node(config, storage, transport.clone())?;
        let server = serve_with_peers(listener, node.handle.clone(), mux, security, peers)?;
        Ok(Self { handle: node.handle, server, transport })
    }

    /// Its endpoint (its counters, the requests it refused).
    #[must_use]
    pub fn server(&self) -> &Server {
        &self.server
    }

    /// Its links to its peers (their counters).
    #[must_use]
    pub fn transport(&self) -> &MuxTransport {
        &self.transport
    }

    /// Stops the node: closes its endpoint and connections, then its driver.
    pub async fn stop(&self) {
        self.server.stop();
        self.transport.close();
        self.handle.stop().await;
    }
}

/// A node reached over plus-mux, for [`Cluster`](crate::Cluster).
#[derive(Debug, Clone)]
pub struct RemoteNode {
    id: NodeId,
    client: ReconnectingClient,
}

impl RemoteNode {
    /// A client of node `id` at `addr`. Call it on a tokio runtime: the connection's task
    /// starts at once (and connects, reconnecting with backoff, as calls need it).
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`MuxConfig::validate`].
    pub fn connect(id: NodeId, addr: &str, config: &MuxConfig) -> Result<Self, ConfigError> {
        Self::connect_secured(id, addr, config, &Security::Plain)
    }

    /// [`RemoteNode::connect`], with the connection secured as `security` says.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`MuxConfig::validate`].
    pub fn connect_secured(
        id: NodeId,
        addr: &str,
        config: &MuxConfig,
        security: &Security,
    ) -> Result<Self, ConfigError> {
        let wait = WhileDisconnected::Wait(Duration::from_millis(200));
        Ok(Self { id, client: reconnecting(id, addr, config, wait, security)? })
    }

    async fn call(&self, wire: &Wire, deadline: Duration) -> Result<WireReply, StoreError> {
        // Its last attempt to connect failed: say so now rather than wait on the next one (the
        // client backs off and comes back; the cause is what the caller needs).
        if !self.client.is_connected()
            && let Some(cause) = self.client.last_failure()
        {
            return Err(StoreError::Unreachable { node: self.id, cause });
        }
        let request = self.client.request(encode(wire));
        match tokio::time::timeout(deadline + Duration::from_millis(50), request).await {
            Ok(Ok(body)) => decode(&body)
                .map_err(|_| StoreError::Client(ClientError::Invalid("bad reply".into()))),
            // Never reached the node: safe to try elsewhere. Say why when the connection
            // cannot be made (a refused certificate or key is not a missing leader).
            Ok(Err(RequestError::Closed(_))) => Err(match self.client.last_failure() {
                Some(cause) => StoreError::Unreachable { node: self.id, cause },
                None => StoreError::Stopped(self.id),
            }),
            Ok(Err(RequestError::SlotTimeout | RequestError::ShuttingDown)) => {
                Err(StoreError::Stopped(self.id))
            }
            // It may have reached the node and applied: a write's outcome is unknown, so the
            // client must not send it again (a read it is safe to resend: `Cluster::read`).
            Ok(Err(RequestError::Lost(_))) => Err(StoreError::Client(ClientError::Unknown)),
            Ok(Err(RequestError::Timeout)) | Err(_) => Err(StoreError::Timeout(deadline)),
            Ok(Err(e)) => Err(StoreError::Client(ClientError::Invalid(e.to_string()))),
        }
    }

    /// Takes a backup on this node (it must lead) and writes it to `out` as a backup file
    /// (see [`read_backup_file`](crate::read_backup_file)), checking its checksum as it
    /// arrives; writes go on meanwhile. Needs an admin's (or a node's) credential. The header
    /// says which revision it holds: every write acknowledged at or before it.
    ///
    /// # Errors
    /// [`ClientError::NotLeader`] on a follower; [`StoreError::Busy`] while another backup is
    /// being fetched from this node; [`StoreError::Forbidden`] without an admin's credential;
    /// [`StoreError::Backend`] when `out` cannot be written or the transfer arrived damaged.
    pub async fn save_backup(
        &self,
        out: &mut (impl tokio::io::AsyncWrite + Unpin + Send),
        deadline: Duration,
    ) -> Result<BackupHeader, StoreError> {
        let started = self.start_backup(deadline).await?;
        self.fetch_backup(started, out, deadline).await
    }

    async fn start_backup(&self, deadline: Duration) -> Result<BackupStarted, StoreError> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        match self.call(&Wire::BackupStart { deadline_ms }, deadline).await? {
            WireReply::BackupStarted(r) => r,
            other => Err(StoreError::unexpected("a backup", &other)),
        }
    }

    /// Fetches a started backup piece by piece; each piece has `per_piece` to arrive.
    async fn fetch_backup(
        &self,
        started: BackupStarted,
        out: &mut (impl tokio::io::AsyncWrite + Unpin + Send),
        per_piece: Duration,
    ) -> Result<BackupHeader, StoreError> {
        let BackupStarted { transfer, header, total_bytes } = started;
        let mut check = StreamCheck::new(total_bytes);
        let mut offset = 0;
        while offset < total_bytes {
            let piece = match self.call(&Wire::BackupPiece { transfer, offset }, per_piece).await? {
                WireReply::BackupPiece(r) => r?,
                other => return Err(StoreError::unexpected("a piece of a backup", &other)),
            };
            if piece.is_empty() {
                return Err(StoreError::Backend(Failure::new(format!(
                    "node {} sent an empty piece of its backup at {offset}",
                    self.id
                ))));
            }
            check.feed(&piece);
            write_piece(out, &piece).await?;
            offset += piece.len() as u64;
        }
        check.finish()?;
        tokio::io::AsyncWriteExt::flush(out)
            .await
            .map_err(|e| StoreError::Backend(Failure::with_source("cannot write the backup", e)))?;
        Ok(header)
    }

    /// Closes the connection.
    pub fn close(&self) {
        self.client.close();
    }

    /// For [`Cluster::with_connector`](crate::Cluster::with_connector): reaches members added
    /// later at the address they were added with, over connections configured as this one.
    pub fn connector(
        config: MuxConfig,
        security: Security,
    ) -> impl Fn(NodeId, &str) -> Option<Self> + Send + Sync + 'static {
        move |id, addr| match Self::connect_secured(id, addr, &config, &security) {
            Ok(node) => Some(node),
            Err(e) => {
                tracing::warn!(node = id, addr, error = %e, "cannot reach a new member");
                None
            }
        }
    }
}

impl crate::Cluster<RemoteNode> {
    /// [`RemoteNode::save_backup`] on the leader, wherever it is; finding it and taking the
    /// backup have the cluster's deadline, and so has each piece.
    ///
    /// # Errors
    /// As [`RemoteNode::save_backup`], and as [`Cluster::read`](crate::Cluster::read) when no
    /// leader answers.
    pub async fn save_backup(
        &self,
        out: &mut (impl tokio::io::AsyncWrite + Unpin + Send),
    ) -> Result<BackupHeader, StoreError> {
        let (node, started) = self
            .route(|node, left| async move {
                let started = node.start_backup(left).await?;
                Ok((node, started))
            })
            .await?;
        node.fetch_backup(started, out, self.deadline).await
    }
}

#[async_trait]
impl NodeApi for RemoteNode {
    fn id(&self) -> NodeId {
        self.id
    }

    async fn write(&self, op: WriteOp, deadline: Duration) -> Result<WriteResult, StoreError> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        match self.call(&Wire::Write { op, deadline_ms }, deadline).await? {
            WireReply::Write(r) => r,
            other => Err(StoreError::unexpected("a write reply", &other)),
        }
    }

    async fn read(&self, op: ReadOp, deadline: Duration) -> Result<ReadResult, StoreError> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        match self.call(&Wire::Read { op, deadline_ms }, deadline).await? {
            WireReply::Read(r) => r,
            other => Err(StoreError::unexpected("a read reply", &other)),
        }
    }

    async fn status(&self) -> Result<Status, StoreError> {
        match self.call(&Wire::Status, Duration::from_secs(2)).await? {
            WireReply::Status(r) => r,
            other => Err(StoreError::unexpected("a status reply", &other)),
        }
    }

    async fn watch(&self, request: WatchRequest, wait: Duration) -> Result<WatchBatch, StoreError> {
        let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
        match self.call(&Wire::Watch { request, wait_ms }, wait + Duration::from_secs(5)).await? {
            WireReply::Watch(r) => r,
            other => Err(StoreError::unexpected("a watch reply", &other)),
        }
    }

    async fn change_cluster(
        &self,
        change: ClusterChange,
        deadline: Duration,
    ) -> Result<ClusterChanged, StoreError> {
        let deadline_ms = u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX);
        match self.call(&Wire::ChangeCluster { change, deadline_ms }, deadline).await? {
            WireReply::ChangeCluster(r) => r,
            other => Err(StoreError::unexpected("a membership change reply", &other)),
        }
    }

    async fn membership(&self) -> Result<Membership, StoreError> {
        match self.call(&Wire::Membership, Duration::from_secs(2)).await? {
            WireReply::Membership(r) => r,
            other => Err(StoreError::unexpected("a membership reply", &other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An append of one entry setting `k` to `value`.
    fn append_of(value: Vec<u8>) -> Message {
        Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![crate::Entry {
                term: 1,
                index: 1,
                payload: crate::Payload::Write(WriteOp::Set {
                    key: "k".into(),
                    value: Bytes::from(value),
                }),
            }],
            commit: 0,
            read_seq: 0,
        }
    }

    #[test]
    fn batches_are_bounded_in_bytes_and_messages_and_a_snapshot_travels_alone() {
        let append = |mib: usize| append_of(vec![0; mib << 20]);
        let snapshot = Message::Snapshot {
            term: 1,
            snapshot: Box::new(crate::Snapshot {
                last_index: 1,
                last_term: 1,
                state: crate::KvState::default(),
                membership: None,
            }),
            commit: 1,
            read_seq: 0,
        };
        let check = |msgs: Vec<Message>, expected: &[usize]| {
            let mut batcher = Batcher::default();
            for msg in msgs {
                batcher.push(msg);
            }
            let sizes: Vec<usize> = batcher.take().iter().map(Vec::len).collect();
            assert_eq!(sizes, expected);
        };
        check(vec![append(3), append(3), append(3)], &[2, 1]);
        check(vec![append(9)], &[1]);
        check(vec![append(1), snapshot.clone(), append(1)], &[1, 1, 1]);
        let vote = Message::VoteReply { term: 1, granted: true };
        check(vec![vote; 2_000], &[MAX_BATCH_MESSAGES, 2_000 - MAX_BATCH_MESSAGES]);
    }

    #[test]
    fn a_batch_too_large_for_a_frame_travels_in_pieces_and_comes_back_whole() {
        // 20 MiB of bytes no compressor shrinks, as a snapshot would carry them.
        let msg = append_of(crate::testing::incompressible(20 << 20, 7));
        let body = encode(&Wire::RaftBatch { from: 2, msgs: vec![msg.clone()] });
        let frames = frames_of(2, 7, &body, 0);
        assert_eq!(frames.len(), body.len().div_ceil(CHUNK_BYTES), "in 4 MiB pieces");
        assert!(frames.len() > 5, "20 MiB and its encoding");
        assert!(frames.iter().all(|f| f.len() < 5 << 20));
        let assemble = |frames: &[Bytes], assemblies: &mut Assemblies| {
            let mut whole = None;
            for frame in frames {
                let Wire::Chunk { from, transfer, offset, total, bytes } = decode(frame).unwrap()
                else {
                    panic!("not a piece")
                };
                whole = assemblies.add(from, transfer, offset, total, bytes).unwrap();
            }
            whole
        };
        let whole = assemble(&frames, &mut Assemblies::default());
        let whole = whole.expect("the last piece completes it");
        assert_eq!(whole, body.to_vec());
        let Wire::RaftBatch { from: 2, msgs } = decode_at_most(&whole, usize::MAX).unwrap() else {
            panic!("not the batch")
        };
        assert_eq!(msgs, vec![msg]);

        // Cut after three pieces: the receiver says it holds those, and the rest completes it.
        let mut assemblies = Assemblies::default();
        assert_eq!(assemble(&frames[..3], &mut assemblies), None);
        let held = assemblies.held(2, 7, body.len() as u64);
        assert_eq!(held, 3 * CHUNK_BYTES as u64);
        let rest = frames_of(2, 7, &body, held);
        assert_eq!(rest.len(), frames.len() - 3);
        assert_eq!(assemble(&rest, &mut assemblies).expect("complete"), body.to_vec());
        assert_eq!(frames_of(2, 8, &Bytes::from_static(b"small"), 0).len(), 1, "one frame");
    }

    /// Asking what a receiver holds of a transfer is consensus traffic: only node 2 (or any
    /// node, with the shared key) may ask about node 2's transfers; clients, readers and
    /// admins are refused like any Raft message.
    #[test]
    fn only_the_sending_node_may_ask_what_is_held_of_its_transfer() {
        let asked = Wire::ChunkHeld { from: 2, transfer: 7, total: 8 }.request();
        assert_eq!(asked, Request::Raft { from: 2 });
        assert!(Principal::Node(2).may(asked));
        assert!(Principal::AnyNode.may(asked));
        for refused in [
            Principal::Node(3),
            Principal::Admin("ops".into()),
            Principal::Client("app".into()),
            Principal::Reader("dash".into()),
        ] {
            assert!(!refused.may(asked), "{refused} may ask");
        }
    }

    #[test]
    fn wire_round_trip_and_hostile_sizes() {
        let msg = Wire::Raft { from: 3, msg: Message::VoteReply { term: 7, granted: true } };
        let back: Wire = decode(&encode(&msg)).unwrap();
        assert!(matches!(
            back,
            Wire::Raft { from: 3, msg: Message::VoteReply { term: 7, granted: true } }
        ));
        let mut hostile = vec![0xff, 0xff, 0xff, 0x7f];
        hostile.extend_from_slice(b"junk");
        assert!(decode::<Wire>(&hostile).unwrap_err().to_string().contains("above"));
        assert!(decode::<Wire>(b"ab").is_err());
    }

    #[test]
    fn small_bodies_travel_raw_large_ones_compressed_and_both_kinds_decode() {
        let small = Wire::Raft { from: 3, msg: Message::VoteReply { term: 7, granted: true } };
        let body = encode(&small);
        assert_ne!(body[3] & 0x80, 0, "a vote reply is not worth compressing");
        assert!(matches!(decode::<Wire>(&body).unwrap(), Wire::Raft { from: 3, .. }));
        // A body of an earlier version: compressed whatever its size.
        let earlier = lz4_flex::compress_prepend_size(&rmp_serde::to_vec(&small).unwrap());
        assert!(matches!(decode::<Wire>(&earlier).unwrap(), Wire::Raft { from: 3, .. }));

        let value = Bytes::from(vec![b'x'; 64 * 1024]);
        let op = WriteOp::Set { key: "k".into(), value: value.clone() };
        let large = Wire::Write { op, deadline_ms: 1_000 };
        let body = encode(&large);
        assert_eq!(body[3] & 0x80, 0, "a 64 KiB write is compressed");
        assert!(body.len() < 4 * 1024, "{} bytes", body.len());
        let Wire::Write { op: WriteOp::Set { value: back, .. }, .. } = decode(&body).unwrap()
        else {
            panic!("not the write")
        };
        assert_eq!(back, value);

        // A raw body whose prefix lies about its length is refused, not misread.
        let mut lying = encode(&small).to_vec();
        lying.push(0);
        let error = decode::<Wire>(&lying).unwrap_err().to_string();
        assert!(error.contains("its prefix says"), "{error}");
    }

    use plus_mux::Connection;
    use tokio::task::JoinHandle;

    /// A peer that answers every request with a fixed reply.
    struct Hostile(WireReply);

    #[async_trait]
    impl Handler for Hostile {
        async fn handle(&self, _: Bytes) -> Result<Bytes, HandlerError> {
            Ok(encode(&self.0))
        }
    }

    async fn cluster_against(reply: WireReply) -> (crate::Cluster<RemoteNode>, JoinHandle<()>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let handler: Arc<dyn Handler> = Arc::new(Hostile(reply));
        let server = tokio::spawn(async move {
            let mut connections = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                let config = MuxConfig::default();
                connections.push(Connection::from_tcp(stream, config, Arc::clone(&handler)));
            }
        });
        let node = RemoteNode::connect(1, &addr, &MuxConfig::default()).unwrap();
        (crate::Cluster::new(vec![node]), server)
    }

    /// A node that reads a write and hangs up before answering may have applied it: the client
    /// reports the outcome as unknown and does not send it again (a retried compare-and-set
    /// that already applied would report a failed compare for a write that took effect).
    #[tokio::test]
    async fn a_write_lost_with_its_connection_is_unknown_and_not_sent_again() {
        use tokio::io::AsyncReadExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let seen = Arc::clone(&received);
        let server = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buf = [0u8; 4096];
                if stream.read(&mut buf).await.is_ok_and(|n| n > 0) {
                    seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                drop(stream);
            }
        });
        let node = RemoteNode::connect(1, &addr, &MuxConfig::default()).unwrap();
        let mut cluster = crate::Cluster::new(vec![node]);
        cluster.deadline = Duration::from_secs(2);
        let op = WriteOp::CompareAndSet {
            key: "k".into(),
            expect: crate::Expect::Absent,
            value: Bytes::from_static(b"v"),
        };
        let result = cluster.write(op).await;
        assert!(matches!(result, Err(StoreError::Client(ClientError::Unknown))), "{result:?}");
        // Give a wrongly retried request time to arrive.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 1);
        server.abort();
    }

    /// Replies of the wrong kind are typed errors, never a panic in the client.
    #[tokio::test]
    async fn a_reply_of_the_wrong_kind_is_a_typed_error() {
        let (cluster, server) = cluster_against(WireReply::Read(Ok(ReadResult::Len(7)))).await;
        for result in [
            cluster.get("k").await.map(|_| ()),
            cluster.keys("*").await.map(|_| ()),
            cluster.multi_get(vec!["k".into()]).await.map(|_| ()),
            cluster.set("k", "v").await.map(|_| ()),
        ] {
            assert!(matches!(result, Err(StoreError::UnexpectedReply { .. })), "{result:?}");
        }
        server.abort();
        let compare_failed =
            WireReply::Write(Ok(WriteResult::CompareFailed { key: "k".into(), current: None }));
        let (cluster, server) = cluster_against(compare_failed).await;
        let result = cluster.set("k", "v").await;
        assert!(matches!(result, Err(StoreError::UnexpectedReply { .. })), "{result:?}");
        let result = cluster.len().await;
        assert!(matches!(result, Err(StoreError::UnexpectedReply { .. })), "{result:?}");
        server.abort();
    }
}
