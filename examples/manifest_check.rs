//! Validate manifests: `manifest_check FILE...`
//!
//! For each valid file prints `ok FILE env=<key>` on stdout; for an invalid one prints its
//! diagnostics on stderr. Exit status: 0 when every file is valid, 1 when any is invalid or
//! unreadable, 2 on a usage error.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use plus_manifest::{ManifestError, parse_file};

/// Validates each manifest.yaml and prints its environment-image key.
#[derive(Debug, Parser)]
#[command(name = "manifest_check")]
struct Args {
    /// The manifests to check.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let color = std::io::stderr().is_terminal();
    let mut failed = false;
    for path in &args.files {
        match parse_file(path) {
            Ok(manifest) => println!("ok {} env={}", path.display(), manifest.env_image_key()),
            Err(ManifestError::Invalid(report)) => {
                failed = true;
                eprintln!("{}\n", report.render(color));
            }
            Err(err) => {
                failed = true;
                eprintln!("error: {err}\n");
            }
        }
    }
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
