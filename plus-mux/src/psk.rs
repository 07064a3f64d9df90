//! A pre-shared key under the mux (feature `psk`): the fallback for hosts that have no
//! certificates. Before any frame, both peers prove they hold the same key with a mutual
//! challenge, and a peer that cannot is dropped before the mux reads anything from it.
//!
//! The exchange, on a fresh TCP stream:
//!
//! 1. each side sends `PLUSPSK1` and 32 random bytes (its nonce);
//! 2. each sends HMAC-SHA256(key, role || client nonce || server nonce), `role` being
//!    `plus-mux psk client` or `plus-mux psk server`, and checks the other's in constant time.
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

use crate::handshake::{DEFAULT_TIMEOUT, Handshaking, dial};
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
    handshake_timeout: Duration,
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for Psk {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("Psk")
            .field("handshake_timeout", &self.handshake_timeout)
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

    /// A key of at least [`Psk::MIN_KEY`] bytes (32 random bytes are right).
    ///
    /// # Errors
    /// [`PskError::TooShort`].
    pub fn new(key: impl Into<Vec<u8>>) -> Result<Self, PskError> {
        let key: Vec<u8> = key.into();
        if key.len() < Self::MIN_KEY {
            return Err(PskError::TooShort { len: key.len(), min: Self::MIN_KEY });
        }
        Ok(Self {
            key: key.into(),
            handshake_timeout: DEFAULT_TIMEOUT,
            refused: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same key with handshakes bounded by `timeout` (10 s unless set).
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
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
        let peers =
            Handshaking::new(listener, self.handshake_timeout, Arc::clone(&self.refused), "PSK");
        PskListener { peers, psk: self.clone() }
    }

    fn tag(&self, role: &[u8], client: &[u8], server: &[u8]) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(role);
        mac.update(client);
        mac.update(server);
        mac
    }

    /// Runs the exchange on `stream` as the client (`is_client`) or the server.
    async fn handshake(
        &self,
        mut stream: TcpStream,
        is_client: bool,
    ) -> std::io::Result<TcpStream> {
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
        let theirs = &theirs[..];
        let (client, server) = if is_client { (&mine[..], theirs) } else { (theirs, &mine[..]) };
        let (my_role, their_role) = if is_client { (CLIENT, SERVER) } else { (SERVER, CLIENT) };
        let proof = self.tag(my_role, client, server).finalize().into_bytes();
        stream.write_all(&proof).await?;
        let mut their_proof = [0u8; TAG];
        stream.read_exact(&mut their_proof).await?;
        self.tag(their_role, client, server)
            .verify_slice(&their_proof)
            .map_err(|_| refused("the peer does not hold the pre-shared key"))?;
        Ok(stream)
    }
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
        dial(&self.addr, psk.handshake_timeout, "pre-shared-key", |tcp| psk.handshake(tcp, true))
            .await
    }
}

/// Accepts TCP peers that prove a [`Psk`] ([`Psk::listener`]).
#[derive(Debug)]
pub struct PskListener {
    peers: Handshaking<TcpStream>,
    psk: Psk,
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

    async fn accept(&mut self) -> std::io::Result<TcpStream> {
        let psk = self.psk.clone();
        self.peers
            .next(move |tcp| {
                let psk = psk.clone();
                async move { psk.handshake(tcp, false).await }
            })
            .await
    }
}
