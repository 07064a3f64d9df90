use std::sync::Arc;

use crate::frame::FrameError;

/// Why a connection closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CloseReason {
    /// This side closed it (or shut it down).
    #[error("closed locally")]
    Local,
    /// The peer closed the stream between two frames (over TLS also without its close_notify:
    /// every frame says its length, so nothing can have been cut short).
    #[error("closed by the peer")]
    PeerClosed,
    /// The peer sent bytes that are not a valid frame.
    #[error("protocol error: {0}")]
    Protocol(Arc<str>),
    /// Reading or writing the stream failed.
    #[error("i/o error: {0}")]
    Io(Arc<str>),
    /// No frame in either direction for the idle timeout.
    #[error("idle timeout")]
    IdleTimeout,
    /// A heartbeat was not answered in time.
    #[error("heartbeat not answered")]
    HeartbeatTimeout,
    /// A frame started to arrive and was not complete within the frame timeout.
    #[error("frame not complete within the frame timeout")]
    FrameTimeout,
    /// The shared memory budget could not hold a frame the peer started to send.
    #[error("memory budget exhausted: {0}")]
    OverBudget(Arc<str>),
    /// The peer did not read our answers: more than
    /// [`Config::max_unread_bytes`](crate::Config::max_unread_bytes) of them waited for it.
    #[error("the peer does not read its answers: {0} bytes were waiting")]
    SlowReader(usize),
}

impl CloseReason {
    pub(crate) fn from_frame_error(err: &FrameError) -> Self {
        match err {
            FrameError::Io(io) => Self::Io(io.to_string().into()),
            FrameError::OverBudget { .. } => Self::OverBudget(err.to_string().into()),
            other => Self::Protocol(other.to_string().into()),
        }
    }
}

/// Why a connection could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The configuration cannot work.
    #[error("invalid plus-mux config: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// Socket options could not be set.
    #[error("cannot set up the socket: {0}")]
    Io(#[from] std::io::Error),
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No response within the request timeout; a late response will be counted and dropped.
    #[error("no response within the timeout")]
    Timeout,
    /// No in-flight slot freed up within the slot timeout.
    #[error("too many requests in flight: no slot within the timeout")]
    SlotTimeout,
    /// The connection was closed before the request was sent: the peer never saw it, so it is
    /// safe to send again, on this connection's successor or elsewhere.
    #[error("connection closed: {0}")]
    Closed(CloseReason),
    /// The connection closed after the request was handed to it and before its response came:
    /// the peer may have received it and acted on it. Retry only what is idempotent.
    #[error("connection closed with the request in flight (the peer may have acted on it): {0}")]
    Lost(CloseReason),
    /// The connection is shutting down and takes no new requests.
    #[error("connection is shutting down")]
    ShuttingDown,
    /// The peer's handler failed with this message.
    #[error("peer handler failed: {0}")]
    Remote(String),
    /// With [`Config::go_compatible`](crate::Config::go_compatible), a request the Go
    /// implementation could not frame (its body, or its length's bytes, hold `\r\r\n`).
    #[error(
        "a request body of {len} bytes that the Go implementation cannot frame (it holds \\r\\r\\n, in its bytes or its length); turn off `go_compatible` between plus peers"
    )]
    NotGoFramable {
        /// Its size.
        len: usize,
    },
    /// The body is larger than the configured maximum.
    #[error("request body of {len} bytes is above the limit of {max}")]
    BodyTooLarge {
        /// Its size.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// What a handler returns when it cannot answer; it reaches the requester (see
/// [`HandlerErrorWire`](crate::HandlerErrorWire)).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct HandlerError(pub String);

impl HandlerError {
    /// An error with `message`.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
