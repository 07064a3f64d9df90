//! The release core: a sans-IO state machine. Commands and step results go in with `now`;
//! actions (start or cancel a step), events and the next deadline come out.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};

use crate::analysis::{AnalysisRun, Verdict};
use crate::brake::{BrakePolicy, BrakeView, FailureRate, HostFinish};
use crate::core::{Action, ConfigError, Core, JobId, positive};
use crate::deadlines::Deadlines;

/// The timer class of every step but Verify (all last `step_timeout`).
const STEP_TIMER: usize = 0;
/// The timer class of Verify (all last `verify_timeout`).
const VERIFY_TIMER: usize = 1;
/// The job slot of analysis samples (hosts use their index).
const ANALYSIS_SLOT: u32 = u32::MAX;
/// Set in the slot of a job of the release's own rollback (whose hosts have indices of their
/// own): a late result of the release's steps is never taken for the rollback's.
const ROLLBACK_BIT: u32 = 1 << 30;
use crate::plan::{Exclusion, Plan};

mod saved;
pub use saved::{RestoreError, SavedRelease};

/// A step of a host's deployment, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Step {
    /// Is the host already on the target version and healthy? If so it is skipped.
    Precheck,
    /// Take the host out of traffic.
    Markdown,
    /// Fetch the package.
    Download,
    /// Install it.
    Install,
    /// Start the application and wait for its health check, within the startup deadline.
    Verify,
    /// Put the host back into traffic.
    Markup,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 6] =
        [Step::Precheck, Step::Markdown, Step::Download, Step::Install, Step::Verify, Step::Markup];

    /// The step's name in logs and metric labels: `precheck`, `markdown`, ...
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Step::Precheck => "precheck",
            Step::Markdown => "markdown",
            Step::Download => "download",
            Step::Install => "install",
            Step::Verify => "verify",
            Step::Markup => "markup",
        }
    }

    fn next(self) -> Option<Step> {
        match self {
            Step::Precheck => Some(Step::Markdown),
            Step::Markdown => Some(Step::Download),
            Step::Download => Some(Step::Install),
            Step::Install => Some(Step::Verify),
            Step::Verify => Some(Step::Markup),
            Step::Markup => None,
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// What a host-supplied executor reports for one step.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum StepOutcome {
    /// The step succeeded.
    Done,
    /// Only from [`Step::Precheck`]: the host already runs the target version and is healthy.
    AlreadyOnTarget,
    /// The step failed; the text says why.
    Failed(String),
    /// What a [`ReleaseJob::Measure`] got from the metric provider: a value, no data, or an
    /// error.
    Measured(crate::analysis::Measurement),
    /// Only from [`Step::Markdown`] and [`Step::Markup`]: the call to the traffic system was
    /// not made, because that dependency is switched to degraded or its circuit breaker is
    /// open (Tars' degrade; [`crate::degrade`]). The step counts as done, so an emergency
    /// release goes on without the broken system; the host still counts as out of traffic
    /// from its Markdown to its Markup, as any; and the release records the call not made
    /// ([`EventKind::Degraded`], [`ReleaseReport::degraded`]), never skipping it in silence.
    Degraded(String),
}

/// Where a host is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum HostState {
    /// Not started yet.
    Pending,
    /// Running a step.
    Running(Step),
    /// A bastion host that passed Verify and waits, out of traffic, for a person to bake it.
    AwaitingBake,
    /// Deployed and back in traffic.
    Succeeded,
    /// Skipped: already on the target version and healthy.
    AlreadyOnTarget,
    /// A step failed (or timed out); the host stays out of traffic if it was marked down.
    Failed {
        /// The step.
        step: Step,
        /// Why.
        reason: String,
    },
    /// A running step was cancelled (abort, or a person failing the release).
    Cancelled {
        /// The step that was running.
        step: Step,
    },
    /// Never started: cancelled by `stop_on_failure`, an abort, or a failed release.
    NotStarted,
}

impl fmt::Display for HostState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pending => f.write_str("pending"),
            Self::Running(step) => write!(f, "running {step}"),
            Self::AwaitingBake => f.write_str("awaiting bake"),
            Self::Succeeded => f.write_str("succeeded"),
            Self::AlreadyOnTarget => f.write_str("already on target"),
            Self::Failed { step, reason } => write!(f, "failed at {step}: {reason}"),
            Self::Cancelled { step } => write!(f, "cancelled during {step}"),
            Self::NotStarted => f.write_str("not started"),
        }
    }
}

impl HostState {
    /// The state's name without its details, for metric labels: `succeeded`, `failed`, ...
    #[must_use]
    pub const fn name(&self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running(_) => "running",
            Self::AwaitingBake => "awaiting_bake",
            Self::Succeeded => "succeeded",
            Self::AlreadyOnTarget => "already_on_target",
            Self::Failed { .. } => "failed",
            Self::Cancelled { .. } => "cancelled",
            Self::NotStarted => "not_started",
        }
    }

    /// Whether the host will not change state again (unless retried).
    #[must_use]
    pub fn is_final(&self) -> bool {
        !matches!(self, Self::Pending | Self::Running(_) | Self::AwaitingBake)
    }

    /// Whether the host ended on the target version.
    #[must_use]
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Succeeded | Self::AlreadyOnTarget)
    }
}

/// How batches after the bastion start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Mode {
    /// Each batch starts by itself after a wait.
    Automatic {
        /// Wait between batches.
        wait: Duration,
        /// A shorter (or longer) wait from the third batch on, once confidence has grown.
        later_wait: Option<Duration>,
    },
    /// Each batch starts on a person's [`Command::Continue`].
    Manual,
}

/// How a release runs.
#[derive(Debug, Clone)]
pub struct ReleaseConfig {
    /// The version being released.
    pub target: Version,
    /// Automatic or manual batches. Default automatic with a 30 s wait.
    pub mode: Mode,
    /// Hosts of a batch running at once. Default 6 (the Meituan Plus talk's controller).
    pub parallelism: usize,
    /// On the first failure in a batch, cancel the hosts not yet started (running ones finish).
    /// Default false ("quick and dirty": failures do not stop the rest of the batch).
    pub stop_on_failure: bool,
    /// Deadline of every step but Verify. Default 5 minutes.
    pub step_timeout: Duration,
    /// Deadline of Verify: the application's startup deadline. Default 10 minutes.
    pub verify_timeout: Duration,
    /// Treat a failed Verify as passed (the Ctrip release talk's "ignore verify"). Default false.
    pub ignore_verify: bool,
    /// The brake checked before every batch. Default [`FailureRate`] at the plan's max pull-out
    /// ratio ([`PlanConfig::max_ratio`](crate::PlanConfig::max_ratio), given once, there).
    pub brake: Arc<dyn BrakePolicy>,
    /// Metric checks run before every batch after the first thing deployed (the bastion, or
    /// batch 1): a batch starts only once they pass; a failing or inconclusive verdict brakes
    /// the release with the check's reason (see [`crate::analysis`]). Each sample is a
    /// [`ReleaseJob::Measure`]. Default none.
    pub analysis: Vec<crate::analysis::Check>,
    /// How long the release, and each wait for a person, may last. Default none.
    pub deadlines: ReleaseDeadlines,
    /// What the release does when it brakes on failures or on a failing analysis, or fails
    /// on its deadline. Default [`OnFailure::Stop`].
    pub on_failure: OnFailure,
}

/// What a release does when it goes wrong by itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OnFailure {
    /// Brake and wait for a person (fail, on a deadline).
    #[default]
    Stop,
    /// Roll back at once, by itself, every host it changed: Tars' rollback plan
    /// ([`rollback_plan`](crate::rollback_plan): no bastion, half of the hosts at a time,
    /// never more than the release's largest batch), to `to`, the version the hosts ran
    /// before. A host that kept that version switches back without downloading it again
    /// (the executor's business: the agent keeps several versions). Not on an inconclusive
    /// analysis (that pauses for a person), nor when a person fails or aborts the release.
    /// The report's [`ReleaseReport::rollback`] says what was rolled back; the outcome is
    /// [`Outcome::RolledBack`].
    RollBack {
        /// The version to put back.
        to: Version,
    },
}

/// How long a release may take, and what it does when that time is up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReleaseDeadlines {
    /// The whole release, from its start (kept across a takeover).
    pub release: Option<Duration>,
    /// Each wait for a person (bake, continue, a brake), from the moment it began.
    pub waiting: Option<Duration>,
    /// What happens when one passes.
    pub on_expiry: OnDeadline,
}

/// What a release does when a deadline passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum OnDeadline {
    /// Pause (running steps finish; nothing new starts until resumed) and say why.
    #[default]
    Pause,
    /// Stop as failed: running steps cancelled, the report says which deadline passed.
    Fail,
}

impl ReleaseConfig {
    /// Checks that the settings can work.
    ///
    /// # Errors
    /// [`ConfigError`] for a zero parallelism or a zero step or Verify timeout.
    pub fn validate(&self) -> Result<(), ConfigError> {
        positive(&[
            ("parallelism", self.parallelism == 0),
            ("step_timeout", self.step_timeout.is_zero()),
            ("verify_timeout", self.verify_timeout.is_zero()),
            ("analysis check count", self.analysis.iter().any(|c| c.count == 0)),
            ("deadlines.release", self.deadlines.release.is_some_and(|d| d.is_zero())),
            ("deadlines.waiting", self.deadlines.waiting.is_some_and(|d| d.is_zero())),
        ])
    }

    /// Defaults for releasing `target`.
    #[must_use]
    pub fn new(target: Version) -> Self {
        Self {
            target,
            mode: Mode::Automatic { wait: Duration::from_secs(30), later_wait: None },
            parallelism: 6,
            stop_on_failure: false,
            step_timeout: Duration::from_secs(300),
            verify_timeout: Duration::from_secs(600),
            ignore_verify: false,
            brake: Arc::new(FailureRate::default()),
            analysis: Vec::new(),
            deadlines: ReleaseDeadlines::default(),
            on_failure: OnFailure::Stop,
        }
    }

    /// Tars' (Ctrip's release system) rollback: no waits (pair it with [`PlanConfig::rollback`], which has no
    /// bastion and 50% batches).
    ///
    /// [`PlanConfig::rollback`]: crate::PlanConfig::rollback
    #[must_use]
    pub fn rollback(target: Version) -> Self {
        Self {
            mode: Mode::Automatic { wait: Duration::ZERO, later_wait: None },
            ..Self::new(target)
        }
    }
}

/// What a person can tell a release at any time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Command {
    /// Start no new host and no new batch until resumed; running hosts finish their steps.
    Pause,
    /// Undo a pause.
    Resume,
    /// Start the next batch: in manual mode, while waiting between batches, or, when braked,
    /// anyway.
    Continue,
    /// Put the verified bastion back into traffic and go on with the batches.
    Bake,
    /// Stop now: cancel running steps, start nothing more, report every host. Idempotent.
    Abort,
    /// Run again every host that did not succeed (never one that did), then go on.
    Retry,
    /// A person marks the release failed: like abort, and it cannot be retried.
    Fail,
}

/// Why a command was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot {command:?} now: {reason}")]
pub struct CommandRejected {
    /// The command.
    pub command: Command,
    /// Why not.
    pub reason: String,
}

/// Which batch: the bastion, or batch `n` after it (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum BatchLabel {
    /// The bastion's deployment up to Verify.
    Bastion,
    /// The bastion's Markup after bake.
    Bake,
    /// Batch `n` (from 1).
    Batch(usize),
    /// A retry of hosts that did not succeed.
    Retry,
}

impl fmt::Display for BatchLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Bastion => f.write_str("bastion"),
            Self::Bake => f.write_str("bake"),
            Self::Batch(n) => write!(f, "batch {n}"),
            Self::Retry => f.write_str("retry"),
        }
    }
}

/// How a release ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Outcome {
    /// Every planned host is on the target version.
    Succeeded,
    /// It ran to the end with failed hosts, or a person marked it failed.
    Failed(String),
    /// A person aborted it.
    Aborted,
    /// It went wrong and rolled back what it had changed ([`OnFailure::RollBack`]).
    RolledBack {
        /// What went wrong.
        reason: String,
        /// Hosts put back on the previous version.
        hosts: usize,
        /// Hosts whose rollback failed.
        failed: usize,
    },
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Succeeded => f.write_str("succeeded"),
            Self::Failed(reason) => write!(f, "failed: {reason}"),
            Self::Aborted => f.write_str("aborted"),
            Self::RolledBack { reason, hosts, failed: 0 } => {
                write!(f, "rolled back {hosts} host(s) after: {reason}")
            }
            Self::RolledBack { reason, hosts, failed } => write!(
                f,
                "rolled back {hosts} host(s), {failed} of them failed to roll back, after: {reason}"
            ),
        }
    }
}

/// Where the release is.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Phase {
    /// Running a batch (or the bastion, bake or a retry).
    Running(BatchLabel),
    /// The bastion passed Verify; waiting for [`Command::Bake`].
    AwaitingBake,
    /// Waiting before batch `next` (from 1).
    Waiting {
        /// The batch that starts next.
        next: usize,
        /// When it starts (unless paused).
        until: Timestamp,
    },
    /// Manual mode: waiting for [`Command::Continue`] to start batch `next`.
    AwaitingContinue {
        /// The batch that starts next.
        next: usize,
    },
    /// The brake tripped; waiting for retry, continue or abort.
    Braked {
        /// Why.
        reason: String,
    },
    /// Running the analysis checks before batch `next` (from 1).
    Analyzing {
        /// The batch that starts once they pass.
        next: usize,
    },
    /// Rolling back what it changed ([`OnFailure::RollBack`]); commands go to the rollback.
    RollingBack {
        /// What went wrong.
        reason: String,
    },
    /// Over.
    Finished(Outcome),
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running(label) => write!(f, "running the {label}"),
            Self::AwaitingBake => f.write_str("waiting for bake"),
            Self::Waiting { next, until } => write!(f, "waiting until {until} before batch {next}"),
            Self::AwaitingContinue { next } => {
                write!(f, "waiting for continue before batch {next}")
            }
            Self::Braked { reason } => write!(f, "braked: {reason}"),
            Self::Analyzing { next } => write!(f, "analyzing before batch {next}"),
            Self::RollingBack { reason } => write!(f, "rolling back after: {reason}"),
            Self::Finished(outcome) => write!(f, "finished: {outcome}"),
        }
    }
}

/// What a release asks its host to run: a step on a host, or a sample of an analysis check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReleaseJob {
    /// A step on a host.
    Step(StepJob),
    /// A sample of an analysis check: answer with [`StepOutcome::Measured`].
    Measure(MeasureJob),
}

/// A sample an analysis check asks of the metric provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeasureJob {
    /// The check's name.
    pub check: String,
    /// Its query, in the provider's language.
    pub query: String,
}

/// One analysis run's verdict, as the release keeps it (and saves it).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AnalysisRecord {
    /// The batch it ran before.
    pub before_batch: usize,
    /// Its verdict.
    pub verdict: crate::analysis::Verdict,
    /// Every check's end, dry-run ones included: `(name, state, dry_run)`.
    pub checks: Vec<(String, crate::analysis::CheckState, bool)>,
}

/// A step to run: [`Action::Start`]'s job in a release. Report its outcome with
/// [`Release::handle_step_result`] (or [`Core::handle_outcome`]) and the action's [`JobId`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepJob {
    /// The host.
    pub host: Arc<HostId>,
    /// The step.
    pub step: Step,
    /// The version the step deploys: the release's target, or, in its rollback
    /// ([`OnFailure::RollBack`]), the version the hosts go back to.
    pub version: Arc<Version>,
    /// The core fails the step by itself at this time.
    pub deadline: Timestamp,
}

/// Progress a host can render or store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Event {
    /// When.
    pub at: Timestamp,
    /// What.
    pub kind: EventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum EventKind {
    /// The phase changed.
    Phase(Phase),
    /// A batch started with this many hosts.
    BatchStarted {
        /// Which.
        batch: BatchLabel,
        /// Its hosts.
        hosts: usize,
    },
    /// A batch ended.
    BatchFinished {
        /// Which.
        batch: BatchLabel,
        /// Hosts that succeeded or were already on target.
        succeeded: usize,
        /// Hosts that failed.
        failed: usize,
        /// Hosts cancelled or never started.
        cancelled: usize,
    },
    /// A host started a step.
    StepStarted {
        /// The host.
        host: Arc<HostId>,
        /// The step.
        step: Step,
    },
    /// A host reached a final state (or, for the bastion, [`HostState::AwaitingBake`]).
    HostFinished {
        /// The host.
        host: Arc<HostId>,
        /// Its state.
        state: HostState,
    },
    /// The release was paused.
    Paused,
    /// The release was resumed.
    Resumed,
    /// A deadline passed ([`ReleaseConfig::deadlines`]): the release paused or failed.
    DeadlinePassed {
        /// Which, and what it did.
        reason: String,
    },
    /// An analysis run ended with a verdict (passed: the batch starts; otherwise the release
    /// brakes).
    Analysis(AnalysisRecord),
    /// The release was restored from a saved state ([`Release::restore`]); this many hosts
    /// had a step in flight and start again from Precheck.
    Restored {
        /// Hosts whose step was in flight when the state was saved.
        in_doubt: usize,
    },
    /// The release started rolling back ([`OnFailure::RollBack`]).
    RollbackStarted {
        /// What went wrong.
        reason: String,
        /// Hosts to put back.
        hosts: usize,
        /// The version they go back to.
        to: Version,
    },
    /// Something happened in the release's rollback.
    Rollback(Box<EventKind>),
    /// A step did not call the external system it calls: the dependency is degraded
    /// ([`StepOutcome::Degraded`]).
    Degraded(DegradedCall),
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Phase(phase) => write!(f, "{phase}"),
            Self::BatchStarted { batch, hosts } => {
                write!(f, "{batch} started with {hosts} host(s)")
            }
            Self::BatchFinished { batch, succeeded, failed, cancelled } => write!(
                f,
                "{batch} finished: {succeeded} succeeded, {failed} failed, {cancelled} cancelled"
            ),
            Self::StepStarted { host, step } => write!(f, "{host}: {step} started"),
            Self::HostFinished { host, state } => write!(f, "{host}: {state}"),
            Self::Paused => f.write_str("paused"),
            Self::Resumed => f.write_str("resumed"),
            Self::Analysis(record) => {
                write!(f, "analysis before batch {}: {}", record.before_batch, record.verdict)
            }
            Self::DeadlinePassed { reason } => f.write_str(reason),
            Self::Restored { in_doubt } => {
                write!(f, "restored; {in_doubt} host(s) in doubt start again from precheck")
            }
            Self::RollbackStarted { reason, hosts, to } => {
                write!(f, "rolling {hosts} host(s) back to {to} after: {reason}")
            }
            Self::Rollback(kind) => write!(f, "rollback: {kind}"),
            Self::Degraded(call) => {
                write!(f, "{}: {} without its call: {}", call.host, call.step, call.reason)
            }
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{}] {}", self.at, self.kind)
    }
}

impl fmt::Display for BatchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} host(s), started {}", self.batch, self.hosts, self.started)?;
        match self.finished {
            Some(at) => write!(f, ", finished {at}"),
            None => f.write_str(", running"),
        }
    }
}

impl fmt::Display for ReleaseReport {
    /// One line: the outcome and how many hosts ended how.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Some(outcome) => write!(f, "{outcome}")?,
            None => write!(f, "{}", self.phase)?,
        }
        write!(
            f,
            ": {} host(s), {} succeeded, {} failed, {} excluded, {} batch(es)",
            self.hosts.len(),
            self.count(HostState::is_success),
            self.count(|s| matches!(s, HostState::Failed { .. })),
            self.excluded.len(),
            self.batches.len()
        )
    }
}

impl fmt::Display for HostCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { pending, running, awaiting_bake, succeeded, failed, cancelled, not_started } =
            self;
        write!(
            f,
            "pending={pending} running={running} awaiting_bake={awaiting_bake} succeeded={succeeded} failed={failed} cancelled={cancelled} not_started={not_started}"
        )
    }
}

/// A call to an external system a step did not make ([`StepOutcome::Degraded`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct DegradedCall {
    /// The host.
    pub host: HostId,
    /// The step ([`Step::Markdown`] or [`Step::Markup`]).
    pub step: Step,
    /// Why the call was not made.
    pub reason: String,
}

/// One batch's timing and result, for the final report.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct BatchReport {
    /// Which.
    pub batch: BatchLabel,
    /// Hosts in it.
    pub hosts: usize,
    /// When it started.
    pub started: Timestamp,
    /// When its last host finished.
    pub finished: Option<Timestamp>,
}

/// The report, so far or final: the phase, every host's state and every batch's timing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct ReleaseReport {
    /// How it ended (`None` while still running).
    pub outcome: Option<Outcome>,
    /// Where the release is: the batch it runs, a wait, the bake, a brake, a pause.
    pub phase: Phase,
    /// Every planned host, in plan order, with its state.
    pub hosts: Vec<(HostId, HostState)>,
    /// Hosts left out of the plan.
    pub excluded: Vec<(HostId, Exclusion)>,
    /// Every batch run, in order.
    pub batches: Vec<BatchReport>,
    /// Every analysis verdict, in order (kept across a takeover).
    pub analyses: Vec<AnalysisRecord>,
    /// The release's own rollback ([`OnFailure::RollBack`]), once started: its hosts are the
    /// ones put back. `hosts` above keeps what the release itself did to each.
    #[cfg_attr(feature = "serde", serde(default))]
    pub rollback: Option<Box<ReleaseReport>>,
    /// Every call to an external system a step did not make (a degraded dependency), in order
    /// (kept across a takeover).
    #[cfg_attr(feature = "serde", serde(default))]
    pub degraded: Vec<DegradedCall>,
}

/// How many planned hosts are in each state: a release's numbers at one moment
/// ([`Release::host_counts`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub struct HostCounts {
    /// Not started yet.
    pub pending: usize,
    /// Running a step.
    pub running: usize,
    /// Bastion hosts out of traffic, waiting for bake.
    pub awaiting_bake: usize,
    /// On the target version (deployed, or already there).
    pub succeeded: usize,
    /// Failed (out of traffic if they were marked down).
    pub failed: usize,
    /// Cancelled while running a step.
    pub cancelled: usize,
    /// Never started (stop on failure, abort, failed release).
    pub not_started: usize,
}

impl HostCounts {
    /// How many of `states` are in each state.
    fn of<'a>(states: impl Iterator<Item = &'a HostState>) -> Self {
        let mut counts = HostCounts::default();
        for state in states {
            let count = match state {
                HostState::Pending => &mut counts.pending,
                HostState::Running(_) => &mut counts.running,
                HostState::AwaitingBake => &mut counts.awaiting_bake,
                HostState::Succeeded | HostState::AlreadyOnTarget => &mut counts.succeeded,
                HostState::Failed { .. } => &mut counts.failed,
                HostState::Cancelled { .. } => &mut counts.cancelled,
                HostState::NotStarted => &mut counts.not_started,
            };
            *count += 1;
        }
        counts
    }
}

impl ReleaseReport {
    /// How many hosts are in `state`'s class: succeeded (incl. already on target), failed,
    /// cancelled or never started.
    #[must_use]
    pub fn count(&self, pred: impl Fn(&HostState) -> bool) -> usize {
        self.hosts.iter().filter(|(_, s)| pred(s)).count()
    }

    /// How many planned hosts are in each state, as [`Release::host_counts`] says of a
    /// release still running.
    #[must_use]
    pub fn host_counts(&self) -> HostCounts {
        HostCounts::of(self.hosts.iter().map(|(_, state)| state))
    }
}

struct HostSlot {
    id: Arc<HostId>,
    state: HostState,
    /// Restored while its step was in flight: its Precheck decides whether it still needs the
    /// deployment, and if not it is only put back into traffic.
    in_doubt: bool,
    /// Token of the running step, if one runs.
    token: Option<u64>,
    /// When the running (or last) step started.
    step_started: Timestamp,
}

/// The hosts of the batch being run.
struct Run {
    label: BatchLabel,
    queue: VecDeque<u32>,
    running: usize,
    members: Vec<u32>,
    stop_tripped: bool,
    /// Bastion runs stop after Verify.
    stop_after_verify: bool,
    report_index: usize,
}

/// Whether a batch about to start asks the brake first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Brake {
    Check,
    /// An operator's "continue anyway" on a braked release: the held batch starts once.
    Bypass,
}

/// Where to go once a run ends, or once a braked release is told to continue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Resume {
    AfterBastion,
    AfterBake,
    /// Before batch number `n` (from 1).
    BeforeBatch(usize),
}

/// Where the release is, carrying what that place needs to go on; [`Phase`] is its public face.
enum Stage {
    Running {
        run: Run,
        /// Where to go when the run ends.
        after: Resume,
    },
    AwaitingBake,
    Waiting {
        next: usize,
        until: Timestamp,
    },
    AwaitingContinue {
        next: usize,
    },
    Braked {
        reason: String,
        /// Where "continue anyway" or a finished retry goes.
        resume: Resume,
    },
    Analyzing {
        next: usize,
        run: AnalysisRun,
        /// Samples asked and not answered: `(token, check index)`.
        outstanding: Vec<(u64, usize)>,
    },
    /// The rollback (in [`Release::rollback`]) runs.
    RollingBack {
        reason: String,
    },
    Finished(Outcome),
}

impl Stage {
    fn phase(&self) -> Phase {
        match self {
            Self::Running { run, .. } => Phase::Running(run.label),
            Self::AwaitingBake => Phase::AwaitingBake,
            Self::Waiting { next, until } => Phase::Waiting { next: *next, until: *until },
            Self::AwaitingContinue { next } => Phase::AwaitingContinue { next: *next },
            Self::Braked { reason, .. } => Phase::Braked { reason: reason.clone() },
            Self::Analyzing { next, .. } => Phase::Analyzing { next: *next },
            Self::RollingBack { reason } => Phase::RollingBack { reason: reason.clone() },
            Self::Finished(outcome) => Phase::Finished(outcome.clone()),
        }
    }
}

/// The release state machine (sans-IO).
///
/// Drive it by feeding [`Release::handle_command`], [`Release::handle_step_result`] and
/// [`Release::handle_timeout`], and draining [`Release::poll_action`] and
/// [`Release::poll_event`] after each; call `handle_timeout` at [`Release::poll_timeout`].
pub struct Release {
    config: ReleaseConfig,
    /// The config's target, shared with every step job.
    target: Arc<Version>,
    hosts: Vec<HostSlot>,
    bastion: Vec<u32>,
    batches: Vec<Vec<u32>>,
    excluded: Vec<(HostId, Exclusion)>,
    /// The plan's max pull-out ratio, for the brake.
    max_ratio: Ratio,
    stage: Stage,
    /// A pause holds in every stage: it only stops new hosts and batches from starting.
    paused: bool,
    /// Batches started so far (the last one started is batch number `started_batches`).
    started_batches: usize,
    operator_failed: bool,
    next_token: u64,
    /// Step deadlines: [`STEP_TIMER`] and [`VERIFY_TIMER`].
    deadlines: Deadlines<2>,
    actions: VecDeque<Action<ReleaseJob>>,
    events: VecDeque<Event>,
    /// The latest time the release was given.
    clock: Timestamp,
    reports: Vec<BatchReport>,
    failed: usize,
    done: usize,
    /// Successes and failures in finish order, for the brake.
    finished: Vec<HostFinish>,
    record_events: bool,
    /// The batch whose analysis passed and that may start without another.
    analyzed: Option<usize>,
    /// Every analysis verdict so far.
    analyses: Vec<AnalysisRecord>,
    /// When the release started (moved back by a restore by the time it had run).
    started: Timestamp,
    /// When the current phase began.
    phase_since: Timestamp,
    /// Whether the release's own deadline has passed (it acts once).
    release_deadline_passed: bool,
    /// Whether the current wait's deadline has passed (it acts once per wait).
    wait_deadline_passed: bool,
    /// The release's own rollback, once started (kept after it ends, for the report).
    rollback: Option<Box<Release>>,
    /// Calls its steps did not make (degraded dependencies).
    degraded: Vec<DegradedCall>,
}

impl fmt::Debug for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Release")
            .field("phase", &self.stage.phase())
            .field("paused", &self.paused)
            .field("hosts", &self.hosts.len())
            .field("started_batches", &self.started_batches)
            .field("failed", &self.failed)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Release {
    /// A release of `plan` under `config`, starting at `now` (the bastion starts at once; with
    /// no bastion, the first batch does, or waits for continue in manual mode).
    ///
    /// # Errors
    /// [`ConfigError`] when `config` fails [`ReleaseConfig::validate`].
    pub fn new(plan: Plan, config: ReleaseConfig, now: Timestamp) -> Result<Self, ConfigError> {
        config.validate()?;
        let mut hosts = Vec::with_capacity(plan.host_count());
        let mut push = |id: HostId| {
            hosts.push(HostSlot {
                id: Arc::new(id),
                state: HostState::Pending,
                token: None,
                step_started: now,
                in_doubt: false,
            });
            (hosts.len() - 1) as u32
        };
        let bastion: Vec<u32> = plan.bastion.into_iter().map(&mut push).collect();
        let batches: Vec<Vec<u32>> =
            plan.batches.into_iter().map(|b| b.into_iter().map(&mut push).collect()).collect();
        let mut release = Self {
            target: Arc::new(config.target.clone()),
            config,
            hosts,
            bastion,
            batches,
            excluded: plan.excluded,
            max_ratio: plan.max_ratio,
            // Replaced at once below; a release never reports this.
            stage: Stage::AwaitingBake,
            paused: false,
            started_batches: 0,
            operator_failed: false,
            next_token: 1,
            deadlines: Deadlines::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            clock: now,
            reports: Vec::new(),
            failed: 0,
            done: 0,
            finished: Vec::new(),
            record_events: true,
            analyzed: None,
            analyses: Vec::new(),
            started: now,
            phase_since: now,
            release_deadline_passed: false,
            wait_deadline_passed: false,
            rollback: None,
            degraded: Vec::new(),
        };
        if release.bastion.is_empty() {
            release.after_bake(now);
        } else {
            let members = release.bastion.clone();
            release.start_run(BatchLabel::Bastion, members, Resume::AfterBastion, now);
        }
        Ok(release)
    }

    /// The current phase.
    #[must_use]
    pub fn phase(&self) -> Phase {
        self.stage.phase()
    }

    /// Whether a pause is in force (the rollback's, while it rolls back).
    #[must_use]
    pub fn is_paused(&self) -> bool {
        match (&self.stage, &self.rollback) {
            (Stage::RollingBack { .. }, Some(rollback)) => rollback.is_paused(),
            _ => self.paused,
        }
    }

    /// While it rolls back, where its rollback is (braked, say: commands go to it); see also
    /// [`ReleaseReport::rollback`].
    #[must_use]
    pub fn rollback_phase(&self) -> Option<Phase> {
        match (&self.stage, &self.rollback) {
            (Stage::RollingBack { .. }, Some(rollback)) => Some(rollback.phase()),
            _ => None,
        }
    }

    /// Whether the release is over.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        matches!(self.stage, Stage::Finished(_))
    }

    /// How many hosts are in each state now (one pass over the hosts).
    #[must_use]
    pub fn host_counts(&self) -> HostCounts {
        HostCounts::of(self.hosts.iter().map(|h| &h.state))
    }

    /// The config in force.
    #[must_use]
    pub fn config(&self) -> &ReleaseConfig {
        &self.config
    }

    /// The next action for the driver.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action<ReleaseJob>> {
        self.actions.pop_front()
    }

    /// The next progress event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When to call [`Release::handle_timeout`] next: the earliest step deadline or the end of
    /// the wait between batches.
    #[must_use]
    pub fn poll_timeout(&mut self) -> Option<Timestamp> {
        if let (Stage::RollingBack { .. }, Some(rollback)) = (&self.stage, &mut self.rollback) {
            return rollback.poll_timeout();
        }
        // So the answer is a real one.
        self.drop_ended_deadlines();
        let step = self.deadlines.peek().map(|(at, ..)| at);
        let wait = match &self.stage {
            Stage::Waiting { until, .. } if !self.paused => Some(*until),
            Stage::Analyzing { run, outstanding, .. } => (0..run.checks.len())
                .filter(|i| !outstanding.iter().any(|(_, c)| c == i))
                .filter(|&i| run.checks[i].state == crate::analysis::CheckState::Running)
                .filter(|_| run.verdict() == Verdict::Running)
                .map(|i| run.checks[i].next_at)
                .min(),
            _ => None,
        };
        [step, wait, self.next_deadline()].into_iter().flatten().min()
    }

    /// The report so far (final once the release is finished).
    #[must_use]
    pub fn report(&self) -> ReleaseReport {
        ReleaseReport {
            outcome: match &self.stage {
                Stage::Finished(outcome) => Some(outcome.clone()),
                _ => None,
            },
            phase: self.phase(),
            hosts: self.hosts.iter().map(|h| ((*h.id).clone(), h.state.clone())).collect(),
            excluded: self.excluded.clone(),
            batches: self.reports.clone(),
            analyses: self.analyses.clone(),
            rollback: self.rollback.as_ref().map(|r| Box::new(r.report())),
            degraded: self.degraded.clone(),
        }
    }

    fn emit(&mut self, now: Timestamp, kind: EventKind) {
        trace_event(&kind);
        if self.record_events {
            self.events.push_back(Event { at: now, kind });
        }
    }

    /// Stops (or restarts) recording progress events, for a host that does not read them.
    /// Actions, the phase and the report are unaffected.
    pub fn set_event_recording(&mut self, on: bool) {
        self.record_events = on;
        if let Some(rollback) = &mut self.rollback {
            rollback.set_event_recording(on);
        }
        if !on {
            self.events.clear();
        }
    }

    /// Moves to `stage`, with an event when the public phase changes.
    fn enter(&mut self, stage: Stage, now: Timestamp) {
        let phase = stage.phase();
        let changed = self.stage.phase() != phase;
        self.stage = stage;
        if changed {
            self.phase_since = now;
            self.wait_deadline_passed = false;
            self.emit(now, EventKind::Phase(phase));
        }
    }

    /// Whether the release waits for a person now (bake, continue, a brake).
    fn waits_for_a_person(&self) -> bool {
        matches!(
            self.stage,
            Stage::AwaitingBake | Stage::AwaitingContinue { .. } | Stage::Braked { .. }
        )
    }

    /// The next deadline of the release or of its wait for a person, if one is still to act.
    fn next_deadline(&self) -> Option<Timestamp> {
        if matches!(self.stage, Stage::Finished(_)) {
            return None;
        }
        let deadlines = self.config.deadlines;
        let whole =
            deadlines.release.filter(|_| !self.release_deadline_passed).map(|d| self.started + d);
        let wait = deadlines
            .waiting
            .filter(|_| self.waits_for_a_person() && !self.wait_deadline_passed)
            .map(|d| self.phase_since + d);
        match (whole, wait) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Acts on a deadline that has passed: pauses or fails, as the release says.
    fn check_deadlines(&mut self, now: Timestamp) {
        let deadlines = self.config.deadlines;
        let mut passed = None;
        if let Some(d) = deadlines.release
            && !self.release_deadline_passed
            && now >= self.started + d
        {
            self.release_deadline_passed = true;
            passed = Some(format!("the release's deadline of {} passed", humantime_short(d)));
        }
        if let Some(d) = deadlines.waiting
            && passed.is_none()
            && self.waits_for_a_person()
            && !self.wait_deadline_passed
            && now >= self.phase_since + d
        {
            self.wait_deadline_passed = true;
            passed = Some(format!(
                "nobody acted for {} while it was {}",
                humantime_short(d),
                self.stage.phase()
            ));
        }
        let Some(reason) = passed else { return };
        match deadlines.on_expiry {
            OnDeadline::Pause => {
                self.emit(now, EventKind::DeadlinePassed { reason: format!("{reason}: paused") });
                if !self.paused {
                    self.paused = true;
                    self.emit(now, EventKind::Paused);
                }
            }
            OnDeadline::Fail => {
                self.emit(now, EventKind::DeadlinePassed { reason: format!("{reason}: failed") });
                match self.config.on_failure.clone() {
                    OnFailure::Stop => self.stop(Outcome::Failed(reason), now),
                    OnFailure::RollBack { to } => self.roll_back(reason, to, now),
                }
            }
        }
    }

    /// The run in progress, if the release is running one.
    fn run_mut(&mut self) -> Option<&mut Run> {
        match &mut self.stage {
            Stage::Running { run, .. } => Some(run),
            _ => None,
        }
    }

    /// Starts running `members` as `label`. Runs before the bastion is verified (its first run
    /// and retries of it) stop after Verify.
    fn start_run(&mut self, label: BatchLabel, members: Vec<u32>, after: Resume, now: Timestamp) {
        let stop_after_verify = after == Resume::AfterBastion;
        self.reports.push(BatchReport {
            batch: label,
            hosts: members.len(),
            started: now,
            finished: None,
        });
        let report_index = self.reports.len() - 1;
        let hosts = members.len();
        let run = Run {
            label,
            queue: members.iter().copied().collect(),
            running: 0,
            members,
            stop_tripped: false,
            stop_after_verify,
            report_index,
        };
        self.enter(Stage::Running { run, after }, now);
        self.emit(now, EventKind::BatchStarted { batch: label, hosts });
        self.pump(now);
    }

    /// Drops the deadlines of steps that already ended from the front of the queue.
    fn drop_ended_deadlines(&mut self) {
        let hosts = &self.hosts;
        self.deadlines.drop_ended(|JobId { slot: host, token }| {
            let slot = &hosts[host as usize];
            slot.token != Some(token) || !matches!(slot.state, HostState::Running(_))
        });
    }

    fn start_step(&mut self, host: u32, step: Step, now: Timestamp) {
        // Steps that end before the driver next asks for a deadline (all of them, when they
        // end on their first poll) would otherwise leave one entry each behind.
        self.drop_ended_deadlines();
        let token = self.next_token;
        self.next_token += 1;
        let timeout = if step == Step::Verify {
            self.config.verify_timeout
        } else {
            self.config.step_timeout
        };
        let deadline = now + timeout;
        let slot = &mut self.hosts[host as usize];
        slot.state = HostState::Running(step);
        slot.token = Some(token);
        slot.step_started = now;
        let id = Arc::clone(&slot.id);
        let class = if step == Step::Verify { VERIFY_TIMER } else { STEP_TIMER };
        self.deadlines.push(class, deadline, JobId { slot: host, token });
        // The event is the one of a step's records nobody may want: with neither a reader nor
        // a debug subscriber it is not built (a host id's reference count, twice per step).
        if self.record_events || tracing::enabled!(tracing::Level::DEBUG) {
            self.emit(now, EventKind::StepStarted { host: Arc::clone(&id), step });
        }
        let version = Arc::clone(&self.target);
        let job = ReleaseJob::Step(StepJob { host: id, step, version, deadline });
        self.actions.push_back(Action::Start { id: JobId { slot: host, token }, job });
    }

    /// Starts queued hosts while there is room, then closes the run when it is empty.
    fn pump(&mut self, now: Timestamp) {
        let paused = self.paused;
        let parallelism = self.config.parallelism;
        loop {
            let Some(Stage::Running { run, .. }) = Some(&mut self.stage) else { return };
            if paused || run.running >= parallelism {
                break;
            }
            // Hosts in doubt after a restore were started before: a tripped stop does not
            // leave them unexamined (and perhaps out of traffic).
            let front_in_doubt =
                run.queue.front().is_some_and(|&h| self.hosts[h as usize].in_doubt);
            if run.stop_tripped && !front_in_doubt {
                break;
            }
            let Some(host) = run.queue.pop_front() else { break };
            run.running += 1;
            let first = if run.label == BatchLabel::Bake { Step::Markup } else { Step::Precheck };
            self.start_step(host, first, now);
        }
        let hosts = &self.hosts;
        let finished = matches!(&self.stage, Stage::Running { run: r, .. }
            if r.running == 0
                && (r.queue.is_empty()
                    || (r.stop_tripped && !r.queue.iter().any(|&h| hosts[h as usize].in_doubt))));
        if finished {
            self.finish_run(now);
        }
    }

    fn finish_host(&mut self, host: u32, state: HostState, now: Timestamp) {
        let slot = &mut self.hosts[host as usize];
        let failed = matches!(state, HostState::Failed { .. });
        if failed || state.is_success() {
            if failed {
                self.failed += 1;
            } else {
                self.done += 1;
            }
            self.finished.push(HostFinish { host: Arc::clone(&slot.id), failed });
        }
        slot.state = state.clone();
        slot.token = None;
        slot.in_doubt = false;
        let id = Arc::clone(&slot.id);
        self.emit(now, EventKind::HostFinished { host: id, state });
    }

    /// Reports the result of the step started with `token` on `host`. Results for steps that were
    /// cancelled, timed out or superseded are ignored.
    pub fn handle_step_result(
        &mut self,
        host: u32,
        token: u64,
        outcome: StepOutcome,
        now: Timestamp,
    ) {
        self.clock = self.clock.max(now);
        if host == ANALYSIS_SLOT {
            self.handle_measurement(token, outcome, now);
            return;
        }
        if host & ROLLBACK_BIT != 0 {
            if let (Stage::RollingBack { .. }, Some(rollback)) = (&self.stage, &mut self.rollback) {
                rollback.handle_step_result(host & !ROLLBACK_BIT, token, outcome, now);
                self.pump_rollback(now);
            }
            return;
        }
        let Some(slot) = self.hosts.get(host as usize) else { return };
        let HostState::Running(step) = slot.state else { return };
        if slot.token != Some(token) {
            return;
        }
        step_ended(slot, step, &outcome, now);
        // A host in doubt already on target may be out of traffic: it goes on as if just
        // verified (put back into traffic, or, in the bastion's run, left for the bake).
        let in_doubt_on_target = slot.in_doubt && matches!(outcome, StepOutcome::AlreadyOnTarget);
        // Only a degraded call needs the host's name past this point.
        let degraded_host =
            matches!(outcome, StepOutcome::Degraded(_)).then(|| Arc::clone(&slot.id));
        let stop_after_verify = self.run_mut().is_some_and(|r| r.stop_after_verify);
        let (step, outcome) =
            if in_doubt_on_target { (Step::Verify, StepOutcome::Done) } else { (step, outcome) };
        let outcome = match outcome {
            StepOutcome::Failed(_) if step == Step::Verify && self.config.ignore_verify => {
                StepOutcome::Done
            }
            StepOutcome::AlreadyOnTarget if step != Step::Precheck => StepOutcome::Done,
            StepOutcome::Measured(_) => {
                StepOutcome::Failed(format!("{step} answered with a measurement"))
            }
            StepOutcome::Degraded(reason) if matches!(step, Step::Markdown | Step::Markup) => {
                let host = (*degraded_host.expect("taken for a degraded outcome")).clone();
                let call = DegradedCall { host, step, reason };
                self.degraded.push(call.clone());
                self.emit(now, EventKind::Degraded(call));
                StepOutcome::Done
            }
            StepOutcome::Degraded(reason) => StepOutcome::Failed(format!(
                "{step} cannot go without its work (only Markdown and Markup can be degraded): {reason}"
            )),
            other => other,
        };
        match outcome {
            StepOutcome::AlreadyOnTarget => self.host_done(host, HostState::AlreadyOnTarget, now),
            StepOutcome::Failed(reason) | StepOutcome::Measured(Err(reason)) => {
                self.host_failed(host, step, reason, now);
            }
            StepOutcome::Measured(Ok(_)) => {
                self.host_failed(host, step, "answered with a measurement".to_owned(), now);
            }
            StepOutcome::Degraded(_) => unreachable!("turned into done or failed above"),
            StepOutcome::Done => match step.next() {
                Some(Step::Markup) if stop_after_verify => {
                    let slot = &mut self.hosts[host as usize];
                    slot.state = HostState::AwaitingBake;
                    slot.token = None;
                    let id = Arc::clone(&slot.id);
                    self.emit(
                        now,
                        EventKind::HostFinished { host: id, state: HostState::AwaitingBake },
                    );
                    self.host_left_run(now);
                }
                Some(next) => self.start_step(host, next, now),
                None => self.host_done(host, HostState::Succeeded, now),
            },
        }
    }

    fn host_done(&mut self, host: u32, state: HostState, now: Timestamp) {
        self.finish_host(host, state, now);
        self.host_left_run(now);
    }

    fn host_failed(&mut self, host: u32, step: Step, reason: String, now: Timestamp) {
        self.finish_host(host, HostState::Failed { step, reason }, now);
        if self.config.stop_on_failure
            && let Some(run) = self.run_mut()
        {
            run.stop_tripped = true;
        }
        self.host_left_run(now);
    }

    fn host_left_run(&mut self, now: Timestamp) {
        if let Some(run) = self.run_mut() {
            run.running -= 1;
        }
        self.pump(now);
    }

    fn finish_run(&mut self, now: Timestamp) {
        let Stage::Running { run, after } = &mut self.stage else { return };
        let (label, report_index, after) = (run.label, run.report_index, *after);
        let never_started = std::mem::take(&mut run.queue);
        let members = std::mem::take(&mut run.members);
        // Hosts a tripped stop_on_failure never started.
        for host in never_started {
            self.finish_host(host, HostState::NotStarted, now);
        }
        let (mut succeeded, mut failed, mut cancelled) = (0, 0, 0);
        for &h in &members {
            match &self.hosts[h as usize].state {
                s if s.is_success() || *s == HostState::AwaitingBake => succeeded += 1,
                HostState::Failed { .. } => failed += 1,
                _ => cancelled += 1,
            }
        }
        self.reports[report_index].finished = Some(now);
        self.emit(now, EventKind::BatchFinished { batch: label, succeeded, failed, cancelled });
        // A failure before the bastion is baked (first run or a retry of it) always stops the
        // release: going on would skip the person's verdict on the bastion.
        if failed > 0 && matches!(after, Resume::AfterBastion | Resume::AfterBake) {
            let what = if after == Resume::AfterBake { "bake" } else { "bastion" };
            let reason = format!("{failed} {what} host(s) failed");
            self.enter(Stage::Braked { reason, resume: after }, now);
            return;
        }
        self.proceed(after, now);
    }

    fn proceed(&mut self, resume: Resume, now: Timestamp) {
        match resume {
            Resume::AfterBastion => {
                let waiting: Vec<u32> = self
                    .bastion
                    .iter()
                    .copied()
                    .filter(|&h| self.hosts[h as usize].state == HostState::AwaitingBake)
                    .collect();
                if waiting.is_empty() {
                    self.after_bake(now);
                } else {
                    self.enter(Stage::AwaitingBake, now);
                }
            }
            Resume::AfterBake => self.after_bake(now),
            Resume::BeforeBatch(k) => self.before_batch(k, now),
        }
    }

    /// Bastion done (or none): batch 1 is next, without a wait in automatic mode.
    fn after_bake(&mut self, now: Timestamp) {
        self.started_batches = 0;
        match self.config.mode {
            Mode::Manual => self.await_continue(1, now),
            Mode::Automatic { .. } => self.start_batch(1, Brake::Check, now),
        }
    }

    /// The members of batch `number` (batches are numbered from 1, as people and
    /// [`Phase`] count them), or `None` past the last one.
    fn batch(&self, number: usize) -> Option<&[u32]> {
        number.checked_sub(1).and_then(|i| self.batches.get(i)).map(Vec::as_slice)
    }

    fn await_continue(&mut self, number: usize, now: Timestamp) {
        if self.batch(number).is_none() {
            self.finish(now);
        } else {
            self.enter(Stage::AwaitingContinue { next: number }, now);
        }
    }

    /// Between batches: wait (automatic) or ask (manual) before batch `number`.
    fn before_batch(&mut self, number: usize, now: Timestamp) {
        if self.batch(number).is_none() {
            self.finish(now);
            return;
        }
        match self.config.mode {
            Mode::Manual => self.await_continue(number, now),
            Mode::Automatic { wait, later_wait } => {
                // The shorter wait applies from the third batch on.
                let wait = if number >= 3 { later_wait.unwrap_or(wait) } else { wait };
                self.enter(Stage::Waiting { next: number, until: now + wait }, now);
                self.handle_timeout(now);
            }
        }
    }

    /// Starts batch `number` unless the brake (when asked) says no.
    fn start_batch(&mut self, number: usize, brake: Brake, now: Timestamp) {
        let Some(members) = self.batch(number).map(<[u32]>::to_vec) else {
            self.finish(now);
            return;
        };
        let view = BrakeView {
            planned: self.hosts.len(),
            failed: self.failed,
            done: self.done,
            next_batch: members.len(),
            max_ratio: self.max_ratio,
            finished: &self.finished,
        };
        if brake == Brake::Check {
            let verdict = self.config.brake.check(&view);
            trace_brake(number, &view, verdict.as_deref());
            if let Some(reason) = verdict {
                self.brake_or_roll_back(reason, Resume::BeforeBatch(number), now);
                return;
            }
            // Analysis between batches: once something is deployed, before every batch.
            let deployed = number > 1 || !self.bastion.is_empty();
            if !self.config.analysis.is_empty() && deployed && self.analyzed != Some(number) {
                let run = AnalysisRun::new(&self.config.analysis, now);
                self.enter(Stage::Analyzing { next: number, run, outstanding: Vec::new() }, now);
                self.sample(now);
                return;
            }
        }
        self.started_batches = number;
        let after = Resume::BeforeBatch(number + 1);
        self.start_run(BatchLabel::Batch(number), members, after, now);
    }

    fn finish(&mut self, now: Timestamp) {
        let outcome = if self.failed == 0 {
            Outcome::Succeeded
        } else {
            Outcome::Failed(format!("{} of {} hosts failed", self.failed, self.hosts.len()))
        };
        self.enter(Stage::Finished(outcome), now);
    }

    /// Fails every running step whose deadline has passed, and ends a wait that is over.
    pub fn handle_timeout(&mut self, now: Timestamp) {
        self.clock = self.clock.max(now);
        if let (Stage::RollingBack { .. }, Some(rollback)) = (&self.stage, &mut self.rollback) {
            rollback.handle_timeout(now);
            self.pump_rollback(now);
            return;
        }
        self.check_deadlines(now);
        while let Some((deadline, _, JobId { slot: host, token })) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            let slot = &self.hosts[host as usize];
            if slot.token != Some(token) {
                continue;
            }
            let HostState::Running(step) = slot.state else { continue };
            let timeout = if step == Step::Verify {
                self.config.verify_timeout
            } else {
                self.config.step_timeout
            };
            self.actions.push_back(Action::Cancel(JobId { slot: host, token }));
            let reason = format!("{step} timed out after {}", humantime_short(timeout));
            step_ended(slot, step, &StepOutcome::Failed(reason.clone()), now);
            // A timed-out Verify fails even with ignore_verify: the host did not start in time.
            self.finish_host(host, HostState::Failed { step, reason }, now);
            if self.config.stop_on_failure
                && let Some(run) = self.run_mut()
            {
                run.stop_tripped = true;
            }
            self.host_left_run(now);
        }
        if let Stage::Waiting { next, until } = self.stage
            && now >= until
            && !self.paused
        {
            self.start_batch(next, Brake::Check, now);
        }
        if matches!(self.stage, Stage::Analyzing { .. }) {
            self.sample(now);
        }
    }

    /// Asks for every analysis sample due and not yet asked.
    fn sample(&mut self, now: Timestamp) {
        let Stage::Analyzing { run, outstanding, .. } = &mut self.stage else { return };
        for i in run.due(now) {
            if outstanding.iter().any(|(_, c)| *c == i) {
                continue;
            }
            let token = self.next_token;
            self.next_token += 1;
            outstanding.push((token, i));
            let check = &run.checks[i].check;
            let job = MeasureJob { check: check.name.clone(), query: check.query.clone() };
            self.actions.push_back(Action::Start {
                id: JobId { slot: ANALYSIS_SLOT, token },
                job: ReleaseJob::Measure(job),
            });
        }
    }

    /// An analysis sample's answer: recorded, then the verdict acted on.
    fn handle_measurement(&mut self, token: u64, outcome: StepOutcome, now: Timestamp) {
        let Stage::Analyzing { run, outstanding, .. } = &mut self.stage else { return };
        let Some(at) = outstanding.iter().position(|(t, _)| *t == token) else { return };
        let (_, check) = outstanding.remove(at);
        let measurement = match outcome {
            StepOutcome::Measured(measurement) => measurement,
            other => Err(format!("the provider answered {other:?}, not a measurement")),
        };
        run.record(check, &measurement, now);
        self.decide(now);
    }

    /// Goes on once the analysis has a verdict: the batch on a pass, the brake otherwise.
    fn decide(&mut self, now: Timestamp) {
        let Stage::Analyzing { next, run, outstanding } = &self.stage else { return };
        let verdict = run.verdict();
        if verdict == Verdict::Running {
            self.sample(now);
            return;
        }
        let next = *next;
        let record = AnalysisRecord {
            before_batch: next,
            verdict: verdict.clone(),
            checks: run
                .checks
                .iter()
                .map(|c| (c.check.name.clone(), c.state.clone(), c.check.dry_run))
                .collect(),
        };
        // Dry-run samples still out are not waited for.
        for &(token, _) in outstanding {
            self.actions.push_back(Action::Cancel(JobId { slot: ANALYSIS_SLOT, token }));
        }
        self.analyses.push(record.clone());
        self.emit(now, EventKind::Analysis(record));
        if verdict == Verdict::Passed {
            self.analyzed = Some(next);
            // A pause holds the batch: it starts when resumed.
            self.enter(Stage::Waiting { next, until: now }, now);
            self.handle_timeout(now);
        } else {
            let reason = format!("analysis before batch {next}: {verdict}");
            if matches!(verdict, Verdict::Inconclusive { .. }) {
                // Neither pass nor fail: a person decides, whatever the release says.
                self.enter(Stage::Braked { reason, resume: Resume::BeforeBatch(next) }, now);
            } else {
                self.brake_or_roll_back(reason, Resume::BeforeBatch(next), now);
            }
        }
    }

    /// Applies a person's command.
    ///
    /// # Errors
    /// [`CommandRejected`] when the command does not apply now (bake before the bastion is
    /// verified, retry with nothing to retry, ...). Abort on a finished release is not an error.
    pub fn handle_command(
        &mut self,
        command: Command,
        now: Timestamp,
    ) -> Result<(), CommandRejected> {
        self.clock = self.clock.max(now);
        let handled = match &self.stage {
            Stage::Finished(outcome) => {
                let retryable = matches!(outcome, Outcome::Failed(_)) && !self.operator_failed;
                return self.on_finished(command, retryable, now);
            }
            Stage::Running { .. } => None,
            Stage::AwaitingBake => self.on_awaiting_bake(command, now),
            &Stage::Waiting { next, .. } | &Stage::AwaitingContinue { next } => {
                self.on_between_batches(command, next, now)
            }
            &Stage::Braked { resume, .. } => self.on_braked(command, resume, now),
            // Analysis: pause, resume, abort and fail as anywhere; a person's "continue"
            // starts the batch without waiting for the verdict.
            &Stage::Analyzing { next, .. } => (command == Command::Continue).then(|| {
                self.start_batch(next, Brake::Bypass, now);
                Ok(())
            }),
            // Every command is the rollback's now (abort stops it; retry retries its hosts).
            Stage::RollingBack { .. } => {
                let result = self.rollback.as_mut().map(|r| r.handle_command(command, now));
                self.pump_rollback(now);
                result
            }
        };
        match handled {
            Some(result) => result,
            None => self.in_any_phase(command, now),
        }
    }

    /// Commands that mean the same in every phase but the end: pause, resume, abort, fail.
    fn in_any_phase(&mut self, command: Command, now: Timestamp) -> Result<(), CommandRejected> {
        match command {
            Command::Pause => {
                if !self.paused {
                    self.paused = true;
                    self.emit(now, EventKind::Paused);
                }
            }
            Command::Resume => {
                if self.paused {
                    self.paused = false;
                    self.emit(now, EventKind::Resumed);
                    self.pump(now);
                    self.handle_timeout(now);
                }
            }
            Command::Abort => self.stop(Outcome::Aborted, now),
            Command::Fail => {
                self.operator_failed = true;
                self.stop(Outcome::Failed("marked failed by an operator".to_owned()), now);
            }
            Command::Bake => return rejected(command, "the bastion is not waiting for bake"),
            Command::Continue => return rejected(command, "nothing is waiting to continue"),
            Command::Retry => {
                return rejected(command, "retry applies to a braked or failed release");
            }
        }
        Ok(())
    }

    fn on_awaiting_bake(&mut self, command: Command, now: Timestamp) -> Handled {
        (command == Command::Bake).then(|| {
            let members: Vec<u32> = self
                .bastion
                .iter()
                .copied()
                .filter(|&h| self.hosts[h as usize].state == HostState::AwaitingBake)
                .collect();
            self.start_run(BatchLabel::Bake, members, Resume::AfterBake, now);
            Ok(())
        })
    }

    fn on_between_batches(&mut self, command: Command, next: usize, now: Timestamp) -> Handled {
        (command == Command::Continue).then(|| {
            self.start_batch(next, Brake::Check, now);
            Ok(())
        })
    }

    fn on_braked(&mut self, command: Command, resume: Resume, now: Timestamp) -> Handled {
        match command {
            Command::Continue => {
                match resume {
                    // "Continue anyway": the held batch starts now, past the brake once.
                    Resume::BeforeBatch(number) => self.start_batch(number, Brake::Bypass, now),
                    other => self.proceed(other, now),
                }
                Some(Ok(()))
            }
            Command::Retry => Some(self.retry(resume, now)),
            _ => None,
        }
    }

    fn on_finished(
        &mut self,
        command: Command,
        retryable: bool,
        now: Timestamp,
    ) -> Result<(), CommandRejected> {
        match command {
            Command::Abort => Ok(()),
            // Retried after the end: go on to whatever was left, then finish again.
            Command::Retry if retryable => {
                self.retry(Resume::BeforeBatch(self.started_batches + 1), now)
            }
            _ => rejected(command, "the release is finished"),
        }
    }

    /// Runs again every host of the bastion and the started batches that did not succeed, then
    /// goes on to `after`.
    fn retry(&mut self, after: Resume, now: Timestamp) -> Result<(), CommandRejected> {
        let scheduled_batches = self.started_batches.min(self.batches.len());
        let candidates: Vec<u32> = self
            .bastion
            .iter()
            .chain(self.batches[..scheduled_batches].iter().flatten())
            .copied()
            .filter(|&h| {
                matches!(
                    self.hosts[h as usize].state,
                    HostState::Failed { .. } | HostState::Cancelled { .. } | HostState::NotStarted
                )
            })
            .collect();
        if candidates.is_empty() {
            return rejected(Command::Retry, "no host to retry");
        }
        for &h in &candidates {
            let slot = &mut self.hosts[h as usize];
            if matches!(slot.state, HostState::Failed { .. }) {
                self.failed -= 1;
            }
            slot.state = HostState::Pending;
        }
        self.start_run(BatchLabel::Retry, candidates, after, now);
        Ok(())
    }

    /// Brakes, or, when the release says so, rolls back at once.
    fn brake_or_roll_back(&mut self, reason: String, resume: Resume, now: Timestamp) {
        match self.config.on_failure.clone() {
            OnFailure::Stop => self.enter(Stage::Braked { reason, resume }, now),
            OnFailure::RollBack { to } => self.roll_back(reason, to, now),
        }
    }

    /// Starts the release's own rollback of every host it changed (none runs a step of the
    /// release by now: a brake holds between batches, and a failed release cancelled its
    /// steps).
    fn roll_back(&mut self, reason: String, to: Version, now: Timestamp) {
        let cap = self.batches.iter().chain([&self.bastion]).map(Vec::len).max().unwrap_or(1);
        // What was changed is read before the release's own hosts are settled (a bastion
        // waiting for bake was installed; a step in flight at a deadline may have been).
        let report = self.report();
        let plan = crate::plan::rollback_plan(&report, cap);
        let only_out = crate::plan::stopped_out_of_traffic(&report);
        self.stop_hosts(now);
        let Some(plan) = plan else {
            let reason =
                format!("{reason}; nothing to roll back: no host was changed or marked down");
            self.enter(Stage::Finished(Outcome::Failed(reason)), now);
            return;
        };
        let hosts = plan.host_count();
        let rollback = match Release::new(plan, self.rollback_config(to.clone()), now) {
            Ok(mut rollback) => {
                // Marked down and never installed: their Precheck finds the previous version,
                // and, in doubt, they are put back into traffic.
                for slot in &mut rollback.hosts {
                    slot.in_doubt = only_out.contains(&*slot.id);
                }
                rollback
            }
            Err(e) => {
                let reason = format!("{reason}; cannot roll back: {e}");
                self.enter(Stage::Finished(Outcome::Failed(reason)), now);
                return;
            }
        };
        tracing::warn!(hosts, %to, %reason, "the release rolls back what it changed");
        let mut rollback = Box::new(rollback);
        rollback.set_event_recording(self.record_events);
        // A pause a person put on the release holds for its rollback, which takes it over.
        if std::mem::take(&mut self.paused) {
            let _ = rollback.handle_command(Command::Pause, now);
        }
        self.rollback = Some(rollback);
        self.emit(now, EventKind::RollbackStarted { reason: reason.clone(), hosts, to });
        self.enter(Stage::RollingBack { reason }, now);
        self.pump_rollback(now);
    }

    /// The settings of the release's rollback: Tars' (no waits), with the release's
    /// parallelism and timeouts; it never rolls back itself.
    pub(crate) fn rollback_config(&self, to: Version) -> ReleaseConfig {
        ReleaseConfig {
            parallelism: self.config.parallelism,
            step_timeout: self.config.step_timeout,
            verify_timeout: self.config.verify_timeout,
            ..ReleaseConfig::rollback(to)
        }
    }

    /// Passes the rollback's actions and events on, and ends the release when it has ended.
    fn pump_rollback(&mut self, now: Timestamp) {
        let Some(rollback) = self.rollback.as_mut() else { return };
        let mark = |id: JobId| JobId { slot: id.slot | ROLLBACK_BIT, token: id.token };
        while let Some(action) = rollback.poll_action() {
            self.actions.push_back(match action {
                Action::Start { id, job } => Action::Start { id: mark(id), job },
                Action::Cancel(id) => Action::Cancel(mark(id)),
            });
        }
        let mut events = Vec::new();
        while let Some(event) = rollback.poll_event() {
            events.push(event);
        }
        let ended = rollback.is_finished().then(|| rollback.report());
        for event in events {
            self.emit(event.at, EventKind::Rollback(Box::new(event.kind)));
        }
        let (Some(report), Stage::RollingBack { reason }) = (ended, &self.stage) else { return };
        let outcome = match report.outcome {
            Some(Outcome::Aborted) => Outcome::Aborted,
            _ => Outcome::RolledBack {
                reason: reason.clone(),
                hosts: report.count(HostState::is_success),
                failed: report.count(|s| !s.is_success()),
            },
        };
        self.enter(Stage::Finished(outcome), now);
    }

    /// Abort or operator failure: cancel what runs, mark what never ran, finish.
    fn stop(&mut self, outcome: Outcome, now: Timestamp) {
        self.stop_hosts(now);
        self.enter(Stage::Finished(outcome), now);
    }

    /// Cancels what runs (analysis samples too) and marks what never ran: every host final.
    fn stop_hosts(&mut self, now: Timestamp) {
        let running = match &self.stage {
            Stage::Running { run, .. } => Some(run.report_index),
            _ => None,
        };
        if let Stage::Analyzing { outstanding, .. } = &self.stage {
            for &(token, _) in outstanding {
                self.actions.push_back(Action::Cancel(JobId { slot: ANALYSIS_SLOT, token }));
            }
        }
        for h in 0..self.hosts.len() as u32 {
            let slot = &self.hosts[h as usize];
            match slot.state {
                HostState::Running(step) => {
                    if let Some(token) = slot.token {
                        self.actions.push_back(Action::Cancel(JobId { slot: h, token }));
                    }
                    self.finish_host(h, HostState::Cancelled { step }, now);
                }
                // A bastion host waiting for bake was never put back into traffic.
                HostState::Pending | HostState::AwaitingBake => {
                    self.finish_host(h, HostState::NotStarted, now);
                }
                _ => {}
            }
        }
        if let Some(report_index) = running {
            self.reports[report_index].finished = Some(now);
        }
        self.deadlines.clear();
    }
}

/// Logs a step's end with its duration, and, with the `metrics` feature, records the duration.
fn step_ended(slot: &HostSlot, step: Step, outcome: &StepOutcome, now: Timestamp) {
    let took = now.saturating_duration_since(slot.step_started);
    let result = match outcome {
        StepOutcome::Done => "done",
        StepOutcome::AlreadyOnTarget => "already on target",
        StepOutcome::Degraded(_) => "degraded",
        StepOutcome::Failed(_) | StepOutcome::Measured(_) => "failed",
    };
    tracing::debug!(host = %slot.id, %step, ?took, result, "step ended");
    #[cfg(feature = "metrics")]
    metrics::histogram!("plus_rollout_step_seconds", "step" => step.name(), "result" => result)
        .record(took.as_secs_f64());
}

/// One log line per progress event: the events are the release's story.
fn trace_event(kind: &EventKind) {
    match kind {
        EventKind::Phase(phase @ (Phase::Braked { .. } | Phase::Finished(Outcome::Failed(_)))) => {
            tracing::warn!(%phase, "release phase");
        }
        EventKind::Phase(phase) => tracing::info!(%phase, "release phase"),
        EventKind::BatchStarted { batch, hosts } => tracing::info!(%batch, hosts, "batch started"),
        EventKind::BatchFinished { batch, succeeded, failed, cancelled } => {
            tracing::info!(%batch, succeeded, failed, cancelled, "batch finished");
        }
        EventKind::StepStarted { host, step } => tracing::debug!(%host, %step, "step started"),
        EventKind::HostFinished { host, state } => {
            if matches!(state, HostState::Failed { .. }) {
                tracing::warn!(%host, %state, "host finished");
            } else {
                tracing::info!(%host, %state, "host finished");
            }
            #[cfg(feature = "metrics")]
            metrics::counter!("plus_rollout_hosts_finished_total", "state" => state.name())
                .increment(1);
        }
        EventKind::Analysis(record) => match record.verdict {
            crate::analysis::Verdict::Passed => {
                tracing::info!(before_batch = record.before_batch, "analysis passed");
            }
            ref verdict => {
                tracing::warn!(before_batch = record.before_batch, %verdict, "analysis did not pass");
            }
        },
        EventKind::DeadlinePassed { reason } => tracing::warn!(%reason, "release deadline passed"),
        EventKind::Paused => tracing::info!("release paused"),
        EventKind::Resumed => tracing::info!("release resumed"),
        EventKind::Restored { in_doubt } => {
            tracing::info!(in_doubt, "release restored; hosts in doubt start again from precheck");
        }
        EventKind::RollbackStarted { .. } => tracing::warn!(event = %kind, "release rolls back"),
        EventKind::Degraded(call) => tracing::warn!(
            host = %call.host, step = %call.step, reason = %call.reason,
            "degraded: the step's external call was not made"
        ),
        // The rollback logged it when it happened there.
        EventKind::Rollback(_) => {}
    }
}

/// The brake's verdict before a batch, with the numbers it saw.
fn trace_brake(batch: usize, view: &BrakeView<'_>, braked: Option<&str>) {
    let BrakeView { planned, failed, done, next_batch, max_ratio, .. } = *view;
    match braked {
        Some(reason) => tracing::warn!(
            batch, planned, failed, done, next_batch, %max_ratio, reason, "brake: hold"
        ),
        None => tracing::debug!(batch, planned, failed, done, next_batch, %max_ratio, "brake: go"),
    }
}

/// What a phase's command handler returns: `None` when the command is not one of its own.
type Handled = Option<Result<(), CommandRejected>>;

fn rejected(command: Command, reason: &str) -> Result<(), CommandRejected> {
    Err(CommandRejected { command, reason: reason.to_owned() })
}

fn humantime_short(d: Duration) -> String {
    if d.subsec_nanos() == 0 { format!("{}s", d.as_secs()) } else { format!("{}ms", d.as_millis()) }
}

impl Core for Release {
    type Job = ReleaseJob;
    type Outcome = StepOutcome;
    type Event = Event;
    type Command = Command;
    type Rejection = CommandRejected;
    type Report = ReleaseReport;
    type Saved = SavedRelease;

    fn poll_action(&mut self) -> Option<Action<ReleaseJob>> {
        Release::poll_action(self)
    }
    fn poll_event(&mut self) -> Option<Event> {
        Release::poll_event(self)
    }
    fn poll_timeout(&mut self) -> Option<Timestamp> {
        Release::poll_timeout(self)
    }
    fn handle_outcome(&mut self, id: JobId, outcome: StepOutcome, now: Timestamp) {
        self.handle_step_result(id.slot, id.token, outcome, now);
    }
    fn handle_command(&mut self, command: Command, now: Timestamp) -> Result<(), CommandRejected> {
        Release::handle_command(self, command, now)
    }
    fn handle_timeout(&mut self, now: Timestamp) {
        Release::handle_timeout(self, now);
    }
    fn now(&self) -> Timestamp {
        self.clock
    }
    fn is_finished(&self) -> bool {
        Release::is_finished(self)
    }
    fn report(&self) -> ReleaseReport {
        Release::report(self)
    }
    fn set_event_recording(&mut self, on: bool) {
        Release::set_event_recording(self, on);
    }
    fn failed_outcome(reason: String) -> StepOutcome {
        StepOutcome::Failed(reason)
    }

    fn save(&self) -> SavedRelease {
        Release::save(self)
    }
}
