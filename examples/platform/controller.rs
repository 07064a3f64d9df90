//! The platform's controllers: replicas that each embed a plus-quorum node, elect one active
//! controller on a lease, and let it drive the deployment. Every rollout's state is saved in
//! the store as it goes, so the next controller finishes what a dead one started.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use plus_core::{AppCode, Failure, Timestamp, Version};
use plus_quorum::{Bytes, KvClient, LeaseId, MuxNode, NodeId, Security, Session, recipes};
use plus_rollout::{
    AppExecutor, AppGraph, AvailabilityFloor, Command, DeployConfig, DeployEvent, Deployment,
    DeploymentReport, EventKind, HostState, Mode, OnDeadline, OnFailure, Outcome, Phase,
    PlanConfig, QuorumStore, Release, ReleaseConfig, ReleaseDeadlines, SavedDeployment,
    SavedRelease, StateStore, async_trait, plan, spawn_deployment_saved, spawn_release_saved,
};
use tokio::sync::mpsc;
use tokio::task::{AbortHandle, JoinHandle};

use crate::agents::AgentHosts;
use crate::cmdb::Cmdb;
use crate::hosts::Hosts;

/// How long a controller that stopped answering keeps leading and keeps its applications
/// locked: the longest a failover waits for its lease to end.
const SESSION_TTL: Duration = Duration::from_secs(2);
/// The election the controllers campaign in.
const ELECTION: &str = "platform/controller";
/// Where the deployment's state is kept.
const DEPLOYMENT_KEY: &str = "deployment";

/// What outlives any controller: the hosts, the plan of the run, the display and the results.
pub(crate) struct World {
    pub args: crate::Args,
    pub hosts: Arc<Hosts>,
    /// Where each application's servers come from.
    pub cmdb: Arc<Cmdb>,
    pub graph: Arc<AppGraph>,
    pub version: Version,
    pub progress: MultiProgress,
    bars: Mutex<HashMap<AppCode, ProgressBar>>,
    pub results: Mutex<HashMap<AppCode, crate::AppResult>>,
    /// Every started release's latest phase, as its controller saw it.
    pub phases: Mutex<HashMap<AppCode, Phase>>,
    /// The largest batch any plan allows.
    pub cap: AtomicUsize,
    /// How many times a controller became the active one.
    pub activations: AtomicUsize,
    /// The active controller, and when the last one was killed.
    pub active: Mutex<(Option<NodeId>, Option<Instant>)>,
    /// For the live page: the releases running now, those that ended, each application's
    /// state in the deployment, and whether the run is over.
    pub live_releases: Mutex<HashMap<AppCode, crate::live::ReleaseHandle>>,
    pub ended_releases: Mutex<HashMap<AppCode, plus_rollout::ReleaseReport>>,
    pub app_states: Mutex<HashMap<AppCode, String>>,
    pub finished: std::sync::atomic::AtomicBool,
    done: mpsc::UnboundedSender<DeploymentReport>,
}

impl World {
    pub(crate) fn new(
        args: crate::Args,
        graph: Arc<AppGraph>,
        version: Version,
        progress: MultiProgress,
        agents: Option<Arc<AgentHosts>>,
    ) -> (Arc<Self>, mpsc::UnboundedReceiver<DeploymentReport>) {
        let (done, reports) = mpsc::unbounded_channel();
        let cmdb = Arc::new(Cmdb::new(usize::from(args.hosts_per_app), agents.clone()));
        let hosts = Arc::new(Hosts::new(args.seed, args.fail_rate, args.latency_ms, agents));
        if args.degrade.iter().any(|d| d == "lb") {
            hosts.degrade_lb();
        }
        let world = Self {
            args,
            hosts,
            cmdb,
            graph,
            version,
            progress,
            bars: Mutex::default(),
            results: Mutex::default(),
            phases: Mutex::default(),
            cap: AtomicUsize::new(0),
            activations: AtomicUsize::new(0),
            active: Mutex::new((None, None)),
            live_releases: Mutex::default(),
            ended_releases: Mutex::default(),
            app_states: Mutex::default(),
            finished: std::sync::atomic::AtomicBool::new(false),
            done,
        };
        (Arc::new(world), reports)
    }

    fn bar(&self, app: &AppCode, total: usize) -> ProgressBar {
        let mut bars = self.bars.lock().expect("bars lock");
        bars.entry(app.clone())
            .or_insert_with(|| {
                let bar = self.progress.add(ProgressBar::new(total as u64));
                bar.set_style(
                    ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos:>3}/{len:3} {msg}")
                        .expect("valid template")
                        .progress_chars("=> "),
                );
                bar.set_prefix(app.to_string());
                bar
            })
            .clone()
    }

    /// The deployment's settings, the same for every controller that drives it.
    pub(crate) fn deploy_config(&self) -> DeployConfig {
        DeployConfig {
            // An environment's applications are one host each: more of them at once.
            concurrency: if self.args.env.is_some() { 8 } else { 3 },
            check_retries: 2,
            check_interval: Duration::from_millis(100),
            ..DeployConfig::default()
        }
    }

    fn release_config(&self, app: &AppCode) -> ReleaseConfig {
        // With --analysis, each release judges itself by its group's error rate before every
        // batch after the bastion (the hosts' simulated counters; see `Hosts::measure`).
        let analysis = if self.args.analysis {
            vec![plus_rollout::analysis::Check {
                failure: Some(plus_rollout::analysis::Condition::Above(0.05)),
                success: Some(plus_rollout::analysis::Condition::AtMost(0.05)),
                count: 2,
                interval: Duration::from_millis(20),
                ..plus_rollout::analysis::Check::new("error-rate", format!("error_rate:{app}"))
            }]
        } else {
            Vec::new()
        };
        ReleaseConfig {
            analysis,
            mode: Mode::Automatic {
                wait: Duration::from_millis(40),
                later_wait: Some(Duration::from_millis(10)),
            },
            step_timeout: Duration::from_secs(5),
            verify_timeout: Duration::from_secs(5),
            // Failed hosts stay out of traffic: a batch may start only while failed hosts and
            // the batch together stay within the plan's pull-out cap (Kubernetes'
            // maxUnavailable), which is what the observer beside the hosts checks.
            brake: Arc::new(AvailabilityFloor),
            deadlines: ReleaseDeadlines {
                release: self.args.release_deadline_ms.map(Duration::from_millis),
                on_expiry: OnDeadline::Fail,
                ..ReleaseDeadlines::default()
            },
            // A release that judges itself failing puts back what it changed, by itself.
            on_failure: if self.args.analysis {
                OnFailure::RollBack { to: Version::new(PREVIOUS_VERSION).expect("a valid version") }
            } else {
                OnFailure::Stop
            },
            ..ReleaseConfig::new(self.version.clone())
        }
    }
}

/// The tasks of one term: the deployment's and the releases' drivers.
#[derive(Default)]
struct TermTasks(Mutex<Vec<AbortHandle>>);

impl TermTasks {
    fn track<T>(&self, task: &JoinHandle<T>) {
        self.0.lock().expect("tasks lock").push(task.abort_handle());
    }
}

/// Ends a term's tasks when the term ends (its controller lost its lease or was killed): with
/// a rollout's driver go its running steps. A guard apart from the tasks, because the tasks
/// hold the tasks list themselves.
struct EndOfTerm(Arc<TermTasks>);

impl Drop for EndOfTerm {
    fn drop(&mut self) {
        for task in self.0.0.lock().expect("tasks lock").drain(..) {
            task.abort();
        }
    }
}

/// The platform's store, whichever it is: plus-quorum's client, or etcd's.
pub(crate) type Store = Arc<dyn KvClient>;

/// One controller replica: its client of the store (and, on the embedded store, its node), and
/// the controller that campaigns and, once elected, drives the deployment.
pub(crate) struct Controller {
    pub id: NodeId,
    /// Its node of the embedded store (none on etcd).
    pub node: Option<MuxNode>,
    store: Store,
    serving: Mutex<Option<JoinHandle<()>>>,
    killed: std::sync::atomic::AtomicBool,
}

impl Controller {
    /// Starts the replica's node on `addrs[id]`; its controller starts with
    /// [`Controller::start_controlling`].
    pub(crate) async fn start(
        id: NodeId,
        addrs: &HashMap<NodeId, String>,
        security: &Security,
        store: Store,
    ) -> Result<Self, String> {
        let members: Vec<NodeId> = addrs.keys().copied().collect();
        let node = MuxNode::start_secured(
            plus_quorum::Config::new(id, members),
            plus_quorum::MemStorage::new(),
            addrs,
            plus_mux::Config::default(),
            security,
        )
        .await
        .map_err(|e| e.to_string())?;
        Ok(Self { id, node: Some(node), store, serving: Mutex::new(None), killed: false.into() })
    }

    /// A replica with no node of its own, on `store` (an etcd the platform uses).
    #[cfg_attr(not(feature = "etcd"), allow(dead_code))]
    pub(crate) fn on(id: NodeId, store: Store) -> Self {
        Self { id, node: None, store, serving: Mutex::new(None), killed: false.into() }
    }

    /// Starts the replica's controller, with its own client of the whole store: it campaigns
    /// and, once elected, drives the deployment until it is finished.
    pub(crate) fn start_controlling(&self, world: &Arc<World>) {
        let task = tokio::spawn(serve(self.id, Arc::clone(world), Arc::clone(&self.store)));
        *self.serving.lock().expect("serving lock") = Some(task);
    }

    /// Kills the replica abruptly: its controller's tasks (and so its running steps) and its
    /// node, with no hand-over.
    pub(crate) async fn kill(&self) {
        self.killed.store(true, Ordering::SeqCst);
        if let Some(serving) = self.serving.lock().expect("serving lock").take() {
            serving.abort();
        }
        if let Some(node) = &self.node {
            node.stop().await;
        }
    }

    /// Whether [`Controller::kill`] was called.
    pub(crate) fn is_killed(&self) -> bool {
        self.killed.load(Ordering::SeqCst)
    }
}

/// A client of the whole cluster (the store's default deadline per call).
pub(crate) fn client(addrs: &HashMap<NodeId, String>, security: &Security) -> Store {
    let members = addrs.iter().map(|(&id, addr)| (id, addr.as_str()));
    Arc::new(crate::quorum_client::connect_secured(members, Duration::from_secs(5), security))
}

/// The store's security for one run: a new random key that its nodes and its controllers
/// prove to each other. Loopback keeps other machines out, not other users of this one, and
/// the store holds the locks, the releases and (with --env) the environment's secrets.
pub(crate) fn run_security() -> Result<Security, String> {
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let own = plus_mux::Psk::named("node", key.to_vec()).map_err(|e| e.to_string())?;
    Ok(Security::Psk { accept: vec![own.clone()], own })
}

/// Campaigns, and drives the deployment while elected, until it is finished.
async fn serve(id: NodeId, world: Arc<World>, store: Store) {
    loop {
        match lead(id, &world, &store).await {
            Ok(()) => return,
            Err(err) => {
                tracing::warn!(controller = id, "{err}; campaigning again");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// One term: a session lease, the election, and the deployment from the state in the store.
async fn lead(id: NodeId, world: &Arc<World>, store: &Store) -> Result<(), String> {
    let term = Arc::new(TermTasks::default());
    let _end_of_term = EndOfTerm(Arc::clone(&term));
    let mut session =
        Session::new(Arc::clone(store), SESSION_TTL).await.map_err(|e| e.to_string())?;
    // A killed controller stands for a crashed one: its lease ends with its TTL, not by a
    // revoke from its dying process.
    session.set_revoke_on_drop(false);
    let lease = session.lease();
    let leadership =
        session.campaign(ELECTION, format!("controller-{id}")).await.map_err(|e| e.to_string())?;
    tracing::info!(controller = id, revision = leadership.revision, "controller elected");

    let platform = Arc::new(Platform {
        world: Arc::clone(world),
        store: store.clone(),
        lease,
        term: Arc::clone(&term),
    });
    let deployments: Arc<dyn StateStore<SavedDeployment>> =
        Arc::new(QuorumStore::deployments(store.clone()));
    let (deployment, version) =
        match deployments.load(DEPLOYMENT_KEY).await.map_err(|e| e.to_string())? {
            Some((saved, version)) => (
                Deployment::restore(
                    saved,
                    Arc::clone(&world.graph),
                    world.deploy_config(),
                    Timestamp::since_unix_epoch(),
                )
                .map_err(|e| format!("cannot restore the deployment: {e}"))?,
                Some(version),
            ),
            None => (
                Deployment::new(
                    Arc::clone(&world.graph),
                    world.deploy_config(),
                    Timestamp::since_unix_epoch(),
                )
                .map_err(|e| e.to_string())?,
                None,
            ),
        };
    if deployment.is_finished() {
        // Another controller finished it and resigned: nothing to take over.
        let _ = recipes::resign(store, leadership).await;
        return Ok(());
    }
    let activation = world.activations.fetch_add(1, Ordering::SeqCst);
    {
        let mut active = world.active.lock().expect("active lock");
        if activation > 0 {
            let gap = active.1.map_or(String::new(), |killed| {
                format!(" {} ms after the kill", killed.elapsed().as_millis())
            });
            println!("failover  controller {id} takes over{gap}");
        } else if world.args.controllers > 1 {
            println!("controller {id} active (of {})", world.args.controllers);
        }
        active.0 = Some(id);
    }
    let (_handle, mut events, task) = spawn_deployment_saved(
        deployment,
        Arc::clone(&platform),
        deployments,
        DEPLOYMENT_KEY.to_owned(),
        version,
    );
    term.track(&task);
    // Each application's state, for the live page.
    let states = Arc::clone(world);
    let watcher = tokio::spawn(async move {
        while let Some(event) = events.next().await {
            let (app, state) = match event {
                DeployEvent::Started(app) => (app, "deploying".to_owned()),
                DeployEvent::Deployed(app) => (app, "checking health".to_owned()),
                DeployEvent::Healthy(app) => (app, "healthy".to_owned()),
                DeployEvent::Failed { app, .. } => (app, "failed".to_owned()),
                DeployEvent::Skipped { app, failed_dependency } => {
                    (app, format!("skipped (requires {failed_dependency})"))
                }
                _ => continue,
            };
            states.app_states.lock().expect("states lock").insert(app, state);
        }
    });
    term.track(&watcher);
    tokio::select! {
        report = task => {
            let report = report.map_err(|e| e.to_string())?.map_err(|e| e.to_string())?;
            let _ = recipes::resign(store, leadership).await;
            let _ = world.done.send(report);
            Ok(())
        }
        lost = session.lost() => Err(format!("lost the session lease: {lost}")),
    }
}

/// The active controller's work for one application: its lock, its release, its record.
struct Platform {
    world: Arc<World>,
    store: Store,
    /// The controller's session lease: its locks go with it.
    lease: LeaseId,
    term: Arc<TermTasks>,
}

#[async_trait]
impl AppExecutor for Platform {
    async fn deploy(&self, app: &AppCode) -> Result<(), Failure> {
        // One release per application at a time, across every controller: the lock lives on
        // the controller's session lease, so a controller that dies mid-release frees it when
        // its lease ends instead of blocking the application until someone deletes the key.
        let lock = recipes::lock(&self.store, &format!("lock/{app}"), self.lease)
            .await
            .map_err(|e| Failure::with_source(format!("cannot take the lock of {app}"), e))?;
        // The fencing token goes with the writes made on the application's behalf, so a
        // paused holder's late writes can be told apart.
        let fence = lock.token;
        self.put(format!("record/{app}"), format!("running {} fence={fence}", self.world.version))
            .await?;
        let outcome = self.release(app).await;
        let record = match &outcome {
            Ok(r) => {
                format!("deployed {} on {}/{} hosts", self.world.version, r.hosts_ok, r.hosts_total)
            }
            Err((_, reason)) => format!("failed {}: {reason}", self.world.version),
        };
        self.put(format!("record/{app}"), record).await?;
        recipes::unlock(&self.store, lock).await.map_err(|e| e.to_string())?;
        let mut results = self.world.results.lock().expect("results lock");
        match outcome {
            Ok(result) => {
                results.insert(app.clone(), result);
                Ok(())
            }
            Err((result, reason)) => {
                results.insert(app.clone(), result);
                Err(reason.into())
            }
        }
    }

    async fn check(&self, _app: &AppCode) -> Result<(), Failure> {
        tokio::time::sleep(Duration::from_millis(self.world.args.latency_ms)).await;
        Ok(())
    }
}

impl Platform {
    async fn put(&self, key: String, value: String) -> Result<(), String> {
        self.store.set(&key, Bytes::from(value)).await.map(|_| ()).map_err(|e| e.to_string())
    }

    /// The release of `app`: continued from its saved state if a controller started it.
    async fn release(&self, app: &AppCode) -> Result<crate::AppResult, (crate::AppResult, String)> {
        let failed = |reason: String| (crate::AppResult::default(), reason);
        let started = Instant::now();
        let group = self.world.cmdb.group(app).await.map_err(failed)?;
        let plan = plan(&group, &PlanConfig::default()).map_err(|e| failed(e.to_string()))?;
        self.world.cap.fetch_max(plan.cap, Ordering::SeqCst);
        let total = plan.host_count();
        let key = format!("release/{app}");
        let releases: Arc<dyn StateStore<SavedRelease>> =
            Arc::new(QuorumStore::releases(self.store.clone()));
        let (release, version) = match releases
            .load(&key)
            .await
            .map_err(|e| failed(e.to_string()))?
        {
            Some((saved, version)) => (
                Release::restore(
                    saved,
                    self.world.release_config(app),
                    Timestamp::since_unix_epoch(),
                )
                .map_err(|e| failed(format!("cannot restore the release of {app}: {e}")))?,
                Some(version),
            ),
            None => (
                Release::new(plan, self.world.release_config(app), Timestamp::since_unix_epoch())
                    .map_err(|e| failed(format!("release of {app}: {e}")))?,
                None,
            ),
        };
        let bar = self.world.bar(app, total);
        bar.set_position(release.report().count(HostState::is_final) as u64);
        // A restored release says where it is by its phase, not by an event.
        let restored_phase = release.phase();
        let (handle, mut events, task) = {
            let _release = tracing::info_span!("release", app = %app).entered();
            spawn_release_saved(release, Arc::clone(&self.world.hosts), releases, key, version)
        };
        self.term.track(&task);
        self.world.live_releases.lock().expect("live lock").insert(app.clone(), handle.clone());
        let mut braked = None;
        match restored_phase {
            Phase::AwaitingBake => {
                let _ = handle.command(Command::Bake).await;
            }
            Phase::Braked { reason } => {
                braked = Some(reason);
                handle.abort().await;
            }
            Phase::RollingBack { reason } => braked = Some(reason),
            _ => {}
        }
        while let Some(event) = events.next().await {
            if let EventKind::Phase(phase) = &event.kind {
                self.world.phases.lock().expect("phases lock").insert(app.clone(), phase.clone());
            }
            match event.kind {
                EventKind::HostFinished { state, .. } if state.is_final() => bar.inc(1),
                EventKind::Phase(Phase::AwaitingBake) => {
                    bar.set_message("bastion verified, baking");
                    let _ = handle.command(Command::Bake).await;
                }
                EventKind::Phase(Phase::Running(label)) => bar.set_message(label.to_string()),
                EventKind::Phase(Phase::Braked { reason }) => {
                    // A real platform would page a person; the demo aborts the release.
                    bar.set_message(format!("BRAKED: {reason}"));
                    braked = Some(reason);
                    handle.abort().await;
                }
                EventKind::Phase(Phase::RollingBack { reason }) => {
                    bar.set_message(format!("ROLLING BACK: {reason}"));
                    braked = Some(reason);
                }
                _ => {}
            }
        }
        let report = task
            .await
            .map_err(|e| failed(e.to_string()))?
            .map_err(|e| failed(format!("the release of {app} stopped: {e}")))?;
        self.world.live_releases.lock().expect("live lock").remove(app);
        self.world.ended_releases.lock().expect("ended lock").insert(app.clone(), report.clone());
        let hosts_ok = report.count(HostState::is_success);
        bar.finish_with_message(match &report.outcome {
            Some(Outcome::Succeeded) => "deployed".to_owned(),
            other => format!("{other:?}"),
        });
        let first_failure = report.hosts.iter().find_map(|(host, state)| match state {
            HostState::Failed { reason, .. } => Some(format!("{host}: {reason}")),
            _ => None,
        });
        let mut result = crate::AppResult {
            hosts_ok,
            hosts_total: total,
            degraded_calls: report.degraded.len(),
            braked: braked.clone(),
            first_failure,
            millis: started.elapsed().as_millis(),
        };
        match report.outcome {
            Some(Outcome::Succeeded) => Ok(result),
            Some(Outcome::RolledBack { ref reason, hosts, failed }) => {
                let previous = PREVIOUS_VERSION;
                println!("rollback  {app}: {hosts} hosts back on {previous}");
                // Back on the previous version: only hosts that were on the target before the
                // release still are.
                result.hosts_ok = report.count(|s| *s == HostState::AlreadyOnTarget);
                let why = if reason.contains("deadline") { "failed" } else { "braked" };
                let mut reason =
                    format!("release {why}: {reason}; rolled back {hosts} hosts to {previous}");
                if failed > 0 {
                    reason += &format!(" ({failed} failed to roll back)");
                }
                Err((result, reason))
            }
            Some(Outcome::Failed(why)) if why.contains("deadline") => {
                Err((result, format!("release failed: {why}")))
            }
            _ => {
                let reason = match &braked {
                    Some(reason) => format!("release braked: {reason}"),
                    None => format!("release ended with {hosts_ok} of {total} hosts deployed"),
                };
                Err((result, reason))
            }
        }
    }
}

/// The version the simulated hosts ran before this run's release: what a rollback restores.
const PREVIOUS_VERSION: &str = "2026.10.0";
