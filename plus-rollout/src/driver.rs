//! The tokio driver (feature `tokio`): runs any rollout [`Core`] against a job runner. It owns
//! its jobs, timers and channels and makes no rollout decisions.
//!
//! Jobs run concurrently on the driver's own task, none spawned: a deploy step waits on a
//! host far more than it computes, and a spawn per step cost more than most steps' own work
//! (BENCHMARKS.md). A job must therefore not block its thread; give blocking work to
//! `tokio::task::spawn_blocking` inside the job.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{AbortHandle, Abortable, Aborted};
use futures::stream::FuturesUnordered;
use futures::{FutureExt, Stream, StreamExt};
use plus_core::Timestamp;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use crate::core::{Action, Core, JobId};
use crate::store::{StateStore, StoreError};

/// A job's future, as the driver runs it.
pub type JobFuture<O> = Pin<Box<dyn Future<Output = O> + Send>>;

/// A job in flight in the driver: its id, and its outcome, its panic, or its cancellation.
type RunningJob<O> =
    Pin<Box<dyn Future<Output = (JobId, Result<std::thread::Result<O>, Aborted>)> + Send>>;

/// What a handle asks of its driver.
enum Request<C, R, S> {
    Command(C, oneshot::Sender<Result<(), R>>),
    Status(oneshot::Sender<S>),
}

/// Why a command could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CommandError<R> {
    /// The core does not take this command now.
    #[error(transparent)]
    Rejected(R),
    /// The core is over and its driver has stopped.
    #[error("the rollout has ended")]
    Ended,
}

/// Sends commands to a running core and asks for its report so far. Cheap to clone.
pub struct Handle<C, R, S> {
    requests: mpsc::UnboundedSender<Request<C, R, S>>,
}

impl<C, R, S> std::fmt::Debug for Handle<C, R, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handle").field("ended", &self.requests.is_closed()).finish()
    }
}

impl<C, R, S> Clone for Handle<C, R, S> {
    fn clone(&self) -> Self {
        Self { requests: self.requests.clone() }
    }
}

impl<C, R, S> Handle<C, R, S> {
    /// Applies `command` and waits until the core has taken it.
    ///
    /// # Errors
    /// [`CommandError::Rejected`] when it does not apply now, [`CommandError::Ended`] after the
    /// driver stopped.
    pub async fn command(&self, command: C) -> Result<(), CommandError<R>> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Command(command, reply)).map_err(|_| CommandError::Ended)?;
        answer.await.map_err(|_| CommandError::Ended)?.map_err(CommandError::Rejected)
    }

    /// The core's report now (a release's phase and every host's state, a deployment's
    /// applications), taken between two of its steps: `None` once the driver has stopped,
    /// when the task's result holds the final one.
    pub async fn status(&self) -> Option<S> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(Request::Status(reply)).ok()?;
        answer.await.ok()
    }
}

/// A core's progress, as a stream of events. Ends when the core does.
///
/// Events travel in batches (one per round of outcomes the driver hands to the core) and are
/// handed out one by one.
/// Dropping the stream tells the driver to stop recording events.
#[derive(Debug)]
pub struct Events<E> {
    batches: mpsc::UnboundedReceiver<Vec<E>>,
    buffer: VecDeque<E>,
}

impl<E> Events<E> {
    /// The next event, or `None` once the core is over and every event was handed out.
    pub async fn next(&mut self) -> Option<E> {
        std::future::poll_fn(|cx| self.poll_event(cx)).await
    }

    fn poll_event(&mut self, cx: &mut Context<'_>) -> Poll<Option<E>> {
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

impl<E> Stream for Events<E> {
    type Item = E;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<E>> {
        // `Events` holds no self-references: it is `Unpin` whenever `E` is, and the buffer
        // is only ever moved out of by value.
        Pin::new(&mut *self).get_mut().poll_event(cx)
    }
}

impl<E> Unpin for Events<E> {}

/// What [`spawn`] returns: the command handle, the event stream, and the task that resolves to
/// the final report once the core is finished.
pub type Spawned<C> = (
    Handle<<C as Core>::Command, <C as Core>::Rejection, <C as Core>::Report>,
    Events<<C as Core>::Event>,
    JoinHandle<<C as Core>::Report>,
);

/// Runs `core` on the current tokio runtime, starting each job with `run`.
///
/// The driver continues the core's own clock ([`Core::now`]): a core built or restored at any
/// time keeps its deadlines relative to that time. Jobs run concurrently on the driver's task
/// (see the module docs): a job whose future finishes on its first poll is reported at once; a
/// job that panics is reported as [`Core::failed_outcome`]; a cancelled job's future is dropped.
pub fn spawn<C, F>(core: C, run: F) -> Spawned<C>
where
    C: Core + Send + 'static,
    C::Job: Send,
    C::Outcome: Send + 'static,
    C::Event: Send + 'static,
    C::Command: Send + 'static,
    C::Rejection: Send + 'static,
    C::Report: Send + 'static,
    F: FnMut(C::Job) -> JobFuture<C::Outcome> + Send + 'static,
{
    launch::<C, _, _, _>(move |requests, events| async move {
        let Ok(report) = drive(core, run, requests, events, NoSaving).await;
        report
    })
}

/// What [`spawn_saved`] returns: as [`Spawned`], with a task that ends in an error when the
/// state could not be saved (another controller took the rollout over, or the store failed).
pub type SpawnedSaved<C> = (
    Handle<<C as Core>::Command, <C as Core>::Rejection, <C as Core>::Report>,
    Events<<C as Core>::Event>,
    JoinHandle<Result<<C as Core>::Report, StoreError>>,
);

/// As [`spawn`], keeping the core's state in `store` under `key` as it goes: the state is
/// written whenever the core changed, before any step it asked for starts (so a step is
/// recorded as started before it starts) and before a step's outcome leads to anything else
/// (so it is recorded before it is acted on). `version` is the version of the state in the
/// store this core was restored from (`None` for a new rollout). A write that finds another
/// version stops the driver, which cancels its running jobs and ends with
/// [`StoreError::Stale`]: two controllers never both advance one rollout.
pub fn spawn_saved<C, F>(
    core: C,
    run: F,
    store: Arc<dyn StateStore<C::Saved>>,
    key: String,
    version: Option<u64>,
) -> SpawnedSaved<C>
where
    C: Core + Send + 'static,
    C::Job: Send,
    C::Outcome: Send + 'static,
    C::Event: Send + 'static,
    C::Command: Send + 'static,
    C::Rejection: Send + 'static,
    C::Report: Send + 'static,
    F: FnMut(C::Job) -> JobFuture<C::Outcome> + Send + 'static,
{
    let saving = Saving { store, key, version };
    launch::<C, _, _, _>(move |requests, events| drive(core, run, requests, events, saving))
}

/// A handle, an event stream and a driver task ending in `T`.
type Launched<C, T> = (
    Handle<<C as Core>::Command, <C as Core>::Rejection, <C as Core>::Report>,
    Events<<C as Core>::Event>,
    JoinHandle<T>,
);

/// The channels between a handle, an event stream and a driver task, and the task started
/// inside the caller's span (the driver and its jobs log in it: a release's application, say).
fn launch<C, T, D, Fut>(driver: D) -> Launched<C, T>
where
    C: Core,
    T: Send + 'static,
    D: FnOnce(
        mpsc::UnboundedReceiver<Request<C::Command, C::Rejection, C::Report>>,
        mpsc::UnboundedSender<Vec<C::Event>>,
    ) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let (request_tx, request_rx) = mpsc::unbounded_channel();
    let (event_tx, event_rx) = mpsc::unbounded_channel();
    let task = tokio::spawn(driver(request_rx, event_tx).in_current_span());
    (Handle { requests: request_tx }, Events { batches: event_rx, buffer: VecDeque::new() }, task)
}

/// How the driver keeps the core's state: not at all, or in a store.
trait Save<S>: Send {
    type Error;
    /// Whether it keeps anything: without a store the state is never built (a whole copy of
    /// the rollout per change made a 100,000-host release quadratic).
    const KEEPS: bool = true;
    fn save(&mut self, state: S) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

struct NoSaving;

impl<S: Send> Save<S> for NoSaving {
    type Error = Infallible;
    const KEEPS: bool = false;
    async fn save(&mut self, _: S) -> Result<(), Infallible> {
        Ok(())
    }
}

struct Saving<S> {
    store: Arc<dyn StateStore<S>>,
    key: String,
    version: Option<u64>,
}

impl<S: Send + Sync + 'static> Save<S> for Saving<S> {
    type Error = StoreError;
    async fn save(&mut self, state: S) -> Result<(), StoreError> {
        let saved = self.store.save(&self.key, &state, self.version).await;
        self.version = Some(saved.map_err(|e| match e {
            // A new rollout under a key that already holds one: not a takeover, a reused key.
            StoreError::Stale { key, expected: None, found: Some(found) } => {
                StoreError::KeyInUse { key, found }
            }
            other => other,
        })?);
        Ok(())
    }
}

/// The core's clock, continued on tokio's (paused in tests: they run in simulated time).
struct Clock {
    origin: Instant,
    start: Timestamp,
}

impl Clock {
    fn now(&self) -> Timestamp {
        self.start + Instant::now().saturating_duration_since(self.origin)
    }

    /// `None` past what an `Instant` can hold: a deadline that is never reached.
    fn instant(&self, at: Timestamp) -> Option<Instant> {
        self.origin.checked_add(at.saturating_duration_since(self.start))
    }
}

async fn drive<C, F, S>(
    mut core: C,
    mut run: F,
    mut requests: mpsc::UnboundedReceiver<Request<C::Command, C::Rejection, C::Report>>,
    events: mpsc::UnboundedSender<Vec<C::Event>>,
    mut saving: S,
) -> Result<C::Report, S::Error>
where
    C: Core,
    C::Outcome: Send + 'static,
    F: FnMut(C::Job) -> JobFuture<C::Outcome>,
    S: Save<C::Saved>,
{
    let clock = Clock { origin: Instant::now(), start: core.now() };
    let mut jobs: FuturesUnordered<RunningJob<C::Outcome>> = FuturesUnordered::new();
    let mut running: HashMap<u32, (u64, AbortHandle)> = HashMap::new();
    let mut ready: Vec<(JobId, C::Outcome)> = Vec::new();
    let mut requests_open = true;
    // Whether the core changed since its state was last saved (its start counts).
    let mut changed = true;
    // One timer for the driver's life, moved only to an earlier deadline: registering a timer
    // costs a wake of the runtime's I/O driver (a syscall), and the core's next deadline moves
    // after nearly every outcome. A timer left at a deadline that went away fires once to no
    // effect: the cores act on deadlines that are due only.
    let timer = tokio::time::sleep_until(Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        loop {
            if changed && S::KEEPS {
                // Before any step it asked for starts, and before an outcome leads anywhere.
                // The jobs go on meanwhile; what they finish waits for the save.
                let save = saving.save(core.save());
                tokio::pin!(save);
                let saved = loop {
                    tokio::select! {
                        saved = &mut save => break saved,
                        Some(ended) = jobs.next(), if !jobs.is_empty() => {
                            ready.extend(settle::<C>(ended, &mut running));
                        }
                    }
                };
                // On failure, returning drops the jobs, which cancels them.
                saved?;
                changed = false;
            }
            while let Some(action) = core.poll_action() {
                match action {
                    Action::Start { id, job } => {
                        let mut fut = run(job);
                        let waker = std::task::Waker::noop();
                        // The first poll is guarded as the later ones are: an executor that
                        // panics before its first await fails its step, not the driver.
                        let first = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                            fut.as_mut().poll(&mut Context::from_waker(waker))
                        }));
                        match first {
                            Ok(Poll::Ready(outcome)) => ready.push((id, outcome)),
                            Err(_) => ready.push((id, panicked::<C>(id))),
                            Ok(Poll::Pending) => {
                                let (abort, registration) = AbortHandle::new_pair();
                                let guarded = std::panic::AssertUnwindSafe(fut).catch_unwind();
                                // No span of its own: jobs are polled inside the driver's
                                // poll, which runs in the caller's span (see `launch`).
                                let job = Abortable::new(guarded, registration)
                                    .map(move |ended| (id, ended));
                                jobs.push(Box::pin(job));
                                running.insert(id.slot, (id.token, abort));
                            }
                        }
                    }
                    Action::Cancel(id) => {
                        if running.get(&id.slot).is_some_and(|(token, _)| *token == id.token)
                            && let Some((_, handle)) = running.remove(&id.slot)
                        {
                            handle.abort();
                        }
                    }
                }
            }
            if ready.is_empty() {
                break;
            }
            let at = clock.now();
            for (id, outcome) in ready.drain(..) {
                core.handle_outcome(id, outcome, at);
            }
            changed = true;
            // Steps that end on their first poll can keep this loop going for a whole
            // release: their events go out as they come, not all at the end, and the driver
            // gives its thread up when its task's budget is spent, as any tokio task should.
            deliver_events(&mut core, &events);
            tokio::task::coop::consume_budget().await;
            // And a pause or an abort sent meanwhile takes effect before the next round.
            while requests_open {
                match requests.try_recv() {
                    Ok(request) => changed |= answer(&mut core, request, &clock),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => requests_open = false,
                }
            }
        }
        deliver_events(&mut core, &events);
        if core.is_finished() && jobs.is_empty() {
            return Ok(core.report());
        }
        if let Some(deadline) = core.poll_timeout().and_then(|at| clock.instant(at))
            && armed.is_none_or(|at| deadline < at)
        {
            timer.as_mut().reset(deadline);
            armed = Some(deadline);
        }
        tokio::select! {
            Some(ended) = jobs.next(), if !jobs.is_empty() => {
                // The others that ended meanwhile go with it: one clock read and one event
                // batch for all of them (the loop's top hands `ready` to the core).
                ready.extend(settle::<C>(ended, &mut running));
                while let Some(Some(ended)) = jobs.next().now_or_never() {
                    ready.extend(settle::<C>(ended, &mut running));
                }
            },
            request = requests.recv(), if requests_open => match request {
                Some(request) => changed |= answer(&mut core, request, &clock),
                None => requests_open = false,
            },
            () = &mut timer, if armed.is_some() => {
                armed = None;
                core.handle_timeout(clock.now());
                changed = true;
            }
        }
    }
}

/// Answers a handle's request; whether the core may have changed.
fn answer<C: Core>(
    core: &mut C,
    request: Request<C::Command, C::Rejection, C::Report>,
    clock: &Clock,
) -> bool {
    match request {
        Request::Command(command, reply) => {
            let _ = reply.send(core.handle_command(command, clock.now()));
            true
        }
        Request::Status(reply) => {
            let _ = reply.send(core.report());
            false
        }
    }
}

/// Hands the core's events so far to the stream in one batch; stops their recording once
/// nobody listens (progress is optional).
fn deliver_events<C: Core>(core: &mut C, events: &mpsc::UnboundedSender<Vec<C::Event>>) {
    if events.is_closed() {
        core.set_event_recording(false);
        return;
    }
    let mut batch = Vec::new();
    while let Some(event) = core.poll_event() {
        batch.push(event);
    }
    if !batch.is_empty() && events.send(batch).is_err() {
        core.set_event_recording(false);
    }
}

/// What a job that ended means for the core: its outcome (a panic counts as a failure), or
/// nothing for a job cancelled on the core's request (the core already decided its state).
fn settle<C: Core>(
    (id, ended): (JobId, Result<std::thread::Result<C::Outcome>, Aborted>),
    running: &mut HashMap<u32, (u64, AbortHandle)>,
) -> Option<(JobId, C::Outcome)> {
    let result = ended.ok()?;
    if running.get(&id.slot).is_some_and(|(token, _)| *token == id.token) {
        running.remove(&id.slot);
    }
    Some((id, result.unwrap_or_else(|_| panicked::<C>(id))))
}

/// The outcome of a job whose future panicked: a failure, logged.
fn panicked<C: Core>(id: JobId) -> C::Outcome {
    tracing::warn!(slot = id.slot, "executor panicked; its job counts as failed");
    C::failed_outcome("executor panicked".to_owned())
}
