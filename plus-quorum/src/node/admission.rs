//! What a message must be before the node hears it. Peers are authenticated by the transport,
//! but a node does not bet its state on every peer being honest and bug-free: a term that
//! would overflow or lies absurdly far ahead, or an append whose entries do not follow its
//! `prev_index`, is dropped and counted, never acted on.

use super::Node;
use crate::ids::{NodeId, Term};
use crate::message::Message;

/// Why a message was not heard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Inadmissible {
    /// `Term::MAX`: the next term would overflow.
    TermAtLimit,
    /// Further ahead of ours than [`Config::max_term_lead`](super::Config::max_term_lead).
    TermTooFarAhead { ours: Term, theirs: Term },
    /// An append whose entries are not `prev_index + 1, + 2, ...` or have terms that go back,
    /// exceed the message's term, or precede `prev_term`.
    MalformedEntries,
    /// A snapshot from a term before the one it claims to contain, or ending at the last
    /// possible index.
    MalformedSnapshot,
}

impl std::fmt::Display for Inadmissible {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TermAtLimit => f.write_str("term at its maximum"),
            Self::TermTooFarAhead { ours, theirs } => {
                write!(f, "term {theirs} too far ahead of ours ({ours})")
            }
            Self::MalformedEntries => f.write_str("entries that do not follow prev_index"),
            Self::MalformedSnapshot => f.write_str("inconsistent snapshot"),
        }
    }
}

impl Node {
    /// Whether `msg` may be heard at all.
    pub(super) fn admissible(&self, msg: &Message) -> Result<(), Inadmissible> {
        let term = msg.term();
        if term == Term::MAX {
            return Err(Inadmissible::TermAtLimit);
        }
        if term > self.term.saturating_add(self.config.max_term_lead) {
            return Err(Inadmissible::TermTooFarAhead { ours: self.term, theirs: term });
        }
        match msg {
            Message::Append { term, prev_index, prev_term, entries, .. } => {
                let mut expected = *prev_index;
                let mut last_term = *prev_term;
                for entry in entries {
                    expected = expected.checked_add(1).ok_or(Inadmissible::MalformedEntries)?;
                    if entry.index != expected || entry.term < last_term || entry.term > *term {
                        return Err(Inadmissible::MalformedEntries);
                    }
                    last_term = entry.term;
                }
                if *prev_term > *term {
                    return Err(Inadmissible::MalformedEntries);
                }
            }
            Message::Snapshot { term, snapshot, .. }
                if snapshot.last_term > *term || snapshot.last_index == u64::MAX =>
            {
                return Err(Inadmissible::MalformedSnapshot);
            }
            _ => {}
        }
        Ok(())
    }

    /// Counts a message that was not heard, with a warning at the 1st, 2nd, 4th, 8th, ...
    /// drop: a flood costs a log line per doubling, not one per message.
    pub(super) fn drop_message(&mut self, from: NodeId, msg: &Message, reason: Inadmissible) {
        self.counters.dropped_messages += 1;
        let dropped = self.counters.dropped_messages;
        if dropped.is_power_of_two() {
            tracing::warn!(
                node = self.config.id,
                from,
                kind = msg.kind(),
                %reason,
                dropped,
                "dropped a message that cannot be heard"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::{Entry, Payload};

    fn node() -> Node {
        let mut storage = crate::MemStorage::new();
        let config = super::super::Config::new(1, vec![1, 2, 3]);
        Node::new(config, &mut storage, plus_core::Timestamp::ZERO).unwrap()
    }

    fn append(term: Term, prev_index: u64, prev_term: Term, entries: &[(Term, u64)]) -> Message {
        Message::Append {
            term,
            prev_index,
            prev_term,
            entries: entries
                .iter()
                .map(|&(term, index)| Entry { term, index, payload: Payload::Noop })
                .collect(),
            commit: 0,
            read_seq: 0,
        }
    }

    fn check(msg: &Message, expected: Result<(), Inadmissible>) {
        assert_eq!(node().admissible(msg), expected, "{msg:?}");
    }

    #[test]
    fn terms_and_entries_table() {
        let vote = |term| Message::Vote { term, last_index: 0, last_term: 0 };
        check(&vote(1), Ok(()));
        check(&vote(1_000_000), Ok(()));
        check(&vote(1_000_001), Err(Inadmissible::TermTooFarAhead { ours: 0, theirs: 1_000_001 }));
        check(&vote(Term::MAX), Err(Inadmissible::TermAtLimit));
        check(&append(2, 0, 0, &[(1, 1), (2, 2)]), Ok(()));
        check(&append(2, 0, 0, &[(1, 1), (2, 3)]), Err(Inadmissible::MalformedEntries));
        check(&append(2, 0, 0, &[(2, 1), (1, 2)]), Err(Inadmissible::MalformedEntries));
        check(&append(2, 0, 0, &[(3, 1)]), Err(Inadmissible::MalformedEntries));
        check(&append(2, 5, 3, &[]), Err(Inadmissible::MalformedEntries));
        check(&append(2, u64::MAX, 0, &[(1, 0)]), Err(Inadmissible::MalformedEntries));
        let snapshot = |term, last_term, last_index| Message::Snapshot {
            term,
            snapshot: Box::new(crate::log::Snapshot {
                last_index,
                last_term,
                state: crate::kv::KvState::default(),
                membership: None,
            }),
            commit: 0,
            read_seq: 0,
        };
        check(&snapshot(2, 2, 10), Ok(()));
        check(&snapshot(2, 3, 10), Err(Inadmissible::MalformedSnapshot));
        check(&snapshot(2, 2, u64::MAX), Err(Inadmissible::MalformedSnapshot));
    }
}
