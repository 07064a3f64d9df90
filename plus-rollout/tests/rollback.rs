//! Rolling back what a release changed: the plan never holds more than the group's cap in a
//! batch and never touches a host the release did not change.

use std::collections::BTreeSet;

use plus_core::HostId;
use plus_rollout::{HostState, Phase, ReleaseReport, Step, rollback_plan};
use proptest::prelude::*;

fn state() -> impl Strategy<Value = HostState> {
    let step = prop::sample::select(Step::ALL.to_vec());
    prop_oneof![
        Just(HostState::Pending),
        Just(HostState::Succeeded),
        Just(HostState::AlreadyOnTarget),
        Just(HostState::AwaitingBake),
        Just(HostState::NotStarted),
        step.clone().prop_map(|step| HostState::Failed { step, reason: "boom".into() }),
        step.clone().prop_map(|step| HostState::Cancelled { step }),
        step.prop_map(HostState::Running),
    ]
}

fn report(states: &[HostState]) -> ReleaseReport {
    ReleaseReport {
        outcome: None,
        phase: Phase::Braked { reason: "analysis".into() },
        hosts: states
            .iter()
            .enumerate()
            .map(|(i, s)| (HostId::new(format!("host-{i:03}")).unwrap(), s.clone()))
            .collect(),
        excluded: Vec::new(),
        batches: Vec::new(),
        analyses: Vec::new(),
        rollback: None,
        degraded: Vec::new(),
    }
}

/// Whether the release changed the host: it ran Install or later.
fn changed(state: &HostState) -> bool {
    match state {
        HostState::Succeeded | HostState::AwaitingBake => true,
        HostState::Failed { step, .. }
        | HostState::Cancelled { step }
        | HostState::Running(step) => {
            matches!(step, Step::Install | Step::Verify | Step::Markup)
        }
        _ => false,
    }
}

proptest! {
    #[test]
    fn a_rollback_stays_under_the_cap_and_touches_only_changed_hosts(
        states in proptest::collection::vec(state(), 0..60),
        cap in 1usize..10,
    ) {
        let report = report(&states);
        let expected: BTreeSet<String> = report
            .hosts
            .iter()
            .filter(|(_, s)| changed(s))
            .map(|(h, _)| h.to_string())
            .collect();
        let Some(plan) = rollback_plan(&report, cap) else {
            prop_assert!(expected.is_empty());
            return Ok(());
        };
        prop_assert!(plan.bastion.is_empty(), "no bastion");
        let mut seen = BTreeSet::new();
        for batch in &plan.batches {
            prop_assert!(batch.len() <= cap, "a batch of {} over the cap {}", batch.len(), cap);
            prop_assert!(batch.len() <= expected.len().div_ceil(2), "at most half at once");
            for host in batch {
                prop_assert!(seen.insert(host.to_string()), "{} twice", host);
            }
        }
        prop_assert_eq!(seen, expected);
    }
}
