//! Pick the best worker for a job by normalized weighted scoring (seed 000).
//!
//! **Status: not implemented yet** (tracked by the plus-scheduler issue). Nothing is exported
//! until it works.
#![doc(test(attr(deny(warnings))))]
