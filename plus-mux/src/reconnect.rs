//! A client that keeps one connection up, reconnecting with backoff and jitter.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use plus_core::seeded_rng;
use rand::Rng;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::Config;
use crate::connection::{Connection, Handler};
use crate::error::RequestError;

/// Opens a new stream to the peer.
///
/// # Contract
/// Each call makes a fresh stream; an error is retried by the client after a backoff.
#[async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The stream type.
    type Stream: AsyncRead + AsyncWrite + Send + 'static;
    /// Connects once.
    async fn connect(&self) -> std::io::Result<Self::Stream>;
}

/// Connects over TCP to an address (the reference [`Connector`]).
#[derive(Debug, Clone)]
pub struct TcpConnector {
    addr: String,
}

impl TcpConnector {
    /// Connects to `addr` (`host:port`).
    pub fn new(addr: impl Into<String>) -> Self {
        Self { addr: addr.into() }
    }
}

#[async_trait]
impl Connector for TcpConnector {
    type Stream = tokio::net::TcpStream;
    async fn connect(&self) -> std::io::Result<tokio::net::TcpStream> {
        tokio::net::TcpStream::connect(&self.addr).await
    }
}

/// What a request does while the client is reconnecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum WhileDisconnected {
    /// Wait up to this long for the connection to come back, then fail.
    Wait(Duration),
    /// Fail at once with [`RequestError::Closed`].
    FailFast,
}

/// Backoff between connection attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct ReconnectConfig {
    /// First wait after a failure. Default 100 ms.
    pub initial_backoff: Duration,
    /// Longest wait. Default 10 s.
    pub max_backoff: Duration,
    /// Growth per failed attempt. Default 2.
    pub multiplier: f64,
    /// Each wait is scaled by a random factor in `[1 - jitter, 1 + jitter]`, so that many
    /// clients do not reconnect in step. Default 0.2.
    pub jitter: f64,
    /// Requests while disconnected. Default wait 5 s.
    pub while_disconnected: WhileDisconnected,
    /// Seed of the jitter RNG. Default 0.
    pub seed: u64,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(10),
            multiplier: 2.0,
            jitter: 0.2,
            while_disconnected: WhileDisconnected::Wait(Duration::from_secs(5)),
            seed: 0,
        }
    }
}

impl ReconnectConfig {
    /// The wait after `failures` consecutive failed attempts (from 1), before jitter.
    #[must_use]
    pub fn backoff(&self, failures: u32) -> Duration {
        let exponent = i32::try_from(failures.saturating_sub(1)).unwrap_or(i32::MAX);
        let factor = self.multiplier.max(1.0).powi(exponent);
        let secs =
            (self.initial_backoff.as_secs_f64() * factor).min(self.max_backoff.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }
}

/// A client that keeps a connection to one peer, reconnecting with exponential backoff and
/// jitter when it drops. Requests are never retried by the client (they may not be idempotent):
/// a request in flight when the connection drops fails with [`RequestError::Lost`].
///
/// A connection that closes before the peer answered anything (a TLS server that refuses the
/// client's certificate after the handshake looked complete, a key the server does not hold)
/// counts as a failed attempt: the client backs off as after a refused connect, instead of
/// hammering the peer, and [`ReconnectingClient::last_failure`] says why.
#[derive(Clone)]
pub struct ReconnectingClient {
    current: watch::Receiver<Option<Connection>>,
    stop: Arc<watch::Sender<bool>>,
    while_disconnected: WhileDisconnected,
    last_failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl fmt::Debug for ReconnectingClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReconnectingClient")
            .field("connected", &self.current.borrow().is_some())
            .finish()
    }
}

impl ReconnectingClient {
    /// Starts connecting in the background on the current tokio runtime.
    ///
    /// # Errors
    /// [`ConfigError`](crate::ConfigError) when `config` fails [`Config::validate`].
    pub fn new<C: Connector>(
        connector: C,
        config: Config,
        reconnect: ReconnectConfig,
        handler: Arc<dyn Handler>,
    ) -> Result<Self, crate::ConfigError> {
        config.validate()?;
        let (publish, current) = watch::channel(None);
        let (stop, stopped) = watch::channel(false);
        let while_disconnected = reconnect.while_disconnected;
        let last_failure = Arc::default();
        let supervisor = Supervisor {
            connector,
            config,
            reconnect,
            handler,
            publish,
            stopped,
            last_failure: Arc::clone(&last_failure),
        };
        tokio::spawn(supervisor.run());
        Ok(Self { current, stop: Arc::new(stop), while_disconnected, last_failure })
    }

    /// Why the last attempt to connect failed (a refused connect, a failed handshake, a
    /// connection closed before any answer), while no connection has been up since; `None`
    /// once one is.
    #[must_use]
    pub fn last_failure(&self) -> Option<String> {
        self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The live connection, waiting for one as configured.
    async fn connection(&self) -> Result<Connection, RequestError> {
        let mut current = self.current.clone();
        if let Some(c) = current.borrow_and_update().clone()
            && c.close_reason().is_none()
        {
            return Ok(c);
        }
        let WhileDisconnected::Wait(wait) = self.while_disconnected else {
            return Err(RequestError::Closed(crate::CloseReason::PeerClosed));
        };
        let deadline = Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, current.changed()).await {
                Ok(Ok(())) => {
                    if let Some(c) = current.borrow_and_update().clone()
                        && c.close_reason().is_none()
                    {
                        return Ok(c);
                    }
                }
                Ok(Err(_)) => return Err(RequestError::Closed(crate::CloseReason::Local)),
                Err(_) => return Err(RequestError::Closed(crate::CloseReason::PeerClosed)),
            }
        }
    }

    /// [`Connection::request`] on the current connection.
    ///
    /// # Errors
    /// As [`Connection::request`]; [`RequestError::Closed`] when no connection comes up in time.
    pub async fn request(&self, body: impl Into<Bytes>) -> Result<Bytes, RequestError> {
        self.connection().await?.request(body).await
    }

    /// [`Connection::send_async`] on the current connection, without waiting for a
    /// reconnection: fire-and-forget traffic is dropped while disconnected.
    ///
    /// # Errors
    /// [`RequestError::Closed`] while disconnected; otherwise as [`Connection::send_async`].
    pub async fn send_async(&self, body: impl Into<Bytes>) -> Result<(), RequestError> {
        let current = self.current.borrow().clone();
        match current {
            Some(c) if c.close_reason().is_none() => c.send_async(body).await,
            _ => Err(RequestError::Closed(crate::CloseReason::PeerClosed)),
        }
    }

    /// Whether a connection is up now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.current.borrow().as_ref().is_some_and(|c| c.close_reason().is_none())
    }

    /// Stops reconnecting and closes the current connection.
    pub fn close(&self) {
        let _ = self.stop.send(true);
        if let Some(c) = self.current.borrow().as_ref() {
            c.close();
        }
    }
}

/// How long a silent connection must stay up to count as a working one (a refusal after the
/// handshake closes it within a round trip or two).
const PROVEN_AFTER: Duration = Duration::from_secs(1);

struct Supervisor<C> {
    connector: C,
    config: Config,
    reconnect: ReconnectConfig,
    handler: Arc<dyn Handler>,
    publish: watch::Sender<Option<Connection>>,
    stopped: watch::Receiver<bool>,
    last_failure: Arc<std::sync::Mutex<Option<String>>>,
}

impl<C: Connector> Supervisor<C> {
    async fn run(mut self) {
        let mut rng = seeded_rng(self.reconnect.seed);
        let mut failures = 0u32;
        loop {
            if *self.stopped.borrow() {
                return;
            }
            let failure = match self.connector.connect().await {
                Ok(stream) => {
                    let connection =
                        Connection::new(stream, self.config.clone(), Arc::clone(&self.handler))
                            .expect("the config was validated when the client was made");
                    self.publish.send_replace(Some(connection.clone()));
                    let opened = Instant::now();
                    let reason = tokio::select! {
                        reason = connection.closed() => reason,
                        _ = self.stopped.wait_for(|s| *s) => {
                            connection.close();
                            return;
                        }
                    };
                    self.publish.send_replace(None);
                    // A connection the peer answered on, or that lived, proves the way works;
                    // one closed at once with nothing said is a refusal in disguise.
                    if connection.counters().bytes_in > 0 || opened.elapsed() >= PROVEN_AFTER {
                        failures = 0;
                        self.record(None);
                        continue;
                    }
                    let reason = reason.to_string();
                    if reason.contains("fatal alert") {
                        // TLS 1.3 finishes the client's side before the server checks the
                        // client's certificate: its refusal arrives as an alert on first read.
                        format!(
                            "the peer refused the TLS handshake ({reason}): is this side's \
                             certificate signed by the CA the peer trusts?"
                        )
                    } else {
                        format!("the peer closed the connection before answering: {reason}")
                    }
                }
                Err(err) => err.to_string(),
            };
            self.record(Some(failure));
            failures = failures.saturating_add(1);
            let base = self.reconnect.backoff(failures).as_secs_f64();
            let jitter = self.reconnect.jitter.clamp(0.0, 1.0);
            let scale =
                if jitter > 0.0 { rng.random_range(1.0 - jitter..=1.0 + jitter) } else { 1.0 };
            tokio::select! {
                () = tokio::time::sleep(Duration::from_secs_f64(base * scale)) => {}
                _ = self.stopped.wait_for(|s| *s) => return,
            }
        }
    }

    fn record(&self, failure: Option<String>) {
        *self.last_failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = failure;
    }
}
