//! Simulated lock holders: the lease-backed lock of `Cluster::lock` (and of an election's
//! campaign), run by the clients through the simulated network: grant a lease, create the lock
//! key on it only if absent (the fencing token is the revision that created it), keep the lease
//! alive, release by revoking it.
//!
//! A holder believes it holds the lock from the moment its acquisition is acknowledged until
//! TTL after the send time of the last grant or keep-alive it has seen acknowledged, or until
//! it sends its release, whichever is first; a keep-alive acknowledged after that moment does
//! not bring the belief back. The check: no two beliefs overlap on the simulator's global
//! clock, and fencing tokens rise in the order the holds began.

use std::time::Duration;

use plus_core::Timestamp;
use plus_quorum::LeaseId;

/// The key every holder competes for.
pub const LOCK_KEY: &str = "lock";

/// Where a client stands with the lock.
#[derive(Debug, Clone, Default)]
pub enum Phase {
    #[default]
    Idle,
    /// Holding a lease granted for the lock, not the lock.
    Leased { lease: LeaseId, hold: Hold },
    /// Holding the lock: `holds[index]`.
    Holding { lease: LeaseId, index: usize },
}

/// What a request does for the lock protocol, so its answer moves the phase on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Plain,
    Grant,
    Acquire,
    KeepAlive,
    Release,
}

/// One lease's life as its holder saw it, and the hold of the lock on it, if any.
#[derive(Debug, Clone, Default)]
pub struct Hold {
    pub client: usize,
    pub ttl: Duration,
    /// `(sent, acknowledged)` of the grant and of every acknowledged keep-alive, in
    /// acknowledgement order.
    pub acks: Vec<(Timestamp, Timestamp)>,
    /// When the acquisition was acknowledged, and the fencing token it returned.
    pub acquired: Option<(Timestamp, u64)>,
    /// When the holder sent its release.
    pub released: Option<Timestamp>,
}

impl Hold {
    /// When the holder stops believing it holds the lease: TTL after the last acknowledged
    /// send, as long as each acknowledgement came before the belief had run out.
    fn lease_believed_until(&self) -> Timestamp {
        let mut until = Timestamp::ZERO;
        for &(sent, acked) in &self.acks {
            if until != Timestamp::ZERO && acked > until {
                break;
            }
            until = until.max(sent + self.ttl);
        }
        until
    }

    /// The interval during which the holder believed it held the lock, if it ever did.
    pub fn belief(&self) -> Option<(Timestamp, Timestamp, u64)> {
        let (from, token) = self.acquired?;
        let mut until = self.lease_believed_until();
        if let Some(released) = self.released {
            until = until.min(released);
        }
        (from < until).then_some((from, until, token))
    }
}

/// Overlapping beliefs and fencing tokens out of order.
pub fn check(holds: &[Hold]) -> Vec<String> {
    let mut beliefs: Vec<(Timestamp, Timestamp, u64, usize)> = holds
        .iter()
        .filter_map(|h| h.belief().map(|(from, until, token)| (from, until, token, h.client)))
        .collect();
    beliefs.sort_by_key(|b| b.0);
    let mut wrong = Vec::new();
    for pair in beliefs.windows(2) {
        let ((from_a, until_a, token_a, a), (from_b, _, token_b, b)) = (pair[0], pair[1]);
        if from_b < until_a {
            wrong.push(format!(
                "clients {a} and {b} both believed they held the lock: {a} from {} to {} ms, {b} from {} ms",
                from_a.as_millis(),
                until_a.as_millis(),
                from_b.as_millis()
            ));
        }
        if token_b <= token_a {
            wrong.push(format!(
                "fencing tokens out of order: client {a} took token {token_a} at {} ms, client {b} took {token_b} at {} ms",
                from_a.as_millis(),
                from_b.as_millis()
            ));
        }
    }
    wrong
}

/// How many holds actually believed they held the lock.
pub fn believed(holds: &[Hold]) -> usize {
    holds.iter().filter(|h| h.belief().is_some()).count()
}
