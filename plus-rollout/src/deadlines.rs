//! Step deadlines in O(1): every step of a class has the same timeout and steps start in time
//! order, so each class's deadlines arrive already sorted and a FIFO queue per class replaces a
//! heap. (If a caller's `now` went backwards, a deadline could fire late, never early.)

use std::collections::VecDeque;

use plus_core::Timestamp;

/// `(deadline, host, token)` per timeout class: index 0 for ordinary steps, 1 for Verify.
#[derive(Debug, Default)]
pub(crate) struct Deadlines {
    queues: [VecDeque<(Timestamp, u32, u64)>; 2],
}

impl Deadlines {
    pub(crate) fn push(&mut self, verify: bool, deadline: Timestamp, host: u32, token: u64) {
        self.queues[usize::from(verify)].push_back((deadline, host, token));
    }

    fn earliest_queue(&self) -> Option<usize> {
        match (self.queues[0].front(), self.queues[1].front()) {
            (Some(a), Some(b)) => Some(if b.0 < a.0 { 1 } else { 0 }),
            (Some(_), None) => Some(0),
            (None, Some(_)) => Some(1),
            (None, None) => None,
        }
    }

    /// The earliest entry.
    pub(crate) fn peek(&self) -> Option<(Timestamp, u32, u64)> {
        self.earliest_queue().and_then(|q| self.queues[q].front().copied())
    }

    /// Removes the earliest entry.
    pub(crate) fn pop(&mut self) {
        if let Some(q) = self.earliest_queue() {
            self.queues[q].pop_front();
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earliest_first_across_classes() {
        let mut d = Deadlines::default();
        d.push(false, Timestamp::from_millis(300), 1, 1);
        d.push(true, Timestamp::from_millis(100), 2, 2);
        d.push(false, Timestamp::from_millis(400), 3, 3);
        let mut order = Vec::new();
        while let Some((_, host, _)) = d.peek() {
            order.push(host);
            d.pop();
        }
        assert_eq!(order, [2, 1, 3]);
    }
}
