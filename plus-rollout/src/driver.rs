//! The tokio driver: runs a [`Release`] against a host-supplied executor. It owns tasks, timers
//! and channels and makes no release decisions.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::Stream;
use plus_core::{HostId, Timestamp, Version};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::release::{
    Action, Command, CommandRejected, Event, Release, ReleaseReport, Step, StepOutcome,
};

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

type CommandMsg = (Command, oneshot::Sender<Result<(), CommandRejected>>);

/// Why a command could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError {
    /// The release does not take this command now.
    #[error(transparent)]
    Rejected(#[from] CommandRejected),
    /// The release is over and its driver has stopped.
    #[error("the release has ended")]
    Ended,
}

/// Sends a person's commands to a running release. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ReleaseHandle {
    commands: mpsc::UnboundedSender<CommandMsg>,
}

impl ReleaseHandle {
    /// Applies `command` and waits until the release has taken it.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] when it does not apply now, [`CommandError::Ended`] after the
    /// driver stopped (an abort then counts as done: use [`ReleaseHandle::abort`]).
    pub async fn command(&self, command: Command) -> Result<(), CommandError> {
        let (reply, answer) = oneshot::channel();
        self.commands.send((command, reply)).map_err(|_| CommandError::Ended)?;
        answer.await.map_err(|_| CommandError::Ended)?.map_err(CommandError::from)
    }

    /// [`Command::Bake`].
    ///
    /// # Errors
    /// As [`ReleaseHandle::command`].
    pub async fn bake(&self) -> Result<(), CommandError> {
        self.command(Command::Bake).await
    }

    /// [`Command::Abort`]; idempotent, also once the release has ended.
    pub async fn abort(&self) {
        let _ = self.command(Command::Abort).await;
    }
}

/// The release's progress, as a stream of events. Ends when the release does.
///
/// Events travel in batches (one per turn of the driver loop) and are handed out one by one.
/// Dropping the stream tells the driver to stop recording events.
#[derive(Debug)]
pub struct ReleaseEvents {
    batches: mpsc::UnboundedReceiver<Vec<Event>>,
    buffer: std::collections::VecDeque<Event>,
}

impl Stream for ReleaseEvents {
    type Item = Event;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Event>> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                return Poll::Ready(Some(event));
            }
            match self.batches.poll_recv(cx) {
                Poll::Ready(Some(batch)) => self.buffer.extend(batch),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// Starts `release` on the current tokio runtime.
///
/// Returns the command handle, the event stream, and the task that resolves to the final
/// report once the release is finished.
pub fn spawn_release<E: StepExecutor>(
    release: Release,
    executor: Arc<E>,
) -> (ReleaseHandle, ReleaseEvents, JoinHandle<ReleaseReport>) {
    let (command_tx, command_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(drive(release, executor, command_rx, event_tx, Instant::now()));
    (
        ReleaseHandle { commands: command_tx },
        ReleaseEvents { batches: event_rx, buffer: std::collections::VecDeque::new() },
        task,
    )
}

type StepFuture = Pin<Box<dyn Future<Output = StepOutcome> + Send>>;

/// The driver loop. Time is tokio's, so tests with paused time run in simulated time.
async fn drive<E: StepExecutor>(
    mut release: Release,
    executor: Arc<E>,
    mut commands: mpsc::UnboundedReceiver<CommandMsg>,
    events: mpsc::UnboundedSender<Vec<Event>>,
    origin: Instant,
) -> ReleaseReport {
    let now = || Timestamp::from_duration(Instant::now().saturating_duration_since(origin));
    let mut tasks: JoinSet<(u32, u64, StepOutcome)> = JoinSet::new();
    let mut running: HashMap<u32, (u64, tokio::task::AbortHandle)> = HashMap::new();
    let mut ready: Vec<(u32, u64, StepOutcome)> = Vec::new();
    let target = Arc::new(release.config().target.clone());
    let mut commands_open = true;
    loop {
        // Apply everything the core asked for. A step whose future finishes on its first poll
        // is reported at once instead of being spawned: the common case for no-op steps, and
        // it keeps the engine's overhead per step to one poll.
        loop {
            while let Some(action) = release.poll_action() {
                match action {
                    Action::Start { host, id, step, token, .. } => {
                        let exec = Arc::clone(&executor);
                        let target = Arc::clone(&target);
                        let mut fut: StepFuture =
                            Box::pin(async move { exec.run(&id, step, &target).await });
                        match fut.as_mut().poll(&mut Context::from_waker(std::task::Waker::noop()))
                        {
                            Poll::Ready(outcome) => ready.push((host, token, outcome)),
                            Poll::Pending => {
                                let handle = tasks.spawn(async move { (host, token, fut.await) });
                                running.insert(host, (token, handle));
                            }
                        }
                    }
                    Action::Cancel { host, token } => {
                        if let Some((running_token, handle)) = running.remove(&host) {
                            if running_token == token {
                                handle.abort();
                            } else {
                                running.insert(host, (running_token, handle));
                            }
                        }
                    }
                }
            }
            if ready.is_empty() {
                break;
            }
            let at = now();
            for (host, token, outcome) in ready.drain(..) {
                release.handle_step_result(host, token, outcome, at);
            }
        }
        let mut batch = Vec::new();
        while let Some(event) = release.poll_event() {
            batch.push(event);
        }
        if !batch.is_empty() && events.send(batch).is_err() {
            // Nobody listens: progress is optional, so stop recording it.
            release.set_event_recording(false);
        }
        if release.is_finished() && tasks.is_empty() {
            return release.report();
        }
        let deadline = release.poll_timeout().map(|at| origin + at.since_origin());
        tokio::select! {
            joined = tasks.join_next(), if !tasks.is_empty() => {
                match joined {
                    Some(Ok((host, token, outcome))) => {
                        if running.get(&host).is_some_and(|(t, _)| *t == token) {
                            running.remove(&host);
                        }
                        release.handle_step_result(host, token, outcome, now());
                    }
                    Some(Err(err)) if err.is_panic() => {
                        // The task's host and token went down with it; find them by task id.
                        let id = err.id();
                        let found = running.iter().find(|(_, (_, h))| h.id() == id).map(|(host, (token, _))| (*host, *token));
                        if let Some((host, token)) = found {
                            running.remove(&host);
                            release.handle_step_result(host, token, StepOutcome::Failed("executor panicked".to_owned()), now());
                        }
                    }
                    // Aborted on the core's request: the core already decided the host's state.
                    Some(Err(_)) | None => {}
                }
            }
            command = commands.recv(), if commands_open => {
                match command {
                    Some((command, reply)) => {
                        let result = release.handle_command(command, now());
                        let _ = reply.send(result);
                    }
                    None => commands_open = false,
                }
            }
            () = sleep_until(deadline) => {
                release.handle_timeout(now());
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}
