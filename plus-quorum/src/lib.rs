//! A replicated in-memory key-value store for a platform's own state (seeds 001 and 002).
//!
//! **Status: not implemented yet** (tracked by the plus-quorum issues). This crate will hold a
//! sans-IO Raft-style consensus core with linearizable reads and writes, compare-and-set and
//! all-or-nothing multi-key operations, plus a tokio driver. Nothing is exported until it works.
#![doc(test(attr(deny(warnings))))]
