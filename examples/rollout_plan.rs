//! Print the batch plan for a group of hosts.
//!
//! ```text
//! rollout_plan --hosts N [--bastion K] [--ratio PERCENT | --ramp "10%+30%+60%"]
//!              [--exclude I,J,...] [--rollback]
//! ```
//!
//! Hosts are named host-00, host-01, ...; `--exclude` takes their indexes (as hosts an operator
//! pulled out of traffic). Prints `batches: 1 | 5 5 5 4` (bastion sizes before `|`), then
//! `excluded: host-03 host-07` when any are excluded. Bad arguments: a message and exit 2.

#[path = "common/cli.rs"]
mod cli;

use std::process::ExitCode;

use plus_core::{HostId, Ratio};
use plus_rollout::{Availability, Bastion, GroupHost, PlanConfig, Split, parse_ramp, plan};

/// The largest group `--hosts` accepts: far above any real group, far below what a plan
/// could not hold in memory.
const MAX_HOSTS: u64 = 1_000_000;

const USAGE: &str =
    "usage: rollout_plan --hosts N [--bastion K] [--ratio PERCENT | --ramp \"10%+30%+60%\"]
                    [--exclude I,J,...] [--rollback]

  --hosts N        hosts in the group (1 to 1000000), named host-00, host-01, ...
  --bastion K      hosts in the bastion batch (default 1; 0 for none; at most the group)
  --ratio PERCENT  the group's max pull-out ratio, 25 means 25% (default 25)
  --ramp STEPS     explicit batches as percentages of the hosts after the bastion
  --exclude I,J    indexes of hosts pulled out of traffic
  --rollback       the rollback preset: no bastion, 50% batches";

struct Args {
    hosts: usize,
    bastion: Option<usize>,
    ratio: Option<Ratio>,
    ramp: Option<String>,
    exclude: Vec<usize>,
    rollback: bool,
}

fn parse(args: &[String]) -> Result<Option<Args>, String> {
    let mut hosts = None;
    let mut parsed = Args {
        hosts: 0,
        bastion: None,
        ratio: None,
        ramp: None,
        exclude: Vec::new(),
        rollback: false,
    };
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("`{flag}` needs a value"));
        let whole = |text: &str| cli::bounded_usize(flag, text, 0, MAX_HOSTS);
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--hosts" => hosts = Some(whole(&value()?)?),
            "--bastion" => parsed.bastion = Some(whole(&value()?)?),
            "--ratio" => {
                let text = value()?;
                let percent: f64 = text
                    .trim_end_matches('%')
                    .parse()
                    .map_err(|_| format!("`--ratio` takes a percentage, got `{text}`"))?;
                parsed.ratio =
                    Some(Ratio::from_percent(percent).map_err(|e| format!("`--ratio`: {e}"))?);
            }
            "--ramp" => parsed.ramp = Some(value()?),
            "--exclude" => {
                let text = value()?;
                parsed.exclude = text
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(whole)
                    .collect::<Result<_, _>>()?;
            }
            "--rollback" => parsed.rollback = true,
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    parsed.hosts = hosts.ok_or("`--hosts` is required")?;
    if let Some(bastion) = parsed.bastion.filter(|&b| b > parsed.hosts) {
        return Err(format!("`--bastion {bastion}` is larger than the group of {}", parsed.hosts));
    }
    if parsed.ratio.is_some() && parsed.ramp.is_some() {
        return Err("give `--ratio` or `--ramp`, not both".to_owned());
    }
    if parsed.rollback
        && (parsed.bastion.is_some() || parsed.ratio.is_some() || parsed.ramp.is_some())
    {
        return Err("`--rollback` sets the bastion and ratio itself".to_owned());
    }
    if let Some(&i) = parsed.exclude.iter().find(|&&i| i >= parsed.hosts) {
        return Err(format!("`--exclude {i}`: there are only {} hosts", parsed.hosts));
    }
    Ok(Some(parsed))
}

fn main() -> ExitCode {
    let args = match cli::parse_args(USAGE, parse) {
        Ok(args) => args,
        Err(code) => return code,
    };
    let width = args.hosts.saturating_sub(1).to_string().len().max(2);
    let group: Vec<GroupHost> = (0..args.hosts)
        .map(|i| GroupHost {
            id: HostId::new(format!("host-{i:0width$}")).expect("generated host ids are valid"),
            availability: if args.exclude.contains(&i) {
                Availability::PulledOut
            } else {
                Availability::InService
            },
        })
        .collect();
    let mut config = if args.rollback { PlanConfig::rollback() } else { PlanConfig::default() };
    if let Some(k) = args.bastion {
        config.bastion = Bastion::Count(k);
    }
    if let Some(ratio) = args.ratio {
        config.max_ratio = ratio;
    }
    if let Some(ramp) = &args.ramp {
        match parse_ramp(ramp) {
            Ok(steps) => {
                // A ramp's steps are bounded by the max ratio; with no --ratio, allow the ramp's
                // own largest step.
                if args.ratio.is_none() {
                    config.max_ratio = steps
                        .iter()
                        .copied()
                        .fold(Ratio::ZERO, |a, b| if b.get() > a.get() { b } else { a });
                }
                config.split = Split::Ramp(steps);
            }
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
        }
    }
    match plan(&group, &config) {
        Ok(plan) => {
            println!("batches: {}", plan.sizes());
            if !plan.excluded.is_empty() {
                let names: Vec<&str> = plan.excluded.iter().map(|(h, _)| h.as_str()).collect();
                println!("excluded: {}", names.join(" "));
            }
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::from(2)
        }
    }
}
