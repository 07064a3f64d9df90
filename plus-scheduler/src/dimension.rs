use std::fmt;

use plus_core::WorkerId;

use crate::candidate::{Candidate, Job};
use crate::error::Error;

/// Which end of a dimension's range wins.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Larger raw values are better: normalized `(v - min) / (max - min)`.
    LargerIsBetter,
    /// Smaller raw values are better: normalized `1 - (v - min) / (max - min)`.
    SmallerIsBetter,
}

/// A host-defined scoring dimension: one raw value per candidate, and which end is better.
///
/// # Contract
/// `value` must be a pure function of its arguments, cheap (it runs once per candidate per
/// decision), and return a finite number; NaN or an infinity makes the decision fail with
/// [`Error::InvalidMetric`](crate::Error::InvalidMetric) naming the worker and the dimension.
pub trait Dimension: Send + Sync + fmt::Debug {
    /// The name shown in explanations and errors; unique within a scheduler.
    fn name(&self) -> &str;
    /// Which end of the range wins.
    fn direction(&self) -> Direction;
    /// The raw value for `candidate` when placing `job`.
    fn value(&self, job: &Job<'_>, candidate: &Candidate) -> f64;
}

/// A host-defined filter: removes candidates that cannot take a job (beyond the built-in kind
/// and capacity filters).
///
/// # Contract
/// `admits` must be pure and cheap; it runs once per candidate per decision.
pub trait Filter: Send + Sync + fmt::Debug {
    /// The name shown when a candidate is rejected.
    fn name(&self) -> &str;
    /// Whether `candidate` may take `job`.
    fn admits(&self, job: &Job<'_>, candidate: &Candidate) -> bool;
}

/// A built-in dimension of Meituan's Plus build platform talk, described once: its name, which end wins, how to read it
/// from a candidate and which values it accepts. [`Weights`](crate::Weights), the fast scoring
/// path, the tuner and the checks all follow from this description; every `match` on it is
/// exhaustive, so adding one makes the compiler point at each place that must learn it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Builtin {
    /// The worker's load, [`Candidate::load`]; smaller is better, never negative.
    Load,
    /// Whether the worker holds the job's project cache, [`Candidate::has_project_cache`].
    HasCache,
    /// How many project caches the worker holds, [`Candidate::total_caches`]; fewer spreads them.
    TotalCaches,
}

impl Builtin {
    /// Every built-in dimension, in the order of explanations, CSV columns and weights.
    pub const ALL: [Builtin; 3] = [Builtin::Load, Builtin::HasCache, Builtin::TotalCaches];

    /// The name in explanations, errors and the tuner's CSV.
    #[must_use]
    pub const fn name(self) -> &'static str {
        match self {
            Self::Load => "load",
            Self::HasCache => "has_cache",
            Self::TotalCaches => "total_caches",
        }
    }

    /// Which end of the range wins.
    #[must_use]
    pub const fn direction(self) -> Direction {
        match self {
            Self::Load | Self::TotalCaches => Direction::SmallerIsBetter,
            Self::HasCache => Direction::LargerIsBetter,
        }
    }

    /// The raw value of `candidate`.
    #[inline(always)]
    #[must_use]
    pub fn value(self, candidate: &Candidate) -> f64 {
        match self {
            Self::Load => candidate.load,
            Self::HasCache => f64::from(u8::from(candidate.has_project_cache)),
            // Exact up to 2^53 caches, far beyond any fleet.
            Self::TotalCaches => candidate.total_caches as f64,
        }
    }

    /// Whether `value`, read from `worker`, is one this dimension accepts.
    ///
    /// # Errors
    /// [`Error::InvalidMetric`] for NaN or an infinity; [`Error::NegativeLoad`] for a negative
    /// load.
    pub fn check(self, worker: &WorkerId, value: f64) -> Result<(), Error> {
        check_finite(self.name(), worker, value)?;
        match self {
            Self::Load if value < 0.0 => Err(Error::NegativeLoad { worker: worker.clone(), value }),
            Self::Load | Self::HasCache | Self::TotalCaches => Ok(()),
        }
    }
}

fn check_finite(dimension: &str, worker: &WorkerId, value: f64) -> Result<(), Error> {
    if value.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidMetric { worker: worker.clone(), dimension: dimension.to_owned(), value })
    }
}

/// The dimensions a scheduler scores with: the built-ins, or a host's own.
#[derive(Debug)]
pub(crate) enum DimensionKind {
    Builtin(Builtin),
    Custom(Box<dyn Dimension>),
}

impl DimensionKind {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Builtin(b) => b.name(),
            Self::Custom(d) => d.name(),
        }
    }

    pub(crate) fn direction(&self) -> Direction {
        match self {
            Self::Builtin(b) => b.direction(),
            Self::Custom(d) => d.direction(),
        }
    }

    /// The raw value of `candidate`; the `match` is the same for every candidate of a decision,
    /// so the branch predictor makes it free.
    #[inline]
    pub(crate) fn value(&self, job: &Job<'_>, candidate: &Candidate) -> f64 {
        match self {
            Self::Builtin(b) => b.value(candidate),
            Self::Custom(d) => d.value(job, candidate),
        }
    }

    /// Whether `value` is acceptable (see [`Builtin::check`]; a host's dimension must be finite).
    pub(crate) fn check(&self, worker: &WorkerId, value: f64) -> Result<(), Error> {
        match self {
            Self::Builtin(b) => b.check(worker, value),
            Self::Custom(d) => check_finite(d.name(), worker, value),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Candidate, Weights, WorkerKind};

    #[test]
    fn each_builtin_reads_its_own_field_and_checks_its_own_values() {
        let id = WorkerId::new("w1").unwrap();
        let candidate = Candidate::new(id.clone(), WorkerKind::Build)
            .with_load(0.25)
            .with_project_cache(true)
            .with_total_caches(7);
        let read: Vec<(&str, f64)> =
            Builtin::ALL.iter().map(|b| (b.name(), b.value(&candidate))).collect();
        assert_eq!(read, [("load", 0.25), ("has_cache", 1.0), ("total_caches", 7.0)]);
        assert_eq!(
            Builtin::Load.check(&id, -0.5),
            Err(Error::NegativeLoad { worker: id.clone(), value: -0.5 })
        );
        assert!(Builtin::TotalCaches.check(&id, 0.0).is_ok());
        assert!(matches!(
            Builtin::HasCache.check(&id, f64::NAN),
            Err(Error::InvalidMetric { dimension, .. }) if dimension == "has_cache"
        ));
    }

    #[test]
    fn weights_follow_the_builtin_order() {
        let weights = Weights::from_fn(|b| f64::from(b as u8) + 1.0);
        assert_eq!(weights, Weights { load: 1.0, has_cache: 2.0, total_caches: 3.0 });
        let listed: Vec<(Builtin, f64)> = weights.iter().collect();
        assert_eq!(
            listed,
            [(Builtin::Load, 1.0), (Builtin::HasCache, 2.0), (Builtin::TotalCaches, 3.0)]
        );
    }
}
