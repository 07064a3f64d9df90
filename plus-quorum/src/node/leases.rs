//! Lease deadlines: kept by the leader only, from the time its host passes in. Expiry is a log
//! entry the leader proposes; keep-alives are answered after a quorum round (see
//! [`crate::lease`] for the guarantee this gives).

use plus_core::Timestamp;

use super::lease_clock::LeaseClock;
use super::{Node, Role};
use crate::client_error::ClientError;
use crate::lease::{LeaseId, LeaseInfo};
use crate::log::Payload;
use crate::ops::{ReadOp, ReadResult, WriteOp, WriteResult};

impl Node {
    /// A new leader gives every lease a full TTL from now (etcd's rule): a failover can delay an
    /// expiry, never bring it forward.
    pub(super) fn restart_lease_clocks(&mut self, now: Timestamp) {
        self.lead.leases = LeaseClock::from_deadlines(
            self.state
                .lease_ttls()
                .map(|(id, ttl_ms)| (id, now + std::time::Duration::from_millis(ttl_ms))),
        );
    }

    /// What a committed entry did to leases, for the leader's deadlines.
    pub(super) fn track_leases(&mut self, payload: &Payload, result: Option<&WriteResult>) {
        #[cfg(plus_planted_bugs)]
        if self.config.bugs.replica_expires_leases && self.role != Role::Leader {
            if let Some(WriteResult::LeaseGranted { lease, ttl_ms }) = result {
                let deadline = self.clock + std::time::Duration::from_millis(*ttl_ms);
                self.lead.leases.set(*lease, deadline);
            }
        }
        if self.role != Role::Leader {
            return;
        }
        match (payload, result) {
            (_, Some(WriteResult::LeaseGranted { lease, ttl_ms })) => {
                let deadline = self.clock + std::time::Duration::from_millis(*ttl_ms);
                self.lead.leases.set(*lease, deadline);
            }
            (Payload::ExpireLeases(leases), _) => {
                for &lease in leases {
                    self.lead.leases.remove(lease);
                }
            }
            // Only a revoke (or an expiry, above) ends a lease.
            (Payload::Write(WriteOp::RevokeLease { lease }), _) => self.lead.leases.remove(*lease),
            _ => {}
        }
    }

    /// The planted mistake: a replica deletes a lease's keys by itself when its own clock says
    /// the TTL since the grant has passed.
    #[cfg(plus_planted_bugs)]
    pub(super) fn planted_local_expiry(&mut self, now: Timestamp) {
        let due: Vec<LeaseId> = self
            .lead
            .leases
            .iter()
            .filter(|&(_, deadline)| deadline <= now)
            .map(|(id, _)| id)
            .collect();
        for lease in due {
            self.lead.leases.remove(lease);
            self.state.end_lease(lease);
        }
    }

    /// Proposes the expiry of every lease whose deadline has passed, in one entry.
    pub(super) fn expire_leases(&mut self, now: Timestamp) {
        if self.role != Role::Leader || !self.committed_in_term() {
            return;
        }
        let due = self.lead.leases.take_due(now);
        if due.is_empty() {
            return;
        }
        tracing::info!(
            node = self.config.id,
            leases = due.len(),
            first = due[0],
            "leases expired: deleting their keys"
        );
        if self.append_local(Payload::ExpireLeases(due)).is_some() {
            self.maybe_commit();
        }
    }

    /// The earliest lease deadline the leader waits for: none until it has committed an entry
    /// of its term, since it cannot propose an expiry before that (and a deadline in the past
    /// would make its host tick without end).
    pub(super) fn next_lease_deadline(&self) -> Option<Timestamp> {
        if !self.committed_in_term() {
            return None;
        }
        self.lead.leases.next()
    }

    /// Answers a confirmed read: lease reads from the leader's deadlines, past ranges from the
    /// watch history, the rest from the map.
    pub(super) fn answer_read(&mut self, op: &ReadOp) -> Result<ReadResult, ClientError> {
        let result = self.answer_read_unbounded(op)?;
        let bytes = answer_bytes(&result);
        if bytes > self.config.max_read_bytes {
            return Err(ClientError::TooLarge {
                what:
                    "bytes in one read (ask for fewer keys, or page through with a range's limit)"
                        .to_owned(),
                size: bytes as u64,
                limit: self.config.max_read_bytes as u64,
            });
        }
        Ok(result)
    }

    fn answer_read_unbounded(&mut self, op: &ReadOp) -> Result<ReadResult, ClientError> {
        Ok(match op {
            ReadOp::LeaseKeepAlive(lease) => {
                let info = self.lease_info(*lease, true);
                ReadResult::Lease(info)
            }
            ReadOp::LeaseTimeToLive(lease) => ReadResult::Lease(self.lease_info(*lease, false)),
            ReadOp::Range(range) => {
                // At most one key past the limit is copied: enough to know it is too many.
                let max = self.config.max_read_keys;
                let mut bounded = range.clone();
                if !range.count_only && range.limit.is_none_or(|l| l > max) {
                    bounded.limit = Some(max + 1);
                }
                let result = if range.revision.is_some() {
                    self.range_in_past(&bounded)?
                } else {
                    self.state.range(&bounded)
                };
                if result.kvs.len() > max {
                    return Err(self.too_many_keys(result.count));
                }
                ReadResult::Range(result)
            }
            ReadOp::Keys(pattern) => {
                let max = self.config.max_read_keys;
                let keys = self.state.keys_matching(pattern, max + 1);
                if keys.len() > max {
                    return Err(self.too_many_keys(keys.len()));
                }
                ReadResult::Keys(keys)
            }
            other => self.state.read(other),
        })
    }

    fn too_many_keys(&self, found: usize) -> ClientError {
        ClientError::TooLarge {
            what: "keys in one read (page through with a range's limit)".to_owned(),
            size: found as u64,
            limit: self.config.max_read_keys as u64,
        }
    }

    fn lease_info(&mut self, lease: LeaseId, renew: bool) -> Option<LeaseInfo> {
        // Never for a lease whose expiry is proposed: those reads wait for it (`serve_reads`).
        let (ttl_ms, keys) = self.state.lease(lease)?;
        let ttl = std::time::Duration::from_millis(ttl_ms);
        let mut deadline = self.lead.leases.deadline(lease).unwrap_or(self.clock + ttl);
        if renew {
            deadline = deadline.max(self.clock + ttl);
        }
        self.lead.leases.set(lease, deadline);
        let remaining = deadline.saturating_duration_since(self.clock);
        Some(LeaseInfo {
            id: lease,
            ttl_ms,
            remaining_ms: u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX),
            keys,
        })
    }
}

/// The bytes of keys and values an answer carries (what its encoding is about the size of).
fn answer_bytes(result: &ReadResult) -> usize {
    let value = |v: &crate::types::Versioned| v.value.len();
    match result {
        ReadResult::Value(v) => v.as_ref().map_or(0, value),
        ReadResult::Values(values) => values.iter().flatten().map(value).sum(),
        ReadResult::Keys(keys) => keys.iter().map(String::len).sum(),
        ReadResult::Range(range) => range.kvs.iter().map(|(k, v)| k.len() + value(v)).sum(),
        _ => 0,
    }
}
