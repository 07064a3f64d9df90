use std::time::Duration;

use crate::budget::MemoryBudget;
use crate::frame::DEFAULT_MAX_BODY;

/// What a handler error becomes on the wire.
///
/// The Go implementation answered with an empty body and lost the error. `plus-mux` never leaves
/// the requester hanging: the request is always answered, in one of these forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum HandlerErrorWire {
    /// The default: a response whose body is [`ERROR_PREFIX`](crate::ERROR_PREFIX) followed by
    /// the error message in UTF-8. A `plus-mux` requester turns it into
    /// [`RequestError::Remote`](crate::RequestError::Remote); a Go peer sees a body that starts
    /// with a NUL byte.
    #[default]
    Prefixed,
    /// An empty response, exactly as the Go implementation did, for peers that cannot parse the
    /// prefix. The error is counted locally but the requester cannot tell.
    Empty,
}

/// Connection settings. Every default is written on its field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// How long a request waits for its response. Default 5 s (the Go default).
    pub request_timeout: Duration,
    /// How long a request waits for a free in-flight slot, within its own timeout. Default 5 s.
    pub slot_timeout: Duration,
    /// Largest body accepted from the peer (checked before allocating) or sent. Default 16 MiB.
    pub max_body: usize,
    /// Most of our requests awaiting a response at once (sync and async). Default 1,024.
    pub max_in_flight: usize,
    /// Most of the peer's requests being handled at once; when full, the connection stops
    /// reading from the socket (backpressure) instead of buffering. Default 1,024.
    pub max_concurrent_handlers: usize,
    /// Frames queued for writing; senders wait when it is full. Default 1,024.
    pub write_queue: usize,
    /// Most bytes of our answers to the peer's requests that may wait for the peer to read
    /// them (in the write queue, or made by a handler and waiting for room there); past it the
    /// connection is closed with [`CloseReason::SlowReader`](crate::CloseReason::SlowReader),
    /// so a peer that pipelines requests and never reads the answers cannot make this process
    /// hold them without bound. Default 64 MiB.
    pub max_unread_bytes: usize,
    /// Bytes gathered into one write when frames queue up. Default 64 KiB.
    pub write_batch: usize,
    /// How long an async request's identity stays reserved for its response. Default 5 s.
    pub async_response_timeout: Duration,
    /// Close the connection after this long with no whole frame received and nothing written,
    /// so a peer that went quiet without closing is reaped. The connection looks every quarter
    /// of this (no clock read per frame), so it closes between 1 and 1.25 times this after the
    /// last traffic.
    /// Default 5 minutes.
    pub idle_timeout: Option<Duration>,
    /// Close the connection when a frame that has started to arrive is not complete within
    /// this long (a peer that sends a header and stalls). Looked at every quarter of this, so
    /// a stall is caught within 1.25 times this. Default 30 s.
    pub frame_timeout: Option<Duration>,
    /// Bytes that frames in progress and requests being handled may hold, shared with every
    /// connection using the same budget. Default [`MemoryBudget::global`] (256 MiB for the
    /// process).
    pub memory_budget: MemoryBudget,
    /// Send an empty request this often and close if it is not answered within the interval.
    /// Off by default so the wire stays what the Go implementation expects; both peers must
    /// enable it (a peer with it enabled answers empty requests itself). Default none.
    ///
    /// A peer that died, or is stuck (it keeps the socket open but stopped reading or
    /// answering), is found out within two intervals of its last answer: the next heartbeat
    /// leaves at most one interval after the last, and gets one interval to be answered. The
    /// connection then closes with [`CloseReason::HeartbeatTimeout`](crate::CloseReason), and
    /// every request waiting on it fails at once. Each side probes the other: turn it on at
    /// both ends and an agent and its server each see the other go.
    pub heartbeat: Option<Duration>,
    /// TCP keepalive for connections made with [`Connection::from_tcp`](crate::Connection::from_tcp).
    /// Default 60 s.
    pub tcp_keepalive: Option<Duration>,
    /// Talk to the Go implementation safely: never emit identities whose bytes contain
    /// `\r\r\n` (such as 855,306), which the Go implementation mistakes for a frame end, and fail
    /// at once with [`RequestError::NotGoFramable`](crate::RequestError::NotGoFramable) a
    /// request it could not frame (a body containing `\r\r\n`, a length whose bytes do, or a
    /// length and the body's first bytes that do together)
    /// instead of losing it to a timeout. Default true; turn it off when both peers are `plus`
    /// (bodies may then hold any bytes).
    pub go_compatible: bool,
    /// What a handler error becomes on the wire. Default [`HandlerErrorWire::Prefixed`].
    pub handler_errors: HandlerErrorWire,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            request_timeout: Duration::from_secs(5),
            slot_timeout: Duration::from_secs(5),
            max_body: DEFAULT_MAX_BODY,
            max_in_flight: 1024,
            max_concurrent_handlers: 1024,
            write_queue: 1024,
            max_unread_bytes: 64 << 20,
            write_batch: 64 * 1024,
            async_response_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(300)),
            frame_timeout: Some(Duration::from_secs(30)),
            memory_budget: MemoryBudget::global(),
            heartbeat: None,
            tcp_keepalive: Some(Duration::from_secs(60)),
            go_compatible: true,
            handler_errors: HandlerErrorWire::Prefixed,
        }
    }
}

impl Config {
    /// Checks that the limits can work.
    ///
    /// # Errors
    /// A [`ConfigError`] naming the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("max_in_flight", self.max_in_flight == 0),
            ("max_concurrent_handlers", self.max_concurrent_handlers == 0),
            ("write_queue", self.write_queue == 0),
            ("max_unread_bytes", self.max_unread_bytes == 0),
            ("request_timeout", self.request_timeout.is_zero()),
            ("idle_timeout", self.idle_timeout.is_some_and(|d| d.is_zero())),
            ("frame_timeout", self.frame_timeout.is_some_and(|d| d.is_zero())),
            ("heartbeat", self.heartbeat.is_some_and(|d| d.is_zero())),
        ];
        if let Some((name, _)) = positive.iter().find(|(_, zero)| *zero) {
            return Err(ConfigError::Zero(name));
        }
        if self.max_body > self.memory_budget.capacity() {
            return Err(ConfigError::BodyAboveBudget {
                max_body: self.max_body,
                budget: self.memory_budget.capacity(),
            });
        }
        Ok(())
    }
}

/// Why a [`Config`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A limit or duration that must be positive is zero.
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
    /// No frame of the largest allowed size could ever be charged to the memory budget.
    #[error("`max_body` ({max_body} bytes) is above the memory budget ({budget} bytes)")]
    BodyAboveBudget {
        /// The largest body allowed.
        max_body: usize,
        /// The budget's size.
        budget: usize,
    },
}
