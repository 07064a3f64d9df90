//! A node program's HTTP endpoints (feature `http`), for people and programs that do not
//! speak plus-mux: `/health` (is there a leader, is this node caught up), `/metrics` (every
//! series the crates report through the `metrics` facade, in Prometheus's text format) and
//! `/version`.

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use crate::driver::NodeHandle;

/// Why the endpoints could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Another metrics recorder is installed in this process already.
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
}

/// Installs the process's metrics recorder (a Prometheus one): call once, before the node
/// starts, so that its series are recorded from the first.
///
/// # Errors
/// [`HttpError::Recorder`] when a recorder is installed already.
pub fn install_prometheus() -> Result<PrometheusHandle, HttpError> {
    PrometheusBuilder::new().install_recorder().map_err(|e| HttpError::Recorder(e.to_string()))
}

#[derive(Clone)]
struct Served {
    node: NodeHandle,
    metrics: PrometheusHandle,
}

/// Serves the endpoints of `node` on `listener` (bound by the caller, so that a port in use
/// fails before the node starts) until the task is aborted.
///
/// - `GET /health`: the node's status as JSON; 200 when it knows a leader and is not
///   recovering from a wipe, 503 otherwise (a load balancer's or an orchestrator's probe).
/// - `GET /metrics`: Prometheus's text format, from `metrics` (see [`install_prometheus`]).
/// - `GET /version`: the crate's version as JSON.
///
/// Plain HTTP without authentication: bind it to an address only the monitoring can reach.
#[must_use]
pub fn serve_http(
    listener: tokio::net::TcpListener,
    node: NodeHandle,
    metrics: PrometheusHandle,
) -> tokio::task::JoinHandle<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(prometheus))
        .route("/version", get(version))
        .with_state(Served { node, metrics });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the HTTP endpoints stopped");
        }
    })
}

async fn health(State(served): State<Served>) -> Response {
    match served.node.status().await {
        Ok(status) => {
            let healthy = status.leader.is_some() && !status.recovering;
            let body = serde_json::json!({
                "healthy": healthy,
                "id": status.id,
                "role": format!("{:?}", status.role),
                "leader": status.leader,
                "term": status.term,
                "commit": status.commit,
                "applied": status.applied,
                "recovering": status.recovering,
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

async fn prometheus(State(served): State<Served>) -> Response {
    // Histograms' buckets are drained here, at scrape time, instead of by a timer task.
    served.metrics.run_upkeep();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], served.metrics.render()).into_response()
}

async fn version() -> Response {
    let body = serde_json::json!({ "name": "plus-quorum", "version": env!("CARGO_PKG_VERSION") });
    ([(header::CONTENT_TYPE, "application/json")], body.to_string()).into_response()
}
