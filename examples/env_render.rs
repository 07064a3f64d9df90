//! Environments (talk 004) from the command line: validate an environments file, resolve an
//! environment through its layers, render its configuration templates, explain where each
//! value came from, diff two environments.
//!
//! ```text
//! env_render FILE ENV                         # validate, render, print the deployment order
//! env_render FILE ENV --explain [--app APP]   # every value each template used, and its layer
//! env_render FILE ENV --diff OTHER            # what differs from OTHER, per app and file
//! env_render FILE ENV --out DIR               # write the rendered files under DIR/APP/PATH
//! ```
//!
//! Addresses of dependencies are the planned ones (`APP.ENV.<--domain>`, default
//! `env.internal`). Secrets are masked in everything printed; only `--out` writes them. The
//! last line is `env=ENV apps=N levels=L rendered=R`. Exit status: 0 on success, 1 when the
//! file or a template is invalid, 2 on a usage error.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use plus_manifest::{
    Facts, Limits, ManifestError, RenderError, Rendered, Templates, parse_environments_file,
};

/// Renders an environment's configuration templates.
#[derive(Debug, Parser)]
#[command(name = "env_render")]
struct Args {
    /// The environments file.
    file: PathBuf,
    /// The environment to render.
    environment: String,
    /// Print every value each template used, with the layer it came from.
    #[arg(long)]
    explain: bool,
    /// Only this application (with --explain).
    #[arg(long, requires = "explain")]
    app: Option<String>,
    /// Compare with this environment.
    #[arg(long, value_name = "OTHER")]
    diff: Option<String>,
    /// Write the rendered files, secrets included, under this directory.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// The domain of planned host names.
    #[arg(long, default_value = "env.internal")]
    domain: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("{message}");
            ExitCode::FAILURE
        }
    }
}

fn render(
    environments: &plus_manifest::Environments,
    templates: &Templates,
    name: &str,
    domain: &str,
) -> Result<Rendered, String> {
    let resolved = environments.resolve(name).map_err(|e| format!("error: {e}"))?;
    let facts = Facts::planned(&resolved, domain);
    resolved.render(templates, &facts).map_err(|e| match e {
        RenderError::Invalid(reports) => {
            let color = std::io::stderr().is_terminal();
            reports.iter().map(|r| r.render(color)).collect::<Vec<_>>().join("\n\n")
        }
        other => format!("error: {other}"),
    })
}

fn run(args: &Args) -> Result<(), String> {
    let environments = match parse_environments_file(&args.file, Limits::default()) {
        Ok(environments) => environments,
        Err(ManifestError::Invalid(report)) => {
            return Err(report.render(std::io::stderr().is_terminal()));
        }
        Err(other) => return Err(format!("error: {other}")),
    };
    let base = args.file.parent().unwrap_or(Path::new("."));
    let templates = Templates::load(base, &environments)
        .map_err(|(path, e)| format!("error: cannot read template {path}: {e}"))?;
    let rendered = render(&environments, &templates, &args.environment, &args.domain)?;
    let levels = rendered.environment.levels().map_err(|e| format!("error: {e}"))?;
    for (i, level) in levels.iter().enumerate() {
        let codes: Vec<&str> = level.iter().map(plus_core::AppCode::as_str).collect();
        println!("level {i}: {}", codes.join(" "));
    }
    if args.explain {
        for (code, files) in &rendered.files {
            if args.app.as_deref().is_some_and(|a| a != code.as_str()) {
                continue;
            }
            let app = &rendered.environment.apps[code];
            println!("{code}: branch {} ({})", app.branch.value, app.branch.origin);
            println!("{code}: buildType {} ({})", app.build_type.value, app.build_type.origin);
            for file in files {
                for reference in &file.references {
                    println!(
                        "  {} {} = {} ({})",
                        file.path, reference.name, reference.shown, reference.origin
                    );
                }
            }
        }
    }
    if let Some(other) = &args.diff {
        let right = render(&environments, &templates, other, &args.domain)?;
        print!("{}", rendered.diff(&right));
    }
    if let Some(dir) = &args.out {
        for (code, files) in &rendered.files {
            for file in files {
                let path = dir.join(code.as_str()).join(&file.path);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("error: cannot create {}: {e}", parent.display()))?;
                }
                std::fs::write(&path, file.text())
                    .map_err(|e| format!("error: cannot write {}: {e}", path.display()))?;
            }
        }
    }
    println!(
        "env={} apps={} levels={} rendered={}",
        rendered.environment.name,
        rendered.environment.apps.len(),
        levels.len(),
        rendered.file_count()
    );
    Ok(())
}
