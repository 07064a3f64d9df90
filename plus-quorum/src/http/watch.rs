//! `GET /v3/watch?key=K[&prefix=true][&rev=R]`: the changes of a key or a prefix as a stream of
//! JSON lines (`application/x-ndjson`), from revision R (default: the next change) until the
//! client goes away. Each line is an event (`{"revision", "type": "PUT"|"DELETE", "key",
//! "value"|"value_base64"}`), a progress mark when a wait passed without one (`{"progress": R}`:
//! everything up to R was sent, resume from R + 1), or, last, why the stream ended: `{"compacted":
//! true, "requested", "oldest"}` when the history no longer reaches back to the next change (the
//! client re-reads the range and watches from `oldest`; nothing is skipped silently), or
//! `{"error", "code"}`.

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::json;

use super::{Caller, Served, refusal};
use crate::client_error::ClientError;
use crate::driver::{NodeApi, StoreError, Watcher};
use crate::mux::RemoteNode;
use crate::roles::Request;
use crate::txn::KeyRange;
use crate::watch::Change;

/// The query of a watch.
#[derive(Debug, Deserialize)]
pub(super) struct WatchQuery {
    key: String,
    #[serde(default)]
    prefix: bool,
    rev: Option<u64>,
}

pub(super) async fn watch(
    State(served): State<Served>,
    caller: Caller,
    query: Result<Query<WatchQuery>, QueryRejection>,
) -> Response {
    if let Some(refused) = served.refuse(&caller, Request::Watch) {
        return refused;
    }
    let Query(WatchQuery { key, prefix, rev }) = match query {
        Ok(query) => query,
        Err(rejection) => {
            return refusal(StatusCode::BAD_REQUEST, "invalid", rejection.body_text());
        }
    };
    let Ok(permit) = std::sync::Arc::clone(&served.watches).try_acquire_owned() else {
        return refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            "this endpoint serves as many watches as it may; try another node or later".to_owned(),
        );
    };
    let keys = if prefix {
        KeyRange::Prefix(key)
    } else {
        KeyRange::Between { end: format!("{key}\0"), start: key }
    };
    let from = match rev {
        Some(rev) => rev,
        None => newest_applied(&served).await + 1,
    };
    let watcher = served.cluster.watch(keys, from);
    // The permit lives as long as the stream: a client that goes away gives its place back.
    let lines = futures::stream::unfold(Some((watcher, permit)), |state| async move {
        let (mut watcher, permit) = state?;
        let (text, go_on) = next_lines(&mut watcher).await;
        Some((Ok::<_, std::convert::Infallible>(text), go_on.then_some((watcher, permit))))
    });
    ([(header::CONTENT_TYPE, "application/x-ndjson")], Body::from_stream(lines)).into_response()
}

/// The lines of the next batch, and whether the stream goes on.
async fn next_lines(watcher: &mut Watcher<RemoteNode>) -> (String, bool) {
    match watcher.next().await {
        Ok(batch) if batch.events.is_empty() => {
            (format!("{}\n", json!({ "progress": batch.progress })), true)
        }
        Ok(batch) => {
            let mut text = String::new();
            for event in batch.events {
                let mut line = json!({ "revision": event.revision, "key": event.key });
                match event.change {
                    Change::Put(versioned) => {
                        line["type"] = "PUT".into();
                        match std::str::from_utf8(&versioned.value) {
                            Ok(value) => line["value"] = value.into(),
                            Err(_) => {
                                use base64::Engine;
                                line["value_base64"] = base64::engine::general_purpose::STANDARD
                                    .encode(&versioned.value)
                                    .into();
                            }
                        }
                    }
                    Change::Delete => line["type"] = "DELETE".into(),
                }
                text.push_str(&line.to_string());
                text.push('\n');
            }
            (text, true)
        }
        Err(StoreError::Client(ClientError::Compacted { requested, oldest })) => (
            format!("{}\n", json!({ "compacted": true, "requested": requested, "oldest": oldest })),
            false,
        ),
        Err(e) => {
            (format!("{}\n", json!({ "error": e.to_string(), "code": "unavailable" })), false)
        }
    }
}

/// The newest revision any member has applied: a watch from the next one misses nothing
/// acknowledged before it started.
async fn newest_applied(served: &Served) -> u64 {
    let mut newest = 0;
    for node in served.cluster.handles() {
        if let Ok(status) = node.status().await {
            newest = newest.max(status.applied);
        }
    }
    newest
}
