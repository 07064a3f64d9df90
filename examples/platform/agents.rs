//! The platform's real hosts: agent processes on this machine, each owning a host directory,
//! driven by plus-rollout's [`AgentPool`] (registration, liveness, the steps as a release's
//! executor). What stays here is the example's own part: starting and stopping the agent
//! processes, the run's key, and the application they release (the `hello_http` program
//! itself, sent by the platform over each agent's connection).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use plus_core::HostId;
use plus_manifest::Manifest;
use plus_rollout::agent::protocol::Commands;
use plus_rollout::agent::{AgentApp, AgentPool, PoolConfig, command_argv};

/// The platform's side of its agents.
pub(crate) type AgentHosts = AgentPool;
pub(crate) use plus_rollout::agent::ServeTasks;

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

/// The application the agents release: `manifest`'s, its commands as argument vectors, and
/// `artifact` as its package.
pub(crate) fn agent_app(manifest: &Manifest, artifact: PathBuf) -> Result<AgentApp, String> {
    let app = manifest.app.clone().ok_or("the agents' manifest has no `app` code")?;
    let deploy = manifest.autodeploy.as_ref().ok_or("the agents' manifest has no autodeploy")?;
    let commands = Commands {
        run: command_argv(&deploy.run),
        check: deploy.check.as_deref().map(command_argv).unwrap_or_default(),
        check_retry: deploy.check_retry.unwrap_or(0),
        check_interval_ms: deploy
            .check_interval
            .map_or(1_000, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    };
    AgentApp::new(app, commands, artifact)
}

/// How the platform watches `agents` agents on this machine: a few beat every 200 ms and are
/// lost after 1 s of silence, each step within 5 s (a killed agent is noticed at once). Many
/// (an environment's, one per application) share two cores with their programs and the
/// platform: they beat every second, are lost after 5 s, and a step may take 30 s, so a busy
/// machine does not read as dead agents.
pub(crate) fn pool_config(agents: usize) -> PoolConfig {
    let mut config = PoolConfig::default();
    if agents <= 8 {
        config.heartbeat = Duration::from_millis(200);
        config.dead_after = Duration::from_secs(1);
        config.step_deadline = Duration::from_secs(5);
    } else {
        config.heartbeat = Duration::from_secs(1);
        config.dead_after = Duration::from_secs(5);
        config.step_deadline = Duration::from_secs(30);
    }
    config
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
    /// `root/HOST.log`, beating every `heartbeat`, connecting to the platform at `platform`
    /// with `credentials` (the arguments that give the agent its TLS files or its key).
    pub(crate) fn start(
        program: &Path,
        platform: &str,
        heartbeat: Duration,
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
                .arg(heartbeat.as_millis().to_string())
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
