//! Saving a release and restoring it, in this process or another controller's.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use plus_core::{HostId, Ratio, Timestamp, Version};

use super::{
    BatchLabel, BatchReport, EventKind, HostSlot, HostState, Release, ReleaseConfig, Resume, Run,
    Stage,
};
use crate::brake::HostFinish;
use crate::core::ConfigError;
use crate::deadlines::Deadlines;
use crate::plan::Exclusion;

/// A release's saved state ([`Release::save`], [`Release::restore`]): the release without its
/// configuration (which holds code, the brake policy) and without anything tied to the saving
/// process (step tokens, deadlines, its clock). Store it as you like: with the `serde` feature
/// it is `Serialize` and `Deserialize`, and it carries [`SavedRelease::FORMAT`] so a newer
/// reader can refuse what it does not understand.
///
/// A restored release continues where the saved one stopped. Hosts whose step was in flight
/// are in doubt: the step may or may not have happened. They go back to the front of their run
/// and start again from [`Step::Precheck`](crate::Step::Precheck), even past a tripped
/// `stop_on_failure`: a host already on the target version and healthy skips the deployment
/// but is still put back into traffic (Markup is idempotent) or, in the bastion's first run,
/// waits for the bake; any other starts again from Markdown. They restart before any host not
/// yet started, so the hosts out of traffic at once never exceed the batch's parallelism,
/// counting those in doubt as out. Finished hosts are never touched again; an unbaked bastion
/// stays unbaked, a braked release braked, a paused one paused, and a wait resumes with the
/// time it had left.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedRelease {
    format: u32,
    target: Version,
    hosts: Vec<(HostId, HostState)>,
    bastion: Vec<u32>,
    batches: Vec<Vec<u32>>,
    excluded: Vec<(HostId, Exclusion)>,
    max_ratio: Ratio,
    stage: SavedStage,
    paused: bool,
    started_batches: usize,
    operator_failed: bool,
    /// Batch reports with their times as ages at the moment of saving.
    reports: Vec<SavedReport>,
    failed: usize,
    done: usize,
    finished: Vec<(HostId, bool)>,
    /// Every analysis verdict (none in a state saved before analysis existed).
    #[cfg_attr(feature = "serde", serde(default))]
    analyses: Vec<super::AnalysisRecord>,
    /// How long the release had run, and its phase lasted, when saved; which deadlines had
    /// passed (all absent in a state saved before deadlines existed).
    #[cfg_attr(feature = "serde", serde(default))]
    ran_for: Duration,
    #[cfg_attr(feature = "serde", serde(default))]
    phase_for: Duration,
    #[cfg_attr(feature = "serde", serde(default))]
    release_deadline_passed: bool,
    #[cfg_attr(feature = "serde", serde(default))]
    wait_deadline_passed: bool,
    /// The release's own rollback, once started ([`OnFailure::RollBack`](super::OnFailure)).
    #[cfg_attr(feature = "serde", serde(default))]
    rollback: Option<Box<SavedRelease>>,
    /// Calls its steps did not make.
    #[cfg_attr(feature = "serde", serde(default))]
    degraded: Vec<super::DegradedCall>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
struct SavedReport {
    batch: BatchLabel,
    hosts: usize,
    started_ago: Duration,
    finished_ago: Option<Duration>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum SavedResume {
    AfterBastion,
    AfterBake,
    BeforeBatch(usize),
}

#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
enum SavedStage {
    Running {
        label: BatchLabel,
        /// Hosts not started yet, in order.
        queue: Vec<u32>,
        members: Vec<u32>,
        stop_tripped: bool,
        stop_after_verify: bool,
        report_index: usize,
        after: SavedResume,
    },
    AwaitingBake,
    Waiting {
        next: usize,
        left: Duration,
    },
    AwaitingContinue {
        next: usize,
    },
    Braked {
        reason: String,
        resume: SavedResume,
    },
    /// Its rollback (saved beside it) runs.
    RollingBack {
        reason: String,
    },
    Finished(super::Outcome),
}

/// Why a saved release cannot be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RestoreError {
    /// It was saved in a format this version does not read.
    #[error("saved release format {found}, this version reads {supported}")]
    Format {
        /// The saved format.
        found: u32,
        /// The one this version reads.
        supported: u32,
    },
    /// The configuration releases another version than the saved release.
    #[error("the saved release deploys {saved}, the configuration {configured}")]
    Target {
        /// The saved release's target.
        saved: Version,
        /// The configuration's.
        configured: Version,
    },
    /// The configuration does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The saved state contradicts itself (damaged, or edited by hand).
    #[error("inconsistent saved release: {0}")]
    Inconsistent(String),
}

impl SavedRelease {
    /// The format this version writes and reads.
    pub const FORMAT: u32 = 1;

    /// The format it was saved in.
    #[must_use]
    pub fn format(&self) -> u32 {
        self.format
    }

    /// The version it deploys.
    #[must_use]
    pub fn target(&self) -> &Version {
        &self.target
    }

    /// Whether it had finished when saved.
    #[must_use]
    pub fn is_finished(&self) -> bool {
        matches!(self.stage, SavedStage::Finished(_))
    }
}

impl From<Resume> for SavedResume {
    fn from(resume: Resume) -> Self {
        match resume {
            Resume::AfterBastion => Self::AfterBastion,
            Resume::AfterBake => Self::AfterBake,
            Resume::BeforeBatch(n) => Self::BeforeBatch(n),
        }
    }
}

impl From<SavedResume> for Resume {
    fn from(resume: SavedResume) -> Self {
        match resume {
            SavedResume::AfterBastion => Self::AfterBastion,
            SavedResume::AfterBake => Self::AfterBake,
            SavedResume::BeforeBatch(n) => Self::BeforeBatch(n),
        }
    }
}

impl Release {
    /// The release's state now, to be restored later, by this process or another one
    /// ([`Release::restore`]). Save it after every event that matters to you: each step
    /// started or finished, each phase change.
    #[must_use]
    pub fn save(&self) -> SavedRelease {
        let now = self.clock;
        let stage = match &self.stage {
            Stage::Running { run, after } => SavedStage::Running {
                label: run.label,
                queue: run.queue.iter().copied().collect(),
                members: run.members.clone(),
                stop_tripped: run.stop_tripped,
                stop_after_verify: run.stop_after_verify,
                report_index: run.report_index,
                after: (*after).into(),
            },
            Stage::AwaitingBake => SavedStage::AwaitingBake,
            Stage::Waiting { next, until } => {
                SavedStage::Waiting { next: *next, left: until.saturating_duration_since(now) }
            }
            Stage::AwaitingContinue { next } => SavedStage::AwaitingContinue { next: *next },
            Stage::Braked { reason, resume } => {
                SavedStage::Braked { reason: reason.clone(), resume: (*resume).into() }
            }
            // An analysis under way is not saved: a controller that takes over runs it again
            // from its first sample, at once.
            Stage::Analyzing { next, .. } => {
                SavedStage::Waiting { next: *next, left: Duration::ZERO }
            }
            Stage::RollingBack { reason } => SavedStage::RollingBack { reason: reason.clone() },
            Stage::Finished(outcome) => SavedStage::Finished(outcome.clone()),
        };
        SavedRelease {
            format: SavedRelease::FORMAT,
            target: self.config.target.clone(),
            hosts: self.hosts.iter().map(|h| ((*h.id).clone(), h.state.clone())).collect(),
            bastion: self.bastion.clone(),
            batches: self.batches.clone(),
            excluded: self.excluded.clone(),
            max_ratio: self.max_ratio,
            stage,
            paused: self.paused,
            started_batches: self.started_batches,
            operator_failed: self.operator_failed,
            reports: self
                .reports
                .iter()
                .map(|r| SavedReport {
                    batch: r.batch,
                    hosts: r.hosts,
                    started_ago: now.saturating_duration_since(r.started),
                    finished_ago: r.finished.map(|f| now.saturating_duration_since(f)),
                })
                .collect(),
            failed: self.failed,
            done: self.done,
            finished: self.finished.iter().map(|f| ((*f.host).clone(), f.failed)).collect(),
            analyses: self.analyses.clone(),
            ran_for: now.saturating_duration_since(self.started),
            phase_for: now.saturating_duration_since(self.phase_since),
            release_deadline_passed: self.release_deadline_passed,
            wait_deadline_passed: self.wait_deadline_passed,
            rollback: self.rollback.as_ref().map(|r| Box::new(r.save())),
            degraded: self.degraded.clone(),
        }
    }

    /// Continues a saved release at `now` under `config` (the same target; its brake policy
    /// and timeouts may differ). Hosts whose step was in flight start again, first of all,
    /// from Precheck (see [`SavedRelease`]); the first actions come out of
    /// [`Release::poll_action`] as usual, after a [`EventKind::Restored`] event.
    ///
    /// # Errors
    /// [`RestoreError`]: an unknown format, another target, a bad configuration, or a saved
    /// state that contradicts itself.
    pub fn restore(
        saved: SavedRelease,
        config: ReleaseConfig,
        now: Timestamp,
    ) -> Result<Release, RestoreError> {
        if saved.format != SavedRelease::FORMAT {
            return Err(RestoreError::Format {
                found: saved.format,
                supported: SavedRelease::FORMAT,
            });
        }
        if saved.target != config.target {
            return Err(RestoreError::Target {
                saved: saved.target,
                configured: config.target.clone(),
            });
        }
        config.validate()?;
        check_indices(&saved)?;
        let ids: Vec<Arc<HostId>> =
            saved.hosts.iter().map(|(id, _)| Arc::new(id.clone())).collect();
        let mut in_doubt = Vec::new();
        let hosts: Vec<HostSlot> = saved
            .hosts
            .into_iter()
            .zip(&ids)
            .enumerate()
            .map(|(i, ((_, state), id))| {
                let state = if let HostState::Running(_) = state {
                    in_doubt.push(i as u32);
                    HostState::Pending
                } else {
                    state
                };
                HostSlot {
                    id: Arc::clone(id),
                    state,
                    token: None,
                    step_started: now,
                    in_doubt: false,
                }
            })
            .collect();
        let stage = match saved.stage {
            SavedStage::Running {
                label,
                queue,
                members,
                stop_tripped,
                stop_after_verify,
                report_index,
                after,
            } => {
                // Those in doubt go first: they may be out of traffic already.
                let queue: VecDeque<u32> = in_doubt.iter().copied().chain(queue).collect();
                let run = Run {
                    label,
                    queue,
                    running: 0,
                    members,
                    stop_tripped,
                    stop_after_verify,
                    report_index,
                };
                Stage::Running { run, after: after.into() }
            }
            _ if !in_doubt.is_empty() => {
                return Err(RestoreError::Inconsistent(format!(
                    "{} host(s) running a step outside of a run",
                    in_doubt.len()
                )));
            }
            SavedStage::AwaitingBake => Stage::AwaitingBake,
            SavedStage::Waiting { next, left } => Stage::Waiting { next, until: now + left },
            SavedStage::AwaitingContinue { next } => Stage::AwaitingContinue { next },
            SavedStage::Braked { reason, resume } => {
                Stage::Braked { reason, resume: resume.into() }
            }
            SavedStage::RollingBack { reason } => Stage::RollingBack { reason },
            SavedStage::Finished(outcome) => Stage::Finished(outcome),
        };
        let by_id = |id: &HostId| ids.iter().find(|h| ***h == *id).map(Arc::clone);
        let finished = saved
            .finished
            .iter()
            .map(|(id, failed)| {
                by_id(id).map(|host| HostFinish { host, failed: *failed }).ok_or_else(|| {
                    RestoreError::Inconsistent(format!("{id} finished but is not planned"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let reports = saved
            .reports
            .iter()
            .map(|r| BatchReport {
                batch: r.batch,
                hosts: r.hosts,
                started: back(now, r.started_ago),
                finished: r.finished_ago.map(|ago| back(now, ago)),
            })
            .collect();
        let mut release = Release {
            target: Arc::new(config.target.clone()),
            config,
            hosts,
            bastion: saved.bastion,
            batches: saved.batches,
            excluded: saved.excluded,
            max_ratio: saved.max_ratio,
            stage,
            paused: saved.paused,
            started_batches: saved.started_batches,
            operator_failed: saved.operator_failed,
            next_token: 1,
            deadlines: Deadlines::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            clock: now,
            reports,
            failed: saved.failed,
            done: saved.done,
            finished,
            record_events: true,
            analyzed: None,
            analyses: saved.analyses,
            started: back(now, saved.ran_for),
            phase_since: back(now, saved.phase_for),
            release_deadline_passed: saved.release_deadline_passed,
            wait_deadline_passed: saved.wait_deadline_passed,
            rollback: None,
            degraded: saved.degraded,
        };
        let rolling_back = matches!(release.stage, Stage::RollingBack { .. });
        match saved.rollback {
            Some(rollback) => {
                let to = rollback.target.clone();
                let config = release.rollback_config(to);
                release.rollback = Some(Box::new(Release::restore(*rollback, config, now)?));
            }
            None if rolling_back => {
                return Err(RestoreError::Inconsistent(
                    "rolling back, but no rollback was saved".to_owned(),
                ));
            }
            None => {}
        }
        for &host in &in_doubt {
            release.hosts[host as usize].in_doubt = true;
        }
        release.emit(now, EventKind::Restored { in_doubt: in_doubt.len() });
        release.pump(now);
        release.pump_rollback(now);
        Ok(release)
    }
}

/// `ago` before `now`, or the origin if that is further back.
fn back(now: Timestamp, ago: Duration) -> Timestamp {
    Timestamp::from_duration(now.since_origin().saturating_sub(ago))
}

/// Every host index in range, no queued host running or succeeded, the run's report there.
fn check_indices(saved: &SavedRelease) -> Result<(), RestoreError> {
    let n = saved.hosts.len() as u32;
    let bad = |what: &str| Err(RestoreError::Inconsistent(what.to_owned()));
    let all_in_range = |hosts: &[u32]| hosts.iter().all(|&h| h < n);
    if !all_in_range(&saved.bastion) || !saved.batches.iter().all(|b| all_in_range(b)) {
        return bad("a bastion or batch names a host that does not exist");
    }
    if let SavedStage::Running { queue, members, report_index, .. } = &saved.stage {
        if !all_in_range(queue) || !all_in_range(members) {
            return bad("the running batch names a host that does not exist");
        }
        if *report_index >= saved.reports.len() {
            return bad("the running batch has no report");
        }
        let started = |h: &u32| {
            let state = &saved.hosts[*h as usize].1;
            matches!(state, HostState::Running(_)) || state.is_success()
        };
        if queue.iter().any(started) {
            return bad("a host queued to start is running or has succeeded");
        }
    }
    Ok(())
}
