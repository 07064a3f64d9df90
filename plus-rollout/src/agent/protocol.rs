//! What the platform and an agent say to each other over their plus-mux connection, as JSON.
//!
//! The agent sends [`Beat`]s (the first one registers it); the platform answers each with a
//! [`BeatReply`], and sends [`Step`]s, getting a [`StepReply`] for each. A step names what to
//! run only through the release's manifest fields it carries and the agent's own
//! configuration: never free text to a shell.
//!
//! Versioned: every beat carries the agent's [`PROTOCOL_VERSION`] and every beat reply the
//! platform's, and each side refuses the other with a clear error when it does not speak its
//! version ([`check_version`]), instead of misreading its messages.

use serde::{Deserialize, Serialize};

/// The version of this protocol. A peer speaking another is refused.
///
/// Version 2 added the configuration files of [`StepRequest::Install`]: an agent of version 1
/// would ignore them and start the program without its configuration, so it is refused instead.
pub const PROTOCOL_VERSION: u32 = 2;

/// Whether a peer that said it speaks `theirs` can be talked to.
///
/// # Errors
/// A message saying which versions each side speaks (an agent from before versioning sends
/// none, read as 0).
pub fn check_version(theirs: u32, peer: &str) -> Result<(), String> {
    if theirs == PROTOCOL_VERSION {
        Ok(())
    } else {
        Err(format!(
            "{peer} speaks agent protocol version {theirs}, this side speaks {PROTOCOL_VERSION}: upgrade the older side"
        ))
    }
}

/// The platform's answer to a beat: its protocol version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeatReply {
    /// The platform's [`PROTOCOL_VERSION`] (absent from a platform from before versioning).
    #[serde(default)]
    pub protocol: u32,
}

/// The agent's heartbeat; the platform registers an agent it has not heard from before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Beat {
    /// The agent's [`PROTOCOL_VERSION`] (absent from an agent from before versioning: 0).
    #[serde(default)]
    pub protocol: u32,
    /// The agent (and its host).
    pub agent: String,
    /// Its load now (running steps).
    pub load: f64,
    /// Versions installed, oldest first.
    pub versions: Vec<String>,
}

/// An artifact to fetch: a path, on this host (a shared directory) or, with `from_platform`,
/// on the platform, which sends it over the agent's own connection; and its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Artifact {
    /// Where to copy it from.
    pub path: String,
    /// Its SHA-256, lowercase hex.
    pub sha256: String,
    /// Ask the platform for it ([`Fetch`]) instead of reading `path` here.
    #[serde(default)]
    pub from_platform: bool,
}

/// The agent asks the platform for `len` bytes of the artifact at `fetch` from `offset`; the
/// answer is those bytes, raw (fewer at the end of the file, none past it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fetch {
    /// The artifact's path on the platform.
    pub fetch: String,
    /// Where the chunk starts.
    pub offset: u64,
    /// Most bytes wanted.
    pub len: u32,
}

/// The manifest's `autodeploy` commands for Verify: argument vectors, run without a shell.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Commands {
    /// Starts the program (it keeps running; the agent stops it before the next start).
    pub run: Vec<String>,
    /// Checks it; retried.
    pub check: Vec<String>,
    /// How many more times a failed check is tried.
    pub check_retry: u32,
    /// Between two checks, in milliseconds.
    pub check_interval_ms: u64,
}

/// One step of a release on the agent's host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepRequest {
    /// Is the version already current and its check passing?
    Precheck {
        /// The release's version (a directory name: no separators, no `..`).
        version: String,
        /// The manifest's commands.
        commands: Commands,
    },
    /// Take the host out of traffic.
    Markdown,
    /// Fetch the artifact into the host's directory, verifying its SHA-256 (skipped for a
    /// version still installed).
    Download {
        /// The release's version (a directory name: no separators, no `..`).
        version: String,
        /// Where to fetch it from, and its hash.
        artifact: Artifact,
    },
    /// Install the version and make it current (a version still installed is only switched
    /// to), writing its configuration files beside the artifact (every time: an environment's
    /// rendering may change while the version stays).
    Install {
        /// The release's version (a directory name: no separators, no `..`).
        version: String,
        /// Configuration files written into the version's directory.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        files: Vec<ConfigFile>,
    },
    /// Start it and check it.
    Verify {
        /// The release's version (a directory name: no separators, no `..`).
        version: String,
        /// The manifest's commands.
        commands: Commands,
    },
    /// Put the host back into traffic.
    Markup,
}

/// A configuration file the agent writes beside the artifact at Install. Its contents are
/// never shown: `Debug` prints their length only, since a rendered file may hold secrets.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigFile {
    /// Where, relative to the version's directory: plain names separated by `/`, no `..`, no
    /// leading `/` (the agent refuses anything else).
    pub path: String,
    /// The file's text.
    pub contents: String,
    /// Written readable by the agent's user only (mode 0600), as it holds a secret.
    #[serde(default)]
    pub secret: bool,
}

impl std::fmt::Debug for ConfigFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConfigFile")
            .field("path", &self.path)
            .field("contents", &format_args!("<{} bytes>", self.contents.len()))
            .field("secret", &self.secret)
            .finish()
    }
}

/// A step as the platform sends it: what to do, and by when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What to do.
    #[serde(flatten)]
    pub request: StepRequest,
    /// The step's deadline, in milliseconds from its arrival: past it the step is cancelled
    /// (its processes killed) and fails. Never longer than the agent's own `--step-timeout-s`;
    /// absent, that is the deadline.
    #[serde(default)]
    pub deadline_ms: Option<u64>,
}

/// How a step went, with what its processes printed (bounded).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct StepReply {
    /// Whether it succeeded.
    pub ok: bool,
    /// For Precheck: the host already runs the version, healthy.
    #[serde(default)]
    pub already: bool,
    /// Why it failed, or what it did.
    pub detail: String,
    /// The last bytes its processes wrote to stdout.
    #[serde(default)]
    pub stdout: String,
    /// The last bytes its processes wrote to stderr.
    #[serde(default)]
    pub stderr: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peer_of_another_version_is_refused_and_an_unversioned_one_reads_as_zero() {
        assert!(check_version(PROTOCOL_VERSION, "the platform").is_ok());
        let old: Beat = serde_json::from_str(r#"{"agent":"web-01","load":0.0,"versions":[]}"#)
            .expect("an agent from before versioning still parses");
        assert_eq!(old.protocol, 0);
        let refused = check_version(old.protocol, "agent web-01").unwrap_err();
        assert_eq!(
            refused,
            "agent web-01 speaks agent protocol version 0, this side speaks 2: upgrade the older side"
        );
        let reply: BeatReply = serde_json::from_str("{}").expect("an old platform's answer");
        assert!(check_version(reply.protocol, "the platform").is_err());
    }

    #[test]
    fn a_configuration_file_never_shows_its_contents() {
        let step = StepRequest::Install {
            version: "1.0".into(),
            files: vec![ConfigFile {
                path: "config/app.properties".into(),
                contents: "db.password=hunter2\n".into(),
                secret: true,
            }],
        };
        let shown = format!("{step:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("<20 bytes>"), "{shown}");
        let json = serde_json::to_string(&step).expect("encodes");
        let back: StepRequest = serde_json::from_str(&json).expect("decodes");
        assert_eq!(back, step);
        let bare: StepRequest =
            serde_json::from_str(r#"{"step":"install","version":"1.0"}"#).expect("no files");
        assert_eq!(bare, StepRequest::Install { version: "1.0".into(), files: Vec::new() });
    }
}
