//! The agent's side of the connection: it answers the platform's steps on its host and sends
//! heartbeats, the first of which registers it.

use std::future::Future;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use plus_mux::{Bytes, Handler, HandlerError, ReconnectingClient, async_trait};

use super::host::Host;
use super::protocol::{
    Beat, BeatReply, PROTOCOL_VERSION, Step, StepReply, StepRequest, check_version,
};

/// An agent's settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The agent's (and its host's) name, as the platform knows it.
    pub id: String,
    /// The host's directory for downloads, versions and the `current` link.
    pub root: PathBuf,
    /// Versions kept installed (at least one).
    pub keep: usize,
    /// A program run as `HOOK markdown` and `HOOK markup` (default: a flag file in the root).
    pub hook: Option<PathBuf>,
    /// Between two heartbeats; plus-mux heartbeats run at the same pace both ways beneath.
    pub heartbeat: Duration,
    /// The longest a step may run, whatever deadline the platform gives it.
    pub step_timeout: Duration,
}

/// Why an agent stopped with an error.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AgentError {
    /// Its host directory could not be prepared.
    #[error("cannot prepare {}: {reason}", root.display())]
    Host {
        /// The directory.
        root: PathBuf,
        /// Why.
        reason: String,
    },
    /// The platform speaks another version of the protocol.
    #[error("{0}")]
    Protocol(String),
}

/// An agent: its host and its answers to the platform's steps.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    steps: Arc<Steps>,
}

/// Answers the platform's step requests.
#[derive(Debug)]
struct Steps {
    host: Arc<Host>,
    running: AtomicUsize,
    timeout: Duration,
    /// The connection to the platform, for artifacts it sends (set once it exists: this is
    /// its handler).
    platform: OnceLock<ReconnectingClient>,
}

impl Agent {
    /// An agent on the host directory `config.root` (created if missing).
    ///
    /// # Errors
    /// [`AgentError::Host`] when the directory cannot be prepared.
    pub fn new(config: AgentConfig) -> Result<Self, AgentError> {
        let host = Host::new(config.root.clone(), config.keep, config.hook.clone())
            .map_err(|e| AgentError::Host { root: config.root.clone(), reason: e.to_string() })?;
        let steps = Arc::new(Steps {
            host: Arc::new(host),
            running: AtomicUsize::new(0),
            timeout: config.step_timeout,
            platform: OnceLock::new(),
        });
        Ok(Self { config, steps })
    }

    /// The handler of the platform's requests: give it to the connection to the platform.
    #[must_use]
    pub fn handler(&self) -> Arc<dyn Handler> {
        Arc::clone(&self.steps) as Arc<dyn Handler>
    }

    /// plus-mux settings for the connection to the platform: heartbeats at the agent's pace
    /// both ways, so a dead or stuck peer is found within two intervals.
    #[must_use]
    pub fn mux_config(&self) -> plus_mux::Config {
        plus_mux::Config { heartbeat: Some(self.config.heartbeat), ..plus_mux::Config::default() }
    }

    /// Runs over `platform` (a connection made with [`Agent::handler`]) until `stop`
    /// resolves: a heartbeat every interval, steps answered as they come. Then closes the
    /// connection and stops what the host runs.
    ///
    /// # Errors
    /// [`AgentError::Protocol`] when the platform speaks another protocol version.
    pub async fn run(
        &self,
        platform: ReconnectingClient,
        stop: impl Future<Output = ()>,
    ) -> Result<(), AgentError> {
        let _ = self.steps.platform.set(platform.clone());
        let outcome = tokio::select! {
            refused = self.beat(&platform) => Err(refused),
            () = stop => Ok(()),
        };
        platform.close();
        self.steps.host.stop().await;
        outcome
    }

    /// Beats until the platform turns out to speak another version.
    async fn beat(&self, platform: &ReconnectingClient) -> AgentError {
        loop {
            let beat = Beat {
                protocol: PROTOCOL_VERSION,
                agent: self.config.id.clone(),
                load: self.steps.running.load(Ordering::SeqCst) as f64,
                versions: self.steps.host.versions(),
            };
            let body = serde_json::to_vec(&beat).unwrap_or_default();
            match platform.request(body).await {
                Ok(reply) => {
                    let reply: BeatReply =
                        serde_json::from_slice(&reply).unwrap_or(BeatReply { protocol: 0 });
                    if let Err(refused) = check_version(reply.protocol, "the platform") {
                        tracing::error!("{refused}");
                        return AgentError::Protocol(refused);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "heartbeat not delivered"),
            }
            tokio::time::sleep(self.config.heartbeat).await;
        }
    }
}

#[async_trait]
impl Handler for Steps {
    async fn handle(&self, request: Bytes) -> Result<Bytes, HandlerError> {
        let Step { request: step, deadline_ms } = serde_json::from_slice(&request)
            .map_err(|e| HandlerError::new(format!("not a step request: {e}")))?;
        tracing::info!(?step, "step requested");
        self.running.fetch_add(1, Ordering::SeqCst);
        let host = &self.host;
        let work = async {
            match &step {
                StepRequest::Precheck { version, commands } => {
                    host.precheck(version, commands).await
                }
                StepRequest::Markdown => host.traffic(true).await,
                StepRequest::Download { version, artifact } => {
                    host.download(version, artifact, self.platform.get()).await
                }
                StepRequest::Install { version, files } => host.install(version, files).await,
                StepRequest::Verify { version, commands } => host.verify(version, commands).await,
                StepRequest::Markup => host.traffic(false).await,
            }
        };
        // Dropping the step at its deadline kills its processes (they are killed on drop).
        let timeout =
            deadline_ms.map_or(self.timeout, |ms| Duration::from_millis(ms).min(self.timeout));
        let reply = tokio::time::timeout(timeout, work).await.unwrap_or_else(|_| StepReply {
            ok: false,
            detail: format!("timed out after {timeout:?}"),
            ..StepReply::default()
        });
        self.running.fetch_sub(1, Ordering::SeqCst);
        tracing::info!(ok = reply.ok, detail = %reply.detail, "step finished");
        serde_json::to_vec(&reply).map(Bytes::from).map_err(|e| HandlerError::new(e.to_string()))
    }
}
