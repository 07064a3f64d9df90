//! The platform's real hosts: agent processes on this machine, each owning a host directory,
//! that the platform drives over plus-mux as a release's [`StepExecutor`].
//!
//! The platform listens on loopback; each agent connects, and its first heartbeat registers
//! it in a [`Fleet`] (plus-scheduler), which declares it dead after [`DEAD_AFTER`] of silence.
//! A step goes to the agent of its host over that agent's own connection, and fails at once
//! when the connection closes (plus-mux's heartbeats close it within two intervals when the
//! agent stops answering), or when the fleet has declared the agent dead. The artifact is
//! the `hello_http` program itself, sent by the platform over the same connection.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use plus_core::{AppCode, HostId, Timestamp, Version, WorkerId};
use plus_manifest::Manifest;
use plus_mux::{Bytes, Connection, Handler, HandlerError};
use plus_rollout::{Step, StepExecutor, StepOutcome, async_trait};
use plus_scheduler::{Fleet, FleetConfig, Heartbeat, Liveness, WorkerKind};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

use plus_rollout::agent::protocol::{
    self, Artifact, Beat, BeatReply, Commands, Fetch, PROTOCOL_VERSION, StepReply, StepRequest,
    check_version,
};

/// Between two heartbeats of an agent, and between two plus-mux pings each way.
pub(crate) const HEARTBEAT: Duration = Duration::from_millis(200);
/// An agent silent this long is declared dead by the fleet.
pub(crate) const DEAD_AFTER: Duration = Duration::from_secs(1);
/// The longest one step may take on an agent (the release's step and verify timeouts).
const STEP_DEADLINE: Duration = Duration::from_secs(5);
/// The longest the agents may take to start and register.
const REGISTRATION: Duration = Duration::from_secs(30);
/// The key the platform and the agents it starts prove to each other: `given`, or 32 random
/// bytes written to `root/agents.key`, readable by its owner only from its creation on. The
/// key file and the key.
pub(crate) fn agents_key(
    given: Option<&Path>,
    root: &Path,
) -> Result<(PathBuf, plus_mux::Psk), String> {
    if let Some(path) = given {
        return Ok((path.to_owned(), crate::cli::read_psk(path, "agent")?));
    }
    use std::io::Write;
    std::fs::create_dir_all(root).map_err(|e| format!("cannot create {}: {e}", root.display()))?;
    let path = root.join("agents.key");
    let mut key = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options
        .open(&path)
        .and_then(|mut file| file.write_all(hex.as_bytes()))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok((path.clone(), crate::cli::read_psk(&path, "agent")?))
}

/// The largest chunk of the artifact sent in one answer.
const MAX_CHUNK: u32 = 1 << 20;

/// The program a release starts and checks on the agents' hosts: the manifest's commands as
/// argument vectors (through `sh -c` only when the command needs a shell), and the artifact.
#[derive(Debug, Clone)]
pub(crate) struct RealApp {
    /// The application the agents' hosts belong to.
    pub app: AppCode,
    commands: Commands,
    artifact: PathBuf,
    sha256: String,
}

impl RealApp {
    /// The application of `manifest`, released as the file `artifact`.
    pub(crate) fn new(manifest: &Manifest, artifact: PathBuf) -> Result<Self, String> {
        let app = manifest.app.clone().ok_or("the agents' manifest has no `app` code")?;
        let deploy =
            manifest.autodeploy.as_ref().ok_or("the agents' manifest has no autodeploy")?;
        let bytes = std::fs::read(&artifact)
            .map_err(|e| format!("cannot read the artifact {}: {e}", artifact.display()))?;
        let commands = Commands {
            run: argv(&deploy.run),
            check: deploy.check.as_deref().map(argv).unwrap_or_default(),
            check_retry: deploy.check_retry.unwrap_or(0),
            check_interval_ms: deploy
                .check_interval
                .map_or(1_000, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        };
        Ok(Self { app, commands, artifact, sha256: format!("{:x}", Sha256::digest(&bytes)) })
    }
}

/// A manifest command as an argument vector: split on white space, or given to `sh -c` whole
/// when it uses anything only a shell understands (quotes, pipes, variables, globs, ...).
fn argv(command: &str) -> Vec<String> {
    let needs_shell = command.contains(|c: char| "|&;<>()$`\\\"'*?[]#~{}".contains(c))
        || command.split_whitespace().next().is_some_and(|first| first.contains('='));
    if needs_shell {
        vec!["sh".to_owned(), "-c".to_owned(), command.to_owned()]
    } else {
        command.split_whitespace().map(str::to_owned).collect()
    }
}

/// The agent processes, each in its own process group with the programs it starts: stopped
/// on drop (SIGTERM, then the whole group SIGKILLed), so nothing outlives the platform. Their
/// standard input is a pipe the platform holds: should the platform die without dropping
/// this, the agents see it close and stop.
pub(crate) struct AgentProcesses {
    children: Vec<(HostId, Child)>,
    root: PathBuf,
    remove_root: bool,
}

impl AgentProcesses {
    /// Starts an agent per host in `hosts`, each with the directory `root/HOST` and its log in
    /// `root/HOST.log`, connecting to the platform at `platform` with `credentials` (the
    /// arguments that give the agent its TLS files or its key).
    pub(crate) fn start(
        program: &Path,
        platform: &str,
        hosts: &[HostId],
        (root, remove_root): (PathBuf, bool),
        credentials: &[std::ffi::OsString],
    ) -> Result<Self, String> {
        std::fs::create_dir_all(&root)
            .map_err(|e| format!("cannot create {}: {e}", root.display()))?;
        let mut started = Self { children: Vec::new(), root, remove_root };
        for host in hosts {
            let log_path = started.root.join(format!("{host}.log"));
            let log = std::fs::File::create(&log_path)
                .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
            let err_log = log.try_clone().map_err(|e| e.to_string())?;
            let mut command = Command::new(program);
            command
                .args(["--connect", platform, "--id", host.as_str(), "--exit-on-stdin-eof"])
                .arg("--heartbeat-ms")
                .arg(HEARTBEAT.as_millis().to_string())
                .arg("--root")
                .arg(started.root.join(host.as_str()))
                .args(credentials)
                .stdin(Stdio::piped())
                .stdout(log)
                .stderr(err_log);
            #[cfg(unix)]
            std::os::unix::process::CommandExt::process_group(&mut command, 0);
            let child = command
                .spawn()
                .map_err(|e| format!("cannot start the agent {}: {e}", program.display()))?;
            started.children.push((host.clone(), child));
        }
        Ok(started)
    }

    /// Where the agents' hosts and logs are.
    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    /// Kills `host`'s agent and everything it started at once, as a host that dies: SIGKILL
    /// to its process group. Whether it was running.
    pub(crate) fn kill(&mut self, host: &HostId) -> bool {
        let Some((_, child)) = self.children.iter_mut().find(|(h, _)| h == host) else {
            return false;
        };
        let running = matches!(child.try_wait(), Ok(None));
        signal_group(child.id(), "-KILL");
        let _ = child.wait();
        running
    }
}

/// Sends `signal` to the process group led by `pid`.
fn signal_group(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .args([signal, "--", &format!("-{pid}")])
        .stderr(Stdio::null())
        .status();
}

impl Drop for AgentProcesses {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            if matches!(child.try_wait(), Ok(None)) {
                let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        for (_, child) in &mut self.children {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            // Whatever is left of the group (an agent that did not stop, a program it
            // started) goes now.
            signal_group(child.id(), "-KILL");
            let _ = child.wait();
        }
        if self.remove_root {
            let _ = std::fs::remove_dir_all(&self.root);
        }
    }
}

/// What the platform knows of its agents.
#[derive(Default)]
struct Registry {
    /// Each agent's latest connection.
    links: HashMap<HostId, Connection>,
    /// Agents declared dead, with why and when.
    lost: BTreeMap<HostId, (String, Instant)>,
    /// Hosts whose release finished (markup done, or already on the target).
    finished: HashSet<HostId>,
}

/// The agents' hosts as a release's [`StepExecutor`].
pub(crate) struct AgentHosts {
    real: RealApp,
    hosts: Vec<HostId>,
    fleet: Mutex<Fleet>,
    registry: Mutex<Registry>,
    changed: Notify,
    clock: Instant,
    /// When the first step was asked of an agent.
    first_step: OnceLock<Instant>,
    first_step_taken: Notify,
}

impl AgentHosts {
    /// The executor for `hosts`, each to be served by the agent of the same name.
    pub(crate) fn new(real: RealApp, hosts: Vec<HostId>) -> Result<Arc<Self>, String> {
        let config = FleetConfig {
            heartbeat_interval: HEARTBEAT,
            dead_after: DEAD_AFTER,
            ..FleetConfig::default()
        };
        Ok(Arc::new(Self {
            real,
            hosts,
            fleet: Mutex::new(Fleet::new(config).map_err(|e| e.to_string())?),
            registry: Mutex::default(),
            changed: Notify::new(),
            clock: Instant::now(),
            first_step: OnceLock::new(),
            first_step_taken: Notify::new(),
        }))
    }

    /// The application the agents' hosts belong to.
    pub(crate) fn app(&self) -> &AppCode {
        &self.real.app
    }

    /// The agents' hosts.
    pub(crate) fn hosts(&self) -> &[HostId] {
        &self.hosts
    }

    /// Whether `host` is an agent's.
    pub(crate) fn owns(&self, host: &HostId) -> bool {
        self.hosts.contains(host)
    }

    /// Agents declared dead so far, with why and when.
    pub(crate) fn lost(&self) -> Vec<(HostId, String, Instant)> {
        let registry = self.registry.lock().expect("registry lock");
        registry.lost.iter().map(|(h, (why, at))| (h.clone(), why.clone(), *at)).collect()
    }

    /// Waits until `host`'s agent is declared dead, for at most twice [`DEAD_AFTER`]: an agent
    /// killed near the end of a run still shows in its report.
    pub(crate) async fn declared_dead(&self, host: &HostId) {
        let dead = async {
            loop {
                let changed = self.changed.notified();
                if self.registry.lock().expect("registry lock").lost.contains_key(host) {
                    return;
                }
                changed.await;
            }
        };
        let _ = tokio::time::timeout(2 * DEAD_AFTER, dead).await;
    }

    /// Waits for the first step asked of an agent.
    pub(crate) async fn first_step(&self) {
        let taken = self.first_step_taken.notified();
        if self.first_step.get().is_none() {
            taken.await;
        }
    }

    /// The first host (in order) whose release has not finished.
    pub(crate) fn unfinished(&self) -> Option<HostId> {
        let registry = self.registry.lock().expect("registry lock");
        self.hosts.iter().find(|h| !registry.finished.contains(*h)).cloned()
    }

    fn now(&self) -> Timestamp {
        Timestamp::ZERO + self.clock.elapsed()
    }

    /// Accepts agents that prove the platform's key on `listener` until the task is dropped,
    /// and watches their liveness.
    pub(crate) fn serve<A: plus_mux::Accept>(self: &Arc<Self>, mut listener: A) -> ServeTasks {
        let accepting = {
            let hosts = Arc::clone(self);
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
                        hosts: Arc::clone(&hosts),
                        connection: OnceLock::new(),
                        registered: OnceLock::new(),
                    });
                    let config = plus_mux::Config {
                        heartbeat: Some(HEARTBEAT),
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
            let hosts = Arc::clone(self);
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HEARTBEAT / 2).await;
                    hosts.declare_the_silent_dead();
                }
            })
        };
        ServeTasks(vec![accepting, watching])
    }

    /// Ticks the fleet: agents silent past [`DEAD_AFTER`] are lost.
    fn declare_the_silent_dead(&self) {
        let now = self.now();
        let mut fleet = self.fleet.lock().expect("fleet lock");
        fleet.tick(now);
        let mut registry = self.registry.lock().expect("registry lock");
        let mut changed = false;
        for host in &self.hosts {
            let id = WorkerId::new(host.as_str()).expect("a host id is a worker id");
            if fleet.liveness(&id) == Some(Liveness::Dead) && !registry.lost.contains_key(host) {
                let why = format!("no heartbeat for {} ms", DEAD_AFTER.as_millis());
                tracing::warn!(agent = %host, "agent lost: {why}");
                registry.lost.insert(host.clone(), (why, Instant::now()));
                changed = true;
            }
        }
        if changed {
            self.changed.notify_waiters();
        }
    }

    /// Waits until every agent has registered.
    pub(crate) async fn registered(&self) -> Result<(), String> {
        let all = async {
            loop {
                let changed = self.changed.notified();
                let missing = {
                    let registry = self.registry.lock().expect("registry lock");
                    self.hosts.iter().filter(|h| !registry.links.contains_key(*h)).count()
                };
                if missing == 0 {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(REGISTRATION, all).await.map_err(|_| {
            let registry = self.registry.lock().expect("registry lock");
            let missing: Vec<&str> = self
                .hosts
                .iter()
                .filter(|h| !registry.links.contains_key(*h))
                .map(HostId::as_str)
                .collect();
            format!("agents {} did not register within {REGISTRATION:?}", missing.join(", "))
        })
    }

    /// A beat over `connection`; the first on a connection (`registered` unset) makes it the
    /// agent's, unless the agent already has a live connection: a host's registered
    /// connection is never replaced while it is up, and a connection speaks for the one host
    /// it registered as.
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
        match registered.get() {
            Some(mine) if *mine != host => {
                tracing::warn!(agent = %mine, claimed = %host, "an agent's connection spoke for another host: refused");
                return Err(format!("this connection is agent {mine}'s, not {host}'s"));
            }
            Some(_) => {}
            None => {
                let mut registry = self.registry.lock().expect("registry lock");
                if registry.links.get(&host).is_some_and(|c| c.close_reason().is_none()) {
                    tracing::warn!(
                        agent = %host,
                        "a second connection claims a registered agent: refused, the registered one stays"
                    );
                    return Err(format!("agent {host} is registered on another connection"));
                }
                registry.links.insert(host.clone(), connection.clone());
                let _ = registered.set(host.clone());
                drop(registry);
                tracing::info!(agent = %host, versions = ?beat.versions, "agent registered");
                self.changed.notify_waiters();
            }
        }
        let id = WorkerId::new(host.as_str()).expect("a host id is a worker id");
        let now = self.now();
        let mut fleet = self.fleet.lock().expect("fleet lock");
        let heartbeat = Heartbeat { load: beat.load.max(0.0), caches: None };
        if fleet.liveness(&id).is_none_or(|l| l == Liveness::Dead) {
            let _ = fleet.register(id.clone(), WorkerKind::Deploy, Some(1), now);
        }
        let _ = fleet.heartbeat(&id, heartbeat, now);
        Ok(())
    }

    /// The agent's live connection, or why there is none to wait for.
    async fn connection(&self, host: &HostId) -> Result<Connection, String> {
        loop {
            let changed = self.changed.notified();
            {
                let registry = self.registry.lock().expect("registry lock");
                if let Some((why, _)) = registry.lost.get(host) {
                    return Err(format!("agent {host} lost: {why}"));
                }
                if let Some(connection) = registry.links.get(host)
                    && connection.close_reason().is_none()
                {
                    return Ok(connection.clone());
                }
            }
            // Reconnecting, or declared dead by the watcher soon.
            let _ = tokio::time::timeout(HEARTBEAT, changed).await;
        }
    }

    fn request(&self, step: Step, target: &Version) -> StepRequest {
        let version = target.to_string();
        let commands = self.real.commands.clone();
        match step {
            Step::Precheck => StepRequest::Precheck { version, commands },
            Step::Markdown => StepRequest::Markdown,
            Step::Download => StepRequest::Download {
                version,
                artifact: Artifact {
                    path: self.real.artifact.to_string_lossy().into_owned(),
                    sha256: self.real.sha256.clone(),
                    from_platform: true,
                },
            },
            Step::Install => StepRequest::Install { version },
            Step::Verify => StepRequest::Verify { version, commands },
            Step::Markup => StepRequest::Markup,
        }
    }

    /// A chunk of the artifact, the only file the platform hands out.
    fn chunk(&self, fetch: &Fetch) -> Result<Bytes, HandlerError> {
        if Path::new(&fetch.fetch) != self.real.artifact {
            return Err(HandlerError::new(format!(
                "{} is not an artifact of this release",
                fetch.fetch
            )));
        }
        use std::io::{Read, Seek, SeekFrom};
        let mut file = std::fs::File::open(&self.real.artifact)
            .map_err(|e| HandlerError::new(e.to_string()))?;
        file.seek(SeekFrom::Start(fetch.offset)).map_err(|e| HandlerError::new(e.to_string()))?;
        let mut bytes = Vec::with_capacity(fetch.len.min(MAX_CHUNK) as usize);
        file.take(u64::from(fetch.len.min(MAX_CHUNK)))
            .read_to_end(&mut bytes)
            .map_err(|e| HandlerError::new(e.to_string()))?;
        Ok(Bytes::from(bytes))
    }
}

/// The listener's and the watcher's tasks, ended on drop.
pub(crate) struct ServeTasks(Vec<tokio::task::JoinHandle<()>>);

impl Drop for ServeTasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// One agent's connection, as the platform's handler of what the agent asks.
struct AgentLink {
    hosts: Arc<AgentHosts>,
    connection: OnceLock<Connection>,
    registered: OnceLock<HostId>,
}

#[async_trait]
impl Handler for AgentLink {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        if let Ok(fetch) = serde_json::from_slice::<Fetch>(&request) {
            return self.hosts.chunk(&fetch);
        }
        let beat: Beat = serde_json::from_slice(&request)
            .map_err(|e| HandlerError::new(format!("neither a heartbeat nor a fetch: {e}")))?;
        if let Err(refused) = check_version(beat.protocol, &format!("agent {}", beat.agent)) {
            tracing::warn!("{refused}");
            return Err(HandlerError::new(refused));
        }
        if let Some(connection) = self.connection.get() {
            self.hosts.beat(&beat, connection, &self.registered).map_err(HandlerError::new)?;
        }
        let reply = BeatReply { protocol: PROTOCOL_VERSION };
        serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| HandlerError::new(e.to_string()))
    }
}

#[async_trait]
impl StepExecutor for AgentHosts {
    async fn run(&self, host: &HostId, step: Step, target: &Version) -> StepOutcome {
        if self.first_step.set(Instant::now()).is_ok() {
            self.first_step_taken.notify_waiters();
        }
        let connection = match self.connection(host).await {
            Ok(connection) => connection,
            Err(why) => return StepOutcome::Failed(why),
        };
        let request = protocol::Step {
            request: self.request(step, target),
            deadline_ms: Some(u64::try_from(STEP_DEADLINE.as_millis()).unwrap_or(u64::MAX)),
        };
        let body = match serde_json::to_vec(&request) {
            Ok(body) => body,
            Err(e) => return StepOutcome::Failed(format!("cannot encode the step: {e}")),
        };
        // The agent ends the step at its deadline itself; a little more for the answer.
        let reply = match connection.request_with_timeout(body, STEP_DEADLINE + HEARTBEAT).await {
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
            self.registry.lock().expect("registry lock").finished.insert(host.clone());
        }
        outcome
    }
}
