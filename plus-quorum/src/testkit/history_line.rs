//! One line of a history file, the JSON-lines format the crate's simulation writes with
//! `PLUS_SIM_HISTORY_DIR` and `quorum_chaos --history` writes for real processes: shared, so
//! that the two stay one format.

use serde::Serialize;

/// A call (`event` `invoke`, with `op`) or its return (`ok`, `fail`, `refused`, `unknown`,
/// with `result`), at `t_ms` since the start.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    /// Milliseconds since the history began.
    pub t_ms: u64,
    /// The client (a connection, a process) the thread belongs to.
    pub client: usize,
    /// The thread: at most one operation in flight on it at a time.
    pub thread: u64,
    /// `invoke`, `ok`, `fail`, `refused` or `unknown`.
    pub event: &'static str,
    /// The operation, on an `invoke`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<serde_json::Value>,
    /// The result, on a return.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}
