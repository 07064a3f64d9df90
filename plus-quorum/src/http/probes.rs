//! `/health`, `/metrics` and `/version`: for load balancers, orchestrators and Prometheus.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::{Caller, HttpError, Served};
use crate::roles::Request;

/// Installs the process's metrics recorder (a Prometheus one): call once, before the node
/// starts, so that its series are recorded from the first.
///
/// # Errors
/// [`HttpError::Recorder`] when a recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, HttpError> {
    PrometheusBuilder::new().install_recorder().map_err(|e| HttpError::Recorder(e.to_string()))
}

pub(super) async fn health(State(served): State<Served>, caller: Caller) -> Response {
    if let Some(refused) = served.refuse_probe(&caller) {
        return refused;
    }
    match served.node.status().await {
        Ok(status) => {
            let no_space = status.no_space;
            let healthy = status.leader.is_some() && !status.recovering && !status.halted;
            let mut alarms = Vec::new();
            if no_space {
                alarms.push("NOSPACE");
            }
            if status.halted {
                alarms.push("STORAGE");
            }
            let body = serde_json::json!({
                "healthy": healthy,
                "id": status.id,
                "role": format!("{:?}", status.role),
                "leader": status.leader,
                "term": status.term,
                "commit": status.commit,
                "applied": status.applied,
                "recovering": status.recovering,
                "keys": status.keys,
                "state_bytes": status.state_bytes,
                "alarms": alarms,
            });
            let code = if healthy { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
            (code, [(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
        }
        Err(e) => {
            let body = serde_json::json!({ "healthy": false, "error": e.to_string() });
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::CONTENT_TYPE, "application/json")],
                body.to_string(),
            )
                .into_response()
        }
    }
}

pub(super) async fn prometheus(State(served): State<Served>, caller: Caller) -> Response {
    if let Some(refused) = served.refuse_probe(&caller) {
        return refused;
    }
    // Histograms' buckets are drained here, at scrape time, instead of by a timer task.
    served.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], served.metrics.render()).into_response()
}

pub(super) async fn version(State(served): State<Served>, caller: Caller) -> Response {
    if let Some(refused) = served.refuse_probe(&caller) {
        return refused;
    }
    let body = serde_json::json!({ "name": "plus-quorum", "version": env!("CARGO_PKG_VERSION") });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}

impl Served {
    /// A probe needs a credential that may ask for a status when the endpoint has TLS (every
    /// role may); over plain HTTP it is open (it tells terms, indexes and sizes, no keys).
    fn refuse_probe(&self, caller: &Caller) -> Option<Response> {
        self.refuse(caller, Request::Status).filter(|_| !self.probes_open)
    }
}
