//! Mutual TLS under the mux protocol (feature `tls`, rustls through `tokio-rustls`): both peers
//! present a certificate signed by one shared CA, and a peer that presents none, or one the CA
//! did not sign, is refused during the handshake, before the mux reads a single frame.
//!
//! [`Tls`] holds one identity (a certificate chain and its key) and the CA it trusts; it makes
//! the [`Connector`] of a client ([`Tls::connector`]) and the [`Accept`] of a server
//! ([`Tls::listener`]). Handshakes on the server run concurrently, each bounded in time and
//! all of them by [`HandshakeLimits`], so a peer that stalls its handshake holds up no one.
//!
//! The CA decides who may connect; what a connection may do is the application's to decide.
//! The listener hands out each peer's URI subject alternative names
//! ([`PeerIdentity::Certificate`]), and [`serve_by_peer`](crate::serve_by_peer) chooses a
//! handler from them (plus-quorum binds `plus-quorum://node/3` to node 3 this way).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::{TcpListener, TcpStream};

use crate::handshake::{HandshakeLimits, Handshaking, dial};
use crate::identity::{Peer, PeerIdentity, certificate_uris};
use crate::reconnect::Connector;
use crate::server::Accept;

/// Why TLS material could not be loaded or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A PEM input holds no usable item of the kind needed.
    #[error("{what}: {reason}")]
    Pem {
        /// Which input (a path, or `certificate`, `key`, `CA` for bytes).
        what: String,
        /// What is wrong with it.
        reason: String,
    },
    /// rustls refused the material (a key that does not match its certificate, say).
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// One TLS identity and the CA it trusts, for both ends of mux connections.
///
/// Cheap to clone (the rustls configurations are shared).
#[derive(Clone)]
pub struct Tls {
    client: Arc<rustls::ClientConfig>,
    server: Arc<rustls::ServerConfig>,
    limits: HandshakeLimits,
    refused: Arc<AtomicU64>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("limits", &self.limits)
            .field("refused", &self.refused())
            .finish_non_exhaustive()
    }
}

fn pem_error(what: &str, reason: impl std::fmt::Display) -> TlsError {
    TlsError::Pem { what: what.to_owned(), reason: reason.to_string() }
}

fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(what, e))?;
    if certs.is_empty() {
        return Err(pem_error(what, "no PEM certificate in it"));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { path: path.to_owned(), source })
}

impl Tls {
    /// How long a handshake may take before the peer is dropped, unless
    /// [`Tls::with_handshake_timeout`] says otherwise.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// The identity in the PEM files `cert` (its chain, leaf first) and `key`, trusting the CA
    /// certificates in `ca`.
    ///
    /// # Errors
    /// [`TlsError`] naming the file that cannot be read or holds nothing usable.
    pub fn from_pem_files(cert: &Path, key: &Path, ca: &Path) -> Result<Self, TlsError> {
        let name = |path: &Path| path.display().to_string();
        Self::build(
            certificates(&read(cert)?, &name(cert))?,
            PrivateKeyDer::from_pem_slice(&read(key)?).map_err(|e| pem_error(&name(key), e))?,
            certificates(&read(ca)?, &name(ca))?,
        )
    }

    /// The identity in PEM text: `cert` (its chain, leaf first) and `key`, trusting the CA
    /// certificates in `ca`.
    ///
    /// # Errors
    /// [`TlsError`] when an input holds nothing usable or rustls refuses it.
    pub fn from_pem(cert: &[u8], key: &[u8], ca: &[u8]) -> Result<Self, TlsError> {
        Self::build(
            certificates(cert, "certificate")?,
            PrivateKeyDer::from_pem_slice(key).map_err(|e| pem_error("key", e))?,
            certificates(ca, "CA")?,
        )
    }

    fn build(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let config = |e: rustls::Error| TlsError::Config(e.to_string());
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in ca {
            roots.add(cert).map_err(config)?;
        }
        let roots = Arc::new(roots);
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::clone(&roots),
            Arc::clone(&provider),
        )
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
        let server = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(config)?;
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(config)?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(config)?;
        Ok(Self {
            client: Arc::new(client),
            server: Arc::new(server),
            limits: HandshakeLimits::default(),
            refused: Arc::new(AtomicU64::new(0)),
        })
    }

    /// The same identity with handshakes bounded by `timeout` instead.
    #[must_use]
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.limits.timeout = timeout;
        self
    }

    /// The same identity with its listeners' handshakes bounded by `limits` (the whole
    /// handshake's timeout also bounds a connector's).
    #[must_use]
    pub fn with_handshake_limits(mut self, limits: HandshakeLimits) -> Self {
        self.limits = limits;
        self
    }

    /// How many peers the listeners made from this identity refused (a failed or timed-out
    /// handshake).
    #[must_use]
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }

    /// A [`Connector`] to `addr` (`host:port`) that checks the server's certificate against
    /// the CA and the host part of `addr` (an IP address, or a DNS name in its SANs) and
    /// presents this identity. A host part that is no valid server name fails every connect
    /// with [`std::io::ErrorKind::InvalidInput`].
    #[must_use]
    pub fn connector(&self, addr: &str) -> TlsConnector {
        let host = match addr.parse::<SocketAddr>() {
            Ok(socket) => socket.ip().to_string(),
            Err(_) => addr.rsplit_once(':').map_or(addr, |(host, _)| host).to_owned(),
        };
        let server_name = ServerName::try_from(host.clone()).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("`{host}` is not a server name: {e}"),
            )
        });
        TlsConnector {
            addr: addr.to_owned(),
            server_name: server_name.map_err(Arc::new),
            connector: tokio_rustls::TlsConnector::from(Arc::clone(&self.client)),
            handshake_timeout: self.limits.timeout,
            expect_uri: None,
        }
    }

    /// An [`Accept`] over `listener` that completes a mutual-TLS handshake with each peer
    /// before handing it to the mux.
    #[must_use]
    pub fn listener(&self, listener: TcpListener) -> TlsListener {
        TlsListener {
            peers: Handshaking::new(listener, self.limits, Arc::clone(&self.refused), "TLS"),
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::clone(&self.server)),
        }
    }
}

/// The URI names of the certificate the peer of `connection` presented (none without one).
fn peer_uris(connection: &rustls::CommonState) -> Vec<String> {
    connection
        .peer_certificates()
        .and_then(|chain| chain.first())
        .map(|leaf| certificate_uris(leaf))
        .unwrap_or_default()
}

/// Connects over TCP and TLS, presenting a [`Tls`] identity ([`Tls::connector`]).
#[derive(Clone)]
pub struct TlsConnector {
    addr: String,
    server_name: Result<ServerName<'static>, Arc<std::io::Error>>,
    connector: tokio_rustls::TlsConnector,
    handshake_timeout: Duration,
    expect_uri: Option<Arc<str>>,
}

impl TlsConnector {
    /// The same connector, refusing a server whose certificate does not carry `uri` among its
    /// URI subject alternative names (the CA signed it, but it is someone else: another node,
    /// or a client's certificate on a node's address).
    #[must_use]
    pub fn expect_peer_uri(mut self, uri: impl Into<String>) -> Self {
        self.expect_uri = Some(uri.into().into());
        self
    }
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector").field("addr", &self.addr).finish_non_exhaustive()
    }
}

#[async_trait]
impl Connector for TlsConnector {
    type Stream = tokio_rustls::client::TlsStream<TcpStream>;

    async fn connect(&self) -> std::io::Result<Self::Stream> {
        let server_name = self
            .server_name
            .clone()
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string()))?;
        let connector = &self.connector;
        let stream = dial(&self.addr, self.handshake_timeout, "TLS", |tcp| {
            connector.connect(server_name, tcp)
        })
        .await?;
        if let Some(expected) = &self.expect_uri {
            let uris = peer_uris(stream.get_ref().1);
            if !uris.iter().any(|uri| uri.as_str() == &**expected) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::PermissionDenied,
                    format!(
                        "the server at {} is not {expected} (its certificate names {uris:?})",
                        self.addr
                    ),
                ));
            }
        }
        Ok(stream)
    }
}

type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// Accepts TCP peers and completes a mutual-TLS handshake with each ([`Tls::listener`]); only
/// authenticated peers come out of [`Accept::accept`].
pub struct TlsListener {
    peers: Handshaking<TlsStream>,
    acceptor: tokio_rustls::TlsAcceptor,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener").field("peers", &self.peers).finish_non_exhaustive()
    }
}

impl TlsListener {
    /// The address the listener is bound to.
    ///
    /// # Errors
    /// As [`TcpListener::local_addr`].
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.peers.local_addr()
    }
}

impl Accept for TlsListener {
    type Stream = TlsStream;

    async fn accept(&mut self) -> std::io::Result<(TlsStream, Peer)> {
        let acceptor = self.acceptor.clone();
        self.peers
            .next(move |tcp| {
                let accepting = acceptor.accept(tcp);
                async move {
                    let stream = accepting.await?;
                    let uris = peer_uris(stream.get_ref().1);
                    Ok((stream, PeerIdentity::Certificate { uris }))
                }
            })
            .await
    }
}
