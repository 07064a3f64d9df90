use plus_core::WorkerId;

/// What a worker is for (Meituan's Plus build platform talk: build machines, deploy machines, offline-environment machines).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkerKind {
    /// Physical build machines that build code in containers.
    Build,
    /// Lighter containers or VMs that deploy.
    Deploy,
    /// Machines of the offline (test) environment.
    Offline,
}

/// The job to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Job<'a> {
    /// The kind of worker the job needs.
    pub kind: WorkerKind,
    /// The project the job builds or deploys; host-defined dimensions and filters may use it.
    pub project: &'a str,
}

/// One worker as the scheduler sees it for one job.
///
/// The host fills it from its own fleet model; `has_project_cache` is about the job being placed.
/// Made with [`Candidate::new`] and the `with_*` methods (new fields may come in a minor
/// release, so it is not built by a struct literal):
///
/// ```
/// use plus_core::WorkerId;
/// use plus_scheduler::{Candidate, WorkerKind};
///
/// let worker = Candidate::new(WorkerId::new("build-07").unwrap(), WorkerKind::Build)
///     .with_load(0.25)
///     .with_project_cache(true)
///     .with_total_caches(40)
///     .with_capacity(Some(8));
/// assert!(worker.has_project_cache && worker.capacity == Some(8));
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Candidate {
    /// The worker.
    pub id: WorkerId,
    /// What the worker is for; a job only goes to a worker of its kind.
    pub kind: WorkerKind,
    /// Load as a fraction (`running / slots`, or a host's own measure); must be finite and not
    /// negative. Smaller is better.
    pub load: f64,
    /// Whether the worker already holds this job's project cache. `true` is better.
    pub has_project_cache: bool,
    /// How many project caches the worker holds in all. Smaller is better (spreads caches).
    pub total_caches: u64,
    /// Jobs running on the worker now.
    pub running_jobs: u32,
    /// Most jobs the worker may run at once; `None` for no limit.
    pub capacity: Option<u32>,
}

impl Candidate {
    /// A worker of `kind` with no load, no caches, no running job and no capacity limit; the
    /// `with_*` methods set the rest.
    #[must_use]
    pub fn new(id: WorkerId, kind: WorkerKind) -> Self {
        Self {
            id,
            kind,
            load: 0.0,
            has_project_cache: false,
            total_caches: 0,
            running_jobs: 0,
            capacity: None,
        }
    }

    /// With this [`load`](Self::load).
    #[must_use]
    pub fn with_load(mut self, load: f64) -> Self {
        self.load = load;
        self
    }

    /// With or without the job's project cache ([`has_project_cache`](Self::has_project_cache)).
    #[must_use]
    pub fn with_project_cache(mut self, has_project_cache: bool) -> Self {
        self.has_project_cache = has_project_cache;
        self
    }

    /// Holding this many project caches in all ([`total_caches`](Self::total_caches)).
    #[must_use]
    pub fn with_total_caches(mut self, total_caches: u64) -> Self {
        self.total_caches = total_caches;
        self
    }

    /// Running this many jobs now ([`running_jobs`](Self::running_jobs)).
    #[must_use]
    pub fn with_running_jobs(mut self, running_jobs: u32) -> Self {
        self.running_jobs = running_jobs;
        self
    }

    /// With this [`capacity`](Self::capacity) (`None`: no limit).
    #[must_use]
    pub fn with_capacity(mut self, capacity: Option<u32>) -> Self {
        self.capacity = capacity;
        self
    }
}
