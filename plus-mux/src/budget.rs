//! A budget of bytes shared by connections: what incomplete frames and unanswered requests may
//! hold, so that many peers that each start a large frame and stall cannot take the process's
//! memory between them.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

/// The default budget's size: 256 MiB, shared by every connection whose config keeps the
/// default [`MemoryBudget::global`].
pub const DEFAULT_MEMORY_BUDGET: usize = 256 << 20;

/// Bytes that frames in progress and requests being handled may hold, across every connection
/// that shares it. Cheap to clone; clones share the same bytes.
///
/// A frame is charged its declared body length as soon as its header arrives, before its body
/// is buffered; a request keeps its charge until its response is queued, a response until it is
/// handed to its requester. A frame that cannot be charged closes its connection (a request is
/// answered with an error first, so the peer knows why).
#[derive(Clone)]
pub struct MemoryBudget {
    /// Bytes held now. A plain atomic (no waiters to wake): charges never wait, so taking and
    /// giving back is one atomic operation each, with no lock on the hot path.
    held: Arc<AtomicUsize>,
    capacity: usize,
}

impl MemoryBudget {
    /// A budget of `capacity` bytes of its own.
    #[must_use]
    pub fn new(capacity: usize) -> Self {
        Self { held: Arc::new(AtomicUsize::new(0)), capacity }
    }

    /// The process-wide budget of [`DEFAULT_MEMORY_BUDGET`] bytes that [`Config::default`]
    /// uses.
    ///
    /// [`Config::default`]: crate::Config
    #[must_use]
    pub fn global() -> Self {
        static GLOBAL: OnceLock<MemoryBudget> = OnceLock::new();
        GLOBAL.get_or_init(|| Self::new(DEFAULT_MEMORY_BUDGET)).clone()
    }

    /// Its size in bytes.
    #[must_use]
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Bytes not held now.
    #[must_use]
    pub fn available(&self) -> usize {
        self.capacity.saturating_sub(self.held.load(Ordering::Relaxed))
    }

    /// Takes `bytes` if that many are free, without waiting.
    pub(crate) fn try_charge(&self, bytes: usize) -> Option<Charge> {
        if bytes == 0 {
            return Some(Charge { held: None, bytes: 0 });
        }
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |held| {
                held.checked_add(bytes).filter(|&total| total <= self.capacity)
            })
            .ok()
            .map(|_| Charge { held: Some(Arc::clone(&self.held)), bytes })
    }
}

impl PartialEq for MemoryBudget {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.held, &other.held)
    }
}

impl Eq for MemoryBudget {}

impl fmt::Debug for MemoryBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryBudget")
            .field("capacity", &self.capacity)
            .field("available", &self.available())
            .finish()
    }
}

/// Bytes held from a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge {
    held: Option<Arc<AtomicUsize>>,
    bytes: usize,
}

impl Drop for Charge {
    fn drop(&mut self) {
        if let Some(held) = &self.held {
            held.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charges_are_given_back_when_dropped() {
        let budget = MemoryBudget::new(100);
        let a = budget.try_charge(60).unwrap();
        assert!(budget.try_charge(50).is_none(), "only 40 left");
        let b = budget.clone().try_charge(40).unwrap();
        assert_eq!(budget.available(), 0);
        drop((a, b));
        assert_eq!(budget.available(), 100);
        assert!(budget.try_charge(0).is_some());
        assert_eq!(MemoryBudget::global(), MemoryBudget::global());
        assert_ne!(MemoryBudget::new(1), MemoryBudget::new(1));
    }
}
