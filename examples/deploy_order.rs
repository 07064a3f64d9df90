//! Print the dependency order of a set of applications, and simulate deploying them.
//!
//! ```text
//! deploy_order FILE [--fail APP]...
//! ```
//!
//! FILE is YAML: `apps:` a list of `{app, dependsOn, optionalDependsOn}`. Prints one line per
//! wave (`wave 1: cache db static`), then `order: ...`. With `--fail APP` it also simulates the
//! deployment with those applications failing and prints, in completion order, `deployed api`,
//! `failed db`, `skipped web (requires db)`. A cycle or an unknown dependency: the error on
//! stderr and exit 1; bad arguments: exit 2.

#[path = "common/cli.rs"]
mod cli;

use std::collections::HashSet;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use plus_core::{AppCode, Timestamp};
use plus_manifest::{Limits, parse_app_list_file};
use plus_rollout::{Action, AppGraph, AppJob, AppSpec, Core, DeployConfig, Deployment};

/// Print the dependency order of a set of applications, and simulate deploying them.
///
/// FILE lists applications as YAML:
///
///   apps:
///     - app: web
///       dependsOn: [api, static]
///     - app: api
///       dependsOn: [db]
///       optionalDependsOn: [cache]
#[derive(Debug, Parser)]
#[command(name = "deploy_order", verbatim_doc_comment)]
struct Args {
    /// The application list.
    file: PathBuf,
    /// Simulate the deployment with this application failing (repeatable).
    #[arg(long, value_name = "APP")]
    fail: Vec<String>,
}

fn main() -> ExitCode {
    let Args { file: path, fail } = Args::parse();
    cli::init_logging();
    // The manifest reader's limits and diagnostics: size, depth and node limits, unknown
    // fields with "did you mean", invalid codes, each with its line and column.
    let entries = match parse_app_list_file(&path, Limits::default()) {
        Ok(entries) => entries,
        Err(err) => {
            eprintln!("error: `{}` is not a valid application list:\n{err}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let specs = entries
        .into_iter()
        .map(|e| AppSpec {
            code: e.app,
            depends_on: e.depends_on,
            optional_depends_on: e.optional_depends_on,
        })
        .collect();
    let graph = match AppGraph::new(specs) {
        Ok(graph) => Arc::new(graph),
        Err(err) => {
            for problem in &err.problems {
                eprintln!("error: {problem}");
            }
            return ExitCode::FAILURE;
        }
    };
    for warning in graph.warnings() {
        eprintln!("warning: {warning}");
    }
    for (i, wave) in graph.waves().iter().enumerate() {
        let codes: Vec<&str> = wave.iter().map(|c| c.as_str()).collect();
        println!("wave {}: {}", i + 1, codes.join(" "));
    }
    let order: Vec<&str> = graph.order().iter().map(|c| c.as_str()).collect();
    println!("order: {}", order.join(" "));
    if fail.is_empty() {
        return ExitCode::SUCCESS;
    }
    let mut failing = HashSet::new();
    for code in &fail {
        match AppCode::new(code.as_str()).ok().and_then(|c| graph.index_of(&c)) {
            Some(index) => {
                failing.insert(index);
            }
            None => cli::usage_error::<Args>(format!("`--fail {code}`: no such application")),
        }
    }
    for line in simulate(&graph, &failing) {
        println!("{line}");
    }
    ExitCode::SUCCESS
}

/// Runs the deployment core with every step answered at once: failing applications' deploys
/// fail, every other deploy and health check passes.
fn simulate(graph: &Arc<AppGraph>, failing: &HashSet<usize>) -> Vec<String> {
    let now = Timestamp::ZERO;
    let mut deployment = Deployment::new(Arc::clone(graph), DeployConfig::default(), now)
        .expect("the default deploy config is valid");
    while !deployment.is_finished() {
        let Some(action) = deployment.poll_action() else {
            unreachable!(
                "with every step answered at once, an unfinished deployment has work to do"
            )
        };
        if let Action::Start { id, job } = action {
            let result = match job {
                AppJob::Deploy(_) if failing.contains(&(id.slot as usize)) => {
                    Err("simulated failure".to_owned())
                }
                _ => Ok(()),
            };
            deployment.handle_outcome(id, result, now);
        }
    }
    deployment.report().lines()
}
