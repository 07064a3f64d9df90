use serde::{Deserialize, Serialize};

use crate::ids::{LogIndex, Term};
use crate::log::{Entry, Snapshot};

/// A message between nodes. The sender's id travels beside it
/// ([`Node::step`](crate::Node::step) takes it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum Message {
    /// A candidate asks whether it would get votes, without anyone changing state: it
    /// campaigns only if a majority would vote for it, so a node that cannot win does not
    /// disrupt the cluster with new terms.
    PreVote {
        /// The term it would campaign in.
        term: Term,
        /// Its last log index.
        last_index: LogIndex,
        /// Its last log term.
        last_term: Term,
    },
    /// The answer to [`Message::PreVote`].
    PreVoteReply {
        /// The term asked about when granted, else the voter's term.
        term: Term,
        /// Whether it would vote for the candidate.
        granted: bool,
    },
    /// A candidate asks for a vote.
    Vote {
        /// The candidate's term.
        term: Term,
        /// Its last log index.
        last_index: LogIndex,
        /// Its last log term.
        last_term: Term,
    },
    /// The answer to [`Message::Vote`].
    VoteReply {
        /// The voter's term.
        term: Term,
        /// Whether it voted for the candidate.
        granted: bool,
    },
    /// Log replication and heartbeat from the leader.
    Append {
        /// The leader's term.
        term: Term,
        /// The entry before `entries`.
        prev_index: LogIndex,
        /// Its term.
        prev_term: Term,
        /// New entries (none for a heartbeat).
        entries: Vec<Entry>,
        /// The leader's commit index.
        commit: LogIndex,
        /// Read-confirmation round, echoed back.
        read_seq: u64,
    },
    /// The answer to [`Message::Append`] or [`Message::Snapshot`].
    AppendReply {
        /// The follower's term.
        term: Term,
        /// Whether the entries were accepted.
        success: bool,
        /// On success, the last index known to match the leader; on failure, a hint where to
        /// resume.
        match_index: LogIndex,
        /// The echoed read round.
        read_seq: u64,
        /// The follower lost its memory and has not caught up: do not count it in any quorum.
        recovering: bool,
    },
    /// The whole state, for a follower too far behind for the log.
    Snapshot {
        /// The leader's term.
        term: Term,
        /// The state. Boxed: every message moves through channels and queues, and an inline
        /// snapshot made all of them as large as itself (192 bytes, a `memcpy` per move).
        snapshot: Box<Snapshot>,
        /// The leader's commit index.
        commit: LogIndex,
        /// Read round, echoed back.
        read_seq: u64,
    },
    /// The leader hands over (a transfer, or its own removal): the receiver, caught up,
    /// campaigns at once without a pre-vote.
    TimeoutNow {
        /// The leader's term.
        term: Term,
    },
}

impl Message {
    /// Its size as byte bounds count it: an append's entries (see
    /// [`Payload::bytes`](crate::Payload::bytes)) and a small fixed cost; a snapshot is
    /// counted as `usize::MAX` (it always travels alone).
    #[must_use]
    pub fn approx_bytes(&self) -> usize {
        match self {
            Self::Append { entries, .. } => {
                64 + entries.iter().map(|e| 16 + e.payload.bytes()).sum::<usize>()
            }
            Self::Snapshot { .. } => usize::MAX,
            _ => 64,
        }
    }

    /// The message's kind, for logs and counters.
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::PreVote { .. } => "pre_vote",
            Self::PreVoteReply { .. } => "pre_vote_reply",
            Self::Vote { .. } => "vote",
            Self::VoteReply { .. } => "vote_reply",
            Self::Append { .. } => "append",
            Self::AppendReply { .. } => "append_reply",
            Self::Snapshot { .. } => "snapshot",
            Self::TimeoutNow { .. } => "timeout_now",
        }
    }

    /// The sender's term.
    #[must_use]
    pub fn term(&self) -> Term {
        match self {
            Self::PreVote { term, .. }
            | Self::PreVoteReply { term, .. }
            | Self::Vote { term, .. }
            | Self::VoteReply { term, .. }
            | Self::Append { term, .. }
            | Self::AppendReply { term, .. }
            | Self::Snapshot { term, .. }
            | Self::TimeoutNow { term } => *term,
        }
    }
}
