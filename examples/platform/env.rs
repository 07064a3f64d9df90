//! `platform --env NAME`: a whole environment of talk 004 brought up on this machine. Every
//! application of the environment gets an agent of its own (host `APP-00`) and a loopback port
//! the platform chooses; the environment's templates are rendered with those addresses (each
//! application finds its own environment's dependencies), kept in the platform's store, and
//! written beside each artifact by its agent at Install; the program is started on its port and
//! gated on the application's check path.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use plus_core::{AppCode, HostId};
use plus_manifest::{Address, Facts, Limits, ManifestError, RenderError, Rendered, Templates};
use plus_quorum::{Bytes, Compare, Expect, Range, Txn, TxnOp};
use plus_rollout::AppSpec;
use plus_rollout::agent::AgentApp;
use plus_rollout::agent::protocol::{Commands, ConfigFile};
use serde::{Deserialize, Serialize};

/// An environment resolved and rendered, before anything is deployed.
pub(crate) struct Prepared {
    /// The environment's name.
    pub name: String,
    /// The environments file as read: the definition kept in the store.
    pub definition: String,
    pub rendered: Rendered,
    /// The loopback port chosen for each application.
    pub ports: BTreeMap<AppCode, u16>,
}

/// One application of the environment as the store keeps it: what it runs, where, and its
/// rendered files (secrets included: the store is the platform's own, reached with the run's
/// key only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredApp {
    pub app: AppCode,
    pub branch: String,
    pub build_type: String,
    /// The check path its program answers, and its probe asks for.
    pub check: String,
    pub port: u16,
    pub depends_on: Vec<AppCode>,
    pub files: Vec<ConfigFile>,
}

impl StoredApp {
    /// The agent's host of this application.
    pub(crate) fn host(&self) -> Result<HostId, String> {
        HostId::new(format!("{}-00", self.app)).map_err(|e| e.to_string())
    }

    /// How its agent starts and checks it: the artifact serving on its port and check path,
    /// the probe asking for that path (no shell); a `broken` one's probe asks for a path the
    /// program does not serve.
    fn commands(&self, broken: bool) -> Commands {
        let port = self.port.to_string();
        let argv = |words: &[&str]| words.iter().map(|w| (*w).to_owned()).collect();
        let probed = if broken { format!("{}-broken", self.check) } else { self.check.clone() };
        Commands {
            run: argv(&["./artifact", "serve", "--port", &port, "--path", &self.check]),
            check: argv(&["./artifact", "probe", "--path", &probed]),
            check_retry: 30,
            check_interval_ms: 100,
        }
    }
}

/// Reads, validates, resolves and renders environment `name` of `file`, with a free loopback
/// port for each application (the facts its dependents' templates are filled from).
pub(crate) fn prepare(file: &Path, name: &str) -> Result<Prepared, String> {
    let color = std::io::stderr().is_terminal();
    let definition = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read the environments file {}: {e}", file.display()))?;
    let environments = match plus_manifest::parse_environments_file(file, Limits::default()) {
        Ok(environments) => environments,
        Err(ManifestError::Invalid(report)) => return Err(report.render(color)),
        Err(other) => return Err(other.to_string()),
    };
    let base = file.parent().unwrap_or(Path::new("."));
    let templates = Templates::load(base, &environments)
        .map_err(|(path, e)| format!("cannot read the template {path}: {e}"))?;
    let resolved = environments.resolve(name).map_err(|e| e.to_string())?;
    let mut facts = Facts::new();
    let mut ports = BTreeMap::new();
    // Ports below the kernel's ephemeral range: a port the system hands out for `:0` (any
    // connection's own end) could be taken again by the time the program binds it, seconds
    // later. Each is free when chosen, and held until all are, so no two applications share one.
    let mut free = fixed_ports();
    let mut held = Vec::new();
    for code in resolved.apps.keys() {
        let (listener, port) = free
            .find_map(|port| {
                std::net::TcpListener::bind(("127.0.0.1", port)).ok().map(|l| (l, port))
            })
            .ok_or_else(|| format!("no free loopback port below the ephemeral range for {code}"))?;
        held.push(listener);
        ports.insert(code.clone(), port);
        facts.deployed(name, code.clone(), Address { host: "127.0.0.1".to_owned(), port });
    }
    drop(held);
    let rendered = resolved.render(&templates, &facts).map_err(|e| match e {
        RenderError::Invalid(reports) => {
            reports.iter().map(|r| r.render(color)).collect::<Vec<_>>().join("\n\n")
        }
        other => other.to_string(),
    })?;
    Ok(Prepared { name: name.to_owned(), definition, rendered, ports })
}

/// Loopback ports for the environment's programs: from a random start between 10,000 and
/// the kernel's first ephemeral port (Linux: `/proc/sys/net/ipv4/ip_local_port_range`, 32768
/// when unreadable), wrapping around, so two platforms started at once rarely try the same.
fn fixed_ports() -> impl Iterator<Item = u16> {
    let first_ephemeral = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768);
    let low = 10_000_u16.min(first_ephemeral.saturating_sub(1_000));
    let span = first_ephemeral.saturating_sub(low).max(1);
    let start = rand::random::<u16>() % span;
    (0..span).map(move |i| low + (start + i) % span)
}

impl Prepared {
    /// The applications in the deployment's terms: codes and dependencies.
    pub(crate) fn specs(&self) -> Vec<AppSpec> {
        self.rendered
            .environment
            .apps
            .values()
            .map(|app| AppSpec {
                code: app.code.clone(),
                depends_on: app.depends_on.clone(),
                optional_depends_on: Vec::new(),
            })
            .collect()
    }

    fn stored(&self) -> Vec<StoredApp> {
        let environment = &self.rendered.environment;
        environment
            .apps
            .values()
            .map(|app| StoredApp {
                app: app.code.clone(),
                branch: app.branch.value.clone(),
                build_type: app.build_type.value.clone(),
                check: app.check.value.clone(),
                port: self.ports[&app.code],
                depends_on: app.depends_on.clone(),
                files: self
                    .rendered
                    .files
                    .get(&app.code)
                    .into_iter()
                    .flatten()
                    .map(|file| ConfigFile {
                        path: file.path.clone(),
                        contents: file.text().to_owned(),
                        secret: file.references.iter().any(|r| r.secret),
                    })
                    .collect(),
            })
            .collect()
    }
}

/// Where environment `name`'s records live in the store.
fn prefix(name: &str) -> String {
    format!("env/{name}/")
}

/// Keeps the environment's definition and each application's rendering in the store, unless
/// a controller already did (then that one stands: a platform that continues an environment
/// deploys what was rendered for it, not a rendering of a file changed since), and returns
/// the applications as the store holds them.
pub(crate) async fn keep(
    store: &crate::controller::Store,
    prepared: &Prepared,
) -> Result<Vec<StoredApp>, String> {
    let prefix = prefix(&prepared.name);
    let mut records = vec![(format!("{prefix}definition"), prepared.definition.clone())];
    for app in prepared.stored() {
        let json = serde_json::to_string(&app).map_err(|e| e.to_string())?;
        records.push((format!("{prefix}app/{}", app.app), json));
    }
    let mut kept_already = 0;
    for (key, value) in records {
        let created = store
            .txn(Txn {
                when: vec![Compare::new(key.clone(), Expect::Absent)],
                then: vec![TxnOp::Set { key: key.clone(), value: Bytes::from(value), lease: None }],
                otherwise: Vec::new(),
            })
            .await
            .map_err(|e| format!("cannot keep {key} in the store: {e}"))?;
        kept_already += usize::from(!created.succeeded);
    }
    if kept_already > 0 {
        println!(
            "env       {kept_already} records of {} were in the store already: kept",
            prepared.name
        );
    }
    let found = store
        .range(Range::prefix(format!("{prefix}app/")))
        .await
        .map_err(|e| format!("cannot read the environment back: {e}"))?;
    if found.more {
        return Err(format!(
            "the environment {} has more applications than one read returns",
            prepared.name
        ));
    }
    found
        .kvs
        .iter()
        .map(|(key, versioned)| {
            serde_json::from_slice(&versioned.value)
                .map_err(|e| format!("the store's {key} is not an application record: {e}"))
        })
        .collect()
}

/// Each application's agent app (the artifact, its commands and its files) on its own host;
/// the check of `broken` (--break-check) fails.
pub(crate) fn agent_groups(
    apps: &[StoredApp],
    artifact: &Path,
    broken: Option<&str>,
) -> Result<Vec<(AgentApp, Vec<HostId>)>, String> {
    if let Some(broken) = broken
        && !apps.iter().any(|a| a.app.as_str() == broken)
    {
        return Err(format!("--break-check {broken}: no such application in the environment"));
    }
    apps.iter()
        .map(|app| {
            let commands = app.commands(broken == Some(app.app.as_str()));
            let agent_app = AgentApp::new(app.app.clone(), commands, artifact.to_owned())?
                .with_files(app.files.clone());
            Ok((agent_app, vec![app.host()?]))
        })
        .collect()
}

/// What a person looks at when `app` failed: the instance left running as it was, its files
/// and its log.
pub(crate) fn where_to_look(app: &StoredApp, root: &Path) -> Result<String, String> {
    let host = app.host()?;
    let dir: PathBuf = root.join(host.as_str());
    let files: Vec<String> = app.files.iter().map(|f| f.path.clone()).collect();
    Ok(format!(
        "{} left as it is on 127.0.0.1:{} (check GET {}); host directory {}, configuration {} under current/, agent log {}",
        app.app,
        app.port,
        app.check,
        dir.display(),
        if files.is_empty() { "none".to_owned() } else { files.join(", ") },
        root.join(format!("{host}.log")).display()
    ))
}

/// Builds every application at once, each on the builder it was placed on. The builds are a
/// stand-in (each takes a few `latency_ms`): every application's artifact is the one program
/// the agents run; what is real is the placement and that they run in parallel.
pub(crate) async fn build_all(
    apps: &[StoredApp],
    placed: &std::collections::HashMap<AppCode, plus_core::WorkerId>,
    latency_ms: u64,
) {
    let started = std::time::Instant::now();
    let builds = apps.iter().map(|app| async move {
        let spread = app.app.as_str().bytes().map(u64::from).sum::<u64>() % 4;
        let took = std::time::Duration::from_millis(latency_ms.max(1) * (2 + spread));
        tokio::time::sleep(took).await;
        (app, took)
    });
    for (app, took) in futures::future::join_all(builds).await {
        // The branches a person chose for this environment; the rest build `master`.
        if app.branch != "master" {
            let worker = placed.get(&app.app).map_or_else(|| "-".to_owned(), ToString::to_string);
            println!(
                "built     {} branch {} ({}) on {worker} in {} ms",
                app.app,
                app.branch,
                app.build_type,
                took.as_millis()
            );
        }
    }
    println!(
        "built     {} applications in parallel in {} ms",
        apps.len(),
        started.elapsed().as_millis()
    );
}
