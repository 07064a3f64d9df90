//! A pre-shared key under the mux (feature `psk`): the fallback for hosts that have no
//! certificates. Before any frame, both peers prove they hold the same key with a mutual
//! challenge, and a peer that cannot is dropped before the mux reads anything from it.
//!
//! The exchange, on a fresh TCP stream:
//!
//! 1. each side sends `PLUSPSK1` and 32 random bytes (its nonce);
//! 2. each sends HMAC-SHA256(key, role || client nonce || server nonce), `role` being
//!    `plus-mux psk client` or `plus-mux psk server`, and checks the other's in constant time.
//!    The server reads the client's tag before it sends its own, so a server that holds
//!    several keys ([`Psk::listener_for`]) answers with the one the client proved, and knows
//!    which that was ([`PeerIdentity::Key`], the key's [name](Psk::named)).
//!
//! Fresh nonces from both sides make a recorded exchange useless, and the role in the tag
//! makes reflecting a peer's own tag back to it useless. This authenticates the peers when the
//! connection starts; it does not encrypt or protect what follows (use [`Tls`](crate::Tls)
//! where someone on the path could read or change the traffic).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::handshake::{HandshakeLimits, Handshaking, dial};
use crate::identity::{Peer, PeerIdentity};
use crate::reconnect::Connector;
use crate::server::Accept;

const MAGIC: &[u8; 8] = b"PLUSPSK1";
const NONCE: usize = 32;
const TAG: usize = 32;
const CLIENT: &[u8] = b"plus-mux psk client";
const SERVER: &[u8] = b"plus-mux psk server";

/// Why a key was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PskError {
    /// The key is shorter than [`Psk::MIN_KEY`] bytes.
    #[error("a pre-shared key needs at least {min} bytes, this one has {len}")]
    TooShort {
        /// Its length.
        len: usize,
        /// The least accepted.
        min: usize,
    },
}

/// A pre-shared key, for both ends of mux connections. Cheap to clone.
#[derive(Clone)]
pub struct Psk {
    key: Arc<[u8]>,
    name: Arc<str>,
    limits: HandshakeLimits,
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Psk")
            .field("name", &self.name)
            .field("limits", &self.limits)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

fn refused(reason: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::PermissionDenied, reason)
}

impl Psk {
    /// The shortest key accepted, in bytes.
    pub const MIN_KEY: usize = 16;

    /// A key of at least [`Psk::MIN_KEY`] bytes (32 random bytes are right), named `psk`.
    ///
    /// # Errors
    /// [`PskError::TooShort`].
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, PskError> {
        Self::named("psk", key)
    }

    /// A key named `name`: the [`PeerIdentity::Key`] of peers that prove it, so one listener
    /// with several keys ([`Psk::listener_for`]) tells, say, its nodes from its clients.
    ///
    /// # Errors
    /// [`PskError::TooShort`].
    pub fn named(name: &str, key: impl Into<Vec<u8>>) -> Result<Self, PskError> {
        let key: Vec<u8> = key.into();
        if key.len() < Self::MIN_KEY {
            return Err(PskError::TooShort { len: key.len(), min: Self::MIN_KEY });
        }
        Ok(Self {
            key: key.into(),
            name: name.into(),
            limits: HandshakeLimits::default(),
            refused: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The key's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The same key with handshakes bounded by `timeout` (10 s unless set).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The same key with its listeners' handshakes bounded by `limits`.
    #[must_use]
    pub fn with_handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How many peers the listeners made from this key refused.
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A [`Connector`] to `addr` (`host:port`) that proves the key and checks the server's
    /// proof before the mux starts.
    #[must_use]
    pub fn connector(&self, addr: &str) -> PskConnector {
        PskConnector { addr: addr.to_owned(), psk: self.clone() }
    }

    /// An [`Accept`] over `listener` that hands the mux only peers that proved the key.
    #[must_use]
    pub fn listener(&self, listener: TcpListener) -> PskListener {
        Self::listener_for(std::slice::from_ref(self), listener)
    }

    /// An [`Accept`] over `listener` that hands the mux peers that proved any one of `keys`,
    /// each with the name of the key it proved. The first key's handshake limits apply, and
    /// its refusal counter counts the refusals.
    ///
    /// # Panics
    /// When `keys` is empty: a listener that can accept nobody is a caller's bug.
    #[must_use]
    pub fn listener_for(keys: &[Psk], listener: TcpListener) -> PskListener {
        let first = keys.first().expect("a pre-shared-key listener needs at least one key");
        let peers = Handshaking::new(listener, first.limits, Arc::clone(&first.refused), "PSK");
        PskListener { peers, keys: keys.to_vec().into() }
    }

    fn tag(&self, role: &[u8], client: &[u8], server: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(role);
        mac.update(client);
        mac.update(server);
        mac
    }

    /// The client's side of the exchange on `stream`.
    async fn client_handshake(&self, mut stream: TcpStream) -> std::io::Result<TcpStream> {
        let (mine, theirs) = greet(&mut stream).await?;
        let proof = self.tag(CLIENT, &mine, &theirs).finalize().into_bytes();
        stream.write_all(&proof).await?;
        let mut their_proof = [0u8; TAG];
        stream.read_exact(&mut their_proof).await.map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                refused("the server closed the handshake: it does not accept this key")
            } else {
                e
            }
        })?;
        self.tag(SERVER, &mine, &theirs)
            .verify_slice(&their_proof)
            .map_err(|_| refused("the server does not hold the pre-shared key"))?;
        Ok(stream)
    }
}

/// Both sides' first step: send the magic and a fresh nonce, read the peer's. Returns (mine,
/// theirs).
async fn greet(stream: &mut TcpStream) -> std::io::Result<([u8; NONCE], [u8; NONCE])> {
    let mut mine = [0u8; NONCE];
    rand::rng().fill_bytes(&mut mine);
    let mut hello = Vec::with_capacity(MAGIC.len() + NONCE);
    hello.extend_from_slice(MAGIC);
    hello.extend_from_slice(&mine);
    stream.write_all(&hello).await?;
    // The magic alone first: a peer speaking something else is refused at once.
    let mut magic = [0u8; 8];
    stream.read_exact(&mut magic).await?;
    if &magic != MAGIC {
        return Err(refused("the peer does not speak the pre-shared-key handshake"));
    }
    let mut theirs = [0u8; NONCE];
    stream.read_exact(&mut theirs).await?;
    Ok((mine, theirs))
}

/// The server's side of the exchange on `stream`: the client proves one of `keys` first, and
/// only then does the server prove the same one.
async fn server_handshake(
    keys: &[Psk],
    mut stream: TcpStream,
) -> std::io::Result<(TcpStream, PeerIdentity)> {
    let (mine, theirs) = greet(&mut stream).await?;
    let mut their_proof = [0u8; TAG];
    stream.read_exact(&mut their_proof).await?;
    // Every key is tried, so the time taken does not tell which one came close.
    let mut proved = None;
    for key in keys {
        if key.tag(CLIENT, &theirs, &mine).verify_slice(&their_proof).is_ok() && proved.is_none() {
            proved = Some(key);
        }
    }
    let key = proved.ok_or_else(|| refused("the peer does not hold a pre-shared key of ours"))?;
    let proof = key.tag(SERVER, &theirs, &mine).finalize().into_bytes();
    stream.write_all(&proof).await?;
    Ok((stream, PeerIdentity::Key(key.name.to_string())))
}

/// Connects over TCP and proves a [`Psk`] ([`Psk::connector`]).
#[derive(Clone, Debug)]
pub struct PskConnector {
    addr: String,
    psk: Psk,
}

#[async_trait]
impl Connector for PskConnector {
    type Stream = TcpStream;

    async fn connect(&self) -> std::io::Result<TcpStream> {
        let psk = &self.psk;
        dial(&self.addr, psk.limits.timeout, "pre-shared-key", |tcp| psk.client_handshake(tcp))
            .await
    }
}

/// Accepts TCP peers that prove a [`Psk`] ([`Psk::listener`]).
#[derive(Debug)]
pub struct PskListener {
    peers: Handshaking<TcpStream>,
    keys: Arc<[Psk]>,
}

impl PskListener {
    /// The address the listener is bound to.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.peers.local_addr()
    }
}

impl Accept for PskListener {
    type Stream = TcpStream;

    async fn accept(&mut self) -> std::io::Result<(TcpStream, Peer)> {
        let keys = Arc::clone(&self.keys);
        self.peers
            .next(move |tcp| {
                let keys = Arc::clone(&keys);
                async move { server_handshake(&keys, tcp).await }
            })
            .await
    }
}
