//! Validate manifests: `manifest_check FILE...`
//!
//! For each valid file prints `ok FILE env=<key>` on stdout; for an invalid one prints its
//! diagnostics on stderr. Exit status: 0 when every file is valid, 1 when any is invalid or
//! unreadable, 2 on a usage error.

use std::io::IsTerminal;
use std::process::ExitCode;

use plus_manifest::{ManifestError, parse_file};

const USAGE: &str = "usage: manifest_check FILE...\n\nValidates each manifest.yaml and prints its environment-image key.";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    if args.is_empty() {
        eprintln!("error: no manifest given\n\n{USAGE}");
        return ExitCode::from(2);
    }
    if let Some(flag) = args.iter().find(|a| a.starts_with('-') && a.len() > 1) {
        eprintln!("error: unknown option `{flag}`\n\n{USAGE}");
        return ExitCode::from(2);
    }
    let color = std::io::stderr().is_terminal();
    let mut failed = false;
    for path in &args {
        match parse_file(path) {
            Ok(manifest) => println!("ok {path} env={}", manifest.env_image_key()),
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
