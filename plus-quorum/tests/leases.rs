//! Leases in the core: only the leader expires them, from the time its host passes in, as a log
//! entry; a keep-alive starts the TTL again; bad grants are refused with typed errors.

use std::time::Duration;

use bytes::Bytes;
use plus_core::Timestamp;
use plus_quorum::{
    ClientError, Config, LeaseId, MemStorage, Node, ReadOp, ReadResult, Response, WriteOp,
    WriteResult,
};

/// A one-node cluster (its own quorum) and its disk.
struct Alone {
    node: Node,
    disk: MemStorage,
    next_request: u64,
}

impl Alone {
    fn new() -> Self {
        let mut disk = MemStorage::new();
        let config = {
            let mut config = Config::new(1, vec![1]);
            config.max_lease_ttl = Duration::from_secs(60);
            config
        };
        let mut node = Node::new(config, &mut disk, Timestamp::ZERO).unwrap();
        node.tick(Timestamp::from_millis(1_000));
        assert!(node.is_leader());
        let mut alone = Self { node, disk, next_request: 1 };
        alone.settle(Timestamp::from_millis(1_000));
        alone
    }

    /// Makes every write durable at `now` and returns the client results.
    fn settle(&mut self, now: Timestamp) -> Vec<Result<Response, ClientError>> {
        while let Some(batch) = self.node.poll_persist() {
            batch.write_to(&mut self.disk).unwrap();
            self.node.persisted(batch.seq, now);
        }
        std::iter::from_fn(|| self.node.poll_output()).map(|o| o.result).collect()
    }

    fn write(&mut self, op: WriteOp, now: Timestamp) -> WriteResult {
        let id = self.next_request;
        self.next_request += 1;
        self.node.write(id, op).unwrap();
        match self.settle(now).pop() {
            Some(Ok(Response::Write(result))) => result,
            other => panic!("{other:?}"),
        }
    }

    fn read(&mut self, op: ReadOp, now: Timestamp) -> ReadResult {
        let id = self.next_request;
        self.next_request += 1;
        self.node.tick(now);
        self.node.read(id, op).unwrap();
        match self.settle(now).pop() {
            Some(Ok(Response::Read(result))) => result,
            other => panic!("{other:?}"),
        }
    }

    fn grant(&mut self, ttl_ms: u64, now: Timestamp) -> LeaseId {
        match self.write(WriteOp::GrantLease { ttl_ms }, now) {
            WriteResult::LeaseGranted { lease, .. } => lease,
            other => panic!("{other:?}"),
        }
    }
}

fn at(ms: u64) -> Timestamp {
    Timestamp::from_millis(ms)
}

#[test]
fn a_lease_ends_at_its_ttl_without_keep_alives_and_takes_its_keys() {
    let mut a = Alone::new();
    let lease = a.grant(500, at(1_000));
    let set = WriteOp::SetWithLease { key: "lock/app".into(), value: Bytes::from("me"), lease };
    assert!(matches!(a.write(set, at(1_000)), WriteResult::Applied { .. }));
    assert!(a.node.poll_timeout() <= at(1_500), "the driver wakes for the deadline");
    a.node.tick(at(1_499));
    a.settle(at(1_499));
    assert!(a.node.local_get("lock/app").is_some(), "not a millisecond early");
    a.node.tick(at(1_500));
    a.settle(at(1_500));
    assert!(a.node.local_get("lock/app").is_none(), "gone with its lease");
    assert_eq!(a.read(ReadOp::LeaseKeepAlive(lease), at(1_501)), ReadResult::Lease(None));
    let again = WriteOp::SetWithLease { key: "k".into(), value: Bytes::new(), lease };
    assert_eq!(a.write(again, at(1_502)), WriteResult::NoSuchLease { lease });
}

#[test]
fn a_keep_alive_starts_the_ttl_again() {
    let mut a = Alone::new();
    let lease = a.grant(500, at(1_000));
    let ReadResult::Lease(Some(info)) = a.read(ReadOp::LeaseKeepAlive(lease), at(1_400)) else {
        panic!("the lease is alive")
    };
    assert_eq!((info.ttl_ms, info.remaining_ms), (500, 500));
    a.node.tick(at(1_800));
    a.settle(at(1_800));
    let ReadResult::Lease(Some(info)) = a.read(ReadOp::LeaseTimeToLive(lease), at(1_800)) else {
        panic!("kept alive at 1,400 ms, it lives to 1,900 ms")
    };
    assert_eq!(info.remaining_ms, 100);
    assert_eq!(a.read(ReadOp::Leases, at(1_800)), ReadResult::Leases(vec![lease]));
    a.node.tick(at(1_900));
    a.settle(at(1_900));
    assert_eq!(a.read(ReadOp::Leases, at(1_901)), ReadResult::Leases(vec![]));
}

#[test]
fn grants_outside_the_limits_are_refused_with_typed_errors() {
    let mut a = Alone::new();
    let zero = a.node.write(90, WriteOp::GrantLease { ttl_ms: 0 }).unwrap_err();
    assert!(matches!(zero, ClientError::Invalid(ref m) if m.contains("at least 1 ms")), "{zero}");
    let long = a.node.write(91, WriteOp::GrantLease { ttl_ms: 60_001 }).unwrap_err();
    assert!(matches!(long, ClientError::Invalid(ref m) if m.contains("maximum")), "{long}");
}

#[test]
fn a_follower_never_expires_a_lease_on_its_own_clock() {
    let mut disk = MemStorage::new();
    let mut follower =
        Node::new(Config::new(2, vec![1, 2, 3]), &mut disk, Timestamp::ZERO).unwrap();
    // Its leader replicates a grant and commits it.
    let grant = plus_quorum::Entry {
        term: 1,
        index: 1,
        payload: plus_quorum::Payload::Write(WriteOp::GrantLease { ttl_ms: 100 }),
    };
    follower.step(
        1,
        plus_quorum::Message::Append {
            term: 1,
            prev_index: 0,
            prev_term: 0,
            entries: vec![grant],
            commit: 1,
            read_seq: 0,
        },
        at(10),
    );
    while let Some(batch) = follower.poll_persist() {
        batch.write_to(&mut disk).unwrap();
        follower.persisted(batch.seq, at(10));
    }
    assert_eq!(follower.local_state().leases().count(), 1);
    // Long past the TTL, and while still hearing from nobody else, it proposes nothing.
    for ms in [200, 250, 280] {
        follower.tick(at(ms));
    }
    assert!(follower.poll_persist().is_none(), "a follower writes no expiry");
    assert_eq!(follower.local_state().leases().count(), 1);
}
