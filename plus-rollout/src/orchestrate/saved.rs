//! Saving a deployment and restoring it, in this process or another controller's.

use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use plus_core::{AppCode, Timestamp};

use super::{AppState, DeployConfig, Deployment};
use crate::deadlines::Deadlines;
use crate::graph::{AppGraph, DependencyKind};
use crate::release::RestoreError;

/// A deployment's saved state ([`Deployment::save`], [`Deployment::restore`]): every
/// application's state and the order they finished in, without the graph and configuration
/// (the caller gives them again) or anything tied to the saving process. With the `serde`
/// feature it is `Serialize` and `Deserialize`, and it carries [`SavedDeployment::FORMAT`].
///
/// A restored deployment continues application by application: one whose deploy was in flight
/// is deployed again (a deploy must be safe to repeat, as a step of a release is), one whose
/// health check was running or due is checked again with the same attempt, finished ones are
/// never touched, and waiting ones start once their dependencies allow, as before.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct SavedDeployment {
    format: u32,
    apps: Vec<(AppCode, AppState)>,
    completion_order: Vec<usize>,
    cancelled: bool,
}

impl SavedDeployment {
    /// The format this version writes and reads.
    pub const FORMAT: u32 = 1;

    /// The format it was saved in.
    #[must_use]
    pub fn format(&self) -> u32 {
        self.format
    }
}

impl Deployment {
    /// The deployment's state now, to be continued later by [`Deployment::restore`].
    #[must_use]
    pub fn save(&self) -> SavedDeployment {
        let report = self.report();
        SavedDeployment {
            format: SavedDeployment::FORMAT,
            apps: report.apps,
            completion_order: report.completion_order,
            cancelled: self.cancelled,
        }
    }

    /// Continues a saved deployment of `graph` at `now` under `config` (see
    /// [`SavedDeployment`] for what happens to work that was in flight).
    ///
    /// # Errors
    /// [`RestoreError`]: another format, a bad configuration, or a saved state that does not
    /// fit `graph` (other applications) or contradicts itself.
    pub fn restore(
        saved: SavedDeployment,
        graph: Arc<AppGraph>,
        config: DeployConfig,
        now: Timestamp,
    ) -> Result<Deployment, RestoreError> {
        if saved.format != SavedDeployment::FORMAT {
            return Err(RestoreError::Format {
                found: saved.format,
                supported: SavedDeployment::FORMAT,
            });
        }
        config.validate()?;
        let codes: Vec<&AppCode> = saved.apps.iter().map(|(code, _)| code).collect();
        if codes.len() != graph.len() || codes.iter().enumerate().any(|(i, c)| *c != graph.code(i))
        {
            return Err(RestoreError::Inconsistent(
                "the saved deployment is of other applications than the graph".to_owned(),
            ));
        }
        if saved.completion_order.iter().any(|&i| i >= graph.len()) {
            return Err(RestoreError::Inconsistent("a finished application out of range".into()));
        }
        let n = graph.len();
        let states: Vec<AppState> = saved.apps.into_iter().map(|(_, state)| state).collect();
        // What each waiting application still waits for, from its dependencies' states.
        let mut waiting_required = vec![0; n];
        let mut waiting_optional = vec![0; n];
        for app in 0..n {
            for (dep, kind) in graph.dependencies(app) {
                match kind {
                    DependencyKind::Required if states[dep] != AppState::Healthy => {
                        waiting_required[app] += 1;
                    }
                    DependencyKind::Optional if !states[dep].is_final() => {
                        waiting_optional[app] += 1;
                    }
                    _ => {}
                }
            }
        }
        let mut deployment = Deployment {
            graph,
            config,
            states,
            waiting_required,
            waiting_optional,
            ready: BinaryHeap::new(),
            in_progress: 0,
            tokens: vec![None; n],
            next_token: 1,
            timers: Deadlines::default(),
            actions: VecDeque::new(),
            events: VecDeque::new(),
            clock: now,
            record_events: true,
            completion_order: saved.completion_order,
            cancelled: saved.cancelled,
            finished_reported: false,
        };
        for app in 0..n {
            match deployment.states[app].clone() {
                // Deployed again at once, ahead of anything new (they held slots already).
                AppState::Deploying => deployment.start_deploy(app, now),
                AppState::Checking { attempt } => {
                    deployment.in_progress += 1;
                    deployment.start_check(app, attempt, now);
                }
                AppState::Waiting => deployment.maybe_ready(app),
                _ => {}
            }
        }
        deployment.pump(now);
        Ok(deployment)
    }
}
