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
#[derive(Debug, Clone, PartialEq)]
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
    /// A worker of `kind` with no load, no caches and no capacity limit; set the rest with
    /// struct update syntax.
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
}
