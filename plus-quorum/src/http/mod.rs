//! A node program's HTTP endpoints (feature `http`), for people and programs that do not speak
//! plus-mux: probes for monitoring (`/health`, `/metrics` in Prometheus's text format,
//! `/version`), and a JSON gateway to the store (`/v3/kv/*`, `/v3/lease/*`, `/v3/watch`) for
//! services not written in Rust.
//!
//! With [`Security::MutualTls`] the endpoint speaks HTTPS and asks for a client certificate
//! signed by the cluster's CA, as the mux endpoint does (handshakes bounded the same way), and
//! each request may do what the certificate's role allows ([`Principal::may`]): a reader
//! reads and watches, a client also writes; a certificate naming no role gets nothing. Over
//! plain HTTP every caller may do everything, as over plain plus-mux: only for loopback or a
//! trusted network. With [`Security::Psk`] the probes are served (they tell terms, indexes and
//! sizes, no keys or values) and the gateway refuses every request: pre-shared keys are not
//! something an HTTP client can prove.
//!
//! The gateway answers for the whole cluster: a request that reaches a follower is forwarded
//! to the leader over plus-mux with this node's own credential, after this endpoint has
//! checked the caller's role.

mod gateway;
mod probes;
mod watch;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use plus_mux::{Accept, Peer, PeerIdentity};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub use probes::install_prometheus;

use crate::driver::{Cluster, NodeHandle};
use crate::ids::NodeId;
use crate::mux::{RemoteNode, Security};
use crate::roles::Request;

/// Why the endpoints could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// Another metrics recorder is installed in this process already.
    #[error("cannot install the Prometheus recorder: {0}")]
    Recorder(String),
    /// The gateway's client of the cluster could not be made.
    #[error("cannot reach the cluster for the gateway: {0}")]
    Cluster(String),
}

/// What the HTTP endpoints serve, and how they are secured.
#[derive(Debug)]
#[non_exhaustive]
pub struct HttpEndpoints {
    /// The local node (for the probes).
    pub node: NodeHandle,
    /// The metrics recorder's handle ([`install_prometheus`]).
    pub metrics: PrometheusHandle,
    /// Every member's plus-mux address, this node's included: where the gateway sends what
    /// only the leader answers.
    pub peers: HashMap<NodeId, String>,
    /// The node's own security: the HTTPS certificate and roles with mutual TLS, and the
    /// credential the gateway forwards with.
    pub security: Security,
    /// plus-mux's settings for the gateway's connections to the members.
    pub mux: plus_mux::Config,
    /// Most HTTP connections open at once; past it, new ones wait in the listener's backlog.
    /// Default 1,024.
    pub max_connections: usize,
    /// Most gateway watch streams open at once; past it, a watch is answered 429. Default 256.
    pub max_watches: usize,
}

impl HttpEndpoints {
    /// The endpoints of `node`, over plain HTTP, forwarding to `peers`.
    #[must_use]
    pub fn new(
        node: NodeHandle,
        metrics: PrometheusHandle,
        peers: HashMap<NodeId, String>,
    ) -> Self {
        Self {
            node,
            metrics,
            peers,
            security: Security::Plain,
            mux: plus_mux::Config::default(),
            max_connections: 1024,
            max_watches: 256,
        }
    }

    /// The same, secured as the node's plus-mux endpoint is.
    #[must_use]
    pub fn secured(mut self, security: Security) -> Self {
        self.security = security;
        self
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Served {
    node: NodeHandle,
    metrics: PrometheusHandle,
    cluster: Cluster<RemoteNode>,
    security: Security,
    /// The probes need no credential (plain HTTP, or pre-shared keys).
    probes_open: bool,
    /// The gateway refuses everyone (pre-shared keys).
    gateway_closed: bool,
    watches: Arc<Semaphore>,
}

/// Who made a request: where from and what its handshake proved.
#[derive(Debug, Clone)]
pub(crate) struct Caller(Peer);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // Always there: the service is made with the connection's info.
        Ok(ConnectInfo::<Caller>::from_request_parts(parts, state).await.map_or_else(
            |_| Self(Peer::new(None, PeerIdentity::Unauthenticated)),
            |ConnectInfo(caller)| caller,
        ))
    }
}

impl Served {
    /// The refusal to answer with when `caller` may not make `request`.
    fn refuse(&self, caller: &Caller, request: Request) -> Option<Response> {
        if self.gateway_closed && request != Request::Status {
            return Some(refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the JSON gateway needs mutual TLS (this node uses pre-shared keys)".to_owned(),
            ));
        }
        match self.security.principal(&caller.0.identity) {
            Some(principal) if principal.may(request) => None,
            Some(principal) => Some(refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{principal} may not make {request}"),
            )),
            None => Some(refusal(
                StatusCode::FORBIDDEN,
                "forbidden",
                "the client certificate names no role".to_owned(),
            )),
        }
    }
}

/// A request refused before, or by, the store: answered as it is (boxed: a response is large,
/// and handlers pass refusals up with `?`).
pub(crate) struct Refused(Box<Response>);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        *self.0
    }
}

impl From<Response> for Refused {
    fn from(response: Response) -> Self {
        Self(Box::new(response))
    }
}

/// What a gateway handler answers.
pub(crate) type Answer = Result<Response, Refused>;

impl Served {
    /// `Ok` when `caller` may make `request`.
    fn admit(&self, caller: &Caller, request: Request) -> Result<(), Refused> {
        self.refuse(caller, request).map_or(Ok(()), |refused| Err(refused.into()))
    }
}

/// A JSON error body with its status.
pub(crate) fn refusal(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let message: String = message.into();
    (status, axum::Json(serde_json::json!({ "error": message, "code": code }))).into_response()
}

/// Serves the endpoints on `listener` (bound by the caller, so that a port in use fails before
/// the node starts) until the task is aborted.
///
/// - `GET /health`: the node's status as JSON, with its alarms; 200 when it knows a leader,
///   is not recovering from a wipe and has not halted, 503 otherwise.
/// - `GET /metrics`: Prometheus's text format, from `metrics` (see [`install_prometheus`]).
/// - `GET /version`: the crate's version as JSON.
/// - `POST /v3/kv/range|put|delete|txn`, `POST /v3/lease/grant|keepalive|revoke|timetolive|list`,
///   `GET /v3/watch`: the gateway (see the README's "Operating the store" for each body).
///
/// # Errors
/// [`HttpError::Cluster`] when the gateway's client cannot be made (a bad mux setting).
pub fn serve_http(
    listener: tokio::net::TcpListener,
    endpoints: HttpEndpoints,
) -> Result<tokio::task::JoinHandle<()>, HttpError> {
    let HttpEndpoints { node, metrics, peers, security, mux, max_connections, max_watches } =
        endpoints;
    let mut members = Vec::new();
    for (&id, addr) in &peers {
        members.push(
            RemoteNode::connect_secured(id, addr, &mux, &security)
                .map_err(|e| HttpError::Cluster(e.to_string()))?,
        );
    }
    let mut cluster = Cluster::new(members);
    cluster.deadline = Duration::from_secs(10);
    let (probes_open, gateway_closed) = match &security {
        Security::Plain => (true, false),
        #[cfg(feature = "tls")]
        Security::MutualTls(_) => (false, false),
        #[cfg(feature = "psk")]
        Security::Psk { .. } => (true, true),
    };
    let served = Served {
        node,
        metrics,
        cluster,
        security: security.clone(),
        probes_open,
        gateway_closed,
        watches: Arc::new(Semaphore::new(max_watches)),
    };
    let app = Router::new()
        .route("/health", get(probes::health))
        .route("/metrics", get(probes::prometheus))
        .route("/version", get(probes::version))
        .route("/v3/kv/range", post(gateway::range))
        .route("/v3/kv/put", post(gateway::put))
        .route("/v3/kv/delete", post(gateway::delete))
        .route("/v3/kv/txn", post(gateway::txn))
        .route("/v3/lease/grant", post(gateway::lease_grant))
        .route("/v3/lease/keepalive", post(gateway::lease_keep_alive))
        .route("/v3/lease/revoke", post(gateway::lease_revoke))
        .route("/v3/lease/timetolive", post(gateway::lease_time_to_live))
        .route("/v3/lease/list", post(gateway::lease_list))
        .route("/v3/watch", get(watch::watch))
        // A request the store would refuse past 1.5 MiB, in JSON (base64 grows it by a third).
        .layer(axum::extract::DefaultBodyLimit::max(4 << 20))
        .with_state(served);
    let connections = Arc::new(Semaphore::new(max_connections));
    let app = app.into_make_service_with_connect_info::<Caller>();
    Ok(match security {
        #[cfg(feature = "tls")]
        Security::MutualTls(tls) => {
            let listener = Bounded { accept: tls.listener(listener), connections };
            tokio::spawn(async move { report(axum::serve(listener, app).await) })
        }
        _ => {
            let listener = Bounded { accept: listener, connections };
            tokio::spawn(async move { report(axum::serve(listener, app).await) })
        }
    })
}

fn report(served: std::io::Result<()>) {
    if let Err(e) = served {
        tracing::warn!(error = %e, "the HTTP endpoints stopped");
    }
}

/// A plus-mux accept source as axum's listener: every connection carries what its handshake
/// proved, and at most so many are open at once.
struct Bounded<A> {
    accept: A,
    connections: Arc<Semaphore>,
}

impl<A> axum::serve::Listener for Bounded<A>
where
    A: Accept,
    A::Stream: Unpin,
{
    type Io = Counted<A::Stream>;
    type Addr = Caller;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let permit = Arc::clone(&self.connections)
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let mut backoff = Duration::from_millis(10);
        loop {
            match self.accept.accept().await {
                Ok((stream, peer)) => return (Counted { stream, _permit: permit }, Caller(peer)),
                Err(e) => {
                    // Out of file descriptors, a refused handshake: the listener stays.
                    tracing::debug!(error = %e, "an HTTP connection was not accepted");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(Caller(Peer::new(None, PeerIdentity::Unauthenticated)))
    }
}

impl<A> axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Bounded<A>>>
    for Caller
where
    A: Accept,
    A::Stream: Unpin,
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, Bounded<A>>) -> Self {
        stream.remote_addr().clone()
    }
}

/// A connection that gives its place back when it closes.
struct Counted<S> {
    stream: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
