//! The weight tuner: runs the simulation over many weight sets and keeps every result, so that a
//! person can see the trade-off, not only the winner.

use std::fmt::Write as _;
use std::io;

use plus_core::seeded_rng;
use rand::Rng;

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

/// An axis label with three significant digits, whatever the scale (CVs can be 0.0002).
fn tick_label(v: f64) -> String {
    if v == 0.0 || (0.01..1000.0).contains(&v.abs()) {
        format!("{v:.3}")
    } else {
        format!("{v:.2e}")
    }
}

/// A plot panel: its x-axis label and how to read x from a trial.
type Panel = (&'static str, fn(&Trial) -> f64);

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
            let mut per_axis = 2;
            while (per_axis + 1_usize).pow(3) <= config.budget {
                per_axis += 1;
            }
            let step = |i: usize| max * i as f64 / (per_axis - 1) as f64;
            let mut out = Vec::new();
            for a in 0..per_axis {
                for b in 0..per_axis {
                    for c in 0..per_axis {
                        if a + b + c > 0 {
                            out.push(Weights {
                                load: step(a),
                                has_cache: step(b),
                                total_caches: step(c),
                            });
                        }
                    }
                }
            }
            out.truncate(config.budget);
            out
        }
        Search::Random => {
            let mut rng = seeded_rng(config.seed);
            (0..config.budget)
                .map(|_| Weights {
                    load: rng.random_range(0.0..=max),
                    has_cache: rng.random_range(0.0..=max),
                    total_caches: rng.random_range(0.0..=max),
                })
                .collect()
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

    /// Writes every trial as CSV with a header:
    /// `load,has_cache,total_caches,hit_rate,cache_cv,load_cv,objective,best`.
    ///
    /// # Errors
    /// Whatever `out` returns.
    pub fn write_csv(&self, mut out: impl io::Write) -> io::Result<()> {
        writeln!(out, "load,has_cache,total_caches,hit_rate,cache_cv,load_cv,objective,best")?;
        for (i, t) in self.trials.iter().enumerate() {
            writeln!(
                out,
                "{:.4},{:.4},{:.4},{:.6},{:.6},{:.6},{:.6},{}",
                t.weights.load,
                t.weights.has_cache,
                t.weights.total_caches,
                t.hit_rate,
                t.cache_cv,
                t.load_cv,
                t.objective,
                i == self.best
            )?;
        }
        Ok(())
    }

    /// An SVG of the trade-off: hit rate against cache CV (left) and against load CV (right),
    /// one dot per trial, darker red for a better objective, the best ringed.
    #[must_use]
    pub fn svg(&self) -> String {
        const W: f64 = 900.0;
        const H: f64 = 420.0;
        let mut svg = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" viewBox=\"0 0 {W} {H}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n<text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">plus-scheduler weight tuning: {} trials, best load={:.1} has_cache={:.1} total_caches={:.1}</text>\n",
            W / 2.0,
            self.trials.len(),
            self.best().weights.load,
            self.best().weights.has_cache,
            self.best().weights.total_caches
        );
        let (lo, hi) =
            self.trials.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                (lo.min(t.objective), hi.max(t.objective))
            });
        let panels: [Panel; 2] = [
            ("cache CV (lower is more even)", |t| t.cache_cv),
            ("load CV (lower is more even)", |t| t.load_cv),
        ];
        for (p, (label, x_of)) in panels.iter().enumerate() {
            let left = 60.0 + p as f64 * (W / 2.0);
            let (top, width, height) = (45.0, W / 2.0 - 90.0, H - 100.0);
            let x_max = self.trials.iter().map(x_of).fold(0.0_f64, f64::max).max(1e-9) * 1.05;
            let (y_lo, y_hi) =
                self.trials.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), t| {
                    (lo.min(t.hit_rate), hi.max(t.hit_rate))
                });
            let (y_lo, y_hi) =
                if y_hi - y_lo < 1e-9 { (y_lo - 0.01, y_hi + 0.01) } else { (y_lo, y_hi) };
            let _ = writeln!(
                svg,
                "<rect x=\"{left}\" y=\"{top}\" width=\"{width}\" height=\"{height}\" fill=\"none\" stroke=\"#444\"/>"
            );
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{label}</text>",
                left + width / 2.0,
                top + height + 35.0
            );
            let _ = writeln!(
                svg,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" transform=\"rotate(-90 {} {})\">hit rate</text>",
                left - 42.0,
                top + height / 2.0,
                left - 42.0,
                top + height / 2.0
            );
            for tick in 0..=4 {
                let f = f64::from(tick) / 4.0;
                let (x, y) = (left + f * width, top + height - f * height);
                let _ = writeln!(
                    svg,
                    "<text x=\"{x}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
                    top + height + 14.0,
                    tick_label(f * x_max)
                );
                let _ = writeln!(
                    svg,
                    "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"10\">{:.3}</text>",
                    left - 4.0,
                    y + 3.0,
                    y_lo + f * (y_hi - y_lo)
                );
            }
            for (i, t) in self.trials.iter().enumerate() {
                let x = left + x_of(t) / x_max * width;
                let y = top + height - (t.hit_rate - y_lo) / (y_hi - y_lo) * height;
                let goodness = if hi > lo { (t.objective - lo) / (hi - lo) } else { 1.0 };
                let red = (80.0 + 175.0 * goodness) as u8;
                let other = (200.0 * (1.0 - goodness)) as u8;
                let _ = writeln!(
                    svg,
                    "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"4\" fill=\"rgb({red},{other},{other})\"><title>load={:.1} has_cache={:.1} total_caches={:.1} objective={:.4}</title></circle>",
                    t.weights.load, t.weights.has_cache, t.weights.total_caches, t.objective
                );
                if i == self.best {
                    let _ = writeln!(
                        svg,
                        "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"9\" fill=\"none\" stroke=\"black\" stroke-width=\"2\"/>"
                    );
                }
            }
        }
        svg.push_str("</svg>\n");
        svg
    }
}
