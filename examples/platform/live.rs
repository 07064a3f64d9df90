//! `--http-listen ADDR`: a page a person watches during a deployment, built from what the
//! crates already report (each release's `ReleaseReport` through its driver's handle, the
//! deployment's application states), and the JSON behind it (`/api/state`), polled by the page.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use plus_core::AppCode;
use plus_rollout::{Command, CommandRejected, Handle, HostState, ReleaseReport};
use serde_json::{Value, json};

use crate::controller::World;

/// A running release's handle, for its report now.
pub(crate) type ReleaseHandle = Handle<Command, CommandRejected, ReleaseReport>;

/// Serves the page and its JSON on `listener` until the process ends.
pub(crate) fn serve(listener: tokio::net::TcpListener, world: Arc<World>) {
    let app = Router::new().route("/", get(page)).route("/api/state", get(state)).with_state(world);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::warn!(error = %e, "the live page stopped");
        }
    });
}

async fn page() -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], PAGE).into_response()
}

async fn state(State(world): State<Arc<World>>) -> Response {
    axum::Json(state_of(&world).await).into_response()
}

/// The deployment as the page shows it: every application in deployment order with its
/// state, and for each started release its report now.
pub(crate) async fn state_of(world: &World) -> Value {
    let handles: HashMap<AppCode, ReleaseHandle> =
        world.live_releases.lock().expect("live lock").clone();
    let ended: HashMap<AppCode, ReleaseReport> =
        world.ended_releases.lock().expect("ended lock").clone();
    let states = world.app_states.lock().expect("states lock").clone();
    let mut apps = Vec::new();
    for spec in world.graph.apps() {
        let app = &spec.code;
        let report = match handles.get(app) {
            Some(handle) => handle.status().await.or_else(|| ended.get(app).cloned()),
            None => ended.get(app).cloned(),
        };
        let state = states.get(app).cloned().unwrap_or_else(|| "waiting".to_owned());
        apps.push(json!({
            "app": app.as_str(),
            "state": state,
            "release": report.as_ref().map(release_json),
        }));
    }
    json!({
        "finished": world.finished.load(Ordering::SeqCst),
        "cap": world.cap.load(Ordering::SeqCst),
        "apps": apps,
    })
}

fn release_json(report: &ReleaseReport) -> Value {
    let counts = report.host_counts();
    let running: Vec<Value> = report
        .hosts
        .iter()
        .filter_map(|(host, state)| match state {
            HostState::Running(step) => Some(json!({ "host": host.as_str(), "step": step.name() })),
            _ => None,
        })
        .collect();
    json!({
        "phase": report.phase.to_string(),
        "outcome": report.outcome.as_ref().map(ToString::to_string),
        "hosts": report.hosts.len(),
        "succeeded": counts.succeeded,
        "failed": counts.failed,
        "running": running,
        "batches": report.batches.iter().map(|b| json!({
            "batch": b.batch.to_string(),
            "hosts": b.hosts,
            "done": b.finished.is_some(),
        })).collect::<Vec<_>>(),
        "analyses": report.analyses.iter().map(|a| json!({
            "before_batch": a.before_batch,
            "verdict": a.verdict.to_string(),
        })).collect::<Vec<_>>(),
        "rollback": report.rollback.as_ref().map(|r| json!({
            "phase": r.phase.to_string(),
            "hosts": r.hosts.len(),
            "back": r.count(HostState::is_success),
        })),
        "degraded": report.degraded.len(),
    })
}

/// The page: a table of the applications, redrawn from `/api/state` three times a second.
const PAGE: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>plus: deployment</title>
<style>
body { font: 14px system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #ddd; vertical-align: top; }
.bar { background: #eee; width: 160px; height: 10px; display: inline-block; }
.bar span { background: #2a7; height: 10px; display: inline-block; }
.failed { color: #b22; } .rolledback { color: #a60; } .small { font-size: 12px; color: #555; }
</style>
</head>
<body>
<h1>Deployment</h1>
<p id="summary">loading...</p>
<table>
<thead><tr><th>application</th><th>state</th><th>release</th><th>hosts</th><th>batches</th><th>analysis</th><th>rollback</th><th>degraded calls</th></tr></thead>
<tbody id="apps"></tbody>
</table>
<script>
function text(s) { return String(s).replace(/[&<>]/g, c => ({'&': '&amp;', '<': '&lt;', '>': '&gt;'})[c]); }
function row(a) {
  const r = a.release;
  if (!r) return `<tr id="app-${text(a.app)}"><td>${text(a.app)}</td><td>${text(a.state)}</td><td colspan="6" class="small">not started</td></tr>`;
  const pct = r.hosts ? Math.round(100 * r.succeeded / r.hosts) : 0;
  const running = r.running.map(h => `${text(h.host)}: ${text(h.step)}`).join(", ");
  const batches = r.batches.map(b => `${text(b.batch)} (${b.hosts})${b.done ? "" : " running"}`).join("<br>");
  const analyses = r.analyses.map(v => `before batch ${v.before_batch}: ${text(v.verdict)}`).join("<br>");
  const rollback = r.rollback ? `<span class="rolledback">${r.rollback.back}/${r.rollback.hosts} back; ${text(r.rollback.phase)}</span>` : "";
  const cls = r.failed ? "failed" : "";
  return `<tr id="app-${text(a.app)}"><td>${text(a.app)}</td><td>${text(a.state)}</td>`
    + `<td>${text(r.outcome || r.phase)}<div class="small">${running}</div></td>`
    + `<td class="${cls}"><span class="bar"><span style="width:${pct}%"></span></span> ${r.succeeded}/${r.hosts} ok, ${r.failed} failed</td>`
    + `<td class="small">${batches}</td><td class="small">${analyses}</td><td>${rollback}</td><td>${r.degraded}</td></tr>`;
}
async function refresh() {
  try {
    const s = await (await fetch("/api/state")).json();
    document.getElementById("apps").innerHTML = s.apps.map(row).join("");
    document.getElementById("summary").textContent =
      `${s.finished ? "finished" : "running"}; pull-out cap ${s.cap}; ${s.apps.length} applications`;
  } catch (e) {
    document.getElementById("summary").textContent = "the platform does not answer: " + e;
  }
}
refresh();
setInterval(refresh, 300);
</script>
</body>
</html>
"#;
