//! Analysis between batches: a release judges itself by metrics before it goes on (what Argo
//! Rollouts' AnalysisRun and Flagger's canary analysis do), pure and deterministic.
//!
//! Each [`Check`] is a named query a host-provided provider answers with a number (or no data,
//! or an error), sampled `count` times `interval` apart. A sample that meets the failure
//! condition is a failure; one that meets the success condition (or any sample, without one) a
//! success; anything else (no data included) is inconclusive. A check fails once its failures
//! pass `failure_limit`, errs once its provider failed more than `consecutive_error_limit`
//! times in a row, and otherwise ends after `count` samples: passed when every sample
//! succeeded, inconclusive if not.
//!
//! The run's verdict ([`AnalysisRun::verdict`]) comes from the checks that are not dry-run:
//! failed as soon as one fails; once all have ended, passed when all passed, and a pause (with
//! why) when any was inconclusive or erred. A dry-run check is sampled, recorded and reported
//! like the others, but never decides and is never waited for. By construction, three bugs
//! Argo Rollouts' users reported cannot happen here: a run stuck while a dry-run check keeps
//! going, a dry-run failure shadowing a real one depending on their order, and a run aborted
//! because a metric returned no data (no data is inconclusive: a pause, for a person).

use std::fmt;
use std::time::Duration;

use plus_core::Timestamp;

/// A comparison a sample's value is held against.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Condition {
    /// `value < x`.
    Below(f64),
    /// `value <= x`.
    AtMost(f64),
    /// `value > x`.
    Above(f64),
    /// `value >= x`.
    AtLeast(f64),
}

impl Condition {
    /// Whether `value` meets it (a NaN meets none).
    #[must_use]
    pub fn holds(self, value: f64) -> bool {
        match self {
            Self::Below(x) => value < x,
            Self::AtMost(x) => value <= x,
            Self::Above(x) => value > x,
            Self::AtLeast(x) => value >= x,
        }
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Below(x) => write!(f, "< {x}"),
            Self::AtMost(x) => write!(f, "<= {x}"),
            Self::Above(x) => write!(f, "> {x}"),
            Self::AtLeast(x) => write!(f, ">= {x}"),
        }
    }
}

/// One metric check.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct Check {
    /// Its name, in events and reports.
    pub name: String,
    /// What the provider is asked (its own query language: a counter's URL, a PromQL query).
    pub query: String,
    /// A sample meeting it is a success (`None`: every sample not failing is).
    pub success: Option<Condition>,
    /// A sample meeting it is a failure.
    pub failure: Option<Condition>,
    /// Samples taken (at least one).
    pub count: u32,
    /// Between two samples (the first is taken at once).
    pub interval: Duration,
    /// Failures tolerated: one more fails the check.
    pub failure_limit: u32,
    /// Provider errors in a row tolerated: one more and the check errs.
    pub consecutive_error_limit: u32,
    /// Evaluated, recorded and reported, never deciding.
    pub dry_run: bool,
}

impl Check {
    /// A check of `query` named `name`: three samples a second apart, no failure tolerated,
    /// four provider errors in a row tolerated, no conditions yet.
    #[must_use]
    pub fn new(name: impl Into<String>, query: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            query: query.into(),
            success: None,
            failure: None,
            count: 3,
            interval: Duration::from_secs(1),
            failure_limit: 0,
            consecutive_error_limit: 4,
            dry_run: false,
        }
    }
}

/// What the provider answered for one sample: a value, no data (`Ok(None)`), or an error.
pub type Measurement = Result<Option<f64>, String>;

/// Where one check stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum CheckState {
    /// Samples still to take.
    Running,
    /// Every sample succeeded.
    Passed,
    /// Too many samples failed.
    Failed(String),
    /// It ended with samples that neither succeeded nor failed (no data, say).
    Inconclusive(String),
    /// Its provider failed too many times in a row.
    Errored(String),
}

impl CheckState {
    fn ended(&self) -> bool {
        !matches!(self, Self::Running)
    }
}

/// One check's progress.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct CheckProgress {
    /// The check.
    pub check: Check,
    /// Samples taken.
    pub samples: u32,
    /// Of which failed.
    pub failures: u32,
    /// Of which succeeded.
    pub successes: u32,
    /// Provider errors in a row, now.
    pub consecutive_errors: u32,
    /// The last value seen.
    pub last: Option<f64>,
    /// Where it stands.
    pub state: CheckState,
    /// When its next sample is due (while running).
    pub next_at: Timestamp,
}

/// The verdict of an analysis run.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub enum Verdict {
    /// Checks that decide are still sampling.
    Running,
    /// Every check that decides passed: go on.
    Passed,
    /// A check that decides failed: stop.
    Failed {
        /// The check.
        check: String,
        /// Why.
        reason: String,
    },
    /// Every check that decides ended, one inconclusive or erring: wait for a person.
    Inconclusive {
        /// The check.
        check: String,
        /// Why.
        reason: String,
    },
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Running => f.write_str("running"),
            Self::Passed => f.write_str("passed"),
            Self::Failed { check, reason } => write!(f, "check {check} failed: {reason}"),
            Self::Inconclusive { check, reason } => {
                write!(f, "check {check} inconclusive: {reason}")
            }
        }
    }
}

/// One run of a release's checks (between two batches).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct AnalysisRun {
    /// Each check's progress, in the release's order.
    pub checks: Vec<CheckProgress>,
}

impl AnalysisRun {
    /// A run of `checks` starting at `now`: each takes its first sample at once.
    #[must_use]
    pub fn new(checks: &[Check], now: Timestamp) -> Self {
        let checks = checks
            .iter()
            .map(|check| CheckProgress {
                check: Check { count: check.count.max(1), ..check.clone() },
                samples: 0,
                failures: 0,
                successes: 0,
                consecutive_errors: 0,
                last: None,
                state: CheckState::Running,
                next_at: now,
            })
            .collect();
        Self { checks }
    }

    /// The samples due at `now`: check indexes, in order.
    #[must_use]
    pub fn due(&self, now: Timestamp) -> Vec<usize> {
        (0..self.checks.len())
            .filter(|&i| self.wanted(i) && self.checks[i].next_at <= now)
            .collect()
    }

    /// When the next sample is due, if one still matters.
    #[must_use]
    pub fn next_due(&self) -> Option<Timestamp> {
        (0..self.checks.len()).filter(|&i| self.wanted(i)).map(|i| self.checks[i].next_at).min()
    }

    /// Whether check `i` is still worth sampling: running, and the verdict not yet decided (a
    /// dry-run check is not waited for once the deciding ones are done).
    fn wanted(&self, i: usize) -> bool {
        self.checks[i].state == CheckState::Running && self.verdict() == Verdict::Running
    }

    /// Records check `i`'s sample taken at `now`.
    pub fn record(&mut self, i: usize, measurement: &Measurement, now: Timestamp) {
        let Some(progress) = self.checks.get_mut(i) else { return };
        if progress.state.ended() {
            return;
        }
        let check = &progress.check;
        match measurement {
            Err(error) => {
                progress.consecutive_errors += 1;
                if progress.consecutive_errors > check.consecutive_error_limit {
                    progress.state = CheckState::Errored(format!(
                        "the provider failed {} times in a row: {error}",
                        progress.consecutive_errors
                    ));
                    return;
                }
                // A failed query is retried after the interval; it is not a sample.
                progress.next_at = now + check.interval;
                return;
            }
            Ok(value) => {
                progress.consecutive_errors = 0;
                progress.samples += 1;
                progress.last = *value;
                if let Some(v) = *value {
                    if check.failure.is_some_and(|c| c.holds(v)) {
                        progress.failures += 1;
                    } else if check.success.is_none_or(|c| c.holds(v)) {
                        progress.successes += 1;
                    }
                }
            }
        }
        let check = &progress.check;
        if progress.failures > check.failure_limit {
            progress.state = CheckState::Failed(format!(
                "{} of {} samples failed ({} {}), the limit is {}",
                progress.failures,
                progress.samples,
                progress.last.map_or("no data".to_owned(), |v| format!("last {v}")),
                check.failure.map_or(String::new(), |c| format!("failing when {c}")),
                check.failure_limit
            ));
        } else if progress.samples >= check.count {
            progress.state = if progress.successes == progress.samples {
                CheckState::Passed
            } else {
                let unclear = progress.samples - progress.successes - progress.failures;
                CheckState::Inconclusive(format!(
                    "{unclear} of {} samples neither succeeded nor failed (no data, or between the conditions)",
                    progress.samples
                ))
            };
        } else {
            progress.next_at = now + check.interval;
        }
    }

    /// The run's verdict, from the checks that are not dry-run (in their order: the first
    /// failing one is named).
    #[must_use]
    pub fn verdict(&self) -> Verdict {
        let deciding = || self.checks.iter().filter(|c| !c.check.dry_run);
        if let Some(failed) = deciding().find(|c| matches!(c.state, CheckState::Failed(_))) {
            let CheckState::Failed(reason) = &failed.state else { unreachable!() };
            return Verdict::Failed { check: failed.check.name.clone(), reason: reason.clone() };
        }
        if deciding().any(|c| c.state == CheckState::Running) {
            return Verdict::Running;
        }
        for check in deciding() {
            match &check.state {
                CheckState::Inconclusive(reason) | CheckState::Errored(reason) => {
                    return Verdict::Inconclusive {
                        check: check.check.name.clone(),
                        reason: reason.clone(),
                    };
                }
                _ => {}
            }
        }
        Verdict::Passed
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn error_rate(limit: f64) -> Check {
        Check {
            failure: Some(Condition::Above(limit)),
            success: Some(Condition::AtMost(limit)),
            interval: Duration::from_millis(100),
            ..Check::new("error-rate", "errors")
        }
    }

    /// Feeds `values[i]` to check `i` until the run decides or nothing is due.
    fn run(checks: &[Check], values: &[Vec<Measurement>]) -> Verdict {
        let mut run = AnalysisRun::new(checks, at(0));
        let mut taken = vec![0usize; checks.len()];
        let mut now = at(0);
        for _ in 0..1_000 {
            let Some(next) = run.next_due() else { break };
            now = now.max(next);
            for i in run.due(now) {
                let m = values[i].get(taken[i]).cloned().unwrap_or(Ok(Some(0.0)));
                taken[i] += 1;
                run.record(i, &m, now);
            }
        }
        run.verdict()
    }

    #[test]
    fn a_table_of_verdicts() {
        let ok = Ok(Some(0.01));
        let bad = Ok(Some(0.5));
        let none: Measurement = Ok(None);
        let err: Measurement = Err("provider down".into());
        let cases: Vec<(Vec<Measurement>, &str)> = vec![
            (vec![ok.clone(), ok.clone(), ok.clone()], "passed"),
            (vec![ok.clone(), bad.clone()], "failed"),
            (vec![ok.clone(), none.clone(), ok.clone()], "inconclusive"),
            (vec![err.clone(); 5], "inconclusive"),
            (vec![err.clone(), err.clone(), ok.clone(), ok.clone(), ok.clone()], "passed"),
        ];
        for (values, expected) in cases {
            let verdict = run(&[error_rate(0.1)], std::slice::from_ref(&values));
            let got = match verdict {
                Verdict::Passed => "passed",
                Verdict::Failed { .. } => "failed",
                Verdict::Inconclusive { .. } => "inconclusive",
                Verdict::Running => "running",
            };
            assert_eq!(got, expected, "{values:?}: {verdict}");
        }
    }

    #[test]
    fn a_run_with_only_dry_run_checks_passes_and_does_not_wait_for_them() {
        let dry = Check { dry_run: true, count: 1_000, ..error_rate(0.1) };
        let mut run = AnalysisRun::new(&[dry], at(0));
        assert_eq!(run.verdict(), Verdict::Passed);
        assert_eq!(run.next_due(), None, "nothing to wait for");
        run.record(0, &Ok(Some(0.9)), at(0));
        assert_eq!(run.verdict(), Verdict::Passed);
    }

    fn measurement() -> impl Strategy<Value = Measurement> {
        prop_oneof![
            (0.0f64..1.0).prop_map(|v| Ok(Some(v))),
            Just(Ok(None)),
            Just(Err("down".to_owned())),
        ]
    }

    proptest! {
        /// Dry-run checks never change the verdict, wherever they sit among the checks.
        #[test]
        fn dry_run_checks_never_decide(
            real in proptest::collection::vec(proptest::collection::vec(measurement(), 0..8), 1..4),
            dry in proptest::collection::vec(proptest::collection::vec(measurement(), 0..8), 0..4),
            limit in 0.05f64..0.9,
            positions in proptest::collection::vec(any::<prop::sample::Index>(), 0..4),
        ) {
            let real_checks: Vec<Check> = (0..real.len())
                .map(|i| Check { name: format!("real-{i}"), ..error_rate(limit) })
                .collect();
            let alone = run(&real_checks, &real);
            // The same real checks with dry-run ones inserted anywhere.
            let mut checks = real_checks.clone();
            let mut values = real.clone();
            for (j, feed) in dry.iter().enumerate() {
                let at = positions.get(j).map_or(checks.len(), |p| p.index(checks.len() + 1));
                checks.insert(at, Check { name: format!("dry-{j}"), dry_run: true, ..error_rate(limit / 2.0) });
                values.insert(at, feed.clone());
            }
            prop_assert_eq!(run(&checks, &values), alone);
        }

        /// A sample of no data never fails a check: at worst the run pauses.
        #[test]
        fn no_data_never_fails(n in 1usize..10) {
            let verdict = run(&[error_rate(0.1)], &[vec![Ok(None); n]]);
            prop_assert!(!matches!(verdict, Verdict::Failed { .. }), "{}", verdict);
        }
    }
}
