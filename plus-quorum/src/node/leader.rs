//! What only a leader uses: each follower's progress, and the client requests it owes an answer.
//! It lives in its own type so that the rest of the node cannot grow leader-only side fields.

use std::collections::{BTreeMap, VecDeque};

use plus_core::Timestamp;

use super::lease_clock::LeaseClock;
use crate::ids::{LogIndex, NodeId, RequestId, Term};
use crate::ops::ReadOp;

/// A read waiting for its quorum round and for its index to be applied.
pub(super) struct PendingRead {
    pub(super) seq: u64,
    pub(super) read_index: LogIndex,
    pub(super) id: RequestId,
    pub(super) op: Asked,
}

/// What a linearizable read asks for: a client's read, or the whole state for a backup (kept
/// apart from [`ReadOp`]: the state is no answer to send over the wire as one reply).
pub(super) enum Asked {
    Op(ReadOp),
    Backup,
}

/// One follower as the leader tracks it.
pub(super) struct Peer {
    pub(super) next: LogIndex,
    pub(super) matched: LogIndex,
    pub(super) acked_seq: u64,
    /// It lost its memory and has not caught up: it counts toward no quorum.
    pub(super) recovering: bool,
    pub(super) last_contact: Option<Timestamp>,
    /// New entries, a commit or a read round to send.
    pub(super) dirty: bool,
    /// A read round or a heartbeat to send: it goes out even while the follower is paused
    /// (as a bare append, without entries).
    pub(super) heartbeat_due: bool,
    /// It votes in the configuration in force (a learner does not).
    pub(super) voter: bool,
    /// Where its log matches ours is not known yet (a new term, or a refusal since the last
    /// success): one append at a time, `next` moved only by its answers. Sending ahead
    /// (pipelining) resumes with the first success; while probing, a late refusal of a
    /// pipelined append must not undo the backtracking.
    pub(super) probing: bool,
    /// While probing: a probe went out and has not been answered. The next one waits for its
    /// answer (or goes out as a bare heartbeat), so a follower that cannot keep up is not sent
    /// the same entries on every write.
    pub(super) probe_sent: bool,
    /// While sending ahead: the last index of each append with entries not yet acknowledged,
    /// oldest first; at most [`Config::max_inflight_appends`](super::Config::max_inflight_appends).
    pub(super) inflight: VecDeque<LogIndex>,
    /// A snapshot sent and not yet answered for: `(last_index, last_term, resend at)`. Until
    /// the follower answers at or past it (or the resend time comes), the leader sends it
    /// heartbeats only: answers to appends it cannot match yet would send the leader back to
    /// another snapshot, a copy of the whole state each time (a follower a gigabyte behind
    /// took a leader to 23 GB that way).
    pub(super) snapshot: Option<(LogIndex, Term, Timestamp)>,
    /// How long the next snapshot sent may go unanswered: twice the election timeout at
    /// first, doubled at each resend up to [`MAX_SNAPSHOT_WAIT`] (a lost snapshot is sent
    /// again soon; a large one still in transit is not copied again and again).
    pub(super) snapshot_wait: Option<std::time::Duration>,
    /// The snapshot message last sent, kept until it is answered for: a resend sends it again,
    /// byte for byte, so a transport can resume a transfer that was cut instead of starting
    /// over with a newer state (as long as the log still goes on from it).
    pub(super) snapshot_sent: Option<Box<crate::message::Message>>,
}

/// How many election timeouts without a word make a follower [`Peer::silent`].
pub(super) const SILENT_AFTER: u32 = 10;

/// The longest a leader waits for a follower to answer for a snapshot before sending it again.
pub(super) const MAX_SNAPSHOT_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

impl Peer {
    /// A member new to the leader: probed from `next`, not heard from yet.
    pub(super) fn probing(next: LogIndex) -> Self {
        Self {
            next,
            matched: 0,
            acked_seq: 0,
            recovering: false,
            last_contact: None,
            dirty: true,
            heartbeat_due: true,
            voter: false,
            probing: true,
            probe_sent: false,
            inflight: VecDeque::new(),
            snapshot: None,
            snapshot_wait: None,
            snapshot_sent: None,
        }
    }

    /// Starts probing from `next`: where its log matches ours is to be found again.
    pub(super) fn probe_from(&mut self, next: LogIndex) {
        self.next = next;
        self.probing = true;
        self.probe_sent = false;
        self.inflight.clear();
        self.dirty = true;
    }

    /// Whether nothing but a bare heartbeat may go to it now: a probe is unanswered, or as
    /// many appends as allowed are in flight.
    pub(super) fn paused(&self, max_inflight: usize) -> bool {
        if self.probing { self.probe_sent } else { self.inflight.len() >= max_inflight }
    }

    /// Whether it has not been heard from for [`SILENT_AFTER`] election timeouts (or ever): it
    /// holds back no log, and is sent no snapshot (a whole state encoded for a member that is
    /// gone) until it answers a heartbeat again.
    pub(super) fn silent(&self, now: Timestamp, election_timeout: std::time::Duration) -> bool {
        self.last_contact
            .is_none_or(|t| now.saturating_duration_since(t) >= election_timeout * SILENT_AFTER)
    }

    /// A snapshot up to `at` (of term `at_term`) goes to it now: until it answers for it, or
    /// the wait runs out, it gets heartbeats only. The wait is `first` the first time, doubled
    /// at each resend up to [`MAX_SNAPSHOT_WAIT`] (never below `first`).
    pub(super) fn snapshot_going(
        &mut self,
        at: LogIndex,
        at_term: Term,
        now: Timestamp,
        first: std::time::Duration,
    ) {
        let wait = self.snapshot_wait.map_or(first, |w| (w * 2).min(MAX_SNAPSHOT_WAIT.max(first)));
        self.snapshot_wait = Some(wait);
        self.snapshot = Some((at, at_term, now + wait));
        self.next = at + 1;
        self.inflight.clear();
    }

    /// Whether it counts toward commit and read quorums: a voter that has not lost its memory.
    pub(super) fn counted(&self) -> bool {
        self.voter && !self.recovering
    }
}

/// A leadership transfer under way.
pub(super) struct Transfer {
    /// The voter to lead next.
    pub(super) to: NodeId,
    /// The request that asked for it.
    pub(super) request: RequestId,
    /// When it is given up.
    pub(super) deadline: Timestamp,
    /// Whether the target has been told to campaign.
    pub(super) told: bool,
}

/// The leader's bookkeeping: reset when this node becomes leader; the requests it holds are
/// failed when it steps down.
pub(super) struct Leadership {
    pub(super) progress: BTreeMap<NodeId, Peer>,
    /// The current read-confirmation round.
    pub(super) read_seq: u64,
    /// Reads that wait until the leader has committed an entry of its own term.
    pub(super) reads_waiting_for_term_commit: VecDeque<(RequestId, Asked)>,
    pub(super) pending_reads: VecDeque<PendingRead>,
    /// Writes by log index, with the term they were proposed in.
    pub(super) pending_writes: BTreeMap<LogIndex, (RequestId, Term)>,
    /// When each live lease ends unless kept alive, and which are being expired.
    pub(super) leases: LeaseClock,
    /// A leadership transfer under way: writes wait for the next leader.
    pub(super) transfer: Option<Transfer>,
}

impl Leadership {
    pub(super) fn new() -> Self {
        Self {
            progress: BTreeMap::new(),
            read_seq: 0,
            reads_waiting_for_term_commit: VecDeque::new(),
            pending_reads: VecDeque::new(),
            pending_writes: BTreeMap::new(),
            leases: LeaseClock::default(),
            transfer: None,
        }
    }

    /// Starts a term as leader: every follower is to be probed from `next`.
    pub(super) fn start(&mut self, next: LogIndex, now: Timestamp) {
        for peer in self.progress.values_mut() {
            *peer = Peer {
                next,
                matched: 0,
                acked_seq: 0,
                recovering: peer.recovering,
                last_contact: Some(now),
                dirty: true,
                heartbeat_due: true,
                voter: peer.voter,
                probing: true,
                probe_sent: false,
                inflight: VecDeque::new(),
                snapshot: None,
                snapshot_wait: None,
                snapshot_sent: None,
            };
        }
        self.transfer = None;
    }

    /// Every follower has something to be sent (new entries, a commit).
    pub(super) fn mark_all_dirty(&mut self) {
        for peer in self.progress.values_mut() {
            peer.dirty = true;
        }
    }

    /// Every follower is to hear from the leader now, paused or not (a heartbeat, a read round).
    pub(super) fn heartbeat_all(&mut self) {
        for peer in self.progress.values_mut() {
            peer.dirty = true;
            peer.heartbeat_due = true;
        }
    }
}
