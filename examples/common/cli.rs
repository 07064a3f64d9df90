//! What every example's `main` does the same way: logging that honours `RUST_LOG`, and async
//! work on a tokio runtime. Arguments are parsed by each example with clap (help on `-h`,
//! usage errors exit 2).

#![allow(dead_code)] // each example uses the part it needs

use std::future::Future;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

/// Sends the libraries' `tracing` events to stderr, filtered by `RUST_LOG` (warnings and errors
/// when it is not set). Returns whether `RUST_LOG` asked for more, so an example can turn off
/// what would interleave with the log (progress bars).
pub(crate) fn init_logging() -> bool {
    let asked = std::env::var_os(EnvFilter::DEFAULT_ENV).is_some();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    asked
}

/// Runs `work` on a multi-threaded tokio runtime: success when it returns `Ok(true)`, failure
/// for `Ok(false)`, and an error message plus failure for `Err`.
pub(crate) fn run_async(work: impl Future<Output = Result<bool, String>>) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(err) => {
            eprintln!("error: cannot start the tokio runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(work) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(msg) => {
            eprintln!("error: {msg}");
            ExitCode::FAILURE
        }
    }
}

/// A probability from the command line: a number from 0 to 1.
pub(crate) fn probability(text: &str) -> Result<f64, String> {
    let p: f64 = text.trim().parse().map_err(|_| format!("`{text}` is not a number"))?;
    if (0.0..=1.0).contains(&p) { Ok(p) } else { Err(format!("{p} is not between 0 and 1")) }
}

/// Ends the program as clap ends it on a usage error (the message, the usage line, exit 2), for
/// what only the arguments together can break.
pub(crate) fn usage_error<P: clap::CommandFactory>(message: impl std::fmt::Display) -> ! {
    P::command().error(clap::error::ErrorKind::ValueValidation, message).exit()
}

/// A member list from the command line, `ID=HOST:PORT,...`: ids and addresses, in order.
pub(crate) fn members(text: &str) -> Result<Vec<(u64, String)>, String> {
    let mut members: Vec<(u64, String)> = Vec::new();
    for part in text.split(',').filter(|p| !p.trim().is_empty()) {
        let (id, addr) =
            part.split_once('=').ok_or_else(|| format!("`{part}` is not ID=HOST:PORT"))?;
        let id: u64 = id.trim().parse().map_err(|_| format!("`{id}` is not a node id"))?;
        let addr = addr.trim();
        addr.parse::<std::net::SocketAddr>().map_err(|e| format!("`{addr}`: {e}"))?;
        if members.iter().any(|(known, _)| *known == id) {
            return Err(format!("node {id} is listed twice"));
        }
        members.push((id, addr.to_owned()));
    }
    if members.is_empty() {
        return Err("no members".into());
    }
    Ok(members)
}

/// The latency at quantile `q` (0 to 1) of `sorted`, in microseconds (0 when empty).
pub(crate) fn quantile_us(sorted: &[std::time::Duration], q: f64) -> u128 {
    let at = ((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1));
    sorted.get(at).map_or(0, std::time::Duration::as_micros)
}

/// Mutual TLS for a mux endpoint or client: all three files, or none.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct TlsArgs {
    /// This program's certificate (PEM, leaf first), signed by the CA its peers trust.
    #[arg(long, requires_all = ["tls_key", "tls_ca"])]
    pub(crate) tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires_all = ["tls_cert", "tls_ca"])]
    pub(crate) tls_key: Option<std::path::PathBuf>,
    /// The CA certificate (PEM): only peers it signed are accepted.
    #[arg(long, requires_all = ["tls_cert", "tls_key"])]
    pub(crate) tls_ca: Option<std::path::PathBuf>,
}

impl TlsArgs {
    /// Whether TLS was asked for.
    pub(crate) fn enabled(&self) -> bool {
        self.tls_cert.is_some()
    }

    /// The identity the files hold, when TLS was asked for.
    pub(crate) fn load(&self) -> Result<Option<plus_mux::Tls>, String> {
        match (&self.tls_cert, &self.tls_key, &self.tls_ca) {
            (Some(cert), Some(key), Some(ca)) => {
                plus_mux::Tls::from_pem_files(cert, key, ca).map(Some).map_err(|e| e.to_string())
            }
            _ => Ok(None),
        }
    }
}

/// The example program `name` beside this one (same profile). No program builds another: a
/// missing one is an error saying how to build it.
///
/// # Errors
/// A message naming the missing binary and how to build it.
pub(crate) fn sibling_example(name: &str) -> Result<std::path::PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let path = exe
        .parent()
        .ok_or("this program has no directory")?
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if path.exists() {
        Ok(path)
    } else {
        let profile = if cfg!(debug_assertions) { "" } else { " --release" };
        Err(format!(
            "{} is missing: build it with `cargo build{profile} --example {name}`",
            path.display()
        ))
    }
}

/// How a client of the store proves itself: mutual TLS, a pre-shared key, or nothing (then
/// only to loopback endpoints, unless `--insecure`).
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct ClientAuthArgs {
    #[command(flatten)]
    pub(crate) tls: TlsArgs,
    /// Instead of certificates: a file holding the key the nodes accept for this client's
    /// role (their `--psk-dir` names it: client.key, admin.key or reader.key). Readable by its
    /// owner only; at least 16 bytes; a trailing newline is not part of it.
    #[arg(long, conflicts_with_all = ["tls_cert", "tls_key", "tls_ca"])]
    pub(crate) psk_file: Option<std::path::PathBuf>,
    /// Talk in plain text to endpoints beyond loopback: only on a network you trust.
    #[arg(long)]
    pub(crate) insecure: bool,
}

impl ClientAuthArgs {
    /// Whether the client proves itself (TLS or a key).
    pub(crate) fn authenticated(&self) -> bool {
        self.tls.enabled() || self.psk_file.is_some()
    }

    /// Refuses plain text to any of `addrs` beyond loopback, unless `--insecure`.
    pub(crate) fn check_plain_text<'a>(
        &self,
        addrs: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), String> {
        if self.authenticated() || self.insecure {
            return Ok(());
        }
        plain_text_only_to_loopback(addrs, "--tls-* or --psk-file")
    }
}

/// Errs on the first of `addrs` (`host:port`) that is not a loopback address (a host name
/// counts when every address it resolves to is): plain text must not leave the machine.
pub(crate) fn plain_text_only_to_loopback<'a>(
    addrs: impl IntoIterator<Item = &'a str>,
    credentials: &str,
) -> Result<(), String> {
    for addr in addrs {
        if !is_loopback(addr) {
            return Err(format!(
                "refusing to send plain text to {addr}, beyond this machine; pass {credentials}, \
                 or, on a network you trust, --insecure"
            ));
        }
    }
    Ok(())
}

/// Whether `addr` (`host:port`) names only this machine.
pub(crate) fn is_loopback(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    match addr.parse::<std::net::SocketAddr>() {
        Ok(socket) => socket.ip().is_loopback(),
        Err(_) => addr.to_socket_addrs().is_ok_and(|mut resolved| {
            let mut any = false;
            let all = resolved.all(|a| {
                any = true;
                a.ip().is_loopback()
            });
            any && all
        }),
    }
}

/// The pre-shared key in `path`, named `name`, without a trailing newline. A key file that
/// other users can read is refused: it would let them act as whoever holds the key.
pub(crate) fn read_psk(path: &std::path::Path, name: &str) -> Result<plus_mux::Psk, String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
            .permissions()
            .mode();
        if mode & 0o077 != 0 {
            return Err(format!(
                "{} is readable by other users (mode {:o}): `chmod 600` it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    let mut key =
        std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    while key.last().is_some_and(u8::is_ascii_whitespace) {
        key.pop();
    }
    plus_mux::Psk::named(name, key).map_err(|e| format!("{}: {e}", path.display()))
}
