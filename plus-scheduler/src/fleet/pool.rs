//! The live workers of one kind as [`Candidate`]s, healthy ones first: a decision reads a
//! slice of it as it is, with no copy.

use crate::Candidate;

/// Live workers of one kind: `candidates[..healthy]` healthy, the rest suspect. Dead workers
/// are not in it.
#[derive(Debug, Default)]
pub(super) struct Pool {
    pub(super) candidates: Vec<Candidate>,
    /// The worker (index into the fleet) behind each candidate.
    pub(super) workers: Vec<u32>,
    pub(super) healthy: usize,
}

/// Where a worker's candidate moved, for the fleet to note in its worker record.
pub(super) type Moved = Option<(u32, u32)>;

impl Pool {
    /// Adds a healthy worker; returns its slot and the worker that moved to make room.
    pub(super) fn insert_healthy(&mut self, worker: u32, candidate: Candidate) -> (u32, Moved) {
        let end = self.slot(self.candidates.len());
        self.candidates.push(candidate);
        self.workers.push(worker);
        let moved = self.swap(end, self.slot(self.healthy));
        self.healthy += 1;
        (self.slot(self.healthy - 1), moved)
    }

    /// Moves the healthy worker at `slot` to the suspects; returns its new slot and the worker
    /// that took its place.
    pub(super) fn make_suspect(&mut self, slot: u32) -> (u32, Moved) {
        debug_assert!((slot as usize) < self.healthy);
        self.healthy -= 1;
        let last_healthy = self.slot(self.healthy);
        let moved = self.swap(slot, last_healthy);
        (last_healthy, moved)
    }

    /// Moves the suspect worker at `slot` to the healthy ones.
    pub(super) fn make_healthy(&mut self, slot: u32) -> (u32, Moved) {
        debug_assert!((slot as usize) >= self.healthy);
        let first_suspect = self.slot(self.healthy);
        let moved = self.swap(slot, first_suspect);
        self.healthy += 1;
        (first_suspect, moved)
    }

    /// Removes the worker at `slot`; returns the workers that moved.
    pub(super) fn remove(&mut self, slot: u32) -> [Moved; 2] {
        let mut slot = slot;
        let mut first = None;
        if (slot as usize) < self.healthy {
            // Keep the partition: the last healthy one takes its place first.
            let (at, moved) = self.make_suspect(slot);
            first = moved;
            slot = at;
        }
        let last = self.slot(self.candidates.len() - 1);
        let second = self.swap(slot, last);
        self.candidates.pop();
        self.workers.pop();
        [first, second]
    }

    /// Swaps two slots; returns the worker now at `a` and its slot, unless `a == b`.
    fn swap(&mut self, a: u32, b: u32) -> Moved {
        if a == b {
            return None;
        }
        self.candidates.swap(a as usize, b as usize);
        self.workers.swap(a as usize, b as usize);
        Some((self.workers[a as usize], a))
    }

    fn slot(&self, index: usize) -> u32 {
        u32::try_from(index).expect("fewer than 4 billion workers")
    }
}
