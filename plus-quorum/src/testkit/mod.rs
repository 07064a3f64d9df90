//! What checks a store's histories (feature `testkit`): a memoized, time-bounded
//! linearizability checker over any sequential [`Model`], and the JSON-lines [`HistoryLine`]
//! format the crate's simulation and `quorum_chaos --history` record. Users with histories of
//! their own (a load test against this store or another) check them with the same search.
//!
//! ```
//! use std::time::Duration;
//! use plus_quorum::testkit::{History, Model, Verdict};
//!
//! /// One register.
//! #[derive(Clone, PartialEq, Eq, Hash)]
//! struct Register(u8);
//! enum Op { Write(u8), Read }
//! impl Model for Register {
//!     type Op = Op;
//!     type Ret = Option<u8>;
//!     fn step(&mut self, op: &Op) -> Option<u8> {
//!         match op {
//!             Op::Write(v) => { self.0 = *v; None }
//!             Op::Read => Some(self.0),
//!         }
//!     }
//! }
//!
//! // A write of 1 finished before a read began, yet the read saw 0: not linearizable.
//! let mut history = History::<Register>::default();
//! history.invoke(1, Op::Write(1))?;
//! history.ret(1, None)?;
//! history.invoke(2, Op::Read)?;
//! history.ret(2, Some(0))?;
//! assert_eq!(history.check(&Register(0), Duration::from_secs(1)), Verdict::NotLinearizable);
//! # Ok::<(), String>(())
//! ```

mod history_line;
mod linearizability;

pub use history_line::HistoryLine;
pub use linearizability::{History, Model, Verdict};
