//! Accepting connections: a cap on how many are open at once, and backoff on accept errors, so
//! a process out of file descriptors waits for some to free instead of spinning, and says so at
//! most once a second.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::config::{Config, ConfigError};
use crate::connection::{Connection, Handler};
use crate::identity::{Peer, PeerIdentity};

/// Where a [`serve`] loop gets its streams: a TCP listener, or anything a host or a test
/// supplies.
pub trait Accept: Send + 'static {
    /// The byte stream of one accepted peer.
    type Stream: AsyncRead + AsyncWrite + Send + 'static;
    /// The next peer, with what it proved. An error is retried after a backoff (the listener
    /// stays open).
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Stream, Peer)>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;

    async fn accept(&mut self) -> std::io::Result<(tokio::net::TcpStream, Peer)> {
        let (stream, addr) = tokio::net::TcpListener::accept(self).await?;
        stream.set_nodelay(true)?;
        Ok((stream, Peer::new(Some(addr), PeerIdentity::Unauthenticated)))
    }
}

/// Chooses the handler of each accepted peer from what it proved ([`serve_by_peer`]); `None`
/// refuses the peer (its connection is closed before a frame is read).
pub type HandlerFor = dyn Fn(&Peer) -> Option<Arc<dyn Handler>> + Send + Sync;

/// How a [`serve`] loop runs. Every default is written on its field.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The settings of every accepted connection. Default [`Config::default`].
    pub connection: Config,
    /// Most connections open at once; at the cap the loop stops accepting until one closes
    /// (peers wait in the listener's backlog). Default 10,000.
    pub max_connections: usize,
    /// The wait after an accept error, doubled after each further error in a row. Default
    /// 10 ms.
    pub accept_backoff: Duration,
    /// The longest wait after accept errors. Default 1 s.
    pub max_accept_backoff: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            connection: Config::default(),
            max_connections: 10_000,
            accept_backoff: Duration::from_millis(10),
            max_accept_backoff: Duration::from_secs(1),
        }
    }
}

impl ServerConfig {
    /// Checks that the settings can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.connection.validate()?;
        if self.max_connections == 0 {
            return Err(ConfigError::Zero("max_connections"));
        }
        if self.accept_backoff.is_zero() {
            return Err(ConfigError::Zero("accept_backoff"));
        }
        Ok(())
    }
}

/// A snapshot of a server's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ServerCounters {
    /// Connections accepted since the start.
    pub accepted: u64,
    /// Accept calls that failed (each followed by a backoff).
    pub accept_errors: u64,
    /// Connections open now.
    pub open: u64,
    /// Peers that passed their handshake but were refused by the handler choice
    /// ([`serve_by_peer`]).
    pub refused: u64,
}

#[derive(Default)]
struct Shared {
    connections: Mutex<Vec<Connection>>,
    accepted: AtomicU64,
    accept_errors: AtomicU64,
    refused: AtomicU64,
}

/// A running accept loop; [`Server::stop`] ends it and closes every connection. Dropping it
/// leaves the loop running.
#[derive(Debug)]
pub struct Server {
    task: JoinHandle<()>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Server {
    /// Stops accepting and closes every open connection, so peers notice at once.
    pub fn stop(&self) {
        self.task.abort();
        let connections = std::mem::take(&mut *self.connections());
        for connection in connections {
            connection.close();
        }
    }

    /// The open connections.
    #[must_use]
    pub fn connections_now(&self) -> Vec<Connection> {
        self.connections().clone()
    }

    /// The server's counters now.
    #[must_use]
    pub fn counters(&self) -> ServerCounters {
        ServerCounters {
            accepted: self.shared.accepted.load(Ordering::Relaxed),
            accept_errors: self.shared.accept_errors.load(Ordering::Relaxed),
            refused: self.shared.refused.load(Ordering::Relaxed),
            open: self.connections().len() as u64,
        }
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, Vec<Connection>> {
        self.shared.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Accepts peers from `acceptor` on the current tokio runtime and serves each over its own
/// [`Connection`] with `handler`.
///
/// # Errors
/// [`ConfigError`] when `config` fails [`ServerConfig::validate`].
pub fn serve<A: Accept>(
    acceptor: A,
    config: ServerConfig,
    handler: Arc<dyn Handler>,
) -> Result<Server, ConfigError> {
    serve_by_peer(acceptor, config, Arc::new(move |_: &Peer| Some(Arc::clone(&handler))))
}

/// [`serve`], with each peer's handler chosen by `handler_for` from what the peer proved in its
/// handshake (a certificate's names, a key's name): how an application binds what a
/// connection may do to its credential. A peer for which it returns `None` is closed at once,
/// counted in [`ServerCounters::refused`] and logged (at most once a second).
///
/// # Errors
/// [`ConfigError`] when `config` fails [`ServerConfig::validate`].
pub fn serve_by_peer<A: Accept>(
    acceptor: A,
    config: ServerConfig,
    handler_for: Arc<HandlerFor>,
) -> Result<Server, ConfigError> {
    config.validate()?;
    let shared = Arc::new(Shared::default());
    let task = tokio::spawn(accept_loop(acceptor, config, handler_for, Arc::clone(&shared)));
    Ok(Server { task, shared })
}

async fn accept_loop<A: Accept>(
    mut acceptor: A,
    config: ServerConfig,
    handler_for: Arc<HandlerFor>,
    shared: Arc<Shared>,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections));
    let mut backoff = config.accept_backoff;
    let mut log = RateLimitedLog::default();
    let mut refusals = RateLimitedLog::default();
    loop {
        // At the cap, wait for a connection to close before taking the next peer.
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { return };
        let (stream, peer) = match acceptor.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                shared.accept_errors.fetch_add(1, Ordering::Relaxed);
                log.warn(|suppressed| {
                    tracing::warn!(
                        error = %err,
                        backoff_ms = backoff.as_millis() as u64,
                        suppressed,
                        "plus-mux accept failed; backing off"
                    );
                });
                drop(slot);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(config.max_accept_backoff.max(config.accept_backoff));
                continue;
            }
        };
        backoff = config.accept_backoff;
        let Some(handler) = handler_for(&peer) else {
            shared.refused.fetch_add(1, Ordering::Relaxed);
            refusals.warn(|suppressed| {
                tracing::warn!(
                    peer = ?peer.addr,
                    identity = ?peer.identity,
                    suppressed,
                    "plus-mux refused a peer: its credential has no role here"
                );
            });
            continue;
        };
        let connection = Connection::new(stream, config.connection.clone(), handler)
            .expect("the config was validated when the server started");
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        {
            let mut open =
                shared.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            open.push(connection.clone());
        }
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            // The connection logs its own close, with the reason and its counters.
            connection.closed().await;
            let mut open =
                shared.connections.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            open.retain(|c| c.close_reason().is_none());
            drop(slot);
        });
    }
}

/// One warning a second at most, saying how many were held back meanwhile.
#[derive(Debug, Default)]
pub(crate) struct RateLimitedLog {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimitedLog {
    /// Calls `log` with the number held back since the last one, unless one was logged less
    /// than a second ago.
    pub(crate) fn warn(&mut self, log: impl FnOnce(u64)) {
        let now = Instant::now();
        if self.last.is_some_and(|at| now.duration_since(at) < Duration::from_secs(1)) {
            self.suppressed += 1;
            return;
        }
        log(self.suppressed);
        self.last = Some(now);
        self.suppressed = 0;
    }
}
