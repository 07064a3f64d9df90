//! An embedded deploy platform, end to end on this machine: the whole suite working together.
//!
//! ```text
//! platform [--fail-rate R] [--seed S] [--latency-ms MS] [--hosts-per-app N] [--no-progress] [--data DIR]
//! ```
//!
//! `RUST_LOG=info` logs the run's story from every crate (leaders, phases, batches, hosts).
//!
//! 1. reads every `manifest.yaml` in `examples/data/platform/` (plus-manifest): an invalid one
//!    is reported with its diagnostics and left out, the rest go on;
//! 2. places each application's build on a worker of a simulated fleet (plus-scheduler), with
//!    the decision's explanation;
//! 3. deploys the applications in dependency order (plus-rollout), each released to its own
//!    group of hosts with a bastion, batches and the brake, by a simulated executor whose failure
//!    rate and latency are flags; a braked release is aborted and its dependents are skipped;
//! 4. keeps the platform's own state (builds, releases, per-application locks) in a 3-node
//!    plus-quorum cluster talking over plus-mux on 127.0.0.1.
//!
//! It ends with one line, and exits non-zero unless every application was deployed:
//! `apps=6 deployed=6 failed=0 skipped=0 hosts=120 braked=0 quorum=identical elapsed_ms=4210`

#[path = "common/cli.rs"]
mod cli;

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use plus_core::{AppCode, HostId, Timestamp, Version, WorkerId, seeded_rng};
use plus_manifest::{Manifest, ManifestError, parse_file};
use plus_quorum::testing::loopback_addrs;
use plus_quorum::{
    Bytes, Cluster, Compare, Config as QuorumConfig, Expect, MemStorage, MuxNode, RemoteNode, Txn,
    TxnOp, WriteOp, compare,
};
use plus_rollout::{
    AppExecutor, AppGraph, AppSpec, AppState, Command, DeployConfig, Deployment, EventKind,
    GroupHost, HostState, Mode, Outcome, Phase, PlanConfig, ReleaseConfig, Step, StepExecutor,
    StepOutcome, async_trait, plan, spawn_deployment, spawn_release,
};
use plus_scheduler::{Candidate, Job, REFERENCE_WEIGHTS, Scheduler, WorkerKind};
use rand::Rng;

/// How long a platform instance that stopped answering keeps an application locked.
const LOCK_TTL: Duration = Duration::from_secs(5);

/// An embedded deploy platform, end to end on this machine.
#[derive(Debug, Clone, Parser)]
#[command(name = "platform")]
struct Args {
    /// Probability that a deploy step fails on a host.
    #[arg(long, default_value_t = 0.0, value_parser = cli::probability)]
    fail_rate: f64,
    /// Seed of the simulated fleet and failures.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Average time of one deploy step, in milliseconds (0 to 60000).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(0..=60_000))]
    latency_ms: u64,
    /// Hosts in each application's group (1 to 1000).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1_000))]
    hosts_per_app: u16,
    /// No progress bars (also off when stdout is not a terminal, or when RUST_LOG is set).
    #[arg(long)]
    no_progress: bool,
    /// The manifests.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/data/platform"))]
    data: PathBuf,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    if cli::init_logging() {
        args.no_progress = true;
    }
    cli::run_async(run(args))
}

/// Step 1: every manifest in the directory; invalid ones are reported and left out.
fn load_manifests(dir: &Path) -> Result<Vec<(AppCode, Manifest)>, String> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        .collect();
    paths.sort();
    let mut apps = Vec::new();
    let color = std::io::stderr().is_terminal();
    for path in paths {
        match parse_file(&path) {
            Ok(m) => match m.app.clone() {
                Some(code) => {
                    println!("manifest  {:<8} ok  env={}", code, m.env_image_key());
                    apps.push((code, m));
                }
                None => eprintln!("warning: {} has no `app` code; left out", path.display()),
            },
            Err(ManifestError::Invalid(report)) => {
                let name =
                    path.file_stem().map_or_else(String::new, |s| s.to_string_lossy().into_owned());
                println!(
                    "manifest  {name:<8} INVALID, left out ({} errors, below)",
                    report.error_count()
                );
                eprintln!("{}\n", report.render(color));
            }
            Err(err) => eprintln!("error: {err}"),
        }
    }
    Ok(apps)
}

/// Step 2: a simulated build fleet and one placement per application.
fn place_builds(
    apps: &[(AppCode, Manifest)],
    seed: u64,
) -> Result<HashMap<AppCode, WorkerId>, String> {
    let mut rng = seeded_rng(seed);
    let mut fleet: Vec<Candidate> = (0..8)
        .map(|i| Candidate {
            load: f64::from(rng.random_range(0..16_u32)) / 20.0,
            total_caches: rng.random_range(100..3_000),
            capacity: Some(20),
            running_jobs: rng.random_range(0..10),
            ..Candidate::new(
                WorkerId::new(format!("builder-{i}")).expect("valid id"),
                WorkerKind::Build,
            )
        })
        .collect();
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).map_err(|e| e.to_string())?;
    let mut placed = HashMap::new();
    for (code, _) in apps {
        for c in &mut fleet {
            c.has_project_cache = rng.random_bool(0.3);
        }
        let job = Job { kind: WorkerKind::Build, project: code.as_str() };
        let decision = scheduler.decide(&job, &fleet, &mut rng).map_err(|e| e.to_string())?;
        let chosen = decision.explain_chosen();
        let why: Vec<String> = chosen
            .dimensions
            .iter()
            .map(|d| format!("{}={:.2}->{:.1}", d.name, d.raw, d.weighted))
            .collect();
        println!(
            "build     {:<8} on {} (score {:.1}: {})",
            code,
            chosen.candidate.id,
            chosen.total,
            why.join(" ")
        );
        let index = decision.chosen_index();
        placed.insert(code.clone(), fleet[index].id.clone());
        fleet[index].running_jobs += 1;
        fleet[index].load += 0.05;
        fleet[index].total_caches += 1;
    }
    Ok(placed)
}

/// A host's deploy steps, simulated: each takes about `latency_ms` and fails with
/// `fail_rate`, decided by a hash of (seed, host, step) so runs replay whatever the timing.
#[derive(Debug)]
struct SimulatedHosts {
    seed: u64,
    fail_rate: f64,
    latency_ms: u64,
}

#[async_trait]
impl StepExecutor for SimulatedHosts {
    async fn run(&self, host: &HostId, step: Step, _target: &Version) -> StepOutcome {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        (self.seed, host.as_str(), step as u8).hash(&mut h);
        let roll = h.finish();
        let jitter = roll % (self.latency_ms.max(1) * 2);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        if step != Step::Precheck
            && (roll >> 16) as f64 / (1u64 << 48) as f64 <= self.fail_rate
            && self.fail_rate > 0.0
        {
            StepOutcome::Failed(format!("{step} failed on {host} (simulated)"))
        } else {
            StepOutcome::Done
        }
    }
}

#[derive(Debug, Default, Clone)]
struct AppResult {
    hosts_ok: usize,
    hosts_total: usize,
    braked: Option<String>,
    millis: u128,
}

/// Step 3's executor: one release per application, state kept in the quorum store.
struct Platform {
    args: Args,
    store: Cluster<RemoteNode>,
    progress: MultiProgress,
    results: Mutex<HashMap<AppCode, AppResult>>,
    version: Version,
}

impl Platform {
    async fn put(&self, key: String, value: String) -> Result<(), String> {
        self.store
            .write(WriteOp::Set { key, value: Bytes::from(value) })
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    async fn release(&self, app: &AppCode) -> Result<AppResult, String> {
        let started = Instant::now();
        let group: Vec<GroupHost> = (0..usize::from(self.args.hosts_per_app))
            .map(|i| {
                GroupHost::in_service(HostId::new(format!("{app}-{i:02}")).expect("valid host id"))
            })
            .collect();
        let plan = plan(&group, &PlanConfig::default()).map_err(|e| e.to_string())?;
        let total = plan.host_count();
        let config = ReleaseConfig {
            mode: Mode::Automatic {
                wait: Duration::from_millis(40),
                later_wait: Some(Duration::from_millis(10)),
            },
            step_timeout: Duration::from_secs(5),
            verify_timeout: Duration::from_secs(5),
            ..ReleaseConfig::new(self.version.clone())
        };
        let bar = self.progress.add(ProgressBar::new(total as u64));
        bar.set_style(
            ProgressStyle::with_template("{prefix:>8} [{bar:30}] {pos:>3}/{len:3} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(app.to_string());
        let executor = Arc::new(SimulatedHosts {
            seed: self.args.seed,
            fail_rate: self.args.fail_rate,
            latency_ms: self.args.latency_ms,
        });
        // The release's log lines carry its application.
        let (handle, mut events, task) = {
            let _release = tracing::info_span!("release", app = %app).entered();
            let release = plus_rollout::Release::new(plan, config, plus_core::Timestamp::ZERO)
                .map_err(|e| format!("release of {app}: {e}"))?;
            spawn_release(release, executor)
        };
        let mut braked = None;
        while let Some(event) = events.next().await {
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
                _ => {}
            }
        }
        let report = task.await.map_err(|e| e.to_string())?;
        let hosts_ok = report.count(HostState::is_success);
        bar.finish_with_message(match &report.outcome {
            Some(Outcome::Succeeded) => "deployed".to_owned(),
            other => format!("{other:?}"),
        });
        let result = AppResult {
            hosts_ok,
            hosts_total: total,
            braked: braked.clone(),
            millis: started.elapsed().as_millis(),
        };
        match report.outcome {
            Some(Outcome::Succeeded) => Ok(result),
            _ => {
                self.results.lock().expect("results lock").insert(app.clone(), result);
                Err(match braked {
                    Some(reason) => format!("release braked: {reason}"),
                    None => format!("release ended with {} of {total} hosts deployed", hosts_ok),
                })
            }
        }
    }
}

#[async_trait]
impl AppExecutor for Platform {
    async fn deploy(&self, app: &AppCode) -> Result<(), String> {
        // One release per application at a time, across every platform instance: the lock key
        // lives under a lease, so a platform that dies mid-release frees it within the TTL
        // instead of blocking the application until someone deletes the key by hand.
        let lock = format!("lock/{app}");
        let lease = self.store.grant_lease(LOCK_TTL).await.map_err(|e| e.to_string())?;
        let take = Txn {
            when: vec![Compare::new(lock.clone(), Expect::Absent)],
            then: vec![TxnOp::Set {
                key: lock.clone(),
                value: Bytes::from("platform-demo"),
                lease: Some(lease.id),
            }],
            otherwise: vec![],
        };
        let taken = self.store.txn(take).await.map_err(|e| format!("cannot take the lock: {e}"))?;
        if !taken.succeeded {
            let _ = self.store.revoke_lease(lease.id).await;
            return Err(format!("{app} is locked by another release"));
        }
        // The lock key's version is the fencing token: writes on the application's behalf
        // carry it, so a paused holder's late writes can be told apart.
        let fence = taken.version;
        let keeper = {
            let store = self.store.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LOCK_TTL / 3).await;
                    if store.keep_alive(lease.id).await.is_err() {
                        return;
                    }
                }
            })
        };
        self.put(format!("release/{app}"), format!("running {} fence={fence}", self.version))
            .await?;
        let outcome = self.release(app).await;
        let record = match &outcome {
            Ok(r) => format!("deployed {} on {}/{} hosts", self.version, r.hosts_ok, r.hosts_total),
            Err(e) => format!("failed {}: {e}", self.version),
        };
        self.put(format!("release/{app}"), record).await?;
        keeper.abort();
        // Ending the lease deletes the lock key with it.
        self.store.revoke_lease(lease.id).await.map_err(|e| e.to_string())?;
        if let Ok(r) = &outcome {
            self.results.lock().expect("results lock").insert(app.clone(), r.clone());
        }
        outcome.map(|_| ())
    }

    async fn check(&self, _app: &AppCode) -> Result<(), String> {
        tokio::time::sleep(Duration::from_millis(self.args.latency_ms)).await;
        Ok(())
    }
}

async fn run(args: Args) -> Result<bool, String> {
    let started = Instant::now();
    let apps = load_manifests(&args.data)?;
    if apps.is_empty() {
        return Err(format!("no valid manifest in {}", args.data.display()));
    }

    // Step 4 first: the platform's own state store, 3 nodes over plus-mux on loopback.
    let members = vec![1, 2, 3];
    let addrs = loopback_addrs(&members).await.map_err(|e| e.to_string())?;
    let mut nodes = Vec::new();
    for &id in &members {
        nodes.push(
            MuxNode::start(
                QuorumConfig::new(id, members.clone()),
                MemStorage::new(),
                &addrs,
                plus_mux::Config::default(),
            )
            .await?,
        );
    }
    let store = Cluster::new(
        members
            .iter()
            .map(|&id| {
                RemoteNode::connect(id, &addrs[&id], &plus_mux::Config::default())
                    .expect("the default mux config is valid")
            })
            .collect(),
    );
    println!(
        "quorum    3 nodes over plus-mux on {}",
        addrs.values().cloned().collect::<Vec<_>>().join(", ")
    );

    let builds = place_builds(&apps, args.seed)?;
    for (app, worker) in &builds {
        store
            .write(WriteOp::Set {
                key: format!("build/{app}"),
                value: Bytes::from(worker.to_string()),
            })
            .await
            .map_err(|e| e.to_string())?;
    }

    let specs: Vec<AppSpec> = apps
        .iter()
        .map(|(code, m)| AppSpec {
            code: code.clone(),
            depends_on: m.depends_on.clone(),
            optional_depends_on: m.optional_depends_on.clone(),
        })
        .collect();
    let graph = match AppGraph::new(specs) {
        Ok(g) => Arc::new(g),
        Err(err) => return Err(format!("the applications cannot be ordered:\n{err}")),
    };
    for warning in graph.warnings() {
        println!("order     warning: {warning}");
    }
    for (i, wave) in graph.waves().iter().enumerate() {
        println!(
            "order     wave {}: {}",
            i + 1,
            wave.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(" ")
        );
    }

    let progress = MultiProgress::new();
    if args.no_progress || !std::io::stdout().is_terminal() {
        progress.set_draw_target(ProgressDrawTarget::hidden());
    }
    let platform = Arc::new(Platform {
        args: args.clone(),
        store: store.clone(),
        progress,
        results: Mutex::default(),
        version: Version::new(format!("2026.11.{}", args.seed)).map_err(|e| e.to_string())?,
    });
    let deploy_config = DeployConfig {
        concurrency: 3,
        check_retries: 2,
        check_interval: Duration::from_millis(100),
        ..DeployConfig::default()
    };
    let (_handle, _events, task) = spawn_deployment(
        Deployment::new(Arc::clone(&graph), deploy_config, Timestamp::ZERO)
            .map_err(|e| e.to_string())?,
        Arc::clone(&platform),
    );
    let report = task.await.map_err(|e| e.to_string())?;

    // The summary.
    let results = platform.results.lock().expect("results lock").clone();
    println!();
    println!("{:<9} {:<10} {:<52} {:>7} {:>8}", "app", "build", "result", "hosts", "time");
    let (mut deployed, mut failed, mut skipped, mut hosts, mut braked) = (0, 0, 0, 0, 0);
    for &i in &report.completion_order {
        let (app, state) = &report.apps[i];
        let r = results.get(app).cloned().unwrap_or_default();
        hosts += r.hosts_ok;
        braked += usize::from(r.braked.is_some());
        let text = match state {
            AppState::Healthy => {
                deployed += 1;
                "deployed".to_owned()
            }
            AppState::Failed { reason } => {
                failed += 1;
                let mut t = format!("FAILED: {}", reason.trim_start_matches("deploy failed: "));
                t.truncate(52);
                t
            }
            AppState::Skipped { failed_dependency } => {
                skipped += 1;
                format!("skipped (requires {failed_dependency})")
            }
            other => format!("{other:?}"),
        };
        let host_text = if r.hosts_total > 0 {
            format!("{}/{}", r.hosts_ok, r.hosts_total)
        } else {
            "-".to_owned()
        };
        let time = if r.hosts_total > 0 { format!("{} ms", r.millis) } else { "-".to_owned() };
        let worker = builds.get(app).map_or("-".to_owned(), ToString::to_string);
        println!("{:<9} {:<10} {:<52} {:>7} {:>8}", app.as_str(), worker, text, host_text, time);
    }

    // The store's replicas must agree.
    let mut identical = false;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        let mut reports = Vec::new();
        for n in &nodes {
            if let Ok(r) = n.handle.inspect().await {
                reports.push(r);
            }
        }
        if reports.len() == nodes.len() && compare(&reports).identical() {
            identical = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!();
    println!(
        "apps={} deployed={deployed} failed={failed} skipped={skipped} hosts={hosts} braked={braked} quorum={} elapsed_ms={}",
        report.apps.len(),
        if identical { "identical" } else { "different" },
        started.elapsed().as_millis()
    );
    for n in &nodes {
        n.stop().await;
    }
    Ok(deployed == report.apps.len() && identical)
}
