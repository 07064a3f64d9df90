//! Deadlines in O(1), the one timer queue of both cores: every timer of a class has the same
//! duration and timers start in time order, so each class's deadlines arrive already sorted and
//! a FIFO queue per class replaces a heap. (If a caller's `now` went backwards, a deadline could
//! fire late, never early.)

use std::collections::VecDeque;

use plus_core::Timestamp;

use crate::core::JobId;

/// `(deadline, job)` per timer class; `CLASSES` classes, each with its own fixed duration.
#[derive(Debug)]
pub(crate) struct Deadlines<const CLASSES: usize> {
    queues: [VecDeque<(Timestamp, JobId)>; CLASSES],
}

impl<const CLASSES: usize> Default for Deadlines<CLASSES> {
    fn default() -> Self {
        Self { queues: std::array::from_fn(|_| VecDeque::new()) }
    }
}

impl<const CLASSES: usize> Deadlines<CLASSES> {
    /// Adds a timer of `class` for `job` at `deadline`.
    pub(crate) fn push(&mut self, class: usize, deadline: Timestamp, job: JobId) {
        self.queues[class].push_back((deadline, job));
    }

    fn earliest_queue(&self) -> Option<usize> {
        self.queues
            .iter()
            .enumerate()
            .filter_map(|(class, q)| q.front().map(|(at, _)| (*at, class)))
            .min()
            .map(|(_, class)| class)
    }

    /// The earliest timer: its deadline, class and job.
    pub(crate) fn peek(&self) -> Option<(Timestamp, usize, JobId)> {
        let class = self.earliest_queue()?;
        self.queues[class].front().map(|&(at, job)| (at, class, job))
    }

    /// Removes the earliest timer.
    pub(crate) fn pop(&mut self) {
        if let Some(class) = self.earliest_queue() {
            self.queues[class].pop_front();
        }
    }

    /// Removes timers from the front while `ended` says their job has ended: a timer's job
    /// that ended leaves its entry behind, which this drops once it is the earliest.
    pub(crate) fn drop_ended(&mut self, mut ended: impl FnMut(JobId) -> bool) {
        while let Some(class) = self.earliest_queue() {
            let queue = &mut self.queues[class];
            match queue.front() {
                Some(&(_, job)) if ended(job) => {
                    queue.pop_front();
                }
                _ => break,
            }
        }
    }

    pub(crate) fn clear(&mut self) {
        self.queues.iter_mut().for_each(VecDeque::clear);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(slot: u32) -> JobId {
        JobId { slot, token: u64::from(slot) }
    }

    /// Timers `(class, deadline in ms, job slot)`, pushed in that order.
    fn timers<const CLASSES: usize>(timers: &[(usize, u64, u32)]) -> Deadlines<CLASSES> {
        let mut d = Deadlines::default();
        for &(class, at, slot) in timers {
            d.push(class, Timestamp::from_millis(at), job(slot));
        }
        d
    }

    #[test]
    fn earliest_first_across_classes() {
        let mut d = timers::<3>(&[(0, 300, 1), (1, 100, 2), (0, 400, 3), (2, 350, 4)]);
        let mut order = Vec::new();
        while let Some((_, class, job)) = d.peek() {
            order.push((job.slot, class));
            d.pop();
        }
        assert_eq!(order, [(2, 1), (1, 0), (4, 2), (3, 0)]);
    }

    #[test]
    fn drop_ended_stops_at_the_first_live_timer_in_deadline_order() {
        let mut d = timers::<2>(&[(0, 100, 1), (1, 150, 2), (0, 200, 3), (1, 250, 4)]);
        // 1 and 3 ended, 2 lives: 1 goes, 2 stops it, 3 stays behind it.
        d.drop_ended(|j| j.slot % 2 == 1);
        assert_eq!(d.peek(), Some((Timestamp::from_millis(150), 1, job(2))));
        d.drop_ended(|_| true);
        assert_eq!(d.peek(), None);
    }
}
