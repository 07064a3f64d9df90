//! The small shared vocabulary of the `plus` crates.
//!
//! Only what two or more `plus` crates really share lives here:
//!
//! - identifiers that are validated once at the edge: [`AppCode`], [`HostId`], [`WorkerId`];
//! - [`Ratio`], a fraction in `[0, 1]` that parses `"25%"` as well as `"0.25"`;
//! - [`Version`], an opaque version string as a person wrote it (`"3.10"` stays `"3.10"`);
//! - the time convention of every sans-IO core: [`Timestamp`], a monotonic instant that the host
//!   passes in, never one a core reads by itself;
//! - the randomness convention: [`SeededRng`], a portable RNG the caller owns and seeds.
//!
//! The crate does no I/O, reads no clock (except [`MonotonicClock`], which exists for drivers) and
//! keeps no global state.
//!
//! ```
//! use plus_core::{AppCode, Ratio, Timestamp, Version, seeded_rng};
//! use rand::Rng;
//! use std::time::Duration;
//!
//! let app: AppCode = "order-service".parse()?;
//! let max_out: Ratio = "25%".parse()?;
//! let target: Version = "1.20".parse()?;
//! assert_eq!(app.as_str(), "order-service");
//! assert_eq!(max_out.get(), 0.25);
//! assert_eq!(target.as_str(), "1.20");
//!
//! // Cores take time as a value...
//! let start = Timestamp::ZERO;
//! let deadline = start + Duration::from_secs(5);
//! assert_eq!(deadline.saturating_duration_since(start), Duration::from_secs(5));
//!
//! // ...and randomness from an RNG the caller seeds: same seed, same numbers, on every machine.
//! let a: u64 = seeded_rng(7).random();
//! let b: u64 = seeded_rng(7).random();
//! assert_eq!(a, b);
//! # Ok::<(), plus_core::Error>(())
//! ```
#![doc(test(attr(deny(warnings))))]

mod error;
mod failure;
mod id;
mod ratio;
mod rng;
mod time;
mod version;

pub use error::Error;
pub use failure::Failure;
pub use id::{AppCode, HostId, WorkerId};
pub use ratio::Ratio;
pub use rng::{SeededRng, seeded_rng};
pub use time::{MonotonicClock, Timestamp};
pub use version::Version;
