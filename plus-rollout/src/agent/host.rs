//! The steps on the agent's host, for real: files under its root directory, processes started
//! without a shell, every one bounded by the step's deadline and cancelled with it.
//!
//! ```text
//! ROOT/downloads/VERSION/artifact   fetched and verified
//! ROOT/versions/VERSION/artifact    installed (the last --keep versions stay)
//! ROOT/versions/VERSION/PATH        its configuration files, written at every Install
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

use super::protocol::{Artifact, Commands, ConfigFile, Fetch, StepReply};

/// Bytes asked of the platform at a time (well under plus-mux's body limit).
const FETCH_CHUNK: u32 = 1 << 20;
/// The largest artifact fetched from the platform.
const MAX_FETCHED: u64 = 1 << 30;
/// Downloads at once: each holds a connection's bandwidth and a file's worth of disk, and
/// the rest wait their turn.
const MAX_DOWNLOADS: usize = 2;

/// Most configuration files one Install writes, and most bytes all of them hold together.
const MAX_CONFIG_FILES: usize = 256;
const MAX_CONFIG_BYTES: usize = 4 << 20;

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

    /// Install: makes `version` current (a version still installed is only switched to), with
    /// `files` written beside its artifact first.
    pub async fn install(&self, version: &str, files: &[ConfigFile]) -> StepReply {
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
        if let Err(e) = write_config(&installed, files).await {
            return failed(format!("cannot write the configuration of {version}: {e}"));
        }
        if let Err(e) = self.point_current_at(version) {
            return failed(format!("cannot switch current to {version}: {e}"));
        }
        self.forget_old_versions(version);
        let configured = match files.len() {
            0 => String::new(),
            n => format!(", {n} configuration files"),
        };
        done(format!("{how}: current -> versions/{version}{configured}"))
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

/// Whether `path` names a file inside a version's directory: plain names joined by `/`, none
/// of them `.` or `..`, and not the artifact itself.
fn config_path(path: &str) -> Result<&Path, String> {
    let fine = !path.is_empty()
        && path.len() <= 255
        && path != "artifact"
        && path.split('/').all(|part| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part.chars().all(|c| c.is_ascii_alphanumeric() || "._-+@".contains(c))
        });
    if fine {
        Ok(Path::new(path))
    } else {
        Err(format!("`{path}` is not a configuration file path"))
    }
}

/// Writes `files` under `dir`, each through a temporary file renamed into place (a program
/// never reads half a file), secret ones readable by their owner only from their creation.
async fn write_config(dir: &Path, files: &[ConfigFile]) -> Result<(), String> {
    let bytes: usize = files.iter().map(|f| f.contents.len()).sum();
    if files.len() > MAX_CONFIG_FILES || bytes > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} files of {bytes} bytes in all; at most {MAX_CONFIG_FILES} files and {MAX_CONFIG_BYTES} bytes",
            files.len()
        ));
    }
    let checked: Vec<&Path> =
        files.iter().map(|f| config_path(&f.path)).collect::<Result<_, _>>()?;
    for (file, relative) in files.iter().zip(checked) {
        let target = dir.join(relative);
        let written = async {
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            let partial = target.with_extension("plus-partial");
            let _ = tokio::fs::remove_file(&partial).await;
            let mut options = tokio::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            options.mode(if file.secret { 0o600 } else { 0o644 });
            let mut out = options.open(&partial).await?;
            tokio::io::AsyncWriteExt::write_all(&mut out, file.contents.as_bytes()).await?;
            out.sync_all().await?;
            tokio::fs::rename(&partial, &target).await
        };
        written.await.map_err(|e| format!("{}: {e}", target.display()))?;
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str, secret: bool) -> ConfigFile {
        ConfigFile { path: path.into(), contents: contents.into(), secret }
    }

    #[test]
    fn a_configuration_path_stays_inside_the_version() {
        for fine in
            ["app.properties", "config/user-service/application.properties", "a/b-c_d.e+f@g"]
        {
            assert!(config_path(fine).is_ok(), "{fine}");
        }
        for refused in
            ["", "/etc/passwd", "../x", "config/../../x", "a//b", "./a", "artifact", "a b", "a\\b"]
        {
            assert!(config_path(refused).is_err(), "{refused:?} accepted");
        }
    }

    #[tokio::test]
    async fn install_writes_the_files_beside_the_artifact_secret_ones_private_and_refuses_escapes()
    {
        let root = std::env::temp_dir().join(format!("plus-host-config-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let host = Host::new(root.clone(), 2, None).expect("host");
        std::fs::create_dir_all(root.join("downloads/1.0")).expect("downloads");
        std::fs::write(root.join("downloads/1.0/artifact"), b"#!/bin/sh\n").expect("artifact");
        let files = [
            file("config/app.properties", "db.password=hunter2\n", true),
            file("config/plain.env", "LOG=debug\n", false),
        ];
        let reply = host.install("1.0", &files).await;
        assert!(reply.ok, "{reply:?}");
        assert!(reply.detail.contains("2 configuration files"), "{}", reply.detail);
        let written = root.join("current/config/app.properties");
        assert_eq!(std::fs::read_to_string(&written).expect("written"), "db.password=hunter2\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).expect("meta").permissions().mode() & 0o777;
            assert_eq!(mode(&written), 0o600);
            assert_eq!(mode(&root.join("current/config/plain.env")), 0o644);
        }
        // A second Install of the kept version rewrites the files (a new rendering).
        let again = host.install("1.0", &[file("config/plain.env", "LOG=info\n", false)]).await;
        assert!(again.ok, "{again:?}");
        let plain = std::fs::read_to_string(root.join("current/config/plain.env")).expect("plain");
        assert_eq!(plain, "LOG=info\n");
        // A path out of the version's directory fails the step, and current is not moved.
        let escape = host.install("1.0", &[file("../../escaped", "x", false)]).await;
        assert!(
            !escape.ok && escape.detail.contains("not a configuration file path"),
            "{escape:?}"
        );
        assert!(
            !root.join("escaped").exists() && !root.parent().expect("tmp").join("escaped").exists()
        );
        let too_many: Vec<ConfigFile> =
            (0..=MAX_CONFIG_FILES).map(|i| file(&format!("f{i}"), "", false)).collect();
        assert!(!host.install("1.0", &too_many).await.ok);
        let _ = std::fs::remove_dir_all(&root);
    }
}
