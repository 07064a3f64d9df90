//! Degrading the services a release depends on (Ctrip's release system: "as long as the package
//! exists, service can be restored"), pure and deterministic: a circuit breaker per dependency
//! (a load balancer, a CMDB), so that calls to one that is down fail at once instead of holding
//! every host's step until its timeout, and an operator's switch that degrades it outright.
//!
//! A breaker is closed (calls go through) until its dependency fails `consecutive_failures`
//! times in a row, or a share `failure_ratio` of the last `window` calls (once `window` calls
//! are known); then it opens for `open_for`, and every call is refused as degraded. After that
//! it lets `half_open_probes` calls through: if they all succeed it closes, if one fails it
//! opens again. A caller records every degraded call it makes instead (the release's
//! report says which calls did not happen); nothing is skipped without a record.

use std::collections::VecDeque;
use std::time::Duration;

use plus_core::Timestamp;

/// When a breaker opens, and for how long.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerPolicy {
    /// Failures in a row that open it.
    pub consecutive_failures: u32,
    /// The share of failures among the last `window` calls that opens it (checked once
    /// `window` calls are known); `None`: only failures in a row count.
    pub failure_ratio: Option<f64>,
    /// How many recent calls the ratio is taken over.
    pub window: u32,
    /// How long it stays open before probing.
    pub open_for: Duration,
    /// Calls let through to probe a dependency that may be back.
    pub half_open_probes: u32,
}

impl Default for BreakerPolicy {
    /// Five failures in a row, or half of the last 20 calls; open for 30 s; 2 probes.
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            failure_ratio: Some(0.5),
            window: 20,
            open_for: Duration::from_secs(30),
            half_open_probes: 2,
        }
    }
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// Calls are refused until `until`.
    Open {
        /// When it starts probing.
        until: Timestamp,
    },
    /// Probing: `left` more calls may go through, `passed` have succeeded.
    HalfOpen {
        /// Probes not yet let through.
        left: u32,
        /// Probes that succeeded.
        passed: u32,
    },
}

/// Whether a call may go to the dependency.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Make the call, then [`CircuitBreaker::record`] how it went.
    Call,
    /// Do not: the dependency is degraded (why); record the call as not made.
    Degraded(String),
}

/// One dependency's circuit breaker.
#[derive(Debug, Clone)]
pub struct CircuitBreaker {
    name: String,
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive: u32,
    recent: VecDeque<bool>,
    forced: bool,
}

impl CircuitBreaker {
    /// A closed breaker for the dependency `name`.
    #[must_use]
    pub fn new(name: impl Into<String>, policy: BreakerPolicy) -> Self {
        Self {
            name: name.into(),
            policy,
            state: BreakerState::Closed,
            consecutive: 0,
            recent: VecDeque::new(),
            forced: false,
        }
    }

    /// Where it stands (an operator's switch aside).
    #[must_use]
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// An operator's switch: while on, every call is degraded, whatever the breaker says.
    pub fn force_degraded(&mut self, on: bool) {
        self.forced = on;
    }

    /// Whether a call may be made at `now` (a probe slot is taken when half-open).
    pub fn check(&mut self, now: Timestamp) -> Decision {
        if self.forced {
            return Decision::Degraded(format!("{} is switched to degraded", self.name));
        }
        if let BreakerState::Open { until } = self.state
            && now >= until
        {
            self.state =
                BreakerState::HalfOpen { left: self.policy.half_open_probes.max(1), passed: 0 };
        }
        match &mut self.state {
            BreakerState::Closed => Decision::Call,
            BreakerState::Open { until } => Decision::Degraded(format!(
                "{} is failing: its breaker is open until {until}",
                self.name
            )),
            BreakerState::HalfOpen { left, .. } if *left > 0 => {
                *left -= 1;
                Decision::Call
            }
            BreakerState::HalfOpen { .. } => {
                Decision::Degraded(format!("{} is being probed", self.name))
            }
        }
    }

    /// How a call made after [`Decision::Call`] went.
    pub fn record(&mut self, ok: bool, now: Timestamp) {
        match &mut self.state {
            BreakerState::HalfOpen { passed, .. } => {
                if ok {
                    *passed += 1;
                    if *passed >= self.policy.half_open_probes.max(1) {
                        self.close();
                    }
                } else {
                    self.open(now);
                }
            }
            BreakerState::Open { .. } => {}
            BreakerState::Closed => {
                self.recent.push_back(ok);
                while self.recent.len() > self.policy.window.max(1) as usize {
                    self.recent.pop_front();
                }
                self.consecutive = if ok { 0 } else { self.consecutive + 1 };
                let failures = self.recent.iter().filter(|ok| !**ok).count();
                let ratio_trips = self.policy.failure_ratio.is_some_and(|ratio| {
                    self.recent.len() >= self.policy.window.max(1) as usize
                        && failures as f64 >= ratio * self.recent.len() as f64
                });
                if self.consecutive >= self.policy.consecutive_failures.max(1) || ratio_trips {
                    self.open(now);
                }
            }
        }
    }

    fn open(&mut self, now: Timestamp) {
        self.state = BreakerState::Open { until: now + self.policy.open_for };
        self.consecutive = 0;
        self.recent.clear();
    }

    fn close(&mut self) {
        self.state = BreakerState::Closed;
        self.consecutive = 0;
        self.recent.clear();
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn policy() -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures: 3,
            failure_ratio: None,
            window: 10,
            open_for: Duration::from_secs(10),
            half_open_probes: 2,
        }
    }

    #[test]
    fn it_opens_after_failures_in_a_row_probes_then_closes() {
        let mut b = CircuitBreaker::new("lb", policy());
        let t = Timestamp::from_millis;
        for _ in 0..3 {
            assert_eq!(b.check(t(0)), Decision::Call);
            b.record(false, t(0));
        }
        assert!(matches!(b.check(t(1)), Decision::Degraded(_)), "open");
        assert_eq!(b.check(t(10_000)), Decision::Call, "first probe");
        assert_eq!(b.check(t(10_000)), Decision::Call, "second probe");
        assert!(matches!(b.check(t(10_000)), Decision::Degraded(_)), "no third probe in flight");
        b.record(true, t(10_001));
        b.record(true, t(10_001));
        assert_eq!(b.state(), BreakerState::Closed);
        b.force_degraded(true);
        assert!(matches!(b.check(t(10_002)), Decision::Degraded(r) if r.contains("switched")));
    }

    proptest! {
        /// Whatever the calls' fates: an open breaker lets nothing through before its time, a
        /// half-open one lets through at most its probes until they are answered, a switched
        /// one nothing at all, and failures in a row always open it.
        #[test]
        fn the_breaker_keeps_its_promises(
            steps in proptest::collection::vec((any::<bool>(), 0u64..4_000, any::<bool>()), 1..200),
            forced_at in proptest::option::of(0usize..200),
        ) {
            let mut b = CircuitBreaker::new("lb", policy());
            let mut now = Timestamp::ZERO;
            let mut failures_in_a_row = 0;
            let mut outstanding_probes = 0u32;
            for (i, (ok, advance, answer)) in steps.into_iter().enumerate() {
                now += Duration::from_millis(advance);
                if forced_at == Some(i) {
                    b.force_degraded(true);
                }
                let before = b.state();
                let decision = b.check(now);
                if forced_at.is_some_and(|f| i >= f) {
                    let degraded = matches!(decision, Decision::Degraded(_));
                    prop_assert!(degraded, "a call while switched to degraded");
                    continue;
                }
                if let BreakerState::Open { until } = before && now < until {
                    let degraded = matches!(decision, Decision::Degraded(_));
                    prop_assert!(degraded, "called while open");
                }
                if decision == Decision::Call {
                    if matches!(b.state(), BreakerState::HalfOpen { .. }) {
                        outstanding_probes += 1;
                        prop_assert!(outstanding_probes <= policy().half_open_probes);
                    }
                    // Some calls' answers never come back (a caller that was cancelled).
                    if answer {
                        let was_closed = b.state() == BreakerState::Closed;
                        b.record(ok, now);
                        if matches!(b.state(), BreakerState::Closed | BreakerState::Open { .. }) {
                            outstanding_probes = 0;
                        }
                        if was_closed {
                            failures_in_a_row = if ok { 0 } else { failures_in_a_row + 1 };
                            if failures_in_a_row >= policy().consecutive_failures {
                                let open = matches!(b.state(), BreakerState::Open { .. });
                                prop_assert!(open, "not open after failures in a row");
                                failures_in_a_row = 0;
                            }
                        } else {
                            failures_in_a_row = 0;
                        }
                    }
                }
            }
        }
    }
}

/// Lookups of a dependency's metadata (a group's hosts from the CMDB), cached and merged
/// (feature `tokio`): concurrent lookups of one key wait for a single call, and when the source
/// fails the last value it gave is served instead (stale, and said so), so a release can go on
/// while its metadata source is down.
#[cfg(feature = "tokio")]
pub mod metadata {
    use std::collections::HashMap;
    use std::future::Future;
    use std::hash::Hash;
    use std::sync::{Arc, Mutex};

    use tokio::sync::watch;

    /// A value and where it came from.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Fetched<V> {
        /// The source answered now.
        Fresh(V),
        /// The source failed (why); this is the last value it gave.
        Stale(V, String),
    }

    impl<V> Fetched<V> {
        /// The value, fresh or not.
        pub fn value(&self) -> &V {
            match self {
                Self::Fresh(v) | Self::Stale(v, _) => v,
            }
        }
    }

    type Flight<V> = watch::Receiver<Option<Result<Fetched<V>, String>>>;

    /// The cache and the lookups in flight, by key.
    #[derive(Debug)]
    pub struct MetadataCache<K, V> {
        last: Mutex<HashMap<K, V>>,
        flying: Mutex<HashMap<K, Flight<V>>>,
    }

    impl<K, V> Default for MetadataCache<K, V> {
        fn default() -> Self {
            Self { last: Mutex::new(HashMap::new()), flying: Mutex::new(HashMap::new()) }
        }
    }

    impl<K: Eq + Hash + Clone + Send + 'static, V: Clone + Send + Sync + 'static> MetadataCache<K, V> {
        /// An empty cache.
        #[must_use]
        pub fn new() -> Arc<Self> {
            Arc::new(Self::default())
        }

        /// `key`'s value from `fetch`, merged with any lookup of `key` already in flight; when
        /// the source fails, the last value it gave (stale), or the error when it never gave
        /// one.
        ///
        /// # Errors
        /// The source's error, when it fails and nothing is cached.
        pub async fn get<F, Fut>(self: &Arc<Self>, key: K, fetch: F) -> Result<Fetched<V>, String>
        where
            F: FnOnce() -> Fut,
            Fut: Future<Output = Result<V, String>>,
        {
            let (mut waiting, leader) = {
                let mut flying =
                    self.flying.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                match flying.get(&key) {
                    Some(flight) => (flight.clone(), None),
                    None => {
                        let (tell, flight) = watch::channel(None);
                        flying.insert(key.clone(), flight.clone());
                        (flight, Some(tell))
                    }
                }
            };
            // Whatever happens to this lookup (answered, or its caller gone mid-way), the key
            // is no longer in flight once it ends, so the next lookup starts a new one.
            struct Landing<'c, K: Eq + Hash, V> {
                flying: &'c Mutex<HashMap<K, Flight<V>>>,
                key: Option<K>,
            }
            impl<K: Eq + Hash, V> Drop for Landing<'_, K, V> {
                fn drop(&mut self) {
                    if let Some(key) = self.key.take() {
                        self.flying
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .remove(&key);
                    }
                }
            }
            let Some(tell) = leader else {
                // Another caller is fetching it: its answer is ours.
                let answer = waiting.wait_for(Option::is_some).await;
                return match answer {
                    Ok(answer) => answer.clone().unwrap_or_else(|| Err("no answer".to_owned())),
                    Err(_) => Err("the lookup in flight was dropped".to_owned()),
                };
            };
            let landing = Landing { flying: &self.flying, key: Some(key.clone()) };
            let answer = match fetch().await {
                Ok(value) => {
                    self.last
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(key.clone(), value.clone());
                    Ok(Fetched::Fresh(value))
                }
                Err(error) => {
                    let last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    match last.get(&key) {
                        Some(value) => {
                            tracing::warn!(%error, "metadata source failed: serving the last value");
                            Ok(Fetched::Stale(value.clone(), error))
                        }
                        None => Err(error),
                    }
                }
            };
            drop(landing);
            let _ = tell.send(Some(answer.clone()));
            answer
        }
    }
}
