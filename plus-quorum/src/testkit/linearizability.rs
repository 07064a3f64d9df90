//! A memoized linearizability checker (Wing and Gong's search with Lowe's cache of visited
//! configurations, the algorithm of porcupine), bounded in time.
//!
//! stateright's `LinearizabilityTester` searches without memoization: with a bug planted it took
//! 200 s on one 3-node history that this search decides in about a millisecond. The cache key is
//! the set of operations linearized so far plus the state they led to: two paths reaching the
//! same pair have the same future, so the second is cut. A search that runs out of time is
//! reported as undecided, which the simulation counts as a failure.

use std::collections::HashSet;
use std::hash::Hash;
use std::time::{Duration, Instant};

/// A sequential specification: a state and the operations on it.
pub trait Model: Clone + Eq + Hash {
    /// An operation on the object.
    type Op;
    /// What an operation returns.
    type Ret: PartialEq;

    /// Applies `op` and returns what a sequential object would answer.
    fn step(&mut self, op: &Self::Op) -> Self::Ret;
}

/// The verdict on one history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Some order of the operations, each between its call and its return, explains every
    /// result.
    Linearizable,
    /// No such order exists.
    NotLinearizable,
    /// The search did not end within its time bound.
    Undecided {
        /// Configurations explored before the bound.
        explored: u64,
    },
}

/// A concurrent history: invocations and returns in real-time order, per thread at most one
/// operation in flight. An operation that never returns (its outcome is unknown) may take
/// effect at any point after its invocation, or never.
pub struct History<M: Model> {
    ops: Vec<(M::Op, Option<M::Ret>)>,
    /// Calls and returns in time order: `(operation, is_return)`.
    events: Vec<(usize, bool)>,
    in_flight: std::collections::HashMap<u64, usize>,
}

impl<M: Model> std::fmt::Debug for History<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("History")
            .field("operations", &self.ops.len())
            .field("in_flight", &self.in_flight.len())
            .finish()
    }
}

impl<M: Model> Default for History<M> {
    fn default() -> Self {
        Self { ops: Vec::new(), events: Vec::new(), in_flight: Default::default() }
    }
}

impl<M: Model> History<M> {
    /// `thread` invokes `op`.
    pub fn invoke(&mut self, thread: u64, op: M::Op) -> Result<(), String> {
        if self.in_flight.contains_key(&thread) {
            return Err(format!("thread {thread} invoked while an operation is in flight"));
        }
        self.in_flight.insert(thread, self.ops.len());
        self.events.push((self.ops.len(), false));
        self.ops.push((op, None));
        Ok(())
    }

    /// `thread`'s operation in flight returned `ret`.
    pub fn ret(&mut self, thread: u64, ret: M::Ret) -> Result<(), String> {
        let op = self
            .in_flight
            .remove(&thread)
            .ok_or_else(|| format!("thread {thread} returned with nothing in flight"))?;
        self.ops[op].1 = Some(ret);
        self.events.push((op, true));
        Ok(())
    }

    /// `thread`'s operation in flight returned `ret`, and is now known to have been `op` (what
    /// the system chose, an id say, is part of the operation for the model).
    pub fn ret_as(&mut self, thread: u64, op: M::Op, ret: M::Ret) -> Result<(), String> {
        let index = *self
            .in_flight
            .get(&thread)
            .ok_or_else(|| format!("thread {thread} returned with nothing in flight"))?;
        self.ops[index].0 = op;
        self.ret(thread, ret)
    }

    /// `thread`'s operation in flight will never return (timed out, leadership lost).
    pub fn abandon(&mut self, thread: u64) {
        self.in_flight.remove(&thread);
    }

    /// `thread`'s operation in flight was refused before it could take effect (sent to a node
    /// that does not lead): it leaves the history.
    pub fn cancel(&mut self, thread: u64) -> Result<(), String> {
        let op = self
            .in_flight
            .remove(&thread)
            .ok_or_else(|| format!("thread {thread} cancelled with nothing in flight"))?;
        self.events.retain(|&(o, _)| o != op);
        Ok(())
    }

    /// How many operations it holds (refused ones removed).
    #[must_use]
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether it holds no operation.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Searches for a linearization from `init`, for at most `budget`.
    pub fn check(&self, init: &M, budget: Duration) -> Verdict {
        self.search(init, budget, |_| false)
    }

    /// As `check`, trying first without the operations that never returned and that `unseen`
    /// says nothing observed (a write whose value no read saw, say): each may take effect at
    /// the very end, so a linearization without them is one with them. Only if that fails does
    /// the search take them in, each of which can double its work.
    pub fn check_lazily(
        &self,
        init: &M,
        budget: Duration,
        unseen: impl Fn(&M::Op) -> bool,
    ) -> Verdict {
        let started = Instant::now();
        if self.search(init, budget / 4, &unseen) == Verdict::Linearizable {
            return Verdict::Linearizable;
        }
        self.search(init, budget.saturating_sub(started.elapsed()), |_| false)
    }

    fn search(&self, init: &M, budget: Duration, leave_out: impl Fn(&M::Op) -> bool) -> Verdict {
        let started = Instant::now();
        let left_out = |op: usize| self.ops[op].1.is_none() && leave_out(&self.ops[op].0);
        // Operations that never returned return "at the end": linearizing one there is the same
        // as leaving it out, and anywhere earlier is allowed too.
        let mut events: Vec<(usize, bool)> =
            self.events.iter().copied().filter(|&(op, _)| !left_out(op)).collect();
        let called: HashSet<usize> = events.iter().map(|&(op, _)| op).collect();
        for (i, (_, ret)) in self.ops.iter().enumerate() {
            if ret.is_none() && called.contains(&i) {
                events.push((i, true));
            }
        }
        // A doubly linked list over the events, with a head sentinel at index 0 (events from 1).
        let n = events.len();
        let mut next: Vec<usize> = (1..=n + 1).collect();
        let mut prev: Vec<usize> = (0..=n).map(|i| i.saturating_sub(1)).collect();
        next[n] = usize::MAX;
        let mut return_of = vec![0; self.ops.len()];
        for (position, &(op, is_return)) in events.iter().enumerate() {
            if is_return {
                return_of[op] = position + 1;
            }
        }
        let words = self.ops.len().div_ceil(64);
        let mut linearized = vec![0u64; words];
        let mut cache: HashSet<(Vec<u64>, M)> = HashSet::new();
        // What each linearized call undid: its call event and the state before it.
        let mut calls: Vec<(usize, M)> = Vec::new();
        let mut state = init.clone();
        let mut entry = next[0];
        let mut explored: u64 = 0;
        while next[0] != usize::MAX {
            explored += 1;
            if explored.is_multiple_of(4096) && started.elapsed() > budget {
                return Verdict::Undecided { explored };
            }
            if entry == usize::MAX {
                // Every remaining call was tried at this point: nothing fits.
                let Some((call, before)) = calls.pop() else { return Verdict::NotLinearizable };
                let op = events[call - 1].0;
                linearized[op / 64] &= !(1 << (op % 64));
                state = before;
                relink(&mut next, &mut prev, return_of[op]);
                relink(&mut next, &mut prev, call);
                entry = next[call];
                continue;
            }
            let (op, is_return) = events[entry - 1];
            if is_return {
                // An operation returned before any remaining call could be placed: back up.
                let Some((call, before)) = calls.pop() else { return Verdict::NotLinearizable };
                let undone = events[call - 1].0;
                linearized[undone / 64] &= !(1 << (undone % 64));
                state = before;
                relink(&mut next, &mut prev, return_of[undone]);
                relink(&mut next, &mut prev, call);
                entry = next[call];
                continue;
            }
            let (operation, expected) = &self.ops[op];
            let mut after = state.clone();
            let got = after.step(operation);
            let fits = expected.as_ref().is_none_or(|e| *e == got);
            if fits {
                let mut bits = linearized.clone();
                bits[op / 64] |= 1 << (op % 64);
                if cache.insert((bits.clone(), after.clone())) {
                    calls.push((entry, std::mem::replace(&mut state, after)));
                    linearized = bits;
                    unlink(&mut next, &mut prev, entry);
                    unlink(&mut next, &mut prev, return_of[op]);
                    entry = next[0];
                    continue;
                }
            }
            entry = next[entry];
        }
        Verdict::Linearizable
    }
}

fn unlink(next: &mut [usize], prev: &mut [usize], at: usize) {
    let (p, n) = (prev[at], next[at]);
    next[p] = n;
    if n != usize::MAX {
        prev[n] = p;
    }
}

/// Puts `at` back between the neighbours it had when unlinked (undone in reverse order).
fn relink(next: &mut [usize], prev: &mut [usize], at: usize) {
    let (p, n) = (prev[at], next[at]);
    next[p] = at;
    if n != usize::MAX {
        prev[n] = at;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register of small integers.
    #[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
    struct Register(u8);

    #[derive(Debug)]
    enum Op {
        Write(u8),
        Read,
        Cas(u8, u8),
    }

    impl Model for Register {
        type Op = Op;
        type Ret = Option<u8>;

        fn step(&mut self, op: &Op) -> Option<u8> {
            match *op {
                Op::Write(v) => {
                    self.0 = v;
                    None
                }
                Op::Read => Some(self.0),
                Op::Cas(from, to) if self.0 == from => {
                    self.0 = to;
                    Some(1)
                }
                Op::Cas(..) => Some(0),
            }
        }
    }

    fn verdict(build: impl FnOnce(&mut History<Register>)) -> Verdict {
        let mut history = History::default();
        build(&mut history);
        history.check(&Register::default(), Duration::from_secs(5))
    }

    #[test]
    fn overlapping_write_and_reads_in_either_order() {
        let v = verdict(|h| {
            h.invoke(1, Op::Write(1)).unwrap();
            h.invoke(2, Op::Read).unwrap();
            h.ret(2, Some(1)).unwrap();
            h.invoke(3, Op::Read).unwrap();
            h.ret(3, Some(1)).unwrap();
            h.ret(1, None).unwrap();
        });
        assert_eq!(v, Verdict::Linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let v = verdict(|h| {
            h.invoke(1, Op::Write(1)).unwrap();
            h.ret(1, None).unwrap();
            h.invoke(2, Op::Read).unwrap();
            h.ret(2, Some(0)).unwrap();
        });
        assert_eq!(v, Verdict::NotLinearizable);
    }

    #[test]
    fn a_read_going_back_in_time_is_caught() {
        // Both reads overlap the write, but once one saw 1 a later read cannot see 0.
        let v = verdict(|h| {
            h.invoke(1, Op::Write(1)).unwrap();
            h.invoke(2, Op::Read).unwrap();
            h.ret(2, Some(1)).unwrap();
            h.invoke(2, Op::Read).unwrap();
            h.ret(2, Some(0)).unwrap();
            h.ret(1, None).unwrap();
        });
        assert_eq!(v, Verdict::NotLinearizable);
    }

    #[test]
    fn an_abandoned_write_may_or_may_not_take_effect() {
        for seen in [0, 2] {
            let v = verdict(|h| {
                h.invoke(1, Op::Write(2)).unwrap();
                h.abandon(1);
                h.invoke(2, Op::Read).unwrap();
                h.ret(2, Some(seen)).unwrap();
            });
            assert_eq!(v, Verdict::Linearizable, "read {seen}");
        }
        // But not both ways: once seen, it cannot be undone.
        let v = verdict(|h| {
            h.invoke(1, Op::Write(2)).unwrap();
            h.abandon(1);
            h.invoke(2, Op::Read).unwrap();
            h.ret(2, Some(2)).unwrap();
            h.invoke(2, Op::Read).unwrap();
            h.ret(2, Some(0)).unwrap();
        });
        assert_eq!(v, Verdict::NotLinearizable);
    }

    #[test]
    fn a_cancelled_operation_leaves_no_trace() {
        let v = verdict(|h| {
            h.invoke(1, Op::Write(2)).unwrap();
            h.cancel(1).unwrap();
            h.invoke(1, Op::Read).unwrap();
            h.ret(1, Some(2)).unwrap();
        });
        assert_eq!(v, Verdict::NotLinearizable, "the write never took effect");
    }

    #[test]
    fn two_successful_compare_and_sets_from_one_value_are_caught() {
        let v = verdict(|h| {
            h.invoke(1, Op::Cas(0, 1)).unwrap();
            h.invoke(2, Op::Cas(0, 2)).unwrap();
            h.ret(1, Some(1)).unwrap();
            h.ret(2, Some(1)).unwrap();
        });
        assert_eq!(v, Verdict::NotLinearizable);
    }

    #[test]
    fn many_concurrent_writers_are_decided_quickly_thanks_to_the_cache() {
        // 12 overlapping writes of one value and an impossible read: without memoization the
        // search tries every order of the writes (12! of them); with it, every set (2^12).
        let v = verdict(|h| {
            for t in 0..12 {
                h.invoke(t, Op::Write(7)).unwrap();
            }
            h.invoke(100, Op::Read).unwrap();
            h.ret(100, Some(3)).unwrap();
            for t in 0..12 {
                h.ret(t, None).unwrap();
            }
        });
        assert_eq!(v, Verdict::NotLinearizable);
    }
}
