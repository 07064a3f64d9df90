use plus_core::{HostId, Ratio};

use crate::plan::Exclusion;

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A host appears twice in the group.
    #[error("host `{0}` appears twice in the group")]
    DuplicateHost(HostId),
    /// A chosen bastion host is not in the group.
    #[error("bastion host `{0}` is not in the group")]
    UnknownBastion(HostId),
    /// A chosen bastion host is excluded from the plan.
    #[error("bastion host `{host}` cannot be used: {reason}")]
    BastionExcluded {
        /// The host.
        host: HostId,
        /// Why it is excluded.
        reason: Exclusion,
    },
    /// The bastion holds more hosts than one batch may.
    #[error("the bastion has {bastion} hosts but a batch may hold at most {cap}")]
    BastionTooLarge {
        /// Bastion size.
        bastion: usize,
        /// The cap.
        cap: usize,
    },
    /// A ramp step is above the max pull-out ratio.
    #[error("ramp step {step} is above the max pull-out ratio {max_ratio}")]
    RampStepAboveMax {
        /// The step.
        step: Ratio,
        /// The group's max pull-out ratio.
        max_ratio: Ratio,
    },
    /// Rounding made a ramp step's batch larger than the cap.
    #[error("ramp step {step} gives a batch of {size} hosts, above the cap of {cap}")]
    RampBatchAboveCap {
        /// 1-based step number.
        step: usize,
        /// Its size.
        size: usize,
        /// The cap.
        cap: usize,
    },
    /// A ramp is malformed or does not add up to 100%.
    #[error("invalid ramp: {0}")]
    InvalidRamp(String),
}
