use plus_core::WorkerId;

/// Why a scheduler could not be built or a job could not be placed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A weight is negative, NaN or infinite.
    #[error("weight of dimension `{dimension}` must be a finite number >= 0, found {weight}")]
    InvalidWeight {
        /// The dimension.
        dimension: String,
        /// The rejected weight.
        weight: f64,
    },
    /// Every weight is zero, so every candidate would score the same.
    #[error("all weights are zero: nothing would discriminate between workers")]
    AllZeroWeights,
    /// Two dimensions share a name, so explanations would be ambiguous.
    #[error("dimension `{0}` is configured twice")]
    DuplicateDimension(String),
    /// The candidate list was empty.
    #[error("no candidates to choose from")]
    NoCandidates,
    /// Every candidate was filtered out.
    #[error("none of the {total} candidates can take the job ({summary})")]
    NoneAdmitted {
        /// How many candidates there were.
        total: usize,
        /// Counts per reason, e.g. `3 wrong kind, 2 at capacity`.
        summary: String,
    },
    /// A dimension gave NaN or an infinity for a worker.
    #[error("dimension `{dimension}` of worker `{worker}` is {value}, not a finite number")]
    InvalidMetric {
        /// The worker.
        worker: WorkerId,
        /// The dimension.
        dimension: String,
        /// The value.
        value: f64,
    },
    /// A worker reported a negative load.
    #[error("load of worker `{worker}` is negative: {value}")]
    NegativeLoad {
        /// The worker.
        worker: WorkerId,
        /// The load.
        value: f64,
    },
}
