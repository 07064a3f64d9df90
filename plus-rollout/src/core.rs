//! The one contract both rollout cores ([`Release`](crate::Release) and
//! [`Deployment`](crate::Deployment)) speak, so one driver runs either: start this job with this
//! token, cancel it, an event happened, wake me at this time.

use plus_core::Timestamp;

/// Why a core's configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A count or a duration that must be positive is zero (it was once raised to 1 silently).
    #[error("`{0}` must be greater than zero")]
    Zero(&'static str),
}

/// `Err(ConfigError::Zero(name))` for the first `(name, is_zero)` that is zero.
pub(crate) fn positive(fields: &[(&'static str, bool)]) -> Result<(), ConfigError> {
    match fields.iter().find(|(_, zero)| *zero) {
        Some((name, _)) => Err(ConfigError::Zero(name)),
        None => Ok(()),
    }
}

/// One run of a job: the slot it runs in (a host's or an application's index in its core) and
/// the token of this run. A result reported with a stale token is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId {
    /// The host's or application's index in its core.
    pub slot: u32,
    /// Identifies this run in the slot; never 0.
    pub token: u64,
}

/// Something a core asks its host (or driver) to do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action<J> {
    /// Run `job`, then report its outcome with `id`.
    Start {
        /// Report the outcome with this id.
        id: JobId,
        /// What to run.
        job: J,
    },
    /// Stop the run `id`; its outcome, if one still arrives, is ignored.
    Cancel(JobId),
}

/// A sans-IO rollout core, as a driver sees it.
///
/// Feed it outcomes, commands and timeouts with the time they happened; after each, drain
/// [`Core::poll_action`] and [`Core::poll_event`], and call [`Core::handle_timeout`] at
/// [`Core::poll_timeout`]. Time is the core's own: [`Core::now`] says where its clock stands, so
/// a driver continues from there whatever time the core was built or restored at.
pub trait Core {
    /// What a started job runs.
    type Job;
    /// What a finished job reports.
    type Outcome;
    /// Progress for people and stores.
    type Event;
    /// What a person (or a program) can tell the core.
    type Command;
    /// Why a command was refused.
    type Rejection;
    /// The final account.
    type Report;
    /// The core's state as [`Core::save`] gives it: enough for another controller to continue.
    type Saved: Send + Sync + 'static;

    /// The next action.
    fn poll_action(&mut self) -> Option<Action<Self::Job>>;
    /// The next event.
    fn poll_event(&mut self) -> Option<Self::Event>;
    /// When to call [`Core::handle_timeout`] next.
    fn poll_timeout(&mut self) -> Option<Timestamp>;
    /// The outcome of the run `id`.
    fn handle_outcome(&mut self, id: JobId, outcome: Self::Outcome, now: Timestamp);
    /// A command.
    ///
    /// # Errors
    /// When the core does not take it now.
    fn handle_command(
        &mut self,
        command: Self::Command,
        now: Timestamp,
    ) -> Result<(), Self::Rejection>;
    /// Time has reached a deadline the core asked for.
    fn handle_timeout(&mut self, now: Timestamp);
    /// The latest time the core was given (its construction time at first).
    fn now(&self) -> Timestamp;
    /// Whether the core is over (no action will follow).
    fn is_finished(&self) -> bool;
    /// The report so far (final once finished).
    fn report(&self) -> Self::Report;
    /// Stops (or restarts) recording events, for a host that does not read them.
    fn set_event_recording(&mut self, on: bool);
    /// The outcome to report for a job whose executor panicked or vanished.
    fn failed_outcome(reason: String) -> Self::Outcome;
    /// The core's state now, to be continued after a crash.
    fn save(&self) -> Self::Saved;
}
