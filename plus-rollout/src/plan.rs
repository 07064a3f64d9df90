//! The batch plan: a pure function from a group of hosts and a config to bastion + batches.

use std::fmt;

use plus_core::{HostId, Ratio};

/// Why a plan could not be made.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The group has no hosts.
    #[error("the group has no hosts: there is nothing to plan")]
    EmptyGroup,
    /// More bastion hosts were asked for than the group can deploy.
    #[error("a bastion of {bastion} hosts was asked for, but only {deployable} can be deployed")]
    BastionLargerThanGroup {
        /// Hosts asked for.
        bastion: usize,
        /// Hosts in service.
        deployable: usize,
    },
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

/// Whether a host can take part in a release.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Availability {
    /// In traffic and reachable: deployable.
    InService,
    /// An operator pulled it out of traffic; a release must not put it back.
    PulledOut,
    /// Unreachable or marked down.
    Down,
}

/// One host of a group as the planner sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupHost {
    /// The host.
    pub id: HostId,
    /// Whether it can take part.
    pub availability: Availability,
}

impl GroupHost {
    /// An in-service host.
    #[must_use]
    pub fn in_service(id: HostId) -> Self {
        Self { id, availability: Availability::InService }
    }
}

/// Why a host is not in the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[non_exhaustive]
pub enum Exclusion {
    /// An operator pulled it out of traffic.
    PulledOut,
    /// It is down.
    Down,
}

impl fmt::Display for Exclusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::PulledOut => "pulled out of traffic by an operator",
            Self::Down => "host is down",
        })
    }
}

/// Which hosts form the bastion batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bastion {
    /// The first `n` deployable hosts in group order (default 1; 0 for no bastion).
    Count(usize),
    /// These hosts, chosen by the caller.
    Hosts(Vec<HostId>),
}

impl Default for Bastion {
    fn default() -> Self {
        Self::Count(1)
    }
}

/// How the hosts after the bastion are split.
#[derive(Debug, Clone, PartialEq)]
pub enum Split {
    /// As few batches as the cap allows, sizes differing by at most one, larger first.
    Even,
    /// Explicit steps as fractions of the hosts after the bastion (`10%+30%+60%`); they must add
    /// up to 100% and none may exceed the max pull-out ratio.
    Ramp(Vec<Ratio>),
}

/// What the planner needs besides the group.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanConfig {
    /// The bastion. Default one host.
    pub bastion: Bastion,
    /// The group's maximum pull-out ratio: no batch takes more than
    /// `max(1, floor(max_ratio x deployable hosts))` hosts out of traffic. Default 25%.
    pub max_ratio: Ratio,
    /// How to split the rest. Default [`Split::Even`].
    pub split: Split,
}

impl Default for PlanConfig {
    fn default() -> Self {
        Self { bastion: Bastion::default(), max_ratio: quarter(), split: Split::Even }
    }
}

fn quarter() -> Ratio {
    Ratio::new(0.25).expect("0.25 is a valid ratio")
}

impl PlanConfig {
    /// Tars' (Ctrip's release system) rollback: no bastion, 50% batches (and, in [`ReleaseConfig::rollback`],
    /// no waits).
    ///
    /// [`ReleaseConfig::rollback`]: crate::ReleaseConfig::rollback
    #[must_use]
    pub fn rollback() -> Self {
        Self {
            bastion: Bastion::Count(0),
            max_ratio: Ratio::new(0.5).expect("0.5 is a valid ratio"),
            split: Split::Even,
        }
    }
}

/// Parses a ramp such as `10%+30%+60%` (or `0.1+0.3+0.6`).
///
/// # Errors
/// [`PlanError::InvalidRamp`] when a step is not a ratio.
pub fn parse_ramp(text: &str) -> Result<Vec<Ratio>, PlanError> {
    text.split('+')
        .map(|step| {
            step.trim()
                .parse::<Ratio>()
                .map_err(|err| PlanError::InvalidRamp(format!("step `{}`: {err}", step.trim())))
        })
        .collect()
}

/// The outcome of planning: who goes when, and who stays out. Made by [`plan`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Plan {
    /// The bastion batch (possibly empty).
    pub bastion: Vec<HostId>,
    /// The batches after the bastion, in order.
    pub batches: Vec<Vec<HostId>>,
    /// Hosts left out, with the reason, in group order.
    pub excluded: Vec<(HostId, Exclusion)>,
    /// The most hosts any batch may hold.
    pub cap: usize,
    /// The group's max pull-out ratio the plan was made with; the release's brake uses it.
    pub max_ratio: Ratio,
}

impl Plan {
    /// Hosts the plan deploys, bastion included.
    #[must_use]
    pub fn host_count(&self) -> usize {
        self.bastion.len() + self.batches.iter().map(Vec::len).sum::<usize>()
    }

    /// Batch sizes as `rollout_plan` prints them: `1 | 5 5 5 4`, or `5 5 5 5` without a bastion.
    #[must_use]
    pub fn sizes(&self) -> String {
        let rest: Vec<String> = self.batches.iter().map(|b| b.len().to_string()).collect();
        if self.bastion.is_empty() {
            rest.join(" ")
        } else if rest.is_empty() {
            format!("{} |", self.bastion.len())
        } else {
            format!("{} | {}", self.bastion.len(), rest.join(" "))
        }
    }
}

/// Plans a release of `group` under `config`. Pure: no I/O, same input, same plan.
///
/// # Errors
/// [`PlanError`] for an empty group, an unknown or excluded bastion host, a duplicate host, a
/// bastion larger than the cap, or a ramp that does not add up or has a step above the max ratio.
pub fn plan(group: &[GroupHost], config: &PlanConfig) -> Result<Plan, PlanError> {
    if group.is_empty() {
        return Err(PlanError::EmptyGroup);
    }
    let mut seen = std::collections::HashSet::with_capacity(group.len());
    let mut deployable = Vec::with_capacity(group.len());
    let mut excluded = Vec::new();
    for host in group {
        if !seen.insert(&host.id) {
            return Err(PlanError::DuplicateHost(host.id.clone()));
        }
        match host.availability {
            Availability::InService => deployable.push(host.id.clone()),
            Availability::PulledOut => excluded.push((host.id.clone(), Exclusion::PulledOut)),
            Availability::Down => excluded.push((host.id.clone(), Exclusion::Down)),
        }
    }
    let cap = config.max_ratio.floor_of(deployable.len()).max(1);
    let bastion: Vec<HostId> = match &config.bastion {
        Bastion::Count(n) if *n > deployable.len() => {
            return Err(PlanError::BastionLargerThanGroup {
                bastion: *n,
                deployable: deployable.len(),
            });
        }
        Bastion::Count(n) => deployable.iter().take(*n).cloned().collect(),
        Bastion::Hosts(hosts) => {
            for h in hosts {
                if let Some((_, why)) = excluded.iter().find(|(e, _)| e == h) {
                    return Err(PlanError::BastionExcluded { host: h.clone(), reason: *why });
                }
                if !deployable.contains(h) {
                    return Err(PlanError::UnknownBastion(h.clone()));
                }
            }
            hosts.clone()
        }
    };
    if bastion.len() > cap {
        return Err(PlanError::BastionTooLarge { bastion: bastion.len(), cap });
    }
    let rest: Vec<HostId> = deployable.into_iter().filter(|h| !bastion.contains(h)).collect();
    let sizes = match &config.split {
        Split::Even => even_sizes(rest.len(), cap),
        Split::Ramp(steps) => ramp_sizes(rest.len(), cap, steps, config.max_ratio)?,
    };
    let mut batches = Vec::with_capacity(sizes.len());
    let mut hosts = rest.into_iter();
    for size in sizes {
        batches.push(hosts.by_ref().take(size).collect());
    }
    Ok(Plan { bastion, batches, excluded, cap, max_ratio: config.max_ratio })
}

/// The plan that rolls back what a release changed (Ctrip's rollback: no bastion, batches of
/// half the hosts), touching only hosts the release changed or took out of traffic: those that
/// ran Install or later (succeeded, waiting for bake, running, failed or cancelled at Install,
/// Verify or Markup), and those it stopped after marking them down and before installing
/// (at Markdown or Download), which only need putting back into traffic
/// ([`stopped_out_of_traffic`]: a rollback treats them as in doubt, so their Precheck finds
/// them on the previous version and they are marked up). A host already on the target, or
/// stopped at Precheck, is left as it is. `None` when there is nothing to put back.
///
/// The group's pull-out cap still holds: every host that is out of traffic already goes back
/// in the first batch, with as many others as the cap leaves room for, and the later batches
/// hold at most `cap` (and half the hosts). Out of traffic at once is never more than `cap`, or
/// than the hosts already out if those are more.
#[must_use]
pub fn rollback_plan(report: &crate::ReleaseReport, cap: usize) -> Option<Plan> {
    use crate::HostState;
    let mut out = Vec::new();
    let mut in_service = Vec::new();
    for (host, state) in &report.hosts {
        match state {
            HostState::Succeeded => in_service.push(host.clone()),
            HostState::AwaitingBake => out.push(host.clone()),
            HostState::Failed { step, .. }
            | HostState::Cancelled { step }
            | HostState::Running(step)
                if *step != crate::Step::Precheck =>
            {
                out.push(host.clone());
            }
            _ => {}
        }
    }
    let total = out.len() + in_service.len();
    if total == 0 {
        return None;
    }
    let room = cap.max(1).min(total.div_ceil(2));
    let mut batches: Vec<Vec<HostId>> = Vec::new();
    let mut rest = in_service.into_iter();
    if !out.is_empty() {
        // Out already: they go first, with as many others as the room leaves.
        let others = room.saturating_sub(out.len());
        let mut first = out;
        first.extend(rest.by_ref().take(others));
        batches.push(first);
    }
    let rest: Vec<HostId> = rest.collect();
    let mut hosts = rest.into_iter();
    for size in even_sizes(hosts.len(), room) {
        batches.push(hosts.by_ref().take(size).collect());
    }
    let max_ratio = Ratio::new(0.5).expect("0.5 is a valid ratio");
    let cap = batches.iter().map(Vec::len).max().unwrap_or(1);
    Some(Plan { bastion: Vec::new(), batches, excluded: Vec::new(), cap, max_ratio })
}

/// The hosts a stopped release left out of traffic without installing anything on them
/// (stopped at Markdown or Download): a rollback only puts them back into traffic.
#[must_use]
pub fn stopped_out_of_traffic(report: &crate::ReleaseReport) -> Vec<HostId> {
    use crate::{HostState, Step};
    report
        .hosts
        .iter()
        .filter(|(_, state)| {
            matches!(
                state,
                HostState::Failed { step: Step::Markdown | Step::Download, .. }
                    | HostState::Cancelled { step: Step::Markdown | Step::Download }
                    | HostState::Running(Step::Markdown | Step::Download)
            )
        })
        .map(|(host, _)| host.clone())
        .collect()
}

/// The fewest batches of at most `cap` for `n` hosts, sizes differing by at most one, larger
/// first.
fn even_sizes(n: usize, cap: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let count = n.div_ceil(cap);
    let (base, extra) = (n / count, n % count);
    (0..count).map(|i| base + usize::from(i < extra)).collect()
}

fn ramp_sizes(
    n: usize,
    cap: usize,
    steps: &[Ratio],
    max_ratio: Ratio,
) -> Result<Vec<usize>, PlanError> {
    if steps.is_empty() {
        return Err(PlanError::InvalidRamp("a ramp needs at least one step".to_owned()));
    }
    if let Some(step) = steps.iter().find(|s| s.get() > max_ratio.get() + 1e-12) {
        return Err(PlanError::RampStepAboveMax { step: *step, max_ratio });
    }
    let total: f64 = steps.iter().map(|s| s.get()).sum();
    if (total - 1.0).abs() > 1e-9 {
        return Err(PlanError::InvalidRamp(format!(
            "steps add up to {}%, not 100%",
            (total * 1e6).round() / 1e4
        )));
    }
    // Cumulative targets rounded to the nearest host, so the steps' rounding errors do not pile
    // up in the last batch.
    let mut sizes = Vec::with_capacity(steps.len());
    let mut cumulative = 0.0;
    let mut done = 0;
    for (i, step) in steps.iter().enumerate() {
        cumulative += step.get();
        let target = if i + 1 == steps.len() {
            n
        } else {
            ((cumulative * n as f64).round() as usize).min(n)
        };
        let size = target.saturating_sub(done);
        if size > cap {
            return Err(PlanError::RampBatchAboveCap { step: i + 1, size, cap });
        }
        if size > 0 {
            sizes.push(size);
        }
        done += size;
    }
    Ok(sizes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(n: usize) -> Vec<GroupHost> {
        (0..n)
            .map(|i| GroupHost::in_service(HostId::new(format!("host-{i:02}")).unwrap()))
            .collect()
    }

    fn pct(p: f64) -> Ratio {
        Ratio::from_percent(p).unwrap()
    }

    /// `check(hosts, bastion, ratio%, expected sizes)`.
    fn check(n: usize, bastion: usize, ratio: f64, expected: &str) {
        let config = PlanConfig {
            bastion: Bastion::Count(bastion),
            max_ratio: pct(ratio),
            split: Split::Even,
        };
        let plan = plan(&group(n), &config).unwrap();
        assert_eq!(plan.sizes(), expected, "{n} hosts, bastion {bastion}, {ratio}%");
        assert!(plan.batches.iter().all(|b| b.len() <= plan.cap));
        assert_eq!(plan.host_count(), n);
    }

    #[test]
    fn plan_table() {
        check(20, 1, 25.0, "1 | 5 5 5 4");
        check(100, 1, 5.0, &format!("1 | {}4", "5 ".repeat(19)));
        check(10, 0, 50.0, "5 5");
        check(1, 1, 25.0, "1 |");
        check(3, 1, 10.0, "1 | 1 1");
        check(7, 2, 30.0, "2 | 2 2 1");
        check(21, 1, 25.0, "1 | 5 5 5 5");
    }

    #[test]
    fn an_empty_group_is_an_error_but_an_all_excluded_one_is_a_plan() {
        assert_eq!(plan(&[], &PlanConfig::default()), Err(PlanError::EmptyGroup));
        let down = vec![GroupHost {
            availability: Availability::Down,
            ..GroupHost::in_service(HostId::new("h").unwrap())
        }];
        let p = plan(&down, &PlanConfig { bastion: Bastion::Count(0), ..PlanConfig::default() })
            .unwrap();
        assert_eq!((p.host_count(), p.excluded.len()), (0, 1));
        // A bastion larger than what can be deployed is refused, not clamped.
        let config = PlanConfig {
            bastion: Bastion::Count(3),
            max_ratio: Ratio::ONE,
            ..PlanConfig::default()
        };
        assert_eq!(
            plan(&group(2), &config),
            Err(PlanError::BastionLargerThanGroup { bastion: 3, deployable: 2 })
        );
    }

    #[test]
    fn exclusions_are_listed_and_skipped() {
        let mut hosts = group(6);
        hosts[0].availability = Availability::PulledOut;
        hosts[3].availability = Availability::Down;
        let p =
            plan(&hosts, &PlanConfig { max_ratio: pct(50.0), ..PlanConfig::default() }).unwrap();
        assert_eq!(p.bastion[0].as_str(), "host-01");
        assert_eq!(p.sizes(), "1 | 2 1");
        let excluded: Vec<(&str, Exclusion)> =
            p.excluded.iter().map(|(h, e)| (h.as_str(), *e)).collect();
        assert_eq!(excluded, [("host-00", Exclusion::PulledOut), ("host-03", Exclusion::Down)]);
    }

    #[test]
    fn chosen_bastion_and_its_errors() {
        let hosts = group(4);
        let chosen = Bastion::Hosts(vec![HostId::new("host-02").unwrap()]);
        let p =
            plan(&hosts, &PlanConfig { bastion: chosen, max_ratio: pct(50.0), split: Split::Even })
                .unwrap();
        assert_eq!(p.bastion[0].as_str(), "host-02");
        assert_eq!(
            p.batches,
            vec![vec![hosts[0].id.clone(), hosts[1].id.clone()], vec![hosts[3].id.clone()]]
        );
        let unknown = Bastion::Hosts(vec![HostId::new("nope").unwrap()]);
        assert_eq!(
            plan(&hosts, &PlanConfig { bastion: unknown, ..PlanConfig::default() })
                .unwrap_err()
                .to_string(),
            "bastion host `nope` is not in the group"
        );
        assert!(matches!(
            plan(
                &hosts,
                &PlanConfig {
                    bastion: Bastion::Count(2),
                    max_ratio: pct(25.0),
                    split: Split::Even
                }
            ),
            Err(PlanError::BastionTooLarge { bastion: 2, cap: 1 })
        ));
        let mut dup = group(2);
        dup[1].id = dup[0].id.clone();
        assert!(matches!(plan(&dup, &PlanConfig::default()), Err(PlanError::DuplicateHost(_))));
    }

    #[test]
    fn ramps() {
        let ramp = parse_ramp("10%+30%+60%").unwrap();
        let config = PlanConfig {
            bastion: Bastion::Count(0),
            max_ratio: pct(60.0),
            split: Split::Ramp(ramp.clone()),
        };
        assert_eq!(plan(&group(20), &config).unwrap().sizes(), "2 6 12");
        let too_low = PlanConfig { max_ratio: pct(25.0), ..config.clone() };
        assert_eq!(
            plan(&group(20), &too_low).unwrap_err().to_string(),
            "ramp step 30% is above the max pull-out ratio 25%"
        );
        let short = PlanConfig { split: Split::Ramp(parse_ramp("10%+30%").unwrap()), ..config };
        assert_eq!(
            plan(&group(20), &short).unwrap_err().to_string(),
            "invalid ramp: steps add up to 40%, not 100%"
        );
        assert!(parse_ramp("10%+x").is_err());
    }

    #[test]
    fn rollback_preset() {
        assert_eq!(plan(&group(10), &PlanConfig::rollback()).unwrap().sizes(), "5 5");
    }

    mod proptests {
        use super::*;
        use proptest::prelude::*;

        proptest! {
            #[test]
            fn batches_never_exceed_the_cap_and_cover_every_host(n in 0usize..3000, bastion in 0usize..3, percent in 1u32..=100) {
                let config = PlanConfig { bastion: Bastion::Count(bastion), max_ratio: pct(f64::from(percent)), split: Split::Even };
                match plan(&group(n), &config) {
                    Ok(p) => {
                        prop_assert!(p.batches.iter().all(|b| !b.is_empty() && b.len() <= p.cap));
                        prop_assert_eq!(p.host_count(), n);
                        let sizes: Vec<usize> = p.batches.iter().map(Vec::len).collect();
                        prop_assert!(sizes.windows(2).all(|w| w[0] >= w[1] && w[0] - w[1] <= 1));
                        prop_assert_eq!(sizes.len(), (n - p.bastion.len()).div_ceil(p.cap));
                    }
                    Err(PlanError::BastionTooLarge { .. }) => prop_assert!(bastion > 1),
                    Err(PlanError::EmptyGroup) => prop_assert_eq!(n, 0),
                    Err(PlanError::BastionLargerThanGroup { .. }) => prop_assert!(bastion > n),
                    Err(e) => prop_assert!(false, "{e}"),
                }
            }
        }
    }
}
