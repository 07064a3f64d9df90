//! How a [`Fleet`](super::Fleet) judges liveness and places jobs, and what it refuses.

use std::time::Duration;

use plus_core::WorkerId;

/// What a fleet does with a suspect worker: one that missed a heartbeat but is not dead yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SuspectPolicy {
    /// Placed only when no healthy worker of the job's kind can take the job.
    #[default]
    RankLast,
    /// Never placed until it is heard from again.
    Exclude,
}

/// A fleet's settings; start from [`FleetConfig::default`] and set what differs.
#[derive(Debug, Clone, PartialEq)]
pub struct FleetConfig {
    /// How often workers send a heartbeat: a worker not heard from for longer is suspect.
    pub heartbeat_interval: Duration,
    /// A worker not heard from for longer is declared dead at the next [`Fleet::tick`](super::Fleet::tick)
    /// and its jobs come back as lost. At least `heartbeat_interval`.
    pub dead_after: Duration,
    /// What to do with suspect workers.
    pub suspects: SuspectPolicy,
    /// Load a job adds to a worker without a capacity until the worker's next heartbeat
    /// reports its own measure (a worker with a capacity gets `1 / capacity`).
    pub load_per_job: f64,
}

impl Default for FleetConfig {
    /// Heartbeats every 5 s, dead after 30 s of silence (seed 000's watchdog), suspects last,
    /// 0.05 load per job.
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(5),
            dead_after: Duration::from_secs(30),
            suspects: SuspectPolicy::RankLast,
            load_per_job: 0.05,
        }
    }
}

impl FleetConfig {
    /// Checks the settings.
    ///
    /// # Errors
    /// [`FleetError::Config`] for a zero interval, a dead time shorter than the interval, or a
    /// load per job that is negative or not finite.
    pub fn validate(&self) -> Result<(), FleetError> {
        if self.heartbeat_interval.is_zero() {
            return Err(FleetError::Config("heartbeat_interval must be above zero".into()));
        }
        if self.dead_after < self.heartbeat_interval {
            return Err(FleetError::Config(format!(
                "dead_after ({:?}) must be at least heartbeat_interval ({:?})",
                self.dead_after, self.heartbeat_interval
            )));
        }
        if !self.load_per_job.is_finite() || self.load_per_job < 0.0 {
            return Err(FleetError::Config(format!(
                "load_per_job must be a finite number >= 0, found {}",
                self.load_per_job
            )));
        }
        Ok(())
    }
}

/// Why a fleet refused a call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The settings are unusable.
    #[error("invalid fleet config: {0}")]
    Config(String),
    /// No worker of that id registered.
    #[error("worker `{0}` is not registered")]
    UnknownWorker(WorkerId),
    /// The worker was declared dead and its jobs given back: it must register again.
    #[error("worker `{0}` was declared dead; it must register again")]
    DeclaredDead(WorkerId),
    /// A heartbeat's load is negative or not a finite number.
    #[error("worker `{worker}` reported load {load}, not a finite number >= 0")]
    InvalidLoad {
        /// The worker.
        worker: WorkerId,
        /// The load reported.
        load: f64,
    },
    /// A capacity of zero slots: the worker could never take a job.
    #[error("worker `{0}` registered with a capacity of 0")]
    ZeroCapacity(WorkerId),
    /// No job of that id is assigned (it finished, or was lost with its worker).
    #[error("job {0} is not assigned")]
    UnknownJob(u64),
    /// No live worker can take the job: the scheduler's reason.
    #[error(transparent)]
    Unplaced(#[from] crate::Error),
}
