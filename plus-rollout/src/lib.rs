//! Release a version to a group of hosts in batches, and deploy many applications in dependency
//! order (seeds 003 and 004).
//!
//! **Status: not implemented yet** (tracked by the plus-rollout issues). Nothing is exported until
//! it works.
#![doc(test(attr(deny(warnings))))]
