//! The simulation harness: replays a stream of jobs against a model fleet in simulated time, so
//! that weights can be judged (and tuned) before they are shipped (the Meituan Plus talk's Go benchmark).

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};

use plus_core::{WorkerId, seeded_rng};
use rand::Rng;

use crate::candidate::{Candidate, Job, WorkerKind};
use crate::error::Error;
use crate::scheduler::{REFERENCE_WEIGHTS, Scheduler, Weights};

/// How often each project is built.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Popularity {
    /// Every project equally often.
    Uniform,
    /// Project `k` (from 1) in proportion to `1 / k^exponent`: a few hot projects, a long tail.
    Zipf {
        /// The skew; 1.0 is classic Zipf.
        exponent: f64,
    },
}

/// Workers that join the fleet part-way through a run, with no caches (Meituan's Plus build platform talk: "new workers
/// make caches uneven").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerJoin {
    /// The join happens before job number `after_jobs` is placed.
    pub after_jobs: usize,
    /// How many workers join.
    pub count: usize,
}

/// The fleet model and job stream of one simulation.
///
/// The defaults model the Meituan Plus talk's experiment: 10 build workers with 20 job slots each, whose
/// initial caches are uneven (worker `i` starts with `(i + 1) x 200` random project caches, so
/// 200 to 2,000); 36,000 projects built with uniform popularity (the talk does not give its
/// project count; 36,000 makes the default run end, like the source talk's, with about 3,250 caches on
/// every worker); 50,000 jobs, one arriving per
/// tick, each running 5 to 15 ticks (uniform), adding `1/slots` to its worker's load while it
/// runs and leaving its project's cache on the worker when it ends; no eviction; weights
/// load 35, has-cache 50, total caches 34.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Workers at the start. Default 10.
    pub workers: usize,
    /// Jobs to place. Default 50,000.
    pub jobs: usize,
    /// Distinct projects. Default 36,000.
    pub projects: usize,
    /// How projects are drawn. Default [`Popularity::Uniform`].
    pub popularity: Popularity,
    /// Scoring weights. Default [`REFERENCE_WEIGHTS`].
    pub weights: Weights,
    /// Worker `i` starts with `(i + 1) x initial_cache_step` caches. Default 200.
    pub initial_cache_step: usize,
    /// Job slots per worker; load is `running / slots`. Default 20.
    pub slots: u32,
    /// Shortest and longest job, in ticks, inclusive. Default `(5, 15)`.
    pub job_ticks: (u64, u64),
    /// Ticks between job arrivals. Default 1.
    pub arrival_ticks: u64,
    /// Most caches a worker keeps; the least recently used goes first. Default `None` (no
    /// eviction).
    pub max_caches_per_worker: Option<usize>,
    /// Workers that join part-way. Default none.
    pub joins: Vec<WorkerJoin>,
    /// The RNG seed: same config, same report. Default 1.
    pub seed: u64,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            workers: 10,
            jobs: 50_000,
            projects: 36_000,
            popularity: Popularity::Uniform,
            weights: REFERENCE_WEIGHTS,
            initial_cache_step: 200,
            slots: 20,
            job_ticks: (5, 15),
            arrival_ticks: 1,
            max_caches_per_worker: None,
            joins: Vec::new(),
            seed: 1,
        }
    }
}

/// Why a simulation could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A field of [`SimConfig`] is out of range.
    #[error("invalid simulation config: {0}")]
    InvalidConfig(String),
    /// The scheduler rejected the weights or a decision failed.
    #[error(transparent)]
    Scheduler(#[from] Error),
}

/// One worker's totals at the end of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerTotals {
    /// The worker.
    pub id: WorkerId,
    /// Jobs placed on it.
    pub jobs: u64,
    /// Of those, how many found the project's cache there.
    pub hits: u64,
    /// Caches held at the end.
    pub caches: usize,
    /// Load averaged over the time it was in the fleet.
    pub mean_load: f64,
}

/// What a simulation measured.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Jobs placed.
    pub jobs: usize,
    /// Workers at the end.
    pub workers: usize,
    /// Fraction of jobs placed on a worker that held the project's cache.
    pub hit_rate: f64,
    /// Coefficient of variation (stddev / mean) of caches held per worker at the end: 0 is
    /// perfectly even.
    pub cache_cv: f64,
    /// Coefficient of variation of the workers' time-averaged load over the run.
    pub load_cv: f64,
    /// Simulated ticks the run took.
    pub ticks: u64,
    /// Per-worker totals, in worker order.
    pub per_worker: Vec<WorkerTotals>,
}

/// Population coefficient of variation; 0 for an empty or all-zero sample.
pub(crate) fn coefficient_of_variation(values: impl Iterator<Item = f64> + Clone) -> f64 {
    let n = values.clone().count() as f64;
    if n == 0.0 {
        return 0.0;
    }
    let mean = values.clone().sum::<f64>() / n;
    if mean == 0.0 {
        return 0.0;
    }
    let variance = values.map(|v| (v - mean).powi(2)).sum::<f64>() / n;
    variance.sqrt() / mean
}

/// Draws project numbers by popularity.
struct ProjectSampler {
    /// Cumulative weights for Zipf; empty for uniform.
    cdf: Vec<f64>,
    projects: usize,
}

impl ProjectSampler {
    fn new(projects: usize, popularity: Popularity) -> Self {
        let cdf = match popularity {
            Popularity::Uniform => Vec::new(),
            Popularity::Zipf { exponent } => {
                let mut total = 0.0;
                (1..=projects)
                    .map(|k| {
                        total += 1.0 / (k as f64).powf(exponent);
                        total
                    })
                    .collect()
            }
        };
        Self { cdf, projects }
    }

    fn sample(&self, rng: &mut impl Rng) -> u32 {
        let index = match self.cdf.last() {
            None => rng.random_range(0..self.projects),
            Some(&total) => {
                let x = rng.random_range(0.0..total);
                self.cdf.partition_point(|&c| c <= x).min(self.projects - 1)
            }
        };
        index as u32
    }
}

/// A worker's caches with least-recently-used order for eviction.
#[derive(Default)]
struct CacheSet {
    last_used: HashMap<u32, u64>,
    by_age: BTreeSet<(u64, u32)>,
}

impl CacheSet {
    fn contains(&self, project: u32) -> bool {
        self.last_used.contains_key(&project)
    }

    fn len(&self) -> usize {
        self.last_used.len()
    }

    fn touch(&mut self, project: u32, now: u64, limit: Option<usize>) {
        if let Some(old) = self.last_used.insert(project, now) {
            self.by_age.remove(&(old, project));
        }
        self.by_age.insert((now, project));
        if let Some(limit) = limit {
            while self.last_used.len() > limit {
                let (_, evicted) = self.by_age.pop_first().expect("by_age mirrors last_used");
                self.last_used.remove(&evicted);
            }
        }
    }
}

struct SimWorker {
    caches: CacheSet,
    jobs: u64,
    hits: u64,
    load_area: f64,
    joined_at: u64,
}

fn validate(config: &SimConfig) -> Result<(), SimError> {
    let bad = |what: &str| Err(SimError::InvalidConfig(what.to_owned()));
    if config.workers == 0 {
        return bad("`workers` must be at least 1");
    }
    if config.projects == 0 || u32::try_from(config.projects).is_err() {
        return bad("`projects` must be between 1 and 4294967295");
    }
    if config.slots == 0 {
        return bad("`slots` must be at least 1");
    }
    if config.job_ticks.0 == 0 || config.job_ticks.0 > config.job_ticks.1 {
        return bad("`job_ticks` must be (min, max) with 1 <= min <= max");
    }
    if let Popularity::Zipf { exponent } = config.popularity
        && (!exponent.is_finite() || exponent < 0.0)
    {
        return bad("Zipf `exponent` must be a finite number >= 0");
    }
    if config.max_caches_per_worker == Some(0) {
        return bad("`max_caches_per_worker` must be at least 1 when set");
    }
    Ok(())
}

/// Runs one simulation. Deterministic: the same config gives the same report.
///
/// # Errors
/// [`SimError::InvalidConfig`] for an out-of-range field, [`SimError::Scheduler`] for bad weights.
pub fn simulate(config: &SimConfig) -> Result<SimReport, SimError> {
    validate(config)?;
    let scheduler = Scheduler::with_weights(config.weights)?;
    let mut rng = seeded_rng(config.seed);
    let sampler = ProjectSampler::new(config.projects, config.popularity);
    let mut workers: Vec<SimWorker> = Vec::new();
    let mut candidates: Vec<Candidate> = Vec::new();
    let add_worker = |workers: &mut Vec<SimWorker>, candidates: &mut Vec<Candidate>, now: u64| {
        let index = workers.len();
        let id = WorkerId::new(format!("worker-{index}")).expect("generated ids are valid");
        workers.push(SimWorker {
            caches: CacheSet::default(),
            jobs: 0,
            hits: 0,
            load_area: 0.0,
            joined_at: now,
        });
        candidates.push(Candidate::new(id, WorkerKind::Build).with_capacity(Some(config.slots)));
    };
    for _ in 0..config.workers {
        add_worker(&mut workers, &mut candidates, 0);
    }
    for (i, worker) in workers.iter_mut().enumerate() {
        for _ in 0..(i + 1) * config.initial_cache_step {
            let project = rng.random_range(0..config.projects) as u32;
            worker.caches.touch(project, 0, config.max_caches_per_worker);
        }
    }
    // (end tick, worker, project), earliest first.
    let mut running: BinaryHeap<Reverse<(u64, usize, u32)>> = BinaryHeap::new();
    let mut now = 0_u64;
    let mut joins = config.joins.clone();
    joins.sort_by_key(|j| j.after_jobs);
    let mut next_join = 0;
    let advance = |to: u64,
                   workers: &mut [SimWorker],
                   candidates: &mut [Candidate],
                   running: &mut BinaryHeap<Reverse<(u64, usize, u32)>>,
                   now: &mut u64| {
        while let Some(&Reverse((end, w, project))) = running.peek() {
            if end > to {
                break;
            }
            running.pop();
            account(workers, candidates, *now, end, config.slots);
            *now = end;
            candidates[w].running_jobs -= 1;
            workers[w].caches.touch(project, end, config.max_caches_per_worker);
        }
        account(workers, candidates, *now, to, config.slots);
        *now = to;
    };

    for job_number in 0..config.jobs {
        while next_join < joins.len() && joins[next_join].after_jobs <= job_number {
            for _ in 0..joins[next_join].count {
                add_worker(&mut workers, &mut candidates, now);
            }
            next_join += 1;
        }
        advance(now + config.arrival_ticks, &mut workers, &mut candidates, &mut running, &mut now);
        let project = sampler.sample(&mut rng);
        let name = project.to_string();
        let job = Job { kind: WorkerKind::Build, project: &name };
        let chosen = loop {
            for (c, w) in candidates.iter_mut().zip(&workers) {
                c.load = f64::from(c.running_jobs) / f64::from(config.slots);
                c.has_project_cache = w.caches.contains(project);
                c.total_caches = w.caches.len() as u64;
            }
            match scheduler.pick(&job, &candidates, &mut rng) {
                Ok(chosen) => break chosen,
                Err(Error::NoneAdmitted { .. }) => {
                    // Every worker is full: the job waits for the next one to finish.
                    let Some(&Reverse((end, _, _))) = running.peek() else {
                        unreachable!("workers are full only while jobs run");
                    };
                    advance(end, &mut workers, &mut candidates, &mut running, &mut now);
                }
                Err(err) => return Err(err.into()),
            }
        };
        let worker = &mut workers[chosen];
        worker.jobs += 1;
        if candidates[chosen].has_project_cache {
            worker.hits += 1;
            worker.caches.touch(project, now, config.max_caches_per_worker);
        }
        candidates[chosen].running_jobs += 1;
        let duration = rng.random_range(config.job_ticks.0..=config.job_ticks.1);
        running.push(Reverse((now + duration, chosen, project)));
    }
    let last = running.iter().map(|Reverse((end, _, _))| *end).max().unwrap_or(now);
    advance(last, &mut workers, &mut candidates, &mut running, &mut now);

    let per_worker: Vec<WorkerTotals> = workers
        .iter()
        .zip(&candidates)
        .map(|(w, c)| {
            let present = now.saturating_sub(w.joined_at);
            WorkerTotals {
                id: c.id.clone(),
                jobs: w.jobs,
                hits: w.hits,
                caches: w.caches.len(),
                mean_load: if present == 0 { 0.0 } else { w.load_area / present as f64 },
            }
        })
        .collect();
    let hits: u64 = per_worker.iter().map(|w| w.hits).sum();
    Ok(SimReport {
        jobs: config.jobs,
        workers: workers.len(),
        hit_rate: if config.jobs == 0 { 0.0 } else { hits as f64 / config.jobs as f64 },
        cache_cv: coefficient_of_variation(per_worker.iter().map(|w| w.caches as f64)),
        load_cv: coefficient_of_variation(per_worker.iter().map(|w| w.mean_load)),
        ticks: now,
        per_worker,
    })
}

/// Adds each worker's load over `[from, to)` to its running integral.
fn account(workers: &mut [SimWorker], candidates: &[Candidate], from: u64, to: u64, slots: u32) {
    if to <= from {
        return;
    }
    let dt = (to - from) as f64;
    for (w, c) in workers.iter_mut().zip(candidates) {
        w.load_area += f64::from(c.running_jobs) / f64::from(slots) * dt;
    }
}
