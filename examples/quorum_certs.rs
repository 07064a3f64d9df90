//! Makes the credentials of a plus-quorum cluster: a CA and a certificate per node and per
//! client, each named by its role, and, for clusters without TLS, a pre-shared key per role.
//!
//! ```text
//! quorum_certs --out /etc/plus --nodes 1,2,3 --admin ops --client app --reader dashboard
//! quorum_certs --out /etc/plus/keys --psk
//! ```
//!
//! Certificates: `ca.pem` (every node and client trusts it; the CA's own key is not kept, so
//! one run makes one cluster's set), `node-N.pem`/`.key` named `plus-quorum://node/N`, and
//! `admin-NAME`, `client-NAME`, `reader-NAME` named `plus-quorum://admin/NAME` and so on;
//! all for 127.0.0.1 and localhost (a real deployment issues them from its own PKI, with its
//! hosts' names: any tool that writes a URI subject alternative name works). Keys: `node.key`,
//! `admin.key`, `client.key`, `reader.key` (32 random bytes, hex), for `quorum_node --psk-dir`
//! and each client's `--psk-file`. Every private key is written readable by its owner only.

#[path = "common/cli.rs"]
mod cli;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use plus_mux::certs::Ca;

/// Makes a plus-quorum cluster's CA and role certificates, or its pre-shared keys.
#[derive(Debug, Parser)]
#[command(name = "quorum_certs")]
struct Args {
    /// The directory to write to (created if missing; existing files are not overwritten).
    #[arg(long)]
    out: PathBuf,
    /// Node ids: one certificate each.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    nodes: Vec<u64>,
    /// Admin names: may also change membership.
    #[arg(long, value_delimiter = ',')]
    admin: Vec<String>,
    /// Client names: read and write.
    #[arg(long, value_delimiter = ',')]
    client: Vec<String>,
    /// Reader names: read and watch only.
    #[arg(long, value_delimiter = ',')]
    reader: Vec<String>,
    /// Write one pre-shared key per role instead of certificates.
    #[arg(long)]
    psk: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    for name in args.admin.iter().chain(&args.client).chain(&args.reader) {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            cli::usage_error::<Args>(format!("`{name}`: a name is letters, digits, - _ ."));
        }
    }
    match run(&args) {
        Ok(written) => {
            for path in written {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Result<Vec<PathBuf>, String> {
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("cannot create {}: {e}", args.out.display()))?;
    let mut written = Vec::new();
    if args.psk {
        for role in ["node", "admin", "client", "reader"] {
            let mut key = [0u8; 32];
            rand::RngCore::fill_bytes(&mut rand::rng(), &mut key);
            let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
            written.push(write(&args.out, &format!("{role}.key"), &hex, true)?);
        }
        return Ok(written);
    }
    let ca = Ca::new("plus-quorum CA").map_err(|e| e.to_string())?;
    written.push(write(&args.out, "ca.pem", ca.pem(), false)?);
    let mut leaves: Vec<(String, String)> =
        args.nodes.iter().map(|id| (format!("node-{id}"), plus_quorum::node_uri(*id))).collect();
    for (role, names) in
        [("admin", &args.admin), ("client", &args.client), ("reader", &args.reader)]
    {
        for name in names {
            leaves.push((format!("{role}-{name}"), format!("plus-quorum://{role}/{name}")));
        }
    }
    for (file, uri) in leaves {
        let leaf = ca.leaf(&file, &[&uri]).map_err(|e| e.to_string())?;
        written.push(write(&args.out, &format!("{file}.pem"), &leaf.cert, false)?);
        written.push(write(&args.out, &format!("{file}.key"), &leaf.key, true)?);
    }
    Ok(written)
}

/// Writes `text` to `dir/name`, never over an existing file; a secret readable by its owner
/// only, from its creation on.
fn write(dir: &Path, name: &str, text: &str, secret: bool) -> Result<PathBuf, String> {
    use std::io::Write;
    let path = dir.join(name);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    }
    let _ = secret;
    let mut file =
        options.open(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(text.as_bytes()).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path)
}
