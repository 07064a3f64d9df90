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

use plus_scheduler::{Popularity, Search, SimConfig, TuneConfig, Weights, simulate, tune};

const USAGE: &str =
    "usage: tune_weights [--workers N] [--jobs N] [--projects N] [--weights LOAD,CACHE,TOTAL]
                    [--zipf EXPONENT] [--seed S] [--search N [--grid] [--out DIR]]

Limits: --workers up to 100000, --jobs up to 100000000, --projects up to 1000000,
--search up to 100000.
Defaults reproduce talk 000's experiment: 10 workers, 50,000 jobs, 36,000 projects,
weights 35,50,34. --search N tries N weight sets (random, or a grid with --grid) and
writes DIR/tuning.csv and DIR/tuning.svg (DIR defaults to tuning-out).";

struct Args {
    sim: SimConfig,
    search: Option<usize>,
    grid: bool,
    out: PathBuf,
}

fn parse_args(args: &[String]) -> Result<Option<Args>, String> {
    let mut parsed = Args {
        sim: SimConfig::default(),
        search: None,
        grid: false,
        out: PathBuf::from("tuning-out"),
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value =
            |name: &str| it.next().cloned().ok_or_else(|| format!("`{name}` needs a value"));
        let number = |name: &str, text: String| -> Result<usize, String> {
            let max = match name {
                "--workers" => 100_000,
                "--projects" => 1_000_000,
                "--search" => 100_000,
                _ => 100_000_000,
            };
            cli::bounded_usize(name, &text, 1, max)
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--workers" => parsed.sim.workers = number(flag, value(flag)?)?,
            "--jobs" => parsed.sim.jobs = number(flag, value(flag)?)?,
            "--projects" => parsed.sim.projects = number(flag, value(flag)?)?,
            "--search" => parsed.search = Some(number(flag, value(flag)?)?),
            "--grid" => parsed.grid = true,
            "--out" => parsed.out = PathBuf::from(value(flag)?),
            "--seed" => {
                let text = value(flag)?;
                parsed.sim.seed = text
                    .parse()
                    .map_err(|_| format!("`--seed` takes a whole number, got `{text}`"))?;
            }
            "--zipf" => {
                let text = value(flag)?;
                let exponent =
                    text.parse().map_err(|_| format!("`--zipf` takes a number, got `{text}`"))?;
                parsed.sim.popularity = Popularity::Zipf { exponent };
            }
            "--weights" => {
                let text = value(flag)?;
                let parts: Vec<f64> = text
                    .split(',')
                    .map(|p| p.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .map_err(|_| {
                        format!("`--weights` takes three numbers like 35,50,34, got `{text}`")
                    })?;
                let [load, has_cache, total_caches] = parts[..] else {
                    return Err(format!(
                        "`--weights` takes three numbers like 35,50,34, got `{text}`"
                    ));
                };
                parsed.sim.weights = Weights { load, has_cache, total_caches };
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if parsed.search == Some(0) {
        return Err("`--search` must be at least 1".to_owned());
    }
    Ok(Some(parsed))
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
    let args = match cli::parse_args(USAGE, parse_args) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let started = Instant::now();
    match args.search {
        None => match simulate(&args.sim) {
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
                        &args.sim,
                        args.sim.weights,
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
                budget,
                seed: args.sim.seed,
                ..TuneConfig::default()
            };
            let result = match tune(&args.sim, &config) {
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
                line(&args.sim, best.weights, best.hit_rate, best.cache_cv, best.load_cv, started)
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
