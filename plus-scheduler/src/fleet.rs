//! A fleet of workers as the scheduler's host keeps it: registrations, heartbeats, liveness,
//! and the jobs placed on each worker (the Meituan Plus talk's worker registry, watchdog and job controller).
//!
//! The fleet is sans-IO like the rest of the crate: heartbeats and ticks come in with the time
//! the host passes, and lost jobs come out as values.
//!
//! # Liveness
//!
//! A worker heard from within `heartbeat_interval` is healthy. [`Fleet::tick`] turns a worker
//! silent for longer into a suspect, and one silent for longer than `dead_after` into a dead
//! one: it leaves the fleet, and every job placed on it comes back as a [`LostJob`] so the
//! host can place it again. So a worker heard from within `dead_after` is never declared dead,
//! and a silent one is declared dead at the first tick at least `dead_after` after it was last
//! heard from: with a tick every `T`, within `dead_after + T`. A heartbeat makes a suspect
//! healthy at once; a dead worker must [`Fleet::register`] again.
//!
//! # Reservations
//!
//! [`Fleet::assign`] reserves a slot on the chosen worker at once, and adds the job's load to
//! it until the worker's next heartbeat (whose load is taken to include every job assigned
//! before it), so decisions made back to back spread instead of piling onto one worker.
//! [`Fleet::finish`] gives the slot back. The cache dimension is computed for each job from its
//! project and the caches each worker reports, not kept as a flag.

mod config;
mod pool;

use std::collections::HashMap;

use plus_core::{Timestamp, WorkerId};
use rand::Rng;

pub use config::{FleetConfig, FleetError, SuspectPolicy};
use pool::{Moved, Pool};

use crate::{Candidate, DimensionScore, Job, Scheduler, WorkerKind};

/// A job placed by a fleet: its id for [`Fleet::finish`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FleetJobId(pub u64);

impl std::fmt::Display for FleetJobId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "job-{}", self.0)
    }
}

/// Where [`Fleet::assign`] put a job.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The job, to [`Fleet::finish`] when it ends.
    pub job: FleetJobId,
    /// The worker chosen.
    pub worker: WorkerId,
    /// Its score.
    pub score: f64,
    /// Whether the worker was suspect (no healthy worker could take the job).
    pub suspect: bool,
    /// Why: each dimension's part in its score.
    pub dimensions: Vec<DimensionScore>,
}

/// A job whose worker was declared dead: place it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostJob {
    /// The job.
    pub job: FleetJobId,
    /// Its project.
    pub project: String,
    /// Its kind.
    pub kind: WorkerKind,
    /// The worker that died.
    pub worker: WorkerId,
}

/// A worker's liveness now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// Heard from within the heartbeat interval (as of the last tick or heartbeat).
    Healthy,
    /// Missed a heartbeat; placed last or not at all ([`SuspectPolicy`]).
    Suspect,
    /// Declared dead; its jobs were given back. It must register again.
    Dead,
}

/// What a heartbeat carries.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Heartbeat {
    /// The worker's load now, its own measure (`running / slots`, say): finite and >= 0.
    pub load: f64,
    /// The projects whose caches it holds, when they changed (`None`: as before).
    pub caches: Option<Vec<String>>,
}

#[derive(Debug)]
struct Worker {
    id: WorkerId,
    kind: WorkerKind,
    /// Its slot in its kind's pool; `None` once dead.
    slot: Option<u32>,
    last_heard: Timestamp,
    reported_load: f64,
    /// Load of the jobs assigned since the last heartbeat.
    pending_load: f64,
    caches: Vec<String>,
    jobs: Vec<FleetJobId>,
}

#[derive(Debug)]
struct Reservation {
    worker: u32,
    project: String,
    kind: WorkerKind,
}

/// The fleet: every registered worker, its liveness and the jobs placed on it.
///
/// ```
/// use std::time::Duration;
/// use plus_core::{Timestamp, WorkerId, seeded_rng};
/// use plus_scheduler::{Fleet, FleetConfig, Heartbeat, Job, REFERENCE_WEIGHTS, Scheduler, WorkerKind};
///
/// let mut fleet = Fleet::new(FleetConfig::default())?; // beats every 5 s, dead after 30 s
/// let (a, b) = (WorkerId::new("builder-a").unwrap(), WorkerId::new("builder-b").unwrap());
/// let t0 = Timestamp::ZERO;
/// fleet.register(a.clone(), WorkerKind::Build, Some(4), t0)?;
/// fleet.register(b.clone(), WorkerKind::Build, Some(4), t0)?;
/// fleet.heartbeat(&a, Heartbeat { load: 0.1, caches: Some(vec!["api".into()]) }, t0)?;
/// fleet.heartbeat(&b, Heartbeat { load: 0.1, caches: Some(vec!["web".into()]) }, t0)?;
///
/// let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS)?;
/// let mut rng = seeded_rng(7);
/// let job = Job { kind: WorkerKind::Build, project: "api" };
/// let placed = fleet.assign(&scheduler, &job, &mut rng)?;
/// assert_eq!(placed.worker, a); // it holds the project's cache
///
/// // `a` falls silent; `b` keeps beating. After `dead_after`, the tick gives a's job back.
/// fleet.heartbeat(&b, Heartbeat::default(), t0 + Duration::from_secs(30))?;
/// let lost = fleet.tick(t0 + Duration::from_secs(31));
/// assert_eq!(lost.len(), 1);
/// assert_eq!(lost[0].job, placed.job);
/// let again = fleet.assign(&scheduler, &Job { kind: WorkerKind::Build, project: &lost[0].project }, &mut rng)?;
/// assert_eq!(again.worker, b);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Fleet {
    config: FleetConfig,
    workers: Vec<Worker>,
    by_id: HashMap<WorkerId, u32>,
    pools: [Pool; 3],
    /// Workers holding each project's cache.
    cached: HashMap<String, Vec<u32>>,
    jobs: HashMap<FleetJobId, Reservation>,
    next_job: u64,
}

fn kind_index(kind: WorkerKind) -> usize {
    match kind {
        WorkerKind::Build => 0,
        WorkerKind::Deploy => 1,
        WorkerKind::Offline => 2,
    }
}

impl Fleet {
    /// An empty fleet.
    ///
    /// # Errors
    /// [`FleetError::Config`] when `config` fails [`FleetConfig::validate`].
    pub fn new(config: FleetConfig) -> Result<Self, FleetError> {
        config.validate()?;
        Ok(Self {
            config,
            workers: Vec::new(),
            by_id: HashMap::new(),
            pools: Default::default(),
            cached: HashMap::new(),
            jobs: HashMap::new(),
            next_job: 0,
        })
    }

    /// Registers a worker, healthy as of `now`, or registers it again (after it was declared
    /// dead, or with a new kind or capacity: its jobs, if any, stay).
    ///
    /// # Errors
    /// [`FleetError::ZeroCapacity`].
    pub fn register(
        &mut self,
        id: WorkerId,
        kind: WorkerKind,
        capacity: Option<u32>,
        now: Timestamp,
    ) -> Result<(), FleetError> {
        if capacity == Some(0) {
            return Err(FleetError::ZeroCapacity(id));
        }
        let index = match self.by_id.get(&id) {
            Some(&index) => {
                self.leave_pool(index);
                index
            }
            None => {
                let index =
                    u32::try_from(self.workers.len()).expect("fewer than 4 billion workers");
                self.workers.push(Worker {
                    id: id.clone(),
                    kind,
                    slot: None,
                    last_heard: now,
                    reported_load: 0.0,
                    pending_load: 0.0,
                    caches: Vec::new(),
                    jobs: Vec::new(),
                });
                self.by_id.insert(id.clone(), index);
                index
            }
        };
        let worker = &mut self.workers[index as usize];
        worker.kind = kind;
        worker.last_heard = now;
        let candidate = Candidate::new(id, kind)
            .with_load(worker.reported_load + worker.pending_load)
            .with_total_caches(worker.caches.len() as u64)
            .with_running_jobs(u32::try_from(worker.jobs.len()).unwrap_or(u32::MAX))
            .with_capacity(capacity);
        let (slot, moved) = self.pools[kind_index(kind)].insert_healthy(index, candidate);
        self.workers[index as usize].slot = Some(slot);
        self.note_moved(moved);
        Ok(())
    }

    /// A heartbeat from worker `id` at `now`: it is healthy again, with this load (and these
    /// caches, if given).
    ///
    /// # Errors
    /// [`FleetError::UnknownWorker`], [`FleetError::DeclaredDead`] (register again),
    /// [`FleetError::InvalidLoad`].
    pub fn heartbeat(
        &mut self,
        id: &WorkerId,
        beat: Heartbeat,
        now: Timestamp,
    ) -> Result<(), FleetError> {
        let Some(&index) = self.by_id.get(id) else {
            return Err(FleetError::UnknownWorker(id.clone()));
        };
        if !beat.load.is_finite() || beat.load < 0.0 {
            return Err(FleetError::InvalidLoad { worker: id.clone(), load: beat.load });
        }
        let worker = &mut self.workers[index as usize];
        let Some(mut slot) = worker.slot else {
            return Err(FleetError::DeclaredDead(id.clone()));
        };
        worker.last_heard = worker.last_heard.max(now);
        worker.reported_load = beat.load;
        worker.pending_load = 0.0;
        let kind = kind_index(worker.kind);
        if let Some(caches) = beat.caches {
            self.replace_caches(index, caches);
        }
        let pool = &mut self.pools[kind];
        if slot as usize >= pool.healthy {
            let (at, moved) = pool.make_healthy(slot);
            slot = at;
            self.workers[index as usize].slot = Some(slot);
            self.note_moved(moved);
        }
        let worker = &self.workers[index as usize];
        let candidate = &mut self.pools[kind].candidates[slot as usize];
        candidate.load = worker.reported_load;
        candidate.total_caches = worker.caches.len() as u64;
        Ok(())
    }

    /// Judges every worker's liveness at `now`: silent beyond the interval, suspect; beyond
    /// `dead_after`, dead, with its jobs returned here to be placed again.
    pub fn tick(&mut self, now: Timestamp) -> Vec<LostJob> {
        let mut lost = Vec::new();
        for index in 0..self.workers.len() {
            let worker = &self.workers[index];
            let Some(slot) = worker.slot else { continue };
            let silence = now.saturating_duration_since(worker.last_heard);
            let index = u32::try_from(index).expect("fewer than 4 billion workers");
            if silence > self.config.dead_after {
                self.declare_dead(index, &mut lost);
            } else if silence > self.config.heartbeat_interval {
                let pool = &mut self.pools[kind_index(worker.kind)];
                if (slot as usize) < pool.healthy {
                    let (at, moved) = pool.make_suspect(slot);
                    self.workers[index as usize].slot = Some(at);
                    self.note_moved(moved);
                }
            }
        }
        lost
    }

    /// Places `job` on the best live worker of its kind and reserves a slot there at once:
    /// healthy workers first, suspects only when none of them can take it (unless excluded).
    ///
    /// # Errors
    /// [`FleetError::Unplaced`] with the scheduler's reason when no worker can take it.
    pub fn assign<R: Rng + ?Sized>(
        &mut self,
        scheduler: &Scheduler,
        job: &Job<'_>,
        rng: &mut R,
    ) -> Result<Assignment, FleetError> {
        let kind = kind_index(job.kind);
        let flagged = self.flag_caches(kind, job.project);
        let pool = &self.pools[kind];
        let healthy = &pool.candidates[..pool.healthy];
        let mut picked =
            (!healthy.is_empty()).then(|| scheduler.decide(job, healthy, rng)).map(|d| {
                d.map(|d| (d.chosen_index(), d.score(), false, d.explain_chosen().dimensions))
            });
        let fall_back = matches!(
            picked,
            None | Some(Err(crate::Error::NoneAdmitted { .. } | crate::Error::NoCandidates))
        );
        if fall_back && self.config.suspects == SuspectPolicy::RankLast {
            let suspects = &pool.candidates[pool.healthy..];
            if !suspects.is_empty() {
                picked = Some(scheduler.decide(job, suspects, rng).map(|d| {
                    let why = d.explain_chosen().dimensions;
                    (pool.healthy + d.chosen_index(), d.score(), true, why)
                }));
            }
        }
        self.unflag_caches(kind, flagged);
        let (slot, score, suspect, dimensions) =
            picked.unwrap_or(Err(crate::Error::NoCandidates))?;
        let mut assignment = self.reserve(kind, slot, job, score, suspect);
        assignment.dimensions = dimensions;
        Ok(assignment)
    }

    /// The job ended (done or failed): its slot is free again.
    ///
    /// # Errors
    /// [`FleetError::UnknownJob`] when it is not assigned (finished already, or lost).
    pub fn finish(&mut self, job: FleetJobId) -> Result<(), FleetError> {
        let reservation = self.jobs.remove(&job).ok_or(FleetError::UnknownJob(job.0))?;
        let worker = &mut self.workers[reservation.worker as usize];
        if let Some(at) = worker.jobs.iter().position(|j| *j == job) {
            worker.jobs.swap_remove(at);
        }
        if let Some(slot) = worker.slot {
            let running = u32::try_from(worker.jobs.len()).unwrap_or(u32::MAX);
            self.pools[kind_index(worker.kind)].candidates[slot as usize].running_jobs = running;
        }
        Ok(())
    }

    /// Worker `id`'s liveness, if it ever registered.
    #[must_use]
    pub fn liveness(&self, id: &WorkerId) -> Option<Liveness> {
        let worker = &self.workers[*self.by_id.get(id)? as usize];
        Some(match worker.slot {
            None => Liveness::Dead,
            Some(slot) if (slot as usize) < self.pools[kind_index(worker.kind)].healthy => {
                Liveness::Healthy
            }
            Some(_) => Liveness::Suspect,
        })
    }

    /// The live workers of `kind` as candidates, healthy ones first, for a host that wants to
    /// call [`Scheduler::decide`] itself (`has_project_cache` is false in every one of them:
    /// it depends on the job).
    #[must_use]
    pub fn candidates(&self, kind: WorkerKind) -> &[Candidate] {
        &self.pools[kind_index(kind)].candidates
    }

    /// How many jobs are assigned and not finished or lost.
    #[must_use]
    pub fn assigned(&self) -> usize {
        self.jobs.len()
    }

    /// The jobs assigned to worker `id`.
    #[must_use]
    pub fn jobs_of(&self, id: &WorkerId) -> &[FleetJobId] {
        self.by_id.get(id).map_or(&[], |&index| &self.workers[index as usize].jobs)
    }

    fn reserve(
        &mut self,
        kind: usize,
        slot: usize,
        job: &Job<'_>,
        score: f64,
        suspect: bool,
    ) -> Assignment {
        let index = self.pools[kind].workers[slot];
        let id = FleetJobId(self.next_job);
        self.next_job += 1;
        let candidate = &mut self.pools[kind].candidates[slot];
        let share = candidate.capacity.map_or(self.config.load_per_job, |c| 1.0 / f64::from(c));
        let worker = &mut self.workers[index as usize];
        worker.jobs.push(id);
        worker.pending_load += share;
        candidate.load = worker.reported_load + worker.pending_load;
        candidate.running_jobs = u32::try_from(worker.jobs.len()).unwrap_or(u32::MAX);
        self.jobs.insert(
            id,
            Reservation { worker: index, project: job.project.to_owned(), kind: job.kind },
        );
        Assignment { job: id, worker: worker.id.clone(), score, suspect, dimensions: Vec::new() }
    }

    fn declare_dead(&mut self, index: u32, lost: &mut Vec<LostJob>) {
        self.leave_pool(index);
        let worker = &mut self.workers[index as usize];
        tracing::warn!(worker = %worker.id, jobs = worker.jobs.len(), "worker declared dead");
        for job in std::mem::take(&mut worker.jobs) {
            if let Some(r) = self.jobs.remove(&job) {
                lost.push(LostJob {
                    job,
                    project: r.project,
                    kind: r.kind,
                    worker: worker.id.clone(),
                });
            }
        }
        worker.pending_load = 0.0;
    }

    /// Takes the worker out of its pool (it is dead, or registers again).
    fn leave_pool(&mut self, index: u32) {
        let worker = &mut self.workers[index as usize];
        if let Some(slot) = worker.slot.take() {
            let kind = kind_index(worker.kind);
            for moved in self.pools[kind].remove(slot) {
                self.note_moved(moved);
            }
        }
    }

    fn note_moved(&mut self, moved: Moved) {
        if let Some((worker, slot)) = moved {
            self.workers[worker as usize].slot = Some(slot);
        }
    }

    fn replace_caches(&mut self, index: u32, caches: Vec<String>) {
        let old = std::mem::replace(&mut self.workers[index as usize].caches, caches);
        for project in old {
            if let Some(holders) = self.cached.get_mut(&project) {
                holders.retain(|&w| w != index);
                if holders.is_empty() {
                    self.cached.remove(&project);
                }
            }
        }
        let worker = &mut self.workers[index as usize];
        worker.caches.sort_unstable();
        worker.caches.dedup();
        for project in &worker.caches {
            self.cached.entry(project.clone()).or_default().push(index);
        }
    }

    /// Sets `has_project_cache` on the candidates of `kind` that hold `project`'s cache, and
    /// returns their slots, to clear after the decision.
    fn flag_caches(&mut self, kind: usize, project: &str) -> Vec<u32> {
        let Some(holders) = self.cached.get(project) else { return Vec::new() };
        let mut flagged = Vec::with_capacity(holders.len());
        for &worker in holders {
            let worker = &self.workers[worker as usize];
            if let Some(slot) = worker.slot.filter(|_| kind_index(worker.kind) == kind) {
                self.pools[kind].candidates[slot as usize].has_project_cache = true;
                flagged.push(slot);
            }
        }
        flagged
    }

    fn unflag_caches(&mut self, kind: usize, flagged: Vec<u32>) {
        for slot in flagged {
            self.pools[kind].candidates[slot as usize].has_project_cache = false;
        }
    }
}
