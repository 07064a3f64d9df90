//! The tokio driver of a dependency-ordered deployment. It owns tasks and timers and makes no
//! ordering decisions.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use plus_core::{AppCode, Timestamp};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::graph::AppGraph;
use crate::orchestrate::{DeployAction, DeployConfig, DeployEvent, Deployment, DeploymentReport};

/// Deploys and health-checks one application: the host's own machinery.
///
/// # Contract
/// Return when done; `Err` carries a message for people. The driver enforces deadlines and
/// cancels by dropping the future, so implementations must be cancel-safe.
#[async_trait]
pub trait AppExecutor: Send + Sync + 'static {
    /// Deploys `app`.
    async fn deploy(&self, app: &AppCode) -> Result<(), String>;
    /// Runs `app`'s health check once.
    async fn check(&self, app: &AppCode) -> Result<(), String>;
}

/// Cancels a running deployment.
#[derive(Debug, Clone)]
pub struct DeploymentHandle {
    cancel: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

impl DeploymentHandle {
    /// Stops starting new work and cancels what runs; returns once the deployment took it (at
    /// once if it had already ended).
    pub async fn cancel(&self) {
        let (reply, done) = oneshot::channel();
        if self.cancel.send(reply).is_ok() {
            let _ = done.await;
        }
    }
}

/// Starts deploying `graph` on the current tokio runtime.
///
/// Returns the cancel handle, a receiver of progress events (closed at the end), and the task
/// that resolves to the final report.
pub fn spawn_deployment<E: AppExecutor>(
    graph: Arc<AppGraph>,
    config: DeployConfig,
    executor: Arc<E>,
) -> (DeploymentHandle, mpsc::UnboundedReceiver<DeployEvent>, JoinHandle<DeploymentReport>) {
    let (cancel_tx, cancel_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let origin = Instant::now();
    let deployment = Deployment::new(graph, config, Timestamp::ZERO);
    let task = tokio::spawn(drive(deployment, executor, cancel_rx, event_tx, origin));
    (DeploymentHandle { cancel: cancel_tx }, event_rx, task)
}

async fn drive<E: AppExecutor>(
    mut deployment: Deployment,
    executor: Arc<E>,
    mut cancels: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
    events: mpsc::UnboundedSender<DeployEvent>,
    origin: Instant,
) -> DeploymentReport {
    let now = || Timestamp::from_duration(Instant::now().saturating_duration_since(origin));
    let mut tasks: JoinSet<(usize, u64, Result<(), String>)> = JoinSet::new();
    let mut running: HashMap<usize, (u64, tokio::task::AbortHandle)> = HashMap::new();
    let mut cancels_open = true;
    loop {
        while let Some(action) = deployment.poll_action() {
            match action {
                DeployAction::Deploy { app, token } | DeployAction::Check { app, token, .. } => {
                    let is_deploy = matches!(action, DeployAction::Deploy { .. });
                    let exec = Arc::clone(&executor);
                    let code = deployment.graph().code(app).clone();
                    let handle = tasks.spawn(async move {
                        let result = if is_deploy {
                            exec.deploy(&code).await
                        } else {
                            exec.check(&code).await
                        };
                        (app, token, result)
                    });
                    running.insert(app, (token, handle));
                }
                DeployAction::Cancel { app, token } => {
                    if running.get(&app).is_some_and(|(t, _)| *t == token) {
                        if let Some((_, handle)) = running.remove(&app) {
                            handle.abort();
                        }
                    }
                }
            }
        }
        while let Some(event) = deployment.poll_event() {
            let _ = events.send(event);
        }
        if deployment.is_finished() && tasks.is_empty() {
            return deployment.report();
        }
        let deadline = deployment.poll_timeout().map(|at| origin + at.since_origin());
        tokio::select! {
            joined = tasks.join_next(), if !tasks.is_empty() => match joined {
                Some(Ok((app, token, result))) => {
                    if running.get(&app).is_some_and(|(t, _)| *t == token) {
                        running.remove(&app);
                    }
                    deployment.handle_result(app, token, result, now());
                }
                Some(Err(err)) if err.is_panic() => {
                    let id = err.id();
                    let found = running.iter().find(|(_, (_, h))| h.id() == id).map(|(app, (token, _))| (*app, *token));
                    if let Some((app, token)) = found {
                        running.remove(&app);
                        deployment.handle_result(app, token, Err("executor panicked".to_owned()), now());
                    }
                }
                Some(Err(_)) | None => {}
            },
            cancel = cancels.recv(), if cancels_open => match cancel {
                Some(reply) => {
                    deployment.cancel(now());
                    let _ = reply.send(());
                }
                None => cancels_open = false,
            },
            () = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            } => deployment.handle_timeout(now()),
        }
    }
}
