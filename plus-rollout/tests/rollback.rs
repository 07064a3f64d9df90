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

/// Whether a rollback must touch the host: the release installed on it, or took it out of
/// traffic (it ran Markdown or later).
fn touched(state: &HostState) -> bool {
    match state {
        HostState::Succeeded | HostState::AwaitingBake => true,
        HostState::Failed { step, .. }
        | HostState::Cancelled { step }
        | HostState::Running(step) => *step != Step::Precheck,
        _ => false,
    }
}

/// Whether the host is out of traffic when the release stops.
fn out(state: &HostState) -> bool {
    touched(state) && *state != HostState::Succeeded
}

proptest! {
    #[test]
    fn a_rollback_holds_the_cap_and_touches_only_hosts_the_release_touched(
        states in proptest::collection::vec(state(), 0..60),
        cap in 1usize..10,
    ) {
        let report = report(&states);
        let expected: BTreeSet<String> =
            report.hosts.iter().filter(|(_, s)| touched(s)).map(|(h, _)| h.to_string()).collect();
        let out_now: BTreeSet<String> =
            report.hosts.iter().filter(|(_, s)| out(s)).map(|(h, _)| h.to_string()).collect();
        let Some(plan) = rollback_plan(&report, cap) else {
            prop_assert!(expected.is_empty());
            return Ok(());
        };
        prop_assert!(plan.bastion.is_empty(), "no bastion");
        let half = expected.len().div_ceil(2);
        let mut seen = BTreeSet::new();
        for (i, batch) in plan.batches.iter().enumerate() {
            let names: BTreeSet<String> = batch.iter().map(ToString::to_string).collect();
            if i == 0 {
                // Every host out already goes back first, with others only up to the cap.
                prop_assert!(names.is_superset(&out_now), "{:?} not all in {:?}", out_now, names);
                prop_assert!(batch.len() <= out_now.len().max(cap.min(half)), "first batch of {}", batch.len());
            } else {
                prop_assert!(batch.len() <= cap.min(half).max(1), "a batch of {} over the cap {}", batch.len(), cap);
                prop_assert!(names.is_disjoint(&out_now));
            }
            for host in batch {
                prop_assert!(seen.insert(host.to_string()), "{} twice", host);
            }
        }
        prop_assert_eq!(seen, expected);
    }
}
