//! The table of our requests awaiting a response, and identity allocation.

use std::collections::HashMap;
use std::collections::hash_map::Entry as Slot;
use std::hash::{BuildHasherDefault, Hasher};

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

use crate::error::RequestError;
use crate::frame::breaks_go_framing;

pub(crate) enum Waiter {
    /// A caller awaits the response.
    Sync(oneshot::Sender<Result<Bytes, RequestError>>),
    /// Fire-and-forget: the response goes to the handler's orphan hook.
    Async,
}

pub(crate) struct Entry {
    pub(crate) waiter: Waiter,
    /// Distinguishes this use of the identity from a later one.
    pub(crate) generation: u64,
    /// When the request times out (for an async request: when its identity is freed).
    pub(crate) deadline: Instant,
    /// The in-flight slot, released when the entry leaves the table.
    pub(crate) _permit: OwnedSemaphorePermit,
}

/// Identities are ours and sequential, not chosen by a peer: a multiplicative hash spreads
/// them, where SipHash cost a tenth of the table's time.
#[derive(Default)]
struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b));
        }
    }

    fn write_u32(&mut self, id: u32) {
        self.0 = (self.0 ^ u64::from(id)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Pending requests by identity, with their deadlines.
///
/// Deadlines are kept in the entries, not in a timer each: one task per connection
/// ([`Pending::expire`]) wakes at the earliest deadline. While requests are answered quickly
/// it wakes about once per timeout, and looks through at most `max_in_flight` entries.
pub(crate) struct Pending {
    entries: HashMap<u32, Entry, BuildHasherDefault<IdentityHasher>>,
    next_identity: u32,
    next_generation: u64,
    go_safe: bool,
    /// When the expiry task wakes next; `None` while it sleeps until told.
    next_sweep: Option<Instant>,
}

impl Pending {
    pub(crate) fn new(go_safe: bool) -> Self {
        Self {
            entries: HashMap::default(),
            next_identity: 1,
            next_generation: 1,
            go_safe,
            next_sweep: None,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Identities count from 1, wrap past `u32::MAX` to 1, and skip identities still in flight
    /// (and, for Go peers, ones the Go framing would split).
    ///
    /// There is always one: the table holds at most `max_in_flight` entries, far below 2^32.
    ///
    /// Registers a request due by `deadline`; returns its identity, its generation, and whether
    /// the expiry task must be woken to wake earlier than it planned.
    pub(crate) fn insert(
        &mut self,
        waiter: Waiter,
        permit: OwnedSemaphorePermit,
        deadline: Instant,
    ) -> (u32, u64, bool) {
        let generation = self.next_generation;
        self.next_generation += 1;
        let id = loop {
            let id = self.next_identity;
            self.next_identity = if id == u32::MAX { 1 } else { id + 1 };
            if self.go_safe && breaks_go_framing(id) {
                continue;
            }
            if let Slot::Vacant(slot) = self.entries.entry(id) {
                slot.insert(Entry { waiter, generation, deadline, _permit: permit });
                break id;
            }
        };
        let sooner = self.next_sweep.is_none_or(|at| deadline < at);
        if sooner {
            self.next_sweep = Some(deadline);
        }
        (id, generation, sooner)
    }

    /// Removes every entry due by `now`, and plans the next wake at the earliest deadline left.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<Entry> {
        let due: Vec<u32> =
            self.entries.iter().filter(|(_, e)| e.deadline <= now).map(|(&id, _)| id).collect();
        let expired = due.iter().filter_map(|id| self.entries.remove(id)).collect();
        self.next_sweep = self.entries.values().map(|e| e.deadline).min();
        expired
    }

    /// When the expiry task should wake next (`None`: not until an entry comes).
    pub(crate) fn next_sweep(&self) -> Option<Instant> {
        self.next_sweep
    }

    /// Takes the entry for a response.
    pub(crate) fn take(&mut self, id: u32) -> Option<Entry> {
        self.entries.remove(&id)
    }

    /// Removes `id` only if it is still the same request (a timed-out or dropped request must
    /// not remove a later request that reused the identity).
    pub(crate) fn remove_if(&mut self, id: u32, generation: u64) -> bool {
        if self.entries.get(&id).is_some_and(|e| e.generation == generation) {
            self.entries.remove(&id);
            true
        } else {
            false
        }
    }

    /// Empties the table, for a closing connection.
    pub(crate) fn drain(&mut self) -> Vec<Entry> {
        self.entries.drain().map(|(_, e)| e).collect()
    }

    #[cfg(test)]
    pub(crate) fn set_next(&mut self, id: u32) {
        self.next_identity = id;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use tokio::sync::Semaphore;

    use super::*;

    fn permit(sem: &Arc<Semaphore>) -> OwnedSemaphorePermit {
        Arc::clone(sem).try_acquire_owned().unwrap()
    }

    fn later() -> Instant {
        Instant::now() + std::time::Duration::from_secs(60)
    }

    #[test]
    fn expiry_takes_only_due_entries_and_plans_the_next_wake() {
        let sem = Arc::new(Semaphore::new(10));
        let mut p = Pending::new(false);
        let start = Instant::now();
        let at = |ms| start + std::time::Duration::from_millis(ms);
        let (_, _, wake) = p.insert(Waiter::Async, permit(&sem), at(300));
        assert!(wake, "the first entry wakes the sleeping expiry task");
        let (_, _, wake) = p.insert(Waiter::Async, permit(&sem), at(400));
        assert!(!wake, "a later deadline needs no earlier wake");
        let (early, _, wake) = p.insert(Waiter::Async, permit(&sem), at(100));
        assert!(wake, "an earlier deadline does");
        assert_eq!(p.next_sweep(), Some(at(100)));
        let expired = p.expire(at(100));
        assert_eq!(expired.len(), 1);
        assert_eq!(p.len(), 2);
        assert!(p.take(early).is_none());
        assert_eq!(p.next_sweep(), Some(at(300)));
        drop(expired);
        assert_eq!(sem.available_permits(), 8, "an expired entry frees its slot");
        assert_eq!(p.expire(at(1_000)).len(), 2);
        assert_eq!(p.next_sweep(), None);
    }

    #[test]
    fn identities_start_at_one_wrap_and_skip_in_flight() {
        let sem = Arc::new(Semaphore::new(100));
        let mut p = Pending::new(false);
        assert_eq!(p.insert(Waiter::Async, permit(&sem), later()).0, 1);
        p.set_next(u32::MAX);
        assert_eq!(p.insert(Waiter::Async, permit(&sem), later()).0, u32::MAX);
        // Wraps to 1, which is in flight, so 2.
        assert_eq!(p.insert(Waiter::Async, permit(&sem), later()).0, 2);
    }

    #[test]
    fn go_safe_skips_855306() {
        let sem = Arc::new(Semaphore::new(10));
        let mut p = Pending::new(true);
        p.set_next(855_306);
        assert_eq!(p.insert(Waiter::Async, permit(&sem), later()).0, 855_307);
        let mut plain = Pending::new(false);
        plain.set_next(855_306);
        assert_eq!(plain.insert(Waiter::Async, permit(&sem), later()).0, 855_306);
    }

    #[test]
    fn remove_if_respects_generations() {
        let sem = Arc::new(Semaphore::new(10));
        let mut p = Pending::new(false);
        let (id, generation, _) = p.insert(Waiter::Async, permit(&sem), later());
        assert!(p.take(id).is_some());
        p.set_next(id);
        let (again, newer, _) = p.insert(Waiter::Async, permit(&sem), later());
        assert_eq!(again, id);
        assert!(!p.remove_if(id, generation), "a stale guard must not remove the new request");
        assert!(p.remove_if(id, newer));
        assert_eq!(sem.available_permits(), 10);
    }
}
