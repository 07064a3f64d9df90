//! The brake: a policy checked before every batch.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::Arc;

use plus_core::{HostId, Ratio};

/// One host reaching success or failure, as the brake sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct HostFinish {
    /// The host.
    pub host: Arc<HostId>,
    /// Whether it failed (a step failed or timed out); otherwise it succeeded or was already on
    /// the target version.
    pub failed: bool,
}

/// What a brake policy sees before a batch starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrakeView<'a> {
    /// Hosts in the plan, bastion included (excluded hosts are not counted).
    pub planned: usize,
    /// Hosts that have failed so far (they stay out of traffic).
    pub failed: usize,
    /// Hosts that have succeeded or were already on the target version.
    pub done: usize,
    /// Size of the batch about to start.
    pub next_batch: usize,
    /// The group's max pull-out ratio.
    pub max_ratio: Ratio,
    /// Every success and failure so far, in the order the hosts finished. A retried host
    /// appears once per attempt. Hosts the release cancelled or never started are not here.
    pub finished: &'a [HostFinish],
}

impl BrakeView<'_> {
    /// The most hosts the plan lets out of service at once: `floor(planned x max_ratio)`, at
    /// least one, as the plan computes its batches' cap (a group of two at 25% still moves,
    /// one host at a time).
    #[must_use]
    pub fn cap(&self) -> usize {
        self.max_ratio.floor_of(self.planned).max(1)
    }
}

/// Decides, before each batch, whether the release must stop and wait for a person.
///
/// # Contract
/// Pure and cheap: it runs once per batch, inside the release core.
pub trait BrakePolicy: Send + Sync + fmt::Debug {
    /// `Some(reason)` to brake.
    fn check(&self, view: &BrakeView<'_>) -> Option<String>;
}

/// The rule of Tars, Ctrip's release system (the default): brake when failed hosts / planned hosts has reached a threshold.
///
/// It counts failures, not hosts out of service: a host that failed its check stays out of
/// traffic while the next batch starts (below the threshold the release goes on), so failed
/// hosts and a full batch together may take more hosts out of traffic than the plan's pull-out
/// cap. Use [`AvailabilityFloor`] where the cap must hold through failures too.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct FailureRate {
    /// The threshold; `None` means the group's max pull-out ratio.
    pub threshold: Option<Ratio>,
}

impl BrakePolicy for FailureRate {
    fn check(&self, view: &BrakeView<'_>) -> Option<String> {
        if view.failed == 0 || view.planned == 0 {
            return None;
        }
        let threshold = self.threshold.unwrap_or(view.max_ratio);
        let rate = view.failed as f64 / view.planned as f64;
        (rate >= threshold.get()).then(|| {
            format!(
                "{} of {} hosts failed ({:.1}%), at or above the {} threshold",
                view.failed,
                view.planned,
                rate * 100.0,
                threshold
            )
        })
    }
}

/// Tars' rule and Kubernetes' maxUnavailable: never start a batch that would leave fewer hosts
/// in service than `planned - cap`, counting failed hosts as out of service, where `cap` is
/// the plan's pull-out cap ([`BrakeView::cap`]: `floor(planned x max_ratio)`, at least one).
/// Failed hosts and the batch together never exceed what the plan lets out at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AvailabilityFloor;

impl BrakePolicy for AvailabilityFloor {
    fn check(&self, view: &BrakeView<'_>) -> Option<String> {
        let floor = view.planned.saturating_sub(view.cap());
        let in_service = view.planned.saturating_sub(view.failed).saturating_sub(view.next_batch);
        (in_service < floor).then(|| {
            format!(
                "starting a batch of {} would leave {} of {} hosts in service ({} failed), below the floor of {}",
                view.next_batch, in_service, view.planned, view.failed, floor
            )
        })
    }
}

/// Brake when the last `limit` hosts to finish all failed: a run of failures says something is
/// wrong with the version even while the overall rate is still under its threshold (early in a
/// large group, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConsecutiveFailures {
    /// How many failures in a row brake.
    pub limit: NonZeroUsize,
}

impl BrakePolicy for ConsecutiveFailures {
    fn check(&self, view: &BrakeView<'_>) -> Option<String> {
        let limit = self.limit.get();
        let recent = view.finished.get(view.finished.len().checked_sub(limit)?..)?;
        recent.iter().all(|h| h.failed).then(|| {
            let hosts: Vec<&str> = recent.iter().map(|h| h.host.as_str()).collect();
            format!("the last {limit} host(s) to finish all failed: {}", hosts.join(", "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(planned: usize, failed: usize, next_batch: usize) -> BrakeView<'static> {
        BrakeView {
            planned,
            failed,
            done: 0,
            next_batch,
            max_ratio: Ratio::from_percent(25.0).unwrap(),
            finished: &[],
        }
    }

    fn finishes(failed: &[bool]) -> Vec<HostFinish> {
        failed
            .iter()
            .enumerate()
            .map(|(i, &failed)| HostFinish {
                host: Arc::new(HostId::new(format!("h{i}")).unwrap()),
                failed,
            })
            .collect()
    }

    #[test]
    fn consecutive_failures_table() {
        let policy = ConsecutiveFailures { limit: NonZeroUsize::new(2).unwrap() };
        let check = |history: &[bool]| {
            let finished = finishes(history);
            policy.check(&BrakeView { finished: &finished, ..view(10, 0, 2) })
        };
        assert_eq!(check(&[]), None);
        assert_eq!(check(&[true]), None, "fewer finishes than the limit");
        assert_eq!(check(&[true, false]), None);
        assert_eq!(check(&[true, false, true]), None, "failures not in a row");
        assert_eq!(
            check(&[false, true, true]).as_deref(),
            Some("the last 2 host(s) to finish all failed: h1, h2")
        );
        assert_eq!(check(&[true, true, false]), None, "a success ends the run");
    }

    #[test]
    fn failure_rate_table() {
        let policy = FailureRate::default();
        assert_eq!(policy.check(&view(20, 0, 5)), None);
        assert_eq!(policy.check(&view(20, 4, 5)), None);
        assert_eq!(
            policy.check(&view(20, 5, 5)).as_deref(),
            Some("5 of 20 hosts failed (25.0%), at or above the 25% threshold")
        );
        let strict = FailureRate { threshold: Some(Ratio::from_percent(5.0).unwrap()) };
        assert!(strict.check(&view(20, 1, 5)).is_some());
    }

    #[test]
    fn availability_floor_table() {
        let policy = AvailabilityFloor;
        // 20 hosts at 25%: floor 15; a batch of 5 exactly fits with no failures.
        assert_eq!(policy.check(&view(20, 0, 5)), None);
        assert_eq!(
            policy.check(&view(20, 1, 5)).as_deref(),
            Some(
                "starting a batch of 5 would leave 14 of 20 hosts in service (1 failed), below the floor of 15"
            )
        );
        assert_eq!(policy.check(&view(20, 1, 4)), None);
        // 2 hosts at 25%: the plan moves one at a time, and so may the release.
        assert_eq!(policy.check(&view(2, 0, 1)), None);
        assert!(policy.check(&view(2, 1, 1)).is_some(), "one failed and one more out: both");
    }
}
