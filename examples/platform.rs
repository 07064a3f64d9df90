//! An embedded deploy platform, end to end on this machine: the whole suite working together.
//!
//! ```text
//! platform [--fail-rate R] [--seed S] [--latency-ms MS] [--hosts-per-app N] [--no-progress] [--data DIR]
//!          [--controllers N] [--kill-leader-after-ms T]
//!          [--agents N [--kill-agent-after-ms T] [--agents-root DIR]]
//!          [--env NAME [--env-file FILE] [--break-check APP] [--linger-ms MS]]
//!          [--store quorum|etcd [--etcd-endpoints A,B,C]]
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
//! 4. keeps the platform's own state (builds, the deployment's and every release's saved state,
//!    per-application locks) in a plus-quorum cluster of three nodes (or one per controller)
//!    talking over plus-mux on 127.0.0.1, or with `--store etcd` (the `etcd` feature) in an
//!    etcd the team runs; each run's keys under `platform/RUN/`.
//!
//! The deployment is driven by the active controller, elected on a lease among `--controllers`
//! replicas that each embed a node. `--kill-leader-after-ms T` kills the active one T ms after
//! it was elected (its tasks, its running steps and its node, with no hand-over): once its
//! lease has ended, another replica is elected, restores the deployment and every unfinished
//! release from the store, and finishes them.
//!
//! `--agents N` adds a real application, `hello` (`examples/data/agents/hello.yaml`): N agent
//! processes (`examples/agent.rs`) start on this machine, each owning a host directory, and
//! the release sends them the `hello_http` program built from this repository over their
//! plus-mux connections, starts it with the manifest's `run` and checks it over HTTP with its
//! `check`. `--kill-agent-after-ms T` kills one agent with everything it started T ms into
//! that release: its host's steps fail by liveness, and the brake and the report show it.
//! Agents and their programs are stopped when the platform exits, also on failure.
//!
//! `--env NAME` brings up a whole environment of an environments file (talk 004) instead of
//! the manifests: rendered (plus-manifest), kept in the store, built in parallel, then deployed
//! in dependency order to an agent per application with its configuration beside its artifact,
//! each gated on its check (see `platform/env.rs`); the last line adds
//! ` env=NAME apps=N rendered=R`.
//!
//! It ends with one line, and exits non-zero unless every application was deployed, the
//! store's live replicas are identical and no group had more hosts out of traffic than its
//! plan allows:
//! `apps=6 deployed=6 failed=0 skipped=0 hosts=120 braked=0 quorum=identical elapsed_ms=4210`,
//! with ` controllers=3 failovers=1 rerun_steps=R max_out_of_traffic=M cap=C` appended when
//! there is more than one controller: the steps that ran again on a host, and the most hosts
//! of one group out of traffic at once as an observer beside the hosts saw it, against the
//! most any plan allows; and ` agents=N lost_agents=L` with agents, L those declared dead.

#[path = "platform/agents.rs"]
mod agents;
#[path = "common/cli.rs"]
mod cli;
#[path = "platform/cmdb.rs"]
mod cmdb;
#[path = "platform/controller.rs"]
mod controller;
#[path = "platform/env.rs"]
mod env;
#[path = "platform/hosts.rs"]
mod hosts;
#[path = "platform/live.rs"]
mod live;
#[path = "common/quorum_client.rs"]
mod quorum_client;
#[path = "platform/store.rs"]
mod store;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use clap::Parser;
use controller::{Controller, World};
use indicatif::{MultiProgress, ProgressDrawTarget};
use plus_core::{AppCode, HostId, Timestamp, Version, WorkerId, seeded_rng};
use plus_manifest::{Manifest, ManifestError, parse_file};
use plus_quorum::Bytes;
use plus_rollout::{AppGraph, AppSpec, AppState};
use plus_scheduler::{
    Fleet, FleetConfig, Heartbeat, Job, REFERENCE_WEIGHTS, Scheduler, WorkerKind,
};
use rand::Rng;

/// An embedded deploy platform, end to end on this machine.
/// The longest the run may take before it is called stuck.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Parser)]
#[command(name = "platform")]
struct Args {
    /// Share of the simulated hosts whose release fails (each at one of its steps after
    /// Precheck): at 0.1 a group of 20 loses about two hosts, enough to brake one in a while.
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
    /// The directory of manifests [default: examples/data/platform of this repository].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Controller replicas, each with a node of the store; one is active at a time (1 to 5).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=5))]
    controllers: u64,
    /// Releases judge themselves before every batch after the bastion by their group's error
    /// rate (failing above 5%); the simulated `api` group's rate jumps after its second batch,
    /// so its release brakes before the third, naming the check, and rolls back the hosts it
    /// changed.
    #[arg(long)]
    analysis: bool,
    /// Degrade dependencies, comma-separated: `lb` switches the load balancer that Markdown and
    /// Markup call to degraded (the releases go on without it; every call not made is recorded
    /// by its release and summed on the last line, `degraded_calls=N`; a host still counts as out
    /// of traffic for the cap); `metadata` makes the CMDB fail once every application's servers
    /// were looked up once (the releases plan from the cached answers, counted as
    /// `metadata_stale=N`).
    #[arg(long, value_delimiter = ',', value_parser = ["lb", "metadata"])]
    degrade: Vec<String>,
    /// Each release must end within this many milliseconds of its start, or it fails (and,
    /// with --analysis, rolls back what it changed); the time is kept across a failover.
    #[arg(long, value_name = "MS", value_parser = clap::value_parser!(u64).range(1..))]
    release_deadline_ms: Option<u64>,
    /// Kill the active controller this many milliseconds after it was elected (needs at least
    /// two controllers).
    #[arg(long)]
    kill_leader_after_ms: Option<u64>,
    /// Real hosts: start this many agent processes and release the `hello` application to
    /// them for real (0 to 32).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=32))]
    agents: u8,
    /// Instead of starting agents: listen on ADDR for agents on hosts of their own, named by
    /// --agent-hosts, and release `hello` to them (with TLS or a key, as for --agents; the key,
    /// unless --agents-psk-file gives one, is written to the agents' root for them to use).
    #[arg(long, value_name = "ADDR", conflicts_with_all = ["agents", "kill_agent_after_ms"])]
    agents_listen: Option<String>,
    /// The agents --agents-listen waits for, by id (`web-01,web-02`).
    #[arg(long, value_delimiter = ',', requires = "agents_listen")]
    agent_hosts: Vec<String>,
    /// Kill one agent (and the programs it started) this many milliseconds into the release
    /// to the agents (needs --agents).
    #[arg(long)]
    kill_agent_after_ms: Option<u64>,
    /// Where the agents' host directories and logs go; kept after the run (default: a
    /// temporary directory, removed at the end).
    #[arg(long)]
    agents_root: Option<PathBuf>,
    /// The agent program to start [default: the `agent` example beside this program; build
    /// it with `cargo build --release --example agent`].
    #[arg(long, value_name = "PATH")]
    agent_bin: Option<PathBuf>,
    /// The artifact released to the agents [default: the `hello_http` example beside this
    /// program; build it with `cargo build --release --example hello_http`].
    #[arg(long, value_name = "PATH")]
    agent_artifact: Option<PathBuf>,
    /// The manifest of the application released to the agents [default:
    /// examples/data/agents/hello.yaml of this repository].
    #[arg(long)]
    agent_app: Option<PathBuf>,
    /// The pre-shared key the platform and its agents prove to each other (a file readable by
    /// its owner only). Default: a new random key for the run, in the agents' root.
    #[arg(long, conflicts_with = "agents_tls_cert")]
    agents_psk_file: Option<PathBuf>,
    /// Mutual TLS between the platform and its agents instead of a key: the certificate (PEM)
    /// the platform listens with and gives the agents it starts.
    #[arg(long, requires_all = ["agents_tls_key", "agents_tls_ca"])]
    agents_tls_cert: Option<PathBuf>,
    /// The key of --agents-tls-cert (PEM).
    #[arg(long, requires_all = ["agents_tls_cert", "agents_tls_ca"])]
    agents_tls_key: Option<PathBuf>,
    /// The CA (PEM) the platform and its agents trust.
    #[arg(long, requires_all = ["agents_tls_cert", "agents_tls_key"])]
    agents_tls_ca: Option<PathBuf>,
    /// The platform's store: `quorum`, the embedded plus-quorum cluster (a node in each
    /// controller replica, no service to run); or `etcd`, an etcd the team already operates
    /// (--etcd-endpoints; needs a build with `--features etcd`).
    #[arg(long, value_enum, default_value_t = StoreKind::Quorum)]
    store: StoreKind,
    /// The etcd members with --store etcd (`127.0.0.1:2379,127.0.0.1:22379`).
    #[arg(long, value_delimiter = ',', value_name = "HOST:PORT,...")]
    etcd_endpoints: Vec<String>,
    /// Serve a live page of the deployment on ADDR (`http://ADDR/`, its JSON at
    /// `/api/state`): applications, each release's phase, batches, hosts at their step, the cap,
    /// brake and analysis verdicts, rollbacks and degraded calls. Read-only and without
    /// authentication: loopback only unless --insecure.
    #[arg(long, value_name = "ADDR")]
    http_listen: Option<std::net::SocketAddr>,
    /// Serve a non-loopback --http-listen.
    #[arg(long)]
    insecure: bool,
    /// Keep the live page, the agents and what they run up this long after the run, in
    /// milliseconds (the last line is printed first): time to look at a failed instance.
    #[arg(long, default_value_t = 0)]
    linger_ms: u64,
    /// Bring up environment NAME of the environments file instead of the manifests (talk
    /// 004): every application built in parallel on the fleet, then deployed in dependency
    /// order, each to an agent of its own with its configuration rendered for the environment
    /// written beside its artifact, and gated on its check. A failed check stops its
    /// dependents and leaves the instance running as it is; the report says where to look.
    #[arg(long, value_name = "NAME", conflicts_with_all = ["agents", "agents_listen", "data", "agent_app"])]
    env: Option<String>,
    /// The environments file of --env [default: examples/data/environments/environments.yaml
    /// of this repository].
    #[arg(long, value_name = "FILE", requires = "env")]
    env_file: Option<PathBuf>,
    /// With --env: this application's check asks for a path its program does not serve, so
    /// its Verify fails (to see what a failed check does: its dependents are skipped, and it is
    /// left running for --linger-ms).
    #[arg(long, value_name = "APP", requires = "env")]
    break_check: Option<String>,
}

/// Which store keeps the platform's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// The embedded plus-quorum cluster.
    Quorum,
    /// An etcd cluster at --etcd-endpoints.
    Etcd,
}

fn main() -> ExitCode {
    let mut args = Args::parse();
    match (args.store, args.etcd_endpoints.is_empty()) {
        (StoreKind::Etcd, true) => {
            cli::usage_error::<Args>("--store etcd needs --etcd-endpoints: the etcd members")
        }
        (StoreKind::Quorum, false) => {
            cli::usage_error::<Args>("--etcd-endpoints needs --store etcd")
        }
        _ => {}
    }
    if args.store == StoreKind::Etcd && !cfg!(feature = "etcd") {
        cli::usage_error::<Args>(
            "this platform was built without etcd: cargo run --release --features etcd --example platform -- --store etcd ...",
        );
    }
    if args.kill_leader_after_ms.is_some() && args.controllers < 2 {
        cli::usage_error::<Args>("--kill-leader-after-ms needs --controllers 2 or more");
    }
    if args.agents_listen.is_some() && args.agent_hosts.is_empty() {
        cli::usage_error::<Args>("--agents-listen needs --agent-hosts: the agents to wait for");
    }
    if args.agents == 0
        && args.agents_listen.is_none()
        && args.env.is_none()
        && (args.kill_agent_after_ms.is_some() || args.agents_root.is_some())
    {
        cli::usage_error::<Args>(
            "--kill-agent-after-ms and --agents-root need --agents 1 or more, or --env",
        );
    }
    if let Some(addr) = args.http_listen
        && !addr.ip().is_loopback()
        && !args.insecure
    {
        cli::usage_error::<Args>(format!(
            "refusing to serve the live page on {addr} without authentication; pass --insecure if the network is trusted"
        ));
    }
    if cli::init_logging() {
        args.no_progress = true;
    }
    cli::run_async(run(args))
}

/// `examples/data/PATH` of the repository this program was built from.
fn repository_data(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data").join(path)
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

/// Step 2: a simulated build fleet and one placement per application. The fleet keeps the
/// workers' loads and caches from their heartbeats and reserves a slot per placement, so the
/// builds spread and each goes where its project's cache is when that pays.
fn place_builds(apps: &[AppCode], seed: u64) -> Result<HashMap<AppCode, WorkerId>, String> {
    let mut rng = seeded_rng(seed);
    let mut fleet = Fleet::new(FleetConfig::default()).map_err(|e| e.to_string())?;
    let now = Timestamp::ZERO;
    for i in 0..8 {
        let id = WorkerId::new(format!("builder-{i}")).expect("valid id");
        fleet.register(id.clone(), WorkerKind::Build, Some(20), now).map_err(|e| e.to_string())?;
        // Each builder reports some caches: a few of the applications' and many others'.
        let others = rng.random_range(5..60);
        let caches: Vec<String> = apps
            .iter()
            .filter(|_| rng.random_bool(0.3))
            .map(ToString::to_string)
            .chain((0..others).map(|n| format!("project-{n}")))
            .collect();
        let load = f64::from(rng.random_range(0..16_u32)) / 20.0;
        fleet
            .heartbeat(&id, Heartbeat { load, caches: Some(caches) }, now)
            .map_err(|e| e.to_string())?;
    }
    let scheduler = Scheduler::with_weights(REFERENCE_WEIGHTS).map_err(|e| e.to_string())?;
    let mut placed = HashMap::new();
    for code in apps {
        let job = Job { kind: WorkerKind::Build, project: code.as_str() };
        let chosen = fleet.assign(&scheduler, &job, &mut rng).map_err(|e| e.to_string())?;
        let why: Vec<String> = chosen
            .dimensions
            .iter()
            .map(|d| format!("{}={:.2}->{:.1}", d.name, d.raw, d.weighted))
            .collect();
        println!(
            "build     {:<8} on {} (score {:.1}: {})",
            code,
            chosen.worker,
            chosen.score,
            why.join(" ")
        );
        placed.insert(code.clone(), chosen.worker);
    }
    Ok(placed)
}

#[derive(Debug, Default, Clone)]
struct AppResult {
    hosts_ok: usize,
    hosts_total: usize,
    /// Calls to a degraded dependency its release recorded as not made.
    degraded_calls: usize,
    braked: Option<String>,
    /// The first host that failed, and why.
    first_failure: Option<String>,
    millis: u128,
}

async fn run(args: Args) -> Result<bool, String> {
    let started = Instant::now();
    // Dropped last: the agents and their programs are stopped however the run ends.
    let agents: Option<Agents>;
    // The applications: the manifests', or the environment's.
    let (prepared, mut apps) = match &args.env {
        Some(name) => {
            let file = args
                .env_file
                .clone()
                .unwrap_or_else(|| repository_data("environments/environments.yaml"));
            let prepared = env::prepare(&file, name)?;
            let rendered = &prepared.rendered;
            println!(
                "env       {} of {}: {} applications, {} files rendered (layers {})",
                name,
                file.display(),
                rendered.environment.apps.len(),
                rendered.file_count(),
                rendered.environment.chain.join(" <- ")
            );
            (Some(prepared), Vec::new())
        }
        None => {
            let data = args.data.clone().unwrap_or_else(|| repository_data("platform"));
            let apps = load_manifests(&data)?;
            if apps.is_empty() {
                return Err(format!("no valid manifest in {}", data.display()));
            }
            (None, apps)
        }
    };

    // Step 4 first: the platform's own state store, embedded (a node in each controller
    // replica) or etcd.
    let opened = match args.store {
        StoreKind::Quorum => store::embedded(args.controllers).await?,
        #[cfg(feature = "etcd")]
        StoreKind::Etcd => store::etcd(&args.etcd_endpoints, args.controllers).await?,
        #[cfg(not(feature = "etcd"))]
        StoreKind::Etcd => unreachable!("refused in main without the etcd feature"),
    };
    let replicas = Arc::new(opened.replicas);
    let store = opened.store;
    let mut env_apps = Vec::new();
    agents = match &prepared {
        Some(prepared) => {
            env_apps = env::keep(&store, prepared).await?;
            let artifact = agent_artifact(&args)?;
            let groups = env::agent_groups(&env_apps, &artifact, args.break_check.as_deref())?;
            let config = agents::pool_config(groups.len());
            let pool = agents::AgentHosts::with_apps(groups, config)?;
            let what = format!("environment {}", prepared.name);
            Some(launch_agents(&args, &agent_program(&args)?, pool, &what).await?)
        }
        None if args.agents > 0 || args.agents_listen.is_some() => {
            Some(start_agents(&args, &mut apps).await?)
        }
        None => None,
    };
    println!("{}", opened.described);

    let specs: Vec<AppSpec> = match &prepared {
        Some(prepared) => prepared.specs(),
        None => apps
            .iter()
            .map(|(code, m)| AppSpec {
                code: code.clone(),
                depends_on: m.depends_on.clone(),
                optional_depends_on: m.optional_depends_on.clone(),
            })
            .collect(),
    };
    let codes: Vec<AppCode> = specs.iter().map(|s| s.code.clone()).collect();
    let builds = place_builds(&codes, args.seed)?;
    if prepared.is_some() {
        env::build_all(&env_apps, &builds, args.latency_ms).await;
    }
    for (app, worker) in &builds {
        store
            .set(&format!("build/{app}"), Bytes::from(worker.to_string()))
            .await
            .map_err(|e| e.to_string())?;
    }

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
    let version = Version::new(format!("2026.11.{}", args.seed)).map_err(|e| e.to_string())?;
    let (world, mut reports) = World::new(
        args.clone(),
        Arc::clone(&graph),
        version,
        progress,
        agents.as_ref().map(|a| Arc::clone(&a.hosts)),
    );
    if let Some(addr) = args.http_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot serve the live page on {addr}: {e}"))?;
        live::serve(listener, Arc::clone(&world));
        println!("live      http://{addr}/");
    }
    if args.degrade.iter().any(|d| d == "metadata") {
        // A platform that has been running knows every group's servers; then its CMDB fails.
        for app in graph.apps() {
            world.cmdb.group(&app.code).await?;
        }
        world.cmdb.fail();
        println!("degrade   metadata: the CMDB is down; groups come from the cache");
    }
    for replica in replicas.iter().take(usize::try_from(args.controllers).unwrap_or(1)) {
        replica.start_controlling(&world);
    }
    let killer = args.kill_leader_after_ms.map(|after| {
        let (world, replicas) = (Arc::clone(&world), Arc::clone(&replicas));
        tokio::spawn(kill_the_active_controller(world, replicas, Duration::from_millis(after)))
    });
    let agent_killer = agents.as_ref().and_then(|agents| {
        let after = Duration::from_millis(args.kill_agent_after_ms?);
        Some(tokio::spawn(kill_an_agent(
            Arc::clone(&agents.hosts),
            Arc::clone(&agents.processes),
            after,
        )))
    });
    let report = tokio::time::timeout(RUN_TIMEOUT, reports.recv())
        .await
        .map_err(|_| format!("no controller finished the deployment within {RUN_TIMEOUT:?}"))?
        .ok_or("every controller stopped before the deployment finished")?;
    if let Some(killer) = killer {
        killer.abort();
    }
    let agent_killed = match agent_killer {
        Some(killer) if killer.is_finished() => killer.await.ok().flatten(),
        Some(killer) => {
            killer.abort();
            None
        }
        None => None,
    };

    // The summary.
    let results = world.results.lock().expect("results lock").clone();
    println!();
    let width = report.apps.iter().map(|(app, _)| app.as_str().len()).max().unwrap_or(0).max(9);
    println!("{:<width$} {:<10} {:<52} {:>7} {:>8}", "app", "build", "result", "hosts", "time");
    let (mut deployed, mut failed, mut skipped, mut hosts, mut braked) = (0, 0, 0, 0, 0);
    let mut degraded = 0;
    for &i in &report.completion_order {
        let (app, state) = &report.apps[i];
        let r = results.get(app).cloned().unwrap_or_default();
        hosts += r.hosts_ok;
        degraded += r.degraded_calls;
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
        println!(
            "{:<width$} {:<10} {:<52} {:>7} {:>8}",
            app.as_str(),
            worker,
            text,
            host_text,
            time
        );
    }
    // A failed application of an environment is left as it is, for a person to look at.
    if let Some(agents) = &agents {
        for stored in &env_apps {
            let failed = report
                .apps
                .iter()
                .any(|(app, state)| *app == stored.app && matches!(state, AppState::Failed { .. }));
            if failed {
                println!("inspect   {}", env::where_to_look(stored, &agents.root)?);
                if let Some(why) = results.get(&stored.app).and_then(|r| r.first_failure.as_ref()) {
                    println!("inspect   {} failed on {why}", stored.app);
                }
            }
        }
    }

    // The store's live replicas must agree.
    let identical = store::replicas_agree(&replicas, &args.etcd_endpoints).await;
    let mut line = format!(
        "apps={} deployed={deployed} failed={failed} skipped={skipped} hosts={hosts} braked={braked} quorum={} elapsed_ms={}",
        report.apps.len(),
        if identical { "identical" } else { "different" },
        started.elapsed().as_millis()
    );
    let observed = world.hosts.observed();
    // As the releases recorded them (`ReleaseReport::degraded`).
    if degraded > 0 {
        line += &format!(" degraded_calls={degraded}");
    }
    let stale = world.cmdb.stale_lookups();
    if stale > 0 {
        line += &format!(" metadata_stale={stale}");
    }
    let cap = world.cap.load(Ordering::SeqCst);
    if args.controllers > 1 {
        line += &format!(
            " controllers={} failovers={} rerun_steps={} max_out_of_traffic={} cap={}",
            args.controllers,
            world.activations.load(Ordering::SeqCst).saturating_sub(1),
            observed.rerun_steps,
            observed.max_out_of_traffic,
            cap,
        );
    }
    if let Some(agents) = &agents {
        if let Some((killed, _)) = &agent_killed {
            agents.hosts.declared_dead(killed).await;
        }
        let lost = agents.hosts.lost();
        for (host, why, at) in &lost {
            let after_kill = match agent_killed {
                Some((ref killed, when)) if killed == host => {
                    format!(
                        ", {} ms after it was killed",
                        at.saturating_duration_since(when).as_millis()
                    )
                }
                _ => String::new(),
            };
            println!("agent     {host} lost: {why}{after_kill}");
        }
        line += &format!(" agents={} lost_agents={}", agents.hosts.hosts().len(), lost.len());
    }
    if let Some(prepared) = &prepared {
        line += &format!(
            " env={} apps={} rendered={}",
            prepared.name,
            prepared.rendered.environment.apps.len(),
            prepared.rendered.file_count()
        );
    }
    world.finished.store(true, Ordering::SeqCst);
    println!();
    println!("{line}");
    for replica in replicas.iter() {
        replica.kill().await;
    }
    if args.linger_ms > 0 {
        // The live page shows the final state a while longer.
        tokio::time::sleep(Duration::from_millis(args.linger_ms)).await;
    }
    if observed.max_out_of_traffic > cap {
        eprintln!(
            "error: {} hosts of one group were out of traffic at once; the plans allow {cap}",
            observed.max_out_of_traffic
        );
    }
    Ok(deployed == report.apps.len() && identical && observed.max_out_of_traffic <= cap)
}

/// The agents of `--agents`: their processes, the platform's side of their connections, and
/// the listener's tasks.
struct Agents {
    hosts: Arc<agents::AgentHosts>,
    processes: Arc<std::sync::Mutex<agents::AgentProcesses>>,
    /// Where the agents' host directories and logs are.
    root: PathBuf,
    _serving: agents::ServeTasks,
}

/// Starts `--agents` agent processes on a loopback listener, waits until all have registered,
/// and adds their application to `apps`.
async fn start_agents(args: &Args, apps: &mut Vec<(AppCode, Manifest)>) -> Result<Agents, String> {
    let agent_app = args.agent_app.clone().unwrap_or_else(|| repository_data("agents/hello.yaml"));
    let manifest = match parse_file(&agent_app) {
        Ok(manifest) => manifest,
        Err(ManifestError::Invalid(report)) => {
            return Err(format!(
                "the agents' manifest is invalid:\n{}",
                report.render(std::io::stderr().is_terminal())
            ));
        }
        Err(err) => return Err(err.to_string()),
    };
    let agent = agent_program(args)?;
    let real = agents::agent_app(&manifest, agent_artifact(args)?)?;
    if apps.iter().any(|(code, _)| *code == real.app) {
        return Err(format!("the agents' application {} is already among the manifests", real.app));
    }
    let hosts: Vec<HostId> = if args.agents_listen.is_some() {
        args.agent_hosts
            .iter()
            .map(|h| HostId::new(h.as_str()).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    } else {
        (0..args.agents)
            .map(|i| HostId::new(format!("{}-{i:02}", real.app)).map_err(|e| e.to_string()))
            .collect::<Result<_, _>>()?
    };
    let app = real.app.clone();
    let agent_hosts =
        agents::AgentHosts::new(real, hosts.clone(), agents::pool_config(hosts.len()));
    let agents = launch_agents(args, &agent, agent_hosts, app.as_str()).await?;
    apps.push((app, manifest));
    Ok(agents)
}

/// The agent program: --agent-bin, or the `agent` beside this program.
fn agent_program(args: &Args) -> Result<PathBuf, String> {
    match &args.agent_bin {
        Some(path) => Ok(path.clone()),
        None => cli::sibling_example("agent"),
    }
}

/// The artifact the agents release: --agent-artifact, or the `hello_http` beside this program.
fn agent_artifact(args: &Args) -> Result<PathBuf, String> {
    match &args.agent_artifact {
        Some(path) => Ok(path.clone()),
        None => cli::sibling_example("hello_http"),
    }
}

/// Listens for the agents of `agent_hosts` (with TLS or a key), starts one process of `agent`
/// per host (unless they are on hosts of their own, --agents-listen) and waits until all have
/// registered. `what` names what they release, for the output.
async fn launch_agents(
    args: &Args,
    agent: &Path,
    agent_hosts: Arc<agents::AgentHosts>,
    what: &str,
) -> Result<Agents, String> {
    let hosts = agent_hosts.hosts().to_vec();
    let (root, remove_root) = match &args.agents_root {
        Some(root) => (root.clone(), false),
        None => (std::env::temp_dir().join(format!("plus-platform-{}", std::process::id())), true),
    };
    // Loopback is no authentication against other users of this machine: the platform and
    // its agents prove who they are to each other (TLS, or a key) before any step or
    // heartbeat.
    let bind = args.agents_listen.as_deref().unwrap_or("127.0.0.1:0");
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| format!("cannot listen for agents on {bind}: {e}"))?;
    let address = listener.local_addr().map_err(|e| e.to_string())?.to_string();
    let (serving, credentials) =
        match (&args.agents_tls_cert, &args.agents_tls_key, &args.agents_tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                let tls =
                    plus_mux::Tls::from_pem_files(cert, key, ca).map_err(|e| e.to_string())?;
                let credentials = [("--tls-cert", cert), ("--tls-key", key), ("--tls-ca", ca)]
                    .into_iter()
                    .flat_map(|(flag, path)| [flag.into(), path.clone().into_os_string()])
                    .collect::<Vec<std::ffi::OsString>>();
                (agent_hosts.serve(tls.listener(listener)), credentials)
            }
            _ => {
                let (key_file, key) = agents::agents_key(args.agents_psk_file.as_deref(), &root)?;
                let credentials = vec!["--psk-file".into(), key_file.into_os_string()];
                (agent_hosts.serve(key.listener(listener)), credentials)
            }
        };
    // Agents on hosts of their own start themselves; the platform starts none.
    let started = if args.agents_listen.is_some() { &[][..] } else { &hosts[..] };
    let processes = agents::AgentProcesses::start(
        agent,
        &address,
        agent_hosts.config().heartbeat,
        started,
        (root, remove_root),
        &credentials,
    )?;
    if args.agents_listen.is_some() {
        let names: Vec<&str> = hosts.iter().map(HostId::as_str).collect();
        println!(
            "agents    waiting on {address} for {} ({}), with {}",
            names.join(", "),
            what,
            credentials.iter().map(|c| c.to_string_lossy()).collect::<Vec<_>>().join(" ")
        );
    } else {
        println!(
            "agents    {} agent processes for {what} on {address}, hosts and logs in {}",
            hosts.len(),
            processes.root().display()
        );
    }
    let root = processes.root().to_owned();
    let processes = Arc::new(std::sync::Mutex::new(processes));
    agent_hosts.registered().await?;
    Ok(Agents { hosts: agent_hosts, processes, root, _serving: serving })
}

/// Kills one agent `after` the release to the agents has started: the first whose host has
/// not finished. Which, and when.
async fn kill_an_agent(
    hosts: Arc<agents::AgentHosts>,
    processes: Arc<std::sync::Mutex<agents::AgentProcesses>>,
    after: Duration,
) -> Option<(HostId, Instant)> {
    hosts.first_step().await;
    tokio::time::sleep(after).await;
    let Some(host) = hosts.unfinished() else {
        println!("kill      no agent left to kill: every host is released");
        return None;
    };
    let killed = processes.lock().expect("processes lock").kill(&host);
    let when = Instant::now();
    println!(
        "kill      agent {host} and everything it started (SIGKILL to its process group){}",
        if killed { "" } else { ": it had already stopped" }
    );
    Some((host, when))
}

/// Kills the active controller `after` its election, abruptly (see [`Controller::kill`]).
async fn kill_the_active_controller(
    world: Arc<World>,
    replicas: Arc<Vec<Controller>>,
    after: Duration,
) {
    let active = loop {
        if let Some(id) = world.active.lock().expect("active lock").0 {
            break id;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    tokio::time::sleep(after).await;
    if let Some(replica) = replicas.iter().find(|r| r.id == active) {
        let mut phases: Vec<String> = world
            .phases
            .lock()
            .expect("phases lock")
            .iter()
            .map(|(app, phase)| format!("{app} {phase}"))
            .collect();
        phases.sort();
        println!(
            "kill      controller {active}: its tasks, its running steps and its node ({})",
            phases.join(", ")
        );
        world.active.lock().expect("active lock").1 = Some(Instant::now());
        replica.kill().await;
    }
}
