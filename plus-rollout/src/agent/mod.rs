//! The agent that runs a release's steps on a host for the platform, the platform's side of
//! them ([`AgentPool`]: registration, liveness, the steps as a [`StepExecutor`](crate::StepExecutor)), and the protocol
//! they speak over a plus-mux connection (feature `agent`).
//!
//! In plus-rollout because an agent is what executes plus-rollout's steps on a real host:
//! Precheck, Markdown, Download (from a path, or sent by the platform over the agent's own
//! connection, SHA-256 verified while written), Install (into a versioned directory; the last
//! versions stay, so a rollback to one only moves the `current` link), Verify (the manifest's
//! `run`, then its `check` with retries), Markup. Every step is bounded by its deadline and
//! cancelled with it; every process is started from the argument vector the request carries,
//! without a shell. The protocol is versioned ([`protocol::PROTOCOL_VERSION`]): each side
//! refuses the other with a clear error when it speaks another version.
//!
//! ```text
//! ROOT/downloads/VERSION/artifact   fetched and verified
//! ROOT/versions/VERSION/artifact    installed (the last `keep` versions stay)
//! ROOT/current -> versions/VERSION  what runs
//! ROOT/out-of-traffic               present while the host is marked down (without a hook)
//! ```

mod host;
mod pool;
pub mod protocol;
mod runtime;

pub use host::Host;
pub use pool::{AgentApp, AgentPool, PoolConfig, ServeTasks, command_argv};
pub use runtime::{Agent, AgentConfig, AgentError};
