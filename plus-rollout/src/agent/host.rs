//! The steps on the agent's host, for real: files under its root directory, processes started
//! without a shell, every one bounded by the step's deadline and cancelled with it.
//!
//! ```text
//! ROOT/downloads/VERSION/artifact   fetched and verified
//! ROOT/versions/VERSION/artifact    installed (the last --keep versions stay)
//! ROOT/current -> versions/VERSION  what runs; a rollback to a kept version only moves it
//! ROOT/out-of-traffic               present while the host is marked down (without --hook)
//! ```

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;
use tokio::process::{Child, Command};
use tokio::sync::Mutex;

use super::protocol::{Artifact, Commands, Fetch, StepReply};

/// Bytes asked of the platform at a time (well under plus-mux's body limit).
const FETCH_CHUNK: u32 = 1 << 20;
/// The largest artifact fetched from the platform.
const MAX_FETCHED: u64 = 1 << 30;
/// Downloads at once: each holds a connection's bandwidth and a file's worth of disk, and
/// the rest wait their turn.
const MAX_DOWNLOADS: usize = 2;

/// Bytes of a process's stdout and stderr kept for the reply.
const KEPT_OUTPUT: usize = 16 * 1024;

/// Reads `from` to its end, keeping only its last [`KEPT_OUTPUT`] bytes.
async fn tail(from: &mut (impl tokio::io::AsyncRead + Unpin)) -> std::io::Result<String> {
    let mut kept = Vec::with_capacity(KEPT_OUTPUT);
    let mut chunk = [0u8; 8192];
    loop {
        let n = from.read(&mut chunk).await?;
        if n == 0 {
            return Ok(String::from_utf8_lossy(&kept).into_owned());
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > KEPT_OUTPUT {
            kept.drain(..kept.len() - KEPT_OUTPUT);
        }
    }
}

/// The agent's host: its directory of downloads and versions, and the program it runs.
#[derive(Debug)]
pub struct Host {
    root: PathBuf,
    keep: usize,
    hook: Option<PathBuf>,
    /// The program `run` started, stopped before the next one starts and when the agent ends.
    running: Mutex<Option<Child>>,
    /// Permits for [`MAX_DOWNLOADS`] downloads at once.
    downloads: tokio::sync::Semaphore,
    /// Numbers each download's partial file, so two of one version never share one.
    partials: std::sync::atomic::AtomicU64,
}

fn failed(detail: impl Into<String>) -> StepReply {
    StepReply { ok: false, detail: detail.into(), ..StepReply::default() }
}

fn done(detail: impl Into<String>) -> StepReply {
    StepReply { ok: true, detail: detail.into(), ..StepReply::default() }
}

/// A version is a directory name: no separators, no `..`.
fn checked(version: &str) -> Result<&str, StepReply> {
    let fine = !version.is_empty()
        && version != "."
        && version != ".."
        && version.chars().all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c));
    if fine { Ok(version) } else { Err(failed(format!("`{version}` is not a version name"))) }
}

impl Host {
    /// The host whose directory is `root` (created with its `downloads` and `versions`), keeping
    /// the last `keep` versions installed, marking traffic with `hook` (or a flag file).
    ///
    /// # Errors
    /// When the directories cannot be created.
    pub fn new(root: PathBuf, keep: usize, hook: Option<PathBuf>) -> std::io::Result<Self> {
        std::fs::create_dir_all(root.join("downloads"))?;
        std::fs::create_dir_all(root.join("versions"))?;
        Ok(Self {
            root,
            keep: keep.max(1),
            hook,
            running: Mutex::new(None),
            downloads: tokio::sync::Semaphore::new(MAX_DOWNLOADS),
            partials: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// Installed versions, oldest first.
    pub fn versions(&self) -> Vec<String> {
        let mut found: Vec<(std::time::SystemTime, String)> =
            std::fs::read_dir(self.root.join("versions"))
                .into_iter()
                .flatten()
                .filter_map(Result::ok)
                .filter_map(|e| {
                    let modified = e.metadata().and_then(|m| m.modified()).ok()?;
                    Some((modified, e.file_name().to_string_lossy().into_owned()))
                })
                .collect();
        found.sort();
        found.into_iter().map(|(_, v)| v).collect()
    }

    fn current(&self) -> Option<String> {
        let target = std::fs::read_link(self.root.join("current")).ok()?;
        target.file_name().map(|n| n.to_string_lossy().into_owned())
    }

    /// Precheck: whether `version` is current and its check passes (`already`).
    pub async fn precheck(&self, version: &str, commands: &Commands) -> StepReply {
        let version = match checked(version) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        if self.current().as_deref() != Some(version) || commands.check.is_empty() {
            return done("not on the target version");
        }
        let check = self.run_to_end(&commands.check, version).await;
        StepReply { ok: true, already: check.ok, detail: "on the target version".into(), ..check }
    }

    /// Download: fetches the artifact of `version` (from a path here, or from the platform
    /// over `platform`), hashing as it writes; skipped for a version still installed.
    pub async fn download(
        &self,
        version: &str,
        artifact: &Artifact,
        platform: Option<&plus_mux::ReconnectingClient>,
    ) -> StepReply {
        let version = match checked(version) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        if self.root.join("versions").join(version).join("artifact").exists() {
            return done(format!("{version} is still installed: nothing to fetch"));
        }
        let Ok(_permit) = self.downloads.acquire().await else {
            return failed("the agent is stopping");
        };
        let dir = self.root.join("downloads").join(version);
        let target = dir.join("artifact");
        if let Err(e) = tokio::fs::create_dir_all(&dir).await {
            return failed(format!("cannot create {}: {e}", dir.display()));
        }
        let number = self.partials.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Removed however the download ends: an error, a wrong sum, or the step dropped at
        // its deadline. Only a verified file is renamed out of its way.
        let partial = Partial(dir.join(format!("artifact.partial.{number}")));
        let copied = async {
            let mut file = tokio::fs::File::create(&partial.0).await?;
            let sum = if artifact.from_platform {
                let platform =
                    platform.ok_or_else(|| std::io::Error::other("no platform connection"))?;
                fetch(platform, &artifact.path, &mut file).await?
            } else {
                copy(&artifact.path, &mut file).await?
            };
            file.sync_all().await?;
            Ok::<_, std::io::Error>(sum)
        };
        match copied.await {
            Err(e) => failed(format!("cannot fetch {}: {e}", artifact.path)),
            Ok(sum) if sum != artifact.sha256.to_ascii_lowercase() => {
                failed(format!("{} has SHA-256 {sum}, expected {}", artifact.path, artifact.sha256))
            }
            Ok(_) => match tokio::fs::rename(&partial.0, &target).await {
                Ok(()) => done(format!("fetched {} (SHA-256 verified)", artifact.path)),
                Err(e) => failed(format!("cannot keep {}: {e}", target.display())),
            },
        }
    }

    /// Install: makes `version` current (a version still installed is only switched to).
    pub async fn install(&self, version: &str) -> StepReply {
        let version = match checked(version) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        let installed = self.root.join("versions").join(version);
        let how = if installed.join("artifact").exists() {
            "switched to the kept version"
        } else {
            let fetched = self.root.join("downloads").join(version).join("artifact");
            let unpacked = async {
                let partial = self.root.join("versions").join(format!(".{version}.partial"));
                let _ = tokio::fs::remove_dir_all(&partial).await;
                tokio::fs::create_dir_all(&partial).await?;
                tokio::fs::copy(&fetched, partial.join("artifact")).await?;
                #[cfg(unix)]
                {
                    use std::os::unix::fs::PermissionsExt;
                    let mode = std::fs::Permissions::from_mode(0o755);
                    tokio::fs::set_permissions(partial.join("artifact"), mode).await?;
                }
                tokio::fs::rename(&partial, &installed).await
            };
            if let Err(e) = unpacked.await {
                return failed(format!("cannot install {version} from {}: {e}", fetched.display()));
            }
            "installed"
        };
        if let Err(e) = self.point_current_at(version) {
            return failed(format!("cannot switch current to {version}: {e}"));
        }
        self.forget_old_versions(version);
        done(format!("{how}: current -> versions/{version}"))
    }

    /// Moves `current` in one rename, so it always names a whole version.
    fn point_current_at(&self, version: &str) -> std::io::Result<()> {
        let link = self.root.join("current.new");
        let _ = std::fs::remove_file(&link);
        #[cfg(unix)]
        std::os::unix::fs::symlink(Path::new("versions").join(version), &link)?;
        std::fs::rename(&link, self.root.join("current"))
    }

    fn forget_old_versions(&self, current: &str) {
        let versions = self.versions();
        let extra = versions.len().saturating_sub(self.keep);
        for old in versions.iter().filter(|v| *v != current).take(extra) {
            tracing::info!(version = %old, "removing an old version");
            let _ = std::fs::remove_dir_all(self.root.join("versions").join(old));
            let _ = std::fs::remove_dir_all(self.root.join("downloads").join(old));
        }
    }

    /// Verify: starts `version` with `commands.run` (stopping what ran before) and checks it,
    /// with retries.
    pub async fn verify(&self, version: &str, commands: &Commands) -> StepReply {
        let version = match checked(version) {
            Ok(v) => v,
            Err(reply) => return reply,
        };
        if !commands.run.is_empty() {
            let mut running = self.running.lock().await;
            if let Some(mut old) = running.take() {
                let _ = old.kill().await;
            }
            match self
                .command(&commands.run, version)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
            {
                Ok(child) => *running = Some(child),
                Err(e) => return failed(format!("cannot start {:?}: {e}", commands.run)),
            }
        }
        let mut last = done("no check");
        for attempt in 0..=commands.check_retry {
            if commands.check.is_empty() {
                break;
            }
            if attempt > 0 {
                tokio::time::sleep(Duration::from_millis(commands.check_interval_ms)).await;
            }
            last = self.run_to_end(&commands.check, version).await;
            if last.ok {
                last.detail = format!("check passed on attempt {}", attempt + 1);
                break;
            }
        }
        last
    }

    /// Marks the host out of (`down`) or back into traffic, through the hook or the flag file.
    pub async fn traffic(&self, down: bool) -> StepReply {
        let word = if down { "markdown" } else { "markup" };
        if let Some(hook) = &self.hook {
            let argv = vec![hook.to_string_lossy().into_owned(), word.to_owned()];
            return self.run_to_end(&argv, "").await;
        }
        let flag = self.root.join("out-of-traffic");
        let result = if down {
            std::fs::write(&flag, b"")
        } else {
            std::fs::remove_file(&flag)
                .or_else(|e| if e.kind() == std::io::ErrorKind::NotFound { Ok(()) } else { Err(e) })
        };
        match result {
            Ok(()) => done(format!("{word}: {}", flag.display())),
            Err(e) => failed(format!("{word}: {e}")),
        }
    }

    /// A process for `argv`, run in the current version's directory, without a shell; killed
    /// when dropped (so a cancelled step leaves nothing running).
    fn command(&self, argv: &[String], version: &str) -> Command {
        let dir = if version.is_empty() {
            self.root.clone()
        } else {
            self.root.join("versions").join(version)
        };
        let mut command = Command::new(&argv[0]);
        command
            .args(&argv[1..])
            .current_dir(&dir)
            .env("PLUS_VERSION", version)
            .env("PLUS_ROOT", &self.root)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        tracing::info!(argv = ?argv, dir = %dir.display(), env = "PLUS_VERSION PLUS_ROOT", "starting a process");
        command
    }

    /// Runs `argv` to its end, keeping the end of its output.
    async fn run_to_end(&self, argv: &[String], version: &str) -> StepReply {
        if argv.is_empty() {
            return done("nothing to run");
        }
        let mut child =
            match self.command(argv, version).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()
            {
                Ok(child) => child,
                Err(e) => return failed(format!("cannot start {argv:?}: {e}")),
            };
        let (Some(mut out), Some(mut err)) = (child.stdout.take(), child.stderr.take()) else {
            return failed("no pipes to the process");
        };
        let (read_out, read_err, status) =
            tokio::join!(tail(&mut out), tail(&mut err), child.wait());
        let (stdout, stderr) = (read_out.unwrap_or_default(), read_err.unwrap_or_default());
        match status {
            Ok(status) if status.success() => StepReply {
                ok: true,
                detail: format!("{argv:?} exited 0"),
                stdout,
                stderr,
                already: false,
            },
            Ok(status) => StepReply {
                ok: false,
                detail: format!("{argv:?} {status}"),
                stdout,
                stderr,
                already: false,
            },
            Err(e) => failed(format!("{argv:?}: {e}")),
        }
    }

    /// Stops the program `run` started.
    pub async fn stop(&self) {
        if let Some(mut child) = self.running.lock().await.take() {
            let _ = child.kill().await;
        }
    }
}

/// Fetches the platform's file `path` into `to`, a chunk at a time over the agent's own
/// connection; cancelled with the step (a dropped request is answered to no one).
/// A download's file until it is verified: removed when dropped (after a rename it is gone
/// already, and the removal fails quietly).
struct Partial(PathBuf);

impl Drop for Partial {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Fetches `path` from the platform into `to` in chunks, hashing as it writes; the SHA-256.
async fn fetch(
    platform: &plus_mux::ReconnectingClient,
    path: &str,
    to: &mut tokio::fs::File,
) -> std::io::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut hash = Sha256::new();
    let mut offset = 0u64;
    loop {
        let ask = Fetch { fetch: path.to_owned(), offset, len: FETCH_CHUNK };
        let body = serde_json::to_vec(&ask).map_err(std::io::Error::other)?;
        let chunk = platform.request(body).await.map_err(std::io::Error::other)?;
        offset += chunk.len() as u64;
        if offset > MAX_FETCHED {
            return Err(std::io::Error::other(format!(
                "{path} is larger than {MAX_FETCHED} bytes"
            )));
        }
        hash.update(&chunk);
        to.write_all(&chunk).await?;
        if chunk.len() < FETCH_CHUNK as usize {
            break;
        }
    }
    Ok(format!("{:x}", hash.finalize()))
}

/// Copies the file at `from` into `to`, hashing as it writes; the SHA-256. Memory stays at one
/// buffer whatever the file's size.
async fn copy(from: &str, to: &mut tokio::fs::File) -> std::io::Result<String> {
    use tokio::io::AsyncWriteExt;
    let mut source = tokio::fs::File::open(from).await?;
    let mut hash = Sha256::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut copied = 0u64;
    loop {
        let n = source.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        copied += n as u64;
        if copied > MAX_FETCHED {
            return Err(std::io::Error::other(format!(
                "{from} is larger than {MAX_FETCHED} bytes"
            )));
        }
        hash.update(&buffer[..n]);
        to.write_all(&buffer[..n]).await?;
    }
    Ok(format!("{:x}", hash.finalize()))
}
