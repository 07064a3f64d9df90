//! Talk 000's 50,000-job scheduling simulation, and the weight tuner.
//!
//! ```text
//! tune_weights [--workers N] [--jobs N] [--projects N] [--weights LOAD,CACHE,TOTAL]
//!              [--zipf EXPONENT] [--seed S] [--search N [--grid] --out DIR]
//! ```
//!
//! A single run prints per-worker totals and ends with one line:
//! `jobs=50000 workers=10 weights=35,50,34 hit_rate=0.8123 cache_cv=0.0012 load_cv=0.0456 elapsed_ms=42`.
//! With `--search N` it tries N weight sets, prints the best in the same form, and writes
//! `DIR/tuning.csv` and `DIR/tuning.svg`.

#[path = "common/cli.rs"]
mod cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Parser;
use plus_scheduler::{Popularity, Search, SimConfig, TuneConfig, Weights, simulate, tune};

/// Talk 000's 50,000-job scheduling simulation, and the weight tuner. The defaults reproduce
/// the talk's experiment: 10 workers, 50,000 jobs, 36,000 projects, weights 35,50,34.
#[derive(Debug, Parser)]
#[command(name = "tune_weights")]
struct Args {
    /// Workers in the fleet (1 to 100000).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    workers: u32,
    /// Jobs to place (1 to 100000000).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u32).range(1..=100_000_000))]
    jobs: u32,
    /// Distinct projects (1 to 1000000).
    #[arg(long, default_value_t = 36_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    projects: u32,
    /// The weights of load, has-cache and total caches, like 35,50,34.
    #[arg(long, value_parser = parse_weights)]
    weights: Option<Weights>,
    /// Project popularity follows Zipf's law with this exponent (default: uniform).
    #[arg(long)]
    zipf: Option<f64>,
    /// Seed of the simulation (and of the random search).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Try this many weight sets (1 to 100000) and write DIR/tuning.csv and DIR/tuning.svg.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    search: Option<u32>,
    /// Search a grid instead of random points.
    #[arg(long, requires = "search")]
    grid: bool,
    /// Where the search writes its CSV and SVG.
    #[arg(long, value_name = "DIR", default_value = "tuning-out")]
    out: PathBuf,
}

impl Args {
    fn sim(&self) -> SimConfig {
        let defaults = SimConfig::default();
        SimConfig {
            workers: self.workers as usize,
            jobs: self.jobs as usize,
            projects: self.projects as usize,
            weights: self.weights.unwrap_or(defaults.weights),
            popularity: self
                .zipf
                .map_or(defaults.popularity, |exponent| Popularity::Zipf { exponent }),
            seed: self.seed,
            ..defaults
        }
    }
}

/// Three weights, `LOAD,CACHE,TOTAL`.
fn parse_weights(text: &str) -> Result<Weights, String> {
    let wrong = || format!("expected three numbers like 35,50,34, got `{text}`");
    let parts: Vec<f64> = text
        .split(',')
        .map(|p| p.trim().parse::<f64>())
        .collect::<Result<_, _>>()
        .map_err(|_| wrong())?;
    let [load, has_cache, total_caches] = parts[..] else { return Err(wrong()) };
    Ok(Weights { load, has_cache, total_caches })
}

fn line(
    sim: &SimConfig,
    w: Weights,
    hit_rate: f64,
    cache_cv: f64,
    load_cv: f64,
    started: Instant,
) -> String {
    format!(
        "jobs={} workers={} weights={},{},{} hit_rate={hit_rate:.4} cache_cv={cache_cv:.4} load_cv={load_cv:.4} elapsed_ms={}",
        sim.jobs,
        sim.workers,
        short(w.load),
        short(w.has_cache),
        short(w.total_caches),
        started.elapsed().as_millis()
    )
}

/// `35` rather than `35.0`, `12.5` as is.
fn short(x: f64) -> String {
    let rounded = format!("{x:.1}");
    rounded.strip_suffix(".0").map_or(rounded.clone(), str::to_owned)
}

fn main() -> ExitCode {
    let args = Args::parse();
    cli::init_logging();
    let sim = args.sim();
    let started = Instant::now();
    match args.search {
        None => match simulate(&sim) {
            Ok(report) => {
                for w in &report.per_worker {
                    println!(
                        "{}: caches={} jobs={} hits={} mean_load={:.4}",
                        w.id, w.caches, w.jobs, w.hits, w.mean_load
                    );
                }
                println!(
                    "{}",
                    line(
                        &sim,
                        sim.weights,
                        report.hit_rate,
                        report.cache_cv,
                        report.load_cv,
                        started
                    )
                );
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::from(2)
            }
        },
        Some(budget) => {
            let config = TuneConfig {
                search: if args.grid { Search::Grid } else { Search::Random },
                budget: budget as usize,
                seed: sim.seed,
                ..TuneConfig::default()
            };
            let result = match tune(&sim, &config) {
                Ok(result) => result,
                Err(err) => {
                    eprintln!("error: {err}");
                    return ExitCode::from(2);
                }
            };
            if let Err(err) = write_outputs(&args.out, &result) {
                eprintln!("error: cannot write to `{}`: {err}", args.out.display());
                return ExitCode::FAILURE;
            }
            let best = result.best();
            println!(
                "tried {} weight sets; wrote {} and {}",
                result.trials.len(),
                args.out.join("tuning.csv").display(),
                args.out.join("tuning.svg").display()
            );
            println!(
                "{}",
                line(&sim, best.weights, best.hit_rate, best.cache_cv, best.load_cv, started)
            );
            ExitCode::SUCCESS
        }
    }
}

fn write_outputs(
    dir: &std::path::Path,
    result: &plus_scheduler::TuneResult,
) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let csv = std::fs::File::create(dir.join("tuning.csv"))?;
    result.write_csv(std::io::BufWriter::new(csv))?;
    std::fs::write(dir.join("tuning.svg"), result.svg())
}
