use std::fmt;

use crate::candidate::{Candidate, Job};

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

/// The dimensions a scheduler scores with: the three built-ins of talk 000, or a host's own.
#[derive(Debug)]
pub(crate) enum DimensionKind {
    Load,
    HasCache,
    TotalCaches,
    Custom(Box<dyn Dimension>),
}

impl DimensionKind {
    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Load => "load",
            Self::HasCache => "has_cache",
            Self::TotalCaches => "total_caches",
            Self::Custom(d) => d.name(),
        }
    }

    pub(crate) fn direction(&self) -> Direction {
        match self {
            Self::Load | Self::TotalCaches => Direction::SmallerIsBetter,
            Self::HasCache => Direction::LargerIsBetter,
            Self::Custom(d) => d.direction(),
        }
    }

    /// The raw value of `candidate`; the `match` is the same for every candidate of a decision,
    /// so the branch predictor makes it free.
    #[inline]
    pub(crate) fn value(&self, job: &Job<'_>, candidate: &Candidate) -> f64 {
        match self {
            Self::Load => candidate.load,
            Self::HasCache => f64::from(u8::from(candidate.has_project_cache)),
            // Exact up to 2^53 caches, far beyond any fleet.
            Self::TotalCaches => candidate.total_caches as f64,
            Self::Custom(d) => d.value(job, candidate),
        }
    }
}
