//! Dependency-ordered deployment, sans-IO: which application starts when, what a failure skips.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use plus_core::{AppCode, Timestamp};

use crate::core::{Action, ConfigError, Core, JobId, positive};
use crate::deadlines::Deadlines;

/// The timer class of deploys (all last `deploy_timeout`).
const DEPLOY_TIMER: usize = 0;
/// The timer class of health checks (all last `check_timeout`).
const CHECK_TIMER: usize = 1;
/// The timer class of re-checks due after a failed one (all wait `check_interval`).
const RECHECK_TIMER: usize = 2;
use crate::graph::{AppGraph, DependencyKind};

mod saved;
pub use saved::SavedDeployment;

/// How a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeployConfig {
    /// Applications being deployed or checked at once. Default 4.
    pub concurrency: usize,
    /// Extra health checks after a failed one (a manifest's `checkRetry`). Default 2.
    pub check_retries: u32,
    /// Time between health checks (a manifest's `checkInterval`). Default 30 s.
    pub check_interval: Duration,
    /// Deadline of one deploy. Default 10 minutes.
    pub deploy_timeout: Duration,
    /// Deadline of one health check. Default 1 minute.
    pub check_timeout: Duration,
}

impl DeployConfig {
    /// Checks that the settings can work.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero concurrency or a zero deploy or check timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("concurrency", self.concurrency == 0),
            ("deploy_timeout", self.deploy_timeout.is_zero()),
            ("check_timeout", self.check_timeout.is_zero()),
        ])
    }
}

impl Default for DeployConfig {
    fn default() -> Self {
        Self {
            concurrency: 4,
            check_retries: 2,
            check_interval: Duration::from_secs(30),
            deploy_timeout: Duration::from_secs(600),
            check_timeout: Duration::from_secs(60),
        }
    }
}

/// Where an application is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum AppState {
    /// Waiting for its dependencies (or a free slot).
    Waiting,
    /// Being deployed.
    Deploying,
    /// Deployed; health check `attempt` (from 1) running or due.
    Checking {
        /// The attempt.
        attempt: u32,
    },
    /// Deployed and healthy.
    Healthy,
    /// Deploy or health check failed.
    Failed {
        /// Why.
        reason: String,
    },
    /// Not deployed because a required dependency, directly or transitively, failed.
    Skipped {
        /// The application whose failure caused it.
        failed_dependency: AppCode,
    },
    /// Its deploy or check was running when the deployment was cancelled.
    Cancelled,
    /// Never started: the deployment was cancelled first.
    NotStarted,
}

impl AppState {
    /// Whether the application will not change state again.
    #[must_use]
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Waiting | Self::Deploying | Self::Checking { .. })
    }
}

/// What [`Action::Start`] runs in a deployment. Report its result with
/// [`Deployment::handle_result`] (or [`Core::handle_outcome`]) and the action's [`JobId`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum AppJob {
    /// Deploy the application.
    Deploy(AppCode),
    /// Health-check the application.
    Check {
        /// The application.
        app: AppCode,
        /// From 1.
        attempt: u32,
    },
}

impl AppJob {
    /// The application this job is for.
    #[must_use]
    pub fn app(&self) -> &AppCode {
        match self {
            Self::Deploy(app) | Self::Check { app, .. } => app,
        }
    }
}

/// What the driver must do in a deployment.
pub type DeployAction = Action<AppJob>;

/// What a person (or a program) can tell a running deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum DeployCommand {
    /// Stop starting new work, cancel what runs, and mark every application's final state.
    Cancel,
}

/// Progress of a deployment.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum DeployEvent {
    /// An application started deploying.
    Started(AppCode),
    /// Its deploy finished; health checks follow.
    Deployed(AppCode),
    /// A health check failed; another follows after the interval.
    CheckFailed {
        /// The application.
        app: AppCode,
        /// The attempt that failed (from 1).
        attempt: u32,
        /// Why.
        reason: String,
    },
    /// Healthy: its dependents may start.
    Healthy(AppCode),
    /// Failed for good.
    Failed {
        /// The application.
        app: AppCode,
        /// Why.
        reason: String,
    },
    /// Skipped because a required dependency failed.
    Skipped {
        /// The application.
        app: AppCode,
        /// The failed application it requires (directly or transitively).
        failed_dependency: AppCode,
    },
    /// An optional dependency failed; the application goes on without it.
    OptionalDependencyFailed {
        /// The application.
        app: AppCode,
        /// The failed optional dependency.
        dependency: AppCode,
    },
    /// Every application is in a final state.
    Finished,
}

/// The final (or current) state of every application, and the order they finished in.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DeploymentReport {
    /// Every application, in code order.
    pub apps: Vec<(AppCode, AppState)>,
    /// Indices into `apps` in the order they reached a final state.
    pub completion_order: Vec<usize>,
}

/// One log line per progress event: the events are the deployment's story.
fn trace_event(event: &DeployEvent) {
    match event {
        DeployEvent::Started(app) => tracing::info!(%app, "application deploy started"),
        DeployEvent::Deployed(app) => tracing::info!(%app, "application deployed; checking health"),
        DeployEvent::CheckFailed { app, attempt, reason } => {
            tracing::debug!(%app, attempt, reason, "health check failed; will retry");
        }
        DeployEvent::Healthy(app) => tracing::info!(%app, "application healthy"),
        DeployEvent::Failed { app, reason } => {
            tracing::warn!(%app, reason, "application failed");
        }
        DeployEvent::Skipped { app, failed_dependency } => {
            tracing::warn!(%app, %failed_dependency, "application skipped: a dependency it requires failed");
        }
        DeployEvent::OptionalDependencyFailed { app, dependency } => {
            tracing::info!(%app, %dependency, "an optional dependency failed; deploying anyway");
        }
        DeployEvent::Finished => tracing::info!("deployment finished"),
    }
}

impl DeploymentReport {
    /// One line per application in completion order, for people: `deployed api`, `failed db`,
    /// `skipped web (requires db)`, `cancelled api`, `not started web`.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.completion_order
            .iter()
            .map(|&i| {
                let (app, state) = &self.apps[i];
                match state {
                    AppState::Healthy => format!("deployed {app}"),
                    AppState::Failed { .. } => format!("failed {app}"),
                    AppState::Skipped { failed_dependency } => {
                        format!("skipped {app} (requires {failed_dependency})")
                    }
                    AppState::Cancelled => format!("cancelled {app}"),
                    AppState::NotStarted => format!("not started {app}"),
                    other => format!("{app}: {other:?}"),
                }
            })
            .collect()
    }
}

/// A running dependency-ordered deployment (sans-IO).
///
/// An application starts as soon as every required dependency is healthy and every optional one
/// has finished (not when its whole wave is done), up to the concurrency limit, smallest code
/// first among those ready.
#[derive(Debug)]
pub struct Deployment {
    graph: Arc<AppGraph>,
    config: DeployConfig,
    states: Vec<AppState>,
    /// Required dependencies not yet healthy, per application.
    waiting_required: Vec<u32>,
    /// Optional dependencies not yet finished, per application.
    waiting_optional: Vec<u32>,
    ready: BinaryHeap<Reverse<u32>>,
    in_progress: usize,
    /// The token of each application's running deploy, check or due re-check, if any.
    tokens: Vec<Option<u64>>,
    next_token: u64,
    /// Deadlines of running work ([`DEPLOY_TIMER`], [`CHECK_TIMER`]) and due re-checks
    /// ([`RECHECK_TIMER`]).
    timers: Deadlines<3>,
    actions: VecDeque<DeployAction>,
    events: VecDeque<DeployEvent>,
    /// The latest time the deployment was given.
    clock: Timestamp,
    record_events: bool,
    completion_order: Vec<usize>,
    cancelled: bool,
    finished_reported: bool,
}

impl Deployment {
    /// Starts deploying `graph` at `now`.
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`DeployConfig::validate`].
    pub fn new(
        graph: Arc<AppGraph>,
        config: DeployConfig,
        now: Timestamp,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        let n = graph.len();
        let mut waiting_required = vec![0; n];
        let mut waiting_optional = vec![0; n];
        for (i, (required, optional)) in
            waiting_required.iter_mut().zip(&mut waiting_optional).enumerate()
        {
            for (_, kind) in graph.dependencies(i) {
                match kind {
                    DependencyKind::Required => *required += 1,
                    DependencyKind::Optional => *optional += 1,
                }
            }
        }
        let ready = (0..n as u32)
            .filter(|&i| waiting_required[i as usize] == 0 && waiting_optional[i as usize] == 0)
            .map(Reverse)
            .collect();
        let mut deployment = Self {
            graph,
            config,
            states: vec![AppState::Waiting; n],
            waiting_required,
            waiting_optional,
            ready,
            in_progress: 0,
            tokens: vec![None; n],
            next_token: 1,
            timers: Deadlines::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            clock: now,
            record_events: true,
            completion_order: Vec::new(),
            cancelled: false,
            finished_reported: false,
        };
        deployment.pump(now);
        Ok(deployment)
    }

    /// The graph being deployed.
    #[must_use]
    pub fn graph(&self) -> &AppGraph {
        &self.graph
    }

    /// The state of application `index`.
    #[must_use]
    pub fn state(&self, index: usize) -> &AppState {
        &self.states[index]
    }

    /// Whether every application is in a final state.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        self.states.iter().all(AppState::is_final)
    }

    /// The next action.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<DeployAction> {
        self.actions.pop_front()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<DeployEvent> {
        self.events.pop_front()
    }

    /// When to call [`Deployment::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        let tokens = &self.tokens;
        self.timers.drop_ended(|job| tokens[job.slot as usize] != Some(job.token));
        self.timers.peek().map(|(at, ..)| at)
    }

    /// The report so far.
    #[must_use]
    pub fn report(&self) -> DeploymentReport {
        DeploymentReport {
            apps: self
                .graph
                .apps()
                .iter()
                .map(|a| a.code.clone())
                .zip(self.states.iter().cloned())
                .collect(),
            completion_order: self.completion_order.clone(),
        }
    }

    /// Stops (or restarts) recording progress events, for a host that does not read them.
    /// Actions, states and the report are unaffected.
    pub fn set_event_recording(&mut self, on: bool) {
        self.record_events = on;
        if !on {
            self.events.clear();
        }
    }

    fn emit(&mut self, event: DeployEvent) {
        trace_event(&event);
        if self.record_events {
            self.events.push_back(event);
        }
    }

    fn code(&self, app: usize) -> AppCode {
        self.graph.code(app).clone()
    }

    fn token(&mut self, app: usize) -> u64 {
        let token = self.next_token;
        self.next_token += 1;
        self.tokens[app] = Some(token);
        token
    }

    fn pump(&mut self, now: Timestamp) {
        while !self.cancelled && self.in_progress < self.config.concurrency {
            let Some(Reverse(app)) = self.ready.pop() else { break };
            self.start_deploy(app as usize, now);
        }
        if self.is_finished() && !self.finished_reported {
            self.finished_reported = true;
            self.emit(DeployEvent::Finished);
        }
    }

    fn start_deploy(&mut self, app: usize, now: Timestamp) {
        self.in_progress += 1;
        self.states[app] = AppState::Deploying;
        let token = self.token(app);
        let job = JobId { slot: app as u32, token };
        self.timers.push(DEPLOY_TIMER, now + self.config.deploy_timeout, job);
        self.actions.push_back(Action::Start { id: job, job: AppJob::Deploy(self.code(app)) });
        self.emit(DeployEvent::Started(self.code(app)));
    }

    fn start_check(&mut self, app: usize, attempt: u32, now: Timestamp) {
        self.states[app] = AppState::Checking { attempt };
        let token = self.token(app);
        let job = JobId { slot: app as u32, token };
        self.timers.push(CHECK_TIMER, now + self.config.check_timeout, job);
        let job = AppJob::Check { app: self.code(app), attempt };
        self.actions.push_back(Action::Start { id: JobId { slot: app as u32, token }, job });
    }

    fn finish(&mut self, app: usize, state: AppState) {
        self.states[app] = state;
        self.tokens[app] = None;
        self.completion_order.push(app);
    }

    fn became_healthy(&mut self, app: usize, now: Timestamp) {
        self.in_progress -= 1;
        self.finish(app, AppState::Healthy);
        self.emit(DeployEvent::Healthy(self.code(app)));
        let dependents: Vec<(usize, DependencyKind)> = self.graph.dependents(app).collect();
        for (k, kind) in dependents {
            match kind {
                DependencyKind::Required => self.waiting_required[k] -= 1,
                DependencyKind::Optional => self.waiting_optional[k] -= 1,
            }
            self.maybe_ready(k);
        }
        self.pump(now);
    }

    fn maybe_ready(&mut self, k: usize) {
        if self.states[k] == AppState::Waiting
            && self.waiting_required[k] == 0
            && self.waiting_optional[k] == 0
        {
            self.ready.push(Reverse(k as u32));
        }
    }

    /// `app` failed (or was skipped): skip everything that requires it, transitively; release
    /// what only optionally needed it.
    fn propagate_failure(&mut self, app: usize, root: usize) {
        let mut stack = vec![app];
        while let Some(failed) = stack.pop() {
            let dependents: Vec<(usize, DependencyKind)> = self.graph.dependents(failed).collect();
            for (k, kind) in dependents {
                match kind {
                    DependencyKind::Required => {
                        if self.states[k] == AppState::Waiting {
                            self.finish(
                                k,
                                AppState::Skipped { failed_dependency: self.code(root) },
                            );
                            self.emit(DeployEvent::Skipped {
                                app: self.code(k),
                                failed_dependency: self.code(root),
                            });
                            stack.push(k);
                        }
                    }
                    DependencyKind::Optional => {
                        self.waiting_optional[k] -= 1;
                        if self.states[k] == AppState::Waiting {
                            self.emit(DeployEvent::OptionalDependencyFailed {
                                app: self.code(k),
                                dependency: self.code(failed),
                            });
                        }
                        self.maybe_ready(k);
                    }
                }
            }
        }
    }

    fn failed(&mut self, app: usize, reason: String, now: Timestamp) {
        self.in_progress -= 1;
        self.finish(app, AppState::Failed { reason: reason.clone() });
        self.emit(DeployEvent::Failed { app: self.code(app), reason });
        self.propagate_failure(app, app);
        self.pump(now);
    }

    /// Reports the result of the deploy or check started with `token`.
    pub fn handle_result(
        &mut self,
        app: usize,
        token: u64,
        result: Result<(), String>,
        now: Timestamp,
    ) {
        self.clock = self.clock.max(now);
        if self.tokens.get(app) != Some(&Some(token)) {
            return;
        }
        match (self.states[app].clone(), result) {
            (AppState::Deploying, Ok(())) => {
                self.emit(DeployEvent::Deployed(self.code(app)));
                self.start_check(app, 1, now);
            }
            (AppState::Deploying, Err(reason)) => {
                self.failed(app, format!("deploy failed: {reason}"), now);
            }
            (AppState::Checking { .. }, Ok(())) => self.became_healthy(app, now),
            (AppState::Checking { attempt }, Err(reason)) => {
                self.check_failed(app, attempt, reason, now);
            }
            _ => {}
        }
    }

    fn check_failed(&mut self, app: usize, attempt: u32, reason: String, now: Timestamp) {
        if attempt > self.config.check_retries {
            let tries = attempt;
            self.failed(app, format!("health check failed {tries} time(s), last: {reason}"), now);
        } else {
            self.emit(DeployEvent::CheckFailed { app: self.code(app), attempt, reason });
            // The next check is due after the interval; the slot stays taken meanwhile.
            let token = self.token(app);
            self.states[app] = AppState::Checking { attempt: attempt + 1 };
            let job = JobId { slot: app as u32, token };
            self.timers.push(RECHECK_TIMER, now + self.config.check_interval, job);
        }
    }

    /// Fails work past its deadline and starts health checks that are due.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.clock = self.clock.max(now);
        while let Some((at, class, JobId { slot, token })) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let app = slot as usize;
            if self.tokens[app] != Some(token) {
                continue;
            }
            let check_due = class == RECHECK_TIMER;
            match (check_due, self.states[app].clone()) {
                (true, AppState::Checking { attempt }) => self.start_check(app, attempt, now),
                (false, AppState::Deploying) => {
                    self.actions.push_back(Action::Cancel(JobId { slot: app as u32, token }));
                    let limit = self.config.deploy_timeout;
                    self.failed(app, format!("deploy timed out after {}s", limit.as_secs()), now);
                }
                (false, AppState::Checking { attempt }) => {
                    self.actions.push_back(Action::Cancel(JobId { slot: app as u32, token }));
                    let limit = self.config.check_timeout;
                    self.check_failed(
                        app,
                        attempt,
                        format!("timed out after {}s", limit.as_secs()),
                        now,
                    );
                }
                _ => {}
            }
        }
    }

    /// Stops starting new work, cancels what runs, and marks every application's final state.
    pub fn cancel(&mut self, now: Timestamp) {
        self.clock = self.clock.max(now);
        self.cancelled = true;
        for app in 0..self.states.len() {
            match self.states[app] {
                AppState::Deploying | AppState::Checking { .. } => {
                    if let Some(token) = self.tokens[app] {
                        self.actions.push_back(Action::Cancel(JobId { slot: app as u32, token }));
                    }
                    self.in_progress -= 1;
                    self.finish(app, AppState::Cancelled);
                }
                AppState::Waiting => self.finish(app, AppState::NotStarted),
                _ => {}
            }
        }
        self.timers.clear();
        self.ready.clear();
        if !self.finished_reported {
            self.finished_reported = true;
            self.emit(DeployEvent::Finished);
        }
    }
}

impl Core for Deployment {
    type Job = AppJob;
    type Outcome = Result<(), String>;
    type Event = DeployEvent;
    type Command = DeployCommand;
    type Rejection = std::convert::Infallible;
    type Report = DeploymentReport;
    type Saved = SavedDeployment;

    fn poll_action(&mut self) -> Option<DeployAction> {
        Deployment::poll_action(self)
    }
    fn poll_event(&mut self) -> Option<DeployEvent> {
        Deployment::poll_event(self)
    }
    fn poll_timeout(&mut self) -> Option<Timestamp> {
        Deployment::poll_timeout(self)
    }
    fn handle_outcome(&mut self, id: JobId, outcome: Result<(), String>, now: Timestamp) {
        self.handle_result(id.slot as usize, id.token, outcome, now);
    }
    fn handle_command(
        &mut self,
        command: DeployCommand,
        now: Timestamp,
    ) -> Result<(), std::convert::Infallible> {
        match command {
            DeployCommand::Cancel => self.cancel(now),
        }
        Ok(())
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        Deployment::handle_timeout(self, now);
    }
    fn now(&self) -> Timestamp {
        self.clock
    }
    fn is_finished(&self) -> bool {
        Deployment::is_finished(self)
    }
    fn report(&self) -> DeploymentReport {
        Deployment::report(self)
    }
    fn set_event_recording(&mut self, on: bool) {
        Deployment::set_event_recording(self, on);
    }
    fn failed_outcome(reason: String) -> Result<(), String> {
        Err(reason)
    }

    fn save(&self) -> SavedDeployment {
        Deployment::save(self)
    }
}
