//! Comparing replicas (Meituan's code-hosting platform talk): who is behind, and whether any two disagree.

use crate::ids::{LogIndex, NodeId};
use crate::node::Inspection;

/// What [`compare`] found.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct InspectionReport {
    /// The highest applied index among the replicas.
    pub newest: LogIndex,
    /// Replicas behind the newest, with how many entries.
    pub behind: Vec<(NodeId, u64)>,
    /// Pairs of replicas at the same applied index with different contents: this must never
    /// happen, and means a bug or corrupted storage.
    pub divergent: Vec<(NodeId, NodeId, LogIndex)>,
}

impl InspectionReport {
    /// Every replica at the same index with the same content.
    #[must_use]
    pub fn identical(&self) -> bool {
        self.behind.is_empty() && self.divergent.is_empty()
    }
}

/// Compares replicas' inspections.
#[must_use]
pub fn compare(inspections: &[Inspection]) -> InspectionReport {
    let newest = inspections.iter().map(|i| i.applied).max().unwrap_or(0);
    let behind = inspections
        .iter()
        .filter(|i| i.applied < newest)
        .map(|i| (i.node, newest - i.applied))
        .collect();
    let mut divergent = Vec::new();
    for (k, a) in inspections.iter().enumerate() {
        for b in &inspections[k + 1..] {
            if a.applied == b.applied && a.digest != b.digest {
                divergent.push((a.node, b.node, a.applied));
            }
        }
    }
    InspectionReport { newest, behind, divergent }
}
