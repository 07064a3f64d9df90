//! Accepting TCP peers that must pass a handshake before the mux sees them (TLS, a pre-shared
//! key): handshakes run concurrently, each bounded in time, so a peer that stalls its own holds
//! up no one, and only peers that passed come out.
//!
//! Nobody can hoard the handshake slots: a peer must send its first bytes within a short
//! deadline, one address holds at most [`HandshakeLimits::max_per_address`] handshakes, and a
//! new peer arriving when every slot is taken evicts the oldest handshake (of its own address
//! first) instead of waiting behind it. A real handshake takes milliseconds; the idle
//! connections of a flood are the old ones, so valid peers still get through.

use std::collections::VecDeque;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{AbortHandle, JoinSet};

use crate::identity::{Peer, PeerIdentity};
use crate::server::RateLimitedLog;

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

/// How a listener bounds the handshakes of peers that have not proved anything yet. Every
/// default is written on its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct HandshakeLimits {
    /// The longest a whole handshake may take. Default 10 s.
    pub timeout: Duration,
    /// The longest a peer may wait before sending its first byte (a TLS client hello, the
    /// key exchange's greeting): an idle connection is dropped after it. Default 2 s.
    pub first_bytes_timeout: Duration,
    /// Most handshakes in progress at once; a new peer beyond it evicts the oldest. Default
    /// 256.
    pub max_in_progress: usize,
    /// Most handshakes in progress from one IP address; a new peer beyond it evicts that
    /// address's oldest. Default 32.
    pub max_per_address: usize,
}

impl Default for HandshakeLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            first_bytes_timeout: Duration::from_secs(2),
            max_in_progress: 256,
            max_per_address: 32,
        }
    }
}

impl HandshakeLimits {
    /// The same limits with every zero raised to its smallest working value (one handshake,
    /// one millisecond): a limit of zero would refuse everyone.
    pub(crate) fn sane(self) -> Self {
        let ms = Duration::from_millis(1);
        Self {
            timeout: self.timeout.max(ms),
            first_bytes_timeout: self.first_bytes_timeout.max(ms),
            max_in_progress: self.max_in_progress.max(1),
            max_per_address: self.max_per_address.max(1),
        }
    }
}

type Outcome<S> = Result<std::io::Result<(S, PeerIdentity)>, tokio::time::error::Elapsed>;

/// One handshake in progress, in start order.
struct Running {
    id: tokio::task::Id,
    peer: SocketAddr,
    abort: AbortHandle,
}

/// A TCP listener whose peers go through `handshake` first.
pub(crate) struct Handshaking<S> {
    listener: TcpListener,
    limits: HandshakeLimits,
    running: JoinSet<Outcome<S>>,
    order: VecDeque<Running>,
    refused: Arc<AtomicU64>,
    what: &'static str,
    refusals: RateLimitedLog,
    evictions: RateLimitedLog,
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
    /// Peers of `listener`, bounded by `limits`; every refusal (a failed, timed-out or evicted
    /// handshake) is counted in `refused` and logged, at most once a second, as a failed
    /// `what` handshake.
    pub(crate) fn new(
        listener: TcpListener,
        limits: HandshakeLimits,
        refused: Arc<AtomicU64>,
        what: &'static str,
    ) -> Self {
        Self {
            listener,
            limits: limits.sane(),
            running: JoinSet::new(),
            order: VecDeque::new(),
            refused,
            what,
            refusals: RateLimitedLog::default(),
            evictions: RateLimitedLog::default(),
        }
    }

    pub(crate) fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next peer that passed `handshake`, with what it proved. An error accepting from
    /// the listener is returned (the caller backs off); a failed handshake is not.
    pub(crate) async fn next<F, Fut>(&mut self, handshake: F) -> std::io::Result<(S, Peer)>
    where
        F: Fn(TcpStream) -> Fut + Clone + Send + 'static,
        Fut: Future<Output = std::io::Result<(S, PeerIdentity)>> + Send + 'static,
    {
        loop {
            tokio::select! {
                accepted = self.listener.accept() => {
                    let (tcp, peer) = accepted?;
                    tcp.set_nodelay(true)?;
                    self.make_room(peer.ip());
                    let first_bytes = self.limits.first_bytes_timeout;
                    let handshake_of = handshake.clone();
                    let started = async move {
                        // A peer that says nothing is not worth a slot: every handshake here
                        // starts with the client speaking.
                        match tokio::time::timeout(first_bytes, tcp.peek(&mut [0u8; 1])).await {
                            Ok(Ok(n)) if n > 0 => handshake_of(tcp).await,
                            Ok(Ok(_)) => Err(closed("closed before its handshake")),
                            Ok(Err(e)) => Err(e),
                            Err(_) => Err(closed("sent nothing within the first-bytes deadline")),
                        }
                    };
                    let abort = self.running.spawn(tokio::time::timeout(self.limits.timeout, started));
                    self.order.push_back(Running { id: abort.id(), peer, abort });
                }
                Some(done) = self.running.join_next_with_id(), if !self.running.is_empty() => {
                    let (id, outcome) = match done {
                        Ok((id, outcome)) => (id, Some(outcome)),
                        Err(err) => (err.id(), None),
                    };
                    let peer = self.finished(id);
                    match (outcome, peer) {
                        (Some(Ok(Ok((stream, identity)))), Some(peer)) => {
                            return Ok((stream, Peer::new(Some(peer), identity)));
                        }
                        (Some(Ok(Err(err))), Some(peer)) => self.refuse(peer, &err),
                        (Some(Err(_)), Some(peer)) => self.refuse(peer, &"handshake timed out"),
                        // Evicted (counted when it was), or a handshake task that panicked.
                        _ => {}
                    }
                }
            }
        }
    }

    /// Forgets a handshake that ended, returning its peer's address.
    fn finished(&mut self, id: tokio::task::Id) -> Option<SocketAddr> {
        let at = self.order.iter().position(|r| r.id == id)?;
        self.order.remove(at).map(|r| r.peer)
    }

    /// Before a handshake from `ip` starts: evicts that address's oldest when it holds its
    /// share, else the oldest of all when every slot is taken.
    fn make_room(&mut self, ip: IpAddr) {
        let from_ip = self.order.iter().filter(|r| r.peer.ip() == ip).count();
        let victim = if from_ip >= self.limits.max_per_address {
            self.order.iter().position(|r| r.peer.ip() == ip)
        } else if self.order.len() >= self.limits.max_in_progress {
            Some(0)
        } else {
            None
        };
        let Some(running) = victim.and_then(|at| self.order.remove(at)) else { return };
        running.abort.abort();
        self.refused.fetch_add(1, Ordering::Relaxed);
        let (what, in_progress) = (self.what, self.order.len());
        self.evictions.warn(|suppressed| {
            tracing::warn!(
                peer = %running.peer,
                handshake = what,
                in_progress,
                suppressed,
                "plus-mux handshakes saturated: dropped the oldest unfinished one"
            );
        });
    }

    fn refuse(&mut self, peer: SocketAddr, reason: &dyn std::fmt::Display) {
        self.refused.fetch_add(1, Ordering::Relaxed);
        let what = self.what;
        self.refusals.warn(|suppressed| {
            tracing::warn!(
                %peer,
                %reason,
                handshake = what,
                suppressed,
                "plus-mux refused a peer: handshake failed"
            );
        });
    }
}

fn closed(reason: &str) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::ConnectionAborted, reason)
}
