//! A reference agent: runs a release's steps on its host for the platform, over plus-mux.
//!
//! ```text
//! agent --connect 127.0.0.1:7300 --id web-01 --root /srv/plus [--keep 3] [--hook /etc/plus/traffic]
//! ```
//!
//! It keeps one connection to the platform (reconnecting with backoff), sends a heartbeat every
//! `--heartbeat-ms` (the first registers it; plus-mux heartbeats run both ways beneath, so a
//! dead or stuck peer is found within two intervals), and answers step requests: Precheck,
//! Markdown, Download (copied from a path, or sent by the platform over the agent's own
//! connection in 1 MiB chunks; SHA-256 verified either way), Install (into a versioned
//! directory; the last `--keep` versions stay, and a rollback to one of them only moves the
//! `current` link), Verify (the manifest's `autodeploy.run`, then its `check` with retries),
//! Markup. Markdown and Markup run `--hook markdown|markup`, or set and clear a flag file.
//! Every step is bounded by its own deadline (never past `--step-timeout-s`) and cancelled
//! with it; every process is started from the argument vector the request carries, as it
//! is, logged with its arguments and environment, and its output's end is returned with the
//! step's reply. The agent never adds a shell. The platform sends a manifest command split on
//! white space, except a command that contains any of `| & ; < > ( ) $ \` \\ " ' * ? [ ] # ~
//! { }` or starts with `NAME=VALUE`, which it sends as `sh -c COMMAND` (a shell is what such
//! a command means).
//!
//! With `--tls-cert`, `--tls-key` and `--tls-ca` the agent and the platform authenticate each
//! other with mutual TLS: the agent takes work only from a platform whose certificate the CA
//! signed (and the platform, from agents likewise), and nothing is read from a peer that
//! fails. Hosts without certificates use `--psk-file`: both sides prove a shared key before
//! any request (authentication only: the traffic is not encrypted). Without either the agent
//! refuses to start, unless `--insecure` says that every user of the machine and of the
//! network between platform and agents is trusted: loopback is no proof of who listens (any
//! local user can bind the platform's port while it restarts). The commands it runs come
//! from the release's manifest in the request and its own configuration.

#[path = "common/cli.rs"]
mod cli;

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use plus_mux::{ReconnectConfig, ReconnectingClient, TcpConnector};
use plus_rollout::agent::{Agent, AgentConfig};

/// A reference agent: runs a release's steps on its host for the platform.
#[derive(Debug, Parser)]
#[command(name = "agent")]
struct Args {
    /// The platform's address.
    #[arg(long)]
    connect: String,
    /// This agent's (and host's) name.
    #[arg(long)]
    id: String,
    /// The host's directory for downloads, versions and the `current` link.
    #[arg(long)]
    root: PathBuf,
    /// Versions kept installed (1 to 100).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u8).range(1..=100))]
    keep: u8,
    /// A program run as `HOOK markdown` and `HOOK markup` (default: a flag file in the root).
    #[arg(long)]
    hook: Option<PathBuf>,
    /// Between two heartbeats, in milliseconds (10 to 600000).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u64).range(10..=600_000))]
    heartbeat_ms: u64,
    /// Take work from the platform without TLS or a key: only where every user of the machine
    /// and the network is trusted (loopback is no proof of who listens).
    #[arg(long)]
    insecure: bool,
    #[command(flatten)]
    tls: cli::TlsArgs,
    /// Instead of certificates: a file holding a key the platform shares (at least 16 bytes;
    /// a trailing newline is not part of it). Both sides prove it before any request; it
    /// authenticates, it does not encrypt.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
    psk_file: Option<PathBuf>,
    /// Stop when standard input closes: for a supervisor that starts the agent as its child
    /// and holds the other end of a pipe, so the agent never outlives it.
    #[arg(long)]
    exit_on_stdin_eof: bool,
    /// The longest a step may run, in seconds (1 to 86400).
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    step_timeout_s: u64,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let authenticated = args.tls.enabled() || args.psk_file.is_some();
    // Loopback included: any user of this machine can listen on the platform's port while it
    // restarts, and would then run commands as this agent's user.
    if !authenticated && !args.insecure {
        cli::usage_error::<Args>(format!(
            "refusing to take work from {} without proof of who it is; pass --tls-* or \
             --psk-file, or, where every user of the path is trusted, --insecure",
            args.connect
        ));
    }
    cli::init_logging();
    cli::run_async(run(args))
}

async fn run(args: Args) -> Result<bool, String> {
    let tls = args.tls.load()?;
    let psk = args.psk_file.as_deref().map(|path| cli::read_psk(path, "agent")).transpose()?;
    let agent = Agent::new(AgentConfig {
        id: args.id.clone(),
        root: args.root.clone(),
        keep: usize::from(args.keep),
        hook: args.hook.clone(),
        heartbeat: Duration::from_millis(args.heartbeat_ms),
        step_timeout: Duration::from_secs(args.step_timeout_s),
    })
    .map_err(|e| e.to_string())?;
    let (config, handler, reconnect) =
        (agent.mux_config(), agent.handler(), ReconnectConfig::default());
    let client = match (&tls, &psk) {
        (Some(tls), _) => {
            ReconnectingClient::new(tls.connector(&args.connect), config, reconnect, handler)
        }
        (None, Some(psk)) => {
            ReconnectingClient::new(psk.connector(&args.connect), config, reconnect, handler)
        }
        (None, None) => {
            ReconnectingClient::new(TcpConnector::new(&args.connect), config, reconnect, handler)
        }
    }
    .map_err(|e| e.to_string())?;
    let secured = match (&tls, &psk) {
        (Some(_), _) => " with mutual TLS",
        (None, Some(_)) => " with a pre-shared key",
        (None, None) => "",
    };
    println!("agent {} for {}{secured} in {}", args.id, args.connect, args.root.display());
    agent.run(client, stopped(args.exit_on_stdin_eof)).await.map_err(|e| e.to_string())?;
    println!("agent {} stopped", args.id);
    Ok(true)
}

/// Waits for SIGTERM or Ctrl-C, or, with `stdin_eof`, the end of standard input.
async fn stopped(stdin_eof: bool) {
    if stdin_eof {
        tokio::select! {
            () = signalled() => {}
            () = end_of_stdin() => tracing::info!("standard input closed: stopping"),
        }
    } else {
        signalled().await;
    }
}

/// Waits for standard input's end (or first error). A thread of its own, not the runtime's
/// blocking pool: a read still pending there would hold up the runtime's shutdown on SIGTERM.
async fn end_of_stdin() {
    let (ended, end) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        use std::io::Read;
        let mut buffer = [0u8; 256];
        while matches!(std::io::stdin().read(&mut buffer), Ok(n) if n > 0) {}
        let _ = ended.send(());
    });
    let _ = end.await;
}

/// Waits for SIGTERM or Ctrl-C.
async fn signalled() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
