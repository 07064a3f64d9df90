//! Not a library: the runnable programs of `plus` live beside this file, one per `[[example]]`.
//! This target exists so that the README's snippets compile and run as doctests.

/// The README's code snippets, run by `cargo test --doc`.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
