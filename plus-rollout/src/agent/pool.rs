//! The platform's side of the agents: it accepts their connections, registers each on its
//! first heartbeat, declares one lost after a silence, and runs a release's steps on them as a
//! [`StepExecutor`]. A platform embeds it as it is; the `platform` example does.
//!
//! An agent is accepted only for a host the pool was made for; a registered agent's live
//! connection is never replaced by a second one naming it, and a connection speaks for the one
//! host it registered as (a local process that reaches the listener cannot act for an agent).
//! A peer of another protocol version is refused, naming both versions. A step goes to its
//! host's agent over that agent's own connection and fails at once when the connection closes
//! (plus-mux's heartbeats close it within two intervals when the agent stops answering), or
//! when the agent has been declared lost. The artifact is sent by the pool over the same
//! connection, in pieces of at most a megabyte; no other file is handed out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use plus_core::{AppCode, HostId, Version};
use plus_mux::{Bytes, Connection, Handler, HandlerError};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use super::protocol::{
    self, Artifact, Beat, BeatReply, Commands, ConfigFile, Fetch, PROTOCOL_VERSION, StepReply,
    StepRequest, check_version,
};
use crate::{Step, StepExecutor, StepOutcome};

/// The largest piece of the artifact sent in one answer.
const MAX_CHUNK: u32 = 1 << 20;

/// How the pool watches and drives its agents. Every default is written on its field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolConfig {
    /// Between two plus-mux pings each way on an agent's connection (agents beat at their own
    /// interval). Default 200 ms.
    pub heartbeat: Duration,
    /// An agent silent this long is declared lost. Default 1 s.
    pub dead_after: Duration,
    /// The longest one step may take on an agent; the agent ends it itself at this deadline.
    /// Default 5 s.
    pub step_deadline: Duration,
    /// The longest [`AgentPool::registered`] waits for every agent. Default 30 s.
    pub registration: Duration,
}

impl Default for PoolConfig {
    fn default() -> Self {
        Self {
            heartbeat: Duration::from_millis(200),
            dead_after: Duration::from_secs(1),
            step_deadline: Duration::from_secs(5),
            registration: Duration::from_secs(30),
        }
    }
}

/// What the agents release: the application, the commands that start and check it, its
/// artifact (a file the pool sends them, SHA-256 checked on their side) and the configuration
/// files written beside it.
#[derive(Debug, Clone)]
pub struct AgentApp {
    /// The application the agents' hosts belong to.
    pub app: AppCode,
    commands: Commands,
    artifact: PathBuf,
    sha256: String,
    files: Vec<ConfigFile>,
}

impl AgentApp {
    /// `app`, started and checked by `commands`, released as the file `artifact`.
    ///
    /// # Errors
    /// When the artifact cannot be read (its checksum is taken now).
    pub fn new(app: AppCode, commands: Commands, artifact: PathBuf) -> Result<Self, String> {
        let bytes = std::fs::read(&artifact)
            .map_err(|e| format!("cannot read the artifact {}: {e}", artifact.display()))?;
        let sha256 = format!("{:x}", Sha256::digest(&bytes));
        Ok(Self { app, commands, artifact, sha256, files: Vec::new() })
    }

    /// The same, with `files` written beside the artifact at every Install (an environment's
    /// rendered configuration).
    #[must_use]
    pub fn with_files(mut self, files: Vec<ConfigFile>) -> Self {
        self.files = files;
        self
    }
}

/// A manifest's command as an argument vector: split on white space, or given to `sh -c` whole
/// when it uses anything only a shell understands (any of `| & ; < > ( ) $ `` ` `` \ " ' * ? [ ]
/// # ~ { }`, or a leading `NAME=VALUE`). The agent itself never adds a shell.
#[must_use]
pub fn command_argv(command: &str) -> Vec<String> {
    let needs_shell = command.contains(|c: char| "|&;<>()$`\\\"'*?[]#~{}".contains(c))
        || command.split_whitespace().next().is_some_and(|first| first.contains('='));
    if needs_shell {
        vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()]
    } else {
        command.split_whitespace().map(str::to_owned).collect()
    }
}

/// What the pool knows of its agents.
#[derive(Default)]
struct Registry {
    /// Each agent's latest connection.
    links: HashMap<HostId, Connection>,
    /// Each registered agent's latest heartbeat.
    last_beat: HashMap<HostId, Instant>,
    /// Agents declared lost, with why and when.
    lost: BTreeMap<HostId, (String, Instant)>,
    /// Hosts whose release finished (markup done, or already on the target).
    finished: HashSet<HostId>,
}

/// The agents of a set of hosts, as a release's [`StepExecutor`]: one application's, or several
/// applications' each on hosts of its own.
pub struct AgentPool {
    apps: Vec<AgentApp>,
    hosts: Vec<HostId>,
    /// Each host's application, an index into `apps`.
    app_of: HashMap<HostId, usize>,
    config: PoolConfig,
    registry: Mutex<Registry>,
    changed: Notify,
    /// When the first step was asked of an agent.
    first_step: OnceLock<Instant>,
    first_step_taken: Notify,
}

impl std::fmt::Debug for AgentPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AgentPool")
            .field("apps", &self.apps.iter().map(|a| a.app.as_str()).collect::<Vec<_>>())
            .field("hosts", &self.hosts.len())
            .finish_non_exhaustive()
    }
}

impl AgentPool {
    /// The pool for `hosts`, each to be served by the agent of the same name.
    #[must_use]
    pub fn new(app: AgentApp, hosts: Vec<HostId>, config: PoolConfig) -> Arc<Self> {
        let app_of = hosts.iter().map(|h| (h.clone(), 0)).collect();
        Self::build(vec![app], hosts, app_of, config)
    }

    /// The pool for several applications, each on its own hosts (an environment's: every
    /// application on an agent of its own).
    ///
    /// # Errors
    /// When a host is named for two applications, or one application twice.
    pub fn with_apps(
        groups: Vec<(AgentApp, Vec<HostId>)>,
        config: PoolConfig,
    ) -> Result<Arc<Self>, String> {
        let (mut apps, mut hosts, mut app_of) = (Vec::new(), Vec::new(), HashMap::new());
        for (index, (app, group)) in groups.into_iter().enumerate() {
            if apps.iter().any(|a: &AgentApp| a.app == app.app) {
                return Err(format!("{} is given twice", app.app));
            }
            for host in group {
                if let Some(&other) = app_of.get(&host) {
                    let other: &AgentApp = &apps[other];
                    return Err(format!("host {host} is given for {} and {}", other.app, app.app));
                }
                app_of.insert(host.clone(), index);
                hosts.push(host);
            }
            apps.push(app);
        }
        Ok(Self::build(apps, hosts, app_of, config))
    }

    fn build(
        apps: Vec<AgentApp>,
        hosts: Vec<HostId>,
        app_of: HashMap<HostId, usize>,
        config: PoolConfig,
    ) -> Arc<Self> {
        Arc::new(Self {
            apps,
            hosts,
            app_of,
            config,
            registry: Mutex::default(),
            changed: Notify::new(),
            first_step: OnceLock::new(),
            first_step_taken: Notify::new(),
        })
    }

    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The applications the agents' hosts belong to.
    pub fn apps(&self) -> impl Iterator<Item = &AppCode> {
        self.apps.iter().map(|a| &a.app)
    }

    /// How the pool watches and drives its agents.
    #[must_use]
    pub fn config(&self) -> PoolConfig {
        self.config
    }

    /// The agents' hosts, of every application.
    #[must_use]
    pub fn hosts(&self) -> &[HostId] {
        &self.hosts
    }

    /// The hosts of `app` (none for an application the pool does not release).
    #[must_use]
    pub fn hosts_of(&self, app: &AppCode) -> Vec<HostId> {
        self.hosts
            .iter()
            .filter(|h| self.app_for(h).is_some_and(|a| a.app == *app))
            .cloned()
            .collect()
    }

    /// Whether `host` is one of the pool's.
    #[must_use]
    pub fn owns(&self, host: &HostId) -> bool {
        self.app_of.contains_key(host)
    }

    fn app_for(&self, host: &HostId) -> Option<&AgentApp> {
        self.app_of.get(host).map(|&i| &self.apps[i])
    }

    /// Agents declared lost so far, with why and when.
    #[must_use]
    pub fn lost(&self) -> Vec<(HostId, String, Instant)> {
        self.registry().lost.iter().map(|(h, (why, at))| (h.clone(), why.clone(), *at)).collect()
    }

    /// Waits until `host`'s agent is declared lost, for at most twice
    /// [`PoolConfig::dead_after`].
    pub async fn declared_dead(&self, host: &HostId) {
        let dead = async {
            loop {
                let changed = self.changed.notified();
                if self.registry().lost.contains_key(host) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(2 * self.config.dead_after, dead).await;
    }

    /// Waits for the first step asked of an agent.
    pub async fn first_step(&self) {
        let taken = self.first_step_taken.notified();
        if self.first_step.get().is_none() {
            taken.await;
        }
    }

    /// The first host (in order) whose release has not finished on it.
    #[must_use]
    pub fn unfinished(&self) -> Option<HostId> {
        let registry = self.registry();
        self.hosts.iter().find(|h| !registry.finished.contains(*h)).cloned()
    }

    /// Accepts agents on `listener` (which proves what it must: a key, or TLS) until the tasks
    /// are dropped, and declares the silent ones lost.
    pub fn serve<A: plus_mux::Accept>(self: &Arc<Self>, mut listener: A) -> ServeTasks {
        let accepting = {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                // An accept error is the listener's (handshakes that fail are not returned):
                // wait a moment rather than spin.
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot accept agents; retrying");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    };
                    let link = Arc::new(AgentLink {
                        pool: Arc::clone(&pool),
                        connection: OnceLock::new(),
                        registered: OnceLock::new(),
                    });
                    let config = plus_mux::Config {
                        heartbeat: Some(pool.config.heartbeat),
                        ..plus_mux::Config::default()
                    };
                    let handler = Arc::clone(&link) as Arc<dyn Handler>;
                    if let Ok(connection) = Connection::new(stream, config, handler) {
                        let _ = link.connection.set(connection);
                    }
                }
            })
        };
        let watching = {
            let pool = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(pool.config.heartbeat / 2).await;
                    pool.declare_the_silent_dead();
                }
            })
        };
        ServeTasks(vec![accepting, watching])
    }

    /// Registered agents silent past [`PoolConfig::dead_after`] are lost.
    fn declare_the_silent_dead(&self) {
        let dead_after = self.config.dead_after;
        let mut registry = self.registry();
        let silent: Vec<HostId> = registry
            .last_beat
            .iter()
            .filter(|(host, at)| at.elapsed() >= dead_after && !registry.lost.contains_key(*host))
            .map(|(host, _)| host.clone())
            .collect();
        for host in &silent {
            let why = format!("no heartbeat for {} ms", dead_after.as_millis());
            tracing::warn!(agent = %host, "agent lost: {why}");
            registry.lost.insert(host.clone(), (why, Instant::now()));
        }
        drop(registry);
        if !silent.is_empty() {
            self.changed.notify_waiters();
        }
    }

    /// Waits until every agent has registered, for at most [`PoolConfig::registration`].
    ///
    /// # Errors
    /// The agents that did not register in time.
    pub async fn registered(&self) -> Result<(), String> {
        let all = async {
            loop {
                let changed = self.changed.notified();
                let missing = {
                    let registry = self.registry();
                    self.hosts.iter().filter(|h| !registry.links.contains_key(*h)).count()
                };
                if missing == 0 {
                    return;
                }
                changed.await;
            }
        };
        let limit = self.config.registration;
        tokio::time::timeout(limit, all).await.map_err(|_| {
            let registry = self.registry();
            let missing: Vec<&str> = self
                .hosts
                .iter()
                .filter(|h| !registry.links.contains_key(*h))
                .map(HostId::as_str)
                .collect();
            format!("agents {} did not register within {limit:?}", missing.join(", "))
        })
    }

    /// A beat over `connection`; the first on a connection (`registered` unset) makes it the
    /// agent's, unless the agent already has a live connection.
    fn beat(
        &self,
        beat: &Beat,
        connection: &Connection,
        registered: &OnceLock<HostId>,
    ) -> Result<(), String> {
        let host = HostId::new(&beat.agent).map_err(|e| e.to_string())?;
        if !self.owns(&host) {
            tracing::warn!(agent = %beat.agent, "a heartbeat from an agent the platform did not start");
            return Err(format!("{host} is not an agent this platform started"));
        }
        let mut registry = self.registry();
        match registered.get() {
            Some(mine) if *mine != host => {
                tracing::warn!(agent = %mine, claimed = %host, "an agent's connection spoke for another host: refused");
                return Err(format!("this connection is agent {mine}'s, not {host}'s"));
            }
            Some(_) => {}
            None => {
                if registry.links.get(&host).is_some_and(|c| c.close_reason().is_none()) {
                    tracing::warn!(
                        agent = %host,
                        "a second connection claims a registered agent: refused, the registered one stays"
                    );
                    return Err(format!("agent {host} is registered on another connection"));
                }
                registry.links.insert(host.clone(), connection.clone());
                let _ = registered.set(host.clone());
                tracing::info!(agent = %host, versions = ?beat.versions, "agent registered");
                self.changed.notify_waiters();
            }
        }
        // Once declared lost, an agent stays lost for this pool: its steps fail at once and a
        // person looks at it (a flapping agent is no place for a release).
        registry.last_beat.insert(host, Instant::now());
        Ok(())
    }

    /// The agent's live connection, or why there is none to wait for.
    async fn connection(&self, host: &HostId) -> Result<Connection, String> {
        loop {
            let changed = self.changed.notified();
            {
                let registry = self.registry();
                if let Some((why, _)) = registry.lost.get(host) {
                    return Err(format!("agent {host} lost: {why}"));
                }
                if let Some(connection) = registry.links.get(host)
                    && connection.close_reason().is_none()
                {
                    return Ok(connection.clone());
                }
            }
            // Reconnecting, or declared lost by the watcher soon.
            let _ = tokio::time::timeout(self.config.heartbeat, changed).await;
        }
    }

    fn request(app: &AgentApp, step: Step, target: &Version) -> StepRequest {
        let version = target.to_string();
        let commands = app.commands.clone();
        match step {
            Step::Precheck => StepRequest::Precheck { version, commands },
            Step::Markdown => StepRequest::Markdown,
            Step::Download => StepRequest::Download {
                version,
                artifact: Artifact {
                    path: app.artifact.to_string_lossy().into_owned(),
                    sha256: app.sha256.clone(),
                    from_platform: true,
                },
            },
            Step::Install => StepRequest::Install { version, files: app.files.clone() },
            Step::Verify => StepRequest::Verify { version, commands },
            Step::Markup => StepRequest::Markup,
        }
    }

    /// A piece of the artifact of `host`'s application, the only file its agent is handed.
    fn chunk(&self, host: Option<&HostId>, fetch: &Fetch) -> Result<Bytes, HandlerError> {
        let Some(app) = host.and_then(|h| self.app_for(h)) else {
            return Err(HandlerError::new("only a registered agent may fetch an artifact"));
        };
        if Path::new(&fetch.fetch) != app.artifact {
            return Err(HandlerError::new(format!(
                "{} is not an artifact of this release",
                fetch.fetch
            )));
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut file =
            std::fs::File::open(&app.artifact).map_err(|e| HandlerError::new(e.to_string()))?;
        file.seek(SeekFrom::Start(fetch.offset)).map_err(|e| HandlerError::new(e.to_string()))?;
        let mut bytes = Vec::with_capacity(fetch.len.min(MAX_CHUNK) as usize);
        file.take(u64::from(fetch.len.min(MAX_CHUNK)))
            .read_to_end(&mut bytes)
            .map_err(|e| HandlerError::new(e.to_string()))?;
        Ok(Bytes::from(bytes))
    }
}

/// The pool's listener and watcher tasks, ended on drop.
#[derive(Debug)]
pub struct ServeTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for ServeTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One agent's connection, as the pool's handler of what the agent asks.
struct AgentLink {
    pool: Arc<AgentPool>,
    connection: OnceLock<Connection>,
    registered: OnceLock<HostId>,
}

#[async_trait::async_trait]
impl Handler for AgentLink {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        if let Ok(fetch) = serde_json::from_slice::<Fetch>(&request) {
            return self.pool.chunk(self.registered.get(), &fetch);
        }
        let beat: Beat = serde_json::from_slice(&request)
            .map_err(|e| HandlerError::new(format!("neither a heartbeat nor a fetch: {e}")))?;
        if let Err(refused) = check_version(beat.protocol, &format!("agent {}", beat.agent)) {
            tracing::warn!("{refused}");
            return Err(HandlerError::new(refused));
        }
        if let Some(connection) = self.connection.get() {
            self.pool.beat(&beat, connection, &self.registered).map_err(HandlerError::new)?;
        }
        let reply = BeatReply { protocol: PROTOCOL_VERSION };
        serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| HandlerError::new(e.to_string()))
    }
}

#[async_trait::async_trait]
impl StepExecutor for AgentPool {
    async fn run(&self, host: &HostId, step: Step, target: &Version) -> StepOutcome {
        if self.first_step.set(Instant::now()).is_ok() {
            self.first_step_taken.notify_waiters();
        }
        let Some(app) = self.app_for(host) else {
            return StepOutcome::Failed(format!("{host} is not a host of this pool's agents"));
        };
        let connection = match self.connection(host).await {
            Ok(connection) => connection,
            Err(why) => return StepOutcome::Failed(why),
        };
        let deadline = self.config.step_deadline;
        let request = protocol::Step {
            request: Self::request(app, step, target),
            deadline_ms: Some(u64::try_from(deadline.as_millis()).unwrap_or(u64::MAX)),
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => return StepOutcome::Failed(format!("cannot encode the step: {e}")),
        };
        // The agent ends the step at its deadline itself; a little more for the answer.
        let waited = deadline + self.config.heartbeat;
        let reply = match connection.request_with_timeout(body, waited).await {
            Ok(reply) => reply,
            Err(e) => return StepOutcome::Failed(format!("agent {host} unreachable: {e}")),
        };
        let reply: StepReply = match serde_json::from_slice(&reply) {
            Ok(reply) => reply,
            Err(e) => return StepOutcome::Failed(format!("agent {host} answered nonsense: {e}")),
        };
        let outcome = match (step, reply.ok, reply.already) {
            (Step::Precheck, true, true) => StepOutcome::AlreadyOnTarget,
            (_, true, _) => StepOutcome::Done,
            (_, false, _) => {
                let said = reply.stderr.lines().last().unwrap_or_default();
                StepOutcome::Failed(format!("{step} on {host}: {} {said}", reply.detail))
            }
        };
        if matches!(
            (step, &outcome),
            (Step::Markup, StepOutcome::Done) | (_, StepOutcome::AlreadyOnTarget)
        ) {
            self.registry().finished.insert(host.clone());
        }
        outcome
    }
}
