//! One line of a history file, the JSON-lines format the simulation writes with
//! `PLUS_SIM_HISTORY_DIR` and `quorum_chaos --history` writes for real processes (format in
//! `mod.rs`): shared, so that the two stay one format.

use serde::Serialize;

/// A call (`event` `invoke`, with `op`) or its return (`ok`, `fail`, `refused`, `unknown`,
/// with `result`), at `t_ms` since the start.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryLine {
    pub t_ms: u64,
    pub client: usize,
    pub thread: u64,
    pub event: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<serde_json::Value>,
}
