//! Release a version to a group of hosts in batches without taking the service down (Ctrip's release system talk),
//! and deploy many applications in dependency order (Qunar's dev/beta environment talk).
//!
//! The batch engine has three layers:
//!
//! - [`plan`]: a pure function from a group and a [`PlanConfig`] to a bastion and batches that
//!   never exceed the group's max pull-out ratio, with excluded hosts listed.
//! - [`Release`]: a sans-IO state machine. Commands ([`Command`]) and step results go in with the
//!   time; [`Action`]s (start or cancel a step), [`Event`]s and the next deadline come out. The
//!   bastion stops after Verify until a person bakes it; the [`BrakePolicy`] is checked before
//!   every batch; abort reports every host.
//! - `spawn_release` (feature `tokio`, on by default): a thin tokio driver that runs a release
//!   against a host-supplied `StepExecutor`, with a `ReleaseHandle` for commands and a
//!   `ReleaseEvents` stream.
//!
//! Both cores, [`Release`] and [`Deployment`], speak one contract, [`Core`]: start this job with
//! this [`JobId`], cancel it ([`Action`]), an event happened, wake me at this time. One generic
//! driver (`spawn`) runs either, and returns the same shape for both: a command handle, an event
//! stream and the task that resolves to the report.
//!
//! The cores never read a clock, sleep or spawn. Without the `tokio` feature the crate compiles
//! no runtime: the plan, the graph and the cores only.
//!
//! A release can be saved at any point ([`Release::save`]) and continued by another controller
//! after a crash ([`Release::restore`]): hosts whose step was in flight are examined again from
//! Precheck, finished hosts are never touched again, and a bake, a brake, a pause or a wait
//! holds across the restore (details on [`SavedRelease`]). A deployment too
//! ([`Deployment::save`], [`SavedDeployment`]), application by application. `spawn_saved`
//! (feature `tokio`) drives a core and writes its state to a `StateStore` before it starts a
//! step and before it acts on an outcome, with a compare-and-set on the state's version, so a
//! second controller that took over makes the first one stop with `StoreError::Stale`;
//! A new rollout under a key that already holds one fails at once with
//! `StoreError::KeyInUse`. Start and restore cores at
//! [`Timestamp::since_unix_epoch`](plus_core::Timestamp::since_unix_epoch) so that
//! event times read as wall-clock times across a failover and saved deadlines mean the same to
//! the next controller. `MemoryStore` is the in-memory store, and `QuorumStore` (feature `quorum`) keeps the state
//! in a plus-quorum cluster, so that a standby controller elected on a lease takes over from
//! the saved state (the `platform` example's `--controllers 3 --kill-leader-after-ms T`).
//!
//! A release may judge itself between batches ([`analysis`], Argo Rollouts' analysis): its
//! [`ReleaseConfig::analysis`] checks are sampled through [`ReleaseJob::Measure`] jobs (the
//! executor's `StepExecutor::measure`, feature `tokio`, answers them) before every batch after the first thing
//! deployed; a batch starts only after a pass, a failing or inconclusive verdict brakes the
//! release with the check's reason, dry-run checks are reported and never decide, and every
//! verdict is an event, in the report and in the saved state. [`ReleaseConfig::deadlines`]
//! bound the whole release (counted across a takeover) and each wait for a person (bake,
//! continue, a brake): when one passes the release pauses or fails, as it chose, and says which.
//!
//! # Features
//!
//! - `tokio` (default): the driver, `spawn_release`, `spawn_deployment`, `spawn_saved` and the
//!   state stores.
//! - `metrics`: step durations (`plus_rollout_step_seconds`, by step and result) and host
//!   outcomes (`plus_rollout_hosts_finished_total`, by state) through the `metrics` facade.
//! - `quorum`: `QuorumStore`, a state store in a plus-quorum cluster (compare-and-set on the
//!   key's version), for controllers that take rollouts over from each other.
//! - `serde`: `Serialize`/`Deserialize` for [`SavedRelease`] and for the reports, events, host
//!   states and phases.
//!
//! Every event of a release or a deployment is also a `tracing` log line (phases, batches and
//! hosts at info, failed hosts and brake holds at warn, steps with their durations at debug);
//! the crate never prints. [`Release::host_counts`] gives the hosts by state at any moment.
//!
//! ```
//! use plus_core::{HostId, Timestamp, Version};
//! use plus_rollout::{
//!     plan, Command, Core, GroupHost, Outcome, Phase, PlanConfig, Release, ReleaseConfig, Action,
//!     StepOutcome, Mode,
//! };
//! use std::time::Duration;
//!
//! let group: Vec<GroupHost> = (0..8)
//!     .map(|i| GroupHost::in_service(HostId::new(format!("host-{i:02}")).unwrap()))
//!     .collect();
//! let plan = plan(&group, &PlanConfig::default())?; // 25%: 1 | 2 2 2 1
//! assert_eq!(plan.sizes(), "1 | 2 2 2 1");
//!
//! let mut config = ReleaseConfig::new(Version::new("2.0.1").unwrap());
//! config.mode = Mode::Automatic { wait: Duration::from_secs(10), later_wait: None };
//! let mut now = Timestamp::ZERO;
//! let mut release = Release::new(plan, config, now).expect("a valid config");
//!
//! // Drive it by hand: every step succeeds at once; bake when asked; wait when told to.
//! while !release.is_finished() {
//!     while let Some(action) = release.poll_action() {
//!         if let Action::Start { id, .. } = action {
//!             release.handle_outcome(id, StepOutcome::Done, now);
//!         }
//!     }
//!     match release.phase() {
//!         Phase::AwaitingBake => release.handle_command(Command::Bake, now).unwrap(),
//!         _ => {
//!             if let Some(at) = release.poll_timeout() {
//!                 now = at;
//!                 release.handle_timeout(now);
//!             }
//!         }
//!     }
//! }
//! assert_eq!(release.report().outcome, Some(Outcome::Succeeded));
//! assert_eq!(now, Timestamp::from_millis(30_000)); // three waits between four batches
//! # Ok::<(), plus_rollout::PlanError>(())
//! ```
//!
//! # Dependency order
//!
//! [`AppGraph`] validates a set of applications before anything starts (every cycle, unknown and
//! self dependency, duplicate, reported at once), and gives a topological [`AppGraph::order`],
//! display [`AppGraph::waves`] and the [`AppGraph::teardown_order`], ties sorted by code.
//! [`Deployment`] is the sans-IO core that starts each application as soon as its required
//! dependencies are healthy, gates health with retries, and skips exactly the transitive
//! dependents of a failure; `spawn_deployment` runs it on tokio with an `AppExecutor`.
//!
//! ```
//! use std::sync::Arc;
//! use plus_core::{AppCode, Timestamp};
//! use plus_rollout::{Action, AppGraph, AppJob, AppSpec, AppState, Core, DeployConfig, Deployment};
//!
//! let code = |s: &str| AppCode::new(s).unwrap();
//! let graph = Arc::new(AppGraph::new(vec![
//!     AppSpec { depends_on: vec![code("api"), code("static")], ..AppSpec::new(code("web")) },
//!     AppSpec { depends_on: vec![code("db")], optional_depends_on: vec![code("cache")], ..AppSpec::new(code("api")) },
//!     AppSpec::new(code("db")),
//!     AppSpec::new(code("cache")),
//!     AppSpec::new(code("static")),
//! ]).unwrap());
//! let waves: Vec<Vec<&str>> =
//!     graph.waves().iter().map(|w| w.iter().map(|c| c.as_str()).collect()).collect();
//! assert_eq!(waves, [vec!["cache", "db", "static"], vec!["api"], vec!["web"]]);
//!
//! // Deploy with db failing: api and web are skipped, cache and static go on.
//! let now = Timestamp::ZERO;
//! let mut deployment =
//!     Deployment::new(Arc::clone(&graph), DeployConfig::default(), now).expect("a valid config");
//! while let Some(action) = deployment.poll_action() {
//!     if let Action::Start { id, job } = action {
//!         let failing = matches!(&job, AppJob::Deploy(app) if app.as_str() == "db");
//!         let result = if failing { Err("disk full".into()) } else { Ok(()) };
//!         deployment.handle_outcome(id, result, now);
//!     }
//! }
//! let web = graph.index_of(&code("web")).unwrap();
//! assert_eq!(deployment.state(web), &AppState::Skipped { failed_dependency: code("db") });
//! ```
//!
//! # Performance
//!
//! `cargo bench -p benches --bench rollout` drives 100,000 hosts with a no-op executor at
//! parallelism 1,000 beside spawning as many no-op tokio tasks (2.8x on the 2-core dev machine);
//! `cargo bench -p benches --bench deps` orders a random 100,000-application DAG beside
//! petgraph's bare toposort (1.1x). Figures in BENCHMARKS.md.
#![doc(test(attr(deny(warnings))))]
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "agent")]
pub mod agent;
pub mod analysis;
mod brake;
mod core;
mod deadlines;
pub mod degrade;
#[cfg(feature = "tokio")]
mod driver;
#[cfg(feature = "tokio")]
mod executor;
mod graph;
mod orchestrate;
mod plan;
#[cfg(feature = "quorum")]
mod quorum_store;
mod release;
#[cfg(feature = "tokio")]
mod store;

/// Implement [`StepExecutor`] and [`AppExecutor`] with `#[plus_rollout::async_trait]`, without
/// a dependency of your own.
#[cfg(feature = "tokio")]
pub use async_trait::async_trait;
pub use brake::{
    AvailabilityFloor, BrakePolicy, BrakeView, ConsecutiveFailures, FailureRate, HostFinish,
};
pub use core::{Action, ConfigError, Core, JobId};
#[cfg(feature = "tokio")]
pub use driver::{
    CommandError, Events, Handle, JobFuture, Spawned, SpawnedSaved, spawn, spawn_saved,
};
#[cfg(feature = "tokio")]
pub use executor::{
    AppExecutor, DeploymentEvents, DeploymentHandle, NoopExecutor, ReleaseEvents, ReleaseHandle,
    StepExecutor, spawn_deployment, spawn_deployment_saved, spawn_release, spawn_release_saved,
};
/// The trait [`Events`] implements besides its inherent `next()`, for stream combinators.
#[cfg(feature = "tokio")]
pub use futures::Stream;
pub use graph::{AppGraph, AppSpec, DependencyKind, GraphError, GraphProblem, GraphWarning};
pub use orchestrate::{
    AppJob, AppState, DeployAction, DeployCommand, DeployConfig, DeployEvent, Deployment,
    DeploymentReport, SavedDeployment,
};
pub use plan::{
    Availability, Bastion, Exclusion, GroupHost, Plan, PlanConfig, PlanError, Split, parse_ramp,
    plan, rollback_plan, stopped_out_of_traffic,
};
/// What an [`AppExecutor`] returns when it fails (from plus-core, shared with plus-quorum).
#[cfg(feature = "tokio")]
pub use plus_core::Failure;
#[cfg(feature = "quorum")]
pub use quorum_store::QuorumStore;
pub use release::{
    AnalysisRecord, BatchLabel, BatchReport, Command, CommandRejected, DegradedCall, Event,
    EventKind, HostCounts, HostState, MeasureJob, Mode, OnDeadline, OnFailure, Outcome, Phase,
    Release, ReleaseConfig, ReleaseDeadlines, ReleaseJob, ReleaseReport, RestoreError,
    SavedRelease, Step, StepJob, StepOutcome,
};
#[cfg(feature = "tokio")]
pub use store::{MemoryStore, StateStore, StoreError};
