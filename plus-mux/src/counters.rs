//! What a connection counts.

/// A snapshot of a connection's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counters {
    /// Requests we sent (heartbeats included).
    pub requests_sent: u64,
    /// Requests from the peer given to the handler.
    pub requests_served: u64,
    /// Peer requests being handled now.
    pub in_flight: u64,
    /// Our requests awaiting a response now.
    pub pending: u64,
    /// Our requests that timed out.
    pub timeouts: u64,
    /// Responses that matched no pending request (typically after a timeout), dropped.
    pub late_responses: u64,
    /// Responses to our async requests, passed to the orphan hook.
    pub orphans: u64,
    /// Framing errors from the peer (each closes the connection).
    pub protocol_errors: u64,
    /// Handler errors answered.
    pub handler_errors: u64,
    /// Frames from the peer whose declared body was above [`Config::max_body`](crate::Config::max_body) (each closes
    /// the connection; a request is answered with the reason first).
    pub oversized_frames: u64,
    /// Frames from the peer the shared [`Config::memory_budget`](crate::Config::memory_budget) could not hold (each closes
    /// the connection; a request is answered with the reason first).
    pub over_budget_frames: u64,
    /// Bytes read.
    pub bytes_in: u64,
    /// Bytes written.
    pub bytes_out: u64,
}
