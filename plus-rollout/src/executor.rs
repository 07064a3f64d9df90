//! What a host plugs into the driver (feature `tokio`): the executors of release steps and of
//! application deployments, and the two spawn functions that run each core through the one
//! driver.

use std::convert::Infallible;
use std::sync::Arc;

use async_trait::async_trait;
use plus_core::{AppCode, Failure, HostId, Version};

use crate::driver::{
    CommandError, Events, Handle, JobFuture, Spawned, SpawnedSaved, spawn, spawn_saved,
};
use crate::orchestrate::{
    AppJob, DeployCommand, DeployEvent, Deployment, DeploymentReport, SavedDeployment,
};
use crate::release::{
    Command, CommandRejected, Event, Release, ReleaseJob, ReleaseReport, SavedRelease, Step,
    StepOutcome,
};
use crate::store::StateStore;

/// Runs one step on one host: the host's own deploy machinery (ssh, an agent, a container API).
///
/// # Contract
/// Return when the step is over, with its outcome. The driver enforces the step's deadline and
/// cancels by dropping the future, so an implementation must be cancel-safe: dropping it
/// mid-way must leave nothing running that a retry could trip over. A panic is reported as a
/// failed step.
#[async_trait]
pub trait StepExecutor: Send + Sync + 'static {
    /// Runs `step` on `host` for `target`.
    async fn run(&self, host: &HostId, step: Step, target: &Version) -> StepOutcome;

    /// Answers an analysis check's `query` (its provider: a metrics system, the
    /// application's own counters): a value, `Ok(None)` when there is no data, or why the
    /// provider failed. Only releases with [`ReleaseConfig::analysis`](crate::ReleaseConfig)
    /// ask; the default has no provider and says so, which makes every check err (the release
    /// then brakes as inconclusive, never as failed).
    async fn measure(&self, query: &str) -> Result<Option<f64>, String> {
        Err(format!("this executor has no metric provider for `{query}`"))
    }
}

/// A reference executor that succeeds at once on every step (for tests, demos and benches).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoopExecutor;

#[async_trait]
impl StepExecutor for NoopExecutor {
    async fn run(&self, _: &HostId, _: Step, _: &Version) -> StepOutcome {
        StepOutcome::Done
    }
}

/// Deploys and health-checks one application: the host's own machinery.
///
/// # Contract
/// Return when done; `Err` says why for people ([`Failure`]: a message, and the host's own
/// error beneath it when there is one; a `String` converts into one). The driver enforces deadlines and cancels by dropping
/// the future, so implementations must be cancel-safe. A panic is reported as a failure.
#[async_trait]
pub trait AppExecutor: Send + Sync + 'static {
    /// Deploys `app`.
    async fn deploy(&self, app: &AppCode) -> Result<(), Failure>;
    /// Runs `app`'s health check once.
    async fn check(&self, app: &AppCode) -> Result<(), Failure>;
}

/// Sends a person's commands to a running release. Cheap to clone.
pub type ReleaseHandle = Handle<Command, CommandRejected, ReleaseReport>;

/// A running release's progress; ends when the release does.
pub type ReleaseEvents = Events<Event>;

/// Cancels a running deployment. Cheap to clone.
pub type DeploymentHandle = Handle<DeployCommand, Infallible, DeploymentReport>;

/// A running deployment's progress; ends when the deployment does.
pub type DeploymentEvents = Events<DeployEvent>;

impl ReleaseHandle {
    /// [`Command::Bake`].
    ///
    /// # Errors
    /// As [`Handle::command`].
    pub async fn bake(&self) -> Result<(), CommandError<CommandRejected>> {
        self.command(Command::Bake).await
    }

    /// [`Command::Abort`]; idempotent, also once the release has ended.
    pub async fn abort(&self) {
        let _ = self.command(Command::Abort).await;
    }
}

impl DeploymentHandle {
    /// Stops starting new work and cancels what runs; returns once the deployment took it (at
    /// once if it had already ended).
    pub async fn cancel(&self) {
        let _ = self.command(DeployCommand::Cancel).await;
    }
}

/// Starts `release` on the current tokio runtime, continuing its clock from
/// [`Release`]'s construction (or latest) time.
///
/// Returns the command handle, the event stream, and the task that resolves to the final
/// report once the release is finished.
pub fn spawn_release<E: StepExecutor>(release: Release, executor: Arc<E>) -> Spawned<Release> {
    let steps = release_steps(executor);
    spawn(release, steps)
}

/// As [`spawn_release`], keeping the release's state in `store` under `key` as it goes (see
/// [`spawn_saved`]): `version` is that of the state it was restored from, `None` for a new one.
pub fn spawn_release_saved<E: StepExecutor>(
    release: Release,
    executor: Arc<E>,
    store: Arc<dyn StateStore<SavedRelease>>,
    key: String,
    version: Option<u64>,
) -> SpawnedSaved<Release> {
    let steps = release_steps(executor);
    spawn_saved(release, steps, store, key, version)
}

/// Starts `deployment` on the current tokio runtime; returns the same shape as
/// [`spawn_release`].
pub fn spawn_deployment<E: AppExecutor>(
    deployment: Deployment,
    executor: Arc<E>,
) -> Spawned<Deployment> {
    spawn(deployment, deployment_jobs(executor))
}

/// As [`spawn_deployment`], keeping the deployment's state in `store` under `key` as it goes
/// (see [`spawn_saved`]).
pub fn spawn_deployment_saved<E: AppExecutor>(
    deployment: Deployment,
    executor: Arc<E>,
    store: Arc<dyn StateStore<SavedDeployment>>,
    key: String,
    version: Option<u64>,
) -> SpawnedSaved<Deployment> {
    spawn_saved(deployment, deployment_jobs(executor), store, key, version)
}

/// A release's jobs, run by `executor`.
fn release_steps<E: StepExecutor>(
    executor: Arc<E>,
) -> impl FnMut(ReleaseJob) -> JobFuture<StepOutcome> + Send + 'static {
    move |job: ReleaseJob| {
        let executor = Arc::clone(&executor);
        Box::pin(async move {
            match job {
                // Each job says its version: a rollback's steps deploy the previous one.
                ReleaseJob::Step(job) => executor.run(&job.host, job.step, &job.version).await,
                ReleaseJob::Measure(job) => {
                    StepOutcome::Measured(executor.measure(&job.query).await)
                }
            }
        })
    }
}

/// A deployment's jobs, run by `executor`.
fn deployment_jobs<E: AppExecutor>(
    executor: Arc<E>,
) -> impl FnMut(AppJob) -> JobFuture<Result<(), String>> + Send + 'static {
    move |job: AppJob| {
        let executor = Arc::clone(&executor);
        Box::pin(async move {
            match job {
                AppJob::Deploy(app) => executor.deploy(&app).await.map_err(|e| e.to_string()),
                AppJob::Check { app, .. } => executor.check(&app).await.map_err(|e| e.to_string()),
            }
        })
    }
}
