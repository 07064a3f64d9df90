//! The weight tuner: runs the simulation over many weight sets and keeps every result, so that a
//! person can see the trade-off, not only the winner.

use std::io;

use plus_core::seeded_rng;
use rand::Rng;

use crate::dimension::Builtin;
use crate::scheduler::Weights;
use crate::sim::{SimConfig, SimError, SimReport, simulate};

/// How the tuner picks weight sets to try.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Search {
    /// An even grid over `[0, max_weight]` per weight, as many points per axis as the budget
    /// allows (`floor(cbrt(budget))`, at least 2), all-zero excluded.
    Grid,
    /// Uniform random weight sets in `[0, max_weight]`, from the tuner's seed.
    Random,
}

/// What "better" means: `hit_rate x hit_rate_weight - cache_cv x cache_cv_penalty -
/// load_cv x load_cv_penalty`, larger is better.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Objective {
    /// Reward per unit of hit rate. Default 1.
    pub hit_rate_weight: f64,
    /// Penalty per unit of cache CV. Default 1.
    pub cache_cv_penalty: f64,
    /// Penalty per unit of load CV. Default 1.
    pub load_cv_penalty: f64,
}

impl Default for Objective {
    fn default() -> Self {
        Self { hit_rate_weight: 1.0, cache_cv_penalty: 1.0, load_cv_penalty: 1.0 }
    }
}

impl Objective {
    /// The objective's value for `report`.
    #[must_use]
    pub fn evaluate(&self, report: &SimReport) -> f64 {
        self.hit_rate_weight * report.hit_rate
            - self.cache_cv_penalty * report.cache_cv
            - self.load_cv_penalty * report.load_cv
    }
}

/// The tuner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneConfig {
    /// How points are chosen. Default [`Search::Random`].
    pub search: Search,
    /// How many weight sets to try at most. Default 50.
    pub budget: usize,
    /// Upper end of each weight's range. Default 100.
    pub max_weight: f64,
    /// What to maximize. Default [`Objective::default`].
    pub objective: Objective,
    /// Seed for random search (the simulation keeps its own seed, so every trial sees the same
    /// jobs). Default 1.
    pub seed: u64,
}

impl Default for TuneConfig {
    fn default() -> Self {
        Self {
            search: Search::Random,
            budget: 50,
            max_weight: 100.0,
            objective: Objective::default(),
            seed: 1,
        }
    }
}

/// One tried weight set.
#[derive(Debug, Clone, PartialEq)]
pub struct Trial {
    /// The weights.
    pub weights: Weights,
    /// What the simulation measured.
    pub hit_rate: f64,
    /// Cache-count CV at the end.
    pub cache_cv: f64,
    /// Load CV over the run.
    pub load_cv: f64,
    /// The objective's value.
    pub objective: f64,
}

/// Every trial, and which was best.
#[derive(Debug, Clone, PartialEq)]
pub struct TuneResult {
    /// Every trial, in the order tried.
    pub trials: Vec<Trial>,
    /// Index of the best trial in `trials`.
    pub best: usize,
}

fn points(config: &TuneConfig) -> Vec<Weights> {
    let max = config.max_weight;
    match config.search {
        Search::Grid => {
            let axes = Builtin::ALL.len() as u32;
            let mut per_axis = 2;
            while (per_axis + 1_usize).pow(axes) <= config.budget {
                per_axis += 1;
            }
            let step = |i: usize| max * i as f64 / (per_axis - 1) as f64;
            // Point `n` has one digit (base `per_axis`) per dimension, the first dimension most
            // significant; point 0 (all weights zero) is skipped.
            (1..per_axis.pow(axes))
                .map(|n| {
                    Weights::from_fn(|b| {
                        // `Builtin::ALL` lists the dimensions in declaration order.
                        let place = per_axis.pow(axes - 1 - b as u32);
                        step(n / place % per_axis)
                    })
                })
                .take(config.budget)
                .collect()
        }
        Search::Random => {
            let mut rng = seeded_rng(config.seed);
            (0..config.budget).map(|_| Weights::from_fn(|_| rng.random_range(0.0..=max))).collect()
        }
    }
}

/// Tries weight sets on `base` (its own weights are ignored) and reports every one.
///
/// # Errors
/// [`SimError::InvalidConfig`] for a bad base config, a zero budget or a bad `max_weight`.
pub fn tune(base: &SimConfig, config: &TuneConfig) -> Result<TuneResult, SimError> {
    if config.budget == 0 {
        return Err(SimError::InvalidConfig("tuning budget must be at least 1".to_owned()));
    }
    if !config.max_weight.is_finite() || config.max_weight <= 0.0 {
        return Err(SimError::InvalidConfig("`max_weight` must be a finite number > 0".to_owned()));
    }
    let mut trials = Vec::new();
    for weights in points(config) {
        let sim = SimConfig { weights, ..base.clone() };
        let report = match simulate(&sim) {
            Ok(report) => report,
            // A random point can land on all zeros only with probability 0, but skip it rather
            // than fail the whole search.
            Err(SimError::Scheduler(crate::Error::AllZeroWeights)) => continue,
            Err(err) => return Err(err),
        };
        trials.push(Trial {
            weights,
            hit_rate: report.hit_rate,
            cache_cv: report.cache_cv,
            load_cv: report.load_cv,
            objective: config.objective.evaluate(&report),
        });
    }
    let best = trials
        .iter()
        .enumerate()
        .max_by(|(_, a), (_, b)| a.objective.total_cmp(&b.objective))
        .map(|(i, _)| i)
        .ok_or_else(|| SimError::InvalidConfig("no weight set could be tried".to_owned()))?;
    Ok(TuneResult { trials, best })
}

impl TuneResult {
    /// The best trial.
    #[must_use]
    pub fn best(&self) -> &Trial {
        &self.trials[self.best]
    }

    /// Writes every trial as CSV with a header: one column per built-in dimension's weight
    /// (`load,has_cache,total_caches`), then `hit_rate,cache_cv,load_cv,objective,best`.
    ///
    /// # Errors
    /// Whatever `out` returns.
    pub fn write_csv(&self, mut out: impl io::Write) -> io::Result<()> {
        for b in Builtin::ALL {
            write!(out, "{},", b.name())?;
        }
        writeln!(out, "hit_rate,cache_cv,load_cv,objective,best")?;
        for (i, t) in self.trials.iter().enumerate() {
            for (_, weight) in t.weights.iter() {
                write!(out, "{weight:.4},")?;
            }
            writeln!(
                out,
                "{:.6},{:.6},{:.6},{:.6},{}",
                t.hit_rate,
                t.cache_cv,
                t.load_cv,
                t.objective,
                i == self.best
            )?;
        }
        Ok(())
    }
}
