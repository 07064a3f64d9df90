use std::time::Duration;

use crate::frame::DEFAULT_MAX_BODY;

/// What a handler error becomes on the wire.
///
/// The Go implementation answered with an empty body and lost the error. `plus-mux` never leaves
/// the requester hanging: the request is always answered, in one of these forms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
    /// Bytes gathered into one write when frames queue up. Default 64 KiB.
    pub write_batch: usize,
    /// How long an async request's identity stays reserved for its response. Default 5 s.
    pub async_response_timeout: Duration,
    /// Close the connection after this long with no frame in either direction. Default none.
    pub idle_timeout: Option<Duration>,
    /// Send an empty request this often and close if it is not answered within the interval.
    /// Off by default so the wire stays what the Go implementation expects; both peers must
    /// enable it (a peer with it enabled answers empty requests itself). Default none.
    pub heartbeat: Option<Duration>,
    /// TCP keepalive for connections made with [`Connection::from_tcp`](crate::Connection::from_tcp).
    /// Default 60 s.
    pub tcp_keepalive: Option<Duration>,
    /// Never emit identities whose bytes contain `\r\r\n` (such as 855,306), which the Go
    /// implementation mistakes for a frame end. Default false.
    pub go_safe_identities: bool,
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
            write_batch: 64 * 1024,
            async_response_timeout: Duration::from_secs(5),
            idle_timeout: None,
            heartbeat: None,
            tcp_keepalive: Some(Duration::from_secs(60)),
            go_safe_identities: false,
            handler_errors: HandlerErrorWire::Prefixed,
        }
    }
}

impl Config {
    /// Checks that the limits can work.
    ///
    /// # Errors
    /// A message naming the field when a limit is zero.
    pub fn validate(&self) -> Result<(), String> {
        let zero = |name: &str| Err(format!("`{name}` must be greater than zero"));
        if self.max_in_flight == 0 {
            return zero("max_in_flight");
        }
        if self.max_concurrent_handlers == 0 {
            return zero("max_concurrent_handlers");
        }
        if self.write_queue == 0 {
            return zero("write_queue");
        }
        if self.request_timeout.is_zero() {
            return zero("request_timeout");
        }
        Ok(())
    }
}
