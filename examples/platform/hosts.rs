//! The platform's hosts, simulated or an agent's for real, and an observer beside them that
//! sees what the hosts go through whatever the controllers believe: how many of a group are
//! out of traffic at once, and which steps ran on a host more than once.

use std::collections::{HashMap, HashSet};
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use plus_core::{HostId, Version};
use plus_rollout::degrade::{BreakerPolicy, CircuitBreaker, Decision};
use plus_rollout::{Step, StepExecutor, StepOutcome, async_trait};

use crate::agents::AgentHosts;

/// The hosts' deploy steps: an agent's host's go to its agent; the others are simulated,
/// each taking about `latency_ms`; a share `fail_rate` of the hosts fails, each at one of its
/// steps after Precheck, decided by a hash of (seed, host) so runs replay whatever the timing.
pub(crate) struct Hosts {
    seed: u64,
    fail_rate: f64,
    latency_ms: u64,
    agents: Option<Arc<AgentHosts>>,
    seen: Mutex<Seen>,
    /// Error-rate samples taken per application (`measure`).
    samples: Mutex<std::collections::HashMap<String, usize>>,
    /// The simulated load balancer that Markdown and Markup call, behind its breaker.
    lb: Mutex<CircuitBreaker>,
}

/// What the observer saw.
#[derive(Debug, Default)]
struct Seen {
    /// Hosts out of traffic, by group: from the start of their Markdown to the end of their
    /// Markup (a Markdown cut short may have taken the host out).
    out: HashMap<String, HashSet<HostId>>,
    max_out: usize,
    started: HashSet<(HostId, Step)>,
    reruns: usize,
}

/// The observer's figures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Observed {
    /// The most hosts of one group out of traffic at any moment.
    pub max_out_of_traffic: usize,
    /// Steps started on a host that had already started that step.
    pub rerun_steps: usize,
}

/// A host's group: its application (hosts are named `{app}-{nn}`).
fn group_of(host: &HostId) -> String {
    host.as_str().rsplit_once('-').map_or(host.as_str(), |(group, _)| group).to_owned()
}

impl Hosts {
    pub(crate) fn new(
        seed: u64,
        fail_rate: f64,
        latency_ms: u64,
        agents: Option<Arc<AgentHosts>>,
    ) -> Self {
        Self {
            seed,
            fail_rate,
            latency_ms,
            agents,
            seen: Mutex::default(),
            samples: Mutex::default(),
            lb: Mutex::new(CircuitBreaker::new("the load balancer", BreakerPolicy::default())),
        }
    }

    /// An operator's switch: the simulated load balancer is degraded; Markdown and Markup do
    /// not call it, each such call recorded.
    pub(crate) fn degrade_lb(&self) {
        self.lb.lock().expect("lb lock").force_degraded(true);
    }

    pub(crate) fn observed(&self) -> Observed {
        let seen = self.seen.lock().expect("observer lock");
        Observed { max_out_of_traffic: seen.max_out, rerun_steps: seen.reruns }
    }

    fn starting(&self, host: &HostId, step: Step) {
        let mut seen = self.seen.lock().expect("observer lock");
        if !seen.started.insert((host.clone(), step)) {
            seen.reruns += 1;
        }
        if step == Step::Markdown {
            let group = seen.out.entry(group_of(host)).or_default();
            group.insert(host.clone());
            let out = group.len();
            seen.max_out = seen.max_out.max(out);
        }
    }

    fn finished(&self, host: &HostId, step: Step, outcome: &StepOutcome) {
        if step == Step::Markup && matches!(outcome, StepOutcome::Done | StepOutcome::Degraded(_)) {
            let mut seen = self.seen.lock().expect("observer lock");
            if let Some(group) = seen.out.get_mut(&group_of(host)) {
                group.remove(host);
            }
        }
    }
}

#[async_trait]
impl StepExecutor for Hosts {
    /// The simulated groups' error rates: 1% everywhere, except `api`'s once two of its
    /// batches have run (its third analysis, from its fifth sample on): 20%.
    async fn measure(&self, query: &str) -> Result<Option<f64>, String> {
        let Some(app) = query.strip_prefix("error_rate:") else {
            return Err(format!("unknown query `{query}`"));
        };
        let mut samples = self.samples.lock().expect("samples lock");
        let taken = samples.entry(app.to_owned()).or_default();
        *taken += 1;
        Ok(Some(if app == "api" && *taken > 4 { 0.2 } else { 0.01 }))
    }

    async fn run(&self, host: &HostId, step: Step, target: &Version) -> StepOutcome {
        self.starting(host, step);
        let outcome = match &self.agents {
            Some(agents) if agents.owns(host) => agents.run(host, step, target).await,
            _ => self.simulate(host, step).await,
        };
        self.finished(host, step, &outcome);
        outcome
    }
}

impl Hosts {
    async fn simulate(&self, host: &HostId, step: Step) -> StepOutcome {
        // Traffic goes through the load balancer, behind its breaker: a degraded one is not
        // called, and the step says so (the release records the call not made; the host still
        // counts as out of traffic for the cap until its Markup).
        let mut degraded = None;
        if matches!(step, Step::Markdown | Step::Markup) {
            let now = plus_core::Timestamp::since_unix_epoch();
            let decision = self.lb.lock().expect("lb lock").check(now);
            match decision {
                Decision::Call => self.lb.lock().expect("lb lock").record(true, now),
                Decision::Degraded(why) => degraded = Some(format!("load balancer: {why}")),
            }
        }
        let roll = |key: &dyn Fn(&mut std::collections::hash_map::DefaultHasher)| {
            let mut h = std::collections::hash_map::DefaultHasher::new();
            key(&mut h);
            h.finish()
        };
        let jitter = roll(&|h| (self.seed, host.as_str(), step as u8).hash(h))
            % (self.latency_ms.max(1) * 2);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        // Whether this host fails, and at which of its steps after Precheck.
        let host_roll = roll(&|h| (self.seed, host.as_str()).hash(h));
        let fails = (host_roll >> 16) as f64 / (1u64 << 48) as f64 <= self.fail_rate
            && self.fail_rate > 0.0;
        let failing_step = Step::ALL[1 + (host_roll % (Step::ALL.len() as u64 - 1)) as usize];
        if fails && step == failing_step {
            StepOutcome::Failed(format!("{step} failed on {host} (simulated)"))
        } else if let Some(why) = degraded {
            StepOutcome::Degraded(why)
        } else {
            StepOutcome::Done
        }
    }
}
