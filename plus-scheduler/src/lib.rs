//! Pick the best worker for a job by normalized weighted scoring (Meituan's Plus build platform talk), and tune the weights
//! in simulation before shipping them.
//!
//! A decision filters the candidates (wrong kind, at capacity, host-defined [`Filter`]s), then
//! scores each survivor on every dimension: per dimension, raw values are normalized across the
//! candidates to `(v - min) / (max - min)` (one minus that when smaller is better; 1.0 for every
//! candidate when all values are equal, as kube-scheduler does), and the score is the sum of
//! weight x normalized value. The built-in dimensions are load (smaller is better), has this
//! project's cache (true is better) and total caches held (smaller is better); hosts add their
//! own through [`Dimension`]. Every [`Decision`] explains itself, and ties are broken by the
//! caller's seeded RNG or a deterministic [`TieBreak`], never by hash order.
//!
//! [`decide`](Scheduler::decide) works on a plain slice, for hosts that keep their own fleet.
//! [`Fleet`] keeps one for them: workers register and send heartbeats with their load and the
//! projects they cache; silent workers become suspect, then dead, and their jobs come back as
//! lost; a placement reserves its slot at once; the cache dimension is computed per job.
//!
//! The crate does no I/O and reads no clock; the [`simulate`] harness runs in simulated time,
//! and the fleet judges liveness from the time its host passes in.
//!
//! ```
//! use plus_core::{WorkerId, seeded_rng};
//! use plus_scheduler::{Candidate, Job, REFERENCE_WEIGHTS, Scheduler, WorkerKind};
//!
//! let worker = |id: &str, load: f64, has_cache: bool, caches: u64| {
//!     Candidate::new(WorkerId::new(id).unwrap(), WorkerKind::Build)
//!         .with_load(load)
//!         .with_project_cache(has_cache)
//!         .with_total_caches(caches)
//! };
//! // The Meituan Plus build platform talk's worked example.
//! let fleet = [
//!     worker("worker1", 2.0 / 20.0, false, 100),
//!     worker("worker2", 6.0 / 20.0, true, 2000),
//!     worker("worker3", 7.0 / 20.0, false, 500),
//!     worker("worker4", 9.0 / 20.0, false, 300),
//!     worker("worker5", 1.0 / 20.0, false, 1300),
//! ];
//! let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS)?;
//! let job = Job { kind: WorkerKind::Build, project: "release-5331" };
//! let decision = scheduler.decide(&job, &fleet, &mut seeded_rng(7))?;
//! assert_eq!(decision.chosen().id.as_str(), "worker1");
//! assert!((decision.score() - 64.625).abs() < 1e-9);
//! println!("{}", decision.log_line(5));
//! # Ok::<(), plus_scheduler::Error>(())
//! ```
//!
//! # Performance
//!
//! `cargo bench -p benches --bench scheduler` compares one decision with a plain pass summing the
//! same metric arrays (the floor: every metric must be read once); figures in BENCHMARKS.md.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod candidate;
mod dimension;
mod error;
mod fleet;
#[cfg(feature = "plot")]
mod plot;
mod scheduler;
mod sim;
mod tune;

pub use candidate::{Candidate, Job, WorkerKind};
pub use dimension::{Builtin, Dimension, Direction, Filter};
pub use error::Error;
pub use fleet::{
    Assignment, Fleet, FleetConfig, FleetError, FleetJobId, Heartbeat, Liveness, LostJob,
    SuspectPolicy,
};
/// The random-number trait [`Scheduler::decide`] takes for tie-breaks (any `rand` 0.9 RNG, or
/// [`plus_core::seeded_rng`]).
pub use rand::Rng;
pub use scheduler::{
    CandidateScore, Decision, DimensionScore, REFERENCE_WEIGHTS, Rejection, Scheduler,
    SchedulerBuilder, TieBreak, Weights,
};
pub use sim::{Popularity, SimConfig, SimError, SimReport, WorkerJoin, WorkerTotals, simulate};
pub use tune::{Objective, Search, Trial, TuneConfig, TuneResult, tune};
