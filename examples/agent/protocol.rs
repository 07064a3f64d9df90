//! What the platform and an agent say to each other over their plus-mux connection, as JSON.
//!
//! The agent sends [`Beat`]s (the first one registers it); the platform sends [`StepRequest`]s
//! and gets a [`StepReply`] for each. A step names what to run only through the release's
//! manifest fields it carries and the agent's own configuration: never free text to a shell.

use serde::{Deserialize, Serialize};

/// The agent's heartbeat; the platform registers an agent it has not heard from before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Beat {
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
pub(crate) struct Artifact {
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
pub(crate) struct Fetch {
    /// The artifact's path on the platform.
    pub fetch: String,
    /// Where the chunk starts.
    pub offset: u64,
    /// Most bytes wanted.
    pub len: u32,
}

/// The manifest's `autodeploy` commands for Verify: argument vectors, run without a shell.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub(crate) struct Commands {
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
pub(crate) enum StepRequest {
    /// Is the version already current and its check passing?
    Precheck { version: String, commands: Commands },
    /// Take the host out of traffic.
    Markdown,
    /// Fetch the artifact into the host's directory, verifying its SHA-256 (skipped for a
    /// version still installed).
    Download { version: String, artifact: Artifact },
    /// Install the version and make it current (a version still installed is only switched to).
    Install { version: String },
    /// Start it and check it.
    Verify { version: String, commands: Commands },
    /// Put the host back into traffic.
    Markup,
}

/// A step as the platform sends it: what to do, and by when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Step {
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
pub(crate) struct StepReply {
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
