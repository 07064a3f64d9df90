/// What was wrong with a value handed to one of `plus-core`'s constructors.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An identifier was empty, too long, or held a character outside its alphabet.
    #[error("invalid {kind} `{value}`: {reason}")]
    InvalidId {
        /// Which identifier: `application code`, `host id` or `worker id`.
        kind: &'static str,
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A ratio was not a number in `[0, 1]` (or a percentage in `[0%, 100%]`).
    #[error("invalid ratio `{value}`: {reason}")]
    InvalidRatio {
        /// The rejected text or number.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A version string was empty or held whitespace or control characters.
    #[error("invalid version `{value}`: {reason}")]
    InvalidVersion {
        /// The rejected text.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}
