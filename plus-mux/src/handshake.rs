//! Accepting TCP peers that must pass a handshake before the mux sees them (TLS, a pre-shared
//! key): handshakes run concurrently, each bounded in time, so a peer that stalls its own holds
//! up no one, and only peers that passed come out.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;

/// How long a handshake may take unless its owner says otherwise.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Connects over TCP to `addr`, then runs `handshake` on the stream within `timeout`: the
/// client side of every handshake, `what` naming it in a timeout's error.
pub(crate) async fn dial<S, Fut>(
    addr: &str,
    timeout: Duration,
    what: &str,
    handshake: impl FnOnce(TcpStream) -> Fut,
) -> std::io::Result<S>
where
    Fut: Future<Output = std::io::Result<S>>,
{
    let tcp = TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    tokio::time::timeout(timeout, handshake(tcp)).await.map_err(|_| {
        std::io::Error::new(std::io::ErrorKind::TimedOut, format!("{what} handshake timed out"))
    })?
}

/// Most handshakes run at once; past it, no new peer is accepted until one ends.
const MAX_HANDSHAKES: usize = 256;

type Outcome<S> = (SocketAddr, Result<std::io::Result<S>, tokio::time::error::Elapsed>);

/// A TCP listener whose peers go through `handshake` first.
pub(crate) struct Handshaking<S> {
    listener: TcpListener,
    timeout: Duration,
    running: JoinSet<Outcome<S>>,
    refused: Arc<AtomicU64>,
    what: &'static str,
}

impl<S> std::fmt::Debug for Handshaking<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handshaking")
            .field("listener", &self.listener)
            .field("in_progress", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl<S: Send + 'static> Handshaking<S> {
    /// Peers of `listener`, each given `timeout` to complete its handshake; every refusal is
    /// counted in `refused` and logged as a failed `what` handshake.
    pub(crate) fn new(
        listener: TcpListener,
        timeout: Duration,
        refused: Arc<AtomicU64>,
        what: &'static str,
    ) -> Self {
        Self { listener, timeout, running: JoinSet::new(), refused, what }
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next peer that passed `handshake`. An error accepting from the listener is
    /// returned (the caller backs off); a failed handshake is not.
    pub(crate) async fn next<F, Fut>(&mut self, handshake: F) -> std::io::Result<S>
    where
        F: Fn(TcpStream) -> Fut,
        Fut: Future<Output = std::io::Result<S>> + Send + 'static,
    {
        loop {
            tokio::select! {
                accepted = self.listener.accept(), if self.running.len() < MAX_HANDSHAKES => {
                    let (tcp, peer) = accepted?;
                    tcp.set_nodelay(true)?;
                    let started = handshake(tcp);
                    let timeout = self.timeout;
                    self.running.spawn(async move { (peer, tokio::time::timeout(timeout, started).await) });
                }
                Some(done) = self.running.join_next(), if !self.running.is_empty() => {
                    match done {
                        Ok((_, Ok(Ok(stream)))) => return Ok(stream),
                        Ok((peer, Ok(Err(err)))) => self.refuse(peer, &err),
                        Ok((peer, Err(_))) => self.refuse(peer, &"handshake timed out"),
                        // A handshake task panicked or was cancelled: that peer is gone.
                        Err(err) => tracing::warn!(error = %err, "plus-mux handshake task failed"),
                    }
                }
            }
        }
    }

    fn refuse(&self, peer: SocketAddr, reason: &dyn std::fmt::Display) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(%peer, %reason, handshake = self.what, "plus-mux refused a peer: handshake failed");
    }
}
