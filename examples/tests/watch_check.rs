//! `quorum_chaos`'s watch check, whose own tests (in the module) must see it refuse gaps,
//! duplicates, disorder and values no writer sent: a check that cannot fail would make its
//! "every acknowledged put arrived" mean nothing. Included here, not run as the example's
//! tests, so that `cargo test` still builds the `quorum_chaos` program the other tests run.

#[allow(dead_code)] // the watch check's idea of what a writer sent; the loads are not run here
#[path = "../quorum_chaos/loads.rs"]
mod loads;
#[allow(dead_code)] // the run-time half is the example's
#[path = "../quorum_chaos/watches.rs"]
mod watches;
