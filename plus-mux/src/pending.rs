//! The table of our requests awaiting a response, and identity allocation.

use std::collections::HashMap;

use bytes::Bytes;
use tokio::sync::{OwnedSemaphorePermit, oneshot};

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
    /// The in-flight slot, released when the entry leaves the table.
    pub(crate) _permit: OwnedSemaphorePermit,
}

/// Pending requests by identity.
pub(crate) struct Pending {
    entries: HashMap<u32, Entry>,
    next_identity: u32,
    next_generation: u64,
    go_safe: bool,
}

impl Pending {
    pub(crate) fn new(go_safe: bool) -> Self {
        Self { entries: HashMap::new(), next_identity: 1, next_generation: 1, go_safe }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The next free identity: counting from 1, wrapping past `u32::MAX` to 1, skipping
    /// identities still in flight (and, for Go peers, ones the Go framing would split).
    ///
    /// There is always one: the table holds at most `max_in_flight` entries, far below 2^32.
    fn allocate(&mut self) -> u32 {
        loop {
            let id = self.next_identity;
            self.next_identity = if id == u32::MAX { 1 } else { id + 1 };
            if self.entries.contains_key(&id) || (self.go_safe && breaks_go_framing(id)) {
                continue;
            }
            return id;
        }
    }

    /// Registers a request; returns its identity and generation.
    pub(crate) fn insert(&mut self, waiter: Waiter, permit: OwnedSemaphorePermit) -> (u32, u64) {
        let id = self.allocate();
        let generation = self.next_generation;
        self.next_generation += 1;
        self.entries.insert(id, Entry { waiter, generation, _permit: permit });
        (id, generation)
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

    #[test]
    fn identities_start_at_one_wrap_and_skip_in_flight() {
        let sem = Arc::new(Semaphore::new(100));
        let mut p = Pending::new(false);
        assert_eq!(p.insert(Waiter::Async, permit(&sem)).0, 1);
        p.set_next(u32::MAX);
        assert_eq!(p.insert(Waiter::Async, permit(&sem)).0, u32::MAX);
        // Wraps to 1, which is in flight, so 2.
        assert_eq!(p.insert(Waiter::Async, permit(&sem)).0, 2);
    }

    #[test]
    fn go_safe_skips_855306() {
        let sem = Arc::new(Semaphore::new(10));
        let mut p = Pending::new(true);
        p.set_next(855_306);
        assert_eq!(p.insert(Waiter::Async, permit(&sem)).0, 855_307);
        let mut plain = Pending::new(false);
        plain.set_next(855_306);
        assert_eq!(plain.insert(Waiter::Async, permit(&sem)).0, 855_306);
    }

    #[test]
    fn remove_if_respects_generations() {
        let sem = Arc::new(Semaphore::new(10));
        let mut p = Pending::new(false);
        let (id, generation) = p.insert(Waiter::Async, permit(&sem));
        assert!(p.take(id).is_some());
        p.set_next(id);
        let (again, newer) = p.insert(Waiter::Async, permit(&sem));
        assert_eq!(again, id);
        assert!(!p.remove_if(id, generation), "a stale guard must not remove the new request");
        assert!(p.remove_if(id, newer));
        assert_eq!(sem.available_permits(), 10);
    }
}
