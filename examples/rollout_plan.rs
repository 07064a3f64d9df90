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

use clap::Parser;
use plus_core::{HostId, Ratio};
use plus_rollout::{Availability, Bastion, GroupHost, PlanConfig, Split, parse_ramp, plan};

/// Print the batch plan for a group of hosts, named host-00, host-01, ...
#[derive(Debug, Parser)]
#[command(name = "rollout_plan")]
struct Args {
    /// Hosts in the group (1 to 1000000).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    hosts: u32,
    /// Hosts in the bastion batch (default 1; 0 for none; at most the group).
    #[arg(long)]
    bastion: Option<u32>,
    /// The group's max pull-out ratio in percent: 25 means 25% (default 25).
    #[arg(long, value_parser = parse_percent, conflicts_with = "ramp")]
    ratio: Option<Ratio>,
    /// Explicit batches as percentages of the hosts after the bastion, like "10%+30%+60%".
    #[arg(long)]
    ramp: Option<String>,
    /// Indexes of hosts pulled out of traffic, like 3,7.
    #[arg(long, value_delimiter = ',')]
    exclude: Vec<u32>,
    /// The rollback preset: no bastion, 50% batches.
    #[arg(long, conflicts_with_all = ["bastion", "ratio", "ramp"])]
    rollback: bool,
}

impl Args {
    /// What only the arguments together can get wrong.
    fn check(&self) -> Result<(), String> {
        if let Some(bastion) = self.bastion.filter(|&b| b > self.hosts) {
            return Err(format!(
                "`--bastion {bastion}` is larger than the group of {}",
                self.hosts
            ));
        }
        if let Some(&i) = self.exclude.iter().find(|&&i| i >= self.hosts) {
            return Err(format!("`--exclude {i}`: there are only {} hosts", self.hosts));
        }
        Ok(())
    }
}

/// `25` or `25%`.
fn parse_percent(text: &str) -> Result<Ratio, String> {
    let percent: f64 = text
        .trim_end_matches('%')
        .parse()
        .map_err(|_| format!("expected a percentage, got `{text}`"))?;
    Ratio::from_percent(percent).map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(message) = args.check() {
        cli::usage_error::<Args>(message);
    }
    cli::init_logging();
    let hosts = args.hosts as usize;
    let width = hosts.saturating_sub(1).to_string().len().max(2);
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
        config.bastion = Bastion::Count(k as usize);
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
